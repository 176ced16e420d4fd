//! Verdict lines. `[report] claims` names, per claim, the comparison behind it: the subject
//! against another label in one metric of one protocol. Each shot count's paired differences
//! are read by one rule ([`Reading::of`], stated in [`RULE`]), so the words follow from the
//! numbers and a report cannot say more than its intervals do.

use anyhow::Result;

use super::paired;
use super::rows::{self, Runs};
use crate::stats;

/// One `[report] claims` entry: the claim that the subject's `metric` exceeds `other`'s.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// How the report names the claim (`(a) CLIP-AST raises base accuracy above zero-shot`).
    pub text: String,
    pub other: String,
    /// A results column: `base_acc`, `new_acc`, `hm` or `acc`.
    pub metric: String,
    /// The protocols' `data.classes`; `None`: every protocol where both labels ran.
    pub classes: Option<String>,
}

/// The metrics a claim may compare.
pub const METRICS: [&str; 4] = ["base_acc", "new_acc", "hm", "acc"];

/// The rule, as the report states it.
pub const RULE: &str = "Each claim says that the subject scores higher than another method. Per shot count it is read from the 95% interval (Student t) of the paired differences, subject minus other on the same split and seed: an interval above 0 **holds** (by its mean), one below 0 is **reversed**, and one that contains 0 is **not resolved** by this study (its half-width says how large a difference it could have missed). One pair gives no interval and decides nothing.";

/// What one shot count's paired differences say, in fractions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// The interval lies above 0.
    Holds { mean: f64, half: f64 },
    /// The interval lies below 0.
    Reversed { mean: f64, half: f64 },
    /// The interval contains 0.
    Unresolved { mean: f64, half: f64 },
    /// One pair: no interval.
    Single { mean: f64 },
}

impl Reading {
    pub fn of(diffs: &[f64]) -> Option<Reading> {
        let (mean, _, ci95) = stats::describe(diffs)?;
        Some(match ci95 {
            None => Reading::Single { mean },
            Some(half) if mean - half > 0.0 => Reading::Holds { mean, half },
            Some(half) if mean + half < 0.0 => Reading::Reversed { mean, half },
            Some(half) => Reading::Unresolved { mean, half },
        })
    }

    /// The decision alone: what must not change between CPU kinds.
    pub fn decision(&self) -> &'static str {
        match self {
            Reading::Holds { .. } => "holds",
            Reading::Reversed { .. } => "reversed",
            Reading::Unresolved { .. } => "not resolved",
            Reading::Single { .. } => "one pair",
        }
    }

    /// `holds (+5.0 ± 1.1 points)`.
    pub fn words(&self) -> String {
        let points = |mean: f64, half: f64| format!("{:+.1} ± {:.1} points", 100.0 * mean, 100.0 * half);
        match *self {
            Reading::Holds { mean, half } | Reading::Reversed { mean, half } | Reading::Unresolved { mean, half } => {
                format!("{} ({})", self.decision(), points(mean, half))
            }
            Reading::Single { mean } => format!("one pair, no interval ({:+.1} points)", 100.0 * mean),
        }
    }
}

/// A claim read in one protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub claim: usize,
    /// The protocol's heading.
    pub protocol: String,
    /// Per shot count, largest first: (shots, pairs, reading).
    pub readings: Vec<(i64, usize, Reading)>,
}

/// Each claim in each protocol of `classes` where the subject and the other both ran.
pub fn build(runs: &Runs, subject: &str, claims: &[Claim]) -> Result<Vec<Verdict>> {
    let mut out = Vec::new();
    for (c, claim) in claims.iter().enumerate() {
        for (p, protocol) in runs.protocols.iter().enumerate() {
            if claim.classes.as_deref().is_some_and(|classes| classes != rows::classes(protocol)) {
                continue;
            }
            let members = paired::members(runs, p, "");
            let mut readings: Vec<(i64, usize, Reading)> =
                paired::differences(runs, &members, subject, &claim.other, &claim.metric)?
                    .into_iter()
                    .filter_map(|(shots, diffs)| Some((shots, diffs.len(), Reading::of(&diffs)?)))
                    .collect();
            if readings.is_empty() {
                continue;
            }
            readings.sort_by_key(|r| std::cmp::Reverse(r.0));
            out.push(Verdict { claim: c, protocol: runs.heading(p), readings });
        }
    }
    Ok(out)
}

/// One Markdown bullet per verdict: the claim, the comparison, then each shot count's reading.
pub fn render(verdicts: &[Verdict], claims: &[Claim], subject: &str) -> Vec<String> {
    verdicts
        .iter()
        .map(|v| {
            let claim = &claims[v.claim];
            let readings: Vec<String> = v
                .readings
                .iter()
                .map(|(shots, pairs, reading)| {
                    let unit = if *shots == 1 { "shot" } else { "shots" };
                    format!("{shots} {unit}: **{}** ({pairs} pairs)", reading.words())
                })
                .collect();
            format!(
                "- {} ({subject} − {}, `{}`, {}): {}.",
                claim.text,
                claim.other,
                claim.metric,
                v.protocol,
                readings.join("; ")
            )
        })
        .collect()
}

/// The decisions alone, one line per verdict: two runs of a study on different CPUs agree when
/// these lines are equal, whatever their last digits.
pub fn decisions(verdicts: &[Verdict], claims: &[Claim]) -> Vec<String> {
    verdicts
        .iter()
        .map(|v| {
            let each: Vec<String> = v.readings.iter().map(|(s, _, r)| format!("{s}: {}", r.decision())).collect();
            format!("{} [{}]: {}", claims[v.claim].text, v.protocol, each.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_reads_an_interval_by_where_it_lies() {
        // mean 0.02, std 0.01, n = 4: half-width t(3)·0.01/2 = 3.182·0.005 = 0.0159.
        let above = [0.01, 0.02, 0.02, 0.03];
        let sd = (2.0f64 * 0.0001 / 3.0).sqrt();
        let half = 3.182446305284263 * sd / 2.0;
        match Reading::of(&above).unwrap() {
            Reading::Holds { mean, half: h } => {
                assert!((mean - 0.02).abs() < 1e-12);
                assert!((h - half).abs() < 1e-9, "{h} vs {half}");
            }
            other => panic!("{other:?}"),
        }
        let below: Vec<f64> = above.iter().map(|d| -d).collect();
        assert_eq!(Reading::of(&below).unwrap().decision(), "reversed");
        assert_eq!(Reading::of(&[0.03, -0.01, 0.02, -0.02]).unwrap().decision(), "not resolved");
        assert_eq!(Reading::of(&[0.5]).unwrap().decision(), "one pair");
        assert_eq!(Reading::of(&[]), None);
    }

    #[test]
    fn words_give_points_with_the_half_width() {
        let r = Reading::Unresolved { mean: -0.0034, half: 0.0123 };
        assert_eq!(r.words(), "not resolved (-0.3 ± 1.2 points)");
        assert_eq!(Reading::Holds { mean: 0.05, half: 0.011 }.words(), "holds (+5.0 ± 1.1 points)");
    }
}
