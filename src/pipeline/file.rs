//! Reading a pipeline file: TOML → the values it sets, each checked against the schema where
//! it stands, so a mistake is reported as `file:line` with the section and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::env;
use super::schema::{self, IfUnset, KeyDef};
use super::value::{Scalar, Ty};
use crate::clip::config::Activation;
use crate::data::pool::Pool;
use crate::data::rendering::Rendering;
use crate::data::subsample::Subsample;
use crate::report::verdict::Claim;
use crate::settings::pretrain::PretrainSettings;
use crate::settings::{Settings, parse_choice};
pub use target::Target;

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightsSource {
    /// A checkpoint `import-weights` reads.
    File { path: PathBuf, activation: Option<Activation> },
    /// Seeded random weights of a preset.
    Init { preset: String, seed: i64 },
    /// A foundation pretrained on `[data]`'s dataset (the demo's).
    Pretrain(Box<PretrainSource>),
}

/// `[weights] pretrain = { ... }`: a preset trained contrastively on `shots` train images per
/// class of the `classes` half of the dataset `[data]` names.
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainSource {
    pub preset: String,
    pub init_seed: i64,
    pub shots: i64,
    /// The sampling seed of the pretraining split.
    pub seed: i64,
    pub classes: Subsample,
    pub test_per_class: Option<usize>,
    /// The pretraining split's rendering (the target: see `PretrainSettings::source_rendering`).
    pub rendering: Rendering,
    /// The pretraining split's pool (`pretrain`: disjoint from every few-shot split).
    pub pool: Pool,
    /// `clip-ast pretrain`'s settings (checked).
    pub settings: PretrainSettings,
}

#[derive(Clone, Debug)]
pub struct PipelineFile {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub weights: WeightsSource,
    /// `[report] title`: with a `[report]` section, the run also writes report.csv and report.png (accuracy
    /// against shots, one line per method) and prints the table.
    pub report_title: Option<String>,
    /// `section.key` → the values the file gives: one, or a grid axis's list. Unset keys are
    /// absent; `grid` fills in their defaults.
    pub values: BTreeMap<String, Vec<Scalar>>,
    /// `section.key` → the line it is on, for messages about combinations of values.
    pub lines: BTreeMap<String, usize>,
    /// `[slurm]`: batch job resources per stage kind (read by `slurm::config`).
    pub slurm: super::slurm::config::SlurmConfig,
    /// `[eval] targets`: datasets every trained model is also evaluated on.
    pub targets: Vec<Target>,
    /// `[report] claims`: the comparisons report.md gives a verdict line each.
    pub claims: Vec<Claim>,
    /// `[[variant]]` tables in file order; none for a file that is one grid.
    pub variants: Vec<Variant>,
}

impl PipelineFile {
    /// `file:line` of a key, or the file when the key is not in it.
    pub fn at(&self, full: &str) -> String {
        match self.lines.get(full) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// Read and check `path`, expanding `${VAR}` from the environment.
pub fn read(path: &Path) -> Result<PipelineFile> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{}: no such pipeline file", path.display()),
        _ => anyhow!("{}: cannot read ({e})", path.display()),
    })?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// Check `text` as the pipeline file `path`, looking variables up with `env`.
