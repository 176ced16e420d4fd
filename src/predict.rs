//! `clip-ast predict`: classify image files and folders with a tuned model, as `eval` classifies
//! a split's test set (CLIP's test preprocessing, cosine logits against one embedding per
//! class), and write the top-k labels with their probabilities as CSV.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::clip::layers::Precision;
use crate::clip::model::weights_to_device;
use crate::clip::{Clip, ClipConfig, Weights};
use crate::data::image::{normalize_to_tensor, test_crop};
use crate::export::classifier::{self, Classes};
use crate::train::losses::normalize;

/// File endings a folder is searched for: what the dataset readers decode (JPEG, PNG).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// How the classes are given.
pub enum ClassHead {
    /// Class names and templates; the embeddings are computed with the model.
    Prompts(Classes),
    /// A stored classifier (an export's `classifier.safetensors`): embeddings and log scale.
    Stored { classes: Classes, embeddings: Tensor, logit_scale: Tensor },
}

impl ClassHead {
    fn classnames(&self) -> &[String] {
        match self {
            ClassHead::Prompts(c) | ClassHead::Stored { classes: c, .. } => &c.classnames,
        }
    }
}

pub struct PredictRequest {
    pub config: ClipConfig,
    pub weights: Weights,
    pub head: ClassHead,
    /// Files and folders (searched recursively for [`IMAGE_EXTENSIONS`]).
    pub inputs: Vec<PathBuf>,
    pub top_k: usize,
    pub batch: usize,
    pub device: Device,
    pub precision: Precision,
    pub strict: bool,
    pub quiet: bool,
}

/// One image's top-k (label, probability), best first.
pub struct Prediction {
    pub path: PathBuf,
    pub top: Vec<(String, f32)>,
}

pub struct PredictOutcome {
    pub predictions: Vec<Prediction>,
    /// `path: why` for each image that could not be read (skipped).
    pub unreadable: Vec<String>,
}

/// Every image the inputs name: files as given, folders searched recursively (sorted by path)
/// for the image endings. A missing input is an error.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_file() {
            out.push(input.clone());
        } else if input.is_dir() {
            for entry in walkdir::WalkDir::new(input).sort_by_file_name() {
                let entry = entry.with_context(|| format!("{}: cannot list", input.display()))?;
                let is_image = entry
                    .path()
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
                if entry.file_type().is_file() && is_image {
                    out.push(entry.into_path());
                }
            }
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    if out.is_empty() {
        bail!("no images (.jpg, .jpeg, .png) in {}", describe(inputs));
    }
    Ok(out)
}

fn describe(inputs: &[PathBuf]) -> String {
    inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

pub fn predict(request: &PredictRequest) -> Result<PredictOutcome> {
    let paths = collect_images(&request.inputs)?;
    if request.top_k == 0 || request.batch == 0 {
        bail!("--top-k and --batch-size must be at least 1");
    }
    let weights = weights_to_device(
        request.weights.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect(),
        request.device,
    );
    let model = Clip::with_precision(&request.config, &weights, request.precision)?;
    let _guard = tch::no_grad_guard();
    let (embeddings, logit_scale) = match &request.head {
        ClassHead::Prompts(classes) => {
            (classifier::class_embeddings(&model, classes, request.device)?, model.logit_scale.shallow_clone())
        }
        ClassHead::Stored { embeddings, logit_scale, .. } => (embeddings.shallow_clone(), logit_scale.shallow_clone()),
    };
    let classnames = request.head.classnames();
    if embeddings.size()[1] != request.config.embed_dim {
        bail!(
            "the classifier's embeddings are {}-wide, the model's {}",
            embeddings.size()[1],
            request.config.embed_dim
        );
    }
    let embeddings = embeddings.to_device(request.device);
    let scale = logit_scale.to_device(request.device).exp();
    let k = request.top_k.min(classnames.len());
    let size = request.config.vision.image_size as u32;
    let bar = progress_bar(paths.len(), request.quiet);
    let mut outcome = PredictOutcome { predictions: Vec::with_capacity(paths.len()), unreadable: Vec::new() };
    for chunk in paths.chunks(request.batch) {
        let decoded: Vec<Result<Tensor>> =
            chunk.par_iter().map(|p| test_crop(p, size).map(|img| normalize_to_tensor(&img))).collect();
        let mut kept = Vec::new();
        let mut images = Vec::new();
        for (path, result) in chunk.iter().zip(decoded) {
            match result {
                Ok(t) => {
                    kept.push(path);
                    images.push(t);
                }
                Err(e) => outcome.unreadable.push(format!("{e:#}")),
            }
        }
        bar.inc(chunk.len() as u64);
        if images.is_empty() {
            continue;
        }
        let features = normalize(&model.encode_image(&Tensor::stack(&images, 0).to_device(request.device)));
        let probs = (features.matmul(&embeddings.tr()) * &scale).softmax(-1, Kind::Float).to_device(Device::Cpu);
        let (values, indices) = probs.topk(k as i64, -1, true, true);
        for (row, path) in kept.into_iter().enumerate() {
            let values = Vec::<f32>::try_from(values.get(row as i64))?;
            let indices = Vec::<i64>::try_from(indices.get(row as i64))?;
            let top = indices.iter().zip(values).map(|(&i, p)| (classnames[i as usize].clone(), p)).collect();
            outcome.predictions.push(Prediction { path: path.clone(), top });
        }
    }
    bar.finish_and_clear();
    if request.strict && !outcome.unreadable.is_empty() {
        bail!(
            "{} image(s) cannot be read (--strict refuses them): {}",
            outcome.unreadable.len(),
            outcome.unreadable.join("; ")
        );
    }
    Ok(outcome)
}

/// A bar on stderr when it is a terminal and `--quiet` is not given.
fn progress_bar(total: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} images {elapsed_precise} eta {eta}")
        .expect("the template is valid");
    bar.set_style(style);
    bar
}

/// The CSV header for `k` labels: `path,label_1,prob_1,...`.
pub fn header(k: usize) -> Vec<String> {
    let mut h = vec!["path".to_string()];
    for i in 1..=k {
        h.push(format!("label_{i}"));
        h.push(format!("prob_{i}"));
    }
    h
}

/// The CSV text of `predictions`.
pub fn to_csv(predictions: &[Prediction]) -> Result<Vec<u8>> {
    let k = predictions.first().map_or(1, |p| p.top.len());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header(k))?;
    for p in predictions {
        let mut row = vec![p.path.display().to_string()];
        for (label, prob) in &p.top {
            row.push(label.clone());
            row.push(prob.to_string());
        }
        w.write_record(&row)?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("cannot write CSV: {e}"))
}

/// An `--out` that exists must be a predictions CSV (its first line `path,label_1,...`): never
/// write over a file clip-ast did not create.
pub fn check_out(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let first = std::fs::read(path)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.lines().next().map(str::to_string));
    if !first.is_some_and(|l| l.starts_with("path,label_1,prob_1")) {
        bail!("{}: exists and is not a predictions CSV of clip-ast; choose another --out", path.display());
    }
    Ok(())
}
