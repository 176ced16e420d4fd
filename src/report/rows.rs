//! The report's view of results rows: each row's label (what it is compared as), protocol (the
//! data settings it is scored under), shot count and replicate.

use anyhow::{Result, bail};

use crate::csv_io::Table;

/// A row's label is its `variant` where the file names one, else its `method`.
const VARIANT: &str = "variant";
const METHOD: &str = "method";
pub const SHOTS: &str = "data.shots";
pub const TARGET: &str = "target";
/// Data settings that are not part of a protocol: the replicate axis and the shot axis.
const NOT_PROTOCOL: &[&str] = &["data.shots", "data.seed", "data.root"];

/// The setting columns of results.csv (or of its planned stand-in): those before `target` or
/// `weights`, which come first in its header.
fn setting_columns(table: &Table) -> usize {
    table.header.iter().position(|h| h == TARGET || h == "weights").unwrap_or(table.header.len())
}

/// Per row, its label: `variant` when the table has that column and it is not empty, else
/// `method`. Where rows of one such name differ in a setting that is not data, a seed or
/// `chosen` (a grid over a setting no `[choose]` decides), each such setting is appended as
/// ` section.key=value`, so different runs are never averaged as one.
pub fn labels(table: &Table, seeds: &[&str], chosen: &[String]) -> Vec<String> {
    let variant = table.column(VARIANT);
    let method = table.column(METHOD);
    let name = |row: &[String]| -> String {
        match (variant.map(|v| row[v].as_str()), method) {
            (Some(v), _) if !v.is_empty() => v.to_string(),
            (_, Some(m)) => row[m].clone(),
            _ => String::new(),
        }
    };
    let names: Vec<String> = table.rows.iter().map(|r| name(r)).collect();
    let suffix_columns: Vec<usize> = (0..setting_columns(table))
        .filter(|&i| {
            let h = table.header[i].as_str();
            !(h == VARIANT
                || h == METHOD
                || h.starts_with("data.")
                || seeds.contains(&h)
                || chosen.iter().any(|c| c == h))
        })
        .collect();
    names
        .iter()
        .zip(&table.rows)
        .map(|(n, row)| {
            let mut label = n.clone();
            for &c in &suffix_columns {
                let varies = names.iter().zip(&table.rows).any(|(m, other)| m == n && other[c] != row[c]);
                if varies {
                    label += &format!(" {}={}", table.header[c], row[c]);
                }
            }
            label
        })
        .collect()
}

/// `subject` as one of `labels`: the label itself, or a variant or method name that only one
/// label starts with.
pub fn find_subject(labels: &[String], subject: &str) -> Result<String> {
    let mut distinct: Vec<&String> = Vec::new();
    for l in labels {
        if !distinct.contains(&l) {
            distinct.push(l);
        }
    }
    if distinct.iter().any(|l| *l == subject) {
        return Ok(subject.to_string());
    }
    let prefixed: Vec<&&String> =
        distinct.iter().filter(|l| l.strip_prefix(subject).is_some_and(|rest| rest.starts_with(' '))).collect();
    let quoted = |ls: &[&String]| ls.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ");
    match prefixed.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("[report] subject = \"{subject}\" is not a label of this pipeline's runs ({})", quoted(&distinct)),
        many => bail!(
            "[report] subject = \"{subject}\" names {} labels ({}); give one of them",
            many.len(),
            quoted(&many.iter().map(|l| **l).collect::<Vec<_>>())
        ),
    }
}

/// One results row as the report sees it.
#[derive(Clone, Debug)]
pub struct Run {
    pub row: usize,
    pub label: String,
    /// Index into [`Runs::protocols`].
    pub protocol: usize,
    pub shots: i64,
    /// The values of the seed columns, `data.seed` first.
    pub seeds: Vec<String>,
    /// Empty for a run's own test set.
    pub target: String,
    pub method: String,
}

/// A protocol: the `data.` settings (but shots, seed and root) as (column, value).
pub type Protocol = Vec<(String, String)>;

pub struct Runs<'a> {
    pub table: &'a Table,
    pub runs: Vec<Run>,
    pub protocols: Vec<Protocol>,
}

