//! Each stage's settings as one type that owns its defaults, ranges and checks.
//!
//! The stage commands flatten these types into their clap commands, so `--help` shows every
//! default; the pipeline schema (`src/pipeline/schema.rs`) reads the keys, defaults and allowed
//! values of its stage sections off the same types. A default is thus written once, in the clap
//! attribute of its field, and a range once, in the type's [`Key`] list.

mod choice;
pub mod eval;
pub mod full_ft;
pub mod optimizer;
pub mod pretrain;
pub mod select;
pub mod split;
pub mod stage1;
pub mod stage2;

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::data::crop_scale::CropScale;

pub use choice::{choice_names, parse_choice};

/// The range a numeric setting must fall in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range {
    /// Any finite number.
    Any,
    AtLeast(i64),
    /// An integer in [MIN, MAX]: a size that allocates (an image side) has a ceiling.
    Between(i64, i64),
    /// Finite and ≥ 0 (learning rates, λ, weight decay, eps).
    NonNegative,
    /// In [0, 1) (Adam's betas).
    Beta,
    /// Text `MIN,MAX` with 0 < MIN ≤ MAX ≤ 1 (a crop area range).
    CropScale,
}

impl Range {
    /// Why `x` is out of range, if it is. No range holds NaN or an infinity: JSON, which keys
    /// and manifests are written in, has neither (serde_json writes both as `null`, so they
    /// would share a key), and no setting means anything by them.
    pub fn check(self, x: f64) -> Result<(), String> {
        match self {
            _ if !x.is_finite() => Err("must be a finite number".into()),
            Range::AtLeast(min) if x < min as f64 => Err(format!("must be at least {min}")),
            Range::Between(min, max) if x < min as f64 || x > max as f64 => Err(format!("must be in [{min}, {max}]")),
            Range::NonNegative if !(x.is_finite() && x >= 0.0) => Err("must be a finite number ≥ 0".into()),
            Range::Beta if !(0.0..1.0).contains(&x) => Err("must be in [0, 1)".into()),
            _ => Ok(()),
        }
    }

