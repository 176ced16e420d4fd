//! compare.csv: with `[report] baseline = "<method>"`, every other method's rows paired with
//! the baseline's row of the same split and seed, and per group of settings (summary.csv's
//! groups) the mean, standard deviation and Student-t 95% interval of the per-seed
//! differences, method − baseline. Pairing removes the split-to-split variation both share,
//! so the interval is of the difference itself. pipelines/README.md documents the columns.

use anyhow::{Result, bail};

use super::file::PipelineFile;
use super::grid::VARIANT;
use super::results::{EVAL_COLUMN, TARGET_COLUMN};
use super::summary::{ACCURACIES, COUNTS, SEEDS};
use super::value::Scalar;
use crate::csv_io::Table;
use crate::stats;

const METHOD: &str = "method";

/// (a compared row, its baseline row), as indices of the rows.
type Pair = (usize, usize);

/// `[report] baseline`: the rows the others are paired with, those whose `column` (`method`,
/// or with `[[variant]]` tables `variant` where it names one) is `name`.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    pub column: &'static str,
    pub name: String,
}

/// The file's `[report] baseline`, checked against the variants and methods it runs. A name
/// that is a variant's is that variant, even where a method is called the same.
pub fn baseline(file: &PipelineFile) -> Result<Option<Baseline>> {
    let Some(value) = file.values.get("report.baseline") else { return Ok(None) };
    let name = value[0].as_str().to_string();
    let at = file.at("report.baseline");
    if file.variant(&name).is_some() {
        if file.variants.len() < 2 {
            bail!("{at}: [report] baseline = {name}: the pipeline has no other [[variant]] to compare with it");
        }
        return Ok(Some(Baseline { column: VARIANT, name }));
    }
    let file_methods = file.values.get(METHOD).cloned().unwrap_or_else(|| vec![Scalar::Str("clip-ast".into())]);
    let mut methods: Vec<String> = Vec::new();
    let lists = std::iter::once(&file_methods).filter(|_| file.variants.is_empty());
    for list in lists.chain(file.variants.iter().map(|v| v.values.get(METHOD).unwrap_or(&file_methods))) {
        for method in list.iter().map(|m| m.as_str().to_string()) {
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
    }
    if !methods.contains(&name) {
        let variants: Vec<&str> = file.variants.iter().map(|v| v.name.as_str()).collect();
        let variants = if variants.is_empty() {
            String::new()
        } else {
            format!(" nor one of its variants ({})", variants.join(", "))
        };
        bail!("{at}: [report] baseline = {name} is not a method this pipeline runs ({}){variants}", methods.join(", "));
    }
    if methods.len() < 2 {
        bail!(
            "{at}: [report] baseline = {name}: the pipeline runs no other method to compare with it; list several in `method`"
        );
    }
    Ok(Some(Baseline { column: METHOD, name }))
}

/// For each row of another method, the index of the baseline's row of the same split (every
/// `data.` setting and the weights) and seed (the training seeds where both rows have them).
/// Exactly one must exist.
pub fn pairs(rows: &Table, baseline: &Baseline) -> Result<Vec<Pair>> {
    let Some(method) = rows.column(baseline.column) else {
        bail!("no `{}` column to find the baseline by", baseline.column)
    };
    let baseline = baseline.name.as_str();
    // With `[eval] targets`, a target row pairs with the baseline's row on the same target.
    let split: Vec<usize> = (0..rows.header.len())
        .filter(|&i| {
            rows.header[i].starts_with("data.") || rows.header[i] == "weights" || rows.header[i] == TARGET_COLUMN
        })
        .collect();
    let seeds: Vec<usize> = SEEDS.iter().filter_map(|s| rows.column(s)).collect();
    let same = |a: &[String], b: &[String]| {
        split.iter().all(|&i| a[i] == b[i]) && seeds.iter().all(|&i| a[i].is_empty() || b[i].is_empty() || a[i] == b[i])
    };
    let base: Vec<usize> = (0..rows.rows.len()).filter(|&i| rows.rows[i][method] == baseline).collect();
    // A target the baseline is not evaluated on (a variant's own `eval.targets`) has nothing to
    // compare with: its rows are left out, not an error.
    let target = rows.column(TARGET_COLUMN);
    let baseline_has = |row: &[String]| target.is_none_or(|t| base.iter().any(|&b| rows.rows[b][t] == row[t]));
    let mut out = Vec::new();
    for (i, row) in rows.rows.iter().enumerate().filter(|(_, r)| r[method] != baseline && baseline_has(r)) {
        let partners: Vec<usize> = base.iter().copied().filter(|&b| same(row, &rows.rows[b])).collect();
        match partners.as_slice() {
            [b] => out.push((i, *b)),
            [] => bail!(
                "[report] baseline = {baseline}: no {baseline} result for the split and seed of a {} result ({})",
                row[method],
                split
                    .iter()
                    .chain(&seeds)
                    .map(|&c| format!("{}={}", rows.header[c], row[c]))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            many => {
                let differ: Vec<&str> = (0..rows.header.len())
                    .filter(|&c| many.iter().any(|&b| rows.rows[b][c] != rows.rows[many[0]][c]))
                    .map(|c| rows.header[c].as_str())
                    .filter(|name| !ACCURACIES.contains(name) && *name != EVAL_COLUMN)
                    .collect();
                bail!(
                    "[report] baseline = {baseline} has {} results for one split and seed (they differ in {}); a comparison needs one: add those settings to [choose] among, or give them one value",
                    many.len(),
                    differ.join(", ")
                )
            }
        }
    }
    Ok(out)
}

/// compare.csv from `rows` (results.csv's, or chosen.csv's): per group of another method's
/// rows (summary.csv's grouping, without `ignore`), `baseline`, `pairs` and, per accuracy,
/// `<metric>_diff_mean`, `_diff_std` and `_diff_ci95`.
pub fn table(rows: &Table, baseline: &Baseline, ignore: &[String]) -> Result<Table> {
    let pairs = pairs(rows, baseline)?;
    let baseline = baseline.name.as_str();
    let metrics: Vec<(usize, &str)> = ACCURACIES
        .iter()
        .filter_map(|m| rows.column(m).map(|i| (i, *m)))
        .filter(|(i, _)| pairs.iter().any(|&(r, b)| !rows.rows[r][*i].is_empty() && !rows.rows[b][*i].is_empty()))
        .collect();
    let is_group = |name: &String| {
        !(SEEDS.contains(&name.as_str())
            || name == EVAL_COLUMN
            || ACCURACIES.contains(&name.as_str())
            || COUNTS.contains(&name.as_str())
            || ignore.contains(name))
    };
    let group_columns: Vec<usize> = (0..rows.header.len()).filter(|&i| is_group(&rows.header[i])).collect();

    let mut groups: Vec<(Vec<String>, Vec<Pair>)> = Vec::new();
    for (r, b) in pairs {
        let id: Vec<String> = group_columns.iter().map(|&i| rows.rows[r][i].clone()).collect();
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, members)) => members.push((r, b)),
            None => groups.push((id, vec![(r, b)])),
        }
    }

    let mut header: Vec<String> = group_columns.iter().map(|&i| rows.header[i].clone()).collect();
    header.extend(["baseline".to_string(), "pairs".to_string()]);
    for (_, m) in &metrics {
        header.extend(["mean", "std", "ci95"].map(|s| format!("{m}_diff_{s}")));
    }
    let show = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let out = groups
        .into_iter()
        .map(|(mut row, members)| {
            row.extend([baseline.to_string(), members.len().to_string()]);
            for &(i, _) in &metrics {
                let value = |r: usize| rows.rows[r][i].parse::<f64>().ok();
                let diffs: Vec<f64> = members.iter().filter_map(|&(r, b)| Some(value(r)? - value(b)?)).collect();
                let (mean, std, ci) = match stats::describe(&diffs) {
                    Some((mean, std, ci)) => (Some(mean), std, ci),
                    None => (None, None, None),
                };
                row.extend([show(mean), show(std), show(ci)]);
            }
            row
        })
        .collect();
    Ok(Table { header, rows: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn method(name: &str) -> Baseline {
        Baseline { column: METHOD, name: name.to_string() }
    }

    /// Two methods × two seeds, the baseline's row listed between the other's.
    fn rows() -> Table {
        Table {
            header: s(&["method", "data.shots", "data.seed", "stage2.seed", "stage2.lr", "eval", "acc", "hm"]),
            rows: vec![
                s(&["clip-ast", "1", "1", "1", "0.1", "k1", "0.6", ""]),
                s(&["zero-shot", "1", "2", "", "", "k2", "0.4", ""]),
                s(&["clip-ast", "1", "2", "2", "0.2", "k3", "0.9", ""]),
                s(&["zero-shot", "1", "1", "", "", "k4", "0.5", ""]),
            ],
        }
    }

    #[test]
    fn pairs_by_split_and_seed() {
        assert_eq!(pairs(&rows(), &method("zero-shot")).unwrap(), [(0, 3), (2, 1)]);
        assert_eq!(pairs(&rows(), &method("clip-ast")).unwrap(), [(1, 2), (3, 0)]);
    }

    #[test]
    fn differences_grouped_without_the_chosen_columns() {
        let t = table(&rows(), &method("zero-shot"), &s(&["stage2.lr"])).unwrap();
        assert_eq!(
            t.header,
            s(&["method", "data.shots", "baseline", "pairs", "acc_diff_mean", "acc_diff_std", "acc_diff_ci95"])
        );
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0][..4], s(&["clip-ast", "1", "zero-shot", "2"]));
        // Differences 0.1 and 0.5: mean 0.3, std 0.2·√2, t(0.975, 1) = 12.706.
        let v: Vec<f64> = t.rows[0][4..].iter().map(|x| x.parse().unwrap()).collect();
        assert!((v[0] - 0.3).abs() < 1e-12 && (v[1] - 0.2 * 2f64.sqrt()).abs() < 1e-12, "{v:?}");
        assert!((v[2] - 12.7062 * v[1] / 2f64.sqrt()).abs() < 1e-3, "{v:?}");
        // Without ignoring the lr the two seeds are two groups of one pair each.
        assert_eq!(table(&rows(), &method("zero-shot"), &[]).unwrap().rows.len(), 2);
    }

    #[test]
    fn target_rows_pair_on_their_target_and_a_target_the_baseline_lacks_is_left_out() {
        let t = Table {
            header: s(&["method", "data.seed", "target", "eval", "acc"]),
            rows: vec![
                s(&["zero-shot", "1", "", "k1", "0.5"]),
                s(&["zero-shot", "1", "a", "k2", "0.5"]),
                s(&["clip-ast", "1", "", "k3", "0.6"]),
                s(&["clip-ast", "1", "a", "k4", "0.6"]),
                s(&["clip-ast", "1", "b", "k5", "0.6"]),
            ],
        };
        assert_eq!(pairs(&t, &method("zero-shot")).unwrap(), [(2, 0), (3, 1)]);
    }

    #[test]
    fn a_baseline_with_two_rows_per_seed_is_refused() {
        let mut t = rows();
        t.rows.push(s(&["zero-shot", "1", "1", "", "0.3", "k5", "0.5", ""]));
        let e = pairs(&t, &method("zero-shot")).unwrap_err().to_string();
        assert!(e.contains("has 2 results for one split and seed (they differ in stage2.lr)"), "{e}");
        t.rows.truncate(3);
        let e = pairs(&t, &method("zero-shot")).unwrap_err().to_string();
        assert!(e.contains("no zero-shot result for the split and seed of a clip-ast result"), "{e}");
    }
}
