//! The MLP activation is never assumed for a checkpoint that could be either: open_clip folders
//! (open_clip_config.json beside the weights, written by open_clip's own hub export) give
//! open_clip's features without any flag; the same weights alone need `--activation`; a flag that
//! contradicts the config is refused. References from tests/ref_activation.py.

mod common;

use std::path::{Path, PathBuf};

use clip_ast::clip::weights::read_safetensors;
use tch::Tensor;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    images: Vec<String>,
    texts: Vec<String>,
    classes: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let stdout = common::run_reference("ref_activation.py", &[root.as_os_str()]);
        let listing: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let strings = |key: &str| -> Vec<String> {
            listing[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        let fx = Fixture {
            images: strings("images"),
            texts: strings("texts"),
            classes: strings("classes"),
            root,
            _dir: dir,
        };
        // The same weights with nothing beside them, as `save_file(model.state_dict())` leaves them.
        std::fs::create_dir(fx.root.join("bare")).unwrap();
        for name in ["gelu", "quick_gelu"] {
            std::fs::copy(fx.open_clip(name), fx.bare(name)).unwrap();
        }
        fx
    }

    /// The weights in open_clip's exported folder `name` (its config beside them).
    fn open_clip(&self, name: &str) -> PathBuf {
        self.root.join(name).join("open_clip_model.safetensors")
    }

    fn bare(&self, name: &str) -> PathBuf {
        self.root.join("bare").join(format!("{name}.safetensors"))
    }

    fn expected(&self, name: &str) -> std::collections::BTreeMap<String, Tensor> {
        read_safetensors(&self.root.join(format!("{name}_expected.safetensors"))).unwrap()
    }

    /// `clip-ast embed` of every image and text; its output, or its stderr on failure.
    fn embed(&self, weights: &Path, flags: &[&str]) -> Result<std::collections::BTreeMap<String, Tensor>, String> {
        let out = self.root.join("features.safetensors");
        let _ = std::fs::remove_file(&out);
        let mut cmd = common::clip_ast();
        cmd.arg("embed").arg("--weights").arg(weights).args(flags).arg("--out").arg(&out);
        for image in &self.images {
            cmd.arg("--image").arg(image);
        }
        for text in &self.texts {
            cmd.arg("--text").arg(text);
        }
        let result = cmd.output().unwrap();
        if !result.status.success() {
            assert!(!out.exists(), "a failed embed wrote {}", out.display());
            return Err(one_error_line(&result));
        }
        Ok(read_safetensors(&out).unwrap())
    }

    /// `clip-ast zero-shot` with the reference's classes: probabilities per image, or stderr.
    fn zero_shot(&self, weights: &Path, flags: &[&str]) -> Result<Vec<Vec<f64>>, String> {
        let mut cmd = common::clip_ast();
        cmd.arg("zero-shot").arg("--weights").arg(weights).args(flags);
        for image in &self.images {
            cmd.arg("--image").arg(image);
        }
        for class in &self.classes {
            cmd.arg("--class").arg(class);
        }
        let result = cmd.output().unwrap();
        if !result.status.success() {
            return Err(one_error_line(&result));
        }
        // Rows: image name, predicted class, then one probability per class.
        let table = String::from_utf8(result.stdout).unwrap();
        Ok(table
            .lines()
            .skip(1)
            .map(|row| row.split_whitespace().skip(2).map(|p| p.parse().unwrap()).collect())
            .collect())
    }

    /// `clip-ast import-weights` into the fixture's store: the artifact, or stderr.
    fn import(&self, file: &Path, flags: &[&str]) -> Result<PathBuf, String> {
        let result = common::clip_ast()
            .args(["import-weights", "--quiet", "--store"])
            .arg(self.root.join("store"))
            .arg(file)
            .args(flags)
            .output()
            .unwrap();
        if !result.status.success() {
            return Err(one_error_line(&result));
        }
        Ok(PathBuf::from(String::from_utf8(result.stdout).unwrap().trim()))
    }
}

