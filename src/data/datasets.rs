//! Dataset layouts: which folder under `--root` holds a dataset (CoOp's name or CLIP-LoRA's),
//! where its images and split lists are, and how to get train/val/test lists from them. The
//! per-dataset facts live in `data-manifests/*.json`, compiled into the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ::image::RgbImage;
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::idx;
use super::official_lists;
use super::pyrandom::PyRandom;
use super::split_file::{self, SplitLists};

const MANIFESTS: &[&str] = &[
    include_str!("../../data-manifests/caltech101.json"),
    include_str!("../../data-manifests/oxford_pets.json"),
    include_str!("../../data-manifests/stanford_cars.json"),
    include_str!("../../data-manifests/oxford_flowers.json"),
    include_str!("../../data-manifests/food101.json"),
    include_str!("../../data-manifests/fgvc_aircraft.json"),
    include_str!("../../data-manifests/sun397.json"),
    include_str!("../../data-manifests/dtd.json"),
    include_str!("../../data-manifests/eurosat.json"),
    include_str!("../../data-manifests/ucf101.json"),
    include_str!("../../data-manifests/imagenet.json"),
    include_str!("../../data-manifests/imagefolder.json"),
    include_str!("../../data-manifests/fashion-mnist.json"),
    include_str!("../../data-manifests/imagenetv2.json"),
    include_str!("../../data-manifests/imagenet-sketch.json"),
    include_str!("../../data-manifests/imagenet-a.json"),
    include_str!("../../data-manifests/imagenet-r.json"),
];

/// How a dataset's train/val/test lists are obtained.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// A CoOp `split_zhou_*.json` (or one we generate, see [`Generate`]).
    SplitFile,
    /// `variants.txt` + `images_variant_{train,val,test}.txt`.
    FgvcAircraft,
    /// `classnames.txt` + `images/{train,val}/<wnid>/`.
    Imagenet,
    /// Test only: `classnames.txt` + one folder per ImageNet label index (ImageNet-V2).
    ImagenetLabelFolders,
    /// Test only: `classnames.txt` + one folder per WordNet id (ImageNet-Sketch, -A, -R).
    ImagenetWnidFolders,
}

/// How to make a split file where the dataset has none.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Generate {
    /// One folder per class, 50/20/30 per class (CoOp's `read_and_split_data`).
    ClassFolders,
    /// IDX train file split 80/20 per class into train/val (CoOp's `split_trainval`), IDX test
    /// file as test.
    IdxTrainval,
    /// OxfordPets' `annotations/{trainval,test}.txt`, trainval split 80/20.
    PetsAnnotations,
    /// SUN397's `ClassName.txt`, `Training_01.txt`, `Testing_01.txt`, training split 80/20.
    Sun397Lists,
    /// UCF101's `ucfTrainTestlist/`, train list split 80/20.
    Ucf101Lists,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Sizes {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct IdxFiles {
    pub train_images: String,
    pub train_labels: String,
    pub test_images: String,
    pub test_labels: String,
}

/// One `data-manifests/*.json`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The `--dataset` value.
    pub name: String,
    pub display_name: String,
    /// Other accepted `--dataset` spellings (compared ignoring case, `-` and `_`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Folder names under `--root`, CoOp's first; `--root` itself is tried after them.
    pub folders: Vec<String>,
    /// The folder the split's image paths are relative to, inside the dataset folder.
    pub image_dir: String,
    pub layout: Layout,
    #[serde(default)]
    pub split_file: Option<String>,
    #[serde(default)]
    pub generate: Option<Generate>,
    /// Class folders that are not classes (Caltech101's `BACKGROUND_Google`, `Faces_easy`).
    #[serde(default)]
    pub ignored_classes: Vec<String>,
    /// Folder name → class name, applied when a split is generated.
    #[serde(default)]
    pub rename_classes: BTreeMap<String, String>,
    /// Class names by label, for formats that store only numbers (IDX).
    #[serde(default)]
    pub classnames: Vec<String>,
    #[serde(default)]
    pub idx_files: Option<IdxFiles>,
    /// Whether CoOp samples a few-shot val set (ImageNet's loader does not).
    #[serde(default = "yes")]
    pub fewshot_val: bool,
    /// A test-only dataset: its split has a test list and no train/val (no few-shot sampling).
    #[serde(default)]
    pub test_only: bool,
    /// The dataset whose classes these are (ImageNet for its variants): a model adapted there
    /// must have been trained on every class of this one to be evaluated on it.
    #[serde(default)]
    pub subset_of: Option<String>,
    /// Prompt template; `{}` is the class name with underscores as spaces.
    pub template: String,
    /// Other names of a class, for pretraining captions (`pretrain --captions synonyms`).
    /// Pretrained foundations depend on these tables: changing them needs a new `SCHEMA` in
    /// src/stages/pretrain.rs.
    #[serde(default)]
    pub caption_synonyms: BTreeMap<String, Vec<String>>,
    /// Coarse captions and the classes each describes (`a photo of footwear.`), ditto.
    #[serde(default)]
    pub coarse_captions: BTreeMap<String, Vec<String>>,
    /// Class count and split sizes of the full dataset as CoOp distributes it.
    #[serde(default)]
    pub classes: Option<usize>,
    #[serde(default)]
    pub sizes: Option<Sizes>,
    #[serde(default)]
    pub notes: Option<String>,
}

