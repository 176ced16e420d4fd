//! The open_clip half of an export: the weights as they are (open_clip's CLIP uses OpenAI's
//! state-dict names) and `open_clip_config.json` as open_clip's `save_for_hf` writes it, so
//! `create_model_and_transforms("local-dir:DIR")` builds the same model and preprocessing.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::clip::config::{Activation, ClipConfig};
use crate::clip::weights::{Weights, write_safetensors_with};
use crate::data::image::{CLIP_MEAN, CLIP_STD};

pub const MODEL_FILE: &str = "open_clip_model.safetensors";
pub const CONFIG_FILE: &str = crate::clip::activation_source::OPEN_CLIP_CONFIG;

/// open_clip's built-in configs with the same architecture, by the preset they match: the
/// name `create_model_and_transforms(NAME, pretrained=FILE)` takes. `None` for other shapes
/// (mini), which load through `local-dir:` only.
pub fn builtin_name(config: &ClipConfig) -> Option<String> {
    let suffix = if config.activation == Activation::QuickGelu { "-quickgelu" } else { "" };
    ["ViT-B-16", "ViT-B-32", "ViT-L-14"]
        .into_iter()
        .find(|name| ClipConfig::preset(name).is_ok_and(|p| same_shape(&p, config)))
        .map(|name| format!("{name}{suffix}"))
}

fn same_shape(a: &ClipConfig, b: &ClipConfig) -> bool {
    a.embed_dim == b.embed_dim && a.vision == b.vision && a.text == b.text
}

/// `{"model_cfg": ..., "preprocess_cfg": ...}`. open_clip derives vision heads from
/// `head_width` and MLP widths from `mlp_ratio` (`int(width * mlp_ratio)`), so both must come
/// out exact.
pub fn config_json(config: &ClipConfig) -> Result<Value> {
    let (v, t) = (&config.vision, &config.text);
    if v.width % v.heads != 0 {
        bail!("vision width {} is not a multiple of its {} heads; open_clip cannot build it", v.width, v.heads);
    }
    let ratio = |mlp: i64, width: i64| -> Result<f64> {
        let r = mlp as f64 / width as f64;
        if (width as f64 * r) as i64 != mlp {
            bail!("MLP width {mlp} is not width {width} times a ratio open_clip reproduces");
        }
        Ok(r)
    };
    Ok(json!({
        "model_cfg": {
            "embed_dim": config.embed_dim,
            "quick_gelu": config.activation == Activation::QuickGelu,
            "vision_cfg": {
                "image_size": v.image_size,
                "layers": v.layers,
                "width": v.width,
                "head_width": v.width / v.heads,
                "mlp_ratio": ratio(v.mlp_dim, v.width)?,
                "patch_size": v.patch_size,
            },
            "text_cfg": {
                "context_length": t.context_length,
                "vocab_size": t.vocab_size,
                "width": t.width,
                "heads": t.heads,
                "layers": t.layers,
                "mlp_ratio": ratio(t.mlp_dim, t.width)?,
            },
        },
        // CLIP's test transform, what every clip-ast evaluation applies.
        "preprocess_cfg": {
            "size": v.image_size,
            "mode": "RGB",
            "mean": CLIP_MEAN,
            "std": CLIP_STD,
            "interpolation": "bicubic",
            "resize_mode": "shortest",
            "fill_color": 0,
        },
    }))
}

pub fn write(dir: &Path, config: &ClipConfig, weights: &Weights) -> Result<Vec<&'static str>> {
    let text = serde_json::to_string_pretty(&config_json(config)?)? + "\n";
    std::fs::write(dir.join(CONFIG_FILE), text)?;
    write_safetensors_with(weights, &dir.join(MODEL_FILE), Some(super::pt_metadata()))?;
    Ok(vec![MODEL_FILE, CONFIG_FILE])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_name_open_clip_builtins() {
        let b16 = ClipConfig::preset("ViT-B-16").unwrap();
        assert_eq!(builtin_name(&b16).as_deref(), Some("ViT-B-16-quickgelu"));
        assert_eq!(builtin_name(&ClipConfig { activation: Activation::Gelu, ..b16 }).as_deref(), Some("ViT-B-16"));
        assert_eq!(builtin_name(&ClipConfig::preset("mini").unwrap()), None);
        let cfg = config_json(&ClipConfig::preset("mini").unwrap()).unwrap();
        assert_eq!(cfg["model_cfg"]["vision_cfg"]["head_width"], 64);
        assert_eq!(cfg["model_cfg"]["quick_gelu"], true);
    }
}
