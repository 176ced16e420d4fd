//! One split's scores for `metrics.csv`: the N-way test accuracy, CoOp's base and new accuracy
//! where the split holds both halves of the classes, and the same on the split's val images.
//!
//! CoOp's base-to-novel (docs/datasets.md) scores base and new each as its own task: a base
//! image is classified among the base class names only, a new image among the new names only.
//! With one `all` split that is the argmax over the base (or new) columns of the same logits,
//! so the N-way pass gives all three at once.

use anyhow::Result;

use super::split_data::SplitInfo;
use crate::eval::{Accuracy, Head, TestSet, head_accuracy, score};

/// What one split's evaluation contributes to `metrics.csv`.
#[derive(Clone, Debug)]
pub struct SplitScores {
    /// N-way over all the split's classes, with per-class counts.
    pub test: Accuracy,
    /// CoOp's base and new test accuracy, each among its own class names (an `all` split only).
    pub base_new: Option<(f64, f64)>,
    /// N-way top-1 on the val images; `None` when none were scored.
    pub val: Option<f64>,
    /// The base classes' val images among the base names (an `all` split only).
    pub val_base: Option<f64>,
}

/// The N-way head, and for an `all` split CoOp's base head (the first ceil(n/2) labels) and new
/// head (the rest).
pub fn heads(info: &SplitInfo) -> Vec<Head> {
    let n = info.classnames.len() as i64;
    let all_way = 0..n;
    if info.subsample == "all" && !info.test_only && n >= 2 {
        let base = (n + 1) / 2;
        vec![all_way, 0..base, base..n]
    } else {
        vec![all_way]
    }
}

/// Score `test` and, if given, `val` with `predict` (each head's predicted labels for a set of
/// images; the heads of [`heads`]).
pub fn score_split(
    info: &SplitInfo,
    predict: impl Fn(&TestSet, &[Head]) -> Result<Vec<Vec<i64>>>,
    test: &TestSet,
    val: Option<&TestSet>,
) -> Result<SplitScores> {
    let heads = heads(info);
    let labels = |set: &TestSet| Vec::<i64>::try_from(&set.labels.to_kind(tch::Kind::Int64));
    let truth = labels(test)?;
    let predictions = predict(test, &heads)?;
    let test_acc = score(&predictions[0], &truth, &info.classnames);
    let own_task = |i: usize, p: &[Vec<i64>], t: &[i64]| head_accuracy(&p[i], t, &heads[i]);
    let base_new = match heads.len() {
        3 => Some((own_task(1, &predictions, &truth).unwrap_or(0.0), own_task(2, &predictions, &truth).unwrap_or(0.0))),
        _ => None,
    };
    let (val_acc, val_base) = match val {
        None => (None, None),
        Some(val) => score_val(info, &predict, val)?,
    };
    Ok(SplitScores { test: test_acc, base_new, val: val_acc, val_base })
}

/// Accuracy on the split's val images among its names, and for an `all` split among the base
/// names only: `(val_acc, val_base_acc)`. The same computation whether or not the test set is
/// scored beside it, so a choice made on a validation-only eval is the full eval's.
pub fn score_val(
    info: &SplitInfo,
    predict: impl Fn(&TestSet, &[Head]) -> Result<Vec<Vec<i64>>>,
    val: &TestSet,
) -> Result<(Option<f64>, Option<f64>)> {
    let heads = heads(info);
    let truth = Vec::<i64>::try_from(&val.labels.to_kind(tch::Kind::Int64))?;
    let predictions = predict(val, &heads)?;
    let base = if heads.len() == 3 { head_accuracy(&predictions[1], &truth, &heads[1]) } else { None };
    Ok((head_accuracy(&predictions[0], &truth, &heads[0]), base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    fn info(subsample: &str, classes: usize) -> SplitInfo {
        SplitInfo {
            dataset: "d".into(),
            classnames: (0..classes).map(|i| format!("c{i}")).collect(),
            template: "a photo of a {}.".into(),
            shots: 1,
            seed: 1,
            subsample: subsample.into(),
            image_size: 2,
            image_dir: "/".into(),
            train: Vec::new(),
            val: Vec::new(),
            test_only: false,
            subset_of: None,
            rendering: Default::default(),
            origin: None,
        }
    }

    fn set(labels: &[i64]) -> TestSet {
        TestSet {
            images: Tensor::zeros([labels.len() as i64, 2, 2, 3], tch::kind::INT64_CPU),
            labels: Tensor::from_slice(labels),
        }
    }

    #[test]
    fn an_all_split_scores_base_and_new_each_among_its_own_names() {
        // 5 classes: base 0..3, new 3..5. Rows are images, columns class logits.
        let logits = Tensor::from_slice2(&[
            [5.0f32, 1.0, 0.0, 9.0, 0.0], // label 0: N-way says 3 (wrong), base head says 0 (right)
            [0.0, 6.0, 2.0, 0.0, 0.0],    // label 1: right either way
            [7.0, 0.0, 1.0, 0.0, 0.0],    // label 2: wrong either way
            [0.0, 0.0, 8.0, 1.0, 3.0],    // label 3: N-way says 2, new head says 4: wrong
            [0.0, 9.0, 0.0, 0.0, 2.0],    // label 4: N-way says 1 (wrong), new head says 4 (right)
        ]);
        let labels = [0i64, 1, 2, 3, 4];
        // One batch of 5, so the fixed logits line up with the images.
        let predict_one = |s: &TestSet, heads: &[Head]| {
            crate::eval::predict_heads(s, tch::Device::Cpu, 5, heads, |_| logits.shallow_clone())
        };
        let scores = score_split(&info("all", 5), predict_one, &set(&labels), Some(&set(&labels))).unwrap();
        assert_eq!(scores.test.acc, 1.0 / 5.0);
        assert_eq!(scores.base_new, Some((2.0 / 3.0, 1.0 / 2.0)));
        assert_eq!(scores.val, Some(1.0 / 5.0));
        assert_eq!(scores.val_base, Some(2.0 / 3.0));

        // A base split alone is one N-way task: no halves.
        let base = score_split(&info("base", 5), predict_one, &set(&labels), None).unwrap();
        assert_eq!((base.base_new, base.val, base.val_base), (None, None, None));
    }
}
