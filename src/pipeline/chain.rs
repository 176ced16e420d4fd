//! One grid point as the stage settings the stage commands take: the split(s), stage 1, the
//! selection, stage 2 and the evaluation of one experiment.

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::file::PipelineFile;
use super::grid::Point;
use crate::clip::config::block_tensor_shapes;
use crate::clip::layers::Precision;
use crate::data::split::SplitRequest;
use crate::data::subsample::Subsample;
use crate::stages::stage2::Init;
use crate::train::adamw::AdamWConfig;
use crate::train::losses::ConsistencyWeights;
use crate::train::schedule::WarmupCosine;
use crate::train::select::{ScoreRule, SelectRequest, Towers};
use crate::train::stage1::Stage1Params;
use crate::train::stage2::Stage2Params;

/// The select stage's settings (`SelectRequest` is not `Clone`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectSettings {
    pub rule: ScoreRule,
    pub k: usize,
    pub towers: Towers,
    pub seed: u64,
}

impl SelectSettings {
    pub fn request(&self) -> SelectRequest {
        SelectRequest { rule: self.rule, k: self.k, towers: self.towers, seed: self.seed }
    }
}

/// The top-level `method` of a grid point (`schema::METHODS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    ClipAst,
    RandomK,
    FullFt,
    ZeroShot,
    LinearProbe,
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "random-k" => Method::RandomK,
            "full-ft" => Method::FullFt,
            "zero-shot" => Method::ZeroShot,
            "linear-probe" => Method::LinearProbe,
            _ => Method::ClipAst,
        }
    }

    /// Whether the point runs stage 1, the selection and stage 2.
    pub fn trains(self) -> bool {
        matches!(self, Method::ClipAst | Method::RandomK | Method::FullFt)
    }
}

#[derive(Clone, Debug)]
pub struct Chain {
    pub method: Method,
    /// The split stage 1 and 2 train on, and the first one evaluated.
    pub split: SplitRequest,
    /// Base-to-novel: the new classes' split, evaluated after the base one.
    pub split_new: Option<SplitRequest>,
    pub stage1: Stage1Params,
    pub select: SelectSettings,
    pub init: Init,
    pub stage2: Stage2Params,
    pub eval_precision: Precision,
}

