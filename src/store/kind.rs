//! `ArtifactKind`: what a stage makes. Its string is the directory under `STORE/` and the
//! `kind` a key is computed from, so the strings must never change.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// An imported checkpoint, a seeded initialisation or a pretrained foundation.
    Weights,
    Split,
    Stage1,
    Selection,
    Stage2,
    /// Zero-shot, stage-2 and linear-probe evaluations.
    Eval,
}

impl ArtifactKind {
    /// In the order a run makes them: what the pipeline's tables list.
    pub const ALL: [ArtifactKind; 6] = [
        ArtifactKind::Weights,
        ArtifactKind::Split,
        ArtifactKind::Stage1,
        ArtifactKind::Selection,
        ArtifactKind::Stage2,
        ArtifactKind::Eval,
    ];

    /// The store's directory name, and the `kind` in a key and a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Weights => "weights",
            ArtifactKind::Split => "split",
            ArtifactKind::Stage1 => "stage1",
            ArtifactKind::Selection => "selection",
            ArtifactKind::Stage2 => "stage2",
            ArtifactKind::Eval => "eval",
        }
    }
}

/// By name, as the store lists its directories.
impl Ord for ArtifactKind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for ArtifactKind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ArtifactKind {
    /// Padding and alignment apply, so listings can write `{:<9}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ArtifactKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match ArtifactKind::ALL.into_iter().find(|k| k.as_str() == s) {
            Some(kind) => Ok(kind),
            None => {
                let names: Vec<&str> = ArtifactKind::ALL.iter().map(|k| k.as_str()).collect();
                bail!("`{s}` is not an artifact kind ({})", names.join(", "))
            }
        }
    }
}

impl PartialEq<str> for ArtifactKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ArtifactKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_store_directories_and_parse_back() {
        let names: Vec<String> = ArtifactKind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(names, ["weights", "split", "stage1", "selection", "stage2", "eval"]);
        for kind in ArtifactKind::ALL {
            assert_eq!(kind.as_str().parse::<ArtifactKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for bad in ["tmp", "locks", "", "Split", "a/b", ".."] {
            assert!(bad.parse::<ArtifactKind>().is_err(), "{bad}");
        }
        assert_eq!(format!("{:<7}|", ArtifactKind::Eval), "eval   |");
        let mut sorted = ArtifactKind::ALL;
        sorted.sort();
        assert_eq!(sorted[0], ArtifactKind::Eval, "sorted by name, as directories list");
    }
}
