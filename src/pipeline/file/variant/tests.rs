use std::path::Path;

use crate::pipeline::file::{PipelineFile, parse};
use crate::pipeline::grid::{Point, expand};
use crate::pipeline::value::Scalar;

const FILE: &str = r#"[weights]
init = { preset = "mini" }
[data]
dataset = "caltech101"
root = "/d"
shots = [1, 2]
seed = 1
[stage2]
lr = [1e-3, 1e-2]
lambda = [0, 1]
[eval]
targets = [{ dataset = "dtd", root = "/d" }]
"#;

/// Line 13 on: three variants.
const VARIANTS: &str = r#"
[[variant]]
name = "ast"
method = "clip-ast"

[[variant]]
name = "ast-l5"
stage2.lambda = 5
stage2.lr = [1e-4, 1e-3, 1e-2]
eval.targets = [{ dataset = "eurosat", root = "/d" }, { dataset = "oxford_pets", root = "/d" }]

[[variant]]
name = "zs"
method = ["zero-shot"]
data.classes = "base"
"#;

fn read(text: &str) -> anyhow::Result<PipelineFile> {
    parse(text, Path::new("p/v.toml"), &|_| None)
}

fn error(variants: &str) -> String {
    let e = read(&format!("{FILE}{variants}")).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn reads_variants_in_file_order_with_their_lines() {
    let file = read(&format!("{FILE}{VARIANTS}")).unwrap();
    let names: Vec<&str> = file.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["ast", "ast-l5", "zs"]);
    let [ast, l5, zs] = &file.variants[..] else { unreachable!() };
    assert_eq!((ast.line, l5.line, zs.line), (15, 19, 25));
    assert_eq!(ast.values["method"], [Scalar::Str("clip-ast".into())]);
    assert_eq!(l5.values["stage2.lambda"], [Scalar::Float(5.0)], "an integer where a number is meant, as in [stage2]");
    assert_eq!(l5.values["stage2.lr"].len(), 3);
    assert_eq!(l5.lines["stage2.lr"], 21);
    let targets: Vec<&str> = l5.targets.as_ref().unwrap().iter().map(|t| t.dataset.as_str()).collect();
    assert_eq!(targets, ["eurosat", "oxford_pets"]);
    assert_eq!((ast.targets.as_ref(), zs.targets.as_ref()), (None, None));
    assert_eq!(zs.values["data.classes"], [Scalar::Str("base".into())]);
    // The file's own values are untouched by its variants.
    assert_eq!(file.values["stage2.lambda"].len(), 2);
    assert!(read(FILE).unwrap().variants.is_empty());
}

fn row(p: &Point) -> (String, String, i64, f64, f64) {
    let text = |k: &str| p.get(k).as_str().to_string();
    (
        text("variant"),
        text("method"),
        p.get("data.shots").as_i64(),
        p.get("stage2.lr").as_f64(),
        p.get("stage2.lambda").as_f64(),
    )
}

#[test]
fn each_variant_is_the_file_grid_with_its_values_replaced_in_file_order() {
    let file = read(&format!("{FILE}{VARIANTS}")).unwrap();
    let points = expand(&file).unwrap();
    // ast: 2 shots × 2 lr × 2 λ; ast-l5: 2 shots × 3 lr × λ 5; zs: the file's grid again.
    assert_eq!(points.len(), 8 + 6 + 8);
    let variants: Vec<&str> = points.iter().map(|p| p.variant()).collect();
    assert_eq!(variants, [["ast"; 8].as_slice(), &["ast-l5"; 6], &["zs"; 8]].concat());
    assert_eq!(row(&points[0]), ("ast".into(), "clip-ast".into(), 1, 1e-3, 0.0));
    assert_eq!(row(&points[7]), ("ast".into(), "clip-ast".into(), 2, 1e-2, 1.0));
    assert_eq!(row(&points[8]), ("ast-l5".into(), "clip-ast".into(), 1, 1e-4, 5.0));
    assert_eq!(row(&points[13]), ("ast-l5".into(), "clip-ast".into(), 2, 1e-2, 5.0));
    assert_eq!(row(&points[14]), ("zs".into(), "zero-shot".into(), 1, 1e-3, 0.0));
    // Settings left to follow another follow the variant's value.
    assert_eq!(points[8].get("stage2.lambda_kl"), &Scalar::Float(5.0));
    assert_eq!(points[14].get("data.classes"), &Scalar::Str("base".into()));
    assert_eq!(points[0].get("data.classes"), &Scalar::Str("all".into()));
    // A file without variants: the same grid as the first variant, which sets nothing new.
    let plain = expand(&read(FILE).unwrap()).unwrap();
    assert_eq!(plain.len(), 8);
    for (p, v) in plain.iter().zip(&points) {
        assert_eq!(p.variant(), "");
        assert_eq!(p.settings()[1..], v.settings()[1..]);
    }
}

