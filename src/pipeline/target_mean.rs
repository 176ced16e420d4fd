//! The mean over `[eval] targets` that the papers' cross-dataset and domain-generalisation
//! tables end with: per run (one grid point, one set of seeds), the average of its target
//! rows' accuracies, as an extra results row with `target = "mean"`. summary.csv is made from
//! the results plus these rows, so its `mean` rows are the seed average (with std and CI) of the
//! per-run target means. The point's own test row (empty `target`) is not part of the mean.

use super::results::{EVAL_COLUMN, TARGET_COLUMN};
use crate::csv_io::Table;

/// `target` of the rows added.
pub const MEAN_TARGET: &str = "mean";

/// The accuracies averaged over targets; the others (base/new halves, val) describe the
/// source's own task and are left empty in a mean row.
const AVERAGED: &[&str] = &["acc", "macro_acc"];

/// `results` with, after each run's target rows, their mean row; `results` unchanged when it
/// has no `target` column.
pub fn with_means(results: &Table) -> Table {
    let Some(target) = results.column(TARGET_COLUMN) else {
        return results.clone();
    };
    let averaged: Vec<usize> = AVERAGED.iter().filter_map(|m| results.column(m)).collect();
    // Every setting column comes before `target`; metric columns come after it.
    let kept: Vec<usize> = (0..results.header.len())
        .filter(|&i| {
            i < target || results.header[i] == "weights" || results.header[i] == super::results::TRAINABLE_COLUMN
        })
        .collect();
    let run = |row: &[String]| -> Vec<String> { (0..target).map(|i| row[i].clone()).collect() };
    let mean_row = |members: &[&Vec<String>]| -> Vec<String> {
        let mut row = vec![String::new(); results.header.len()];
        for &i in &kept {
            row[i] = members[0][i].clone();
        }
        row[target] = MEAN_TARGET.to_string();
        row[results.column(EVAL_COLUMN).unwrap_or(target)] = String::new();
        for &i in &averaged {
            let values: Vec<f64> = members.iter().filter_map(|r| r[i].parse().ok()).collect();
            if values.len() == members.len() {
                row[i] = (values.iter().sum::<f64>() / values.len() as f64).to_string();
            }
        }
        row
    };
    let mut rows = Vec::with_capacity(results.rows.len());
    let mut members: Vec<&Vec<String>> = Vec::new();
    for (i, row) in results.rows.iter().enumerate() {
        rows.push(row.clone());
        if !row[target].is_empty() {
            members.push(row);
        }
        let run_ends = results.rows.get(i + 1).is_none_or(|next| run(next) != run(row) || next[target].is_empty());
        if run_ends && !members.is_empty() {
            rows.push(mean_row(&members));
            members.clear();
        }
    }
    Table { header: results.header.clone(), rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_run_gets_the_mean_of_its_targets_only() {
        let results = Table {
            header: s(&["data.seed", "target", "weights", "eval", "trainable_params", "n", "acc", "hm"]),
            rows: vec![
                s(&["1", "", "w", "e1", "7", "10", "0.9", "0.8"]),
                s(&["1", "a", "w", "e2", "7", "4", "0.5", ""]),
                s(&["1", "b", "w", "e3", "7", "6", "0.25", ""]),
                s(&["2", "", "w", "e4", "7", "10", "0.7", "0.6"]),
                s(&["2", "a", "w", "e5", "7", "4", "0.75", ""]),
                s(&["2", "b", "w", "e6", "7", "6", "0.5", ""]),
            ],
        };
        let out = with_means(&results);
        assert_eq!(out.rows.len(), 8);
        assert_eq!(out.rows[3], s(&["1", "mean", "w", "", "7", "", "0.375", ""]));
        assert_eq!(out.rows[7], s(&["2", "mean", "w", "", "7", "", "0.625", ""]));
        assert_eq!(out.rows[4], results.rows[3]);
        // Summarised over seeds: the mean row's acc_mean is the average of 0.375 and 0.625.
        let summary = super::super::summary::table(&out);
        let target = summary.column("target").unwrap();
        let acc = summary.column("acc_mean").unwrap();
        let mean: Vec<&Vec<String>> = summary.rows.iter().filter(|r| r[target] == "mean").collect();
        assert_eq!(mean.len(), 1);
        assert!((mean[0][acc].parse::<f64>().unwrap() - 0.5).abs() < 1e-12);
        let without = Table { header: s(&["data.seed", "acc"]), rows: vec![s(&["1", "0.5"])] };
        assert_eq!(with_means(&without).rows, without.rows);
    }
}
