//! `clip-ast run` end to end through the binary, on generated datasets and the mini preset:
//! upstream stages shared across a sweep, a second run computing nothing, keys that move with
//! every setting that matters and only those, SIGKILLs at every crash point, two runs at once,
//! tampering caught by `audit`, `gc`, and bad pipeline files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clip_ast::crash_point::CRASH_ENV;
use clip_ast::rng::SplitMix64;
use common::Csv;

/// The signal a crash point (or `Child::kill`) ends a run with.
const SIGKILL: i32 = 9;

/// Two seeds × K 3/6 × λ 0/1 on four classes: 1 weights, 2 splits, 2 stage-1 runs,
/// 4 selections, 8 stage-2 runs, 8 evaluations.
const MINI: &str = r#"name = "mini"

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = [1, 2]

[stage1]
lr = 1e-4
epochs = 1
batch_size = 8

[select]
k = [3, 6]

[stage2]
lr = 1e-3
epochs = 2
warmup_epochs = 1
batch_size = 8
lambda = [0, 1]
"#;

const MINI_STAGES: usize = 25;
const MINI_EVALS: usize = 8;

/// A temp folder with its own dataset, hash cache, stores and results.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }

    /// The binary with this scratch's hash cache, `$DATA` and `$WEIGHTS`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::clip_ast();
        // In the scratch folder, so a default `results/` would land there.
        c.args(args)
            .current_dir(self.dir.path())
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("DATA", self.path("data"))
            .env("WEIGHTS", self.path("ViT-B-16.pt"));
        c
    }

    /// Run; must succeed without a warning (a warning means the runner's predicted key for a
    /// stage differs from the stage's own). Returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.cmd(args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{args:?} failed:\n{stderr}\n{stdout}");
        assert!(!stderr.contains("warning"), "{args:?}:\n{stderr}");
        (stdout, stderr)
    }

    /// Run; must fail with one `error: ...` line holding every needle. Returns stdout.
    fn fails(&self, cmd: &mut Command, needles: &[&str]) -> String {
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "should fail: {cmd:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "`{needle}` not in {stderr}");
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn write(&self, rel: &str, text: &str) -> String {
        std::fs::write(self.path(rel), text).unwrap();
        self.p(rel)
    }

    /// `--dry-run` counts per stage kind: [to-run, cached, total, naive].
    fn dry(&self, pipeline: &str, store: &str) -> BTreeMap<String, [usize; 4]> {
        let (stdout, _) = self.ok(&["run", pipeline, "--dry-run", "--store", store]);
        stdout
            .lines()
            .skip(2)
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f[0].to_string(), [1, 2, 3, 4].map(|i| f[i].parse().unwrap()))
            })
            .collect()
    }

    fn audit_clean(&self, store: &str) {
        let out = self.cmd(&["audit", "--store", store]).output().unwrap();
        assert!(
            out.status.success(),
            "audit of {store}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Four classes of noisy single-colour images, 10 each, in class folders.
fn colour_images(dir: &Path) {
    let colours =
        [("red", [220u8, 30, 30]), ("green", [30, 200, 40]), ("blue", [40, 40, 220]), ("yellow", [230, 220, 30])];
    let mut rng = SplitMix64::new(7);
    for (name, c) in colours {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..10 {
            let img = image::RgbImage::from_fn(48, 40, |_, _| {
                let mut j = |v: u8| (f64::from(v) + rng.uniform(-50.0, 50.0)).clamp(0.0, 255.0) as u8;
                image::Rgb([j(c[0]), j(c[1]), j(c[2])])
            });
            img.save(dir.join(name).join(format!("{i:02}.png"))).unwrap();
        }
    }
}

/// Caltech101 as CoOp lays it out (`caltech-101/101_ObjectCategories/<class>/image_NNNN.jpg`),
/// including the two folders CoOp ignores, without a split file (one is generated).
fn caltech_images(root: &Path) {
    let dir = root.join("caltech-101/101_ObjectCategories");
    let mut rng = SplitMix64::new(101);
    for class in ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion", "airplanes", "anchor"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 1..=8 {
            let img =
                image::RgbImage::from_fn(12, 10, |_, _| image::Rgb([0, 1, 2].map(|_| rng.uniform(0.0, 255.0) as u8)));
            img.save(dir.join(class).join(format!("image_{i:04}.jpg"))).unwrap();
        }
    }
}

/// Progress lines `[ n/N] kind key12 (computed, 1.2s) label` → (kind, key12, computed).
fn stage_lines(stderr: &str) -> Vec<(String, String, bool)> {
    stderr
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            let f: Vec<&str> = l.split(']').nth(1).unwrap().split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].starts_with("(computed"))
        })
        .collect()
}

