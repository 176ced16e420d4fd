//! User mistakes get one `error:` line naming the file or value, a non-zero exit, no panic,
//! and leave nothing behind.

mod common;

use std::path::{Path, PathBuf};

use clip_ast::clip::{ClipConfig, Weights, weights::write_safetensors};
use tch::{Kind, Tensor};

fn mini_weights() -> Weights {
    let config = ClipConfig::preset("mini").unwrap();
    tch::manual_seed(0);
    config
        .tensor_shapes()
        .into_iter()
        .map(|(name, shape)| (name, Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)) * 0.02))
        .collect()
}

fn write(dir: &Path, name: &str, weights: &Weights) -> PathBuf {
    let path = dir.join(name);
    write_safetensors(weights, &path).unwrap();
    path
}

/// Run clip-ast, expect failure with exactly one stderr line starting with `error:` that
/// contains every `needles` entry.
fn expect_error(args: &[&std::ffi::OsStr], needles: &[&str]) {
    let out = common::clip_ast().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "`{needle}` not in: {stderr}");
    }
    assert!(out.stdout.is_empty(), "stdout must stay empty on failure");
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn weight_import_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let good = mini_weights();
    // The activation settled, so that each case reaches the mistake it is about.
    std::fs::write(d.join("open_clip_config.json"), r#"{"model_cfg": {"quick_gelu": true}}"#).unwrap();

    // Missing file.
    expect_error(
        &[os("import-weights"), d.join("nope.safetensors").as_os_str(), os("--store"), store.as_os_str()],
        &["nope.safetensors", "no such file"],
    );

    // Truncated safetensors.
    let truncated = write(d, "truncated.safetensors", &good);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(
        &[os("import-weights"), truncated.as_os_str(), os("--store"), store.as_os_str()],
        &["truncated.safetensors", "not a valid safetensors"],
    );

    // Missing tensor.
    let mut missing = mini_weights();
    missing.remove("visual.transformer.resblocks.2.mlp.c_fc.bias");
    let path = write(d, "missing.safetensors", &missing);
    expect_error(
        &[os("import-weights"), path.as_os_str(), os("--store"), store.as_os_str()],
        &["missing.safetensors", "visual.transformer.resblocks.2.mlp.c_fc.bias", "missing"],
    );

    // Unknown tensor.
    let mut unknown = mini_weights();
    unknown.insert("visual.adapter.weight".into(), Tensor::zeros([4], (Kind::Float, tch::Device::Cpu)));
    let path = write(d, "unknown.safetensors", &unknown);
    expect_error(
        &[os("import-weights"), path.as_os_str(), os("--store"), store.as_os_str()],
        &["unknown.safetensors", "visual.adapter.weight"],
    );

    // Shape mismatch.
    let mut wrong = mini_weights();
    wrong.insert("transformer.resblocks.1.ln_2.weight".into(), Tensor::ones([64], (Kind::Float, tch::Device::Cpu)));
    let path = write(d, "shape.safetensors", &wrong);
    expect_error(
        &[os("import-weights"), path.as_os_str(), os("--store"), store.as_os_str()],
        &["shape.safetensors", "transformer.resblocks.1.ln_2.weight", "[64]", "[128]"],
    );

    // Not a checkpoint at all.
    let text = d.join("notes.pt");
    std::fs::write(&text, "hello").unwrap();
    expect_error(&[os("import-weights"), text.as_os_str(), os("--store"), store.as_os_str()], &["notes.pt"]);

    // Nothing published, nothing half-written.
    let published = store.join("weights");
    assert!(
        !published.exists() || std::fs::read_dir(&published).unwrap().next().is_none(),
        "a failed import published something"
    );
    let tmp = store.join("tmp");
    assert!(!tmp.exists() || std::fs::read_dir(&tmp).unwrap().next().is_none(), "temporary files left behind");
}

#[test]
fn embed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weights = write(d, "mini.safetensors", &mini_weights());
    std::fs::write(d.join("open_clip_config.json"), r#"{"model_cfg": {"quick_gelu": true}}"#).unwrap();
    let out = d.join("features.safetensors");

    let not_image = d.join("photo.jpg");
    std::fs::write(&not_image, "this is text, not a JPEG").unwrap();
    expect_error(
        &[
            os("embed"),
            os("--weights"),
            weights.as_os_str(),
            os("--image"),
            not_image.as_os_str(),
            os("--out"),
            out.as_os_str(),
        ],
        &["photo.jpg"],
    );
    let missing = d.join("gone.png");
    expect_error(
        &[
            os("embed"),
            os("--weights"),
            weights.as_os_str(),
            os("--image"),
            missing.as_os_str(),
            os("--out"),
            out.as_os_str(),
        ],
        &["gone.png"],
    );
    let long_text = "a photo of a very long description ".repeat(12);
    expect_error(
        &[
            os("embed"),
            os("--weights"),
            weights.as_os_str(),
            os("--text"),
            os(&long_text),
            os("--out"),
            out.as_os_str(),
        ],
        &["77", "--truncate"],
    );
    expect_error(
        &[os("embed"), os("--weights"), weights.as_os_str(), os("--device"), os("tpu"), os("--out"), out.as_os_str()],
        &["tpu"],
    );
    assert!(!out.exists(), "a failed embed must not write its output");

    // With --truncate the same long text is accepted.
    let ok = common::clip_ast()
        .args([
            os("embed"),
            os("--weights"),
            weights.as_os_str(),
            os("--truncate"),
            os("--text"),
            os(&long_text),
            os("--out"),
            out.as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let features = clip_ast::clip::weights::read_safetensors(&out).unwrap();
    assert_eq!(features["text_features"].size(), vec![1, 128]);
    assert_eq!(features["image_features"].size(), vec![0, 128]);
}

/// Mistakes clap catches (an unknown choice, a missing or unknown flag) follow the same
/// contract: one `error:` line naming the value and what is allowed, exit status 1.
#[test]
fn usage_errors_are_one_line_with_exit_status_1() {
    let cases: [(&[&str], &[&str]); 4] = [
        (&["stage1", "--split", "s", "--weights", "w", "--precision", "fp16"], &["'fp16'", "fp32, bf16"]),
        (&["select", "--stage1", "t", "--towers", "all"], &["'all'", "both, vision, text"]),
        (&["import-weights", "x.safetensors", "--activation", "relu"], &["'relu'", "quick_gelu, gelu"]),
        (&["stage2", "--split", "s", "--weights", "w"], &["--selection <SELECTION>"]),
    ];
    for (args, needles) in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| os(a)).collect();
        expect_error(&args, needles);
        let status = common::clip_ast().args(&args).output().unwrap().status;
        assert_eq!(status.code(), Some(1), "{args:?}");
    }
}
