//! Stage 1: a short fine-tune of every transformer block, for AdamW's statistics. CE over CLIP's
//! scaled cosine logits against one prompt per class.
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::adamw::{AdamW, AdamWConfig};
use super::checkpoint::{Checkpoints, LoopState, Position, shortest_f64};
use super::losses::{clip_logits, cross_entropy};
use super::trainable::{LR_HINT, all_block_tensors, check_finite, mark_trainable, snapshot};
use crate::clip::layers::Precision;
use crate::clip::{Clip, ClipConfig, Weights};
use crate::data::augment::{TrainImages, batches_per_epoch};
use crate::data::crop_scale::CropScale;

/// Everything that changes stage 1's output; serialised into the artifact key. Settings added
/// later enter the key only where they differ from the behaviour before them, so older keys
/// stay valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage1Params {
    pub optimizer: AdamWConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub precision: Precision,
    /// Further passes over the data are made until at least this many optimizer steps have run
    /// (1: just `epochs`, the paper's one epoch).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub min_steps: usize,
    #[serde(default, skip_serializing_if = "CropScale::is_few_shot")]
    pub crop_scale: CropScale,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for Stage1Params {
    fn default() -> Self {
        Stage1Params {
            optimizer: AdamWConfig { lr: 1e-5, ..AdamWConfig::default() },
            epochs: 1,
            batch_size: 32,
            seed: 1,
            precision: Precision::Fp32,
            min_steps: 1,
            crop_scale: CropScale::FEW_SHOT,
        }
    }
}

