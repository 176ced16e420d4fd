//! Where the training-augmentation time goes, one image at a time on one thread: the stages of
//! the straightforward path (copy the crop, resize, mirror, normalise into a tensor) and of the
//! one training uses (`bicubic_resize_rect` in place, then `augment_into` = resize + mirror +
//! normalise). `augment_profile FILE...`; prints ms per image per stage.

use std::time::Instant;

use clip_ast::data::augment::{augment_into, random_resized_crop};
use clip_ast::data::image::{load_rgb, normalize_to_tensor};
use clip_ast::data::resize::{bicubic_resize, bicubic_resize_rect};
use clip_ast::rng::SplitMix64;

fn main() -> anyhow::Result<()> {
    let paths: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    // One thread throughout (libtorch's OpenMP workers would otherwise spin after each sum).
    tch::set_num_threads(1);
    let mut t_ = [0f64; 9];
    let names = [
        "read file",
        "decode (image crate)",
        "load_rgb",
        "crop copy",
        "resize",
        "flip",
        "normalise+tensor",
        "resize_rect",
        "augment_into",
    ];
    let mut dst = vec![0f32; 3 * 224 * 224];
    let mut checksum = 0.0;
    for (i, p) in paths.iter().enumerate() {
        let mut lap = {
            let mut t = Instant::now();
            move || {
                let e = t.elapsed().as_secs_f64();
                t = Instant::now();
                e
            }
        };
        let bytes = std::fs::read(p)?;
        t_[0] += lap();
        let dec = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)?;
        t_[1] += lap();
        let img = load_rgb(p)?;
        t_[2] += lap();
        let mut rng = SplitMix64::derive(1, 0, i as u64);
        let c = random_resized_crop(&mut rng, img.width(), img.height());
        let cropped = image::imageops::crop_imm(&img, c.left, c.top, c.width, c.height).to_image();
        t_[3] += lap();
        let px = bicubic_resize::<3>(cropped.as_raw(), c.width as usize, c.height as usize, 224, 224);
        let mut out = image::RgbImage::from_raw(224, 224, px).unwrap();
        t_[4] += lap();
        if c.flip {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        t_[5] += lap();
        let x = normalize_to_tensor(&out);
        t_[6] += lap();
        let rect = (c.left as usize, c.top as usize, c.width as usize, c.height as usize);
        let fast = bicubic_resize_rect::<3>(img.as_raw(), img.width() as usize, rect, (224, 224));
        t_[7] += lap();
        augment_into(&img, c, 224, &mut dst);
        t_[8] += lap();
        checksum += f64::from(fast[0]) + f64::from(dst[0]);
        checksum += x.sum(tch::Kind::Float).double_value(&[]) + f64::from(dec.width());
    }
    let n = paths.len() as f64;
    let parts: Vec<String> = names.iter().zip(t_).map(|(k, s)| format!("{k} {:.3}", 1e3 * s / n)).collect();
    println!("{} images, ms/image: {}  (checksum {checksum})", paths.len(), parts.join(", "));
    Ok(())
}
