//! `[eval] targets` in a rendering: a mini model adapted on Fashion-MNIST as it is, evaluated on
//! the rotated and low-contrast renderings of its test set (the demo's domain-generalisation
//! table at a tiny size). Each rendering is one target row per point, labelled
//! `fashion-mnist/RENDERING`; its split really holds rendered images; a second run computes
//! nothing. A model adapted on part of the classes cannot be evaluated on the same dataset.

mod common;

use std::path::Path;

use common::Csv;

const ROOT: &str = "/usr/share/datasets";

const PIPELINE: &str = r#"name = "renderings"
method = ["zero-shot", "clip-ast"]

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "fashion-mnist"
root = "/usr/share/datasets"
shots = 1
seed = 1
test_per_class = 3

[stage1]
epochs = 1
batch_size = 4

[select]
k = 2

[stage2]
epochs = 1
warmup_epochs = 0
batch_size = 4

[eval]
targets = [
    { dataset = "fashion-mnist", root = "/usr/share/datasets", test_per_class = 3 },
    { dataset = "fashion-mnist", root = "/usr/share/datasets", test_per_class = 3, rendering = "rotated" },
    { dataset = "fashion-mnist", root = "/usr/share/datasets", test_per_class = 3, rendering = "low-contrast" },
]
"#;

fn run(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = common::clip_ast()
        .args(args)
        .arg("--store")
        .arg(dir.join("store"))
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A split's `test_images.safetensors`: labels and images ([N, S, S, 3] uint8, row-major).
fn test_images(split: &Path) -> (Vec<i64>, Vec<u8>, usize) {
    let bytes = std::fs::read(split.join("test_images.safetensors")).unwrap();
    let head_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let head: serde_json::Value = serde_json::from_slice(&bytes[8..8 + head_len]).unwrap();
    let data = &bytes[8 + head_len..];
    let range = |name: &str| {
        let o = &head[name]["data_offsets"];
        o[0].as_u64().unwrap() as usize..o[1].as_u64().unwrap() as usize
    };
    let labels = data[range("labels")].chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let size = head["images"]["shape"][1].as_u64().unwrap() as usize;
    (labels, data[range("images")].to_vec(), size)
}

fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs()).sum::<f64>() / a.len() as f64
}

/// `images` turned a quarter turn clockwise, image by image: out[y][x] = in[S-1-x][y].
fn rotate_clockwise(images: &[u8], s: usize) -> Vec<u8> {
    let mut out = vec![0; images.len()];
    for (n, img) in images.chunks(s * s * 3).enumerate() {
        for y in 0..s {
            for x in 0..s {
                let (to, from) = ((y * s + x) * 3, ((s - 1 - x) * s + y) * 3);
                out[n * s * s * 3 + to..][..3].copy_from_slice(&img[from..from + 3]);
            }
        }
    }
    out
}

