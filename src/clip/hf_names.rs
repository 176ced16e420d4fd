//! The one table between OpenAI's state-dict names (ours) and Hugging Face `CLIPModel`'s, read
//! in one direction by import and in the other by export, so the two cannot drift apart.
//!
//! Three differences are not renames: HF splits OpenAI's fused `in_proj` into q/k/v
//! projections, stores the two output projections as `nn.Linear` weights (transposed), and
//! keeps `logit_scale` as a 0-d tensor as OpenAI does.

use anyhow::{Result, bail};
use tch::Tensor;

use super::weights::Weights;

/// Per-block tensors: (HF name inside `encoder.layers.N.`, OpenAI name inside `resblocks.N.`).
pub const BLOCK_FIELDS: [(&str, &str); 10] = [
    ("self_attn.out_proj.weight", "attn.out_proj.weight"),
    ("self_attn.out_proj.bias", "attn.out_proj.bias"),
    ("layer_norm1.weight", "ln_1.weight"),
    ("layer_norm1.bias", "ln_1.bias"),
    ("layer_norm2.weight", "ln_2.weight"),
    ("layer_norm2.bias", "ln_2.bias"),
    ("mlp.fc1.weight", "mlp.c_fc.weight"),
    ("mlp.fc1.bias", "mlp.c_fc.bias"),
    ("mlp.fc2.weight", "mlp.c_proj.weight"),
    ("mlp.fc2.bias", "mlp.c_proj.bias"),
];

/// The q, k, v projections HF keeps apart, in the order OpenAI stacks them in `in_proj`.
pub const QKV_PREFIXES: [&str; 3] = ["self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."];

/// Tower tensors outside the blocks: (HF name, OpenAI name). "pre_layrnorm" is spelled that
/// way in transformers.
pub const TOWER_TENSORS: [(&str, &str); 11] = [
    ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
    ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"),
    ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"),
    ("vision_model.post_layernorm.weight", "visual.ln_post.weight"),
    ("vision_model.post_layernorm.bias", "visual.ln_post.bias"),
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text_model.final_layer_norm.weight", "ln_final.weight"),
    ("text_model.final_layer_norm.bias", "ln_final.bias"),
];

/// Projections HF stores transposed: (HF name, OpenAI name).
pub const TRANSPOSED: [(&str, &str); 2] =
    [("visual_projection.weight", "visual.proj"), ("text_projection.weight", "text_projection")];

/// The towers' block prefixes: (HF, OpenAI).
pub const TOWERS: [(&str, &str); 2] = [
    ("vision_model.encoder.layers.", "visual.transformer.resblocks."),
    ("text_model.encoder.layers.", "transformer.resblocks."),
];

/// OpenAI-named weights (checked against a config) in `CLIPModel` naming.
pub fn openai_to_hf(weights: &Weights) -> Result<Weights> {
    let mut out = Weights::new();
    for (name, tensor) in weights {
        if let Some(hf) = lookup_openai(name) {
            out.insert(hf, tensor.shallow_clone());
            continue;
        }
        if let Some((hf, _)) = TRANSPOSED.iter().find(|(_, ours)| ours == name) {
            out.insert(hf.to_string(), tensor.tr().contiguous());
            continue;
        }
        if name == "logit_scale" {
            out.insert(name.clone(), tensor.shallow_clone());
            continue;
        }
        let Some((hf_block, field)) = block_of_openai(name) else {
            bail!("tensor `{name}` has no Hugging Face CLIPModel name");
        };
        let kind = match field {
            "attn.in_proj_weight" => "weight",
            "attn.in_proj_bias" => "bias",
            _ => match BLOCK_FIELDS.iter().find(|(_, ours)| *ours == field) {
                Some((hf, _)) => {
                    out.insert(format!("{hf_block}{hf}"), tensor.shallow_clone());
                    continue;
                }
                None => bail!("tensor `{name}` has no Hugging Face CLIPModel name"),
            },
        };
        for (prefix, part) in QKV_PREFIXES.iter().zip(tensor.chunk(3, 0)) {
            out.insert(format!("{hf_block}{prefix}{kind}"), part.contiguous());
        }
    }
    Ok(out)
}

