//! Few-shot sampling as Dassl's `DatasetBase.generate_fewshot_dataset` does it, so a seed picks
//! the same images CoOp-family code picks.

use super::pyrandom::PyRandom;
use super::split_file::Datum;

/// What to do with a class that has fewer than `k` items. Dassl's current default (and what
/// CoOp's datasets get) is to keep them all; older Dassl releases defaulted to drawing `k`
/// with replacement (`random.choices`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortClass {
    KeepAll,
    Repeat,
}

/// Group `items` by label in order of first appearance (Python's `defaultdict` keeps insertion
/// order) and draw `k` per group with `random.sample`, continuing one generator across groups.
pub fn sample_per_class(rng: &mut PyRandom, items: &[Datum], k: usize, short: ShortClass) -> Vec<Datum> {
    let mut order: Vec<usize> = Vec::new();
    let mut groups: std::collections::HashMap<usize, Vec<&Datum>> = std::collections::HashMap::new();
    for item in items {
        groups
            .entry(item.label)
            .or_insert_with(|| {
                order.push(item.label);
                Vec::new()
            })
            .push(item);
    }
    // Never more than the items, nor `k` per group: `k` may be anything a user typed.
    let mut out = Vec::with_capacity(order.len().saturating_mul(k).min(items.len()));
    for label in order {
        let group = &groups[&label];
        let picked = if group.len() >= k {
            rng.sample(group, k)
        } else {
            match short {
                ShortClass::KeepAll => group.clone(),
                ShortClass::Repeat => rng.choices(group, k),
            }
        };
        out.extend(picked.into_iter().cloned());
    }
    out
}

/// CoOp's few-shot train and val sets: `random.seed(seed)`, then train with `k` shots per class,
/// then val with `min(k, 4)` from the same generator. `val` is `None` for datasets whose CoOp
/// loader samples train only (ImageNet). A class with fewer than `k` train images keeps them
/// all (CoOp's rule), whatever `k` is: nothing is allocated by `k` alone.
pub fn coop_fewshot(
    train: &[Datum],
    val: Option<&[Datum]>,
    k: usize,
    seed: i64,
    short: ShortClass,
) -> (Vec<Datum>, Vec<Datum>) {
    let mut rng = PyRandom::new(seed);
    let train = sample_per_class(&mut rng, train, k, short);
    let val = val.map(|v| sample_per_class(&mut rng, v, k.min(4), short)).unwrap_or_default();
    (train, val)
}

/// `k` shots against the classes' train images: a warning when every class has fewer (each
/// keeps all it has, as in CoOp, so the split is that of the largest class's count).
pub fn shots_warning(train: &[Datum], k: usize) -> Option<String> {
    let largest = largest_class(train);
    (k > largest).then(|| {
        format!("warning: {k} shots is more than any class has (the largest has {largest} train images); each class keeps all its images, as CoOp does")
    })
}

/// The most items any one label has.
fn largest_class(items: &[Datum]) -> usize {
    let mut counts: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for item in items {
        *counts.entry(item.label).or_default() += 1;
    }
    counts.into_values().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, label: usize) -> Datum {
        Datum { impath: name.into(), label, classname: format!("c{label}") }
    }

    #[test]
    fn groups_follow_first_appearance_and_small_classes_stay_whole() {
        let items = vec![d("a", 2), d("b", 0), d("c", 2), d("d", 2), d("e", 0)];
        let mut rng = PyRandom::new(1);
        let out = sample_per_class(&mut rng, &items, 3, ShortClass::KeepAll);
        let labels: Vec<usize> = out.iter().map(|x| x.label).collect();
        assert_eq!(labels, [2, 2, 2, 0, 0]);
        let mut rng = PyRandom::new(1);
        let out = sample_per_class(&mut rng, &items, 3, ShortClass::Repeat);
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn any_number_of_shots_keeps_short_classes_whole_without_allocating_for_k() {
        let items = vec![d("a", 0), d("b", 0), d("c", 1)];
        for k in [3, 1_000_000_000, 1 << 62, usize::MAX] {
            let (train, _) = coop_fewshot(&items, None, k, 1, ShortClass::KeepAll);
            assert_eq!(train.len(), 3, "every class keeps all its images");
            let w = shots_warning(&items, k).unwrap();
            assert!(w.starts_with(&format!("warning: {k} shots is more than any class has (the largest has 2")), "{w}");
        }
        assert_eq!(shots_warning(&items, 2), None);
    }
}
