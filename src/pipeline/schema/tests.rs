use super::*;

fn lookup(full: &str) -> &'static KeyDef {
    let (section_name, key_name) = full.rsplit_once('.').unwrap_or(("", full));
    section(section_name).key(key_name).unwrap_or_else(|| panic!("no schema key `{full}`"))
}

#[test]
fn every_section_is_reachable_and_follows_point_at_keys() {
    for s in all() {
        if !s.name.is_empty() {
            let (parent, last) = s.name.rsplit_once('.').unwrap_or(("", s.name));
            assert_eq!(section(parent).key(last).map(|k| k.ty), Some(Ty::Table), "{}", s.name);
        }
        for k in &s.keys {
            if let IfUnset::Follows(other) = k.if_unset {
                assert_ne!(lookup(other).ty, Ty::Table, "{}.{}", s.name, k.name);
            }
            assert!(!(k.ty == Ty::Table && k.grid));
        }
    }
}

#[test]
fn checks_name_the_range() {
    let at_least = Check::Range(Range::AtLeast(1));
    assert!(at_least.check(&Scalar::Int(0)).unwrap_err().contains("at least 1"));
    assert!(Check::Range(Range::NonNegative).check(&Scalar::Float(f64::NAN)).is_err());
    assert!(Check::Range(Range::Beta).check(&Scalar::Float(1.0)).is_err());
    let score = &lookup("select.score").check;
    assert!(score.check(&Scalar::Str("big".into())).unwrap_err().contains("inv-sqrt-v, sqrt-v, update"));
    assert!(lookup("stage2.init").check.check(&Scalar::Str("stage3".into())).unwrap_err().contains("pretrained"));
    assert!(lookup("method").check.check(&Scalar::Str("clip".into())).unwrap_err().contains("linear-probe"));
    assert!(Check::Dataset.check(&Scalar::Str("cifar".into())).unwrap_err().contains("caltech101"));
    assert!(Check::Name.check(&Scalar::Str("a/b".into())).is_err());
    Check::Dataset.check(&Scalar::Str("Caltech101".into())).unwrap();
    Check::Name.check(&Scalar::Str("few-shot-11".into())).unwrap();
}

/// The stage sections hold the keys results.csv has always had, in its column order.
#[test]
fn stage_sections_keep_their_keys_and_order() {
    let names = |s: &str| section(s).key_names().join(" ");
    assert_eq!(
        names("stage1"),
        "lr epochs batch_size seed precision weight_decay beta1 beta2 eps amsgrad min_steps crop_scale"
    );
    assert_eq!(names("select"), "k score towers seed");
    assert_eq!(
        names("stage2"),
        "init lr epochs warmup_epochs warmup_lr batch_size lambda lambda_img lambda_txt lambda_kl seed precision weight_decay beta1 beta2 eps amsgrad crop_scale"
    );
    assert_eq!(names("eval"), "precision targets");
    assert_eq!(names("eval.targets"), "dataset root test_per_class rendering");
    assert_eq!(lookup("stage2.lambda_kl").ty, Ty::Float);
    assert_eq!(lookup("select.seed").ty, Ty::Int);
    assert_eq!(lookup("stage1.amsgrad").ty, Ty::Bool);
    assert_eq!(lookup("stage2.amsgrad").check, Check::Range(Range::Any), "a flag is not a choice");
}

/// Each stage section's default is its command's: compared with the default clap shows in
/// `--help` (read back as the key's type), not with what the schema derived it from.
#[test]
fn pipeline_defaults_are_the_command_defaults() {
    use crate::settings::Settings;
    fn compare<S: Settings>(section_name: &str) {
        let command = S::command();
        for k in &section(section_name).keys {
            let Some(arg) = command.get_arguments().find(|a| a.get_id() == k.name) else { continue };
            let shown: Vec<String> =
                arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            match &k.if_unset {
                IfUnset::Value(value) => {
                    let [shown] = shown.as_slice() else { panic!("{section_name}.{}: no command default", k.name) };
                    let same = match value {
                        Scalar::Int(v) => shown.parse::<i64>() == Ok(*v),
                        Scalar::Float(v) => shown.parse::<f64>() == Ok(*v),
                        Scalar::Str(v) => shown == v,
                        Scalar::Bool(v) => shown.parse::<bool>() == Ok(*v),
                    };
                    assert!(same, "{section_name}.{} = {value} but the command's default is {shown}", k.name);
                }
                IfUnset::Follows(_) | IfUnset::Absent => {
                    assert!(shown.is_empty(), "{section_name}.{} is unset, the command has a default", k.name)
                }
                // The model's: `clip-ast split`'s default for an imported file (grid.rs).
                IfUnset::ModelImageSize => {}
                other => panic!("{section_name}.{}: {other:?}", k.name),
            }
        }
    }
    compare::<crate::settings::stage1::Stage1Settings>("stage1");
    compare::<crate::settings::select::SelectSettings>("select");
    compare::<crate::settings::stage2::Stage2Settings>("stage2");
    compare::<crate::settings::eval::EvalSettings>("eval");
    compare::<crate::settings::full_ft::FullFtSettings>("full-ft");
    compare::<crate::settings::pretrain::PretrainSettings>("weights.pretrain");
    compare::<crate::settings::split::SplitSettings>("data");
    let subsample = crate::settings::split::SplitSettings::defaults().subsample;
    let classes = &lookup("data.classes").if_unset;
    assert_eq!(classes, &IfUnset::Value(Scalar::Str(subsample.as_str().into())), "split --subsample");
}
