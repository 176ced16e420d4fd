//! A fake ImageNet (six classes) and its four test-only variants in CoOp's folder layout, a
//! few random-noise images per class: for the variant readers and for pipelines with targets.

use std::path::{Path, PathBuf};

/// A fake ImageNet: (WordNet id, class name) in label order (sorted ids), as classnames.txt.
pub const CLASSES: [(&str, &str); 6] = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
];
/// The ImageNet labels ImageNet-A and -R cover (three of six, as 200 of 1000), and their images
/// per class.
pub const A_CLASSES: [usize; 3] = [1, 3, 4];
pub const A_IMAGES: usize = 4;
pub const R_CLASSES: [usize; 3] = [0, 2, 5];
pub const R_IMAGES: [usize; 3] = [1, 2, 3];
/// ImageNet-V2 images in folder `i`; ImageNet-Sketch has two per class.
pub const V2_IMAGES: [usize; 6] = [1, 2, 1, 2, 1, 2];

/// A random-noise PNG, different for every `seed`, so a random model's answers vary.
pub fn noise_png(path: &Path, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut rng = clip_ast::rng::SplitMix64::new(seed + 1);
    let img = image::RgbImage::from_fn(12, 10, |_, _| {
        let mut c = || rng.uniform(0.0, 255.0) as u8;
        image::Rgb([c(), c(), c()])
    });
    img.save(path).unwrap();
}

pub fn classnames_txt(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let text: String = CLASSES.iter().map(|(wnid, name)| format!("{wnid} {name}\n")).collect();
    std::fs::write(dir.join("classnames.txt"), text).unwrap();
}

pub struct Data {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Data {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// `$DATA` with the four variants (and a tiny ImageNet) laid out as CoOp's DATASETS.md says.
pub fn data() -> Data {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let mut n = 0;
    let mut image = |path: PathBuf| {
        noise_png(&path, n);
        n += 1;
    };
    let v2 = root.join("imagenetv2");
    classnames_txt(&v2);
    for (label, &count) in V2_IMAGES.iter().enumerate() {
        for i in 0..count {
            image(v2.join(format!("imagenetv2-matched-frequency-format-val/{label}/{i}.jpeg")));
        }
    }
    let sketch = root.join("imagenet-sketch");
    classnames_txt(&sketch);
    for (wnid, _) in CLASSES {
        for i in 0..2 {
            image(sketch.join(format!("images/{wnid}/sketch_{i}.JPEG")));
        }
    }
    // A hidden file is not an image (CoOp's listdir_nohidden).
    std::fs::write(sketch.join(format!("images/{}/.DS_Store", CLASSES[0].0)), b"x").unwrap();
    for (folder, sub, classes, counts) in [
        ("imagenet-adversarial", "imagenet-a", A_CLASSES, [A_IMAGES; 3]),
        ("imagenet-rendition", "imagenet-r", R_CLASSES, R_IMAGES),
    ] {
        let dir = root.join(folder);
        classnames_txt(&dir);
        for (&class, count) in classes.iter().zip(counts) {
            for i in 0..count {
                image(dir.join(format!("{sub}/{}/{i}.jpg", CLASSES[class].0)));
            }
        }
        // The releases ship a README.txt beside the class folders; it is not a class.
        std::fs::write(dir.join(sub).join("README.txt"), "not a class").unwrap();
    }
    let imagenet = root.join("imagenet");
    classnames_txt(&imagenet);
    for (wnid, _) in CLASSES {
        for i in 0..2 {
            image(imagenet.join(format!("images/train/{wnid}/{wnid}_{i}.JPEG")));
        }
        image(imagenet.join(format!("images/val/{wnid}/val_{wnid}.JPEG")));
    }
    Data { tmp, root }
}