/// Every artifact in a store: (kind, key, manifest).
fn artifacts(store: &Path) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for kind in ["weights", "split", "stage1", "selection", "stage2", "eval"] {
        let Ok(entries) = std::fs::read_dir(store.join(kind)) else { continue };
        let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        dirs.sort();
        for dir in dirs {
            let manifest = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
            out.push((kind.to_string(), dir.file_name().unwrap().to_str().unwrap().to_string(), manifest));
        }
    }
    out
}

/// Names in `STORE/tmp/`: work in progress, or left by a killed run.
fn temp_dirs(store: &Path) -> BTreeSet<String> {
    std::fs::read_dir(store.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn caltech101_sweep_dry_run_shares_splits_stage1_and_selections() {
    let s = Scratch::new();
    caltech_images(&s.path("data"));
    // A dry run only hashes the weights file (the key of an import is its content hash).
    s.write("ViT-B-16.pt", "stand-in for OpenAI's checkpoint");
    let pipeline = common::repo_root().join("pipelines/caltech101-sweep.toml");
    let store = s.p("store");
    let (stdout, _) = s.ok(&["run", pipeline.to_str().unwrap(), "--dry-run", "--store", &store]);
    println!("{stdout}");
    let counts = s.dry(pipeline.to_str().unwrap(), &store);
    assert_eq!(counts["weights"], [1, 0, 1, 275]);
    for kind in ["split", "stage1", "selection"] {
        assert_eq!(counts[kind], [5, 0, 5, 275], "{kind}");
    }
    for kind in ["stage2", "eval"] {
        assert_eq!(counts[kind], [275, 0, 275, 275], "{kind}");
    }
    assert!(stdout.starts_with("caltech101-sweep: 275 grid point(s), 275 evaluation(s)"), "{stdout}");
    // Nothing written: no store, no generated split beside the images, no results.
    assert!(!s.path("store").exists());
    assert!(!s.path("data/caltech-101/split_zhou_Caltech101.json").exists());
    assert!(!s.path("results").exists());
}

#[test]
fn mini_pipeline_reruns_from_cache_keys_follow_settings_audit_and_gc() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let pipeline = s.write("mini.toml", MINI);
    let store = s.p("store");
    let clock = Instant::now();
    let (stdout, stderr) =
        s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out"), "--jobs", "2", "--threads", "1"]);
    println!("first run {:.1}s", clock.elapsed().as_secs_f64());
    assert_eq!(stdout.trim(), s.p("out"), "stdout is the results folder");
    let lines = stage_lines(&stderr);
    assert_eq!(lines.len(), MINI_STAGES, "{stderr}");
    assert!(lines.iter().all(|(_, _, computed)| *computed), "{stderr}");
    let (results_text, summary_text) = (read(&s.path("out/results.csv")), read(&s.path("out/summary.csv")));
    let results = Csv::read(&s.path("out/results.csv"));
    let summary = Csv::read(&s.path("out/summary.csv"));
    for column in ["data.dataset", "data.seed", "select.k", "stage2.lambda", "stage2.lr", "eval", "method", "acc", "hm"]
    {
        assert!(results.header.iter().any(|h| h == column), "{column} not in {:?}", results.header);
    }
    assert_eq!(results.rows.len(), MINI_EVALS);
    // Grouped over the two seeds: K × λ = 4 settings, 2 runs each, with a t interval.
    let has = |name: &str| summary.header.iter().any(|h| h == name);
    assert!(has("acc_ci95") && !has("data.seed"), "{:?}", summary.header);
    assert_eq!(summary.column("runs"), ["2"; 4]);
    assert_eq!(artifacts(&s.path("store")).len(), MINI_STAGES);

    // A second run computes nothing and writes the same results.
    let before = artifacts(&s.path("store"));
    let (_, stderr) = s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out2"), "--threads", "1"]);
    let lines = stage_lines(&stderr);
    assert_eq!(lines.len(), MINI_STAGES);
    assert!(lines.iter().all(|(_, _, computed)| !computed), "{stderr}");
    assert_eq!(read(&s.path("out2/results.csv")), results_text);
    assert_eq!(read(&s.path("out2/summary.csv")), summary_text);
    assert_eq!(artifacts(&s.path("store")), before, "no manifest changed");

    // Only --threads or --quiet changed: the same keys, so still nothing computed.
    let (_, stderr) = s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out3"), "--threads", "2"]);
    assert!(stage_lines(&stderr).iter().all(|(_, _, computed)| !computed), "{stderr}");
    assert_eq!(read(&s.path("out3/results.csv")), results_text);
    let (_, stderr) = s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out4"), "--quiet"]);
    assert_eq!(stderr, "", "--quiet prints nothing");
    assert_eq!(read(&s.path("out4/results.csv")), results_text);
    assert_eq!(artifacts(&s.path("store")), before);

    // Every setting that matters changes its stage's key (and so everything downstream).
    let all_cached = s.dry(&pipeline, &store);
    assert!(all_cached.values().all(|c| c[0] == 0), "{all_cached:?}");
    let variant = |from: &str, to: &str| {
        assert!(MINI.contains(from), "{from}");
        let path = s.write("variant.toml", &MINI.replacen(from, to, 1));
        s.dry(&path, &store)
    };
    let to_run = |counts: &BTreeMap<String, [usize; 4]>, kind: &str| counts[kind][0];
    let seed = variant("seed = [1, 2]", "seed = [1, 3]");
    assert_eq!((to_run(&seed, "split"), to_run(&seed, "stage1")), (1, 1), "seed: {seed:?}");
    let lr1 = variant("lr = 1e-4", "lr = 2e-4");
    assert_eq!((to_run(&lr1, "split"), to_run(&lr1, "stage1")), (0, 2), "stage-1 lr: {lr1:?}");
    let k = variant("k = [3, 6]", "k = [3, 5]");
    assert_eq!((to_run(&k, "stage1"), to_run(&k, "selection")), (0, 2), "K: {k:?}");
    let rule = variant("k = [3, 6]", "k = [3, 6]\nscore = \"sqrt-v\"");
    assert_eq!((to_run(&rule, "stage1"), to_run(&rule, "selection")), (0, 4), "score rule: {rule:?}");
    let lr2 = variant("lr = 1e-3", "lr = 2e-3");
    assert_eq!((to_run(&lr2, "selection"), to_run(&lr2, "stage2")), (0, 8), "stage-2 lr: {lr2:?}");
    let lambda = variant("lambda = [0, 1]", "lambda = [0, 2]");
    assert_eq!((to_run(&lambda, "selection"), to_run(&lambda, "stage2")), (0, 4), "λ: {lambda:?}");
    // A dataset file's content: one test image (every split holds all test images).
    let split = artifacts(&s.path("store")).into_iter().find(|(kind, _, _)| kind == "split").unwrap();
    let split_json: serde_json::Value =
        serde_json::from_str(&read(&s.path(&format!("store/split/{}/split.json", split.1)))).unwrap();
    let image = s.path("data").join(split_json["test"][0][0].as_str().unwrap());
    let original = std::fs::read(&image).unwrap();
    image::RgbImage::from_pixel(47, 40, image::Rgb([1, 2, 3])).save(&image).unwrap();
    let edited = s.dry(&pipeline, &store);
    assert_eq!(to_run(&edited, "split"), 2, "edited image: {edited:?}");
    std::fs::write(&image, &original).unwrap();
    assert_eq!(s.dry(&pipeline, &store), all_cached, "restoring the image restores the keys");

    // Tampering: a flipped byte in any output file, or edited params, is named by audit.
    let tampered = s.path("tampered");
    common::copy_dir(&s.path("store"), &tampered);
    let mut flipped = Vec::new();
    for (kind, key, manifest) in artifacts(&tampered) {
        if flipped.iter().any(|(k, _, _): &(String, String, String)| *k == kind) {
            continue;
        }
        let file = manifest["outputs"].as_object().unwrap().keys().next().unwrap().clone();
        let path = tampered.join(&kind).join(&key).join(&file);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        flipped.push((kind, key, file));
    }
    assert_eq!(flipped.len(), 6, "one file of each kind");
    let report = s.fails(
        s.cmd(&["audit", "--store", tampered.to_str().unwrap()]).env_remove("RUST_BACKTRACE"),
        &["failed the audit"],
    );
    for (kind, key, file) in &flipped {
        let line = report.lines().find(|l| l.contains(&format!("BAD {kind}/{}", &key[..12])));
        let line = line.unwrap_or_else(|| panic!("{kind} {key} not reported:\n{report}"));
        assert!(line.contains(&format!("file `{file}` changed")), "{line}");
    }
    let edited = s.path("edited");
    common::copy_dir(&s.path("store"), &edited);
    let (_, key, mut manifest) = artifacts(&edited).into_iter().find(|(kind, _, _)| kind == "stage1").unwrap();
    manifest["params"]["train"]["epochs"] = serde_json::json!(2);
    let manifest_path = edited.join("stage1").join(&key).join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let report = s.fails(&mut s.cmd(&["audit", "--store", edited.to_str().unwrap()]), &["1 of 25 artifact(s) failed"]);
    let bad: Vec<&str> = report.lines().filter(|l| l.starts_with("BAD")).collect();
    assert_eq!(bad.len(), 1, "{report}");
    assert!(bad[0].contains(&format!("stage1/{}", &key[..12])) && bad[0].contains("manifest edited"), "{}", bad[0]);

    // An artifact prefix two artifacts share (25 keys, 16 hex digits: some first digit repeats).
    let keys: Vec<String> = artifacts(&s.path("store")).into_iter().map(|(_, key, _)| key).collect();
    let shared = keys.iter().find(|k| keys.iter().filter(|o| o[..1] == k[..1]).count() > 1).unwrap();
    s.fails(&mut s.cmd(&["audit", &shared[..1], "--store", &store]), &["matches", "give more characters"]);

    // gc keeps what results reference and removes the rest, only with --yes.
    let (orphan, _) = s.ok(&["init-weights", "--preset", "mini", "--seed", "7", "--store", &store, "--quiet"]);
    let orphan = PathBuf::from(orphan.trim());
    let orphan_key = orphan.file_name().unwrap().to_str().unwrap()[..12].to_string();
    let results_dirs = [s.p("out"), s.p("out2")];
    let (listing, _) = s.ok(&["gc", &results_dirs[0], &results_dirs[1], "--store", &store]);
    assert!(listing.contains(&format!("would remove weights   {orphan_key}")), "{listing}");
    assert!(listing.contains("would remove 1 artifact(s)") && listing.contains("keep 25"), "{listing}");
    assert!(orphan.exists(), "without --yes nothing goes");
    let (removed, _) = s.ok(&["gc", &results_dirs[0], "--store", &store, "--yes"]);
    assert!(removed.contains("removed 1 artifact(s)"), "{removed}");
    assert!(!orphan.exists());
    s.audit_clean(&store);
    assert_eq!(s.dry(&pipeline, &store), all_cached);
    std::fs::create_dir_all(s.path("empty")).unwrap();
    s.fails(&mut s.cmd(&["gc", &s.p("empty"), "--store", &store]), &["no results.csv under"]);
}

/// The store's crash points, each visited at its 1st, 2nd and 3rd time in a run; with `--jobs 1`
/// the n-th time is always the same stage, so every kill lands where it is meant to.
const STAGE_POINTS: [&str; 4] = ["stage-start", "stage-output", "before-rename", "after-rename"];
const OCCURRENCES: [usize; 3] = [1, 2, 3];

/// Published artifacts of a store, as `kind/key`.
fn published(store: &Path) -> BTreeSet<String> {
    artifacts(store).into_iter().map(|(kind, key, _)| format!("{kind}/{key}")).collect()
}

/// How many stages a run's stderr reports as computed.
fn computed(stderr: &str) -> usize {
    stage_lines(stderr).iter().filter(|(_, _, computed)| *computed).count()
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path).into_iter().map(|f| Path::new(path.file_name().unwrap()).join(f)));
        } else {
            out.push(PathBuf::from(path.file_name().unwrap()));
        }
    }
    out
}

