//! The `split` stage: a dataset on disk → few-shot train/val lists identical to CoOp's for the
//! same seed, the test list, the test images preprocessed once, and a hash of every image used.
//!
//! Every check (dataset found, images exist, labels consistent, images decode) runs before
//! anything is written outside `out_dir`; the caller publishes `out_dir` atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Serialize;

use super::datasets::{self, ListSource, Location};
use super::fewshot::{ShortClass, coop_fewshot, shots_warning};
use super::file_hashes;
use super::pickle;
use super::pool::Pool;
use super::rendering::Rendering;
use super::split_file::{self, Datum, SplitLists};
use super::subsample::{self, Subsample};
use super::test_images;

/// Everything that determines a split artifact, plus where to keep the hash cache.
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// A `data-manifests/*.json` name or alias (`caltech101`, `DescribableTextures`, ...).
    pub dataset: String,
    /// The folder that holds the dataset folder (CoOp's `DATASET.ROOT`), or the dataset folder.
    pub root: PathBuf,
    /// Shots per class, K >= 1; 0 for a test-only dataset (ImageNet's variants).
    pub shots: i64,
    /// The few-shot seed (CoOp's `--seed`); no effect on a test-only dataset.
    pub seed: i64,
    pub subsample: Subsample,
    /// Side of the preprocessed test images (the model's input size).
    pub image_size: u32,
    /// Seed of the 50/20/30 split made where the dataset has no split file.
    pub split_seed: i64,
    /// Keep only the first N test images of each class (list order), for quick evaluations;
    /// `None` keeps the whole test set.
    pub test_per_class: Option<usize>,
    /// How every image of the split is rendered (`original`: as it is).
    pub rendering: Rendering,
    /// Which part of the train list the few-shot sample is drawn from.
    pub pool: Pool,
    /// blake3 cache file; `None` hashes every file every time.
    pub hash_cache: Option<PathBuf>,
    /// Save a generated split where CoOp looks for it (beside the images) if nothing is there.
    pub save_generated_split: bool,
    /// No progress notes on stderr (warnings still appear).
    pub quiet: bool,
}

/// What happened to CoOp's cached few-shot pickle for this K and seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickleCheck {
    Absent,
    Agrees(PathBuf),
    /// The pickle differs from our sample; the message says where first.
    Differs(PathBuf, String),
}

#[derive(Clone, Debug)]
pub struct SplitSummary {
    pub dataset: String,
    pub classnames: Vec<String>,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    pub list_source: ListSource,
    pub pickle_check: PickleCheck,
    pub files: usize,
    pub hash_cache_hits: usize,
    pub files_hashed: usize,
}

/// split.json's fields before its three lists.
#[derive(Serialize)]
struct SplitHeader<'a> {
    dataset: &'a str,
    classnames: &'a [String],
    template: &'a str,
    shots: i64,
    seed: i64,
    subsample: &'a str,
    split_seed: i64,
    image_size: u32,
    image_dir: String,
    list_source: String,
    #[serde(skip_serializing_if = "Rendering::is_original")]
    rendering: Rendering,
    #[serde(skip_serializing_if = "Pool::is_all")]
    pool: Pool,
}

/// The largest image side a split preprocesses to. CLIP models take 224 to 448 pixels; the
/// ceiling keeps a typo (`image_size = 100000`, 120 GB an image) from reaching an allocation.
pub const MAX_IMAGE_SIZE: i64 = 1024;

/// `--image-size` against its range (`settings::split` checks a pipeline's and a command's
/// values with the same bound; this is the last line before the allocation).
pub fn check_image_size(size: u32) -> Result<()> {
    if !(1..=MAX_IMAGE_SIZE).contains(&i64::from(size)) {
        bail!("--image-size {size}: must be in [1, {MAX_IMAGE_SIZE}] pixels");
    }
    Ok(())
}

