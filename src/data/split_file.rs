//! Train/val/test lists as CoOp keeps them (`split_zhou_*.json`), and CoOp's recipes for making
//! a split where none exists: per class 50/20/30 after a seeded shuffle, or 80/20 of an official
//! train+val list.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::pyrandom::PyRandom;

/// One labelled image; `impath` is relative to the dataset's image folder, as in CoOp's split
/// files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datum {
    pub impath: String,
    pub label: usize,
    pub classname: String,
}

impl Datum {
    pub fn to_json(&self) -> Value {
        serde_json::json!([self.impath, self.label, self.classname])
    }
}

/// The three lists of a dataset. `val` is `None` where CoOp has no validation split (ImageNet,
/// whose loader reuses the test set as val and never samples it).
#[derive(Clone, Debug, PartialEq)]
pub struct SplitLists {
    pub train: Vec<Datum>,
    pub val: Option<Vec<Datum>>,
    pub test: Vec<Datum>,
}

impl SplitLists {
    pub fn all(&self) -> impl Iterator<Item = &Datum> {
        self.train.iter().chain(self.val.iter().flatten()).chain(&self.test)
    }
}

/// Read a CoOp split file: `{"train"|"val"|"test": [[impath, label, classname], ...]}`.
/// Labels may be numbers or numeric strings (CoOp applies `int()`).
pub fn read_coop_json(path: &Path) -> Result<SplitLists> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read split file", path.display()))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: not valid JSON ({e}); re-download the split file", path.display()))?;
    let list = |key: &str| -> Result<Vec<Datum>> {
        let entries = json.get(key).and_then(Value::as_array).ok_or_else(|| {
            anyhow!("{}: no \"{key}\" list; a CoOp split file has train, val and test", path.display())
        })?;
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                parse_entry(e).ok_or_else(|| {
                    anyhow!("{}: {key}[{i}] is {e}; expected [impath, label, classname]", path.display())
                })
            })
            .collect()
    };
    Ok(SplitLists { train: list("train")?, val: Some(list("val")?), test: list("test")? })
}

fn parse_entry(e: &Value) -> Option<Datum> {
    let [impath, label, classname] = e.as_array()?.as_slice() else {
        return None;
    };
    let label = match label {
        Value::Number(n) => usize::try_from(n.as_u64()?).ok()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Some(Datum { impath: impath.as_str()?.to_owned(), label, classname: classname.as_str()?.to_owned() })
}

/// Write `lists` in CoOp's split-file format (Dassl's `write_json`: 4-space indent).
pub fn write_coop_json(path: &Path, lists: &SplitLists) -> Result<()> {
    let as_json = |items: &[Datum]| Value::Array(items.iter().map(Datum::to_json).collect());
    let empty = Vec::new();
    let doc = serde_json::json!({
        "train": as_json(&lists.train),
        "val": as_json(lists.val.as_ref().unwrap_or(&empty)),
        "test": as_json(&lists.test),
    });
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&doc, &mut ser)?;
    std::fs::write(path, buf).with_context(|| format!("{}: cannot write split file", path.display()))
}

