//! A model's tensors by OpenAI state-dict name, read from and written to safetensors, and
//! checked against a config before any model is built from them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use tch::{Kind, Tensor};

use super::config::ClipConfig;

/// Tensors by name. A BTreeMap so that iteration (and therefore files written) is ordered.
pub type Weights = BTreeMap<String, Tensor>;

/// Read every tensor of a safetensors file as fp32 on the CPU (f16/bf16/f64 are widened or
/// narrowed; integer tensors are refused since no CLIP weight is an integer).
pub fn read_safetensors(path: &Path) -> Result<Weights> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    let mut out = Weights::new();
    for (name, view) in file.tensors() {
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            other => bail!("{}: tensor `{name}` has dtype {other:?}; expected a float type", path.display()),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .with_context(|| format!("{}: tensor `{name}` cannot be read", path.display()))?
            .to_kind(Kind::Float);
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Only the shapes, without materialising tensors (used to infer a config cheaply).
pub fn shapes_of(weights: &Weights) -> BTreeMap<String, Vec<i64>> {
    weights.iter().map(|(k, t)| (k.clone(), t.size())).collect()
}

/// Write tensors as little-endian fp32 safetensors; names sorted, so equal tensors give
/// byte-identical files.
pub fn write_safetensors(weights: &Weights, path: &Path) -> Result<()> {
    write_safetensors_with(weights, path, None)
}

/// [`write_safetensors`] with a `__metadata__` header (transformers before 4.40 refuses files
/// without `{"format": "pt"}`).
pub fn write_safetensors_with(
    weights: &Weights,
    path: &Path,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(weights.len());
    for (name, tensor) in weights {
        let t = tensor.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values =
            Vec::<f32>::try_from(t.flatten(0, -1)).with_context(|| format!("tensor `{name}` cannot be copied out"))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((name.clone(), shape, bytes));
    }
    let views: Vec<(String, TensorView)> = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches byte count");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, metadata, path)
        .with_context(|| format!("{}: cannot write safetensors", path.display()))?;
    // The crate writes through a 0600 temp file; a store others read needs the umask's mode.
    crate::fsutil::follow_umask(path)
}

/// Refuse weights that do not fit the config: missing or unknown names, wrong shapes. The
/// message names the first offenders so a user can see which file or converter is wrong.
pub fn check_against_config(weights: &Weights, config: &ClipConfig, source: &Path) -> Result<()> {
    let expected = config.tensor_shapes();
    let missing: Vec<&String> = expected.keys().filter(|k| !weights.contains_key(*k)).collect();
    if !missing.is_empty() {
        bail!("{}: {} tensor(s) missing, e.g. {}", source.display(), missing.len(), first_names(&missing));
    }
    let unknown: Vec<&String> = weights.keys().filter(|k| !expected.contains_key(*k)).collect();
    if !unknown.is_empty() {
        bail!(
            "{}: {} tensor(s) with names CLIP does not have, e.g. {}",
            source.display(),
            unknown.len(),
            first_names(&unknown)
        );
    }
    for (name, shape) in &expected {
        let got = weights[name].size();
        if &got != shape {
            bail!("{}: tensor `{name}` has shape {got:?}, expected {shape:?} for this architecture", source.display());
        }
    }
    Ok(())
}

fn first_names(names: &[&String]) -> String {
    let shown: Vec<String> = names.iter().take(5).map(|n| format!("`{n}`")).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_is_exact_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Weights::new();
        w.insert("b".into(), Tensor::from_slice(&[1.5f32, -2.25, 3.0]).view([3, 1]));
        w.insert("a".into(), Tensor::from(0.125f32));
        let (p1, p2) = (dir.path().join("1.safetensors"), dir.path().join("2.safetensors"));
        write_safetensors(&w, &p1).unwrap();
        write_safetensors(&w, &p2).unwrap();
        assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        let back = read_safetensors(&p1).unwrap();
        assert_eq!(back["b"].size(), vec![3, 1]);
        assert_eq!(Vec::<f32>::try_from(back["b"].flatten(0, -1)).unwrap(), vec![1.5, -2.25, 3.0]);
        assert_eq!(back["a"].size(), Vec::<i64>::new());
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let mut w = Weights::new();
        w.insert("x".into(), Tensor::zeros([64], (Kind::Float, tch::Device::Cpu)));
        write_safetensors(&w, &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let err = format!("{:#}", read_safetensors(&p).unwrap_err());
        assert!(err.contains("w.safetensors") && err.contains("not a valid safetensors"), "{err}");
    }
}
