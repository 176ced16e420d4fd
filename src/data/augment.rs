//! CLIP's training augmentation (RandomResizedCrop with an area range, 0.08–1 by default, and
//! ratio 3/4–4/3, bicubic, then a horizontal flip at p = 0.5, then normalisation) and the loader
//! that feeds batches to the model. Every random draw comes from a stream derived from (seed, epoch, position), so
//! an epoch's batches are the same however many threads build them.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use anyhow::Result;
use image::RgbImage;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::crop_scale::CropScale;
use super::image::{load_rgb_into, normalize_flip_into};
use super::resize::bicubic_resize_rect_into;
use crate::rng::SplitMix64;

pub const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// A crop box in the source image and whether to mirror the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropParams {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
    pub flip: bool,
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a box of random area and aspect
/// ratio that fits, else the central crop clamped to the ratio range. Python's `round` (half
/// to even) decides the box size, as there.
pub fn random_resized_crop(rng: &mut SplitMix64, width: u32, height: u32) -> CropParams {
    random_resized_crop_scaled(rng, width, height, CropScale::FEW_SHOT)
}

/// The same with another range of the crop's area fraction.
pub fn random_resized_crop_scaled(rng: &mut SplitMix64, width: u32, height: u32, scale: CropScale) -> CropParams {
    let area = f64::from(width) * f64::from(height);
    let (log_lo, log_hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.min, scale.max);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let w = (target_area * aspect).sqrt().round_ties_even() as i64;
        let h = (target_area / aspect).sqrt().round_ties_even() as i64;
        if 0 < w && w <= i64::from(width) && 0 < h && h <= i64::from(height) {
            let top = rng.below_inclusive((i64::from(height) - h) as u64) as u32;
            let left = rng.below_inclusive((i64::from(width) - w) as u64) as u32;
            let flip = rng.next_f64() < 0.5;
            return CropParams { top, left, height: h as u32, width: w as u32, flip };
        }
    }
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < RATIO.0 {
        (width, (f64::from(width) / RATIO.0).round_ties_even() as u32)
    } else if in_ratio > RATIO.1 {
        ((f64::from(height) * RATIO.1).round_ties_even() as u32, height)
    } else {
        (width, height)
    };
    let flip = rng.next_f64() < 0.5;
    CropParams { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w, flip }
}

