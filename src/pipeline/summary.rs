//! summary.csv: results.csv's rows grouped by every setting but the seeds, with the mean,
//! standard deviation and 95% confidence interval (Student t) of each accuracy over the runs.

use super::results::{EVAL_COLUMN, TRAINABLE_COLUMN};
use crate::csv_io::Table;
use crate::stats;

/// The metrics summarised: the accuracies `stages::eval` writes.
pub(super) const ACCURACIES: &[&str] = &["acc", "macro_acc", "base_acc", "new_acc", "hm", "val_acc", "val_base_acc"];

/// Replicates differ only in these (and in their eval artifact).
pub(super) const SEEDS: &[&str] = &["data.seed", "stage1.seed", "select.seed", "stage2.seed"];

/// Summarised after the accuracies: the trained parameter count, which varies over seeds for a
/// random selection.
pub(super) const COUNTS: &[&str] = &[TRAINABLE_COLUMN];

pub fn table(results: &Table) -> Table {
    let is_group = |name: &str| {
        !(SEEDS.contains(&name) || name == EVAL_COLUMN || ACCURACIES.contains(&name) || COUNTS.contains(&name))
    };
    let group_columns: Vec<usize> = (0..results.header.len()).filter(|&i| is_group(&results.header[i])).collect();
    let metrics: Vec<(usize, &str)> = ACCURACIES
        .iter()
        .chain(COUNTS)
        .filter_map(|m| results.column(m).map(|i| (i, *m)))
        .filter(|(i, _)| results.rows.iter().any(|r| !r[*i].is_empty()))
        .collect();

    let mut groups: Vec<(Vec<String>, Vec<&Vec<String>>)> = Vec::new();
    for row in &results.rows {
        let id: Vec<String> = group_columns.iter().map(|&i| row[i].clone()).collect();
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, members)) => members.push(row),
            None => groups.push((id, vec![row])),
        }
    }

    let mut header: Vec<String> = group_columns.iter().map(|&i| results.header[i].clone()).collect();
    header.push("runs".to_string());
    for (_, m) in &metrics {
        header.extend(["mean", "std", "ci95"].map(|s| format!("{m}_{s}")));
    }
    let show = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let rows = groups
        .into_iter()
        .map(|(mut row, members)| {
            row.push(members.len().to_string());
            for (i, _) in &metrics {
                let values: Vec<f64> = members.iter().filter_map(|r| r[*i].parse().ok()).collect();
                let (mean, std, ci) = match stats::describe(&values) {
                    Some((mean, std, ci)) => (Some(mean), std, ci),
                    None => (None, None, None),
                };
                row.extend([show(mean), show(std), show(ci)]);
            }
            row
        })
        .collect();
    Table { header, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_over_seeds_only() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let results = Table {
            header: s(&["data.shots", "data.seed", "stage1.seed", "eval", "method", "acc", "hm"]),
            rows: vec![
                s(&["1", "1", "1", "k1", "m", "0.5", ""]),
                s(&["1", "2", "2", "k2", "m", "0.7", ""]),
                s(&["2", "1", "1", "k3", "m", "0.9", ""]),
            ],
        };
        let summary = table(&results);
        assert_eq!(summary.header, s(&["data.shots", "method", "runs", "acc_mean", "acc_std", "acc_ci95"]));
        assert_eq!(summary.rows.len(), 2);
        assert_eq!(&summary.rows[0][..3], s(&["1", "m", "2"]).as_slice());
        assert!((summary.rows[0][3].parse::<f64>().unwrap() - 0.6).abs() < 1e-12);
        let ci: f64 = summary.rows[0][5].parse().unwrap();
        assert!((ci - 12.7062 * 0.1414214 / 2f64.sqrt()).abs() < 1e-3, "{ci}");
        assert_eq!(summary.rows[1][2..], s(&["1", "0.9", "", ""]));
    }
}
