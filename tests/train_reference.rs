//! AdamW, the losses and the selection rules against PyTorch computations of the same thing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use clip_ast::clip::ClipConfig;
use clip_ast::clip::weights::read_safetensors;
use clip_ast::train::adamw::{AdamW, AdamWConfig, read_state};
use clip_ast::train::losses::{ConsistencyWeights, Stage2Inputs, stage2_loss};
use clip_ast::train::select::{ScoreRule, SelectRequest, Stage1Statistics, Towers, select};
use tch::{Kind, Tensor};

fn reference(mode: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::run_reference("ref_train.py", &[mode.as_ref(), dir.path().as_os_str()]);
    dir
}

fn max_relative(ours: &Tensor, theirs: &Tensor) -> f64 {
    let diff = (ours - theirs).abs().max().double_value(&[]);
    diff / theirs.abs().max().double_value(&[]).max(1e-30)
}

fn check_adamw(file: &Path, amsgrad: bool) {
    let r = read_safetensors(file).unwrap();
    let names = ["a.weight", "b.bias", "c"];
    let params: Vec<(String, Tensor)> =
        names.iter().map(|n| (n.to_string(), r[&format!("init.{n}")].copy().set_requires_grad(true))).collect();
    let config = AdamWConfig { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05, amsgrad };
    let mut opt = AdamW::new(params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect(), config);
    for step in 0..50 {
        for (name, p) in &params {
            let mut grad = p.grad();
            if !grad.defined() {
                // Materialise .grad once through autograd, then overwrite it each step.
                (p * 0.0).sum(Kind::Float).backward();
                grad = p.grad();
            }
            grad.copy_(&r[&format!("grad{step}.{name}")]);
        }
        opt.step();
    }
    let state = opt.state();
    assert_eq!(state["step"].double_value(&[]), 50.0);
    for (name, p) in &params {
        for (ours, key) in [
            (p.detach(), format!("final.{name}")),
            (state[&format!("{name}.exp_avg")].shallow_clone(), format!("exp_avg.{name}")),
            (state[&format!("{name}.exp_avg_sq")].shallow_clone(), format!("exp_avg_sq.{name}")),
        ] {
            let err = max_relative(&ours, &r[&key]);
            assert!(err < 1e-6, "amsgrad={amsgrad} {key}: relative error {err:.2e}");
        }
    }
}

#[test]
fn adamw_matches_torch_over_50_steps() {
    let dir = reference("adamw");
    check_adamw(&dir.path().join("adamw_plain.safetensors"), false);
    check_adamw(&dir.path().join("adamw_amsgrad.safetensors"), true);
}

#[test]
fn losses_match_torch() {
    let dir = reference("losses");
    let r = read_safetensors(&dir.path().join("losses.safetensors")).unwrap();
    let labels = r["labels"].to_kind(Kind::Int64);
    let loss = stage2_loss(
        &Stage2Inputs {
            image_features: &r["img"],
            text_features: &r["txt"],
            frozen_image_features: &r["frozen_img"],
            frozen_text_features: &r["frozen_txt"],
            logit_scale: &r["scale"],
            frozen_logit_scale: &r["frozen_scale"],
            labels: &labels,
        },
        ConsistencyWeights { image_l1: 0.5, text_l1: 2.0, kl: 7.5 },
    );
    for (ours, key) in [
        (&loss.ce, "ce"),
        (&loss.image_l1, "l1_img"),
        (&loss.text_l1, "l1_txt"),
        (&loss.kl, "kl"),
        (&loss.total, "total"),
    ] {
        let (a, b) = (ours.double_value(&[]), r[key].double_value(&[]));
        assert!(((a - b) / b).abs() < 1e-6, "{key}: ours {a} torch {b}");
        assert!(b.abs() > 1e-6, "{key} is trivially small; the test would not notice a wrong formula");
    }
}

#[test]
fn selection_rules_match_python() {
    let dir = reference("select");
    let p = dir.path();
    let state = read_safetensors(&p.join("adamw.safetensors")).unwrap();
    let (moments, step) = read_state(&state, &p.join("adamw.safetensors")).unwrap();
    let initial: BTreeMap<String, Tensor> = read_safetensors(&p.join("initial.safetensors")).unwrap();
    let tuned: BTreeMap<String, Tensor> = read_safetensors(&p.join("tuned.safetensors")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("scores.json")).unwrap()).unwrap();
    let config = ClipConfig::preset("mini").unwrap();
    let stats = Stage1Statistics {
        moments: &moments,
        step,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        initial: Some(&initial),
        tuned: Some(&tuned),
    };
    for rule in ["inv-sqrt-v", "sqrt-v", "update", "weight-delta"] {
        let request = SelectRequest {
            rule: clip_ast::settings::parse_choice(rule).unwrap(),
            k: 6,
            towers: Towers::Both,
            seed: 0,
        };
        let selection = select(&config, &stats, &request).unwrap();
        assert_eq!(selection.blocks.len(), 8);
        for block in &selection.blocks {
            let want = &expected[rule][&block.block];
            for (i, t) in block.tensors.iter().enumerate() {
                let w = want["scores"][i].as_f64().unwrap();
                assert!(((t.score - w) / w).abs() < 1e-9, "{rule} {}: {} vs {w}", t.name, t.score);
            }
            let mut chosen: Vec<(usize, &str)> =
                block.tensors.iter().filter(|t| t.chosen).map(|t| (t.rank, t.name.as_str())).collect();
            chosen.sort();
            let chosen: Vec<&str> = chosen.into_iter().map(|(_, n)| n).collect();
            let want_top: Vec<&str> = want["top6"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(chosen, want_top, "{rule} {}", block.block);
        }
        assert_eq!(selection.chosen.len(), 48);
    }
    // Random selection: reproducible by seed, different across seeds, K per block.
    let random = |seed| {
        select(&config, &stats, &SelectRequest { rule: ScoreRule::Random, k: 3, towers: Towers::Vision, seed }).unwrap()
    };
    assert_eq!(random(5).chosen, random(5).chosen);
    assert_ne!(random(5).chosen, random(6).chosen);
    assert_eq!(random(5).chosen.len(), 12);
    // K over the block size is clamped and said.
    let big = select(&config, &stats, &SelectRequest { rule: ScoreRule::SqrtV, k: 20, towers: Towers::Text, seed: 0 })
        .unwrap();
    assert_eq!(big.k, 12);
    assert!(big.notes[0].contains("clamped"), "{:?}", big.notes);
}
