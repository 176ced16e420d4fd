//! The report on hand-made results rows: two protocols, labels from `variant` and from
//! `method`, targets with their per-run means, chosen values, paired differences checked
//! against numbers computed with numpy/scipy, and the zero-shot band.

use super::*;

const SEEDS: &[&str] = &["data.seed", "stage2.seed"];

const HEADER: &[&str] = &[
    "variant",
    "method",
    "data.dataset",
    "data.shots",
    "data.seed",
    "data.classes",
    "data.rendering",
    "stage2.seed",
    "stage2.lr",
    "target",
    "weights",
    "eval",
    "trainable_params",
    "acc",
    "base_acc",
    "new_acc",
    "hm",
];

/// A row: ((variant, method), shots, seed, classes, lr, target, [acc, base, new, hm]).
fn row(
    (v, m): (&str, &str),
    shots: i64,
    seed: i64,
    classes: &str,
    lr: &str,
    target: &str,
    metrics: [&str; 4],
) -> Vec<String> {
    let trains = m != "zero-shot";
    let mut r: Vec<String> =
        [v, m, "fm", &shots.to_string(), &seed.to_string(), classes, "rotated"].iter().map(|s| s.to_string()).collect();
    r.push(if trains { seed.to_string() } else { String::new() });
    r.extend([lr, target, "w", "e", "7"].map(String::from));
    r.extend(metrics.map(String::from));
    r
}

fn rows() -> Table {
    let b2n = "base-to-novel";
    let mut rows = Vec::new();
    // Protocol A, base-to-novel: zero-shot (a method, no variant) at 1 and 4 shots.
    let zero = [("0.50", "0.60", "0.545"), ("0.30", "0.62", "0.41"), ("0.55", "0.58", "0.565")];
    for shots in [1, 4] {
        for (seed, (b, n, h)) in (1..).zip(zero) {
            rows.push(row(("", "zero-shot"), shots, seed, b2n, "", "", ["0.5", b, n, h]));
        }
    }
    // The variant "ast" of clip-ast; seed 2 listed first: tables and pairs go in seed order.
    rows.push(row(("ast", "clip-ast"), 4, 2, b2n, "0.0001", "", ["0.6", "0.70", "0.50", "0.58"]));
    rows.push(row(("ast", "clip-ast"), 4, 1, b2n, "0.001", "", ["0.6", "0.80", "0.55", "0.65"]));
    rows.push(row(("ast", "clip-ast"), 4, 3, b2n, "0.001", "", ["0.6", "0.75", "0.60", "0.667"]));
    for (seed, h) in [(1, "0.60"), (2, "0.45"), (3, "0.60")] {
        rows.push(row(("ast", "clip-ast"), 1, seed, b2n, "0.0001", "", ["0.6", "0.7", "0.5", h]));
    }
    // Protocol B, all classes, with two targets and each run's mean over them.
    for (v, m, seed, lr, own, t1, t2, mean) in [
        ("", "zero-shot", 1, "", ["0.40", "0.5", "0.5", "0.38"], "0.20", "0.30", "0.25"),
        ("", "zero-shot", 2, "", ["0.42", "0.5", "0.5", "0.40"], "0.22", "0.34", "0.28"),
        ("ast", "clip-ast", 1, "0.01", ["0.70", "0.7", "0.6", "0.66"], "0.30", "0.40", "0.35"),
        ("ast", "clip-ast", 2, "0.001", ["0.66", "0.7", "0.6", "0.60"], "0.26", "0.30", "0.28"),
    ] {
        rows.push(row((v, m), 4, seed, "all", lr, "", own));
        rows.push(row((v, m), 4, seed, "all", lr, "mnist", [t1, "", "", ""]));
        rows.push(row((v, m), 4, seed, "all", lr, "fm/negative-blur", [t2, "", "", ""]));
        rows.push(row((v, m), 4, seed, "all", lr, "mean", [mean, "", "", ""]));
    }
    Table { header: HEADER.iter().map(|s| s.to_string()).collect(), rows }
}

