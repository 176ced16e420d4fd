//! Times our real stage-1 and stage-2 steps and the evaluation on random weights and random
//! images, for `make bench` (bench/run_bench.py runs this beside bench/ref_stage2_step.py).
//!
//!   cargo build --release --examples
//!   target/release/examples/step_bench --case stage2 --preset ViT-B-16 --batch 8 --classes 10
//!
//! Prints one JSON line: per-step seconds (warm-up excluded), their median, images/s, the text
//! positions the trimmed text tower ran over, and the peak resident memory (VmHWM).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use clip_ast::clip::init::init_weights;
use clip_ast::clip::layers::Precision;
use clip_ast::clip::{Clip, ClipConfig, Weights};
use clip_ast::eval::{TestSet, evaluate};
use clip_ast::rng::SplitMix64;
use clip_ast::train::adamw::{AdamW, AdamWConfig};
use clip_ast::train::prompts::class_prompt_ids;
use clip_ast::train::select::{Towers, block_prefixes};
use clip_ast::train::stage1::{Stage1Params, Stage1Trainer};
use clip_ast::train::stage2::{Shortcuts, Stage2Params, Stage2Setup, Stage2Trainer};
use serde_json::json;
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
struct Args {
    /// stage1, stage2 or eval
    #[arg(long)]
    case: String,
    #[arg(long, default_value = "ViT-B-16")]
    preset: String,
    #[arg(long, default_value_t = 8)]
    batch: i64,
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Tensors per block for stage 2, chosen at random (ignored with --selection)
    #[arg(long, default_value_t = 6)]
    k: usize,
    /// A JSON list of the tensor names stage 2 tunes (the same list the reference gets)
    #[arg(long)]
    selection: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// libtorch threads (0: libtorch's choice)
    #[arg(long, default_value_t = 0)]
    threads: i32,
    #[arg(long, default_value = "fp32")]
    precision: Precision,
    /// Test images for --case eval
    #[arg(long, default_value_t = 64)]
    eval_images: i64,
    /// Turn off stage 2's shortcuts (text cache, shared trunk) to measure what they buy
    #[arg(long)]
    no_shortcuts: bool,
    /// cpu or cuda
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let device = clip_ast::device::parse_device(&args.device)?;
    let config = ClipConfig::preset(&args.preset)?;
    let weights = on_device(init_weights(&config, 0), device);
    let classnames: Vec<String> = (0..args.classes).map(|i| format!("class{i}")).collect();
    let prompt_ids = class_prompt_ids("a photo of a {}.", &classnames, config.text.context_length)?;
    let text_positions = prompt_ids.argmax(-1, false).max().int64_value(&[]) + 1;
    tch::manual_seed(1);
    let size = config.vision.image_size;
    let images = Tensor::randn([args.batch, 3, size, size], (Kind::Float, device));
    let labels = Tensor::randint(args.classes as i64, [args.batch], (Kind::Int64, device));
    let mut extra = json!({});
    let times = match args.case.as_str() {
        "stage1" => {
            let params = Stage1Params {
                optimizer: AdamWConfig { lr: 1e-5, ..AdamWConfig::default() },
                precision: args.precision,
                ..Stage1Params::default()
            };
            let mut trainer = Stage1Trainer::new(&config, weights, &prompt_ids, device, &params)?;
            timed(args.warmup, args.steps, device, |i| {
                trainer.step(&images, &labels, 0, i)?;
                Ok(())
            })?
        }
        "stage2" => {
            let selected = match &args.selection {
                Some(path) => serde_json::from_str::<Vec<String>>(
                    &std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
                )?,
                None => random_selection(&config, args.k, 0),
            };
            let params = Stage2Params {
                optimizer: AdamWConfig { lr: 1e-6, ..AdamWConfig::default() },
                precision: args.precision,
                ..Stage2Params::default()
            };
            let start = weights.iter().map(|(k, t)| (k.clone(), t.copy())).collect();
            let shortcuts = if args.no_shortcuts {
                Shortcuts { cache_frozen_text: false, share_vision_trunk: false, frozen_without_autograd: true }
            } else {
                Shortcuts::default()
            };
            let mut trainer = Stage2Trainer::new(
                Stage2Setup {
                    config: &config,
                    weights: start,
                    frozen: &weights,
                    selected: &selected,
                    prompt_ids: &prompt_ids,
                    device,
                },
                &params,
                shortcuts,
            )?;
            extra = json!({
                "trainable": selected.len(),
                "shared_vision_blocks": trainer.shared_vision_blocks(),
                "lowest_selected_vision_block": lowest_block(&selected, "visual.transformer.resblocks."),
                "lowest_selected_text_block": lowest_block(&selected, "transformer.resblocks."),
                "selected_matmul_params": selected_matmul_params(&config, &selected),
            });
            timed(args.warmup, args.steps, device, |i| {
                trainer.step(&images, &labels, 0, i)?;
                Ok(())
            })?
        }
        "eval" => {
            let model = Clip::with_precision(&config, &weights, args.precision)?;
            let test = TestSet {
                images: Tensor::randint(256, [args.eval_images, size, size, 3], (Kind::Uint8, Device::Cpu)),
                labels: Tensor::randint(args.classes as i64, [args.eval_images], (Kind::Int64, Device::Cpu)),
            };
            let warm =
                TestSet { images: test.images.narrow(0, 0, args.batch), labels: test.labels.narrow(0, 0, args.batch) };
            for _ in 0..args.warmup {
                evaluate(&model, &warm, &prompt_ids, &classnames, device, args.batch)?;
            }
            timed(0, args.steps, device, |_| {
                evaluate(&model, &test, &prompt_ids, &classnames, device, args.batch)?;
                Ok(())
            })?
        }
        "adamw" => {
            // The optimizer alone over stage 2's selection (or, with --k 12, stage 1's tensors),
            // fused pass against per-tensor libtorch ops, on the same random gradients.
            let selected = random_selection(&config, args.k, 0);
            let mut rows = serde_json::Map::new();
            for fused in [true, false] {
                let params: Vec<(String, Tensor)> =
                    selected.iter().map(|n| (n.clone(), weights[n].copy().set_requires_grad(true))).collect();
                for (_, p) in &params {
                    (p * 0.0).sum(Kind::Float).backward();
                    p.grad().copy_(&(p.randn_like() * 1e-3));
                }
                let mut opt = AdamW::new(params, AdamWConfig::default());
                opt.set_fused(fused);
                let t = timed(args.warmup, args.steps, device, |_| {
                    opt.step();
                    Ok(())
                })?;
                rows.insert(if fused { "fused_s" } else { "ops_s" }.into(), json!(median(&t)));
            }
            extra = json!({ "trainable": selected.len(), "optimizer": rows });
            vec![0.0]
        }
        "parts" => {
            // What single shortcuts buy, one component at a time (median seconds of --steps):
            // the text tower as stage 1 runs it (all blocks trainable, forward + backward) over
            // 77 positions, over the longest prompt, and over the longest prompt with the last
            // block at the end token only; and the image tower's inference forward with every
            // token through the last block, and with the class token only.
            let mut w = weights.iter().map(|(k, t)| (k.clone(), t.copy())).collect::<Weights>();
            for name in clip_ast::train::trainable::all_block_tensors(&config) {
                let _ = w.get_mut(&name).unwrap().set_requires_grad(true);
            }
            let model = Clip::with_precision(&config, &w, args.precision)?;
            let ends = prompt_ids.argmax(-1, false);
            let text = |f: &dyn Fn() -> Tensor| -> Result<f64> {
                let t = timed(args.warmup, args.steps, device, |_| {
                    f().sum(Kind::Float).backward();
                    Ok(())
                })?;
                Ok(median(&t))
            };
            let full = text(&|| model.text.forward_all_tokens(&prompt_ids, 77, &ends))?;
            let trimmed = text(&|| model.text.forward_all_tokens(&prompt_ids, text_positions, &ends))?;
            let last = text(&|| model.text.forward(&prompt_ids))?;
            let frozen_text = {
                let t = timed(args.warmup, args.steps, device, |_| {
                    let _ = tch::no_grad(|| model.text.forward_all_tokens(&prompt_ids, 77, &ends));
                    Ok(())
                })?;
                median(&t)
            };
            let vision = |f: &dyn Fn() -> Tensor| -> Result<f64> {
                let t = timed(args.warmup, args.steps, device, |_| {
                    let _ = tch::no_grad(f);
                    Ok(())
                })?;
                Ok(median(&t))
            };
            let all_tokens = vision(&|| model.visual.forward_all_tokens(&images))?;
            let class_token = vision(&|| model.visual.forward(&images))?;
            extra = json!({ "parts": {
                "text_fwd_bwd_77_s": full, "text_fwd_bwd_trimmed_s": trimmed,
                "text_fwd_bwd_trimmed_last_block_at_end_token_s": last,
                "frozen_text_fwd_77_s": frozen_text,
                "vision_fwd_all_tokens_s": all_tokens, "vision_fwd_last_block_class_token_s": class_token,
            }});
            vec![0.0]
        }
        other => bail!("--case {other}: use stage1, stage2, eval, adamw or parts"),
    };
    let median = median(&times);
    let images_per_step = if args.case == "eval" { args.eval_images } else { args.batch } as f64;
    let mut out = json!({
        "side": "ours",
        "case": args.case,
        "preset": args.preset,
        "batch": args.batch,
        "classes": args.classes,
        "precision": format!("{:?}", args.precision).to_lowercase(),
        "threads": tch::get_num_threads(),
        "device": args.device,
        "step_s": times,
        "median_s": median,
        "images_per_s": images_per_step / median,
        "text_positions": text_positions,
        "peak_rss_mb": peak_rss_mb(),
    });
    out.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    println!("{out}");
    Ok(())
}

