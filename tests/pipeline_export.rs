//! `[export] chosen = true` end to end: a small sweep with `[choose]` exports each chosen
//! row's model from the store, and a second run keeps those folders untouched.

mod common;

use common::Csv;

const SWEEP: &str = r#"name = "sweep"
method = ["zero-shot", "clip-ast"]

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = 1

[stage1]
lr = 1e-4
batch_size = 4

[select]
k = 3

[stage2]
lr = [1e-4, 1e-3]
epochs = 2
warmup_epochs = 1
batch_size = 4

[choose]
by = "val_acc"
among = ["stage2.lr"]

[export]
chosen = true
format = "open_clip"
"#;

/// `[export] chosen = true`: one folder per chosen row, the export of that row's evaluation,
/// kept as it is by a second run (which computes nothing); refused without `[choose]`.
#[test]
fn a_sweep_exports_its_chosen_models() {
    let scratch = common::scratch::Scratch::new();
    common::scratch::colour_images(&scratch.path("data"));
    let pipeline = scratch.write("sweep.toml", SWEEP);
    let run = |pipeline: &str| {
        scratch
            .cmd(&["run", pipeline, "--store", &scratch.p("store"), "--out", "results", "--threads", "1"])
            .output()
            .unwrap()
    };
    let out = run(&pipeline);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chosen = Csv::read(&scratch.path("results/chosen.csv"));
    assert_eq!(chosen.rows.len(), 2, "zero-shot and the chosen clip-ast run");
    let models = scratch.path("results/models");
    let mut stamps = Vec::new();
    for row in 0..chosen.rows.len() {
        let method = chosen.get(row, "method");
        let dir = models.join(format!("{method}-imagefolder-2shot-seed1"));
        let marker: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("clip_ast_export.json")).unwrap()).unwrap();
        assert_eq!(marker["source"]["key"], chosen.get(row, "eval"), "{method}");
        assert_eq!(marker["stage2"].is_null(), method == "zero-shot");
        assert!(dir.join("open_clip_model.safetensors").is_file() && !dir.join("model.safetensors").exists());
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let acc: f64 = chosen.get(row, "acc").parse().unwrap();
        assert!(readme.contains(&format!("| test accuracy | {acc:.4} |")), "{readme}");
        stamps.push(std::fs::metadata(dir.join("open_clip_model.safetensors")).unwrap().modified().unwrap());
    }
    assert_eq!(std::fs::read_dir(&models).unwrap().count(), 2);
    let again = run(&pipeline);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && stderr.contains("0 stage(s) computed"), "{stderr}");
    for (row, stamp) in stamps.iter().enumerate() {
        let dir = models.join(format!("{}-imagefolder-2shot-seed1", chosen.get(row, "method")));
        assert_eq!(&std::fs::metadata(dir.join("open_clip_model.safetensors")).unwrap().modified().unwrap(), stamp);
    }
    let no_choice =
        scratch.write("no-choice.toml", &SWEEP.replace("[choose]\nby = \"val_acc\"\namong = [\"stage2.lr\"]\n", ""));
    let out = run(&no_choice);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("[export] chosen = true needs a [choose]"), "{stderr}");
}
