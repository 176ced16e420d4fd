//! SIGKILL at every crash point of a pipeline run (`CLIP_AST_CRASH_AT`, see src/crash_point.rs),
//! then at stage lines from outside, then two runs at once: after each kill the store audits
//! clean, the tables are whole or absent, and the final run reuses what was finished and
//! reproduces the uninterrupted results byte for byte. Deterministic: no sleeps, no timing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use clip_ast::crash_point::CRASH_ENV;
use clip_ast::rng::SplitMix64;
use common::files_under;
use common::scratch::*;

/// Files under `dir`, relative to it.
fn relative_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir).into_iter().map(|f| f.strip_prefix(dir).unwrap().to_path_buf()).collect()
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
            let files = relative_files(temp);
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
        relative_files(&s.path("fresh-2")).into_iter().filter(|f| f.to_string_lossy().starts_with(".tmp-")).collect();
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
