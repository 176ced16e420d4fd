//! `clip-ast gc`: keep what pipeline results reference (the eval artifacts in results.csv files
//! and everything they were made from), remove the rest, after showing what would go.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use walkdir::WalkDir;

use super::results::EVAL_COLUMN;
use crate::csv_io::Table;
use crate::store::gc::{plan, sweep};
use crate::store::{ArtifactKey, Store};

/// Where `clip-ast run` writes results unless told otherwise.
pub const DEFAULT_RESULTS: &str = "results";

/// Lines for stdout: what would go (or went), and a total.
pub fn gc(store: &Store, folders: &[PathBuf], yes: bool) -> Result<Vec<String>> {
    let folders = if folders.is_empty() { vec![PathBuf::from(DEFAULT_RESULTS)] } else { folders.to_vec() };
    let mut files = Vec::new();
    for folder in &folders {
        if folder.is_file() {
            files.push(folder.clone());
        } else if folder.is_dir() {
            find_results(folder, &mut files)?;
        } else {
            bail!("{}: no such results folder; give the folders `clip-ast run` wrote (--out)", folder.display());
        }
    }
    if files.is_empty() {
        let shown: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
        bail!(
            "no results.csv under {}; gc keeps only what results reference, so it would remove every artifact: give the folders `clip-ast run` wrote",
            shown.join(", ")
        );
    }
    let mut roots = Vec::new();
    for file in &files {
        roots.extend(eval_keys(file)?);
    }
    roots.sort();
    roots.dedup();

    let plan = plan(store, &roots)?;
    if !plan.missing_roots.is_empty() {
        eprintln!(
            "note: {} evaluation(s) named in the results are not in {}; were they run with another --store?",
            plan.missing_roots.len(),
            store.root().display()
        );
    }
    for dir in &plan.unreadable {
        eprintln!("note: {} has an unreadable manifest and is left alone; run `clip-ast audit`", dir.display());
    }
    let verb = if yes { "remove" } else { "would remove" };
    let mut lines = Vec::new();
    let mut bytes = 0;
    for artifact in &plan.remove {
        let size = dir_size(&artifact.dir);
        bytes += size;
        lines.push(format!("{verb} {:<9} {}  {}", artifact.kind, artifact.key.short(), human(size)));
    }
    let kept = plan.keep.len();
    let sources = format!("{} results file(s)", files.len());
    if !yes {
        let stale =
            if plan.stale.is_empty() { String::new() } else { format!(" and {} stale temp file(s)", plan.stale.len()) };
        lines.push(format!(
            "would remove {} artifact(s) ({}){stale}, keep {kept} referenced by {sources}; run again with --yes to remove",
            plan.remove.len(),
            human(bytes)
        ));
        return Ok(lines);
    }
    let outcome = sweep(store, &plan)?;
    for key in &outcome.busy {
        eprintln!("note: {} is locked by a running stage and was kept", key.short());
    }
    lines.push(format!(
        "removed {} artifact(s) ({}) and {} stale temp file(s), kept {kept} referenced by {sources}",
        outcome.removed,
        human(bytes),
        outcome.stale_removed
    ));
    Ok(lines)
}

/// Lines for stdout: the checkpoints of stages that are not running whose artifact is
/// published, or (with `older_than`) that nothing has saved to for that long.
pub fn gc_checkpoints(store: &Store, older_than: Option<std::time::Duration>, yes: bool) -> Result<Vec<String>> {
    use crate::store::checkpoint::{Leftover, leftovers, remove_leftover};
    let mut lines = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for (entry, reason) in leftovers(store, older_than)? {
        let size = dir_size(entry.area.dir());
        let why = match reason {
            Leftover::Published => "its artifact is published",
            Leftover::Old => "older than --older-than",
        };
        if yes && !remove_leftover(store, &entry)? {
            eprintln!("note: checkpoints of {} are in use by a stage that started meanwhile; kept", entry.key.short());
            continue;
        }
        let verb = if yes { "removed" } else { "would remove" };
        lines.push(format!("{verb} checkpoints {}  {} ({why})", entry.key.short(), human(size)));
        count += 1;
        bytes += size;
    }
    if count > 0 || older_than.is_some() {
        let verb = if yes { "removed" } else { "would remove" };
        let hint = if yes || count == 0 { "" } else { "; run again with --yes to remove" };
        lines.push(format!("{verb} the checkpoints of {count} stage(s) ({}){hint}", human(bytes)));
    }
    Ok(lines)
}

/// `--older-than`: a number and a unit, `90s`, `30m`, `12h`, `7d`.
pub fn parse_age(text: &str) -> std::result::Result<std::time::Duration, String> {
    let unit = text.chars().last().unwrap_or(' ');
    let seconds = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        _ => return Err(format!("`{text}` needs a unit: s, m, h or d (say 7d)")),
    };
    match text[..text.len() - 1].parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(std::time::Duration::from_secs_f64(n * seconds)),
        _ => Err(format!("`{text}` is not an age such as 90s, 30m, 12h or 7d")),
    }
}

/// Every `results.csv` under `dir`, in name order (links followed, as `run --out` may be one).
fn find_results(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        let entry = entry.with_context(|| format!("{}: cannot read", dir.display()))?;
        if !entry.file_type().is_dir() && entry.file_name() == "results.csv" {
            out.push(entry.into_path());
        }
    }
    Ok(())
}

fn eval_keys(file: &Path) -> Result<Vec<ArtifactKey>> {
    let table = Table::read(file)?;
    let column = table.column(EVAL_COLUMN).with_context(|| {
        format!("{}: no `{EVAL_COLUMN}` column; not a results file of `clip-ast run`", file.display())
    })?;
    table
        .rows
        .iter()
        .map(|row| {
            row[column].parse().with_context(|| format!("{}: `{}` is not an artifact key", file.display(), row[column]))
        })
        .collect()
}

/// Bytes under `dir`; what cannot be read counts as nothing (this only informs).
fn dir_size(dir: &Path) -> u64 {
    WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn human(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 1000.0 { format!("{:.1} GB", mb / 1000.0) } else { format!("{mb:.1} MB") }
}
