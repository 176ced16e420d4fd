//! CLIP: the two towers and the learned temperature.

use anyhow::Result;
use tch::{Device, Tensor};

use super::config::ClipConfig;
use super::layers::{Precision, TensorSource};
use super::text::TextTower;
use super::vision::VisionTower;
use super::weights::Weights;

pub struct Clip {
    pub config: ClipConfig,
    pub visual: VisionTower,
    pub text: TextTower,
    /// Stored as log(1/temperature), as OpenAI stores it.
    pub logit_scale: Tensor,
}

impl Clip {
    /// Build the model over `weights` (already checked against `config`). The model shares
    /// storage with the map, so moving the map to a device first moves the model.
    pub fn new(config: &ClipConfig, weights: &Weights) -> Result<Clip> {
        Clip::with_precision(config, weights, Precision::Fp32)
    }

    /// The model computing its matrix products under `precision` (see [`Precision`]).
    pub fn with_precision(config: &ClipConfig, weights: &Weights, precision: Precision) -> Result<Clip> {
        let src = TensorSource::new(weights, precision);
        Ok(Clip {
            config: config.clone(),
            visual: VisionTower::load(&src.sub("visual"), &config.vision, config.activation)?,
            text: TextTower::load(&src, &config.text, config.activation)?,
            logit_scale: src.get("logit_scale")?,
        })
    }

    pub fn encode_image(&self, images: &Tensor) -> Tensor {
        self.visual.forward(images)
    }

    pub fn encode_text(&self, ids: &Tensor) -> Tensor {
        self.text.forward(ids)
    }
}

/// Move every tensor of a weight map to `device` (a no-op on the CPU).
pub fn weights_to_device(weights: Weights, device: Device) -> Weights {
    if device == Device::Cpu {
        return weights;
    }
    weights.into_iter().map(|(k, t)| (k, t.to_device(device))).collect()
}
