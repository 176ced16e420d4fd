use super::*;

fn env(name: &str) -> Option<String> {
    (name == "DATA").then(|| "/data".to_string())
}

fn parse_str(text: &str) -> Result<PipelineFile> {
    parse(text, Path::new("p/sweep.toml"), &env)
}

const MINIMAL: &str = "[weights]\ninit = { preset = \"mini\" }\n[data]\ndataset = \"caltech101\"\nroot = \"${DATA}/x\"\nshots = [1, 2]\nseed = 1\n";

#[test]
fn reads_values_lists_and_defaults_the_name() {
    let p = parse_str(&format!("{MINIMAL}[stage2]\nlr = [1e-7, 5e-7]\nlambda = 0\n")).unwrap();
    assert_eq!(p.name, "sweep");
    assert_eq!(p.weights, WeightsSource::Init { preset: "mini".into(), seed: 0 });
    assert_eq!(p.values["data.root"], [Scalar::Str("/data/x".into())]);
    assert_eq!(p.values["data.shots"], [Scalar::Int(1), Scalar::Int(2)]);
    assert_eq!(p.values["stage2.lr"], [Scalar::Float(1e-7), Scalar::Float(5e-7)]);
    assert_eq!(p.values["stage2.lambda"], [Scalar::Float(0.0)]);
    assert_eq!(p.at("stage2.lr"), "p/sweep.toml:9");
}

#[test]
fn pretrain_takes_the_command_defaults_and_report_the_name() {
    let text =
        MINIMAL.replace("init = { preset = \"mini\" }", "pretrain = { preset = \"mini\", shots = 50, seed = 3 }");
    let p = parse_str(&format!("{text}[report]\n")).unwrap();
    let WeightsSource::Pretrain(source) = &p.weights else { panic!("{:?}", p.weights) };
    let expected = crate::train::pretrain::PretrainParams { seed: 3, ..Default::default() };
    assert_eq!(source.settings.params().unwrap(), expected, "unset settings are `clip-ast pretrain`'s defaults");
    assert_eq!((source.shots, source.seed, source.classes, source.init_seed), (50, 3, Subsample::Base, 0));
    assert_eq!(p.report_title.as_deref(), Some("sweep"));
    assert_eq!(parse_str(MINIMAL).unwrap().report_title, None);
    let e = parse_str(&text.replace("dataset = \"caltech101\"", "dataset = [\"dtd\", \"eurosat\"]")).unwrap_err();
    assert!(e.to_string().contains("pretrain trains on [data] dataset, which lists several"), "{e}");
}

fn error(text: &str) -> String {
    let e = parse_str(text).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn mistakes_name_file_line_section_and_key() {
    let e = error(&format!("{MINIMAL}[stage2]\nlrr = 1\n"));
    assert!(e.starts_with("p/sweep.toml:9: unknown key `lrr` in [stage2]; known keys: init, lr"), "{e}");
    let e = error(&format!("{MINIMAL}[stage3]\n"));
    assert!(e.contains("unknown key `stage3` at the top level"), "{e}");
    let e = error(&MINIMAL.replace("\"${DATA}/x\"", "[\"a\", \"b\"]"));
    assert!(e.starts_with("p/sweep.toml:5: [data] root takes one value, not a list"), "{e}");
    let e = error(&MINIMAL.replace("${DATA}", "${NOPE}"));
    assert!(e.contains("[data] root: environment variable NOPE is not set"), "{e}");
    let e = error(&MINIMAL.replace("[1, 2]", "[1, 1]"));
    assert!(e.contains("[data] shots lists 1 twice"), "{e}");
    let e = error(&MINIMAL.replace("[1, 2]", "[]"));
    assert!(e.contains("empty list"), "{e}");
    let e = error(&MINIMAL.replace("[1, 2]", "\"4\""));
    assert!(e.contains("[data] shots must be a whole number, not a string"), "{e}");
    let e = error(&MINIMAL.replace("[1, 2]", "0"));
    assert!(e.contains("[data] shots = 0 must be at least 1"), "{e}");
    let e = error(&MINIMAL.replace("seed = 1\n", ""));
    assert!(e.contains("[data] seed is not set"), "{e}");
    let e = error(&MINIMAL.replace("\"mini\"", "\"huge\""));
    assert!(e.contains("[weights.init] preset = huge is not a model preset"), "{e}");
    let e = error(&MINIMAL.replace("init = { preset = \"mini\" }", "init = { preset = \"mini\", sed = 1 }"));
    assert!(e.contains("unknown key `sed` in [weights.init]"), "{e}");
    let e = error(&MINIMAL.replace("init = { preset = \"mini\" }", ""));
    assert!(e.contains("[weights] needs file"), "{e}");
    let e = error(&format!("{MINIMAL}[select]\nk = [1, \"x\"]\n"));
    assert!(e.contains("[select] k must be a whole number"), "{e}");
    let e = error(&format!("name = [\"a\"]\n{MINIMAL}"));
    assert!(e.contains("`name` takes one value, not a list"), "{e}");
    let e = error("[data\n");
    assert!(e.starts_with("p/sweep.toml:1: not valid TOML"), "{e}");
    let e = error(&MINIMAL.replace("[data]\n", ""));
    assert!(e.starts_with("p/sweep.toml:3: unknown key `dataset` in [weights]"), "{e}");
}
