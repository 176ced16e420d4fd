//! report.md: the report as Markdown, to read on a forge or paste into a README whole. The
//! verdict lines come first (with `[report] claims`), then the tables, the paired differences
//! and the two pictures. Every number is the report's own: nothing here is typed by hand.

use super::paired::Paired;
use super::rows::Runs;
use super::tables::{self, Kind, Table};
use super::verdict::{self, Claim, Verdict};

/// What report.md is made of.
pub struct Parts<'a> {
    pub title: &'a str,
    pub runs: &'a Runs<'a>,
    pub tables: &'a [Table],
    pub subject: Option<&'a str>,
    pub paired: &'a [Paired],
    pub claims: &'a [Claim],
    pub verdicts: &'a [Verdict],
    /// Whether report.png and paired.png are written beside it.
    pub report_png: bool,
    pub paired_png: bool,
}

/// report.md's lines.
pub fn render(parts: &Parts) -> Vec<String> {
    let mut out = vec![format!("# {}", parts.title), String::new()];
    out.push(format!("Replicates: {}.", replicates(parts.runs)));
    if let (Some(subject), false) = (parts.subject, parts.claims.is_empty()) {
        out.extend([String::new(), "## Verdicts".into(), String::new(), verdict::RULE.into(), String::new()]);
        let lines = verdict::render(parts.verdicts, parts.claims, subject);
        if lines.is_empty() {
            out.push("No claim's comparison ran in this pipeline.".into());
        }
        out.extend(lines);
    }
    for table in parts.tables {
        out.push(String::new());
        out.extend(table_lines(table, parts.runs));
    }
    if let Some(subject) = parts.subject {
        for (t, table) in parts.tables.iter().enumerate() {
            let mine: Vec<&Paired> = parts.paired.iter().filter(|p| p.table == t).collect();
            if mine.is_empty() {
                continue;
            }
            out.push(String::new());
            out.extend(paired_lines(table, parts.runs, subject, &mine));
        }
    }
    if parts.report_png || parts.paired_png {
        out.push(String::new());
    }
    if parts.paired_png {
        out.push("![Paired differences with their 95% intervals against 0](paired.png)".into());
    }
    if parts.report_png {
        out.push("![Each method's headline metric against shots, mean ± std over seeds](report.png)".into());
    }
    out
}

/// `10 (data.seed 1-10)`: how many replicates the tables average, and which.
fn replicates(runs: &Runs) -> String {
    let mut seeds: Vec<&str> = runs.runs.iter().filter_map(|r| r.seeds.first().map(String::as_str)).collect();
    seeds.sort_by_key(|s| (s.parse::<i64>().unwrap_or(i64::MAX), s.to_string()));
    seeds.dedup();
    let numbers: Option<Vec<i64>> = seeds.iter().map(|s| s.parse().ok()).collect();
    let listed = match numbers {
        Some(n) if n.len() > 2 && n.windows(2).all(|w| w[1] == w[0] + 1) => format!("{}-{}", n[0], n[n.len() - 1]),
        _ => seeds.join(", "),
    };
    format!("{} (data.seed {listed})", seeds.len())
}

fn cells_row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

fn table_lines(table: &Table, runs: &Runs) -> Vec<String> {
    let protocol = runs.heading(table.protocol);
    let heading = match table.kind {
        Kind::Test => format!("### {protocol}: mean ± std over seeds, percent"),
        Kind::Targets => format!("### {protocol}, on other test sets: accuracy, mean ± std over seeds, percent"),
    };
    let with_chosen = table.lines.iter().any(|l| !l.chosen.is_empty());
    let mut header: Vec<String> = vec!["label".into(), "shots".into()];
    header.extend(table.columns.iter().map(|c| c.heading.trim_end_matches(" %").to_string()));
    header.push("seeds".into());
    if with_chosen {
        header.push("chosen".into());
    }
    let mut out = vec![heading, String::new(), cells_row(&header)];
    let align: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, _)| if i == 0 || i == header.len() - 1 && with_chosen { "---".into() } else { "---:".into() })
        .collect();
    out.push(cells_row(&align));
    for line in &table.lines {
        let mut cells = vec![line.label.clone(), line.shots.to_string()];
        cells.extend(line.cells.iter().map(|&c| tables::percent(c)));
        cells.push(line.seeds.to_string());
        if with_chosen {
            cells.push(chosen_counts(&line.chosen));
        }
        out.push(cells_row(&cells));
    }
    out
}

/// `lr 0.0001,0.001,0.0001` as `lr 0.0001 ×2, 0.001 ×1`: with ten seeds and more the list
/// per seed is too long for a table (report.txt and chosen.csv keep it).
fn chosen_counts(chosen: &str) -> String {
    chosen
        .split("; ")
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (name, values) = part.split_once(' ').unwrap_or((part, ""));
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for v in values.split(',') {
                match counts.iter_mut().find(|(x, _)| *x == v) {
                    Some(c) => c.1 += 1,
                    None => counts.push((v, 1)),
                }
            }
            let each: Vec<String> = counts.iter().map(|(v, n)| format!("{v} ×{n}")).collect();
            format!("{name} {}", each.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn paired_lines(table: &Table, runs: &Runs, subject: &str, paired: &[&Paired]) -> Vec<String> {
    let targets = if table.kind == Kind::Targets { ", on other test sets" } else { "" };
    let mut out = vec![
        format!(
            "### {}{targets}: {subject} − other, percentage points, mean ± 95% CI (Student t) over paired seeds",
            runs.heading(table.protocol)
        ),
        String::new(),
        cells_row(&["other", "shots", "metric", "pairs", "difference"].map(String::from)),
        cells_row(&["---", "---:", "---", "---:", "---:"].map(String::from)),
    ];
    for p in paired {
        let difference = match p.ci95 {
            Some(ci) => format!("{:+.1} ± {:.1}", 100.0 * p.mean, 100.0 * ci),
            None => format!("{:+.1}", 100.0 * p.mean),
        };
        out.push(cells_row(&[
            p.other.clone(),
            p.shots.to_string(),
            p.metric.clone(),
            p.diffs.len().to_string(),
            difference,
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_values_are_counted_in_first_seen_order() {
        assert_eq!(chosen_counts("lr 0.001,0.0001,0.001"), "lr 0.001 ×2, 0.0001 ×1");
        assert_eq!(chosen_counts("lr 1,2; lambda 0,0"), "lr 1 ×1, 2 ×1; lambda 0 ×2");
        assert_eq!(chosen_counts(""), "");
    }
}
