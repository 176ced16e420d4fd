//! The `clip-ast` command line: the command tree and the dispatch. Each command's arguments and
//! body live in `src/cli/`, its stage's settings in `src/settings/`.

use std::process::ExitCode;

use anyhow::Result;
use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use clip_ast::cli::{self, Shared};

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
    #[command(flatten)]
    shared: Shared,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import CLIP weights as a weights artifact (fp32 safetensors in OpenAI naming + config.json).
    ///
    /// Reads OpenAI's TorchScript archives (ViT-B-16.pt as the `clip` package downloads it;
    /// fp16 inside), OpenAI/open_clip-named .safetensors and Hugging Face CLIPModel
    /// .safetensors (a config.json beside it supplies heads and activation). The architecture
    /// is read off the tensor shapes. The same file imported twice is one artifact.
    ImportWeights(cli::weights::ImportWeights),
    /// Randomly initialised weights of a preset (OpenAI's init scales), as a weights artifact.
    InitWeights(cli::weights::InitWeights),
    /// Pretrain a small CLIP from scratch on a split's train images (the demo's foundation).
    ///
    /// Contrastive training with captions from several templates per class; the result is a
    /// weights artifact every other stage accepts.
    Pretrain(cli::weights::Pretrain),
    /// Make a few-shot split: the train/val images CoOp/Dassl sample for the seed, the test
    /// set preprocessed once, and a blake3 hash of every image used.
    Split(cli::split::Split),
    /// Stage 1: briefly fine-tune every transformer block and keep AdamW's moments.
    ///
    /// Records the optimizer steps run and, per tensor, the fraction of the second moment below
    /// eps (diagnostics.json). --min-steps repeats the data until enough steps have run.
    Stage1(cli::train::Stage1),
    /// Rank every block tensor by a score from stage 1 and choose the top K per block.
    ///
    /// Score rules: inv-sqrt-v (the existing implementation's; favours small gradients),
    /// sqrt-v (gradient RMS), update (|m̂|/(√v̂+eps)), weight-delta (|θ₁−θ₀|), random (baseline).
    /// `--score random --match params --like L` is the equal-budget baseline: per block, random
    /// tensors whose parameter count is as near as possible to selection L's in that block.
    /// selection.json repeats stage 1's step count and below-eps fractions; a `warning:` line
    /// says when they come from fewer than 4 steps or are mostly below eps (see stage1 --min-steps).
    Select(cli::train::Select),
    /// Stage 2: tune only the selected tensors with CE + λ·(image L1 + text L1 + KL) to frozen CLIP.
    Stage2(cli::train::Stage2),
    /// Top-1 and per-class accuracy on a split's test set: zero-shot, or with a stage-2 delta.
    ///
    /// metrics.csv: acc and macro_acc on test; val_acc, top-1 on the split's val images (same
    /// preprocessing and prompts as test), the number to choose settings by. Give a base and
    /// then a new split (--split B --split N) for base-to-novel: base_acc, new_acc (each split
    /// classified among its own class names, CoOp's definition), hm, and val_base_acc (the base
    /// split's val images); an `all` split reports the same from its two halves of classes, each
    /// half scored among its own names.
    Eval(cli::summarise::Eval),
    /// Linear-probe baseline: logistic regression on frozen image features of the train set,
    /// evaluated like `eval` (same metrics.csv, val_acc included).
    Probe(cli::summarise::Probe),
    /// Write image and text features (projected, not normalised) to a safetensors file.
    ///
    /// Images go through CLIP's test preprocessing (bicubic resize of the shorter side,
    /// centre crop, normalise). Output tensors: image_features [N, D], text_features [M, D],
    /// logit_scale (the stored log value).
    Embed(cli::features::Embed),
    /// Classify images against class names with a prompt template; prints a table on stdout.
    ZeroShot(cli::features::ZeroShot),
    /// Export a tuned model as a folder open_clip and transformers load, with its classifier.
    ///
    /// The whole model with the stage-2 tensors merged in (fp32): open_clip_model.safetensors +
    /// open_clip_config.json (local-dir:DIR), and a Hugging Face CLIPModel (model.safetensors,
    /// config.json, tokenizer and preprocessor files); classifier.safetensors + classes.json
    /// (the normalised class embeddings and logit scale the run was evaluated with); README.md
    /// (source, dataset, shots, seed, settings, val/test accuracy, how to load it).
    /// `import-weights DIR` reads the folder back.
    Export(cli::export::Export),
    /// Classify images and folders with a tuned model; writes CSV (path, top-k labels, probabilities).
    ///
    /// CLIP's test preprocessing, batched. Unreadable images are skipped with one warning line
    /// (refused with --strict).
    Predict(cli::export::Predict),
    /// Summarise base-to-novel evaluations over seeds: a table on stdout, and
    /// OUT.csv and OUT.png (harmonic mean against shots, one line per method).
    Report(cli::summarise::Report),
    /// List the store's artifacts: kind, key prefix, headline metric, inputs.
    Ls(cli::store::Ls),
    /// Check artifacts: output hashes, keys recomputed from params and inputs, inputs present and sound.
    ///
    /// An artifact built from one that fails (directly or further up) fails too, naming the
    /// input and the damaged artifact. With --rerun, also recompute each named artifact with the
    /// stage that made it, from its manifest's settings and inputs alone, and compare every file
    /// byte for byte. The rerun uses the thread count the manifest records unless --threads says
    /// otherwise (libtorch's results depend on it). A split is checked against its images
    /// instead: every image file it was made from is hashed again and compared with what it
    /// recorded. An imported checkpoint is checked by its content hash.
    Audit(cli::store::Audit),
    /// Run a pipeline file: a grid of experiments, each stage computed once and cached.
    ///
    /// Identical stages of different grid points (a split, stage 1 and selection shared by a
    /// sweep over stage-2 settings) are one node; what the store holds is reused. A `method`
    /// list puts CLIP-AST beside random-k (K random tensors per block), random-params (random
    /// tensors with CLIP-AST's parameter count per block), full-ft (λ from `[full-ft] lambda`,
    /// default 0: plain cross-entropy), zero-shot and linear-probe. Writes results.csv (one row
    /// per evaluation, every setting and metric, val_acc and val_base_acc among them, and the parameters it trained) and summary.csv (mean,
    /// std and 95% CI over seeds) to --out, with a [report] section also report.txt,
    /// report.csv and report.png (a table per protocol, printed; [report] subject adds
    /// paired.csv), and prints that folder. A [choose] section (by =
    /// "val_acc", among = ["stage2.lr", "stage2.lambda"]) keeps, per group of the other
    /// settings and seed, the combination with the best validation metric: chosen.csv and
    /// chosen-summary.csv. [report] baseline = "<method>" writes compare.csv: each other
    /// method's per-seed difference against it on the same split, mean and 95% CI.
    /// pipelines/README.md describes the file; `make demo` runs pipelines/demo.toml.
    Run(cli::store::Run),
    /// Remove artifacts no pipeline result references; shows what would go unless --yes.
    ///
    /// Roots are the eval artifacts named in the `eval` column of every results.csv under the
    /// given folders (default: ./results); they and everything they were made from (splits,
    /// weights, stage 1, selections, stage 2) are kept, all else in the store is removed.
    Gc(cli::store::Gc),
    /// Run stage commands one after another in this process: one JSON list of arguments a line
    /// on stdin (what `run --executor slurm` gives a job of `[slurm] group`). Stops at the
    /// first that fails, naming it.
    #[command(hide = true)]
    Stages,
}

