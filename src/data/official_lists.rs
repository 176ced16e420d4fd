//! Datasets' own list files, read as CoOp's loaders read them: FGVCAircraft's variant lists,
//! ImageNet's `classnames.txt` + class folders, and the official train/test lists of OxfordPets,
//! SUN397 and UCF101 (which CoOp splits 80/20 into train/val where it has no split file).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::pyrandom::PyRandom;
use super::split_file::{Datum, Entries, SplitLists, list_nohidden, read_lines, split_trainval};

/// FGVCAircraft: `variants.txt` gives the classes in label order; each
/// `images_variant_{train,val,test}.txt` line is `<image id> <variant name>`.
pub fn read_fgvc_aircraft(dataset_dir: &Path) -> Result<SplitLists> {
    let variants_path = dataset_dir.join("variants.txt");
    let classnames: Vec<String> = read_lines(&variants_path)?.into_iter().map(|l| l.trim().to_owned()).collect();
    let label_of: BTreeMap<&str, usize> = classnames.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let read = |split: &str| -> Result<Vec<Datum>> {
        let path = dataset_dir.join(format!("images_variant_{split}.txt"));
        let mut items = Vec::new();
        for (n, line) in read_lines(&path)?.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (id, classname) = line.split_once(' ').unwrap_or((line, ""));
            let label = *label_of.get(classname).ok_or_else(|| {
                anyhow!("{}:{}: variant `{classname}` is not in {}", path.display(), n + 1, variants_path.display())
            })?;
            items.push(Datum { impath: format!("{id}.jpg"), label, classname: classname.to_owned() });
        }
        Ok(items)
    };
    Ok(SplitLists { train: read("train")?, val: Some(read("val")?), test: read("test")? })
}

/// ImageNet the way CoOp reads it without its `preprocessed.pkl`: `classnames.txt` maps folder
/// (WordNet id) to class name; labels follow the sorted folder names of `images/train`; the
/// official validation images (`images/val/<wnid>/`) are the test set.
pub fn read_imagenet_folders(dataset_dir: &Path, image_dir: &Path) -> Result<SplitLists> {
    let names_path = dataset_dir.join("classnames.txt");
    let mut classnames = BTreeMap::new();
    for line in read_lines(&names_path)? {
        let line = line.trim();
        if let Some((folder, name)) = line.split_once(' ') {
            classnames.insert(folder.to_owned(), name.to_owned());
        } else if !line.is_empty() {
            classnames.insert(line.to_owned(), String::new());
        }
    }
    let train_dir = image_dir.join("train");
    let folders = list_nohidden(&train_dir, Entries::Dirs)?;
    let val_folders = list_nohidden(&image_dir.join("val"), Entries::Dirs)?;
    if val_folders != folders {
        // CoOp labels val by its own folder order, so a missing folder would silently shift labels.
        bail!(
            "{}: class folders differ from {} ({} vs {}); both must hold the same 1000 class folders",
            image_dir.join("val").display(),
            train_dir.display(),
            val_folders.len(),
            folders.len()
        );
    }
    let read = |split: &str| -> Result<Vec<Datum>> {
        let mut items = Vec::new();
        for (label, folder) in folders.iter().enumerate() {
            let classname = classnames.get(folder).ok_or_else(|| {
                anyhow!("{}: no class name for folder `{folder}`; use CoOp's classnames.txt", names_path.display())
            })?;
            for name in list_nohidden(&image_dir.join(split).join(folder), Entries::Files)? {
                items.push(Datum { impath: format!("{split}/{folder}/{name}"), label, classname: classname.clone() });
            }
        }
        Ok(items)
    };
    Ok(SplitLists { train: read("train")?, val: None, test: read("val")? })
}

/// OxfordPets: `annotations/{trainval,test}.txt` lines `<image> <class id> <species> <breed id>`;
/// the class name is the image name without its trailing number, lower-cased.
pub fn read_oxford_pets(dataset_dir: &Path, rng: &mut PyRandom) -> Result<SplitLists> {
    let read = |file: &str| -> Result<Vec<Datum>> {
        let path = dataset_dir.join("annotations").join(file);
        let mut items = Vec::new();
        for (n, line) in read_lines(&path)?.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(' ').collect();
            let label = fields.get(1).and_then(|l| l.parse::<usize>().ok()).filter(|&l| l >= 1);
            let (Some(name), Some(label)) = (fields.first(), label) else {
                bail!("{}:{}: expected `<image> <class id> <species> <breed id>`", path.display(), n + 1);
            };
            let breed = name.rsplit_once('_').map_or("", |(b, _)| b).to_lowercase();
            items.push(Datum { impath: format!("{name}.jpg"), label: label - 1, classname: breed });
        }
        Ok(items)
    };
    let (train, val) = split_trainval(rng, &read("trainval.txt")?)?;
    Ok(SplitLists { train, val: Some(val), test: read("test.txt")? })
}

