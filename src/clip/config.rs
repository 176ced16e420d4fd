//! One config struct for the whole model, with the presets we ship and inference of the
//! architecture from a state dict's shapes (so imported weights need no side file).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// MLP non-linearity. OpenAI's checkpoints use QuickGELU; LAION's open_clip ones use GELU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// x·σ(1.702x), OpenAI's
    #[value(name = "quick_gelu", alias = "quick-gelu")]
    QuickGelu,
    /// exact GELU, LAION's / open_clip's
    Gelu,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub image_size: i64,
    pub patch_size: i64,
    pub width: i64,
    pub layers: i64,
    pub heads: i64,
    pub mlp_dim: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextConfig {
    pub context_length: i64,
    pub vocab_size: i64,
    pub width: i64,
    pub layers: i64,
    pub heads: i64,
    pub mlp_dim: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub embed_dim: i64,
    pub activation: Activation,
    pub vision: VisionConfig,
    pub text: TextConfig,
}

/// Preset names accepted by `--preset`.
pub const PRESETS: &[&str] = &["mini", "ViT-B-16", "ViT-B-32", "ViT-L-14"];

/// Attention heads follow OpenAI's rule: one head per 64 channels.
const HEAD_WIDTH: i64 = 64;

impl VisionConfig {
    fn openai(image_size: i64, patch_size: i64, width: i64, layers: i64) -> Self {
        VisionConfig { image_size, patch_size, width, layers, heads: width / HEAD_WIDTH, mlp_dim: 4 * width }
    }

    /// Patches per side.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }
}

impl TextConfig {
    fn openai(width: i64, layers: i64) -> Self {
        TextConfig {
            context_length: 77,
            vocab_size: 49408,
            width,
            layers,
            heads: width / HEAD_WIDTH,
            mlp_dim: 4 * width,
        }
    }
}

impl ClipConfig {
    /// The architectures of OpenAI's released ViT checkpoints, plus `mini`: a 4-block model at
    /// 32×32 pixels in 8×8 patches (17 tokens) for tests and the embedded demo, small enough
    /// to pretrain on two CPU cores in minutes.
    pub fn preset(name: &str) -> Result<ClipConfig> {
        let quick = Activation::QuickGelu;
        Ok(match name {
            "ViT-B-16" => ClipConfig {
                embed_dim: 512,
                activation: quick,
                vision: VisionConfig::openai(224, 16, 768, 12),
                text: TextConfig::openai(512, 12),
            },
            "ViT-B-32" => ClipConfig {
                embed_dim: 512,
                activation: quick,
                vision: VisionConfig::openai(224, 32, 768, 12),
                text: TextConfig::openai(512, 12),
            },
            "ViT-L-14" => ClipConfig {
                embed_dim: 768,
                activation: quick,
                vision: VisionConfig::openai(224, 14, 1024, 24),
                text: TextConfig::openai(768, 12),
            },
            "mini" => ClipConfig {
                embed_dim: 128,
                activation: quick,
                vision: VisionConfig::openai(32, 8, 128, 4),
                text: TextConfig::openai(128, 4),
            },
            other => bail!("unknown model preset `{other}`; known presets: {}", PRESETS.join(", ")),
        })
    }

    /// Read the architecture off OpenAI-named tensor shapes. Heads are not visible in shapes;
    /// OpenAI's one-head-per-64-channels rule is assumed unless `heads` overrides it.
    pub fn infer(shapes: &BTreeMap<String, Vec<i64>>, activation: Activation) -> Result<ClipConfig> {
        let dims = |name: &str| -> Result<&Vec<i64>> {
            shapes.get(name).with_context(|| format!("tensor `{name}` is missing, so the architecture cannot be read"))
        };
        let conv = dims("visual.conv1.weight")?;
        if conv.len() != 4 {
            bail!("tensor `visual.conv1.weight` has shape {conv:?}, expected 4 dimensions");
        }
        let (vision_width, patch_size) = (conv[0], conv[3]);
        let positions = dims("visual.positional_embedding")?[0] - 1;
        let grid = (positions as f64).sqrt().round() as i64;
        if grid * grid != positions {
            bail!("`visual.positional_embedding` has {positions} patch positions, not a square grid");
        }
        let proj = dims("visual.proj")?;
        let token = dims("token_embedding.weight")?;
        let text_width = dims("ln_final.weight")?[0];
        let count_blocks = |prefix: &str| {
            (0..).take_while(|i| shapes.contains_key(&format!("{prefix}{i}.ln_1.weight"))).count() as i64
        };
        let vision_mlp = dims("visual.transformer.resblocks.0.mlp.c_fc.weight")?[0];
        let text_mlp = dims("transformer.resblocks.0.mlp.c_fc.weight")?[0];
        Ok(ClipConfig {
            embed_dim: proj[1],
            activation,
            vision: VisionConfig {
                image_size: grid * patch_size,
                patch_size,
                width: vision_width,
                layers: count_blocks("visual.transformer.resblocks."),
                heads: (vision_width / HEAD_WIDTH).max(1),
                mlp_dim: vision_mlp,
            },
            text: TextConfig {
                context_length: dims("positional_embedding")?[0],
                vocab_size: token[0],
                width: text_width,
                layers: count_blocks("transformer.resblocks."),
                heads: (text_width / HEAD_WIDTH).max(1),
                mlp_dim: text_mlp,
            },
        })
    }

