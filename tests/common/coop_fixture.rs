//! The ten datasets cross-dataset transfer is evaluated on, each a tiny tree in CoOp's folder
//! layout (CoOp's DATASETS.md; data-manifests/ names each reader's files): two classes, one
//! train, val and test image each, with CoOp's split file (or FGVCAircraft's own lists).

use std::path::Path;

use super::imagenet_fixture::noise_png;

/// (dataset, its folder under `$DATA`, the image folder inside it, CoOp's split file).
pub const SPLIT_FILE_DATASETS: [(&str, &str, &str, &str); 9] = [
    ("caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    ("oxford_pets", "oxford_pets", "images", "split_zhou_OxfordPets.json"),
    // Stanford Cars' split file names paths relative to the dataset folder itself.
    ("stanford_cars", "stanford_cars", "", "split_zhou_StanfordCars.json"),
    ("oxford_flowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    ("food101", "food-101", "images", "split_zhou_Food101.json"),
    ("sun397", "sun397", "SUN397", "split_zhou_SUN397.json"),
    ("dtd", "dtd", "images", "split_zhou_DescribableTextures.json"),
    ("eurosat", "eurosat", "2750", "split_zhou_EuroSAT.json"),
    ("ucf101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
];

const CLASSES: [&str; 2] = ["first", "second"];
const PARTS: [&str; 3] = ["train", "val", "test"];

/// Write the ten trees under `root`.
pub fn write(root: &Path) {
    let mut n = 1000;
    for (_, folder, image_dir, split_file) in SPLIT_FILE_DATASETS {
        let dir = root.join(folder);
        let mut split = serde_json::Map::new();
        for part in PARTS {
            let rows: Vec<serde_json::Value> = CLASSES
                .iter()
                .enumerate()
                .map(|(label, class)| {
                    let impath = format!("{class}/{part}_{label}.jpg");
                    noise_png(&dir.join(image_dir).join(&impath), n);
                    n += 1;
                    serde_json::json!([impath, label, class])
                })
                .collect();
            split.insert(part.to_string(), rows.into());
        }
        std::fs::write(dir.join(split_file), serde_json::to_vec(&split).unwrap()).unwrap();
    }
    // FGVCAircraft: variants.txt in label order; `<image id> <variant>` per image.
    let dir = root.join("fgvc_aircraft");
    let variants = ["707-320", "A300B4"];
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("variants.txt"), variants.join("\n") + "\n").unwrap();
    for part in PARTS {
        let mut lines = String::new();
        for variant in variants {
            let id = format!("{n:07}");
            noise_png(&dir.join(format!("images/{id}.jpg")), n);
            n += 1;
            lines.push_str(&format!("{id} {variant}\n"));
        }
        std::fs::write(dir.join(format!("images_variant_{part}.txt")), lines).unwrap();
    }
}