#[test]
fn targets_and_lines_are_the_points_variants() {
    let file = read(&format!("{FILE}{VARIANTS}")).unwrap();
    let points = expand(&file).unwrap();
    let names = |p: &Point| file.targets_of(p).iter().map(|t| t.dataset.clone()).collect::<Vec<_>>();
    assert_eq!(names(&points[0]), ["dtd"], "a variant without eval.targets keeps the file's");
    assert_eq!(names(&points[8]), ["eurosat", "oxford_pets"]);
    assert_eq!(file.at_point(&points[8], "stage2.lr"), "p/v.toml:21");
    assert_eq!(file.at_point(&points[0], "stage2.lr"), "p/v.toml:9");
    assert_eq!(file.at_point(&points[14], "data.classes"), "p/v.toml:27");
    let no_targets = read(&format!("{FILE}[[variant]]\nname = \"none\"\neval.targets = []\n")).unwrap();
    assert!(no_targets.targets_of(&expand(&no_targets).unwrap()[0]).is_empty());
}

#[test]
fn a_variant_may_not_set_the_files_own_keys() {
    let at = |key: &str| error(&format!("[[variant]]\nname = \"a\"\n{key}\n"));
    let e = at("weights = { init = { preset = \"mini\" } }");
    assert!(
        e.starts_with("p/v.toml:15: [[variant]] cannot set `weights`: every variant adapts the file's [weights]"),
        "{e}"
    );
    for (key, why) in [
        ("report.title = \"x\"", "[report] is the file's"),
        ("choose.by = \"val_acc\"", "[choose] is the file's"),
        ("slurm.cpus = 2", "[slurm] is the file's"),
        ("description = \"x\"", "describes the whole file"),
    ] {
        let e = at(key);
        assert!(e.starts_with("p/v.toml:15: [[variant]] cannot set `"), "{e}");
        assert!(e.contains(why), "{e}");
    }
    let e = at("data.root = \"/e\"");
    assert!(e.starts_with("p/v.toml:15: [[variant]] cannot set `data.root`: not a grid key"), "{e}");
    let e = at("data.image_size = 64");
    assert!(e.contains("cannot set `data.image_size`: not a grid key"), "{e}");
    let e = at("stage3.lr = 1");
    assert!(
        e.starts_with("p/v.toml:15: unknown key `stage3` in [[variant]]; known keys: name, method, data, stage1"),
        "{e}"
    );
    let e = at("\nstage2.lrr = 1");
    assert!(
        e.starts_with("p/v.toml:16: unknown key `lrr` in [stage2] of [[variant]]; known keys: init, lr, epochs"),
        "{e}"
    );
}

#[test]
fn a_variants_values_are_checked_as_the_sections_are() {
    let at = |key: &str| error(&format!("[[variant]]\nname = \"a\"\n{key}\n"));
    let e = at("stage2.lambda = -1");
    assert!(e.starts_with("p/v.toml:15: [stage2] lambda = -1 must be"), "{e}");
    let section = read(&FILE.replace("lambda = [0, 1]", "lambda = -1")).unwrap_err().to_string();
    assert!(section.starts_with("p/v.toml:10: [stage2] lambda = -1 must be"), "{section}");
    assert_eq!(e.split_once(" must").unwrap().1, section.split_once(" must").unwrap().1);
    let e = at("stage2.lr = []");
    assert!(e.contains("[stage2] lr is an empty list"), "{e}");
    let e = at("select.score = \"best\"");
    assert!(e.contains("[select] score = best must be one of inv-sqrt-v"), "{e}");
    let e = at("method = \"clip\"");
    assert!(e.starts_with("p/v.toml:15: [[variant]] method = clip must be one of clip-ast"), "{e}");
    let e = at("eval.targets = [{ dataset = \"dtd\" }]");
    assert!(e.contains("each of [eval] targets needs dataset"), "{e}");
    let e = at("data.shots = [1, 1]");
    assert!(e.contains("[data] shots lists 1 twice"), "{e}");
}

#[test]
fn names_are_required_and_folder_safe_and_may_label_several_variants() {
    let e = error("[[variant]]\nmethod = \"zero-shot\"\n");
    assert!(e.starts_with("p/v.toml:") && e.contains("[[variant]] needs name = "), "{e}");
    // One name, two protocols: each point keeps its own table's targets and lines.
    let twice = read(&format!(
        "{FILE}[[variant]]\nname = \"a\"\ndata.classes = \"base\"\neval.targets = []\n[[variant]]\nname = \"a\"\n"
    ))
    .unwrap();
    assert_eq!(twice.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["a", "a"]);
    let points = expand(&twice).unwrap();
    assert_eq!(points.len(), 16, "two grids of 2 shots x 2 lr x 2 lambda");
    for p in &points {
        let base = p.get("data.classes").as_str() == "base";
        assert_eq!(p.variant(), "a");
        assert_eq!(file_targets(&twice, p), if base { vec![] } else { vec!["dtd".to_string()] });
        assert_eq!(twice.at_point(p, "data.classes"), if base { "p/v.toml:15" } else { "p/v.toml" });
    }
    let e = error("[[variant]]\nname = \"a b\"\n");
    assert!(e.starts_with("p/v.toml:14: [[variant]] name = a b is not a name: use letters, digits"), "{e}");
    let e = error("[[variant]]\nname = [\"a\"]\n");
    assert!(e.contains("[[variant]] name takes one value, not a list"), "{e}");
    let e = read(&format!("variant = 3\n{FILE}")).unwrap_err().to_string();
    assert!(e.starts_with("p/v.toml:1: `variant` must be a list of tables"), "{e}");
}

