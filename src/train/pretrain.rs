//! Contrastive pretraining of a small CLIP from a labelled image set: the demo's foundation
//! model. Captions come from several templates per class; the loss is CLIP's symmetric
//! cross-entropy over the batch's image–caption pairs, with every caption of the image's class
//! counted as a positive (a batch of five classes holds many same-class pairs, and calling
//! them negatives would teach the model to tell apart images it should group).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::adamw::{AdamW, AdamWConfig};
use super::losses::clip_logits;
use super::trainable::{check_finite, mark_trainable};
use crate::clip::layers::Precision;
use crate::clip::{Clip, ClipConfig, Weights};
use crate::data::augment::{TrainSet, prefetch_epoch};
use crate::data::crop_scale::CropScale;
use crate::rng::SplitMix64;
use crate::train::prompts::class_prompt_ids;

/// Caption templates; CLIP's own prompt ensembles look like these.
pub const DEFAULT_TEMPLATES: [&str; 6] = [
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {}.",
];

/// CLIP caps the learned temperature at 100.
const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainParams {
    pub optimizer: AdamWConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// The augmentation's crop area range (two fields: keys made before the upper end was a
    /// setting hold only the lower, and still do where the upper is 1).
    pub crop_scale_min: f64,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub crop_scale_max: f64,
    pub templates: Vec<String>,
    pub precision: Precision,
}