fn input<'a>(rows: &'a Table, among: &'a [String], subject: Option<&'a str>) -> Input<'a> {
    Input { rows, seeds: SEEDS, among, chosen: among, subject, band: Some((45.0, 80.0)), claims: &[], title: "demo" }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn one_table_per_protocol_and_one_of_targets() {
    let rows = rows();
    let among = vec!["stage2.lr".to_string()];
    let report = build(&input(&rows, &among, None)).unwrap();
    let text = report.text.join("\n");
    // Protocol A: base, new and HM; the variant's 4-shot line averages seeds 1-3 and lists its
    // rates in seed order. Base 0.80/0.70/0.75, new 0.55/0.50/0.60, HM 0.65/0.58/0.667:
    // means 75.0, 55.0, 63.2 and sample stds 5.0, 5.0, 4.6 (numpy: std(ddof=1) = 0.0461).
    assert!(text.contains("fm classes=base-to-novel: mean ± std over seeds\n"), "{text}");
    let header = format!("{:<9}  shots  {:>12}  {:>12}  {:>12}  seeds  chosen", "label", "base %", "new %", "HM %");
    assert!(text.contains(&header), "{text}");
    let line = format!(
        "{:<9}  {:>5}  {:>12}  {:>12}  {:>12}  {:>5}  lr 0.001,0.0001,0.001",
        "ast", 4, "75.0 ± 5.0", "55.0 ± 5.0", "63.2 ± 4.6", 3
    );
    assert!(text.contains(&line), "{text}");
    // The zero-shot lines have no chosen values (it trains nothing).
    assert!(
        text.contains(&format!(
            "{:<9}  {:>5}  {:>12}  {:>12}  {:>12}  {:>5}\n",
            "zero-shot", 1, "45.0 ± 13.2", "60.0 ± 2.0", "50.7 ± 8.4", 3
        )),
        "{text}"
    );
    // Protocol B: accuracy and HM.
    assert!(
        text.contains(&format!(
            "{:<9}  {:>5}  {:>12}  {:>12}  {:>5}  lr 0.01,0.001",
            "ast", 4, "68.0 ± 2.8", "63.0 ± 4.2", 2
        )),
        "{text}"
    );
    // Targets of protocol B: one column per target, then the mean of the per-run means.
    let targets =
        format!("{:<9}  shots  {:>12}  {:>18}  {:>12}  seeds", "label", "mnist %", "fm/negative-blur %", "mean %");
    assert!(text.contains(&targets), "{text}");
    assert!(
        text.contains(&format!(
            "{:<9}  {:>5}  {:>12}  {:>18}  {:>12}  {:>5}",
            "ast", 4, "28.0 ± 2.8", "35.0 ± 7.1", "31.5 ± 4.9", 2
        )),
        "{text}"
    );

    // report.csv in long form, fractions.
    let long = &report.long;
    let find = |table: &str, target: &str, label: &str, shots: &str, metric: &str| {
        let row = long
            .rows
            .iter()
            .find(|r| r[0] == table && r[2] == target && r[3] == label && r[4] == shots && r[5] == metric);
        row.unwrap_or_else(|| panic!("no {table}/{target}/{label}/{shots}/{metric} in {:?}", long.rows)).clone()
    };
    let hm = find("test", "", "ast", "4", "hm");
    assert_eq!(hm[1], "dataset=fm classes=base-to-novel rendering=rotated");
    assert!(close(hm[6].parse().unwrap(), 0.632_333_333_333_333_3));
    assert!(close(hm[7].parse().unwrap(), 0.046_112_182_049_143_34), "{hm:?}");
    assert_eq!((hm[8].as_str(), hm[9].as_str()), ("3", "lr 0.001,0.0001,0.001"));
    let mean = find("targets", "mean", "zero-shot", "4", "acc");
    assert!(close(mean[6].parse().unwrap(), 0.265), "{mean:?}");
    assert!(long.rows.iter().all(|r| !(r[0] == "test" && r[1].contains("classes=all") && r[5] == "base_acc")));
}

