//! A small model to train in tests: the mini preset with every tensor perturbed, prompts of
//! different lengths, random images, and a selection that touches every kind of tensor.

use clip_ast::clip::ClipConfig;
use clip_ast::clip::Weights;
use clip_ast::clip::init::init_weights;
use clip_ast::train::prompts::class_prompt_ids;
use tch::{Device, Kind, Tensor};

pub fn copy(w: &Weights) -> Weights {
    w.iter().map(|(k, t)| (k.clone(), t.detach().copy())).collect()
}

pub struct Mini {
    pub config: ClipConfig,
    pub weights: Weights,
    pub prompt_ids: Tensor,
    pub images: Tensor,
    pub labels: Tensor,
}

/// The mini preset with every tensor perturbed (init leaves biases at 0 and norms at 1, which
/// would hide a bias that a shortcut drops), prompts of different lengths, random images.
pub fn mini() -> Mini {
    tch::set_num_threads(1);
    let config = ClipConfig::preset("mini").unwrap();
    let mut weights = init_weights(&config, 3);
    tch::manual_seed(11);
    for (name, t) in weights.iter_mut() {
        if name != "logit_scale" {
            *t = &*t + t.randn_like() * 0.02;
        }
    }
    let classes: Vec<String> = ["red", "green apple", "a rather long class name with many words", "blue"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let prompt_ids = class_prompt_ids("a photo of a {}.", &classes, 77).unwrap();
    let size = config.vision.image_size;
    Mini {
        images: Tensor::randn([6, 3, size, size], (Kind::Float, Device::Cpu)),
        labels: Tensor::from_slice(&[0i64, 1, 2, 3, 1, 2]),
        config,
        weights,
        prompt_ids,
    }
}

/// A selection that leaves vision blocks 0 and 1 alone (so the trunk can be shared) and
/// touches every kind of tensor somewhere.
pub fn selection_above_block_2() -> Vec<String> {
    [
        "visual.transformer.resblocks.2.attn.in_proj_weight",
        "visual.transformer.resblocks.2.ln_1.bias",
        "visual.transformer.resblocks.3.mlp.c_fc.weight",
        "visual.transformer.resblocks.3.attn.out_proj.bias",
        "transformer.resblocks.0.mlp.c_proj.weight",
        "transformer.resblocks.2.attn.in_proj_bias",
        "transformer.resblocks.3.ln_2.weight",
        "transformer.resblocks.3.attn.out_proj.weight",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
