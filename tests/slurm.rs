//! `clip-ast run --executor slurm` against a real single-node Slurm (scripts/slurm-local.sh,
//! which `make test` starts when it runs as root): the same results.csv as a local run with
//! each missing stage one job and cached ones never submitted, a failing stage and a scancel
//! ending the run with the failed job's error and its dependents cancelled, a rerun submitting
//! only what is missing, and two overlapping runs at once submitting each shared stage once.
//!
//! Without a cluster (not root, no apt) the tests say why on one line and pass, except under
//! `CI=true`, where they fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Seed 1 × K 3/6 × λ 0/1 on four colour classes with the mini preset.
const SWEEP: &str = r#"name = "sweep"
[weights]
init = { preset = "mini", seed = 0 }
[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = SEEDS
[stage1]
lr = 1e-4
epochs = 1
batch_size = 8
[select]
k = KS
[stage2]
lr = 1e-3
epochs = 2
warmup_epochs = 1
batch_size = 8
lambda = LAMBDAS
"#;

fn sweep(seeds: &str, ks: &str, lambdas: &str) -> String {
    SWEEP.replace("SEEDS", seeds).replace("KS", ks).replace("LAMBDAS", lambdas)
}

/// Whether the cluster is up, starting it when we may. Says once why not.
fn cluster() -> bool {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let up = UP.get_or_init(|| {
        let script = common::repo_root().join("scripts/slurm-local.sh");
        let run = |arg: &str| Command::new("bash").arg(&script).arg(arg).output();
        if run("status").is_ok_and(|o| o.status.success()) {
            return Ok(());
        }
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if uid.ok().as_deref() != Some("0") {
            return Err("not root, so scripts/slurm-local.sh cannot install and start Slurm".into());
        }
        match run("start") {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("scripts/slurm-local.sh start failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Err(format!("cannot run scripts/slurm-local.sh: {e}")),
        }
    });
    match up {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true needs the Slurm tests: {why}"),
        Err(why) => {
            eprintln!("skipping the Slurm tests: {why}");
            false
        }
    }
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A folder with a four-class image dataset.
    fn new() -> Scratch {
        let s = Scratch { dir: tempfile::tempdir().unwrap() };
        let (images, labels) = common::colour_images(8, 3);
        for (i, (img, label)) in images.iter().zip(labels).enumerate() {
            let dir = s.path("data").join(["red", "green", "blue", "yellow"][label as usize]);
            std::fs::create_dir_all(&dir).unwrap();
            img.save(dir.join(format!("{i:02}.png"))).unwrap();
        }
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }

    fn write(&self, rel: &str, text: &str) -> String {
        std::fs::write(self.path(rel), text).unwrap();
        self.p(rel)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::clip_ast();
        c.args(args)
            .current_dir(self.dir.path())
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("DATA", self.path("data"))
            .env("CLIP_AST_SLURM_POLL", "0.3");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        checked(self.cmd(args).output().unwrap(), args)
    }

    /// Jobs Slurm ran from this scratch folder (their working directory): name → states.
    fn jobs(&self) -> BTreeMap<String, Vec<String>> {
        let out = Command::new("squeue").args(["-h", "-t", "all", "-o", "%j|%T|%Z"]).output().unwrap();
        let mut jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() == 3 && Path::new(f[2]) == self.dir.path() {
                jobs.entry(f[0].to_string()).or_default().push(f[1].to_string());
            }
        }
        jobs
    }
}

fn checked(out: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} failed:\n{stderr}");
    assert!(!stderr.contains("warning"), "{args:?}:\n{stderr}");
    stderr
}

/// The store's artifacts as `kind/key`.
fn artifacts(store: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kind in ["weights", "split", "stage1", "selection", "stage2", "eval"] {
        for e in std::fs::read_dir(store.join(kind)).into_iter().flatten() {
            out.insert(format!("{kind}/{}", e.unwrap().file_name().to_string_lossy()));
        }
    }
    out
}

/// The job name the executor gives `kind/key`.
fn job_name(artifact: &str) -> String {
    let (kind, key) = artifact.split_once('/').unwrap();
    format!("clip-ast-{kind}-{}", &key[..12])
}

