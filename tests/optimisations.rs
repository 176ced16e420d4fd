//! Every shortcut that makes training and evaluation cheaper leaves the result where it was:
//! logits, losses and gradients with each one on and off, on the mini preset with random
//! weights. Plus the bf16 policy: features within 2e-2 of fp32 (mini, and ViT-B-32 against
//! open_clip), and a mini stage 1 → stage 2 run in bf16 that learns like fp32.

mod common;

use common::mini::{Mini, copy, mini, selection_above_block_2};

use std::sync::Arc;

use clip_ast::clip::init::init_weights;
use clip_ast::clip::layers::Precision;
use clip_ast::clip::{Clip, ClipConfig, Weights};
use clip_ast::data::augment::{TrainImages, TrainSet};
use clip_ast::train::adamw::{AdamW, AdamWConfig};
use clip_ast::train::losses::{ConsistencyWeights, clip_logits};
use clip_ast::train::prompts::class_prompt_ids;
use clip_ast::train::schedule::WarmupCosine;
use clip_ast::train::stage1::{Stage1Inputs, Stage1Params, Stage1Trainer, run_stage1};
use clip_ast::train::stage2::{Shortcuts, Stage2Params, Stage2Run, Stage2Setup, Stage2Trainer, run_stage2};
use tch::{Device, Kind, Tensor};

/// max |a − b| / max |b|: relative to the tensor's scale.
fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).abs().max().double_value(&[]);
    diff / b.abs().max().double_value(&[]).max(1e-30)
}

/// Differences a change of matrix shapes can cause (libtorch may block a product differently),
/// far below anything a model could learn from.
const FP32_ROUNDING: f64 = 2e-5;

fn stage2_params(precision: Precision) -> Stage2Params {
    Stage2Params {
        optimizer: AdamWConfig { lr: 1e-3, ..AdamWConfig::default() },
        lambdas: ConsistencyWeights { image_l1: 1.0, text_l1: 0.5, kl: 2.0 },
        precision,
        ..Stage2Params::default()
    }
}

fn trainer(m: &Mini, selected: &[String], shortcuts: Shortcuts) -> Stage2Trainer {
    trainer_from(m, copy(&m.weights), &m.weights, selected, shortcuts)
}

/// A fp32 trainer starting from `start` against `frozen`.
fn trainer_from(
    m: &Mini,
    start: Weights,
    frozen: &Weights,
    selected: &[String],
    shortcuts: Shortcuts,
) -> Stage2Trainer {
    Stage2Trainer::new(
        Stage2Setup {
            config: &m.config,
            weights: start,
            frozen,
            selected,
            prompt_ids: &m.prompt_ids,
            device: Device::Cpu,
        },
        &stage2_params(Precision::Fp32),
        shortcuts,
    )
    .unwrap()
}

/// Loss terms, logits and the gradient of every selected tensor after one backward pass, then
/// the selected tensors after three more optimizer steps.
struct Observed {
    terms: Vec<Tensor>,
    logits: Tensor,
    grads: Vec<(String, Tensor)>,
    after_steps: Weights,
}

fn observe(m: &Mini, selected: &[String], shortcuts: Shortcuts) -> Observed {
    let mut t = trainer(m, selected, shortcuts);
    let f = t.forward(&m.images, &m.labels);
    let logits = clip_logits(&f.image_features, &f.text_features, &t.models().0.logit_scale).detach();
    f.loss.total.backward();
    let grads = selected.iter().map(|n| (n.clone(), t.weights()[n].grad().copy())).collect();
    let l = &f.loss;
    let terms = [&l.total, &l.ce, &l.image_l1, &l.text_l1, &l.kl].iter().map(|x| x.detach().copy()).collect();
    for step in 0..3 {
        t.step(&m.images, &m.labels, 0, step).unwrap();
    }
    Observed { terms, logits, grads, after_steps: t.finish() }
}

/// Bitwise equal: the shortcut runs the very same kernels on the very same inputs.
fn assert_identical(a: &Observed, b: &Observed, what: &str) {
    for (i, (x, y)) in a.terms.iter().zip(&b.terms).enumerate() {
        assert!(x.equal(y), "{what}: loss term {i} differs: {x:?} vs {y:?}");
    }
    assert!(a.logits.equal(&b.logits), "{what}: logits differ");
    for ((name, x), (_, y)) in a.grads.iter().zip(&b.grads) {
        assert!(x.defined() && y.defined(), "{what}: {name} has no gradient");
        assert!(x.equal(y), "{what}: gradient of {name} differs by {:.2e}", relative_error(x, y));
    }
    for (name, x) in &a.after_steps {
        assert!(x.equal(&b.after_steps[name]), "{what}: {name} differs after three steps");
    }
}

