//! The `clip-ast` command line: parse, call the library, print the one output path on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use clip_ast::clip::config::{Activation, PRESETS};
use clip_ast::clip::layers::Precision;
use clip_ast::device::parse_device;
use clip_ast::embed::{EmbedRequest, embed};
use clip_ast::stages::{self, StageContext};
use clip_ast::store::{ArtifactKind, Store};
use clip_ast::train::adamw::AdamWConfig;
use clip_ast::train::losses::ConsistencyWeights;
use clip_ast::train::schedule::WarmupCosine;
use clip_ast::train::select::{SCORE_RULES, SelectRequest};
use clip_ast::train::stage1::Stage1Params;
use clip_ast::train::stage2::Stage2Params;
use clip_ast::zero_shot::{ZeroShotRequest, zero_shot};

/// Adapt CLIP to a few-shot image classification task with CLIP-AST.
///
/// A run is a chain of stages, each an artifact in the store (`./artifacts`, `--store`, or
/// $CLIP_AST_STORE) keyed by everything that determines it, so nothing is computed twice:
///
///   clip-ast import-weights ViT-B-16.pt                     → W
///   clip-ast split --dataset caltech101 --root DATA --shots 16 --seed 1   → S
///   clip-ast stage1 --split S --weights W                   → T
///   clip-ast select --stage1 T --k 6                        → L
///   clip-ast stage2 --split S --weights W --selection L     → D
///   clip-ast eval --split S --weights W --stage2 D          → metrics.csv
///
/// Each stage command prints one line on stdout, the artifact's directory; A can be that
/// directory or a unique prefix of its key. Logs go to stderr.
#[derive(Parser)]
#[command(name = "clip-ast", version, about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Shared {
    /// Artifact store (default: $CLIP_AST_STORE, else ./artifacts)
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// cpu, cuda, cuda:N, or auto (the first GPU when libtorch sees one)
    #[arg(long, default_value = "cpu", global = true)]
    device: String,
    /// CPU threads for libtorch (default: libtorch's choice). Recorded, never part of a key.
    #[arg(long, global = true)]
    threads: Option<i32>,
    /// No progress output on stderr
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct OptimizerArgs {
    /// AdamW weight decay (decoupled)
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    beta2: f64,
    #[arg(long, default_value_t = 1e-8)]
    eps: f64,
    /// Use AMSGrad's running maximum of the second moment
    #[arg(long)]
    amsgrad: bool,
}