#[test]
fn choose_among_a_list_a_variant_gives() {
    use crate::pipeline::choose::Choose;
    let one_lr = FILE.replace("lr = [1e-3, 1e-2]", "lr = 1e-3");
    let choose = "[choose]\nby = \"val_acc\"\namong = \"stage2.lr\"\n";
    let e = Choose::of(&read(&format!("{one_lr}{choose}")).unwrap()).unwrap_err().to_string();
    assert!(e.contains("`stage2.lr` is not a list in this file"), "{e}");
    let file =
        read(&format!("{one_lr}{choose}[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\nstage2.lr = [1, 2]\n"));
    let c = Choose::of(&file.unwrap()).unwrap().unwrap();
    assert_eq!(c.among, ["stage2.lr"]);
    let e =
        Choose::of(&read(&format!("{FILE}[choose]\nby = \"val_acc\"\namong = \"variant\"\n")).unwrap()).unwrap_err();
    assert!(e.to_string().contains("`variant` is not a setting to choose among"), "{e}");
}

#[test]
fn a_baseline_names_a_variant_or_a_method() {
    use crate::pipeline::compare::{Baseline, baseline};
    let with = |report: &str| read(&format!("{FILE}{report}{VARIANTS}")).and_then(|f| baseline(&f));
    let b = with("[report]\nbaseline = \"zs\"\n").unwrap().unwrap();
    assert_eq!(b, Baseline { column: "variant", name: "zs".into() });
    let b = with("[report]\nbaseline = \"zero-shot\"\n").unwrap().unwrap();
    assert_eq!(b, Baseline { column: "method", name: "zero-shot".into() }, "zs's method");
    let e = with("[report]\nbaseline = \"full-ft\"\n").unwrap_err().to_string();
    assert!(
        e.starts_with("p/v.toml:14: [report] baseline = full-ft is not a method this pipeline runs (clip-ast, zero-shot) nor one of its variants (ast, ast-l5, zs)"),
        "{e}"
    );
    // A variant named like a method is the variant.
    let named = read(&format!(
        "{FILE}[report]\nbaseline = \"zero-shot\"\n[[variant]]\nname = \"zero-shot\"\n[[variant]]\nname = \"b\"\n"
    ));
    assert_eq!(baseline(&named.unwrap()).unwrap().unwrap().column, "variant");
    let alone = read(&format!("{FILE}[report]\nbaseline = \"a\"\n[[variant]]\nname = \"a\"\n"));
    let e = baseline(&alone.unwrap()).unwrap_err().to_string();
    assert!(e.contains("no other [[variant]] to compare with it"), "{e}");
}

#[test]
fn a_variant_baseline_pairs_each_other_variants_rows_on_the_same_split_and_seed() {
    use crate::csv_io::Table;
    use crate::pipeline::compare::{Baseline, pairs, table};
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let rows = Table {
        header: s(&["variant", "method", "data.seed", "stage2.seed", "stage2.lambda", "eval", "acc"]),
        rows: vec![
            s(&["ast", "clip-ast", "1", "1", "1", "k1", "0.6"]),
            s(&["l0", "clip-ast", "1", "1", "0", "k2", "0.5"]),
            s(&["ast", "clip-ast", "2", "2", "1", "k3", "0.8"]),
            s(&["l0", "clip-ast", "2", "2", "0", "k4", "0.4"]),
        ],
    };
    let l0 = Baseline { column: "variant", name: "l0".into() };
    assert_eq!(pairs(&rows, &l0).unwrap(), [(0, 1), (2, 3)]);
    let compared = table(&rows, &l0, &[]).unwrap();
    assert_eq!(compared.rows.len(), 1);
    assert_eq!(compared.rows[0][..5], s(&["ast", "clip-ast", "1", "l0", "2"]));
    let mean: f64 = compared.rows[0][5].parse().unwrap();
    assert!((mean - 0.25).abs() < 1e-12, "(0.1 + 0.4) / 2: {mean}");
    // By method the same rows have no baseline at all.
    let e = pairs(&rows, &Baseline { column: "method", name: "zero-shot".into() }).unwrap_err();
    assert!(e.to_string().contains("no zero-shot result"), "{e}");
}

fn file_targets(file: &PipelineFile, p: &Point) -> Vec<String> {
    file.targets_of(p).iter().map(|t| t.dataset.clone()).collect()
}
