//! Code is an input of the cache. Every stage runs once on a tiny fixture and its outputs are
//! compared with golden records kept in `tests/golden/stages.json` next to the `SCHEMA` each
//! was recorded at. A stage whose outputs change while its `SCHEMA` (and so its key) stays the
//! same would let stores silently reuse artifacts made by the old code: that fails here, naming
//! the stage and what to bump. The rule is in README.md, "Contributing".
//!
//! Re-record after a deliberate change (with the schema bumped where outputs changed):
//! `CLIP_AST_BLESS=1 cargo test --release --test golden_stages`. Recording refuses a stage whose
//! outputs changed under an unchanged key.
//!
//! The second test checks `audit --rerun` on "another CPU kind": numbers within tolerance are
//! accepted and their largest difference reported; a byte change on the same kind is not.
//!
//! Both run under every kernel variant of `common::kernels` (other instruction sets, MKL's
//! reproducible mode, oneDNN held to SSE4.1, 1 and 2 threads), so a value that holds only on
//! the recording CPU fails on the developer's machine first. Why the fixture's numbers agree to
//! ~1e-7 between variants, and what still moves, is in docs/store.md ("Golden values on every
//! CPU").

mod common;
mod golden;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::kernels::{KernelVariant, kernel_variants};
use golden::Record;

const GOLDEN_FILE: &str = "tests/golden/stages.json";

/// Where each stage's `SCHEMA` lives, by the labels of the fixture's artifacts.
fn source_of(label: &str) -> &'static str {
    match label {
        "split" => "src/stages/split.rs",
        "init-weights" => "src/stages/weights.rs",
        "pretrain" => "src/stages/pretrain.rs",
        "stage1" => "src/stages/stage1.rs",
        "selection" | "selection-random" | "selection-random-params" => "src/stages/select.rs",
        "stage2" => "src/stages/stage2.rs",
        "probe" => "src/stages/probe.rs",
        _ => "src/stages/eval.rs",
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    variant: KernelVariant,
}

impl Fixture {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `clip-ast` under the fixture's kernel variant.
    fn command(&self) -> std::process::Command {
        let mut command = common::clip_ast();
        self.variant.apply(&mut command).env("XDG_CACHE_HOME", self.path("cache"));
        command
    }

