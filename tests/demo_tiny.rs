//! The demo's pipeline shape at a tiny size: pretrain → split → every method → report, with
//! one seed and two shot counts. Checks the report files hold every method and shot.

mod common;

#[test]
fn tiny_demo_produces_a_complete_report() {
    let fashion = std::path::Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(fashion.is_file(), "install Debian's dataset-fashion-mnist (make test does)");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_clip-ast")).parent().unwrap();
    let status = std::process::Command::new("bash")
        .arg(common::repo_root().join("scripts/demo.sh"))
        .env("CLIP_AST_STORE", dir.path().join("store"))
        .env("DEMO_OUT", &out)
        .env("DEMO_BIN", bin_dir.join("clip-ast"))
        .env("DEMO_SEEDS", "1")
        .env("DEMO_SHOTS", "1 4")
        .env("DEMO_PRETRAIN_SHOTS", "100")
        .env("DEMO_PRETRAIN_EPOCHS", "1")
        .env("DEMO_TEST_PER_CLASS", "20")
        .env("DEMO_STAGE2_EPOCHS", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "demo failed: {}\n{stdout}", String::from_utf8_lossy(&status.stderr));
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    for method in ["zero-shot", "clip-ast/inv-sqrt-v", "random-k", "full-ft", "linear-probe"] {
        for shots in ["1", "4"] {
            assert!(
                csv.lines().any(|l| l.starts_with(&format!("{method},{shots},1,"))),
                "no row for {method} at {shots} shots in:\n{csv}"
            );
        }
    }
    let png = std::fs::read(out.with_extension("png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the plot is a PNG");
    assert!(stdout.contains("linear-probe") && stdout.contains("HM %"), "table printed: {stdout}");
}
