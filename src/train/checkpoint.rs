//! What a training loop saves and resumes from, and when it saves.
//!
//! A stage's whole state at a step boundary is: the trained tensors and AdamW's moments and
//! step count (the optimizer holds them all), the position (epochs done, batches done of the
//! next, optimizer steps so far), the running sums of the epoch under way, and the log rows so
//! far. Nothing else carries over from step to step: every random draw comes from a SplitMix64
//! stream derived from (seed, epoch, image) or (seed, epoch, step), an epoch's data order from
//! (seed, epoch), the learning rate from the epoch or step; libtorch's generator is used only
//! to initialise weights before the first step. So a loop restored from a checkpoint makes the
//! same steps, to the bit, as the loop that saved it would have (at the same thread count).
//!
//! When: at every epoch end, and within an epoch once `CLIP_AST_CHECKPOINT_INTERVAL` seconds
//! (default 300) have passed since the last save; at the next step boundary after SIGTERM or
//! SIGUSR1, after which the loop stops with [`Interrupted`]. `CLIP_AST_CHECKPOINT_SPACING`
//! (seconds, default 30) skips epoch-end saves that would come sooner than that after the last
//! one, so that stages of many short epochs (the mini preset's take milliseconds) do not spend
//! their time writing; `0` saves at every epoch end. `CLIP_AST_CHECKPOINT=off` turns saving
//! off (a signal then stops the process at once).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::adamw::AdamW;
use crate::interrupt::{self, Interrupted};
use crate::store::checkpoint::{Checkpoint, CheckpointArea, file_name};

pub const CHECKPOINT_ENV: &str = "CLIP_AST_CHECKPOINT";
pub const INTERVAL_ENV: &str = "CLIP_AST_CHECKPOINT_INTERVAL";
pub const SPACING_ENV: &str = "CLIP_AST_CHECKPOINT_SPACING";
const DEFAULT_INTERVAL: f64 = 300.0;
const DEFAULT_SPACING: f64 = 30.0;

/// Where a loop stands: `epoch` epochs done, `batch` batches done of the next one, `step`
/// optimizer steps in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: usize,
    pub batch: usize,
    pub step: usize,
}

/// The loop's state besides the optimizer's: its position, the running sums of the epoch under
/// way (kept as bits, so they come back exactly), and the log rows so far.
pub struct LoopState<'a, R> {
    pub position: Position,
    /// Epochs the stage runs in all (for `ls`).
    pub epochs: usize,
    pub sums: &'a [f64],
    pub log: &'a [R],
}

/// What a loop resumes with.
pub struct Resumed<R> {
    pub position: Position,
    pub sums: Vec<f64>,
    pub log: Vec<R>,
}

/// A stage's checkpointing: off, or a key's [`CheckpointArea`] and the rules for when to save.
pub struct Checkpoints {
    area: Option<CheckpointArea>,
    /// The stage, for messages and `ls`.
    what: String,
    interval: Duration,
    spacing: Duration,
    last_save: Instant,
    progress: Box<dyn Fn(&str) + Send + Sync>,
    _training: Option<interrupt::Training>,
}

fn seconds_from_env(name: &str, default: f64) -> Result<Duration> {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => match text.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
            _ => bail!("{name}={text}: must be a number of seconds ≥ 0"),
        },
        _ => Ok(Duration::from_secs_f64(default)),
    }
}

/// Whether `CLIP_AST_CHECKPOINT` turns checkpoints off; anything but `on`/`off` is an error.
pub fn enabled_by_env() -> Result<bool> {
    match std::env::var(CHECKPOINT_ENV).as_deref() {
        Err(_) | Ok("") | Ok("on") => Ok(true),
        Ok("off") => Ok(false),
        Ok(other) => bail!("{CHECKPOINT_ENV}={other}: must be `on` or `off`"),
    }
}

/// Check the checkpoint variables; the binary calls this before doing anything.
pub fn check_env() -> Result<()> {
    enabled_by_env()?;
    seconds_from_env(INTERVAL_ENV, DEFAULT_INTERVAL)?;
    seconds_from_env(SPACING_ENV, DEFAULT_SPACING)?;
    Ok(())
}

impl Checkpoints {
    /// No checkpoints (tests, benchmarks, `audit --rerun`).
    pub fn off() -> Checkpoints {
        Checkpoints {
            area: None,
            what: String::new(),
            interval: Duration::MAX,
            spacing: Duration::ZERO,
            last_save: Instant::now(),
            progress: Box::new(|_| {}),
            _training: None,
        }
    }

    /// Checkpoints in `area`, for the stage named `what` (`stage2 1a2b3c4d5e6f`); `progress`
    /// gets the `resumed from` line and warnings.
    pub fn new(area: CheckpointArea, what: String, progress: Box<dyn Fn(&str) + Send + Sync>) -> Result<Checkpoints> {
        if !enabled_by_env()? {
            return Ok(Checkpoints::off());
        }
        Ok(Checkpoints {
            area: Some(area),
            what,
            interval: seconds_from_env(INTERVAL_ENV, DEFAULT_INTERVAL)?,
            spacing: seconds_from_env(SPACING_ENV, DEFAULT_SPACING)?,
            last_save: Instant::now(),
            progress,
            _training: Some(interrupt::Training::start()),
        })
    }

