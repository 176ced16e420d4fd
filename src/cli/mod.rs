//! The bodies of the `clip-ast` commands, one module per group of stages, each command an
//! argument struct that flattens its stage's settings (`src/settings/`) and a `run` that calls
//! the stage and prints the one output path on stdout. `src/main.rs` holds the command tree
//! and the dispatch.

pub mod export;
pub mod features;
pub mod split;
pub mod store;
pub mod summarise;
pub mod train;
pub mod weights;

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;

use crate::device::parse_device;
use crate::stages::{StageContext, split_data};
use crate::store::{Artifact, Store};

/// The most threads (`--threads`) or workers (`run --jobs`) a run may ask for: more than the
/// largest machines have cores. libtorch starts every thread it is told to, and
/// `--threads 100000` never got past starting them.
pub const MAX_THREADS: i32 = 1024;

/// Flags every command takes, before or after its name.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Store and device (every command)")]
pub struct Shared {
    /// Artifact store [default: $CLIP_AST_STORE, else ./artifacts]
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    /// cpu, cuda, cuda:N, or auto (the first GPU when libtorch sees one)
    #[arg(long, default_value = "cpu", global = true)]
    pub device: String,
    /// CPU threads for libtorch, 1 to 1024 [default: libtorch's choice]. Recorded, never part
    /// of a key.
    #[arg(long, global = true)]
    pub threads: Option<i32>,
    /// No progress output on stderr
    #[arg(long, global = true)]
    pub quiet: bool,
}

impl Shared {
    /// How the stages run: the store, the device and the thread count.
    pub fn context(&self) -> Result<StageContext> {
        if let Some(n) = self.threads {
            if !(1..=MAX_THREADS).contains(&n) {
                bail!("--threads {n}: must be in [1, {MAX_THREADS}]");
            }
            tch::set_num_threads(n);
        }
        Ok(StageContext {
            store: Store::open(self.store.as_deref())?,
            device: parse_device(&self.device)?,
            threads: tch::get_num_threads() as usize,
            quiet: self.quiet,
            rerun: None,
        })
    }
}

/// Print an artifact's folder, the one line a stage command writes on stdout.
fn print_artifact(artifact: &Artifact) {
    println!("{}", artifact.dir.display());
}

/// The seed of a split artifact, which every training seed defaults to.
fn split_seed(split: &Artifact) -> Result<u64> {
    let seed = split_data::read_split(split)?.seed;
    u64::try_from(seed).map_err(|_| anyhow!("the split's seed {seed} is negative; pass --seed"))
}
