//! Every key a pipeline file may hold: its type, whether it may list several values (a grid
//! axis), its default and its range. The stage sections are made from the stage settings types
//! (`src/settings/`), which the stage commands flatten too, so a pipeline default is the
//! command's. One table, so the parser, the grid expansion and pipelines/README.md agree (a test
//! checks the README names every key).

use std::sync::LazyLock;

use serde_json::Value;

use super::method::Method;
use super::value::{Scalar, Ty};
use crate::clip::config::{Activation, PRESETS};
use crate::data::datasets;
use crate::data::pool::Pool;
use crate::data::rendering::Rendering;
use crate::data::subsample::Subsample;
use crate::settings::eval::EvalSettings;
use crate::settings::full_ft::FullFtSettings;
use crate::settings::pretrain::PretrainSettings;
use crate::settings::select::SelectSettings;
use crate::settings::split::{self, SplitSettings};
use crate::settings::stage1::Stage1Settings;
use crate::settings::stage2::Stage2Settings;
use crate::settings::{Range, Settings, choice_names};

/// What an unset key means.
#[derive(Clone, Debug, PartialEq)]
pub enum IfUnset {
    /// The file must set it.
    Required,
    /// The stage command's default.
    Value(Scalar),
    /// The value of another setting: unset seeds follow `data.seed`, unset λ overrides follow
    /// `stage2.lambda`, as the stage commands default them.
    Follows(&'static str),
    /// The model's input size: the init preset's, else `clip-ast split`'s default (every
    /// imported OpenAI model but ViT-L/14@336).
    ModelImageSize,
    /// May stay unset (a description, an activation override).
    Absent,
}

/// The range a value must fall in.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Any,
    Range(Range),
    OneOf(Vec<String>),
    Dataset,
    Preset,
    /// A folder name (the pipeline's name names `results/<name>/`).
    Name,
}

#[derive(Clone, Debug)]
pub struct KeyDef {
    pub name: &'static str,
    pub ty: Ty,
    /// May be a list: one grid axis.
    pub grid: bool,
    pub if_unset: IfUnset,
    pub check: Check,
}

pub struct Section {
    /// "" for the file's top level, "weights.init" for the inline table in `[weights]`.
    pub name: &'static str,
    pub keys: Vec<KeyDef>,
}

fn key(name: &'static str, ty: Ty, grid: bool, if_unset: IfUnset, check: Check) -> KeyDef {
    KeyDef { name, ty, grid, if_unset, check }
}

fn table(name: &'static str) -> KeyDef {
    key(name, Ty::Table, false, IfUnset::Absent, Check::Any)
}

fn one_of(names: Vec<String>) -> Check {
    Check::OneOf(names)
}

/// The keys of a settings type: its fields in its order, each defaulting to the command's
/// default (or following another setting), checked against its range or its enum's values.
fn settings_keys<S: Settings>(grid: bool) -> Vec<KeyDef> {
    let defaults = S::defaults().values();
    let command = S::command();
    S::keys()
        .into_iter()
        .map(|k| {
            let arg = command.get_arguments().find(|a| a.get_id() == k.name);
            let arg = arg.unwrap_or_else(|| panic!("[{}] {} is not a flag of its command", S::SECTION, k.name));
            let choices: Vec<String> = arg.get_possible_values().iter().map(|p| p.get_name().to_string()).collect();
            let is_flag = matches!(defaults.get(k.name), Some(Value::Bool(_)));
            let check = if choices.is_empty() || is_flag { Check::Range(k.range) } else { one_of(choices) };
            let (ty, if_unset) = match (k.follows, defaults.get(k.name)) {
                // The type is the followed setting's, filled in by `sections`.
                (Some(other), _) => (Ty::Table, IfUnset::Follows(other)),
                (None, Some(Value::Null) | None) => (Ty::Int, IfUnset::Absent),
                (None, Some(v)) => {
                    let value =
                        Scalar::from_json(v).unwrap_or_else(|| panic!("[{}] {} defaults to {v}", S::SECTION, k.name));
                    (value.ty(), IfUnset::Value(value))
                }
            };
            key(k.name, ty, grid, if_unset, check)
        })
        .collect()
}

/// `rendering` and `pool` of a split (`[data]`'s, or the pretraining split's), `clip-ast split`'s
/// defaults.
fn rendering_key(grid: bool) -> KeyDef {
    let default = SplitSettings::defaults().rendering.as_str();
    key("rendering", Ty::Str, grid, IfUnset::Value(Scalar::Str(default.into())), one_of(choice_names::<Rendering>()))
}

fn pool_key(grid: bool) -> KeyDef {
    let default = SplitSettings::defaults().pool.as_str();
    key("pool", Ty::Str, grid, IfUnset::Value(Scalar::Str(default.into())), one_of(choice_names::<Pool>()))
}

