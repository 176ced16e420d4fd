//! The fair baselines of a pipeline: `random-params` (random tensors with the clip-ast
//! selection's parameter budget per block), `full-ft` with its own λ (0: plain cross-entropy),
//! and results.csv's `trainable_params`. Counts are recomputed here from the files the tool
//! wrote (selection.json, the weights' safetensors header, config.json), not through its code.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clip_ast::pipeline::{file, graph, grid};
use common::Csv;
use serde_json::Value;

const PIPELINE: &str = r#"name = "fair"
method = ["clip-ast", "random-params", "full-ft", "zero-shot", "linear-probe"]

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "imagefolder"
root = "DATA"
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
epochs = 2
warmup_epochs = 1
batch_size = 8
lambda = 1

[full-ft]
lambda = [0, 1]
"#;

const CLASSES: usize = 4;

fn write_images(dir: &Path) {
    let (images, labels) = common::colour_images(6, 13);
    for (i, (img, label)) in images.iter().zip(labels).enumerate() {
        let class = dir.join(format!("class{label}"));
        std::fs::create_dir_all(&class).unwrap();
        img.save(class.join(format!("{i:02}.png"))).unwrap();
    }
}

struct Store {
    root: PathBuf,
    cache: PathBuf,
}

impl Store {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::clip_ast();
        c.args(args).arg("--store").arg(&self.root).env("XDG_CACHE_HOME", &self.cache);
        c
    }

    /// Stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The one-line error of a command that must fail.
    fn error(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(stderr.starts_with("error: ") && !stderr.contains('\n'), "{args:?}: {stderr}");
        stderr
    }

    fn dir(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join(kind).join(key)
    }

    fn manifest(&self, kind: &str, key: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir(kind, key).join("manifest.json")).unwrap()).unwrap()
    }

    fn input(&self, kind: &str, key: &str, name: &str) -> String {
        let manifest = self.manifest(kind, key);
        manifest["inputs"][name].as_str().unwrap_or_else(|| panic!("{kind}/{key} has no `{name}` input")).to_string()
    }

    fn selection(&self, key: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir("selection", key).join("selection.json")).unwrap())
            .unwrap()
    }

    fn count(&self, kind: &str) -> usize {
        std::fs::read_dir(self.root.join(kind)).map_or(0, |d| d.count())
    }
}

/// Tensor name → element count, from the safetensors header of the weights file.
fn tensor_sizes(path: &Path) -> BTreeMap<String, i64> {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.tensors().into_iter().map(|(name, info)| (name, info.shape.iter().product::<usize>() as i64)).collect()
}

/// Per block: (chosen parameters, parameters of its largest tensor), from selection.json's
/// chosen flags with every tensor's size checked against the weights file.
fn block_counts(selection: &Value, sizes: &BTreeMap<String, i64>) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for block in selection["blocks"].as_array().unwrap() {
        let (mut chosen, mut largest) = (0, 0);
        for t in block["tensors"].as_array().unwrap() {
            let numel = sizes[t["name"].as_str().unwrap()];
            assert_eq!(t["numel"].as_i64(), Some(numel), "{t}");
            largest = largest.max(numel);
            if t["chosen"].as_bool().unwrap() {
                chosen += numel;
            }
        }
        out.insert(block["block"].as_str().unwrap().to_string(), (chosen, largest));
    }
    out
}

