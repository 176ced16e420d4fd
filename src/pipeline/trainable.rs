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
    match &graph.nodes[eval].job {
        Job::Eval { stage2: None, .. } => Ok(0),
        Job::Eval { stage2: Some(stage2), .. } => {
            let Job::Stage2 { selection, .. } = &graph.nodes[*stage2].job else {
                anyhow::bail!("eval node {eval} takes a delta from a node that is not stage 2");
            };
            Ok(select::read(artifact(*selection)?)?.trainable_parameters)
        }
        Job::Probe { split, weights } => {
            let config_path = artifact(*weights)?.file(CONFIG_FILE);
            let config = ClipConfig::from_json_file(&config_path)
                .with_context(|| format!("{}: cannot read the model config", config_path.display()))?;
            let classes = read_split(artifact(*split)?)?.classnames.len() as i64;
            Ok(head_parameters(config.embed_dim, classes))
        }
        other => anyhow::bail!("node {eval} is not an evaluation: {other:?}"),
    }
}
