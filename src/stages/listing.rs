//! `clip-ast ls`: one line per artifact with its kind, key prefix, headline metric and inputs.

use anyhow::Result;

use crate::store::Store;

pub fn lines(store: &Store) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for artifact in store.list()? {
        let m = &artifact.manifest;
        let headline = ["hm", "acc", "final_loss", "chosen"]
            .iter()
            .find_map(|k| m.metrics.get(*k).filter(|v| !v.is_null()).map(|v| format!("{k}={}", short_value(v))))
            .unwrap_or_default();
        let inputs: Vec<String> = m.inputs.iter().map(|(name, key)| format!("{name}={}", &key.short()[..8])).collect();
        out.push(format!("{:<9} {}  {:<22} {}", artifact.kind, artifact.key.short(), headline, inputs.join(" ")));
    }
    Ok(out)
}

fn short_value(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() != 0.0 => format!("{x:.4}"),
        _ => v.to_string(),
    }
}
