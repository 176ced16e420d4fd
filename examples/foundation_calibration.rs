//! Zero-shot accuracy of a pretrained foundation on Fashion-MNIST's validation images (the 20%
//! of each class of the official train set that no split's train images come from), the
//! measurement behind the choice in pipelines/demo-foundation.toml: base 5-way (classes 0–4
//! among their 5 names), new 5-way (5–9 among theirs) and 10-way, per rendering.
//!
//!   cargo run --release --example foundation_calibration -- STORE WEIGHTS_KEY [PER_CLASS] [ROOT]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clip_ast::clip::Clip;
use clip_ast::data::datasets::{self, load_image};
use clip_ast::data::image::resize_and_center_crop;
use clip_ast::data::rendering::Rendering;
use clip_ast::data::split::limit_per_class;
use clip_ast::data::split_file::Datum;
use clip_ast::eval::{TestSet, evaluate};
use clip_ast::stages::weights;
use clip_ast::store::{ArtifactKind, Store};
use clip_ast::train::prompts::class_prompt_ids;
use tch::{Device, Tensor};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, key, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: foundation_calibration STORE WEIGHTS_KEY [PER_CLASS] [ROOT]");
    };
    let per_class: usize = rest.first().map_or(Ok(200), |s| s.parse()).context("PER_CLASS")?;
    let root = PathBuf::from(rest.get(1).map_or("/usr/share/datasets", String::as_str));
    tch::set_num_threads(2);
    let store = Store::open(Some(Path::new(store)))?;
    let artifact = store.resolve(key, Some(ArtifactKind::Weights))?;
    let (config, w) = weights::load(&artifact)?;
    let model = Clip::new(&config, &w)?;
    let manifest = datasets::manifest("fashion-mnist")?;
    let loc = datasets::locate(&manifest, &root)?;
    let (lists, _) = datasets::load_lists(&loc, 1)?;
    let val = limit_per_class(lists.val.as_deref().context("no val list")?, Some(per_class));
    let size = config.vision.image_size as u32;
    let names = &manifest.classnames;
    for rendering in [Rendering::Original, Rendering::NegativeBlur] {
        let mut line = format!("{:>14}:", rendering.as_str());
        for (what, classes) in [("base 5-way", 0..5), ("new 5-way", 5..10), ("10-way", 0..10)] {
            let items: Vec<Datum> = val.iter().filter(|d| classes.contains(&d.label)).cloned().collect();
            let set = test_set(&loc.image_dir, &items, classes.start, size, rendering)?;
            let ids = class_prompt_ids(&manifest.template, &names[classes.clone()], config.text.context_length)?;
            let acc = evaluate(&model, &set, &ids, &names[classes], Device::Cpu, 256)?;
            line.push_str(&format!("  {what} {:.1}", 100.0 * acc.acc));
        }
        println!("{line}  ({per_class} val images per class)");
    }
    Ok(())
}

/// Images in `rendering`, preprocessed as a split's test images; labels shifted by `first`.
fn test_set(dir: &Path, items: &[Datum], first: usize, size: u32, rendering: Rendering) -> Result<TestSet> {
    let mut pixels = Vec::new();
    for d in items {
        pixels.extend_from_slice(resize_and_center_crop(&rendering.apply(load_image(dir, &d.impath)?), size).as_raw());
    }
    let labels: Vec<i64> = items.iter().map(|d| (d.label - first) as i64).collect();
    let n = items.len() as i64;
    Ok(TestSet {
        images: Tensor::from_slice(&pixels).view([n, i64::from(size), i64::from(size), 3]),
        labels: Tensor::from_slice(&labels),
    })
}
