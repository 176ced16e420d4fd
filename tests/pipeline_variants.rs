//! `[[variant]]` end to end on the mini preset and generated images: two clip-ast variants that
//! share their splits, stage-1 runs and selections (computed once), two zero-shot variants that
//! make the same evaluation (one eval, a row each), a target only one variant is evaluated on,
//! a learning rate chosen per variant on validation, compare.csv against a variant, and a second
//! run that computes nothing.

mod common;

use std::collections::BTreeMap;

use common::Csv;
use common::scratch::{Scratch, colour_images, stage_lines};

const PIPELINE: &str = r#"name = "arms"

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = [1, 2]

[stage1]
lr = 1e-4
epochs = 1
batch_size = 8

[select]
k = 3

[stage2]
lr = [1e-3, 1e-2]
epochs = 2
warmup_epochs = 1
batch_size = 8

[choose]
by = "val_acc"
among = "stage2.lr"

[report]
baseline = "zs"

[[variant]]
name = "ast"

[[variant]]
name = "ast-l0"
stage2.lambda = 0
eval.targets = [{ dataset = "imagefolder", root = "${DATA}", test_per_class = 2 }]

[[variant]]
name = "zs"
method = "zero-shot"

[[variant]]
name = "zs-again"
method = "zero-shot"
"#;

/// `--dry-run`'s table: per stage kind [to-run, cached, total, naive]; and its variants line.
fn dry(scratch: &Scratch, pipeline: &str, store: &str) -> (BTreeMap<String, [usize; 4]>, String) {
    let (stdout, _) = scratch.ok(&["run", pipeline, "--dry-run", "--store", store]);
    let counts = common::scratch::dry_counts(&stdout);
    let variants = stdout.lines().find(|l| l.starts_with("variants:")).unwrap_or_default().to_string();
    (counts, variants)
}

/// The rows of `csv` as (variant, data.seed, target) → how many.
fn tally(csv: &Csv) -> BTreeMap<(String, String, String), usize> {
    let mut out = BTreeMap::new();
    for r in 0..csv.rows.len() {
        let target = if csv.header.iter().any(|h| h == "target") { csv.get(r, "target") } else { "" };
        let key = (csv.get(r, "variant").to_string(), csv.get(r, "data.seed").to_string(), target.to_string());
        *out.entry(key).or_default() += 1;
    }
    out
}