impl<'a> Runs<'a> {
    pub fn new(table: &'a Table, seeds: &[&str], chosen: &[String]) -> Result<Runs<'a>> {
        let labels = labels(table, seeds, chosen);
        let Some(shots) = table.column(SHOTS) else { bail!("the results have no `{SHOTS}` column") };
        let protocol_columns: Vec<usize> = (0..setting_columns(table))
            .filter(|&i| table.header[i].starts_with("data.") && !NOT_PROTOCOL.contains(&table.header[i].as_str()))
            .collect();
        let seed_columns: Vec<usize> = seeds.iter().filter_map(|s| table.column(s)).collect();
        let (target, method) = (table.column(TARGET), table.column(METHOD));
        let mut protocols: Vec<Protocol> = Vec::new();
        let mut runs = Vec::with_capacity(table.rows.len());
        for (row, (values, label)) in table.rows.iter().zip(labels).enumerate() {
            let protocol: Protocol =
                protocol_columns.iter().map(|&c| (table.header[c].clone(), values[c].clone())).collect();
            let index = protocols.iter().position(|p| *p == protocol).unwrap_or_else(|| {
                protocols.push(protocol);
                protocols.len() - 1
            });
            let Ok(shot_count) = values[shots].parse() else {
                bail!("results row {}: {SHOTS} = `{}` is not a number", row + 1, values[shots])
            };
            runs.push(Run {
                row,
                label,
                protocol: index,
                shots: shot_count,
                seeds: seed_columns.iter().map(|&c| values[c].clone()).collect(),
                target: target.map(|t| values[t].clone()).unwrap_or_default(),
                method: method.map(|m| values[m].clone()).unwrap_or_default(),
            });
        }
        Ok(Runs { table, runs, protocols })
    }

    /// A protocol's heading: its dataset, its classes, and the settings in which it differs
    /// from another protocol of the report (the full list is report.csv's `protocol`).
    pub fn heading(&self, index: usize) -> String {
        let protocol = &self.protocols[index];
        let varies = |key: &str| {
            let value = |p: &Protocol| p.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            self.protocols.iter().any(|p| value(p) != value(protocol))
        };
        let mut words: Vec<String> = Vec::new();
        for (key, value) in protocol {
            let shown = match key.as_str() {
                "data.dataset" => value.clone(),
                "data.classes" => format!("classes={value}"),
                _ if varies(key) && !value.is_empty() => {
                    format!("{}={value}", key.strip_prefix("data.").unwrap_or(key))
                }
                _ => continue,
            };
            words.push(shown);
        }
        words.join(" ")
    }

    /// A metric of a run, where it is a number.
    pub fn value(&self, run: &Run, metric: &str) -> Option<f64> {
        self.table.column(metric).and_then(|c| self.table.rows[run.row][c].parse().ok())
    }

    /// A column's text in a run's row (empty where the table has no such column).
    pub fn text(&self, run: &Run, column: &str) -> &str {
        self.table.column(column).map_or("", |c| self.table.rows[run.row][c].as_str())
    }
}

/// A protocol as `key=value` words: the `data.` prefix dropped, empty values left out.
pub fn describe(protocol: &Protocol) -> String {
    protocol
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={v}", k.strip_prefix("data.").unwrap_or(k)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The protocol's `data.classes`.
pub fn classes(protocol: &Protocol) -> &str {
    protocol.iter().find(|(k, _)| k == "data.classes").map_or("", |(_, v)| v.as_str())
}

/// Replicates in seed order: numbers by value, then text.
pub fn seed_order(a: &[String], b: &[String]) -> std::cmp::Ordering {
    let key = |s: &String| (s.parse::<i64>().unwrap_or(i64::MAX), s.clone());
    a.iter().map(key).cmp(b.iter().map(key))
}

/// Labels in the order they first appear.
pub fn label_order<'r>(runs: impl Iterator<Item = &'r Run>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for r in runs {
        if !order.contains(&r.label) {
            order.push(r.label.clone());
        }
    }
    order
}