fn yes() -> bool {
    true
}

/// Every built-in manifest.
pub fn manifests() -> Vec<Manifest> {
    MANIFESTS
        .iter()
        .map(|text| serde_json::from_str(text).unwrap_or_else(|e| panic!("built-in data manifest is invalid: {e}")))
        .collect()
}

fn normalise(name: &str) -> String {
    name.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_lowercase).collect()
}

/// The manifest for a `--dataset` value.
pub fn manifest(name: &str) -> Result<Manifest> {
    let all = manifests();
    let wanted = normalise(name);
    all.iter().find(|m| std::iter::once(&m.name).chain(&m.aliases).any(|a| normalise(a) == wanted)).cloned().ok_or_else(
        || {
            let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
            anyhow!("--dataset `{name}` is unknown; use one of {}", names.join(", "))
        },
    )
}

/// A dataset found on disk.
#[derive(Clone, Debug)]
pub struct Location {
    pub manifest: Manifest,
    pub dataset_dir: PathBuf,
    pub image_dir: PathBuf,
}

impl Location {
    pub fn split_file_path(&self) -> Option<PathBuf> {
        self.manifest.split_file.as_ref().map(|f| self.dataset_dir.join(f))
    }
}

/// Find the dataset under `root`: `root/<folder>` for each known folder name, then `root`
/// itself, accepting the first that has the layout's marker (image folder, list file).
pub fn locate(manifest: &Manifest, root: &Path) -> Result<Location> {
    let candidates: Vec<PathBuf> =
        manifest.folders.iter().map(|f| root.join(f)).chain(std::iter::once(root.to_owned())).collect();
    let marker = |dir: &Path| -> PathBuf {
        match (&manifest.layout, &manifest.idx_files) {
            (Layout::FgvcAircraft, _) => dir.join("variants.txt"),
            (_, Some(files)) => dir.join(&manifest.image_dir).join(&files.train_images),
            _ => dir.join(&manifest.image_dir),
        }
    };
    for dir in &candidates {
        if marker(dir).exists() {
            return Ok(Location {
                manifest: manifest.clone(),
                dataset_dir: dir.clone(),
                image_dir: if manifest.image_dir.is_empty() { dir.clone() } else { dir.join(&manifest.image_dir) },
            });
        }
    }
    let looked: Vec<String> = candidates.iter().map(|d| marker(d).display().to_string()).collect();
    bail!(
        "no {} dataset under {}: looked for {} (CoOp and CLIP-LoRA layouts); pass {} as --root",
        manifest.display_name,
        root.display(),
        looked.join(", "),
        match manifest.folders.first().map_or(manifest.image_dir.as_str(), String::as_str) {
            // imagefolder: the root is the dataset itself.
            "" => "the folder whose sub-folders are the classes".to_string(),
            name => format!("the folder that holds `{name}`"),
        },
    )
}

