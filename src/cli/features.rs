//! `embed` and `zero-shot`: features and a quick classification from any weights, no store
//! artifact made.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::clip::config::Activation;
use crate::clip::layers::Precision;
use crate::embed::{EmbedRequest, embed};
use crate::stages::StageContext;
use crate::store::ArtifactKind;
use crate::zero_shot::{ZeroShotRequest, zero_shot};

#[derive(Args, Debug)]
pub struct Embed {
    /// A weights artifact (directory or key prefix) or any checkpoint import-weights reads
    #[arg(long)]
    weights: String,
    /// A stage-2 artifact whose tuned tensors replace the weights' (the model `eval` scores)
    #[arg(long)]
    stage2: Option<String>,
    /// MLP activation of a checkpoint that does not record it (OpenAI-named safetensors without
    /// open_clip_config.json beside them); checked against the record where there is one
    #[arg(long, value_enum)]
    activation: Option<Activation>,
    /// An image file (JPEG or PNG); repeat for several
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// A text to encode; repeat for several
    #[arg(long = "text")]
    texts: Vec<String>,
    /// Cut texts longer than the 77-token context instead of refusing them
    #[arg(long)]
    truncate: bool,
    /// Output .safetensors file
    #[arg(long)]
    out: PathBuf,
    /// fp32, or bf16 products from bf16 weight copies
    #[arg(long, value_enum, default_value_t = Precision::default())]
    precision: Precision,
}

impl Embed {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        crate::owned::check_features_file(&self.out)?;
        let weights = weights_path(ctx, &self.weights)?;
        let delta = match &self.stage2 {
            Some(s) => Some(ctx.resolve(s, ArtifactKind::Stage2)?.file(crate::stages::stage2::DELTA_FILE)),
            None => None,
        };
        let request = EmbedRequest {
            weights,
            delta,
            activation: self.activation,
            images: self.images,
            texts: self.texts,
            truncate: self.truncate,
            out: self.out.clone(),
            device: ctx.device,
            precision: self.precision,
        };
        embed(&request)?;
        println!("{}", self.out.display());
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct ZeroShot {
    /// A weights artifact or any checkpoint import-weights reads
    #[arg(long)]
    weights: String,
    /// MLP activation of a checkpoint that does not record it (OpenAI-named safetensors without
    /// open_clip_config.json beside them); checked against the record where there is one
    #[arg(long, value_enum)]
    activation: Option<Activation>,
    /// An image file; repeat for several
    #[arg(long = "image", required = true)]
    images: Vec<PathBuf>,
    /// A class name (underscores become spaces); repeat, at least two
    #[arg(long = "class", required = true)]
    classes: Vec<String>,
    /// Prompt template; `{}` is replaced by the class name
    #[arg(long, default_value = "a photo of a {}.")]
    template: String,
}

impl ZeroShot {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let request = ZeroShotRequest {
            weights: weights_path(ctx, &self.weights)?,
            activation: self.activation,
            images: self.images.clone(),
            classes: self.classes.clone(),
            template: self.template,
            device: ctx.device,
        };
        print_table(&self.images, &self.classes, &zero_shot(&request)?.probabilities);
        Ok(())
    }
}

/// A weights argument may be an artifact or a checkpoint file that embed/zero-shot read directly.
fn weights_path(ctx: &StageContext, reference: &str) -> Result<PathBuf> {
    let path = PathBuf::from(reference);
    if path.is_file() || (path.is_dir() && path.join("model.safetensors").is_file()) {
        return Ok(path);
    }
    Ok(ctx.resolve(reference, ArtifactKind::Weights)?.dir)
}

fn print_table(images: &[PathBuf], classes: &[String], probabilities: &[Vec<f32>]) {
    let name_width = images.iter().map(|p| file_name(p).len()).max().unwrap_or(5).max(5);
    print!("{:name_width$}  {:>16}", "image", "predicted");
    for class in classes {
        print!("  {:>10.10}", class);
    }
    println!();
    for (image, probs) in images.iter().zip(probabilities) {
        let best = probs.iter().enumerate().fold(0, |best, (i, p)| if *p > probs[best] { i } else { best });
        print!("{:name_width$}  {:>16.16}", file_name(image), classes[best]);
        for p in probs {
            print!("  {:>10.3}", p);
        }
        println!();
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
