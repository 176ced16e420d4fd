//! Finding artifacts: by directory, by unique key prefix, by full key, or all of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::key::{abbreviate, is_lower_hex};
use super::{Artifact, ArtifactKey, ArtifactKind, LOCKS_DIR, Store, TMP_DIR};

/// How many ambiguous matches an error lists before summarising.
const SHOWN_MATCHES: usize = 5;

/// A directory under `STORE/<kind>/`, not yet known to hold a valid artifact.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: String,
    pub name: String,
    pub dir: PathBuf,
}

impl Store {
    /// Every published artifact, sorted by kind then key. Fails on an unreadable manifest,
    /// naming it; `audit::audit_all` reports those instead of failing.
    pub fn list(&self) -> Result<Vec<Artifact>> {
        self.entries()?.iter().map(|e| Artifact::load(&e.dir)).collect()
    }

    /// The artifact with exactly this key, of any kind.
    pub fn find(&self, key: &ArtifactKey) -> Result<Option<Artifact>> {
        for kind in self.kinds()? {
            let dir = self.root.join(&kind).join(key.as_str());
            if dir.is_dir() {
                return Artifact::load(&dir).map(Some);
            }
        }
        Ok(None)
    }

    /// An artifact named by its directory, by `KEYPREFIX`, or by `KIND/KEYPREFIX`; when
    /// `kind` is given the artifact must be of that kind.
    pub fn resolve(&self, reference: &str, kind: Option<ArtifactKind>) -> Result<Artifact> {
        let found = Artifact::load(&self.locate(reference, kind)?)?;
        if let Some(want) = kind.filter(|&k| k != found.kind) {
            bail!("`{reference}` is an artifact of kind `{}`, expected kind `{want}`", found.kind);
        }
        Ok(found)
    }

    /// The directory `reference` names, as [`Store::resolve`] finds it, without reading its
    /// manifest: `audit` must reach artifacts whose manifest is damaged.
    pub fn locate(&self, reference: &str, kind: Option<ArtifactKind>) -> Result<PathBuf> {
        let path = Path::new(reference);
        if path.is_dir() {
            return Ok(path.to_path_buf());
        }
        let (kind_part, prefix) = match reference.split_once('/') {
            Some((k, p)) => match k.parse::<ArtifactKind>() {
                Ok(k) if !p.is_empty() && is_lower_hex(p) => (Some(k), p),
                _ => bail!("no artifact directory at `{reference}`; give a directory or a key prefix"),
            },
            None => (None, reference),
        };
        if prefix.is_empty() || !is_lower_hex(prefix) {
            bail!("`{reference}` is neither an artifact directory nor a key prefix (lowercase hex digits)");
        }
        let want = match (kind, kind_part) {
            (Some(a), Some(b)) if a != b => {
                bail!("`{reference}` names kind `{b}`, expected kind `{a}`")
            }
            (a, b) => a.or(b),
        };
        self.locate_prefix(prefix, want)
    }

    fn locate_prefix(&self, prefix: &str, kind: Option<ArtifactKind>) -> Result<PathBuf> {
        let all: Vec<Entry> = self.entries()?.into_iter().filter(|e| e.name.starts_with(prefix)).collect();
        let (matches, other_kinds): (Vec<Entry>, Vec<Entry>) =
            all.into_iter().partition(|e| kind.is_none_or(|k| k == e.kind.as_str()));
        match matches.as_slice() {
            [one] => Ok(one.dir.clone()),
            [] => {
                let of_kind = kind.map(|k| format!("`{k}` ")).unwrap_or_default();
                let elsewhere = match other_kinds.as_slice() {
                    [] => String::new(),
                    others => format!(" (but {} of another kind: {})", others.len(), names(others)),
                };
                bail!(
                    "no {of_kind}artifact has key prefix `{prefix}` in {}{elsewhere}; `clip-ast ls` lists them",
                    self.root.display()
                )
            }
            several => bail!(
                "prefix `{prefix}` matches {} artifacts ({}): give more characters",
                several.len(),
                names(several)
            ),
        }
    }

