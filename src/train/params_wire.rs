//! Stage 2's params as keys and manifests hold them (stage-2 schema 1): the schedule repeats
//! the optimizer's learning rate as `base_lr`. `Stage2Params` holds it once and converts
//! through this layout, so its keys stay byte for byte what they were.

use serde::{Deserialize, Serialize};

use super::adamw::AdamWConfig;
use super::losses::ConsistencyWeights;
use super::schedule::WarmupCosine;
use super::stage2::Stage2Params;
use crate::clip::layers::Precision;
use crate::data::crop_scale::CropScale;

#[derive(Serialize, Deserialize)]
pub(super) struct Stage2ParamsWire {
    optimizer: AdamWConfig,
    schedule: ScheduleWire,
    lambdas: ConsistencyWeights,
    batch_size: usize,
    seed: u64,
    precision: Precision,
    /// Left out at the default, so keys made before it was a setting stay.
    #[serde(default, skip_serializing_if = "CropScale::is_few_shot")]
    crop_scale: CropScale,
}

#[derive(Serialize, Deserialize)]
struct ScheduleWire {
    base_lr: f64,
    warmup_start_lr: f64,
    warmup_epochs: usize,
    epochs: usize,
}

impl From<Stage2Params> for Stage2ParamsWire {
    fn from(p: Stage2Params) -> Self {
        let s = p.schedule;
        Stage2ParamsWire {
            schedule: ScheduleWire {
                base_lr: p.optimizer.lr,
                warmup_start_lr: s.warmup_start_lr,
                warmup_epochs: s.warmup_epochs,
                epochs: s.epochs,
            },
            optimizer: p.optimizer,
            lambdas: p.lambdas,
            batch_size: p.batch_size,
            seed: p.seed,
            precision: p.precision,
            crop_scale: p.crop_scale,
        }
    }
}

impl TryFrom<Stage2ParamsWire> for Stage2Params {
    type Error = String;

    fn try_from(w: Stage2ParamsWire) -> Result<Self, String> {
        // Both the command and the pipeline always wrote the same rate twice.
        if w.schedule.base_lr.to_bits() != w.optimizer.lr.to_bits() {
            return Err(format!(
                "schedule.base_lr {} differs from optimizer.lr {}; stage 2 has one learning rate",
                w.schedule.base_lr, w.optimizer.lr
            ));
        }
        let s = w.schedule;
        Ok(Stage2Params {
            optimizer: w.optimizer,
            schedule: WarmupCosine {
                warmup_start_lr: s.warmup_start_lr,
                warmup_epochs: s.warmup_epochs,
                epochs: s.epochs,
            },
            lambdas: w.lambdas,
            batch_size: w.batch_size,
            seed: w.seed,
            precision: w.precision,
            crop_scale: w.crop_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout keys were made from before the rate was held once, written out by hand.
    #[test]
    fn serialises_as_schema_1_and_reads_it_back() {
        let p = Stage2Params { seed: 4, ..Stage2Params::default() };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"optimizer":{"lr":1e-7,"beta1":0.9,"beta2":0.999,"eps":1e-8,"weight_decay":0.0001,"amsgrad":false},"#,
                r#""schedule":{"base_lr":1e-7,"warmup_start_lr":1e-9,"warmup_epochs":3,"epochs":30},"#,
                r#""lambdas":{"image_l1":1.0,"text_l1":1.0,"kl":1.0},"batch_size":32,"seed":4,"precision":"fp32"}"#
            )
        );
        assert_eq!(serde_json::from_str::<Stage2Params>(&json).unwrap(), p);
        let cropped = Stage2Params { crop_scale: "0.5,0.9".parse().unwrap(), ..p.clone() };
        let json_cropped = serde_json::to_string(&cropped).unwrap();
        assert!(json_cropped.ends_with(r#""precision":"fp32","crop_scale":[0.5,0.9]}"#), "{json_cropped}");
        assert_eq!(serde_json::from_str::<Stage2Params>(&json_cropped).unwrap(), cropped);
        let two_rates = json.replace(r#""base_lr":1e-7"#, r#""base_lr":2e-7"#);
        let e = serde_json::from_str::<Stage2Params>(&two_rates).unwrap_err().to_string();
        assert!(e.contains("one learning rate"), "{e}");
    }
}
