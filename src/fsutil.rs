//! The file operations everything else builds on: files replaced whole or not at all, the one
//! file hash, temporary directories that vanish unless kept, and the one recursive listing.

use std::fmt::Display;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// Replace `path` with `bytes`: a temp file beside it, fsync, rename, fsync the folder. A
/// kill leaves the old file or the new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))
    })
}

/// [`write_atomically`] for writers that want a path: `write` creates the temp file it is
/// given. The temp name is hidden, holds the pid (concurrent runs writing one folder do not
/// share it) and ends with `path`'s name, so writers that go by the extension (the plot's
/// PNG) still see it. On error the temp file is removed and `path` is untouched.
pub fn write_atomically_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = path.with_file_name(format!(".tmp-{}-{}", std::process::id(), name.to_string_lossy()));
    remove_dead_writers_temps(path);
    let result = write(&tmp).and_then(|()| {
        sync_path(&tmp)?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot replace", path.display()))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sync_path(parent)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Remove the temp files that killed writers of `path` left beside it (`.tmp-PID-NAME` whose
/// process is gone), so a crash mid-write leaves no litter once the file is written again.
fn remove_dead_writers_temps(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(".tmp-"))
            .and_then(|rest| rest.strip_suffix(name))
            .and_then(|rest| rest.strip_suffix('-'))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The process's umask, from /proc (reading it with `umask(2)` means setting it, which races
/// with other threads creating files); 022 where /proc does not say.
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|m| m.trim().to_string())))
        .and_then(|m| u32::from_str_radix(&m, 8).ok())
        .unwrap_or(0o022)
}

/// Give a file the mode a plain `File::create` would (0666 less the umask: 0644 under 022,
/// 0664 under a group's 002). Writers that go through a private temp file (the safetensors
/// crate's, mode 0600) would otherwise publish files only their owner can read.
pub fn follow_umask(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = 0o666 & !umask();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("{}: cannot set mode {mode:o}", path.display()))
}

/// fsync a file or a directory.
pub fn sync_path(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).with_context(|| format!("cannot fsync {}", path.display()))
}

/// blake3 of a file's bytes, as 64 lowercase hex digits.
pub fn hash_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => anyhow!("{}: no such file", path.display()),
        _ => anyhow!("{}: cannot open ({e})", path.display()),
    })?;
    if file.metadata().with_context(|| format!("{}: cannot stat", path.display()))?.is_dir() {
        bail!("{}: is a folder, not a file", path.display());
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Every regular file under `dir`, as sorted `/`-separated paths relative to it. Anything that
/// is neither a file nor a folder (a symlink, a socket) or has a name that is not UTF-8 is an
/// error: the store records outputs by name and hashes their bytes.
pub fn files_under(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        let path = entry.path();
        if !kind.is_file() {
            bail!("{} is neither a file nor a directory; outputs must be plain files", path.display());
        }
        let rel = path.strip_prefix(dir).expect("walkdir yields paths under its root");
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        let Some(parts) = parts else {
            bail!("{} has a file name that is not UTF-8; outputs need UTF-8 names", path.display());
        };
        files.push(parts.join("/"));
    }
    files.sort();
    Ok(files)
}

/// A directory removed on drop (on error or panic) unless [`TempDir::keep`] is called.
pub struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    /// `parent/<label>.<purpose>.<pid>.<nanos>`: the label first, so whoever cleans up can
    /// tell what a leftover was for (the store names its temp dirs by artifact key).
    pub fn create(parent: &Path, label: &impl Display, purpose: &str) -> Result<TempDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = parent.join(format!("{label}.{purpose}.{}.{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create temp dir {}", path.display()))?;
        Ok(TempDir { path, armed: true })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leave the directory in place (it was renamed into the store, say).
    pub fn keep(mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let failed = write_atomically_with(&path, |tmp| {
            assert!(tmp.to_string_lossy().ends_with("results.csv"), "keeps the extension: {}", tmp.display());
            std::fs::write(tmp, b"half")?;
            bail!("disk full")
        });
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"new", "a failed write leaves the old file");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn hashes_files_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(hash_file(&path).unwrap(), blake3::hash(b"abc").to_hex().to_string());
        let missing = hash_file(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.ends_with("nope: no such file"), "{missing}");
        assert!(hash_file(dir.path()).unwrap_err().to_string().contains("is a folder"));
    }

    #[test]
    fn lists_nested_files_sorted_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for f in ["z.txt", "b/c/1.png", "a.json", "b/0.png"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        assert_eq!(files_under(dir.path()).unwrap(), ["a.json", "b/0.png", "b/c/1.png", "z.txt"]);
        std::os::unix::fs::symlink(dir.path().join("a.json"), dir.path().join("link")).unwrap();
        assert!(files_under(dir.path()).unwrap_err().to_string().contains("neither a file nor a directory"));
    }

    #[test]
    fn temp_dirs_vanish_unless_kept() {
        let root = tempfile::tempdir().unwrap();
        let temp = TempDir::create(root.path(), &"label", "test").unwrap();
        let path = temp.path().to_path_buf();
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with("label.test."));
        drop(temp);
        assert!(!path.exists());
        let kept = TempDir::create(root.path(), &"label", "test").unwrap();
        let path = kept.path().to_path_buf();
        kept.keep();
        assert!(path.is_dir());
    }

    #[test]
    fn follow_umask_gives_what_file_create_gives() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let private = dir.path().join("private");
        std::fs::write(&private, b"x").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        follow_umask(&private).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), mode(&plain));
        assert_eq!(mode(&plain), 0o666 & !umask());
    }
}