    /// Directories under `STORE/<kind>/`, sorted by kind then name.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for kind in self.kinds()? {
            let kind_dir = self.root.join(&kind);
            for entry in read_dir_sorted(&kind_dir)? {
                if entry.is_dir() {
                    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
                    entries.push(Entry { kind: kind.clone(), name, dir: entry });
                }
            }
        }
        Ok(entries)
    }

    fn kinds(&self) -> Result<Vec<String>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        Ok(read_dir_sorted(&self.root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .filter(|n| n != TMP_DIR && n != LOCKS_DIR)
            .collect())
    }
}

fn names(entries: &[Entry]) -> String {
    let mut shown: Vec<String> =
        entries.iter().take(SHOWN_MATCHES).map(|e| format!("{}/{}…", e.kind, abbreviate(&e.name))).collect();
    if entries.len() > SHOWN_MATCHES {
        shown.push(format!("{} more", entries.len() - SHOWN_MATCHES));
    }
    shown.join(", ")
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ArtifactKind, ArtifactSpec};
    use serde_json::{Value, json};

    fn make(store: &Store, kind: ArtifactKind, seed: u64) -> Artifact {
        let spec = ArtifactSpec::new(kind, 1, json!({ "seed": seed }));
        store.get_or_produce(&spec, |_| Ok(Value::Null)).unwrap()
    }

    /// Seeds whose keys share a first hex digit, so prefixes can be ambiguous on purpose.
    fn colliding(store: &Store, kind_a: ArtifactKind, kind_b: ArtifactKind) -> (Artifact, Artifact) {
        let a = make(store, kind_a, 0);
        for seed in 1.. {
            let key = ArtifactSpec::new(kind_b, 1, json!({ "seed": seed })).key();
            if key.short()[..1] == a.key.short()[..1] {
                return (a, make(store, kind_b, seed));
            }
        }
        unreachable!()
    }

    #[test]
    fn resolves_by_directory_prefix_and_kind() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let (a, b) = colliding(&store, ArtifactKind::Split, ArtifactKind::Stage1);
        let by_dir = store.resolve(a.dir.to_str().unwrap(), Some(ArtifactKind::Split)).unwrap();
        assert_eq!(by_dir.key, a.key);
        assert_eq!(store.resolve(&a.key.short()[..8], None).unwrap().key, a.key);
        assert_eq!(store.resolve(a.key.as_str(), None).unwrap().key, a.key);
        let first = &a.key.short()[..1];
        assert_eq!(store.resolve(first, Some(ArtifactKind::Stage1)).unwrap().key, b.key);
        assert_eq!(store.resolve(&format!("split/{first}"), None).unwrap().key, a.key);
        assert_eq!(store.find(&b.key).unwrap().unwrap().kind, ArtifactKind::Stage1);
        let listed: Vec<_> = store.list().unwrap().into_iter().map(|x| x.key).collect();
        assert_eq!(listed, [a.key.clone(), b.key.clone()]);
    }

    #[test]
    fn lookup_errors_say_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        assert!(store.list().unwrap().is_empty());
        let (a, b) = colliding(&store, ArtifactKind::Split, ArtifactKind::Stage1);
        let first = &a.key.short()[..1];
        let err = store.resolve(first, None).unwrap_err().to_string();
        assert!(err.contains("matches 2 artifacts") && err.contains("give more characters"), "{err}");
        assert!(err.contains(&format!("split/{}", a.key.short())), "{err}");
        assert!(err.contains(&format!("stage1/{}", b.key.short())), "{err}");
        let err = store.resolve(&b.key.short()[..10], Some(ArtifactKind::Split)).unwrap_err().to_string();
        assert!(err.contains("no `split` artifact") && err.contains("another kind"), "{err}");
        let err = store.resolve(a.dir.to_str().unwrap(), Some(ArtifactKind::Eval)).unwrap_err().to_string();
        assert!(err.contains("of kind `split`, expected kind `eval`"), "{err}");
        for bad in ["", "XYZ", "no/such/dir", "split/zz"] {
            let err = store.resolve(bad, None).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
        let err = store.resolve(root.path().to_str().unwrap(), None).unwrap_err().to_string();
        assert!(err.contains("not an artifact"), "{err}");
    }
}
