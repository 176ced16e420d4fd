//! Training: AdamW with readable moments, schedules, losses, stage 1, selection, stage 2.

pub mod adamw;
pub mod captions;
pub mod checkpoint;
pub mod diagnostics;
pub mod losses;
mod params_wire;
pub mod pretrain;
pub mod probe;
pub mod prompts;
pub mod render_mix;
pub mod schedule;
pub mod select;
pub mod select_like;
pub mod stage1;
pub mod stage2;
pub mod trainable;
