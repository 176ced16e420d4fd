//! Evaluation: top-1 and mean per-class accuracy on a split's preprocessed test images, and
//! top-1 within a subset of the classes (CoOp's base and new tasks).

use std::ops::Range;

use anyhow::{Result, bail};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::clip::Clip;
use crate::data::image::{CLIP_MEAN, CLIP_STD};
use crate::train::losses::normalize;

/// Test images as the split stage stores them: uint8 [N, H, W, 3] and labels [N].
pub struct TestSet {
    pub images: Tensor,
    pub labels: Tensor,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassResult {
    pub label: i64,
    pub classname: String,
    pub n: i64,
    pub correct: i64,
    pub acc: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    pub n: i64,
    pub acc: f64,
    pub macro_acc: f64,
    pub per_class: Vec<ClassResult>,
}

/// uint8 NHWC → normalised f32 NCHW, as CLIP's ToTensor + Normalize.
pub fn normalize_uint8(images: &Tensor) -> Tensor {
    let device = images.device();
    let mean = Tensor::from_slice(&CLIP_MEAN).to_device(device).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&CLIP_STD).to_device(device).view([1, 3, 1, 1]);
    (images.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0 - mean) / std
}

/// The labels a prediction may choose among: `0..n` for the N-way task, or one half of the
/// classes for CoOp's base-to-novel, which classifies base images among the base names only and
/// new images among the new names only (each its own task).
pub type Head = Range<i64>;

/// Classify the test set against one prompt per class, `batch` images at a time, no autograd.
pub fn evaluate(
    model: &Clip,
    test: &TestSet,
    prompt_ids: &Tensor,
    classnames: &[String],
    device: Device,
    batch: i64,
) -> Result<Accuracy> {
    let all_way = 0..classnames.len() as i64;
    let predictions = predict_clip(model, test, prompt_ids, device, batch, std::slice::from_ref(&all_way))?
        .pop()
        .expect("one head in, one out");
    let labels = Vec::<i64>::try_from(&test.labels.to_kind(Kind::Int64))?;
    Ok(score(&predictions, &labels, classnames))
}

/// Each head's predicted labels for every image: CLIP's cosine logits against one prompt per
/// class, the argmax within the head's columns.
pub fn predict_clip(
    model: &Clip,
    images: &TestSet,
    prompt_ids: &Tensor,
    device: Device,
    batch: i64,
    heads: &[Head],
) -> Result<Vec<Vec<i64>>> {
    let _guard = tch::no_grad_guard();
    let text = normalize(&model.encode_text(&prompt_ids.to_device(device)));
    let scale = model.logit_scale.exp();
    predict_heads(images, device, batch, heads, |x| normalize(&model.encode_image(x)).matmul(&text.tr()) * &scale)
}

/// Each head's predicted labels for every image of `images` (uint8 NHWC), `batch` at a time:
/// `logits_of` maps normalised NCHW images to [batch, classes] logits; a head's prediction is
/// the argmax over its columns, as a label of the full numbering.
pub fn predict_heads(
    images: &TestSet,
    device: Device,
    batch: i64,
    heads: &[Head],
    logits_of: impl Fn(&Tensor) -> Tensor,
) -> Result<Vec<Vec<i64>>> {
    let n = images.images.size()[0];
    if n == 0 {
        bail!("the split's test set is empty");
    }
    let _guard = tch::no_grad_guard();
    let mut predictions: Vec<Vec<Tensor>> = heads.iter().map(|_| Vec::new()).collect();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let logits = logits_of(&normalize_uint8(&images.images.narrow(0, start, len).to_device(device)));
        for (head, out) in heads.iter().zip(&mut predictions) {
            let within = logits.narrow(1, head.start, head.end - head.start).argmax(-1, false) + head.start;
            out.push(within.to_device(Device::Cpu));
        }
        start += len;
    }
    predictions.into_iter().map(|p| Ok(Vec::<i64>::try_from(Tensor::cat(&p, 0))?)).collect()
}

/// Top-1 accuracy over the images whose label lies in `head`, each predicted among the head's
/// classes only; `None` when no image's label does.
pub fn head_accuracy(predictions: &[i64], labels: &[i64], head: &Head) -> Option<f64> {
    let (n, correct) = predictions
        .iter()
        .zip(labels)
        .filter(|(_, l)| head.contains(l))
        .fold((0usize, 0usize), |(n, c), (p, l)| (n + 1, c + usize::from(p == l)));
    (n > 0).then(|| correct as f64 / n as f64)
}

/// Top-1 and the mean over classes present in the test set of each class's accuracy.
pub fn score(predictions: &[i64], labels: &[i64], classnames: &[String]) -> Accuracy {
    let mut per_class: Vec<ClassResult> = classnames
        .iter()
        .enumerate()
        .map(|(i, c)| ClassResult { label: i as i64, classname: c.clone(), n: 0, correct: 0, acc: 0.0 })
        .collect();
    for (&p, &l) in predictions.iter().zip(labels) {
        let class = &mut per_class[l as usize];
        class.n += 1;
        class.correct += i64::from(p == l);
    }
    for class in &mut per_class {
        class.acc = if class.n > 0 { class.correct as f64 / class.n as f64 } else { 0.0 };
    }
    let present: Vec<&ClassResult> = per_class.iter().filter(|c| c.n > 0).collect();
    let macro_acc = present.iter().map(|c| c.acc).sum::<f64>() / present.len().max(1) as f64;
    let correct: i64 = per_class.iter().map(|c| c.correct).sum();
    let n = labels.len() as i64;
    Accuracy { n, acc: correct as f64 / n.max(1) as f64, macro_acc, per_class }
}

/// Harmonic mean of base and new accuracy, CoOp's base-to-novel headline.
pub fn harmonic_mean(base: f64, new: f64) -> f64 {
    if base + new == 0.0 { 0.0 } else { 2.0 * base * new / (base + new) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_accuracy_weights_classes_equally() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // Class a: 3/4 right, class b: 0/1, class c absent.
        let acc = score(&[0, 0, 0, 1, 0], &[0, 0, 0, 0, 1], &names);
        assert_eq!(acc.n, 5);
        assert!((acc.acc - 0.6).abs() < 1e-12);
        assert!((acc.macro_acc - 0.375).abs() < 1e-12);
        assert!((harmonic_mean(0.8, 0.6) - 0.685_714_285_714_285_7).abs() < 1e-12);
    }
}
