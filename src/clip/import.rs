//! Weight import: OpenAI's TorchScript archives (fp16 inside), OpenAI/open_clip-named
//! safetensors and Hugging Face `CLIPModel` safetensors, all converted to fp32 tensors in
//! OpenAI naming plus a `config.json` read off the shapes.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use tch::Kind;

use super::activation_source::{self, Recorded};
use super::config::{Activation, ClipConfig};
use super::hf_names;
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
    let checkpoint = checkpoint_in(path);
    let path = checkpoint.as_path();
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
            (hf_names::hf_to_openai(weights::read_safetensors(path)?, path)?, read_hf_config_beside(path)?)
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

/// The checkpoint file inside a folder `clip-ast export` (or open_clip's or transformers'
/// `save_pretrained`) wrote: `open_clip_model.safetensors` where there is one (OpenAI naming,
/// its activation in `open_clip_config.json`), else a Hugging Face `model.safetensors` whose
/// `config.json` is a `CLIPModel`'s. Anything else (a file, our own weights folder) is returned
/// as it is.
pub fn checkpoint_in(path: &Path) -> std::path::PathBuf {
    if !path.is_dir() {
        return path.to_path_buf();
    }
    let open_clip = path.join("open_clip_model.safetensors");
    if open_clip.is_file() && path.join(activation_source::OPEN_CLIP_CONFIG).is_file() {
        return open_clip;
    }
    let hf = path.join(MODEL_FILE);
    let is_hf_config = std::fs::read_to_string(path.join(CONFIG_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|c| c.get("vision_config").is_some());
    if hf.is_file() && is_hf_config { hf } else { path.to_path_buf() }
}

/// The activation an import's key holds: `flag` as given, except for OpenAI-named safetensors,
/// whose key holds the activation settled from the open_clip config beside them (the bytes alone
/// do not decide the model). Fails where `load` would fail for want of an activation, so a
/// pipeline stops before it runs anything; a file that is no checkpoint keeps `flag`, and `load`
/// says what is wrong with it.
pub fn activation_for_key(path: &Path, flag: Option<Activation>) -> Result<Option<Activation>> {
    let path = &checkpoint_in(path);
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
