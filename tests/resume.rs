//! Stages killed inside their epoch loop resume from their last checkpoint and publish what an
//! uninterrupted run publishes, byte for byte (same thread count). For stage 1, stage 2 and
//! pretrain: SIGKILL after epoch K (`CLIP_AST_CRASH_AT=epoch-end:K`, src/crash_point.rs) for
//! several K including the last, then a rerun that says `resumed from epoch K`. Then: a
//! damaged newest checkpoint falls back to the one before, a kill between mid-epoch saves
//! resumes inside the epoch, SIGTERM and SIGUSR1 save and exit 75, `ls` lists the stage in
//! progress and `gc` removes what a publish left. Deterministic: no sleeps decide anything.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clip_ast::crash_point::CRASH_ENV;
use common::scratch::{Scratch, colour_images};

const SIGKILL: i32 = 9;
const EXIT_INTERRUPTED: i32 = 75;

struct Run<'a> {
    s: &'a Scratch,
    store: String,
}

impl Run<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.s.cmd(args);
        // A checkpoint at every epoch end (the default spaces them 30 s apart).
        c.args(["--store", &self.store, "--threads", "1", "--quiet"]).env("CLIP_AST_CHECKPOINT_SPACING", "0");
        c
    }

    /// Run to success; (artifact folder, stderr).
    fn ok(&self, args: &[&str]) -> (PathBuf, String) {
        let out = self.cmd(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {}\n{stderr}", out.status);
        (PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()), stderr)
    }

    /// Run with `env`, which must make it end by `signal` or with `code`.
    fn stopped(&self, args: &[&str], env: &[(&str, String)], how: Result<i32, i32>) -> Output {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let got = match out.status.signal() {
            Some(signal) => Err(signal),
            None => Ok(out.status.code().unwrap()),
        };
        assert_eq!(got, how, "{args:?} with {env:?}:\n{}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

/// Every file of an artifact but its manifest (which records times and the pid), and the
/// manifest's key and output hashes.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for path in common::files_under(dir) {
        let name = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let kept = serde_json::json!({"key": m["key"], "outputs": m["outputs"], "metrics": m["metrics"]});
            files.insert(name, kept.to_string().into_bytes());
        } else {
            files.insert(name, std::fs::read(&path).unwrap());
        }
    }
    files
}

