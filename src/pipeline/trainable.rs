//! results.csv's `trainable_params`: how many parameters each run tuned, so methods are
//! compared with their budgets in view (a rule favouring big matrices tunes more than K random
//! tensors do).

use anyhow::{Context, Result};

use super::graph::{Graph, Job, NodeId};
use crate::clip::ClipConfig;
use crate::clip::import::CONFIG_FILE;
use crate::stages::select;
use crate::stages::split_data::read_split;
use crate::store::Artifact;
use crate::train::probe::head_parameters;

/// The parameters the evaluation `eval` measured were trained: the selection's for a stage-2
/// delta (full fine-tuning: every block tensor), the probe's head, 0 for zero-shot.
pub fn trainable_params(graph: &Graph, artifacts: &[Option<Artifact>], eval: NodeId) -> Result<i64> {
    let artifact = |id: NodeId| super::results::done(artifacts, id);
    let node = &graph.nodes[eval];
    match &node.job {
        Job::Eval(e) if !e.tuned => Ok(0),
        Job::Eval(_) => {
            let stage2 = node.input("stage2").context("a tuned evaluation has a stage-2 input")?;
            let selection = graph.nodes[stage2].input("selection").context("stage 2 has a selection input")?;
            Ok(select::read(artifact(selection)?)?.trainable_parameters)
        }
        Job::Probe(_) => {
            let (split, weights) = (node.inputs[0], node.inputs[1]);
            let config_path = artifact(weights)?.file(CONFIG_FILE);
            let config = ClipConfig::from_json_file(&config_path)
                .with_context(|| format!("{}: cannot read the model config", config_path.display()))?;
            let classes = read_split(artifact(split)?)?.classnames.len() as i64;
            Ok(head_parameters(config.embed_dim, classes))
        }
        other => anyhow::bail!("node {eval} is not an evaluation: {other:?}"),
    }
}