#[test]
fn frozen_text_cache_is_exact() {
    let m = mini();
    let selected = selection_above_block_2();
    let on = observe(&m, &selected, Shortcuts::default());
    let off = observe(&m, &selected, Shortcuts { cache_frozen_text: false, ..Shortcuts::default() });
    assert_identical(&on, &off, "frozen text features cached vs recomputed every step");
}

#[test]
fn shared_vision_trunk_is_exact() {
    let m = mini();
    let selected = selection_above_block_2();
    assert_eq!(trainer(&m, &selected, Shortcuts::default()).shared_vision_blocks(), Some(2));
    let on = observe(&m, &selected, Shortcuts::default());
    let off = observe(&m, &selected, Shortcuts { share_vision_trunk: false, ..Shortcuts::default() });
    assert_identical(&on, &off, "vision trunk shared vs computed per model");

    // Weights that differ below the selection (stage 2 started from stage 1's tensors) shrink
    // the shared part to the blocks that really are equal.
    let mut start = copy(&m.weights);
    let name = "visual.transformer.resblocks.1.mlp.c_fc.bias";
    start.insert(name.into(), &start[name] + 0.1);
    let t = trainer_from(&m, start, &m.weights, &selected, Shortcuts::default());
    assert_eq!(t.shared_vision_blocks(), Some(1));
}

#[test]
fn frozen_branch_without_autograd_is_exact() {
    let m = mini();
    let selected = selection_above_block_2();
    let on = observe(&m, &selected, Shortcuts::default());
    let off = observe(&m, &selected, Shortcuts { frozen_without_autograd: false, ..Shortcuts::default() });
    assert_identical(&on, &off, "frozen branch under no_grad vs with autograd on");
    let t = trainer(&m, &selected, Shortcuts::default());
    let f = t.forward(&m.images, &m.labels);
    assert!(!f.frozen_image_features.requires_grad() && !f.frozen_text_features.requires_grad());
    assert!(f.image_features.requires_grad() && f.text_features.requires_grad());
}

#[test]
fn frozen_model_never_trains_even_when_handed_the_same_tensors() {
    // A caller that passes the frozen map's own tensors as the start must not see the frozen
    // model move: the trainer copies the selected tensors before training them.
    let m = mini();
    let selected = selection_above_block_2();
    let frozen = copy(&m.weights);
    let start: Weights = frozen.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
    let mut t = trainer_from(&m, start, &frozen, &selected, Shortcuts::default());
    for step in 0..2 {
        t.step(&m.images, &m.labels, 0, step).unwrap();
    }
    for name in &selected {
        assert!(frozen[name].equal(&m.weights[name]), "frozen {name} moved");
        assert!(!t.weights()[name].equal(&m.weights[name]), "trained {name} did not move");
    }
}

#[test]
fn backward_stops_below_the_lowest_trainable_block() {
    let m = mini();
    let selected = selection_above_block_2();
    let t = trainer(&m, &selected, Shortcuts::default());
    t.forward(&m.images, &m.labels).loss.total.backward();
    for (name, tensor) in t.weights() {
        let trains = selected.contains(name);
        assert_eq!(tensor.requires_grad(), trains, "{name}");
        assert_eq!(tensor.grad().defined(), trains, "{name}: a gradient where none is needed, or none");
    }
    // Stage 1 trains every block tensor, and nothing of the stems, embeddings or heads.
    let mut s1 =
        Stage1Trainer::new(&m.config, copy(&m.weights), &m.prompt_ids, Device::Cpu, &Stage1Params::default()).unwrap();
    s1.step(&m.images, &m.labels, 0, 0).unwrap();
    let v = &s1.model().visual;
    let txt = &s1.model().text;
    for (name, tensor) in [
        ("visual.conv1.weight", &v.conv1_weight.master),
        ("visual.class_embedding", &v.class_embedding),
        ("visual.positional_embedding", &v.positional_embedding),
        ("visual.ln_pre.weight", &v.ln_pre.weight),
        ("token_embedding.weight", &txt.token_embedding),
        ("positional_embedding", &txt.positional_embedding),
        ("logit_scale", &s1.model().logit_scale),
    ] {
        assert!(!tensor.requires_grad() && !tensor.grad().defined(), "stage 1 computed a gradient for {name}");
    }
    assert!(v.transformer.resblocks[0].ln_1.weight.grad().defined());
}

