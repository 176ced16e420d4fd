//! Weight import: OpenAI's TorchScript archives (fp16 inside), OpenAI/open_clip-named
//! safetensors and Hugging Face `CLIPModel` safetensors, all converted to fp32 tensors in
//! OpenAI naming plus a `config.json` read off the shapes.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use tch::{Kind, Tensor};

use super::activation_source::{self, Recorded};
use super::config::{Activation, ClipConfig};
use super::weights::{self, Weights};

/// The canonical files a weights artifact (or `import-weights --out DIR`) holds.
pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// A directory holding our own `model.safetensors` + `config.json`.
    Canonical,
    OpenAiTorchScript,
    OpenAiSafetensors,
    HuggingFaceSafetensors,
}

impl SourceFormat {
    pub fn describe(self) -> &'static str {
        match self {
            SourceFormat::Canonical => "clip-ast weights folder",
            SourceFormat::OpenAiTorchScript => "OpenAI TorchScript archive",
            SourceFormat::OpenAiSafetensors => "OpenAI/open_clip-named safetensors",
            SourceFormat::HuggingFaceSafetensors => "Hugging Face CLIPModel safetensors",
        }
    }
}

pub struct ImportedModel {
    pub format: SourceFormat,
    pub config: ClipConfig,
    pub weights: Weights,
}

/// Load a model from any supported source. `activation` is `--activation`: needed for
/// checkpoints that do not say which MLP non-linearity they use, checked against the file that
/// says it where there is one (see `activation_source`).
pub fn load(path: &Path, activation: Option<Activation>) -> Result<ImportedModel> {
    if path.is_dir() {
        return load_canonical(path, activation);
    }
    let format = sniff(path)?;
    // Settled before the tensors are read, so a missing `--activation` fails fast.
    let activation = activation_source::settle(path, format, activation, recorded_activation(path, format)?)?;
    let (weights, hf_config) = match format {
        SourceFormat::OpenAiTorchScript => (read_torchscript(path)?, None),
        SourceFormat::OpenAiSafetensors => (weights::read_safetensors(path)?, None),
        SourceFormat::HuggingFaceSafetensors => {
            (hf_to_openai(weights::read_safetensors(path)?, path)?, read_hf_config_beside(path)?)
        }
        SourceFormat::Canonical => unreachable!("directories handled above"),
    };
    let mut config = ClipConfig::infer(&weights::shapes_of(&weights), activation)
        .with_context(|| format!("{}: not a CLIP ViT checkpoint", path.display()))?;
    if let Some(hf) = hf_config {
        config.vision.heads = hf.vision_heads.unwrap_or(config.vision.heads);
        config.text.heads = hf.text_heads.unwrap_or(config.text.heads);
    }
    weights::check_against_config(&weights, &config, path)?;
    Ok(ImportedModel { format, config, weights })
}

/// The activation an import's key holds: `flag` as given, except for OpenAI-named safetensors,
/// whose key holds the activation settled from the open_clip config beside them (the bytes alone
/// do not decide the model). Fails where `load` would fail for want of an activation, so a
/// pipeline stops before it runs anything; a file that is no checkpoint keeps `flag`, and `load`
/// says what is wrong with it.
pub fn activation_for_key(path: &Path, flag: Option<Activation>) -> Result<Option<Activation>> {
    let Ok(format) = sniff(path) else { return Ok(flag) };
    let settled = activation_source::settle(path, format, flag, recorded_activation(path, format)?)?;
    Ok(if format == SourceFormat::OpenAiSafetensors { Some(settled) } else { flag })
}

/// The activation a file beside the checkpoint records: open_clip's config for OpenAI-named
/// safetensors, Hugging Face's config.json for theirs; TorchScript archives have none.
fn recorded_activation(path: &Path, format: SourceFormat) -> Result<Option<Recorded>> {
    Ok(match format {
        SourceFormat::OpenAiSafetensors => activation_source::open_clip_config_beside(path)?,
        SourceFormat::HuggingFaceSafetensors => read_hf_config_beside(path)?.map(|c| c.activation),
        SourceFormat::OpenAiTorchScript | SourceFormat::Canonical => None,
    })
}

/// Write the canonical pair into `dir` (which must exist).
pub fn write_canonical(dir: &Path, config: &ClipConfig, weights: &Weights) -> Result<()> {
    weights::write_safetensors(weights, &dir.join(MODEL_FILE))?;
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, config.to_json() + "\n")
        .with_context(|| format!("{}: cannot write", config_path.display()))
}

