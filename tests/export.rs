//! `export`, `predict` and `import-weights` of an export, on a tiny tuned model: a stage-2 run
//! (3 of 12 tensors per block, so the merge matters) on the mini preset over a foundation whose
//! every tensor is perturbed (so no norm or bias is the identity a wrong name could hide behind).
//!
//! The exported folder is loaded by open_clip and transformers from .venv (tests/ref_export.py):
//! their image and text features must match clip-ast's `embed` of the same tuned model within
//! 1e-5 relative, and the exported classifier must predict each test image as `eval` did.
//! `predict` must reproduce `eval`'s predictions (so its accuracy), and `import-weights` must
//! read both formats back to the very tensors that were exported.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use clip_ast::clip::init::init_weights;
use clip_ast::clip::weights::{Weights, read_safetensors, write_safetensors};
use clip_ast::clip::{Clip, ClipConfig};
use clip_ast::eval::{predict_clip, score};
use clip_ast::stages::eval::tuned_weights;
use clip_ast::stages::split_data::{read_split, test_set};
use clip_ast::store::Artifact;
use clip_ast::train::prompts::class_prompt_ids;
use common::Csv;
use tch::{Device, Kind, Tensor};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        common::clip_ast()
            .args(args)
            .args(["--store", self.path("store").to_str().unwrap(), "--threads", "1", "--quiet"])
            .env("XDG_CACHE_HOME", self.path("cache"))
            .output()
            .unwrap()
    }

    /// Run a command that must succeed; its stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn artifact(&self, dir: &str) -> Artifact {
        Artifact::load(Path::new(dir)).unwrap()
    }
}

struct Run {
    split: String,
    weights: String,
    stage2: String,
    eval: String,
}