/// Gradients of `names` in a model built over `weights` (those names trainable) for
/// `loss_of(model)`.
fn gradients(m: &Mini, names: &[&str], loss_of: impl Fn(&Clip) -> Tensor) -> (Tensor, Vec<Tensor>) {
    let mut weights = copy(&m.weights);
    for n in names {
        let _ = weights.get_mut(*n).unwrap().set_requires_grad(true);
    }
    let model = Clip::new(&m.config, &weights).unwrap();
    let out = loss_of(&model);
    let loss = (&out * Tensor::ones_like(&out).cumsum(-1, Kind::Float)).sum(Kind::Float);
    loss.backward();
    (out.detach(), names.iter().map(|n| weights[*n].grad().copy()).collect())
}

fn assert_close(a: &(Tensor, Vec<Tensor>), b: &(Tensor, Vec<Tensor>), names: &[&str], what: &str) {
    let err = relative_error(&a.0, &b.0);
    eprintln!("{what}: features {err:.1e}");
    assert!(err < FP32_ROUNDING, "{what}: features differ by {err:.2e}");
    for ((x, y), name) in a.1.iter().zip(&b.1).zip(names) {
        let err = relative_error(x, y);
        eprintln!("{what}: gradient of {name} {err:.1e}");
        assert!(err < FP32_ROUNDING, "{what}: gradient of {name} differs by {err:.2e}");
    }
}

#[test]
fn trimmed_text_tower_is_exact_with_gradients() {
    let m = mini();
    let names =
        ["transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.3.mlp.c_fc.weight", "ln_final.bias"];
    let ends = m.prompt_ids.argmax(-1, false);
    let trimmed = gradients(&m, &names, |model| model.text.forward(&m.prompt_ids));
    let full = gradients(&m, &names, |model| model.text.forward_over(&m.prompt_ids, 77, &ends));
    assert_close(&trimmed, &full, &names, "text over the longest prompt vs 77 positions");
}

#[test]
fn last_block_at_one_token_is_exact_with_gradients() {
    let m = mini();
    let names = [
        "visual.transformer.resblocks.3.attn.in_proj_weight",
        "visual.transformer.resblocks.3.mlp.c_proj.weight",
        "visual.transformer.resblocks.1.ln_2.weight",
    ];
    let one = gradients(&m, &names, |model| model.visual.forward(&m.images));
    let all = gradients(&m, &names, |model| model.visual.forward_all_tokens(&m.images));
    assert_close(&one, &all, &names, "image tower, last block at the class token only");

    let names = [
        "transformer.resblocks.3.attn.in_proj_bias",
        "transformer.resblocks.3.ln_1.weight",
        "transformer.resblocks.2.mlp.c_fc.weight",
    ];
    let ends = m.prompt_ids.argmax(-1, false);
    let used = ends.max().int64_value(&[]) + 1;
    let one = gradients(&m, &names, |model| model.text.forward_over(&m.prompt_ids, used, &ends));
    let all = gradients(&m, &names, |model| model.text.forward_all_tokens(&m.prompt_ids, used, &ends));
    assert_close(&one, &all, &names, "text tower, last block at the end token only");
}

#[test]
fn in_place_inference_is_exact() {
    // Without autograd the blocks write residual sums and QuickGELU into tensors they own; with
    // a graph (here: a block-0 tensor trains) they allocate. Same kernels, same values.
    let m = mini();
    let inference = tch::no_grad(|| {
        let model = Clip::new(&m.config, &m.weights).unwrap();
        (model.encode_image(&m.images), model.encode_text(&m.prompt_ids))
    });
    let mut weights = copy(&m.weights);
    for name in ["visual.transformer.resblocks.0.ln_1.weight", "transformer.resblocks.0.ln_1.weight"] {
        let _ = weights.get_mut(name).unwrap().set_requires_grad(true);
    }
    let model = Clip::new(&m.config, &weights).unwrap();
    let (image, text) = (model.encode_image(&m.images), model.encode_text(&m.prompt_ids));
    assert!(image.requires_grad() && text.requires_grad());
    assert!(inference.0.equal(&image), "image features differ");
    assert!(inference.1.equal(&text), "text features differ");
}

