//! `clip-ast zero-shot`: classify images against class names with a prompt template — the
//! simplest use of a CLIP model, and a quick look at what a weights file has learned.

use std::path::PathBuf;

use anyhow::{Result, bail};
use tch::{Device, Tensor};

use crate::clip::config::Activation;
use crate::clip::tokenizer::Tokenizer;
use crate::clip::{Clip, import, model::weights_to_device};
use crate::data::image::preprocess_test_batch;

pub struct ZeroShotRequest {
    pub weights: PathBuf,
    /// `--activation`, for a checkpoint that does not record its own.
    pub activation: Option<Activation>,
    pub images: Vec<PathBuf>,
    pub classes: Vec<String>,
    /// Must contain `{}`, where the class name goes (CoOp's convention).
    pub template: String,
    pub device: Device,
}

/// Class probabilities per image, rows in `images` order, columns in `classes` order.
pub struct ZeroShotResult {
    pub probabilities: Vec<Vec<f32>>,
}

/// Fill a CoOp template; underscores in class names become spaces, as CoOp's prompts have them.
pub fn prompt(template: &str, class: &str) -> String {
    template.replacen("{}", &class.replace('_', " "), 1)
}

pub fn zero_shot(request: &ZeroShotRequest) -> Result<ZeroShotResult> {
    if !request.template.contains("{}") {
        bail!("--template `{}` has no `{{}}` where the class name goes", request.template);
    }
    if request.classes.len() < 2 || request.images.is_empty() {
        bail!("zero-shot needs at least two --class and one --image");
    }
    let imported = import::load(&request.weights, request.activation)?;
    let config = &imported.config;
    let tokenizer = Tokenizer::new();
    let mut ids = Vec::new();
    for class in &request.classes {
        let text = prompt(&request.template, class);
        ids.extend(tokenizer.tokenize(&text, config.text.context_length as usize, false)?);
    }
    let ids = Tensor::from_slice(&ids).view([request.classes.len() as i64, config.text.context_length]);
    let images = preprocess_test_batch(&request.images, config.vision.image_size as u32)?;
    let weights = weights_to_device(imported.weights, request.device);
    let model = Clip::new(config, &weights)?;
    let _guard = tch::no_grad_guard();
    let normalise = |x: Tensor| &x / x.norm_scalaropt_dim(2, [-1], true);
    let image_features = normalise(model.encode_image(&images.to_device(request.device)));
    let text_features = normalise(model.encode_text(&ids.to_device(request.device)));
    let logits = image_features.matmul(&text_features.tr()) * model.logit_scale.exp();
    let probs = logits.softmax(-1, tch::Kind::Float).to_device(Device::Cpu);
    let probabilities = (0..request.images.len() as i64)
        .map(|i| Vec::<f32>::try_from(probs.get(i)).expect("probabilities are f32"))
        .collect();
    Ok(ZeroShotResult { probabilities })
}

#[cfg(test)]
mod tests {
    use super::prompt;

    #[test]
    fn prompts_follow_coop() {
        assert_eq!(
            prompt("a photo of a {}, a type of pet.", "great_pyrenees"),
            "a photo of a great pyrenees, a type of pet."
        );
        assert_eq!(prompt("{} texture.", "bubbly"), "bubbly texture.");
    }
}
