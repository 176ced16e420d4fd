//! The test set decoded once: every test image resized (shorter side) and centre-cropped to the
//! model's size as uint8, stored as `test_images.safetensors` (`images` [N, S, S, 3] U8, `labels`
//! [N] I64) so evaluation never decodes a JPEG again. Written in chunks, so a 50k-image test
//! set never has to fit in memory.

use std::io::Write;
use std::path::Path;

use ::image::RgbImage;
use anyhow::{Context, Result};
use rayon::prelude::*;

use super::datasets::load_image;
use super::image::resize_and_center_crop;
use super::rendering::Rendering;
use super::split_file::Datum;

/// Images decoded in parallel per chunk before the chunk is written out.
const CHUNK: usize = 256;

/// safetensors header for the two tensors, padded with spaces to a multiple of 8 bytes as the
/// reference writer does.
fn header(n: usize, size: u32) -> Vec<u8> {
    let s = size as usize;
    let labels_end = 8 * n;
    let images_end = labels_end + n * s * s * 3;
    let json = serde_json::json!({
        "__metadata__": {"layout": "NHWC", "image_size": size.to_string()},
        "labels": {"dtype": "I64", "shape": [n], "data_offsets": [0, labels_end]},
        "images": {"dtype": "U8", "shape": [n, s, s, 3], "data_offsets": [labels_end, images_end]},
    });
    let mut bytes = serde_json::to_vec(&json).expect("json");
    while !bytes.len().is_multiple_of(8) {
        bytes.push(b' ');
    }
    bytes
}

/// Write `items` to `out`. Returns one message per image that fails to decode (decoding goes on
/// past the first failure so that all are found); `out` is then incomplete and the caller
/// discards it. Errors are for the output file only.
pub fn write(out: &Path, image_dir: &Path, items: &[Datum], size: u32, rendering: Rendering) -> Result<Vec<String>> {
    let file = std::fs::File::create(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let head = header(items.len(), size);
    w.write_all(&(head.len() as u64).to_le_bytes())?;
    w.write_all(&head)?;
    for d in items {
        w.write_all(&(d.label as i64).to_le_bytes())?;
    }
    let mut errors = Vec::new();
    for chunk in items.chunks(CHUNK) {
        // The split's rendering, then CLIP's test transform before `ToTensor`, as
        // `image::test_crop` does for a plain file; `load_image` also reads images packed in IDX
        // files.
        let decoded: Vec<Result<RgbImage>> = chunk
            .par_iter()
            .map(|d| Ok(resize_and_center_crop(&rendering.apply(load_image(image_dir, &d.impath)?), size)))
            .collect();
        for img in decoded {
            match img {
                Ok(img) if errors.is_empty() => w.write_all(img.as_raw())?,
                Ok(_) => {}
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    if errors.is_empty() {
        w.flush().with_context(|| format!("{}: cannot write", out.display()))?;
        w.get_ref().sync_all().with_context(|| format!("{}: cannot write", out.display()))?;
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_offsets_cover_the_data() {
        let h = header(3, 5);
        assert_eq!(h.len() % 8, 0);
        let v: serde_json::Value = serde_json::from_slice(&h).unwrap();
        assert_eq!(v["images"]["data_offsets"], serde_json::json!([24, 24 + 3 * 75]));
    }
}
