//! `[choose]`: hyperparameters chosen on validation. For each group of the other settings
//! (the seeds included, so every replicate makes its own choice) the run keeps the combination
//! of the `among` settings whose validation metric `by` is largest, the first in grid order on
//! ties, and writes those rows as chosen.csv. The choosing itself ([`pick`]) is given only each
//! row's group and its `by` value: no test metric can reach it. pipelines/README.md documents
//! the section.

use anyhow::{Result, anyhow, bail};

use super::chain::Method;
use super::file::PipelineFile;
use super::graph::Graph;
use super::grid::VARIANT;
use super::results::{TARGET_COLUMN, TRAINING_SECTIONS, setting_columns};
use super::schema::{IfUnset, setting_keys};
use super::summary::{ACCURACIES, SEEDS};
use crate::csv_io::Table;

/// `[choose] test = "chosen"`: the runs not chosen are scored on val only (`test_chosen`).
pub fn tests_chosen_only(file: &PipelineFile) -> bool {
    file.values.contains_key("choose.by")
        && file.values.get("choose.test").and_then(|v| v.first()).is_some_and(|v| v.as_str() == "chosen")
}

/// The validation metrics `stages::eval` writes: accuracy on the split's val images, and for
/// base-to-novel evaluations on the base classes' val images.
pub const VALIDATION_METRICS: &[&str] = &["val_acc", "val_base_acc"];

/// results.csv's column naming the weights, part of every group.
const WEIGHTS_COLUMN: &str = "weights";

#[derive(Clone, Debug, PartialEq)]
pub struct Choose {
    /// A validation metric, larger is better.
    pub by: String,
    /// `section.key` settings whose combinations compete within a group.
    pub among: Vec<String>,
    /// The settings the file leaves to follow one of `among` (`stage2.lambda_kl` follows
    /// `stage2.lambda`): they vary with it, so they are not part of the group either.
    pub followers: Vec<String>,
}

impl Choose {
    /// The file's `[choose]`, if it has one: `by` a validation metric, `among` settings the
    /// file lists several values of, none of them the split, a seed or the method (those
    /// define what a choice is made for).
    pub fn of(file: &PipelineFile) -> Result<Option<Choose>> {
        let (Some(by), Some(among)) = (file.values.get("choose.by"), file.values.get("choose.among")) else {
            return Ok(None);
        };
        let by = by[0].as_str().to_string();
        if !VALIDATION_METRICS.contains(&by.as_str()) {
            let at = file.at("choose.by");
            let allowed = VALIDATION_METRICS.join(", ");
            if ACCURACIES.contains(&by.as_str()) {
                bail!(
                    "{at}: [choose] by = {by} is a test-set metric; choosing on it tunes on the test set: use {allowed}"
                );
            }
            bail!("{at}: [choose] by = {by} is not a validation metric; use {allowed}");
        }
        let allowed = choosable();
        let mut names = Vec::with_capacity(among.len());
        for value in among {
            let name = value.as_str().to_string();
            let at = file.at("choose.among");
            if !allowed.contains(&name) {
                bail!(
                    "{at}: [choose] among: `{name}` is not a setting to choose among; use {} (not a [data] setting, a seed, `method` or `variant`: each of those gets its own choice)",
                    allowed.join(", ")
                );
            }
            let lists = |values: &std::collections::BTreeMap<String, Vec<super::value::Scalar>>| {
                values.get(&name).is_some_and(|v| v.len() > 1)
            };
            if !lists(&file.values) && !file.variants.iter().any(|v| lists(&v.values)) {
                let (section, key) = name.split_once('.').unwrap_or(("", &name));
                bail!(
                    "{at}: [choose] among: `{name}` is not a list in this file; give [{section}] {key} the values to choose among, in the file or a [[variant]]"
                );
            }
            names.push(name);
        }
        let followers = setting_keys()
            .into_iter()
            .filter(|(full, key)| {
                matches!(key.if_unset, IfUnset::Follows(other) if names.iter().any(|n| n == other))
                    && !file.values.contains_key(full)
            })
            .map(|(full, _)| full)
            .collect();
        Ok(Some(Choose { by, among: names, followers }))
    }

