//! `export` and `predict`: a tuned model out of the store, as a folder other libraries load and
//! as predictions on new images.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use crate::clip::config::Activation;
use crate::clip::import;
use crate::clip::layers::Precision;
use crate::export::classifier::{self, CLASSES_FILE, CLASSIFIER_FILE, Classes};
use crate::export::{ExportRequest, Format, classes_of, export, source};
use crate::predict::{ClassHead, PredictRequest, check_out, predict, to_csv};
use crate::stages::StageContext;
use crate::stages::split_data::read_split;
use crate::store::ArtifactKind;

#[derive(Args, Debug)]
pub struct Export {
    /// An eval artifact (a chosen.csv row's `eval`), a stage-2 artifact (a CLIP-AST, random or
    /// full-ft run) or a weights artifact (imported, initialised or pretrained)
    source: String,
    /// Output folder: created, or replaced if it holds a previous export and nothing else
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Both)]
    format: Format,
    /// Split artifact whose class names and template make the classifier (default: the run's
    /// split; a weights artifact has none without it). Twice for base then new
    #[arg(long = "split")]
    splits: Vec<String>,
}

impl Export {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let request = ExportRequest { source: &self.source, splits: &self.splits, out: &self.out, format: self.format };
        let classes = export(ctx, &request)?;
        if classes == 0 && !ctx.quiet {
            eprintln!("note: no classifier exported (a weights artifact has no classes; add --split S)");
        }
        println!("{}", self.out.display());
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Predict {
    /// Images and folders (searched recursively for .jpg, .jpeg, .png)
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// A stage-2, eval or weights artifact, a folder `clip-ast export` wrote, or any checkpoint
    /// import-weights reads
    #[arg(long)]
    model: String,
    /// The classes: a split artifact, a classes.json, or an exported folder [default: the
    /// exported folder's classifier, or the run's split]
    #[arg(long, conflicts_with = "class")]
    classes: Option<String>,
    /// A class name (underscores become spaces); repeat
    #[arg(long = "class")]
    class: Vec<String>,
    /// Prompt template for --class names, or replacing a split's [default: a photo of a {}.]
    #[arg(long)]
    template: Option<String>,
    /// MLP activation of a checkpoint that does not record it
    #[arg(long, value_enum)]
    activation: Option<Activation>,
    /// Labels (with probabilities) per image, best first
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// Images per forward pass
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = Precision::default())]
    precision: Precision,
    /// Refuse unreadable images instead of skipping them with a warning
    #[arg(long)]
    strict: bool,
    /// Output CSV (path, label_1, prob_1, ...) [default: stdout]
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Predict {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        if let Some(out) = &self.out {
            check_out(out)?;
        }
        let model = load_model(ctx, &self.model, self.activation)?;
        let head = self.head(ctx, &model)?;
        let request = PredictRequest {
            config: model.config,
            weights: model.weights,
            head,
            inputs: self.inputs,
            top_k: self.top_k,
            batch: self.batch_size,
            device: ctx.device,
            precision: self.precision,
            strict: self.strict,
            quiet: ctx.quiet,
        };
        let outcome = predict(&request)?;
        if !outcome.unreadable.is_empty() {
            eprintln!(
                "warning: {} image(s) cannot be read and were skipped: {}",
                outcome.unreadable.len(),
                outcome.unreadable.join("; ")
            );
        }
        let csv = to_csv(&outcome.predictions)?;
        match &self.out {
            Some(out) => crate::fsutil::write_atomically(out, &csv)?,
            None => {
                use std::io::Write;
                std::io::stdout().write_all(&csv)?;
            }
        }
        Ok(())
    }

    fn head(&self, ctx: &StageContext, model: &LoadedModel) -> Result<ClassHead> {
        let with_template = |mut classes: Classes| -> Result<Classes> {
            if let Some(t) = &self.template {
                classes = Classes::new(classes.classnames, vec![t.clone()])?;
            }
            Ok(classes)
        };
        if !self.class.is_empty() {
            let template = self.template.clone().unwrap_or_else(|| "a photo of a {}.".into());
            return Ok(ClassHead::Prompts(Classes::new(self.class.clone(), vec![template])?));
        }
        if let Some(reference) = &self.classes {
            let path = Path::new(reference);
            let file =
                if path.is_dir() && path.join(CLASSES_FILE).is_file() { path.join(CLASSES_FILE) } else { path.into() };
            if file.is_file() {
                return Ok(ClassHead::Prompts(with_template(Classes::read(&file)?)?));
            }
            let info = read_split(&ctx.resolve(reference, ArtifactKind::Split)?)?;
            return Ok(ClassHead::Prompts(with_template(Classes::new(info.classnames, vec![info.template])?)?));
        }
        if let Some(dir) = &model.export_dir {
            let classes = Classes::read(&dir.join(CLASSES_FILE))?;
            if self.template.is_some() {
                return Ok(ClassHead::Prompts(with_template(classes)?));
            }
            let (embeddings, logit_scale) = classifier::read(dir, &classes)?;
            return Ok(ClassHead::Stored { classes, embeddings, logit_scale });
        }
        match &model.run_classes {
            Some(classes) => Ok(ClassHead::Prompts(with_template(classes.clone())?)),
            None => bail!("say which classes: --classes SPLIT|classes.json, or --class NAME (repeat)"),
        }
    }
}

struct LoadedModel {
    config: crate::clip::ClipConfig,
    weights: crate::clip::Weights,
    /// The run's classes, for a store artifact with a split.
    run_classes: Option<Classes>,
    /// An exported folder holding a classifier.
    export_dir: Option<PathBuf>,
}

/// A store artifact (merged as `eval` merges it), an exported folder or a checkpoint.
fn load_model(ctx: &StageContext, reference: &str, activation: Option<Activation>) -> Result<LoadedModel> {
    let path = Path::new(reference);
    let is_artifact = path.join(crate::store::MANIFEST_FILE).is_file();
    if path.exists() && !is_artifact {
        let imported = import::load(path, activation)?;
        let export_dir = (path.is_dir() && path.join(CLASSIFIER_FILE).is_file() && path.join(CLASSES_FILE).is_file())
            .then(|| path.to_path_buf());
        return Ok(LoadedModel { config: imported.config, weights: imported.weights, run_classes: None, export_dir });
    }
    let source = source::resolve(ctx, reference, &[])?;
    let run_classes = classes_of(&source)?;
    Ok(LoadedModel { config: source.config, weights: source.weights, run_classes, export_dir: None })
}
