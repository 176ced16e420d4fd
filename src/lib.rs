//! clip-ast: adapt CLIP to few-shot image classification with CLIP-AST, as a pipeline of
//! cached, auditable stage commands. See README.md and docs/.

pub mod cli;
pub mod clip;
pub mod crash_point;
pub mod csv_io;
pub mod data;
pub mod device;
pub mod embed;
pub mod eval;
pub mod export;
pub mod fsutil;
pub mod interrupt;
pub mod owned;
pub mod pipeline;
pub mod predict;
pub mod report;
pub mod rng;
pub mod settings;
pub mod stages;
pub mod stats;
pub mod store;
pub mod train;
pub mod zero_shot;
