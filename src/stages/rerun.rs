//! `audit --rerun`: recompute an artifact with the stage that made it, from nothing but its
//! manifest (params and input keys), and compare every file byte for byte with the published
//! one. The stage runs its ordinary code path; [`super::StageContext::produce`] diverts the one
//! target key into a temp dir instead of returning the cached artifact.
//!
//! Byte identity is promised on the CPU kind and thread count the manifest records. Elsewhere a
//! differing file is compared number by number and accepted within
//! [`numeric_diff::CROSS_CPU_TOLERANCE`], with its largest difference reported either way.

use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};

use super::StageContext;
use super::definition::Stage;
use crate::store::audit::{self, Problem};
use crate::store::numeric_diff::{self, CROSS_CPU_TOLERANCE};
use crate::store::{Artifact, ArtifactKind, CpuKind, Store};

/// The artifact a rerun recomputes, and what the comparison found.
pub struct Target {
    pub artifact: Artifact,
    /// Why byte identity is not promised (another CPU kind, device or thread count); None
    /// when the rerun runs where the artifact was made, so bytes must match.
    other_machine: Option<String>,
    outcome: Mutex<Option<RerunReport>>,
}

/// What a rerun found.
#[derive(Debug, Default)]
pub struct RerunReport {
    /// Differences that fail the audit.
    pub problems: Vec<Problem>,
    /// Files that differ within tolerance on another CPU kind or thread count, with their
    /// largest difference, for the report.
    pub within_tolerance: Vec<String>,
    /// Why byte identity was not expected (None: it was).
    pub other_machine: Option<String>,
}

impl Target {
    pub(super) fn recompute(
        &self,
        store: &Store,
        produce: impl FnOnce(&std::path::Path) -> Result<serde_json::Value>,
    ) -> Result<Artifact> {
        let mut within_tolerance = Vec::new();
        let compare = |file: &str, published: &std::path::Path, rerun: &std::path::Path| {
            let difference = numeric_diff::largest_difference(published, rerun);
            Ok(match (self.other_machine.is_none(), difference) {
                (true, Ok(Some(d))) => Some(format!("bytes differ; largest difference {d}")),
                (true, _) => Some("bytes differ".to_string()),
                (false, Ok(None)) => None,
                (false, Ok(Some(d))) if d.within(CROSS_CPU_TOLERANCE) => {
                    within_tolerance.push(format!("`{file}`: largest difference {d}"));
                    None
                }
                (false, Ok(Some(d))) => Some(format!(
                    "largest difference {d}, beyond the {CROSS_CPU_TOLERANCE:e} another CPU kind may explain"
                )),
                (false, Err(e)) => Some(format!("{e:#}")),
            })
        };
        let problems = audit::rerun(store, &self.artifact, produce, compare)?;
        *self.outcome.lock().map_err(|_| anyhow!("a rerun panicked"))? =
            Some(RerunReport { problems, within_tolerance, other_machine: self.other_machine.clone() });
        Ok(Artifact { cached: true, ..self.artifact.clone() })
    }
}

/// None when `ctx` runs on the CPU kind, device and thread count `a` was made with.
fn other_machine(ctx: &StageContext, a: &Artifact) -> Option<String> {
    let m = &a.manifest;
    let (cpu, device) = (CpuKind::this_machine(), super::device_name(ctx.device));
    (m.cpu != *cpu || m.threads != ctx.threads || m.device != device).then(|| {
        format!(
            "made on {} ({}, {} thread(s)), rerun on {} ({device}, {} thread(s))",
            m.cpu.describe(),
            m.device,
            m.threads,
            cpu.describe(),
            ctx.threads
        )
    })
}

/// Recompute `artifact` and compare; the differences found (none: identical bytes, or on
/// another CPU kind, numbers within tolerance).
pub fn rerun(ctx: &StageContext, artifact: &Artifact) -> Result<RerunReport> {
    let label = format!("{}/{}", artifact.kind, artifact.key.short());
    let other_machine = other_machine(ctx, artifact);
    let target = Target { artifact: artifact.clone(), other_machine, outcome: Mutex::new(None) };
    let ctx = StageContext {
        store: ctx.store.clone(),
        device: ctx.device,
        threads: ctx.threads,
        quiet: true,
        rerun: Some(target),
    };
    run_stage(&ctx, artifact).with_context(|| format!("rerun of {label}"))?;
    let target = ctx.rerun.expect("set above");
    target.outcome.into_inner().map_err(|_| anyhow!("a rerun panicked"))?.ok_or_else(|| {
        anyhow!(
            "rerun of {label}: its manifest's settings now make another key; it was made by clip-ast {}, whose key rules may differ from this version's",
            artifact.manifest.tool_version
        )
    })
}

/// Call the stage that made `a` with the settings and inputs its manifest records.
fn run_stage(ctx: &StageContext, a: &Artifact) -> Result<Artifact> {
    let stage = from_manifest(a)?;
    let inputs = stage
        .inputs()
        .into_iter()
        .map(|name| {
            let key = a.manifest.inputs.get(name).with_context(|| format!("the manifest names no `{name}` input"))?;
            ctx.store.resolve(key.as_str(), None).with_context(|| format!("input `{name}` is not in the store"))
        })
        .collect::<Result<Vec<_>>>()?;
    stage.run(ctx, &inputs)
}

/// The stage that made `a`, with the settings its manifest records (`audit --rerun`).
pub fn from_manifest(a: &Artifact) -> Result<Box<dyn Stage>> {
    let params = &a.manifest.params;
    Ok(match a.kind {
        ArtifactKind::Stage1 => Box::new(super::stage1::Stage1::from_manifest(a)?),
        ArtifactKind::Selection => Box::new(super::select::Select::from_manifest(a)?),
        ArtifactKind::Stage2 => Box::new(super::stage2::Stage2::from_manifest(a)?),
        ArtifactKind::Eval if params["method"] == "linear-probe" => Box::new(super::probe::Probe),
        ArtifactKind::Eval => Box::new(super::eval::Eval::from_manifest(a)?),
        ArtifactKind::Weights if params.get("pretrain").is_some() => {
            Box::new(super::pretrain::Pretrain::from_manifest(a)?)
        }
        ArtifactKind::Weights if params.get("init").is_some() => {
            Box::new(super::weights::WeightsJob::from_manifest(a)?)
        }
        ArtifactKind::Weights => bail!(
            "an imported checkpoint is identified by the blake3 of its file, which the manifest records: import the file again to check it"
        ),
        ArtifactKind::Split => bail!(
            "a split is made from image files, not recomputed from other artifacts: `clip-ast audit --rerun` checks it against the images it hashed"
        ),
    })
}
