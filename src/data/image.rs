//! Image decoding and CLIP's evaluation preprocessing, reproducing open_clip's
//! `image_transform(224, is_train=False)` on a PIL image converted to RGB:
//! `Resize(224, BICUBIC)` → `CenterCrop(224)` → `ToTensor` → `Normalize(CLIP_MEAN, CLIP_STD)`.
//!
//! PNG input matches the PIL pipeline bit for bit (the resampler is Pillow's own algorithm, see
//! [`super::resize`]). JPEG input goes through zune-jpeg rather than libjpeg-turbo, whose IDCT,
//! chroma upsampling and YCbCr rounding differ slightly, so decoded pixels can be off by a few
//! levels; the parity test measures this separately from the resampler.

use std::path::{Path, PathBuf};

use ::image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use anyhow::{Result, anyhow};
use rayon::prelude::*;
use tch::Tensor;

use super::resize::{bicubic_resize, bicubic_resize_window};

/// OpenAI CLIP's normalisation constants (open_clip `OPENAI_DATASET_MEAN` / `_STD`), spelled
/// with open_clip's digits; they round to the same f32 values torch uses.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Decode JPEG/PNG to 8-bit RGB (grey, grey+alpha, RGBA, 16-bit, CMYK JPEG all to RGB like
/// PIL's convert('RGB')).
/// Errors name the file: `{path}: not a readable image (…)` / `{path}: no such file`.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let mut pixels = Vec::new();
    let (w, h) = load_rgb_into(path, &mut pixels)?;
    Ok(RgbImage::from_raw(w, h, pixels).expect("3 samples per pixel"))
}

/// [`load_rgb`] into `pixels` (resized to fit), reusing its allocation where the file decodes
/// to RGB directly (colour JPEGs): a loop over many images then touches no fresh memory.
/// Returns (width, height).
pub fn load_rgb_into(path: &Path, pixels: &mut Vec<u8>) -> Result<(u32, u32)> {
    let unreadable = |why: &dyn std::fmt::Display| anyhow!("{}: not a readable image ({why})", path.display());
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{}: no such file", path.display()),
        _ => unreadable(&e),
    })?;
    // Sniff the content as PIL does, so a PNG saved as `.jpg` still opens.
    let reader = ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format().map_err(|e| unreadable(&e))?;
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_reaches_eoi(&bytes) {
        // zune-jpeg fills missing scans with grey and succeeds; PIL raises "image file is
        // truncated", so such a file would be dropped (or crash) on the reference side.
        return Err(unreadable(&"JPEG data is truncated: no end-of-image marker"));
    }
    // What `ImageReader::decode` does, with our buffer for the 8-bit RGB case.
    let mut decoder = reader.into_decoder().map_err(|e| unreadable(&e))?;
    let mut limits = ::image::Limits::default();
    limits.reserve(decoder.total_bytes()).map_err(|e| unreadable(&e))?;
    decoder.set_limits(limits).map_err(|e| unreadable(&e))?;
    let (w, h) = decoder.dimensions();
    if decoder.color_type() == ::image::ColorType::Rgb8 {
        super::resize::fit(pixels, 3 * w as usize * h as usize);
        decoder.read_image(pixels).map_err(|e| unreadable(&e))?;
    } else {
        *pixels = to_rgb_like_pil(DynamicImage::from_decoder(decoder).map_err(|e| unreadable(&e))?).into_raw();
    }
    Ok((w, h))
}

/// Conversions that differ from `DynamicImage::to_rgb8` are PIL's, kept for parity:
/// alpha is dropped rather than composited; 16-bit colour keeps the high byte (PIL decodes
/// `RGB;16B` that way) instead of rounding; 16-bit grey opens as PIL mode `I;16`, whose
/// conversion to RGB clamps values to 255 instead of scaling them.
fn to_rgb_like_pil(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    /// Pixels of `channels` samples each, mapped to RGB from their first `n` samples
    /// (1: grey, replicated; 3: colour); the rest (alpha) is dropped.
    fn gather<T: Copy>(raw: &[T], channels: usize, n: usize, f: impl Fn(T) -> u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() / channels * 3);
        for px in raw.chunks_exact(channels) {
            match n {
                1 => out.extend([f(px[0]); 3]),
                _ => out.extend([f(px[0]), f(px[1]), f(px[2])]),
            }
        }
        out
    }
    let high_byte = |v: u16| (v >> 8) as u8;
    let buf = match img {
        DynamicImage::ImageRgb8(rgb) => return rgb,
        DynamicImage::ImageLuma8(g) => gather(g.as_raw(), 1, 1, |v| v),
        DynamicImage::ImageLumaA8(g) => gather(g.as_raw(), 2, 1, |v| v),
        DynamicImage::ImageRgba8(c) => gather(c.as_raw(), 4, 3, |v| v),
        DynamicImage::ImageLuma16(g) => gather(g.as_raw(), 1, 1, |v| v.min(255) as u8),
        DynamicImage::ImageLumaA16(g) => gather(g.as_raw(), 2, 1, high_byte),
        DynamicImage::ImageRgb16(c) => gather(c.as_raw(), 3, 3, high_byte),
        DynamicImage::ImageRgba16(c) => gather(c.as_raw(), 4, 3, high_byte),
        // Float images never come out of the PNG/JPEG decoders; keep the crate's conversion.
        other => return other.to_rgb8(),
    };
    RgbImage::from_raw(w, h, buf).expect("3 samples per pixel")
}