fn on_device(weights: Weights, device: Device) -> Weights {
    clip_ast::clip::model::weights_to_device(weights, device)
}

/// Seconds of each of `steps` calls after `warmup` untimed ones. On a GPU each call is waited
/// for, so that queued kernels count against the step that queued them.
fn timed(warmup: usize, steps: usize, device: Device, mut f: impl FnMut(usize) -> Result<()>) -> Result<Vec<f64>> {
    for i in 0..warmup {
        f(i)?;
    }
    let mut out = Vec::with_capacity(steps);
    for i in 0..steps {
        sync(device);
        let start = Instant::now();
        f(warmup + i)?;
        sync(device);
        out.push(start.elapsed().as_secs_f64());
    }
    Ok(out)
}

fn sync(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// K tensors per block of both towers, seeded.
fn random_selection(config: &ClipConfig, k: usize, seed: u64) -> Vec<String> {
    let fields = clip_ast::clip::config::block_tensor_shapes(1, 1);
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for prefix in block_prefixes(config, Towers::Both) {
        let mut names: Vec<String> = fields.iter().map(|(f, _)| format!("{prefix}.{f}")).collect();
        rng.shuffle(&mut names);
        out.extend(names.into_iter().take(k));
    }
    out
}

fn lowest_block(selected: &[String], prefix: &str) -> Option<usize> {
    selected.iter().filter_map(|n| n.strip_prefix(prefix)?.split('.').next()?.parse().ok()).min()
}

/// Elements of the selected tensors that are matrix-product weights (their gradients cost a
/// product each); bias and norm gradients are negligible.
fn selected_matmul_params(config: &ClipConfig, selected: &[String]) -> i64 {
    let shapes = config.tensor_shapes();
    selected
        .iter()
        .filter(|n| {
            n.ends_with("_weight")
                || n.ends_with("c_fc.weight")
                || n.ends_with("c_proj.weight")
                || n.ends_with("out_proj.weight")
        })
        .map(|n| shapes[n].iter().product::<i64>())
        .sum()
}

/// Peak resident set of this process, from /proc (0 where there is no /proc).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
