//! results.csv: one row per grid point (and per `[eval] targets` dataset), every setting and every metric of its evaluation as a
//! column, and the eval artifact's key (what `gc` keeps, what `audit` checks).

use anyhow::{Result, bail};

use super::chain::Method;
use super::graph::{Graph, NodeId};
use super::grid::VARIANT;
use super::schema::setting_keys;
use super::trainable::trainable_params;
use crate::clip::config::block_tensor_shapes;
use crate::csv_io::Table;
use crate::store::Artifact;

/// Where the data lives is not what the experiment is (the split key leaves it out too).
const NOT_SETTINGS: &[&str] = &["data.root"];

/// metrics.csv columns that repeat a setting column (`method` is the setting's name for it;
/// the artifact's metrics.csv names the score rule too, which `select.score` shows).
const REPEATED_IN_SETTINGS: &[&str] = &["dataset", "shots", "seed", "method"];

/// Sections whose settings a method that does not train ignores: its rows leave them empty.
pub(super) const TRAINING_SECTIONS: &[&str] = &["stage1.", "select.", "stage2."];

/// With `[eval] targets`: the dataset a row's evaluation is on; empty for the point's own test
/// set (`data.dataset`'s).
pub const TARGET_COLUMN: &str = "target";

/// The column holding each row's eval artifact key.
pub const EVAL_COLUMN: &str = "eval";

/// The column holding how many parameters the row's run trained (`trainable.rs`).
pub const TRAINABLE_COLUMN: &str = "trainable_params";

/// The λ settings of `[stage2]`, which full fine-tuning replaces with `[full-ft] lambda`.
const STAGE2_LAMBDAS: &[&str] = &["stage2.lambda", "stage2.lambda_img", "stage2.lambda_txt", "stage2.lambda_kl"];

/// Setting columns: the point's `[[variant]]` (always there, empty without variants), then
/// `section.key` in schema order.
pub fn setting_columns() -> Vec<String> {
    std::iter::once(VARIANT.to_string())
        .chain(setting_keys().into_iter().map(|(name, _)| name).filter(|name| !NOT_SETTINGS.contains(&name.as_str())))
        .collect()
}

/// The results of a finished graph; `artifacts` by node id. Points of one variant that share an
/// evaluation (a zero-shot or linear-probe point of a grid over training settings) are one row;
/// two variants that make the same evaluation each have theirs.
pub fn table(graph: &Graph, artifacts: &[Option<Artifact>]) -> Result<Table> {
    table_of(graph, &graph.evaluations, &graph.target_evaluations, artifacts)
}

/// [`table`] with each point's own evaluation node and its evaluations on targets given: a
/// `[choose] test = "chosen"` run shows the runs not chosen by their validation-only evals.
pub fn table_of(
    graph: &Graph,
    evaluations: &[NodeId],
    target_evaluations: &[Vec<(String, NodeId)>],
    artifacts: &[Option<Artifact>],
) -> Result<Table> {
    let settings = setting_columns();
    let mut metric_header: Option<Vec<String>> = None;
    let mut rows = Vec::with_capacity(graph.points.len());
    let mut seen = std::collections::HashSet::new();
    // Each point's own evaluation, then its evaluations on `[eval] targets`.
    let evaluations =
        graph.points.iter().zip(evaluations).zip(target_evaluations).flat_map(|((point, &eval), on_targets)| {
            std::iter::once((point, eval, eval, ""))
                .chain(on_targets.iter().map(move |(target, e)| (point, eval, *e, target.as_str())))
        });
    for (point, own, eval, target) in evaluations {
        // Keyed by the point's own evaluation: a target that is the point's own test set (its
        // dataset, original rendering, same images) shares that evaluation but is still a row
        // of its own, and zero-shot points of different splits share one target evaluation but
        // each has its target rows.
        if !seen.insert((point.variant_index(), own, target)) {
            continue;
        }
        let method = Method::of(point);
        let trains = method.trains();
        let artifact = done(artifacts, eval)?;
        let metrics = Table::read(&artifact.file("metrics.csv"))?;
        let [values] = metrics.rows.as_slice() else {
            bail!(
                "{}: expected one row of metrics, found {}",
                artifact.file("metrics.csv").display(),
                metrics.rows.len()
            );
        };
        let keep: Vec<usize> = (0..metrics.header.len())
            .filter(|&i| !REPEATED_IN_SETTINGS.contains(&metrics.header[i].as_str()))
            .collect();
        let header: Vec<String> = keep.iter().map(|&i| metrics.header[i].clone()).collect();
        match &metric_header {
            None => metric_header = Some(header),
            Some(first) if *first != header => bail!(
                "{}: metrics columns {} differ from an earlier evaluation's {}; the store holds evaluations of two tool versions",
                artifact.file("metrics.csv").display(),
                header.join(","),
                first.join(",")
            ),
            Some(_) => {}
        }
        let shown = |name: &str| trains || !TRAINING_SECTIONS.iter().any(|s| name.starts_with(s));
        let mut row: Vec<String> = settings
            .iter()
            .map(|name| match (method, name.as_str()) {
                // The selection the method actually made, not the file's [select] values.
                (Method::RandomK, "select.score") => "random".to_string(),
                (Method::FullFt, "select.k") => block_tensor_shapes(1, 1).len().to_string(),
                (Method::FullFt, "select.score" | "select.seed") => String::new(),
                (Method::FullFt, name) if STAGE2_LAMBDAS.contains(&name) => String::new(),
                (m, "full-ft.lambda") if m != Method::FullFt => String::new(),
                _ => point.get_opt(name).filter(|_| shown(name)).map(|v| v.to_string()).unwrap_or_default(),
            })
            .collect();
        if !graph.targets.is_empty() {
            row.push(target.to_string());
        }
        row.push(graph.weights_label.clone());
        row.push(artifact.key.to_string());
        row.push(trainable_params(graph, artifacts, eval)?.to_string());
        row.extend(keep.iter().map(|&i| values[i].clone()));
        rows.push(row);
    }
    let mut header = settings;
    if !graph.targets.is_empty() {
        header.push(TARGET_COLUMN.to_string());
    }
    header.push("weights".to_string());
    header.push(EVAL_COLUMN.to_string());
    header.push(TRAINABLE_COLUMN.to_string());
    header.extend(metric_header.unwrap_or_default());
    Ok(Table { header, rows })
}

/// The artifact of node `id`, which the run must have made.
pub fn done(artifacts: &[Option<Artifact>], id: NodeId) -> Result<&Artifact> {
    artifacts[id].as_ref().ok_or_else(|| anyhow::anyhow!("node {id}: the run has no artifact for it"))
}
