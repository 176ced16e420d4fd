//! The report's tables: per protocol, label × shots with each metric's mean ± std over seeds;
//! per protocol with `[eval] targets`, label × shots with each target's accuracy and their mean.

use super::rows::{self, Run, Runs};
use crate::stats;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// The runs' own test sets.
    Test,
    /// `[eval] targets`: the same runs on other datasets.
    Targets,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Test => "test",
            Kind::Targets => "targets",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The results column averaged.
    pub metric: &'static str,
    /// The target the rows are on (`mean` for the per-run mean over targets); empty for the test set.
    pub target: String,
    pub heading: String,
}

/// Mean and sample standard deviation over seeds (fractions); `std` is `None` for one seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub mean: f64,
    pub std: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: String,
    pub shots: i64,
    /// How many replicates the line averages.
    pub seeds: usize,
    pub cells: Vec<Option<Cell>>,
    /// With `[choose]`: the values chosen, per seed in seed order (`lr 0.0001,0.001`).
    pub chosen: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub kind: Kind,
    pub protocol: usize,
    pub columns: Vec<Column>,
    /// The column compared and plotted: HM for base-to-novel, accuracy otherwise, the target
    /// mean for a target table.
    pub headline: usize,
    pub lines: Vec<Line>,
}

/// The tables of `runs`: each protocol's test table, then each protocol's target table.
/// `chosen`: the `[choose] among` columns.
pub fn build(runs: &Runs, chosen: &[String]) -> Vec<Table> {
    let mut tables = Vec::new();
    for (p, protocol) in runs.protocols.iter().enumerate() {
        let own: Vec<&Run> = runs.runs.iter().filter(|r| r.protocol == p && r.target.is_empty()).collect();
        if own.is_empty() {
            continue;
        }
        let column = |metric, heading: &str| Column { metric, target: String::new(), heading: heading.into() };
        let (columns, headline) = match rows::classes(protocol) {
            "base-to-novel" => {
                (vec![column("base_acc", "base %"), column("new_acc", "new %"), column("hm", "HM %")], 2)
            }
            "all" => (vec![column("acc", "acc %"), column("hm", "HM %")], 0),
            _ => (vec![column("acc", "acc %")], 0),
        };
        tables.push(table(runs, Kind::Test, p, columns, headline, &own, chosen));
    }
    for p in 0..runs.protocols.len() {
        let on_targets: Vec<&Run> = runs.runs.iter().filter(|r| r.protocol == p && !r.target.is_empty()).collect();
        let mut targets: Vec<&str> = Vec::new();
        for r in &on_targets {
            if !targets.contains(&r.target.as_str()) && r.target != MEAN {
                targets.push(&r.target);
            }
        }
        if targets.is_empty() {
            continue;
        }
        let mut columns: Vec<Column> = targets
            .iter()
            .map(|t| Column { metric: "acc", target: t.to_string(), heading: format!("{t} %") })
            .collect();
        if on_targets.iter().any(|r| r.target == MEAN) {
            columns.push(Column { metric: "acc", target: MEAN.into(), heading: "mean %".into() });
        }
        let headline = columns.len() - 1;
        tables.push(table(runs, Kind::Targets, p, columns, headline, &on_targets, &[]));
    }
    tables
}

/// `target` of the per-run mean rows (`pipeline::target_mean`).
pub const MEAN: &str = "mean";