/// Make the split artifact's files in `out_dir` (an existing, empty folder): `split.json`,
/// `files.json`, `test_images.safetensors`. On error `out_dir` may hold partial files and the
/// caller removes it; nothing outside it has been touched.
pub fn make_split(req: &SplitRequest, out_dir: &Path) -> Result<SplitSummary> {
    let manifest = datasets::manifest(&req.dataset)?;
    if manifest.test_only {
        return super::split_test_only::make_test_only_split(req, &manifest, out_dir);
    }
    if req.shots < 1 {
        bail!("--shots {}: must be at least 1 (images sampled per class)", req.shots);
    }
    check_image_size(req.image_size)?;
    let k = usize::try_from(req.shots).context("--shots is too large")?;
    let loc = datasets::locate(&manifest, &req.root)?;
    let (lists, source) = datasets::load_lists(&loc, req.split_seed)?;
    let source_name = describe(&source, manifest.generate);
    let classnames = class_names(&lists, &source_name)?;
    check_exist(&loc, &lists, &source_name)?;

    let (pool_train, pool_val) = req.pool.lists(&lists);
    if let Some(warning) = shots_warning(&pool_train, k) {
        eprintln!("{warning}");
    }
    let (train, val) = coop_fewshot(&pool_train, pool_val.as_deref(), k, req.seed, ShortClass::KeepAll);
    let pickle_check = check_pickle(&loc, k, req.seed, &train, &val);

    let map = subsample::relabeler(&train, req.subsample);
    let (train, val, test) = (
        subsample::apply(&train, &map),
        subsample::apply(&val, &map),
        limit_per_class(&subsample::apply(&lists.test, &map), req.test_per_class),
    );
    let classnames: Vec<String> = map.keys().map(|&old| classnames[old].clone()).collect();

    let mut bad = decode_errors(&loc.image_dir, train.iter().chain(&val));
    bad.extend(test_images::write(
        &out_dir.join("test_images.safetensors"),
        &loc.image_dir,
        &test,
        req.image_size,
        req.rendering,
    )?);
    if !bad.is_empty() {
        bail!("{} image(s) cannot be decoded; fix or remove them from the split: {}", bad.len(), bad.join("; "));
    }

    let files: Vec<String> = train
        .iter()
        .chain(&val)
        .chain(&test)
        .map(|d| file_part(&d.impath).to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|f| loc.image_dir.join(f)).collect();
    let hashes = file_hashes::hash_files(&paths, req.hash_cache.as_deref())?;
    write_json(
        &out_dir.join("files.json"),
        &serde_json::json!({
            "algorithm": "blake3",
            "image_dir": absolute(&loc.image_dir),
            "files": files.iter().zip(&hashes.blake3).collect::<BTreeMap<_, _>>(),
        }),
    )?;
    let header = SplitHeader {
        dataset: &manifest.name,
        classnames: &classnames,
        template: &manifest.template,
        shots: req.shots,
        seed: req.seed,
        subsample: req.subsample.as_str(),
        split_seed: req.split_seed,
        image_size: req.image_size,
        image_dir: absolute(&loc.image_dir),
        // The list file's name, whether this run generated it or read it: a rerun then writes
        // the same split.json.
        list_source: match &source {
            ListSource::SplitFile(p) | ListSource::Generated(p) => {
                p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
            }
            ListSource::Native => source_name.clone(),
        },
        rendering: req.rendering,
        pool: req.pool,
    };
    let text = split_json_text(&header, [("train", &train), ("val", &val), ("test", &test)])?;
    let split_path = out_dir.join("split.json");
    std::fs::write(&split_path, text).with_context(|| format!("{}: cannot write", split_path.display()))?;

    // CoOp saves the split it makes so later runs and other tools reuse it (a read-only dataset
    // folder only costs regenerating it). Splits of formats CoOp does not read (IDX) stay out of
    // the dataset folder, which may be a system one.
    if let ListSource::Generated(path) = &source
        && req.save_generated_split
        && manifest.generate != Some(datasets::Generate::IdxTrainval)
        && !path.exists()
        && let Err(e) = crate::fsutil::write_atomically_with(path, |tmp| split_file::write_coop_json(tmp, &lists))
    {
        eprintln!("note: generated split not saved beside the dataset: {e:#}");
    }
    // Warnings come last: a run that fails prints its one error line and nothing else.
    if let PickleCheck::Differs(path, why) = &pickle_check {
        eprintln!(
            "warning: {} differs from the few-shot split sampled for seed {} ({why}); this split uses the sampled one",
            path.display(),
            req.seed
        );
    }
    if !req.quiet {
        note_unexpected_sizes(&loc, &lists);
        eprintln!(
            "{}: {} classes, {} train, {} val, {} test images ({source_name}); {} files hashed, {} from cache",
            manifest.name,
            classnames.len(),
            train.len(),
            val.len(),
            test.len(),
            hashes.hashed,
            hashes.cache_hits
        );
    }
    Ok(SplitSummary {
        dataset: manifest.name.clone(),
        classnames,
        train: train.len(),
        val: val.len(),
        test: test.len(),
        list_source: source,
        pickle_check,
        files: files.len(),
        hash_cache_hits: hashes.cache_hits,
        files_hashed: hashes.hashed,
    })
}

