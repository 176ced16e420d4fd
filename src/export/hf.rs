//! The Hugging Face half of an export: `model.safetensors` in `CLIPModel` naming (the table in
//! `clip::hf_names`), its `config.json`, and the tokenizer and image-processor files
//! `CLIPProcessor.from_pretrained` reads, made from the BPE file the binary embeds.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use crate::clip::config::{Activation, ClipConfig};
use crate::clip::hf_names::openai_to_hf;
use crate::clip::tokenizer::vocab::BpeTables;
use crate::clip::tokenizer::{END_OF_TEXT, START_OF_TEXT};
use crate::clip::weights::{Weights, write_safetensors_with};
use crate::data::image::{CLIP_MEAN, CLIP_STD};

pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

/// transformers' name of the MLP non-linearity.
fn hidden_act(activation: Activation) -> &'static str {
    match activation {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
    }
}

/// `CLIPConfig` as `save_pretrained` writes it, with the sizes of this model. The EOS id is
/// 49407 (not transformers' legacy 2), so the text tower pools at the first end-of-text token
/// as OpenAI's (argmax of the ids) does.
pub fn config_json(config: &ClipConfig, logit_scale: f64) -> Value {
    let (v, t) = (&config.vision, &config.text);
    let act = hidden_act(config.activation);
    json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "dtype": "float32",
        "projection_dim": config.embed_dim,
        "logit_scale_init_value": logit_scale,
        "initializer_factor": 1.0,
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": t.vocab_size,
            "hidden_size": t.width,
            "intermediate_size": t.mlp_dim,
            "projection_dim": config.embed_dim,
            "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads,
            "max_position_embeddings": t.context_length,
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "bos_token_id": START_OF_TEXT,
            "eos_token_id": END_OF_TEXT,
            "pad_token_id": END_OF_TEXT,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": v.width,
            "intermediate_size": v.mlp_dim,
            "projection_dim": config.embed_dim,
            "num_hidden_layers": v.layers,
            "num_attention_heads": v.heads,
            "num_channels": 3,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
        },
    })
}

/// CLIP's test transform in `CLIPImageProcessor` terms: shorter side to the model's size
/// (bicubic, resample 3), centre crop, rescale by 1/255, OpenAI's mean and std.
fn preprocessor_json(image_size: i64) -> Value {
    json!({
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "CLIPProcessor",
        "do_convert_rgb": true,
        "do_resize": true,
        "size": {"shortest_edge": image_size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
    })
}

fn tokenizer_config_json(context_length: i64) -> Value {
    json!({
        "tokenizer_class": "CLIPTokenizer",
        "processor_class": "CLIPProcessor",
        "model_max_length": context_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": true,
        "errors": "replace",
        "clean_up_tokenization_spaces": false,
        "add_prefix_space": false,
    })
}

fn special_tokens_json() -> Value {
    json!({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS})
}

/// `vocab.json` (symbol → id, in id order) and `merges.txt` (GPT-2's `#version` header, then
/// one merge per line in rank order).
fn tokenizer_files() -> Result<(String, String)> {
    let tables = BpeTables::embedded();
    let mut vocab = String::from("{");
    for (id, symbol) in tables.symbols.iter().enumerate() {
        if id > 0 {
            vocab.push(',');
        }
        vocab.push_str(&serde_json::to_string(symbol)?);
        vocab.push_str(&format!(":{id}"));
    }
    vocab.push_str("}\n");
    let mut merges = String::from("#version: 0.2\n");
    for (left, right) in &tables.merges {
        merges.push_str(&format!("{left} {right}\n"));
    }
    Ok((vocab, merges))
}

pub fn write(dir: &Path, config: &ClipConfig, weights: &Weights) -> Result<Vec<&'static str>> {
    let logit_scale = weights.get("logit_scale").map_or(2.6592, |t| t.double_value(&[]));
    let pretty = |v: &Value| -> Result<String> { Ok(serde_json::to_string_pretty(v)? + "\n") };
    std::fs::write(dir.join(CONFIG_FILE), pretty(&config_json(config, logit_scale))?)?;
    write_safetensors_with(&openai_to_hf(weights)?, &dir.join(MODEL_FILE), Some(super::pt_metadata()))?;
    let (vocab, merges) = tokenizer_files()?;
    std::fs::write(dir.join("vocab.json"), vocab)?;
    std::fs::write(dir.join("merges.txt"), merges)?;
    std::fs::write(dir.join("tokenizer_config.json"), pretty(&tokenizer_config_json(config.text.context_length))?)?;
    std::fs::write(dir.join("special_tokens_map.json"), pretty(&special_tokens_json())?)?;
    std::fs::write(dir.join("preprocessor_config.json"), pretty(&preprocessor_json(config.vision.image_size))?)?;
    Ok(vec![
        MODEL_FILE,
        CONFIG_FILE,
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_says_the_activation_and_import_reads_it_back() {
        let config = ClipConfig { activation: Activation::Gelu, ..ClipConfig::preset("mini").unwrap() };
        let json = config_json(&config, 4.6);
        assert_eq!(json["vision_config"]["hidden_act"], "gelu");
        assert_eq!(json["text_config"]["hidden_act"], "gelu");
        assert_eq!(json["vision_config"]["num_attention_heads"], 2);
        let (vocab, merges) = tokenizer_files().unwrap();
        let vocab: serde_json::Map<String, Value> = serde_json::from_str(&vocab).unwrap();
        assert_eq!(vocab.len(), 49408);
        assert_eq!(vocab["<|endoftext|>"], 49407);
        assert_eq!(merges.lines().count(), 1 + 48894);
    }
}
