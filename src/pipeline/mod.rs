//! `clip-ast run`: a pipeline file (TOML, see pipelines/README.md) expanded into a grid of
//! experiments, merged into one graph of stages where identical stages are one node, run with
//! N workers over the artifact store, and summarised in results.csv and summary.csv.
//!
//! file → grid → chain (per point) → graph (keys from each stage's `spec`) → executor → results, summary

mod chain;
pub mod choose;
mod compare;
mod env;
mod estimate;
mod executor;
pub mod export_chosen;
pub mod file;
pub mod gc;
pub mod graph;
pub mod grid;
mod method;
mod progress;
mod report_input;
mod results;
mod schema;
pub mod slurm;
mod summary;
mod target_mean;
pub mod targets;
mod test_chosen;
mod trainable;
mod value;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

pub use gc::gc;
pub use graph::{Graph, StageCount};

use crate::data::file_hashes::default_cache_path;
use crate::stages::StageContext;
use crate::store::Store;

/// Every key of every section, as `section.key`, for documentation checks.
pub fn schema_keys() -> Vec<String> {
    schema::all().iter().flat_map(|s| s.keys.iter().map(|k| schema::full_name(s.name, k.name))).collect()
}

pub struct RunOptions {
    pub pipeline: PathBuf,
    pub dry_run: bool,
    /// Compute one stage of each kind the store lacks first, then print the dry run.
    pub calibrate: bool,
    pub jobs: usize,
    /// Default: `results/<pipeline name>/`.
    pub out: Option<PathBuf>,
    pub executor: slurm::ExecutorArgs,
    /// `--threads` and `--store` as given, which the slurm executor passes on and checks.
    pub threads: Option<i32>,
    pub store: Option<PathBuf>,
}

/// Read the pipeline and build its graph: everything short of running a stage.
pub fn plan(path: &Path) -> Result<(file::PipelineFile, Graph)> {
    let file = file::read(path)?;
    let choose = choose::Choose::of(&file)?;
    let baseline = compare::baseline(&file)?;
    let points = grid::expand(&file)?;
    let graph = graph::build(&file, points, default_cache_path())?;
    // Before anything runs: a comparison the grid cannot pair fails now, not after the sweep.
    if let Some(baseline) = baseline {
        compare::pairs(&choose::planned(&graph, choose.as_ref()), &baseline)
            .map_err(|e| anyhow!("{}: {e}", file.at("report.baseline")))?;
    }
    report_input::check(&file, &graph, choose.as_ref())?;
    export_chosen::of(&file, choose.as_ref())?;
    Ok((file, graph))
}