fn describe(source: &ListSource, generate: Option<datasets::Generate>) -> String {
    match (source, generate) {
        (ListSource::SplitFile(p), _) => p.display().to_string(),
        (ListSource::Generated(_), Some(datasets::Generate::IdxTrainval)) => {
            "generated split: IDX train file 80/20 per class, IDX test file".to_owned()
        }
        (ListSource::Generated(p), Some(datasets::Generate::ClassFolders)) => {
            format!("generated 50/20/30 split (CoOp's {})", p.display())
        }
        (ListSource::Generated(p), _) => {
            format!("official lists, train split 80/20 (CoOp's {})", p.display())
        }
        (ListSource::Native, _) => "the dataset's own list files".to_owned(),
    }
}

/// split.json with one line per image, so a 50k-image test list stays readable and small.
pub(crate) fn split_json_text(header: &impl Serialize, lists: [(&str, &[Datum]); 3]) -> Result<String> {
    let head = serde_json::to_string_pretty(header)?;
    let mut text = head.strip_suffix("\n}").context("pretty JSON object")?.to_owned();
    for (name, items) in lists {
        text.push_str(&format!(",\n  \"{name}\": ["));
        for (i, d) in items.iter().enumerate() {
            text.push_str(if i == 0 { "\n    " } else { ",\n    " });
            text.push_str(&d.to_json().to_string());
        }
        text.push_str(if items.is_empty() { "]" } else { "\n  ]" });
    }
    text.push_str("\n}\n");
    Ok(text)
}

/// Class names by label. Each label must have one name, and labels must run 0..n-1 with train
/// images for each, or prompts and labels would be misaligned downstream.
fn class_names(lists: &SplitLists, source: &str) -> Result<Vec<String>> {
    let mut names: BTreeMap<usize, (&str, String)> = BTreeMap::new();
    let parts = [("train", Some(&lists.train)), ("val", lists.val.as_ref()), ("test", Some(&lists.test))];
    for (part, items) in parts {
        for (i, d) in items.into_iter().flatten().enumerate() {
            let seen = names.entry(d.label).or_insert((&d.classname, format!("{part}[{i}]")));
            if seen.0 != d.classname {
                bail!(
                    "{source}: label {} is `{}` at {} but `{}` at {part}[{i}]; each label needs one class name",
                    d.label,
                    seen.0,
                    seen.1,
                    d.classname
                );
            }
        }
    }
    let in_train: BTreeSet<usize> = lists.train.iter().map(|d| d.label).collect();
    if let Some(missing) = (0..names.len()).find(|l| !in_train.contains(l)) {
        bail!(
            "{source}: labels must run from 0 to {} with train images for each; label {missing} has none",
            names.len().saturating_sub(1)
        );
    }
    Ok(names.into_values().map(|(name, _)| name.to_owned()).collect())
}

fn check_exist(loc: &Location, lists: &SplitLists, source: &str) -> Result<()> {
    let files: BTreeSet<&str> = lists.all().map(|d| file_part(&d.impath)).collect();
    let files: Vec<&str> = files.into_iter().collect();
    let missing: Vec<&str> = files.par_iter().filter(|f| !loc.image_dir.join(f).is_file()).copied().collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = missing.iter().take(20).copied().collect();
    bail!(
        "{} of {} images named by {source} do not exist under {}: {}{}",
        missing.len(),
        files.len(),
        loc.image_dir.display(),
        shown.join(", "),
        if missing.len() > shown.len() { format!(" (first {} shown)", shown.len()) } else { String::new() }
    )
}

