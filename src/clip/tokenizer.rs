//! CLIP byte-level BPE tokenizer (being written).
