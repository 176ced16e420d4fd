//! The parameter-matched random baseline (`select --score random --match params --like L`):
//! per block, random tensors whose parameter count comes as close as possible to the count
//! selection L chose in that block, so "rule vs random" compares equal parameter budgets
//! rather than equal tensor counts (a rule that favours the big matrices would otherwise tune
//! far more parameters than its random twin).
//!
//! Algorithm: a block has 12 tensors, so every one of its 2^12 subsets is enumerated; the
//! subsets whose total is nearest the target (smallest |total − target|) are collected in
//! bitmask order, and one of them is drawn uniformly with a SplitMix64 seeded by the request's
//! seed (one draw per block, in block order). The result is exact where exactness is possible
//! and random among all equally good choices; L's own choice is one of the candidates, so for
//! a like of the same model the gap is 0.

use anyhow::{Result, bail};

use super::select::{BlockSelection, Match, RankedTensor, ScoreRule, SelectRequest, Selection, block_prefixes};
use crate::clip::ClipConfig;
use crate::clip::config::block_tensor_shapes;
use crate::rng::SplitMix64;

/// Enumerating subsets is exponential; a transformer block has 12 tensors.
const MAX_TENSORS: usize = 20;

/// The random selection of `request`'s towers whose per-block parameter counts match `like`'s.
/// `sizes(name)` is a tensor's element count in the model being tuned; `like_key` is recorded.
pub fn select_like(
    config: &ClipConfig,
    sizes: &dyn Fn(&str) -> Option<i64>,
    request: &SelectRequest,
    like: &Selection,
    like_key: &str,
) -> Result<Selection> {
    if request.rule != ScoreRule::Random {
        bail!("--match params draws random tensors; it needs --score random");
    }
    let mut random = SplitMix64::new(request.seed);
    let mut blocks = Vec::new();
    for prefix in block_prefixes(config, request.towers) {
        let Some(theirs) = like.blocks.iter().find(|b| b.block == prefix) else {
            let towers = serde_json::to_value(like.towers).ok().and_then(|v| v.as_str().map(str::to_string));
            let towers = towers.unwrap_or_default();
            bail!(
                "the --like selection {like_key} has no block `{prefix}` (its towers are {towers}); give --towers {towers}"
            );
        };
        let mut tensors = Vec::new();
        for (field, _) in block_tensor_shapes(1, 1) {
            let name = format!("{prefix}.{field}");
            let Some(numel) = sizes(&name) else {
                bail!("stage-1 statistics have no moments for `{name}`: the stage-1 run tuned another model");
            };
            match theirs.tensors.iter().find(|t| t.name == name) {
                Some(t) if t.numel == numel => {}
                _ => bail!(
                    "the --like selection {like_key} was made for another model: `{name}` has {numel} elements here"
                ),
            }
            tensors.push(RankedTensor { name, score: 0.0, rank: 0, numel, chosen: false, below_eps: None });
        }
        let target: i64 = theirs.tensors.iter().filter(|t| t.chosen).map(|t| t.numel).sum();
        let sizes: Vec<i64> = tensors.iter().map(|t| t.numel).collect();
        let mask = closest_subset(&sizes, target, &mut random)?;
        // Chosen tensors score 1 and rank first (state-dict order), the others score 0.
        let mut rank = 0;
        for chosen in [true, false] {
            for (i, t) in tensors.iter_mut().enumerate() {
                if (mask >> i) & 1 == u32::from(chosen) {
                    rank += 1;
                    t.rank = rank;
                    t.chosen = chosen;
                    t.score = if chosen { 1.0 } else { 0.0 };
                }
            }
        }
        blocks.push(BlockSelection::new(prefix, tensors, Some(target)));
    }
    let chosen = blocks.iter().flat_map(|b| b.tensors.iter().filter(|t| t.chosen).map(|t| t.name.clone())).collect();
    Ok(Selection {
        rule: ScoreRule::Random,
        k: 0,
        matching: Match::Params,
        like: Some(like_key.to_string()),
        towers: request.towers,
        seed: request.seed,
        trainable_parameters: blocks.iter().map(|b| b.trainable_parameters).sum(),
        blocks,
        chosen,
        notes: Vec::new(),
        // A random draw reads no statistics, so nothing about them to report.
        stage1_steps: None,
        stage1_eps: None,
        below_eps: None,
        warnings: Vec::new(),
    })
}

/// A subset of `sizes` (bit i: tensor i) whose sum is nearest `target`, drawn uniformly among
/// all nearest ones.
pub fn closest_subset(sizes: &[i64], target: i64, random: &mut SplitMix64) -> Result<u32> {
    if sizes.len() > MAX_TENSORS {
        bail!("a block of {} tensors is too many to match parameter counts exactly", sizes.len());
    }
    let mut best = i64::MAX;
    let mut nearest: Vec<u32> = Vec::new();
    for mask in 0..1u32 << sizes.len() {
        let total: i64 = sizes.iter().enumerate().filter(|(i, _)| (mask >> i) & 1 == 1).map(|(_, n)| n).sum();
        let gap = (total - target).abs();
        if gap < best {
            best = gap;
            nearest.clear();
        }
        if gap == best {
            nearest.push(mask);
        }
    }
    let pick = random.below_inclusive(nearest.len() as u64 - 1) as usize;
    Ok(nearest[pick])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nearest gap by an independent search (recursion over include/exclude), and whether
    /// `mask` attains it.
    fn best_gap(sizes: &[i64], target: i64) -> i64 {
        match sizes.split_first() {
            None => target.abs(),
            Some((&first, rest)) => best_gap(rest, target).min(best_gap(rest, target - first)),
        }
    }

    fn total(sizes: &[i64], mask: u32) -> i64 {
        (0..sizes.len()).filter(|i| (mask >> i) & 1 == 1).map(|i| sizes[i]).sum()
    }

    #[test]
    fn the_subset_is_as_close_as_any() {
        let sizes = [8, 8, 192, 24, 64, 8, 8, 8, 256, 32, 256, 8];
        for target in [0, 1, 7, 13, 50, 100, 333, 500, 777, 880, 5000] {
            let mut random = SplitMix64::new(target as u64);
            let mask = closest_subset(&sizes, target, &mut random).unwrap();
            assert_eq!((total(&sizes, mask) - target).abs(), best_gap(&sizes, target), "target {target}");
        }
    }

    #[test]
    fn equally_near_subsets_are_all_drawn_and_the_seed_repeats() {
        // Target 2 out of [1, 1, 1, 2]: {0,1}, {0,2}, {1,2}, {3} are exact.
        let sizes = [1, 1, 1, 2];
        let draw = |seed| closest_subset(&sizes, 2, &mut SplitMix64::new(seed)).unwrap();
        let seen: std::collections::BTreeSet<u32> = (0..200).map(draw).collect();
        assert_eq!(seen, [0b0011, 0b0101, 0b0110, 0b1000].into_iter().collect());
        assert_eq!(draw(7), draw(7));
    }

    #[test]
    fn too_many_tensors_is_an_error() {
        assert!(closest_subset(&[1; 21], 3, &mut SplitMix64::new(0)).is_err());
    }
}
