//! The largest numeric difference between two versions of an output file, for `audit --rerun`
//! on another CPU kind or thread count, where byte identity is not promised (docs/store.md,
//! "Reproducibility"): floating-point tensors in `.safetensors` files element by element, and
//! the numbers inside text files (CSV, JSON) one by one, with everything that is not a number
//! required to be identical.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use regex::Regex;
use safetensors::{Dtype, SafeTensors};

/// How far a rerun on another CPU kind or thread count may drift before `audit --rerun` calls
/// it a difference: the largest absolute difference relative to the largest magnitude in the
/// same safetensors file (or text line). Reordered fp32 reductions move results by ~1e-7
/// relative per operation, but AdamW turns float noise in gradients that are zero in exact
/// arithmetic (attention key biases) into whole ±lr steps: measured, stage 1 at lr 1e-4 on one
/// thread against two moved such a bias by 1.3e-4 while the file's largest value is ~1. The
/// tolerance sits above that and below what a changed formula does.
pub const CROSS_CPU_TOLERANCE: f64 = 1e-3;

/// The largest difference found in one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// Largest |a − b| over the file.
    pub max_abs: f64,
    /// That difference divided by the largest |a| of the file (text: of the line) it occurred in.
    pub relative: f64,
    /// Where it occurred: a tensor name, or `line L`.
    pub at: String,
}

impl Difference {
    pub fn within(&self, tolerance: f64) -> bool {
        self.relative <= tolerance
    }

    fn take_larger(current: Option<Difference>, candidate: Difference) -> Option<Difference> {
        match current {
            Some(c) if c.relative >= candidate.relative => Some(c),
            _ => Some(candidate),
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3e} ({:.3e} of the largest value) in {}", self.max_abs, self.relative, self.at)
    }
}

/// The largest difference between the numbers of `a` and `b`: `Ok(None)` when they hold the
/// same numbers exactly; an error when they differ in anything that is not a float (shape,
/// names, integers, text), which no CPU kind can explain.
pub fn largest_difference(a: &Path, b: &Path) -> Result<Option<Difference>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let (bytes_a, bytes_b) = (read(a)?, read(b)?);
    let name = a.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(".safetensors") {
        tensors_difference(&bytes_a, &bytes_b)
    } else if let (Ok(text_a), Ok(text_b)) = (std::str::from_utf8(&bytes_a), std::str::from_utf8(&bytes_b)) {
        text_difference(text_a, text_b)
    } else if bytes_a == bytes_b {
        Ok(None)
    } else {
        bail!("binary file differs and holds no numbers to compare")
    }
}

fn tensors_difference(a: &[u8], b: &[u8]) -> Result<Option<Difference>> {
    let a = SafeTensors::deserialize(a).context("published file is not safetensors")?;
    let b = SafeTensors::deserialize(b).context("rerun file is not safetensors")?;
    let (mut names_a, mut names_b) = (a.names(), b.names());
    names_a.sort();
    names_b.sort();
    if names_a != names_b {
        bail!("the files hold different tensors");
    }
    let mut largest: Option<Difference> = None;
    let mut scale = 0.0f64;
    for name in names_a {
        let (ta, tb) = (a.tensor(name)?, b.tensor(name)?);
        if ta.dtype() != tb.dtype() || ta.shape() != tb.shape() {
            bail!("tensor `{name}` has another dtype or shape");
        }
        let (Some(va), Some(vb)) = (floats(ta.dtype(), ta.data()), floats(tb.dtype(), tb.data())) else {
            if ta.data() != tb.data() {
                bail!("{:?} tensor `{name}` differs; only floating-point values may differ", ta.dtype());
            }
            continue;
        };
        scale = va.iter().fold(scale, |m, x| m.max(x.abs()));
        if let Some(d) = values_difference(&va, &vb, name)
            && largest.as_ref().is_none_or(|l| l.max_abs < d.max_abs)
        {
            largest = Some(d);
        }
    }
    // Judged against the whole file, not the tensor (see CROSS_CPU_TOLERANCE).
    Ok(largest.map(|d| Difference { relative: if scale > 0.0 { d.max_abs / scale } else { f64::INFINITY }, ..d }))
}

/// Float tensor data as f64 (little-endian, as safetensors stores it); None for other dtypes.
fn floats(dtype: Dtype, data: &[u8]) -> Option<Vec<f64>> {
    let chunks = |n: usize| data.chunks_exact(n);
    Some(match dtype {
        Dtype::F32 => chunks(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        Dtype::F64 => chunks(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        Dtype::BF16 => {
            chunks(2).map(|c| f64::from(f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))).collect()
        }
        _ => return None,
    })
}

fn values_difference(a: &[f64], b: &[f64], at: &str) -> Option<Difference> {
    let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let max_abs = a.iter().zip(b).map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() }).fold(0.0, f64::max);
    (max_abs > 0.0 || a.iter().zip(b).any(|(x, y)| x.is_nan() != y.is_nan())).then(|| Difference {
        max_abs,
        relative: if scale > 0.0 { max_abs / scale } else { f64::INFINITY },
        at: at.to_string(),
    })
}

