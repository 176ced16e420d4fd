//! Checkpoints of a stage that is still running: `STORE/tmp/checkpoints/<key>/`, one file per
//! saved position, written only by the holder of the key's lock (the stage's store
//! transaction) and removed when the artifact is published. They are never part of an
//! artifact; `gc` removes those left behind, `ls` lists them (docs/store.md, "Checkpoints").
//!
//! A file is a safetensors image of the tensors, the stage's own state as JSON in its
//! metadata, then 32 bytes of blake3 over everything before them. It is written to a hidden
//! temp name, fsynced and renamed, so a kill leaves the previous files or the new one whole;
//! a file whose hash does not match (a torn disk, a copy gone wrong) is passed over with a
//! warning and the one before it used. The two newest are kept.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::Value;
use tch::{Kind, Tensor};

use super::{ArtifactKey, Store};
use crate::clip::Weights;
use crate::fsutil::sync_path;

/// `STORE/tmp/<CHECKPOINTS_DIR>/<key>/`: a folder name that is no key, so the store's own
/// temp-dir sweeps (which go by the key a name starts with) pass it by.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
const EXTENSION: &str = "ckpt";
/// The metadata entry holding the stage's JSON.
const META: &str = "clip_ast_checkpoint";
const KEEP: usize = 2;

/// What a stage saves: its tensors, and everything else as JSON.
#[derive(Debug)]
pub struct Checkpoint {
    pub meta: Value,
    pub tensors: Weights,
}

/// A key's checkpoint folder.
#[derive(Clone, Debug)]
pub struct CheckpointArea {
    dir: PathBuf,
}

impl Store {
    pub fn checkpoints_root(&self) -> PathBuf {
        self.tmp_dir().join(CHECKPOINTS_DIR)
    }

    pub fn checkpoint_area(&self, key: &ArtifactKey) -> CheckpointArea {
        CheckpointArea { dir: self.checkpoints_root().join(key.as_str()) }
    }
}

/// A checkpoint file's name: its position, zero-padded so names sort as positions do.
pub fn file_name(epoch: usize, batch: usize) -> String {
    format!("e{epoch:06}-b{batch:08}.{EXTENSION}")
}

impl CheckpointArea {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `checkpoint` as `name` (see [`file_name`]), then drop all but the newest two.
    pub fn save(&self, name: &str, checkpoint: &Checkpoint) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let mut bytes = encode(checkpoint)?;
        let hash = blake3::hash(&bytes);
        bytes.extend_from_slice(hash.as_bytes());
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        sync_path(&tmp)?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        sync_path(&self.dir)?;
        for old in self.files()?.into_iter().rev().skip(KEEP) {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// Checkpoint files, oldest first.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(Vec::new()) };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !name.starts_with('.') && path.extension().is_some_and(|e| e == EXTENSION) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// The newest checkpoint that reads back whole, with its file name; each damaged newer
    /// one is reported through `warn` and skipped.
    pub fn load_newest(&self, warn: &dyn Fn(&str)) -> Result<Option<(String, Checkpoint)>> {
        for path in self.files()?.into_iter().rev() {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            match read(&path) {
                Ok(checkpoint) => return Ok(Some((name, checkpoint))),
                Err(e) => warn(&format!("warning: ignoring checkpoint {}: {e:#}", path.display())),
            }
        }
        Ok(None)
    }

    /// Remove the folder and every checkpoint in it.
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", self.dir.display())),
        }
    }
}

fn encode(checkpoint: &Checkpoint) -> Result<Vec<u8>> {
    let mut buffers = Vec::with_capacity(checkpoint.tensors.len());
    for (name, tensor) in &checkpoint.tensors {
        let t = tensor.detach().to_device(tch::Device::Cpu).contiguous();
        if t.kind() != Kind::Float {
            bail!("checkpoint tensor `{name}` is {:?}; only fp32 tensors are saved", t.kind());
        }
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let mut bytes = vec![0u8; t.numel() * 4];
        t.f_copy_data_u8(&mut bytes, t.numel()).with_context(|| format!("checkpoint tensor `{name}`"))?;
        buffers.push((name.clone(), shape, bytes));
    }
    let views: Vec<(String, TensorView)> = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches byte count"))
        })
        .collect();
    let meta = HashMap::from([(META.to_string(), checkpoint.meta.to_string())]);
    safetensors::serialize(views, Some(meta)).context("cannot encode a checkpoint")
}

/// A checkpoint file, its hash checked before anything in it is believed.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() < 32 {
        bail!("{} bytes, too short for a checkpoint", bytes.len());
    }
    let (body, hash) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != hash {
        bail!("its content does not match its hash (damaged or cut short)");
    }
    let file = SafeTensors::deserialize(body).map_err(|e| anyhow::anyhow!("not a checkpoint ({e})"))?;
    let mut tensors = Weights::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            bail!("tensor `{name}` is {:?}, not fp32", view.dtype());
        }
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.insert(name, Tensor::f_from_data_size(view.data(), &shape, Kind::Float)?);
    }
    let (_, metadata) = SafeTensors::read_metadata(body).map_err(|e| anyhow::anyhow!("not a checkpoint ({e})"))?;
    let meta = metadata.metadata().as_ref().and_then(|m| m.get(META)).context("no stage state in its metadata")?;
    Ok(Checkpoint { meta: serde_json::from_str(meta)?, tensors })
}

