//! Which pretraining images are shown in the target rendering (the split's) and which in the
//! source rendering: per class, a fixed `target_fraction` of the images, chosen once per run
//! from the pretraining seed, so the foundation sees the same few target-domain images every
//! epoch (a small amount of target-domain data, as CLIP saw a little of every domain).

use image::RgbImage;

use crate::data::rendering::Rendering;
use crate::rng::SplitMix64;

/// Stream tag of the choice, apart from shuffling, crops and captions.
const STREAM: u64 = 0x7A26_E7F0;

/// Per image, whether it is shown in the target rendering: in each class, round(fraction · n)
/// images, the first of a seeded shuffle of that class's positions.
pub fn target_images(labels: &[i64], fraction: f64, seed: u64) -> Vec<bool> {
    let mut chosen = vec![false; labels.len()];
    let mut classes: Vec<i64> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    for class in classes {
        let mut positions: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        SplitMix64::derive(seed, STREAM, class as u64).shuffle(&mut positions);
        let take = (fraction * positions.len() as f64).round() as usize;
        for &i in &positions[..take.min(positions.len())] {
            chosen[i] = true;
        }
    }
    chosen
}

/// `images` (as decoded) in `target` where `in_target` says so, else in `source`.
pub fn render_mixed(images: Vec<RgbImage>, in_target: &[bool], target: Rendering, source: Rendering) -> Vec<RgbImage> {
    images.into_iter().zip(in_target).map(|(img, &t)| if t { target } else { source }.apply(img)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_gets_its_share_and_the_choice_follows_the_seed() {
        let labels: Vec<i64> = (0..300).map(|i| i % 3).collect();
        let chosen = target_images(&labels, 0.1, 7);
        for class in 0..3 {
            let n = (0..300).filter(|&i| labels[i] == class && chosen[i]).count();
            assert_eq!(n, 10, "class {class}");
        }
        assert_eq!(target_images(&labels, 0.1, 7), chosen);
        assert_ne!(target_images(&labels, 0.1, 8), chosen);
        assert!(target_images(&labels, 0.0, 7).iter().all(|&t| !t));
        assert!(target_images(&labels, 1.0, 7).iter().all(|&t| t));
    }

    #[test]
    fn images_take_the_rendering_they_were_given() {
        let img = RgbImage::from_raw(1, 1, vec![10, 10, 10]).unwrap();
        let out = render_mixed(vec![img.clone(), img], &[true, false], Rendering::Original, Rendering::LowContrast);
        assert_eq!(out[0].as_raw(), &[10, 10, 10]);
        assert_eq!(out[1].as_raw(), &[88, 88, 88], "85 + round(10 / 3)");
    }
}
