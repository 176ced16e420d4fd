//! `[report]`: its keys checked before anything runs, and the report (`crate::report`) written
//! from the rows the run ends with: results.csv's, or chosen.csv's with `[choose]`.

use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::choose::{self, Choose};
use super::file::PipelineFile;
use super::graph::Graph;
use super::summary::SEEDS;
use super::target_mean;
use crate::csv_io::Table;
use crate::report;

/// `[report] subject`, the label the paired differences are taken from.
fn subject(file: &PipelineFile) -> Option<&str> {
    file.values.get("report.subject").map(|v| v[0].as_str())
}

/// `[report] zero_shot_band = "LOW,HIGH"`, percent.
fn band(file: &PipelineFile) -> Result<Option<(f64, f64)>> {
    let Some(value) = file.values.get("report.zero_shot_band") else { return Ok(None) };
    let text = value[0].as_str();
    let parsed =
        text.split_once(',').and_then(|(l, h)| Some((l.trim().parse::<f64>().ok()?, h.trim().parse::<f64>().ok()?)));
    match parsed {
        Some((low, high)) if (0.0..=100.0).contains(&low) && (0.0..=100.0).contains(&high) && low < high => {
            Ok(Some((low, high)))
        }
        _ => bail!(
            "{}: [report] zero_shot_band = \"{text}\": expected \"LOW,HIGH\", two percentages with 0 ≤ LOW < HIGH ≤ 100",
            file.at("report.zero_shot_band")
        ),
    }
}

/// Before anything runs: the band reads, and the subject is a label of the rows the report
/// will show (the grid's, one per choice with `[choose]`) with another label to pair with.
pub fn check(file: &PipelineFile, graph: &Graph, choose: Option<&Choose>) -> Result<()> {
    band(file)?;
    let Some(subject) = subject(file) else {
        if !file.claims.is_empty() {
            bail!("{}: [report] claims are read against [report] subject; set subject = \"...\"", file.at("report"));
        }
        return Ok(());
    };
    let planned = choose::planned(graph, choose);
    let chosen = choose.map(Choose::chosen_columns).unwrap_or_default();
    let labels = report::rows::labels(&planned, SEEDS, &chosen);
    let at = file.at("report.subject");
    let subject = report::rows::find_subject(&labels, subject).map_err(|e| anyhow!("{at}: {e}"))?;
    if labels.iter().all(|l| *l == subject) {
        bail!("{at}: [report] subject = \"{subject}\": the pipeline runs nothing else to pair it with");
    }
    for claim in &file.claims {
        if claim.other == subject || !labels.contains(&claim.other) {
            let mut known: Vec<&String> = labels.iter().filter(|l| **l != subject).collect();
            known.sort();
            known.dedup();
            bail!(
                "{}: [report] claims: other = \"{}\" is not a label to pair with {subject}; use one of {}",
                file.at("report"),
                claim.other,
                known.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

/// With a `[report]` section: the report of `rows` (results.csv's, or chosen.csv's) in `out`,
/// returning its printed lines and its warnings. Without one: the old report's files removed,
/// which would otherwise pass for this run's.
pub fn write(
    file: &PipelineFile,
    rows: &Table,
    choose: Option<&Choose>,
    out: &Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let Some(title) = &file.report_title else {
        for name in report::FILES {
            report::remove(&out.join(name))?;
        }
        return Ok((Vec::new(), Vec::new()));
    };
    let rows = target_mean::with_means(rows);
    let among = choose.map(|c| c.among.clone()).unwrap_or_default();
    let chosen = choose.map(Choose::chosen_columns).unwrap_or_default();
    let input = report::Input {
        rows: &rows,
        seeds: SEEDS,
        among: &among,
        chosen: &chosen,
        subject: subject(file),
        band: band(file)?,
        claims: &file.claims,
        title,
    };
    let built = report::build(&input).map_err(|e| anyhow!("{}: {e}", file.at("report")))?;
    built.write(out)?;
    Ok((built.text, built.warnings))
}