#[test]
fn variants_share_stages_get_their_own_rows_and_choices() {
    let scratch = Scratch::new();
    colour_images(&scratch.path("data"));
    let pipeline = scratch.write("variants.toml", PIPELINE);
    let store = scratch.p("store");

    // ast and ast-l0 share each seed's split, stage-1 run and selection; zs and zs-again share
    // their evaluations. ast-l0's target adds one split and an evaluation per trained model.
    let (counts, variants) = dry(&scratch, &pipeline, &store);
    assert_eq!(variants, "variants: ast (4 points), ast-l0 (4 points), zs (4 points), zs-again (4 points)");
    assert_eq!(counts["weights"], [1, 0, 1, 16]);
    assert_eq!(counts["split"], [3, 0, 3, 20]);
    for kind in ["stage1", "selection"] {
        assert_eq!(counts[kind], [2, 0, 2, 8], "{kind}");
    }
    assert_eq!(counts["stage2"], [8, 0, 8, 8]);
    assert_eq!(counts["eval"], [14, 0, 14, 20], "8 trained + 2 zero-shot + 4 on the target");

    let (_, stderr) =
        scratch.ok(&["run", &pipeline, "--store", &store, "--out", "out", "--jobs", "2", "--threads", "1"]);
    let lines = stage_lines(&stderr);
    let computed = |kind: &str| lines.iter().filter(|(k, _, c)| k == kind && *c).count();
    assert_eq!((computed("stage1"), computed("selection"), computed("stage2"), computed("eval")), (2, 2, 8, 14));

    let results = Csv::read(&scratch.path("out/results.csv"));
    let method = results.col("method");
    assert_eq!(results.header[method - 1], "variant", "variant comes right before method");
    let expected: BTreeMap<(String, String, String), usize> = [
        (("ast", "1", ""), 2),
        (("ast", "2", ""), 2),
        (("ast-l0", "1", ""), 2),
        (("ast-l0", "1", "imagefolder"), 2),
        (("ast-l0", "2", ""), 2),
        (("ast-l0", "2", "imagefolder"), 2),
        (("zs", "1", ""), 1),
        (("zs", "2", ""), 1),
        (("zs-again", "1", ""), 1),
        (("zs-again", "2", ""), 1),
    ]
    .into_iter()
    .map(|((v, s, t), n)| ((v.to_string(), s.to_string(), t.to_string()), n))
    .collect();
    assert_eq!(tally(&results), expected);
    let rows_of = |csv: &Csv, variant: &str| {
        (0..csv.rows.len()).filter(|&r| csv.get(r, "variant") == variant).collect::<Vec<_>>()
    };
    for r in rows_of(&results, "ast-l0") {
        assert_eq!(results.get(r, "stage2.lambda"), "0");
    }
    for r in rows_of(&results, "ast") {
        assert_eq!(results.get(r, "stage2.lambda"), "1");
    }
    // The two zero-shot variants: the same evaluation, a row each.
    let evals = |v: &str| rows_of(&results, v).iter().map(|&r| results.get(r, "eval").to_string()).collect::<Vec<_>>();
    assert_eq!(evals("zs"), evals("zs-again"));

    // chosen.csv: per variant and seed, the own row with the best val_acc (the first on a tie),
    // with that point's target rows; computed here from results.csv.
    let chosen = Csv::read(&scratch.path("out/chosen.csv"));
    assert_eq!(chosen.header, results.header);
    let mut expected_chosen: Vec<String> = Vec::new();
    let mut best: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    for r in 0..results.rows.len() {
        if !results.get(r, "target").is_empty() {
            continue;
        }
        let val: f64 = results.get(r, "val_acc").parse().unwrap();
        let group = (results.get(r, "variant").to_string(), results.get(r, "data.seed").to_string());
        let entry = best.entry(group).or_insert((val, r));
        if val > entry.0 {
            *entry = (val, r);
        }
    }
    let mut picked: Vec<usize> = best.values().map(|&(_, r)| r).collect();
    picked.sort();
    for r in picked {
        expected_chosen.push(results.get(r, "eval").to_string());
        let mut next = r + 1;
        while next < results.rows.len() && !results.get(next, "target").is_empty() {
            expected_chosen.push(results.get(next, "eval").to_string());
            next += 1;
        }
    }
    let chosen_evals: Vec<String> = (0..chosen.rows.len()).map(|r| chosen.get(r, "eval").to_string()).collect();
    assert_eq!(chosen_evals, expected_chosen);
    let per_variant: BTreeMap<(String, String, String), usize> = expected.keys().map(|k| (k.clone(), 1)).collect();
    assert_eq!(tally(&chosen), per_variant, "one chosen row per variant, seed and target");

    // compare.csv against zs: zs-again is the same evaluation, a difference of exactly 0.
    let compare = Csv::read(&scratch.path("out/compare.csv"));
    let row = |variant: &str, target: &str| {
        (0..compare.rows.len())
            .find(|&r| compare.get(r, "variant") == variant && compare.get(r, "target") == target)
            .unwrap_or_else(|| panic!("no {variant} {target} row in compare.csv"))
    };
    let again = row("zs-again", "");
    assert_eq!((compare.get(again, "baseline"), compare.get(again, "pairs")), ("zs", "2"));
    assert_eq!(compare.get(again, "acc_diff_mean"), "0");
    assert_eq!(compare.get(row("ast", ""), "pairs"), "2");
    assert_eq!(compare.get(row("ast-l0", ""), "pairs"), "2");
    assert_eq!(compare.rows.len(), 3, "zs has no target rows, so ast-l0's are not compared");
    let summary = Csv::read(&scratch.path("out/summary.csv"));
    let variants: Vec<&str> = summary.column("variant");
    for v in ["ast", "ast-l0", "zs", "zs-again"] {
        assert!(variants.contains(&v), "summary.csv groups by variant: {variants:?}");
    }

    // A second run computes nothing.
    let (_, stderr) =
        scratch.ok(&["run", &pipeline, "--store", &store, "--out", "out", "--jobs", "2", "--threads", "1"]);
    let lines = stage_lines(&stderr);
    assert!(!lines.is_empty() && lines.iter().all(|(_, _, computed)| !computed), "{stderr}");
    assert!(stderr.contains(": 0 stage(s) computed"), "{stderr}");
}

/// pipelines/README.md's `[[variant]]` example reads, under a file's [weights] and [data].
#[test]
fn readme_variant_example_reads() {
    use clip_ast::pipeline::{file, grid};
    let readme = std::fs::read_to_string(common::repo_root().join("pipelines/README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .skip(1)
        .map(|block| &block[..block.find("```").unwrap()])
        .find(|block| block.contains("[[variant]]"))
        .expect("pipelines/README.md shows [[variant]] tables");
    let head = "[weights]\ninit = { preset = \"mini\" }\n[data]\ndataset = \"imagefolder\"\nroot = \"/d\"\nshots = 1\nseed = [1, 2]\n";
    let text = format!("{head}{example}");
    let env = |name: &str| (name == "DATA").then(|| "/d".to_string());
    let pipeline = file::parse(&text, std::path::Path::new("README.md"), &env).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = pipeline.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["clip-ast", "clip-ast-lambda0", "probe"]);
    // 2 seeds × 3 learning rates each (the probe's too: a grid over settings it ignores).
    assert_eq!(grid::expand(&pipeline).unwrap().len(), 3 * 2 * 3);
}
