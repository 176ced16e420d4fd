//! Our CLIP against open_clip and transformers with random weights: features through every
//! import path (OpenAI-named safetensors, Hugging Face safetensors, fp16 TorchScript archive,
//! and our own imported folder) agree with the reference to 1e-4 relative.

mod common;

use std::path::Path;

use tch::Tensor;

/// max |ours - reference| / max |reference|: relative to the tensor's scale, since an
/// element-wise ratio is meaningless for features near zero.
fn relative_error(ours: &Tensor, reference: &Tensor) -> f64 {
    let diff = (ours - reference).abs().max().double_value(&[]);
    diff / reference.abs().max().double_value(&[])
}

fn read(path: &Path) -> std::collections::BTreeMap<String, Tensor> {
    clip_ast::clip::weights::read_safetensors(path).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    images: Vec<String>,
    texts: Vec<String>,
}

fn fixture(preset: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let stdout = common::run_reference("ref_clip.py", &[root.as_os_str(), preset.as_ref()]);
    let listing: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let strings = |key: &str| -> Vec<String> {
        listing[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    Fixture { images: strings("images"), texts: strings("texts"), root, _dir: dir }
}

fn embed(
    fixture: &Fixture,
    weights: &Path,
    flags: &[&str],
    out_name: &str,
) -> std::collections::BTreeMap<String, Tensor> {
    let out = fixture.root.join(out_name);
    let mut cmd = common::clip_ast();
    cmd.arg("embed").arg("--weights").arg(weights).args(flags).arg("--out").arg(&out);
    for image in &fixture.images {
        cmd.arg("--image").arg(image);
    }
    for text in &fixture.texts {
        cmd.arg("--text").arg(text);
    }
    let result = cmd.output().unwrap();
    assert!(result.status.success(), "embed failed: {}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(String::from_utf8_lossy(&result.stdout).trim(), out.to_str().unwrap());
    read(&out)
}

fn assert_matches(ours: &std::collections::BTreeMap<String, Tensor>, expected_file: &Path, label: &str) {
    let expected = read(expected_file);
    for key in ["image_features", "text_features"] {
        assert_eq!(ours[key].size(), expected[key].size(), "{label} {key} shape");
        let err = relative_error(&ours[key], &expected[key]);
        eprintln!("{label}: {key} max relative error {err:.2e}");
        assert!(err < 1e-4, "{label}: {key} relative error {err:.2e} over 1e-4");
    }
    let scale = (ours["logit_scale"].double_value(&[]) - expected["logit_scale"].double_value(&[])).abs();
    assert!(scale < 1e-6, "{label}: logit_scale differs by {scale}");
}

fn check_all_formats(preset: &str) {
    let fx = fixture(preset);
    let root = fx.root.clone();
    // A bare state dict does not say its activation (ref_clip.py's model uses QuickGELU).
    let ours = embed(&fx, &root.join("openai.safetensors"), &["--activation", "quick_gelu"], "ours_openai.safetensors");
    assert_matches(&ours, &root.join("expected.safetensors"), &format!("{preset} open_clip safetensors"));

    let ours = embed(&fx, &root.join("hf/model.safetensors"), &[], "ours_hf.safetensors");
    assert_matches(&ours, &root.join("expected_hf.safetensors"), &format!("{preset} transformers"));
    // Its activation comes from its config.json: without that file, or against it, no features.
    std::fs::create_dir(root.join("hf_alone")).unwrap();
    std::fs::copy(root.join("hf/model.safetensors"), root.join("hf_alone/model.safetensors")).unwrap();
    for (weights, flags, needles) in [
        ("hf_alone/model.safetensors", &[][..], &["no config.json", "--activation quick_gelu|gelu"][..]),
        ("hf/model.safetensors", &["--activation", "gelu"][..], &["contradicts", "config.json", "quick_gelu"][..]),
    ] {
        let out = root.join("refused.safetensors");
        let result = common::clip_ast()
            .arg("embed")
            .arg("--weights")
            .arg(root.join(weights))
            .args(flags)
            .args(["--text", "a cat", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success() && !out.exists(), "{weights} {flags:?} was accepted");
        assert!(stderr.starts_with("error: ") && stderr.lines().count() == 1, "{stderr}");
        needles.iter().for_each(|n| assert!(stderr.contains(n), "`{n}` not in {stderr}"));
    }

    let ours = embed(&fx, &root.join("openai_fp16.pt"), &[], "ours_ts.safetensors");
    assert_matches(&ours, &root.join("expected_fp16.safetensors"), &format!("{preset} TorchScript fp16"));

    // The weights artifact written by import-weights gives the same features as its source.
    let status = common::clip_ast()
        .args(["import-weights", "--quiet", "--store"])
        .arg(root.join("store"))
        .arg(root.join("openai_fp16.pt"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let imported = std::path::PathBuf::from(String::from_utf8(status.stdout).unwrap().trim());
    assert!(imported.starts_with(root.join("store/weights")), "{}", imported.display());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(imported.join("config.json")).unwrap()).unwrap();
    let expected_config = clip_ast::clip::ClipConfig::preset(preset).unwrap();
    assert_eq!(config["vision"]["image_size"], expected_config.vision.image_size);
    assert_eq!(config["text"]["layers"], expected_config.text.layers);
    let ours = embed(&fx, &imported, &[], "ours_imported.safetensors");
    assert_matches(&ours, &root.join("expected_fp16.safetensors"), &format!("{preset} imported folder"));
}

#[test]
fn mini_matches_open_clip_and_transformers() {
    check_all_formats("mini");
}

#[test]
fn vit_b_32_matches_open_clip_and_transformers() {
    check_all_formats("ViT-B-32");
}

#[test]
fn trimmed_text_tower_equals_full_context() {
    // Running the causal text tower only up to the longest prompt is exact, not approximate.
    let fx = fixture("mini");
    let quick_gelu = Some(clip_ast::clip::config::Activation::QuickGelu);
    let imported = clip_ast::clip::import::load(&fx.root.join("openai.safetensors"), quick_gelu).unwrap();
    let model = clip_ast::clip::Clip::new(&imported.config, &imported.weights).unwrap();
    let tokenizer = clip_ast::clip::tokenizer::Tokenizer::new();
    let ids: Vec<i64> = fx.texts.iter().flat_map(|t| tokenizer.tokenize(t, 77, false).unwrap()).collect();
    let ids = Tensor::from_slice(&ids).view([fx.texts.len() as i64, 77]);
    let _guard = tch::no_grad_guard();
    let trimmed = model.text.forward(&ids);
    let full = model.text.forward_over(&ids, 77, &ids.argmax(-1, false));
    let err = relative_error(&trimmed, &full);
    assert!(err < 1e-6, "trimmed vs full context differ by {err:.2e}");
}