/// Submission records: key → (job id, job name).
fn records(store: &Path) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(store.join("slurm")).into_iter().flatten() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let key = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.insert(key, (r["job"].as_str().unwrap().to_string(), r["name"].as_str().unwrap().to_string()));
        }
    }
    out
}

fn scontrol_field(job: &str, field: &str) -> String {
    let out = Command::new("scontrol").args(["show", "job", "-o", job]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let prefix = format!("{field}=");
    text.split_whitespace()
        .find_map(|f| f.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .to_string()
}

fn audit_clean(s: &Scratch, store: &str) {
    let out = s.cmd(&["audit", "--store", store]).output().unwrap();
    assert!(
        out.status.success(),
        "audit:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A failed run: exactly one `error:` line, the last, holding every needle.
fn failed(out: Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{stderr}");
    for needle in needles {
        assert!(errors[0].contains(needle), "`{needle}` not in {}", errors[0]);
    }
    eprintln!("{}", errors[0]);
    errors[0].to_string()
}

#[test]
fn slurm_results_match_local_and_cached_stages_are_not_submitted() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let pipeline = s.write("sweep.toml", &sweep("1", "[3, 6]", "[0, 1]"));
    let clock = Instant::now();
    s.ok(&["run", &pipeline, "--threads", "1", "--store", &s.p("local"), "--out", &s.p("out-local")]);
    let local_seconds = clock.elapsed().as_secs_f64();

    // Part of the graph in the slurm store already: a zero-shot run makes the weights and split.
    let slurm_store = s.p("shared");
    let zero_shot = s.write("zs.toml", &format!("method = \"zero-shot\"\n{}", sweep("1", "3", "0")));
    s.ok(&["run", &zero_shot, "--threads", "1", "--store", &slurm_store]);
    let before = artifacts(Path::new(&slurm_store));

    let clock = Instant::now();
    let args = [
        "run",
        &pipeline,
        "--executor",
        "slurm",
        "--threads",
        "1",
        "--store",
        &slurm_store,
        "--out",
        &s.p("out-slurm"),
    ];
    let stderr = s.ok(&args);
    eprintln!("local {local_seconds:.1}s, slurm {:.1}s:\n{stderr}", clock.elapsed().as_secs_f64());
    for file in ["results.csv", "summary.csv"] {
        let local = std::fs::read(s.path("out-local").join(file)).unwrap();
        assert_eq!(local, std::fs::read(s.path("out-slurm").join(file)).unwrap(), "{file} differs");
    }

    // Every stage not cached before is one completed job with a record; no cached one is.
    let after = artifacts(Path::new(&slurm_store));
    let made: BTreeSet<&String> = after.difference(&before).collect();
    assert_eq!(made.len(), 11, "1 stage 1, 2 selections, 4 stage 2 and 4 evals: {made:?}");
    let recs = records(Path::new(&slurm_store));
    let jobs = s.jobs();
    for artifact in &after {
        let key = artifact.split_once('/').unwrap().1;
        if before.contains(artifact) {
            assert!(!recs.contains_key(key) && !jobs.contains_key(&job_name(artifact)), "{artifact} was cached");
        } else {
            let (id, name) = &recs[key];
            assert_eq!(name, &job_name(artifact));
            assert_eq!(scontrol_field(id, "JobState"), "COMPLETED", "{artifact}");
            assert_eq!(scontrol_field(id, "JobName"), *name);
            assert_eq!(jobs[name], ["COMPLETED"], "{artifact}: one job");
        }
    }
    // Again: everything is in the store, nothing is submitted.
    let stderr = s.ok(&args);
    assert!(stderr.contains("0 stage(s) computed"), "{stderr}");
    assert_eq!(records(Path::new(&slurm_store)), recs);
    audit_clean(&s, &slurm_store);
}

#[test]
fn a_failed_stage_cancels_its_dependents_and_a_rerun_submits_what_is_missing() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let store = s.p("store");
    let pipeline = s.write("sweep.toml", &sweep("1", "3", "[0, 1]"));
    // The split exists; then one of its test images goes.
    let zero_shot = s.write("zs.toml", &format!("method = \"zero-shot\"\n{}", sweep("1", "3", "0")));
    s.ok(&["run", &zero_shot, "--threads", "1", "--store", &store]);
    let split_dir = std::fs::read_dir(s.path("store/split")).unwrap().next().unwrap().unwrap().path();
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(split_dir.join("split.json")).unwrap()).unwrap();
    let image = split["test"][0][0].as_str().unwrap().to_string();
    let image = if Path::new(&image).is_absolute() { PathBuf::from(image) } else { s.path("data").join(image) };
    let saved = std::fs::read(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    std::fs::remove_file(&image).unwrap();

    let args = ["run", &pipeline, "--executor", "slurm", "--threads", "1", "--store", &store];
    let error =
        failed(s.cmd(&args).output().unwrap(), &["split ", "Slurm job ", "FAILED", "/store/logs/split-", ".log"]);
    assert!(
        error.contains(image.file_name().unwrap().to_str().unwrap()),
        "the log's last lines name the image: {error}"
    );
    // Stage 1, the selection, both stage-2 runs and both evals: cancelled, never run.
    let jobs = s.jobs();
    let cancelled = jobs.iter().filter(|(_, states)| states == &&["CANCELLED"]).count();
    assert_eq!(cancelled, 6, "{jobs:?}");
    assert!(!s.path("store/stage1").exists(), "nothing after the split was made");
    audit_clean(&s, &store);

    // With the image back the split's key is the one in the store: only the rest is submitted.
    std::fs::write(&image, saved).unwrap();
    let before = records(Path::new(&store));
    s.ok(&args);
    let after = records(Path::new(&store));
    let resubmitted: Vec<&String> =
        after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(_, v)| &v.1).collect();
    assert_eq!(resubmitted.len(), 6, "{resubmitted:?}");
    assert!(resubmitted.iter().all(|n| !n.contains("-split-") && !n.contains("-weights-")), "{resubmitted:?}");
    audit_clean(&s, &store);
}

#[test]
fn a_cancelled_job_fails_the_run_like_a_failed_one() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let store = s.p("store");
    let pipeline = s.write("sweep.toml", &sweep("1", "3", "0"));
    let args = ["run", &pipeline, "--executor", "slurm", "--threads", "1", "--store", &store];
    let child = s.cmd(&args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Cancel stage 2 as soon as it is queued (it waits on stage 1 and the selection).
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let found = records(Path::new(&store)).into_values().find(|(_, name)| name.starts_with("clip-ast-stage2-"));
        if let Some((job, _)) = found {
            break job;
        }
        assert!(Instant::now() < deadline, "stage 2 never submitted");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    failed(out, &["stage2 ", &format!("Slurm job {job} ended CANCELLED"), "/store/logs/stage2-"]);
    let eval = s.jobs().into_iter().find(|(name, _)| name.starts_with("clip-ast-eval-")).unwrap();
    assert_eq!(eval.1, ["CANCELLED"], "the eval after it");
    assert!(!s.path("store/stage2").exists() && !s.path("store/eval").exists());
    audit_clean(&s, &store);

    let stderr = s.ok(&args);
    assert!(stderr.contains("slurm: 2 job(s) submitted"), "only stage 2 and the eval: {stderr}");
    assert_eq!(artifacts(Path::new(&store)).len(), 6);
}

#[test]
fn overlapping_runs_at_once_submit_each_shared_stage_once() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let store = s.p("store");
    let a = s.write("a.toml", &sweep("1", "[3, 6]", "0"));
    let b = s.write("b.toml", &sweep("1", "6", "[0, 1]").replace("name = \"sweep\"", "name = \"other\""));
    let run = |p: &str| {
        s.cmd(&["run", p, "--executor", "slurm", "--threads", "1", "--store", &store])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (run(&a), run(&b));
    checked(first.wait_with_output().unwrap(), &["a"]);
    checked(second.wait_with_output().unwrap(), &["b"]);
    // a: weights, split, stage 1, 2 selections, 2 stage 2, 2 evals; b adds one stage 2 and its eval.
    let all = artifacts(Path::new(&store));
    assert_eq!(all.len(), 11, "{all:?}");
    let jobs = s.jobs();
    for artifact in &all {
        assert_eq!(
            jobs.get(&job_name(artifact)).map(Vec::as_slice),
            Some(&["COMPLETED".to_string()][..]),
            "{artifact}"
        );
    }
    assert_eq!(jobs.len(), 11, "{jobs:?}");
    audit_clean(&s, &store);
}

#[test]
fn a_relative_store_is_refused_before_anything_is_submitted() {
    let s = Scratch::new();
    let pipeline = s.write("sweep.toml", &sweep("1", "3", "0"));
    let out = s.cmd(&["run", &pipeline, "--executor", "slurm", "--store", "rel"]).output().unwrap();
    let error = failed(out, &["--executor slurm: the store `rel` is a relative path"]);
    assert!(error.contains("every node"), "{error}");
    assert!(!s.path("rel").exists());
}

#[test]
fn detach_submits_and_exits_and_the_same_command_follows_the_queued_jobs() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let store = s.p("store");
    let pipeline = s.write("sweep.toml", &sweep("1", "3", "0"));
    let args = ["run", &pipeline, "--executor", "slurm", "--threads", "1", "--store", &store];
    let stderr = s.ok(&[&args[..], &["--detach"]].concat());
    assert!(stderr.contains("slurm: 6 job(s) submitted") && stderr.contains("detached"), "{stderr}");
    assert!(!s.path("results/sweep/results.csv").exists());
    let submitted = records(Path::new(&store));
    assert_eq!(submitted.len(), 6);
    // Straight away, before the chain can have finished: the jobs are followed, none added.
    let stderr = s.ok(&args);
    assert!(stderr.contains("slurm: 0 job(s) submitted, "), "{stderr}");
    assert_eq!(records(Path::new(&store)), submitted);
    assert!(s.path("results/sweep/results.csv").is_file());
    assert_eq!(s.jobs().len(), 6, "one job per stage");
}

