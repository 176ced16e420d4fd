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
        let on_cpu = weights.values().next().is_some_and(|t| t.device() == Device::Cpu);
        if precision == Precision::Bf16 && on_cpu && cfg!(target_arch = "x86_64") && !cpu_has_bf16_units() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "warning: this CPU has no bf16 matrix units (AVX512-BF16 or AMX); libtorch emulates bf16 \
                     products, so --precision bf16 runs several times slower than fp32 here"
                )
            });
        }
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

/// Whether the CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX-BF16). Without
/// them libtorch's bf16 products are emulated and far slower than fp32 (measured on an AVX2
/// EPYC: 1 against 130 GFLOP/s), so the bf16 policy only pays on such CPUs or a GPU.
pub fn cpu_has_bf16_units() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|flags| flags.split_whitespace().any(|f| f == "avx512_bf16" || f == "amx_bf16"))
    })
}

/// Move every tensor of a weight map to `device` (a no-op on the CPU).
pub fn weights_to_device(weights: Weights, device: Device) -> Weights {
    if device == Device::Cpu {
        return weights;
    }
    weights.into_iter().map(|(k, t)| (k, t.to_device(device))).collect()
}
