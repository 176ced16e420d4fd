//! The training losses, exactly as docs/method.md writes them: cross-entropy over CLIP's scaled
//! cosine logits, and the self-consistency terms that keep stage 2 close to frozen CLIP.

use tch::{Kind, Reduction, Tensor};

/// Unit-length rows.
pub fn normalize(features: &Tensor) -> Tensor {
    features / features.norm_scalaropt_dim(2, [-1], true)
}

/// `logit_scale.exp() * norm(img) @ norm(txt).T`, with `logit_scale` the stored log value.
/// Scaled before the product, in Python's left-to-right order, so the rounding (which the KL
/// term's cancellations amplify) is the reference implementation's.
pub fn clip_logits(image_features: &Tensor, text_features: &Tensor, logit_scale: &Tensor) -> Tensor {
    (normalize(image_features) * logit_scale.exp()).matmul(&normalize(text_features).tr())
}

pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
}

/// Mean absolute difference between unit-normalised features and their frozen counterparts.
pub fn feature_l1(features: &Tensor, frozen_features: &Tensor) -> Tensor {
    normalize(features).l1_loss(&normalize(frozen_features), Reduction::Mean)
}

/// `kl_div(log_softmax(logits), log_softmax(frozen), reduction="sum", log_target=True) /
/// logits.numel()`: the frozen model's distribution is the target.
pub fn logits_kl(logits: &Tensor, frozen_logits: &Tensor) -> Tensor {
    let log_p = logits.log_softmax(-1, Kind::Float);
    let log_q = frozen_logits.log_softmax(-1, Kind::Float);
    let numel = logits.numel() as f64;
    (log_q.exp() * (&log_q - &log_p)).sum(Kind::Float) / numel
}

/// Weights of the self-consistency terms; all zero gives plain cross-entropy.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConsistencyWeights {
    pub image_l1: f64,
    pub text_l1: f64,
    pub kl: f64,
}

/// Every term of the stage-2 loss, kept apart for the log.
pub struct Stage2Loss {
    pub total: Tensor,
    pub ce: Tensor,
    pub image_l1: Tensor,
    pub text_l1: Tensor,
    pub kl: Tensor,
}

pub struct Stage2Inputs<'a> {
    pub image_features: &'a Tensor,
    pub text_features: &'a Tensor,
    pub frozen_image_features: &'a Tensor,
    pub frozen_text_features: &'a Tensor,
    pub logit_scale: &'a Tensor,
    pub frozen_logit_scale: &'a Tensor,
    pub labels: &'a Tensor,
}

/// CE + λ_img·L1(img) + λ_txt·L1(txt) + λ_kl·KL, with the frozen model on the same batch.
pub fn stage2_loss(x: &Stage2Inputs, weights: ConsistencyWeights) -> Stage2Loss {
    let logits = clip_logits(x.image_features, x.text_features, x.logit_scale);
    let frozen_logits = clip_logits(x.frozen_image_features, x.frozen_text_features, x.frozen_logit_scale);
    let ce = cross_entropy(&logits, x.labels);
    let image_l1 = feature_l1(x.image_features, x.frozen_image_features);
    let text_l1 = feature_l1(x.text_features, x.frozen_text_features);
    let kl = logits_kl(&logits, &frozen_logits);
    let total = &ce + &image_l1 * weights.image_l1 + &text_l1 * weights.text_l1 + &kl * weights.kl;
    Stage2Loss { total, ce, image_l1, text_l1, kl }
}