/// Lines for stdout: the dry-run table, or the results folder.
pub fn run(ctx: &StageContext, options: &RunOptions) -> Result<Vec<String>> {
    let max = crate::cli::MAX_THREADS as usize;
    if !(1..=max).contains(&options.jobs) {
        bail!("--jobs {}: must be in [1, {max}]", options.jobs);
    }
    options.executor.check()?;
    let (file, graph) = plan(&options.pipeline)?;
    let out = options.out.clone().unwrap_or_else(|| Path::new(gc::DEFAULT_RESULTS).join(&file.name));
    let out = std::path::absolute(&out).with_context(|| format!("cannot resolve {}", out.display()))?;
    // What the run would write into must be the tool's: a dry run says so too.
    crate::owned::check_results_folder(&out)?;
    crate::owned::check_store_root(ctx.store.root())?;
    if options.dry_run || options.calibrate {
        let device = slurm::device_name(ctx.device);
        if options.calibrate {
            estimate::calibrate(&graph, &ctx.store, &device, options.threads)?;
        }
        let mut lines = dry_run_report(&file, &graph, &ctx.store)?;
        let threads = options.threads.map_or(ctx.threads, |t| t as usize);
        let slurm = (options.executor.executor == slurm::Executor::Slurm).then_some(&file.slurm);
        lines.extend(estimate::report(&graph, &ctx.store, &device, threads, slurm)?);
        lines.extend(choose::Choose::of(&file)?.map(|c| c.dry_run_line(&graph, choose::tests_chosen_only(&file))));
        return Ok(lines);
    }
    // Before hours of training, not after: a folder that cannot be made fails now.
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create the results folder", out.display()))?;

    // The local executor counts the nodes each pass runs (`executor::execute_for`).
    let local = options.executor.executor == slurm::Executor::Local;
    let progress = progress::Progress::new(if local { 0 } else { graph.nodes.len() }, ctx.quiet);
    // Stages report through the progress lines; their own per-epoch lines would interleave.
    let stage_ctx =
        StageContext { store: ctx.store.clone(), device: ctx.device, threads: ctx.threads, quiet: true, rerun: None };
    let clock = std::time::Instant::now();
    let choose = choose::Choose::of(&file)?;
    let (artifacts, results) = match (options.executor.executor, &choose) {
        (slurm::Executor::Local, Some(c)) if choose::tests_chosen_only(&file) => {
            test_chosen::execute(&stage_ctx, &graph, c, options.jobs, &progress)?
        }
        (slurm::Executor::Local, _) => {
            let all: Vec<graph::NodeId> = (0..graph.nodes.len()).filter(|&i| !is_validation(&graph, i)).collect();
            let done = executor::execute_for(
                &stage_ctx,
                &graph,
                &all,
                vec![None; graph.nodes.len()],
                options.jobs,
                &progress,
            )?;
            let results = results::table(&graph, &done)?;
            (done, results)
        }
        (slurm::Executor::Slurm, _) => {
            if choose::tests_chosen_only(&file) {
                progress.note(
                    "note: [choose] test = \"chosen\" is for the local executor; on Slurm every run is scored on test",
                );
            }
            let run = slurm::SlurmRun {
                args: &options.executor,
                store_arg: options.store.as_deref(),
                threads: options.threads,
            };
            let Some(artifacts) = slurm::execute(&stage_ctx, &file.slurm, &graph, &run, &progress)? else {
                return Ok(Vec::new());
            };
            let done: Vec<Option<crate::store::Artifact>> = artifacts.into_iter().map(Some).collect();
            let results = results::table(&graph, &done)?;
            (done, results)
        }
    };
    let artifacts: Vec<crate::store::Artifact> = artifacts.into_iter().flatten().collect();
    // The results are read from the evaluations' files: reused ones are checked as inputs are.
    for eval in artifacts.iter().filter(|a| a.kind == crate::store::ArtifactKind::Eval) {
        ctx.store.verify(eval)?;
    }
    let summary = summary::table(&target_mean::with_means(&results));
    results.write_atomically(&out.join("results.csv"))?;
    summary.write_atomically(&out.join("summary.csv"))?;
    let chosen = write_choice_and_comparison(&file, &results, &out)?;
    let mut export_notes = Vec::new();
    if let (Some(format), Some(chosen)) = (export_chosen::of(&file, choose::Choose::of(&file)?.as_ref())?, &chosen) {
        export_notes = export_chosen::write(&stage_ctx, chosen, format, &out)?;
    }
    // With [choose], the report shows the chosen evaluations, not every combination.
    let (mut lines, warnings) =
        report_input::write(&file, chosen.as_ref().unwrap_or(&results), choose::Choose::of(&file)?.as_ref(), &out)?;
    let computed = progress.computed();
    progress.finish(&format!(
        "{}: {computed} stage(s) computed, {} reused, {} evaluation(s) in {:.1}s; results in {}",
        file.name,
        graph.nodes.len() - computed,
        results.rows.len(),
        clock.elapsed().as_secs_f64(),
        out.display()
    ));
    if !ctx.quiet
        && let Some(note) = crate::stages::select::weak_statistics_note(&artifacts)?
    {
        eprintln!("{note}");
    }
    for warning in warnings.into_iter().chain(export_notes) {
        eprintln!("{warning}");
    }
    lines.push(out.display().to_string());
    Ok(lines)
}