impl Scratch {
    /// `run` with `CLIP_AST_CRASH_AT=point:n`, which must kill it (a run that finishes never
    /// reached the point n times). Returns its stderr.
    fn crash(&self, pipeline: &str, store: &str, out: &str, point: &str, n: usize) -> String {
        let output = self
            .cmd(&["run", pipeline, "--store", store, "--out", out, "--threads", "1", "--jobs", "1"])
            .env(CRASH_ENV, format!("{point}:{n}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.signal(),
            Some(SIGKILL),
            "{point}:{n} did not kill the run ({}):\n{stderr}",
            output.status
        );
        stderr
    }

    /// What a kill may leave: a store that audits clean (no half artifact: every artifact
    /// directory whole, with its manifest), and each table in `out` whole or absent.
    fn check_after_kill(&self, store: &str, out: &str, tables: &[(&str, &str)], what: &str) {
        let audit = self.cmd(&["audit", "--store", store]).output().unwrap();
        let report = String::from_utf8_lossy(&audit.stdout) + String::from_utf8_lossy(&audit.stderr);
        assert!(audit.status.success(), "{what}: the store fails its audit:\n{report}");
        for (name, whole) in tables {
            if let Ok(text) = std::fs::read_to_string(Path::new(out).join(name)) {
                assert_eq!(&text, whole, "{what}: {name} is written whole or not at all");
            }
        }
    }
}

#[test]
fn sigkill_at_every_crash_point_then_two_runs_at_once() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let pipeline = s.write("mini.toml", MINI);