/// A failed command's stderr, checked to be the one `error:` line of the CLI contract.
fn one_error_line(result: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "want one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// max |ours - reference| / max |reference|.
fn relative_error(ours: &Tensor, reference: &Tensor) -> f64 {
    (ours - reference).abs().max().double_value(&[]) / reference.abs().max().double_value(&[])
}

/// The largest relative error over image and text features.
fn features_error(
    ours: &std::collections::BTreeMap<String, Tensor>,
    expected: &std::collections::BTreeMap<String, Tensor>,
) -> f64 {
    ["image_features", "text_features"]
        .iter()
        .map(|key| {
            assert_eq!(ours[*key].size(), expected[*key].size(), "{key} shape");
            relative_error(&ours[*key], &expected[*key])
        })
        .fold(0.0, f64::max)
}

fn assert_names(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
}

#[test]
fn activation_is_read_from_open_clip_config_or_required() {
    let fx = Fixture::new();
    let (gelu, quick) = (fx.expected("gelu"), fx.expected("quick_gelu"));

    // open_clip's folders: no flag needed, open_clip's features to 1e-6.
    for (name, expected) in [("gelu", &gelu), ("quick_gelu", &quick)] {
        let ours = fx.embed(&fx.open_clip(name), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = features_error(&ours, expected);
        eprintln!("{name} folder, no flag: max relative error {err:.1e}");
        assert!(err < 1e-6, "{name}: features {err:.2e} from open_clip's");
    }

    // The same weights alone: every command refuses, naming the file and the flag.
    let bare = fx.bare("gelu");
    let needles = ["gelu.safetensors", "--activation quick_gelu|gelu", "open_clip_config.json"];
    assert_names(&fx.embed(&bare, &[]).unwrap_err(), &needles);
    assert_names(&fx.zero_shot(&bare, &[]).unwrap_err(), &needles);
    assert_names(&fx.import(&bare, &[]).unwrap_err(), &needles);
    assert!(!fx.root.join("store/weights").exists(), "a refused import published something");

    // With the flag they work, and the flag decides the model: the wrong one is measurably off.
    let ours = fx.embed(&bare, &["--activation", "gelu"]).unwrap();
    assert!(features_error(&ours, &gelu) < 1e-6);
    let wrong = features_error(&fx.embed(&bare, &["--activation", "quick_gelu"]).unwrap(), &gelu);
    eprintln!("GELU weights run with QuickGELU: {wrong:.1e} from open_clip");
    assert!(wrong > 1e-3, "the activation made no difference ({wrong:.1e}), so this test proves nothing");
    let quick_bare = fx.embed(&fx.bare("quick_gelu"), &["--activation", "quick_gelu"]).unwrap();
    assert!(features_error(&quick_bare, &quick) < 1e-6);

    // zero-shot takes the flag too; its table (3 decimals) matches open_clip's probabilities.
    let reference: Vec<Vec<f64>> =
        serde_json::from_str(&std::fs::read_to_string(fx.root.join("gelu_zero_shot.json")).unwrap()).unwrap();
    for (weights, flags) in [(bare.clone(), &["--activation", "gelu"][..]), (fx.open_clip("gelu"), &[][..])] {
        let ours = fx.zero_shot(&weights, flags).unwrap();
        assert_eq!(ours.len(), reference.len());
        for (row, want) in ours.iter().zip(&reference) {
            assert_eq!(row.len(), want.len());
            for (p, q) in row.iter().zip(want) {
                assert!((p - q).abs() < 1e-3, "zero-shot {flags:?}: {row:?} vs open_clip {want:?}");
            }
        }
    }

    // A flag that contradicts the config is an error, naming both.
    let clash = ["--activation quick_gelu contradicts", "open_clip_config.json", "says gelu"];
    assert_names(&fx.embed(&fx.open_clip("gelu"), &["--activation", "quick_gelu"]).unwrap_err(), &clash);
    assert_names(&fx.zero_shot(&fx.open_clip("gelu"), &["--activation", "quick_gelu"]).unwrap_err(), &clash);
    assert_names(&fx.import(&fx.open_clip("gelu"), &["--activation", "quick_gelu"]).unwrap_err(), &clash);
    // ...and a flag that agrees is accepted.
    assert!(fx.embed(&fx.open_clip("quick_gelu"), &["--activation", "quick_gelu"]).is_ok());

    // Import: the config and the flag name the same model, so the same artifact; the artifact
    // records the activation, and embed from it needs no flag.
    let from_config = fx.import(&fx.open_clip("gelu"), &[]).unwrap();
    assert_eq!(fx.import(&bare, &["--activation", "gelu"]).unwrap(), from_config);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from_config.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["activation"], "gelu");
    assert!(features_error(&fx.embed(&from_config, &[]).unwrap(), &gelu) < 1e-6);
    assert_names(&fx.embed(&from_config, &["--activation", "quick_gelu"]).unwrap_err(), &clash[..1]);
    assert_ne!(fx.import(&fx.open_clip("quick_gelu"), &[]).unwrap(), from_config);
}

#[test]
fn explicit_import_keys_are_unchanged() {
    // An import with --activation keeps the key it had before the activation had to be stated:
    // the weights schema, the file's blake3 and the flag, nothing more (a deliberate bump of the
    // weights SCHEMA changes this test with it).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openai-named.safetensors");
    let mut weights = clip_ast::clip::Weights::new();
    weights.insert("visual.proj".into(), Tensor::zeros([4, 2], (tch::Kind::Float, tch::Device::Cpu)));
    clip_ast::clip::weights::write_safetensors(&weights, &file).unwrap();
    let gelu = clip_ast::clip::config::Activation::Gelu;
    let key = clip_ast::stages::weights::import_spec(&file, Some(gelu)).unwrap().key();
    let params =
        serde_json::json!({ "source_blake3": clip_ast::fsutil::hash_file(&file).unwrap(), "activation": "gelu" });
    let expected = clip_ast::store::ArtifactSpec::new(clip_ast::store::ArtifactKind::Weights, 1, params).key();
    assert_eq!(key.as_str(), expected.as_str());
}
