//! `clip-ast report`: eval artifacts' metrics.csv summarised over seeds by method and shots, as
//! a table, a CSV and a plot of the harmonic mean against shots, one line per method with ±1 std
//! error bars. (A pipeline's `[report]` reads its results rows instead: `super::build`.)

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::csv_io::{self, shortest};
use crate::stages::eval::MetricsRow;
use crate::stats;

use super::png::{Line, Panel};

/// One evaluation's headline numbers, read from its `metrics.csv`.
#[derive(Clone, Debug)]
pub struct EvalRow {
    pub method: String,
    pub shots: i64,
    pub seed: i64,
    pub base: f64,
    pub new: f64,
    pub hm: f64,
}

/// Mean and sample std over seeds of one (method, shots).
#[derive(Clone, Debug)]
pub struct Summary {
    pub method: String,
    pub shots: i64,
    pub seeds: usize,
    pub base: (f64, f64),
    pub new: (f64, f64),
    pub hm: (f64, f64),
}

pub fn read_metrics(path: &Path) -> Result<EvalRow> {
    let rows: Vec<MetricsRow> = csv_io::read_rows(path)?;
    let row = rows.into_iter().next().with_context(|| format!("{}: no data row", path.display()))?;
    let number = |name: &str, value: Option<f64>| {
        value.with_context(|| format!("{}: `{name}` is not a number (is this a base-to-novel eval?)", path.display()))
    };
    Ok(EvalRow {
        base: number("base_acc", row.base_acc)?,
        new: number("new_acc", row.new_acc)?,
        hm: number("hm", row.hm)?,
        method: row.method,
        shots: row.shots,
        seed: row.seed,
    })
}

/// Mean and sample standard deviation (0 for a single seed).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let (mean, std, _) = stats::describe(values).expect("a group has at least one row");
    (mean, std.unwrap_or(0.0))
}

/// Group by method and shots, in the order methods first appear.
pub fn summarize(rows: &[EvalRow]) -> Vec<Summary> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<(String, i64), Vec<&EvalRow>> = BTreeMap::new();
    for row in rows {
        if !order.contains(&row.method) {
            order.push(row.method.clone());
        }
        groups.entry((row.method.clone(), row.shots)).or_default().push(row);
    }
    let mut out = Vec::new();
    for method in &order {
        for ((m, shots), group) in &groups {
            if m != method {
                continue;
            }
            let pick = |f: fn(&EvalRow) -> f64| mean_std(&group.iter().map(|r| f(r)).collect::<Vec<_>>());
            out.push(Summary {
                method: m.clone(),
                shots: *shots,
                seeds: group.len(),
                base: pick(|r| r.base),
                new: pick(|r| r.new),
                hm: pick(|r| r.hm),
            });
        }
    }
    out
}

pub fn table(summaries: &[Summary]) -> String {
    let pct = |(m, s): (f64, f64)| format!("{:5.1} ± {:4.1}", 100.0 * m, 100.0 * s);
    let mut out =
        format!("{:<22} {:>5}  {:>12}  {:>12}  {:>12}  seeds\n", "method", "shots", "base %", "new %", "HM %");
    for s in summaries {
        out += &format!(
            "{:<22} {:>5}  {:>12}  {:>12}  {:>12}  {}\n",
            s.method,
            s.shots,
            pct(s.base),
            pct(s.new),
            pct(s.hm),
            s.seeds
        );
    }
    out
}

const REPORT_COLUMNS: [&str; 9] =
    ["method", "shots", "seeds", "base_mean", "base_std", "new_mean", "new_std", "hm_mean", "hm_std"];

/// A row of the report's CSV.
#[derive(Serialize)]
struct ReportRow<'a> {
    method: &'a str,
    shots: i64,
    seeds: usize,
    #[serde(serialize_with = "shortest")]
    base_mean: f64,
    #[serde(serialize_with = "shortest")]
    base_std: f64,
    #[serde(serialize_with = "shortest")]
    new_mean: f64,
    #[serde(serialize_with = "shortest")]
    new_std: f64,
    #[serde(serialize_with = "shortest")]
    hm_mean: f64,
    #[serde(serialize_with = "shortest")]
    hm_std: f64,
}

/// The summaries as CSV, replacing `path` whole.
pub fn write_csv(summaries: &[Summary], path: &Path) -> Result<()> {
    let rows: Vec<ReportRow> = summaries
        .iter()
        .map(|s| ReportRow {
            method: &s.method,
            shots: s.shots,
            seeds: s.seeds,
            base_mean: s.base.0,
            base_std: s.base.1,
            new_mean: s.new.0,
            new_std: s.new.1,
            hm_mean: s.hm.0,
            hm_std: s.hm.1,
        })
        .collect();
    csv_io::write_rows_atomically(path, &REPORT_COLUMNS, &rows)
}

/// Harmonic mean against shots, one line per method, error bars of one std over seeds; the
/// PNG replaces `path` whole.
pub fn plot(summaries: &[Summary], path: &Path, title: &str) -> Result<()> {
    let mut lines: Vec<Line> = Vec::new();
    for s in summaries {
        let point = (s.shots, s.hm.0, (s.seeds > 1).then_some(s.hm.1));
        match lines.iter_mut().find(|l| l.label == s.method) {
            Some(line) => line.points.push(point),
            None => lines.push(Line { label: s.method.clone(), points: vec![point] }),
        }
    }
    let y_desc = "harmonic mean of base and new accuracy (%)".to_string();
    super::png::write_png(&[Panel { title: String::new(), y_desc, lines }], path, title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_average_over_seeds() {
        let row =
            |method: &str, shots, seed, hm| EvalRow { method: method.into(), shots, seed, base: 0.5, new: 0.25, hm };
        let rows = [row("b", 4, 1, 0.2), row("a", 1, 1, 0.5), row("b", 4, 2, 0.4), row("b", 1, 1, 0.1)];
        let s = summarize(&rows);
        assert_eq!(s.iter().map(|s| (s.method.as_str(), s.shots)).collect::<Vec<_>>(), [("b", 1), ("b", 4), ("a", 1)]);
        assert!((s[1].hm.0 - 0.3).abs() < 1e-12);
        assert!((s[1].hm.1 - 0.02f64.sqrt()).abs() < 1e-12, "sample std of 0.2 and 0.4");
        assert_eq!(s[1].seeds, 2);
    }
}
