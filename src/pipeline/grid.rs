//! The grid: every combination of the values a pipeline file lists, each a complete set of
//! settings with the unset keys filled in.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::file::{PipelineFile, Target, Variant, WeightsSource};
use super::method::Method;
use super::schema::{IfUnset, setting_keys};
use super::value::Scalar;
use crate::clip::ClipConfig;
use crate::settings::split::SplitSettings;
use crate::settings::{Settings, parse_choice};

/// Beyond this a file is almost certainly a typo (a list where a range was meant).
const MAX_POINTS: usize = 1_000_000;

/// One grid point: its variant's name (`variant`, empty without `[[variant]]`), then every
/// setting of every stage, `section.key` in schema order.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    settings: Vec<(String, Scalar)>,
    /// Which `[[variant]]` of the file made the point (names may repeat); `None` without.
    variant_index: Option<usize>,
}

/// The name a point's variant goes by, results.csv's column before `method`.
pub const VARIANT: &str = "variant";

impl Point {
    /// The `[[variant]]` the point belongs to; empty for a file without variants.
    pub fn variant(&self) -> &str {
        self.get(VARIANT).as_str()
    }

    /// The point's `[[variant]]` table, by position in the file.
    pub fn variant_index(&self) -> Option<usize> {
        self.variant_index
    }

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
/// select, stage2, eval), so results.csv groups the way the file reads. With `[[variant]]`
/// tables, each variant's grid (the file's values, those the variant sets replaced) in file order.
pub fn expand(file: &PipelineFile) -> Result<Vec<Point>> {
    let preset = match &file.weights {
        WeightsSource::Init { preset, .. } => Some(preset.as_str()),
        WeightsSource::Pretrain(p) => Some(p.preset.as_str()),
        WeightsSource::File { .. } => None,
    };
    let model_image_size = match preset {
        Some(preset) => ClipConfig::preset(preset)?.vision.image_size,
        // What `clip-ast split` takes: OpenAI's models' input size (all but ViT-L/14@336).
        None => i64::from(SplitSettings::defaults().image_size),
    };
    let grids: Vec<VariantGrid> = if file.variants.is_empty() {
        vec![(None, "", file.values.clone())]
    } else {
        let replaced = |v: &Variant| {
            let mut values = file.values.clone();
            values.extend(v.values.iter().map(|(k, v)| (k.clone(), v.clone())));
            values
        };
        file.variants.iter().enumerate().map(|(i, v)| (Some(i), v.name.as_str(), replaced(v))).collect()
    };
    let mut points = Vec::new();
    for (index, variant, values) in grids {
        let mut partial: Vec<Vec<(String, Scalar)>> = vec![Vec::new()];
        for (full, values) in axes(&values) {
            let total = partial.len().saturating_mul(values.len());
            if points.len().saturating_add(total) > MAX_POINTS {
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
        points.extend(partial.into_iter().map(|given| complete((index, variant), given, model_image_size)));
    }
    // A preset's input size is known before anything runs: a split of another size would be
    // made and trained on, and refused only by eval.
    if let Some(preset) = preset
        && let Some(p) = points.iter().find(|p| p.get("data.image_size").as_i64() != model_image_size)
    {
        bail!(
            "{}: [data] image_size = {}, but the {preset} preset takes {model_image_size} px images; leave it unset or set {model_image_size}",
            file.at_point(p, "data.image_size"),
            p.get("data.image_size").as_i64()
        );
    }
    Ok(points)
}

/// A variant's position in the file (`None` without variants), its name, and its values.
type VariantGrid<'a> = (Option<usize>, &'a str, BTreeMap<String, Vec<Scalar>>);

/// Keys with values (given, or a fixed default), in schema order.
fn axes(given: &BTreeMap<String, Vec<Scalar>>) -> Vec<(String, Vec<Scalar>)> {
    let mut axes = Vec::new();
    for (full, key) in setting_keys() {
        let fixed = match &key.if_unset {
            IfUnset::Value(v) => Some(v.clone()),
            _ => None,
        };
        if let Some(values) = given.get(&full).cloned().or(fixed.map(|v| vec![v])) {
            axes.push((full, values));
        }
    }
    axes
}

/// Fill in the keys that follow another setting, and order everything as the schema does.
fn complete(
    (variant_index, variant): (Option<usize>, &str),
    given: Vec<(String, Scalar)>,
    model_image_size: i64,
) -> Point {
    let mut settings: Vec<(String, Scalar)> = Vec::with_capacity(given.len() + 9);
    settings.push((VARIANT.to_string(), Scalar::Str(variant.to_string())));
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
    Point { settings, variant_index }
}

/// Lookups of a point's `[[variant]]` table, by its index into the file's.
impl PipelineFile {
    /// The `[[variant]]` table `point` comes from.
    fn variant_of(&self, point: &Point) -> Option<&Variant> {
        point.variant_index().and_then(|i| self.variants.get(i))
    }

    /// The `[eval] targets` `point` is evaluated on: its variant's, or the file's.
    pub fn targets_of(&self, point: &Point) -> &[Target] {
        match self.variant_of(point).and_then(|v| v.targets.as_ref()) {
            Some(targets) => targets,
            None => &self.targets,
        }
    }

    /// `file:line` of the value `point` takes for `full`: its variant's line where the variant
    /// sets it, else the file's.
    pub fn at_point(&self, point: &Point, full: &str) -> String {
        match self.variant_of(point).and_then(|v| v.lines.get(full)) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.at(full),
        }
    }
}

/// Here rather than in `method.rs`, which the schema reads: a point's method is read off the
/// grid, and the grid reads the schema.
impl Method {
    /// The method of a point (checked when the file was read).
    pub fn of(point: &Point) -> Method {
        let name = point.get("method").as_str();
        parse_choice(name).unwrap_or_else(|why| panic!("method {name} {why}; the schema checks it"))
    }
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
        assert_eq!(&names[..5], ["variant", "method", "data.dataset", "data.root", "data.shots"]);
        assert_eq!(p.variant(), "", "no [[variant]]");
        assert_eq!(p.get("method"), &Scalar::Str("clip-ast".into()), "the default method");
        assert_eq!(names.last(), Some(&"eval.precision"));
        assert_eq!(names.len(), pts[0].settings().len());
    }
}