fn load_canonical(dir: &Path, activation: Option<Activation>) -> Result<ImportedModel> {
    let (model_path, config_path) = (dir.join(MODEL_FILE), dir.join(CONFIG_FILE));
    if !model_path.is_file() || !config_path.is_file() {
        bail!(
            "{}: a weights folder must hold {MODEL_FILE} and {CONFIG_FILE}; import a checkpoint with `clip-ast import-weights FILE`",
            dir.display()
        );
    }
    let config = ClipConfig::from_json_file(&config_path)?;
    let recorded = Recorded { file: config_path, activation: config.activation };
    activation_source::settle(dir, SourceFormat::Canonical, activation, Some(recorded))?;
    let weights = weights::read_safetensors(&model_path)?;
    weights::check_against_config(&weights, &config, &model_path)?;
    Ok(ImportedModel { format: SourceFormat::Canonical, config, weights })
}

/// Tell the format from the first bytes: a zip archive is TorchScript, an 8-byte length
/// followed by `{` is safetensors; the tensor names then tell OpenAI from Hugging Face.
fn sniff(path: &Path) -> Result<SourceFormat> {
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such file", path.display()),
        _ => anyhow::anyhow!("{}: cannot open ({e})", path.display()),
    })?;
    let mut head = [0u8; 9];
    let n = file.read(&mut head).with_context(|| format!("{}: cannot read", path.display()))?;
    if n >= 4 && &head[..4] == b"PK\x03\x04" {
        return Ok(SourceFormat::OpenAiTorchScript);
    }
    if n == 9 && head[8] == b'{' {
        let names = safetensors_names(path)?;
        if names.iter().any(|n| n.starts_with("vision_model.") || n.starts_with("text_model.")) {
            return Ok(SourceFormat::HuggingFaceSafetensors);
        }
        return Ok(SourceFormat::OpenAiSafetensors);
    }
    bail!(
        "{}: neither a safetensors file nor a TorchScript archive (OpenAI's .pt); pickled state dicts are not read, save them with safetensors.torch.save_file",
        path.display()
    )
}

fn safetensors_names(path: &Path) -> Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .with_context(|| format!("{}: not a valid safetensors file (too short)", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{}: not a valid safetensors file (header of {len} bytes)", path.display());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .with_context(|| format!("{}: not a valid safetensors file (truncated header)", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{}: not a valid safetensors file (header is not JSON)", path.display()))?;
    Ok(header.keys().filter(|k| *k != "__metadata__").cloned().collect())
}

