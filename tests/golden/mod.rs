//! Golden records of stage outputs: what a stage wrote, reduced to what must hold on every CPU
//! this project's CI may get. Discrete content (text around numbers, integer tensors, names,
//! shapes, keys) is kept exactly; numbers are kept with a tolerance, because floating-point
//! results differ between CPU kinds in their last digits (never a raw hash of a float file).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use clip_ast::store::numeric_diff::split_numbers;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A real change moves outputs by far more than this (dividing the KL term by the batch instead
/// of its size moves the stage-2 loss by 2.3e-2); another CPU kind by far less: across the kernel
/// variants of `common::kernels` the largest relative difference of any recorded number was
/// 4.6e-6 (a stage-1 score; the stage-2 loss 2e-7). docs/store.md has the measurements.
pub const TOLERANCE: f64 = 1e-4;

/// The scale of a below-eps share (a selection's `below_eps`, every number of stage 1's
/// `diagnostics.json`): the share of a tensor's elements whose stage-1 second moment is below
/// eps. It is judged as a share of the whole tensor, not relative to itself: elements that sit at
/// eps cross it on another CPU kind, one element of 65,536 at a time (measured: 5.5e-5 of a share
/// of 0.28 between kernel variants).
const FRACTION_SCALE: f64 = 1.0;

fn is_below_eps_share(path: &Path, line: &str) -> bool {
    path.file_name().is_some_and(|n| n == "diagnostics.json") || line.trim_start().starts_with("\"below_eps\"")
}

/// One artifact, as the golden file keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub kind: String,
    pub schema: u32,
    pub key: String,
    pub inputs: BTreeMap<String, String>,
    pub files: BTreeMap<String, FileRecord>,
    /// The manifest's headline metrics.
    pub metrics: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FileRecord {
    /// A text file: blake3 of its text with every number replaced by `#`, and the numbers in
    /// order, each with the largest magnitude on its line (the scale a difference is judged by).
    Text { skeleton: String, numbers: Vec<[f64; 2]> },
    /// A safetensors file: each tensor's dtype and shape (and the bytes of integer tensors)
    /// exactly; the float values as two sums over the whole file, in tensor-name order: the sum
    /// of |x| and a position-weighted sum (weights 1 + (i mod 7)/7, so moved or sign-flipped
    /// values show), both judged against the sum of |x|.
    ///
    /// Per-tensor sums would not hold across CPUs: AdamW turns float noise in gradients that are
    /// zero in exact arithmetic (attention key biases) into ±lr steps, so such a tensor's sums
    /// move by ~lr on another CPU kind, which is large against its own tiny size and nothing
    /// against the file.
    Tensors { tensors: BTreeMap<String, TensorRecord>, l1: f64, weighted_sum: f64 },
    /// Anything else: its bytes exactly.
    Bytes { blake3: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorRecord {
    pub dtype: String,
    pub shape: Vec<usize>,
    /// blake3 of the data of a non-float tensor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// The record of the artifact in `dir`, with `fixture_root` (a temp dir, different each run)
/// written as `<fixture>` wherever a text output names it.
pub fn record(dir: &Path, fixture_root: &Path) -> Record {
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let str_of = |v: &Value| v.as_str().unwrap().to_string();
    let inputs = manifest["inputs"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), str_of(v))).collect();
    let files = manifest["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| (name.clone(), file_record(&dir.join(name), fixture_root)))
        .collect();
    Record {
        kind: str_of(&manifest["kind"]),
        schema: manifest["schema_version"].as_u64().unwrap() as u32,
        key: str_of(&manifest["key"]),
        inputs,
        files,
        metrics: manifest["metrics"].clone(),
    }
}

fn file_record(path: &Path, fixture_root: &Path) -> FileRecord {
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "safetensors") {
        return tensors_record(&bytes);
    }
    match String::from_utf8(bytes) {
        Ok(text) => {
            let text = text.replace(fixture_root.to_str().unwrap(), "<fixture>");
            let mut numbers = Vec::new();
            let mut skeleton = String::new();
            for line in text.lines() {
                let (line_skeleton, values) = split_numbers(line);
                let scale = if is_below_eps_share(path, line) {
                    FRACTION_SCALE
                } else {
                    values.iter().fold(0.0f64, |m, v| m.max(v.abs()))
                };
                numbers.extend(values.iter().map(|&v| [v, scale]));
                skeleton.push_str(&line_skeleton);
                skeleton.push('\n');
            }
            FileRecord::Text { skeleton: blake3::hash(skeleton.as_bytes()).to_hex().to_string(), numbers }
        }
        Err(e) => FileRecord::Bytes { blake3: blake3::hash(e.as_bytes()).to_hex().to_string() },
    }
}

fn tensors_record(bytes: &[u8]) -> FileRecord {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut l1, mut weighted_sum, mut position) = (0.0f64, 0.0f64, 0usize);
    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        let data = view.data();
        let floats: Option<Vec<f64>> = match view.dtype() {
            Dtype::F32 => {
                Some(data.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect())
            }
            Dtype::F64 => Some(data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()),
            _ => None,
        };
        let mut record =
            TensorRecord { dtype: format!("{:?}", view.dtype()), shape: view.shape().to_vec(), blake3: None };
        match floats {
            Some(values) => {
                for v in values {
                    l1 += v.abs();
                    weighted_sum += v * (1.0 + (position % 7) as f64 / 7.0);
                    position += 1;
                }
            }
            None => record.blake3 = Some(blake3::hash(data).to_hex().to_string()),
        }
        tensors.insert(name, record);
    }
    FileRecord::Tensors { tensors, l1, weighted_sum }
}

