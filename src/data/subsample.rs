//! Base-to-novel class subsets as CoOp's `subsample_classes` makes them: the labels present in
//! the (few-shot) train set, sorted; the first `ceil(n/2)` are base, the rest new; the kept
//! classes are relabelled from 0 in that order.

use std::collections::{BTreeMap, BTreeSet};

use super::split_file::Datum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subsample {
    /// every class
    #[default]
    All,
    /// the first half of the classes (rounded up)
    Base,
    /// the second half
    New,
}

impl Subsample {
    pub fn as_str(self) -> &'static str {
        match self {
            Subsample::All => "all",
            Subsample::Base => "base",
            Subsample::New => "new",
        }
    }
}

/// Old label → new label for the chosen half; labels are taken from `train` as CoOp does.
pub fn relabeler(train: &[Datum], which: Subsample) -> BTreeMap<usize, usize> {
    let labels: Vec<usize> = train.iter().map(|d| d.label).collect::<BTreeSet<_>>().into_iter().collect();
    let m = labels.len().div_ceil(2);
    let selected = match which {
        Subsample::All => &labels[..],
        Subsample::Base => &labels[..m],
        Subsample::New => &labels[m..],
    };
    selected.iter().enumerate().map(|(new, &old)| (old, new)).collect()
}

/// Keep the items of the mapped classes, in order, with their new labels.
pub fn apply(items: &[Datum], map: &BTreeMap<usize, usize>) -> Vec<Datum> {
    items.iter().filter_map(|d| map.get(&d.label).map(|&label| Datum { label, ..d.clone() })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_class_count_gives_base_the_extra_class() {
        let train: Vec<Datum> = [4, 0, 2, 1, 3, 1]
            .iter()
            .map(|&l| Datum { impath: format!("{l}.png"), label: l, classname: format!("c{l}") })
            .collect();
        let base = relabeler(&train, Subsample::Base);
        assert_eq!(base.into_iter().collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 2)]);
        let new = relabeler(&train, Subsample::New);
        assert_eq!(new.clone().into_iter().collect::<Vec<_>>(), [(3, 0), (4, 1)]);
        let kept = apply(&train, &new);
        assert_eq!(kept.iter().map(|d| (d.label, d.classname.as_str())).collect::<Vec<_>>(), [(1, "c4"), (0, "c3")]);
    }
}
