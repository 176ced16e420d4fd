//! Never write over a file the tool did not create. A path a user names for the tool's own
//! output (`run --out`, `report --out`, `embed --out`, `--store`; the hash cache is
//! `data::file_hashes`'s) is written only where it is absent or already holds that kind of
//! output, recognised by its content; anything else is one `error:` line and stays untouched.
//! The checks run before any work, so a typo costs nothing.

use std::io::Read;
use std::path::Path;

use anyhow::{Result, bail};

/// The files `clip-ast run` writes to or removes from its results folder.
pub const RESULTS_FILES: &[&str] = &[
    "results.csv",
    "summary.csv",
    "chosen.csv",
    "chosen-summary.csv",
    "compare.csv",
    "report.txt",
    "report.csv",
    "report.png",
    "paired.csv",
];

/// The first bytes of `path`, at most `n`; `None` when it does not exist.
fn head(path: &Path, n: usize) -> Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("{}: cannot open ({e})", path.display()),
        Ok(f) => f,
    };
    let mut bytes = Vec::with_capacity(n);
    if let Err(e) = file.take(n as u64).read_to_end(&mut bytes) {
        bail!("{}: cannot read ({e})", path.display());
    }
    Ok(Some(bytes))
}

/// Whether the file's first line starts with `prefix` (a CSV header this tool writes).
fn header_starts(path: &Path, prefix: &str) -> Result<bool> {
    Ok(head(path, 4096)?.is_some_and(|b| b.starts_with(prefix.as_bytes())))
}

/// `run --out DIR`: absent, a folder without any of [`RESULTS_FILES`], or a results folder of
/// an earlier run (its results.csv is one: the header starts with `variant,`).
pub fn check_results_folder(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("--out {} is a file, not a folder; results go to a folder", out.display());
    }
    let ours = header_starts(&out.join("results.csv"), "variant,")?;
    if ours {
        return Ok(());
    }
    if let Some(name) = RESULTS_FILES.iter().find(|name| out.join(name).exists()) {
        bail!(
            "--out {}: {name} there was not written by clip-ast run (no results.csv of a run beside it); it is left as it is: pass --out a new folder",
            out.display()
        );
    }
    Ok(())
}

/// `report --out PREFIX`: PREFIX.csv absent or a report table (header `method,shots,`), and
/// PREFIX.png absent or beside such a table.
pub fn check_report_prefix(csv: &Path, png: &Path) -> Result<()> {
    let csv_ours = header_starts(csv, "method,shots,")?;
    for path in [csv, png] {
        if path.exists() && !csv_ours {
            bail!(
                "{} exists and was not written by clip-ast report; it is left as it is: pass another --out",
                path.display()
            );
        }
    }
    Ok(())
}

/// `embed --out FILE`: absent, or a safetensors file of features (its header names
/// `image_features`).
pub fn check_features_file(path: &Path) -> Result<()> {
    let Some(bytes) = head(path, 4096)? else {
        return Ok(());
    };
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    let names_features = bytes.len() > 8 && String::from_utf8_lossy(&bytes[8..]).contains("\"image_features\"");
    if !names_features {
        bail!(
            "{} exists and is not a features file of clip-ast embed; it is left as it is: pass another --out",
            path.display()
        );
    }
    Ok(())
}

/// The names a store's root holds: the artifact kinds, `tmp`, `locks`, and the Slurm
/// executor's `slurm` and `logs` (docs/store.md, Layout).
fn is_store_entry(name: &str) -> bool {
    ["tmp", "locks", "slurm", "logs"].contains(&name) || name.parse::<crate::store::ArtifactKind>().is_ok()
}

/// `--store DIR` before the first write: absent, empty, or a store (every entry a kind's
/// folder, `tmp`, `locks`, `slurm` or `logs`; hidden entries and `lost+found` are the file system's). A folder
/// of other things is someone's, not a store: refused, so `gc` and temp clean-up never touch it.
pub fn check_store_root(root: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("store {}: cannot read ({e})", root.display()),
        Ok(entries) => entries,
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "lost+found" || is_store_entry(&name) {
            continue;
        }
        bail!(
            "store {} holds `{name}`, which no store holds: it is not an artifact store; pass --store a new or empty folder",
            root.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_folders_are_recognised_by_their_results_csv() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        check_results_folder(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        check_results_folder(&out).unwrap();
        std::fs::write(out.join("summary.csv"), b"my summary\n").unwrap();
        let e = check_results_folder(&out).unwrap_err().to_string();
        assert!(e.contains("summary.csv there was not written by clip-ast run"), "{e}");
        std::fs::write(out.join("results.csv"), b"a,b\n").unwrap();
        assert!(check_results_folder(&out).unwrap_err().to_string().contains("results.csv there"));
        std::fs::write(out.join("results.csv"), b"variant,method\n").unwrap();
        check_results_folder(&out).unwrap();
        let e = check_results_folder(&out.join("notes.txt")).unwrap_err().to_string();
        assert!(e.ends_with("is a file, not a folder; results go to a folder"), "{e}");
    }

    #[test]
    fn a_store_is_absent_empty_or_only_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        check_store_root(&root).unwrap();
        std::fs::create_dir_all(root.join("split")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(root.join(".nfs000"), b"").unwrap();
        check_store_root(&root).unwrap();
        std::fs::write(root.join("thesis.tex"), b"").unwrap();
        let e = check_store_root(&root).unwrap_err().to_string();
        assert!(e.contains("holds `thesis.tex`, which no store holds"), "{e}");
    }

    #[test]
    fn report_and_features_files_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let (csv, png) = (dir.path().join("r.csv"), dir.path().join("r.png"));
        check_report_prefix(&csv, &png).unwrap();
        std::fs::write(&png, b"a picture").unwrap();
        assert!(check_report_prefix(&csv, &png).unwrap_err().to_string().contains("r.png exists"));
        std::fs::write(&csv, b"method,shots,seeds\n").unwrap();
        check_report_prefix(&csv, &png).unwrap();
        let file = dir.path().join("f.safetensors");
        check_features_file(&file).unwrap();
        std::fs::write(&file, b"plain text, not features").unwrap();
        assert!(check_features_file(&file).unwrap_err().to_string().contains("not a features file"));
        let mut bytes = 30u64.to_le_bytes().to_vec();
        bytes.extend(br#"{"image_features":{"dtype":"F32"}}"#);
        std::fs::write(&file, bytes).unwrap();
        check_features_file(&file).unwrap();
    }
}
