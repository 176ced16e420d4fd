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
            transformer: Transformer::load(&src.sub("transformer"), config.layers, config.heads, activation)?,
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
    /// wants to check that trimming changes nothing). Only the end token's features leave the
    /// tower, so the last block runs for that token alone.
    pub fn forward_over(&self, ids: &Tensor, positions: i64, end_positions: &Tensor) -> Tensor {
        let x = self.embed(ids, positions);
        let blocks = &self.transformer.resblocks;
        let Some((last, _)) = blocks.split_last() else {
            return self.project_at(&x, end_positions);
        };
        let x = self.transformer.forward_range(&x, true, 0..blocks.len() - 1);
        self.text_projection.matmul(&self.ln_final.forward(&last.forward_at(&x, end_positions, true)))
    }

    /// The computation as written: every block over every one of `positions` tokens, then the
    /// end token's features. What [`forward_over`](Self::forward_over) equals, for the tests.
    pub fn forward_all_tokens(&self, ids: &Tensor, positions: i64, end_positions: &Tensor) -> Tensor {
        let x = self.transformer.forward(&self.embed(ids, positions), true);
        self.project_at(&x, end_positions)
    }

    fn embed(&self, ids: &Tensor, positions: i64) -> Tensor {
        let ids = ids.narrow(1, 0, positions);
        Tensor::embedding(&self.token_embedding, &ids, -1, false, false)
            + self.positional_embedding.narrow(0, 0, positions)
    }

    /// ln_final and the projection at each row's end token.
    fn project_at(&self, x: &Tensor, end_positions: &Tensor) -> Tensor {
        let rows = Tensor::arange(x.size()[0], (Kind::Int64, x.device()));
        let x = x.index(&[Some(rows), Some(end_positions.shallow_clone())]);
        self.text_projection.matmul(&self.ln_final.forward(&x))
    }
}