#[test]
fn rendering_targets_are_rows_of_rendered_test_sets() {
    assert!(Path::new(ROOT).join("fashion-mnist").is_dir(), "install Debian's dataset-fashion-mnist (make test does)");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.toml"), PIPELINE).unwrap();
    let args = ["run", "p.toml", "--out", "out", "--jobs", "2", "--threads", "1"];
    let (ok, stderr) = run(dir, &args);
    assert!(ok, "{stderr}");
    let (ok, again) = run(dir, &args);
    assert!(ok && again.contains(" 0 stage(s) computed"), "a second run computes nothing: {again}");

    let results = Csv::read(&dir.join("out/results.csv"));
    let rows: Vec<(&str, &str)> =
        (0..results.rows.len()).map(|i| (results.get(i, "method"), results.get(i, "target"))).collect();
    let expected = [
        ("zero-shot", ""),
        ("zero-shot", "fashion-mnist"),
        ("zero-shot", "fashion-mnist/rotated"),
        ("zero-shot", "fashion-mnist/low-contrast"),
        ("clip-ast", ""),
        ("clip-ast", "fashion-mnist"),
        ("clip-ast", "fashion-mnist/rotated"),
        ("clip-ast", "fashion-mnist/low-contrast"),
    ];
    assert_eq!(rows, expected);
    let store = dir.join("store");
    let json = |path: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    // Each row's evaluation and the split it read.
    let split_of = |row: usize| {
        let eval = json(&store.join("eval").join(results.get(row, "eval")).join("manifest.json"));
        let inputs = eval["inputs"].as_object().unwrap();
        let splits: Vec<&str> =
            inputs.iter().filter(|(k, _)| k.starts_with("split")).map(|(_, v)| v.as_str().unwrap()).collect();
        assert_eq!(splits.len(), 1, "{inputs:?}");
        store.join("split").join(splits[0])
    };
    for i in 0..rows.len() {
        assert_eq!(results.get(i, "n"), "30", "row {i}: 3 test images of each of the 10 classes");
    }
    // The original-rendering target is the point's own test set here (shots 1, seed 1, the same
    // images): the same evaluation, still a row of its own.
    for own_row in [0, 4] {
        assert_eq!(results.get(own_row + 1, "eval"), results.get(own_row, "eval"));
        assert_eq!(results.get(own_row + 1, "acc"), results.get(own_row, "acc"));
    }
    let own = split_of(4);
    let (labels, original, s) = test_images(&own);
    for (row, rendering) in [(6, "rotated"), (7, "low-contrast")] {
        let split = split_of(row);
        assert_ne!(split, own, "row {row}");
        assert_eq!(split, split_of(row - 4), "zero-shot and CLIP-AST read one {rendering} split");
        assert_eq!(json(&split.join("split.json"))["rendering"], rendering);
        let (target_labels, images, size) = test_images(&split);
        assert_eq!((target_labels.as_slice(), size), (labels.as_slice(), s), "the same test images, in order");
        assert!(mean_abs(&images, &original) > 10.0, "{rendering} images differ from the originals");
        match rendering {
            // Rotation commutes with the square resize up to rounding.
            "rotated" => assert!(mean_abs(&images, &rotate_clockwise(&original, s)) < 1.0),
            // v -> 85 + v/3 is affine, so it commutes with the (linear) resize up to rounding
            // and the clamping of the resize's overshoot.
            _ => {
                let squeezed: Vec<u8> = original.iter().map(|&v| (85.0 + f64::from(v) / 3.0).round() as u8).collect();
                assert!(mean_abs(&images, &squeezed) < 1.0, "{}", mean_abs(&images, &squeezed));
            }
        }
    }

    let summary = Csv::read(&dir.join("out/summary.csv"));
    let targets: Vec<&str> = (0..summary.rows.len())
        .filter(|&i| summary.get(i, "method") == "clip-ast")
        .map(|i| summary.get(i, "target"))
        .collect();
    for target in ["", "fashion-mnist", "fashion-mnist/rotated", "fashion-mnist/low-contrast", "mean"] {
        assert!(targets.contains(&target), "no clip-ast summary row for `{target}`: {targets:?}");
    }
}

#[test]
fn a_same_dataset_target_needs_a_model_adapted_on_all_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The renderings only: the error names the first of them.
    let original = "    { dataset = \"fashion-mnist\", root = \"/usr/share/datasets\", test_per_class = 3 },\n";
    assert!(PIPELINE.contains(original));
    let text = PIPELINE
        .replace(original, "")
        .replace("test_per_class = 3\n", "test_per_class = 3\nclasses = \"base-to-novel\"\n");
    // The first target's line in the file.
    let line = text.lines().position(|l| l.contains("\"rotated\"")).unwrap() + 1;
    std::fs::write(dir.join("b2n.toml"), text).unwrap();
    let (ok, stderr) = run(dir, &["run", "b2n.toml", "--dry-run"]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("error: b2n.toml:{line}: ")), "{stderr}");
    for needle in ["fashion-mnist/rotated is fashion-mnist itself", "classes = base-to-novel", "classes = \"all\""] {
        assert!(stderr.contains(needle), "`{needle}` not in {stderr}");
    }
    assert!(!dir.join("store").exists(), "nothing written");

    // The same dataset in one rendering twice is a mistake; in two renderings it is not.
    let twice = PIPELINE.replace("rendering = \"low-contrast\"", "rendering = \"rotated\"");
    std::fs::write(dir.join("twice.toml"), twice).unwrap();
    let (ok, stderr) = run(dir, &["run", "twice.toml", "--dry-run"]);
    assert!(!ok && stderr.contains("lists fashion-mnist/rotated twice"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