#[test]
fn fused_adamw_equals_per_tensor_ops() {
    // Only the square root may round differently (libtorch's vectorised one is not always
    // correctly rounded), so 40 steps stay within fp32 rounding of each other.
    tch::manual_seed(5);
    for amsgrad in [false, true] {
        let shapes: [&[i64]; 4] = [&[300, 70], &[70], &[65_537], &[3, 5, 7]];
        let init: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu))).collect();
        let config = AdamWConfig { lr: 3e-3, weight_decay: 0.05, amsgrad, ..AdamWConfig::default() };
        let run = |fused: bool| {
            tch::manual_seed(6);
            let params: Vec<(String, Tensor)> =
                init.iter().enumerate().map(|(i, t)| (i.to_string(), t.copy().set_requires_grad(true))).collect();
            let mut opt =
                AdamW::new(params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect(), config.clone());
            opt.set_fused(fused);
            for step in 0..40 {
                for (i, (_, p)) in params.iter().enumerate() {
                    if step == 0 {
                        (p * 0.0).sum(Kind::Float).backward();
                    }
                    // Gradients of very different sizes, and one tensor without a gradient
                    // now and then (it counts as zero).
                    let scale = 10f64.powi(-(i as i32) * 2);
                    p.grad().copy_(&(p.randn_like() * scale));
                    if i == 3 && step % 7 == 0 {
                        let _ = p.grad().zero_();
                    }
                }
                opt.step();
            }
            (params, opt.state())
        };
        let (fused, fused_state) = run(true);
        let (ops, ops_state) = run(false);
        for ((name, a), (_, b)) in fused.iter().zip(&ops) {
            let err = relative_error(a, b);
            assert!(err < 1e-6, "amsgrad {amsgrad}: parameter {name} differs by {err:.2e}");
        }
        for (key, a) in &fused_state {
            let err = relative_error(a, &ops_state[key]);
            assert!(err < 1e-6, "amsgrad {amsgrad}: {key} differs by {err:.2e}");
        }
    }
}

fn bf16_features(config: &ClipConfig, weights: &Weights, images: &Tensor, ids: &Tensor) -> [(Tensor, Tensor); 2] {
    let _guard = tch::no_grad_guard();
    [Precision::Fp32, Precision::Bf16].map(|p| {
        let model = Clip::with_precision(config, weights, p).unwrap();
        (model.encode_image(images), model.encode_text(ids))
    })
}

#[test]
fn bf16_features_within_2e_2_of_fp32_on_mini() {
    let m = mini();
    let [(img32, txt32), (img16, txt16)] = bf16_features(&m.config, &m.weights, &m.images, &m.prompt_ids);
    for (what, a, b) in [("image", &img16, &img32), ("text", &txt16, &txt32)] {
        let err = relative_error(a, b);
        eprintln!("mini bf16 {what} features: {err:.1e} relative to fp32");
        assert!(err < 2e-2, "mini bf16 {what} features {err:.2e} from fp32");
    }
}

#[test]
fn bf16_features_within_2e_2_of_open_clip_fp32_on_vit_b_32() {
    // open_clip's ViT-B-32 (QuickGELU, random weights) in fp32 against ours in bf16.
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, torch, open_clip
from safetensors.torch import save_file
torch.manual_seed(0)
m = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).eval()
with torch.no_grad():
    for n, p in m.named_parameters():
        p.copy_(torch.full_like(p, 2.5) if n == "logit_scale" else p + torch.randn_like(p) * 0.02)
    x = torch.randn(2, 3, 224, 224)
    ids = open_clip.tokenize(["a photo of a cat.", "a centered satellite photo of annual crop land."])
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[1] + "/w.safetensors")
    save_file({"images": x, "ids": ids.float(), "image_features": m.encode_image(x).contiguous(),
               "text_features": m.encode_text(ids).contiguous()}, sys.argv[1] + "/expected.safetensors")
"#;
    let out = std::process::Command::new(common::python()).arg("-c").arg(script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let quick_gelu = Some(clip_ast::clip::config::Activation::QuickGelu);
    let imported = clip_ast::clip::import::load(&dir.path().join("w.safetensors"), quick_gelu).unwrap();
    let expected = clip_ast::clip::weights::read_safetensors(&dir.path().join("expected.safetensors")).unwrap();
    let ids = expected["ids"].to_kind(Kind::Int64);
    let [(img32, txt32), (img16, txt16)] =
        bf16_features(&imported.config, &imported.weights, &expected["images"], &ids);
    for (what, ours32, ours16, theirs) in
        [("image", &img32, &img16, &expected["image_features"]), ("text", &txt32, &txt16, &expected["text_features"])]
    {
        let (err32, err16) = (relative_error(ours32, theirs), relative_error(ours16, theirs));
        eprintln!("ViT-B-32 {what} features vs open_clip fp32: ours fp32 {err32:.1e}, ours bf16 {err16:.1e}");
        assert!(err32 < 1e-4, "ViT-B-32 fp32 {what} features {err32:.2e} from open_clip");
        assert!(err16 < 2e-2, "ViT-B-32 bf16 {what} features {err16:.2e} from open_clip fp32");
    }
}

