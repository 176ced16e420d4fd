//! `[export] chosen = true`: after a sweep, each chosen.csv row's model (its own test set's
//! row, not `[eval] targets` rows) exported from the store as `clip-ast export` does, into
//! `models/<variant>-<method>-<dataset>-<shots>shot-seed<seed>/` beside results.csv. Nothing
//! is retrained: the eval artifact names the weights, the stage-2 delta and the split. A
//! folder that already holds the export of the same evaluation in the same format is kept.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;

use super::choose::Choose;
use super::file::PipelineFile;
use super::results::{EVAL_COLUMN, TARGET_COLUMN};
use crate::csv_io::Table;
use crate::export::folder::MARKER_FILE;
use crate::export::{ExportRequest, Format, export};
use crate::stages::StageContext;

/// The folder under the results folder the models go to.
pub const MODELS_DIR: &str = "models";

/// The file's `[export]` format when it asks for the chosen models; an error when it asks
/// without a `[choose]` to say which.
pub fn of(file: &PipelineFile, choose: Option<&Choose>) -> Result<Option<Format>> {
    if !file.values.get("export.chosen").is_some_and(|v| v[0].as_bool()) {
        return Ok(None);
    }
    if choose.is_none() {
        bail!("{}: [export] chosen = true needs a [choose] section to say which models", file.at("export.chosen"));
    }
    let name = file.values.get("export.format").map_or("both".to_string(), |v| v[0].as_str().to_string());
    Format::from_str(&name, false).map(Some).map_err(|e| anyhow!("{}: {e}", file.at("export.format")))
}

/// Export every chosen row; returns warnings (rows that cannot be exported, such as
/// linear-probe ones) for stderr.
pub fn write(ctx: &StageContext, chosen: &Table, format: Format, out: &Path) -> Result<Vec<String>> {
    let col = |name: &str| chosen.column(name).with_context(|| format!("chosen.csv has no `{name}` column"));
    let (eval, method) = (col(EVAL_COLUMN)?, col("method")?);
    let target = chosen.column(TARGET_COLUMN);
    let models = out.join(MODELS_DIR);
    let mut warnings = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for row in &chosen.rows {
        if target.is_some_and(|t| !row[t].is_empty()) {
            continue;
        }
        if row[method] == "linear-probe" {
            warnings.push(format!(
                "note: [export] skips {} (a linear probe is not a CLIP model)",
                folder_name(chosen, row)
            ));
            continue;
        }
        let mut name = folder_name(chosen, row);
        if names.contains(&name) {
            name = format!("{name}-{}", &row[eval][..12.min(row[eval].len())]);
        }
        names.push(name.clone());
        let dir = models.join(&name);
        if already_exported(&dir, &row[eval], format) {
            continue;
        }
        let request = ExportRequest { source: &row[eval], splits: &[], out: &dir, format };
        export(ctx, &request).with_context(|| format!("[export] {name}"))?;
    }
    Ok(warnings)
}

/// `variant-method-dataset-Kshot-seedS` from the row's columns (the variant only where the file
/// has variants), with characters a folder name should not hold replaced.
fn folder_name(table: &Table, row: &[String]) -> String {
    let get = |name: &str| table.column(name).map_or("", |i| row[i].as_str());
    let mut parts: Vec<String> = Vec::new();
    if !get("variant").is_empty() {
        parts.push(get("variant").to_string());
    }
    parts.push(get("method").to_string());
    parts.push(get("data.dataset").to_string());
    if !matches!(get("data.classes"), "" | "all") {
        parts.push(get("data.classes").to_string());
    }
    parts.push(format!("{}shot", get("data.shots")));
    parts.push(format!("seed{}", get("data.seed")));
    parts.join("-").chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// Whether `dir` already holds this evaluation's export in this format (its marker says so).
fn already_exported(dir: &Path, eval: &str, format: Format) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(MARKER_FILE)) else { return false };
    let Ok(marker) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    let formats = format.formats();
    let files: Vec<&str> =
        marker["files"].as_array().map_or(Vec::new(), |f| f.iter().filter_map(|v| v.as_str()).collect());
    let has = |f: &str| files.contains(&f) && dir.join(f).is_file();
    marker["source"]["key"] == eval
        && has("open_clip_model.safetensors") == formats.open_clip
        && has("model.safetensors") == formats.hf
        && files.iter().all(|f| dir.join(f).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_say_what_the_model_is() {
        let header = ["variant", "method", "data.dataset", "data.shots", "data.seed", "data.classes"];
        let table = Table { header: header.map(String::from).to_vec(), rows: Vec::new() };
        let row = |v: [&str; 6]| v.map(String::from).to_vec();
        assert_eq!(
            folder_name(&table, &row(["", "clip-ast/inv-sqrt-v", "caltech101", "16", "1", "all"])),
            "clip-ast_inv-sqrt-v-caltech101-16shot-seed1"
        );
        assert_eq!(
            folder_name(&table, &row(["b2n", "full-ft", "dtd", "4", "2", "base-to-novel"])),
            "b2n-full-ft-dtd-base-to-novel-4shot-seed2"
        );
    }
}
