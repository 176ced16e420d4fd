//! `clip-ast run --dry-run`'s cost estimate and `--calibrate`: a stage the store lacks is
//! estimated from the manifests of comparable stored ones (same kind, weights, data, device,
//! precision), its time scaled by shots × epochs; the expected numbers are computed here from
//! the manifests themselves. On a cold store nothing can be estimated until `--calibrate` has
//! computed one stage of each kind, which the run then reuses.

mod common;

use std::path::Path;

const SWEEP: &str = r#"name = "est"
[weights]
init = { preset = "mini", seed = 0 }
[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = 1
[stage1]
lr = 1e-4
epochs = 1
batch_size = 8
[select]
k = 3
[stage2]
lr = 1e-3
epochs = EPOCHS
warmup_epochs = 1
batch_size = 8
lambda = LAMBDAS
"#;

fn run(dir: &Path, args: &[&str]) -> String {
    let out = common::clip_ast()
        .args(args)
        .current_dir(dir)
        .env("DATA", dir.join("data"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The `total` column of a kind's estimate line, in seconds (`12 s`).
fn total_seconds(stdout: &str, kind: &str) -> f64 {
    let start = stdout.find("estimate on cpu").expect("an estimate");
    let line = stdout[start..].lines().find(|l| l.split_whitespace().next() == Some(kind)).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[words.len() - 1], "s", "{line}");
    words[words.len() - 2].parse().unwrap()
}

fn manifests(store: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_dir(store.join(kind))
        .map(|d| {
            d.map(|e| {
                let path = e.unwrap().path().join("manifest.json");
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
            })
            .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_cold_store_is_calibrated_and_new_stages_are_estimated_from_comparable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = common::colour_images(6, 3);
    for (i, (img, label)) in images.iter().zip(labels).enumerate() {
        let class = dir.path().join("data").join(["red", "green", "blue", "yellow"][label as usize]);
        std::fs::create_dir_all(&class).unwrap();
        img.save(class.join(format!("{i:02}.png"))).unwrap();
    }
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let two = dir.path().join("two.toml");
    std::fs::write(&two, SWEEP.replace("EPOCHS", "2").replace("LAMBDAS", "[0, 1]")).unwrap();
    let two = two.to_str().unwrap();

    // Cold: counts, but no estimate for any kind.
    let cold = run(dir.path(), &["run", two, "--dry-run", "--threads", "1", "--store", s]);
    assert!(cold.contains("8 stage(s) without an estimate"), "{cold}");
    // --calibrate computes one stage of each kind (and their inputs), then every kind has one.
    let calibrated = run(dir.path(), &["run", two, "--calibrate", "--threads", "1", "--store", s]);
    assert_eq!(manifests(&store, "stage2").len(), 1, "one stage 2 of the two");
    assert_eq!(manifests(&store, "eval").len(), 1);
    assert!(!calibrated.contains("without an estimate"), "{calibrated}");
    // The other stage 2 (λ = 1): as long as the calibrated one (same shots, epochs, weights, data).
    let stage2 = &manifests(&store, "stage2")[0];
    let expected = stage2["seconds"].as_f64().unwrap();
    assert!((total_seconds(&calibrated, "stage2") - expected).abs() <= 0.5 + 0.01 * expected, "{calibrated}");

    // Three times the stage-2 epochs: three times the time per stage 2 (both still to run).
    let six = dir.path().join("six.toml");
    std::fs::write(&six, SWEEP.replace("EPOCHS", "6").replace("LAMBDAS", "[0, 1]")).unwrap();
    let stdout = run(dir.path(), &["run", six.to_str().unwrap(), "--dry-run", "--threads", "1", "--store", s]);
    assert!((total_seconds(&stdout, "stage2") - 2.0 * 3.0 * expected).abs() <= 0.5 + 0.01 * expected, "{stdout}");
    assert!(stdout.contains("core-hours at 1 thread(s) a stage"), "{stdout}");
}
