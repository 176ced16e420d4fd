//! The text tower: token + position embeddings, causal blocks, ln_final, features at the end
//! token (the highest id in each row), projected.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::config::{Activation, TextConfig};
use super::layers::{LayerNorm, MatmulWeight, TensorSource, Transformer};

pub struct TextTower {
    pub token_embedding: Tensor,
    pub positional_embedding: Tensor,
    pub transformer: Transformer,
    pub ln_final: LayerNorm,
    pub text_projection: MatmulWeight,
}

impl TextTower {
    /// `src` is rooted at the state dict's top level (the text tower has no prefix).
    pub fn load(src: &TensorSource, config: &TextConfig, activation: Activation) -> Result<Self> {
        Ok(TextTower {
            token_embedding: src.get("token_embedding.weight")?,
            positional_embedding: src.get("positional_embedding")?,
            transformer: Transformer::load(
                &src.sub("transformer"),
                config.layers,
                config.heads,
                activation,
            )?,
            ln_final: LayerNorm::load(&src.sub("ln_final"))?,
            text_projection: src.get_matmul("text_projection")?,
        })
    }

    /// `ids`: [batch, context] int64 from the tokenizer. Returns [batch, embed].
    ///
    /// With a causal mask the end token's features depend only on the tokens before it, so the
    /// tower runs over the longest prompt's length instead of all 77 positions: same result,
    /// a fraction of the work for short CoOp-style prompts.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        let end_positions = ids.argmax(-1, false);
        let used = end_positions.max().int64_value(&[]) + 1;
        self.forward_over(ids, used, &end_positions)
    }

    /// The same computation over exactly `positions` tokens (the full context when a caller
    /// wants to check that trimming changes nothing).
    pub fn forward_over(&self, ids: &Tensor, positions: i64, end_positions: &Tensor) -> Tensor {
        let ids = ids.narrow(1, 0, positions);
        let x = Tensor::embedding(&self.token_embedding, &ids, -1, false, false)
            + self.positional_embedding.narrow(0, 0, positions);
        let x = self.ln_final.forward(&self.transformer.forward(&x, true));
        let batch = ids.size()[0];
        let rows = Tensor::arange(batch, (Kind::Int64, ids.device()));
        self.text_projection
            .matmul(&x.index(&[Some(rows), Some(end_positions.shallow_clone())]))
    }
}
