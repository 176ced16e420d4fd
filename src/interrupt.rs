//! SIGTERM and SIGUSR1 while a stage trains: the stage saves a checkpoint at its next step
//! boundary and the process exits with [`EXIT_INTERRUPTED`] (docs/cli.md, "Exit status"), so
//! a scheduler's warning signal (Slurm's `--signal`, a preemption's SIGTERM) costs no work.
//!
//! The handler only records the signal; the training loops look at it between steps. When no
//! loop is running (a split, an evaluation, between stages) nothing could be saved, and a
//! second signal means "now": in both cases the handler restores the default action and
//! raises the signal again, so the process ends as it always did.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The exit status of a process stopped by SIGTERM/SIGUSR1 after saving its checkpoints
/// (EX_TEMPFAIL: run it again and it goes on from there).
pub const EXIT_INTERRUPTED: u8 = 75;

static REQUESTED: AtomicI32 = AtomicI32::new(0);
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    if ACTIVE.load(Ordering::SeqCst) == 0 || REQUESTED.swap(signal, Ordering::SeqCst) != 0 {
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// Install the handlers; the binary calls this once at start-up.
pub fn install() {
    for signal in [libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: the handler only touches atomics and async-signal-safe calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The signal asked to stop, if one came while a loop was training.
pub fn requested() -> Option<i32> {
    Some(REQUESTED.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// Held while a training loop can save a checkpoint: only then does a signal wait for it.
pub struct Training(());

impl Training {
    pub fn start() -> Training {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Training(())
    }
}

impl Drop for Training {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A stage stopped by a signal after saving its checkpoint: the error that carries it out, so
/// nothing is published, and that `main` turns into [`EXIT_INTERRUPTED`].
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    pub what: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {}: {}; run the same command again to resume", signal_name(self.signal), self.what)
    }
}

impl std::error::Error for Interrupted {}

/// Whether `error` (or one it wraps) is an [`Interrupted`], or a signal stopped a stage.
pub fn is_interrupted(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Interrupted>()) || requested().is_some()
}