fn table(
    runs: &Runs,
    kind: Kind,
    protocol: usize,
    columns: Vec<Column>,
    headline: usize,
    members: &[&Run],
    chosen: &[String],
) -> Table {
    let mut lines = Vec::new();
    for label in rows::label_order(members.iter().copied()) {
        let mut shots: Vec<i64> = members.iter().filter(|r| r.label == label).map(|r| r.shots).collect();
        shots.sort_unstable();
        shots.dedup();
        for s in shots {
            let mut group: Vec<&Run> = members.iter().copied().filter(|r| r.label == label && r.shots == s).collect();
            group.sort_by(|a, b| rows::seed_order(&a.seeds, &b.seeds));
            let cells = columns
                .iter()
                .map(|c| {
                    let values: Vec<f64> =
                        group.iter().filter(|r| r.target == c.target).filter_map(|r| runs.value(r, c.metric)).collect();
                    stats::describe(&values).map(|(mean, std, _)| Cell { mean, std })
                })
                .collect();
            let mut seeds: Vec<&Vec<String>> = group.iter().map(|r| &r.seeds).collect();
            seeds.dedup();
            lines.push(Line {
                label: label.clone(),
                shots: s,
                seeds: seeds.len(),
                cells,
                chosen: choices(runs, &group, chosen),
            });
        }
    }
    Table { kind, protocol, columns, headline, lines }
}

/// `lr 0.0001,0.001,0.0001; lambda 0,1,1`: each `[choose] among` setting's values in the
/// group's rows (seed order); settings the rows leave empty (a method that does not train) are
/// left out. A setting is named by its key unless two share it.
fn choices(runs: &Runs, group: &[&Run], chosen: &[String]) -> String {
    let key = |c: &String| c.rsplit('.').next().unwrap_or(c).to_string();
    let mut parts = Vec::new();
    for c in chosen {
        let values: Vec<&str> = group.iter().map(|r| runs.text(r, c)).collect();
        if values.iter().all(|v| v.is_empty()) {
            continue;
        }
        let shared = chosen.iter().filter(|o| key(o) == key(c)).count() > 1;
        let name = if shared { c.clone() } else { key(c) };
        let values: Vec<&str> = values.iter().map(|v| if v.is_empty() { "-" } else { v }).collect();
        parts.push(format!("{name} {}", values.join(",")));
    }
    parts.join("; ")
}

/// A cell as percent: `62.3 ± 1.2`, `62.3` for one seed, `-` where the rows have no value.
pub fn percent(cell: Option<Cell>) -> String {
    match cell {
        Some(Cell { mean, std: Some(std) }) => format!("{:.1} ± {:.1}", 100.0 * mean, 100.0 * std),
        Some(Cell { mean, std: None }) => format!("{:.1}", 100.0 * mean),
        None => "-".into(),
    }
}

/// The table as text: a heading line naming the protocol, a header, one line per label and
/// shot count.
pub fn render(table: &Table, runs: &Runs) -> Vec<String> {
    let protocol = runs.heading(table.protocol);
    let heading = match table.kind {
        Kind::Test => format!("{protocol}: mean ± std over seeds"),
        Kind::Targets => format!(
            "{protocol}, evaluated on targets: accuracy, mean ± std over seeds (mean: per run the mean over the targets)"
        ),
    };
    let label_width = table.lines.iter().map(|l| l.label.chars().count()).max().unwrap_or(0).max(5);
    let widths: Vec<usize> = table.columns.iter().map(|c| c.heading.chars().count().max(12)).collect();
    let with_chosen = table.lines.iter().any(|l| !l.chosen.is_empty());
    let row = |label: &str, shots: &str, cells: &[String], seeds: &str, chosen: &str| {
        let mut line = format!("{label:<label_width$}  {shots:>5}");
        for (cell, &w) in cells.iter().zip(&widths) {
            line += &format!("  {cell:>w$}");
        }
        line += &format!("  {seeds:>5}");
        if with_chosen {
            line += &format!("  {chosen}");
        }
        line.trim_end().to_string()
    };
    let headings: Vec<String> = table.columns.iter().map(|c| c.heading.clone()).collect();
    let mut out = vec![heading, row("label", "shots", &headings, "seeds", "chosen")];
    for l in &table.lines {
        let cells: Vec<String> = l.cells.iter().map(|&c| percent(c)).collect();
        out.push(row(&l.label, &l.shots.to_string(), &cells, &l.seeds.to_string(), &l.chosen));
    }
    out
}