    /// The columns a group leaves out: `among` and their followers.
    pub fn chosen_columns(&self) -> Vec<String> {
        self.among.iter().chain(&self.followers).cloned().collect()
    }

    /// `--dry-run`'s line: how many groups get a choice, and what it needs evaluated.
    /// `test_chosen`: `[choose] test = "chosen"`.
    pub fn dry_run_line(&self, graph: &Graph, test_chosen: bool) -> String {
        let planned = planned_rows(graph);
        let groups = pick(&candidates(&planned, &self.chosen_columns(), &vec![0.0; planned.rows.len()]));
        let most = groups.iter().map(|c| c.candidates).max().unwrap_or(0);
        let needs = if test_chosen {
            let mut validations: Vec<_> = graph.validations.iter().flatten().collect();
            validations.sort_unstable();
            validations.dedup();
            format!(
                "test = \"chosen\": {} of the evaluations above score val only, and then only the chosen runs' full evaluations (and targets) run, not the other runs' counted above",
                validations.len()
            )
        } else {
            format!("the choice needs all {} evaluation(s) above", planned.rows.len())
        };
        format!(
            "choose: by {} among {}: {} group(s), each keeping 1 of up to {most}; {needs}",
            self.by,
            self.among.join(", "),
            groups.len(),
        )
    }
}

/// Settings `among` may name: the training and evaluation settings but their seeds.
fn choosable() -> Vec<String> {
    setting_columns()
        .into_iter()
        .filter(|name| {
            !(name == VARIANT || name == "method" || name.starts_with("data.") || SEEDS.contains(&name.as_str()))
        })
        .collect()
}

/// What [`pick`] sees of one row.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The row's values of every setting but the `among` ones.
    pub group: Vec<String>,
    /// The validation metric.
    pub by: f64,
}

/// One group's choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// The chosen candidate's index.
    pub index: usize,
    /// How many candidates the group had.
    pub candidates: usize,
}

/// Per group, in the order groups first appear, the candidate with the largest `by`; on ties
/// the first (grid order).
pub fn pick(candidates: &[Candidate]) -> Vec<Choice> {
    let mut choices: Vec<(&[String], Choice)> = Vec::new();
    for (index, c) in candidates.iter().enumerate() {
        match choices.iter_mut().find(|(group, _)| *group == c.group.as_slice()) {
            Some((_, choice)) => {
                choice.candidates += 1;
                if c.by > candidates[choice.index].by {
                    choice.index = index;
                }
            }
            None => choices.push((&c.group, Choice { index, candidates: 1 })),
        }
    }
    choices.into_iter().map(|(_, c)| c).collect()
}

/// The groups of `table`'s rows: every setting column (and the weights) but `chosen`.
fn candidates(table: &Table, chosen: &[String], by: &[f64]) -> Vec<Candidate> {
    let settings = setting_columns();
    let group_columns: Vec<usize> = (0..table.header.len())
        .filter(|&i| {
            let name = &table.header[i];
            (settings.contains(name) || name == WEIGHTS_COLUMN) && !chosen.contains(name)
        })
        .collect();
    table
        .rows
        .iter()
        .zip(by)
        .map(|(row, &by)| Candidate { group: group_columns.iter().map(|&i| row[i].clone()).collect(), by })
        .collect()
}

