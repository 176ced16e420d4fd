//! Where a checkpoint's MLP activation comes from. The tensors cannot tell QuickGELU (OpenAI's
//! checkpoints) from exact GELU (open_clip's LAION checkpoints), and the wrong one gives features
//! about 1% off with no other sign. So the activation is read from a file that records it, or
//! given with `--activation`, and never assumed for a checkpoint that could be either.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::config::Activation;
use super::import::SourceFormat;

/// The file open_clip's hub export (`push_to_hf_hub.save_for_hf`) writes beside
/// `open_clip_model.safetensors`: `{"model_cfg": {..., "quick_gelu": true}, "preprocess_cfg": ...}`.
pub const OPEN_CLIP_CONFIG: &str = "open_clip_config.json";

/// An activation that a file on disk records, and that file.
#[derive(Debug)]
pub struct Recorded {
    pub file: PathBuf,
    pub activation: Activation,
}

/// What `open_clip_config.json` beside `checkpoint` says, if there is one. open_clip builds the
/// model with `CLIP(**model_cfg)`, whose `quick_gelu` defaults to false, so a config without the
/// field (LAION's) means exact GELU.
pub fn open_clip_config_beside(checkpoint: &Path) -> Result<Option<Recorded>> {
    let Some(file) = checkpoint.parent().map(|dir| dir.join(OPEN_CLIP_CONFIG)).filter(|p| p.is_file()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    let activation = open_clip_activation(&text).map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
    Ok(Some(Recorded { file, activation }))
}

/// The activation in the text of an `open_clip_config.json`, or why there is none.
fn open_clip_activation(text: &str) -> Result<Activation, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    // open_clip's loader of a local folder refuses a config without `model_cfg` too.
    let Some(model_cfg) = json.get("model_cfg").filter(|v| v.is_object()) else {
        return Err("no `model_cfg` object, so not an open_clip config".into());
    };
    match model_cfg.get("quick_gelu") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(Activation::Gelu),
        Some(Value::Bool(true)) => Ok(Activation::QuickGelu),
        Some(other) => Err(format!("`model_cfg.quick_gelu` is {other}, not true or false")),
    }
}

/// The activation to build `checkpoint` (of `format`) with: `flag` (`--activation`) or what
/// `recorded` says, which must agree where both are there. TorchScript archives are OpenAI's
/// releases, QuickGELU by definition; any other file without a record needs the flag.
pub fn settle(
    checkpoint: &Path,
    format: SourceFormat,
    flag: Option<Activation>,
    recorded: Option<Recorded>,
) -> Result<Activation> {
    match (flag, recorded) {
        (Some(given), Some(r)) if given != r.activation => bail!(
            "{}: --activation {} contradicts {}, which says {}; drop the flag (or correct that file)",
            checkpoint.display(),
            name(given),
            r.file.display(),
            name(r.activation)
        ),
        (Some(given), _) => Ok(given),
        (None, Some(r)) => Ok(r.activation),
        (None, None) => match format {
            SourceFormat::OpenAiTorchScript => Ok(Activation::QuickGelu),
            SourceFormat::HuggingFaceSafetensors => bail!(
                "{}: no config.json beside this Hugging Face checkpoint says its MLP activation (hidden_act); put the config.json it came with beside it, or pass --activation quick_gelu|gelu",
                checkpoint.display()
            ),
            SourceFormat::OpenAiSafetensors | SourceFormat::Canonical => bail!(
                "{}: OpenAI-named safetensors do not say whether the MLP uses QuickGELU (OpenAI's checkpoints) or GELU (open_clip's LAION ones); pass --activation quick_gelu|gelu (`activation` under [weights] in a pipeline), or put the {OPEN_CLIP_CONFIG} it came with beside it",
                checkpoint.display()
            ),
        },
    }
}

/// The name the command line and config files use (`quick_gelu`, `gelu`).
fn name(activation: Activation) -> &'static str {
    match activation {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_config_fields() {
        let read = open_clip_activation;
        assert_eq!(read(r#"{"model_cfg": {"quick_gelu": true, "embed_dim": 512}}"#), Ok(Activation::QuickGelu));
        assert_eq!(read(r#"{"model_cfg": {"quick_gelu": false}}"#), Ok(Activation::Gelu));
        // LAION's configs leave the field out: open_clip's default, exact GELU.
        assert_eq!(read(r#"{"model_cfg": {"embed_dim": 512}, "preprocess_cfg": {}}"#), Ok(Activation::Gelu));
        assert!(read(r#"{"embed_dim": 512}"#).unwrap_err().contains("model_cfg"));
        assert!(read(r#"{"model_cfg": {"quick_gelu": "yes"}}"#).unwrap_err().contains("quick_gelu"));
        assert!(read("{").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn flag_and_record_must_agree() {
        let path = Path::new("m.safetensors");
        let record = |activation| Some(Recorded { file: "open_clip_config.json".into(), activation });
        let format = SourceFormat::OpenAiSafetensors;
        let gelu = Activation::Gelu;
        assert_eq!(settle(path, format, None, record(gelu)).unwrap(), gelu);
        assert_eq!(settle(path, format, Some(gelu), record(gelu)).unwrap(), gelu);
        assert_eq!(settle(path, format, Some(gelu), None).unwrap(), gelu);
        let clash = settle(path, format, Some(Activation::QuickGelu), record(gelu)).unwrap_err().to_string();
        assert!(
            clash.contains("--activation quick_gelu contradicts open_clip_config.json, which says gelu"),
            "{clash}"
        );
        let missing = settle(path, format, None, None).unwrap_err().to_string();
        assert!(
            missing.starts_with("m.safetensors: ") && missing.contains("--activation quick_gelu|gelu"),
            "{missing}"
        );
        let hf = settle(path, SourceFormat::HuggingFaceSafetensors, None, None).unwrap_err().to_string();
        assert!(hf.contains("config.json") && hf.contains("--activation"), "{hf}");
        assert_eq!(settle(path, SourceFormat::OpenAiTorchScript, None, None).unwrap(), Activation::QuickGelu);
    }
}