/// How `now` differs from `golden` beyond [`TOLERANCE`]: one line per difference, at most a few
/// per file.
pub fn differences(golden: &Record, now: &Record) -> Vec<String> {
    let mut out = Vec::new();
    for (what, a, b) in [("kind", &golden.kind, &now.kind), ("key", &golden.key, &now.key)] {
        if a != b {
            out.push(format!("{what} {a} is now {b}"));
        }
    }
    if golden.inputs != now.inputs {
        out.push(format!("input keys {:?} are now {:?}", golden.inputs, now.inputs));
    }
    let names = |r: &Record| r.files.keys().cloned().collect::<Vec<_>>();
    if names(golden) != names(now) {
        out.push(format!("files {:?} are now {:?}", names(golden), names(now)));
    }
    for (name, g) in &golden.files {
        if let Some(n) = now.files.get(name) {
            out.extend(file_differences(g, n).into_iter().take(3).map(|d| format!("`{name}`: {d}")));
        }
    }
    if !values_close(&golden.metrics, &now.metrics) {
        out.push(format!("metrics {} are now {}", golden.metrics, now.metrics));
    }
    out
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    a == b || (a - b).abs() <= TOLERANCE * scale.max(a.abs()).max(b.abs())
}

fn values_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => close(x.as_f64().unwrap(), y.as_f64().unwrap(), 0.0),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_close(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| values_close(v, w)),
        _ => a == b,
    }
}

fn file_differences(golden: &FileRecord, now: &FileRecord) -> Vec<String> {
    match (golden, now) {
        (FileRecord::Text { skeleton: sg, numbers: ng }, FileRecord::Text { skeleton: sn, numbers: nn }) => {
            if sg != sn || ng.len() != nn.len() {
                return vec!["its text (apart from the numbers) changed".to_string()];
            }
            ng.iter()
                .zip(nn)
                .enumerate()
                .filter(|(_, (g, n))| !close(g[0], n[0], g[1]))
                .map(|(i, (g, n))| format!("number {} was {} and is {}", i + 1, g[0], n[0]))
                .collect()
        }
        (
            FileRecord::Tensors { tensors: tg, l1: lg, weighted_sum: wg },
            FileRecord::Tensors { tensors: tn, l1: ln, weighted_sum: wn },
        ) => {
            let mut out: Vec<String> = tg
                .iter()
                .filter(|(name, g)| tn.get(*name) != Some(g))
                .map(|(name, _)| format!("tensor `{name}` changed dtype, shape or (integer) values"))
                .collect();
            if tg.len() != tn.len() {
                out.push("it holds other tensors".to_string());
            }
            for (what, g, n) in [("sum of |x|", lg, ln), ("weighted sum", wg, wn)] {
                if !close(*g, *n, *lg) {
                    out.push(format!("{what} of its floats was {g} and is {n}"));
                }
            }
            out
        }
        (g, n) if g == n => Vec::new(),
        _ => vec!["its content changed".to_string()],
    }
}

/// The largest relative difference of any number between `golden` and `now` (as [`close`]
/// judges it), with where it is: what another CPU kind moves, printed so the margin to
/// [`TOLERANCE`] stays visible.
pub fn largest_difference(golden: &BTreeMap<String, Record>, now: &BTreeMap<String, Record>) -> (f64, String) {
    let mut largest = (0.0f64, "nothing differs".to_string());
    let mut note = |a: f64, b: f64, scale: f64, at: &dyn Fn() -> String| {
        let relative = if a == b { 0.0 } else { (a - b).abs() / scale.max(a.abs()).max(b.abs()) };
        if relative > largest.0 {
            largest = (relative, at());
        }
    };
    for (label, g) in golden {
        let Some(n) = now.get(label) else { continue };
        for (name, gf) in &g.files {
            match (gf, n.files.get(name)) {
                (FileRecord::Text { numbers: ng, .. }, Some(FileRecord::Text { numbers: nn, .. })) => {
                    for (i, (x, y)) in ng.iter().zip(nn).enumerate() {
                        note(x[0], y[0], x[1], &|| format!("{label} {name} number {}", i + 1));
                    }
                }
                (
                    FileRecord::Tensors { l1: lg, weighted_sum: wg, .. },
                    Some(FileRecord::Tensors { l1: ln, weighted_sum: wn, .. }),
                ) => {
                    note(*lg, *ln, *lg, &|| format!("{label} {name} sum of |x|"));
                    note(*wg, *wn, *lg, &|| format!("{label} {name} weighted sum"));
                }
                _ => {}
            }
        }
        if let (Value::Object(gm), Value::Object(nm)) = (&g.metrics, &n.metrics) {
            for (k, v) in gm {
                if let (Some(x), Some(y)) = (v.as_f64(), nm.get(k).and_then(Value::as_f64)) {
                    note(x, y, 0.0, &|| format!("{label} metric {k}"));
                }
            }
        }
    }
    largest
}
