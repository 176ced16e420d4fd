//! Stage 2: tune only the selected tensors, from the pretrained weights, with cross-entropy plus
//! the self-consistency terms against frozen CLIP on the same batch.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::adamw::{AdamW, AdamWConfig};
use super::checkpoint::{Checkpoints, LoopState, Position, shortest_f64};
use super::losses::{ConsistencyWeights, Stage2Inputs, Stage2Loss, clip_logits, stage2_loss};
use super::params_wire::Stage2ParamsWire;
use super::schedule::WarmupCosine;
use super::stage1::accuracy;
use super::trainable::{check_finite, loss_hint, mark_trainable, snapshot};
use crate::clip::layers::Precision;
use crate::clip::{Clip, ClipConfig, Weights};
use crate::data::augment::{TrainSet, prefetch_epoch_from};
use crate::data::crop_scale::CropScale;

/// Everything that changes stage 2's output; serialised into the artifact key. The optimizer's
/// learning rate is the schedule's peak. Keys and manifests keep the layout of schema 1, where
/// the schedule repeats that rate as `base_lr` (see `params_wire.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "Stage2ParamsWire", try_from = "Stage2ParamsWire")]
pub struct Stage2Params {
    pub optimizer: AdamWConfig,
    pub schedule: WarmupCosine,
    pub lambdas: ConsistencyWeights,
    pub batch_size: usize,
    pub seed: u64,
    pub precision: Precision,
    pub crop_scale: CropScale,
}

impl Default for Stage2Params {
    fn default() -> Self {
        Stage2Params {
            optimizer: AdamWConfig { lr: 1e-7, ..AdamWConfig::default() },
            schedule: WarmupCosine { warmup_start_lr: 1e-9, warmup_epochs: 3, epochs: 30 },
            lambdas: ConsistencyWeights { image_l1: 1.0, text_l1: 1.0, kl: 1.0 },
            batch_size: 32,
            seed: 1,
            precision: Precision::Fp32,
            crop_scale: CropScale::FEW_SHOT,
        }
    }
}

impl Stage2Params {
    /// The learning rate of 0-based `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.schedule.lr_at(self.optimizer.lr, epoch)
    }
}

/// Per-epoch means of every loss term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage2LogRow {
    pub epoch: usize,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub lr: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub loss: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub ce: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub image_l1: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub text_l1: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
    pub kl: f64,
    #[serde(serialize_with = "crate::csv_io::shortest", deserialize_with = "shortest_f64")]
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
    /// Where the loop saves its state and resumes from (`Checkpoints::off()`: nowhere).
    pub checkpoints: Checkpoints,
}

const KIND: &str = "stage2";

pub fn run_stage2(run: Stage2Run, params: &Stage2Params) -> Result<Stage2Result> {
    let mut trainer = Stage2Trainer::new(
        Stage2Setup {
            config: run.config,
            weights: run.weights,
            frozen: run.frozen,
            selected: run.selected,
            prompt_ids: run.prompt_ids,
            device: run.device,
        },
        params,
        Shortcuts::default(),
    )?;
    let image_size = run.config.vision.image_size as u32;
    let mut checkpoints = run.checkpoints;
    let (mut at, mut log, resumed_sums) = match checkpoints.resume::<Stage2LogRow>(KIND, &mut trainer.optimizer)? {
        Some(r) => (r.position, r.log, Some(r.sums)),
        None => (Position::default(), Vec::new(), None),
    };
    let epochs = params.schedule.epochs;
    for epoch in at.epoch..epochs {
        let lr = params.lr_at(epoch);
        trainer.set_lr(lr);
        // The epoch's sums of the loss terms and accuracy, carried over when resumed inside it.
        let mut sums = [0f64; 6];
        let skip = if epoch == at.epoch { at.batch } else { 0 };
        if skip > 0
            && let Some(saved) = &resumed_sums
        {
            anyhow::ensure!(saved.len() == sums.len(), "a stage-2 checkpoint holds {} sums, not 6", saved.len());
            sums.copy_from_slice(saved);
        }
        at = Position { epoch, batch: skip, step: at.step };
        for (images, labels) in prefetch_epoch_from(
            run.train.clone(),
            params.batch_size,
            params.seed,
            epoch,
            image_size,
            params.crop_scale,
            skip,
        ) {
            let (images, labels) = (images.to_device(run.device), labels.to_device(run.device));
            let outcome = trainer.step(&images, &labels, epoch, at.step)?;
            for (sum, term) in sums.iter_mut().zip(outcome.terms) {
                *sum += term;
            }
            sums[5] += outcome.acc;
            at.batch += 1;
            at.step += 1;
            checkpoints.step_boundary(
                KIND,
                &LoopState { position: at, epochs, sums: &sums, log: &log },
                &trainer.optimizer,
            )?;
        }
        let batches = at.batch;
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
        at = Position { epoch: epoch + 1, batch: 0, step: at.step };
        checkpoints.epoch_end(KIND, &LoopState { position: at, epochs, sums: &[], log: &log }, &trainer.optimizer)?;
    }
    Ok(Stage2Result { tuned: trainer.finish(), log })
}

