//! Submission records: `STORE/slurm/<key>.json` says which job was submitted to make an
//! artifact, under which name, logging where. A later `clip-ast run` (after `--detach`, a
//! lost connection, or another pipeline sharing the stage) finds the job through the key it
//! needs and follows it instead of submitting the stage again. The name is checked too: job
//! ids start again at 1 when a cluster's state is wiped, so an id alone could be another job.
//!
//! Records and logs (`STORE/logs/`) are plain files beside the kind folders, so `audit`, `ls`
//! and `gc` (which look at folders) pass them by.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::{ArtifactKey, Store};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub job: String,
    pub name: String,
    pub kind: String,
    pub log: PathBuf,
}

pub fn records_dir(store: &Store) -> PathBuf {
    store.root().join("slurm")
}

pub fn logs_dir(store: &Store) -> PathBuf {
    store.root().join("logs")
}

fn path(store: &Store, key: &ArtifactKey) -> PathBuf {
    records_dir(store).join(format!("{key}.json"))
}

/// The record of `key`, if one was written and is readable (an unreadable one is as good as
/// none: the stage is submitted again, and its own lock keeps it from running twice).
pub fn read(store: &Store, key: &ArtifactKey) -> Option<Record> {
    let text = std::fs::read_to_string(path(store, key)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Write through a temporary file and a rename, so a reader sees the old record or the new one.
pub fn write(store: &Store, key: &ArtifactKey, record: &Record) -> Result<()> {
    let target = path(store, key);
    let tmp = target.with_extension(format!("json.{}.tmp", std::process::id()));
    let text = serde_json::to_string_pretty(record).expect("a record serialises");
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))
}

/// Held while a run decides what to submit and records it: two runs sharing stages then
/// submit each one once (the second finds the first's records). An OS file lock, released
/// when the process exits however it exits.
pub struct SubmitLock(#[allow(dead_code)] File);

impl SubmitLock {
    pub fn acquire(store: &Store) -> Result<SubmitLock> {
        let dir = records_dir(store);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path: &Path = &dir.join("submit.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(SubmitLock(file))
    }
}
