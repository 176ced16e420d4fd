//! Checking published artifacts: output hashes against the manifest, the key against params
//! and inputs, inputs present, no unlisted files; and, with a recompute closure per kind,
//! reruns compared file by file.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde_json::Value;

use super::key::abbreviate;
use super::lock::KeyLock;
pub use super::problem::Problem;
use super::publish::{self, TempDir};
use super::{Artifact, Manifest, Store, lineage, verify};

#[derive(Clone, Debug)]
pub struct AuditReport {
    /// The kind directory it sits in.
    pub kind: String,
    /// The artifact directory's name (its key, unless that is one of the problems).
    pub name: String,
    pub dir: PathBuf,
    pub problems: Vec<Problem>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = abbreviate(&self.name);
        if self.problems.is_empty() {
            return write!(f, "ok  {}/{short}", self.kind);
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "BAD {}/{short} ({}): {problem}", self.kind, self.dir.display())?;
        }
        Ok(())
    }
}

/// Audit one artifact directory (in this store or not).
pub fn audit(store: &Store, dir: &Path) -> AuditReport {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let kind = dir.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let problems = match Manifest::read(dir) {
        Ok(manifest) => check(store, dir, &manifest),
        Err(e) => vec![Problem::ManifestUnreadable { error: format!("{e:#}") }],
    };
    AuditReport { kind, name, dir: dir.to_path_buf(), problems }
}

/// Audit every artifact in the store, sorted by kind then key; an artifact built from a BAD
/// one is BAD too.
pub fn audit_all(store: &Store) -> Result<Vec<AuditReport>> {
    let entries = store.entries()?;
    let mut reports: Vec<AuditReport> = entries.par_iter().map(|e| audit(store, &e.dir)).collect();
    lineage::add_lineage(store, &mut reports);
    Ok(reports)
}

/// Audit the artifacts in `dirs`, each with its inputs (audited, not reported): an artifact
/// built from a BAD one is BAD too.
pub fn audit_each(store: &Store, dirs: &[PathBuf]) -> Vec<AuditReport> {
    let mut reports: Vec<AuditReport> = dirs.par_iter().map(|d| audit(store, d)).collect();
    lineage::add_lineage(store, &mut reports);
    reports
}

fn check(store: &Store, dir: &Path, m: &Manifest) -> Vec<Problem> {
    let mut problems = verify::integrity(dir, m, crate::fsutil::hash_file);
    match publish::list_outputs(dir) {
        Ok(present) => problems.extend(
            present.into_iter().filter(|f| !m.outputs.contains_key(f)).map(|file| Problem::FileUnlisted { file }),
        ),
        Err(e) => problems.push(Problem::FileUnreadable { file: ".".into(), error: format!("{e:#}") }),
    }
    for (name, key) in &m.inputs {
        match store.find(key) {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(Problem::InputMissing { name: name.clone(), key: key.clone() }),
            Err(e) => problems.push(Problem::InputUnreadable {
                name: name.clone(),
                key: key.clone(),
                error: format!("{e:#}"),
            }),
        }
    }
    problems
}

