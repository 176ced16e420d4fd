//! A graph node as the ordinary stage command a batch job runs (`clip-ast stage2 --split KEY
//! …`), with every setting spelled out, so the job computes the node's key whatever the
//! command's defaults. Inputs are named by their full keys; they are in the store before the
//! job starts (`afterok`).
//!
//! A setting the command has no flag for must be at the command's default, else the job would
//! make a different artifact: [`stage_args`] refuses such a node before anything is submitted.

use anyhow::{Result, bail};

use crate::clip::layers::Precision;
use crate::pipeline::file::WeightsSource;
use crate::pipeline::graph::{Graph, Job, Node};
use crate::stages::stage2::Init;
use crate::train::adamw::AdamWConfig;
use crate::train::pretrain::PretrainParams;

/// The subcommand and its arguments, without `--store`, `--device` and `--threads`.
pub fn stage_args(graph: &Graph, node: &Node) -> Result<Vec<String>> {
    let key = |id: usize| graph.nodes[id].key.as_str().to_string();
    let mut a = Args::default();
    match &node.job {
        Job::Weights(WeightsSource::File { path, activation }) => {
            a.cmd("import-weights").plain(&path.display().to_string());
            if let Some(act) = activation {
                a.flag("--activation", json_name(act));
            }
        }
        Job::Weights(WeightsSource::Init { preset, seed }) => {
            a.cmd("init-weights").flag("--preset", preset).flag("--seed", seed);
        }
        Job::Weights(WeightsSource::Pretrain(_)) => bail!("graph::build makes a pretrained foundation a Job::Pretrain"),
        Job::Pretrain { split, preset, init_seed, params } => {
            let d = PretrainParams::default();
            let expressible = PretrainParams {
                optimizer: AdamWConfig { lr: params.optimizer.lr, ..d.optimizer.clone() },
                epochs: params.epochs,
                batch_size: params.batch_size,
                seed: params.seed,
                crop_scale_min: params.crop_scale_min,
                crop_scale_max: params.crop_scale_max,
                source_rendering: params.source_rendering,
                target_fraction: params.target_fraction,
                captions: params.captions,
                ..d
            };
            if **params != expressible {
                bail!(
                    "weights {}: `clip-ast pretrain` has no flags for some of its settings, so a batch job cannot run it; use --executor local",
                    node.label
                );
            }
            a.cmd("pretrain")
                .flag("--split", key(*split))
                .flag("--preset", preset)
                .flag("--init-seed", init_seed)
                .flag("--lr", params.optimizer.lr)
                .flag("--epochs", params.epochs)
                .flag("--batch-size", params.batch_size)
                .flag("--seed", params.seed)
                .flag("--crop-scale", params.crop_scale());
            if params.target_fraction != 1.0 {
                a.flag("--target-fraction", params.target_fraction);
            }
            if !params.source_rendering.is_original() {
                a.flag("--source-rendering", json_name(&params.source_rendering));
            }
            if !params.captions.is_class_names() {
                a.flag("--captions", json_name(&params.captions));
            }
        }
        Job::Split(r) => {
            a.cmd("split").flag("--dataset", &r.dataset).flag("--root", r.root.display());
            // A test-only dataset's split (an `[eval] targets` one) samples nothing: no --shots.
            if r.shots != 0 {
                a.flag("--shots", r.shots).flag("--seed", r.seed);
            }
            a.flag("--subsample", r.subsample.as_str())
                .flag("--image-size", r.image_size)
                .flag("--split-seed", r.split_seed);
            if let Some(cache) = &r.hash_cache {
                a.flag("--hash-cache", cache.display());
            }
            if let Some(n) = r.test_per_class {
                a.flag("--test-per-class", n);
            }
            if !r.rendering.is_original() {
                a.flag("--rendering", r.rendering.as_str());
            }
            if !r.pool.is_all() {
                a.flag("--pool", r.pool.as_str());
            }
        }
        Job::Stage1 { split, weights, params: p } => {
            a.cmd("stage1")
                .flag("--split", key(*split))
                .flag("--weights", key(*weights))
                .flag("--lr", p.optimizer.lr)
                .flag("--epochs", p.epochs)
                .flag("--batch-size", p.batch_size)
                .flag("--seed", p.seed)
                .flag("--precision", precision(p.precision))
                .flag("--min-steps", p.min_steps)
                .flag("--crop-scale", p.crop_scale)
                .optimizer(&p.optimizer);
        }
        Job::Select { stage1, settings: s, like } => {
            a.cmd("select").flag("--stage1", key(*stage1));
            // A matched selection has no K (`stages::select::spec`).
            match like {
                Some(like) => a.flag("--match", "params").flag("--like", key(*like)),
                None => a.flag("--k", s.k),
            };
            a.flag("--score", json_name(&s.rule)).flag("--towers", json_name(&s.towers)).flag("--seed", s.seed);
        }
        Job::Stage2 { split, weights, selection, init, params: p } => {
            let init = match init {
                Init::Pretrained => "pretrained",
                Init::Stage1 => "stage1",
            };
            a.cmd("stage2")
                .flag("--split", key(*split))
                .flag("--weights", key(*weights))
                .flag("--selection", key(*selection))
                .flag("--init", init)
                .flag("--lr", p.optimizer.lr)
                .flag("--epochs", p.schedule.epochs)
                .flag("--warmup-epochs", p.schedule.warmup_epochs)
                .flag("--warmup-lr", p.schedule.warmup_start_lr)
                .flag("--batch-size", p.batch_size)
                .flag("--lambda-img", p.lambdas.image_l1)
                .flag("--lambda-txt", p.lambdas.text_l1)
                .flag("--lambda-kl", p.lambdas.kl)
                .flag("--seed", p.seed)
                .flag("--precision", precision(p.precision))
                .flag("--crop-scale", p.crop_scale)
                .optimizer(&p.optimizer);
        }
        Job::Eval { splits, weights, stage2, precision: p, parts } => {
            a.cmd("eval");
            if *parts == crate::stages::eval::Parts::ValOnly {
                a.plain("--val-only");
            }
            for &s in splits {
                a.flag("--split", key(s));
            }
            a.flag("--weights", key(*weights)).flag("--precision", precision(*p));
            if let Some(s) = stage2 {
                a.flag("--stage2", key(*s));
            }
        }
        Job::Probe { split, weights } => {
            a.cmd("probe").flag("--split", key(*split)).flag("--weights", key(*weights));
        }
    }
    Ok(a.0)
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn cmd(&mut self, name: &str) -> &mut Args {
        self.0.push(name.to_string());
        self
    }

    fn plain(&mut self, value: &str) -> &mut Args {
        self.0.push(value.to_string());
        self
    }

    /// `--flag=value`: one argument, so a negative number is never read as a flag. f64 prints
    /// the shortest decimal that parses back to the same bits.
    fn flag(&mut self, flag: &str, value: impl std::fmt::Display) -> &mut Args {
        self.0.push(format!("{flag}={value}"));
        self
    }

    fn optimizer(&mut self, o: &AdamWConfig) -> &mut Args {
        self.flag("--weight-decay", o.weight_decay)
            .flag("--beta1", o.beta1)
            .flag("--beta2", o.beta2)
            .flag("--eps", o.eps);
        if o.amsgrad {
            self.0.push("--amsgrad".into());
        }
        self
    }
}