/// SUN397: `ClassName.txt` lines `/a/abbey` give the labels; `Training_01.txt` /
/// `Testing_01.txt` lines `/a/abbey/sun_x.jpg` the images. The class name is the folder path
/// without its letter, reversed (`a/apartment_building/outdoor` → `outdoor apartment_building`).
pub fn read_sun397(dataset_dir: &Path, rng: &mut PyRandom) -> Result<SplitLists> {
    let names_path = dataset_dir.join("ClassName.txt");
    let label_of: BTreeMap<String, usize> = read_lines(&names_path)?
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| (l.trim_start_matches('/').to_owned(), i))
        .collect();
    let read = |file: &str| -> Result<Vec<Datum>> {
        let path = dataset_dir.join(file);
        let mut items = Vec::new();
        for (n, line) in read_lines(&path)?.iter().enumerate() {
            let imname = line.trim().trim_start_matches('/');
            if imname.is_empty() {
                continue;
            }
            let folder = imname.rsplit_once('/').map_or("", |(d, _)| d);
            let label = *label_of.get(folder).ok_or_else(|| {
                anyhow!("{}:{}: class `{folder}` is not in {}", path.display(), n + 1, names_path.display())
            })?;
            let words: Vec<&str> = folder.split('/').skip(1).collect();
            let classname = words.into_iter().rev().collect::<Vec<_>>().join(" ");
            items.push(Datum { impath: imname.to_owned(), label, classname });
        }
        Ok(items)
    };
    let (train, val) = split_trainval(rng, &read("Training_01.txt")?)?;
    Ok(SplitLists { train, val: Some(val), test: read("Testing_01.txt")? })
}

/// UCF101 middle frames: `ucfTrainTestlist/classInd.txt` lines `1 ApplyEyeMakeup`; list lines
/// `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi [label]`. Frames live in
/// `Apply_Eye_Makeup/v_..._c01.jpg` (the action split at capitals), which is also the class name.
pub fn read_ucf101(dataset_dir: &Path, rng: &mut PyRandom) -> Result<SplitLists> {
    let lists = dataset_dir.join("ucfTrainTestlist");
    let index_path = lists.join("classInd.txt");
    let mut label_of = BTreeMap::new();
    for (n, line) in read_lines(&index_path)?.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(l, c)| Some((l.parse::<usize>().ok()?.checked_sub(1)?, c)));
        let Some((label, class)) = parsed else {
            bail!("{}:{}: expected `<class id> <action>`", index_path.display(), n + 1);
        };
        label_of.insert(class.to_owned(), label);
    }
    let read = |file: &str| -> Result<Vec<Datum>> {
        let path = lists.join(file);
        let mut items = Vec::new();
        for (n, line) in read_lines(&path)?.iter().enumerate() {
            let entry = line.trim().split(' ').next().unwrap_or("");
            if entry.is_empty() {
                continue;
            }
            let (action, video) = entry.split_once('/').unwrap_or((entry, ""));
            let label = *label_of.get(action).ok_or_else(|| {
                anyhow!("{}:{}: action `{action}` is not in {}", path.display(), n + 1, index_path.display())
            })?;
            let renamed = split_at_capitals(action);
            let frame = video.replace(".avi", ".jpg");
            items.push(Datum { impath: format!("{renamed}/{frame}"), label, classname: renamed });
        }
        Ok(items)
    };
    let (train, val) = split_trainval(rng, &read("trainlist01.txt")?)?;
    Ok(SplitLists { train, val: Some(val), test: read("testlist01.txt")? })
}

/// `"_".join(re.findall("[A-Z][^A-Z]*", s))`: words start at capitals; anything before the
/// first capital is dropped, as the regex does.
fn split_at_capitals(s: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            words.push(c.to_string());
        } else if let Some(word) = words.last_mut() {
            word.push(c);
        }
    }
    words.join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucf_action_names() {
        assert_eq!(split_at_capitals("ApplyEyeMakeup"), "Apply_Eye_Makeup");
        assert_eq!(split_at_capitals("YoYo"), "Yo_Yo");
        assert_eq!(split_at_capitals("playingDaf"), "Daf");
    }
}
