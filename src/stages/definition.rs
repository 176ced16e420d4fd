//! What every stage defines once, in its own module (`stage1.rs` holds [`super::stage1::Stage1`],
//! and so on): its settings (the seed resolved), the names of its inputs, its key
//! ([`Stage::spec`]), how it runs, its command line and how it is rebuilt from a manifest.
//! The pipeline's keys and executor, the Slurm command builder and `audit --rerun` go through
//! this trait only, so a new setting is added to the settings type and the stage's params.

use anyhow::Result;

use super::StageContext;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};

pub trait Stage: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> ArtifactKind;

    /// The inputs, in order, by the names the manifest records them under (`split`, `weights`).
    fn inputs(&self) -> Vec<&'static str>;

    /// The artifact spec (whose key is the artifact's) from the input keys, in [`Stage::inputs`]'s
    /// order. The stage's own `run` builds the same spec from the input artifacts.
    fn spec(&self, inputs: &[&ArtifactKey]) -> Result<ArtifactSpec>;

    /// The artifact, from the store or computed; `inputs` in [`Stage::inputs`]'s order.
    fn run(&self, ctx: &StageContext, inputs: &[Artifact]) -> Result<Artifact>;

    /// The stage command that makes the same artifact (`stage1 --split=KEY …`), every setting
    /// spelled out, without `--store`, `--device` and `--threads`.
    fn command_line(&self, inputs: &[&ArtifactKey]) -> Vec<String>;
}

/// `--name=KEY` for each named input key: how the stage commands take their inputs.
pub fn input_flags(names: &[&str], keys: &[&ArtifactKey]) -> Vec<String> {
    names.iter().zip(keys).map(|(name, key)| format!("--{name}={}", key.as_str())).collect()
}

/// A manifest param as `T`.
pub fn param<T: serde::de::DeserializeOwned>(a: &Artifact, name: &str) -> Result<T> {
    use anyhow::Context;
    let value = a.manifest.params.get(name).with_context(|| format!("the manifest has no `{name}` param"))?;
    serde_json::from_value(value.clone()).with_context(|| format!("the manifest's `{name}` param is {value}"))
}
