use std::path::Path;

use super::*;
use crate::pipeline::file::parse;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const FILE: &str = "[weights]\ninit = { preset = \"mini\" }\n[data]\ndataset = \"caltech101\"\nroot = \"/d\"\nshots = 1\nseed = [1, 2]\n[stage2]\nlr = [1e-3, 1e-2]\nlambda = [0, 1]\nepochs = [2, 3]\n";

fn choose(section: &str) -> Result<Option<Choose>> {
    Choose::of(&parse(&format!("{FILE}{section}"), Path::new("p/c.toml"), &|_| None).unwrap())
}

fn error(section: &str) -> String {
    let e = choose(section).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn reads_the_section() {
    assert_eq!(choose("").unwrap(), None);
    let c = choose("[choose]\nby = \"val_acc\"\namong = [\"stage2.lr\", \"stage2.lambda\"]\n").unwrap().unwrap();
    let followers = s(&["stage2.lambda_img", "stage2.lambda_txt", "stage2.lambda_kl"]);
    assert_eq!(c, Choose { by: "val_acc".into(), among: s(&["stage2.lr", "stage2.lambda"]), followers });
    // A follower the file sets is a setting of its own.
    let c = choose("lambda_kl = 2\n[choose]\nby = \"val_acc\"\namong = \"stage2.lambda\"\n").unwrap().unwrap();
    assert_eq!(c.followers, s(&["stage2.lambda_img", "stage2.lambda_txt"]));
    assert_eq!(c.chosen_columns(), s(&["stage2.lambda", "stage2.lambda_img", "stage2.lambda_txt"]));
}

#[test]
fn refuses_test_metrics_and_names_what_may_be_chosen() {
    let e = error("[choose]\nby = \"acc\"\namong = \"stage2.lr\"\n");
    assert!(e.starts_with("p/c.toml:13: [choose] by = acc is a test-set metric"), "{e}");
    assert!(e.contains("use val_acc, val_base_acc"), "{e}");
    for test_metric in ["hm", "base_acc", "new_acc", "macro_acc"] {
        let e = error(&format!("[choose]\nby = \"{test_metric}\"\namong = \"stage2.lr\"\n"));
        assert!(e.contains("is a test-set metric"), "{e}");
    }
    let e = error("[choose]\nby = \"loss\"\namong = \"stage2.lr\"\n");
    assert!(e.contains("by = loss is not a validation metric; use val_acc"), "{e}");
    let e = error("[choose]\nby = \"val_acc\"\namong = [\"stage2.lr\", \"lr\"]\n");
    assert!(e.starts_with("p/c.toml:14: [choose] among: `lr` is not a setting to choose among; use stage1.lr"), "{e}");
    assert!(e.contains("stage2.lambda") && !e.contains("stage2.seed,"), "{e}");
    for not_choosable in ["data.seed", "data.shots", "stage2.seed", "method"] {
        let e = error(&format!("[choose]\nby = \"val_acc\"\namong = \"{not_choosable}\"\n"));
        assert!(e.contains(&format!("`{not_choosable}` is not a setting to choose among")), "{e}");
    }
    let e = error("[choose]\nby = \"val_acc\"\namong = \"stage2.batch_size\"\n");
    assert!(e.contains("`stage2.batch_size` is not a list in this file; give [stage2] batch_size the values"), "{e}");
    let e = parse(&format!("{FILE}[choose]\namong = \"stage2.lr\"\n"), Path::new("p/c.toml"), &|_| None).unwrap_err();
    assert!(e.to_string().contains("[choose] by is not set"), "{e}");
}

fn candidate(group: &str, by: f64) -> Candidate {
    Candidate { group: s(&[group]), by }
}

#[test]
fn picks_the_largest_per_group_first_on_ties() {
    let picked = pick(&[
        candidate("a", 0.5),
        candidate("b", 0.2),
        candidate("a", 0.7),
        candidate("b", 0.2),
        candidate("a", 0.7),
        candidate("c", 0.0),
    ]);
    assert_eq!(
        picked,
        [Choice { index: 2, candidates: 3 }, Choice { index: 1, candidates: 2 }, Choice { index: 5, candidates: 1 }]
    );
}

/// Two seeds × two learning rates; on seed 1 validation and test disagree.
fn results() -> Table {
    Table {
        header: s(&["method", "data.seed", "stage2.lr", "stage2.lambda", "weights", "eval", "acc", "val_acc"]),
        rows: vec![
            s(&["clip-ast", "1", "0.1", "0", "w", "k1", "0.9", "0.5"]),
            s(&["clip-ast", "1", "0.2", "0", "w", "k2", "0.3", "0.6"]),
            s(&["clip-ast", "2", "0.1", "0", "w", "k3", "0.4", "0.8"]),
            s(&["clip-ast", "2", "0.2", "0", "w", "k4", "0.8", "0.8"]),
            s(&["zero-shot", "1", "", "", "w", "k5", "0.2", "0.2"]),
        ],
    }
}

#[test]
fn chosen_rows_follow_validation_not_test() {
    let c = Choose { by: "val_acc".into(), among: s(&["stage2.lr"]), followers: vec![] };
    let chosen = chosen(&results(), &c).unwrap();
    assert_eq!(chosen.header, results().header);
    let evals: Vec<&str> = chosen.rows.iter().map(|r| r[5].as_str()).collect();
    assert_eq!(evals, ["k2", "k3", "k5"], "seed 1: the better val_acc; seed 2: a tie, the first");
    // Any test accuracies choose the same.
    let mut shuffled = results();
    for (row, acc) in shuffled.rows.iter_mut().zip(["0.1", "0.2", "0.9", "0.3", "1"]) {
        row[6] = acc.to_string();
    }
    let again: Vec<String> = super::chosen(&shuffled, &c).unwrap().rows.iter().map(|r| r[5].clone()).collect();
    assert_eq!(again, evals);
    // The chosen settings out of the chosen summary's grouping.
    let c2 = Choose { among: s(&["stage2.lr", "stage2.lambda"]), ..c.clone() };
    assert_eq!(summary_input(&chosen, &c2).header, s(&["method", "data.seed", "weights", "eval", "acc", "val_acc"]));
}

#[test]
fn a_missing_or_empty_metric_is_an_error() {
    let c = Choose { by: "val_base_acc".into(), among: s(&["stage2.lr"]), followers: vec![] };
    let e = chosen(&results(), &c).unwrap_err().to_string();
    assert!(e.contains("[choose] by = val_base_acc: the evaluations wrote no such metric"), "{e}");
    let mut t = results();
    t.rows[3][7] = String::new();
    let e = chosen(&t, &Choose { by: "val_acc".into(), ..c }).unwrap_err().to_string();
    assert!(
        e.contains("evaluation k4 reports ``, not a number (val_acc is empty for a dataset without a val list"),
        "{e}"
    );
}

/// With `[eval] targets`: each point's own row, then its target rows (whose val_acc, of the
/// target's own split, must not choose: here it would pick lr 0.1, or fail where it is empty).
#[test]
fn target_rows_follow_the_choice_made_on_the_points_own_row() {
    let header = s(&["variant", "method", "data.seed", "stage2.lr", "target", "weights", "eval", "acc", "val_acc"]);
    let rows = vec![
        s(&["a", "clip-ast", "1", "0.1", "", "w", "k1", "0.9", "0.5"]),
        s(&["a", "clip-ast", "1", "0.1", "t1", "w", "k2", "0.3", "0.99"]),
        s(&["a", "clip-ast", "1", "0.1", "t2", "w", "k3", "0.3", ""]),
        s(&["a", "clip-ast", "1", "0.2", "", "w", "k4", "0.3", "0.6"]),
        s(&["a", "clip-ast", "1", "0.2", "t1", "w", "k5", "0.3", "0.1"]),
        s(&["a", "clip-ast", "1", "0.2", "t2", "w", "k6", "0.3", ""]),
        s(&["b", "clip-ast", "1", "0.1", "", "w", "k1", "0.9", "0.5"]),
    ];
    let c = Choose { by: "val_acc".into(), among: s(&["stage2.lr"]), followers: vec![] };
    let chosen = chosen(&Table { header, rows }, &c).unwrap();
    let evals: Vec<&str> = chosen.rows.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(evals, ["k4", "k5", "k6", "k1"], "variant a chooses lr 0.2 with its targets; b its own");
}
