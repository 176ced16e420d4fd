//! Checking an artifact before a stage reads it: its manifest's key still recomputes from its
//! kind, schema, params and inputs, it sits under that key, and every output file still has the
//! blake3 its manifest records. `audit` runs the same checks (and more) over the whole store;
//! here they guard the one place every stage's inputs pass: [`Store::get_or_produce`] checks
//! each input of what it is about to compute, and a stage that reads an artifact it does not
//! name as an input (select reads stage 1's weights) asks [`Store::input`] for it.
//!
//! Cost: blake3 reads ViT-B/16's 600 MB of fp32 weights in about 0.2 s of CPU (docs/store.md
//! has the figures). A cached artifact reads nothing of its inputs, so it checks none of them;
//! within one process a file whose size and modification time are unchanged is hashed once (a
//! pipeline's hundred stage-2 runs check the weights once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;

use super::audit::Problem;
use super::key::abbreviate;
use super::{Artifact, ArtifactKey, ArtifactKind, Manifest, Store};

/// What every damaged artifact's error advises: real commands only.
pub(crate) fn advice(dir: &Path) -> String {
    format!(
        "it changed after it was made, so nothing is computed from it: restore it, or delete it (`rm -r {}`) and make it again; `clip-ast audit` checks the whole store",
        dir.display()
    )
}

impl Store {
    /// The artifact with key `key`, which must be of `kind`, checked as [`Store::verify`] does:
    /// for a stage reading an artifact that is not among its own inputs.
    pub fn input(&self, key: &ArtifactKey, kind: ArtifactKind) -> Result<Artifact> {
        let artifact = self.resolve(key.as_str(), Some(kind))?;
        self.verify(&artifact)?;
        Ok(artifact)
    }

    /// Fail, in one line naming the artifact and the file, unless `artifact` is still what its
    /// manifest says: key, kind and folder name agree with the manifest, and each output file
    /// hashes as recorded. Files the manifest does not list are left to `audit`.
    pub fn verify(&self, artifact: &Artifact) -> Result<()> {
        let problems = integrity(&artifact.dir, &artifact.manifest, memo_hash);
        if problems.is_empty() {
            return Ok(());
        }
        let found: Vec<String> = problems.iter().map(Problem::to_string).collect();
        bail!(
            "{}/{} ({}): {}; {}",
            artifact.kind,
            artifact.key.short(),
            artifact.dir.display(),
            found.join("; "),
            advice(&artifact.dir)
        )
    }

    /// Each input of a manifest, found and verified.
    pub(crate) fn verify_inputs<'a>(
        &self,
        inputs: impl IntoIterator<Item = (&'a String, &'a ArtifactKey)>,
        of: ArtifactKind,
    ) -> Result<()> {
        for (name, key) in inputs {
            let Some(input) = self.find(key)? else {
                bail!(
                    "input `{name}` ({}) of a `{of}` artifact is not in the store {}; produce it first",
                    key.short(),
                    self.root.display()
                );
            };
            self.verify(&input).with_context(|| format!("input `{name}` of a `{of}` artifact"))?;
        }
        Ok(())
    }

    /// The published artifact of `kind` under `key`, if there is one, checked to be the one
    /// asked for (its manifest's kind and key, and the key its params and inputs give): how
    /// stage commands and the pipeline runner reuse an artifact. Reads the manifest only.
    pub fn cached(&self, kind: ArtifactKind, key: &ArtifactKey) -> Result<Option<Artifact>> {
        let dir = self.artifact_dir(kind, key);
        if !dir.exists() {
            return Ok(None);
        }
        let found = Artifact::load(&dir)?;
        let m = &found.manifest;
        let recomputed = ArtifactKey::compute(&m.kind, m.schema_version, &m.params, &m.inputs);
        if found.key != *key || found.kind != kind || recomputed != found.key {
            bail!(
                "{} holds a manifest for {}/{} whose params and inputs give key {}: the manifest was edited or moved, so it is not reused; `clip-ast audit {kind}/{}` says what changed, and deleting the folder (`rm -r {}`) makes the artifact again",
                dir.display(),
                found.kind,
                abbreviate(found.key.as_str()),
                recomputed.short(),
                key.short(),
                dir.display()
            );
        }
        Ok(Some(found))
    }
}

/// What is wrong with the artifact in `dir` as its manifest `m` describes it: kind and folder,
/// the key against params and inputs, and each recorded output against `hash`. `audit` passes a
/// plain hash, stages the memoised one.
pub(crate) fn integrity(dir: &Path, m: &Manifest, hash: impl Fn(&Path) -> Result<String> + Sync) -> Vec<Problem> {
    let mut problems = Vec::new();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let kind = dir.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if m.kind != kind {
        problems.push(Problem::KindMismatch { dir_kind: kind, manifest_kind: m.kind.clone() });
    }
    if m.key.as_str() != name {
        problems.push(Problem::DirNameMismatch { dir_name: name, manifest_key: m.key.clone() });
    }
    let recomputed = ArtifactKey::compute(&m.kind, m.schema_version, &m.params, &m.inputs);
    if recomputed != m.key {
        problems.push(Problem::KeyMismatch { recorded: m.key.clone(), recomputed });
    }
    let files: Vec<Problem> = m
        .outputs
        .par_iter()
        .filter_map(|(file, recorded)| {
            let path = dir.join(file);
            if !path.is_file() {
                return Some(Problem::FileMissing { file: file.clone() });
            }
            match hash(&path) {
                Ok(actual) if actual == *recorded => None,
                Ok(actual) => Some(Problem::FileChanged { file: file.clone(), recorded: recorded.clone(), actual }),
                Err(e) => Some(Problem::FileUnreadable { file: file.clone(), error: format!("{e:#}") }),
            }
        })
        .collect();
    problems.extend(files);
    problems
}