/// Work stage 2 skips because it cannot change the result. A run uses all of them; each can be
/// turned off so that `tests/optimisations.rs` can show that the results do not move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortcuts {
    /// Frozen text features computed once per run instead of at every step.
    pub cache_frozen_text: bool,
    /// The image tower's stem and the blocks below the lowest one the two models differ in run
    /// once per batch for both, instead of once per model.
    pub share_vision_trunk: bool,
    /// The frozen branch runs with autograd off.
    pub frozen_without_autograd: bool,
}

impl Default for Shortcuts {
    fn default() -> Self {
        Shortcuts { cache_frozen_text: true, share_vision_trunk: true, frozen_without_autograd: true }
    }
}

/// What a stage-2 trainer is built from (a [`Stage2Run`] less the data and the progress sink).
pub struct Stage2Setup<'a> {
    pub config: &'a ClipConfig,
    pub weights: Weights,
    pub frozen: &'a Weights,
    pub selected: &'a [String],
    pub prompt_ids: &'a Tensor,
    pub device: Device,
}

/// What one stage-2 step reports: the total loss, CE, image L1, text L1 and KL (before the
/// update), and the batch's accuracy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage2StepOutcome {
    pub terms: [f64; 5],
    pub acc: f64,
}

/// The loss of one batch with the features it came from, before any backward pass.
pub struct Stage2Forward {
    pub loss: Stage2Loss,
    pub image_features: Tensor,
    pub text_features: Tensor,
    pub frozen_image_features: Tensor,
    pub frozen_text_features: Tensor,
}

/// Stage 2 one batch at a time: the loop body of [`run_stage2`], public so that the step
/// benchmark (`examples/step_bench.rs`) and the exactness tests drive the code a run executes.
pub struct Stage2Trainer {
    weights: Weights,
    selected: Vec<String>,
    model: Clip,
    frozen: Clip,
    prompt_ids: Tensor,
    frozen_text: Option<Tensor>,
    /// How many vision blocks (after the stem) both models compute identically; `None` when
    /// even the stem differs.
    shared_vision_blocks: Option<usize>,
    vision_identical: bool,
    text_identical: bool,
    shortcuts: Shortcuts,
    lambdas: ConsistencyWeights,
    optimizer: AdamW,
}

