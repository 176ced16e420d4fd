//! The building blocks shared by both towers: layer norm, linear, multi-head attention and
//! the residual attention block, with fields named as in OpenAI's state dict.

use anyhow::{Context, Result};
use tch::Tensor;

use super::config::Activation;
use super::weights::Weights;

/// Hands out shallow clones of named tensors under a prefix. Shallow clones share storage, so
/// a trainer that sets `requires_grad` on the map's tensors trains the model built from it.
pub struct TensorSource<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> TensorSource<'a> {
    pub fn new(weights: &'a Weights) -> Self {
        TensorSource { weights, prefix: String::new() }
    }

    pub fn sub(&self, name: &str) -> TensorSource<'a> {
        TensorSource { weights: self.weights, prefix: format!("{}{name}.", self.prefix) }
    }

    pub fn get(&self, name: &str) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        self.weights
            .get(&full)
            .map(Tensor::shallow_clone)
            .with_context(|| format!("tensor `{full}` is missing"))
    }
}

/// CLIP's LayerNorm: eps 1e-5, always computed in fp32.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl LayerNorm {
    pub fn load(src: &TensorSource) -> Result<Self> {
        Ok(LayerNorm { weight: src.get("weight")?, bias: src.get("bias")? })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let width = *x.size().last().expect("layer norm input has a last dimension");
        x.layer_norm([width], Some(&self.weight), Some(&self.bias), 1e-5, true)
    }
}

pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn load(src: &TensorSource) -> Result<Self> {
        Ok(Linear { weight: src.get("weight")?, bias: src.get("bias")? })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

/// `nn.MultiheadAttention` as OpenAI's CLIP uses it: one fused q/k/v projection.
pub struct MultiheadAttention {
    pub in_proj_weight: Tensor,
    pub in_proj_bias: Tensor,
    pub out_proj: Linear,
    pub heads: i64,
}

impl MultiheadAttention {
    pub fn load(src: &TensorSource, heads: i64) -> Result<Self> {
        Ok(MultiheadAttention {
            in_proj_weight: src.get("in_proj_weight")?,
            in_proj_bias: src.get("in_proj_bias")?,
            out_proj: Linear::load(&src.sub("out_proj"))?,
            heads,
        })
    }

    /// `x`: [batch, tokens, width]. `causal` masks attention to later tokens (text tower).
    pub fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let (batch, tokens, width) = x.size3().expect("attention input is [batch, tokens, width]");
        let head_dim = width / self.heads;
        let qkv = x
            .linear(&self.in_proj_weight, Some(&self.in_proj_bias))
            .view([batch, tokens, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attended =
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, causal, None, false);
        let merged = attended.transpose(1, 2).reshape([batch, tokens, width]);
        self.out_proj.forward(&merged)
    }
}

pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
    pub activation: Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let hidden = self.c_fc.forward(x);
        let hidden = match self.activation {
            Activation::QuickGelu => &hidden * (&hidden * 1.702).sigmoid(),
            Activation::Gelu => hidden.gelu("none"),
        };
        self.c_proj.forward(&hidden)
    }
}

/// Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
pub struct ResidualAttentionBlock {
    pub ln_1: LayerNorm,
    pub attn: MultiheadAttention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

impl ResidualAttentionBlock {
    pub fn load(src: &TensorSource, heads: i64, activation: Activation) -> Result<Self> {
        Ok(ResidualAttentionBlock {
            ln_1: LayerNorm::load(&src.sub("ln_1"))?,
            attn: MultiheadAttention::load(&src.sub("attn"), heads)?,
            ln_2: LayerNorm::load(&src.sub("ln_2"))?,
            mlp: Mlp {
                c_fc: Linear::load(&src.sub("mlp.c_fc"))?,
                c_proj: Linear::load(&src.sub("mlp.c_proj"))?,
                activation,
            },
        })
    }

    pub fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let x = x + self.attn.forward(&self.ln_1.forward(x), causal);
        &x + self.mlp.forward(&self.ln_2.forward(&x))
    }
}

/// A stack of residual blocks (`transformer.resblocks.N`).
pub struct Transformer {
    pub resblocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    pub fn load(src: &TensorSource, layers: i64, heads: i64, activation: Activation) -> Result<Self> {
        let blocks = src.sub("resblocks");
        let resblocks = (0..layers)
            .map(|i| ResidualAttentionBlock::load(&blocks.sub(&i.to_string()), heads, activation))
            .collect::<Result<_>>()?;
        Ok(Transformer { resblocks })
    }

    pub fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for block in &self.resblocks {
            x = block.forward(&x, causal);
        }
        x
    }
}
