//! An `[eval] targets` entry as the file states it (what is done with it: `pipeline::targets`).

use std::path::PathBuf;

use crate::data::rendering::Rendering;

/// One `{ dataset = "...", root = "...", test_per_class = N, rendering = "..." }` of
/// `[eval] targets`.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The dataset's canonical name (its data-manifest's).
    pub dataset: String,
    pub root: PathBuf,
    pub test_per_class: Option<usize>,
    /// How the target's images are shown (its split is made in this rendering).
    pub rendering: Rendering,
    /// The line of the target in the pipeline file, for messages.
    pub line: usize,
}

impl Target {
    /// What results.csv's `target` column shows: `DATASET` in the original rendering,
    /// `DATASET/RENDERING` otherwise (`fashion-mnist/rotated`).
    pub fn label(&self) -> String {
        if self.rendering.is_original() {
            self.dataset.clone()
        } else {
            format!("{}/{}", self.dataset, self.rendering.as_str())
        }
    }
}
