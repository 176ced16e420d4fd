//! Renderings: fixed, deterministic transformations of a dataset's images that make a shifted
//! domain of it (the demo pretrains its foundation on one rendering of Fashion-MNIST and adapts
//! it on another). A rendering is applied to the decoded image, before any resizing, cropping or
//! augmentation, the same way to train, val and test images. docs/datasets.md lists them.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::resize::bicubic_resize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rendering {
    /// the images as they are
    #[default]
    Original,
    /// photo-negative, Gaussian blur σ 1, down-sampled to half the size and back up
    NegativeBlur,
    /// turned a quarter turn clockwise
    Rotated,
    /// contrast cut to a third: each value v becomes 85 + round(v / 3)
    LowContrast,
}

/// σ of [`Rendering::NegativeBlur`]'s blur, and how far its kernel reaches (3σ).
const BLUR_SIGMA: f64 = 1.0;
const BLUR_RADIUS: usize = 3;

impl Rendering {
    pub fn as_str(self) -> &'static str {
        match self {
            Rendering::Original => "original",
            Rendering::NegativeBlur => "negative-blur",
            Rendering::Rotated => "rotated",
            Rendering::LowContrast => "low-contrast",
        }
    }

    pub fn is_original(&self) -> bool {
        *self == Rendering::Original
    }

    /// The image in this rendering; every channel is treated alike.
    pub fn apply(self, img: RgbImage) -> RgbImage {
        match self {
            Rendering::Original => img,
            Rendering::NegativeBlur => down_up(&gaussian_blur(&negative(img))),
            Rendering::Rotated => image::imageops::rotate90(&img),
            Rendering::LowContrast => map_values(img, |v| 85 + ((u16::from(v) + 1) / 3) as u8),
        }
    }
}

fn map_values(mut img: RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    img.iter_mut().for_each(|v| *v = f(*v));
    img
}

fn negative(img: RgbImage) -> RgbImage {
    map_values(img, |v| 255 - v)
}

/// Taps at offsets −r..=r: exp(−k²/2σ²), normalised to sum 1.
fn gaussian_taps() -> Vec<f64> {
    let raw: Vec<f64> = (-(BLUR_RADIUS as i64)..=BLUR_RADIUS as i64)
        .map(|k| (-((k * k) as f64) / (2.0 * BLUR_SIGMA * BLUR_SIGMA)).exp())
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|w| w / sum).collect()
}

/// Separable Gaussian blur, rows then columns, edges extended (clamped), rounded to the
/// nearest value once at the end (f64 throughout, so the result is the same on every machine).
fn gaussian_blur(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let taps = gaussian_taps();
    let src = img.as_raw();
    let at = |i: usize, k: usize, n: usize| (i + k).saturating_sub(BLUR_RADIUS).min(n - 1);
    let mut rows = vec![0f64; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                rows[(y * w + x) * 3 + c] =
                    taps.iter().enumerate().map(|(k, t)| t * f64::from(src[(y * w + at(x, k, w)) * 3 + c])).sum();
            }
        }
    }
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let v: f64 = taps.iter().enumerate().map(|(k, t)| t * rows[(at(y, k, h) * w + x) * 3 + c]).sum();
                out[(y * w + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).expect("same size")
}

/// Down to half the size (rounded down, at least 1 px) and back, both with Pillow's bicubic.
fn down_up(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (sw, sh) = ((w / 2).max(1), (h / 2).max(1));
    let small = bicubic_resize::<3>(img.as_raw(), w, h, sw, sh);
    let back = bicubic_resize::<3>(&small, sw, sh, w, h);
    RgbImage::from_raw(w as u32, h as u32, back).expect("same size")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32, values: &[u8]) -> RgbImage {
        RgbImage::from_raw(w, h, values.iter().flat_map(|&v| [v, v, v]).collect()).unwrap()
    }

    fn values(img: &RgbImage) -> Vec<u8> {
        img.as_raw().iter().step_by(3).copied().collect()
    }

    #[test]
    fn original_is_untouched_and_others_are_not() {
        let img = grey(4, 2, &[0, 10, 20, 30, 200, 210, 220, 255]);
        assert_eq!(Rendering::Original.apply(img.clone()), img);
        for r in [Rendering::NegativeBlur, Rendering::Rotated, Rendering::LowContrast] {
            assert_ne!(r.apply(img.clone()), img, "{r:?}");
        }
    }

    #[test]
    fn low_contrast_maps_the_range_to_its_middle_third() {
        let img = grey(4, 1, &[0, 1, 128, 255]);
        assert_eq!(values(&Rendering::LowContrast.apply(img)), [85, 85, 128, 170]);
    }

    #[test]
    fn rotation_is_a_clockwise_quarter_turn() {
        // 1 2 3        4 1
        // 4 5 6   →    5 2
        //              6 3
        let img = grey(3, 2, &[1, 2, 3, 4, 5, 6]);
        let out = Rendering::Rotated.apply(img);
        assert_eq!(out.dimensions(), (2, 3));
        assert_eq!(values(&out), [4, 1, 5, 2, 6, 3]);
    }

    #[test]
    fn blur_of_a_point_is_the_gaussian() {
        // A single bright pixel in the middle of a 9×9 black image: the blurred row through it
        // is 255 × g(k) × g(0), g(k) = exp(−k²/2) / Σ_{|j|≤3} exp(−j²/2); Σ = 2.505_950 (by hand:
        // 1 + 2(0.606_531 + 0.135_335 + 0.011_109)).
        let mut v = vec![0u8; 81];
        v[40] = 255;
        let out = values(&gaussian_blur(&grey(9, 9, &v)));
        let g = |k: f64| (-k * k / 2.0).exp() / 2.505_950;
        for k in 0..=4usize {
            let expected = if k <= 3 { 255.0 * g(k as f64) * g(0.0) } else { 0.0 };
            assert_eq!(f64::from(out[40 + k]), expected.round(), "offset {k}");
            assert_eq!(out[40 + k], out[40 - k], "symmetric");
        }
    }

    #[test]
    fn flat_images_stay_flat_and_sizes_stay() {
        let flat = grey(28, 28, &[100; 784]);
        let out = Rendering::NegativeBlur.apply(flat);
        assert_eq!(out.dimensions(), (28, 28));
        assert!(values(&out).iter().all(|&v| v == 155), "negative of 100, blur and resampling keep it");
    }
}
