//! Stage 2 starts exactly at the frozen model. With trainable and frozen weights equal, the L1
//! terms' argument `normalize(f) − normalize(frozen f)` is 0 in exact arithmetic; if the two
//! branches took different kernel paths it would be rounding noise instead, and the L1
//! gradient sign(Δ)/N would have full size with signs the CPU decides: AdamW turns that into
//! whole ±lr steps, and every run's first steps (the golden fixture's and a user's alike) would
//! differ between CPU kinds. So at step 0 the consistency terms must be exactly 0 and the L1
//! terms' gradients exactly 0, on every kernel variant, with the shortcuts a run uses (frozen
//! branch without autograd, a shared vision trunk, cached frozen text features) and without.
//!
//! The KL term is smooth: its gradient at equal distributions is q·(Σq − 1), rounding-sized
//! (Σq is 1 only up to the last bit), not sign-sized, so it is held to a bound instead.
//!
//! libtorch reads its kernel variables once per process, so the outer test runs the inner one
//! in a fresh process per variant.

mod common;

use clip_ast::train::adamw::AdamWConfig;
use clip_ast::train::losses::ConsistencyWeights;
use clip_ast::train::stage2::{Shortcuts, Stage2Params, Stage2Setup, Stage2Trainer};
use common::kernels::kernel_variants;
use common::mini::{copy, mini, selection_above_block_2};
use tch::{Device, Tensor};

const INNER: &str = "consistency_at_step_zero_in_this_process";

#[test]
fn consistency_terms_and_l1_gradients_are_exactly_zero_at_step_zero_on_every_kernel_variant() {
    let exe = std::env::current_exe().unwrap();
    for variant in kernel_variants() {
        let mut command = std::process::Command::new(&exe);
        variant.apply(&mut command).env("CLIP_AST_TEST_THREADS", variant.threads.to_string());
        let out = command.args(["--exact", INNER, "--ignored", "--nocapture", "--test-threads", "1"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "under {}:\n{text}", variant.name);
    }
}

#[test]
#[ignore = "run by the test above in a fresh process per kernel variant"]
fn consistency_at_step_zero_in_this_process() {
    let m = mini();
    let threads = std::env::var("CLIP_AST_TEST_THREADS").map_or(1, |t| t.parse().unwrap());
    tch::set_num_threads(threads);
    let selected = selection_above_block_2();
    let all_on = Shortcuts::default();
    let all_off = Shortcuts { cache_frozen_text: false, share_vision_trunk: false, frozen_without_autograd: false };
    for shortcuts in [all_on, all_off] {
        let params = Stage2Params {
            optimizer: AdamWConfig { lr: 1e-3, ..AdamWConfig::default() },
            lambdas: ConsistencyWeights { image_l1: 1.0, text_l1: 1.0, kl: 1.0 },
            ..Stage2Params::default()
        };
        let setup = Stage2Setup {
            config: &m.config,
            weights: copy(&m.weights),
            frozen: &m.weights,
            selected: &selected,
            prompt_ids: &m.prompt_ids,
            device: Device::Cpu,
        };
        let trainer = Stage2Trainer::new(setup, &params, shortcuts).unwrap();
        let forward = trainer.forward(&m.images, &m.labels);
        let loss = &forward.loss;
        for (what, term) in [("image L1", &loss.image_l1), ("text L1", &loss.text_l1), ("KL", &loss.kl)] {
            assert_eq!(term.double_value(&[]), 0.0, "{shortcuts:?}: the {what} term is not exactly 0 at step 0");
        }
        let ce = gradients(&trainer, &selected, &loss.ce, true);
        let l1 = gradients(&trainer, &selected, &(&loss.image_l1 + &loss.text_l1), true);
        let kl = gradients(&trainer, &selected, &loss.kl, false);
        for (name, ((g_l1, g_kl), g_ce)) in selected.iter().zip(l1.iter().zip(&kl).zip(&ce)) {
            let largest = |g: &Tensor| g.abs().max().double_value(&[]);
            assert_eq!(largest(g_l1), 0.0, "{shortcuts:?}: the L1 terms' gradient of {name} is not exactly 0");
            // Rounding-sized against the cross-entropy's gradient of the same tensor.
            let (kl_size, ce_size) = (largest(g_kl), largest(g_ce));
            assert!(
                kl_size <= 1e-6 * ce_size,
                "{shortcuts:?}: the KL term's gradient of {name} is {kl_size:.2e}, against CE's {ce_size:.2e}"
            );
        }
    }
}

/// The gradient of `loss` with respect to each selected tensor (zeros where none flows).
fn gradients(trainer: &Stage2Trainer, selected: &[String], loss: &Tensor, keep_graph: bool) -> Vec<Tensor> {
    let inputs: Vec<Tensor> = selected.iter().map(|n| trainer.weights()[n].shallow_clone()).collect();
    let grads = Tensor::run_backward(&[loss], &inputs, keep_graph, false);
    grads.into_iter().zip(&inputs).map(|(g, x)| if g.defined() { g } else { x.zeros_like() }).collect()
}
