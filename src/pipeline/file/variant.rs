//! `[[variant]]`: named variants of a pipeline file, each the file's grid with some of its
//! settings replaced, so one file runs several differently-configured methods side by side
//! (pipelines/README.md). A variant's values are read by the same code as the sections' own
//! (`Reader::values`, `Reader::targets`), so they are checked exactly as the file's are.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use toml::Spanned;
use toml::de::DeValue;

use super::{PipelineFile, Reader, Target, describe};
use crate::pipeline::schema::{self, SETTING_SECTIONS};
use crate::pipeline::value::{Scalar, Ty};

/// The top-level key of the array of tables.
pub(super) const KEY: &str = "variant";

/// What messages call a variant's own keys: `[[variant]] name` (`label` brackets it once more).
const VARIANT_LABEL: &str = "[variant]";

/// One `[[variant]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Unique in the file; results.csv's `variant` column.
    pub name: String,
    /// The line of its `name`, for messages.
    pub line: usize,
    /// `section.key` (or `method`) → the values replacing the file's for this variant.
    pub values: BTreeMap<String, Vec<Scalar>>,
    /// `section.key` → the line the variant sets it on.
    pub lines: BTreeMap<String, usize>,
    /// `eval.targets`, replacing the file's `[eval] targets`; `None` keeps the file's.
    pub targets: Option<Vec<Target>>,
}

/// Top-level keys a variant may not set, and why.
const NOT_IN_A_VARIANT: &[(&str, &str)] = &[
    ("weights", "every variant adapts the file's [weights]"),
    ("report", "[report] is the file's and covers every variant"),
    ("choose", "[choose] is the file's; each variant makes its own choice by it"),
    ("slurm", "[slurm] is the file's, per stage kind"),
    ("description", "it describes the whole file"),
    (KEY, "variants do not nest"),
];

/// The keys a variant may hold: its name, `method`, and the setting sections.
fn known() -> Vec<&'static str> {
    ["name", "method"].into_iter().chain(SETTING_SECTIONS.iter().copied()).collect()
}

impl Reader<'_> {
    /// `[[variant]]` tables, in file order.
    pub(super) fn variants(&self, v: &Spanned<DeValue<'_>>) -> Result<Vec<Variant>> {
        let DeValue::Array(items) = v.get_ref() else {
            bail!(
                "{}: `{KEY}` must be a list of tables: a [[{KEY}]] section per variant, each with name = \"...\"",
                self.at(v.span().start)
            );
        };
        // A name may label several variants (one method in two protocols): their rows differ
        // in the settings the variants set, which every table groups by.
        items.iter().map(|item| self.variant(item)).collect()
    }

    fn variant(&self, item: &Spanned<DeValue<'_>>) -> Result<Variant> {
        let DeValue::Table(table) = item.get_ref() else {
            bail!(
                "{}: [[{KEY}]] lists {}; each variant is a table",
                self.at(item.span().start),
                describe(item.get_ref())
            );
        };
        let top = schema::section("");
        let mut variant = Variant {
            name: String::new(),
            line: self.line(item.span().start),
            values: BTreeMap::new(),
            lines: BTreeMap::new(),
            targets: None,
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (k, v) in entries {
            let name: &str = k.get_ref();
            let at = self.at(k.span().start);
            if let Some((_, why)) = NOT_IN_A_VARIANT.iter().find(|(key, _)| *key == name) {
                bail!("{at}: [[{KEY}]] cannot set `{name}`: {why}");
            }
            if !known().contains(&name) {
                bail!("{at}: unknown key `{name}` in [[{KEY}]]; known keys: {}", known().join(", "));
            }
            let key = top.key(name).expect("every known key is in the schema's top level");
            match name {
                "name" => {
                    // The top-level `name`'s definition: the same character rules.
                    let [value] = self.values(v, key, VARIANT_LABEL)?.try_into().expect("`name` takes one value");
                    variant.name = value.as_str().to_string();
                    variant.line = self.line(k.span().start);
                }
                "method" => {
                    variant.values.insert(name.to_string(), self.values(v, key, VARIANT_LABEL)?);
                    variant.lines.insert(name.to_string(), self.line(k.span().start));
                }
                section => match v.get_ref() {
                    DeValue::Table(t) => {
                        let mut keys: Vec<_> = t.iter().collect();
                        keys.sort_by_key(|(k, _)| k.span().start);
                        for (k, v) in keys {
                            self.variant_setting(&mut variant, section, k, v)?;
                        }
                    }
                    _ => bail!("{at}: [[{KEY}]] `{section}` must be a table: {section}.KEY = VALUE"),
                },
            }
        }
        if variant.name.is_empty() {
            bail!("{}: [[{KEY}]] needs name = \"...\" (its rows' label)", self.at(item.span().start));
        }
        Ok(variant)
    }

    /// `section.key = value` of a variant: a grid key of a setting section, or `eval.targets`.
    fn variant_setting(
        &self,
        variant: &mut Variant,
        section: &str,
        k: &Spanned<std::borrow::Cow<'_, str>>,
        v: &Spanned<DeValue<'_>>,
    ) -> Result<()> {
        let name: &str = k.get_ref();
        let at = self.at(k.span().start);
        let def = schema::section(section);
        let full = schema::full_name(section, name);
        let Some(key) = def.key(name) else {
            bail!("{at}: unknown key `{name}` in [{section}] of [[{KEY}]]; known keys: {}", def.key_names().join(", "));
        };
        if full == "eval.targets" {
            variant.targets = Some(self.targets(v)?);
        } else if key.ty == Ty::Table || !key.grid {
            bail!(
                "{at}: [[{KEY}]] cannot set `{full}`: not a grid key, so it is the file's for every variant; set it in [{section}]"
            );
        } else {
            variant.values.insert(full.clone(), self.values(v, key, section)?);
        }
        variant.lines.insert(full, self.line(k.span().start));
        Ok(())
    }
}

impl PipelineFile {
    /// The variant named `name`.
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

#[cfg(test)]
mod tests;
