//! paired.csv: with `[report] subject`, per table, other label and shot count, the subject's
//! headline metric minus the other's, seed by seed on the same split (same data settings and
//! `data.seed`), with the mean, standard deviation and Student-t 95% interval of those
//! differences. Pairing cancels the split-to-split variation both runs share.

use anyhow::{Result, bail};

use super::rows::{self, Run, Runs};
use super::tables::{Kind, Table};
use crate::csv_io;
use crate::stats;

#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// Index into the report's tables.
    pub table: usize,
    pub other: String,
    pub shots: i64,
    /// `hm`, `acc`, or `mean_target_acc` for a target table.
    pub metric: String,
    /// subject − other per seed, in seed order (fractions).
    pub diffs: Vec<f64>,
    pub mean: f64,
    pub std: Option<f64>,
    pub ci95: Option<f64>,
}

/// Same replicate: the same `data.seed` (the first seed column) and the same training seeds
/// where both runs have them (a zero-shot run has none).
fn same_replicate(a: &Run, b: &Run) -> bool {
    a.seeds.first() == b.seeds.first()
        && a.seeds.iter().zip(&b.seeds).skip(1).all(|(x, y)| x.is_empty() || y.is_empty() || x == y)
}

pub fn build(runs: &Runs, tables: &[Table], subject: &str) -> Result<Vec<Paired>> {
    let mut out = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        let column = &table.columns[table.headline];
        let metric = match table.kind {
            Kind::Test => column.metric.to_string(),
            Kind::Targets => format!("mean_target_{}", column.metric),
        };
        let members = members(runs, table.protocol, &column.target);
        for other in rows::label_order(members.iter().copied()).into_iter().filter(|l| l != subject) {
            for (shots, diffs) in differences(runs, &members, subject, &other, column.metric)? {
                if let Some((mean, std, ci95)) = stats::describe(&diffs) {
                    out.push(Paired {
                        table: t,
                        other: other.clone(),
                        shots,
                        metric: metric.clone(),
                        diffs,
                        mean,
                        std,
                        ci95,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The runs of a protocol on one target (empty: its own test set).
pub fn members<'r>(runs: &'r Runs, protocol: usize, target: &str) -> Vec<&'r Run> {
    runs.runs.iter().filter(|r| r.protocol == protocol && r.target == target).collect()
}

/// Per shot count of the subject's runs among `members`, subject − other in `metric`, seed by
/// seed (seed order); a replicate either lacks is left out.
pub fn differences(
    runs: &Runs,
    members: &[&Run],
    subject: &str,
    other: &str,
    metric: &str,
) -> Result<Vec<(i64, Vec<f64>)>> {
    let mut mine: Vec<&Run> = members.iter().copied().filter(|r| r.label == subject).collect();
    mine.sort_by(|a, b| rows::seed_order(&a.seeds, &b.seeds));
    let mut shots: Vec<i64> = mine.iter().map(|r| r.shots).collect();
    shots.sort_unstable();
    shots.dedup();
    let mut out = Vec::new();
    for s in shots {
        let mut diffs = Vec::new();
        for a in mine.iter().filter(|r| r.shots == s) {
            let partners: Vec<&&Run> =
                members.iter().filter(|b| b.label == other && b.shots == s && same_replicate(a, b)).collect();
            if partners.len() > 1 {
                bail!(
                    "[report] subject = \"{subject}\": {other} has {} runs at {s} shots for seeds {}; a pair needs one",
                    partners.len(),
                    a.seeds.join("/")
                );
            }
            if let (Some(x), Some(y)) = (runs.value(a, metric), partners.first().and_then(|b| runs.value(b, metric))) {
                diffs.push(x - y);
            }
        }
        out.push((s, diffs));
    }
    Ok(out)
}

/// paired.csv: the protocol's data settings, then `table`, `subject`, `other`, `shots`,
/// `metric`, `pairs`, `diffs` (`;`-separated, seed order), `diff_mean`, `diff_std`, `diff_ci95`.
pub fn csv(runs: &Runs, tables: &[Table], subject: &str, paired: &[Paired]) -> csv_io::Table {
    let settings: Vec<String> =
        runs.protocols.first().map(|p| p.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let mut header = settings;
    header.extend(
        ["table", "subject", "other", "shots", "metric", "pairs", "diffs", "diff_mean", "diff_std", "diff_ci95"]
            .map(String::from),
    );
    let show = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let rows = paired
        .iter()
        .map(|p| {
            let table = &tables[p.table];
            let mut row: Vec<String> = runs.protocols[table.protocol].iter().map(|(_, v)| v.clone()).collect();
            row.extend([
                table.kind.as_str().to_string(),
                subject.to_string(),
                p.other.clone(),
                p.shots.to_string(),
                p.metric.clone(),
                p.diffs.len().to_string(),
                p.diffs.iter().map(f64::to_string).collect::<Vec<_>>().join(";"),
                p.mean.to_string(),
                show(p.std),
                show(p.ci95),
            ]);
            row
        })
        .collect();
    csv_io::Table { header, rows }
}

/// The paired differences of each table as text, in percentage points.
pub fn render(runs: &Runs, tables: &[Table], subject: &str, paired: &[Paired]) -> Vec<String> {
    let mut out = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        let mine: Vec<&Paired> = paired.iter().filter(|p| p.table == t).collect();
        if mine.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(String::new());
        }
        let protocol = runs.heading(table.protocol);
        out.push(format!(
            "{protocol}{}: {subject} − other, percentage points, per seed; mean ± 95% CI (Student t)",
            if table.kind == Kind::Targets { ", targets" } else { "" }
        ));
        let width = mine.iter().map(|p| p.other.chars().count()).max().unwrap_or(0).max(5);
        let pp = |x: f64| format!("{:+.1}", 100.0 * x);
        let rows: Vec<[String; 6]> = mine
            .iter()
            .map(|p| {
                let interval = match p.ci95 {
                    Some(ci) => format!("{} ± {:.1}", pp(p.mean), 100.0 * ci),
                    None => pp(p.mean),
                };
                let diffs = p.diffs.iter().map(|&d| pp(d)).collect::<Vec<_>>().join(" ");
                [p.other.clone(), p.shots.to_string(), p.metric.clone(), p.diffs.len().to_string(), diffs, interval]
            })
            .collect();
        let diffs_width = rows.iter().map(|r| r[4].chars().count()).max().unwrap_or(0).max(8);
        let metric_width = rows.iter().map(|r| r[2].len()).max().unwrap_or(0).max(6);
        let line = |r: &[String; 6]| {
            format!(
                "{:<width$}  {:>5}  {:<metric_width$}  {:>5}  {:<diffs_width$}  {}",
                r[0], r[1], r[2], r[3], r[4], r[5]
            )
            .trim_end()
            .to_string()
        };
        out.push(line(&["other", "shots", "metric", "pairs", "per seed", "mean"].map(String::from)));
        out.extend(rows.iter().map(line));
    }
    out
}
