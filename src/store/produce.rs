//! `Store::get_or_produce`: reuse an artifact, or compute it once under its key's lock and
//! publish it atomically.

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::cpu::CpuKind;
use super::lock::KeyLock;
use super::manifest::{MANIFEST_FILE, Manifest, Producer, rfc3339_utc};
use super::publish::{self, TempDir};
use super::{Artifact, ArtifactSpec, Store};

impl Store {
    /// The artifact for `spec`: from the store if there (`cached: true`), else computed by
    /// `produce`, which writes the output files into the directory it is given and returns the
    /// headline metrics as a JSON object (or null for none).
    ///
    /// Concurrent callers for one key, threads or processes, compute it once: the others wait
    /// for the lock and then find it published. On error or panic in `produce`, or a kill at
    /// any point, nothing appears under `STORE/<kind>/`; the next call starts over.
    pub fn get_or_produce(
        &self,
        spec: &ArtifactSpec,
        produce: impl FnOnce(&Path) -> Result<Value>,
    ) -> Result<Artifact> {
        spec.validate()?;
        let key = spec.key();
        let dest = self.artifact_dir(spec.kind, &key);
        if let Some(found) = self.cached(spec.kind, &key)? {
            return Ok(found);
        }
        self.check_inputs(spec)?;
        // The first write: the folder must be a store (or new), not a folder of someone's files.
        crate::owned::check_store_root(&self.root)?;
        for dir in [self.root.join(spec.kind.as_str()), self.tmp_dir(), self.locks_dir()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let lock = KeyLock::acquire(&self.lock_path(&key))?;
        if let Some(found) = self.cached(spec.kind, &key)? {
            return Ok(found);
        }
        publish::remove_stale_temps(&self.tmp_dir(), &key)?;
        let temp = TempDir::create(&self.tmp_dir(), &key, "produce")?;
        crate::crash_point::reached("stage-start");

        let started = SystemTime::now();
        let clock = Instant::now();
        let metrics = match produce(temp.path())? {
            Value::Null => Value::Object(Default::default()),
            m @ Value::Object(_) => m,
            other => bail!("a `{}` stage returned metrics {other}, not a JSON object", spec.kind),
        };
        let seconds = clock.elapsed().as_secs_f64();

        let files = publish::list_outputs(temp.path())?;
        if temp.path().join(MANIFEST_FILE).exists() {
            bail!("a `{}` stage wrote its own {MANIFEST_FILE}; that name belongs to the store", spec.kind);
        }
        let manifest = Manifest {
            kind: spec.kind.to_string(),
            key: key.clone(),
            schema_version: spec.schema_version,
            params: spec.params.clone(),
            inputs: spec.inputs.clone(),
            outputs: publish::hash_outputs(temp.path(), &files)?.into_iter().collect(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            libtorch_version: spec.run_info.libtorch_version.clone(),
            device: spec.run_info.device.clone(),
            threads: spec.run_info.threads,
            cpu: CpuKind::this_machine().clone(),
            started: rfc3339_utc(started),
            seconds,
            metrics,
            producer: Producer::this_process(),
        };
        let manifest_path = temp.path().join(MANIFEST_FILE);
        std::fs::write(&manifest_path, manifest.to_json())
            .with_context(|| format!("cannot write {}", manifest_path.display()))?;
        publish::sync_tree(temp.path())?;
        crate::crash_point::reached("before-rename");
        publish::publish(temp, &dest)?;
        // What the stage saved on its way is of no further use. A kill before this line
        // leaves them for `gc`, which removes checkpoints of published keys.
        self.checkpoint_area(&key).remove()?;
        crate::crash_point::reached("after-rename");
        drop(lock);
        Ok(Artifact { kind: spec.kind, key, dir: dest, manifest, cached: false })
    }

    /// Every input, found and checked against its manifest (see `verify.rs`) before a stage
    /// reads it: a manifest must never name an input the store does not have, and nothing may
    /// be computed from an artifact changed since it was made.
    fn check_inputs(&self, spec: &ArtifactSpec) -> Result<()> {
        self.verify_inputs(&spec.inputs, spec.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ArtifactKind, RunInfo};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn write_one(dir: &Path, text: &str) -> Result<Value> {
        std::fs::write(dir.join("out.txt"), text)?;
        Ok(json!({"acc": 0.5}))
    }

    #[test]
    fn produces_once_then_reuses() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let spec = ArtifactSpec::new(ArtifactKind::Split, 1, json!({"seed": 1}));
        let made = store.get_or_produce(&spec, |d| write_one(d, "hello")).unwrap();
        assert!(!made.cached);
        assert_eq!(made.dir, root.path().join("split").join(made.key.as_str()));
        assert_eq!(std::fs::read_to_string(made.file("out.txt")).unwrap(), "hello");
        assert_eq!(made.manifest.outputs["out.txt"], blake3::hash(b"hello").to_hex().to_string());
        assert_eq!(made.manifest.metrics, json!({"acc": 0.5}));
        assert_eq!(Manifest::read(&made.dir).unwrap(), made.manifest);
        let again = store.get_or_produce(&spec, |_| panic!("must not recompute")).unwrap();
        assert!(again.cached);
        assert_eq!(again.manifest, made.manifest);
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn run_info_is_recorded_but_not_keyed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let info = RunInfo { device: "cuda:0".into(), threads: 8, libtorch_version: "2.11.0".into() };
        let spec = ArtifactSpec::new(ArtifactKind::Split, 1, json!({})).with_run_info(info);
        assert_eq!(spec.key(), ArtifactSpec::new(ArtifactKind::Split, 1, json!({})).key());
        let made = store.get_or_produce(&spec, |d| write_one(d, "x")).unwrap();
        assert_eq!((made.manifest.device.as_str(), made.manifest.threads), ("cuda:0", 8));
        assert_eq!(made.manifest.libtorch_version, "2.11.0");
    }

    #[test]
    fn errors_and_panics_leave_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let spec = ArtifactSpec::new(ArtifactKind::Stage1, 1, json!({"lr": 1e-6}));
        let err = store
            .get_or_produce(&spec, |d| {
                write_one(d, "partial")?;
                bail!("training diverged")
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "training diverged");
        let panicked = std::panic::catch_unwind(|| {
            store.get_or_produce(&spec, |d| {
                write_one(d, "partial").unwrap();
                panic!("bug")
            })
        });
        assert!(panicked.is_err());
        let bad_metrics = store.get_or_produce(&spec, |_| Ok(json!([1])));
        assert!(bad_metrics.unwrap_err().to_string().contains("not a JSON object"));
        let own_manifest = store.get_or_produce(&spec, |d| {
            std::fs::write(d.join(MANIFEST_FILE), "{}")?;
            Ok(Value::Null)
        });
        assert!(own_manifest.unwrap_err().to_string().contains(MANIFEST_FILE));
        assert_eq!(std::fs::read_dir(root.path().join("stage1")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        // The lock was released each time: a later call computes it.
        assert!(!store.get_or_produce(&spec, |d| write_one(d, "ok")).unwrap().cached);
    }

    #[test]
    fn missing_inputs_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let mut spec = ArtifactSpec::new(ArtifactKind::Eval, 1, json!({}));
        let ghost = ArtifactSpec::new(ArtifactKind::Split, 1, json!({"seed": 9})).key();
        spec.inputs.insert("split".into(), ghost.clone());
        let err = store.get_or_produce(&spec, |_| Ok(Value::Null)).unwrap_err().to_string();
        assert!(err.contains("`split`") && err.contains(ghost.short()), "{err}");
    }

    #[test]
    fn concurrent_threads_compute_once() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let spec = ArtifactSpec::new(ArtifactKind::Stage1, 1, json!({"seed": 3}));
        let runs = AtomicUsize::new(0);
        let results: Vec<Artifact> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        store
                            .get_or_produce(&spec, |d| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(100));
                                write_one(d, "once")
                            })
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(results.iter().filter(|a| !a.cached).count(), 1);
        assert!(results.iter().all(|a| a.manifest == results[0].manifest));
    }
}
