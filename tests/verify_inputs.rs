//! Inputs are checked before a stage reads them: an artifact changed since it was made, an image
//! changed since its split hashed it, or a manifest whose key was edited is one `error:` line
//! naming it, and nothing is computed; `audit` reports what was built from a damaged artifact,
//! and `audit --rerun SPLIT` checks a split against its images.

mod common;

use std::path::{Path, PathBuf};

use common::scratch::{Scratch, colour_images};

/// A scratch folder with four classes of images, mini weights and a 2-shot split.
struct Setup {
    s: Scratch,
    store: String,
    weights: String,
    split: String,
}

impl Setup {
    fn new() -> Setup {
        let s = Scratch::new();
        colour_images(&s.path("data"));
        let store = s.p("store");
        let weights = s.ok(&["init-weights", "--preset", "mini", "--seed", "0", "--store", &store]).0;
        let data = s.p("data");
        let args =
            ["split", "--dataset", "imagefolder", "--root", &data, "--shots", "2", "--seed", "1", "--store", &store];
        let split = s.ok(&args).0.trim().to_string();
        Setup { weights: weights.trim().to_string(), split, s, store }
    }

    /// A stage command with this store, quiet.
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--store", &self.store, "--quiet"]);
        all
    }

    fn ok(&self, args: &[&str]) -> String {
        self.s.ok(&self.args(args)).0.trim().to_string()
    }

    fn fails(&self, args: &[&str], needles: &[&str]) -> String {
        self.s.fails(&mut self.s.cmd(&self.args(args)), needles)
    }

    fn stage1<'a>(&'a self, lr: &'a str) -> Vec<&'a str> {
        let args = ["stage1", "--split", &self.split, "--weights", &self.weights, "--epochs", "1"];
        let mut all = args.to_vec();
        all.extend(["--batch-size", "4", "--min-steps", "8", "--lr", lr]);
        all
    }

    /// `kind/key12` of an artifact folder.
    fn label(&self, dir: &str) -> String {
        let dir = Path::new(dir);
        let kind = dir.parent().unwrap().file_name().unwrap().to_str().unwrap();
        format!("{kind}/{}", &dir.file_name().unwrap().to_str().unwrap()[..12])
    }

    /// The artifact folders of `kind`.
    fn dirs(&self, kind: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(Path::new(&self.store).join(kind))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// `audit ARGS…`: (success, stdout).
    fn audit(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec!["audit"];
        all.extend(args);
        let out = self.s.cmd(&self.args(&all)).output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    }
}

fn flip_byte(path: &Path, from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn split_json(split: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(Path::new(split).join("split.json")).unwrap()).unwrap()
}

#[test]
fn an_image_replaced_after_its_split_was_made_is_refused_naming_it_and_the_split() {
    let t = Setup::new();
    let before = t.ok(&t.stage1("1e-4"));
    let info = split_json(&t.split);
    let image_dir = PathBuf::from(info["image_dir"].as_str().unwrap());
    let train0 = image_dir.join(info["train"][0][0].as_str().unwrap());
    let original = std::fs::read(&train0).unwrap();
    // Another valid PNG of the same size and class colour: only its content differs.
    let img = image::open(&train0).unwrap().to_rgb8();
    let replaced = image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(img.width() - 1 - x, y);
        image::Rgb([p[0], p[1], p[2]])
    });
    replaced.save(&train0).unwrap();
    assert_ne!(std::fs::read(&train0).unwrap(), original);

    let image = train0.to_str().unwrap();
    let split = t.label(&t.split);
    t.fails(&t.stage1("2e-4"), &[image, &split, "changed since", "clip-ast split"]);
    assert_eq!(t.dirs("stage1").len(), 1, "nothing computed");

    // A rerun of a stage-1 run made before reads the images again, and refuses too.
    t.fails(&["audit", "--rerun", &before], &[image, &split]);

    // The split checked against its images.
    let (ok, stdout) = t.audit(&["--rerun", &t.split]);
    assert!(!ok);
    assert!(stdout.contains(&format!("BAD {split}: image `{image}` changed since the split hashed it")), "{stdout}");

    // Put back, the images are the split's again.
    std::fs::write(&train0, &original).unwrap();
    let (ok, stdout) = t.audit(&["--rerun", &t.split]);
    assert!(ok, "{stdout}");
    let files = std::fs::read_to_string(Path::new(&t.split).join("files.json")).unwrap();
    let hashed = serde_json::from_str::<serde_json::Value>(&files).unwrap()["files"].as_object().unwrap().len();
    assert!(stdout.contains(&format!("ok  {split}: its {hashed} image file(s) hash as it recorded")), "{stdout}");
    t.ok(&t.stage1("2e-4"));
}