/// One stage 2 longer than its job's time limit (1 minute): with `requeue = true` the job gets
/// `--requeue --signal=B:USR1@30`, saves and stops on the signal (or on the limit's SIGTERM),
/// and the follower submits it again from its checkpoint until it finishes.
const LONG_STAGE2: &str = r#"name = "long"
[weights]
init = { preset = "mini", seed = 0 }
[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 4
seed = 1
[stage1]
lr = 1e-4
epochs = 1
batch_size = 8
[select]
k = 3
[stage2]
lr = 1e-3
epochs = 1500
warmup_epochs = 1
batch_size = 4
lambda = 1
[slurm.stage2]
time = 1
requeue = true
signal_seconds = 30
max_resubmits = 15
"#;

#[test]
fn a_stage_longer_than_its_time_limit_finishes_through_resubmissions_from_checkpoints() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let pipeline = s.write("long.toml", LONG_STAGE2);
    let clock = Instant::now();
    s.ok(&["run", &pipeline, "--threads", "1", "--store", &s.p("local"), "--out", &s.p("out-local")]);
    let local_seconds = clock.elapsed().as_secs_f64();
    let store = s.p("shared");
    let clock = Instant::now();
    let args =
        ["run", &pipeline, "--executor", "slurm", "--threads", "1", "--store", &store, "--out", &s.p("out-slurm")];
    let stderr = s.ok(&args);
    let resubmitted: Vec<&str> = stderr.lines().filter(|l| l.contains("resubmitted as job")).collect();
    eprintln!(
        "local {local_seconds:.1}s, slurm {:.1}s with {} resubmission(s):\n{}",
        clock.elapsed().as_secs_f64(),
        resubmitted.len(),
        resubmitted.join("\n")
    );
    assert!(!resubmitted.is_empty(), "the stage ran past its time limit, yet was never resubmitted:\n{stderr}");
    for (n, line) in resubmitted.iter().enumerate() {
        assert!(line.contains(&format!("(attempt {},", n + 2)), "{line}");
        assert!(line.contains("saved at epoch"), "a resubmission continues from a checkpoint: {line}");
    }
    for file in ["results.csv", "summary.csv"] {
        let local = std::fs::read(s.path("out-local").join(file)).unwrap();
        assert_eq!(local, std::fs::read(s.path("out-slurm").join(file)).unwrap(), "{file} differs");
    }
    // Every attempt's job: the resubmitted ones ended by the limit or the signal, the last one
    // COMPLETED; each later log says where it resumed.
    let stage2 = artifacts(Path::new(&store)).into_iter().find(|a| a.starts_with("stage2/")).unwrap();
    let jobs = s.jobs();
    let states = &jobs[&job_name(&stage2)];
    eprintln!("stage-2 jobs' states: {states:?}");
    assert_eq!(states.len(), resubmitted.len() + 1, "{states:?}");
    assert_eq!(states.iter().filter(|st| *st == "COMPLETED").count(), 1, "{states:?}");
    assert!(states.iter().all(|st| ["COMPLETED", "TIMEOUT", "FAILED"].contains(&st.as_str())), "{states:?}");
    let key = &stage2["stage2/".len()..];
    let logs: Vec<PathBuf> = std::fs::read_dir(Path::new(&store).join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(key))
        .collect();
    let resumed = logs.iter().filter(|l| std::fs::read_to_string(l).unwrap().contains("resumed from epoch")).count();
    assert_eq!(resumed, resubmitted.len(), "each resubmitted job resumed: {logs:?}");
    assert!(!Path::new(&store).join("tmp/checkpoints").join(key).exists(), "the publish removed the checkpoints");
    audit_clean(&s, &store);
}

