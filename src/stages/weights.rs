//! The `weights` artifact: canonical fp32 safetensors + config, from an imported checkpoint or
//! a seeded random init.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

use super::StageContext;
use super::definition::{Stage, param};
use crate::clip::config::Activation;
use crate::clip::import::{self, CONFIG_FILE, MODEL_FILE};
use crate::clip::init::init_weights;
use crate::clip::{ClipConfig, Weights};
use crate::fsutil::hash_file;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};

const SCHEMA: u32 = 1;

/// Import a checkpoint. The key is the file's content hash plus its activation (see
/// `import_spec`), so importing the same file again, from anywhere, reuses the artifact.
pub fn import_weights(ctx: &StageContext, file: &Path, activation: Option<Activation>) -> Result<Artifact> {
    // An exported folder is imported as the checkpoint inside it (its bytes are the key).
    let file = &import::checkpoint_in(file);
    let spec = import_spec(file, activation)?.with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let model = import::load(file, activation)?;
        import::write_canonical(dir, &model.config, &model.weights)?;
        Ok(json!({ "format": model.format.describe(), "source": file.display().to_string() }))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// What identifies an imported checkpoint: its bytes and `--activation` as given (null when not
/// given, as before the activation had to be stated), except that an OpenAI-named safetensors
/// file holds the activation its open_clip config says when no flag is given: its bytes alone do
/// not decide the model. Fails, naming `--activation`, where the activation is unknown.
pub fn import_spec(file: &Path, activation: Option<Activation>) -> Result<ArtifactSpec> {
    let file = &import::checkpoint_in(file);
    let source_blake3 = hash_file(file)?;
    let activation = import::activation_for_key(file, activation)?;
    let params = json!({ "source_blake3": source_blake3, "activation": activation });
    Ok(ArtifactSpec::new(ArtifactKind::Weights, SCHEMA, params))
}

pub fn init_spec(preset: &str, seed: i64) -> ArtifactSpec {
    ArtifactSpec::new(ArtifactKind::Weights, SCHEMA, json!({ "init": preset, "seed": seed }))
}

/// Seeded random weights of a preset.
pub fn init(ctx: &StageContext, preset: &str, seed: i64) -> Result<Artifact> {
    let config = ClipConfig::preset(preset)?;
    let spec = init_spec(preset, seed).with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        import::write_canonical(dir, &config, &init_weights(&config, seed))?;
        Ok(json!({}))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// A weights artifact's config and tensors (fp32, CPU).
pub fn load(artifact: &Artifact) -> Result<(ClipConfig, Weights)> {
    let config = ClipConfig::from_json_file(&artifact.file(CONFIG_FILE))?;
    let weights = crate::clip::weights::read_safetensors(&artifact.file(MODEL_FILE))?;
    crate::clip::weights::check_against_config(&weights, &config, &artifact.file(MODEL_FILE))?;
    Ok((config, weights))
}

/// A weights artifact made from nothing but its settings, as a graph node runs it.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightsJob {
    /// A checkpoint `import-weights` reads.
    Import { path: PathBuf, activation: Option<Activation> },
    /// Seeded random weights of a preset.
    Init { preset: String, seed: i64 },
}

impl WeightsJob {
    pub fn from_manifest(a: &Artifact) -> Result<Self> {
        Ok(WeightsJob::Init { preset: param(a, "init")?, seed: param(a, "seed")? })
    }
}

impl Stage for WeightsJob {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Weights
    }

    fn inputs(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn spec(&self, _: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        match self {
            WeightsJob::Import { path, activation } => import_spec(path, *activation),
            WeightsJob::Init { preset, seed } => Ok(init_spec(preset, *seed)),
        }
    }

    fn run(&self, ctx: &StageContext, _: &[Artifact]) -> Result<Artifact> {
        match self {
            WeightsJob::Import { path, activation } => import_weights(ctx, path, *activation),
            WeightsJob::Init { preset, seed } => init(ctx, preset, *seed),
        }
    }

    fn command_line(&self, _: &[&ArtifactKey]) -> Vec<String> {
        match self {
            WeightsJob::Import { path, activation } => {
                let mut args = vec!["import-weights".to_string(), path.display().to_string()];
                // The name serde gives it (`quick_gelu`), which the command parses.
                if let Some(serde_json::Value::String(name)) = activation.map(|a| serde_json::json!(a)) {
                    args.push(format!("--activation={name}"));
                }
                args
            }
            WeightsJob::Init { preset, seed } => {
                vec!["init-weights".to_string(), format!("--preset={preset}"), format!("--seed={seed}")]
            }
        }
    }
}
