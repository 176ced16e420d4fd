//! The building blocks shared by both towers: layer norm, linear, multi-head attention and
//! the residual attention block, with fields named as in OpenAI's state dict.

use std::cell::OnceCell;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::config::Activation;
use super::weights::Weights;

/// How matrix products and convolutions are computed. Master weights, layer norms, softmax
/// outside attention, losses and optimizer state stay fp32 in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    /// Products in bf16 from bf16 copies of the weights, accumulating into fp32 outputs. Not
    /// libtorch's autocast, which re-casts every weight at every op.
    Bf16,
}

/// A weight that enters matrix products, with its compute copy under the bf16 policy: made once
/// for a frozen weight, re-made at each forward (so after each optimizer step, and inside the
/// autograd graph) for a trainable one.
pub struct MatmulWeight {
    pub master: Tensor,
    precision: Precision,
    frozen_copy: OnceCell<Tensor>,
}

impl MatmulWeight {
    pub fn new(master: Tensor, precision: Precision) -> Self {
        MatmulWeight { master, precision, frozen_copy: OnceCell::new() }
    }

    pub fn compute(&self) -> Tensor {
        match self.precision {
            Precision::Fp32 => self.master.shallow_clone(),
            Precision::Bf16 if self.master.requires_grad() => self.master.to_kind(Kind::BFloat16),
            Precision::Bf16 => {
                self.frozen_copy.get_or_init(|| self.master.detach().to_kind(Kind::BFloat16)).shallow_clone()
            }
        }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// `x @ W.T + b` (nn.Linear), fp32 in and out.
    pub fn linear(&self, x: &Tensor, bias: &Tensor) -> Tensor {
        match self.precision {
            Precision::Fp32 => x.linear(&self.master, Some(bias)),
            Precision::Bf16 => {
                x.to_kind(Kind::BFloat16).linear::<Tensor>(&self.compute(), None).to_kind(Kind::Float) + bias
            }
        }
    }

    /// `x @ W[start..start+len].T + b[start..start+len]`: the linear layer restricted to a
    /// block of output features (the query, or the keys and values, of a fused projection).
    pub fn linear_rows(&self, x: &Tensor, bias: &Tensor, start: i64, len: i64) -> Tensor {
        let bias = bias.narrow(0, start, len);
        match self.precision {
            Precision::Fp32 => x.linear(&self.master.narrow(0, start, len), Some(&bias)),
            Precision::Bf16 => {
                x.to_kind(Kind::BFloat16)
                    .linear::<Tensor>(&self.compute().narrow(0, start, len), None)
                    .to_kind(Kind::Float)
                    + bias
            }
        }
    }

    /// `x @ W` (the projections stored as [in, out]), fp32 in and out.
    pub fn matmul(&self, x: &Tensor) -> Tensor {
        match self.precision {
            Precision::Fp32 => x.matmul(&self.master),
            Precision::Bf16 => x.to_kind(Kind::BFloat16).matmul(&self.compute()).to_kind(Kind::Float),
        }
    }
}

/// Hands out shallow clones of named tensors under a prefix. Shallow clones share storage, so
/// a trainer that sets `requires_grad` on the map's tensors trains the model built from it.
pub struct TensorSource<'a> {
    weights: &'a Weights,
    prefix: String,
    precision: Precision,
}

impl<'a> TensorSource<'a> {
    pub fn new(weights: &'a Weights, precision: Precision) -> Self {
        TensorSource { weights, prefix: String::new(), precision }
    }

    pub fn sub(&self, name: &str) -> TensorSource<'a> {
        TensorSource { weights: self.weights, prefix: format!("{}{name}.", self.prefix), precision: self.precision }
    }

    pub fn get_matmul(&self, name: &str) -> Result<MatmulWeight> {
        Ok(MatmulWeight::new(self.get(name)?, self.precision))
    }

    pub fn get(&self, name: &str) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        self.weights.get(&full).map(Tensor::shallow_clone).with_context(|| format!("tensor `{full}` is missing"))
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
    pub weight: MatmulWeight,
    pub bias: Tensor,
}

impl Linear {
    pub fn load(src: &TensorSource) -> Result<Self> {
        Ok(Linear { weight: src.get_matmul("weight")?, bias: src.get("bias")? })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.weight.linear(x, &self.bias)
    }
}

/// `nn.MultiheadAttention` as OpenAI's CLIP uses it: one fused q/k/v projection.
pub struct MultiheadAttention {
    pub in_proj_weight: MatmulWeight,
    pub in_proj_bias: Tensor,
    pub out_proj: Linear,
    pub heads: i64,
}

impl MultiheadAttention {
    pub fn load(src: &TensorSource, heads: i64) -> Result<Self> {
        Ok(MultiheadAttention {
            in_proj_weight: src.get_matmul("in_proj_weight")?,
            in_proj_bias: src.get("in_proj_bias")?,
            out_proj: Linear::load(&src.sub("out_proj"))?,
            heads,
        })
    }

