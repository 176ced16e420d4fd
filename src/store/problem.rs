//! `Problem`: one thing wrong with an artifact, as `audit`, the checks a stage makes of its
//! inputs (`verify.rs`) and `audit --rerun` report it. Each names the file or field concerned.

use std::fmt;

use super::ArtifactKey;
use super::key::abbreviate;

/// One thing wrong with an artifact. Each names the file or field concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    ManifestUnreadable {
        error: String,
    },
    /// The manifest's kind is not the directory it sits in.
    KindMismatch {
        dir_kind: String,
        manifest_kind: String,
    },
    /// The manifest's key is not the directory's name.
    DirNameMismatch {
        dir_name: String,
        manifest_key: ArtifactKey,
    },
    /// Params, inputs, kind or schema version were edited after the key was computed.
    KeyMismatch {
        recorded: ArtifactKey,
        recomputed: ArtifactKey,
    },
    FileChanged {
        file: String,
        recorded: String,
        actual: String,
    },
    FileMissing {
        file: String,
    },
    FileUnreadable {
        file: String,
        error: String,
    },
    /// Present in the directory but not in the manifest.
    FileUnlisted {
        file: String,
    },
    InputMissing {
        name: String,
        key: ArtifactKey,
    },
    InputUnreadable {
        name: String,
        key: ArtifactKey,
        error: String,
    },
    /// Input `name` (`input`, kind/key12) fails the audit, itself or through its own inputs;
    /// `bad` are the artifacts at the root that fail it on their own.
    InputBad {
        name: String,
        input: String,
        bad: Vec<String>,
    },
    /// A file a split was made from (an image) no longer has the blake3 the split recorded.
    SourceChanged {
        file: String,
        recorded: String,
        actual: String,
    },
    SourceUnreadable {
        file: String,
        error: String,
    },
    /// A rerun wrote different content; `detail` comes from the kind's comparison.
    RerunDiffers {
        file: String,
        detail: String,
    },
    RerunMissing {
        file: String,
    },
    RerunUnlisted {
        file: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::ManifestUnreadable { error } => write!(f, "manifest unreadable: {error}"),
            Problem::KindMismatch { dir_kind, manifest_kind } => {
                write!(f, "manifest says kind `{manifest_kind}` but it sits under `{dir_kind}/`")
            }
            Problem::DirNameMismatch { dir_name, manifest_key } => {
                write!(f, "manifest key {manifest_key} is not the directory name {dir_name}")
            }
            Problem::KeyMismatch { recorded, recomputed } => write!(
                f,
                "manifest edited: params and inputs give key {}, manifest records {}",
                recomputed.short(),
                recorded.short()
            ),
            Problem::FileChanged { file, recorded, actual } => {
                write!(
                    f,
                    "file `{file}` changed: blake3 {}…, manifest records {}…",
                    abbreviate(actual),
                    abbreviate(recorded)
                )
            }
            Problem::FileMissing { file } => write!(f, "file `{file}` is missing"),
            Problem::FileUnreadable { file, error } => {
                write!(f, "file `{file}` unreadable: {error}")
            }
            Problem::FileUnlisted { file } => write!(f, "file `{file}` is not in the manifest"),
            Problem::InputMissing { name, key } => {
                write!(f, "input `{name}` ({}) is not in the store", key.short())
            }
            Problem::InputUnreadable { name, key, error } => {
                write!(f, "input `{name}` ({}) unreadable: {error}", key.short())
            }
            // Never "BAD kind/key" mid-line: each BAD line starts with the artifact it is about.
            Problem::InputBad { name, input, bad } => match &bad[..] {
                _ if bad.contains(input) => write!(f, "built from input `{name}` ({input}), which fails the audit"),
                [root] => {
                    write!(f, "built from input `{name}` ({input}), which was built from {root}, which fails the audit")
                }
                roots => write!(
                    f,
                    "built from input `{name}` ({input}), which was built from artifacts that fail the audit: {}",
                    roots.join(", ")
                ),
            },
            Problem::SourceChanged { file, recorded, actual } => write!(
                f,
                "image `{file}` changed since the split hashed it: blake3 {}…, the split records {}…",
                abbreviate(actual),
                abbreviate(recorded)
            ),
            Problem::SourceUnreadable { file, error } => write!(f, "image `{file}` unreadable: {error}"),
            Problem::RerunDiffers { file, detail } => {
                write!(f, "rerun differs in `{file}`: {detail}")
            }
            Problem::RerunMissing { file } => write!(f, "rerun did not write `{file}`"),
            Problem::RerunUnlisted { file } => {
                write!(f, "rerun wrote `{file}`, not in the manifest")
            }
        }
    }
}
