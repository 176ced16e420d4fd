//! ImageNet's test-only variants (ImageNet-V2, -Sketch, -A, -R) read as CoOp's loaders read them
//! (facts in docs/datasets.md and each `data-manifests/*.json`'s notes):
//!
//! - every variant folder holds its own copy of ImageNet's `classnames.txt` (`wnid name` per
//!   line, in ImageNet label order), and the class names come from that copy;
//! - ImageNet-V2 has one folder per ImageNet label index (`0`..`999`): folder `i` is the class on
//!   line `i`, and its label is `i`;
//! - ImageNet-Sketch, -A and -R have one folder per WordNet id; labels follow the sorted folder
//!   names (CoOp enumerates `listdir(sort=True)`), so A and R get labels 0..199 over their 200
//!   classes, and each class keeps the ImageNet label of its WordNet id.
//!
//! CoOp derives its class names from the images it finds, so an empty class folder would shift
//! them against the labels; here that is an error. CoOp's V2 loop runs to 1000; here it runs over
//! the lines of `classnames.txt` (1000 for the real file), so small fixtures work the same way.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::datasets::{Layout, Location};
use super::split_file::{Datum, Entries, list_nohidden, read_lines};

/// A variant's test list with its label space and how that maps onto ImageNet's.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantLists {
    /// Class names by the variant's own label.
    pub classnames: Vec<String>,
    /// WordNet id of each label.
    pub class_wnids: Vec<String>,
    /// ImageNet label of each label (the row of an ImageNet classifier).
    pub source_labels: Vec<usize>,
    pub test: Vec<Datum>,
}

/// One `classnames.txt` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagenetClass {
    pub wnid: String,
    pub name: String,
}

/// `classnames.txt` in line order, which is ImageNet's label order. ImageNet's labels follow the
/// sorted WordNet ids of its train folders, so the lines must be sorted for a line's position to
/// be its label (CoOp's file is); duplicates and lines without a name are errors too.
pub fn read_classnames(path: &Path) -> Result<Vec<ImagenetClass>> {
    let mut classes: Vec<ImagenetClass> = Vec::new();
    for (n, line) in read_lines(path)?.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((wnid, name)) = line.split_once(' ').filter(|(_, name)| !name.trim().is_empty()) else {
            bail!("{}:{}: expected `<wnid> <class name>`, got `{line}`", path.display(), n + 1);
        };
        if let Some(prev) = classes.last()
            && prev.wnid.as_str() >= wnid
        {
            bail!(
                "{}:{}: `{wnid}` comes after `{}`; the lines must be in ImageNet's label order (sorted WordNet ids), as CoOp's classnames.txt is",
                path.display(),
                n + 1,
                prev.wnid
            );
        }
        classes.push(ImagenetClass { wnid: wnid.to_owned(), name: name.to_owned() });
    }
    if classes.is_empty() {
        bail!("{}: no classes; copy ImageNet's classnames.txt (CoOp's DATASETS.md) here", path.display());
    }
    Ok(classes)
}

/// The variant's test list, by its manifest's layout.
pub fn read(loc: &Location) -> Result<VariantLists> {
    let names_path = loc.dataset_dir.join("classnames.txt");
    if !names_path.is_file() {
        bail!(
            "{}: missing; {} reads the class names from its own copy of ImageNet's classnames.txt: copy imagenet/classnames.txt here",
            names_path.display(),
            loc.manifest.display_name
        );
    }
    let classes = read_classnames(&names_path)?;
    match loc.manifest.layout {
        Layout::ImagenetLabelFolders => read_label_folders(&loc.image_dir, &classes),
        Layout::ImagenetWnidFolders => read_wnid_folders(&loc.image_dir, &classes, &names_path),
        other => bail!("{}: layout {other:?} is not an ImageNet variant's", loc.manifest.name),
    }
}

/// ImageNet-V2: folder `i` holds class `i`'s images.
fn read_label_folders(image_dir: &Path, classes: &[ImagenetClass]) -> Result<VariantLists> {
    let mut lists = empty();
    for (label, class) in classes.iter().enumerate() {
        let folder = label.to_string();
        let dir = image_dir.join(&folder);
        if !dir.is_dir() {
            bail!("{}: missing; ImageNet-V2 needs one folder per class, 0 to {}", dir.display(), classes.len() - 1);
        }
        push_class(&mut lists, &dir, &folder, label, class)?;
    }
    Ok(lists)
}

/// ImageNet-Sketch, -A, -R: sorted WordNet-id folders; files beside them (README.txt) are not
/// classes.
fn read_wnid_folders(image_dir: &Path, classes: &[ImagenetClass], names_path: &Path) -> Result<VariantLists> {
    let by_wnid: HashMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.wnid.as_str(), i)).collect();
    let folders = list_nohidden(image_dir, Entries::Dirs)?;
    if folders.is_empty() {
        bail!("{}: no class folders", image_dir.display());
    }
    let mut lists = empty();
    for folder in &folders {
        let source_label = *by_wnid.get(folder.as_str()).ok_or_else(|| {
            anyhow!(
                "{}: folder `{folder}` is not an ImageNet class in {}; class folders are named by WordNet id",
                image_dir.display(),
                names_path.display()
            )
        })?;
        push_class(&mut lists, &image_dir.join(folder), folder, source_label, &classes[source_label])?;
    }
    Ok(lists)
}

fn empty() -> VariantLists {
    VariantLists { classnames: Vec::new(), class_wnids: Vec::new(), source_labels: Vec::new(), test: Vec::new() }
}

/// Add one class (the next label) and its images, in sorted file-name order.
fn push_class(
    lists: &mut VariantLists,
    dir: &Path,
    folder: &str,
    source_label: usize,
    class: &ImagenetClass,
) -> Result<()> {
    let label = lists.classnames.len();
    let files = list_nohidden(dir, Entries::Files)?;
    if files.is_empty() {
        bail!("{}: class folder has no images; restore them or remove the folder", dir.display());
    }
    lists.test.extend(files.into_iter().map(|name| Datum {
        impath: format!("{folder}/{name}"),
        label,
        classname: class.name.clone(),
    }));
    lists.classnames.push(class.name.clone());
    lists.class_wnids.push(class.wnid.clone());
    lists.source_labels.push(source_label);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classnames_keep_spaces_and_reject_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classnames.txt");
        std::fs::write(&path, "n01 great white shark\n\nn02 tench\n").unwrap();
        let classes = read_classnames(&path).unwrap();
        assert_eq!(classes[0], ImagenetClass { wnid: "n01".into(), name: "great white shark".into() });
        assert_eq!(classes.len(), 2);
        std::fs::write(&path, "n02 a\nn01 b\n").unwrap();
        let e = read_classnames(&path).unwrap_err().to_string();
        assert!(e.contains("classnames.txt:2") && e.contains("sorted"), "{e}");
        std::fs::write(&path, "n01\n").unwrap();
        let e = read_classnames(&path).unwrap_err().to_string();
        assert!(e.contains("classnames.txt:1") && e.contains("<wnid> <class name>"), "{e}");
    }
}