/// The stage JSON of a checkpoint file without reading its tensors (nor checking its hash):
/// what `ls` shows.
pub fn peek_meta(path: &Path) -> Result<Value> {
    let mut file = std::fs::File::open(path)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        bail!("{}: not a checkpoint", path.display());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)?;
    let header: Value = serde_json::from_slice(&header)?;
    let meta = header["__metadata__"][META].as_str().context("no stage state")?;
    Ok(serde_json::from_str(meta)?)
}

/// A key with checkpoints: what `ls` and `gc` see.
#[derive(Clone, Debug)]
pub struct InProgress {
    pub key: ArtifactKey,
    pub area: CheckpointArea,
    /// The newest file's stage JSON, if it reads.
    pub meta: Option<Value>,
    /// When the newest file was written.
    pub modified: Option<SystemTime>,
}

/// Every key with a checkpoint folder, by key.
pub fn in_progress(store: &Store) -> Result<Vec<InProgress>> {
    let Ok(entries) = std::fs::read_dir(store.checkpoints_root()) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(key) = entry.file_name().to_string_lossy().parse::<ArtifactKey>() else { continue };
        let area = store.checkpoint_area(&key);
        let newest = area.files()?.pop();
        let meta = newest.as_deref().and_then(|p| peek_meta(p).ok());
        let modified = newest.as_deref().and_then(|p| p.metadata().ok()?.modified().ok());
        out.push(InProgress { key, area, meta, modified });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Why `gc` removes a key's checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftover {
    /// The artifact is published: its checkpoints are of no further use.
    Published,
    /// Nothing saved for longer than the age `gc` was given.
    Old,
}

/// Keys whose checkpoints `gc` would remove: published ones, and with `older_than` those not
/// saved to for that long. A key whose lock is held (its stage is running) is never listed.
pub fn leftovers(store: &Store, older_than: Option<std::time::Duration>) -> Result<Vec<(InProgress, Leftover)>> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    let entries = in_progress(store)?;
    if !entries.is_empty() {
        std::fs::create_dir_all(store.locks_dir())?;
    }
    for entry in entries {
        let reason = if store.find(&entry.key)?.is_some() {
            Leftover::Published
        } else {
            let age = entry.modified.and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
            match older_than {
                Some(limit) if age >= limit || entry.modified.is_none() => Leftover::Old,
                _ => continue,
            }
        };
        if super::lock::KeyLock::try_acquire(&store.lock_path(&entry.key))?.is_some() {
            out.push((entry, reason));
        }
    }
    Ok(out)
}

/// Remove one key's checkpoints under its lock (skipped if its stage started meanwhile);
/// whether they went.
pub fn remove_leftover(store: &Store, entry: &InProgress) -> Result<bool> {
    std::fs::create_dir_all(store.locks_dir())?;
    let Some(_lock) = super::lock::KeyLock::try_acquire(&store.lock_path(&entry.key))? else { return Ok(false) };
    entry.area.remove()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checkpoint(x: f32, epoch: usize) -> Checkpoint {
        let tensors = Weights::from([("w".to_string(), Tensor::from_slice(&[x, -0.0, f32::MIN_POSITIVE]))]);
        Checkpoint { meta: json!({"epoch": epoch}), tensors }
    }

    #[test]
    fn saves_keeps_two_and_falls_back_past_a_damaged_newest() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let key = ArtifactKey::compute("stage2", 1, &json!({}), &Default::default());
        let area = store.checkpoint_area(&key);
        assert!(area.load_newest(&|_| panic!("nothing to warn about")).unwrap().is_none());
        for epoch in 1..=3 {
            area.save(&file_name(epoch, 0), &checkpoint(epoch as f32 + 0.5, epoch)).unwrap();
        }
        let names: Vec<String> =
            area.files().unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, [file_name(2, 0), file_name(3, 0)], "the two newest are kept");
        let (name, newest) = area.load_newest(&|_| panic!("no warning")).unwrap().unwrap();
        assert_eq!((name, newest.meta), (file_name(3, 0), json!({"epoch": 3})));
        let want = Tensor::from_slice(&[3.5f32, -0.0, f32::MIN_POSITIVE]);
        assert!(newest.tensors["w"].equal(&want));
        assert_eq!(peek_meta(&area.files().unwrap()[1]).unwrap(), json!({"epoch": 3}));

        // One flipped byte in the newest: the one before it is used, with a warning naming it.
        let path = area.files().unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let warnings = std::cell::RefCell::new(Vec::new());
        let (name, used) = area.load_newest(&|w| warnings.borrow_mut().push(w.to_string())).unwrap().unwrap();
        assert_eq!((name, used.meta), (file_name(2, 0), json!({"epoch": 2})));
        let warnings = warnings.into_inner();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("warning: ignoring checkpoint") && warnings[0].contains("hash"),
            "{warnings:?}"
        );
        // Cut short too.
        std::fs::write(&path, b"short").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("too short"));

        let listed = in_progress(&store).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key);
        area.remove().unwrap();
        assert!(!area.dir().exists() && in_progress(&store).unwrap().is_empty());
        area.remove().unwrap();
    }
}
