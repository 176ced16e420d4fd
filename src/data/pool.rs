//! Image pools: the dataset's train list cut in two per class, so a foundation can be
//! pretrained on images no few-shot split ever draws. Per class, in the train list's order, the
//! first ⌈n/2⌉ images form the few-shot pool and the rest the pretraining pool; the val list
//! belongs to the few-shot pool only and the test list to neither (every pool's split is tested
//! on the whole test list). docs/datasets.md describes this.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::split_file::{Datum, SplitLists};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// the whole train and val lists (CoOp's sampling)
    #[default]
    All,
    /// the first half of each class of the train list, and the val list
    Fewshot,
    /// the second half of each class of the train list; no val images
    Pretrain,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::All => "all",
            Pool::Fewshot => "fewshot",
            Pool::Pretrain => "pretrain",
        }
    }

    pub fn is_all(&self) -> bool {
        *self == Pool::All
    }

    /// The train and val lists a split of this pool samples from.
    pub fn lists(self, lists: &SplitLists) -> (Vec<Datum>, Option<Vec<Datum>>) {
        match self {
            Pool::All => (lists.train.clone(), lists.val.clone()),
            Pool::Fewshot => (half(&lists.train, true), lists.val.clone()),
            Pool::Pretrain => (half(&lists.train, false), None),
        }
    }
}

/// Per label, the first ⌈n/2⌉ items in list order (`first`), or the others; order is kept.
fn half(items: &[Datum], first: bool) -> Vec<Datum> {
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    for d in items {
        *sizes.entry(d.label).or_default() += 1;
    }
    let mut seen: HashMap<usize, usize> = HashMap::new();
    items
        .iter()
        .filter(|d| {
            let i = seen.entry(d.label).or_default();
            *i += 1;
            (*i <= sizes[&d.label].div_ceil(2)) == first
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, label: usize) -> Datum {
        Datum { impath: name.into(), label, classname: format!("c{label}") }
    }

    #[test]
    fn halves_split_each_class_in_list_order() {
        let train = vec![d("a", 0), d("b", 1), d("c", 0), d("d", 0), d("e", 1), d("f", 1), d("g", 1)];
        let lists = SplitLists { train, val: Some(vec![d("v", 0)]), test: vec![d("t", 0)] };
        let names = |items: &[Datum]| items.iter().map(|x| x.impath.clone()).collect::<Vec<_>>();
        let (few, few_val) = Pool::Fewshot.lists(&lists);
        assert_eq!(names(&few), ["a", "b", "c", "e"], "class 0: 2 of 3, class 1: 2 of 4");
        assert_eq!(names(&few_val.unwrap()), ["v"]);
        let (pre, pre_val) = Pool::Pretrain.lists(&lists);
        assert_eq!(names(&pre), ["d", "f", "g"]);
        assert_eq!(pre_val, None, "pretraining draws no val images");
        let (all, _) = Pool::All.lists(&lists);
        assert_eq!(all, lists.train);
    }
}
