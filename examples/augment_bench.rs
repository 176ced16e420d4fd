//! Our side of the training-image benchmark: decode + RandomResizedCrop + flip + normalise of
//! every file given on the command line, in batches of 32 through the real training pipeline
//! (rayon across images). Prints images/s as JSON. Run by bench/augment_bench.py.

use std::sync::Arc;
use std::time::Instant;

use clip_ast::data::augment::{TrainSet, make_batch};
use clip_ast::data::image::load_rgb;
use rayon::prelude::*;

fn main() -> anyhow::Result<()> {
    let paths: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    let start = Instant::now();
    // Decoding is part of the measured work, as in a DataLoader epoch.
    let images = paths.par_iter().map(|p| load_rgb(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let set = TrainSet { images: Arc::new(images), labels: vec![0; paths.len()] };
    let indices: Vec<usize> = (0..paths.len()).collect();
    let mut checksum = 0.0;
    for batch in indices.chunks(32) {
        let (x, _) = make_batch(&set, batch, 1, 0, 224);
        checksum += x.sum(tch::Kind::Float).double_value(&[]);
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"images\": {}, \"seconds\": {seconds}, \"images_per_s\": {}, \"checksum\": {checksum}}}",
        paths.len(),
        paths.len() as f64 / seconds
    );
    Ok(())
}
