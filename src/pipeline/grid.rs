//! The grid: every combination of the values a pipeline file lists, each a complete set of
//! settings with the unset keys filled in.

use anyhow::{Result, bail};

use super::file::{PipelineFile, WeightsSource};
use super::schema::{IfUnset, setting_keys};
use super::value::Scalar;
use crate::clip::ClipConfig;
use crate::settings::Settings;
use crate::settings::split::SplitSettings;

/// Beyond this a file is almost certainly a typo (a list where a range was meant).
const MAX_POINTS: usize = 1_000_000;

/// One grid point: every setting of every stage, `section.key` in schema order.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    settings: Vec<(String, Scalar)>,
}

impl Point {
    pub fn settings(&self) -> &[(String, Scalar)] {
        &self.settings
    }

    pub fn get(&self, full: &str) -> &Scalar {
        self.get_opt(full).unwrap_or_else(|| panic!("grid point has no `{full}`"))
    }

    /// A key that may stay unset (`data.test_per_class`).
    pub fn get_opt(&self, full: &str) -> Option<&Scalar> {
        self.settings.iter().find(|(name, _)| name == full).map(|(_, v)| v)
    }
}

/// All points, the first listed key varying slowest (in schema order: method, data, stage1,
/// select, stage2, eval), so results.csv groups the way the file reads.
pub fn expand(file: &PipelineFile) -> Result<Vec<Point>> {
    let mut partial: Vec<Vec<(String, Scalar)>> = vec![Vec::new()];
    for (full, values) in axes(file) {
        let total = partial.len().saturating_mul(values.len());
        if total > MAX_POINTS {
            bail!("{}: the grid has more than {MAX_POINTS} points; shorten the lists", file.path.display());
        }
        partial = partial
            .into_iter()
            .flat_map(|point| {
                let full = &full;
                values.iter().map(move |v| {
                    let mut next = point.clone();
                    next.push((full.clone(), v.clone()));
                    next
                })
            })
            .collect();
    }
    let model_image_size = match &file.weights {
        WeightsSource::Init { preset, .. } => ClipConfig::preset(preset)?.vision.image_size,
        WeightsSource::Pretrain(p) => ClipConfig::preset(&p.preset)?.vision.image_size,
        // What `clip-ast split` takes: OpenAI's models' input size (all but ViT-L/14@336).
        WeightsSource::File { .. } => i64::from(SplitSettings::defaults().image_size),
    };
    Ok(partial.into_iter().map(|given| complete(given, model_image_size)).collect())
}

/// Keys with values (given, or a fixed default), in schema order.
fn axes(file: &PipelineFile) -> Vec<(String, Vec<Scalar>)> {
    let mut axes = Vec::new();
    for (full, key) in setting_keys() {
        let fixed = match &key.if_unset {
            IfUnset::Value(v) => Some(v.clone()),
            _ => None,
        };
        if let Some(values) = file.values.get(&full).cloned().or(fixed.map(|v| vec![v])) {
            axes.push((full, values));
        }
    }
    axes
}

/// Fill in the keys that follow another setting, and order everything as the schema does.
fn complete(given: Vec<(String, Scalar)>, model_image_size: i64) -> Point {
    let mut settings: Vec<(String, Scalar)> = Vec::with_capacity(given.len() + 8);
    for (full, key) in setting_keys() {
        let value = match given.iter().find(|(name, _)| *name == full) {
            Some((_, v)) => v.clone(),
            None => match &key.if_unset {
                // Schema order puts what is followed first (a schema test checks types).
                IfUnset::Follows(other) => settings
                    .iter()
                    .find(|(name, _)| name == *other)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("`{full}` follows `{other}`, which comes later in the schema")),
                IfUnset::ModelImageSize => Scalar::Int(model_image_size),
                _ => continue,
            },
        };
        settings.push((full, value));
    }
    Point { settings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::file::parse;
    use std::path::Path;

    fn points(extra: &str) -> Vec<Point> {
        let text = format!(
            "[weights]\ninit = {{ preset = \"mini\" }}\n[data]\ndataset = \"caltech101\"\nroot = \"/d\"\nshots = [1, 2]\nseed = [1, 2, 3]\n{extra}"
        );
        expand(&parse(&text, Path::new("x.toml"), &|_| None).unwrap()).unwrap()
    }

    #[test]
    fn product_in_schema_order_with_followers_filled_in() {
        let pts = points("[stage2]\nlambda = [0, 1]\nlambda_kl = 5\nseed = 9\n");
        assert_eq!(pts.len(), 2 * 3 * 2);
        let row =
            |p: &Point| (p.get("data.shots").as_i64(), p.get("data.seed").as_i64(), p.get("stage2.lambda").as_f64());
        assert_eq!(row(&pts[0]), (1, 1, 0.0));
        assert_eq!(row(&pts[1]), (1, 1, 1.0));
        assert_eq!(row(&pts[2]), (1, 2, 0.0));
        assert_eq!(row(&pts[11]), (2, 3, 1.0));
        let p = &pts[3];
        assert_eq!(p.get("stage1.seed"), p.get("data.seed"));
        assert_eq!(p.get("select.seed"), p.get("data.seed"));
        assert_eq!(p.get("stage2.seed"), &Scalar::Int(9));
        assert_eq!(p.get("stage2.lambda_img"), p.get("stage2.lambda"));
        assert_eq!(p.get("stage2.lambda_kl"), &Scalar::Float(5.0));
        assert_eq!(p.get("data.image_size"), &Scalar::Int(32), "the mini preset's input size");
        assert_eq!(p.get("stage1.lr"), &Scalar::Float(1e-5));
        assert_eq!(p.get("select.score"), &Scalar::Str("inv-sqrt-v".into()));
        let names: Vec<&str> = p.settings().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..4], ["method", "data.dataset", "data.root", "data.shots"]);
        assert_eq!(p.get("method"), &Scalar::Str("clip-ast".into()), "the default method");
        assert_eq!(names.last(), Some(&"eval.precision"));
        assert_eq!(names.len(), pts[0].settings().len());
    }
}