impl OptimizerArgs {
    fn config(&self, lr: f64) -> Result<AdamWConfig> {
        for (name, v) in [("--lr", lr), ("--weight-decay", self.weight_decay), ("--eps", self.eps)] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{name} {v}: must be a finite number ≥ 0");
            }
        }
        for (name, v) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                bail!("{name} {v}: must be in [0, 1)");
            }
        }
        Ok(AdamWConfig {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Import CLIP weights as a weights artifact (fp32 safetensors in OpenAI naming + config.json).
    ///
    /// Reads OpenAI's TorchScript archives (ViT-B-16.pt as the `clip` package downloads it;
    /// fp16 inside), OpenAI/open_clip-named .safetensors and Hugging Face CLIPModel
    /// .safetensors (a config.json beside it supplies heads and activation). The architecture
    /// is read off the tensor shapes. The same file imported twice is one artifact.
    ImportWeights {
        /// The checkpoint to import
        file: PathBuf,
        /// MLP activation for OpenAI-named safetensors: quick_gelu (OpenAI) or gelu (LAION)
        #[arg(long, value_parser = parse_activation)]
        activation: Option<Activation>,
        #[command(flatten)]
        shared: Shared,
    },
    /// Randomly initialised weights of a preset (OpenAI's init scales), as a weights artifact.
    InitWeights {
        /// mini, ViT-B-16, ViT-B-32 or ViT-L-14
        #[arg(long, default_value = "mini")]
        preset: String,
        #[arg(long, default_value_t = 0)]
        seed: i64,
        #[command(flatten)]
        shared: Shared,
    },
    /// Pretrain a small CLIP from scratch on a split's train images (the demo's foundation).
    ///
    /// Contrastive training with captions from several templates per class; the result is a
    /// weights artifact every other stage accepts.
    Pretrain {
        /// Split artifact whose train images and class names are the training data
        #[arg(long)]
        split: String,
        /// Architecture (mini for the demo)
        #[arg(long, default_value = "mini")]
        preset: String,
        /// Seed of the random initialisation
        #[arg(long, default_value_t = 0)]
        init_seed: i64,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 8)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Shuffling, augmentation and caption seed
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        shared: Shared,
    },
    /// Make a few-shot split: the train/val images CoOp/Dassl sample for the seed, the test
    /// set preprocessed once, and a blake3 hash of every image used.
    Split {
        /// caltech101, oxford_pets, stanford_cars, oxford_flowers, food101, fgvc_aircraft,
        /// sun397, dtd, eurosat, ucf101, imagenet, imagefolder or fashion-mnist
        #[arg(long)]
        dataset: String,
        /// The folder holding the dataset folder (CoOp's DATASET.ROOT), or the dataset folder
        #[arg(long)]
        root: PathBuf,
        /// Images per class in the train set (val gets min(K, 4))
        #[arg(long, allow_negative_numbers = true)]
        shots: i64,
        /// Few-shot seed, as CoOp's --seed
        #[arg(long, allow_negative_numbers = true)]
        seed: i64,
        /// Classes to keep: all, base (first half) or new (second half)
        #[arg(long, default_value = "all")]
        subsample: String,
        /// Side of the preprocessed test images (the model's input size)
        #[arg(long, default_value_t = 224)]
        image_size: u32,
        /// Seed of the 50/20/30 split made when the dataset has no split file
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        split_seed: i64,
        /// blake3 cache file (default: $XDG_CACHE_HOME/clip-ast/file-hashes.json)
        #[arg(long)]
        hash_cache: Option<PathBuf>,
        /// Keep only the first N test images of each class (quick evaluations)
        #[arg(long)]
        test_per_class: Option<usize>,
        #[command(flatten)]
        shared: Shared,
    },
    /// Stage 1: briefly fine-tune every transformer block and keep AdamW's moments.
    Stage1 {
        /// Split artifact (directory or key prefix)
        #[arg(long)]
        split: String,
        /// Weights artifact
        #[arg(long)]
        weights: String,
        #[arg(long, default_value_t = 1e-5)]
        lr: f64,
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Shuffling and augmentation seed (default: the split's seed)
        #[arg(long)]
        seed: Option<u64>,
        /// fp32, or bf16 products from bf16 weight copies (fp32 master weights and state)
        #[arg(long, default_value = "fp32")]
        precision: Precision,
        #[command(flatten)]
        optimizer: OptimizerArgs,
        #[command(flatten)]
        shared: Shared,
    },
    /// Rank every block tensor by a score from stage 1 and choose the top K per block.
    #[command(after_help = "Score rules: inv-sqrt-v (the existing implementation's; favours small gradients), \
sqrt-v (gradient RMS), update (|m̂|/(√v̂+eps)), weight-delta (|θ₁−θ₀|), random (baseline).")]
    Select {
        /// Stage-1 artifact
        #[arg(long)]
        stage1: String,
        /// Tensors chosen per block (a block has 12)
        #[arg(long, default_value_t = 6)]
        k: usize,
        /// Score rule
        #[arg(long, default_value = "inv-sqrt-v", help = format!("One of {SCORE_RULES}"))]
        score: String,
        /// both, vision or text
        #[arg(long, default_value = "both")]
        towers: String,
        /// Seed of the random rule
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        shared: Shared,
    },
    /// Stage 2: tune only the selected tensors with CE + λ·(image L1 + text L1 + KL) to frozen CLIP.
    Stage2 {
        #[arg(long)]
        split: String,
        #[arg(long)]
        weights: String,
        /// Selection artifact
        #[arg(long)]
        selection: String,
        /// Start from the pretrained weights, or from stage 1's tuned tensors
        #[arg(long, default_value = "pretrained", value_parser = ["pretrained", "stage1"])]
        init: String,
        #[arg(long, default_value_t = 1e-7)]
        lr: f64,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// Linear warm-up epochs before the cosine decay
        #[arg(long, default_value_t = 3)]
        warmup_epochs: usize,
        /// Learning rate the warm-up starts from
        #[arg(long, default_value_t = 1e-9)]
        warmup_lr: f64,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Weight of all three self-consistency terms
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        lmbd: f64,
        /// Override λ for the image-feature L1 term
        #[arg(long, allow_negative_numbers = true)]
        lambda_img: Option<f64>,
        /// Override λ for the text-feature L1 term
        #[arg(long, allow_negative_numbers = true)]
        lambda_txt: Option<f64>,
        /// Override λ for the KL term
        #[arg(long, allow_negative_numbers = true)]
        lambda_kl: Option<f64>,
        /// Shuffling and augmentation seed (default: the split's seed)
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "fp32")]
        precision: Precision,
        #[command(flatten)]
        optimizer: OptimizerArgs,
        #[command(flatten)]
        shared: Shared,
    },
    /// Top-1 and per-class accuracy on a split's test set: zero-shot, or with a stage-2 delta.
    ///
    /// Give a base and then a new split (--split B --split N) for base-to-novel: base, new and
    /// harmonic mean.
    Eval {
        /// Split artifact; twice for base then new
        #[arg(long = "split", required = true)]
        splits: Vec<String>,
        #[arg(long)]
        weights: String,
        /// Stage-2 artifact (omit for zero-shot)
        #[arg(long)]
        stage2: Option<String>,
        #[arg(long, default_value = "fp32")]
        precision: Precision,
        #[command(flatten)]
        shared: Shared,
    },
    /// Linear-probe baseline: logistic regression on frozen image features of the train set,
    /// evaluated like `eval` (same metrics.csv).
    Probe {
        #[arg(long)]
        split: String,
        #[arg(long)]
        weights: String,
        #[command(flatten)]
        shared: Shared,
    },
    /// Write image and text features (projected, not normalised) to a safetensors file.
    ///
    /// Images go through CLIP's test preprocessing (bicubic resize of the shorter side,
    /// centre crop, normalise). Output tensors: image_features [N, D], text_features [M, D],
    /// logit_scale (the stored log value).
    Embed {
        /// A weights artifact (directory or key prefix) or any checkpoint import-weights reads
        #[arg(long)]
        weights: String,
        /// An image file (JPEG or PNG); repeat for several
        #[arg(long = "image")]
        images: Vec<PathBuf>,
        /// A text to encode; repeat for several
        #[arg(long = "text")]
        texts: Vec<String>,
        /// Cut texts longer than the 77-token context instead of refusing them
        #[arg(long)]
        truncate: bool,
        /// Output .safetensors file
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "fp32")]
        precision: Precision,
        #[command(flatten)]
        shared: Shared,
    },
    /// Classify images against class names with a prompt template; prints a table on stdout.
    ZeroShot {
        /// A weights artifact or any checkpoint import-weights reads
        #[arg(long)]
        weights: String,
        /// An image file; repeat for several
        #[arg(long = "image", required = true)]
        images: Vec<PathBuf>,
        /// A class name (underscores become spaces); repeat, at least two
        #[arg(long = "class", required = true)]
        classes: Vec<String>,
        /// Prompt template; `{}` is replaced by the class name
        #[arg(long, default_value = "a photo of a {}.")]
        template: String,
        #[command(flatten)]
        shared: Shared,
    },
    /// Summarise base-to-novel evaluations over seeds: a table on stdout, and
    /// OUT.csv and OUT.png (harmonic mean against shots, one line per method).
    Report {
        /// Eval artifacts (directories or key prefixes)
        #[arg(required = true)]
        evals: Vec<String>,
        /// Path prefix of the CSV and PNG to write
        #[arg(long, default_value = "report")]
        out: PathBuf,
        /// Title of the plot
        #[arg(long, default_value = "clip-ast")]
        title: String,
        #[command(flatten)]
        shared: Shared,
    },
    /// List the store's artifacts: kind, key prefix, headline metric, inputs.
    Ls {
        #[command(flatten)]
        shared: Shared,
    },
    /// Check artifacts: output hashes, keys recomputed from params and inputs, inputs present.
    ///
    /// With --rerun, also recompute each named artifact with the stage that made it, from its
    /// manifest's settings and inputs alone, and compare every file byte for byte. The rerun
    /// uses the thread count the manifest records unless --threads says otherwise (libtorch's
    /// results depend on it). Splits and imported checkpoints are checked by their content
    /// hashes instead.
    Audit {
        /// Artifacts to check (default: all; --rerun needs them named)
        artifacts: Vec<String>,
        /// Recompute the named artifacts and compare their files byte for byte
        #[arg(long)]
        rerun: bool,
        #[command(flatten)]
        shared: Shared,
    },
    /// Run a pipeline file: a grid of experiments, each stage computed once and cached.
    ///
    /// Identical stages of different grid points (a split, stage 1 and selection shared by a
    /// sweep over stage-2 settings) are one node; what the store holds is reused. A `method`
    /// list puts CLIP-AST beside random-k, full-ft, zero-shot and linear-probe. Writes
    /// results.csv (one row per evaluation, every setting and metric) and summary.csv (mean,
    /// std and 95% CI over seeds) to --out, with a [report] section also report.csv and
    /// report.png (printing the table), and prints that folder. pipelines/README.md describes
    /// the file; `make demo` runs pipelines/demo.toml.
    Run {
        /// The pipeline file (pipelines/*.toml)
        pipeline: PathBuf,
        /// Print per stage how many would run, how many are cached, and how many a naive
        /// sweep would run; run nothing
        #[arg(long)]
        dry_run: bool,
        /// Stages run at once (independent ones: different grid points, or stages of one
        /// point that do not need each other)
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Results folder (default: results/<pipeline name>/)
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        executor: clip_ast::pipeline::slurm::ExecutorArgs,
        #[command(flatten)]
        shared: Shared,
    },
    /// Remove artifacts no pipeline result references; shows what would go unless --yes.
    ///
    /// Roots are the eval artifacts named in the `eval` column of every results.csv under the
    /// given folders (default: ./results); they and everything they were made from (splits,
    /// weights, stage 1, selections, stage 2) are kept, all else in the store is removed.
    Gc {
        /// Results folders (searched recursively for results.csv) or results.csv files
        results: Vec<PathBuf>,
        /// Remove; without it, only list what would go
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        shared: Shared,
    },
}

