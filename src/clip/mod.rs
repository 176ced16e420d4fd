//! The CLIP model in tch: config presets, layers, vision and text towers, tokenizer and
//! weight import. Tensor names follow OpenAI's state dict exactly.

pub mod tokenizer;