    /// `x`: [batch, tokens, width]. `causal` masks attention to later tokens (text tower).
    pub fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let (batch, tokens, width) = x.size3().expect("attention input is [batch, tokens, width]");
        let head_dim = width / self.heads;
        let mut qkv = self
            .in_proj_weight
            .linear(x, &self.in_proj_bias)
            .view([batch, tokens, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        if self.in_proj_weight.precision() == Precision::Bf16 {
            // Both attention products in bf16; the kernel accumulates its softmax in fp32.
            qkv = qkv.to_kind(Kind::BFloat16);
        }
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attended = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, causal, None, false);
        let merged = attended.transpose(1, 2).reshape([batch, tokens, width]).to_kind(Kind::Float);
        self.out_proj.forward(&merged)
    }
}

impl MultiheadAttention {
    /// Attention for one query per sequence: `queries` [batch, width] attend over the keys and
    /// values of all of `x` [batch, tokens, width], or of the tokens `allowed` marks
    /// ([batch, 1, 1, tokens], true = visible). Returns [batch, width].
    pub fn forward_queries(&self, x: &Tensor, queries: &Tensor, allowed: Option<&Tensor>) -> Tensor {
        let (batch, tokens, width) = x.size3().expect("attention input is [batch, tokens, width]");
        let head_dim = width / self.heads;
        let mut q = self
            .in_proj_weight
            .linear_rows(queries, &self.in_proj_bias, 0, width)
            .view([batch, 1, self.heads, head_dim])
            .transpose(1, 2);
        let mut kv = self
            .in_proj_weight
            .linear_rows(x, &self.in_proj_bias, width, 2 * width)
            .view([batch, tokens, 2, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        if self.in_proj_weight.precision() == Precision::Bf16 {
            q = q.to_kind(Kind::BFloat16);
            kv = kv.to_kind(Kind::BFloat16);
        }
        let attended =
            Tensor::scaled_dot_product_attention(&q, &kv.get(0), &kv.get(1), allowed, 0.0, false, None, false);
        self.out_proj.forward(&attended.reshape([batch, width]).to_kind(Kind::Float))
    }
}

pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
    pub activation: Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut hidden = self.c_fc.forward(x);
        let hidden = match self.activation {
            // Without a graph the widest activation of the block is rewritten in place rather
            // than allocated twice more: the same values, less memory traffic.
            Activation::QuickGelu if !hidden.requires_grad() => {
                let gate = (&hidden * 1.702).sigmoid_();
                hidden.g_mul_(&gate)
            }
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
        let x = residual(x, self.attn.forward(&self.ln_1.forward(x), causal));
        residual(&x, self.mlp.forward(&self.ln_2.forward(&x)))
    }

    /// The block's output at one position per sequence (`positions`: [batch] int64), for a
    /// last block whose other outputs nobody reads (the class token of the image tower, the
    /// end token of the text tower): keys and values still come from every token, the rest of
    /// the block runs for the chosen token alone, which skips most of the block. With `causal`
    /// each chosen token sees only the tokens up to itself, as in [`forward`](Self::forward).
    /// Returns [batch, width].
    pub fn forward_at(&self, x: &Tensor, positions: &Tensor, causal: bool) -> Tensor {
        let (batch, tokens, _) = x.size3().expect("block input is [batch, tokens, width]");
        let device = x.device();
        let rows = Tensor::arange(batch, (Kind::Int64, device));
        let at = |t: &Tensor| t.index(&[Some(rows.shallow_clone()), Some(positions.shallow_clone())]);
        let normed = self.ln_1.forward(x);
        let allowed = causal.then(|| {
            Tensor::arange(tokens, (Kind::Int64, device))
                .view([1, tokens])
                .le_tensor(&positions.view([batch, 1]))
                .view([batch, 1, 1, tokens])
        });
        let y = residual(&at(x), self.attn.forward_queries(&normed, &at(&normed), allowed.as_ref()));
        residual(&y, self.mlp.forward(&self.ln_2.forward(&y)))
    }
}

/// `x + branch`, written into `branch` when no graph records it: the branch's output is a
/// fresh tensor nobody else holds, so reusing it saves an allocation and its page faults.
fn residual(x: &Tensor, mut branch: Tensor) -> Tensor {
    if branch.requires_grad() || x.requires_grad() { x + branch } else { branch.g_add_(x) }
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
        self.forward_range(x, causal, 0..self.resblocks.len())
    }

    /// Only blocks `range`, in order.
    pub fn forward_range(&self, x: &Tensor, causal: bool, range: std::ops::Range<usize>) -> Tensor {
        let mut x = x.shallow_clone();
        for block in &self.resblocks[range] {
            x = block.forward(&x, causal);
        }
        x
    }
}
