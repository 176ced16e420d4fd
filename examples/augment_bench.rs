//! Our side of the training-image benchmark: decode + RandomResizedCrop + flip + normalise of
//! every file given on the command line, in batches of 32 (in file order, the last one partial)
//! built on a producer thread (rayon across a batch's images) while the main thread sums each
//! finished batch, as the training loop consumes prefetched batches. Prints images/s as JSON.
//! Run by bench/augment_bench.py.
//!
//! `augment_bench FILE...`: the streaming loader ([`make_file_batch`]): each file is read and
//! decoded when its batch is built, as a `DataLoader` worker does, and as single-pass runs (stage
//! 1's one epoch) read their images.
//! `augment_bench --decoded FILE...`: what runs of several epochs do: decode every file up front
//! into memory ([`TrainSet`]), then augment; also timed from the start.

use std::sync::{Arc, mpsc};
use std::time::Instant;

use clip_ast::data::augment::{FileTrainSet, TrainSet, make_batch, make_file_batch};
use clip_ast::data::crop_scale::CropScale;
use clip_ast::data::image::load_rgb;
use rayon::prelude::*;
use tch::Tensor;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let decoded = args.first().is_some_and(|a| a == "--decoded");
    if decoded {
        args.remove(0);
    }
    let paths: Vec<std::path::PathBuf> = args.into_iter().map(Into::into).collect();
    let n = paths.len();
    let batches: Vec<Vec<usize>> = (0..n).collect::<Vec<_>>().chunks(32).map(<[usize]>::to_vec).collect();
    // The checksum is the bench's own instrumentation (the DataLoader side sums nothing): on one
    // libtorch thread, so that OpenMP workers spinning after each sum don't take a core from the
    // loader.
    tch::set_num_threads(1);
    let start = Instant::now();
    let (sender, receiver) = mpsc::sync_channel::<anyhow::Result<Tensor>>(1);
    let mut checksum = 0.0;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(|| {
            let send = |batch| sender.send(batch).is_ok();
            if decoded {
                let images = match paths.par_iter().map(|p| load_rgb(p)).collect::<anyhow::Result<Vec<_>>>() {
                    Ok(images) => images,
                    Err(e) => {
                        send(Err(e));
                        return;
                    }
                };
                let set = TrainSet { images: Arc::new(images), labels: vec![0; n] };
                batches.iter().all(|batch| send(Ok(make_batch(&set, batch, 1, 0, 224, CropScale::FEW_SHOT).0)));
            } else {
                let set = FileTrainSet { paths: paths.clone(), labels: vec![0; n] };
                batches
                    .iter()
                    .all(|batch| send(make_file_batch(&set, batch, 1, 0, 224, CropScale::FEW_SHOT).map(|(x, _)| x)));
            }
            drop(sender);
        });
        for batch in receiver {
            checksum += batch?.sum(tch::Kind::Float).double_value(&[]);
        }
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"images\": {n}, \"seconds\": {seconds}, \"images_per_s\": {}, \"checksum\": {checksum}}}",
        n as f64 / seconds
    );
    Ok(())
}
