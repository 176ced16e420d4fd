//! `ArtifactKey`: blake3 of the canonical JSON of what determines an artifact's content.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// 64 lowercase hex digits. Serialised as that string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArtifactKey(String);

impl ArtifactKey {
    /// The key of `{kind, schema_version, params, inputs}`. Anything that cannot change the
    /// output (device, threads, verbosity) must stay out of `params`, or identical experiments
    /// would get different keys and never share a cache entry.
    pub fn compute(
        kind: &str,
        schema_version: u32,
        params: &Value,
        inputs: &BTreeMap<String, ArtifactKey>,
    ) -> ArtifactKey {
        let inputs: serde_json::Map<String, Value> =
            inputs.iter().map(|(name, key)| (name.clone(), Value::String(key.0.clone()))).collect();
        let keyed = serde_json::json!({
            "kind": kind,
            "schema_version": schema_version,
            "params": params,
            "inputs": inputs,
        });
        ArtifactKey(blake3::hash(canonical_json(&keyed).as_bytes()).to_hex().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits: what listings and messages show.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ArtifactKey {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 64 || !is_lower_hex(s) {
            bail!("`{s}` is not an artifact key (64 lowercase hex digits)");
        }
        Ok(ArtifactKey(s.to_string()))
    }
}

impl TryFrom<String> for ArtifactKey {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ArtifactKey> for String {
    fn from(key: ArtifactKey) -> String {
        key.0
    }
}

/// The first 12 characters of a key or hash read from disk, which may not be well formed.
pub(crate) fn abbreviate(text: &str) -> String {
    text.chars().take(12).collect()
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Object keys sorted recursively, no whitespace, scalars exactly as serde_json writes them
/// (floats in their shortest round-trip form). Sorting here rather than relying on
/// serde_json's map type keeps keys stable if a dependency turns on `preserve_order`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&scalar(&Value::String(name.clone())));
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar_value => out.push_str(&scalar(scalar_value)),
    }
}

fn scalar(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON scalar always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(params: &Value) -> ArtifactKey {
        ArtifactKey::compute("stage2", 1, params, &BTreeMap::new())
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let v = json!({"b": [1, 2.5, {"z": null, "a": true}], "a": "x\"y", "lr": 5e-8});
        assert_eq!(canonical_json(&v), r#"{"a":"x\"y","b":[1,2.5,{"a":true,"z":null}],"lr":5e-8}"#);
    }

    #[test]
    fn key_ignores_object_key_order() {
        let a: Value = serde_json::from_str(r#"{"seed": 1, "opt": {"lr": 1e-6, "wd": 0.01}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"opt": {"wd": 0.01, "lr": 1e-6}, "seed": 1}"#).unwrap();
        assert_eq!(key(&a), key(&b));
    }

    #[test]
    fn every_param_value_changes_the_key() {
        let base = json!({"seed": 1, "lr": 1e-6, "k": 6, "score": "grad", "precision": "fp32",
                          "shots": [1, 2], "aug": {"flip": true}});
        let variants = [
            json!({"seed": 2}),
            json!({"lr": 1.0000000000000002e-6}),
            json!({"k": 7}),
            json!({"score": "random"}),
            json!({"precision": "bf16"}),
            json!({"shots": [2, 1]}),
            json!({"aug": {"flip": false}}),
            json!({"extra": null}),
        ];
        let base_key = key(&base);
        for change in variants {
            let mut params = base.clone();
            for (name, value) in change.as_object().unwrap() {
                params[name] = value.clone();
            }
            assert_ne!(key(&params), base_key, "{change}");
        }
        // An integer and a float that print differently are different settings.
        assert_ne!(key(&json!({"k": 6})), key(&json!({"k": 6.0})));
    }

    #[test]
    fn kind_schema_and_inputs_enter_the_key() {
        let p = json!({});
        let mut inputs = BTreeMap::new();
        let base = ArtifactKey::compute("eval", 1, &p, &inputs);
        assert_ne!(base, ArtifactKey::compute("split", 1, &p, &inputs));
        assert_ne!(base, ArtifactKey::compute("eval", 2, &p, &inputs));
        inputs.insert("split".to_string(), base.clone());
        let with_input = ArtifactKey::compute("eval", 1, &p, &inputs);
        assert_ne!(base, with_input);
        let renamed: BTreeMap<_, _> = [("weights".to_string(), base.clone())].into();
        assert_ne!(with_input, ArtifactKey::compute("eval", 1, &p, &renamed));
    }

    /// The audit recomputes keys from params parsed back out of manifest.json, so every float
    /// must survive print-then-parse bit for bit. serde_json's default float parser is off by
    /// an ULP for about one in five arbitrary doubles; its `float_roundtrip` feature fixes it.
    #[test]
    fn floats_survive_a_manifest_round_trip() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = if i % 2 == 0 {
                f64::from_bits(state)
            } else {
                (state >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((state % 16) as i32 - 10)
            };
            if !x.is_finite() {
                continue;
            }
            let params = json!({ "lr": x });
            let text = serde_json::to_string_pretty(&params).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                key(&back),
                key(&params),
                "{x:e} does not round-trip through JSON: serde_json needs its `float_roundtrip` feature"
            );
        }
    }

    #[test]
    fn parses_and_rejects_key_text() {
        let k = key(&json!({}));
        assert_eq!(k.as_str().parse::<ArtifactKey>().unwrap(), k);
        assert_eq!(k.short().len(), 12);
        assert!("ABC".parse::<ArtifactKey>().is_err());
        assert!(k.as_str().to_uppercase().parse::<ArtifactKey>().is_err());
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<ArtifactKey>(&json).unwrap(), k);
        assert!(serde_json::from_str::<ArtifactKey>("\"abc\"").is_err());
    }
}