/// Crop, resize to `size`×`size` with Pillow's bicubic, mirror if asked.
pub fn apply_crop(img: &RgbImage, crop: CropParams, size: u32) -> RgbImage {
    let mut pixels = Vec::new();
    crop_resize(img.as_raw(), img.width(), crop, size, &mut pixels);
    let mut out = RgbImage::from_raw(size, size, pixels).expect("size×size×3 bytes");
    if crop.flip {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// The crop of RGB `pixels` (`width` per row) resized into `out`, not yet mirrored.
fn crop_resize(pixels: &[u8], width: u32, crop: CropParams, size: u32, out: &mut Vec<u8>) {
    let rect = (crop.left as usize, crop.top as usize, crop.width as usize, crop.height as usize);
    bicubic_resize_rect_into::<3>(pixels, width as usize, rect, (size as usize, size as usize), out);
}

/// `normalize_into(&apply_crop(img, crop, size), out)`, without the intermediate images.
pub fn augment_into(img: &RgbImage, crop: CropParams, size: u32, out: &mut [f32]) {
    augment_pixels_into(img.as_raw(), img.width(), crop, size, out);
}

thread_local! {
    /// Per-thread pixel buffers reused from image to image (see `SCRATCH` in `resize`).
    static RESIZED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn augment_pixels_into(pixels: &[u8], width: u32, crop: CropParams, size: u32, out: &mut [f32]) {
    RESIZED.with_borrow_mut(|resized| {
        crop_resize(pixels, width, crop, size, resized);
        normalize_flip_into(resized, size as usize, crop.flip, out);
    });
}

/// Few-shot training data, decoded once and kept in memory for the whole run.
pub struct TrainSet {
    pub images: Arc<Vec<RgbImage>>,
    pub labels: Vec<i64>,
}

/// How many batches an epoch of `len` images has (see [`epoch_batches`]).
pub fn batches_per_epoch(len: usize, batch_size: usize) -> usize {
    if len >= batch_size { len / batch_size } else { usize::from(len > 0) }
}

/// Batches of one epoch: shuffled with the (seed, epoch) stream, the last partial batch dropped
/// only when the set holds at least one full batch (as Dassl's train loader does).
pub fn epoch_batches(len: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    SplitMix64::derive(seed, epoch as u64, u64::MAX).shuffle(&mut order);
    let drop_last = len >= batch_size;
    order.chunks(batch_size).filter(|chunk| !drop_last || chunk.len() == batch_size).map(<[usize]>::to_vec).collect()
}

/// One augmented batch: images [B, 3, size, size] normalised, labels [B] int64.
pub fn make_batch(
    set: &TrainSet,
    indices: &[usize],
    seed: u64,
    epoch: usize,
    size: u32,
    scale: CropScale,
) -> (Tensor, Tensor) {
    let images = fill_batch(indices, size, |i, dst| {
        let img = &set.images[i];
        let mut rng = SplitMix64::derive(seed, epoch as u64, i as u64);
        let crop = random_resized_crop_scaled(&mut rng, img.width(), img.height(), scale);
        augment_into(img, crop, size, dst);
        Ok(())
    })
    .expect("augmenting a decoded image cannot fail");
    let labels: Vec<i64> = indices.iter().map(|&i| set.labels[i]).collect();
    (images, Tensor::from_slice(&labels))
}

/// A `[B, 3, size, size]` f32 tensor whose image `b` is written by `item(indices[b], slot)`, the
/// images in parallel (rayon) straight into the tensor's memory. The first error, if any.
fn fill_batch(indices: &[usize], size: u32, item: impl Fn(usize, &mut [f32]) -> Result<()> + Sync) -> Result<Tensor> {
    let per_image = 3 * (size * size) as usize;
    let s = i64::from(size);
    let images = Tensor::empty([indices.len() as i64, 3, s, s], (Kind::Float, Device::Cpu));
    if !indices.is_empty() {
        // SAFETY: a new contiguous CPU f32 tensor holding exactly this many values, not yet
        // shared: nothing else reads or writes its memory while the slice lives.
        let buffer =
            unsafe { std::slice::from_raw_parts_mut(images.data_ptr().cast::<f32>(), indices.len() * per_image) };
        buffer.par_chunks_mut(per_image).zip(indices.par_iter()).try_for_each(|(dst, &i)| item(i, dst))?;
    }
    Ok(images)
}

/// Train images read from their files at every epoch rather than kept decoded, for sets too
/// large to hold in memory (every file is decoded once per epoch, as a PyTorch `DataLoader`
/// does). Batches are those of a [`TrainSet`] holding `load_rgb` of the same files, to the bit.
pub struct FileTrainSet {
    pub paths: Vec<PathBuf>,
    pub labels: Vec<i64>,
}

/// [`make_batch`] for a [`FileTrainSet`]: each image is decoded (into a buffer its thread reuses)
/// and augmented. Fails with the first file that cannot be read.
pub fn make_file_batch(
    set: &FileTrainSet,
    indices: &[usize],
    seed: u64,
    epoch: usize,
    size: u32,
    scale: CropScale,
) -> Result<(Tensor, Tensor)> {
    let images = fill_batch(indices, size, |i, dst| {
        DECODED.with_borrow_mut(|pixels| {
            let (width, height) = load_rgb_into(&set.paths[i], pixels)?;
            let mut rng = SplitMix64::derive(seed, epoch as u64, i as u64);
            let crop = random_resized_crop_scaled(&mut rng, width, height, scale);
            augment_pixels_into(pixels, width, crop, size, dst);
            Ok(())
        })
    })?;
    let labels: Vec<i64> = indices.iter().map(|&i| set.labels[i]).collect();
    Ok((images, Tensor::from_slice(&labels)))
}

/// [`prefetch_epoch`] for a [`FileTrainSet`]: the epoch's batches, each built (decoded and
/// augmented) while the consumer works on the previous one.
pub fn prefetch_file_epoch(
    set: Arc<FileTrainSet>,
    batch_size: usize,
    seed: u64,
    epoch: usize,
    size: u32,
    scale: CropScale,
    skip: usize,
) -> impl Iterator<Item = Result<(Tensor, Tensor)>> {
    let batches: Vec<Vec<usize>> =
        epoch_batches(set.labels.len(), batch_size, seed, epoch).into_iter().skip(skip).collect();
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        for indices in batches {
            let batch = make_file_batch(&set, &indices, seed, epoch, size, scale);
            let failed = batch.is_err();
            if sender.send(batch).is_err() || failed {
                break; // the consumer stopped early, or the epoch cannot be completed
            }
        }
    });
    receiver.into_iter()
}

/// A run's train images: decoded once and kept when the run passes over them several times, or
/// read from their files batch by batch for a single pass (stage 1's one epoch), where keeping
/// them gains nothing and costs the memory of every decoded image at once. Either way each file
/// is decoded once per run, and the batches are the same to the bit.
#[derive(Clone)]
pub enum TrainImages {
    Decoded(Arc<TrainSet>),
    Files(Arc<FileTrainSet>),
}

impl TrainImages {
    /// The epoch's batches, built one ahead on a background thread; a file that cannot be read
    /// ends the epoch with its error.
    pub fn epoch(
        &self,
        batch_size: usize,
        seed: u64,
        epoch: usize,
        size: u32,
        scale: CropScale,
    ) -> Box<dyn Iterator<Item = Result<(Tensor, Tensor)>>> {
        self.epoch_from(batch_size, seed, epoch, size, scale, 0)
    }

    /// [`TrainImages::epoch`] without its first `skip` batches (a run resumed mid-epoch): the
    /// later batches are the same, since each is made from the epoch's order and its images'
    /// own streams alone.
    pub fn epoch_from(
        &self,
        batch_size: usize,
        seed: u64,
        epoch: usize,
        size: u32,
        scale: CropScale,
        skip: usize,
    ) -> Box<dyn Iterator<Item = Result<(Tensor, Tensor)>>> {
        match self {
            TrainImages::Decoded(set) => {
                Box::new(prefetch_epoch_from(set.clone(), batch_size, seed, epoch, size, scale, skip).map(Ok))
            }
            TrainImages::Files(set) => {
                Box::new(prefetch_file_epoch(set.clone(), batch_size, seed, epoch, size, scale, skip))
            }
        }
    }

    pub fn image_count(&self) -> usize {
        match self {
            TrainImages::Decoded(set) => set.labels.len(),
            TrainImages::Files(set) => set.labels.len(),
        }
    }
}

/// The epoch's batches, built one ahead on a background thread while the model works on the
/// current one.
pub fn prefetch_epoch(
    set: Arc<TrainSet>,
    batch_size: usize,
    seed: u64,
    epoch: usize,
    size: u32,
    scale: CropScale,
) -> impl Iterator<Item = (Tensor, Tensor)> {
    prefetch_epoch_from(set, batch_size, seed, epoch, size, scale, 0)
}

/// [`prefetch_epoch`] without the epoch's first `skip` batches.
pub fn prefetch_epoch_from(
    set: Arc<TrainSet>,
    batch_size: usize,
    seed: u64,
    epoch: usize,
    size: u32,
    scale: CropScale,
    skip: usize,
) -> impl Iterator<Item = (Tensor, Tensor)> {
    let batches: Vec<Vec<usize>> =
        epoch_batches(set.labels.len(), batch_size, seed, epoch).into_iter().skip(skip).collect();
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        for indices in batches {
            if sender.send(make_batch(&set, &indices, seed, epoch, size, scale)).is_err() {
                break; // the consumer stopped early (an error upstream)
            }
        }
    });
    receiver.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_scale_and_ratio_stay_in_range_over_10k_draws() {
        let mut rng = SplitMix64::new(11);
        let (w, h) = (500u32, 375u32);
        let (mut min_scale, mut max_scale) = (f64::MAX, 0f64);
        let (mut min_ratio, mut max_ratio) = (f64::MAX, 0f64);
        let mut flips = 0;
        for _ in 0..10_000 {
            let c = random_resized_crop(&mut rng, w, h);
            assert!(c.left + c.width <= w && c.top + c.height <= h);
            let scale = f64::from(c.width * c.height) / f64::from(w * h);
            let ratio = f64::from(c.width) / f64::from(c.height);
            min_scale = min_scale.min(scale);
            max_scale = max_scale.max(scale);
            min_ratio = min_ratio.min(ratio);
            max_ratio = max_ratio.max(ratio);
            flips += usize::from(c.flip);
        }
        // Rounding the box to whole pixels moves scale and ratio by a pixel's worth.
        assert!(min_scale > 0.075 && min_scale < 0.1, "min scale {min_scale}");
        assert!(max_scale <= 1.0 && max_scale > 0.9, "max scale {max_scale}");
        assert!(min_ratio > 0.74 && min_ratio < 0.77, "min ratio {min_ratio}");
        assert!(max_ratio < 1.345 && max_ratio > 1.3, "max ratio {max_ratio}");
        assert!((4_800..5_200).contains(&flips), "flips {flips}");
    }

    #[test]
    fn narrow_images_fall_back_to_a_central_crop() {
        // 1000×10: no box of ratio 3/4–4/3 with area ≥ 8% fits in ten tries.
        let mut rng = SplitMix64::new(0);
        let c = random_resized_crop(&mut rng, 1000, 10);
        assert_eq!((c.height, c.width), (10, 13));
        assert_eq!(c.left, (1000 - 13) / 2);
    }

    #[test]
    fn augmenting_in_place_equals_crop_resize_flip_normalise() {
        // The reference composition: copy the crop, Pillow's resize (checked against PIL by the
        // parity tests), mirror, normalise.
        let img = RgbImage::from_fn(301, 207, |x, y| image::Rgb([(x * 7 + y) as u8, (y * 13) as u8, (x ^ y) as u8]));
        let mut rng = SplitMix64::new(3);
        for _ in 0..20 {
            let crop = random_resized_crop(&mut rng, img.width(), img.height());
            let cropped = image::imageops::crop_imm(&img, crop.left, crop.top, crop.width, crop.height).to_image();
            let (w, h) = (crop.width as usize, crop.height as usize);
            let pixels = super::super::resize::bicubic_resize::<3>(cropped.as_raw(), w, h, 64, 64);
            let mut resized = RgbImage::from_raw(64, 64, pixels).unwrap();
            if crop.flip {
                image::imageops::flip_horizontal_in_place(&mut resized);
            }
            assert_eq!(apply_crop(&img, crop, 64), resized, "{crop:?}");
            let mut want = vec![0f32; 3 * 64 * 64];
            super::super::image::normalize_into(&resized, &mut want);
            let mut got = vec![0f32; 3 * 64 * 64];
            augment_into(&img, crop, 64, &mut got);
            assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{crop:?}");
        }
    }

    #[test]
    fn same_seed_same_batches() {
        let images: Vec<RgbImage> = (0..10)
            .map(|i| RgbImage::from_fn(40 + i, 30, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, i as u8 * 20])))
            .collect();
        let set = TrainSet { images: Arc::new(images), labels: (0..10).collect() };
        let set = Arc::new(set);
        let run = |seed| prefetch_epoch(set.clone(), 4, seed, 1, 16, CropScale::FEW_SHOT).collect::<Vec<_>>();
        let (a, b, c) = (run(5), run(5), run(6));
        assert_eq!(a.len(), 2, "10 images in batches of 4: the partial batch is dropped");
        for ((xa, ya), (xb, yb)) in a.iter().zip(&b) {
            assert!(xa.equal(xb) && ya.equal(yb));
        }
        assert!(!a[0].0.equal(&c[0].0));
        // Nor does the thread count matter.
        let batch_on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| make_batch(&set, &[3, 1, 4, 1, 5, 9, 2, 6], 5, 2, 16, CropScale::FEW_SHOT).0)
        };
        assert!(batch_on(1).equal(&batch_on(3)));
        assert_eq!(epoch_batches(3, 32, 0, 0).len(), 1, "a set smaller than a batch is kept whole");
        // A resumed epoch's later batches are the uninterrupted epoch's.
        let whole: Vec<_> = prefetch_epoch(set.clone(), 2, 5, 1, 16, CropScale::FEW_SHOT).collect();
        let rest: Vec<_> = prefetch_epoch_from(set.clone(), 2, 5, 1, 16, CropScale::FEW_SHOT, 3).collect();
        assert_eq!((whole.len(), rest.len()), (5, 2));
        for ((xa, ya), (xb, yb)) in whole[3..].iter().zip(&rest) {
            assert!(xa.equal(xb) && ya.equal(yb));
        }
    }

    #[test]
    fn file_batches_equal_decoded_batches() {
        // Colour and grey JPEGs and a PNG of different sizes, decoded in turn into the same
        // per-thread buffer (one thread), then on three.
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for i in 0..7u32 {
            let (w, h) = (40 + 13 * i, 90 - 7 * i);
            let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 5 + i) as u8, (y * 3) as u8, (x * y) as u8]));
            let path = dir.path().join(format!("{i}.{}", if i == 3 { "png" } else { "jpg" }));
            if i == 5 {
                image::DynamicImage::ImageRgb8(img).to_luma8().save(&path).unwrap();
            } else {
                img.save(&path).unwrap();
            }
            paths.push(path);
        }
        let images = paths.iter().map(|p| crate::data::image::load_rgb(p).unwrap()).collect();
        let labels: Vec<i64> = (0..7).collect();
        let decoded = TrainSet { images: Arc::new(images), labels: labels.clone() };
        let files = FileTrainSet { paths: paths.clone(), labels };
        let indices = [6, 0, 5, 3, 1, 2, 4];
        let (want, want_labels) = make_batch(&decoded, &indices, 9, 4, 32, CropScale::FEW_SHOT);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (got, got_labels) =
                pool.install(|| make_file_batch(&files, &indices, 9, 4, 32, CropScale::FEW_SHOT)).unwrap();
            assert!(got.equal(&want) && got_labels.equal(&want_labels), "{threads} thread(s)");
        }
        // What a stage sees: either kind of `TrainImages`, the same epoch.
        let (files, decoded) = (TrainImages::Files(Arc::new(files)), TrainImages::Decoded(Arc::new(decoded)));
        let epoch: Vec<_> = files.epoch(3, 9, 1, 32, CropScale::FEW_SHOT).map(Result::unwrap).collect();
        for ((a, la), (b, lb)) in epoch.iter().zip(decoded.epoch(3, 9, 1, 32, CropScale::FEW_SHOT).map(Result::unwrap))
        {
            assert!(a.equal(&b) && la.equal(&lb));
        }
        assert_eq!(epoch.len(), 2);

        let broken = FileTrainSet { paths: vec![paths[0].clone(), dir.path().join("gone.jpg")], labels: vec![0, 1] };
        let e = make_file_batch(&broken, &[0, 1], 9, 4, 32, CropScale::FEW_SHOT).unwrap_err().to_string();
        assert!(e.contains("gone.jpg: no such file"), "{e}");
    }
}
