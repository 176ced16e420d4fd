//! A run's progress on stderr: a bar on a terminal, one line per finished node otherwise (logs,
//! CI, tests read those), nothing but warnings with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use super::graph::Node;
use crate::store::ArtifactKey;

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: AtomicUsize,
    finished: AtomicUsize,
    computed: AtomicUsize,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            let style =
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} stages {elapsed_precise} {wide_msg}")
                    .expect("the template is valid");
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            quiet,
            total: AtomicUsize::new(total),
            finished: AtomicUsize::new(0),
            computed: AtomicUsize::new(0),
        }
    }

    /// Nodes found to run after the run began (the chosen runs' test evaluations).
    pub fn add_total(&self, more: usize) {
        let total = self.total.fetch_add(more, Ordering::SeqCst) + more;
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
        }
    }

    pub fn started(&self, node: &Node) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} {}", node.kind, node.label));
        }
    }

    /// `[ 3/25] stage1 3fa2c1b0e9d1 (computed, 0.4s) caltech101 shots=4 seed=2 lr=0.00001`
    pub fn finished(&self, node: &Node, key: &ArtifactKey, cached: bool, seconds: f64) {
        let n = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        if !cached {
            self.computed.fetch_add(1, Ordering::SeqCst);
        }
        let how = if cached { "cached".to_string() } else { format!("computed, {seconds:.1}s") };
        let total = self.total.load(Ordering::SeqCst);
        let width = total.to_string().len();
        let line = format!("[{n:>width$}/{total}] {} {} ({how}) {}", node.kind, key.short(), node.label);
        match &self.bar {
            Some(bar) => {
                if !cached {
                    bar.println(line);
                }
                bar.inc(1);
            }
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }

    /// A status line (the slurm executor's job counts): the bar's message on a terminal, a
    /// line otherwise.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(line.to_string()),
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }

    /// Shown even with `--quiet`.
    pub fn warn(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn computed(&self) -> usize {
        self.computed.load(Ordering::SeqCst)
    }

    /// Remove the bar and say what happened.
    pub fn finish(&self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!("{summary}");
        }
    }
}