/// `[slurm] group = "point"` and `max_jobs = 2`: each selection rides with its stage 1 and each
/// evaluation with its stage 2, so 13 stages are 7 jobs; at no sampled moment are more than 2
/// of them queued or running; the results equal a local run's byte for byte; a failed rerun
/// is not needed, a second run submits nothing.
#[test]
fn grouped_jobs_under_max_jobs_match_a_local_run_with_fewer_jobs() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let text = sweep("1", "[3, 6]", "[0, 1]") + "[slurm]\ngroup = \"point\"\nmax_jobs = 2\n";
    let pipeline = s.write("sweep.toml", &text);
    s.ok(&["run", &pipeline, "--threads", "1", "--store", &s.p("local"), "--out", &s.p("out-local")]);
    let store = s.p("shared");
    let args =
        ["run", &pipeline, "--executor", "slurm", "--threads", "1", "--store", &store, "--out", &s.p("out-slurm")];
    let child = s.cmd(&args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, dir) = (stop.clone(), s.dir.path().to_path_buf());
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = Command::new("squeue").args(["-h", "-t", "PD,R,CG,CF,S", "-o", "%Z"]).output().unwrap();
                let ours = String::from_utf8_lossy(&out.stdout).lines().filter(|l| Path::new(l) == dir).count();
                most = most.max(ours);
                std::thread::sleep(Duration::from_millis(100));
            }
            most
        })
    };
    let stderr = checked(child.wait_with_output().unwrap(), &args);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = sampler.join().unwrap();
    eprintln!("at most {most} job(s) queued or running:\n{stderr}");
    assert!(most <= 2, "{most} jobs at once");
    assert!(stderr.contains("slurm: 2 job(s) submitted, 0 already queued followed"), "{stderr}");
    for file in ["results.csv", "summary.csv"] {
        let local = std::fs::read(s.path("out-local").join(file)).unwrap();
        assert_eq!(local, std::fs::read(s.path("out-slurm").join(file)).unwrap(), "{file} differs");
    }
    let recs = records(Path::new(&store));
    let jobs: BTreeSet<&String> = recs.values().map(|(id, _)| id).collect();
    assert_eq!((recs.len(), jobs.len()), (13, 7), "13 stages in 7 jobs: {recs:?}");
    assert!(s.jobs().values().all(|states| states == &["COMPLETED"]), "{:?}", s.jobs());
    let stderr = s.ok(&args);
    assert!(stderr.contains("0 stage(s) computed"), "{stderr}");
    audit_clean(&s, &store);
}