#[test]
fn paired_differences_match_scipy() {
    let rows = rows();
    let among = vec!["stage2.lr".to_string()];
    let report = build(&input(&rows, &among, Some("ast"))).unwrap();
    let paired = report.paired.as_ref().expect("a subject writes paired.csv");
    let col = |name: &str| paired.column(name).unwrap_or_else(|| panic!("no {name} in {:?}", paired.header));
    let pick = |table: &str, classes: &str, shots: &str| {
        paired
            .rows
            .iter()
            .find(|r| r[col("table")] == table && r[col("data.classes")] == classes && r[col("shots")] == shots)
            .unwrap_or_else(|| panic!("no {table} {classes} {shots} in {:?}", paired.rows))
    };
    // numpy/scipy on the HM differences 0.65−0.545, 0.58−0.41, 0.667−0.565 (seeds 1, 2, 3):
    // mean 0.125666…, std(ddof=1) 0.0384231, t.ppf(0.975, 2)·std/√3 = 0.0954482.
    let r = pick("test", "base-to-novel", "4");
    assert_eq!((r[col("subject")].as_str(), r[col("other")].as_str()), ("ast", "zero-shot"));
    assert_eq!((r[col("metric")].as_str(), r[col("pairs")].as_str()), ("hm", "3"));
    let diffs: Vec<f64> = r[col("diffs")].split(';').map(|d| d.parse().unwrap()).collect();
    assert!(diffs.iter().zip([0.105, 0.17, 0.102]).all(|(a, b)| close(*a, b)), "{diffs:?}");
    for (name, want) in [
        ("diff_mean", 0.125_666_666_666_666_68),
        ("diff_std", 0.038_423_083_339_749_44),
        ("diff_ci95", 0.095_448_230_325_997_4),
    ] {
        let got: f64 = r[col(name)].parse().unwrap();
        assert!((got - want).abs() < 1e-6, "{name}: {got} vs scipy's {want}");
    }
    // Protocol B on accuracy: 0.30 and 0.24; the target means: 0.10 and 0.00 (t(0.975, 1) = 12.7062).
    let r = pick("test", "all", "4");
    assert_eq!(r[col("metric")], "acc");
    assert!((r[col("diff_ci95")].parse::<f64>().unwrap() - 12.706_204_736 * 0.03).abs() < 1e-6);
    let r = pick("targets", "all", "4");
    assert_eq!((r[col("metric")].as_str(), r[col("pairs")].as_str()), ("mean_target_acc", "2"));
    assert!(close(r[col("diff_mean")].parse().unwrap(), 0.05));
    assert!((r[col("diff_ci95")].parse::<f64>().unwrap() - 12.706_204_736 * 0.05).abs() < 1e-6);
    assert_eq!(paired.rows.len(), 4, "A at 1 and 4 shots, B, B's targets");
    // Printed too, in percentage points.
    let text = report.text.join("\n");
    assert!(text.contains("zero-shot      4  hm          3  +10.5 +17.0 +10.2  +12.6 ± 9.5"), "{text}");
}

#[test]
fn zero_shot_outside_the_band_is_warned_about() {
    let rows = rows();
    let report = build(&input(&rows, &[], None)).unwrap();
    // Base accuracy 30% at seed 2, at 1 and 4 shots; protocol B (all classes) is not checked.
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    let w = &report.warnings[1];
    assert!(w.starts_with("warning: zero-shot base accuracy 30.0% at 4 shots, seed 2 ("), "{w}");
    assert!(w.contains("[45, 80]%") && w.contains("room to learn") && w.contains("knowledge to keep"), "{w}");
    let mut narrow = input(&rows, &[], None);
    narrow.band = Some((0.0, 100.0));
    assert!(build(&narrow).unwrap().warnings.is_empty());
}

#[test]
fn labels_fall_back_to_the_method_and_name_what_differs() {
    let mut t = rows();
    // Without the variant column every label is the method's.
    t.header.remove(0);
    t.rows.iter_mut().for_each(|r| {
        r.remove(0);
    });
    let labels = rows::labels(&t, SEEDS, &["stage2.lr".to_string()]);
    assert_eq!(labels[0], "zero-shot");
    assert_eq!(labels[6], "clip-ast");
    // Not choosing among the rates: clip-ast's runs differ in one, which the label then names.
    let labels = rows::labels(&t, SEEDS, &[]);
    assert_eq!((labels[0].as_str(), labels[6].as_str()), ("zero-shot", "clip-ast stage2.lr=0.0001"));
    assert_eq!(rows::find_subject(&labels, "clip-ast stage2.lr=0.01").unwrap(), "clip-ast stage2.lr=0.01");
    let e = rows::find_subject(&labels, "clip-ast").unwrap_err().to_string();
    assert!(e.contains("names 3 labels"), "{e}");
    let e = rows::find_subject(&labels, "full-ft").unwrap_err().to_string();
    assert!(
        e.starts_with("[report] subject = \"full-ft\" is not a label of this pipeline's runs (\"zero-shot\""),
        "{e}"
    );
}

#[test]
fn files_are_replaced_and_the_unasked_removed() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let among = vec!["stage2.lr".to_string()];
    let report = build(&input(&rows, &among, Some("ast"))).unwrap();
    report.write(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("report.txt")).unwrap();
    assert_eq!(text, report.text.iter().map(|l| format!("{l}\n")).collect::<String>());
    let png = std::fs::read(dir.path().join("report.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(dir.path().join("paired.csv").is_file() && dir.path().join("report.csv").is_file());
    // One shot count and no targets, no subject: nothing to plot and no pairs.
    let mut one = rows.clone();
    one.rows.retain(|r| r[3] == "4" && r[5] == "base-to-novel");
    build(&input(&one, &among, None)).unwrap().write(dir.path()).unwrap();
    assert!(!dir.path().join("paired.csv").exists() && !dir.path().join("report.png").exists());
    assert!(dir.path().join("report.txt").is_file());
}
