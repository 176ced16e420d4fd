//! The zero-shot head a run was evaluated with, as files that need neither clip-ast nor the
//! prompts: `classifier.safetensors` (unit-norm class embeddings [C, D] and the model's log
//! logit scale) and `classes.json` (class names, templates, the prompts they made).
//! Logits are `exp(logit_scale) · normalise(image_features) · class_embeddings^T`, as `eval`
//! computes them.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::clip::Clip;
use crate::clip::weights::{Weights, read_safetensors, write_safetensors_with};
use crate::train::losses::normalize;
use crate::train::prompts::class_prompt_ids;
use crate::zero_shot::prompt;

pub const CLASSIFIER_FILE: &str = "classifier.safetensors";
pub const CLASSES_FILE: &str = "classes.json";

/// A part of the classes that was scored among its own names (CoOp's base and new halves).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subset {
    pub subsample: String,
    pub first: usize,
    pub count: usize,
}

/// `classes.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classes {
    pub classnames: Vec<String>,
    /// Each has `{}` where the class name goes; class embeddings average over templates.
    pub templates: Vec<String>,
    /// `prompts[c][t]`: template t filled with class c (underscores as spaces, as CoOp's).
    #[serde(default)]
    pub prompts: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
}

impl Classes {
    pub fn new(classnames: Vec<String>, templates: Vec<String>) -> Result<Classes> {
        if classnames.is_empty() {
            bail!("no class names");
        }
        if templates.is_empty() {
            bail!("no prompt template");
        }
        if let Some(bad) = templates.iter().find(|t| !t.contains("{}")) {
            bail!("template `{bad}` has no `{{}}` where the class name goes");
        }
        let prompts = classnames.iter().map(|c| templates.iter().map(|t| prompt(t, c)).collect()).collect();
        Ok(Classes { classnames, templates, prompts, subsets: Vec::new() })
    }

    pub fn read(path: &Path) -> Result<Classes> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let classes: Classes = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a classes.json (classnames, templates)", path.display()))?;
        Classes::new(classes.classnames, classes.templates)
            .map(|c| Classes { subsets: classes.subsets, ..c })
            .with_context(|| format!("{}", path.display()))
    }
}

/// Unit-norm class embeddings [C, D] on the CPU: each template's prompts encoded in one batch
/// and normalised (with one template, exactly `eval`'s text side), averaged over templates and
/// normalised again (CLIP's prompt ensembling).
pub fn class_embeddings(model: &Clip, classes: &Classes, device: Device) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let context = model.config.text.context_length;
    let mut per_template = Vec::with_capacity(classes.templates.len());
    for template in &classes.templates {
        let ids = class_prompt_ids(template, &classes.classnames, context)?;
        per_template.push(normalize(&model.encode_text(&ids.to_device(device))));
    }
    let embeddings = if per_template.len() == 1 {
        per_template.pop().expect("one template")
    } else {
        normalize(&Tensor::stack(&per_template, 0).mean_dim(0, false, Kind::Float))
    };
    Ok(embeddings.to_kind(Kind::Float).to_device(Device::Cpu))
}

/// Write both files into `dir`; returns their names.
pub fn write(dir: &Path, classes: &Classes, embeddings: &Tensor, logit_scale: &Tensor) -> Result<Vec<&'static str>> {
    let mut tensors = Weights::new();
    tensors.insert("class_embeddings".into(), embeddings.shallow_clone());
    tensors.insert("logit_scale".into(), logit_scale.detach().to_device(Device::Cpu).to_kind(Kind::Float));
    write_safetensors_with(&tensors, &dir.join(CLASSIFIER_FILE), Some(super::pt_metadata()))?;
    std::fs::write(dir.join(CLASSES_FILE), serde_json::to_string_pretty(classes)? + "\n")?;
    Ok(vec![CLASSIFIER_FILE, CLASSES_FILE])
}

/// A stored classifier: (class embeddings [C, D], log logit scale), checked against `classes`.
pub fn read(dir: &Path, classes: &Classes) -> Result<(Tensor, Tensor)> {
    let path = dir.join(CLASSIFIER_FILE);
    let mut tensors = read_safetensors(&path)?;
    let (Some(embeddings), Some(scale)) = (tensors.remove("class_embeddings"), tensors.remove("logit_scale")) else {
        bail!("{}: needs `class_embeddings` and `logit_scale` tensors", path.display());
    };
    let rows = embeddings.size();
    if rows.len() != 2 || rows[0] != classes.classnames.len() as i64 {
        bail!(
            "{}: class_embeddings is {rows:?}, but {CLASSES_FILE} names {} classes",
            path.display(),
            classes.classnames.len()
        );
    }
    Ok((embeddings, scale))
}