/// Where a dataset's lists came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListSource {
    /// Read from this CoOp split file.
    SplitFile(PathBuf),
    /// Made the CoOp way because no split file exists; CoOp would save it at this path.
    Generated(PathBuf),
    /// The dataset's own list files (FGVCAircraft, ImageNet).
    Native,
}

/// The dataset's full train/val/test lists. A split that has to be generated uses its own
/// generator seeded with `split_seed`, separate from the few-shot seed.
pub fn load_lists(loc: &Location, split_seed: i64) -> Result<(SplitLists, ListSource)> {
    let m = &loc.manifest;
    match m.layout {
        Layout::FgvcAircraft => Ok((official_lists::read_fgvc_aircraft(&loc.dataset_dir)?, ListSource::Native)),
        Layout::Imagenet => Ok((read_imagenet(loc)?, ListSource::Native)),
        Layout::ImagenetLabelFolders | Layout::ImagenetWnidFolders => {
            let lists = super::imagenet_variants::read(loc)?;
            Ok((SplitLists { train: Vec::new(), val: None, test: lists.test }, ListSource::Native))
        }
        Layout::SplitFile => {
            let path = loc.split_file_path().context("split-file layout without split_file in its manifest")?;
            if path.exists() {
                return Ok((split_file::read_coop_json(&path)?, ListSource::SplitFile(path)));
            }
            let lists = match m.generate {
                Some(Generate::ClassFolders) => split_file::generate_from_class_folders(
                    &loc.image_dir,
                    &m.ignored_classes,
                    &m.rename_classes,
                    split_seed,
                )?,
                Some(Generate::IdxTrainval) => generate_idx(loc, split_seed)?,
                Some(Generate::PetsAnnotations) => {
                    official_lists::read_oxford_pets(&loc.dataset_dir, &mut PyRandom::new(split_seed))?
                }
                Some(Generate::Sun397Lists) => {
                    official_lists::read_sun397(&loc.dataset_dir, &mut PyRandom::new(split_seed))?
                }
                Some(Generate::Ucf101Lists) => {
                    official_lists::read_ucf101(&loc.dataset_dir, &mut PyRandom::new(split_seed))?
                }
                None => bail!(
                    "{}: no such split file; {} splits cannot be made from the images alone, download CoOp's {} (see CoOp's DATASETS.md)",
                    path.display(),
                    m.display_name,
                    path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                ),
            };
            Ok((lists, ListSource::Generated(path)))
        }
    }
}

fn read_imagenet(loc: &Location) -> Result<SplitLists> {
    // CoOp caches its listing (in os.listdir order) as preprocessed.pkl; where a user has it,
    // its order is the one their few-shot samples were drawn from.
    let pkl = loc.dataset_dir.join("preprocessed.pkl");
    if pkl.exists() {
        let lists = super::pickle::read_datum_lists(&pkl)?;
        let relative = |items: &[super::pickle::PickledDatum]| -> Vec<split_file::Datum> {
            items.iter().map(|d| d.to_datum(last_components(&d.impath, 3))).collect()
        };
        let get = |key: &str| {
            lists
                .get(key)
                .ok_or_else(|| anyhow!("{}: no \"{key}\" list; delete the file to list the folders", pkl.display()))
        };
        return Ok(SplitLists { train: relative(get("train")?), val: None, test: relative(get("test")?) });
    }
    official_lists::read_imagenet_folders(&loc.dataset_dir, &loc.image_dir)
}