    // The uninterrupted reference.
    let clock = Instant::now();
    s.ok(&["run", &pipeline, "--store", &s.p("reference"), "--out", &s.p("ref"), "--threads", "1", "--quiet"]);
    println!("uninterrupted run {:.1}s", clock.elapsed().as_secs_f64());
    let results = read(&s.path("ref/results.csv"));
    let summary = read(&s.path("ref/summary.csv"));
    let tables = [("results.csv", results.as_str()), ("summary.csv", summary.as_str())];

    // A misspelt point is an error before anything runs, not a run that never crashes.
    let mut typo = s.cmd(&["run", &pipeline, "--store", &s.p("typo"), "--out", &s.p("typo-out")]);
    s.fails(typo.env(CRASH_ENV, "before-renam:2"), &["CLIP_AST_CRASH_AT=before-renam:2: unknown crash point"]);
    assert!(!s.path("typo").exists() && !s.path("typo-out").exists());

    // Every store crash point at its 1st, 2nd and 3rd time, on one store that keeps what each
    // killed run finished (so later kills meet cached stages and the temp dirs of earlier ones).
    let (store, out) = (s.p("killed"), s.p("killed-out"));
    let mut kills = 0;
    for point in STAGE_POINTS {
        for n in OCCURRENCES {
            let what = format!("killed at {point}:{n}");
            let (before, temps_before) = (published(&s.path("killed")), temp_dirs(&s.path("killed")));
            let stderr = s.crash(&pipeline, &store, &out, point, n);
            kills += 1;
            s.check_after_kill(&store, &out, &tables, &what);
            let computed = computed(&stderr);
            let new = published(&s.path("killed")).difference(&before).count();
            let new_temps: Vec<PathBuf> =
                temp_dirs(&s.path("killed")).difference(&temps_before).map(|t| s.path("killed/tmp").join(t)).collect();
            if point == "after-rename" {
                // Published, lock still held: the artifact is whole, its line never printed.
                assert_eq!((computed, new), (n - 1, n), "{what}:\n{stderr}");
                assert!(new_temps.is_empty(), "{what}: the renamed temp dir is gone: {new_temps:?}");
                continue;
            }
            assert_eq!(new, computed, "{what}: only finished stages are published:\n{stderr}");
            let [temp] = new_temps.as_slice() else { panic!("{what}: one temp dir left, found {new_temps:?}") };
            let files = files_under(temp);
            let has_manifest = files.iter().any(|f| f == Path::new("manifest.json"));
            match point {
                "stage-start" => {
                    assert_eq!(computed, n - 1, "{what}:\n{stderr}");
                    assert!(files.is_empty(), "{what}: nothing written yet: {files:?}");
                }
                "stage-output" => {
                    assert!(!has_manifest, "{what}: {files:?}");
                    let header_only = files.iter().filter(|f| f.extension().is_some_and(|e| e == "csv"));
                    let header_only = header_only.filter(|f| read(&temp.join(f)).lines().count() == 1).count();
                    assert_eq!(header_only, 1, "{what}: a CSV output with its header only: {files:?}");
                }
                "before-rename" => {
                    assert_eq!(computed, n - 1, "{what}:\n{stderr}");
                    assert!(has_manifest, "{what}: the temp dir is complete: {files:?}");
                    let name = temp.file_name().unwrap().to_str().unwrap();
                    let key = name.split('.').next().unwrap();
                    assert!(!published(&s.path("killed")).iter().any(|a| a.ends_with(key)), "{what}: {name}");
                }
                _ => unreachable!("{point}"),
            }
        }
    }
    let walked = kills;