/// Walk the JPEG marker structure (skipping segment payloads and entropy-coded data) and report
/// whether an EOI marker is reached, which is what libjpeg under PIL needs to finish decoding.
fn jpeg_reaches_eoi(d: &[u8]) -> bool {
    let mut i = 2; // past SOI, which format sniffing already checked
    while i < d.len() {
        if d[i] != 0xFF {
            // Stray bytes before a marker: libjpeg skips them with a warning.
            i += 1;
            continue;
        }
        while i < d.len() && d[i] == 0xFF {
            i += 1; // fill bytes
        }
        let Some(&marker) = d.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let Some(len) = d.get(i..i + 2) else {
                    return false;
                };
                i += usize::from(u16::from_be_bytes([len[0], len[1]]));
                if marker == 0xDA {
                    // Entropy-coded data runs until a marker other than a stuffed 0xFF00 or RSTn.
                    while i + 1 < d.len() && !(d[i] == 0xFF && d[i + 1] != 0 && !(0xD0..=0xD7).contains(&d[i + 1])) {
                        i += 1;
                    }
                }
            }
        }
    }
    false
}

/// torchvision's `Resize(size)` on a PIL image: the shorter side becomes `size`, the longer one
/// `int(size * long / short)` (truncated), then Pillow's bicubic resampling.
pub fn resize_shorter_side(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (new_w, new_h) = shorter_side_dims(w, h, size);
    let out = bicubic_resize::<3>(img.as_raw(), w as usize, h as usize, new_w as usize, new_h as usize);
    RgbImage::from_raw(new_w, new_h, out).expect("resampler output matches its size")
}

fn shorter_side_dims(w: u32, h: u32, size: u32) -> (u32, u32) {
    // Integer floor equals Python's `int(size * long / short)`: a non-integer quotient is at
    // least 1/short away from the next integer, far more than an f64 rounding error.
    let long_of = |long: u32, short: u32| (u64::from(size) * u64::from(long) / u64::from(short)) as u32;
    if w <= h { (size, long_of(h, w)) } else { (long_of(w, h), size) }
}

/// torchvision's `CenterCrop(size)`: zero-pad a side shorter than `size` (the odd pixel going
/// right/bottom), then crop at `round((dim - size) / 2)` with Python's half-to-even rounding.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (pad_left, padded_w) = pad_for_crop(w, size);
    let (pad_top, padded_h) = pad_for_crop(h, size);
    let left = crop_offset(padded_w, size) as i64 - pad_left as i64;
    let top = crop_offset(padded_h, size) as i64 - pad_top as i64;
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (x as i64 + left, y as i64 + top);
        if (0..w as i64).contains(&sx) && (0..h as i64).contains(&sy) {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            ::image::Rgb([0, 0, 0])
        }
    })
}

/// (left/top padding, padded length)
fn pad_for_crop(len: u32, size: u32) -> (u32, u32) {
    if size > len { ((size - len) / 2, size) } else { (0, len) }
}

/// `int(round((len - size) / 2.0))`: the half-way case only arises for an odd difference
/// and goes to the even neighbour.
fn crop_offset(len: u32, size: u32) -> u32 {
    let d = len - size;
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 { half + 1 } else { half }
}