pub fn parse(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<PipelineFile> {
    let reader = Reader { path, text, env };
    let doc = DeTable::parse(text).map_err(|e| {
        let at = reader.at(e.span().map_or(0, |s| s.start));
        anyhow!("{at}: not valid TOML: {}", e.message().trim().replace('\n', " "))
    })?;
    let mut found = Found::default();
    reader.table(doc.get_ref(), "", &mut found)?;
    let slurm = super::slurm::config::read(doc.get_ref(), &|offset| reader.at(offset))?;
    Ok(PipelineFile { slurm, ..reader.finish(found)? })
}

#[derive(Default)]
struct Found {
    values: BTreeMap<String, Vec<Scalar>>,
    lines: BTreeMap<String, usize>,
    targets: Vec<Target>,
    claims: Vec<Claim>,
    variants: Vec<Variant>,
}

struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// `[stage2] lr`, or `name` at the top level.
fn label(section: &str, key: &str) -> String {
    if section.is_empty() { format!("`{key}`") } else { format!("[{section}] {key}") }
}

impl Reader<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn at(&self, offset: usize) -> String {
        format!("{}:{}", self.path.display(), self.line(offset))
    }

    fn table(&self, table: &DeTable<'_>, section: &str, found: &mut Found) -> Result<()> {
        let def = schema::section(section);
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (k, v) in entries {
            let name: &str = k.get_ref();
            if section.is_empty() && name == "slurm" {
                continue; // slurm::config reads it
            }
            if section.is_empty() && name == variant::KEY {
                found.variants = self.variants(v)?;
                continue;
            }
            let at = self.at(k.span().start);
            let Some(key) = def.key(name) else {
                let place = if section.is_empty() { "at the top level".to_string() } else { format!("in [{section}]") };
                bail!("{at}: unknown key `{name}` {place}; known keys: {}", def.key_names().join(", "));
            };
            let full = schema::full_name(section, name);
            if full == "eval.targets" {
                found.targets = self.targets(v)?;
                continue;
            }
            if full == "report.claims" {
                found.claims = self.claims(v)?;
                continue;
            }
            found.lines.insert(full.clone(), self.line(k.span().start));
            if key.ty == Ty::Table {
                match v.get_ref() {
                    DeValue::Table(t) => self.table(t, &full, found)?,
                    _ => bail!("{at}: `{name}` must be a table: a [{full}] section or {name} = {{ ... }}"),
                }
                continue;
            }
            let values = self.values(v, key, section)?;
            found.values.insert(full, values);
        }
        Ok(())
    }

    /// The value or grid axis list `v` of `key` in `section`, each value checked by [`Self::scalar`].
    fn values(&self, v: &Spanned<DeValue<'_>>, key: &KeyDef, section: &str) -> Result<Vec<Scalar>> {
        let at = self.at(v.span().start);
        let name = key.name;
        Ok(match v.get_ref() {
            DeValue::Array(items) => {
                if !key.grid {
                    bail!("{at}: {} takes one value, not a list", label(section, name));
                }
                let values: Vec<Scalar> =
                    items.iter().map(|item| self.scalar(item, key, section)).collect::<Result<_>>()?;
                if values.is_empty() {
                    bail!("{at}: {} is an empty list; give at least one value", label(section, name));
                }
                for (i, value) in values.iter().enumerate() {
                    if values[..i].contains(value) {
                        bail!("{at}: {} lists {value} twice", label(section, name));
                    }
                }
                values
            }
            _ => vec![self.scalar(v, key, section)?],
        })
    }

    fn scalar(&self, v: &Spanned<DeValue<'_>>, key: &KeyDef, section: &str) -> Result<Scalar> {
        let at = self.at(v.span().start);
        let what = label(section, key.name);
        let value = match (key.ty, v.get_ref()) {
            (Ty::Str, DeValue::String(s)) => {
                Scalar::Str(env::expand(s, self.env).map_err(|why| anyhow!("{at}: {what}: {why}"))?)
            }
            (Ty::Int | Ty::Float, DeValue::Integer(i)) => {
                let n = i64::from_str_radix(i.as_str(), i.radix())
                    .map_err(|_| anyhow!("{at}: {what} = {i} does not fit in 64 bits"))?;
                if key.ty == Ty::Int { Scalar::Int(n) } else { Scalar::Float(n as f64) }
            }
            (Ty::Float, DeValue::Float(x)) => {
                Scalar::Float(x.as_str().parse().map_err(|_| anyhow!("{at}: {what} = {x} is not a number"))?)
            }
            (Ty::Bool, DeValue::Boolean(b)) => Scalar::Bool(*b),
            (ty, other) => bail!("{at}: {what} must be {}, not {}", ty.describe(), describe(other)),
        };
        key.check.check(&value).map_err(|why| anyhow!("{at}: {what} = {value} {why}"))?;
        Ok(value)
    }

    fn finish(&self, found: Found) -> Result<PipelineFile> {
        let file = self.path.display();
        for section in ["weights", "data"] {
            if !found.lines.contains_key(section) {
                bail!("{file}: no [{section}] section; pipelines/README.md shows what it holds");
            }
        }
        for section in schema::all() {
            let present = section.name.is_empty() || found.lines.contains_key(section.name);
            for key in &section.keys {
                let full = schema::full_name(section.name, key.name);
                if present && matches!(key.if_unset, IfUnset::Required) && !found.values.contains_key(&full) {
                    bail!("{file}: {} is not set; a pipeline must give it", label(section.name, key.name));
                }
            }
        }
        let one = |full: &str| found.values.get(full).map(|v| v[0].clone());
        let given = |full: &str| found.values.contains_key(full) || found.lines.contains_key(full);
        let sources: Vec<&str> =
            ["file", "init", "pretrain"].into_iter().filter(|k| given(&format!("weights.{k}"))).collect();
        if sources.len() != 1 {
            let at = self.at_key(&found, "weights");
            if sources.is_empty() {
                bail!(
                    "{at}: [weights] needs file = \"...\" (a checkpoint to import), init = {{ preset = \"mini\", seed = 0 }} or pretrain = {{ preset = \"mini\", shots = 1000 }}"
                );
            }
            bail!("{at}: [weights] gives {}; keep one", sources.join(" and "));
        }
        if sources[0] != "file" && found.values.contains_key("weights.activation") {
            bail!(
                "{}: [weights] activation only applies to an imported file; a preset knows its own",
                self.at_key(&found, "weights.activation")
            );
        }
        let weights = match sources[0] {
            "file" => WeightsSource::File {
                path: PathBuf::from(one("weights.file").context("checked above")?.as_str()),
                activation: one("weights.activation")
                    .map(|a| parse_choice::<Activation>(a.as_str()))
                    .transpose()
                    .map_err(|why| anyhow!("[weights] activation {why}"))?,
            },
            "init" => WeightsSource::Init {
                preset: one("weights.init.preset").context("preset checked above")?.as_str().to_string(),
                seed: one("weights.init.seed").map_or(0, |s| s.as_i64()),
            },
            _ => {
                if found.values.get("data.dataset").map_or(0, Vec::len) > 1 {
                    bail!(
                        "{}: [weights] pretrain trains on [data] dataset, which lists several; a pipeline has one foundation",
                        self.at_key(&found, "data.dataset")
                    );
                }
                let get = |k: &str| one(&format!("weights.pretrain.{k}"));
                // `clip-ast pretrain`'s settings, its defaults where the file sets none.
                let mut settings = PretrainSettings::defaults().values();
                for key in PretrainSettings::keys() {
                    if let Some(v) = get(key.name) {
                        settings.insert(key.name.to_string(), v.to_json());
                    }
                }
                let settings = PretrainSettings::from_values(settings)?;
                settings.params()?;
                let classes = get("classes").map_or_else(|| "base".to_string(), |v| v.as_str().to_string());
                WeightsSource::Pretrain(Box::new(PretrainSource {
                    preset: get("preset").context("preset checked above")?.as_str().to_string(),
                    init_seed: settings.init_seed,
                    shots: get("shots").context("shots checked above")?.as_i64(),
                    seed: settings.seed as i64,
                    classes: parse_choice(&classes).map_err(|why| anyhow!("[weights.pretrain] classes {why}"))?,
                    test_per_class: get("test_per_class").map(|v| v.as_i64() as usize),
                    rendering: get("rendering")
                        .map_or(Ok(Rendering::Original), |v| parse_choice(v.as_str()))
                        .map_err(|why| anyhow!("[weights.pretrain] rendering {why}"))?,
                    pool: get("pool")
                        .map_or(Ok(Pool::All), |v| parse_choice(v.as_str()))
                        .map_err(|why| anyhow!("[weights.pretrain] pool {why}"))?,
                    settings,
                }))
            }
        };
        let name = match one("name") {
            Some(name) => name.as_str().to_string(),
            None => {
                let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                schema::Check::Name
                    .check(&Scalar::Str(stem.clone()))
                    .map_err(|why| anyhow!("{file}: the file name `{stem}` {why}; or set name = \"...\" at the top"))?;
                stem
            }
        };
        // A [report] section without a title is titled by the pipeline's name.
        let report_title = found
            .lines
            .contains_key("report")
            .then(|| one("report.title").map_or_else(|| name.clone(), |t| t.as_str().to_string()));
        Ok(PipelineFile {
            path: self.path.to_path_buf(),
            name,
            description: one("description").map(|d| d.as_str().to_string()),
            weights,
            report_title,
            values: found.values,
            lines: found.lines,
            slurm: Default::default(),
            targets: found.targets,
            claims: found.claims,
            variants: found.variants,
        })
    }

    /// `[eval] targets = [{ dataset = "...", root = "..." }, ...]`, each table's keys checked
    /// against the schema's `[eval.targets]` section.
    fn targets(&self, v: &Spanned<DeValue<'_>>) -> Result<Vec<Target>> {
        let example = "targets = [{ dataset = \"imagenet-sketch\", root = \"${DATA}\" }]";
        let mut targets: Vec<Target> = Vec::new();
        for (line, values) in self.table_list(v, "eval.targets", example)? {
            let at = format!("{}:{line}", self.path.display());
            let text = |name: &str| values.get(name).map(|v| v.as_str().to_string());
            let (Some(dataset), Some(root)) = (text("dataset"), text("root")) else {
                bail!("{at}: each of [eval] targets needs dataset = \"...\" and root = \"...\"");
            };
            let target = Target {
                dataset: crate::data::datasets::manifest(&dataset)?.name,
                root: PathBuf::from(root),
                test_per_class: values.get("test_per_class").map(|n| n.as_i64() as usize),
                // The schema checked the name against the choices.
                rendering: values
                    .get("rendering")
                    .map_or_else(|| Ok(Rendering::default()), |r| parse_choice(r.as_str()))
                    .expect("checked against the schema's choices"),
                line,
            };
            // One dataset may be a target once per rendering.
            if targets.iter().any(|t| t.label() == target.label()) {
                bail!("{at}: [eval] targets lists {} twice", target.label());
            }
            targets.push(target);
        }
        Ok(targets)
    }

    /// A key whose value is a list of tables (`[eval] targets`, `[report] claims`): per table
    /// its line and its values, each key checked against the schema's section `full`.
    fn table_list<'v>(
        &self,
        v: &'v Spanned<DeValue<'_>>,
        full: &str,
        example: &str,
    ) -> Result<Vec<(usize, BTreeMap<&'v str, Scalar>)>> {
        let at = self.at(v.span().start);
        let (section, key) = full.split_once('.').expect("a list of tables is a key of a section");
        let DeValue::Array(items) = v.get_ref() else {
            bail!("{at}: [{section}] {key} must be a list of tables: {example}");
        };
        let def = schema::section(full);
        let mut out = Vec::new();
        for item in items {
            let at = self.at(item.span().start);
            let DeValue::Table(table) = item.get_ref() else {
                bail!("{at}: [{section}] {key} lists {}; each is a table: {example}", describe(item.get_ref()));
            };
            let mut values = BTreeMap::new();
            for (k, v) in table.iter() {
                let name: &str = k.get_ref();
                let Some(def_key) = def.key(name) else {
                    bail!(
                        "{}: unknown key `{name}` in [{section}] {key}; known keys: {}",
                        self.at(k.span().start),
                        def.key_names().join(", ")
                    );
                };
                if matches!(v.get_ref(), DeValue::Array(_)) {
                    bail!("{}: [{full}] {name} takes one value, not a list", self.at(v.span().start));
                }
                values.insert(name, self.scalar(v, def_key, full)?);
            }
            out.push((self.line(item.span().start), values));
        }
        Ok(out)
    }

    fn at_key(&self, found: &Found, full: &str) -> String {
        match found.lines.get(full) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a whole number",
        DeValue::Float(_) => "a number with a fraction",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

mod claims;
mod target;
#[cfg(test)]
mod tests;
mod variant;

pub use variant::Variant;