/// Recompute `artifact` into a fresh temp dir and compare what `recompute` writes against the
/// manifest. `recompute` has the signature of a `produce` closure, so a stage can pass the
/// same one (its metrics are ignored). For each file whose bytes differ, `compare(file,
/// published, rerun)` decides: `None` accepts it (say, within tolerance on another device),
/// `Some(detail)` reports it.
///
/// The key's lock is held throughout, so `recompute` must write its files itself rather than
/// go through `get_or_produce` for the same key, which would wait forever.
pub fn rerun(
    store: &Store,
    artifact: &Artifact,
    recompute: impl FnOnce(&Path) -> Result<Value>,
    mut compare: impl FnMut(&str, &Path, &Path) -> Result<Option<String>>,
) -> Result<Vec<Problem>> {
    let label = format!("{}/{}", artifact.kind, artifact.key.short());
    // What the stage will read must be what the artifact was made from.
    store.verify_inputs(&artifact.manifest.inputs, artifact.kind)?;
    std::fs::create_dir_all(store.locks_dir())?;
    std::fs::create_dir_all(store.tmp_dir())?;
    // Holding the key's lock marks the temp dir as live for stale-temp cleanup.
    let _lock = KeyLock::acquire(&store.lock_path(&artifact.key))?;
    let temp = TempDir::create(&store.tmp_dir(), &artifact.key, "rerun")?;
    // The caller names the rerun (`stages::rerun` says "rerun of KIND/KEY").
    recompute(temp.path())?;
    let files = publish::list_outputs(temp.path())?;
    let hashes = publish::hash_outputs(temp.path(), &files)?;
    let mut problems = Vec::new();
    for (file, hash) in &hashes {
        match artifact.manifest.outputs.get(file) {
            None => problems.push(Problem::RerunUnlisted { file: file.clone() }),
            Some(recorded) if recorded == hash => {}
            Some(_) => {
                if let Some(detail) = compare(file, &artifact.dir.join(file), &temp.path().join(file))
                    .with_context(|| format!("comparing `{file}` of {label}"))?
                {
                    problems.push(Problem::RerunDiffers { file: file.clone(), detail });
                }
            }
        }
    }
    let written: BTreeSet<&String> = files.iter().collect();
    problems.extend(
        artifact
            .manifest
            .outputs
            .keys()
            .filter(|f| !written.contains(f))
            .map(|file| Problem::RerunMissing { file: file.clone() }),
    );
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ArtifactKind, ArtifactSpec, MANIFEST_FILE};
    use serde_json::json;

    /// A comparison for [`rerun`] that accepts nothing but identical bytes. (`audit --rerun`
    /// compares with `stages::rerun`'s, which also reports numeric differences.)
    fn exact(_file: &str, _published: &Path, _rerun: &Path) -> Result<Option<String>> {
        Ok(Some("bytes differ".to_string()))
    }

    fn setup() -> (tempfile::TempDir, Store, Artifact, Artifact) {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let split = store
            .get_or_produce(&ArtifactSpec::new(ArtifactKind::Split, 1, json!({"seed": 1})), |d| {
                std::fs::create_dir(d.join("images"))?;
                std::fs::write(d.join("images/0.png"), [0u8; 64])?;
                std::fs::write(d.join("split.json"), "{}")?;
                Ok(Value::Null)
            })
            .unwrap();
        let spec = ArtifactSpec::new(ArtifactKind::Stage1, 1, json!({"lr": 1e-6})).input("split", &split);
        let stage1 = store
            .get_or_produce(&spec, |d| {
                std::fs::write(d.join("checkpoint.bin"), [1u8; 32])?;
                Ok(json!({"loss": 0.25}))
            })
            .unwrap();
        (root, store, split, stage1)
    }

    fn problems(store: &Store, a: &Artifact) -> Vec<Problem> {
        audit(store, &a.dir).problems
    }

    #[test]
    fn fresh_store_audits_clean() {
        let (_root, store, _split, _stage1) = setup();
        let reports = audit_all(&store).unwrap();
        assert_eq!(reports.len(), 2);
        assert!(reports.iter().all(AuditReport::is_clean), "{reports:?}");
        assert!(reports[0].to_string().starts_with("ok  split/"));
    }

    #[test]
    fn a_flipped_byte_names_the_file() {
        let (_root, store, split, _) = setup();
        let path = split.dir.join("images/0.png");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let report = audit(&store, &split.dir);
        assert!(matches!(&report.problems[..], [Problem::FileChanged { file, .. }] if file == "images/0.png"));
        let line = report.to_string();
        assert!(line.starts_with("BAD split/") && line.contains("`images/0.png` changed"), "{line}");
    }

    #[test]
    fn edited_params_missing_extra_and_dangling_inputs_are_reported() {
        let (_root, store, split, stage1) = setup();
        let manifest_path = stage1.dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        std::fs::write(&manifest_path, text.replace("1e-6", "2e-6")).unwrap();
        assert!(matches!(&problems(&store, &stage1)[..], [Problem::KeyMismatch { .. }]));

        std::fs::remove_file(split.dir.join("split.json")).unwrap();
        std::fs::write(split.dir.join("notes.txt"), "hi").unwrap();
        let got = problems(&store, &split);
        assert!(got.contains(&Problem::FileMissing { file: "split.json".into() }), "{got:?}");
        assert!(got.contains(&Problem::FileUnlisted { file: "notes.txt".into() }), "{got:?}");

        std::fs::remove_dir_all(&split.dir).unwrap();
        let got = problems(&store, &stage1);
        assert!(got.contains(&Problem::InputMissing { name: "split".into(), key: split.key.clone() }));

        // Hashes read back from a tampered manifest may be any text; reports must not panic.
        let mut m = Manifest::read(&stage1.dir).unwrap();
        m.outputs.insert("checkpoint.bin".into(), "é".into());
        std::fs::write(&manifest_path, m.to_json()).unwrap();
        let line = audit(&store, &stage1.dir).to_string();
        assert!(line.contains("`checkpoint.bin` changed") && line.contains("records é…"), "{line}");

        std::fs::write(&manifest_path, "{ not json").unwrap();
        assert!(matches!(&problems(&store, &stage1)[..], [Problem::ManifestUnreadable { .. }]));
        assert_eq!(audit_all(&store).unwrap().len(), 1);
    }

    #[test]
    fn moved_artifacts_are_reported() {
        let (root, store, split, _) = setup();
        let moved = root.path().join("stage1").join(&split.key.as_str()[..10]);
        std::fs::rename(&split.dir, &moved).unwrap();
        let got = audit(&store, &moved).problems;
        assert!(matches!(got[0], Problem::KindMismatch { .. }), "{got:?}");
        assert!(matches!(got[1], Problem::DirNameMismatch { .. }), "{got:?}");
    }

    #[test]
    fn rerun_reports_the_differing_files() {
        let (_root, store, split, _) = setup();
        let same = |d: &Path| -> Result<Value> {
            std::fs::create_dir(d.join("images"))?;
            std::fs::write(d.join("images/0.png"), [0u8; 64])?;
            std::fs::write(d.join("split.json"), "{}")?;
            Ok(Value::Null)
        };
        assert_eq!(rerun(&store, &split, same, exact).unwrap(), []);
        let drifted = |d: &Path| -> Result<Value> {
            std::fs::write(d.join("split.json"), "{\"x\":1}")?;
            std::fs::write(d.join("extra.txt"), "")?;
            Ok(Value::Null)
        };
        let got = rerun(&store, &split, drifted, exact).unwrap();
        assert!(got.contains(&Problem::RerunDiffers { file: "split.json".into(), detail: "bytes differ".into() }));
        assert!(got.contains(&Problem::RerunUnlisted { file: "extra.txt".into() }));
        assert!(got.contains(&Problem::RerunMissing { file: "images/0.png".into() }));
        let tolerant = rerun(&store, &split, drifted, |_: &str, _: &Path, _: &Path| Ok(None)).unwrap();
        assert_eq!(tolerant.len(), 2, "{tolerant:?}");
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }
}