/// `ToTensor` + `Normalize` into `out` (CHW), in f32 with torch's operation order
/// (`x / 255`, then `(x - mean) / std`) so values match torchvision to the bit.
pub(crate) fn normalize_into(img: &RgbImage, out: &mut [f32]) {
    let plane = (img.width() * img.height()) as usize;
    assert_eq!(out.len(), 3 * plane);
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in img.pixels().enumerate() {
        for (c, dst) in [&mut r[i], &mut g[i], &mut b[i]].into_iter().enumerate() {
            *dst = (f32::from(px.0[c]) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
}

/// [`normalize_into`] of interleaved RGB `pixels` (`width` per row), mirrored left-right if
/// `flip`: the same f32 values, looked up in a table of the 256 possible ones per channel.
pub(crate) fn normalize_flip_into(pixels: &[u8], width: usize, flip: bool, out: &mut [f32]) {
    let plane = pixels.len() / 3;
    assert!(width > 0 && pixels.len() == 3 * plane && plane.is_multiple_of(width) && out.len() == 3 * plane);
    let table: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]));
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let rows = pixels.chunks_exact(3 * width).zip(r.chunks_exact_mut(width).zip(g.chunks_exact_mut(width)));
    for ((src, (r, g)), b) in rows.zip(b.chunks_exact_mut(width)) {
        let dst = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
        let put = |((r, g), b): ((&mut f32, &mut f32), &mut f32), px: &[u8]| {
            (*r, *g, *b) = (table[0][usize::from(px[0])], table[1][usize::from(px[1])], table[2][usize::from(px[2])]);
        };
        if flip {
            dst.zip(src.chunks_exact(3).rev()).for_each(|(d, px)| put(d, px));
        } else {
            dst.zip(src.chunks_exact(3)).for_each(|(d, px)| put(d, px));
        }
    }
}

/// `[3, H, W]` f32, `(x / 255 - mean) / std`.
pub fn normalize_to_tensor(img: &RgbImage) -> Tensor {
    let (w, h) = img.dimensions();
    let mut buf = vec![0f32; 3 * (w * h) as usize];
    normalize_into(img, &mut buf);
    Tensor::from_slice(&buf).reshape([3, i64::from(h), i64::from(w)])
}

/// load_rgb + resize_shorter_side + center_crop, uint8 (what a split stage caches)
pub fn test_crop(path: &Path, size: u32) -> Result<RgbImage> {
    Ok(resize_and_center_crop(&load_rgb(path)?, size))
}

/// `center_crop(&resize_shorter_side(img, size), size)` without resampling the pixels the crop
/// throws away (a third of a 4:3 photo; nearly all of a panorama).
pub fn resize_and_center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (new_w, new_h) = shorter_side_dims(w, h, size);
    // Both resized sides are at least `size`, so torchvision's crop needs no padding here.
    let at = (crop_offset(new_w, size), crop_offset(new_h, size));
    let out = bicubic_resize_window::<3>(
        img.as_raw(),
        (w as usize, h as usize),
        (new_w as usize, new_h as usize),
        (at.0 as usize, at.1 as usize),
        (size as usize, size as usize),
    );
    RgbImage::from_raw(size, size, out).expect("resampler output matches its size")
}

