//! pipelines/demo.toml at a tiny size: the same file with fewer images, one seed and two shot
//! counts, run by `clip-ast run` as `make demo` runs it. Checks that the report holds every
//! method at every shot count and that a second run computes nothing.

mod common;

/// `text` with `from` replaced by `to`, failing if the demo file no longer holds `from`.
fn shrink(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "pipelines/demo.toml no longer holds `{from}`; update this test");
    text.replace(from, to)
}

#[test]
fn tiny_demo_produces_a_complete_report() {
    let fashion = std::path::Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(fashion.is_file(), "install Debian's dataset-fashion-mnist (make test does)");
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(common::repo_root().join("pipelines/demo.toml")).unwrap();
    for (from, to) in [
        ("shots = [1, 4, 16]", "shots = [1, 4]"),
        ("seed = [1, 2, 3]", "seed = 1"),
        ("shots = 1000", "shots = 100"),
        ("epochs = 6", "epochs = 1"),
        ("test_per_class = 200", "test_per_class = 20"),
        ("epochs = 10", "epochs = 2"),
    ] {
        text = shrink(&text, from, to);
    }
    let pipeline = dir.path().join("demo.toml");
    std::fs::write(&pipeline, text).unwrap();
    let out = dir.path().join("out");
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_clip-ast"))
            .arg("run")
            .arg(&pipeline)
            .args(["--jobs", "2", "--threads", "1", "--out"])
            .arg(&out)
            .arg("--store")
            .arg(dir.path().join("store"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "demo failed: {stderr}\n{stdout}");
        (stdout, stderr)
    };
    let (stdout, _) = run();
    // report.csv's test table: every method at every shot count, one seed each.
    let report = common::Csv::read(&out.join("report.csv"));
    let cols = ["table", "label", "shots", "metric", "seeds"].map(|c| report.col(c));
    for label in ["zero-shot", "clip-ast", "random-k", "full-ft", "linear-probe"] {
        for shots in ["1", "4"] {
            assert!(
                report.rows.iter().any(|r| cols.map(|c| r[c].as_str()) == ["test", label, shots, "acc", "1"]),
                "no row for {label} at {shots} shots in {:?}",
                report.rows
            );
        }
    }
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(stdout.starts_with(&text), "report.txt is the printed tables:\n{text}\n{stdout}");
    let png = std::fs::read(out.join("report.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the plot is a PNG");
    assert!(stdout.contains("linear-probe") && stdout.contains("acc %"), "table printed: {stdout}");
    // One row per distinct evaluation: 5 methods × 2 shot counts.
    let results = common::Csv::read(&out.join("results.csv"));
    assert_eq!(results.rows.len(), 10, "{:?}", results.rows);

    let (again, stderr) = run();
    assert_eq!(again, stdout, "a second run prints the same report");
    assert!(stderr.contains(" 0 stage(s) computed"), "a second run computes nothing: {stderr}");
}