#[test]
fn random_params_full_ft_lambda_and_trainable_params() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    write_images(&data);
    let s = Store { root: temp.path().join("store"), cache: temp.path().join("cache") };
    let pipeline = temp.path().join("fair.toml");
    std::fs::write(&pipeline, PIPELINE.replace("\"DATA\"", &format!("{:?}", data.to_str().unwrap()))).unwrap();
    let out = temp.path().join("out");
    let p = |path: &Path| path.to_str().unwrap().to_string();
    s.ok(&["run", &p(&pipeline), "--out", &p(&out), "--threads", "1", "--jobs", "2"]);

    let results = Csv::read(&out.join("results.csv"));
    // clip-ast and the others ignore [full-ft]: one row each for its two values.
    let methods = results.column("method");
    assert_eq!(methods, ["clip-ast", "random-params", "full-ft", "full-ft", "zero-shot", "linear-probe"]);
    assert_eq!(results.column("full-ft.lambda"), ["", "", "0", "1", "", ""]);
    assert_eq!(results.column("stage2.lambda"), ["1", "1", "", "", "", ""], "full-ft does not take [stage2] λ");
    let stage2_of = |row: usize| s.input("eval", results.get(row, "eval"), "stage2");
    let selection_of = |row: usize| s.input("stage2", &stage2_of(row), "selection");

    // random-params: the clip-ast selection of the same point is its `like`, and each block's
    // count is within one tensor's size of that selection's (here exactly equal: the like's own
    // choice is one of the candidates).
    let weights_key = s.input("stage2", &stage2_of(0), "weights");
    let sizes = tensor_sizes(&s.dir("weights", &weights_key).join("model.safetensors"));
    let (rule, random) = (selection_of(0), selection_of(1));
    assert_eq!(s.input("selection", &random, "like"), rule);
    let target = block_counts(&s.selection(&rule), &sizes);
    let matched = block_counts(&s.selection(&random), &sizes);
    assert_eq!(target.keys().collect::<Vec<_>>(), matched.keys().collect::<Vec<_>>());
    assert_eq!(target.len(), 8, "both towers of the mini preset");
    let (mut total_target, mut total_matched, mut largest) = (0, 0, 0);
    for (block, &(want, tensor)) in &target {
        let got = matched[block].0;
        assert!((got - want).abs() <= tensor, "{block}: {got} parameters for a target of {want}");
        assert_eq!(got, want, "{block}");
        (total_target, total_matched, largest) = (total_target + want, total_matched + got, largest.max(tensor));
    }
    assert!((total_matched - total_target).abs() <= largest);
    let random_json = s.selection(&random);
    assert_eq!(random_json["match"], "params");
    assert_eq!(random_json["like"].as_str(), Some(rule.as_str()));
    let names = |v: &Value| v["chosen"].as_array().unwrap().clone();
    assert_ne!(names(&random_json), names(&s.selection(&rule)), "a random choice, not the rule's");

    // trainable_params: the selections' counts, every block parameter for full fine-tuning,
    // nothing for zero-shot, the probe's weight and bias.
    let blocks_total: i64 = sizes.iter().filter(|(n, _)| n.contains("resblocks.")).map(|(_, n)| n).sum();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir("weights", &weights_key).join("config.json")).unwrap())
            .unwrap();
    let probe = (config["embed_dim"].as_i64().unwrap() + 1) * CLASSES as i64;
    let expected = [total_target, total_matched, blocks_total, blocks_total, 0, probe].map(|n| n.to_string());
    assert_eq!(results.column("trainable_params"), expected);
    let summary = Csv::read(&out.join("summary.csv"));
    assert_eq!(summary.column("trainable_params_mean")[1], total_matched.to_string());

    // full-ft at λ = 0 is plain cross-entropy: every loss is its CE, to the bit; λ = 1 is not.
    let log = |row: usize| Csv::read(&s.dir("stage2", &stage2_of(row)).join("log.csv"));
    let (plain, consistent) = (log(2), log(3));
    assert_eq!(plain.column("loss"), plain.column("ce"));
    assert_ne!(consistent.column("loss"), consistent.column("ce"));
    // ... and is what `clip-ast stage2` makes with λ = 0, given as --lmbd or as the three terms.
    let (split, full) = (s.input("stage2", &stage2_of(2), "split"), selection_of(2));
    let stage2 = |lambdas: &[&str]| {
        let mut args = vec!["stage2", "--split", &split, "--weights", &weights_key, "--selection", &full];
        args.extend(["--lr", "1e-3", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "8", "--quiet"]);
        args.extend(lambdas);
        let printed = s.ok(&args);
        Path::new(printed.trim()).file_name().unwrap().to_str().unwrap().to_string()
    };
    let stored = s.count("stage2");
    assert_eq!(stage2(&["--lmbd", "0"]), stage2_of(2));
    assert_eq!(stage2(&["--lambda-img", "0", "--lambda-txt", "0", "--lambda-kl", "0"]), stage2_of(2));
    assert_eq!(s.count("stage2"), stored, "the commands found the pipeline's artifact");

    // The batch-job commands (the Slurm executor's) make the pipeline's keys.
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let parsed = file::parse(&text, &pipeline, &|_| None).unwrap();
    let points = grid::expand(&parsed).unwrap();
    let g = graph::build(&parsed, points, None).unwrap();
    let mut checked = 0;
    for node in g.nodes.iter().filter(|n| matches!(n.job, graph::Job::Select(_) | graph::Job::Stage2(_))) {
        let args = clip_ast::pipeline::slurm::command::command_for(&g, node);
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push("--quiet");
        let printed = s.ok(&args);
        assert!(printed.trim().ends_with(node.key.as_str()), "{args:?} made {printed}");
        checked += 1;
    }
    assert_eq!(checked, 3 + 4, "selections: rule, random, all; stage 2: four");

    // The matched selection recomputes byte for byte from its manifest.
    let rerun = s.ok(&["audit", "--rerun", &p(&s.dir("selection", &random))]);
    assert!(rerun.contains("ok  selection/") && rerun.contains("byte for byte"), "{rerun}");

    // A seed draws another matched choice with the same counts.
    let stage1 = s.input("selection", &rule, "stage1");
    let other = s.ok(&["select", "--stage1", &stage1, "--score", "random", "--match", "params", "--like", &rule]);
    let other_key = Path::new(other.trim()).file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(other_key, random, "data.seed 1 is the split's seed: the pipeline's selection");
    let reseeded = s.ok(&["select", "--stage1", &stage1, "--score", "random", "--match", "params", "--like", &rule]
        .into_iter()
        .chain(["--seed", "9"])
        .collect::<Vec<_>>());
    let reseeded = s.selection(Path::new(reseeded.trim()).file_name().unwrap().to_str().unwrap());
    assert_eq!(
        block_counts(&reseeded, &sizes).values().map(|c| c.0).collect::<Vec<_>>(),
        target.values().map(|c| c.0).collect::<Vec<_>>()
    );

    // Mistakes: one line, nothing stored.
    let selections = s.count("selection");
    let random_params = ["select", "--stage1", &stage1, "--score", "random", "--match", "params"];
    assert!(s.error(&random_params).contains("--match params needs --like"));
    let e = s.error(&["select", "--stage1", &stage1, "--match", "params", "--like", &rule]);
    assert!(e.contains("needs --score random"), "{e}");
    let e = s.error(&["select", "--stage1", &stage1, "--score", "random", "--like", &rule]);
    assert!(e.contains("--like only applies with --match params"), "{e}");
    let vision = s.ok(&["select", "--stage1", &stage1, "--towers", "vision"]);
    let e = s.error(&[&random_params[..], &["--like", vision.trim()]].concat());
    assert!(e.contains("has no block `transformer.resblocks.0`") && e.contains("give --towers vision"), "{e}");
    assert_eq!(s.count("selection"), selections + 1, "only the vision selection was stored");
}
