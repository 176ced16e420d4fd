//! The store across processes: two processes asking for one artifact compute it once, and a
//! process killed at any moment leaves either nothing or a whole artifact.
//!
//! The child processes are this test binary re-run on the `child` test with
//! `STORE_TEST_CHILD` set; without it that test does nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clip_ast::store::{ArtifactKind, ArtifactSpec, STORE_ENV, Store, audit};
use serde_json::{Value, json};

const MODE: &str = "STORE_TEST_CHILD";
const DIR: &str = "STORE_TEST_DIR";
const SEED: &str = "STORE_TEST_SEED";

fn spec(seed: u64) -> ArtifactSpec {
    ArtifactSpec::new(ArtifactKind::Stage1, 1, json!({ "seed": seed }))
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(1));
    }
}

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
        // Enough data that a kill can land in produce, hashing, fsync or rename; reports how
        // long an uninterrupted run takes so the parent can spread its kills over it.
        "produce-many" => {
            let store = Store::open(Some(&dir.join("store"))).unwrap();
            let mut clock = None;
            store
                .get_or_produce(&spec(seed), |out| {
                    clock = Some(Instant::now());
                    std::fs::write(dir.join(format!("started-{seed}")), "")?;
                    write_parts(out)
                })
                .unwrap();
            let micros = clock.unwrap().elapsed().as_micros().to_string();
            std::fs::write(dir.join(format!("took-{seed}")), micros).unwrap();
        }
        "produce-hang" => {
            let store = Store::open(Some(&dir.join("store"))).unwrap();
            store
                .get_or_produce(&spec(seed), |out| {
                    std::fs::write(out.join("half.bin"), [7u8; 100])?;
                    std::fs::write(dir.join("started"), "")?;
                    std::thread::sleep(Duration::from_secs(60));
                    Ok(Value::Null)
                })
                .unwrap();
        }
        "race" => {
            wait_for(&dir.join("go"), Duration::from_secs(20));
            let store = Store::open(Some(&dir.join("store"))).unwrap();
            let made = store
                .get_or_produce(&spec(seed), |out| {
                    let log = dir.join(format!("produced-by-{}", std::process::id()));
                    std::fs::write(log, "")?;
                    std::thread::sleep(Duration::from_millis(300));
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

fn spawn(mode: &str, dir: &Path, seed: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env(DIR, dir)
        .env(SEED, seed.to_string())
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

#[test]
fn sigkill_mid_produce_leaves_no_artifact_and_the_next_call_produces_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn("produce-hang", dir.path(), 0);
    wait_for(&dir.path().join("started"), Duration::from_secs(20));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let store = Store::open(Some(&dir.path().join("store"))).unwrap();
    assert!(kind_entries(&store).is_empty(), "half artifact published");
    assert!(store.list().unwrap().is_empty());
    let leftovers = std::fs::read_dir(store.root().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 1, "the killed run's temp dir stays until someone takes the lock");

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

fn write_parts(out: &Path) -> anyhow::Result<Value> {
    for i in 0..40 {
        std::fs::write(out.join(format!("part-{i:02}.bin")), vec![i as u8; 64 << 10])?;
    }
    Ok(Value::Null)
}

#[test]
fn sigkill_at_any_moment_leaves_nothing_or_a_whole_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Some(&dir.path().join("store"))).unwrap();
    let run = |seed: u64, kill_after: Option<Duration>| {
        let mut child = spawn("produce-many", dir.path(), seed);
        wait_for(&dir.path().join(format!("started-{seed}")), Duration::from_secs(20));
        match kill_after {
            Some(delay) => {
                std::thread::sleep(delay);
                child.kill().unwrap(); // SIGKILL on Unix
            }
            None => assert!(child.wait().unwrap().success()),
        }
        child.wait().unwrap();
    };
    run(1000, None);
    let took: u64 = std::fs::read_to_string(dir.path().join("took-1000")).unwrap().parse().unwrap();
    // Kills spread from the start of produce to just past publishing.
    let kills = 10;
    for seed in 0..kills {
        let delay = Duration::from_micros(took * seed / (kills - 2));
        run(seed, Some(delay));
        let dest = store.artifact_dir(ArtifactKind::Stage1, &spec(seed).key());
        if dest.exists() {
            let report = audit::audit(&store, &dest);
            assert!(report.is_clean(), "killed after {delay:?}: {report}");
        }
        assert!(audit::audit_all(&store).unwrap().iter().all(|r| r.is_clean()));
    }
    // Every interrupted artifact can be made afterwards, whole.
    for seed in 0..kills {
        let made = store.get_or_produce(&spec(seed), write_parts).unwrap();
        assert_eq!(made.manifest.outputs.len(), 40);
    }
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    assert!(audit::audit_all(&store).unwrap().iter().all(|r| r.is_clean()));
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
