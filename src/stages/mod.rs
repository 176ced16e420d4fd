//! Each stage as a store transaction: build the artifact spec (params + input keys), and if the
//! store does not have it yet, compute the outputs into the temp dir it hands out. The command
//! line and the pipeline runner both call these.

pub mod coverage;
pub mod definition;
pub mod eval;
pub mod eval_scores;
pub mod listing;
pub mod pretrain;
pub mod probe;
pub mod rerun;
pub mod select;
pub mod split;
pub mod split_data;
pub mod split_images;
pub mod stage1;
pub mod stage2;
pub mod weights;

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::Value;
use tch::Device;

use crate::store::{Artifact, ArtifactKind, ArtifactSpec, RunInfo, Store};
use crate::train::checkpoint::Checkpoints;

/// How a stage runs (never part of a key).
pub struct StageContext {
    pub store: Store,
    pub device: Device,
    pub threads: usize,
    pub quiet: bool,
    /// `audit --rerun`: the artifact to recompute and compare rather than reuse.
    pub rerun: Option<rerun::Target>,
}

impl StageContext {
    /// Every stage's store transaction: the artifact of `spec`, made by `produce` unless the
    /// store holds it. Under `audit --rerun`, the target artifact is recomputed by the same
    /// `produce` into a temp dir and compared with what the store holds instead.
    pub fn produce(&self, spec: &ArtifactSpec, produce: impl FnOnce(&Path) -> Result<Value>) -> Result<Artifact> {
        if let Some(target) = &self.rerun
            && spec.key() == target.artifact.key
        {
            return target.recompute(&self.store, produce);
        }
        self.store.get_or_produce(spec, produce)
    }

    /// Where a training stage of `spec` saves checkpoints and resumes from: the key's
    /// checkpoint area (valid inside `produce`, which holds the key's lock), or none under
    /// `audit --rerun`, which must compute from nothing.
    pub fn checkpoints(&self, spec: &ArtifactSpec) -> Result<Checkpoints> {
        let key = spec.key();
        if self.rerun.as_ref().is_some_and(|t| t.artifact.key == key) {
            return Ok(Checkpoints::off());
        }
        let what = format!("{} {}", spec.kind, key.short());
        Checkpoints::new(self.store.checkpoint_area(&key), what, Box::new(|line: &str| eprintln!("{line}")))
    }

    pub fn run_info(&self) -> RunInfo {
        RunInfo {
            device: device_name(self.device),
            threads: self.threads,
            libtorch_version: LIBTORCH_VERSION.to_string(),
        }
    }

    /// Progress lines on stderr unless `--quiet`.
    pub fn progress(&self) -> impl Fn(&str) + '_ {
        move |line: &str| {
            if !self.quiet {
                eprintln!("{line}");
            }
        }
    }

    /// Say on stderr that an artifact came from the cache.
    pub fn report(&self, artifact: &Artifact) {
        if !self.quiet {
            let how = if artifact.cached { "cached" } else { "computed" };
            eprintln!("{} {} ({how})", artifact.kind, artifact.key.short());
        }
    }

    /// Resolve an artifact reference that must be of `kind`.
    pub fn resolve(&self, reference: &str, kind: ArtifactKind) -> Result<Artifact> {
        let artifact = self.store.resolve(reference, Some(kind))?;
        if artifact.kind != kind {
            bail!("`{reference}` is a {} artifact, but a {kind} artifact is needed here", artifact.kind);
        }
        Ok(artifact)
    }
}

/// The libtorch this binary is built against (torch-sys 0.24 ↔ torch 2.11).
pub const LIBTORCH_VERSION: &str = "2.11.0";

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