/// The HF name of a tower tensor outside the blocks.
fn lookup_openai(name: &str) -> Option<String> {
    TOWER_TENSORS.iter().find(|(_, ours)| *ours == name).map(|(hf, _)| hf.to_string())
}

/// `visual.transformer.resblocks.3.ln_1.weight` → (`vision_model.encoder.layers.3.`, `ln_1.weight`).
fn block_of_openai(name: &str) -> Option<(String, &str)> {
    TOWERS.iter().find_map(|(hf, ours)| {
        let rest = name.strip_prefix(ours)?;
        let (index, field) = rest.split_once('.')?;
        index.parse::<u32>().ok()?;
        Some((format!("{hf}{index}."), field))
    })
}

/// Hugging Face `CLIPModel` tensors in OpenAI naming: q/k/v fused into `in_proj`, the two
/// projections transposed back. `source` names the file in errors.
pub fn hf_to_openai(hf: Weights, source: &std::path::Path) -> Result<Weights> {
    let foreign =
        |name: &str| anyhow::anyhow!("{}: tensor `{name}` is not part of a Hugging Face CLIPModel", source.display());
    let mut out = Weights::new();
    let mut qkv: std::collections::BTreeMap<String, [Option<Tensor>; 3]> = Default::default();
    for (name, tensor) in hf {
        if name.ends_with("position_ids") {
            continue; // a buffer of 0..n that older transformers versions saved
        }
        if let Some((_, ours)) = TOWER_TENSORS.iter().find(|(hf, _)| *hf == name) {
            out.insert(ours.to_string(), tensor);
            continue;
        }
        if let Some((_, ours)) = TRANSPOSED.iter().find(|(hf, _)| *hf == name) {
            out.insert(ours.to_string(), tensor.tr().contiguous());
            continue;
        }
        if name == "logit_scale" {
            out.insert(name, tensor.reshape(Vec::<i64>::new()));
            continue;
        }
        let (block, field) = TOWERS
            .iter()
            .find_map(|(hf, ours)| {
                let (index, field) = name.strip_prefix(hf)?.split_once('.')?;
                Some((format!("{ours}{index}."), field.to_string()))
            })
            .ok_or_else(|| foreign(&name))?;
        if let Some(slot) = QKV_PREFIXES.iter().position(|p| field.starts_with(p)) {
            let kind = if field.ends_with("weight") { "in_proj_weight" } else { "in_proj_bias" };
            qkv.entry(format!("{block}attn.{kind}")).or_default()[slot] = Some(tensor);
            continue;
        }
        let (_, ours) = BLOCK_FIELDS.iter().find(|(hf, _)| *hf == field).ok_or_else(|| foreign(&name))?;
        out.insert(format!("{block}{ours}"), tensor);
    }
    for (name, parts) in qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            bail!("{}: q, k and v projections incomplete for `{name}`", source.display());
        };
        out.insert(name, Tensor::cat(&[q, k, v], 0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::ClipConfig;

    #[test]
    fn openai_to_hf_and_back_is_exact() {
        let config = ClipConfig::preset("mini").unwrap();
        // Distinct values everywhere, without the global RNG that other tests seed concurrently.
        let weights: Weights = config
            .tensor_shapes()
            .into_iter()
            .enumerate()
            .map(|(i, (name, shape))| {
                let n: i64 = shape.iter().product();
                let values = (Tensor::arange(n, (tch::Kind::Float, tch::Device::Cpu)) + i as f64 * 0.37).sin();
                (name, values.reshape(&shape))
            })
            .collect();
        let hf = openai_to_hf(&weights).unwrap();
        // 16 per block in HF (q, k, v apart) against 12, the rest one to one.
        let blocks = config.vision.layers + config.text.layers;
        assert_eq!(hf.len() as i64, weights.len() as i64 + 4 * blocks);
        assert_eq!(hf["visual_projection.weight"].size(), vec![config.embed_dim, config.vision.width]);
        assert!(hf.contains_key("vision_model.pre_layrnorm.weight"));
        assert!(hf.contains_key("text_model.encoder.layers.3.self_attn.v_proj.bias"));
        let back = hf_to_openai(hf, std::path::Path::new("x")).unwrap();
        assert_eq!(back.len(), weights.len());
        for (name, t) in &weights {
            assert!(t.equal(&back[name]), "{name}");
        }
    }
}
