//! Reports. A pipeline's `[report]` ([`build`]) is made from its results rows (the chosen ones
//! with `[choose]`): one table per protocol (the data settings but shots and seed) with each
//! label's metrics per shot count over seeds, a table of `[eval] targets`, with `subject` the
//! paired differences against every other label, and a plot; pipelines/README.md documents the
//! files. `clip-ast report` summarises eval artifacts instead (`evals`).

mod evals;
mod forest;
mod markdown;
mod paired;
mod png;
pub mod rows;
mod tables;
#[cfg(test)]
mod tests;
pub mod verdict;

use std::path::Path;

use anyhow::{Context, Result};

pub use evals::{EvalRow, Summary, plot, read_metrics, summarize, table, write_csv};

use crate::csv_io::Table;
use png::{Line, Panel};
use tables::Kind;

/// The files a `[report]` writes in the results folder.
pub const FILES: [&str; 6] = ["report.txt", "report.md", "report.csv", "paired.csv", "report.png", "paired.png"];

/// What a pipeline's report is made of.
pub struct Input<'a> {
    /// results.csv's rows, or chosen.csv's, with each run's mean over its targets as a row
    /// with `target = "mean"` (`pipeline::target_mean`).
    pub rows: &'a Table,
    /// The replicate columns, `data.seed` first.
    pub seeds: &'a [&'a str],
    /// `[choose] among`: shown per seed in the tables.
    pub among: &'a [String],
    /// `among` and the settings that follow them: never part of a label.
    pub chosen: &'a [String],
    /// `[report] subject`: a label to pair with every other.
    pub subject: Option<&'a str>,
    /// `[report] zero_shot_band`: (low, high) in percent.
    pub band: Option<(f64, f64)>,
    /// `[report] claims`: read against `subject`.
    pub claims: &'a [verdict::Claim],
    pub title: &'a str,
}

pub struct Report {
    /// The printed tables, report.txt's lines.
    pub text: Vec<String>,
    /// `warning: ...` lines for stderr.
    pub warnings: Vec<String>,
    /// report.csv.
    pub long: Table,
    /// paired.csv, with a subject.
    pub paired: Option<Table>,
    /// report.md's lines.
    pub markdown: Vec<String>,
    /// Per claim and protocol, the decisions alone (`verdict::decisions`).
    pub decisions: Vec<String>,
    panels: Vec<Panel>,
    forest: Vec<forest::Panel>,
    title: String,
}

pub fn build(input: &Input) -> Result<Report> {
    let runs = rows::Runs::new(input.rows, input.seeds, input.chosen)?;
    let tables = tables::build(&runs, input.among);
    let mut text = vec![input.title.to_string()];
    for table in &tables {
        text.push(String::new());
        text.extend(tables::render(table, &runs));
    }
    let mut paired_rows = Vec::new();
    let mut verdicts = Vec::new();
    let subject = match input.subject {
        Some(subject) => {
            let labels: Vec<String> = runs.runs.iter().map(|r| r.label.clone()).collect();
            let subject = rows::find_subject(&labels, subject)?;
            paired_rows = paired::build(&runs, &tables, &subject)?;
            let lines = paired::render(&runs, &tables, &subject, &paired_rows);
            if !lines.is_empty() {
                text.push(String::new());
                text.extend(lines);
            }
            verdicts = verdict::build(&runs, &subject, input.claims)?;
            Some(subject)
        }
        None => None,
    };
    let panels = panels(&runs, &tables);
    let forest = forest_panels(&runs, &tables, &paired_rows, &verdicts, input.claims);
    let markdown = markdown::render(&markdown::Parts {
        title: input.title,
        runs: &runs,
        tables: &tables,
        subject: subject.as_deref(),
        paired: &paired_rows,
        claims: input.claims,
        verdicts: &verdicts,
        report_png: !panels.is_empty(),
        paired_png: !forest.is_empty(),
    });
    Ok(Report {
        text,
        warnings: input.band.map(|band| band_warnings(&runs, band)).unwrap_or_default(),
        long: long_form(&runs, &tables),
        paired: subject.as_ref().map(|s| paired::csv(&runs, &tables, s, &paired_rows)),
        markdown,
        decisions: verdict::decisions(&verdicts, input.claims),
        panels,
        forest,
        title: input.title.to_string(),
    })
}

