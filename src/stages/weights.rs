//! The `weights` artifact: canonical fp32 safetensors + config, from an imported checkpoint or
//! a seeded random init.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::StageContext;
use crate::clip::config::Activation;
use crate::clip::import::{self, CONFIG_FILE, MODEL_FILE};
use crate::clip::init::init_weights;
use crate::clip::{ClipConfig, Weights};
use crate::fsutil::hash_file;
use crate::store::{Artifact, ArtifactKind, ArtifactSpec};

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
