//! `clip-ast export`: a tuned model out of the store as a folder open_clip and transformers
//! load directly, with the classifier it was evaluated with and a README saying what it is.
//! `source` resolves the model, `open_clip` and `hf` write the two formats, `classifier` the
//! class embeddings, `readme` the README, `folder` puts the folder in place safely.

pub mod classifier;
pub mod folder;
pub mod hf;
pub mod open_clip;
pub mod readme;
pub mod source;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;

use crate::clip::Clip;
use crate::clip::model::weights_to_device;
use crate::stages::StageContext;
use classifier::Classes;

/// Which formats to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub open_clip: bool,
    pub hf: bool,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// open_clip and Hugging Face side by side, as open_clip's hub uploads are
    Both,
    /// open_clip_model.safetensors + open_clip_config.json
    #[value(name = "open_clip", alias = "open-clip")]
    OpenClip,
    /// Hugging Face CLIPModel + CLIPProcessor files
    Hf,
}

impl Format {
    pub fn formats(self) -> Formats {
        match self {
            Format::Both => Formats { open_clip: true, hf: true },
            Format::OpenClip => Formats { open_clip: true, hf: false },
            Format::Hf => Formats { open_clip: false, hf: true },
        }
    }
}

/// The safetensors header every exported file carries (transformers before 4.40 needs it).
pub(crate) fn pt_metadata() -> HashMap<String, String> {
    HashMap::from([("format".to_string(), "pt".to_string())])
}

pub struct ExportRequest<'a> {
    /// An eval, stage-2 or weights artifact.
    pub source: &'a str,
    /// `--split`: the classifier's classes, replacing the run's.
    pub splits: &'a [String],
    pub out: &'a Path,
    pub format: Format,
}

/// Write the export; returns the number of classes the classifier holds (0 for none).
pub fn export(ctx: &StageContext, request: &ExportRequest) -> Result<usize> {
    folder::check_writable(request.out)?;
    if request.splits.len() > 2 {
        bail!("--split takes one split, or a base then a new split");
    }
    let source = source::resolve(ctx, request.source, request.splits)?;
    let formats = request.format.formats();
    let progress = ctx.progress();
    progress(&format!(
        "export: {} {} → {}",
        source.about.source_kind,
        source.about.source_key.short(),
        request.out.display()
    ));
    let classes = classes_of(&source)?;
    let staged = folder::staging(request.out)?;
    let dir = staged.path();
    let mut files: Vec<&str> = Vec::new();
    if formats.open_clip {
        files.extend(open_clip::write(dir, &source.config, &source.weights)?);
    }
    if formats.hf {
        files.extend(hf::write(dir, &source.config, &source.weights)?);
    }
    if let Some(classes) = &classes {
        let device_weights =
            weights_to_device(source.weights.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect(), ctx.device);
        let model = Clip::new(&source.config, &device_weights)?;
        let embeddings = classifier::class_embeddings(&model, classes, ctx.device)?;
        files.extend(classifier::write(dir, classes, &embeddings, &source.weights["logit_scale"])?);
    }
    let n_classes = classes.as_ref().map_or(0, |c| c.classnames.len());
    std::fs::write(dir.join("README.md"), readme::text(&source, formats, n_classes))?;
    files.push("README.md");
    files.sort_unstable();
    let about = &source.about;
    let marker = json!({
        "tool": format!("clip-ast {}", env!("CARGO_PKG_VERSION")),
        "source": {"kind": about.source_kind.as_str(), "key": about.source_key.as_str()},
        "weights": about.weights_key.as_str(),
        "stage2": about.stage2_key.as_ref().map(|k| k.as_str()),
        "eval": about.eval_key.as_ref().map(|k| k.as_str()),
        "method": about.method,
        "files": files,
    });
    std::fs::write(dir.join(folder::MARKER_FILE), serde_json::to_string_pretty(&marker)? + "\n")?;
    // The safetensors writer makes owner-only files; an export is meant to be shared, so every
    // file gets the permissions a plain write under this umask gives (the README's).
    let shared = std::fs::metadata(dir.join("README.md"))?.permissions();
    for file in &files {
        std::fs::set_permissions(dir.join(file), shared.clone())?;
    }
    folder::publish(staged, request.out)?;
    Ok(n_classes)
}

/// The classifier's classes: each split's names with its template; base then new for
/// base-to-novel, recorded as subsets (each was scored among its own names).
pub fn classes_of(source: &source::Source) -> Result<Option<Classes>> {
    let Some((_, first)) = source.splits.first() else { return Ok(None) };
    if source.splits.iter().any(|(_, info)| info.template != first.template) {
        bail!("the splits' prompt templates differ; export them one at a time with --split");
    }
    let mut names = Vec::new();
    let mut subsets = Vec::new();
    for (_, info) in &source.splits {
        subsets.push(classifier::Subset {
            subsample: info.subsample.clone(),
            first: names.len(),
            count: info.classnames.len(),
        });
        names.extend(info.classnames.iter().cloned());
    }
    let mut classes = Classes::new(names, vec![first.template.clone()])?;
    if subsets.len() > 1 {
        classes.subsets = subsets;
    }
    Ok(Some(classes))
}
