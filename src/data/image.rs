//! Image decoding and CLIP preprocessing (being written).
