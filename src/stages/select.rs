//! The `selection` artifact: every block tensor ranked by a score rule, the top K chosen; or,
//! with a `like` input, random tensors matching that selection's parameter count per block.
//! Stage 1's step count and below-eps fractions sit beside the scores.

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::definition::{Stage, input_flags, param};
use super::{StageContext, weights};
use crate::clip::weights::read_safetensors;
use crate::settings::Settings;
use crate::settings::select::SelectSettings;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::adamw::read_state;
use crate::train::select::{Match, ScoreRule, SelectRequest, Selection, Stage1Statistics, select};
use crate::train::select_like::select_like;
use crate::train::stage1::Stage1Params;

/// 2: selection.json states `match` and per block its `trainable_parameters`.
/// 3: and stage 1's diagnostics (`stage1_steps`, `below_eps`, …) and `warnings`.
const SCHEMA: u32 = 3;
pub const SELECTION_FILE: &str = "selection.json";

/// With `like` (`--match params`), K plays no part and is left out of the key; the matched
/// selection is an input instead.
pub fn spec(stage1: &ArtifactKey, request: &SelectRequest, like: Option<&ArtifactKey>) -> ArtifactSpec {
    let params = match like {
        None => json!({ "rule": request.rule, "k": request.k, "towers": request.towers, "seed": request.seed }),
        Some(_) => {
            json!({ "rule": request.rule, "match": Match::Params, "towers": request.towers, "seed": request.seed })
        }
    };
    let spec = ArtifactSpec::new(ArtifactKind::Selection, SCHEMA, params).input_key("stage1", stage1);
    match like {
        Some(like) => spec.input_key("like", like),
        None => spec,
    }
}

/// `like`: the selection whose per-block parameter counts a random selection matches.
pub fn run(
    ctx: &StageContext,
    stage1: &Artifact,
    request: &SelectRequest,
    like: Option<&Artifact>,
) -> Result<Artifact> {
    if like.is_some() && request.rule != ScoreRule::Random {
        bail!("--match params draws random tensors; it needs --score random, not the rule {}", rule_name(request.rule));
    }
    let like_selection = like.map(read).transpose()?;
    let spec = spec(&stage1.key, request, like.map(|l| &l.key)).with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let weights_key = stage1.manifest.inputs.get("weights").context("stage-1 manifest names no weights input")?;
        // Not among the selection's inputs (stage 1's are), so checked here as inputs are.
        let weights_artifact = ctx.store.input(weights_key, ArtifactKind::Weights)?;
        let (config, pretrained) = weights::load(&weights_artifact)?;
        let stage1_params: Stage1Params = serde_json::from_value(stage1.manifest.params["train"].clone())
            .context("stage-1 manifest params are not stage-1 settings")?;
        let adamw_path = stage1.file("adamw.safetensors");
        let (moments, step) = read_state(&read_safetensors(&adamw_path)?, &adamw_path)?;
        let tuned = if request.rule == ScoreRule::WeightDelta {
            Some(read_safetensors(&stage1.file("checkpoint.safetensors"))?)
        } else {
            None
        };
        let opt = &stage1_params.optimizer;
        let stats = Stage1Statistics {
            moments: &moments,
            step,
            beta1: opt.beta1,
            beta2: opt.beta2,
            eps: opt.eps,
            initial: Some(&pretrained),
            tuned: tuned.as_ref(),
        };
        let selection = match (like, &like_selection) {
            (Some(like), Some(theirs)) => {
                let sizes = |name: &str| moments.get(name).map(|m| m.exp_avg.numel() as i64);
                select_like(&config, &sizes, request, theirs, like.key.as_str())?
            }
            _ => select(&config, &stats, request)?,
        };
        for note in &selection.notes {
            eprintln!("note: {note}");
        }
        let text = serde_json::to_string_pretty(&selection)? + "\n";
        std::fs::write(dir.join(SELECTION_FILE), text)?;
        Ok(json!({ "chosen": selection.chosen.len(), "trainable_parameters": selection.trainable_parameters }))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// For a pipeline run, one line instead of a warning per selection: how many of the run's
/// selections rest on weak stage-1 statistics (their `selection.json` says why).
pub fn weak_statistics_note(artifacts: &[Artifact]) -> Result<Option<String>> {
    let (mut weak, mut all) = (0, 0);
    for artifact in artifacts.iter().filter(|a| a.kind == ArtifactKind::Selection) {
        all += 1;
        weak += usize::from(!read(artifact)?.warnings.is_empty());
    }
    Ok((weak > 0).then(|| {
        format!(
            "note: {weak} of {all} selection(s) rest on weak stage-1 statistics (fewer than {} optimizer steps, or second moments mostly below eps), so their ranking is decided largely by eps and tie order (their selection.json says why); [stage1] min_steps gives stage 1 more steps",
            crate::train::diagnostics::MIN_INFORMATIVE_STEPS
        )
    }))
}

pub fn read(artifact: &Artifact) -> Result<Selection> {
    let path = artifact.file(SELECTION_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a selection file", path.display()))
}

fn rule_name(rule: ScoreRule) -> String {
    serde_json::to_value(rule).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A selection as a graph node runs it: the settings, the seed set; `matched` when it matches
/// the parameter counts of its second input (`--match params --like`), where K plays no part.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    pub settings: SelectSettings,
    pub matched: bool,
}

impl Select {
    pub fn request(&self) -> SelectRequest {
        self.settings.request(0)
    }

    pub fn from_manifest(a: &Artifact) -> Result<Self> {
        let matched = a.manifest.inputs.contains_key("like");
        let request = SelectRequest {
            rule: param(a, "rule")?,
            k: if matched { 0 } else { param(a, "k")? },
            towers: param(a, "towers")?,
            seed: param(a, "seed")?,
        };
        Ok(Select { settings: SelectSettings::from_request(&request), matched })
    }
}

impl Stage for Select {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Selection
    }

    fn inputs(&self) -> Vec<&'static str> {
        if self.matched { vec!["stage1", "like"] } else { vec!["stage1"] }
    }

    fn spec(&self, inputs: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        Ok(spec(inputs[0], &self.request(), inputs.get(1).copied()))
    }

    fn run(&self, ctx: &StageContext, inputs: &[Artifact]) -> Result<Artifact> {
        run(ctx, &inputs[0], &self.request(), inputs.get(1))
    }

    fn command_line(&self, inputs: &[&ArtifactKey]) -> Vec<String> {
        let mut args = vec!["select".to_string()];
        args.extend(input_flags(&self.inputs(), inputs));
        let settings = self.settings.to_args();
        if self.matched {
            // A matched selection has no K (`spec`).
            args.push("--match=params".into());
            args.extend(settings.into_iter().filter(|a| !a.starts_with("--k=")));
        } else {
            args.extend(settings);
        }
        args
    }
}