    /// Why the text `s` is out of range, if it is (a setting given as text).
    pub fn check_text(self, s: &str) -> Result<(), String> {
        match self {
            Range::CropScale => s.parse::<CropScale>().map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// One setting: its name (the field's, and the pipeline key), its range, and for an optional
/// setting, the pipeline setting it takes when unset (`data.seed`), as the command takes the
/// matching value from its input (the split's seed).
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub name: &'static str,
    pub range: Range,
    pub follows: Option<&'static str>,
}

pub const fn key(name: &'static str, range: Range) -> Key {
    Key { name, range, follows: None }
}

pub const fn follows(name: &'static str, range: Range, other: &'static str) -> Key {
    Key { name, range, follows: Some(other) }
}

/// A stage's settings: a clap argument group whose field names are the pipeline keys of
/// section [`Settings::SECTION`], serialised under the same names.
pub trait Settings: clap::Args + Serialize + DeserializeOwned + Clone {
    /// The pipeline file section (`stage1`).
    const SECTION: &'static str;

    /// Every setting, in pipeline (and results.csv) order.
    fn keys() -> Vec<Key>;

    /// The settings as a command of their own: what `--help` shows, and where defaults live.
    fn command() -> clap::Command {
        Self::augment_args(clap::Command::new(Self::SECTION).no_binary_name(true))
    }

    /// What the command takes when no flag is given.
    fn defaults() -> Self {
        let matches = Self::command()
            .try_get_matches_from(std::iter::empty::<String>())
            .unwrap_or_else(|e| panic!("[{}] has a setting without a default: {e}", Self::SECTION));
        Self::from_arg_matches(&matches).unwrap_or_else(|e| panic!("[{}] defaults: {e}", Self::SECTION))
    }

    /// The values by key (an unset optional setting is null).
    fn values(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            other => panic!("[{}] settings serialise to {other:?}, not an object", Self::SECTION),
        }
    }

    /// Every set value against its key's range; `name` says how a key is called where the
    /// value came from (`--batch-size` on the command line, `batch_size` in a pipeline file).
    fn check_ranges(&self, name: &dyn Fn(&str) -> String) -> Result<(), String> {
        let values = self.values();
        let defaults = Self::defaults().values();
        for key in Self::keys() {
            match values.get(key.name) {
                Some(Value::Number(n)) => {
                    let x = n.as_f64().unwrap_or(f64::NAN);
                    key.range.check(x).map_err(|why| format!("{} {}: {why}", name(key.name), show(x)))?;
                }
                Some(Value::String(s)) => {
                    key.range.check_text(s).map_err(|why| format!("{} {s}: {why}", name(key.name)))?
                }
                // serde_json writes NaN and ±inf as null; only an optional setting may be null.
                Some(Value::Null) if defaults.get(key.name).is_some_and(|d| !d.is_null()) => {
                    return Err(format!("{}: must be a finite number", name(key.name)));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Ranges, and the combinations a type adds (stage 2: a warm-up shorter than training).
    fn check(&self, name: &dyn Fn(&str) -> String) -> Result<(), String> {
        self.check_ranges(name)
    }

    /// [`Settings::check`] with the command's flag names.
    fn check_flags(&self) -> Result<()> {
        let command = Self::command();
        self.check(&|key| flag(&command, key)).map_err(|e| anyhow!(e))
    }

    /// The flags that give these settings to their command: `--flag=value` per setting (one
    /// argument, so a negative number is never read as a flag; a float as the shortest decimal
    /// that parses back to the same bits), a switch bare when on, an unset optional setting left
    /// out. A batch job runs the command with these, so `parse(to_args(s)) == s` for every
    /// settings type (`settings::tests`): a new setting reaches the job with nothing else to edit.
    fn to_args(&self) -> Vec<String> {
        let command = Self::command();
        let values = self.values();
        Self::keys()
            .iter()
            .filter_map(|key| {
                let long = flag(&command, key.name);
                match values.get(key.name)? {
                    Value::Null | Value::Bool(false) => None,
                    Value::Bool(true) => Some(long),
                    Value::String(s) => Some(format!("{long}={s}")),
                    other => Some(format!("{long}={other}")),
                }
            })
            .collect()
    }

    /// Settings from their flags, as their command reads them.
    fn parse_args(args: &[String]) -> Result<Self> {
        let matches = Self::command().try_get_matches_from(args).map_err(|e| anyhow!("[{}] {e}", Self::SECTION))?;
        Self::from_arg_matches(&matches).map_err(|e| anyhow!("[{}] {e}", Self::SECTION))
    }

    /// Settings from a pipeline grid point's values of this section, by key.
    fn from_values(values: Map<String, Value>) -> Result<Self> {
        serde_json::from_value(Value::Object(values))
            .map_err(|e| anyhow!("[{}] settings do not fit their type: {e}", Self::SECTION))
    }
}

/// clap's parser of every number setting that is a float: a finite number, or the one-line
/// error clap prints. [`Range::check`] holds the same rule for pipeline files; this one stops
/// `--lr nan` before a settings value exists (an unset optional value and NaN would both be
/// `null` to [`Settings::check_ranges`]).
pub fn finite(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|_| "is not a number".to_string())?;
    Range::Any.check(x).map(|()| x)
}

/// The command-line spelling of `key` (`--batch-size`; `--lmbd` for `lambda`).
pub fn flag(command: &clap::Command, key: &str) -> String {
    let long = command.get_arguments().find(|a| a.get_id() == key).and_then(|a| a.get_long());
    format!("--{}", long.map_or_else(|| key.replace('_', "-"), str::to_string))
}

/// A number as it was most likely typed: `-1`, `0.5`, `1e-7`.
fn show(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        return format!("{x}");
    }
    let (plain, exp) = (format!("{x}"), format!("{x:e}"));
    if exp.len() < plain.len() { exp } else { plain }
}

#[cfg(test)]
mod tests;
