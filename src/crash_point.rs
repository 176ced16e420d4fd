//! Crash points, a testing aid: `CLIP_AST_CRASH_AT=<point>[:<n>]` makes the process SIGKILL
//! itself the n-th time (default the first) it reaches the named point, counting across all its
//! threads. Tests use it to stop a run at an exact moment of a store transaction or of writing
//! the results, and then check what the kill left behind, instead of killing after a sleep and
//! hoping the kill lands somewhere interesting (which depends on the machine's speed).
//!
//! The kill is a real SIGKILL (no destructors, no unwinding, no flushing), the same as the OOM
//! killer or `kill -9`. With the variable unset, reaching a point costs one check of a cached
//! value. `check_env` turns a misspelt point into an error at start-up rather than a run that
//! silently never crashes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};

/// The environment variable naming the crash point.
pub const CRASH_ENV: &str = "CLIP_AST_CRASH_AT";

/// Every point, and the state a kill there leaves.
pub const POINTS: &[(&str, &str)] = &[
    ("stage-start", "a stage holds its key's lock and an empty temp dir; nothing computed yet"),
    ("stage-output", "inside a stage: part of its outputs are in its temp dir (a CSV output has its header only)"),
    ("before-rename", "a temp dir is complete (outputs, manifest, fsync), not yet renamed into the store"),
    ("after-rename", "an artifact is published, its key's lock not yet released"),
    ("table-write", "results.csv or summary.csv is half written to its temp file, not yet renamed"),
    ("epoch-end", "a training stage saved its checkpoint after an epoch (the n-th epoch end of the process)"),
    ("step-checkpoint", "a training stage saved a checkpoint inside an epoch (CLIP_AST_CHECKPOINT_INTERVAL passed)"),
];

struct Target {
    point: &'static str,
    nth: usize,
    reached: AtomicUsize,
}

/// The parsed variable: read once, on the first point reached or at `check_env`.
fn target() -> &'static Result<Option<Target>, String> {
    static TARGET: OnceLock<Result<Option<Target>, String>> = OnceLock::new();
    TARGET.get_or_init(|| match std::env::var(CRASH_ENV) {
        Ok(value) if !value.is_empty() => parse(&value).map(Some),
        _ => Ok(None),
    })
}

fn parse(value: &str) -> Result<Target, String> {
    let (name, nth) = match value.split_once(':') {
        Some((name, n)) => match n.parse::<usize>() {
            Ok(n) if n >= 1 => (name, n),
            _ => return Err(format!("{CRASH_ENV}={value}: `{n}` is not a count from 1")),
        },
        None => (value, 1),
    };
    let Some(&(point, _)) = POINTS.iter().find(|(p, _)| *p == name) else {
        let known: Vec<&str> = POINTS.iter().map(|(p, _)| *p).collect();
        return Err(format!("{CRASH_ENV}={value}: unknown crash point `{name}`; known: {}", known.join(", ")));
    };
    Ok(Target { point, nth, reached: AtomicUsize::new(0) })
}

/// Fail on a malformed `CLIP_AST_CRASH_AT`; the binary calls this before doing anything.
pub fn check_env() -> Result<()> {
    match target() {
        Ok(_) => Ok(()),
        Err(message) => bail!("{message}"),
    }
}

/// Mark `point` reached; SIGKILL this process if it is the chosen one's n-th time.
pub fn reached(point: &'static str) {
    debug_assert!(POINTS.iter().any(|(p, _)| *p == point), "crash point `{point}` is not in POINTS");
    let Ok(Some(target)) = target() else {
        return;
    };
    if target.point == point && target.reached.fetch_add(1, Ordering::SeqCst) + 1 == target.nth {
        kill_self();
    }
}

fn kill_self() -> ! {
    // SAFETY: kill(2) on our own pid has no memory effects. A signal a process sends itself is
    // delivered before kill returns, and SIGKILL cannot be blocked or handled.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_counts_and_names_what_is_wrong() {
        let t = parse("before-rename:3").unwrap();
        assert_eq!((t.point, t.nth), ("before-rename", 3));
        assert_eq!(parse("stage-start").unwrap().nth, 1);
        let unknown = parse("before-renam").err().unwrap();
        assert!(unknown.starts_with("CLIP_AST_CRASH_AT=before-renam: unknown crash point `before-renam`"), "{unknown}");
        assert!(unknown.contains("known: stage-start, stage-output"), "{unknown}");
        for bad in ["stage-start:0", "stage-start:", "stage-start:x", "stage-start:-1"] {
            assert!(parse(bad).err().unwrap().contains("is not a count from 1"), "{bad}");
        }
    }
}
