//! Contrastive pretraining of a small CLIP from a labelled image set: the demo's foundation
//! model. Captions come from several templates per class (and, if asked, synonyms and coarse
//! captions: `captions.rs`); the loss is CLIP's symmetric cross-entropy over the batch's
//! image–caption pairs, with every caption that describes the image's class counted as a
//! positive (a batch of five classes holds many same-class pairs, and calling them negatives
//! would teach the model to tell apart images it should group). Image i's targets are its
//! positive captions, equally weighted; caption j's targets are the images it describes,
//! equally weighted.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::adamw::{AdamW, AdamWConfig};
use super::captions::{CaptionSources, CaptionTable, Captions};
use super::checkpoint::{Checkpoints, LoopState, Position, shortest_f64};
use super::losses::clip_logits;
use super::trainable::{LR_HINT, check_finite, mark_trainable};
use crate::clip::layers::Precision;
use crate::clip::{Clip, ClipConfig, Weights};
use crate::data::augment::{TrainSet, prefetch_epoch_from};
use crate::data::crop_scale::CropScale;
use crate::data::rendering::Rendering;
use crate::rng::SplitMix64;

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
    /// The rendering of the images not shown in the split's own rendering (the target); with
    /// `target_fraction` 1 (the default) there are none.
    #[serde(default, skip_serializing_if = "Rendering::is_original")]
    pub source_rendering: Rendering,
    /// Fraction of each class's images shown in the split's rendering, the rest in
    /// `source_rendering` (`render_mix.rs`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub target_fraction: f64,
    #[serde(default, skip_serializing_if = "Captions::is_class_names")]
    pub captions: Captions,
    /// With `captions = synonyms`: how often an image gets a coarse caption of its group.
    #[serde(default = "default_coarse", skip_serializing_if = "is_default_coarse")]
    pub coarse_fraction: f64,
}

// Settings added after the first foundations were made stay out of their keys at their old
// behaviour's values, so those foundations keep their keys.
fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

const COARSE_FRACTION: f64 = 0.3;

fn default_coarse() -> f64 {
    COARSE_FRACTION
}

fn is_default_coarse(x: &f64) -> bool {
    *x == COARSE_FRACTION
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
            source_rendering: Rendering::Original,
            target_fraction: 1.0,
            captions: Captions::ClassNames,
            coarse_fraction: COARSE_FRACTION,
        }
    }
}