fn read_torchscript(path: &Path) -> Result<Weights> {
    let module = tch::CModule::load(path)
        .map_err(|e| anyhow::anyhow!("{}: not a loadable TorchScript archive ({})", path.display(), first_line(&e)))?;
    let params = module
        .named_parameters()
        .map_err(|e| anyhow::anyhow!("{}: cannot list parameters ({})", path.display(), first_line(&e)))?;
    // OpenAI ships fp16; everything we compute, and the importance statistics in particular,
    // needs fp32 weights.
    Ok(params
        .into_iter()
        .map(|(name, t)| (name, t.detach().to_kind(Kind::Float).to_device(tch::Device::Cpu)))
        .collect())
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

/// What a Hugging Face `config.json` beside the weights says that the shapes cannot.
struct HfConfig {
    activation: Recorded,
    vision_heads: Option<i64>,
    text_heads: Option<i64>,
}

fn read_hf_config_beside(path: &Path) -> Result<Option<HfConfig>> {
    let Some(config_path) = path.parent().map(|p| p.join("config.json")).filter(|p| p.is_file()) else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(&config_path).with_context(|| format!("{}: cannot read", config_path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let heads = |tower: &str| json[tower]["num_attention_heads"].as_i64();
    // transformers' CLIPVisionConfig defaults hidden_act to quick_gelu.
    let activation = match json["vision_config"]["hidden_act"].as_str().unwrap_or("quick_gelu") {
        "quick_gelu" => Activation::QuickGelu,
        "gelu" => Activation::Gelu,
        other => bail!("{}: hidden_act `{other}` is not supported (quick_gelu, gelu)", config_path.display()),
    };
    let activation = Recorded { file: config_path, activation };
    Ok(Some(HfConfig { activation, vision_heads: heads("vision_config"), text_heads: heads("text_config") }))
}

/// Rename Hugging Face `CLIPModel` tensors to OpenAI's: fuse q/k/v into `in_proj`, transpose the
/// two projections (HF stores them as `nn.Linear` weights).
fn hf_to_openai(hf: Weights, path: &Path) -> Result<Weights> {
    let mut out = Weights::new();
    let mut qkv: std::collections::BTreeMap<String, [Option<Tensor>; 3]> = Default::default();
    for (name, tensor) in hf {
        if name.ends_with("position_ids") {
            continue; // a buffer of 0..n that older transformers versions saved
        }
        let (tower_prefix, rest) = if let Some(rest) = name.strip_prefix("vision_model.") {
            ("visual.", rest)
        } else if let Some(rest) = name.strip_prefix("text_model.") {
            ("", rest)
        } else {
            match name.as_str() {
                "visual_projection.weight" => out.insert("visual.proj".into(), tensor.tr().contiguous()),
                "text_projection.weight" => out.insert("text_projection".into(), tensor.tr().contiguous()),
                "logit_scale" => out.insert("logit_scale".into(), tensor.reshape(Vec::<i64>::new())),
                _ => bail!("{}: tensor `{name}` is not part of a Hugging Face CLIPModel", path.display()),
            };
            continue;
        };
        if let Some(layer_rest) = rest.strip_prefix("encoder.layers.") {
            let (index, field) = layer_rest
                .split_once('.')
                .with_context(|| format!("{}: unexpected tensor `{name}`", path.display()))?;
            let block = format!("{tower_prefix}transformer.resblocks.{index}.");
            let slot = match field {
                f if f.starts_with("self_attn.q_proj.") => Some(0),
                f if f.starts_with("self_attn.k_proj.") => Some(1),
                f if f.starts_with("self_attn.v_proj.") => Some(2),
                _ => None,
            };
            if let Some(slot) = slot {
                let kind = if field.ends_with("weight") { "in_proj_weight" } else { "in_proj_bias" };
                qkv.entry(format!("{block}attn.{kind}")).or_default()[slot] = Some(tensor);
                continue;
            }
            let mapped = match field {
                "self_attn.out_proj.weight" => "attn.out_proj.weight",
                "self_attn.out_proj.bias" => "attn.out_proj.bias",
                "layer_norm1.weight" => "ln_1.weight",
                "layer_norm1.bias" => "ln_1.bias",
                "layer_norm2.weight" => "ln_2.weight",
                "layer_norm2.bias" => "ln_2.bias",
                "mlp.fc1.weight" => "mlp.c_fc.weight",
                "mlp.fc1.bias" => "mlp.c_fc.bias",
                "mlp.fc2.weight" => "mlp.c_proj.weight",
                "mlp.fc2.bias" => "mlp.c_proj.bias",
                _ => bail!("{}: tensor `{name}` is not part of a Hugging Face CLIPModel", path.display()),
            };
            out.insert(format!("{block}{mapped}"), tensor);
            continue;
        }
        let mapped = match (tower_prefix, rest) {
            ("visual.", "embeddings.class_embedding") => "visual.class_embedding",
            ("visual.", "embeddings.patch_embedding.weight") => "visual.conv1.weight",
            ("visual.", "embeddings.position_embedding.weight") => "visual.positional_embedding",
            // "pre_layrnorm" is spelled that way in transformers.
            ("visual.", "pre_layrnorm.weight") => "visual.ln_pre.weight",
            ("visual.", "pre_layrnorm.bias") => "visual.ln_pre.bias",
            ("visual.", "post_layernorm.weight") => "visual.ln_post.weight",
            ("visual.", "post_layernorm.bias") => "visual.ln_post.bias",
            ("", "embeddings.token_embedding.weight") => "token_embedding.weight",
            ("", "embeddings.position_embedding.weight") => "positional_embedding",
            ("", "final_layer_norm.weight") => "ln_final.weight",
            ("", "final_layer_norm.bias") => "ln_final.bias",
            _ => bail!("{}: tensor `{name}` is not part of a Hugging Face CLIPModel", path.display()),
        };
        out.insert(mapped.to_string(), tensor);
    }
    for (name, parts) in qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            bail!("{}: q, k and v projections incomplete for `{name}`", path.display());
        };
        out.insert(name, Tensor::cat(&[q, k, v], 0));
    }
    Ok(out)
}