/// The range `clip-ast split` checks a setting of [`SplitSettings`] against: one definition
/// for the command and every split section of a file.
fn split_range(name: &str) -> Check {
    let key = SplitSettings::keys().into_iter().find(|k| k.name == name);
    Check::Range(key.unwrap_or_else(|| panic!("`{name}` is not a split setting")).range)
}

fn sections() -> Vec<Section> {
    use IfUnset::{Absent, Required};
    use Ty::{Int, Str};
    let split = SplitSettings::defaults();
    let top = vec![
        key("name", Str, false, Absent, Check::Name),
        key("description", Str, false, Absent, Check::Any),
        key("method", Str, true, IfUnset::Value(Scalar::Str("clip-ast".into())), one_of(choice_names::<Method>())),
        table("weights"),
        table("data"),
        table("stage1"),
        table("select"),
        table("stage2"),
        table("full-ft"),
        table("eval"),
        table("report"),
        table("choose"),
        table("export"),
        // `[[variant]]`: an array of tables, read by `file::variant`.
        table("variant"),
    ];
    let weights = vec![
        key("file", Str, false, Absent, Check::Any),
        key("activation", Str, false, Absent, one_of(choice_names::<Activation>())),
        table("init"),
        table("pretrain"),
    ];
    let weights_init = vec![
        key("preset", Str, false, Required, Check::Preset),
        key("seed", Int, false, IfUnset::Value(Scalar::Int(0)), Check::Any),
    ];
    // Pretraining a foundation on `[data]`'s dataset (one dataset, the preset's image size):
    // the split's settings, then `clip-ast pretrain`'s.
    let mut weights_pretrain = vec![
        key("preset", Str, false, Required, Check::Preset),
        key("shots", Int, false, Required, Check::Range(split::SHOTS)),
        key("classes", Str, false, IfUnset::Value(Scalar::Str("base".into())), one_of(choice_names::<Subsample>())),
        key("test_per_class", Int, false, Absent, split_range("test_per_class")),
        rendering_key(false),
        pool_key(false),
    ];
    weights_pretrain.extend(settings_keys::<PretrainSettings>(false));
    let classes = CLASSES.map(String::from).to_vec();
    let data = vec![
        key("dataset", Str, true, Required, Check::Dataset),
        key("root", Str, false, Required, Check::Any),
        key("shots", Int, true, Required, Check::Range(split::SHOTS)),
        key("seed", Int, true, Required, Check::Range(split::SEED)),
        key("classes", Str, true, IfUnset::Value(Scalar::Str(split.subsample.as_str().into())), one_of(classes)),
        key("image_size", Int, false, IfUnset::ModelImageSize, split_range("image_size")),
        key("split_seed", Int, false, IfUnset::Value(Scalar::Int(split.split_seed)), split_range("split_seed")),
        key("test_per_class", Int, true, Absent, split_range("test_per_class")),
        rendering_key(true),
        pool_key(true),
    ];
    // `targets`: datasets each trained model is also evaluated on (`targets.rs`), a list of
    // tables read by `file.rs`, never a grid axis.
    let mut eval = settings_keys::<EvalSettings>(true);
    eval.push(table("targets"));
    let eval_targets = vec![
        key("dataset", Str, false, Required, Check::Dataset),
        key("root", Str, false, Required, Check::Any),
        key("test_per_class", Int, false, Absent, split_range("test_per_class")),
        rendering_key(false),
    ];
    let mut sections = vec![
        Section { name: "", keys: top },
        Section { name: "weights", keys: weights },
        Section { name: "weights.init", keys: weights_init },
        Section { name: "weights.pretrain", keys: weights_pretrain },
        Section { name: "data", keys: data },
        Section { name: "stage1", keys: settings_keys::<Stage1Settings>(true) },
        Section { name: "select", keys: settings_keys::<SelectSettings>(true) },
        Section { name: "stage2", keys: settings_keys::<Stage2Settings>(true) },
        Section { name: "full-ft", keys: settings_keys::<FullFtSettings>(true) },
        Section { name: "eval", keys: eval },
        Section { name: "eval.targets", keys: eval_targets },
        Section {
            name: "report",
            keys: vec![
                key("title", Str, false, Absent, Check::Any),
                // A method or a variant: checked against the file by `compare::baseline`.
                key("baseline", Str, false, Absent, Check::Any),
                // Checked against the grid's labels and parsed by `report_input::check`.
                key("subject", Str, false, Absent, Check::Any),
                key("zero_shot_band", Str, false, Absent, Check::Any),
                // A list of tables read by `file::claims`, each checked against `[report.claims]`.
                table("claims"),
            ],
        },
        Section {
            name: "report.claims",
            keys: vec![
                key("claim", Str, false, Required, Check::Any),
                // A label of the runs: checked against the grid by `report_input::check`.
                key("other", Str, false, Required, Check::Any),
                key("metric", Str, false, Required, one_of(crate::report::verdict::METRICS.map(String::from).to_vec())),
                key("classes", Str, false, Absent, one_of(CLASSES.map(String::from).to_vec())),
            ],
        },
        // Checked against the metrics and the grid by `choose::Choose::of`.
        Section {
            name: "choose",
            keys: vec![
                key("by", Str, false, Required, Check::Any),
                key("among", Str, true, Required, Check::Any),
                // `chosen`: only the chosen runs are scored on test (`test_chosen`).
                key(
                    "test",
                    Str,
                    false,
                    IfUnset::Value(Scalar::Str("all".into())),
                    one_of(vec!["all".into(), "chosen".into()]),
                ),
            ],
        },
        // `[export]`: the chosen models as folders open_clip and transformers load (`export_chosen`).
        Section {
            name: "export",
            keys: vec![
                key("chosen", Ty::Bool, false, IfUnset::Value(Scalar::Bool(false)), Check::Any),
                key(
                    "format",
                    Str,
                    false,
                    IfUnset::Value(Scalar::Str("both".into())),
                    one_of(EXPORT_FORMATS.map(String::from).to_vec()),
                ),
            ],
        },
    ];
    // A following key has the type of the key it follows.
    let types: Vec<(String, Ty)> =
        sections.iter().flat_map(|s| s.keys.iter().map(|k| (full_name(s.name, k.name), k.ty))).collect();
    for key in sections.iter_mut().flat_map(|s| s.keys.iter_mut()) {
        if let IfUnset::Follows(other) = key.if_unset {
            key.ty = types.iter().find(|(name, _)| name == other).map(|(_, ty)| *ty).expect("followed key exists");
        }
    }
    sections
}

