//! Temp directories under `STORE/tmp/`, output hashing, fsync and the atomic rename that
//! publishes an artifact. The file operations themselves are [`crate::fsutil`]'s.
//!
//! A temp dir is named `<key>.<purpose>.<pid>.<nanos>` and only created while holding that
//! key's lock, so any temp dir whose key is not locked belongs to a dead run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;

use super::key::ArtifactKey;
use super::manifest::MANIFEST_FILE;
// A store temp dir is `TempDir::create(tmp_root, key, purpose)`, made while holding the lock.
pub use crate::fsutil::TempDir;
use crate::fsutil::{files_under, hash_file, sync_path};

/// The key a temp dir name was made for.
pub fn temp_key(name: &str) -> Option<ArtifactKey> {
    name.split('.').next()?.parse().ok()
}

/// Remove the temp dirs left for `key` by runs that died. Caller holds `key`'s lock.
pub fn remove_stale_temps(tmp_root: &Path, key: &ArtifactKey) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(tmp_root) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        if temp_key(&entry.file_name().to_string_lossy()).as_ref() == Some(key) {
            remove_path(&entry.path())?;
        }
    }
    Ok(())
}

pub fn remove_path(path: &Path) -> Result<()> {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    result.with_context(|| format!("cannot remove {}", path.display()))
}

/// Every regular file under `dir` except the manifest, as sorted `/`-separated relative paths.
pub fn list_outputs(dir: &Path) -> Result<Vec<String>> {
    let mut files = files_under(dir)?;
    files.retain(|f| f != MANIFEST_FILE);
    Ok(files)
}

/// blake3 of each named file under `dir`, in parallel: splits hold thousands of images.
pub fn hash_outputs(dir: &Path, files: &[String]) -> Result<Vec<(String, String)>> {
    files.par_iter().map(|f| Ok((f.clone(), hash_file(&dir.join(f))?))).collect()
}

/// fsync every file and directory under `dir`, `dir` included, so the rename that follows
/// cannot publish names whose data a crash would lose.
pub fn sync_tree(dir: &Path) -> Result<()> {
    let files = files_under(dir)?;
    files.par_iter().try_for_each(|f| sync_path(&dir.join(f)))?;
    let mut dirs: Vec<PathBuf> = files.iter().filter_map(|f| Path::new(f).parent().map(|p| dir.join(p))).collect();
    dirs.push(dir.to_path_buf());
    dirs.sort();
    dirs.dedup();
    dirs.iter().try_for_each(|d| sync_path(d))
}

/// Move a complete temp dir to its final place. The rename is the commit point: before it the
/// artifact does not exist, after it it is whole.
pub fn publish(temp: TempDir, dest: &Path) -> Result<()> {
    let parent = dest.parent().expect("artifact dirs live under STORE/<kind>");
    std::fs::rename(temp.path(), dest)
        .with_context(|| format!("cannot move {} to {}", temp.path().display(), dest.display()))?;
    temp.keep();
    sync_path(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_nested_outputs_without_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images/a")).unwrap();
        std::fs::write(dir.path().join("images/a/1.png"), b"x").unwrap();
        std::fs::write(dir.path().join("split.json"), b"{}").unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), b"{}").unwrap();
        assert_eq!(list_outputs(dir.path()).unwrap(), ["images/a/1.png", "split.json"]);
        sync_tree(dir.path()).unwrap();
        let hashes = hash_outputs(dir.path(), &["split.json".to_string()]).unwrap();
        assert_eq!(hashes[0].1, blake3::hash(b"{}").to_hex().to_string());
    }

    #[test]
    fn temp_dirs_vanish_unless_kept_and_name_their_key() {
        let root = tempfile::tempdir().unwrap();
        let key = ArtifactKey::compute("x", 1, &serde_json::json!({}), &Default::default());
        let temp = TempDir::create(root.path(), &key, "produce").unwrap();
        let path = temp.path().to_path_buf();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(temp_key(&name), Some(key));
        drop(temp);
        assert!(!path.exists());
        assert_eq!(temp_key("junk"), None);
    }
}
