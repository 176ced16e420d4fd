//! One setting's value as a pipeline file gives it, and as results.csv prints it.

use std::fmt;

/// The TOML types a setting can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Int,
    Float,
    Str,
    Bool,
    /// A sub-table (`[stage2]`, `init = { ... }`), not a value.
    Table,
}

impl Ty {
    pub fn describe(self) -> &'static str {
        match self {
            Ty::Int => "a whole number",
            Ty::Float => "a number",
            Ty::Str => "a string",
            Ty::Bool => "true or false",
            Ty::Table => "a table",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

impl Scalar {
    pub fn as_i64(&self) -> i64 {
        match self {
            Scalar::Int(v) => *v,
            other => panic!("setting {other} is not a whole number; the schema says it is"),
        }
    }

    pub fn as_f64(&self) -> f64 {
        match self {
            Scalar::Float(v) => *v,
            Scalar::Int(v) => *v as f64,
            other => panic!("setting {other} is not a number; the schema says it is"),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Scalar::Str(v) => v,
            other => panic!("setting {other} is not a string; the schema says it is"),
        }
    }

    pub fn ty(&self) -> Ty {
        match self {
            Scalar::Int(_) => Ty::Int,
            Scalar::Float(_) => Ty::Float,
            Scalar::Str(_) => Ty::Str,
            Scalar::Bool(_) => Ty::Bool,
        }
    }

    /// A settings type's serialised value (`src/settings/`): a float field serialises with a
    /// fraction, an integer one without.
    pub fn from_json(value: &serde_json::Value) -> Option<Scalar> {
        use serde_json::Value;
        Some(match value {
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) if n.is_f64() => Scalar::Float(n.as_f64()?),
            Value::Number(n) => Scalar::Int(n.as_i64()?),
            Value::String(s) => Scalar::Str(s.clone()),
            _ => return None,
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Int(v) => (*v).into(),
            Scalar::Float(v) => (*v).into(),
            Scalar::Str(v) => v.as_str().into(),
            Scalar::Bool(v) => (*v).into(),
        }
    }

    pub fn as_bool(&self) -> bool {
        match self {
            Scalar::Bool(v) => *v,
            other => panic!("setting {other} is not a boolean; the schema says it is"),
        }
    }
}

/// Floats print in whichever of plain or exponent notation is shorter (`0.5`, `1e-7`), both of
/// which parse back to the same double, so results.csv reads like the pipeline file.
impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::Float(v) => {
                let plain = format!("{v}");
                let exp = format!("{v:e}");
                f.write_str(if exp.len() < plain.len() { &exp } else { &plain })
            }
            Scalar::Str(v) => f.write_str(v),
            Scalar::Bool(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_short_and_round_trip() {
        for (x, text) in [(1e-7, "1e-7"), (0.5, "0.5"), (100.0, "100"), (5e-8, "5e-8"), (2.5, "2.5"), (0.0, "0")] {
            let shown = Scalar::Float(x).to_string();
            assert_eq!(shown, text);
            assert_eq!(shown.parse::<f64>().unwrap(), x);
        }
    }
}
