//! Temp directories under `STORE/tmp/`, output hashing, fsync and the atomic rename that
//! publishes an artifact.
//!
//! A temp dir is named `<key>.<purpose>.<pid>.<nanos>` and only created while holding that
//! key's lock, so any temp dir whose key is not locked belongs to a dead run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use super::key::ArtifactKey;
use super::manifest::MANIFEST_FILE;

/// A directory removed on drop (on error or panic) unless `keep` is called.
pub struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    /// Caller must hold `key`'s lock.
    pub fn create(tmp_root: &Path, key: &ArtifactKey, purpose: &str) -> Result<TempDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = tmp_root.join(format!("{key}.{purpose}.{}.{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create temp dir {}", path.display()))?;
        Ok(TempDir { path, armed: true })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

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
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    files.retain(|f| f != MANIFEST_FILE);
    files.sort();
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!("{} has a file name that is not UTF-8; outputs need UTF-8 names", entry.path().display());
        };
        let rel = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &rel, files)?;
        } else if kind.is_file() {
            files.push(rel);
        } else {
            bail!("{} is neither a file nor a directory; outputs must be plain files", entry.path().display());
        }
    }
    Ok(())
}

pub fn hash_file(path: &Path) -> Result<String> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// blake3 of each named file under `dir`, in parallel: splits hold thousands of images.
pub fn hash_outputs(dir: &Path, files: &[String]) -> Result<Vec<(String, String)>> {
    files.par_iter().map(|f| Ok((f.clone(), hash_file(&dir.join(f))?))).collect()
}

/// fsync every file and directory under `dir`, `dir` included, so the rename that follows
/// cannot publish names whose data a crash would lose.
pub fn sync_tree(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    files.par_iter().try_for_each(|f| sync_path(&dir.join(f)))?;
    let mut dirs: Vec<PathBuf> = files.iter().filter_map(|f| Path::new(f).parent().map(|p| dir.join(p))).collect();
    dirs.push(dir.to_path_buf());
    dirs.sort();
    dirs.dedup();
    dirs.iter().try_for_each(|d| sync_path(d))
}

pub fn sync_path(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).with_context(|| format!("cannot fsync {}", path.display()))
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