/// test_crop + normalize_to_tensor for many paths in parallel (rayon); `[N, 3, size, size]` f32.
/// On failure, one error listing every bad file (all of them, not just the first).
pub fn preprocess_test_batch(paths: &[PathBuf], size: u32) -> Result<Tensor> {
    anyhow::ensure!(size > 0, "crop size must be positive");
    let per_image = 3 * size as usize * size as usize;
    let mut buf = vec![0f32; paths.len() * per_image];
    let errors: Vec<anyhow::Error> = buf
        .par_chunks_mut(per_image)
        .zip(paths.par_iter())
        .filter_map(|(out, path)| test_crop(path, size).map(|img| normalize_into(&img, out)).err())
        .collect();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e:#}")).collect();
        return Err(anyhow!(
            "{} of {} images could not be preprocessed:\n{}",
            errors.len(),
            paths.len(),
            list.join("\n")
        ));
    }
    let s = i64::from(size);
    Ok(Tensor::from_slice(&buf).reshape([paths.len() as i64, 3, s, s]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| ::image::Rgb([x as u8, y as u8, (x * 7 + y) as u8]))
    }

    #[test]
    fn crop_offset_rounds_half_to_even() {
        // (len - size) / 2.0 = 0.5, 1.5, 2.5, 3.5 → 0, 2, 2, 4 under Python's round().
        assert_eq!(crop_offset(225, 224), 0);
        assert_eq!(crop_offset(227, 224), 2);
        assert_eq!(crop_offset(229, 224), 2);
        assert_eq!(crop_offset(231, 224), 4);
        assert_eq!(crop_offset(230, 224), 3);
        assert_eq!(crop_offset(224, 224), 0);
    }

    #[test]
    fn center_crop_takes_the_rounded_window() {
        let img = gradient(9, 6);
        let c = center_crop(&img, 4);
        // left = round(2.5) = 2, top = round(1.0) = 1
        assert_eq!(c.dimensions(), (4, 4));
        assert_eq!(c.get_pixel(0, 0), img.get_pixel(2, 1));
        assert_eq!(c.get_pixel(3, 3), img.get_pixel(5, 4));
        // left = round(1.5) = 2
        let img = gradient(7, 4);
        assert_eq!(center_crop(&img, 4).get_pixel(0, 0), img.get_pixel(2, 0));
    }

    #[test]
    fn center_crop_pads_small_images_with_zeros() {
        let img = RgbImage::from_pixel(3, 6, ::image::Rgb([9, 9, 9]));
        let c = center_crop(&img, 6);
        // pad (6-3)//2 = 1 left, 2 right
        let row: Vec<u8> = (0..6).map(|x| c.get_pixel(x, 0).0[0]).collect();
        assert_eq!(row, [0, 9, 9, 9, 0, 0]);
        assert!((0..6).all(|y| c.get_pixel(1, y).0 == [9, 9, 9]));
    }

    #[test]
    fn shorter_side_rule_truncates_the_long_side() {
        assert_eq!(shorter_side_dims(640, 427, 224), (335, 224)); // 335.74
        assert_eq!(shorter_side_dims(427, 640, 224), (224, 335));
        assert_eq!(shorter_side_dims(500, 500, 224), (224, 224));
        assert_eq!(shorter_side_dims(100, 150, 224), (224, 336));
        assert_eq!(shorter_side_dims(3, 1000, 224), (224, 74666)); // 74666.67
        let r = resize_shorter_side(&gradient(451, 300), 224);
        assert_eq!(r.dimensions(), (336, 224));
    }

    #[test]
    fn fused_crop_equals_resize_then_crop() {
        for (w, h) in [(451, 300), (300, 700), (224, 500), (600, 224), (100, 60), (224, 224)] {
            let img = gradient(w, h);
            let want = center_crop(&resize_shorter_side(&img, 224), 224);
            assert_eq!(resize_and_center_crop(&img, 224), want, "{w}x{h}");
        }
    }

    #[test]
    fn resize_to_same_size_is_identity() {
        let img = gradient(224, 300);
        assert_eq!(resize_shorter_side(&img, 224).dimensions(), (224, 300));
        assert_eq!(resize_shorter_side(&img, 224), img);
    }

    #[test]
    fn normalisation_of_a_constant_image() {
        let img = RgbImage::from_pixel(5, 4, ::image::Rgb([0, 128, 255]));
        let t = normalize_to_tensor(&img);
        assert_eq!(t.size(), [3, 4, 5]);
        let hand = [
            (0.0 - 0.48145466) / 0.26862954,
            (128.0 / 255.0 - 0.4578275) / 0.26130258,
            (1.0 - 0.40821073) / 0.27577711,
        ];
        for (c, want) in hand.into_iter().enumerate() {
            let plane = t.get(c as i64);
            let (lo, hi) = (plane.min().double_value(&[]), plane.max().double_value(&[]));
            assert!((lo - want).abs() < 1e-6 && (hi - want).abs() < 1e-6, "channel {c}: {lo}..{hi} vs {want}");
        }
    }

    #[test]
    fn table_normalisation_equals_arithmetic_one() {
        // Every value of every channel, in a 16×48 image, as is and mirrored.
        let img = RgbImage::from_fn(16, 48, |x, y| {
            let v = (y * 16 + x) as u8;
            ::image::Rgb([v, v.wrapping_mul(7), 255 - v])
        });
        let mut want = vec![0f32; 3 * 16 * 48];
        let mut got = vec![0f32; 3 * 16 * 48];
        normalize_into(&img, &mut want);
        normalize_flip_into(img.as_raw(), 16, false, &mut got);
        assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()));
        normalize_into(&::image::imageops::flip_horizontal(&img), &mut want);
        normalize_flip_into(img.as_raw(), 16, true, &mut got);
        assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_ne!(got[0], got[15], "the mirrored row differs from the plain one");
    }

    #[test]
    fn jpeg_marker_walk() {
        // SOI, APP0 (len 4), SOS (len 3) + entropy data with stuffed FF00 and RST0, EOI
        let ok = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xDA, 0, 3, 0, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF,
            0xFF, 0xD9, 0xAA,
        ];
        assert!(jpeg_reaches_eoi(&ok));
        assert!(!jpeg_reaches_eoi(&ok[..ok.len() - 2]));
        assert!(!jpeg_reaches_eoi(&ok[..10]));
    }

    #[test]
    fn bad_files_are_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.png");
        let text = dir.path().join("x.jpg");
        std::fs::write(&text, "not an image at all\n").unwrap();
        let e = load_rgb(&missing).unwrap_err().to_string();
        assert_eq!(e, format!("{}: no such file", missing.display()));
        let e = load_rgb(&text).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: not a readable image (", text.display())), "{e}");
        let err = preprocess_test_batch(&[missing.clone(), text.clone()], 8).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&missing.display().to_string()) && msg.contains(&text.display().to_string()), "{msg}");
    }
}
