//! The CLIP model in tch: config presets, layers, vision and text towers, tokenizer and
//! weight import. Tensor names follow OpenAI's state dict exactly.

pub mod activation_source;
pub mod config;
pub mod hf_names;
pub mod import;
pub mod init;
pub mod layers;
pub mod model;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;

pub use config::ClipConfig;
pub use model::Clip;
pub use weights::Weights;
