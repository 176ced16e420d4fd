//! Random initialisation for training a CLIP from scratch (the demo's foundation model, and
//! test models), following the scales of OpenAI's `initialize_parameters`.

use tch::{Device, Kind, Tensor};

use super::config::ClipConfig;
use super::weights::Weights;

/// Seeded, so the same preset and seed give the same tensors on the CPU.
pub fn init_weights(config: &ClipConfig, seed: i64) -> Weights {
    tch::manual_seed(seed);
    let opts = (Kind::Float, Device::Cpu);
    let mut out = Weights::new();
    for (name, shape) in config.tensor_shapes() {
        let normal = |std: f64| Tensor::randn(shape.as_slice(), opts) * std;
        let (width, layers) = if name.starts_with("visual.") {
            (config.vision.width as f64, config.vision.layers as f64)
        } else {
            (config.text.width as f64, config.text.layers as f64)
        };
        // Residual branches are scaled down with depth so the stream's variance stays bounded.
        let attn_std = width.powf(-0.5);
        let proj_std = attn_std * (2.0 * layers).powf(-0.5);
        let fc_std = (2.0 * width).powf(-0.5);
        let tensor = if name == "logit_scale" {
            Tensor::from((1.0f32 / 0.07).ln())
        } else if name.ends_with("ln_1.weight")
            || name.ends_with("ln_2.weight")
            || name.contains("ln_pre.weight")
            || name.contains("ln_post.weight")
            || name == "ln_final.weight"
        {
            Tensor::ones(shape.as_slice(), opts)
        } else if name.ends_with("bias") {
            Tensor::zeros(shape.as_slice(), opts)
        } else if name == "token_embedding.weight" {
            normal(0.02)
        } else if name == "positional_embedding" {
            normal(0.01)
        } else if name.ends_with("attn.in_proj_weight") {
            normal(attn_std)
        } else if name.ends_with("out_proj.weight") || name.ends_with("c_proj.weight") {
            normal(proj_std)
        } else if name.ends_with("c_fc.weight") {
            normal(fc_std)
        } else if name == "visual.conv1.weight" {
            let fan_in = (3 * config.vision.patch_size * config.vision.patch_size) as f64;
            normal(fan_in.powf(-0.5))
        } else {
            // class/positional embeddings of the image tower and both projections.
            normal(width.powf(-0.5))
        };
        out.insert(name, tensor);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_complete() {
        let config = ClipConfig::preset("mini").unwrap();
        let a = init_weights(&config, 7);
        let b = init_weights(&config, 7);
        assert_eq!(a.len(), config.tensor_shapes().len());
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{name} differs between equal seeds");
        }
        let c = init_weights(&config, 8);
        assert!(!a["visual.proj"].equal(&c["visual.proj"]));
        let std = a["transformer.resblocks.0.attn.in_proj_weight"].std(true).double_value(&[]);
        assert!((std - 128f64.powf(-0.5)).abs() < 0.01, "std {std}");
    }
}