/// A file's size and modification time: what makes a remembered hash still valid.
type Stamp = (u64, SystemTime);

/// How long before hashing a file must have been written for its hash to be remembered:
/// modification times tick at the kernel's clock granularity (a few ms), far below this.
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

/// Hashes this process has computed, by path.
static HASHED: Mutex<Option<HashMap<PathBuf, (Stamp, String)>>> = Mutex::new(None);

fn stamp(path: &Path) -> Result<Stamp> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot stat", path.display()))?;
    Ok((meta.len(), meta.modified().with_context(|| format!("{}: no modification time", path.display()))?))
}

/// blake3 of a file, hashed once per process while its size and modification time stay.
fn memo_hash(path: &Path) -> Result<String> {
    let before = stamp(path)?;
    let remembered = |map: &mut Option<HashMap<PathBuf, (Stamp, String)>>| {
        map.get_or_insert_default().get(path).filter(|(s, _)| *s == before).map(|(_, h)| h.clone())
    };
    if let Some(hash) = remembered(&mut *HASHED.lock().map_err(|_| anyhow!("a hashing thread panicked"))?) {
        return Ok(hash);
    }
    let started = SystemTime::now();
    let hash = crate::fsutil::hash_file(path)?;
    // A file rewritten while it was read may hash to neither version, and one rewritten within
    // the clock's granularity of the last write keeps its stamp (git's "racily clean" entries):
    // only remember a hash whose file was last written well before and did not change meanwhile.
    let settled = before.1 + RACY < started;
    if settled && stamp(path)? == before {
        let mut map = HASHED.lock().map_err(|_| anyhow!("a hashing thread panicked"))?;
        map.get_or_insert_default().insert(path.to_path_buf(), (before, hash.clone()));
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ArtifactSpec, MANIFEST_FILE};
    use serde_json::{Value, json};

    fn store_with_split() -> (tempfile::TempDir, Store, Artifact) {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let split = store
            .get_or_produce(&ArtifactSpec::new(ArtifactKind::Split, 1, json!({"seed": 1})), |d| {
                std::fs::write(d.join("split.json"), "{\"classnames\": [\"a\"]}")?;
                Ok(Value::Null)
            })
            .unwrap();
        (root, store, split)
    }

    fn consumer(split: &Artifact) -> ArtifactSpec {
        ArtifactSpec::new(ArtifactKind::Stage1, 1, json!({"lr": 1e-6})).input("split", split)
    }

    #[test]
    fn an_edited_input_is_refused_before_anything_is_computed() {
        let (_root, store, split) = store_with_split();
        store.verify(&split).unwrap();
        // Same length, so only the content (and the modification time) tells.
        std::fs::write(split.file("split.json"), "{\"classnames\": [\"b\"]}").unwrap();
        let err = store.get_or_produce(&consumer(&split), |_| panic!("must not compute")).unwrap_err();
        let line = format!("{err:#}");
        assert!(line.starts_with("input `split` of a `stage1` artifact: split/"), "{line}");
        assert!(line.contains("file `split.json` changed") && line.contains("clip-ast audit"), "{line}");
        assert!(line.contains(&format!("rm -r {}", split.dir.display())), "{line}");
        assert!(!line.contains('\n'), "{line}");
        // Restored, it is accepted again.
        std::fs::write(split.file("split.json"), "{\"classnames\": [\"a\"]}").unwrap();
        assert!(!store.get_or_produce(&consumer(&split), |_| Ok(Value::Null)).unwrap().cached);
    }

    #[test]
    fn a_missing_file_and_edited_params_are_named() {
        let (_root, store, split) = store_with_split();
        let manifest_path = split.dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        std::fs::write(&manifest_path, text.replace("\"seed\": 1", "\"seed\": 2")).unwrap();
        let edited = Artifact::load(&split.dir).unwrap();
        let err = store.verify(&edited).unwrap_err().to_string();
        assert!(err.contains("manifest edited"), "{err}");
        let err = store.cached(ArtifactKind::Split, &split.key).unwrap_err().to_string();
        assert!(err.contains("was edited or moved") && err.contains("clip-ast audit"), "{err}");
        std::fs::write(&manifest_path, text).unwrap();
        assert!(store.cached(ArtifactKind::Split, &split.key).unwrap().is_some());
        std::fs::remove_file(split.file("split.json")).unwrap();
        let err = store.input(&split.key, ArtifactKind::Split).unwrap_err().to_string();
        assert!(err.contains("file `split.json` is missing"), "{err}");
    }

    #[test]
    fn memoised_hashes_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"one").unwrap();
        assert_eq!(memo_hash(&path).unwrap(), blake3::hash(b"one").to_hex().to_string());
        std::fs::write(&path, b"two!").unwrap();
        assert_eq!(memo_hash(&path).unwrap(), blake3::hash(b"two!").to_hex().to_string());
    }
}