static SECTIONS: LazyLock<Vec<Section>> = LazyLock::new(sections);

/// Every section, the top level first.
pub fn all() -> &'static [Section] {
    &SECTIONS
}

/// Values of `export.format`, as `clip-ast export --format` names them.
pub const EXPORT_FORMATS: [&str; 3] = ["both", "open_clip", "hf"];

/// Values of `data.classes`: the three CoOp subsamples, or train on base and test on both.
pub const CLASSES: [&str; 4] = ["all", "base", "new", "base-to-novel"];

/// The sections whose keys are experiment settings (results.csv columns), in grid order: the
/// first varies slowest.
pub const SETTING_SECTIONS: &[&str] = &["data", "stage1", "select", "stage2", "full-ft", "eval"];

/// Every setting key as `section.key` with its definition, in grid order: the top-level
/// `method` first (so results.csv groups by method), then the setting sections.
pub fn setting_keys() -> Vec<(String, &'static KeyDef)> {
    let method = section("").key("method").expect("the top level has `method`");
    std::iter::once(("method".to_string(), method))
        .chain(
            SETTING_SECTIONS.iter().flat_map(|s| {
                section(s).keys.iter().filter(|k| k.ty != Ty::Table).map(move |k| (full_name(s, k.name), k))
            }),
        )
        .collect()
}

pub fn section(name: &str) -> &'static Section {
    all().iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no schema section `{name}`"))
}

impl Section {
    pub fn key(&self, name: &str) -> Option<&KeyDef> {
        self.keys.iter().find(|k| k.name == name)
    }

    pub fn key_names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }
}

/// `section.key`, or `key` at the top level.
pub fn full_name(section: &str, key: &str) -> String {
    if section.is_empty() { key.to_string() } else { format!("{section}.{key}") }
}

impl Check {
    /// Why `value` is out of range, if it is.
    pub fn check(&self, value: &Scalar) -> Result<(), String> {
        match (self, value) {
            (Check::Range(range), Scalar::Int(_) | Scalar::Float(_)) => range.check(value.as_f64()),
            (Check::Range(range), Scalar::Str(s)) => range.check_text(s),
            (Check::OneOf(options), Scalar::Str(s)) if !options.contains(s) => {
                Err(format!("must be one of {}", options.join(", ")))
            }
            (Check::Dataset, Scalar::Str(s)) => datasets::manifest(s).map(|_| ()).map_err(|_| {
                let names: Vec<String> = datasets::manifests().into_iter().map(|m| m.name).collect();
                format!("is not a dataset; use one of {}", names.join(", "))
            }),
            (Check::Preset, Scalar::Str(s)) if !PRESETS.contains(&s.as_str()) => {
                Err(format!("is not a model preset; use one of {}", PRESETS.join(", ")))
            }
            (Check::Name, Scalar::Str(s))
                if s.is_empty()
                    || s.starts_with('.')
                    || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
            {
                Err("is not a name: use letters, digits, `-`, `_` and `.`, not a leading `.`".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
