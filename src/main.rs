//! The `clip-ast` command line: parse, call the library, print the one output path on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use clip_ast::clip::config::Activation;
use clip_ast::clip::import;
use clip_ast::device::parse_device;
use clip_ast::clip::init::init_weights;
use clip_ast::clip::{ClipConfig, config::PRESETS};
use clip_ast::embed::{EmbedRequest, embed};
use clip_ast::zero_shot::{ZeroShotRequest, zero_shot};

/// Adapt CLIP to a few-shot image classification task with CLIP-AST.
///
/// Each stage command prints one line on stdout (what it wrote); logs go to stderr.
#[derive(Parser)]
#[command(name = "clip-ast", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Shared {
    /// cpu, cuda, cuda:N, or auto (the first GPU when libtorch sees one)
    #[arg(long, default_value = "cpu", global = true)]
    device: String,
    /// CPU threads for libtorch (default: libtorch's choice). Never changes results' keys.
    #[arg(long, global = true)]
    threads: Option<i32>,
    /// No progress output on stderr
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Convert CLIP weights to fp32 safetensors in OpenAI naming plus config.json.
    ///
    /// Reads OpenAI's TorchScript archives (ViT-B-16.pt as the `clip` package downloads it;
    /// fp16 inside), OpenAI/open_clip-named .safetensors and Hugging Face CLIPModel
    /// .safetensors (a config.json beside it supplies heads and activation). The architecture
    /// is read off the tensor shapes.
    ImportWeights {
        /// The checkpoint to import
        file: PathBuf,
        /// Folder to write model.safetensors and config.json into (must not exist yet)
        #[arg(long)]
        out: PathBuf,
        /// MLP activation for OpenAI-named safetensors: quick_gelu (OpenAI) or gelu (LAION)
        #[arg(long, value_parser = parse_activation)]
        activation: Option<Activation>,
        #[command(flatten)]
        shared: Shared,
    },
    /// Write randomly initialised weights of a preset (OpenAI's init scales), for training
    /// from scratch or for trying the tools without a checkpoint.
    InitWeights {
        /// mini, ViT-B-16, ViT-B-32 or ViT-L-14
        #[arg(long, default_value = "mini")]
        preset: String,
        #[arg(long, default_value_t = 0)]
        seed: i64,
        /// Folder to write model.safetensors and config.json into (must not exist yet)
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        shared: Shared,
    },
    /// Classify images against class names with a prompt template; prints a table on stdout.
    ZeroShot {
        /// A weights folder or any checkpoint import-weights reads
        #[arg(long)]
        weights: PathBuf,
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
    /// Write image and text features (projected, not normalised) to a safetensors file.
    ///
    /// Images go through CLIP's test preprocessing (bicubic resize of the shorter side,
    /// centre crop, normalise). Output tensors: image_features [N, D], text_features [M, D],
    /// logit_scale (the stored log value).
    Embed {
        /// A weights folder (from import-weights) or any checkpoint import-weights reads
        #[arg(long)]
        weights: PathBuf,
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

fn apply_shared(shared: &Shared) -> Result<tch::Device> {
    if let Some(n) = shared.threads {
        if n < 1 {
            bail!("--threads {n}: must be at least 1");
        }
        tch::set_num_threads(n);
    }
    parse_device(&shared.device)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::ImportWeights { file, out, activation, shared } => {
            apply_shared(&shared)?;
            let model = import::load(&file, activation)?;
            publish_folder(&out, |dir| import::write_canonical(dir, &model.config, &model.weights))?;
            if !shared.quiet {
                eprintln!("imported {} ({})", file.display(), model.format.describe());
            }
            println!("{}", out.display());
        }
        Command::InitWeights { preset, seed, out, shared } => {
            apply_shared(&shared)?;
            let config = ClipConfig::preset(&preset)
                .map_err(|_| anyhow::anyhow!("--preset `{preset}` is unknown; use one of {}", PRESETS.join(", ")))?;
            let weights = init_weights(&config, seed);
            publish_folder(&out, |dir| import::write_canonical(dir, &config, &weights))?;
            println!("{}", out.display());
        }
        Command::ZeroShot { weights, images, classes, template, shared } => {
            let device = apply_shared(&shared)?;
            let result = zero_shot(&ZeroShotRequest { weights, images: images.clone(), classes: classes.clone(), template, device })?;
            print_zero_shot_table(&images, &classes, &result.probabilities);
        }
        Command::Embed { weights, images, texts, truncate, out, shared } => {
            let device = apply_shared(&shared)?;
            embed(&EmbedRequest { weights, images, texts, truncate, out: out.clone(), device })?;
            println!("{}", out.display());
        }
    }
    Ok(())
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

/// Fill a sibling temp folder, then rename it into place: `out` appears whole or not at all.
fn publish_folder(out: &std::path::Path, fill: impl FnOnce(&std::path::Path) -> Result<()>) -> Result<()> {
    if out.exists() {
        bail!("{}: already exists; choose another --out or remove it", out.display());
    }
    let name = out.file_name().with_context(|| format!("{}: not a folder path", out.display()))?;
    let tmp = out.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let result = fill(&tmp).and_then(|()| {
        std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot move into place", out.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
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
