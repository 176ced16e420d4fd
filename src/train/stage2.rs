//! Stage 2: tune only the selected tensors, from the pretrained weights, with cross-entropy plus
//! the self-consistency terms against frozen CLIP on the same batch.

use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::adamw::{AdamW, AdamWConfig};
use super::losses::{ConsistencyWeights, Stage2Inputs, stage2_loss};
use super::schedule::WarmupCosine;
use super::stage1::accuracy;
use super::trainable::{check_finite, mark_trainable, snapshot};
use crate::clip::layers::Precision;
use crate::clip::{Clip, ClipConfig, Weights};
use crate::data::augment::{TrainSet, prefetch_epoch};

/// Everything that changes stage 2's output; serialised into the artifact key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage2Params {
    pub optimizer: AdamWConfig,
    pub schedule: WarmupCosine,
    pub lambdas: ConsistencyWeights,
    pub batch_size: usize,
    pub seed: u64,
    pub precision: Precision,
}

impl Default for Stage2Params {
    fn default() -> Self {
        Stage2Params {
            optimizer: AdamWConfig {
                lr: 1e-7,
                ..AdamWConfig::default()
            },
            schedule: WarmupCosine {
                base_lr: 1e-7,
                warmup_start_lr: 1e-9,
                warmup_epochs: 3,
                epochs: 30,
            },
            lambdas: ConsistencyWeights {
                image_l1: 1.0,
                text_l1: 1.0,
                kl: 1.0,
            },
            batch_size: 32,
            seed: 1,
            precision: Precision::Fp32,
        }
    }
}

/// Per-epoch means of every loss term.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage2LogRow {
    pub epoch: usize,
    pub lr: f64,
    pub loss: f64,
    pub ce: f64,
    pub image_l1: f64,
    pub text_l1: f64,
    pub kl: f64,
    pub acc: f64,
}

pub struct Stage2Result {
    /// Final values of the tuned tensors only.
    pub tuned: Weights,
    pub log: Vec<Stage2LogRow>,
}

pub struct Stage2Run<'a> {
    pub config: &'a ClipConfig,
    /// Starting weights on `device` (pretrained, or pretrained overlaid with stage 1's).
    pub weights: Weights,
    /// The untouched pretrained weights the consistency terms compare against.
    pub frozen: &'a Weights,
    pub selected: &'a [String],
    pub train: Arc<TrainSet>,
    pub prompt_ids: &'a Tensor,
    pub device: Device,
    pub progress: &'a dyn Fn(&str),
}

pub fn run_stage2(run: Stage2Run, params: &Stage2Params) -> Result<Stage2Result> {
    let mut weights = run.weights;
    let trainable = mark_trainable(&mut weights, run.selected)?;
    let model = Clip::with_precision(run.config, &weights, params.precision)?;
    let frozen = Clip::with_precision(run.config, run.frozen, params.precision)?;
    let prompt_ids = run.prompt_ids.to_device(run.device);
    let tunes_text = run.selected.iter().any(|n| !n.starts_with("visual."));
    let tunes_vision = run.selected.iter().any(|n| n.starts_with("visual."));
    // Frozen text features cannot change: computed once, not per step.
    let frozen_text = tch::no_grad(|| frozen.encode_text(&prompt_ids));
    let mut optimizer = AdamW::new(trainable, params.optimizer.clone());
    let image_size = run.config.vision.image_size as u32;
    let mut log = Vec::new();
    let mut step = 0;
    for epoch in 0..params.schedule.epochs {
        let lr = params.schedule.lr_at(epoch);
        optimizer.set_lr(lr);
        let mut sums = [0f64; 6];
        let mut batches = 0usize;
        for (images, labels) in prefetch_epoch(
            run.train.clone(),
            params.batch_size,
            params.seed,
            epoch,
            image_size,
        ) {
            let (images, labels) = (images.to_device(run.device), labels.to_device(run.device));
            let frozen_image = tch::no_grad(|| frozen.encode_image(&images));
            let image = if tunes_vision {
                model.encode_image(&images)
            } else {
                frozen_image.shallow_clone()
            };
            let text = if tunes_text {
                model.encode_text(&prompt_ids)
            } else {
                frozen_text.shallow_clone()
            };
            let loss = stage2_loss(
                &Stage2Inputs {
                    image_features: &image,
                    text_features: &text,
                    frozen_image_features: &frozen_image,
                    frozen_text_features: &frozen_text,
                    logit_scale: &model.logit_scale,
                    frozen_logit_scale: &frozen.logit_scale,
                    labels: &labels,
                },
                params.lambdas,
            );
            let total = loss.total.double_value(&[]);
            check_finite("stage 2", total, epoch, step)?;
            optimizer.zero_grad();
            loss.total.backward();
            optimizer.step();
            let logits =
                tch::no_grad(|| super::losses::clip_logits(&image, &text, &model.logit_scale));
            let terms = [
                &loss.total,
                &loss.ce,
                &loss.image_l1,
                &loss.text_l1,
                &loss.kl,
            ];
            for (sum, term) in sums.iter_mut().zip(terms) {
                *sum += term.double_value(&[]);
            }
            sums[5] += accuracy(&logits, &labels);
            batches += 1;
            step += 1;
        }
        let n = batches.max(1) as f64;
        let row = Stage2LogRow {
            epoch,
            lr,
            loss: sums[0] / n,
            ce: sums[1] / n,
            image_l1: sums[2] / n,
            text_l1: sums[3] / n,
            kl: sums[4] / n,
            acc: sums[5] / n,
        };
        (run.progress)(&format!(
            "stage 2: epoch {}/{} lr {lr:.3e} loss {:.4} (ce {:.4}) acc {:.3}",
            epoch + 1,
            params.schedule.epochs,
            row.loss,
            row.ce,
            row.acc
        ));
        log.push(row);
    }
    Ok(Stage2Result {
        tuned: snapshot(&weights, run.selected),
        log,
    })
}