/// results.csv's chosen rows, all columns, one per group. With `[eval] targets` the choice is
/// made on each point's own row (empty `target`: its own split's validation images), and a
/// chosen row brings the target rows that follow it in results.csv along.
pub fn chosen(results: &Table, choose: &Choose) -> Result<Table> {
    let column = results
        .column(&choose.by)
        .ok_or_else(|| anyhow!("[choose] by = {}: the evaluations wrote no such metric", choose.by))?;
    let target = results.column(TARGET_COLUMN);
    let is_own = |row: &Vec<String>| target.is_none_or(|t| row[t].is_empty());
    let own: Vec<usize> = (0..results.rows.len()).filter(|&i| is_own(&results.rows[i])).collect();
    let by = own
        .iter()
        .map(|&i| {
            let row = &results.rows[i];
            let text = &row[column];
            text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                let eval = results.column(super::results::EVAL_COLUMN).map_or("", |i| row[i].as_str());
                anyhow!(
                    "[choose] by = {}: evaluation {eval} reports `{text}`, not a number (val_acc is empty for a dataset without a val list, val_base_acc unless classes is all or base-to-novel)",
                    choose.by
                )
            })
        })
        .collect::<Result<Vec<f64>>>()?;
    let own_rows =
        Table { header: results.header.clone(), rows: own.iter().map(|&i| results.rows[i].clone()).collect() };
    let mut rows = Vec::new();
    for choice in pick(&candidates(&own_rows, &choose.chosen_columns(), &by)) {
        let first = own[choice.index];
        let targets = results.rows[first + 1..].iter().take_while(|r| !is_own(r));
        rows.extend(std::iter::once(&results.rows[first]).chain(targets).cloned());
    }
    Ok(Table { header: results.header.clone(), rows })
}

/// `table`'s rows that [`pick`] chooses by `by`.
fn keep(table: &Table, chosen: &[String], by: &[f64]) -> Table {
    let rows = pick(&candidates(table, chosen, by)).iter().map(|c| table.rows[c.index].clone()).collect();
    Table { header: table.header.clone(), rows }
}

/// What chosen-summary.csv summarises: the chosen rows without the chosen columns, whose
/// values may differ from seed to seed.
pub fn summary_input(chosen: &Table, choose: &Choose) -> Table {
    without(chosen, &choose.chosen_columns())
}

/// `table` without `columns`.
fn without(table: &Table, columns: &[String]) -> Table {
    let keep: Vec<usize> = (0..table.header.len()).filter(|&i| !columns.contains(&table.header[i])).collect();
    let select = |row: &Vec<String>| keep.iter().map(|&i| row[i].clone()).collect();
    Table { header: select(&table.header), rows: table.rows.iter().map(select).collect() }
}

/// The setting columns chosen.csv (or without `[choose]` results.csv) will have, from the
/// grid alone: a stand-in for each group's choice, so a comparison can be checked before
/// anything runs.
pub(super) fn planned(graph: &Graph, choose: Option<&Choose>) -> Table {
    let rows = planned_rows(graph);
    match choose {
        Some(c) => keep(&rows, &c.chosen_columns(), &vec![0.0; rows.rows.len()]),
        None => rows,
    }
}

/// The setting columns results.csv will have, from the grid alone: one row per distinct
/// evaluation of each variant, with the settings a method that does not train ignores left empty.
fn planned_rows(graph: &Graph) -> Table {
    let settings = setting_columns();
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for (point, &eval) in graph.points.iter().zip(&graph.evaluations) {
        if !seen.insert((point.variant_index(), eval)) {
            continue;
        }
        let method = Method::of(point);
        let mut row: Vec<String> = settings
            .iter()
            .map(|name| {
                let shown = method.trains() || !TRAINING_SECTIONS.iter().any(|s| name.starts_with(s));
                // results.csv leaves full-ft's selection seed empty (it selects every tensor), so
                // its rows pair with any seed of another method's selection.
                let unused = method == Method::FullFt && name == "select.seed";
                point.get_opt(name).filter(|_| shown && !unused).map(|v| v.to_string()).unwrap_or_default()
            })
            .collect();
        row.push(graph.weights_label.clone());
        rows.push(row);
    }
    let mut header = settings;
    header.push(WEIGHTS_COLUMN.to_string());
    Table { header, rows }
}

#[cfg(test)]
mod tests;