/// An `sbatch` that a limit refuses (here a wrapper answering the second and third submissions
/// as Slurm answers a user over MaxSubmitJobs) is tried again and the run completes; a refusal
/// of another kind (a partition that does not exist) cancels the jobs the run submitted and
/// ends with one `error:` quoting sbatch.
#[test]
fn a_limit_refusal_is_retried_and_any_other_cancels_what_the_run_submitted() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let real =
        String::from_utf8(Command::new("sh").args(["-c", "command -v sbatch"]).output().unwrap().stdout).unwrap();
    std::fs::create_dir(s.path("bin")).unwrap();
    let wrapper = format!(
        "#!/bin/sh\nn=$(cat '{count}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '{count}'\n\
         if [ $n = 2 ] || [ $n = 3 ]; then\n  echo 'sbatch: error: QOSMaxSubmitJobPerUserLimit' >&2\n  \
         echo \"sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)\" >&2\n  exit 1\nfi\nexec {real} \"$@\"\n",
        count = s.p("count"),
        real = real.trim()
    );
    let sbatch = s.write("bin/sbatch", &wrapper);
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", s.p("bin"), std::env::var("PATH").unwrap());
    let pipeline = s.write("sweep.toml", &sweep("1", "3", "0"));
    let store = s.p("store");
    let args = ["run", &pipeline, "--executor", "slurm", "--threads", "1", "--store", &store];
    let out = s.cmd(&args).env("PATH", &path).output().unwrap();
    let stderr = checked(out, &args);
    let refused: Vec<&str> = stderr.lines().filter(|l| l.contains("a limit refused the submission")).collect();
    assert_eq!(refused.len(), 2, "{stderr}");
    assert!(refused[0].contains("QOSMaxSubmitJobPerUserLimit"), "{}", refused[0]);
    assert_eq!(std::fs::read_to_string(s.path("count")).unwrap().trim(), "8", "6 stages, 2 refusals");
    assert_eq!(artifacts(Path::new(&store)).len(), 6);

    // A partition sbatch refuses: what was submitted before it is cancelled, not left running.
    let bad = s.write("bad.toml", &(sweep("1", "3", "1") + "[slurm.stage2]\npartition = \"no-such-partition\"\n"));
    let bad_store = s.p("bad-store");
    let out = s.cmd(&["run", &bad, "--executor", "slurm", "--threads", "1", "--store", &bad_store]).output().unwrap();
    let error = failed(
        out,
        &["stage2 ", "refused clip-ast-stage2-", "--partition=no-such-partition", "cancelled the 4 job(s)"],
    );
    assert!(error.contains("Invalid partition name"), "sbatch's words: {error}");
    let recs = records(Path::new(&bad_store));
    assert_eq!(recs.len(), 4, "weights, split, stage 1, selection: {recs:?}");
    for (job, _) in recs.values() {
        let state = scontrol_field(job, "JobState");
        assert!(["CANCELLED", "COMPLETED"].contains(&state.as_str()), "job {job}: {state}");
    }
    assert_eq!(
        scontrol_field(
            &recs.values().map(|(j, _)| j.clone()).max_by_key(|j| j.parse::<u64>().unwrap()).unwrap(),
            "JobState"
        ),
        "CANCELLED"
    );
}