impl Stage2Trainer {
    pub fn new(setup: Stage2Setup, params: &Stage2Params, shortcuts: Shortcuts) -> Result<Self> {
        let Stage2Setup { config, mut weights, frozen, selected, prompt_ids, device } = setup;
        let selected_set: BTreeSet<&str> = selected.iter().map(String::as_str).collect();
        // A tensor the two models hold with equal values and that does not train is the same
        // tensor for both: keeping one copy saves memory, and layers made only of such tensors
        // compute the same thing in both models.
        let mut same = BTreeSet::new();
        for (name, tensor) in weights.iter_mut() {
            if selected_set.contains(name.as_str()) {
                // Training must never write through to the frozen model's tensor.
                if frozen.get(name).is_some_and(|f| f.data_ptr() == tensor.data_ptr()) {
                    *tensor = tensor.detach().copy();
                }
                continue;
            }
            if let Some(f) = frozen.get(name)
                && f.size() == tensor.size()
                && f.kind() == tensor.kind()
                && f.device() == tensor.device()
                && f.equal(tensor)
            {
                *tensor = f.shallow_clone();
                same.insert(name.clone());
            }
        }
        let trainable = mark_trainable(&mut weights, selected)?;
        let model = Clip::with_precision(config, &weights, params.precision)?;
        let frozen_model = Clip::with_precision(config, frozen, params.precision)?;
        let is_same = |name: &str| same.contains(name);
        let prefix_same = |prefix: &str| weights.keys().filter(|k| k.starts_with(prefix)).all(|k| is_same(k));
        let stem = ["visual.conv1.", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre."];
        let shared_vision_blocks = stem.iter().all(|p| prefix_same(p)).then(|| {
            (0..config.vision.layers as usize)
                .take_while(|i| prefix_same(&format!("visual.transformer.resblocks.{i}.")))
                .count()
        });
        let vision_identical = prefix_same("visual.");
        let text_identical =
            weights.keys().filter(|k| !k.starts_with("visual.") && k.as_str() != "logit_scale").all(|k| is_same(k));
        let prompt_ids = prompt_ids.to_device(device);
        let frozen_text = shortcuts.cache_frozen_text.then(|| tch::no_grad(|| frozen_model.encode_text(&prompt_ids)));
        Ok(Stage2Trainer {
            optimizer: AdamW::new(trainable, params.optimizer.clone()),
            selected: selected.to_vec(),
            frozen: frozen_model,
            lambdas: params.lambdas,
            weights,
            model,
            prompt_ids,
            frozen_text,
            shared_vision_blocks,
            vision_identical,
            text_identical,
            shortcuts,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.optimizer.set_lr(lr);
    }

    /// The model being trained and the frozen one.
    pub fn models(&self) -> (&Clip, &Clip) {
        (&self.model, &self.frozen)
    }

    /// The weights being trained, by name (the model's tensors: their `.grad()` after a
    /// backward pass is what the optimizer sees).
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Run `f` for the frozen branch: with autograd off, as a run does, or on (for the tests).
    fn frozen_branch<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.shortcuts.frozen_without_autograd { tch::no_grad(f) } else { f() }
    }

    /// How many vision blocks both models compute identically, run once per batch for both;
    /// `None` when the stem differs or the shortcut is off.
    pub fn shared_vision_blocks(&self) -> Option<usize> {
        self.shared_vision_blocks.filter(|_| self.shortcuts.share_vision_trunk)
    }

    /// The loss of a batch, nothing updated.
    pub fn forward(&self, images: &Tensor, labels: &Tensor) -> Stage2Forward {
        let (trainable_vision, frozen_vision) = (&self.model.visual, &self.frozen.visual);
        let blocks = frozen_vision.transformer.resblocks.len();
        let (frozen_image, image) = match self.shared_vision_blocks() {
            Some(shared) => {
                // Nothing below `shared` trains, so no graph is needed there for either model.
                // The last block stays out of the trunk: `finish` runs it for one token only.
                let shared = shared.min(blocks.saturating_sub(1));
                let trunk = tch::no_grad(|| frozen_vision.blocks(&frozen_vision.embed(images), 0..shared));
                let frozen_image = self.frozen_branch(|| frozen_vision.finish(&trunk, shared));
                let image = if self.vision_identical {
                    frozen_image.shallow_clone()
                } else {
                    trainable_vision.finish(&trunk, shared)
                };
                (frozen_image, image)
            }
            None => (self.frozen_branch(|| self.frozen.encode_image(images)), self.model.encode_image(images)),
        };
        let frozen_text = match &self.frozen_text {
            Some(cached) => cached.shallow_clone(),
            None => self.frozen_branch(|| self.frozen.encode_text(&self.prompt_ids)),
        };
        let text = if self.text_identical && self.shortcuts.cache_frozen_text {
            frozen_text.shallow_clone()
        } else {
            self.model.encode_text(&self.prompt_ids)
        };
        let loss = stage2_loss(
            &Stage2Inputs {
                image_features: &image,
                text_features: &text,
                frozen_image_features: &frozen_image,
                frozen_text_features: &frozen_text,
                logit_scale: &self.model.logit_scale,
                frozen_logit_scale: &self.frozen.logit_scale,
                labels,
            },
            self.lambdas,
        );
        Stage2Forward {
            loss,
            image_features: image,
            text_features: text,
            frozen_image_features: frozen_image,
            frozen_text_features: frozen_text,
        }
    }

    /// Forward, backward and one AdamW update on a batch already on the device. `epoch` and
    /// `step` only label the error of a non-finite loss, which stops before any update.
    pub fn step(&mut self, images: &Tensor, labels: &Tensor, epoch: usize, step: usize) -> Result<Stage2StepOutcome> {
        let forward = self.forward(images, labels);
        let loss = &forward.loss;
        let total = loss.total.double_value(&[]);
        check_finite("stage 2", total, epoch, step, loss_hint(loss.ce.double_value(&[]).is_finite()))?;
        self.optimizer.zero_grad();
        if loss.total.requires_grad() {
            loss.total.backward();
        }
        self.optimizer.step();
        let logits =
            tch::no_grad(|| clip_logits(&forward.image_features, &forward.text_features, &self.model.logit_scale));
        let mut terms = [total, 0.0, 0.0, 0.0, 0.0];
        for (value, term) in terms[1..].iter_mut().zip([&loss.ce, &loss.image_l1, &loss.text_l1, &loss.kl]) {
            *value = term.double_value(&[]);
        }
        Ok(Stage2StepOutcome { terms, acc: accuracy(&logits, labels) })
    }

    /// Final values of the selected tensors.
    pub fn finish(self) -> Weights {
        snapshot(&self.weights, &self.selected)
    }
}