#[test]
fn a_byte_flipped_weights_file_is_refused_by_the_next_stage_and_flags_what_was_built_from_it() {
    let t = Setup::new();
    let stage1 = t.ok(&t.stage1("1e-4"));
    let selection = t.ok(&["select", "--stage1", &stage1, "--k", "3"]);
    flip_byte(&Path::new(&t.weights).join("model.safetensors"), 100);

    let weights = t.label(&t.weights);
    let needles = [weights.as_str(), "`model.safetensors` changed", "clip-ast audit", "rm -r"];
    t.fails(&t.stage1("2e-4"), &needles);
    // select reads stage 1's weights, which are not its own input: checked all the same.
    t.fails(&["select", "--stage1", &stage1, "--k", "4"], &needles);
    let args = ["stage2", "--split", &t.split, "--weights", &t.weights, "--selection", &selection];
    t.fails(&args, &needles);
    for kind in ["stage1", "selection", "stage2"] {
        assert_eq!(t.dirs(kind).len(), usize::from(kind != "stage2"), "{kind}: nothing computed");
    }

    let (ok, stdout) = t.audit(&[]);
    assert!(!ok);
    let line =
        |label: &str| stdout.lines().find(|l| l.split_whitespace().nth(1) == Some(label)).unwrap_or("").to_string();
    assert!(line(&weights).contains("`model.safetensors` changed"), "{stdout}");
    let stage1_label = t.label(&stage1);
    let bad_input = format!("built from input `weights` ({weights}), which fails the audit");
    assert!(line(&stage1_label).starts_with("BAD") && line(&stage1_label).contains(&bad_input), "{stdout}");
    let through = format!("built from input `stage1` ({stage1_label}), which was built from {weights}, which fails");
    assert!(line(&t.label(&selection)).contains(&through), "{stdout}");
    assert!(line(&t.label(&t.split)).starts_with("ok"), "{stdout}");
    // Named alone, a descendant still reports its damaged ancestry.
    let (ok, stdout) = t.audit(&[&selection]);
    assert!(!ok && stdout.contains(&through), "{stdout}");

    flip_byte(&Path::new(&t.weights).join("model.safetensors"), 100);
    assert!(t.audit(&[]).0, "flipped back, the store is clean");
}

#[test]
fn a_hand_edited_split_json_is_refused() {
    let t = Setup::new();
    let path = Path::new(&t.split).join("split.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace("a photo of a {}.", "a drawing of a {}.");
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    let split = t.label(&t.split);
    t.fails(&t.stage1("1e-4"), &["input `split`", &split, "`split.json` changed"]);
    t.fails(&["eval", "--split", &t.split, "--weights", &t.weights], &[&split, "`split.json` changed"]);
    assert!(t.dirs("stage1").is_empty() && t.dirs("eval").is_empty());
    std::fs::write(&path, text).unwrap();
    t.ok(&t.stage1("1e-4"));
}

#[test]
fn a_manifest_whose_key_was_edited_is_refused_by_stages_and_run() {
    let t = Setup::new();
    let manifest = Path::new(&t.weights).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let key = m["key"].as_str().unwrap().to_string();
    let other = format!("{}{}", if key.starts_with('0') { '1' } else { '0' }, &key[1..]);
    m["key"] = other.clone().into();
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();

    let weights = t.label(&t.weights);
    let needles = ["edited or moved", &other[..12], &format!("clip-ast audit {weights}")];
    t.fails(&["init-weights", "--preset", "mini", "--seed", "0"], &needles);
    let pipeline =
        t.s.write("p.toml", &common::scratch::MINI.replace("seed = [1, 2]", "seed = 1").replace("k = [3, 6]", "k = 3"));
    let mut run = t.s.cmd(&["run", &pipeline, "--store", &t.store, "--quiet"]);
    t.s.fails(&mut run, &needles);
    let mut dry = t.s.cmd(&["run", &pipeline, "--dry-run", "--store", &t.store]);
    t.s.fails(&mut dry, &needles);
    assert!(t.dirs("stage1").is_empty());
    // The audit says what changed, as the message promises.
    let (ok, stdout) = t.audit(&[&weights]);
    assert!(!ok && stdout.contains(&format!("manifest key {other} is not the directory name")), "{stdout}");
    std::fs::write(&manifest, text).unwrap();
    t.ok(&["init-weights", "--preset", "mini", "--seed", "0"]);
}