/// A stage that fails inside a group's job is named (kind, key, the job's log and its last
/// lines), not the group's first stage; a rerun submits only the stages still missing. The
/// failure: every job's process kills itself at its second stage's start (the selection after
/// its stage 1), through the crash point the jobs inherit from the submitting environment.
#[test]
fn a_stage_failing_inside_a_group_is_named_and_a_rerun_submits_what_is_missing() {
    if !cluster() {
        return;
    }
    let s = Scratch::new();
    let pipeline = s.write("sweep.toml", &(sweep("1", "3", "0") + "[slurm]\ngroup = \"point\"\n"));
    let store = s.p("store");
    let args = ["run", &pipeline, "--executor", "slurm", "--threads", "1", "--store", &store];
    let out = s.cmd(&args).env("CLIP_AST_CRASH_AT", "stage-start:2").output().unwrap();
    let error = failed(out, &["selection ", "Slurm job ", "/store/logs/stage1-", "2 other stage(s) failed"]);
    assert!(error.contains(" ends: "), "the log's last lines: {error}");
    let made = artifacts(Path::new(&store));
    assert!(made.iter().any(|a| a.starts_with("stage1/")) && !made.iter().any(|a| a.starts_with("selection/")));
    let stderr = s.ok(&args);
    assert!(stderr.contains("slurm: 2 job(s) submitted, 0 already queued followed (3 stages"), "{stderr}");
    assert_eq!(artifacts(Path::new(&store)).len(), 6);
    audit_clean(&s, &store);
}