    /// Every tensor of the model with its shape, in OpenAI's state-dict naming.
    pub fn tensor_shapes(&self) -> BTreeMap<String, Vec<i64>> {
        let mut out = BTreeMap::new();
        let v = &self.vision;
        let t = &self.text;
        let mut put = |name: String, shape: Vec<i64>| {
            out.insert(name, shape);
        };
        put("visual.conv1.weight".into(), vec![v.width, 3, v.patch_size, v.patch_size]);
        put("visual.class_embedding".into(), vec![v.width]);
        put("visual.positional_embedding".into(), vec![v.grid() * v.grid() + 1, v.width]);
        for part in ["ln_pre", "ln_post"] {
            put(format!("visual.{part}.weight"), vec![v.width]);
            put(format!("visual.{part}.bias"), vec![v.width]);
        }
        put("visual.proj".into(), vec![v.width, self.embed_dim]);
        for (name, shape) in block_tensor_shapes(v.width, v.mlp_dim) {
            for i in 0..v.layers {
                put(format!("visual.transformer.resblocks.{i}.{name}"), shape.clone());
            }
        }
        put("token_embedding.weight".into(), vec![t.vocab_size, t.width]);
        put("positional_embedding".into(), vec![t.context_length, t.width]);
        put("ln_final.weight".into(), vec![t.width]);
        put("ln_final.bias".into(), vec![t.width]);
        put("text_projection".into(), vec![t.width, self.embed_dim]);
        for (name, shape) in block_tensor_shapes(t.width, t.mlp_dim) {
            for i in 0..t.layers {
                put(format!("transformer.resblocks.{i}.{name}"), shape.clone());
            }
        }
        put("logit_scale".into(), vec![]);
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    pub fn from_json_file(path: &std::path::Path) -> Result<ClipConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a clip-ast model config", path.display()))
    }
}

/// The 12 tensors of one residual attention block, as OpenAI names them; the selection
/// stage ranks exactly these.
pub fn block_tensor_shapes(width: i64, mlp_dim: i64) -> Vec<(&'static str, Vec<i64>)> {
    vec![
        ("ln_1.weight", vec![width]),
        ("ln_1.bias", vec![width]),
        ("attn.in_proj_weight", vec![3 * width, width]),
        ("attn.in_proj_bias", vec![3 * width]),
        ("attn.out_proj.weight", vec![width, width]),
        ("attn.out_proj.bias", vec![width]),
        ("ln_2.weight", vec![width]),
        ("ln_2.bias", vec![width]),
        ("mlp.c_fc.weight", vec![mlp_dim, width]),
        ("mlp.c_fc.bias", vec![mlp_dim]),
        ("mlp.c_proj.weight", vec![width, mlp_dim]),
        ("mlp.c_proj.bias", vec![width]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_shape_inference() {
        for name in PRESETS {
            let config = ClipConfig::preset(name).unwrap();
            let inferred = ClipConfig::infer(&config.tensor_shapes(), config.activation).unwrap();
            assert_eq!(inferred, config, "{name}");
        }
    }

    #[test]
    fn vit_b_16_has_openai_tensor_count() {
        // open_clip 3.3.0's ViT-B-16-quickgelu state dict holds 302 tensors (counted there).
        let shapes = ClipConfig::preset("ViT-B-16").unwrap().tensor_shapes();
        assert_eq!(shapes.len(), 302);
        assert_eq!(shapes["visual.positional_embedding"], vec![197, 768]);
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let err = ClipConfig::preset("ViT-H-14").unwrap_err().to_string();
        assert!(err.contains("ViT-H-14") && err.contains("ViT-B-16"), "{err}");
    }
}