impl Default for PretrainParams {
    fn default() -> Self {
        PretrainParams {
            optimizer: AdamWConfig { lr: 1e-3, weight_decay: 0.1, beta2: 0.98, ..AdamWConfig::default() },
            epochs: 8,
            batch_size: 128,
            seed: 0,
            crop_scale_min: CropScale::PRETRAIN.min,
            crop_scale_max: CropScale::PRETRAIN.max,
            templates: DEFAULT_TEMPLATES.iter().map(|s| s.to_string()).collect(),
            precision: Precision::Fp32,
        }
    }
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

impl PretrainParams {
    pub fn crop_scale(&self) -> CropScale {
        CropScale { min: self.crop_scale_min, max: self.crop_scale_max }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PretrainLogRow {
    pub epoch: usize,
    #[serde(serialize_with = "crate::csv_io::shortest")]
    pub lr: f64,
    #[serde(serialize_with = "crate::csv_io::shortest")]
    pub loss: f64,
    #[serde(rename = "caption_acc", serialize_with = "crate::csv_io::shortest")]
    pub acc: f64,
}

pub struct PretrainRun<'a> {
    pub config: &'a ClipConfig,
    pub weights: Weights,
    pub train: Arc<TrainSet>,
    pub classnames: &'a [String],
    pub device: Device,
    pub progress: &'a dyn Fn(&str),
}

/// Train every tensor; return the trained weights and the per-epoch log.
pub fn run_pretrain(run: PretrainRun, params: &PretrainParams) -> Result<(Weights, Vec<PretrainLogRow>)> {
    let mut weights = run.weights;
    let names: Vec<String> = weights.keys().cloned().collect();
    let trainable = mark_trainable(&mut weights, &names)?;
    let model = Clip::with_precision(run.config, &weights, params.precision)?;
    let mut optimizer = AdamW::new(trainable, params.optimizer.clone());
    // Ids of every (template, class) caption; row t * classes + c.
    let classes = run.classnames.len() as i64;
    let captions: Vec<Tensor> = params
        .templates
        .iter()
        .map(|t| class_prompt_ids(t, run.classnames, run.config.text.context_length))
        .collect::<Result<_>>()?;
    let captions = Tensor::cat(&captions, 0).to_device(run.device);
    let steps_per_epoch = run.train.labels.len().div_ceil(params.batch_size).max(1);
    let total_steps = steps_per_epoch * params.epochs;
    let warmup = (total_steps / 10).max(1);
    let mut step = 0;
    let mut log = Vec::new();
    for epoch in 0..params.epochs {
        let (mut loss_sum, mut acc_sum, mut batches) = (0.0, 0.0, 0usize);
        let mut lr = 0.0;
        let image_size = run.config.vision.image_size as u32;
        let batches_iter =
            prefetch_epoch(run.train.clone(), params.batch_size, params.seed, epoch, image_size, params.crop_scale());
        for (images, labels) in batches_iter {
            lr = warmup_cosine_step(params.optimizer.lr, step, warmup, total_steps);
            optimizer.set_lr(lr);
            let (images, labels) = (images.to_device(run.device), labels.to_device(run.device));
            // One template per image, drawn from the (seed, epoch, step) stream.
            let mut rng = SplitMix64::derive(params.seed ^ 0x5EED, epoch as u64, step as u64);
            let label_values = Vec::<i64>::try_from(&labels.to_device(Device::Cpu))?;
            let rows: Vec<i64> = label_values
                .iter()
                .map(|&l| rng.below_inclusive(params.templates.len() as u64 - 1) as i64 * classes + l)
                .collect();
            let text_ids = captions.index_select(0, &Tensor::from_slice(&rows).to_device(run.device));
            let logits = clip_logits(&model.encode_image(&images), &model.encode_text(&text_ids), &model.logit_scale);
            let same_class = labels.unsqueeze(1).eq_tensor(&labels.unsqueeze(0)).to_kind(Kind::Float);
            let targets = &same_class / same_class.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
            let image_loss = -(targets.shallow_clone() * logits.log_softmax(1, Kind::Float)).sum(Kind::Float);
            let text_loss = -(targets * logits.log_softmax(0, Kind::Float)).sum(Kind::Float);
            let loss = (image_loss + text_loss) / (2.0 * label_values.len() as f64);
            let value = loss.double_value(&[]);
            check_finite("pretrain", value, epoch, step)?;
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            tch::no_grad(|| {
                let mut scale = model.logit_scale.shallow_clone();
                let _ = scale.clamp_(0.0, MAX_LOGIT_SCALE);
            });
            loss_sum += value;
            acc_sum += batch_class_accuracy(&model, &logits, &rows, classes, &labels);
            batches += 1;
            step += 1;
        }
        let n = batches.max(1) as f64;
        let row = PretrainLogRow { epoch, lr, loss: loss_sum / n, acc: acc_sum / n };
        (run.progress)(&format!(
            "pretrain: epoch {}/{} loss {:.4} caption acc {:.3}",
            epoch + 1,
            params.epochs,
            row.loss,
            row.acc
        ));
        log.push(row);
    }
    let trained: BTreeMap<String, Tensor> =
        weights.iter().map(|(k, t)| (k.clone(), t.detach().to_device(Device::Cpu))).collect();
    Ok((trained, log))
}

/// Fraction of images whose most similar caption in the batch is of their own class.
fn batch_class_accuracy(_model: &Clip, logits: &Tensor, rows: &[i64], classes: i64, labels: &Tensor) -> f64 {
    let best = Vec::<i64>::try_from(logits.detach().argmax(1, false).to_device(Device::Cpu)).unwrap_or_default();
    let labels = Vec::<i64>::try_from(labels.to_device(Device::Cpu)).unwrap_or_default();
    let right = best.iter().zip(&labels).filter(|(b, l)| rows[**b as usize] % classes == **l).count();
    right as f64 / labels.len().max(1) as f64
}

/// Linear warm-up over the first `warmup` steps, then cosine to 0 at `total`.
fn warmup_cosine_step(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    0.5 * base * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_range_s_upper_end_enters_the_key_only_when_below_1() {
        let key = |p: &PretrainParams| serde_json::to_value(p).unwrap();
        let old = key(&PretrainParams::default());
        assert_eq!(old["crop_scale_min"], 0.5);
        assert!(old.get("crop_scale_max").is_none(), "keys made before it stay");
        assert_eq!(serde_json::from_value::<PretrainParams>(old).unwrap(), PretrainParams::default());
        let p = PretrainParams { crop_scale_max: 0.9, ..PretrainParams::default() };
        assert_eq!(key(&p)["crop_scale_max"], 0.9);
        assert_eq!(p.crop_scale(), CropScale { min: 0.5, max: 0.9 });
    }
}
