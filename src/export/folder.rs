//! The output folder of an export, written whole or not at all, and never over files clip-ast
//! did not write: every file goes into a temp folder beside `--out`, which then takes the
//! folder's place. An existing `--out` must be empty or a previous export holding nothing but
//! the files its `clip_ast_export.json` lists.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::fsutil::{TempDir, sync_path};

/// The record of what an export wrote; its presence marks a folder as clip-ast's.
pub const MARKER_FILE: &str = "clip_ast_export.json";

/// Check that `out` may be (re)written: absent, an empty folder, or a previous export with no
/// file added since. Called before any work, so a refusal costs nothing.
pub fn check_writable(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("{}: exists and is not a folder; choose another --out", out.display());
    }
    let present = crate::fsutil::files_under(out)?;
    if present.is_empty() {
        return Ok(());
    }
    let listed = previous_files(out).with_context(|| {
        format!(
            "{}: exists and is not a clip-ast export (no readable {MARKER_FILE}); refusing to write over files clip-ast did not create, choose another --out",
            out.display()
        )
    })?;
    if let Some(extra) = present.iter().find(|f| !listed.contains(f)) {
        bail!(
            "{}: a previous export, but `{extra}` was not written by clip-ast; move it away or choose another --out",
            out.display()
        );
    }
    Ok(())
}

fn previous_files(out: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(out.join(MARKER_FILE))?;
    let marker: Value = serde_json::from_str(&text)?;
    let files = marker["files"].as_array().context("no `files` list")?;
    Ok(files.iter().filter_map(|f| f.as_str().map(str::to_string)).chain([MARKER_FILE.to_string()]).collect())
}

/// A temp folder beside `out` to write the export into.
pub fn staging(out: &Path) -> Result<TempDir> {
    let parent = parent_of(out);
    std::fs::create_dir_all(&parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    let name = out.file_name().with_context(|| format!("{}: not a folder name", out.display()))?;
    TempDir::create(&parent, &format!(".{}", name.to_string_lossy()), "export")
}

/// Put the finished `staged` folder in `out`'s place (checked by [`check_writable`] again:
/// another process may have written there meanwhile). The previous export is moved aside
/// first and removed once the new one is in place.
pub fn publish(staged: TempDir, out: &Path) -> Result<()> {
    check_writable(out)?;
    let old = out.exists().then(|| parent_of(out).join(format!(".{}.old.{}", name_of(out), std::process::id())));
    if let Some(old) = &old {
        std::fs::rename(out, old)
            .with_context(|| format!("{}: cannot move the previous export aside", out.display()))?;
    }
    if let Err(e) = std::fs::rename(staged.path(), out) {
        if let Some(old) = &old {
            let _ = std::fs::rename(old, out);
        }
        return Err(e).with_context(|| format!("{}: cannot move the export into place", out.display()));
    }
    staged.keep();
    sync_path(&parent_of(out))?;
    if let Some(old) = old {
        std::fs::remove_dir_all(&old).with_context(|| format!("{}: cannot remove", old.display()))?;
    }
    Ok(())
}

fn parent_of(out: &Path) -> PathBuf {
    out.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn name_of(out: &Path) -> String {
    out.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_folders_and_untouched_exports_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        check_writable(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_writable(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let err = check_writable(&out).unwrap_err().to_string();
        assert!(err.contains("not a clip-ast export"), "{err}");
        std::fs::write(out.join(MARKER_FILE), r#"{"files": ["README.md"]}"#).unwrap();
        std::fs::write(out.join("README.md"), "x").unwrap();
        let err = check_writable(&out).unwrap_err().to_string();
        assert!(err.contains("`notes.txt` was not written by clip-ast"), "{err}");
        std::fs::remove_file(out.join("notes.txt")).unwrap();
        check_writable(&out).unwrap();

        let staged = staging(&out).unwrap();
        std::fs::write(staged.path().join(MARKER_FILE), r#"{"files": ["new.txt"]}"#).unwrap();
        std::fs::write(staged.path().join("new.txt"), "y").unwrap();
        publish(staged, &out).unwrap();
        assert_eq!(crate::fsutil::files_under(&out).unwrap(), [MARKER_FILE, "new.txt"]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp or old folder left");
    }
}
