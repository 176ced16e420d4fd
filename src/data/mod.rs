//! Images and datasets: decoding, CLIP's preprocessing.

pub mod augment;
pub mod crop_scale;
pub mod datasets;
pub mod fewshot;
pub mod file_hashes;
pub mod idx;
pub mod image;
pub mod imagenet_variants;
pub mod official_lists;
pub mod pickle;
pub mod pool;
pub mod pyrandom;
pub mod rendering;
pub mod resize;
pub mod split;
pub mod split_file;
pub mod split_test_only;
pub mod subsample;
pub mod test_images;