/// The last `n` `/`-separated components of a path (`train/<wnid>/<file>` for ImageNet).
fn last_components(path: &str, n: usize) -> String {
    let parts: Vec<&str> = path.split(['/', '\\']).collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

fn generate_idx(loc: &Location, split_seed: i64) -> Result<SplitLists> {
    let m = &loc.manifest;
    let files = m.idx_files.as_ref().context("idx-trainval manifest without idx_files")?;
    let trainval = idx::labelled_items(&loc.image_dir, &files.train_images, &files.train_labels, &m.classnames)?;
    let test = idx::labelled_items(&loc.image_dir, &files.test_images, &files.test_labels, &m.classnames)?;
    let mut rng = PyRandom::new(split_seed);
    let (train, val) = split_file::split_trainval(&mut rng, &trainval)?;
    Ok(SplitLists { train, val: Some(val), test })
}

/// Decode one image of the dataset to RGB: an image file, or an image inside an IDX file.
pub fn load_image(image_dir: &Path, impath: &str) -> Result<RgbImage> {
    match idx::parse_virtual(impath) {
        Some((file, index)) => idx::load_image(&image_dir.join(file), index),
        None => super::image::load_rgb(&image_dir.join(impath)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_parses_and_names_are_unique() {
        let all = manifests();
        assert_eq!(all.len(), MANIFESTS.len());
        let mut seen = std::collections::HashSet::new();
        for m in &all {
            for n in std::iter::once(&m.name).chain(&m.aliases) {
                assert!(seen.insert(normalise(n)), "{n} used twice");
            }
            assert!(m.template.contains("{}"), "{}", m.name);
            assert_eq!(m.layout == Layout::SplitFile, m.split_file.is_some(), "{}", m.name);
        }
    }

    #[test]
    fn caption_tables_name_the_manifests_classes() {
        for m in manifests() {
            let named = m.caption_synonyms.keys().chain(m.coarse_captions.values().flatten());
            for name in named {
                assert!(m.classnames.contains(name), "{}: `{name}` is not one of its classnames", m.name);
            }
        }
        assert_eq!(manifest("fashion-mnist").unwrap().caption_synonyms["sneaker"][0], "trainer");
    }

    #[test]
    fn names_and_aliases_resolve() {
        assert_eq!(manifest("DescribableTextures").unwrap().name, "dtd");
        assert_eq!(manifest("FGVCAircraft").unwrap().name, "fgvc_aircraft");
        assert_eq!(manifest("flowers102").unwrap().name, "oxford_flowers");
        assert_eq!(manifest("Fashion_MNIST").unwrap().name, "fashion-mnist");
        // CoOp's config names of ImageNet's variants, and the folders they live in.
        for (alias, name) in [
            ("ImageNetV2", "imagenetv2"),
            ("imagenet_sketch", "imagenet-sketch"),
            ("ImageNetA", "imagenet-a"),
            ("imagenet-rendition", "imagenet-r"),
        ] {
            let m = manifest(alias).unwrap();
            assert_eq!(m.name, name);
            assert!(m.test_only && m.subset_of.as_deref() == Some("imagenet"), "{name}");
        }
        let e = manifest("cifar").unwrap_err().to_string();
        assert!(e.contains("caltech101") && e.contains("imagefolder"), "{e}");
    }

    #[test]
    fn caltech_fixes_match_coop() {
        let m = manifest("caltech101").unwrap();
        assert_eq!(m.ignored_classes, ["BACKGROUND_Google", "Faces_easy"]);
        assert_eq!(m.rename_classes["Faces"], "face");
        assert_eq!(m.rename_classes.len(), 4);
        assert!(m.folders.contains(&"Caltech101".to_owned()));
    }

    #[test]
    fn last_components_of_pickled_paths() {
        assert_eq!(last_components("/data/imagenet/images/train/n01/x.JPEG", 3), "train/n01/x.JPEG");
        assert_eq!(last_components("x.JPEG", 3), "x.JPEG");
    }
}
