//! The `split` stage for a test-only dataset (ImageNet-V2, -Sketch, -A, -R): no train or val
//! list, no few-shot sampling, only the test list, its preprocessed images and their hashes.
//! split.json also records each class's WordNet id and ImageNet label (`class_wnids`,
//! `source_labels`) and the dataset they belong to (`subset_of`), so a model adapted on ImageNet
//! can be evaluated on exactly the variant's classes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::datasets::{self, ListSource, Location, Manifest};
use super::file_hashes::hash_files;
use super::imagenet_variants::{self, VariantLists};
use super::split::{
    PickleCheck, SplitRequest, SplitSummary, absolute, file_part, limit_per_class, split_json_text, write_json,
};
use super::split_file::Datum;
use super::subsample::Subsample;
use super::test_images;

/// Where split.json says the lists came from.
const LIST_SOURCE: &str = "classnames.txt and class folders";

/// split.json's fields before its three lists (train and val stay empty).
#[derive(Serialize)]
struct TestOnlyHeader<'a> {
    dataset: &'a str,
    classnames: &'a [String],
    template: &'a str,
    shots: i64,
    seed: i64,
    subsample: &'a str,
    test_only: bool,
    subset_of: Option<&'a str>,
    class_wnids: &'a [String],
    source_labels: &'a [usize],
    image_size: u32,
    image_dir: String,
    list_source: &'a str,
}

/// A few-shot request on a test-only dataset is a mistake worth one clear line: there are no
/// train images to sample and no classes to split into base and new.
pub fn check_request(req: &SplitRequest, manifest: &Manifest) -> Result<()> {
    if req.shots != 0 {
        bail!(
            "--shots {}: {} is a test-only dataset (no train images to sample); make its split without --shots (or with --shots 0) and evaluate a model adapted on {} with `clip-ast eval --split`",
            req.shots,
            manifest.name,
            manifest.subset_of.as_deref().unwrap_or("another dataset")
        );
    }
    if req.subsample != Subsample::All {
        bail!(
            "--subsample {}: {} is a test-only dataset; its classes are not split into base and new, use --subsample all",
            req.subsample.as_str(),
            manifest.name
        );
    }
    super::split::check_image_size(req.image_size)
}

/// The variant's lists and the test items the split keeps.
fn lists(req: &SplitRequest, manifest: &Manifest) -> Result<(Location, VariantLists, Vec<Datum>)> {
    check_request(req, manifest)?;
    let loc = datasets::locate(manifest, &req.root)?;
    let lists = imagenet_variants::read(&loc)?;
    let test = limit_per_class(&lists.test, req.test_per_class);
    Ok((loc, lists, test))
}

/// Make the split artifact's files in `out_dir`, as [`super::split::make_split`] does.
pub fn make_test_only_split(req: &SplitRequest, manifest: &Manifest, out_dir: &Path) -> Result<SplitSummary> {
    let (loc, lists, test) = lists(req, manifest)?;
    let bad = test_images::write(
        &out_dir.join("test_images.safetensors"),
        &loc.image_dir,
        &test,
        req.image_size,
        req.rendering,
    )?;
    if !bad.is_empty() {
        bail!("{} image(s) cannot be decoded; fix or remove them from the dataset: {}", bad.len(), bad.join("; "));
    }
    let files = used_files(&test);
    let paths: Vec<PathBuf> = files.iter().map(|f| loc.image_dir.join(f)).collect();
    let hashes = hash_files(&paths, req.hash_cache.as_deref())?;
    write_json(
        &out_dir.join("files.json"),
        &serde_json::json!({
            "algorithm": "blake3",
            "image_dir": absolute(&loc.image_dir),
            "files": files.iter().zip(&hashes.blake3).collect::<std::collections::BTreeMap<_, _>>(),
        }),
    )?;
    let header = TestOnlyHeader {
        dataset: &manifest.name,
        classnames: &lists.classnames,
        template: &manifest.template,
        shots: 0,
        seed: 0,
        subsample: Subsample::All.as_str(),
        test_only: true,
        subset_of: manifest.subset_of.as_deref(),
        class_wnids: &lists.class_wnids,
        source_labels: &lists.source_labels,
        image_size: req.image_size,
        image_dir: absolute(&loc.image_dir),
        list_source: LIST_SOURCE,
    };
    let text = split_json_text(&header, [("train", &[]), ("val", &[]), ("test", &test)])?;
    let split_path = out_dir.join("split.json");
    std::fs::write(&split_path, text).with_context(|| format!("{}: cannot write", split_path.display()))?;
    if !req.quiet {
        note_unexpected_sizes(manifest, &lists);
        eprintln!(
            "{}: {} classes, {} test images (test only; {LIST_SOURCE}); {} files hashed, {} from cache",
            manifest.name,
            lists.classnames.len(),
            test.len(),
            hashes.hashed,
            hashes.cache_hits
        );
    }
    Ok(SplitSummary {
        dataset: manifest.name.clone(),
        classnames: lists.classnames,
        train: 0,
        val: 0,
        test: test.len(),
        list_source: ListSource::Native,
        pickle_check: PickleCheck::Absent,
        files: files.len(),
        hash_cache_hits: hashes.cache_hits,
        files_hashed: hashes.hashed,
    })
}

/// blake3 over the class table, the test list and the hashes of the images it keeps (see
/// `stages::split::data_fingerprint`); errors surface here, before anything is written.
pub fn data_fingerprint(req: &SplitRequest, manifest: &Manifest) -> Result<String> {
    let (loc, lists, test) = lists(req, manifest)?;
    let paths: Vec<PathBuf> = used_files(&test).iter().map(|f| loc.image_dir.join(f)).collect();
    let hashes = hash_files(&paths, req.hash_cache.as_deref())?.blake3;
    let mut hasher = blake3::Hasher::new();
    for ((name, wnid), source) in lists.classnames.iter().zip(&lists.class_wnids).zip(&lists.source_labels) {
        hasher.update(format!("{wnid}\t{source}\t{name}\n").as_bytes());
    }
    hasher.update(b"--\n");
    for d in &lists.test {
        hasher.update(format!("{}\t{}\t{}\n", d.impath, d.label, d.classname).as_bytes());
    }
    hasher.update(b"--\n");
    for (path, hash) in paths.iter().zip(&hashes) {
        hasher.update(format!("{}\t{hash}\n", path.strip_prefix(&loc.image_dir).unwrap_or(path).display()).as_bytes());
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn used_files(test: &[Datum]) -> Vec<String> {
    test.iter().map(|d| file_part(&d.impath).to_owned()).collect::<BTreeSet<_>>().into_iter().collect()
}

fn note_unexpected_sizes(m: &Manifest, lists: &VariantLists) {
    if let Some(expected) = m.classes.filter(|&c| c != lists.classnames.len()) {
        eprintln!("note: {} has {} classes here; CoOp's has {expected}", m.display_name, lists.classnames.len());
    }
    if let Some(expected) = m.sizes.as_ref().map(|s| s.test).filter(|&n| n != lists.test.len()) {
        eprintln!(
            "note: {} has {} test images here; the full dataset has {expected}",
            m.display_name,
            lists.test.len()
        );
    }
}