    /// Run a stage command (bit-reproducible at a given thread count) and return the artifact path.
    fn stage(&self, args: &[&str]) -> String {
        let threads = self.variant.threads.to_string();
        let out = self
            .command()
            .args(args)
            .args(["--store", self.path("store").to_str().unwrap(), "--threads", &threads, "--quiet"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} under {} failed:\n{stderr}", self.variant.name);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// How much of the fixture to build.
#[derive(Clone, Copy, PartialEq)]
enum Upto {
    Stage1,
    All,
}

/// Every stage once: four colour classes, 2 shots, the mini preset. Label → artifact dir.
///
/// Stage 2 warms up from 1e-4, not from the 1e-9 a real run starts at: a step of 1e-9 moves fp32
/// weights of size ~0.02 by less than one unit in the last place, so the trainable and frozen
/// features then differ by rounding noise alone, the L1 terms' gradients sign(Δ)/N have full size
/// with signs the kernels decide, and AdamW turns them into whole ±lr steps: the final loss moved
/// by 3e-4 between kernel variants. docs/store.md has the measurements.
fn build_fixture(variant: &KernelVariant, upto: Upto) -> (Fixture, BTreeMap<&'static str, String>) {
    let fixture = Fixture { dir: tempfile::tempdir().unwrap(), variant: variant.clone() };
    let (images, labels) = common::colour_images(10, 5);
    for (i, (img, label)) in images.iter().zip(labels).enumerate() {
        let class = ["red", "green", "blue", "yellow"][label as usize];
        let dir = fixture.path("data").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        img.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
    let data = fixture.path("data");
    let split_args = ["split", "--dataset", "imagefolder", "--root", data.to_str().unwrap(), "--image-size", "32"];
    let mut made = BTreeMap::new();
    let split = fixture.stage(&[&split_args[..], &["--shots", "2", "--seed", "1"]].concat());
    let weights = fixture.stage(&["init-weights", "--preset", "mini", "--seed", "0"]);
    let stage1 =
        fixture.stage(&["stage1", "--split", &split, "--weights", &weights, "--lr", "1e-4", "--batch-size", "4"]);
    if upto == Upto::Stage1 {
        made.extend([("split", split), ("init-weights", weights), ("stage1", stage1)]);
        return (fixture, made);
    }
    let pretrain = fixture.stage(&["pretrain", "--split", &split, "--epochs", "1", "--batch-size", "4"]);
    let selection = fixture.stage(&["select", "--stage1", &stage1, "--k", "3"]);
    let random = fixture.stage(&["select", "--stage1", &stage1, "--k", "3", "--score", "random"]);
    let random_params =
        fixture.stage(&["select", "--stage1", &stage1, "--score", "random", "--match", "params", "--like", &selection]);
    let stage2 = fixture.stage(&[
        "stage2",
        "--split",
        &split,
        "--weights",
        &weights,
        "--selection",
        &selection,
        "--lr",
        "1e-3",
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--warmup-lr",
        "1e-4",
        "--batch-size",
        "4",
    ]);
    let zero_shot = fixture.stage(&["eval", "--split", &split, "--weights", &pretrain]);
    let tuned = fixture.stage(&["eval", "--split", &split, "--weights", &weights, "--stage2", &stage2]);
    let probe = fixture.stage(&["probe", "--split", &split, "--weights", &pretrain]);
    for (label, dir) in [
        ("split", split),
        ("init-weights", weights),
        ("pretrain", pretrain),
        ("stage1", stage1),
        ("selection", selection),
        ("selection-random", random),
        ("selection-random-params", random_params),
        ("stage2", stage2),
        ("eval-zero-shot", zero_shot),
        ("eval-stage2", tuned),
        ("probe", probe),
    ] {
        made.insert(label, dir);
    }
    (fixture, made)
}

/// The smallest relative gap between the K-th and (K+1)-th score of any block: a near tie there
/// could fall the other way on another CPU kind and change the selected names.
fn smallest_boundary_gap(selection_dir: &str) -> f64 {
    let text = std::fs::read_to_string(Path::new(selection_dir).join("selection.json")).unwrap();
    let selection: serde_json::Value = serde_json::from_str(&text).unwrap();
    let k = selection["k"].as_u64().unwrap() as usize;
    let mut smallest = f64::INFINITY;
    for block in selection["blocks"].as_array().unwrap() {
        let mut scores: Vec<f64> =
            block["tensors"].as_array().unwrap().iter().map(|t| t["score"].as_f64().unwrap()).collect();
        scores.sort_by(|a, b| b.total_cmp(a));
        let (a, b) = (scores[k - 1], scores[k]);
        smallest = smallest.min((a - b).abs() / a.abs().max(b.abs()));
    }
    smallest
}

/// What differs between the recorded stages and `now`, one line per stage, each saying what to do.
fn compare(recorded: &BTreeMap<String, Record>, now: &BTreeMap<String, Record>) -> Vec<String> {
    let key_to_label: BTreeMap<&str, &str> =
        recorded.iter().map(|(label, r)| (r.key.as_str(), label.as_str())).collect();
    let mut failures = Vec::new();
    for (label, record) in now {
        let Some(golden) = recorded.get(label) else {
            failures.push(format!("stage `{label}` has no golden record: record one (see below)"));
            continue;
        };
        let differences = golden::differences(golden, record);
        if differences.is_empty() {
            continue;
        }
        let changed_input = golden
            .inputs
            .values()
            .filter_map(|k| key_to_label.get(k.as_str()))
            .find(|input| now.get(**input).is_some_and(|n| !golden::differences(&recorded[**input], n).is_empty()));
        let what = differences.join("; ");
        let message = if golden.schema != record.schema {
            format!(
                "stage `{label}`: SCHEMA is now {} (golden values are for {}): re-record",
                record.schema, golden.schema
            )
        } else if golden.key != record.key {
            format!("stage `{label}`: its key changed, so no stale artifact can be reused; re-record ({what})")
        } else if let Some(input) = changed_input {
            format!("stage `{label}` follows from its input `{input}`, whose outputs changed ({what})")
        } else {
            format!(
                "stage `{label}` ({} artifacts) writes different outputs under the same key: {what}. Stores made by the old code would be reused as if nothing changed: bump `SCHEMA` in {} (that changes its keys), then re-record",
                record.kind,
                source_of(label)
            )
        };
        failures.push(message);
    }
    let stale: Vec<&String> = recorded.keys().filter(|l| !now.contains_key(*l)).collect();
    if !stale.is_empty() {
        failures.push(format!("golden records {stale:?} belong to no stage of the fixture: re-record"));
    }
    failures
}

#[test]
fn stage_outputs_change_only_with_their_schema() {
    let path = common::repo_root().join(GOLDEN_FILE);
    let blessing = std::env::var_os("CLIP_AST_BLESS").is_some();
    let mut recorded: BTreeMap<String, Record> = match std::fs::read_to_string(&path).map(|t| serde_json::from_str(&t))
    {
        Ok(Ok(records)) => records,
        Ok(Err(e)) if !blessing => panic!("{GOLDEN_FILE} is not in the current record format ({e}): re-record it"),
        _ => BTreeMap::new(),
    };
    let mut failures = Vec::new();
    for (i, variant) in kernel_variants().iter().enumerate() {
        let (fixture, made) = build_fixture(variant, Upto::All);
        // Selected names are compared exactly, so the ranking must not hinge on a near tie.
        let gap = smallest_boundary_gap(&made["selection"]);
        assert!(
            gap > 1e-4,
            "the fixture's selection hinges on a near tie ({gap:.1e}) under {}: change the fixture, not the tolerance",
            variant.name
        );
        let now: BTreeMap<String, Record> = made
            .iter()
            .map(|(label, dir)| (label.to_string(), golden::record(Path::new(dir), fixture.dir.path())))
            .collect();
        let differences = compare(&recorded, &now);
        // Recording happens from the first variant only, and the others are then held to it, so
        // a record that would not hold on another CPU kind is refused as it is made.
        if blessing && i == 0 {
            let refused: Vec<&String> = differences.iter().filter(|f| f.contains("bump `SCHEMA`")).collect();
            assert!(refused.is_empty(), "not recorded:\n{}", differences.join("\n"));
            let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            println!("recorded {} stages in {GOLDEN_FILE} under {}", now.len(), variant.name);
            recorded = now;
            continue;
        }
        let (spread, at) = golden::largest_difference(&recorded, &now);
        println!(
            "{}: selection gap {gap:.2e}; largest relative difference from the golden values {spread:.1e} ({at})",
            variant.name
        );
        failures.extend(differences.into_iter().map(|d| format!("under {}: {d}", variant.name)));
    }
    assert!(
        failures.is_empty(),
        "{}\n\nRe-record with `CLIP_AST_BLESS=1 cargo test --release --test golden_stages` and commit {GOLDEN_FILE}; recording refuses a stage whose outputs changed under an unchanged key.",
        failures.join("\n")
    );
}

/// `audit --rerun` compares bytes where the artifact was made, and numbers elsewhere.
#[test]
fn rerun_on_another_cpu_kind_reports_the_largest_difference() {
    for variant in kernel_variants() {
        rerun_reports_the_largest_difference(&variant);
    }
}

fn rerun_reports_the_largest_difference(variant: &KernelVariant) {
    let (fixture, made) = build_fixture(variant, Upto::Stage1);
    let stage1 = PathBuf::from(&made["stage1"]);
    let audit = |extra: &[&str]| {
        let out = fixture
            .command()
            .args(["audit", "--rerun", stage1.to_str().unwrap(), "--store", fixture.path("store").to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = audit(&[]);
    assert!(ok && out.contains("byte for byte"), "under {}: {out}", variant.name);

    // Make the published log differ from what the stage writes (manifest made to agree, so the
    // plain audit passes): a relative 1e-6 change first, then a 1% one.
    let manifest_path = stage1.join("manifest.json");
    let original_manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let log = std::fs::read_to_string(stage1.join("log.csv")).unwrap();
    // step,epoch,loss,...: the third number of the first row.
    let first_row = log.lines().nth(1).unwrap();
    let first_loss = clip_ast::store::numeric_diff::split_numbers(first_row).1[2];
    let publish = |factor: f64, cpu_model: Option<&str>| {
        let text = log.replacen(&first_loss.to_string(), &(first_loss * factor).to_string(), 1);
        assert_ne!(text, log);
        std::fs::write(stage1.join("log.csv"), &text).unwrap();
        let mut manifest: serde_json::Value = serde_json::from_str(&original_manifest).unwrap();
        manifest["outputs"]["log.csv"] = blake3::hash(text.as_bytes()).to_hex().as_str().into();
        if let Some(model) = cpu_model {
            manifest["cpu"]["model"] = model.into();
        }
        std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    };

    publish(1.000001, None);
    let (ok, out) = audit(&[]);
    assert!(!ok && out.contains("BAD stage1/") && out.contains("bytes differ; largest difference"), "{out}");

    publish(1.000001, Some("Some Other CPU"));
    let (ok, out) = audit(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("made on Some Other CPU") && out.contains("comparing numbers, not bytes"), "{out}");
    assert!(out.contains("`log.csv`: largest difference") && out.contains("within tolerance"), "{out}");

    publish(1.01, Some("Some Other CPU"));
    let (ok, out) = audit(&[]);
    assert!(!ok && out.contains("beyond the 1e-3"), "{out}");

    // Another thread count is another promise too.
    publish(1.000001, None);
    let other = if variant.threads == 1 { 2 } else { 1 };
    let (ok, out) = audit(&["--threads", &other.to_string()]);
    assert!(ok && out.contains(&format!("{other} thread(s)")) && out.contains("within tolerance"), "{out}");
}
