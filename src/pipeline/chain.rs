//! One grid point as the stage settings the stage commands take: the split(s), stage 1, the
//! selection, stage 2 and the evaluation of one experiment.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value};

use super::file::PipelineFile;
use super::grid::Point;
pub use super::method::Method;
use crate::clip::config::block_tensor_shapes;
use crate::data::split::SplitRequest;
use crate::data::subsample::Subsample;
use crate::settings::eval::EvalSettings;
use crate::settings::full_ft::FullFtSettings;
use crate::settings::select::SelectSettings;
use crate::settings::split::SplitSettings;
use crate::settings::stage1::Stage1Settings;
use crate::settings::stage2::Stage2Settings;
use crate::settings::{Settings, parse_choice};
use crate::stages::select::Select;
use crate::stages::stage1::Stage1;
use crate::stages::stage2::Stage2;
use crate::train::select::ScoreRule;

#[derive(Clone, Debug)]
pub struct Chain {
    pub method: Method,
    /// The split stage 1 and 2 train on, and the first one evaluated.
    pub split: SplitRequest,
    /// Base-to-novel: the new classes' split, evaluated after the base one.
    pub split_new: Option<SplitRequest>,
    pub stage1: Stage1,
    pub select: Select,
    /// `random-params`: the selection whose per-block parameter counts `select` matches.
    pub like: Option<Select>,
    pub stage2: Stage2,
    pub eval: EvalSettings,
}

/// A point's values of one section, by key: what its settings type reads.
fn section_values(point: &Point, section: &str) -> Map<String, Value> {
    let prefix = format!("{section}.");
    point
        .settings()
        .iter()
        .filter_map(|(full, v)| full.strip_prefix(&prefix).map(|k| (k.to_string(), v.to_json())))
        .collect()
}