/// CoOp's `DTD.read_and_split_data`: one folder per class (sorted, `ignored` left out, label =
/// position), each class's images shuffled with one generator seeded once, then
/// `round(n*0.5)` train, `round(n*0.2)` val, the rest test (Python's half-to-even `round`).
///
/// CoOp lists images in `os.listdir` order, which depends on the file system; here they are
/// sorted first, so the same files always give the same split.
pub fn generate_from_class_folders(
    image_dir: &Path,
    ignored: &[String],
    rename: &BTreeMap<String, String>,
    seed: i64,
) -> Result<SplitLists> {
    let categories: Vec<String> =
        list_nohidden(image_dir, Entries::Dirs)?.into_iter().filter(|c| !ignored.contains(c)).collect();
    if categories.is_empty() {
        bail!("{}: no class folders to make a split from", image_dir.display());
    }
    let mut rng = PyRandom::new(seed);
    let mut lists = SplitLists { train: Vec::new(), val: Some(Vec::new()), test: Vec::new() };
    let mut too_small = Vec::new();
    for (label, category) in categories.iter().enumerate() {
        let mut images: Vec<String> = list_nohidden(&image_dir.join(category), Entries::Files)?
            .into_iter()
            .map(|name| format!("{category}/{name}"))
            .collect();
        rng.shuffle(&mut images);
        let n = images.len();
        let n_train = py_round(n as f64 * 0.5);
        let n_val = py_round(n as f64 * 0.2);
        if n_train == 0 || n_val == 0 || n_train + n_val >= n {
            too_small.push(format!("{category} ({n})"));
            continue;
        }
        let classname = rename.get(category).unwrap_or(category).clone();
        let datum = |impath: String| Datum { impath, label, classname: classname.clone() };
        let mut it = images.into_iter();
        lists.train.extend(it.by_ref().take(n_train).map(datum));
        lists.val.as_mut().expect("val exists").extend(it.by_ref().take(n_val).map(datum));
        lists.test.extend(it.map(datum));
    }
    if !too_small.is_empty() {
        bail!(
            "{}: {} class folder(s) too small for a 50/20/30 split (each needs at least 4 images): {}",
            image_dir.display(),
            too_small.len(),
            too_small.join(", ")
        );
    }
    Ok(lists)
}

/// CoOp's `OxfordPets.split_trainval`: per label (first-appearance order) shuffle the items and
/// put the first `round(n*0.2)` in val, the rest in train.
pub fn split_trainval(rng: &mut PyRandom, trainval: &[Datum]) -> Result<(Vec<Datum>, Vec<Datum>)> {
    let mut order = Vec::new();
    let mut by_label: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, item) in trainval.iter().enumerate() {
        by_label
            .entry(item.label)
            .or_insert_with(|| {
                order.push(item.label);
                Vec::new()
            })
            .push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for label in order {
        let idxs = by_label.get_mut(&label).expect("label was recorded");
        let n_val = py_round(idxs.len() as f64 * 0.2);
        if n_val == 0 {
            bail!("class {label} has {} image(s); an 80/20 train/val split needs at least 3", idxs.len());
        }
        rng.shuffle(idxs);
        for (n, &i) in idxs.iter().enumerate() {
            if n < n_val { &mut val } else { &mut train }.push(trainval[i].clone());
        }
    }
    Ok((train, val))
}

/// Python's `round(x)` for non-negative floats: ties go to the even integer.
fn py_round(x: f64) -> usize {
    x.round_ties_even() as usize
}

#[derive(Clone, Copy)]
pub enum Entries {
    Dirs,
    Files,
}

/// Sorted names of the non-hidden sub-folders or files of `dir`.
pub fn list_nohidden(dir: &Path, which: Entries) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list folder", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list folder", dir.display()))?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| anyhow!("{}: file name {:?} is not UTF-8; rename it", dir.display(), entry.file_name()))?;
        if name.starts_with('.') {
            continue;
        }
        // Follows symlinks, as os.listdir + os.path.isdir do.
        let is_dir = std::fs::metadata(entry.path()).map(|m| m.is_dir()).unwrap_or(false);
        if is_dir == matches!(which, Entries::Dirs) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The lines of a text file, without line ends.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding() {
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(3.5), 4);
        assert_eq!(py_round(0.5), 0);
        assert_eq!(py_round(15.0 * 0.2), 3);
    }

    #[test]
    fn split_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let d = |p: &str, l| Datum { impath: p.into(), label: l, classname: format!("c{l}") };
        let lists = SplitLists {
            train: vec![d("a/1.jpg", 0), d("b/2.jpg", 1)],
            val: Some(vec![d("a/3.jpg", 0)]),
            test: vec![],
        };
        write_coop_json(&path, &lists).unwrap();
        assert_eq!(read_coop_json(&path).unwrap(), lists);
        std::fs::write(&path, r#"{"train": [["x.jpg", "3", "c"]], "val": [], "test": [["y.jpg", 1]]}"#).unwrap();
        let e = read_coop_json(&path).unwrap_err().to_string();
        assert!(e.contains("test[0]") && e.contains("expected [impath, label, classname]"), "{e}");
    }
}