/// Whether node `id` is a validation-only eval (`[choose] test = "chosen"`), which a run that
/// scores every run on test does not need.
fn is_validation(graph: &graph::Graph, id: graph::NodeId) -> bool {
    graph.validations.contains(&Some(id))
}

/// `[choose]`: chosen.csv and chosen-summary.csv; `[report] baseline`: compare.csv, of the
/// chosen rows when there are. A file that no longer asks for one removes the old one, which
/// would otherwise pass for this run's. Returns the chosen rows.
fn write_choice_and_comparison(
    file: &file::PipelineFile,
    results: &crate::csv_io::Table,
    out: &Path,
) -> Result<Option<crate::csv_io::Table>> {
    let choose = choose::Choose::of(file)?;
    let baseline = compare::baseline(file)?;
    let mut stale = vec!["chosen.csv", "chosen-summary.csv", "compare.csv"];
    let (chosen, ignore) = match &choose {
        Some(c) => {
            let chosen = choose::chosen(results, c).map_err(|e| anyhow!("{}: {e}", file.at("choose.by")))?;
            chosen.write_atomically(&out.join("chosen.csv"))?;
            let input = target_mean::with_means(&choose::summary_input(&chosen, c));
            summary::table(&input).write_atomically(&out.join("chosen-summary.csv"))?;
            stale.retain(|f| !f.starts_with("chosen"));
            (Some(chosen), c.chosen_columns())
        }
        None => (None, Vec::new()),
    };
    if let Some(baseline) = baseline {
        let compared = compare::table(chosen.as_ref().unwrap_or(results), &baseline, &ignore)
            .map_err(|e| anyhow!("{}: {e}", file.at("report.baseline")))?;
        compared.write_atomically(&out.join("compare.csv"))?;
        stale.retain(|f| *f != "compare.csv");
    }
    for name in stale {
        match std::fs::remove_file(out.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("{}: cannot remove the old one", out.join(name).display()));
            }
            _ => {}
        }
    }
    Ok(chosen)
}

/// Per stage kind: how many will run, how many are cached, and how many a naive sweep (every
/// grid point recomputing its whole chain) would run.
pub fn dry_run_report(file: &file::PipelineFile, graph: &Graph, store: &Store) -> Result<Vec<String>> {
    let counts = graph.counts(store)?;
    let mut lines = vec![
        format!(
            "{}: {} grid point(s), {} evaluation(s); store {}",
            file.name,
            graph.points.len(),
            graph.evaluations.len(),
            store.root().display()
        ),
        format!("{:<10} {:>7} {:>7} {:>7} {:>7}", "stage", "to-run", "cached", "total", "naive"),
    ];
    for c in &counts {
        lines.push(format!(
            "{:<10} {:>7} {:>7} {:>7} {:>7}",
            c.kind.as_str(),
            c.to_run,
            c.cached,
            c.to_run + c.cached,
            c.naive
        ));
    }
    let sum = |f: fn(&StageCount) -> usize| counts.iter().map(f).sum::<usize>();
    lines.push(format!(
        "{:<10} {:>7} {:>7} {:>7} {:>7}",
        "all",
        sum(|c| c.to_run),
        sum(|c| c.cached),
        sum(|c| c.to_run + c.cached),
        sum(|c| c.naive)
    ));
    if !file.variants.is_empty() {
        let count = |i: usize| graph.points.iter().filter(|p| p.variant_index() == Some(i)).count();
        let each: Vec<String> =
            file.variants.iter().enumerate().map(|(i, v)| format!("{} ({} points)", v.name, count(i))).collect();
        lines.push(format!("variants: {}", each.join(", ")));
    }
    Ok(lines)
}
