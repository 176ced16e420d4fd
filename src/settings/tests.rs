use clap::ValueEnum;
use serde::Serialize;

use super::eval::EvalSettings;
use super::full_ft::FullFtSettings;
use super::pretrain::PretrainSettings;
use super::select::SelectSettings;
use super::split::SplitSettings;
use super::stage1::Stage1Settings;
use super::stage2::Init;
use super::stage2::Stage2Settings;
use super::*;
use crate::clip::config::Activation;
use crate::clip::layers::Precision;
use crate::data::subsample::Subsample;
use crate::train::select::{ScoreRule, Towers};

/// Every key names a flag of the type's command and every flag is a key, each once.
fn keys_are_the_flags<S: Settings>() {
    let mut keys: Vec<&str> = S::keys().iter().map(|k| k.name).collect();
    let command = S::command();
    let mut flags: Vec<&str> = command.get_arguments().map(|a| a.get_id().as_str()).collect();
    keys.sort_unstable();
    flags.sort_unstable();
    assert_eq!(keys, flags, "[{}]", S::SECTION);
    let values = S::defaults().values();
    for key in S::keys() {
        assert!(values.contains_key(key.name), "[{}] {} is not serialised under its name", S::SECTION, key.name);
        if key.follows.is_some() {
            assert!(
                values[key.name].is_null(),
                "[{}] {} follows another setting: no default of its own",
                S::SECTION,
                key.name
            );
        }
    }
}

/// What every settings type must hold: its keys are its flags, and its command line
/// ([`Settings::to_args`]) parses back to it.
fn check_type<S: Settings + PartialEq + std::fmt::Debug>() {
    keys_are_the_flags::<S>();
    round_trip::<S>();
}

#[test]
fn every_settings_type_lists_its_flags_as_keys_and_renders_them() {
    check_type::<Stage1Settings>();
    check_type::<SelectSettings>();
    check_type::<Stage2Settings>();
    check_type::<EvalSettings>();
    check_type::<FullFtSettings>();
    check_type::<PretrainSettings>();
    check_type::<SplitSettings>();
}

/// What the command line accepts is what manifests and pipeline files hold.
fn names_agree<T: ValueEnum + Serialize>() {
    for variant in T::value_variants() {
        let cli = variant.to_possible_value().unwrap().get_name().to_string();
        assert_eq!(serde_json::to_value(variant).unwrap(), serde_json::Value::String(cli));
    }
}

#[test]
fn choices_have_one_name_on_the_command_line_and_in_files() {
    names_agree::<ScoreRule>();
    names_agree::<Towers>();
    names_agree::<Precision>();
    names_agree::<Init>();
    names_agree::<Activation>();
    names_agree::<Subsample>();
    assert_eq!(choice_names::<Activation>(), ["quick_gelu", "gelu"]);
    assert_eq!(parse_choice::<Activation>("quick-gelu"), Ok(Activation::QuickGelu), "the alias");
    let e = parse_choice::<ScoreRule>("biggest").unwrap_err();
    assert_eq!(e, "is not one of inv-sqrt-v, sqrt-v, update, weight-delta, random");
}

#[test]
fn bad_values_name_the_flag_the_value_and_the_range() {
    let parse = |args: &[&str]| {
        let matches = Stage2Settings::command().try_get_matches_from(args).unwrap();
        <Stage2Settings as clap::FromArgMatches>::from_arg_matches(&matches).unwrap()
    };
    let e = parse(&["--lmbd", "-1"]).check_flags().unwrap_err().to_string();
    assert_eq!(e, "--lmbd -1: must be a finite number ≥ 0");
    let e = parse(&["--beta2", "1"]).check_flags().unwrap_err().to_string();
    assert_eq!(e, "--beta2 1: must be in [0, 1)");
    let e = parse(&["--batch-size", "0"]).check_flags().unwrap_err().to_string();
    assert_eq!(e, "--batch-size 0: must be at least 1");
    let e = parse(&["--lambda-kl", "-0.5"]).check_flags().unwrap_err().to_string();
    assert_eq!(e, "--lambda-kl -0.5: must be a finite number ≥ 0");
    let e = parse(&["--epochs", "3", "--warmup-epochs", "3"]).check_flags().unwrap_err().to_string();
    assert!(e.starts_with("--warmup-epochs 3 must be less than --epochs 3"), "{e}");
    assert_eq!(parse(&["--lambda", "0.5"]).lambda, 0.5, "--lambda is --lmbd");
    parse(&[]).check_flags().unwrap();
}

