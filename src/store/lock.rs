//! Per-key exclusive lock: an OS file lock on `STORE/locks/<key>.lock`.
//!
//! The OS drops the lock when its holder dies, so a SIGKILLed run never leaves a key locked.
//! Lock files may be deleted (by `gc`) while held; a waiter that then wins the lock on the
//! unlinked file would share the key with a newcomer on a fresh file, so acquiring re-checks
//! that the locked file is still the one at the path.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct KeyLock {
    file: File,
    path: PathBuf,
}

impl KeyLock {
    /// Block until this process holds the lock.
    pub fn acquire(path: &Path) -> Result<KeyLock> {
        loop {
            let file = open(path)?;
            file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
            if still_at_path(&file, path)? {
                return Ok(KeyLock { file, path: path.to_path_buf() });
            }
        }
    }

    /// The lock if nobody holds it, else `None`.
    pub fn try_acquire(path: &Path) -> Result<Option<KeyLock>> {
        loop {
            let file = open(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
            if still_at_path(&file, path)? {
                return Ok(Some(KeyLock { file, path: path.to_path_buf() }));
            }
        }
    }

    /// Delete the lock file, then release. Whoever waits on the old file re-opens the path.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path).with_context(|| format!("cannot remove {}", self.path.display()))?;
        drop(self.file);
        Ok(())
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}

fn still_at_path(file: &File, path: &Path) -> Result<bool> {
    let held = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
    Ok(match std::fs::metadata(path) {
        Ok(now) => now.dev() == held.dev() && now.ino() == held.ino(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_and_removed_files_are_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let first = KeyLock::acquire(&path).unwrap();
        assert!(KeyLock::try_acquire(&path).unwrap().is_none());
        drop(first);
        let second = KeyLock::try_acquire(&path).unwrap().expect("free after drop");
        // A waiter that opened the old file before it was removed must not end up holding it.
        let stale = open(&path).unwrap();
        second.remove().unwrap();
        stale.lock().unwrap();
        assert!(!still_at_path(&stale, &path).unwrap());
        let fresh = KeyLock::try_acquire(&path).unwrap().expect("fresh file is free");
        drop(fresh);
    }
}