/// The stages of `point`. Ranges were checked when the file was read; what is left are
/// combinations, such as a warm-up as long as the training.
pub fn chain(file: &PipelineFile, point: &Point, hash_cache: Option<PathBuf>) -> Result<Chain> {
    let int = |k: &str| point.get(k).as_i64();
    let count = |k: &str| usize::try_from(point.get(k).as_i64()).expect("checked ≥ 0 when read");
    let seed = |k: &str| u64::try_from(point.get(k).as_i64()).expect("checked ≥ 0 when read");
    let float = |k: &str| point.get(k).as_f64();
    let text = |k: &str| point.get(k).as_str();
    let precision = |k: &str| text(k).parse::<Precision>();

    let (epochs, warmup) = (count("stage2.epochs"), count("stage2.warmup_epochs"));
    if warmup >= epochs {
        bail!(
            "{}: [stage2] warmup_epochs {warmup} must be less than epochs {epochs} (stage 2 warms up, then decays)",
            file.at("stage2.warmup_epochs")
        );
    }
    let split = |subsample: Subsample| SplitRequest {
        dataset: text("data.dataset").to_string(),
        root: PathBuf::from(text("data.root")),
        shots: int("data.shots"),
        seed: int("data.seed"),
        subsample,
        image_size: u32::try_from(int("data.image_size")).unwrap_or(u32::MAX),
        split_seed: int("data.split_seed"),
        test_per_class: point.get_opt("data.test_per_class").map(|n| usize::try_from(n.as_i64()).expect("checked ≥ 1")),
        hash_cache: hash_cache.clone(),
        save_generated_split: true,
        quiet: true,
    };
    let (train_classes, new_classes) = match text("data.classes") {
        "base-to-novel" => (Subsample::Base, Some(Subsample::New)),
        other => (Subsample::parse(other)?, None),
    };
    let method = Method::parse(text("method"));
    if method == Method::LinearProbe && new_classes.is_some() {
        bail!(
            "{}: method linear-probe with [data] classes = \"base-to-novel\": a probe has no training images of the new classes; use classes = \"all\" (base, new and HM come from its halves)",
            file.at("method")
        );
    }
    let mut select = SelectSettings {
        rule: text("select.score").parse()?,
        k: count("select.k"),
        towers: text("select.towers").parse()?,
        seed: seed("select.seed"),
    };
    match method {
        Method::RandomK => select.rule = ScoreRule::Random,
        // Every tensor, whatever the rule ranks first: one canonical selection, so a grid
        // over rules trains full fine-tuning once.
        Method::FullFt => {
            select.k = block_tensor_shapes(1, 1).len();
            select.rule = ScoreRule::InvSqrtV;
            select.seed = 0;
        }
        _ => {}
    }
    let optimizer = |section: &str, lr: f64| AdamWConfig {
        lr,
        beta1: float(&format!("{section}.beta1")),
        beta2: float(&format!("{section}.beta2")),
        eps: float(&format!("{section}.eps")),
        weight_decay: float(&format!("{section}.weight_decay")),
        amsgrad: point.get(&format!("{section}.amsgrad")).as_bool(),
    };
    let lr2 = float("stage2.lr");
    Ok(Chain {
        method,
        split: split(train_classes),
        split_new: new_classes.map(split),
        stage1: Stage1Params {
            optimizer: optimizer("stage1", float("stage1.lr")),
            epochs: count("stage1.epochs"),
            batch_size: count("stage1.batch_size"),
            seed: seed("stage1.seed"),
            precision: precision("stage1.precision")?,
        },
        select,
        init: if text("stage2.init") == "stage1" { Init::Stage1 } else { Init::Pretrained },
        stage2: Stage2Params {
            optimizer: optimizer("stage2", lr2),
            schedule: WarmupCosine {
                base_lr: lr2,
                warmup_start_lr: float("stage2.warmup_lr"),
                warmup_epochs: warmup,
                epochs,
            },
            lambdas: ConsistencyWeights {
                image_l1: float("stage2.lambda_img"),
                text_l1: float("stage2.lambda_txt"),
                kl: float("stage2.lambda_kl"),
            },
            batch_size: count("stage2.batch_size"),
            seed: seed("stage2.seed"),
            precision: precision("stage2.precision")?,
        },
        eval_precision: precision("eval.precision")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{file::parse, grid::expand};
    use std::path::Path;

    fn chains(extra: &str) -> Result<Vec<Chain>> {
        let text = format!(
            "[weights]\ninit = {{ preset = \"mini\" }}\n[data]\ndataset = \"caltech101\"\nroot = \"/d\"\nshots = 4\nseed = 2\n{extra}"
        );
        let file = parse(&text, Path::new("x.toml"), &|_| None).unwrap();
        expand(&file).unwrap().iter().map(|p| chain(&file, p, None)).collect()
    }

    #[test]
    fn defaults_match_the_stage_commands() {
        let c = &chains("").unwrap()[0];
        let stage1 = Stage1Params { seed: 2, ..Stage1Params::default() };
        assert_eq!(serde_json::to_value(&c.stage1).unwrap(), serde_json::to_value(&stage1).unwrap());
        let stage2 = Stage2Params { seed: 2, ..Stage2Params::default() };
        assert_eq!(c.stage2, stage2);
        assert_eq!(c.select, SelectSettings { rule: ScoreRule::InvSqrtV, k: 6, towers: Towers::Both, seed: 2 });
        assert_eq!((c.init, c.eval_precision), (Init::Pretrained, Precision::Fp32));
        assert_eq!((c.split.subsample, c.split.image_size, c.split.split_seed), (Subsample::All, 32, 1));
        assert!(c.split_new.is_none());
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