    // Kills from outside, at moments the run itself announces rather than after a sleep: with two
    // workers, SIGKILL as the m-th stage line appears, while the other worker is usually inside
    // a stage. The run has more stages to compute than m, so it is always still running.
    let seed = 0x5EED_0005;
    let mut rng = SplitMix64::new(seed);
    let mut mid_stage = 0;
    for _ in 0..3 {
        let left = MINI_STAGES - published(&s.path("killed")).len();
        assert!(left >= 2, "the walk left too little to compute: {left}");
        let m = 1 + rng.below_inclusive((left as u64 - 1).min(2) - 1) as usize;
        let temps_before = temp_dirs(&s.path("killed"));
        let mut child = s
            .cmd(&["run", &pipeline, "--store", &store, "--out", &out, "--threads", "1", "--jobs", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
        let mut seen = Vec::new();
        for line in lines.map_while(Result::ok) {
            let is_computed = line.contains("(computed");
            seen.push(line);
            if is_computed && seen.iter().filter(|l| l.contains("(computed")).count() == m {
                child.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "killed after {m} stage line(s) of {left}: {status}\n{}",
            seen.join("\n")
        );
        kills += 1;
        mid_stage += usize::from(temp_dirs(&s.path("killed")).difference(&temps_before).count() > 0);
        s.check_after_kill(&store, &out, &tables, &format!("killed after stage line {m}"));
    }

    // The next run reuses what the kills finished, clears their temp dirs, and writes the
    // uninterrupted results byte for byte.
    let (_, stderr) = s.ok(&["run", &pipeline, "--store", &store, "--out", &out, "--threads", "1"]);
    let lines = stage_lines(&stderr);
    let reused = lines.iter().filter(|(_, _, computed)| !computed).count();
    assert!(reused > 0, "the kills left finished stages behind:\n{stderr}");
    assert_eq!(read(&s.path("killed-out/results.csv")), results);
    assert_eq!(read(&s.path("killed-out/summary.csv")), summary);
    assert_eq!(temp_dirs(&s.path("killed")), BTreeSet::new(), "every killed stage's temp dir was cleared");
    s.audit_clean(&store);

    // Killed while writing the tables: over whole ones from before, and into an empty folder
    // after results.csv (rename done) and within it. A half-written temp file may stay beside them.
    s.crash(&pipeline, &store, &out, "table-write", 1);
    s.check_after_kill(&store, &out, &tables, "killed writing results.csv over the old one");
    assert_eq!(read(&s.path("killed-out/results.csv")), results, "the old results.csv is still there");
    s.crash(&pipeline, &store, &s.p("fresh-2"), "table-write", 2);
    s.check_after_kill(&store, &s.p("fresh-2"), &tables, "killed writing summary.csv");
    assert_eq!(read(&s.path("fresh-2/results.csv")), results);
    assert!(!s.path("fresh-2/summary.csv").exists(), "the summary was killed before its rename");
    let partial: Vec<PathBuf> =
        files_under(&s.path("fresh-2")).into_iter().filter(|f| f.to_string_lossy().starts_with(".tmp-")).collect();
    let [partial] = partial.as_slice() else { panic!("one half-written temp file: {partial:?}") };
    let half = read(&s.path("fresh-2").join(partial));
    assert!(half.len() < summary.len() && summary.starts_with(&half), "the kill came mid-write: {half:?}");
    s.crash(&pipeline, &store, &s.p("fresh-1"), "table-write", 1);
    s.check_after_kill(&store, &s.p("fresh-1"), &tables, "killed writing results.csv");
    assert!(!s.path("fresh-1/results.csv").exists() && !s.path("fresh-1/summary.csv").exists());
    kills += 3;
    println!(
        "crash coverage: {} store points x {} occurrences + table-write x 3 = {} kills; {} more on stage lines \
         ({mid_stage} inside a stage, seed {seed:#x}); then {reused} of {MINI_STAGES} stages reused",
        STAGE_POINTS.len(),
        OCCURRENCES.len(),
        walked + 3,
        kills - walked - 3
    );

    // Two runs started together on one store: every artifact computed by exactly one of them.
    let store = s.p("shared");
    let spawn = |out: &str, jobs: &str| {
        s.cmd(&["run", &pipeline, "--store", &store, "--out", &s.p(out), "--threads", "1", "--jobs", jobs])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a", "1"), spawn("b", "2"));
    let pids = [a.id(), b.id()];
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut computed_by: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (pid, out) in pids.iter().zip(&outputs) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !stderr.contains("warning"), "{stderr}");
        let lines = stage_lines(&stderr);
        assert_eq!(lines.len(), MINI_STAGES, "{stderr}");
        for (_, key, computed) in lines {
            let entry = computed_by.entry(key).or_default();
            if computed {
                entry.push(*pid);
            }
        }
    }
    let stored = artifacts(&s.path("shared"));
    assert_eq!(stored.len(), MINI_STAGES);
    for (kind, key, manifest) in &stored {
        let producers = &computed_by[&key[..12]];
        assert_eq!(producers.len(), 1, "{kind} {key} computed by {producers:?}");
        assert_eq!(manifest["producer"]["pid"].as_u64(), Some(u64::from(producers[0])), "{kind} {key}");
    }
    println!(
        "two runs at once: {} artifacts by the first, {} by the second",
        computed_by.values().filter(|p| p[0] == pids[0]).count(),
        computed_by.values().filter(|p| p[0] == pids[1]).count()
    );
    for out in ["a", "b"] {
        assert_eq!(read(&s.path(&format!("{out}/results.csv"))), results, "{out}");
    }
    s.audit_clean(&store);
}

#[test]
fn base_to_novel_pipeline_evaluates_base_and_new_splits() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let text = MINI
        .replace("seed = [1, 2]", "seed = 1\nclasses = \"base-to-novel\"")
        .replace("k = [3, 6]", "k = 6")
        .replace("lambda = [0, 1]", "lambda = 1");
    let pipeline = s.write("b2n.toml", &text);
    let store = s.p("store");
    s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out"), "--threads", "1", "--quiet"]);
    let counts = s.dry(&pipeline, &store);
    assert_eq!(counts["split"], [0, 2, 2, 2], "a base and a new split");
    assert!(counts.values().all(|c| c[0] == 0), "{counts:?}");
    let results = Csv::read(&s.path("out/results.csv"));
    let get = |name: &str| results.get(0, name);
    assert_eq!((get("data.classes"), get("subsample")), ("base-to-novel", "base+new"));
    for metric in ["base_acc", "new_acc", "hm", "val_acc", "val_base_acc"] {
        assert!(get(metric).parse::<f64>().is_ok(), "{metric} = {:?}", get(metric));
    }
    // Validation is the base split's: its val images among the base names, as base_acc is on test.
    assert_eq!(get("val_acc"), get("val_base_acc"));
}

#[test]
fn bad_pipeline_files_fail_with_one_line_naming_the_place() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let store = s.p("store");
    let check = |name: &str, text: &str, needles: &[&str]| {
        let path = s.write(name, text);
        s.fails(&mut s.cmd(&["run", &path, "--store", &store, "--out", &s.p("out")]), needles);
    };
    check(
        "unknown.toml",
        &MINI.replace("batch_size = 8\nlambda", "batch_size = 8\nlr_max = 1\nlambda"),
        &["unknown.toml:25: unknown key `lr_max` in [stage2]", "known keys: init, lr,"],
    );
    check(
        "section.toml",
        &format!("{MINI}\n[stage3]\nlr = 1\n"),
        &["section.toml:27: unknown key `stage3` at the top level"],
    );
    check(
        "list.toml",
        &MINI.replace("root = \"${DATA}\"", "root = [\"${DATA}\", \"/elsewhere\"]"),
        &["list.toml:8: [data] root takes one value, not a list"],
    );
    check(
        "preset.toml",
        &MINI.replace("preset = \"mini\"", "preset = [\"mini\"]"),
        &["[weights.init] preset takes one value, not a list"],
    );
    let path = s.write("nodata.toml", MINI);
    s.fails(
        s.cmd(&["run", &path, "--store", &store]).env_remove("DATA"),
        &["nodata.toml:8: [data] root: environment variable DATA is not set"],
    );
    check(
        "warmup.toml",
        &MINI.replace("warmup_epochs = 1", "warmup_epochs = 2"),
        &["[stage2] warmup_epochs 2 must be less than epochs 2"],
    );
    s.fails(&mut s.cmd(&["run", &path, "--store", &store, "--jobs", "0"]), &["--jobs 0"]);
    s.fails(&mut s.cmd(&["run", &s.p("missing.toml"), "--store", &store]), &["missing.toml: no such pipeline file"]);
    assert!(!s.path("store").exists() && !s.path("out").exists(), "a bad file writes nothing");
}