pub(crate) fn file_part(impath: &str) -> &str {
    super::idx::parse_virtual(impath).map_or(impath, |(file, _)| file)
}

fn decode_errors<'a>(image_dir: &Path, items: impl Iterator<Item = &'a Datum>) -> Vec<String> {
    let unique: BTreeSet<&str> = items.map(|d| d.impath.as_str()).collect();
    let unique: Vec<&str> = unique.into_iter().collect();
    unique
        .par_iter()
        .filter_map(|impath| datasets::load_image(image_dir, impath).err().map(|e| format!("{e:#}")))
        .collect()
}

/// Compare CoOp's cached `split_fewshot/shot_K-seed_S.pkl`, if the user has one, with our
/// sample. Its paths are absolute on whatever machine made it, so an entry matches when it ends
/// with our relative path. A pickle this reader cannot parse is reported as differing rather
/// than failing the split.
fn check_pickle(loc: &Location, k: usize, seed: i64, train: &[Datum], val: &[Datum]) -> PickleCheck {
    let path = loc.dataset_dir.join("split_fewshot").join(format!("shot_{k}-seed_{seed}.pkl"));
    if !path.exists() {
        return PickleCheck::Absent;
    }
    let lists = match pickle::read_datum_lists(&path) {
        Ok(lists) => lists,
        Err(e) => return PickleCheck::Differs(path, format!("not compared: {e:#}")),
    };
    for (name, ours) in [("train", train), ("val", val)] {
        let Some(theirs) = lists.get(name) else {
            if name == "val" && ours.is_empty() {
                continue;
            }
            return PickleCheck::Differs(path, format!("it has no {name} list"));
        };
        if let Some(why) = first_difference(name, theirs, ours) {
            return PickleCheck::Differs(path, why);
        }
    }
    PickleCheck::Agrees(path)
}

fn first_difference(name: &str, theirs: &[pickle::PickledDatum], ours: &[Datum]) -> Option<String> {
    for (i, (t, o)) in theirs.iter().zip(ours).enumerate() {
        let t_path = t.impath.replace('\\', "/");
        let same_path = t_path == o.impath || t_path.ends_with(&format!("/{}", o.impath));
        if !same_path || t.label != o.label || t.classname != o.classname {
            return Some(format!(
                "{name}[{i}] is {} (label {}) there, {} (label {}) here",
                t.impath, t.label, o.impath, o.label
            ));
        }
    }
    (theirs.len() != ours.len()).then(|| format!("{name} has {} items there, {} here", theirs.len(), ours.len()))
}

fn note_unexpected_sizes(loc: &Location, lists: &SplitLists) {
    let m = &loc.manifest;
    let all_classes = lists.train.iter().map(|d| d.label).collect::<BTreeSet<_>>().len();
    if let Some(expected) = m.classes.filter(|&c| c != all_classes) {
        eprintln!("note: {} has {all_classes} classes here; CoOp's has {expected}", m.display_name);
    }
    if let Some(s) = &m.sizes {
        let have = (lists.train.len(), lists.val.as_ref().map_or(0, Vec::len), lists.test.len());
        if have != (s.train, s.val, s.test) {
            eprintln!(
                "note: {} split sizes here are {}/{}/{} (train/val/test); CoOp's are {}/{}/{}",
                m.display_name, have.0, have.1, have.2, s.train, s.val, s.test
            );
        }
    }
}

pub(crate) fn absolute(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned()).display().to_string()
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// The first `limit` items of each label, in list order (all of them without a limit).
pub fn limit_per_class(items: &[Datum], limit: Option<usize>) -> Vec<Datum> {
    let Some(limit) = limit else { return items.to_vec() };
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    items
        .iter()
        .filter(|d| {
            let count = seen.entry(d.label).or_insert(0);
            *count += 1;
            *count <= limit
        })
        .cloned()
        .collect()
}