/// A line's numbers, and the line with each of them replaced by `#`. A number is a whole word
/// (letters, digits, `_.+-`) that parses as a finite float, so the digits inside a hex hash or
/// a file name stay text.
pub fn split_numbers(line: &str) -> (String, Vec<f64>) {
    static WORD: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let word = WORD.get_or_init(|| Regex::new(r"[A-Za-z0-9_.+-]+").expect("a valid pattern"));
    let mut numbers = Vec::new();
    let skeleton = word.replace_all(line, |m: &regex::Captures| match m[0].parse::<f64>() {
        Ok(v) if v.is_finite() => {
            numbers.push(v);
            "#".to_string()
        }
        _ => m[0].to_string(),
    });
    (skeleton.into_owned(), numbers)
}

/// Numbers compared one by one per line (scale: the line's largest magnitude, so a CSV row of
/// losses is judged against its own size); the text around them must match exactly.
fn text_difference(a: &str, b: &str) -> Result<Option<Difference>> {
    let (lines_a, lines_b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if lines_a.len() != lines_b.len() {
        bail!("{} lines against {}", lines_a.len(), lines_b.len());
    }
    let mut largest = None;
    for (i, (la, lb)) in lines_a.iter().zip(&lines_b).enumerate() {
        if la == lb {
            continue;
        }
        let ((skeleton_a, numbers_a), (skeleton_b, numbers_b)) = (split_numbers(la), split_numbers(lb));
        if skeleton_a != skeleton_b {
            bail!("line {} differs in more than its numbers", i + 1);
        }
        if let Some(d) = values_difference(&numbers_a, &numbers_b, &format!("line {}", i + 1)) {
            largest = Difference::take_larger(largest, d);
        }
    }
    Ok(largest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn write_tensors(path: &Path, tensors: &[(&str, Dtype, Vec<u8>, Vec<usize>)]) {
        let views: HashMap<String, safetensors::tensor::TensorView> = tensors
            .iter()
            .map(|(n, d, data, shape)| {
                (n.to_string(), safetensors::tensor::TensorView::new(*d, shape.clone(), data).unwrap())
            })
            .collect();
        safetensors::serialize_to_file(&views, None, path).unwrap();
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn tensors_report_the_largest_relative_difference() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        let ids = (Dtype::I64, 7i64.to_le_bytes().to_vec(), vec![1]);
        write_tensors(
            &a,
            &[("w", Dtype::F32, f32_bytes(&[1.0, -2.0, 4.0]), vec![3]), ("ids", ids.0, ids.1.clone(), ids.2.clone())],
        );
        write_tensors(&b, &[("w", Dtype::F32, f32_bytes(&[1.0, -2.0004, 4.0]), vec![3]), ("ids", ids.0, ids.1, ids.2)]);
        let d = largest_difference(&a, &b).unwrap().unwrap();
        assert_eq!(d.at, "w");
        assert!((d.max_abs - 4e-4).abs() < 1e-6, "{d}");
        assert!((d.relative - 1e-4).abs() < 1e-6, "{d}");
        assert!(largest_difference(&a, &a).unwrap().is_none());
        write_tensors(&b, &[("w", Dtype::F32, f32_bytes(&[1.0, -2.0, 4.0]), vec![3])]);
        assert!(largest_difference(&a, &b).unwrap_err().to_string().contains("different tensors"));
        let ids_b = (Dtype::I64, 8i64.to_le_bytes().to_vec(), vec![1]);
        write_tensors(
            &b,
            &[("w", Dtype::F32, f32_bytes(&[1.0, -2.0, 4.0]), vec![3]), ("ids", ids_b.0, ids_b.1, ids_b.2)],
        );
        assert!(largest_difference(&a, &b).unwrap_err().to_string().contains("`ids` differs"));
    }

    #[test]
    fn text_compares_numbers_and_requires_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("log.csv"), dir.path().join("log2.csv"));
        std::fs::write(&a, "epoch,loss\n0,1.5\n1,0.25\n").unwrap();
        std::fs::write(&b, "epoch,loss\n0,1.5\n1,0.2500001\n").unwrap();
        let d = largest_difference(&a, &b).unwrap().unwrap();
        assert_eq!(d.at, "line 3");
        assert!((d.relative - 1e-7 / 1.0).abs() < 1e-9, "{d}");
        std::fs::write(&b, "epoch,loss\n0,1.5\n1,0.25\n").unwrap();
        assert!(largest_difference(&a, &b).unwrap().is_none());
        std::fs::write(&b, "epoch,loss\n0,1.5\nx,0.25\n").unwrap();
        assert!(largest_difference(&a, &b).unwrap_err().to_string().contains("line 3"));
        std::fs::write(&b, "epoch,loss\n0,1.5\n").unwrap();
        assert!(largest_difference(&a, &b).is_err());
    }
}