fn precision(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "fp32",
        Precision::Bf16 => "bf16",
    }
}

/// The name serde gives a unit variant (`inv-sqrt-v`, `both`, `quick_gelu`): what the commands parse.
fn json_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::data::split::SplitRequest;
    use crate::data::subsample::Subsample;
    use crate::pipeline::{file, grid};
    use crate::settings::Settings;
    use crate::settings::pretrain::PretrainSettings;
    use crate::settings::stage1::Stage1Settings;
    use crate::settings::stage2::Stage2Settings;
    use crate::store::{ArtifactKey, ArtifactKind};

    /// Settings a command reads back from `args` (the subcommand and input flags dropped).
    fn read_back<S: Settings>(args: &[String], inputs: &[&str]) -> S {
        let flags: Vec<&String> =
            args[1..].iter().filter(|a| !inputs.iter().any(|i| a.starts_with(&format!("{i}=")))).collect();
        let skip_values = ["--preset", "--init-seed"];
        let flags: Vec<&String> = flags.into_iter().filter(|a| !skip_values.iter().any(|i| a.starts_with(i))).collect();
        let matches = S::command().try_get_matches_from(flags).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        S::from_arg_matches(&matches).unwrap()
    }

    /// Stage 1's step floor and every stage's crop range reach the batch job's command line.
    #[test]
    fn min_steps_and_crop_scale_reach_the_job_command() {
        let text = r#"
[weights]
pretrain = { preset = "mini", shots = 10, crop_scale = "0.4,0.9" }
[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 1
seed = 1
[stage1]
min_steps = 8
crop_scale = "0.5,1"
[stage2]
crop_scale = "0.3,1"
"#;
        let data = tempfile::tempdir().unwrap();
        for class in ["a", "b"] {
            std::fs::create_dir(data.path().join(class)).unwrap();
            for i in 0..10 {
                let img = image::RgbImage::from_pixel(8, 8, image::Rgb([i * 20, 0, 0]));
                img.save(data.path().join(class).join(format!("{i}.png"))).unwrap();
            }
        }
        let root = data.path().to_str().unwrap().to_string();
        let file = file::parse(text, Path::new("p.toml"), &|_| Some(root.clone())).unwrap();
        let graph = crate::pipeline::graph::build(&file, grid::expand(&file).unwrap(), None).unwrap();
        let mut seen = 0;
        for node in &graph.nodes {
            let args = stage_args(&graph, node).unwrap();
            match &node.job {
                Job::Pretrain { params, .. } => {
                    let s: PretrainSettings = read_back(&args, &["--split"]);
                    assert_eq!(&s.params().unwrap(), params.as_ref());
                    assert_eq!(s.crop_scale.to_string(), "0.4,0.9");
                }
                Job::Stage1 { params, .. } => {
                    let s: Stage1Settings = read_back(&args, &["--split", "--weights"]);
                    assert_eq!(&s.params(0).unwrap(), params.as_ref());
                    assert_eq!((s.min_steps, s.crop_scale.to_string()), (8, "0.5,1".into()));
                }
                Job::Stage2 { params, .. } => {
                    let s: Stage2Settings = read_back(&args, &["--split", "--weights", "--selection"]);
                    assert_eq!(&s.params(0).unwrap(), params.as_ref());
                    assert_eq!(s.crop_scale.to_string(), "0.3,1");
                }
                _ => continue,
            }
            seen += 1;
        }
        assert_eq!(seen, 3);
    }

    #[test]
    fn a_test_only_target_split_is_made_without_shots() {
        let request = |shots: i64| SplitRequest {
            dataset: if shots == 0 { "imagenet-r" } else { "dtd" }.into(),
            root: "/data".into(),
            shots,
            seed: i64::from(shots != 0),
            subsample: Subsample::All,
            image_size: 224,
            split_seed: 1,
            test_per_class: None,
            hash_cache: None,
            save_generated_split: true,
            quiet: true,
            rendering: Default::default(),
            pool: Default::default(),
        };
        let node = |r: SplitRequest| Node {
            kind: ArtifactKind::Split,
            key: ArtifactKey::compute("split", 1, &serde_json::json!({}), &Default::default()),
            job: Job::Split(Box::new(r)),
            label: String::new(),
        };
        let graph = |n: Node| Graph {
            nodes: vec![n],
            points: Vec::new(),
            weights_label: String::new(),
            evaluations: Vec::new(),
            validations: Vec::new(),
            targets: Vec::new(),
            target_evaluations: Vec::new(),
            naive: Default::default(),
        };
        let args = |shots| {
            let g = graph(node(request(shots)));
            stage_args(&g, &g.nodes[0]).unwrap().join(" ")
        };
        assert_eq!(args(0), "split --dataset=imagenet-r --root=/data --subsample=all --image-size=224 --split-seed=1");
        assert!(args(2).starts_with("split --dataset=dtd --root=/data --shots=2 --seed=1 --subsample=all"));
    }
}
