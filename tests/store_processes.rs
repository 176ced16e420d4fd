//! The store across processes: two processes asking for one artifact compute it once, and a
//! process killed at any point of a store transaction leaves either nothing or a whole artifact.
//!
//! The child processes are this test binary re-run on the `child` test with
//! `STORE_TEST_CHILD` set; without it that test does nothing. Kills come from crash points
//! (`CLIP_AST_CRASH_AT`), and processes wait for each other through files, never for a time.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use clip_ast::crash_point::{self, CRASH_ENV};
use clip_ast::store::{ArtifactKind, ArtifactSpec, STORE_ENV, Store, audit};
use serde_json::{Value, json};

const MODE: &str = "STORE_TEST_CHILD";
const DIR: &str = "STORE_TEST_DIR";
const SEED: &str = "STORE_TEST_SEED";

fn spec(seed: u64) -> ArtifactSpec {
    ArtifactSpec::new(ArtifactKind::Stage1, 1, json!({ "seed": seed }))
}

/// Poll until `path` exists (another process writes it when it gets there).
fn wait_for(path: &Path) {
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The signal a crash point kills with.
const SIGKILL: i32 = 9;

/// What a child process does, chosen by `STORE_TEST_CHILD`.
#[test]
fn child() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let seed: u64 = std::env::var(SEED).map(|s| s.parse().unwrap()).unwrap_or(0);
    match mode.as_str() {
        "print-root" => println!("ROOT={}", Store::open(None).unwrap().root().display()),
        // Forty files, a crash point halfway through them; the parent sets CLIP_AST_CRASH_AT.
        "produce-many" => {
            let store = Store::open(Some(&dir.join("store"))).unwrap();
            store.get_or_produce(&spec(seed), write_parts).unwrap();
        }
        "race" => {
            wait_for(&dir.join("go"));
            let store = Store::open(Some(&dir.join("store"))).unwrap();
            std::fs::write(dir.join(format!("asking-{}", std::process::id())), "").unwrap();
            let made = store
                .get_or_produce(&spec(seed), |out| {
                    let log = dir.join(format!("produced-by-{}", std::process::id()));
                    std::fs::write(log, "")?;
                    // Both processes are asking for the key before it is published, so the other
                    // one must wait for this one's lock, whatever the scheduler did.
                    while asking(&dir) < 2 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::fs::write(out.join("result.txt"), "same")?;
                    Ok(json!({"acc": 1.0}))
                })
                .unwrap();
            let report = json!({"cached": made.cached, "producer_pid": made.manifest.producer.pid});
            let name = format!("result-{}.json", std::process::id());
            std::fs::write(dir.join(name), report.to_string()).unwrap();
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn asking(dir: &Path) -> usize {
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
    names.filter(|n| n.starts_with("asking-")).count()
}

fn spawn(mode: &str, dir: &Path, seed: u64) -> Child {
    spawn_crashing(mode, dir, seed, "")
}

/// A child with `CLIP_AST_CRASH_AT=crash_at` (empty: none).
fn spawn_crashing(mode: &str, dir: &Path, seed: u64, crash_at: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env(DIR, dir)
        .env(SEED, seed.to_string())
        .env(CRASH_ENV, crash_at)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn kind_entries(store: &Store) -> Vec<PathBuf> {
    match std::fs::read_dir(store.root().join("stage1")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Run a `produce-many` child killed at `crash_at`; it must die of SIGKILL.
fn crash(dir: &Path, seed: u64, crash_at: &str) {
    let out = spawn_crashing("produce-many", dir, seed, crash_at).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(SIGKILL), "{crash_at}: {}\n{stderr}", out.status);
}

#[test]
fn sigkill_mid_produce_leaves_no_artifact_and_the_next_call_produces_it() {
    let dir = tempfile::tempdir().unwrap();
    crash(dir.path(), 0, "stage-output");

    let store = Store::open(Some(&dir.path().join("store"))).unwrap();
    assert!(kind_entries(&store).is_empty(), "half artifact published");
    assert!(store.list().unwrap().is_empty());
    let leftovers: Vec<PathBuf> =
        std::fs::read_dir(store.root().join("tmp")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(leftovers.len(), 1, "the killed run's temp dir stays until someone takes the lock");
    assert_eq!(std::fs::read_dir(&leftovers[0]).unwrap().count(), 20, "killed halfway through its outputs");

    // The dead process's lock went with it: this does not block, and clears its temp dir.
    let made = store
        .get_or_produce(&spec(0), |out| {
            std::fs::write(out.join("whole.bin"), [1u8; 10])?;
            Ok(Value::Null)
        })
        .unwrap();
    assert!(!made.cached);
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    assert!(audit::audit_all(&store).unwrap().iter().all(|r| r.is_clean()));
}

/// Forty files of 64 KiB, with the `stage-output` crash point after the twentieth.
fn write_parts(out: &Path) -> anyhow::Result<Value> {
    for i in 0..40 {
        std::fs::write(out.join(format!("part-{i:02}.bin")), vec![i as u8; 64 << 10])?;
        if i == 19 {
            crash_point::reached("stage-output");
        }
    }
    Ok(Value::Null)
}

#[test]
fn sigkill_at_every_crash_point_leaves_nothing_or_a_whole_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Some(&dir.path().join("store"))).unwrap();
    // Each point once, on its own key; only after the rename is the artifact there.
    let points = ["stage-start", "stage-output", "before-rename", "after-rename"];
    for (seed, point) in (0..).zip(points) {
        crash(dir.path(), seed, point);
        let dest = store.artifact_dir(ArtifactKind::Stage1, &spec(seed).key());
        assert_eq!(dest.exists(), point == "after-rename", "killed at {point}");
        if dest.exists() {
            let report = audit::audit(&store, &dest);
            assert!(report.is_clean(), "killed at {point}: {report}");
            assert_eq!(report_outputs(&dest), 40, "killed at {point}");
        }
        assert!(audit::audit_all(&store).unwrap().iter().all(|r| r.is_clean()), "killed at {point}");
    }
    let kills = points.len() as u64;
    // Every interrupted artifact can be made afterwards, whole.
    for seed in 0..kills {
        let made = store.get_or_produce(&spec(seed), write_parts).unwrap();
        assert_eq!(made.manifest.outputs.len(), 40);
    }
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    assert!(audit::audit_all(&store).unwrap().iter().all(|r| r.is_clean()));
}

fn report_outputs(dest: &Path) -> usize {
    clip_ast::store::Artifact::load(dest).unwrap().manifest.outputs.len()
}

#[test]
fn two_processes_compute_one_artifact_once() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<Child> = (0..2).map(|_| spawn("race", dir.path(), 5)).collect();
    std::fs::write(dir.path().join("go"), "").unwrap();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let producers: Vec<&String> = names.iter().filter(|n| n.starts_with("produced-by-")).collect();
    assert_eq!(producers.len(), 1, "computed more than once: {names:?}");
    let producer_pid: u64 = producers[0]["produced-by-".len()..].parse().unwrap();
    let results: Vec<Value> = names
        .iter()
        .filter(|n| n.starts_with("result-"))
        .map(|n| serde_json::from_str(&std::fs::read_to_string(dir.path().join(n)).unwrap()).unwrap())
        .collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results.iter().filter(|r| r["cached"] == json!(false)).count(), 1);
    assert!(results.iter().all(|r| r["producer_pid"] == json!(producer_pid)), "{results:?}");
}

#[test]
fn store_root_comes_from_the_environment_when_no_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(MODE, "print-root")
        .env(DIR, dir.path())
        .env(STORE_ENV, dir.path().join("elsewhere"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("ROOT={}", dir.path().join("elsewhere").display())), "{stdout}");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .current_dir(dir.path())
        .env(MODE, "print-root")
        .env(DIR, dir.path())
        .env_remove(STORE_ENV)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("ROOT={}", dir.path().join("artifacts").display())), "{stdout}");
}
