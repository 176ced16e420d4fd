//! An artifact built from a BAD artifact is BAD too: `audit` follows each manifest's inputs, so
//! a stage-2 run made from a damaged weights file is reported, naming the input it came through
//! and the damaged artifact at the root. Its own files may be intact, but it can no longer be
//! rerun from its inputs, and whatever made its input damaged may have reached it.

use std::collections::HashMap;

use super::audit::{AuditReport, Problem, audit};
use super::key::abbreviate;
use super::{ArtifactKey, Manifest, Store};

/// What is known of one artifact's lineage while it is walked.
#[derive(Clone)]
enum Roots {
    /// Being walked: a manifest edited into a cycle must not recurse forever.
    Visiting,
    /// The artifacts (kind/key12) that fail the audit on their own: this one, or ancestors.
    Done(Vec<String>),
}

/// Add to each report an [`Problem::InputBad`] per input that fails the audit, itself or through
/// its own inputs. Inputs not among `reports` are audited here (and not returned).
pub fn add_lineage(store: &Store, reports: &mut [AuditReport]) {
    let mut known: HashMap<String, AuditReport> = reports.iter().map(|r| (r.name.clone(), r.clone())).collect();
    let mut roots: HashMap<String, Roots> = HashMap::new();
    for report in reports.iter_mut() {
        let Ok(manifest) = Manifest::read(&report.dir) else { continue };
        for (name, key) in &manifest.inputs {
            let bad = walk(store, key, &mut known, &mut roots);
            if !bad.is_empty() {
                let input = known.get(key.as_str()).map_or_else(|| key.short().to_string(), label);
                report.problems.push(Problem::InputBad { name: name.clone(), input, bad });
            }
        }
    }
}

fn label(report: &AuditReport) -> String {
    format!("{}/{}", report.kind, abbreviate(&report.name))
}

/// The artifacts at or above `key` that fail the audit on their own.
fn walk(
    store: &Store,
    key: &ArtifactKey,
    known: &mut HashMap<String, AuditReport>,
    roots: &mut HashMap<String, Roots>,
) -> Vec<String> {
    match roots.get(key.as_str()) {
        Some(Roots::Done(found)) => return found.clone(),
        Some(Roots::Visiting) => return Vec::new(),
        None => {}
    }
    roots.insert(key.to_string(), Roots::Visiting);
    if !known.contains_key(key.as_str()) {
        // A missing input is the child's own problem (`InputMissing`), reported there.
        let Ok(Some(artifact)) = store.find(key) else {
            roots.insert(key.to_string(), Roots::Done(Vec::new()));
            return Vec::new();
        };
        known.insert(key.to_string(), audit(store, &artifact.dir));
    }
    let report = known[key.as_str()].clone();
    let mut found = Vec::new();
    if report.problems.iter().any(|p| !matches!(p, Problem::InputBad { .. })) {
        found.push(label(&report));
    }
    if let Ok(manifest) = Manifest::read(&report.dir) {
        for input in manifest.inputs.values() {
            for root in walk(store, input, known, roots) {
                if !found.contains(&root) {
                    found.push(root);
                }
            }
        }
    }
    roots.insert(key.to_string(), Roots::Done(found.clone()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::audit_all;
    use crate::store::{Artifact, ArtifactKind, ArtifactSpec};
    use serde_json::{Value, json};

    fn make(store: &Store, kind: ArtifactKind, inputs: &[(&str, &Artifact)]) -> Artifact {
        let mut spec = ArtifactSpec::new(kind, 1, json!({}));
        for (name, input) in inputs {
            spec = spec.input(name, input);
        }
        store
            .get_or_produce(&spec, |d| {
                std::fs::write(d.join("out.bin"), kind.as_str())?;
                Ok(Value::Null)
            })
            .unwrap()
    }

    #[test]
    fn descendants_of_a_bad_artifact_name_their_input_and_the_root() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(Some(root.path())).unwrap();
        let weights = make(&store, ArtifactKind::Weights, &[]);
        let split = make(&store, ArtifactKind::Split, &[]);
        let stage1 = make(&store, ArtifactKind::Stage1, &[("split", &split), ("weights", &weights)]);
        let selection = make(&store, ArtifactKind::Selection, &[("stage1", &stage1)]);
        std::fs::write(weights.file("out.bin"), "tampered").unwrap();

        let reports = audit_all(&store).unwrap();
        let of = |a: &Artifact| reports.iter().find(|r| r.name == a.key.as_str()).unwrap().clone();
        assert!(of(&split).is_clean());
        assert!(matches!(&of(&weights).problems[..], [Problem::FileChanged { .. }]));
        let w = format!("weights/{}", weights.key.short());
        let stage1_label = format!("stage1/{}", stage1.key.short());
        let s1 = stage1_label.clone();
        assert_eq!(
            of(&stage1).problems,
            [Problem::InputBad { name: "weights".into(), input: w.clone(), bad: vec![w.clone()] }]
        );
        assert_eq!(
            of(&selection).problems,
            [Problem::InputBad { name: "stage1".into(), input: s1, bad: vec![w.clone()] }]
        );
        let line = of(&selection).to_string();
        let through = format!("built from input `stage1` ({}), which was built from {w}, which fails", stage1_label);
        assert!(line.contains(&through), "{line}");

        // Audited alone, an artifact still walks its inputs.
        let mut alone = [audit(&store, &selection.dir)];
        add_lineage(&store, &mut alone);
        assert_eq!(alone[0].problems, of(&selection).problems);
    }
}
