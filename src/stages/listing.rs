//! `clip-ast ls`: one line per artifact with its kind, key prefix, headline metric and inputs.

use anyhow::Result;

use crate::store::{Artifact, Store, checkpoint};

/// One line per artifact whose manifest reads, and one message per artifact whose manifest does
/// not: a damaged artifact must not hide the others.
pub fn lines(store: &Store) -> Result<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for entry in store.entries()? {
        let artifact = match Artifact::load(&entry.dir) {
            Ok(artifact) => artifact,
            Err(e) => {
                unreadable.push(format!("{e:#}"));
                continue;
            }
        };
        let m = &artifact.manifest;
        let headline = ["hm", "acc", "final_loss", "chosen"]
            .iter()
            .find_map(|k| m.metrics.get(*k).filter(|v| !v.is_null()).map(|v| format!("{k}={}", short_value(v))))
            .unwrap_or_default();
        let inputs: Vec<String> = m.inputs.iter().map(|(name, key)| format!("{name}={}", &key.short()[..8])).collect();
        out.push(format!("{:<9} {}  {:<22} {}", artifact.kind, artifact.key.short(), headline, inputs.join(" ")));
    }
    // Stages under way, or stopped before they finished: their last checkpoint.
    for entry in checkpoint::in_progress(store)? {
        if !matches!(store.find(&entry.key), Ok(None)) {
            continue; // published (or there but unreadable, said above); `gc` removes what is left
        }
        let line = match &entry.meta {
            Some(m) => {
                let kind = m["kind"].as_str().map_or("?", |k| if k == "pretrain" { "weights" } else { k });
                let (epoch, total, batch) = (&m["epoch"], &m["epochs"], m["batch"].as_u64().unwrap_or(0));
                let within = if batch > 0 { format!(" +{batch} batches") } else { String::new() };
                let when = entry.modified.map(crate::store::rfc3339_utc).unwrap_or_default();
                format!("{kind:<9} {}  in progress: epoch {epoch}/{total}{within}, saved {when}", entry.key.short())
            }
            None => format!("{:<9} {}  in progress: no readable checkpoint", "?", entry.key.short()),
        };
        out.push(line);
    }
    Ok((out, unreadable))
}

fn short_value(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() != 0.0 => format!("{x:.4}"),
        _ => v.to_string(),
    }
}