/// `STORE/tmp/checkpoints/<key>/` file names.
fn checkpoint_files(store: &str, key: &str) -> Vec<String> {
    let dir = Path::new(store).join("tmp/checkpoints").join(key);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn key_of(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// Kill the stage after epoch `k`, rerun it, and check it resumed and matches `want`.
fn kill_after_epoch_and_resume(run: &Run, args: &[&str], reference: &Path, k: usize) {
    let want = outputs(reference);
    let key = key_of(reference);
    std::fs::remove_dir_all(reference).unwrap();
    run.stopped(args, &[(CRASH_ENV, format!("epoch-end:{k}"))], Err(SIGKILL));
    let saved = checkpoint_files(&run.store, &key);
    assert_eq!(saved.last(), Some(&format!("e{k:06}-b00000000.ckpt")), "{args:?} killed after epoch {k}");
    assert!(saved.len() <= 2, "the two newest are kept: {saved:?}");
    let (dir, stderr) = run.ok(args);
    let kind = dir.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let line =
        format!("{} {}: resumed from epoch {k}\n", if kind == "weights" { "weights" } else { &kind }, &key[..12]);
    assert!(stderr.contains(&line), "{args:?} after epoch {k}: no `{line}` in\n{stderr}");
    assert_eq!(dir, reference, "the same key");
    assert!(outputs(&dir) == want, "{args:?}: killed after epoch {k}, the resumed run's outputs differ");
    assert!(checkpoint_files(&run.store, &key).is_empty(), "publishing removes the checkpoints");
    println!("{kind} {}: killed after epoch {k}, resumed, byte-identical", &key[..12]);
}

#[test]
fn killed_stages_resume_from_their_last_epoch_byte_for_byte() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let run = Run { s: &s, store: s.p("store") };
    let data = s.p("data");
    let (split, _) = run.ok(&[
        "split",
        "--dataset",
        "imagefolder",
        "--root",
        &data,
        "--shots",
        "4",
        "--seed",
        "1",
        "--image-size",
        "32",
    ]);
    let split = key_of(&split);
    // 16 train images: 2 batches per pretrain epoch, 4 per stage-1 and stage-2 epoch.
    let pretrain = ["pretrain", "--split", &split, "--epochs", "4", "--batch-size", "8"];
    let clock = Instant::now();
    let (weights, _) = run.ok(&pretrain);
    println!("pretrain, 4 epochs: {:.1}s", clock.elapsed().as_secs_f64());
    let w = key_of(&weights);
    let stage1 = ["stage1", "--split", &split, "--weights", &w, "--epochs", "3", "--batch-size", "4", "--lr", "1e-4"];
    let (stage1_dir, _) = run.ok(&stage1);
    let (selection, _) = run.ok(&["select", "--stage1", &key_of(&stage1_dir), "--k", "3"]);
    let l = key_of(&selection);
    let stage2_with = |epochs: &'static str| {
        let args = ["--split", &split, "--weights", &w, "--selection", &l, "--warmup-epochs", "1", "--batch-size", "4"];
        let mut all = vec!["stage2".to_string(), "--epochs".into(), epochs.into(), "--lr".into(), "1e-3".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let stage2_owned = stage2_with("5");
    let stage2: Vec<&str> = stage2_owned.iter().map(String::as_str).collect();
    let clock = Instant::now();
    let (stage2_dir, _) = run.ok(&stage2);
    println!("stage 2, 5 epochs: {:.1}s", clock.elapsed().as_secs_f64());

    for k in [1, 3, 4] {
        kill_after_epoch_and_resume(&run, &pretrain, &weights, k);
    }
    for k in [1, 2, 3] {
        kill_after_epoch_and_resume(&run, &stage1, &stage1_dir, k);
    }
    for k in [1, 3, 5] {
        kill_after_epoch_and_resume(&run, &stage2, &stage2_dir, k);
    }

    // A damaged newest checkpoint: passed over with a warning, the one before it used.
    let want = outputs(&stage2_dir);
    let key = key_of(&stage2_dir);
    std::fs::remove_dir_all(&stage2_dir).unwrap();
    run.stopped(&stage2, &[(CRASH_ENV, "epoch-end:3".into())], Err(SIGKILL));
    let ckpt_dir = Path::new(&run.store).join("tmp/checkpoints").join(&key);
    assert_eq!(checkpoint_files(&run.store, &key), ["e000002-b00000000.ckpt", "e000003-b00000000.ckpt"]);

    // `ls` shows the stage in progress with its last epoch.
    let ls = String::from_utf8(run.cmd(&["ls"]).output().unwrap().stdout).unwrap();
    let line = ls.lines().find(|l| l.contains(&key[..12])).unwrap_or_else(|| panic!("{ls}"));
    assert!(line.starts_with("stage2") && line.contains("in progress: epoch 3/5"), "{line}");

    let newest = ckpt_dir.join("e000003-b00000000.ckpt");
    let mut bytes = std::fs::read(&newest).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();
    let (dir, stderr) = run.ok(&stage2);
    assert!(
        stderr.contains("warning: ignoring checkpoint")
            && stderr.contains("e000003-b00000000.ckpt: its content does not match its hash"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("stage2 {}: resumed from epoch 2\n", &key[..12])), "{stderr}");
    assert!(outputs(&dir) == want, "resumed from the checkpoint before the damaged one: the outputs differ");
    println!("damaged newest checkpoint: resumed from the one before, byte-identical");

    // Saved inside the epoch (interval 0: at every step), killed after the 6th such save: the
    // 2nd batch of epoch 2.
    std::fs::remove_dir_all(&stage2_dir).unwrap();
    let every_step = ("CLIP_AST_CHECKPOINT_INTERVAL", "0".to_string());
    run.stopped(&stage2, &[every_step.clone(), (CRASH_ENV, "step-checkpoint:6".into())], Err(SIGKILL));
    let (dir, stderr) = run.ok(&stage2);
    assert!(
        stderr.contains(&format!("stage2 {}: resumed from epoch 1 and 2 batch(es) of epoch 2\n", &key[..12])),
        "{stderr}"
    );
    assert!(outputs(&dir) == want, "resumed inside an epoch: the outputs differ");
    println!("killed between mid-epoch saves: resumed inside epoch 2, byte-identical");

    // SIGTERM and SIGUSR1 while training: a checkpoint at the next step, exit 75, then resume.
    // A long run (40 epochs), signalled once its first checkpoint is on disk.
    let long_owned = stage2_with("40");
    let long: Vec<&str> = long_owned.iter().map(String::as_str).collect();
    let (long_dir, _) = run.ok(&long);
    let long_want = outputs(&long_dir);
    let long_key = key_of(&long_dir);
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGUSR1, "SIGUSR1")] {
        std::fs::remove_dir_all(&long_dir).unwrap();
        let child =
            run.cmd(&long).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let started = Instant::now();
        while checkpoint_files(&run.store, &long_key).is_empty() {
            assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: kill(2) on a child we spawned and have not waited for.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_INTERRUPTED), "{name}: {}\n{stderr}", out.status);
        assert!(stderr.contains(&format!("error: stopped by {name}: stage2 {}", &long_key[..12])), "{stderr}");
        assert!(!long_dir.exists(), "nothing published");
        let saved = checkpoint_files(&run.store, &long_key);
        let (dir, stderr) = run.ok(&long);
        let resumed = stderr.lines().find(|l| l.contains("resumed from epoch")).unwrap_or_else(|| panic!("{stderr}"));
        assert!(outputs(&dir) == long_want, "{name}: the resumed run's outputs differ");
        println!("{name}: exit 75 with {saved:?}; `{resumed}`, byte-identical");
    }

    // `gc --checkpoints` removes what a publish left behind (here: a copy put back), and what
    // is older than --older-than; a dry run touches nothing.
    let leftover = Path::new(&run.store).join("tmp/checkpoints").join(&long_key);
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("e000001-b00000000.ckpt"), b"x").unwrap();
    let gc = |extra: &[&str]| {
        let mut args = vec!["gc", "--checkpoints"];
        args.extend(extra);
        let out = run.cmd(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = gc(&[]);
    assert!(listed.contains(&format!("would remove checkpoints {}", &long_key[..12])), "{listed}");
    assert!(leftover.exists());
    let removed = gc(&["--yes"]);
    assert!(removed.contains("removed the checkpoints of 1 stage(s)") && !leftover.exists(), "{removed}");
    std::fs::remove_dir_all(&stage2_dir).unwrap();
    run.stopped(&stage2, &[(CRASH_ENV, "epoch-end:1".into())], Err(SIGKILL));
    assert!(!gc(&["--older-than", "1d"]).contains(&key[..12]), "a fresh checkpoint is kept");
    let removed = gc(&["--older-than", "0s", "--yes"]);
    assert!(removed.contains(&format!("removed checkpoints {}", &key[..12])), "{removed}");
    assert!(checkpoint_files(&run.store, &key).is_empty());
}
