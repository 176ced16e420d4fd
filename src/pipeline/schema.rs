//! Every key a pipeline file may hold: its type, whether it may list several values (a grid
//! axis), its default and its range. One table, so the parser, the grid expansion and
//! pipelines/README.md agree (a test checks the README names every key).

use crate::clip::config::PRESETS;
use crate::clip::layers::Precision;
use crate::data::datasets;
use crate::train::select::{SCORE_RULES, ScoreRule, Towers};

use super::value::{Scalar, Ty};

/// What an unset key means.
#[derive(Clone, Copy, Debug)]
pub enum IfUnset {
    /// The file must set it.
    Required,
    Int(i64),
    Float(f64),
    Str(&'static str),
    Bool(bool),
    /// The value of another setting: unset seeds follow `data.seed`, unset λ overrides follow
    /// `stage2.lambda`, as the stage commands default them.
    Follows(&'static str),
    /// The model's input size: the init preset's, else 224 (every imported OpenAI model but
    /// ViT-L/14@336).
    ModelImageSize,
    /// May stay unset (a description, an activation override).
    Absent,
}

/// The range a value must fall in.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    Any,
    AtLeast(i64),
    /// Finite and ≥ 0 (learning rates, λ, weight decay, eps).
    NonNegative,
    /// In [0, 1) (Adam's betas).
    Beta,
    OneOf(&'static [&'static str]),
    Dataset,
    Preset,
    Score,
    Towers,
    Precision,
    /// A folder name (the pipeline's name names `results/<name>/`).
    Name,
}

#[derive(Clone, Copy, Debug)]
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
    pub keys: &'static [KeyDef],
}

const fn key(name: &'static str, ty: Ty, grid: bool, if_unset: IfUnset, check: Check) -> KeyDef {
    KeyDef { name, ty, grid, if_unset, check }
}

const fn table(name: &'static str) -> KeyDef {
    key(name, Ty::Table, false, IfUnset::Absent, Check::Any)
}

use IfUnset::{Absent, Follows, Required};
use Ty::{Bool, Float, Int, Str};

/// AdamW's settings, in both training stages.
macro_rules! optimizer_keys {
    () => {
        [
            key("weight_decay", Float, true, IfUnset::Float(1e-4), Check::NonNegative),
            key("beta1", Float, true, IfUnset::Float(0.9), Check::Beta),
            key("beta2", Float, true, IfUnset::Float(0.999), Check::Beta),
            key("eps", Float, true, IfUnset::Float(1e-8), Check::NonNegative),
            key("amsgrad", Bool, true, IfUnset::Bool(false), Check::Any),
        ]
    };
}