/// The stages of `point`. Ranges were checked when the file was read; what is left are
/// combinations, such as a warm-up as long as the training.
pub fn chain(file: &PipelineFile, point: &Point, hash_cache: Option<PathBuf>) -> Result<Chain> {
    let int = |k: &str| point.get(k).as_i64();
    let text = |k: &str| point.get(k).as_str();

    let mut stage2 = Stage2Settings::from_values(section_values(point, "stage2"))?;
    stage2
        .check(&|k| k.to_string())
        .map_err(|e| anyhow!("{}: [stage2] {e}", file.at_point(point, "stage2.warmup_epochs")))?;
    let data = |subsample: Subsample| SplitSettings {
        subsample,
        image_size: u32::try_from(int("data.image_size")).unwrap_or(u32::MAX),
        split_seed: int("data.split_seed"),
        test_per_class: point.get_opt("data.test_per_class").map(|n| usize::try_from(n.as_i64()).expect("checked ≥ 1")),
        rendering: parse_choice(text("data.rendering")).expect("checked when read"),
        pool: parse_choice(text("data.pool")).expect("checked when read"),
    };
    let split = |subsample: Subsample| {
        let root = PathBuf::from(text("data.root"));
        data(subsample).request(text("data.dataset"), &root, int("data.shots"), int("data.seed"), hash_cache.clone())
    };
    let (train_classes, new_classes) = match text("data.classes") {
        "base-to-novel" => (Subsample::Base, Some(Subsample::New)),
        other => (
            parse_choice(other)
                .map_err(|why| anyhow!("{}: [data] classes {why}", file.at_point(point, "data.classes")))?,
            None,
        ),
    };
    let method = Method::of(point);
    if method == Method::LinearProbe && new_classes.is_some() {
        bail!(
            "{}: method linear-probe with [data] classes = \"base-to-novel\": a probe has no training images of the new classes; use classes = \"all\" (base and new are then each scored among their own class names)",
            file.at_point(point, "method")
        );
    }
    // Every seed follows `data.seed` when unset (`grid`), so each is set here.
    let mut select = Select { settings: SelectSettings::from_values(section_values(point, "select"))?, matched: false };
    let mut like = None;
    match method {
        Method::RandomK => select.settings.score = ScoreRule::Random,
        // K plays no part in a matched selection (`stages::select::spec`).
        Method::RandomParams => {
            like = Some(select.clone());
            select.matched = true;
            select.settings.score = ScoreRule::Random;
            select.settings.k = 0;
        }
        // Every tensor, whatever the rule ranks first: one canonical selection, so a grid
        // over rules trains full fine-tuning once.
        Method::FullFt => {
            select.settings.k = block_tensor_shapes(1, 1).len();
            select.settings.score = ScoreRule::InvSqrtV;
            select.settings.seed = Some(0);
            let full_ft = FullFtSettings::from_values(section_values(point, "full-ft"))?;
            (stage2.lambda, stage2.lambda_img, stage2.lambda_txt, stage2.lambda_kl) =
                (full_ft.lambda, None, None, None);
        }
        _ => {}
    }
    let stage1 = Stage1 { settings: Stage1Settings::from_values(section_values(point, "stage1"))? };
    // What the stages would refuse, refused before anything runs.
    stage1.params()?;
    let stage2 = Stage2 { settings: stage2 };
    stage2.params()?;
    Ok(Chain {
        method,
        split: split(train_classes),
        split_new: new_classes.map(split),
        stage1,
        select,
        like,
        stage2,
        eval: EvalSettings::from_values(section_values(point, "eval"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::layers::Precision;
    use crate::pipeline::{file::parse, grid::expand};
    use crate::settings::select::SelectSettings;
    use crate::settings::stage2::Init;
    use crate::train::losses::ConsistencyWeights;
    use crate::train::select::SelectRequest;
    use crate::train::select::Towers;
    use crate::train::stage1::Stage1Params;
    use crate::train::stage2::Stage2Params;
    use std::path::Path;

    fn chains(extra: &str) -> Result<Vec<Chain>> {
        method_chains("", extra)
    }

    /// `methods` is the top-level `method` value (TOML), or "" for the default.
    fn method_chains(methods: &str, extra: &str) -> Result<Vec<Chain>> {
        let top = if methods.is_empty() { String::new() } else { format!("method = {methods}\n") };
        let text = format!(
            "{top}[weights]\ninit = {{ preset = \"mini\" }}\n[data]\ndataset = \"caltech101\"\nroot = \"/d\"\nshots = 4\nseed = 2\n{extra}"
        );
        let file = parse(&text, Path::new("x.toml"), &|_| None).unwrap();
        expand(&file).unwrap().iter().map(|p| chain(&file, p, None)).collect()
    }

    #[test]
    fn defaults_match_the_stage_commands() {
        let c = &chains("").unwrap()[0];
        // What the commands make with no flag but the inputs, from a split of seed 2.
        let stage1 = Stage1Settings::defaults().params(2).unwrap();
        assert_eq!(c.stage1.params().unwrap(), stage1);
        assert_eq!(stage1, Stage1Params { seed: 2, ..Stage1Params::default() });
        let stage2 = Stage2Settings::defaults();
        assert_eq!(c.stage2.params().unwrap(), stage2.params(2).unwrap());
        assert_eq!(c.stage2.params().unwrap(), Stage2Params { seed: 2, ..Stage2Params::default() });
        let select = c.select.request();
        assert_eq!(select, SelectSettings::defaults().request(2), "select.seed follows data.seed like --seed");
        assert_eq!(select, SelectRequest { rule: ScoreRule::InvSqrtV, k: 6, towers: Towers::Both, seed: 2 });
        assert_eq!((c.stage2.settings.init, c.eval.precision), (stage2.init, EvalSettings::defaults().precision));
        assert_eq!((c.stage2.settings.init, c.eval.precision), (Init::Pretrained, Precision::Fp32));
        assert_eq!((c.split.subsample, c.split.image_size, c.split.split_seed), (Subsample::All, 32, 1));
        assert!(c.split_new.is_none());
    }

    #[test]
    fn an_unknown_method_is_an_error_naming_the_choices() {
        let text = "method = \"clip\"\n[weights]\ninit = { preset = \"mini\" }\n[data]\ndataset = \"caltech101\"\nroot = \"/d\"\nshots = 4\nseed = 2\n";
        let e = parse(text, Path::new("x.toml"), &|_| None).unwrap_err().to_string();
        assert_eq!(
            e,
            "x.toml:1: `method` = clip must be one of clip-ast, random-k, random-params, full-ft, zero-shot, linear-probe"
        );
    }

    #[test]
    fn full_ft_takes_its_own_lambda_plain_cross_entropy_by_default() {
        let c = method_chains("[\"clip-ast\", \"full-ft\"]", "[stage2]\nlambda = 2\n").unwrap();
        assert_eq!(c[0].stage2.params().unwrap().lambdas, ConsistencyWeights { image_l1: 2.0, text_l1: 2.0, kl: 2.0 });
        // `clip-ast stage2 --lmbd 0` with the same other settings: the same params, so the same key.
        let plain = Stage2Settings { lambda: 0.0, ..Stage2Settings::defaults() }.params(2).unwrap();
        assert_eq!(c[1].stage2.params().unwrap(), plain);
        assert_eq!(c[1].stage2.params().unwrap().lambdas, ConsistencyWeights { image_l1: 0.0, text_l1: 0.0, kl: 0.0 });
        let c = method_chains("\"full-ft\"", "[full-ft]\nlambda = [0, 0.5]\n").unwrap();
        assert_eq!(c[1].stage2.params().unwrap().lambdas, ConsistencyWeights { image_l1: 0.5, text_l1: 0.5, kl: 0.5 });
        assert_eq!((c[1].select.settings.k, &c[1].like), (12, &None));
    }

    #[test]
    fn random_params_matches_the_clip_ast_selection_of_its_point() {
        let c = method_chains("[\"clip-ast\", \"random-params\"]", "[select]\nk = 4\nscore = \"sqrt-v\"\n").unwrap();
        assert_eq!(c[1].like, Some(c[0].select.clone()));
        assert_eq!(c[1].select.request(), SelectRequest { rule: ScoreRule::Random, k: 0, ..c[0].select.request() });
        assert!(c[1].select.matched);
        assert_eq!(c[0].like, None);
        assert_eq!(c[1].stage2, c[0].stage2);
    }

    #[test]
    fn base_to_novel_trains_on_base_and_adds_the_new_split() {
        let c = &chains("classes = \"base-to-novel\"\n").unwrap()[0];
        assert_eq!(c.split.subsample, Subsample::Base);
        assert_eq!(c.split_new.as_ref().unwrap().subsample, Subsample::New);
    }

    #[test]
    fn warmup_must_be_shorter_than_training() {
        let e = chains("[stage2]\nepochs = 3\nwarmup_epochs = 3\n").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:10: [stage2] warmup_epochs 3 must be less than epochs 3"), "{e}");
    }
}
