//! A graph node as the ordinary stage command a batch job runs (`clip-ast stage2 --split KEY
//! …`), with every setting spelled out, so the job computes the node's key whatever the
//! command's defaults. Inputs are named by their full keys; they are in the store before the
//! job starts (`afterok`). Each stage renders its own command line
//! ([`crate::stages::definition::Stage::command_line`]), its settings through
//! [`crate::settings::Settings::to_args`].

use crate::pipeline::graph::{Graph, Node};
use crate::store::ArtifactKey;

/// The subcommand and its arguments, without `--store`, `--device` and `--threads`.
pub fn command_for(graph: &Graph, node: &Node) -> Vec<String> {
    let keys: Vec<&ArtifactKey> = node.inputs().iter().map(|&i| &graph.nodes[i].key).collect();
    node.job.stage().command_line(&keys)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::data::split::SplitRequest;
    use crate::pipeline::graph::Job;
    use crate::pipeline::{file, grid};
    use crate::settings::Settings;
    use crate::settings::pretrain::PretrainSettings;
    use crate::settings::split::SplitSettings;
    use crate::settings::stage1::Stage1Settings;
    use crate::settings::stage2::Stage2Settings;
    use crate::store::ArtifactKind;

    /// Settings a command reads back from `args` (the subcommand and input flags dropped).
    fn read_back<S: Settings>(args: &[String], inputs: &[&str]) -> S {
        let flags: Vec<String> =
            args[1..].iter().filter(|a| !inputs.iter().any(|i| a.starts_with(&format!("{i}=")))).cloned().collect();
        S::parse_args(&flags).unwrap_or_else(|e| panic!("{args:?}: {e}"))
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
            let args = command_for(&graph, node);
            match &node.job {
                Job::Pretrain(p) => {
                    let s: PretrainSettings = read_back(&args, &["--split", "--preset"]);
                    assert_eq!(s, p.settings);
                    assert_eq!(s.crop_scale.to_string(), "0.4,0.9");
                }
                Job::Stage1(p) => {
                    let s: Stage1Settings = read_back(&args, &["--split", "--weights"]);
                    assert_eq!(s, p.settings);
                    assert_eq!((s.min_steps, s.crop_scale.to_string()), (8, "0.5,1".into()));
                }
                Job::Stage2(p) => {
                    let s: Stage2Settings = read_back(&args, &["--split", "--weights", "--selection"]);
                    assert_eq!(s, p.settings);
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
        let request = |shots: i64| -> SplitRequest {
            let dataset = if shots == 0 { "imagenet-r" } else { "dtd" };
            SplitSettings::defaults().request(dataset, Path::new("/data"), shots, i64::from(shots != 0), None)
        };
        let node = |r: SplitRequest| Node {
            kind: ArtifactKind::Split,
            key: ArtifactKey::compute("split", 1, &serde_json::json!({}), &Default::default()),
            job: Job::Split(Box::new(r)),
            inputs: Vec::new(),
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
            command_for(&g, &g.nodes[0]).join(" ")
        };
        let settings = "--subsample=all --image-size=224 --split-seed=1 --rendering=original --pool=all";
        assert_eq!(args(0), format!("split --dataset=imagenet-r --root=/data {settings}"));
        assert_eq!(args(2), format!("split --dataset=dtd --root=/data --shots=2 --seed=1 {settings}"));
    }
}