#[test]
fn params_take_the_split_seed_only_when_none_is_given() {
    let mut s = Stage1Settings::defaults();
    assert_eq!(s.params(7).unwrap().seed, 7);
    s.seed = Some(3);
    assert_eq!(s.params(7).unwrap().seed, 3);
    let mut s = Stage2Settings::defaults();
    s.lambda = 2.0;
    s.lambda_kl = Some(0.0);
    let p = s.params(1).unwrap();
    assert_eq!((p.lambdas.image_l1, p.lambdas.text_l1, p.lambdas.kl), (2.0, 2.0, 0.0));
    assert_eq!(p.lr_at(p.schedule.warmup_epochs), s.lr, "the peak is --lr");
    assert_eq!(SelectSettings::defaults().request(5).seed, 5);
}

#[test]
fn crop_scale_and_min_steps_are_checked_on_the_command_line_and_in_pipelines() {
    let e = Stage1Settings::command().try_get_matches_from(["--crop-scale", "0.6,0.5"]).unwrap_err().to_string();
    assert!(e.contains("'0.6,0.5'") && e.contains("must satisfy 0 < MIN ≤ MAX ≤ 1"), "{e}");
    let e = PretrainSettings::command().try_get_matches_from(["--crop-scale", "1"]).unwrap_err().to_string();
    assert!(e.contains("must be two numbers MIN,MAX"), "{e}");
    let mut s = Stage1Settings::defaults();
    s.min_steps = 0;
    assert_eq!(s.check_flags().unwrap_err().to_string(), "--min-steps 0: must be at least 1");
    assert_eq!(PretrainSettings::defaults().params().unwrap(), crate::train::pretrain::PretrainParams::default());

    let pipeline = |stage2: &str| {
        let text = format!(
            "[weights]\ninit = {{ preset = \"mini\" }}\n[data]\ndataset = \"caltech101\"\nroot = \"/d\"\nshots = 1\nseed = 1\n[stage2]\n{stage2}\n"
        );
        crate::pipeline::file::parse(&text, std::path::Path::new("p.toml"), &|_| None)
    };
    let e = pipeline("crop_scale = \"0,1\"").unwrap_err().to_string();
    assert_eq!(e, "p.toml:9: [stage2] crop_scale = 0,1 must satisfy 0 < MIN ≤ MAX ≤ 1");
    let e = pipeline("crop_scale = [0.5, 1.0]").unwrap_err().to_string();
    assert!(e.starts_with("p.toml:9: [stage2] crop_scale must be a string"), "{e}");
    let p = pipeline("crop_scale = [\"0.08,1\", \"0.5,1\"]").unwrap();
    assert_eq!(p.values["stage2.crop_scale"].len(), 2, "a grid axis of ranges");
}

/// No float setting takes NaN or an infinity, on the command line or set in code: JSON writes
/// both as null, so `--lr nan` and `--lr inf` would share a key.
fn non_finite_is_refused<S: Settings + std::fmt::Debug>() {
    let command = S::command();
    let defaults = S::defaults().values();
    for key in S::keys() {
        let is_float = matches!(defaults.get(key.name), Some(Value::Number(n)) if n.is_f64());
        let optional_float = key.follows.is_some() && key.range == Range::NonNegative;
        if !(is_float || optional_float) {
            continue;
        }
        let flag = flag(&command, key.name);
        for bad in ["nan", "inf", "-inf", "NaN", "1e400"] {
            let e = S::command().try_get_matches_from([flag.as_str(), bad]).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("must be a finite number"), "[{}] {flag} {bad}: {e}", S::SECTION);
        }
    }
    assert_eq!(finite(" 1e-5 "), Ok(1e-5));
    assert_eq!(finite("x"), Err("is not a number".to_string()));
}

