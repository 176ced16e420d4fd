//! The shipped pipelines read and expand to the grids they promise, and pipelines/README.md
//! documents every key the parser accepts.

mod common;

use clip_ast::pipeline::{file, grid, schema_keys};

fn env(name: &str) -> Option<String> {
    match name {
        "DATA" => Some("/datasets".into()),
        "WEIGHTS" => Some("/weights/ViT-B-16.pt".into()),
        _ => None,
    }
}

#[test]
fn shipped_pipelines_expand_to_their_grids() {
    let dir = common::repo_root().join("pipelines");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    found.sort();
    // demo: 13 variants × 3 shot counts × 3 seeds × 3 learning rates (27 each) and the
    // source-rendering zero-shot (16 shots × 3 seeds), its data where Debian puts it by default;
    // demo-design: 2 methods × 2 × 2 × 3 lr × 3 seeds, then 3 shots × 4 rules × 3 lr × 3 seeds.
    let expected = [
        ("ablation-score", 15, "/datasets"),
        ("base-to-novel", 33, "/datasets"),
        ("caltech101-sweep", 275, "/datasets"),
        ("cross-dataset", 6, "/datasets"),
        ("demo-design", 180, "/usr/share/datasets"),
        ("demo-foundation", 1, "/usr/share/datasets"),
        ("demo-study", 13 * 90 + 30, "/usr/share/datasets"),
        ("demo", 13 * 27 + 9, "/usr/share/datasets"),
        ("domain-generalisation", 6, "/datasets"),
        ("few-shot-11", 165, "/datasets"),
    ];
    assert_eq!(found, expected.map(|(n, _, _)| format!("{n}.toml")));
    for (name, points, root) in expected {
        let path = dir.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let pipeline = file::parse(&text, &path, &env).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(pipeline.name, name);
        let grid = grid::expand(&pipeline).unwrap();
        assert_eq!(grid.len(), points, "{name}");
        assert!(grid.iter().all(|p| p.get("data.root").as_str() == root), "{name}");
        let targets: Vec<&str> = pipeline.targets.iter().map(|t| t.dataset.as_str()).collect();
        let expected_targets: &[&str] = match name {
            "cross-dataset" => &[
                "caltech101",
                "oxford_pets",
                "stanford_cars",
                "oxford_flowers",
                "food101",
                "fgvc_aircraft",
                "sun397",
                "dtd",
                "eurosat",
                "ucf101",
            ],
            "domain-generalisation" => &["imagenetv2", "imagenet-sketch", "imagenet-a", "imagenet-r"],
            "demo" | "demo-study" => &["fashion-mnist", "fashion-mnist"],
            _ => &[],
        };
        assert_eq!(targets, expected_targets, "{name}");
        assert!(pipeline.targets.iter().all(|t| t.root.to_str() == Some(root)), "{name}");
    }
}

/// The study is the demo with more seeds and stage-1 steps, and nothing else: a change to the
/// demo's design that is not made to the study too fails here.
#[test]
fn the_study_differs_from_the_demo_only_in_seeds_and_stage1_steps() {
    let dir = common::repo_root().join("pipelines");
    let read = |name: &str| {
        let path = dir.join(format!("{name}.toml"));
        file::parse(&std::fs::read_to_string(&path).unwrap(), &path, &env).unwrap()
    };
    let (demo, study) = (read("demo"), read("demo-study"));
    let allowed = ["name", "data.seed", "stage1.min_steps", "report.title"];
    let keys: std::collections::BTreeSet<&String> = demo.values.keys().chain(study.values.keys()).collect();
    for key in keys {
        if !allowed.contains(&key.as_str()) {
            assert_eq!(demo.values.get(key), study.values.get(key), "{key}");
        }
    }
    let seeds: Vec<i64> = study.values["data.seed"].iter().map(|v| v.as_i64()).collect();
    assert_eq!(seeds, (1..=10).collect::<Vec<_>>());
    assert_eq!(study.values["stage1.min_steps"][0].as_i64(), 64);
    assert_eq!(demo.weights, study.weights);
    // Compared without the line numbers they were read from.
    let variants = |f: &file::PipelineFile| {
        let targets = |v: &file::Variant| v.targets.as_ref().map(|t| t.iter().map(|t| t.label()).collect::<Vec<_>>());
        f.variants.iter().map(|v| (v.name.clone(), v.values.clone(), targets(v))).collect::<Vec<_>>()
    };
    assert_eq!(variants(&demo), variants(&study));
    let targets = |f: &file::PipelineFile| f.targets.iter().map(|t| (t.label(), t.test_per_class)).collect::<Vec<_>>();
    assert_eq!(targets(&demo), targets(&study));
    assert_eq!(demo.claims, study.claims);
    assert_eq!(demo.claims.len(), 4, "claims (a), (b) and (c) in both protocols");
}

#[test]
fn readme_documents_every_key() {
    let readme = std::fs::read_to_string(common::repo_root().join("pipelines/README.md")).unwrap();
    for key in schema_keys() {
        // A sub-table (`[stage2]`, `[weights.init]`) has a heading of its own.
        if readme.contains(&format!("### [{key}]")) {
            continue;
        }
        let (section, name) = key.rsplit_once('.').unwrap_or(("", &key));
        let heading = if section.is_empty() { "### top level".to_string() } else { format!("### [{section}]") };
        let start = readme.find(&heading).unwrap_or_else(|| panic!("README has no `{heading}`"));
        let body = &readme[start + heading.len()..];
        let body = &body[..body.find("\n### ").unwrap_or(body.len())];
        assert!(body.contains(&format!("| `{name}` |")), "README's {heading} does not document `{name}`");
    }
}

/// README.md's sweep that chooses lr and λ on validation is a valid pipeline file.
#[test]
fn readme_choose_example_reads() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .skip(1)
        .map(|block| &block[..block.find("```").unwrap()])
        .find(|block| block.contains("[choose]"))
        .expect("README.md shows a [choose] pipeline");
    let pipeline = file::parse(example, std::path::Path::new("README.md"), &env).unwrap_or_else(|e| panic!("{e}"));
    let choose = clip_ast::pipeline::choose::Choose::of(&pipeline).unwrap().expect("it has [choose]");
    assert_eq!(choose.among, ["stage2.lr", "stage2.lambda"]);
    assert_eq!(grid::expand(&pipeline).unwrap().len(), 2 * 3 * 3 * 9);
}
