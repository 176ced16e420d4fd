//! The IDX format of (Fashion-)MNIST, gzipped or not: images stay inside their container file and
//! are named `FILE#INDEX` in split lists, so a split can point at them like at image files.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ::image::RgbImage;
use anyhow::{Context, Result, anyhow, bail};

use super::split_file::Datum;

/// An unsigned-byte IDX array: `dims` from the header, row-major data.
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Bytes of one item along the first dimension.
    fn item_len(&self) -> usize {
        self.dims[1..].iter().product()
    }
}

/// Read an IDX file (`.gz` decompressed on the fly). Only the unsigned-byte type (0x08) is
/// accepted: it is what (Fashion-)MNIST images and labels use.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut bytes = Vec::new();
    let read = if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    };
    read.map_err(|e| anyhow!("{}: cannot read ({e}); the file may be truncated", path.display()))?;
    parse_idx(&bytes).map_err(|e| anyhow!("{}: not an IDX file ({e})", path.display()))
}

fn parse_idx(bytes: &[u8]) -> Result<IdxArray> {
    let Some(&[0, 0, kind, ndim]) = bytes.get(..4) else { bail!("shorter than its 4-byte magic") };
    if kind != 0x08 {
        bail!("element type 0x{kind:02x}; only unsigned bytes (0x08) are supported");
    }
    let ndim = usize::from(ndim);
    if ndim == 0 {
        bail!("zero dimensions");
    }
    let header = 4 + 4 * ndim;
    let dims: Vec<usize> = bytes
        .get(4..header)
        .ok_or_else(|| anyhow!("header cut short"))?
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| anyhow!("dimensions overflow"))?;
    let data = &bytes[header..];
    if data.len() != len {
        bail!("header says {dims:?} = {len} bytes of data, file holds {}", data.len());
    }
    Ok(IdxArray { dims, data: data.to_vec() })
}

/// Items of an images + labels pair, in file order, as `IMAGES_FILE#index` entries.
pub fn labelled_items(image_dir: &Path, images: &str, labels: &str, classnames: &[String]) -> Result<Vec<Datum>> {
    let labels_path = image_dir.join(labels);
    let label_array = read_idx(&labels_path)?;
    let image_array = cached(&image_dir.join(images))?;
    if image_array.dims.len() != 3 || label_array.dims.len() != 1 || image_array.dims[0] != label_array.dims[0] {
        bail!(
            "{} {:?} and {} {:?} do not pair up as [N, H, W] images with [N] labels",
            images,
            image_array.dims,
            labels,
            label_array.dims
        );
    }
    label_array
        .data
        .iter()
        .enumerate()
        .map(|(i, &label)| {
            let classname = classnames.get(usize::from(label)).ok_or_else(|| {
                anyhow!(
                    "{}: item {i} has label {label}, but there are {} classes",
                    labels_path.display(),
                    classnames.len()
                )
            })?;
            Ok(Datum { impath: format!("{images}#{i}"), label: usize::from(label), classname: classname.clone() })
        })
        .collect()
}

/// `FILE#INDEX` → (`FILE`, index) for IDX-backed images; `None` for ordinary image paths.
pub fn parse_virtual(impath: &str) -> Option<(&str, usize)> {
    let (file, index) = impath.rsplit_once('#')?;
    if !(file.contains("-idx") && file.contains("-ubyte")) {
        return None;
    }
    Some((file, index.parse().ok()?))
}

/// One image of an IDX file as RGB (grey replicated, as PIL's `convert("RGB")` does).
pub fn load_image(file: &Path, index: usize) -> Result<RgbImage> {
    let array = cached(file)?;
    if array.dims.len() != 3 {
        bail!("{}: {:?} is not an [N, H, W] image array", file.display(), array.dims);
    }
    if index >= array.dims[0] {
        bail!("{}#{index}: the file holds {} images", file.display(), array.dims[0]);
    }
    let (h, w) = (array.dims[1], array.dims[2]);
    let start = index * array.item_len();
    let grey = &array.data[start..start + h * w];
    let rgb = grey.iter().flat_map(|&g| [g, g, g]).collect();
    Ok(RgbImage::from_raw(w as u32, h as u32, rgb).expect("buffer matches its size"))
}

/// Decoded IDX files, kept for the process: a test set of 10k images reads its file once.
fn cached(path: &Path) -> Result<Arc<IdxArray>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<IdxArray>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().expect("idx cache").get(path) {
        return Ok(Arc::clone(hit));
    }
    let array = Arc::new(read_idx(path)?);
    cache.lock().expect("idx cache").insert(path.to_owned(), Arc::clone(&array));
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        assert!(parse_idx(&[0, 0, 8, 1, 0, 0, 0, 2, 7, 9]).is_ok());
        let e = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 3, 7, 9]).err().unwrap().to_string();
        assert!(e.contains("3 bytes of data, file holds 2"), "{e}");
        assert!(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
        assert!(parse_idx(&[1, 2]).is_err());
    }

    #[test]
    fn virtual_paths() {
        assert_eq!(parse_virtual("train-images-idx3-ubyte.gz#12"), Some(("train-images-idx3-ubyte.gz", 12)));
        assert_eq!(parse_virtual("cat/photo#1.jpg"), None);
        assert_eq!(parse_virtual("a/b.jpg"), None);
    }
}