/// Every method of the top-level `method` axis on a foundation pretrained by the pipeline itself
/// (the demo's shape): the stages the runner makes are the ones the stage commands make, methods
/// that do not train get one row each however many training settings the grid has.
#[test]
fn methods_and_a_pretrained_foundation_share_keys_with_the_commands() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let text = r#"name = "methods"
method = ["zero-shot", "clip-ast", "random-k", "full-ft", "linear-probe"]

[weights]
pretrain = { preset = "mini", shots = 4, classes = "all", epochs = 1, batch_size = 8 }

[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = 1

[select]
k = 3

[stage2]
lr = [1e-3, 1e-4]
epochs = 2
warmup_epochs = 1
batch_size = 8

[report]
title = "methods"
"#;
    let pipeline = s.write("methods.toml", text);
    let store = s.p("store");
    let counts = s.dry(&pipeline, &store);
    let totals: BTreeMap<&str, usize> = counts.iter().map(|(k, c)| (k.as_str(), c[2])).collect();
    // Splits: the pretraining one and the few-shot one. Selections: the rule's, random, all.
    // Evaluations: 3 trained methods × 2 rates, one zero-shot, one probe.
    let expected = [("weights", 1), ("split", 2), ("stage1", 1), ("selection", 3), ("stage2", 6), ("eval", 8)];
    for (kind, n) in expected {
        assert_eq!(totals[kind], n, "{kind}: {counts:?}");
    }

    let out = s.p("out");
    let (stdout, _) = s.ok(&["run", &pipeline, "--store", &store, "--out", &out, "--threads", "1", "--jobs", "2"]);
    for method in ["zero-shot", "clip-ast/inv-sqrt-v", "random-k", "full-ft", "linear-probe"] {
        assert!(stdout.lines().any(|l| l.starts_with(method)), "no {method} in the report table:\n{stdout}");
    }
    assert!(s.path("out/report.png").is_file() && s.path("out/report.csv").is_file());
    let results = Csv::read(&s.path("out/results.csv"));
    let col = |name: &str| results.col(name);
    let rows: Vec<Vec<&str>> = results.rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    let methods = results.column("method");
    assert_eq!(
        methods,
        ["zero-shot", "clip-ast", "clip-ast", "random-k", "random-k", "full-ft", "full-ft", "linear-probe"]
    );
    let select: Vec<(&str, &str)> = rows.iter().map(|r| (r[col("select.k")], r[col("select.score")])).collect();
    let (clip_ast, random, all) = (("3", "inv-sqrt-v"), ("3", "random"), ("12", ""));
    assert_eq!(select, [("", ""), clip_ast, clip_ast, random, random, all, all, ("", "")], "what each method selected");
    for r in &rows {
        let trained = !matches!(r[col("method")], "zero-shot" | "linear-probe");
        assert_eq!(!r[col("stage2.lr")].is_empty(), trained, "{r:?}");
        assert_eq!(r[col("weights")], "pretrain mini all shots=4 seed=0");
    }

    // The same stages through the commands land on the runner's artifacts.
    let quiet = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--store", &store, "--quiet"]);
        s.ok(&all).0.trim().to_string()
    };
    let data = s.p("data");
    let split_args = ["--dataset", "imagefolder", "--root", &data, "--image-size", "32"];
    let pre = quiet(&[&["split"][..], &split_args, &["--shots", "4", "--seed", "0"]].concat());
    let weights = quiet(&["pretrain", "--split", &pre, "--epochs", "1", "--batch-size", "8"]);
    let split = quiet(&[&["split"][..], &split_args, &["--shots", "2", "--seed", "1"]].concat());
    let zero_shot = quiet(&["eval", "--split", &split, "--weights", &weights]);
    let probe = quiet(&["probe", "--split", &split, "--weights", &weights]);
    let key = |path: &str| Path::new(path).file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(key(&zero_shot), rows[0][col("eval")]);
    assert_eq!(key(&probe), rows[7][col("eval")]);
    let stored = |kind: &str| artifacts(&s.path("store")).into_iter().filter(|a| a.0 == kind).count();
    assert_eq!((stored("weights"), stored("split"), stored("eval")), (1, 2, 8), "the commands made nothing new");

    // Every kind a stage makes, recomputed from its manifest alone, is byte-identical.
    let mut rerun: Vec<String> = artifacts(&s.path("store"))
        .into_iter()
        .filter(|(kind, _, _)| kind != "split")
        .map(|(kind, key, _)| format!("{kind}/{key}"))
        .collect();
    rerun.sort();
    let refs: Vec<String> = rerun.iter().map(|r| s.p(&format!("store/{r}"))).collect();
    let mut args = vec!["audit", "--rerun", "--store", &store];
    args.extend(refs.iter().map(String::as_str));
    let (stdout, _) = s.ok(&args);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok  ")).count(), 1 + 1 + 3 + 6 + 8, "{stdout}");
    assert!(stdout.contains("ok  weights/") && stdout.contains("byte for byte"), "{stdout}");
    // A published result that no longer matches what its stage makes, its manifest made to agree
    // (so the plain audit passes): the rerun names the file.
    let probe_dir = s.path("store/eval").join(rows[7][col("eval")]);
    let metrics = probe_dir.join("metrics.csv");
    let forged = read(&metrics) + "forged,row\n";
    std::fs::write(&metrics, &forged).unwrap();
    let manifest_path = probe_dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&read(&manifest_path)).unwrap();
    manifest["outputs"]["metrics.csv"] = blake3::hash(forged.as_bytes()).to_hex().as_str().into();
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    s.audit_clean(&store);
    let probe_ref = probe_dir.to_str().unwrap().to_string();
    let out = s.fails(
        &mut s.cmd(&["audit", "--rerun", "--store", &store, &probe_ref]),
        &["error: 1 of 1 rerun(s) differ from the store"],
    );
    assert!(out.contains("BAD eval/") && out.contains("rerun differs in `metrics.csv`"), "{out}");
    s.fails(&mut s.cmd(&["audit", "--rerun", "--store", &store]), &["--rerun recomputes what it is given"]);

    let bad = |name: &str, text: String, needles: &[&str]| {
        let path = s.write(name, &text);
        s.fails(&mut s.cmd(&["run", &path, "--store", &s.p("bad-store")]), needles);
    };
    bad(
        "probe-b2n.toml",
        text.replace("seed = 1\n", "seed = 1\nclasses = \"base-to-novel\"\n"),
        &["probe-b2n.toml:2: method linear-probe", "base-to-novel"],
    );
    bad(
        "two-sources.toml",
        text.replace("[weights]\n", "[weights]\ninit = { preset = \"mini\" }\n"),
        &["two-sources.toml:4: [weights] gives init and pretrain; keep one"],
    );
    bad("no-shots.toml", text.replace("shots = 4, ", ""), &["[weights.pretrain] shots is not set"]);
    assert!(!s.path("bad-store").exists());
}