#[test]
fn bf16_stages_learn_like_fp32() {
    tch::set_num_threads(1);
    let config = ClipConfig::preset("mini").unwrap();
    let pretrained = init_weights(&config, 3);
    let (imgs, labels) = common::colour_images(8, 1);
    let train = Arc::new(TrainSet { images: Arc::new(imgs), labels });
    let names: Vec<String> = ["red", "green", "blue", "yellow"].iter().map(|s| s.to_string()).collect();
    let prompt_ids = class_prompt_ids("a photo of {}.", &names, 77).unwrap();
    let mut summary = Vec::new();
    for precision in [Precision::Fp32, Precision::Bf16] {
        let s1 = run_stage1(
            Stage1Inputs {
                config: &config,
                weights: copy(&pretrained),
                train: TrainImages::Decoded(train.clone()),
                prompt_ids: &prompt_ids,
                device: Device::Cpu,
                progress: &|_| {},
                checkpoints: clip_ast::train::checkpoint::Checkpoints::off(),
            },
            &Stage1Params {
                optimizer: AdamWConfig { lr: 3e-4, ..AdamWConfig::default() },
                epochs: 8,
                batch_size: 8,
                seed: 1,
                precision,
                ..Stage1Params::default()
            },
        )
        .unwrap();
        let mean = |rows: &[clip_ast::train::stage1::Stage1LogRow],
                    f: fn(&clip_ast::train::stage1::Stage1LogRow) -> f64| {
            rows.iter().map(f).sum::<f64>() / rows.len() as f64
        };
        let n = s1.log.len();
        let (first, last) = (mean(&s1.log[..4], |r| r.loss), mean(&s1.log[n - 4..], |r| r.loss));
        let acc = mean(&s1.log[n - 4..], |r| r.acc);
        assert!(last < first * 0.8, "{precision:?} stage-1 loss did not fall: {first:.3} → {last:.3}");
        assert!(acc > 0.5, "{precision:?} stage-1 accuracy {acc:.2} not above chance (0.25)");
        // Stage 2 on every tensor of the last two blocks of each tower.
        let selected: Vec<String> = s1
            .checkpoint
            .keys()
            .filter(|k| k.contains("resblocks.2.") || k.contains("resblocks.3."))
            .cloned()
            .collect();
        let s2 = run_stage2(
            Stage2Run {
                config: &config,
                weights: copy(&pretrained),
                frozen: &pretrained,
                selected: &selected,
                train: train.clone(),
                prompt_ids: &prompt_ids,
                device: Device::Cpu,
                progress: &|_| {},
                checkpoints: clip_ast::train::checkpoint::Checkpoints::off(),
            },
            &Stage2Params {
                optimizer: AdamWConfig { lr: 1e-3, ..AdamWConfig::default() },
                schedule: WarmupCosine { warmup_start_lr: 1e-5, warmup_epochs: 1, epochs: 6 },
                lambdas: ConsistencyWeights { image_l1: 0.0, text_l1: 0.0, kl: 0.0 },
                batch_size: 8,
                seed: 2,
                precision,
                ..Stage2Params::default()
            },
        )
        .unwrap();
        let (ce0, ce1) = (s2.log[0].ce, s2.log.last().unwrap().ce);
        let acc2 = s2.log.last().unwrap().acc;
        assert!(ce1 < ce0 * 0.8, "{precision:?} stage-2 CE did not fall: {ce0:.3} → {ce1:.3}");
        assert!(acc2 > 0.5, "{precision:?} stage-2 accuracy {acc2:.2} not above chance");
        summary.push((first, last, acc, ce0, ce1, acc2));
    }
    eprintln!("fp32 vs bf16 (stage-1 loss first→last, acc; stage-2 CE first→last, acc): {summary:?}");
    // bf16 learns like fp32: its final losses within a third of fp32's.
    let (f, b) = (summary[0], summary[1]);
    assert!((b.1 - f.1).abs() < f.1.max(0.05) / 3.0 + 0.05, "stage-1 final loss fp32 {:.3} bf16 {:.3}", f.1, b.1);
    assert!((b.4 - f.4).abs() < f.4.max(0.05) / 3.0 + 0.05, "stage-2 final CE fp32 {:.3} bf16 {:.3}", f.4, b.4);
}