const fn concat<const A: usize, const B: usize, const N: usize>(a: [KeyDef; A], b: [KeyDef; B]) -> [KeyDef; N] {
    assert!(A + B == N);
    let mut out = [table(""); N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// Values of the top-level `method`: what each grid point trains and evaluates.
/// `clip-ast` is stage 1 → select (the `[select]` rule and K) → stage 2; `random-k` the same
/// with K random tensors per block; `full-ft` stage 2 over every block tensor; `zero-shot`
/// evaluates the weights as they are; `linear-probe` fits a classifier on frozen image features.
pub const METHODS: &[&str] = &["clip-ast", "random-k", "full-ft", "zero-shot", "linear-probe"];

const TOP: [KeyDef; 10] = [
    key("name", Str, false, Absent, Check::Name),
    key("description", Str, false, Absent, Check::Any),
    key("method", Str, true, IfUnset::Str("clip-ast"), Check::OneOf(METHODS)),
    table("weights"),
    table("data"),
    table("stage1"),
    table("select"),
    table("stage2"),
    table("eval"),
    table("report"),
];

const WEIGHTS: [KeyDef; 4] = [
    key("file", Str, false, Absent, Check::Any),
    key("activation", Str, false, Absent, Check::OneOf(&["quick_gelu", "gelu"])),
    table("init"),
    table("pretrain"),
];

/// Pretraining a foundation on `[data]`'s dataset (one dataset, the preset's image size).
/// Unset training settings take `clip-ast pretrain`'s defaults.
const WEIGHTS_PRETRAIN: [KeyDef; 9] = [
    key("preset", Str, false, Required, Check::Preset),
    key("init_seed", Int, false, Absent, Check::Any),
    key("shots", Int, false, Required, Check::AtLeast(1)),
    key("seed", Int, false, Absent, Check::AtLeast(0)),
    key("classes", Str, false, Absent, Check::OneOf(&["all", "base", "new"])),
    key("test_per_class", Int, false, Absent, Check::AtLeast(1)),
    key("epochs", Int, false, Absent, Check::AtLeast(1)),
    key("lr", Float, false, Absent, Check::NonNegative),
    key("batch_size", Int, false, Absent, Check::AtLeast(1)),
];

const REPORT: [KeyDef; 1] = [key("title", Str, false, Absent, Check::Any)];

const WEIGHTS_INIT: [KeyDef; 2] =
    [key("preset", Str, false, Required, Check::Preset), key("seed", Int, false, IfUnset::Int(0), Check::Any)];

/// Values of `data.classes`: the three CoOp subsamples, or train on base and test on both.
pub const CLASSES: &[&str] = &["all", "base", "new", "base-to-novel"];

const DATA: [KeyDef; 8] = [
    key("dataset", Str, true, Required, Check::Dataset),
    key("root", Str, false, Required, Check::Any),
    key("shots", Int, true, Required, Check::AtLeast(1)),
    key("seed", Int, true, Required, Check::AtLeast(0)),
    key("classes", Str, true, IfUnset::Str("all"), Check::OneOf(CLASSES)),
    key("image_size", Int, false, IfUnset::ModelImageSize, Check::AtLeast(1)),
    key("split_seed", Int, false, IfUnset::Int(1), Check::Any),
    key("test_per_class", Int, true, Absent, Check::AtLeast(1)),
];

const STAGE1: [KeyDef; 10] = concat(
    [
        key("lr", Float, true, IfUnset::Float(1e-5), Check::NonNegative),
        key("epochs", Int, true, IfUnset::Int(1), Check::AtLeast(1)),
        key("batch_size", Int, true, IfUnset::Int(32), Check::AtLeast(1)),
        key("seed", Int, true, Follows("data.seed"), Check::AtLeast(0)),
        key("precision", Str, true, IfUnset::Str("fp32"), Check::Precision),
    ],
    optimizer_keys!(),
);

const SELECT: [KeyDef; 4] = [
    key("k", Int, true, IfUnset::Int(6), Check::AtLeast(1)),
    key("score", Str, true, IfUnset::Str("inv-sqrt-v"), Check::Score),
    key("towers", Str, true, IfUnset::Str("both"), Check::Towers),
    key("seed", Int, true, Follows("data.seed"), Check::AtLeast(0)),
];

const STAGE2: [KeyDef; 17] = concat(
    [
        key("init", Str, true, IfUnset::Str("pretrained"), Check::OneOf(&["pretrained", "stage1"])),
        key("lr", Float, true, IfUnset::Float(1e-7), Check::NonNegative),
        key("epochs", Int, true, IfUnset::Int(30), Check::AtLeast(1)),
        key("warmup_epochs", Int, true, IfUnset::Int(3), Check::AtLeast(0)),
        key("warmup_lr", Float, true, IfUnset::Float(1e-9), Check::NonNegative),
        key("batch_size", Int, true, IfUnset::Int(32), Check::AtLeast(1)),
        key("lambda", Float, true, IfUnset::Float(1.0), Check::NonNegative),
        key("lambda_img", Float, true, Follows("stage2.lambda"), Check::NonNegative),
        key("lambda_txt", Float, true, Follows("stage2.lambda"), Check::NonNegative),
        key("lambda_kl", Float, true, Follows("stage2.lambda"), Check::NonNegative),
        key("seed", Int, true, Follows("data.seed"), Check::AtLeast(0)),
        key("precision", Str, true, IfUnset::Str("fp32"), Check::Precision),
    ],
    optimizer_keys!(),
);

const EVAL: [KeyDef; 1] = [key("precision", Str, true, IfUnset::Str("fp32"), Check::Precision)];

pub const SECTIONS: &[Section] = &[
    Section { name: "", keys: &TOP },
    Section { name: "weights", keys: &WEIGHTS },
    Section { name: "weights.init", keys: &WEIGHTS_INIT },
    Section { name: "weights.pretrain", keys: &WEIGHTS_PRETRAIN },
    Section { name: "data", keys: &DATA },
    Section { name: "stage1", keys: &STAGE1 },
    Section { name: "select", keys: &SELECT },
    Section { name: "stage2", keys: &STAGE2 },
    Section { name: "eval", keys: &EVAL },
    Section { name: "report", keys: &REPORT },
];

/// The sections whose keys are experiment settings (results.csv columns), in grid order: the
/// first varies slowest.
pub const SETTING_SECTIONS: &[&str] = &["data", "stage1", "select", "stage2", "eval"];

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
    SECTIONS.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no schema section `{name}`"))
}

impl Section {
    pub fn key(&self, name: &str) -> Option<&'static KeyDef> {
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
    pub fn check(self, value: &Scalar) -> Result<(), String> {
        match (self, value) {
            (Check::Any, _) => Ok(()),
            (Check::AtLeast(min), Scalar::Int(v)) if *v < min => Err(format!("must be at least {min}")),
            (Check::NonNegative, v) if !(v.as_f64().is_finite() && v.as_f64() >= 0.0) => {
                Err("must be a finite number ≥ 0".into())
            }
            (Check::Beta, v) if !(0.0..1.0).contains(&v.as_f64()) => Err("must be in [0, 1)".into()),
            (Check::OneOf(options), Scalar::Str(s)) if !options.contains(&s.as_str()) => {
                Err(format!("must be one of {}", options.join(", ")))
            }
            (Check::Dataset, Scalar::Str(s)) => datasets::manifest(s).map(|_| ()).map_err(|_| {
                let names: Vec<String> = datasets::manifests().into_iter().map(|m| m.name).collect();
                format!("is not a dataset; use one of {}", names.join(", "))
            }),
            (Check::Preset, Scalar::Str(s)) if !PRESETS.contains(&s.as_str()) => {
                Err(format!("is not a model preset; use one of {}", PRESETS.join(", ")))
            }
            (Check::Score, Scalar::Str(s)) => {
                s.parse::<ScoreRule>().map(|_| ()).map_err(|_| format!("is not a score rule; use one of {SCORE_RULES}"))
            }
            (Check::Towers, Scalar::Str(s)) => {
                s.parse::<Towers>().map(|_| ()).map_err(|_| "must be both, vision or text".to_string())
            }
            (Check::Precision, Scalar::Str(s)) => {
                s.parse::<Precision>().map(|_| ()).map_err(|_| "must be fp32 or bf16".to_string())
            }
            (Check::Name, Scalar::Str(s))
                if s.is_empty()
                    || s.starts_with('.')
                    || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
            {
                Err("names the results folder: use letters, digits, `-`, `_` and `.`".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(full: &str) -> &'static KeyDef {
        let (section_name, key_name) = full.rsplit_once('.').unwrap_or(("", full));
        section(section_name).key(key_name).unwrap_or_else(|| panic!("no schema key `{full}`"))
    }

    #[test]
    fn every_section_is_reachable_and_follows_point_at_keys() {
        for s in SECTIONS {
            if !s.name.is_empty() {
                let (parent, last) = s.name.rsplit_once('.').unwrap_or(("", s.name));
                assert_eq!(section(parent).key(last).map(|k| k.ty), Some(Ty::Table), "{}", s.name);
            }
            for k in s.keys {
                if let IfUnset::Follows(other) = k.if_unset {
                    assert_eq!(lookup(other).ty, k.ty, "{}.{}", s.name, k.name);
                }
                assert!(!(k.ty == Ty::Table && k.grid));
            }
        }
    }

    #[test]
    fn checks_name_the_range() {
        assert!(Check::AtLeast(1).check(&Scalar::Int(0)).unwrap_err().contains("at least 1"));
        assert!(Check::NonNegative.check(&Scalar::Float(f64::NAN)).is_err());
        assert!(Check::Beta.check(&Scalar::Float(1.0)).is_err());
        assert!(Check::Score.check(&Scalar::Str("big".into())).unwrap_err().contains("inv-sqrt-v"));
        assert!(Check::Dataset.check(&Scalar::Str("cifar".into())).unwrap_err().contains("caltech101"));
        assert!(Check::Name.check(&Scalar::Str("a/b".into())).is_err());
        Check::Dataset.check(&Scalar::Str("Caltech101".into())).unwrap();
        Check::Name.check(&Scalar::Str("few-shot-11".into())).unwrap();
    }
}
