//! Garbage collection: keep what the roots reach through their inputs, remove the rest.
//! Planning and removing are separate so the command can show what would go first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;

use super::lock::KeyLock;
use super::publish::{self, TempDir};
use super::{Artifact, ArtifactKey, Store};

#[derive(Clone, Debug, Default)]
pub struct GcPlan {
    /// Reachable from a root, sorted by kind then key.
    pub keep: Vec<Artifact>,
    /// Unreachable, sorted by kind then key.
    pub remove: Vec<Artifact>,
    /// Roots the store does not hold.
    pub missing_roots: Vec<ArtifactKey>,
    /// Artifact directories whose manifest cannot be read: never removed, since what they
    /// are cannot be told; `audit` reports them.
    pub unreadable: Vec<PathBuf>,
    /// Temp dirs and lock files of runs that are not running; removed if still unlocked.
    pub stale: Vec<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcOutcome {
    pub removed: usize,
    /// Locked by a running process when the sweep came to them.
    pub busy: Vec<ArtifactKey>,
    pub stale_removed: usize,
}

/// What removing everything not reachable from `roots` would do.
pub fn plan(store: &Store, roots: &[ArtifactKey]) -> Result<GcPlan> {
    let mut by_key = BTreeMap::new();
    let mut unreadable = Vec::new();
    for entry in store.entries()? {
        match Artifact::load(&entry.dir) {
            Ok(a) => {
                by_key.insert(a.key.clone(), a);
            }
            Err(_) => unreadable.push(entry.dir),
        }
    }
    let mut reached = BTreeSet::new();
    let mut missing_roots = Vec::new();
    let mut todo: Vec<ArtifactKey> = Vec::new();
    for root in roots {
        if by_key.contains_key(root) {
            todo.push(root.clone());
        } else {
            missing_roots.push(root.clone());
        }
    }
    while let Some(key) = todo.pop() {
        if !reached.insert(key.clone()) {
            continue;
        }
        if let Some(a) = by_key.get(&key) {
            todo.extend(a.manifest.inputs.values().filter(|k| by_key.contains_key(*k)).cloned());
        }
    }
    // Lock files of published artifacts go with them in `sweep`, not as stale files.
    let stale = stale_paths(store, &by_key.keys().collect())?;
    let (mut keep, mut remove): (Vec<Artifact>, Vec<Artifact>) =
        by_key.into_values().partition(|a| reached.contains(&a.key));
    let order = |a: &Artifact, b: &Artifact| (&a.kind, &a.key).cmp(&(&b.kind, &b.key));
    keep.sort_by(order);
    remove.sort_by(order);
    Ok(GcPlan { keep, remove, missing_roots, unreadable, stale })
}

/// Temp dirs, and lock files of keys with no artifact, not held by a running process.
fn stale_paths(store: &Store, published: &BTreeSet<&ArtifactKey>) -> Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    for (dir, is_lock) in [(store.tmp_dir(), false), (store.locks_dir(), true)] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(key) = publish::temp_key(&name) else {
                continue;
            };
            if is_lock && published.contains(&key) {
                continue;
            }
            if KeyLock::try_acquire(&store.lock_path(&key))?.is_some() {
                stale.push(path);
            }
        }
    }
    stale.sort();
    Ok(stale)
}

/// Carry out `plan`. Each artifact is renamed into `STORE/tmp/` under its key's lock before
/// being deleted, so it disappears whole even if the sweep is killed halfway.
pub fn sweep(store: &Store, plan: &GcPlan) -> Result<GcOutcome> {
    let mut outcome = GcOutcome::default();
    std::fs::create_dir_all(store.locks_dir())?;
    std::fs::create_dir_all(store.tmp_dir())?;
    for artifact in &plan.remove {
        let lock_path = store.lock_path(&artifact.key);
        let Some(lock) = KeyLock::try_acquire(&lock_path)? else {
            outcome.busy.push(artifact.key.clone());
            continue;
        };
        if artifact.dir.exists() {
            let grave = TempDir::create(&store.tmp_dir(), &artifact.key, "gc")?;
            std::fs::remove_dir(grave.path())?;
            std::fs::rename(&artifact.dir, grave.path())?;
            if let Some(parent) = artifact.dir.parent() {
                crate::fsutil::sync_path(parent)?;
            }
            drop(grave);
            outcome.removed += 1;
        }
        lock.remove()?;
    }
    outcome.stale_removed = remove_stale(store, &plan.stale)?;
    Ok(outcome)
}