fn parse_activation(s: &str) -> Result<Activation, String> {
    match s {
        "quick_gelu" | "quick-gelu" => Ok(Activation::QuickGelu),
        "gelu" => Ok(Activation::Gelu),
        _ => Err(format!("`{s}` is not an activation: use quick_gelu or gelu")),
    }
}

fn context(shared: &Shared) -> Result<StageContext> {
    if let Some(n) = shared.threads {
        if n < 1 {
            bail!("--threads {n}: must be at least 1");
        }
        tch::set_num_threads(n);
    }
    Ok(StageContext {
        store: Store::open(shared.store.as_deref())?,
        device: parse_device(&shared.device)?,
        threads: tch::get_num_threads() as usize,
        quiet: shared.quiet,
        rerun: None,
    })
}

/// A weights argument may be an artifact or a checkpoint file that embed/zero-shot read directly.
fn weights_path(ctx: &StageContext, reference: &str) -> Result<PathBuf> {
    let path = PathBuf::from(reference);
    if path.is_file() || (path.is_dir() && path.join("model.safetensors").is_file()) {
        return Ok(path);
    }
    Ok(ctx.resolve(reference, ArtifactKind::Weights)?.dir)
}

fn run(cli: Cli) -> Result<()> {
    clip_ast::crash_point::check_env()?;
    match cli.command {
        Command::ImportWeights { file, activation, shared } => {
            let ctx = context(&shared)?;
            println!("{}", stages::weights::import_weights(&ctx, &file, activation)?.dir.display());
        }
        Command::InitWeights { preset, seed, shared } => {
            let ctx = context(&shared)?;
            if !PRESETS.contains(&preset.as_str()) {
                bail!("--preset `{preset}` is unknown; use one of {}", PRESETS.join(", "));
            }
            println!("{}", stages::weights::init(&ctx, &preset, seed)?.dir.display());
        }
        Command::Pretrain { split, preset, init_seed, lr, epochs, batch_size, seed, shared } => {
            let ctx = context(&shared)?;
            check_positive(&[("--epochs", epochs), ("--batch-size", batch_size)])?;
            let split = ctx.resolve(&split, ArtifactKind::Split)?;
            let defaults = clip_ast::train::pretrain::PretrainParams::default();
            let params = clip_ast::train::pretrain::PretrainParams {
                optimizer: AdamWConfig { lr, ..defaults.optimizer.clone() },
                epochs,
                batch_size,
                seed,
                ..defaults
            };
            println!("{}", stages::pretrain::run(&ctx, &split, &preset, init_seed, &params)?.dir.display());
        }
        Command::Split {
            dataset,
            root,
            shots,
            seed,
            subsample,
            image_size,
            split_seed,
            hash_cache,
            test_per_class,
            shared,
        } => {
            let ctx = context(&shared)?;
            let request = clip_ast::data::split::SplitRequest {
                dataset,
                root,
                shots,
                seed,
                subsample: clip_ast::data::subsample::Subsample::parse(&subsample)?,
                image_size,
                split_seed,
                test_per_class,
                hash_cache: hash_cache.or_else(clip_ast::data::file_hashes::default_cache_path),
                save_generated_split: true,
                quiet: shared.quiet,
            };
            println!("{}", stages::split::run(&ctx, &request)?.dir.display());
        }
        Command::Stage1 { split, weights, lr, epochs, batch_size, seed, precision, optimizer, shared } => {
            let ctx = context(&shared)?;
            let (split, weights) =
                (ctx.resolve(&split, ArtifactKind::Split)?, ctx.resolve(&weights, ArtifactKind::Weights)?);
            check_positive(&[("--epochs", epochs), ("--batch-size", batch_size)])?;
            let seed = seed.map_or_else(|| split_seed(&split), Ok)?;
            let params = Stage1Params { optimizer: optimizer.config(lr)?, epochs, batch_size, seed, precision };
            println!("{}", stages::stage1::run(&ctx, &split, &weights, &params)?.dir.display());
        }
        Command::Select { stage1, k, score, towers, seed, shared } => {
            let ctx = context(&shared)?;
            let request = SelectRequest { rule: score.parse()?, k, towers: towers.parse()?, seed };
            let stage1 = ctx.resolve(&stage1, ArtifactKind::Stage1)?;
            println!("{}", stages::select::run(&ctx, &stage1, &request)?.dir.display());
        }
        Command::Stage2 {
            split,
            weights,
            selection,
            init,
            lr,
            epochs,
            warmup_epochs,
            warmup_lr,
            batch_size,
            lmbd,
            lambda_img,
            lambda_txt,
            lambda_kl,
            seed,
            precision,
            optimizer,
            shared,
        } => {
            let ctx = context(&shared)?;
            check_positive(&[("--epochs", epochs), ("--batch-size", batch_size)])?;
            if warmup_epochs >= epochs {
                bail!("--warmup-epochs {warmup_epochs} must be less than --epochs {epochs}");
            }
            let lambdas = ConsistencyWeights {
                image_l1: lambda_img.unwrap_or(lmbd),
                text_l1: lambda_txt.unwrap_or(lmbd),
                kl: lambda_kl.unwrap_or(lmbd),
            };
            for (flag, v) in [
                ("--lmbd", lmbd),
                ("--lambda-img", lambdas.image_l1),
                ("--lambda-txt", lambdas.text_l1),
                ("--lambda-kl", lambdas.kl),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("{flag} {v}: λ must be a finite number ≥ 0");
                }
            }
            let split = ctx.resolve(&split, ArtifactKind::Split)?;
            let weights = ctx.resolve(&weights, ArtifactKind::Weights)?;
            let selection = ctx.resolve(&selection, ArtifactKind::Selection)?;
            let seed = seed.map_or_else(|| split_seed(&split), Ok)?;
            let params = Stage2Params {
                optimizer: optimizer.config(lr)?,
                schedule: WarmupCosine { base_lr: lr, warmup_start_lr: warmup_lr, warmup_epochs, epochs },
                lambdas,
                batch_size,
                seed,
                precision,
            };
            let init = if init == "stage1" { stages::stage2::Init::Stage1 } else { stages::stage2::Init::Pretrained };
            println!("{}", stages::stage2::run(&ctx, &split, &weights, &selection, init, &params)?.dir.display());
        }
        Command::Eval { splits, weights, stage2, precision, shared } => {
            let ctx = context(&shared)?;
            let splits = splits.iter().map(|s| ctx.resolve(s, ArtifactKind::Split)).collect::<Result<Vec<_>>>()?;
            let weights = ctx.resolve(&weights, ArtifactKind::Weights)?;
            let stage2 = stage2.map(|s| ctx.resolve(&s, ArtifactKind::Stage2)).transpose()?;
            println!("{}", stages::eval::run(&ctx, &splits, &weights, stage2.as_ref(), precision)?.dir.display());
        }
        Command::Probe { split, weights, shared } => {
            let ctx = context(&shared)?;
            let (split, weights) =
                (ctx.resolve(&split, ArtifactKind::Split)?, ctx.resolve(&weights, ArtifactKind::Weights)?);
            println!("{}", stages::probe::run(&ctx, &split, &weights)?.dir.display());
        }
        Command::Embed { weights, images, texts, truncate, out, precision, shared } => {
            let ctx = context(&shared)?;
            let weights = weights_path(&ctx, &weights)?;
            embed(&EmbedRequest { weights, images, texts, truncate, out: out.clone(), device: ctx.device, precision })?;
            println!("{}", out.display());
        }
        Command::ZeroShot { weights, images, classes, template, shared } => {
            let ctx = context(&shared)?;
            let weights = weights_path(&ctx, &weights)?;
            let request = ZeroShotRequest {
                weights,
                images: images.clone(),
                classes: classes.clone(),
                template,
                device: ctx.device,
            };
            print_zero_shot_table(&images, &classes, &zero_shot(&request)?.probabilities);
        }
        Command::Report { evals, out, title, shared } => {
            let ctx = context(&shared)?;
            let rows = evals
                .iter()
                .map(|e| clip_ast::report::read_metrics(&ctx.resolve(e, ArtifactKind::Eval)?.file("metrics.csv")))
                .collect::<Result<Vec<_>>>()?;
            let summaries = clip_ast::report::summarize(&rows);
            clip_ast::report::write_csv(&summaries, &out.with_extension("csv"))?;
            clip_ast::report::plot(&summaries, &out.with_extension("png"), &title)?;
            print!("{}", clip_ast::report::table(&summaries));
        }
        Command::Ls { shared } => {
            let ctx = context(&shared)?;
            for line in stages::listing::lines(&ctx.store)? {
                println!("{line}");
            }
        }
        Command::Audit { artifacts, rerun: true, shared } => {
            if artifacts.is_empty() {
                bail!("--rerun recomputes what it is given: name the artifacts (keys, prefixes or folders)");
            }
            let mut ctx = context(&shared)?;
            let mut bad = 0;
            for reference in &artifacts {
                let artifact = ctx.store.resolve(reference, None)?;
                let report = clip_ast::store::audit::audit(&ctx.store, &artifact.dir);
                if !report.is_clean() {
                    bail!("{report}; fix what audit reports before a rerun");
                }
                if shared.threads.is_none() {
                    tch::set_num_threads(artifact.manifest.threads.max(1) as i32);
                    ctx.threads = artifact.manifest.threads.max(1);
                }
                let report = stages::rerun::rerun(&ctx, &artifact)?;
                let (kind, short) = (&artifact.kind, artifact.key.short());
                if let Some(machine) = &report.other_machine {
                    println!("    {kind}/{short}: {machine}; comparing numbers, not bytes");
                }
                for note in &report.within_tolerance {
                    println!("    {kind}/{short}: {note}");
                }
                if report.problems.is_empty() {
                    let files = artifact.manifest.outputs.len();
                    let how = if report.within_tolerance.is_empty() { "byte for byte" } else { "within tolerance" };
                    println!("ok  {kind}/{short}: rerun wrote the same {files} file(s), {how}");
                }
                for problem in &report.problems {
                    println!("BAD {kind}/{short}: {problem}");
                }
                bad += usize::from(!report.problems.is_empty());
            }
            if bad > 0 {
                bail!("{bad} of {} rerun(s) differ from the store", artifacts.len());
            }
        }
        Command::Audit { artifacts, rerun: false, shared } => {
            let ctx = context(&shared)?;
            let reports = if artifacts.is_empty() {
                clip_ast::store::audit::audit_all(&ctx.store)?
            } else {
                artifacts
                    .iter()
                    .map(|a| Ok(clip_ast::store::audit::audit(&ctx.store, &ctx.store.locate(a, None)?)))
                    .collect::<Result<Vec<_>>>()?
            };
            let bad = reports.iter().filter(|r| !r.is_clean()).count();
            for report in &reports {
                println!("{report}");
            }
            if bad > 0 {
                bail!("{bad} of {} artifact(s) failed the audit", reports.len());
            }
        }
        Command::Run { pipeline, dry_run, jobs, out, executor, shared } => {
            let ctx = context(&shared)?;
            let (threads, store) = (shared.threads, shared.store.clone());
            let options = clip_ast::pipeline::RunOptions { pipeline, dry_run, jobs, out, executor, threads, store };
            for line in clip_ast::pipeline::run(&ctx, &options)? {
                println!("{line}");
            }
        }
        Command::Gc { results, yes, shared } => {
            let ctx = context(&shared)?;
            for line in clip_ast::pipeline::gc(&ctx.store, &results, yes)? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn check_positive(values: &[(&str, usize)]) -> Result<()> {
    for (flag, v) in values {
        if *v == 0 {
            bail!("{flag} 0: must be at least 1");
        }
    }
    Ok(())
}

fn split_seed(split: &clip_ast::store::Artifact) -> Result<u64> {
    let seed = stages::split_data::read_split(split)?.seed;
    u64::try_from(seed).map_err(|_| anyhow::anyhow!("the split's seed {seed} is negative; pass --seed"))
}

fn print_zero_shot_table(images: &[PathBuf], classes: &[String], probabilities: &[Vec<f32>]) {
    let name_width = images.iter().map(|p| file_name(p).len()).max().unwrap_or(5).max(5);
    print!("{:name_width$}  {:>16}", "image", "predicted");
    for class in classes {
        print!("  {:>10.10}", class);
    }
    println!();
    for (image, probs) in images.iter().zip(probabilities) {
        let best = probs.iter().enumerate().fold(0, |best, (i, p)| if *p > probs[best] { i } else { best });
        print!("{:name_width$}  {:>16.16}", file_name(image), classes[best]);
        for p in probs {
            print!("  {:>10.3}", p);
        }
        println!();
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    // Panics are bugs, not user mistakes: keep them to one line unless a backtrace is asked for.
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            let first = msg.lines().next().unwrap_or("");
            eprintln!("error: internal error (please report): {first}");
        }));
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
