//! The images behind a split are the ones it hashed. A split records the blake3 of every image
//! file it uses (`files.json`); a stage that reads its train or val images checks them against
//! that first, through the hash cache's size/mtime test, so an unchanged image costs a stat and a
//! replaced one is an error naming it and the split. (The test images are not read again: the
//! split holds them preprocessed, and its own hashes cover that file.)
//!
//! `audit --rerun SPLIT` checks every file the split hashed, reading each one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::split_data::SplitInfo;
use crate::data::file_hashes::{changed, default_cache_path};
use crate::data::idx::parse_virtual;
use crate::fsutil::hash_file;
use crate::store::Artifact;
use crate::store::audit::Problem;

pub const FILES_FILE: &str = "files.json";

/// The split artifact a [`SplitInfo`] was read from.
#[derive(Clone, Debug)]
pub struct Origin {
    /// `split/<key12>`, for messages.
    pub label: String,
    pub dir: PathBuf,
}

impl Origin {
    pub fn of(artifact: &Artifact) -> Origin {
        Origin { label: format!("{}/{}", artifact.kind, artifact.key.short()), dir: artifact.dir.clone() }
    }
}

#[derive(Deserialize)]
struct FilesJson {
    files: BTreeMap<String, String>,
}

fn recorded(dir: &Path) -> Result<BTreeMap<String, String>> {
    let path = dir.join(FILES_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let parsed: FilesJson =
        serde_json::from_str(&text).with_context(|| format!("{}: not a split's file hashes", path.display()))?;
    Ok(parsed.files)
}

/// The file an image path is in (an IDX file holds many images).
fn file_part(impath: &str) -> &str {
    parse_virtual(impath).map_or(impath, |(file, _)| file)
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// How many names an error shows before summarising.
const SHOWN: usize = 3;

/// Fail unless the files behind `impaths` (the split's `what` images) still hash as the split
/// recorded. A split built in code (no origin) has nothing to check against.
pub fn check(split: &SplitInfo, impaths: &[&str], what: &str) -> Result<()> {
    let Some(origin) = &split.origin else { return Ok(()) };
    let hashes = recorded(&origin.dir)?;
    let files: BTreeSet<&str> = impaths.iter().map(|p| file_part(p)).collect();
    let mut paths = Vec::with_capacity(files.len());
    let mut expected = Vec::with_capacity(files.len());
    for file in files {
        let Some(hash) = hashes.get(file) else {
            bail!(
                "{what} image `{}` of {} is not among the files it hashed ({}): its split.json was edited; delete the split (`rm -r {}`) and make it again",
                split.image_dir.join(file).display(),
                origin.label,
                origin.dir.join(FILES_FILE).display(),
                origin.dir.display()
            );
        };
        paths.push(split.image_dir.join(file));
        expected.push(hash.as_str());
    }
    let changed = changed(&paths, &expected, default_cache_path().as_deref())
        .with_context(|| format!("the {what} images of {}", origin.label))?;
    if changed.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = changed.iter().take(SHOWN).map(|(i, _)| format!("`{}`", paths[*i].display())).collect();
    let more = if changed.len() > SHOWN { format!(" and {} more", changed.len() - SHOWN) } else { String::new() };
    let (first, now) = &changed[0];
    bail!(
        "{} {what} image(s) changed since {} hashed them: {}{more} (blake3 {}…, the split records {}…); nothing is computed from a split whose images changed: put the images back, or run `clip-ast split` again with the same settings to make a split of the images as they are now",
        changed.len(),
        origin.label,
        shown.join(", "),
        short(now),
        short(expected[*first])
    )
}

/// `audit --rerun SPLIT`: every file the split hashed (train, val and test images), read and
/// hashed again, without the cache. Returns how many files were checked and what differs.
pub fn audit(artifact: &Artifact) -> Result<(usize, Vec<Problem>)> {
    let info = super::split_data::read_split(artifact)?;
    let hashes = recorded(&artifact.dir)?;
    let problems = {
        use rayon::prelude::*;
        hashes
            .par_iter()
            .filter_map(|(file, recorded)| {
                let path = info.image_dir.join(file);
                let shown = path.display().to_string();
                match hash_file(&path) {
                    Ok(actual) if actual == *recorded => None,
                    Ok(actual) => Some(Problem::SourceChanged { file: shown, recorded: recorded.clone(), actual }),
                    Err(e) => Some(Problem::SourceUnreadable { file: shown, error: format!("{e:#}") }),
                }
            })
            .collect()
    };
    Ok((hashes.len(), problems))
}