/// Remove those of `paths` (temp dirs, lock files) whose key is still unlocked.
fn remove_stale(store: &Store, paths: &[PathBuf]) -> Result<usize> {
    let mut removed = 0;
    for path in paths {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Some(key) = publish::temp_key(&name) else {
            continue;
        };
        let lock_path = store.lock_path(&key);
        let Some(lock) = KeyLock::try_acquire(&lock_path)? else {
            continue;
        };
        if *path == lock_path {
            lock.remove()?;
        } else if path.exists() {
            publish::remove_path(path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ArtifactKind, ArtifactSpec};
    use serde_json::{Value, json};

    fn make(store: &Store, kind: ArtifactKind, seed: u64, inputs: &[&Artifact]) -> Artifact {
        let mut spec = ArtifactSpec::new(kind, 1, json!({ "seed": seed }));
        for input in inputs {
            spec = spec.input(input.kind.as_str(), input);
        }
        store
            .get_or_produce(&spec, |d| {
                std::fs::write(d.join("out"), seed.to_string())?;
                Ok(Value::Null)
            })
            .unwrap()
    }

    fn keys(artifacts: &[Artifact]) -> Vec<ArtifactKey> {
        let mut keys: Vec<_> = artifacts.iter().map(|a| a.key.clone()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn keeps_what_roots_reach_and_removes_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let split = make(&store, ArtifactKind::Split, 1, &[]);
        let weights = make(&store, ArtifactKind::Weights, 1, &[]);
        let stage1 = make(&store, ArtifactKind::Stage1, 1, &[&split, &weights]);
        let orphan_stage1 = make(&store, ArtifactKind::Stage1, 2, &[&split, &weights]);
        let eval = make(&store, ArtifactKind::Eval, 1, &[&split, &weights, &stage1]);
        let other_split = make(&store, ArtifactKind::Split, 2, &[]);
        // A run killed mid-produce leaves a temp dir and a lock file behind.
        let dead = ArtifactSpec::new(ArtifactKind::Split, 1, json!({"seed": 99})).key();
        let dead_temp = TempDir::create(&store.tmp_dir(), &dead, "produce").unwrap();
        let dead_temp_path = dead_temp.path().to_path_buf();
        dead_temp.keep();
        std::fs::write(store.lock_path(&dead), "").unwrap();
        let ghost = ArtifactSpec::new(ArtifactKind::Eval, 1, json!({"seed": 7})).key();

        let plan = plan(&store, &[eval.key.clone(), ghost.clone()]).unwrap();
        let mut want_keep = [&split, &weights, &stage1, &eval];
        want_keep.sort_by_key(|a| a.key.clone());
        assert_eq!(keys(&plan.keep), want_keep.iter().map(|a| a.key.clone()).collect::<Vec<_>>());
        assert_eq!(keys(&plan.remove), keys(&[orphan_stage1.clone(), other_split.clone()]));
        assert_eq!(plan.missing_roots, [ghost]);
        assert!(plan.stale.contains(&dead_temp_path), "{:?}", plan.stale);
        assert!(plan.stale.contains(&store.lock_path(&dead)));
        // Planning touches nothing.
        assert!(orphan_stage1.dir.exists() && dead_temp_path.exists());

        let outcome = sweep(&store, &plan).unwrap();
        assert_eq!((outcome.removed, outcome.busy.len(), outcome.stale_removed), (2, 0, 2));
        assert!(!orphan_stage1.dir.exists() && !other_split.dir.exists());
        assert!(!store.lock_path(&orphan_stage1.key).exists());
        assert!(eval.dir.exists() && split.dir.exists());
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        assert_eq!(keys(&store.list().unwrap()), keys(&plan.keep));
        assert!(crate::store::audit::audit_all(&store).unwrap().iter().all(|r| r.is_clean()));
    }

    #[test]
    fn locked_artifacts_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let split = make(&store, ArtifactKind::Split, 1, &[]);
        let plan = plan(&store, &[]).unwrap();
        let held = KeyLock::acquire(&store.lock_path(&split.key)).unwrap();
        let outcome = sweep(&store, &plan).unwrap();
        assert_eq!(outcome.busy, std::slice::from_ref(&split.key));
        assert!(split.dir.exists());
        drop(held);
    }
}