    /// Restore `optimizer` from the newest valid checkpoint, if any, and return the loop's
    /// state; says `resumed from epoch N` (through `progress`). `kind` and `threads` must match
    /// what saved it: a checkpoint of another stage is refused, one of another thread count
    /// is used with a warning (the last bits may then differ from an uninterrupted run).
    pub fn resume<R: DeserializeOwned>(&mut self, kind: &str, optimizer: &mut AdamW) -> Result<Option<Resumed<R>>> {
        let Some(area) = &self.area else { return Ok(None) };
        let Some((name, checkpoint)) = area.load_newest(&*self.progress)? else { return Ok(None) };
        let context = || format!("checkpoint {}", area.dir().join(&name).display());
        let meta = &checkpoint.meta;
        if meta["kind"] != kind {
            bail!("{}: saved by a `{}` stage, not `{kind}`; remove it", context(), meta["kind"]);
        }
        let number = |field: &str| meta[field].as_u64().with_context(|| format!("{}: no `{field}`", context()));
        let position = Position {
            epoch: number("epoch")? as usize,
            batch: number("batch")? as usize,
            step: number("step")? as usize,
        };
        let sums = meta["sums"]
            .as_array()
            .with_context(|| format!("{}: no `sums`", context()))?
            .iter()
            .map(|v| v.as_u64().map(f64::from_bits).with_context(|| format!("{}: bad `sums`", context())))
            .collect::<Result<Vec<f64>>>()?;
        let log: Vec<R> = serde_json::from_value(meta["log"].clone()).with_context(context)?;
        optimizer.restore(&checkpoint.tensors, number("optimizer_step")? as i64).with_context(context)?;
        let threads = tch::get_num_threads() as u64;
        if number("threads")? != threads {
            (self.progress)(&format!(
                "warning: {} was saved by a run on {} threads, this one has {threads}: the result may differ in the last bits from an uninterrupted run",
                context(),
                meta["threads"]
            ));
        }
        let mut line = format!("{}: resumed from epoch {}", self.what, position.epoch);
        if position.batch > 0 {
            line += &format!(" and {} batch(es) of epoch {}", position.batch, position.epoch + 1);
        }
        eprintln!("{line}");
        self.last_save = Instant::now();
        Ok(Some(Resumed { position, sums, log }))
    }

    /// At a step boundary inside an epoch: save if the interval has passed, or if a signal
    /// asked to stop, and then stop with [`Interrupted`].
    pub fn step_boundary<R: Serialize>(&mut self, kind: &str, state: &LoopState<R>, optimizer: &AdamW) -> Result<()> {
        if self.area.is_none() {
            return Ok(());
        }
        let signal = interrupt::requested();
        if signal.is_some() || self.last_save.elapsed() >= self.interval {
            self.save(kind, state, optimizer)?;
            if signal.is_none() {
                crate::crash_point::reached("step-checkpoint");
            }
        }
        self.stop_if_asked(state.position)
    }

    /// At an epoch end (`state.position.batch` is 0): save unless the last save was less
    /// than the spacing ago, then stop if a signal asked to.
    pub fn epoch_end<R: Serialize>(&mut self, kind: &str, state: &LoopState<R>, optimizer: &AdamW) -> Result<()> {
        if self.area.is_none() {
            return Ok(());
        }
        if interrupt::requested().is_some() || self.last_save.elapsed() >= self.spacing {
            self.save(kind, state, optimizer)?;
            crate::crash_point::reached("epoch-end");
        }
        self.stop_if_asked(state.position)
    }

    fn stop_if_asked(&self, at: Position) -> Result<()> {
        match interrupt::requested() {
            Some(signal) => Err(Interrupted {
                signal,
                what: format!("{} saved at epoch {} (+{} batches, step {})", self.what, at.epoch, at.batch, at.step),
            }
            .into()),
            None => Ok(()),
        }
    }

    fn save<R: Serialize>(&mut self, kind: &str, state: &LoopState<R>, optimizer: &AdamW) -> Result<()> {
        let Some(area) = &self.area else { return Ok(()) };
        let (tensors, optimizer_step) = optimizer.checkpoint();
        let p = state.position;
        let meta: Value = json!({
            "kind": kind,
            "stage": self.what,
            "epoch": p.epoch,
            "batch": p.batch,
            "step": p.step,
            "epochs": state.epochs,
            "optimizer_step": optimizer_step,
            "sums": state.sums.iter().map(|x| x.to_bits()).collect::<Vec<u64>>(),
            "log": serde_json::to_value(state.log)?,
            "threads": tch::get_num_threads(),
        });
        area.save(&file_name(p.epoch, p.batch), &Checkpoint { meta, tensors })
            .with_context(|| format!("{}: cannot save a checkpoint", self.what))?;
        self.last_save = Instant::now();
        Ok(())
    }
}

/// Read a log row's float written by `csv_io::shortest` (a string) back exactly.
pub fn shortest_f64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(f64),
    }
    match Either::deserialize(d)? {
        Either::Text(s) => s.parse().map_err(serde::de::Error::custom),
        Either::Number(x) => Ok(x),
    }
}