impl Stage1Params {
    /// Passes over `images` train images: `epochs`, or more until `min_steps` optimizer steps
    /// have run. Whole passes, each shuffled anew, so every image counts equally.
    pub fn passes(&self, images: usize) -> usize {
        match batches_per_epoch(images, self.batch_size) {
            0 => self.epochs,
            per_pass => self.epochs.max(self.min_steps.div_ceil(per_pass)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage1LogRow {
    pub step: usize,
    pub epoch: usize,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub loss: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub acc: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub lr: f64,
}

pub struct Stage1Result {
    /// The tuned block tensors (θ₁).
    pub checkpoint: Weights,
    /// exp_avg / exp_avg_sq per tensor and `step`.
    pub adamw_state: Weights,
    pub log: Vec<Stage1LogRow>,
}

pub struct Stage1Inputs<'a> {
    pub config: &'a ClipConfig,
    /// Pretrained weights on `device`; consumed, since training changes them in place.
    pub weights: Weights,
    pub train: TrainImages,
    pub prompt_ids: &'a Tensor,
    pub device: Device,
    pub progress: &'a dyn Fn(&str),
    /// Where the loop saves its state and resumes from (`Checkpoints::off()`: nowhere).
    pub checkpoints: Checkpoints,
}

const KIND: &str = "stage1";

pub fn run_stage1(inputs: Stage1Inputs, params: &Stage1Params) -> Result<Stage1Result> {
    let mut trainer = Stage1Trainer::new(inputs.config, inputs.weights, inputs.prompt_ids, inputs.device, params)?;
    let mut checkpoints = inputs.checkpoints;
    let image_size = inputs.config.vision.image_size as u32;
    let (mut at, mut log) = match checkpoints.resume::<Stage1LogRow>(KIND, &mut trainer.optimizer)? {
        Some(r) => (r.position, r.log),
        None => (Position::default(), Vec::new()),
    };
    // A pass beyond `epochs` is the next epoch of the same (seed, epoch) streams: a new shuffle.
    let epochs = params.passes(inputs.train.image_count());
    for epoch in at.epoch..epochs {
        let skip = if epoch == at.epoch { at.batch } else { 0 };
        at = Position { epoch, batch: skip, step: at.step };
        for batch in inputs.train.epoch_from(params.batch_size, params.seed, epoch, image_size, params.crop_scale, skip)
        {
            let (images, labels) = batch?;
            let (images, labels) = (images.to_device(inputs.device), labels.to_device(inputs.device));
            let step = at.step;
            let outcome = trainer.step(&images, &labels, epoch, step)?;
            log.push(Stage1LogRow { step, epoch, loss: outcome.loss, acc: outcome.acc, lr: params.optimizer.lr });
            (inputs.progress)(&format!(
                "stage 1: epoch {} step {step} loss {:.4} acc {:.3}",
                epoch + 1,
                outcome.loss,
                outcome.acc
            ));
            at.step += 1;
            at.batch += 1;
            checkpoints.step_boundary(
                KIND,
                &LoopState { position: at, epochs, sums: &[], log: &log },
                &trainer.optimizer,
            )?;
        }
        at = Position { epoch: epoch + 1, batch: 0, step: at.step };
        checkpoints.epoch_end(KIND, &LoopState { position: at, epochs, sums: &[], log: &log }, &trainer.optimizer)?;
    }
    let (checkpoint, adamw_state) = trainer.finish();
    Ok(Stage1Result { checkpoint, adamw_state, log })
}

/// What one training step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    pub loss: f64,
    pub acc: f64,
}

/// Stage 1 one batch at a time: the loop body of [`run_stage1`], public so that the step
/// benchmark (`examples/step_bench.rs`) times exactly the code a run executes.
pub struct Stage1Trainer {
    weights: Weights,
    names: Vec<String>,
    model: Clip,
    optimizer: AdamW,
    prompt_ids: Tensor,
}

impl Stage1Trainer {
    /// `weights`: the pretrained weights on `device`, consumed since training changes them.
    pub fn new(
        config: &ClipConfig,
        mut weights: Weights,
        prompt_ids: &Tensor,
        device: Device,
        params: &Stage1Params,
    ) -> Result<Stage1Trainer> {
        let names = all_block_tensors(config);
        let trainable = mark_trainable(&mut weights, &names)?;
        let model = Clip::with_precision(config, &weights, params.precision)?;
        Ok(Stage1Trainer {
            optimizer: AdamW::new(trainable, params.optimizer.clone()),
            prompt_ids: prompt_ids.to_device(device),
            weights,
            names,
            model,
        })
    }

    /// Forward, backward and one AdamW update on a batch already on the device. `epoch` and
    /// `step` only label the error of a non-finite loss, which stops before any update.
    pub fn step(&mut self, images: &Tensor, labels: &Tensor, epoch: usize, step: usize) -> Result<StepOutcome> {
        let logits = clip_logits(
            &self.model.encode_image(images),
            &self.model.encode_text(&self.prompt_ids),
            &self.model.logit_scale,
        );
        let loss = cross_entropy(&logits, labels);
        let loss_value = loss.double_value(&[]);
        check_finite("stage 1", loss_value, epoch, step, LR_HINT)?;
        self.optimizer.zero_grad();
        loss.backward();
        self.optimizer.step();
        Ok(StepOutcome { loss: loss_value, acc: accuracy(&logits, labels) })
    }

    /// The model being trained (its tensors are the trained weights).
    pub fn model(&self) -> &Clip {
        &self.model
    }

    /// θ₁ of every block tensor, and AdamW's state.
    pub fn finish(self) -> (Weights, Weights) {
        (snapshot(&self.weights, &self.names), self.optimizer.state())
    }
}

/// Fraction of rows whose highest logit is the label.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    let _guard = tch::no_grad_guard();
    logits.argmax(-1, false).eq_tensor(labels).to_kind(tch::Kind::Float).mean(tch::Kind::Float).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_passes_run_until_min_steps() {
        let p = |epochs, min_steps| Stage1Params { epochs, min_steps, ..Stage1Params::default() };
        // 10 images at batch 32: one (partial) batch per pass.
        assert_eq!(p(1, 1).passes(10), 1);
        assert_eq!(p(1, 8).passes(10), 8);
        // 40 images: one full batch, the 8 left over dropped; 100 images: 3 full batches.
        assert_eq!(p(1, 8).passes(40), 8);
        assert_eq!(p(1, 8).passes(100), 3, "whole passes: 9 steps");
        assert_eq!(p(5, 8).passes(100), 5, "epochs already give 15 steps");
        assert_eq!(p(2, 1).passes(0), 2);
    }

    #[test]
    fn new_settings_enter_the_key_only_when_set() {
        let key = |p: &Stage1Params| serde_json::to_value(p).unwrap();
        let old = key(&Stage1Params::default());
        assert_eq!(
            old.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["batch_size", "epochs", "optimizer", "precision", "seed"]
        );
        assert_eq!(serde_json::from_value::<Stage1Params>(old).unwrap(), Stage1Params::default());
        let p = Stage1Params { min_steps: 8, crop_scale: CropScale { min: 0.5, max: 1.0 }, ..Stage1Params::default() };
        let new = key(&p);
        assert_eq!((&new["min_steps"], &new["crop_scale"]), (&serde_json::json!(8), &serde_json::json!([0.5, 1.0])));
        assert_eq!(serde_json::from_value::<Stage1Params>(new).unwrap(), p);
    }
}
