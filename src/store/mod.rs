//! The artifact store: `STORE/<kind>/<key>/` directories, each a stage's output files plus a
//! `manifest.json`, keyed by what determines their content. The rules: docs/store.md.
//!
//! Layout: `STORE/<kind>/<key>/` published artifacts, `STORE/tmp/` work in progress,
//! `STORE/locks/<key>.lock` one lock per key, `STORE/tmp/checkpoints/<key>/` a running stage's
//! checkpoints (`checkpoint.rs`).

pub mod audit;
pub mod checkpoint;
mod cpu;
pub mod gc;
mod key;
mod kind;
mod lineage;
mod lock;
mod lookup;
mod manifest;
pub mod numeric_diff;
mod problem;
mod produce;
mod publish;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use cpu::CpuKind;
pub use key::{ArtifactKey, canonical_json};
pub use kind::ArtifactKind;
pub use manifest::{MANIFEST_FILE, Manifest, Producer, RunInfo, rfc3339_utc};

/// Environment variable naming the store when `--store` is not given.
pub const STORE_ENV: &str = "CLIP_AST_STORE";
/// Where the store lives when neither `--store` nor `$CLIP_AST_STORE` says.
pub const DEFAULT_STORE: &str = "artifacts";

const TMP_DIR: &str = "tmp";
const LOCKS_DIR: &str = "locks";

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `--store DIR`, else `$CLIP_AST_STORE`, else `./artifacts`. The directory is created on
    /// first write, so reading an empty store is not an error. The root is made absolute
    /// because stage commands print artifact paths for other commands to consume.
    pub fn open(explicit: Option<&Path>) -> Result<Store> {
        let root = match explicit {
            Some(dir) => dir.to_path_buf(),
            None => match std::env::var_os(STORE_ENV) {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                _ => PathBuf::from(DEFAULT_STORE),
            },
        };
        let root =
            std::path::absolute(&root).with_context(|| format!("cannot resolve store path {}", root.display()))?;
        if root.exists() && !root.is_dir() {
            bail!("store {} is not a directory; pass --store DIR or set {STORE_ENV}", root.display());
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn artifact_dir(&self, kind: ArtifactKind, key: &ArtifactKey) -> PathBuf {
        self.root.join(kind.as_str()).join(key.as_str())
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    fn locks_dir(&self) -> PathBuf {
        self.root.join(LOCKS_DIR)
    }

    fn lock_path(&self, key: &ArtifactKey) -> PathBuf {
        self.locks_dir().join(format!("{key}.lock"))
    }
}

/// What to compute: the key is derived from everything here except `run_info`.
#[derive(Clone, Debug)]
pub struct ArtifactSpec {
    pub kind: ArtifactKind,
    pub schema_version: u32,
    /// A JSON object of every setting that can change the output, and nothing else.
    pub params: Value,
    /// Input name → key of an artifact in the same store.
    pub inputs: BTreeMap<String, ArtifactKey>,
    pub run_info: RunInfo,
}

impl ArtifactSpec {
    pub fn new(kind: ArtifactKind, schema_version: u32, params: Value) -> ArtifactSpec {
        ArtifactSpec { kind, schema_version, params, inputs: BTreeMap::new(), run_info: RunInfo::default() }
    }

    pub fn input(self, name: &str, artifact: &Artifact) -> ArtifactSpec {
        self.input_key(name, &artifact.key)
    }

    /// An input by key alone: how the pipeline runner predicts a stage's key before its
    /// inputs exist.
    pub fn input_key(mut self, name: &str, key: &ArtifactKey) -> ArtifactSpec {
        self.inputs.insert(name.to_string(), key.clone());
        self
    }

    pub fn with_run_info(mut self, run_info: RunInfo) -> ArtifactSpec {
        self.run_info = run_info;
        self
    }

    pub fn key(&self) -> ArtifactKey {
        ArtifactKey::compute(self.kind.as_str(), self.schema_version, &self.params, &self.inputs)
    }

    fn validate(&self) -> Result<()> {
        if !self.params.is_object() {
            bail!("params of a `{}` artifact must be a JSON object, got {}", self.kind, self.params);
        }
        Ok(())
    }
}

/// A published artifact.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub kind: ArtifactKind,
    pub key: ArtifactKey,
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// True when it was already in the store rather than computed by this call.
    pub cached: bool,
}

impl Artifact {
    /// Read the artifact in `dir` (any directory holding a manifest).
    pub fn load(dir: &Path) -> Result<Artifact> {
        if !dir.join(MANIFEST_FILE).is_file() {
            bail!("{} is not an artifact: it has no {MANIFEST_FILE}", dir.display());
        }
        let manifest = Manifest::read(dir)?;
        let kind = manifest.kind.parse().with_context(|| format!("{}: manifest", dir.display()))?;
        Ok(Artifact { kind, key: manifest.key.clone(), dir: dir.to_path_buf(), manifest, cached: true })
    }

    /// Path of one of its output files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_prefers_flag_then_env_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path())).unwrap();
        assert_eq!(store.root(), dir.path());
        // The env and default cases read process-wide state; only check the absolute default.
        let default = Store::open(Some(Path::new(DEFAULT_STORE))).unwrap();
        assert!(default.root().is_absolute() && default.root().ends_with(DEFAULT_STORE));
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let err = Store::open(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn rejects_non_object_params() {
        assert!(ArtifactSpec::new(ArtifactKind::Split, 1, serde_json::json!([1])).validate().is_err());
    }
}