#[test]
fn float_settings_refuse_nan_and_infinities() {
    non_finite_is_refused::<Stage1Settings>();
    non_finite_is_refused::<Stage2Settings>();
    non_finite_is_refused::<PretrainSettings>();
    non_finite_is_refused::<FullFtSettings>();
    for range in [Range::Any, Range::AtLeast(0), Range::Between(1, 9), Range::NonNegative, Range::Beta] {
        assert_eq!(range.check(f64::NAN), Err("must be a finite number".into()), "{range:?}");
        assert!(range.check(f64::INFINITY).is_err() && range.check(f64::NEG_INFINITY).is_err(), "{range:?}");
    }
    // Set in code rather than parsed: the range check sees NaN (serialised as null) too.
    let mut s = Stage1Settings::defaults();
    s.optimizer.eps = f64::NAN;
    assert_eq!(s.check_flags().unwrap_err().to_string(), "--eps: must be a finite number");
    let mut s = Stage2Settings::defaults();
    s.lr = f64::INFINITY;
    assert_eq!(s.check_flags().unwrap_err().to_string(), "--lr: must be a finite number");
    assert_eq!(Range::Between(1, 1024).check(100000.0), Err("must be in [1, 1024]".into()));
    let mut s = SplitSettings::defaults();
    s.image_size = 100_000;
    assert_eq!(s.check_flags().unwrap_err().to_string(), "--image-size 100000: must be in [1, 1024]");
}

/// Every setting of `S` moved off its default, each in a way its type accepts: a number up, a
/// choice to another of its names, a switch flipped, an unset optional setting set.
fn all_changed<S: Settings>() -> S {
    let command = S::command();
    let mut values = S::defaults().values();
    for key in S::keys() {
        let arg = command.get_arguments().find(|a| a.get_id() == key.name).expect("keys are the flags");
        let changed = match &values[key.name] {
            Value::Null => serde_json::json!(3),
            Value::Bool(b) => Value::Bool(!b),
            Value::Number(n) if n.is_f64() => serde_json::json!(n.as_f64().unwrap() * 0.5 + 0.0625),
            Value::Number(n) => serde_json::json!(n.as_i64().unwrap() + 2),
            Value::String(s) if key.range == Range::CropScale => Value::String(s.replace('1', "0.75")),
            Value::String(s) => {
                let other = arg.get_possible_values().into_iter().map(|p| p.get_name().to_string()).find(|p| p != s);
                Value::String(other.unwrap_or_else(|| panic!("[{}] {} has one choice", S::SECTION, key.name)))
            }
            other => panic!("[{}] {} is {other}", S::SECTION, key.name),
        };
        values.insert(key.name.to_string(), changed);
    }
    S::from_values(values).unwrap()
}

/// `parse(to_args(s)) == s` at the defaults and with every setting changed, and each changed
/// setting shows in the flags: the batch job's command line carries every setting.
fn round_trip<S: Settings + PartialEq + std::fmt::Debug>() {
    let defaults = S::defaults();
    assert_eq!(S::parse_args(&defaults.to_args()).unwrap(), defaults, "[{}] defaults", S::SECTION);
    let changed = all_changed::<S>();
    let (new, old) = (changed.values(), defaults.values());
    for key in S::keys() {
        assert_ne!(new[key.name], old[key.name], "[{}] {} did not change", S::SECTION, key.name);
    }
    let args = changed.to_args();
    assert_eq!(S::parse_args(&args).unwrap(), changed, "[{}] {args:?}", S::SECTION);
}

#[test]
fn a_negative_or_tiny_number_is_one_argument() {
    let s = Stage1Settings { lr: 1e-7, ..Stage1Settings::defaults() };
    assert!(s.to_args().contains(&"--lr=1e-7".to_string()), "{:?}", s.to_args());
    let s = SplitSettings { split_seed: -3, ..SplitSettings::defaults() };
    assert_eq!(SplitSettings::parse_args(&s.to_args()).unwrap(), s);
}