/// A perturbed mini foundation, imported; a split of four noisy colour classes; stage 1,
/// selection of 3 tensors per block, a short stage 2 and its evaluation.
fn build() -> (Fixture, Run) {
    let fixture = Fixture { dir: tempfile::tempdir().unwrap() };
    let (images, labels) = common::colour_images(20, 7);
    for (i, (img, label)) in images.iter().zip(labels).enumerate() {
        let dir = fixture.path("data").join(["red", "green", "blue", "yellow"][label as usize]);
        std::fs::create_dir_all(&dir).unwrap();
        img.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
    let config = ClipConfig::preset("mini").unwrap();
    tch::manual_seed(11);
    let foundation: Weights = init_weights(&config, 5)
        .into_iter()
        .map(|(name, t)| {
            let noise = Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.05;
            (name, if t.dim() <= 1 { t + noise } else { t })
        })
        .collect();
    let file = fixture.path("foundation.safetensors");
    write_safetensors(&foundation, &file).unwrap();
    let weights = fixture.ok(&["import-weights", file.to_str().unwrap(), "--activation", "quick_gelu"]);
    let data = fixture.path("data");
    let split = fixture.ok(&[
        "split",
        "--dataset",
        "imagefolder",
        "--root",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--shots",
        "2",
        "--seed",
        "1",
    ]);
    let stage1 = fixture.ok(&["stage1", "--split", &split, "--weights", &weights, "--lr", "1e-4", "--batch-size", "4"]);
    let selection = fixture.ok(&["select", "--stage1", &stage1, "--k", "3"]);
    let stage2 = fixture.ok(&[
        "stage2",
        "--split",
        &split,
        "--weights",
        &weights,
        "--selection",
        &selection,
        "--lr",
        "1e-4",
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--batch-size",
        "4",
    ]);
    let eval = fixture.ok(&["eval", "--split", &split, "--weights", &weights, "--stage2", &stage2]);
    (fixture, Run { split, weights, stage2, eval })
}

/// The split's test images as files, in the order of its test set.
fn test_files(split_dir: &str) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(Path::new(split_dir).join("split.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let image_dir = PathBuf::from(json["image_dir"].as_str().unwrap());
    json["test"].as_array().unwrap().iter().map(|row| image_dir.join(row[0].as_str().unwrap())).collect()
}

/// `eval`'s prediction for each test image, from the function the eval stage calls with the
/// model it builds; checked against the accuracy the eval artifact recorded.
fn eval_predictions(fixture: &Fixture, run: &Run) -> (Vec<i64>, Vec<i64>, f64) {
    tch::set_num_threads(1);
    let (split, weights) = (fixture.artifact(&run.split), fixture.artifact(&run.weights));
    let (config, tensors) = tuned_weights(&weights, Some(&fixture.artifact(&run.stage2))).unwrap();
    let model = Clip::new(&config, &tensors).unwrap();
    let info = read_split(&split).unwrap();
    let ids = class_prompt_ids(&info.template, &info.classnames, config.text.context_length).unwrap();
    let test = test_set(&split).unwrap();
    let all = 0..info.classnames.len() as i64;
    let predictions = predict_clip(&model, &test, &ids, Device::Cpu, 64, &[all]).unwrap().pop().unwrap();
    let labels = Vec::<i64>::try_from(&test.labels).unwrap();
    let metrics = Csv::read(&Path::new(&run.eval).join("metrics.csv"));
    let recorded: f64 = metrics.get(0, "acc").parse().unwrap();
    assert_eq!(score(&predictions, &labels, &info.classnames).acc, recorded, "the eval artifact's accuracy");
    (predictions, labels, recorded)
}

/// Largest ‖a_i − b_i‖ / ‖b_i‖ over rows.
fn relative(a: &serde_json::Value, b: &Tensor) -> f64 {
    let rows: Vec<Vec<f32>> = serde_json::from_value(a.clone()).unwrap();
    let a = Tensor::from_slice(&rows.concat()).view([rows.len() as i64, -1]);
    ((&a - b).norm_scalaropt_dim(2, [-1], false) / b.norm_scalaropt_dim(2, [-1], false)).max().double_value(&[])
}

#[test]
fn exports_load_in_open_clip_and_transformers_and_predict_matches_eval() {
    let (fixture, run) = build();
    let (eval_predictions, labels, accuracy) = eval_predictions(&fixture, &run);
    assert!(
        accuracy > 0.3 && accuracy < 1.0,
        "a fixture whose predictions are all right (or near chance) would not test the comparison: {accuracy}"
    );
    let out = fixture.path("exported");
    fixture.ok(&["export", &run.eval, "--out", out.to_str().unwrap()]);
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for expected in [run.eval.rsplit('/').next().unwrap(), "imagefolder: 2 shots, seed 1", "clip-ast/inv-sqrt-v"] {
        assert!(readme.contains(expected), "README lacks {expected:?}:\n{readme}");
    }
    assert!(readme.contains(&format!("| test accuracy | {accuracy:.4} |")), "{readme}");

    // clip-ast's own features of the tuned model, independent of the export.
    let tests = test_files(&run.split);
    let classes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("classes.json")).unwrap()).unwrap();
    let mut prompts: Vec<String> =
        classes["prompts"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap().to_string()).collect();
    prompts.push("A longer prompt: with punctuation, CAPITALS & an entity!".into());
    let embedded = fixture.path("embed.safetensors");
    let mut args: Vec<String> =
        ["embed", "--weights", &run.weights, "--stage2", &run.stage2, "--out"].iter().map(|s| s.to_string()).collect();
    args.push(embedded.display().to_string());
    for image in &tests[..8] {
        args.extend(["--image".into(), image.display().to_string()]);
    }
    for text in &prompts {
        args.extend(["--text".into(), text.clone()]);
    }
    fixture.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let ours = read_safetensors(&embedded).unwrap();

    let spec = serde_json::json!({
        "export": out, "images": &tests[..8], "prompts": prompts, "test_images": tests, "builtin": null,
    });
    let spec_path = fixture.path("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&common::run_reference("ref_export.py", &[spec_path.as_os_str()])).unwrap();
    assert_eq!(reference["open_clip_by_name_equal"], true, "open_clip: local-dir and pretrained=FILE differ");
    assert_eq!(reference["open_clip_quick_gelu"], true);
    assert_eq!(reference["hf_hidden_act"], "quick_gelu");
    assert_eq!(reference["token_ids_equal"], true, "CLIPTokenizer from the exported vocab differs from open_clip's");
    for library in ["open_clip", "hf"] {
        let image = relative(&reference[library]["image"], &ours["image_features"]);
        let text = relative(&reference[library]["text"], &ours["text_features"]);
        eprintln!("{library}: image features within {image:.2e}, text within {text:.2e} (relative)");
        assert!(image < 1e-5 && text < 1e-5, "{library}: image {image:.2e}, text {text:.2e}");
        let predicted: Vec<i64> = serde_json::from_value(reference[library]["predictions"].clone()).unwrap();
        assert_eq!(predicted, eval_predictions, "{library}'s classifier predictions against eval's, image by image");
        eprintln!("{library}: smallest top-1 logit margin {}", reference[library]["smallest_margin"]);
    }
    let classifier_gap = reference["classifier_vs_prompts_max_abs"].as_f64().unwrap();
    assert!(classifier_gap < 1e-5, "classifier.safetensors is not the model's prompt embeddings: {classifier_gap}");
    eprintln!("CLIPProcessor pixels differ from open_clip's by up to {}", reference["processor_pixel_max_abs"]);

    gelu_foundation_exports_as_gelu(&fixture, &run, &tests[..4]);
    predict_matches_eval(&fixture, &run, &out, &tests, &eval_predictions, &labels, accuracy);
    imports_read_exports_back(&fixture, &run, &out);
    refuses_foreign_folders(&fixture, &run);
}

fn predictions_of(csv: &Path) -> Vec<(String, String)> {
    let csv = Csv::read(csv);
    (0..csv.rows.len()).map(|i| (csv.get(i, "path").to_string(), csv.get(i, "label_1").to_string())).collect()
}

fn predict_matches_eval(
    fixture: &Fixture,
    run: &Run,
    exported: &Path,
    tests: &[PathBuf],
    eval_predictions: &[i64],
    labels: &[i64],
    accuracy: f64,
) {
    let info = read_split(&fixture.artifact(&run.split)).unwrap();
    let expected: Vec<&str> = eval_predictions.iter().map(|&p| info.classnames[p as usize].as_str()).collect();
    let files: Vec<String> = tests.iter().map(|p| p.display().to_string()).collect();
    // The exported folder's stored classifier, and the stage-2 artifact with the split's classes.
    for (model, classes) in [(exported.to_str().unwrap(), None), (run.stage2.as_str(), Some(run.split.as_str()))] {
        let csv = fixture.path("predictions.csv");
        let mut args = vec!["predict", "--model", model, "--top-k", "2", "--out", csv.to_str().unwrap()];
        if let Some(c) = classes {
            args.extend(["--classes", c]);
        }
        args.extend(files.iter().map(String::as_str));
        fixture.ok(&args);
        let rows = predictions_of(&csv);
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), files);
        assert_eq!(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), expected, "predict against eval ({model})");
        let right = rows.iter().zip(labels).filter(|(r, l)| r.1 == info.classnames[**l as usize]).count();
        assert_eq!(right as f64 / labels.len() as f64, accuracy);
        assert_eq!(Csv::read(&csv).header, ["path", "label_1", "prob_1", "label_2", "prob_2"]);
    }

    // A folder, recursively, with an unreadable image: skipped with one warning, or refused.
    let folder = fixture.path("photos");
    std::fs::create_dir_all(folder.join("deeper")).unwrap();
    for (i, test) in tests.iter().take(3).enumerate() {
        std::fs::copy(test, folder.join(if i == 0 { "deeper/a.png".into() } else { format!("{i}.PNG") })).unwrap();
    }
    std::fs::write(folder.join("broken.jpg"), b"not an image").unwrap();
    std::fs::write(folder.join("notes.txt"), b"not looked at").unwrap();
    let csv = fixture.path("folder.csv");
    let args = ["predict", "--model", exported.to_str().unwrap(), folder.to_str().unwrap()];
    let out = fixture.run(&[&args[..], &["--out", csv.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("1 image(s)") && warnings[0].contains("broken.jpg"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert_eq!(predictions_of(&csv).len(), 3);
    let strict = fixture.path("strict.csv");
    let out = fixture.run(&[&args[..], &["--strict", "--out", strict.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.starts_with("error: ") && stderr.contains("broken.jpg"), "{stderr}");
    assert!(!strict.exists(), "a refused run writes nothing");
    // An --out that is not a predictions CSV is not overwritten.
    let mine = fixture.path("mine.csv");
    std::fs::write(&mine, "my,own\n").unwrap();
    let out =
        fixture.run(&["predict", "--model", exported.to_str().unwrap(), &files[0], "--out", mine.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "my,own\n");
}

fn imports_read_exports_back(fixture: &Fixture, run: &Run, both: &Path) {
    let (_, tuned) = tuned_weights(&fixture.artifact(&run.weights), Some(&fixture.artifact(&run.stage2))).unwrap();
    let hf_only = fixture.path("exported-hf");
    fixture.ok(&["export", &run.stage2, "--format", "hf", "--out", hf_only.to_str().unwrap()]);
    assert!(!hf_only.join("open_clip_model.safetensors").exists());
    for folder in [both, hf_only.as_path()] {
        let imported = fixture.ok(&["import-weights", folder.to_str().unwrap()]);
        let back = read_safetensors(&Path::new(&imported).join("model.safetensors")).unwrap();
        assert_eq!(back.len(), tuned.len());
        for (name, t) in &tuned {
            assert!(t.equal(&back[name]), "{}: `{name}` differs after export and import", folder.display());
        }
    }
}

fn refuses_foreign_folders(fixture: &Fixture, run: &Run) {
    let theirs = fixture.path("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("README.md"), "someone else's").unwrap();
    let out = fixture.run(&["export", &run.eval, "--out", theirs.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not a clip-ast export"), "{stderr}");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(theirs.join("README.md")).unwrap(), "someone else's");
    // A previous export is replaced whole; one the user added a file to is not.
    let again = fixture.path("exported");
    fixture.ok(&["export", &run.stage2, "--out", again.to_str().unwrap(), "--format", "open_clip"]);
    assert!(!again.join("config.json").exists(), "the previous export's files are gone");
    std::fs::write(again.join("notes.md"), "mine").unwrap();
    let out = fixture.run(&["export", &run.stage2, "--out", again.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(again.join("notes.md")).unwrap(), "mine");
}

/// The same foundation imported as exact-GELU weights and exported bare with `--split`: both
/// libraries build it with GELU (`quick_gelu: false`, `hidden_act: gelu`) and compute what
/// `embed` computes.
fn gelu_foundation_exports_as_gelu(fixture: &Fixture, run: &Run, images: &[PathBuf]) {
    let file = fixture.path("foundation.safetensors");
    let weights = fixture.ok(&["import-weights", file.to_str().unwrap(), "--activation", "gelu"]);
    let out = fixture.path("exported-gelu");
    fixture.ok(&["export", &weights, "--split", &run.split, "--out", out.to_str().unwrap()]);
    let prompts = ["a photo of a red.", "a photo of a blue."];
    let embedded = fixture.path("embed-gelu.safetensors");
    let mut args =
        vec!["embed".to_string(), "--weights".into(), weights, "--out".into(), embedded.display().to_string()];
    for image in images {
        args.extend(["--image".into(), image.display().to_string()]);
    }
    for text in prompts {
        args.extend(["--text".into(), text.to_string()]);
    }
    fixture.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let ours = read_safetensors(&embedded).unwrap();
    let spec = serde_json::json!({"export": out, "images": images, "prompts": prompts, "builtin": null});
    let spec_path = fixture.path("spec-gelu.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&common::run_reference("ref_export.py", &[spec_path.as_os_str()])).unwrap();
    assert_eq!(reference["open_clip_quick_gelu"], false);
    assert_eq!(reference["hf_hidden_act"], "gelu");
    for library in ["open_clip", "hf"] {
        let image = relative(&reference[library]["image"], &ours["image_features"]);
        let text = relative(&reference[library]["text"], &ours["text_features"]);
        eprintln!("{library}, GELU: image features within {image:.2e}, text within {text:.2e} (relative)");
        assert!(image < 1e-5 && text < 1e-5, "{library} (GELU): image {image:.2e}, text {text:.2e}");
    }
}