/// paired.png's panels: the claims' comparisons first, then each table's paired differences,
/// one row per other label and shot count.
fn forest_panels(
    runs: &rows::Runs,
    tables: &[tables::Table],
    paired: &[paired::Paired],
    verdicts: &[verdict::Verdict],
    claims: &[verdict::Claim],
) -> Vec<forest::Panel> {
    let mut out = Vec::new();
    let shots = |s: i64| if s == 1 { "1 shot".to_string() } else { format!("{s} shots") };
    let mut claim_rows = Vec::new();
    for v in verdicts {
        for &(s, _, reading) in &v.readings {
            let (mean, half) = match reading {
                verdict::Reading::Holds { mean, half }
                | verdict::Reading::Reversed { mean, half }
                | verdict::Reading::Unresolved { mean, half } => (mean, Some(half)),
                verdict::Reading::Single { mean } => (mean, None),
            };
            // `(a)` where the claim is numbered so, else the whole text; the axis has little room.
            let claim = &claims[v.claim];
            let short = match claim.text.find(')') {
                Some(end) if claim.text.starts_with('(') => &claim.text[..=end],
                _ => claim.text.as_str(),
            };
            let label = format!("{short} vs {}, {}, {}", claim.other, claim.metric, shots(s));
            claim_rows.push(forest::Row { label, mean: 100.0 * mean, half: half.map(|h| 100.0 * h) });
        }
    }
    if !claim_rows.is_empty() {
        out.push(forest::Panel { title: "The claims: subject − other".into(), rows: claim_rows });
    }
    for (t, table) in tables.iter().enumerate() {
        let rows: Vec<forest::Row> = paired
            .iter()
            .filter(|p| p.table == t)
            .map(|p| forest::Row {
                label: format!("{}, {}", p.other, shots(p.shots)),
                mean: 100.0 * p.mean,
                half: p.ci95.map(|c| 100.0 * c),
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let metric = &table.columns[table.headline].metric;
        let on = if table.kind == Kind::Targets { ", on other test sets" } else { "" };
        out.push(forest::Panel { title: format!("{}{on}: {metric}", runs.heading(table.protocol)), rows });
    }
    out
}

impl Report {
    /// report.txt, report.csv, paired.csv and report.png in `out`, each replaced whole; those
    /// this report has none of (no subject, nothing to plot) are removed.
    pub fn write(&self, out: &Path) -> Result<()> {
        let text: String = self.text.iter().map(|l| format!("{l}\n")).collect();
        crate::fsutil::write_atomically(&out.join("report.txt"), text.as_bytes())?;
        self.long.write_atomically(&out.join("report.csv"))?;
        match &self.paired {
            Some(paired) => paired.write_atomically(&out.join("paired.csv"))?,
            None => remove(&out.join("paired.csv"))?,
        }
        let markdown: String = self.markdown.iter().map(|l| format!("{l}\n")).collect();
        crate::fsutil::write_atomically(&out.join("report.md"), markdown.as_bytes())?;
        if self.forest.is_empty() {
            remove(&out.join("paired.png"))?;
        } else {
            forest::write_png(&self.forest, &out.join("paired.png"), &format!("{}: paired differences", self.title))?;
        }
        if self.panels.is_empty() {
            remove(&out.join("report.png"))
        } else {
            png::write_png(&self.panels, &out.join("report.png"), &self.title)
        }
    }
}

/// Remove `path` if it is there.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove the old one", path.display()))
        }
        _ => Ok(()),
    }
}

/// report.csv: one row per table, label, shot count and metric (fractions).
fn long_form(runs: &rows::Runs, tables: &[tables::Table]) -> Table {
    let header = ["table", "protocol", "target", "label", "shots", "metric", "mean", "std", "seeds", "chosen"];
    let mut rows = Vec::new();
    for table in tables {
        let protocol = rows::describe(&runs.protocols[table.protocol]);
        for line in &table.lines {
            for (column, cell) in table.columns.iter().zip(&line.cells) {
                let Some(cell) = cell else { continue };
                rows.push(vec![
                    table.kind.as_str().to_string(),
                    protocol.clone(),
                    column.target.clone(),
                    line.label.clone(),
                    line.shots.to_string(),
                    column.metric.to_string(),
                    cell.mean.to_string(),
                    cell.std.map(|s| s.to_string()).unwrap_or_default(),
                    line.seeds.to_string(),
                    line.chosen.clone(),
                ]);
            }
        }
    }
    Table { header: header.map(String::from).to_vec(), rows }
}

/// A panel per test table with two shot counts or more, and per target table: the headline
/// metric against shots.
fn panels(runs: &rows::Runs, tables: &[tables::Table]) -> Vec<Panel> {
    let mut out = Vec::new();
    for table in tables {
        let mut shots: Vec<i64> = table.lines.iter().map(|l| l.shots).collect();
        shots.sort_unstable();
        shots.dedup();
        if table.kind == Kind::Test && shots.len() < 2 {
            continue;
        }
        let mut lines: Vec<Line> = Vec::new();
        for l in &table.lines {
            let Some(cell) = l.cells[table.headline] else { continue };
            let point = (l.shots, cell.mean, cell.std);
            match lines.iter_mut().find(|x| x.label == l.label) {
                Some(line) => line.points.push(point),
                None => lines.push(Line { label: l.label.clone(), points: vec![point] }),
            }
        }
        let protocol = runs.heading(table.protocol);
        let (title, y_desc) = match (table.kind, table.columns[table.headline].metric) {
            (Kind::Targets, _) => (format!("{protocol}: targets"), "mean accuracy over the targets (%)"),
            (_, "hm") => (protocol, "harmonic mean of base and new accuracy (%)"),
            _ => (protocol, "accuracy (%)"),
        };
        out.push(Panel { title, y_desc: y_desc.to_string(), lines });
    }
    out
}

/// `warning:` lines for the zero-shot runs of base-to-novel protocols whose base or new test
/// accuracy lies outside `band` (percent): zero-shot should leave the base classes room to
/// learn and know enough of the new ones to have something to keep.
fn band_warnings(runs: &rows::Runs, (low, high): (f64, f64)) -> Vec<String> {
    let mut out = Vec::new();
    for run in &runs.runs {
        let protocol = &runs.protocols[run.protocol];
        if run.method != "zero-shot" || !run.target.is_empty() || rows::classes(protocol) != "base-to-novel" {
            continue;
        }
        for (metric, half) in [("base_acc", "base"), ("new_acc", "new")] {
            let Some(value) = runs.value(run, metric).map(|v| 100.0 * v) else { continue };
            if value < low || value > high {
                out.push(format!(
                    "warning: {} {half} accuracy {value:.1}% at {} shots, seed {} ({}) lies outside the zero-shot band [{low}, {high}]%: the band leaves the base classes room to learn and the new classes knowledge to keep",
                    run.label,
                    run.shots,
                    run.seeds.first().map_or("", String::as_str),
                    rows::describe(protocol)
                ));
            }
        }
    }
    out
}
