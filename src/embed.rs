//! `clip-ast embed`: features of images and texts from any supported weights, for inspection
//! and for checking the model against other implementations.

use std::path::PathBuf;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use crate::clip::config::Activation;
use crate::clip::layers::Precision;
use crate::clip::tokenizer::{CONTEXT_LENGTH, Tokenizer};
use crate::clip::{Clip, Weights, import, model::weights_to_device};
use crate::data::image::preprocess_test_batch;

pub struct EmbedRequest {
    pub weights: PathBuf,
    /// A stage-2 delta whose tuned tensors replace the weights' (as `eval` merges them).
    pub delta: Option<PathBuf>,
    /// `--activation`, for a checkpoint that does not record its own.
    pub activation: Option<Activation>,
    pub images: Vec<PathBuf>,
    pub texts: Vec<String>,
    pub truncate: bool,
    pub out: PathBuf,
    pub device: Device,
    pub precision: Precision,
}

/// Projected, unnormalised features plus the stored log logit scale, all f32.
pub fn embed(request: &EmbedRequest) -> Result<()> {
    let mut imported = import::load(&request.weights, request.activation)?;
    if let Some(delta) = &request.delta {
        for (name, tensor) in crate::clip::weights::read_safetensors(delta)? {
            if !imported.weights.contains_key(&name) {
                anyhow::bail!("{}: tensor `{name}` is not in the weights", delta.display());
            }
            imported.weights.insert(name, tensor);
        }
    }
    // Tokenise and decode before any model work, so that bad input fails fast.
    let ids = tokenize_all(&request.texts, request.truncate, imported.config.text.context_length)?;
    let images = if request.images.is_empty() {
        None
    } else {
        Some(preprocess_test_batch(&request.images, imported.config.vision.image_size as u32)?)
    };
    let weights = weights_to_device(imported.weights, request.device);
    let model = Clip::with_precision(&imported.config, &weights, request.precision)?;
    let embed_dim = imported.config.embed_dim;
    let _guard = tch::no_grad_guard();
    let image_features = match images {
        Some(images) => model.encode_image(&images.to_device(request.device)),
        None => Tensor::zeros([0, embed_dim], (Kind::Float, Device::Cpu)),
    };
    let text_features = match ids {
        Some(ids) => model.encode_text(&ids.to_device(request.device)),
        None => Tensor::zeros([0, embed_dim], (Kind::Float, Device::Cpu)),
    };
    let mut out = Weights::new();
    out.insert("image_features".into(), image_features);
    out.insert("text_features".into(), text_features);
    out.insert("logit_scale".into(), model.logit_scale.shallow_clone());
    crate::fsutil::write_atomically_with(&request.out, |tmp| crate::clip::weights::write_safetensors(&out, tmp))
}

fn tokenize_all(texts: &[String], truncate: bool, context: i64) -> Result<Option<Tensor>> {
    if texts.is_empty() {
        return Ok(None);
    }
    let tokenizer = Tokenizer::new();
    let mut rows = Vec::with_capacity(texts.len() * CONTEXT_LENGTH);
    for text in texts {
        rows.extend(tokenizer.tokenize(text, context as usize, truncate).map_err(anyhow::Error::new)?);
    }
    Ok(Some(Tensor::from_slice(&rows).view([texts.len() as i64, context])))
}
