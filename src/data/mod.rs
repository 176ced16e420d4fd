//! Images and datasets: decoding, CLIP's preprocessing.

pub mod image;