impl PretrainParams {
    pub fn crop_scale(&self) -> CropScale {
        CropScale { min: self.crop_scale_min, max: self.crop_scale_max }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PretrainLogRow {
    pub epoch: usize,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub lr: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub loss: f64,
    #[serde(rename = "caption_acc", serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub acc: f64,
}

pub struct PretrainRun<'a> {
    pub config: &'a ClipConfig,
    pub weights: Weights,
    pub train: Arc<TrainSet>,
    pub classnames: &'a [String],
    /// The dataset's synonym and coarse-caption tables (for `captions = synonyms`).
    pub caption_sources: CaptionSources<'a>,
    pub device: Device,
    pub progress: &'a dyn Fn(&str),
    /// Where the loop saves its state and resumes from (`Checkpoints::off()`: nowhere).
    pub checkpoints: Checkpoints,
}

const KIND: &str = "pretrain";

/// Train every tensor; return the trained weights and the per-epoch log.
pub fn run_pretrain(run: PretrainRun, params: &PretrainParams) -> Result<(Weights, Vec<PretrainLogRow>)> {
    let mut weights = run.weights;
    let names: Vec<String> = weights.keys().cloned().collect();
    let trainable = mark_trainable(&mut weights, &names)?;
    let model = Clip::with_precision(run.config, &weights, params.precision)?;
    let mut optimizer = AdamW::new(trainable, params.optimizer.clone());
    let table = CaptionTable::new(
        params.captions,
        &params.templates,
        run.classnames,
        &run.caption_sources,
        params.coarse_fraction,
    )?;
    let captions = table.token_ids(run.config.text.context_length)?.to_device(run.device);
    let describes = table.describes().to_device(run.device);
    let steps_per_epoch = run.train.labels.len().div_ceil(params.batch_size).max(1);
    let total_steps = steps_per_epoch * params.epochs;
    let warmup = (total_steps / 10).max(1);
    let mut checkpoints = run.checkpoints;
    let (mut at, mut log, resumed_sums) = match checkpoints.resume::<PretrainLogRow>(KIND, &mut optimizer)? {
        Some(r) => (r.position, r.log, Some(r.sums)),
        None => (Position::default(), Vec::new(), None),
    };
    let epochs = params.epochs;
    for epoch in at.epoch..epochs {
        // The epoch's loss and accuracy sums and its last learning rate, carried over when
        // resumed inside it.
        let skip = if epoch == at.epoch { at.batch } else { 0 };
        let (mut loss_sum, mut acc_sum, mut lr) = match (&resumed_sums, skip) {
            (Some(s), 1..) => {
                anyhow::ensure!(s.len() == 3, "a pretrain checkpoint holds {} sums, not 3", s.len());
                (s[0], s[1], s[2])
            }
            _ => (0.0, 0.0, 0.0),
        };
        at = Position { epoch, batch: skip, step: at.step };
        let image_size = run.config.vision.image_size as u32;
        let batches_iter = prefetch_epoch_from(
            run.train.clone(),
            params.batch_size,
            params.seed,
            epoch,
            image_size,
            params.crop_scale(),
            skip,
        );
        for (images, labels) in batches_iter {
            let step = at.step;
            lr = warmup_cosine_step(params.optimizer.lr, step, warmup, total_steps);
            optimizer.set_lr(lr);
            let (images, labels) = (images.to_device(run.device), labels.to_device(run.device));
            // One caption per image, drawn from the (seed, epoch, step) stream.
            let mut rng = SplitMix64::derive(params.seed ^ 0x5EED, epoch as u64, step as u64);
            let label_values = Vec::<i64>::try_from(&labels.to_device(Device::Cpu))?;
            let rows: Vec<i64> = label_values.iter().map(|&l| table.draw(&mut rng, l as usize) as i64).collect();
            let rows_tensor = Tensor::from_slice(&rows).to_device(run.device);
            let text_ids = captions.index_select(0, &rows_tensor);
            let logits = clip_logits(&model.encode_image(&images), &model.encode_text(&text_ids), &model.logit_scale);
            // positive[i, j]: caption j describes image i's class. With class-name captions this
            // is "same class", symmetric, and both normalisations give the same targets.
            let positive = describes.index_select(0, &rows_tensor).index_select(1, &labels).tr();
            let image_targets = &positive / positive.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
            let text_targets = &positive / positive.sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
            let image_loss = -(image_targets * logits.log_softmax(1, Kind::Float)).sum(Kind::Float);
            let text_loss = -(text_targets * logits.log_softmax(0, Kind::Float)).sum(Kind::Float);
            let loss = (image_loss + text_loss) / (2.0 * label_values.len() as f64);
            let value = loss.double_value(&[]);
            check_finite("pretrain", value, epoch, step, LR_HINT)?;
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            tch::no_grad(|| {
                let mut scale = model.logit_scale.shallow_clone();
                let _ = scale.clamp_(0.0, MAX_LOGIT_SCALE);
            });
            loss_sum += value;
            acc_sum += batch_class_accuracy(&logits, &rows, &label_values, &table);
            at.batch += 1;
            at.step += 1;
            let sums = [loss_sum, acc_sum, lr];
            checkpoints.step_boundary(KIND, &LoopState { position: at, epochs, sums: &sums, log: &log }, &optimizer)?;
        }
        let n = at.batch.max(1) as f64;
        let row = PretrainLogRow { epoch, lr, loss: loss_sum / n, acc: acc_sum / n };
        (run.progress)(&format!(
            "pretrain: epoch {}/{} loss {:.4} caption acc {:.3}",
            epoch + 1,
            params.epochs,
            row.loss,
            row.acc
        ));
        log.push(row);
        at = Position { epoch: epoch + 1, batch: 0, step: at.step };
        checkpoints.epoch_end(KIND, &LoopState { position: at, epochs, sums: &[], log: &log }, &optimizer)?;
    }
    let trained: BTreeMap<String, Tensor> =
        weights.iter().map(|(k, t)| (k.clone(), t.detach().to_device(Device::Cpu))).collect();
    Ok((trained, log))
}

/// Fraction of images whose most similar caption in the batch describes their class.
fn batch_class_accuracy(logits: &Tensor, rows: &[i64], labels: &[i64], table: &CaptionTable) -> f64 {
    let best = Vec::<i64>::try_from(logits.detach().argmax(1, false).to_device(Device::Cpu)).unwrap_or_default();
    let right = best
        .iter()
        .zip(labels)
        .filter(|(b, l)| table.describes_class(rows[**b as usize] as usize, **l as usize))
        .count();
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
