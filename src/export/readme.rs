//! The exported folder's README.md: what the model is (from the store's manifests) and how to
//! load it in open_clip and in transformers without clip-ast.

use std::fmt::Write;

use serde_json::Value;

use super::Formats;
use super::source::Source;
use crate::clip::config::Activation;

/// The README text. `classes` is the classifier's class count (0 without a classifier).
pub fn text(source: &Source, formats: Formats, classes: usize) -> String {
    let about = &source.about;
    let config = &source.config;
    let mut s = String::new();
    let dataset = source.splits.first().map(|(_, i)| i.dataset.as_str()).unwrap_or("no dataset");
    let _ = writeln!(s, "# CLIP ({}) exported by clip-ast: {dataset}, {}\n", architecture(source), about.method);
    let _ = writeln!(
        s,
        "The whole model with every tuned tensor merged in, fp32, as clip-ast evaluated it.\n\
         Regenerate it with `clip-ast export {} --out DIR`.\n",
        about.source_key.short()
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let row = |s: &mut String, k: &str, v: String| {
        let _ = writeln!(s, "| {k} | {v} |");
    };
    row(&mut s, "source", format!("{} `{}`", about.source_kind, about.source_key.as_str()));
    row(&mut s, "weights", format!("`{}` {}", about.weights_key.as_str(), compact(&about.weights_params)));
    if let Some(k) = &about.stage2_key {
        row(&mut s, "stage 2", format!("`{}`", k.as_str()));
    }
    for (split, info) in &source.splits {
        row(
            &mut s,
            "split",
            format!(
                "{}: {} shots, seed {}, subsample {}, {} classes (`{}`)",
                info.dataset,
                info.shots,
                info.seed,
                info.subsample,
                info.classnames.len(),
                split.key.short()
            ),
        );
    }
    row(&mut s, "method", about.method.clone());
    if let Some(p) = &about.selection_params {
        row(&mut s, "selection", compact(p));
    }
    if let Some(p) = &about.stage2_params {
        row(&mut s, "stage-2 settings", compact(p));
    }
    match (&about.metrics, &about.eval_key) {
        (Some(m), Some(k)) => {
            for (name, label) in [
                ("acc", "test accuracy"),
                ("macro_acc", "test mean per-class accuracy"),
                ("val_acc", "val accuracy"),
                ("base_acc", "base accuracy"),
                ("new_acc", "new accuracy"),
                ("hm", "harmonic mean"),
            ] {
                if let Some(v) = m.get(name).and_then(Value::as_f64) {
                    row(&mut s, label, format!("{v:.4}"));
                }
            }
            row(&mut s, "evaluation", format!("`{}`", k.as_str()));
        }
        _ => row(&mut s, "accuracy", "not evaluated in the store it was exported from".into()),
    }
    row(
        &mut s,
        "architecture",
        format!(
            "ViT {}px/{} ({} × {} wide), text {} × {} wide, embed {}, {}",
            config.vision.image_size,
            config.vision.patch_size,
            config.vision.layers,
            config.vision.width,
            config.text.layers,
            config.text.width,
            config.embed_dim,
            activation(config.activation)
        ),
    );
    s.push('\n');
    files_section(&mut s, formats, classes);
    if formats.open_clip {
        open_clip_section(&mut s, source, classes > 0);
    }
    if formats.hf {
        hf_section(&mut s, classes > 0);
    }
    s
}

fn architecture(source: &Source) -> String {
    super::open_clip::builtin_name(&source.config).unwrap_or_else(|| "custom size".into())
}

fn activation(a: Activation) -> &'static str {
    match a {
        Activation::QuickGelu => "QuickGELU",
        Activation::Gelu => "GELU",
    }
}

fn compact(v: &Value) -> String {
    format!("`{}`", serde_json::to_string(v).unwrap_or_default())
}

fn files_section(s: &mut String, formats: Formats, classes: usize) {
    s.push_str("## Files\n\n");
    if formats.open_clip {
        s.push_str("- `open_clip_model.safetensors`, `open_clip_config.json`: open_clip (OpenAI tensor names, `model_cfg` with `quick_gelu`, `preprocess_cfg`)\n");
    }
    if formats.hf {
        s.push_str("- `model.safetensors`, `config.json`, `vocab.json`, `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json`, `preprocessor_config.json`: Hugging Face `CLIPModel` and `CLIPProcessor`\n");
    }
    if classes > 0 {
        let _ = writeln!(
            s,
            "- `classifier.safetensors`, `classes.json`: the {classes}-way classifier it was evaluated with: `class_embeddings` [{classes}, D] (unit-norm text embeddings of the prompts in `classes.json`) and `logit_scale` (log; logits = exp(logit_scale) · normalised image features · class_embeddingsᵀ)"
        );
    }
    s.push_str("- `clip_ast_export.json`: what clip-ast wrote here (it replaces only folders holding these files)\n\n");
    s.push_str(
        "Classify a folder of images with clip-ast: `clip-ast predict --model DIR PHOTOS/ --out predictions.csv`.\n\n",
    );
}

const CLASSIFY_PY: &str = r#"clf = load_file("DIR/classifier.safetensors")
classnames = json.load(open("DIR/classes.json"))["classnames"]
features = features / features.norm(dim=-1, keepdim=True)
probs = (clf["logit_scale"].exp() * features @ clf["class_embeddings"].T).softmax(dim=-1)
print(classnames[probs.argmax(dim=-1).item()])
"#;

fn open_clip_section(s: &mut String, source: &Source, classifier: bool) {
    s.push_str("## open_clip\n\n```python\nimport json, torch, open_clip\nfrom PIL import Image\nfrom safetensors.torch import load_file\n\n");
    s.push_str("model, _, preprocess = open_clip.create_model_and_transforms(\"local-dir:DIR\")\n");
    if let Some(name) = super::open_clip::builtin_name(&source.config) {
        let _ = writeln!(
            s,
            "# or: open_clip.create_model_and_transforms(\"{name}\", pretrained=\"DIR/open_clip_model.safetensors\")"
        );
    }
    s.push_str("tokenizer = open_clip.get_tokenizer(\"local-dir:DIR\")\nmodel.eval()\nwith torch.no_grad():\n    features = model.encode_image(preprocess(Image.open(\"photo.jpg\")).unsqueeze(0))\n");
    if classifier {
        s.push_str(CLASSIFY_PY);
    }
    s.push_str("```\n\n");
}

fn hf_section(s: &mut String, classifier: bool) {
    s.push_str("## transformers\n\n```python\nimport json, torch\nfrom PIL import Image\nfrom safetensors.torch import load_file\nfrom transformers import CLIPModel, CLIPProcessor\n\n");
    s.push_str("model = CLIPModel.from_pretrained(\"DIR\").eval()\nprocessor = CLIPProcessor.from_pretrained(\"DIR\")\nwith torch.no_grad():\n    out = model.get_image_features(**processor(images=Image.open(\"photo.jpg\"), return_tensors=\"pt\"))\n    features = out if torch.is_tensor(out) else out.pooler_output  # transformers 5 returns an output object\n");
    if classifier {
        s.push_str(CLASSIFY_PY);
    }
    s.push_str("```\n\n`CLIPImageProcessor` resizes with its own resampler, so pixels can differ slightly from clip-ast's and open_clip's (Pillow's bicubic).\n");
}
