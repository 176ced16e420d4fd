//! The area range of the training augmentation's RandomResizedCrop: each crop covers a fraction
//! of the image drawn uniformly from [min, max]. CoOp and CLIP-AST tune with torchvision's
//! default 0.08–1; the demo's pretraining crops less (0.5–1). A stage's key holds the range
//! only where it differs from that stage's default, so keys made before it was a setting stay.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A crop area range with 0 < min ≤ max ≤ 1. In keys it is the array `[min, max]`; on the
/// command line and in pipeline files the text `min,max` (see [`as_text`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "[f64; 2]", try_from = "[f64; 2]")]
pub struct CropScale {
    pub min: f64,
    pub max: f64,
}

impl CropScale {
    /// torchvision's RandomResizedCrop default, which CoOp's few-shot training uses.
    pub const FEW_SHOT: CropScale = CropScale { min: 0.08, max: 1.0 };
    /// The demo's contrastive pretraining.
    pub const PRETRAIN: CropScale = CropScale { min: 0.5, max: 1.0 };

    /// The range, if 0 < min ≤ max ≤ 1.
    pub fn new(min: f64, max: f64) -> Result<CropScale, String> {
        if !(min > 0.0 && min <= max && max <= 1.0) {
            return Err("must satisfy 0 < MIN ≤ MAX ≤ 1".into());
        }
        Ok(CropScale { min, max })
    }

    /// For `skip_serializing_if`: the stage-1 and stage-2 default, which their keys leave out.
    pub fn is_few_shot(&self) -> bool {
        *self == Self::FEW_SHOT
    }
}

impl Default for CropScale {
    fn default() -> Self {
        Self::FEW_SHOT
    }
}

/// `0.5,1`: Rust prints the shortest decimals that read back to the same numbers.
impl fmt::Display for CropScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.min, self.max)
    }
}

const TWO_NUMBERS: &str = "must be two numbers MIN,MAX (e.g. 0.5,1)";

/// `MIN,MAX` as `--crop-scale` and a pipeline's `crop_scale` take it.
impl FromStr for CropScale {
    type Err = String;

    fn from_str(text: &str) -> Result<CropScale, String> {
        let number = |part: &str| part.trim().parse::<f64>().ok().filter(|x| x.is_finite());
        match text.split(',').collect::<Vec<_>>()[..] {
            [a, b] => match (number(a), number(b)) {
                (Some(min), Some(max)) => CropScale::new(min, max),
                _ => Err(TWO_NUMBERS.into()),
            },
            _ => Err(TWO_NUMBERS.into()),
        }
    }
}

impl From<CropScale> for [f64; 2] {
    fn from(s: CropScale) -> [f64; 2] {
        [s.min, s.max]
    }
}

impl TryFrom<[f64; 2]> for CropScale {
    type Error = String;

    fn try_from([min, max]: [f64; 2]) -> Result<CropScale, String> {
        CropScale::new(min, max)
    }
}

/// Serde as the text `min,max`: the settings types' form (one pipeline value, one results.csv
/// cell), where keys hold the array.
pub mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::CropScale;

    pub fn serialize<S: Serializer>(scale: &CropScale, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(scale)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CropScale, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checks_and_prints_the_range() {
        assert_eq!("0.5,1".parse(), Ok(CropScale { min: 0.5, max: 1.0 }));
        assert_eq!(" 0.08 , 1.0 ".parse(), Ok(CropScale::FEW_SHOT));
        assert_eq!(CropScale::FEW_SHOT.to_string(), "0.08,1");
        assert_eq!("0.3,0.3".parse::<CropScale>().unwrap().to_string(), "0.3,0.3");
        for (bad, why) in [
            ("0,1", "must satisfy 0 < MIN ≤ MAX ≤ 1"),
            ("0.6,0.5", "must satisfy 0 < MIN ≤ MAX ≤ 1"),
            ("0.5,1.5", "must satisfy 0 < MIN ≤ MAX ≤ 1"),
            ("-0.1,1", "must satisfy 0 < MIN ≤ MAX ≤ 1"),
            ("0.5", TWO_NUMBERS),
            ("a,1", TWO_NUMBERS),
            ("nan,1", TWO_NUMBERS),
            ("0.1,0.5,1", TWO_NUMBERS),
        ] {
            assert_eq!(bad.parse::<CropScale>(), Err(why.to_string()), "{bad}");
        }
    }

    /// The range reaches the crops: their areas stay inside it, and the batches change with it.
    #[test]
    fn crops_cover_the_range_and_batches_follow_it() {
        use std::sync::Arc;

        use crate::data::augment::{TrainSet, make_batch, random_resized_crop_scaled};
        use crate::rng::SplitMix64;

        let area = |scale: CropScale| {
            let mut rng = SplitMix64::new(4);
            let fractions: Vec<f64> = (0..2000)
                .map(|_| {
                    let c = random_resized_crop_scaled(&mut rng, 500, 375, scale);
                    f64::from(c.width * c.height) / (500.0 * 375.0)
                })
                .collect();
            (fractions.iter().copied().fold(1.0, f64::min), fractions.iter().copied().fold(0.0, f64::max))
        };
        let (lo, hi) = area(CropScale { min: 0.5, max: 0.7 });
        // Whole-pixel boxes move the area by a pixel's worth.
        assert!(lo > 0.49 && lo < 0.52 && hi > 0.68 && hi < 0.71, "{lo} {hi}");
        let (lo, _) = area(CropScale::FEW_SHOT);
        assert!(lo < 0.1, "{lo}");

        let images = (0..4)
            .map(|i| image::RgbImage::from_fn(50, 40, |x, y| image::Rgb([(x * 5) as u8, (y * 6) as u8, i])))
            .collect();
        let set = TrainSet { images: Arc::new(images), labels: vec![0, 1, 2, 3] };
        let batch = |scale| make_batch(&set, &[0, 1, 2, 3], 7, 0, 16, scale).0;
        assert!(batch(CropScale::FEW_SHOT).equal(&batch(CropScale::FEW_SHOT)));
        assert!(!batch(CropScale::FEW_SHOT).equal(&batch(CropScale { min: 0.5, max: 1.0 })));
    }

    #[test]
    fn keys_hold_an_array_settings_the_text() {
        let s = CropScale { min: 0.5, max: 1.0 };
        assert_eq!(serde_json::to_string(&s).unwrap(), "[0.5,1.0]");
        assert_eq!(serde_json::from_str::<CropScale>("[0.5,1.0]").unwrap(), s);
        assert!(serde_json::from_str::<CropScale>("[0.0,1.0]").is_err(), "checked when read back too");
        #[derive(Serialize, Deserialize)]
        struct Text(#[serde(with = "as_text")] CropScale);
        assert_eq!(serde_json::to_string(&Text(s)).unwrap(), "\"0.5,1\"");
        assert_eq!(serde_json::from_str::<Text>("\"0.5,1\"").unwrap().0, s);
    }
}
