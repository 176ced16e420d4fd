//! The image tower: patchify with a bias-free conv, prepend the class token, add positions,
//! ln_pre, blocks, ln_post on the class token, project.

use std::ops::Range;

use anyhow::Result;
use tch::{Kind, Tensor};

use super::config::{Activation, VisionConfig};
use super::layers::{LayerNorm, MatmulWeight, Precision, TensorSource, Transformer};

pub struct VisionTower {
    pub conv1_weight: MatmulWeight,
    pub class_embedding: Tensor,
    pub positional_embedding: Tensor,
    pub ln_pre: LayerNorm,
    pub transformer: Transformer,
    pub ln_post: LayerNorm,
    pub proj: MatmulWeight,
    pub patch_size: i64,
}

impl VisionTower {
    /// `src` is rooted at `visual.`.
    pub fn load(src: &TensorSource, config: &VisionConfig, activation: Activation) -> Result<Self> {
        Ok(VisionTower {
            conv1_weight: src.get_matmul("conv1.weight")?,
            class_embedding: src.get("class_embedding")?,
            positional_embedding: src.get("positional_embedding")?,
            ln_pre: LayerNorm::load(&src.sub("ln_pre"))?,
            transformer: Transformer::load(&src.sub("transformer"), config.layers, config.heads, activation)?,
            ln_post: LayerNorm::load(&src.sub("ln_post"))?,
            proj: src.get_matmul("proj")?,
            patch_size: config.patch_size,
        })
    }

    /// `images`: [batch, 3, size, size], normalised. Returns projected features [batch, embed].
    pub fn forward(&self, images: &Tensor) -> Tensor {
        self.finish(&self.embed(images), 0)
    }

    /// The computation as written, every block over every token: what [`forward`](Self::forward)
    /// equals, kept for the tests that show so.
    pub fn forward_all_tokens(&self, images: &Tensor) -> Tensor {
        let x = self.embed(images);
        self.head(&self.blocks(&x, 0..self.transformer.resblocks.len()))
    }

    /// The stem: patches, class token, positions and ln_pre, giving the first block's input
    /// [batch, tokens, width]. Split from [`forward`](Self::forward) so that stage 2 can run
    /// the part its two models share once.
    pub fn embed(&self, images: &Tensor) -> Tensor {
        let (batch, channels, height, width_px) = images.size4().expect("images are [batch, 3, size, size]");
        let p = self.patch_size;
        let (rows, cols) = (height / p, width_px / p);
        // The stride-p convolution as a product of flattened patches with the flattened
        // kernel: the same sums, and on a GPU a cuBLAS product stays fp32 where cuDNN's
        // convolutions default to TF32.
        let patches = images.reshape([batch, channels, rows, p, cols, p]).permute([0, 2, 4, 1, 3, 5]).reshape([
            batch,
            rows * cols,
            channels * p * p,
        ]);
        let kernel = self.conv1_weight.compute();
        let kernel = kernel.reshape([kernel.size()[0], -1]).tr();
        let patches = match self.conv1_weight.precision() {
            Precision::Fp32 => patches.matmul(&kernel),
            Precision::Bf16 => patches.to_kind(Kind::BFloat16).matmul(&kernel).to_kind(Kind::Float),
        };
        let width = self.class_embedding.size()[0];
        let class_token = self.class_embedding.view([1, 1, width]).expand([batch, 1, width], false);
        let x = Tensor::cat(&[class_token, patches], 1) + &self.positional_embedding;
        self.ln_pre.forward(&x)
    }

    /// Transformer blocks `range` (indices into `transformer.resblocks`).
    pub fn blocks(&self, x: &Tensor, range: Range<usize>) -> Tensor {
        self.transformer.forward_range(x, false, range)
    }

    /// Blocks `start..` on the output of the blocks before them, then the head. Only the class
    /// token's features leave the tower, so the last block runs for that token alone.
    pub fn finish(&self, x: &Tensor, start: usize) -> Tensor {
        let blocks = &self.transformer.resblocks;
        let Some((last, _)) = blocks.split_last().filter(|_| start < blocks.len()) else {
            return self.head(x);
        };
        let x = self.blocks(x, start..blocks.len() - 1);
        let class_token = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
        self.project(&last.forward_at(&x, &class_token, false))
    }

    /// ln_post on the class token, projected: [batch, embed].
    pub fn head(&self, x: &Tensor) -> Tensor {
        // LayerNorm works per token, so normalising only the class token equals open_clip's
        // normalise-all-then-pool.
        self.project(&x.select(1, 0))
    }

    /// ln_post and the projection of class-token features [batch, width].
    fn project(&self, class_token: &Tensor) -> Tensor {
        self.proj.matmul(&self.ln_post.forward(class_token))
    }
}