/// `clip-ast stages`: each line's command, parsed as if given on the command line. The shared
/// flags are each command's own (every line spells out --store, --device and --threads).
fn run_stages() -> Result<()> {
    use anyhow::Context;
    for (n, line) in std::io::stdin().lines().enumerate() {
        let line = line.context("cannot read the stage commands on stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let argv: Vec<String> =
            serde_json::from_str(&line).with_context(|| format!("stdin line {}: not a JSON list of strings", n + 1))?;
        let what = argv.iter().take(1).cloned().collect::<String>();
        let cli = Cli::try_parse_from(std::iter::once("clip-ast".to_string()).chain(argv))
            .map_err(|e| anyhow::anyhow!("stdin line {}: {}", n + 1, one_line(&e)))?;
        if matches!(cli.command, Command::Stages | Command::Run(_)) {
            anyhow::bail!("stdin line {}: `{what}` is not a stage command", n + 1);
        }
        run(cli).with_context(|| format!("{what} (line {} of the group)", n + 1))?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    clip_ast::crash_point::check_env()?;
    clip_ast::train::checkpoint::check_env()?;
    clip_ast::interrupt::install();
    // Each line names its own store: opening the default one here could create it.
    if matches!(cli.command, Command::Stages) {
        return run_stages();
    }
    let ctx = cli.shared.context()?;
    match cli.command {
        Command::ImportWeights(c) => c.run(&ctx),
        Command::InitWeights(c) => c.run(&ctx),
        Command::Pretrain(c) => c.run(&ctx),
        Command::Split(c) => c.run(&ctx),
        Command::Stage1(c) => c.run(&ctx),
        Command::Select(c) => c.run(&ctx),
        Command::Stage2(c) => c.run(&ctx),
        Command::Eval(c) => c.run(&ctx),
        Command::Probe(c) => c.run(&ctx),
        Command::Embed(c) => c.run(&ctx),
        Command::ZeroShot(c) => c.run(&ctx),
        Command::Export(c) => c.run(&ctx),
        Command::Predict(c) => c.run(&ctx),
        Command::Report(c) => c.run(&ctx),
        Command::Ls(c) => c.run(&ctx),
        Command::Audit(c) => c.run(ctx, cli.shared.threads.is_some()),
        Command::Run(c) => c.run(&ctx, &cli.shared),
        Command::Gc(c) => c.run(&ctx),
        Command::Stages => unreachable!("handled before the store is opened"),
    }
}

/// A clap usage error as the one `error:` line every mistake gets: the message, clap's
/// `[possible values: ...]` and tips joined, its usage and `--help` pointer left out.
fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect();
    kept.join(" ").trim_start_matches("error: ").to_string()
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            if clip_ast::interrupt::is_interrupted(&e) {
                return ExitCode::from(clip_ast::interrupt::EXIT_INTERRUPTED);
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_one_line_naming_the_value_and_the_choices() {
        let e = Cli::try_parse_from(["clip-ast", "select", "--stage1", "x", "--score", "biggest"]).err().unwrap();
        let line = one_line(&e);
        assert!(!line.contains('\n') && !line.starts_with("error"), "{line}");
        assert!(
            line.contains("'biggest'") && line.contains("inv-sqrt-v, sqrt-v, update, weight-delta, random"),
            "{line}"
        );
        let e = Cli::try_parse_from(["clip-ast", "stage1", "--weights", "w"]).err().unwrap();
        assert!(one_line(&e).contains("--split <SPLIT>"), "{}", one_line(&e));
    }

    #[test]
    fn shared_flags_go_before_or_after_the_command() {
        for args in [["clip-ast", "--store", "s", "ls"], ["clip-ast", "ls", "--store", "s"]] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.shared.store.as_deref(), Some(std::path::Path::new("s")));
        }
    }
}
