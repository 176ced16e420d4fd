//! `[choose] test = "chosen"`: every trained run is scored on its val images alone (a
//! validation-only eval), the choice is made on those, and only the chosen runs are then scored
//! on the test set and the `[eval] targets`, the evaluations the report shows. The chosen runs'
//! evaluations are the same artifacts (same keys) a `test = "all"` run makes, and the choice is
//! the same: validation accuracy is computed the same way in both kinds of eval.

use std::collections::HashSet;

use anyhow::{Result, bail};

use super::choose::{self, Choose};
use super::executor;
use super::graph::{Graph, NodeId};
use super::progress::Progress;
use super::results::{self, EVAL_COLUMN};
use crate::csv_io::Table;
use crate::stages::StageContext;
use crate::store::Artifact;

/// Runs the graph in two passes; returns every artifact made (by node id) and results.csv's
/// table, where the runs not chosen show their validation-only evals (test columns empty).
pub fn execute(
    ctx: &StageContext,
    graph: &Graph,
    choose: &Choose,
    jobs: usize,
    progress: &Progress,
) -> Result<(Vec<Option<Artifact>>, Table)> {
    let everything_chosen = vec![false; graph.points.len()];
    let (own, on_targets) = view(graph, &everything_chosen);
    let first: Vec<NodeId> = own.iter().copied().chain(on_targets.iter().flatten().map(|(_, e)| *e)).collect();
    let done = executor::execute_for(ctx, graph, &first, vec![None; graph.nodes.len()], jobs, progress)?;

    let validation = results::table_of(graph, &own, &on_targets, &done)?;
    let picked = eval_keys(&choose::chosen(&validation, choose)?)?;
    let chosen: Vec<bool> = graph
        .validations
        .iter()
        .map(|v| v.is_some_and(|v| done[v].as_ref().is_some_and(|a| picked.contains(&a.key.to_string()))))
        .collect();
    let (own, on_targets) = view(graph, &chosen);
    let second: Vec<NodeId> = own.iter().copied().chain(on_targets.iter().flatten().map(|(_, e)| *e)).collect();
    let done = executor::execute_for(ctx, graph, &second, done, jobs, progress)?;
    let table = results::table_of(graph, &own, &on_targets, &done)?;

    // The choice on the final table must land on the full evaluations just made.
    let full: HashSet<String> = (0..graph.points.len())
        .filter(|&i| chosen[i])
        .filter_map(|i| done[graph.evaluations[i]].as_ref().map(|a| a.key.to_string()))
        .collect();
    let again = eval_keys(&choose::chosen(&table, choose)?)?;
    if let Some(key) = full.iter().find(|k| !again.contains(*k)) {
        bail!(
            "[choose] test = \"chosen\": evaluation {key} was chosen on its validation-only eval but not on the full one; their val metrics differ, which they must not (a bug: please report it)"
        );
    }
    Ok((done, table))
}

/// Per point, the node results.csv shows and its target evaluations: the full evaluation for
/// chosen points and points that do not train, the validation-only one (and no targets) for the
/// others.
fn view(graph: &Graph, chosen: &[bool]) -> (Vec<NodeId>, Vec<Vec<(String, NodeId)>>) {
    (0..graph.points.len())
        .map(|i| match graph.validations[i] {
            Some(validation) if !chosen[i] => (validation, Vec::new()),
            _ => (graph.evaluations[i], graph.target_evaluations[i].clone()),
        })
        .unzip()
}

/// The eval keys of a table's rows.
fn eval_keys(table: &Table) -> Result<HashSet<String>> {
    let Some(column) = table.column(EVAL_COLUMN) else { bail!("results have no `{EVAL_COLUMN}` column") };
    Ok(table.rows.iter().map(|r| r[column].clone()).collect())
}
