//! README.md's demo and study sections are their runs' report.md, not typed: each block between
//! `<!-- report: results/NAME/report.md -->` and `<!-- end of report -->` must equal that file
//! with its headings moved two levels down and its pictures pointing at docs/NAME-*.png
//! (`scripts/readme-reports.py` writes the blocks so). Where the results folder is present (a
//! clone that ran `make demo` or `make study`), the numbers cannot drift from the run's.

mod common;

const BEGIN: &str = "<!-- report: ";
const END: &str = "<!-- end of report -->";

/// report.md's lines as README.md embeds them.
fn embedded(report: &str, name: &str) -> Vec<String> {
    report
        .lines()
        .map(|line| {
            if line.starts_with('#') {
                format!("##{line}")
            } else if let Some(rest) = line.strip_prefix("![") {
                let (alt, target) = rest.split_once("](").expect("an image line is ![alt](file)");
                format!("![{alt}](docs/{name}-{}", target)
            } else {
                line.to_string()
            }
        })
        .collect()
}

/// Each block: (results path named in its marker, its lines).
fn blocks(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(BEGIN) else { continue };
        let path = rest.strip_suffix(" -->").expect("a marker ends with -->").to_string();
        let body: Vec<String> = lines.by_ref().take_while(|l| *l != END).map(String::from).collect();
        out.push((path, body));
    }
    out
}

#[test]
fn readme_reports_are_the_runs_reports() {
    let root = common::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let found = blocks(&readme);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["results/demo/report.md", "results/demo-study/report.md"], "README's report blocks");
    for (path, body) in &found {
        assert!(body.iter().any(|l| l == "#### Verdicts"), "{path}: the block has no verdicts");
        let name = path.trim_start_matches("results/").trim_end_matches("/report.md");
        for line in body.iter().filter(|l| l.starts_with("![")) {
            let file = line.rsplit_once("](").unwrap().1.trim_end_matches(')');
            assert!(root.join(file).is_file(), "{path}: README shows {file}, which is not in the repository");
            assert!(file.starts_with(&format!("docs/{name}-")), "{path}: {file}");
        }
        let Ok(report) = std::fs::read_to_string(root.join(path)) else {
            println!("skipping the comparison for {path}: not present (run make demo or make study)");
            continue;
        };
        let want = embedded(&report, name);
        for (i, (got, want)) in body.iter().zip(&want).enumerate() {
            assert_eq!(got, want, "README's block for {path}, line {}: run scripts/readme-reports.py", i + 1);
        }
        assert_eq!(body.len(), want.len(), "README's block for {path} has another length than the report");
    }
}

#[test]
fn embedding_moves_headings_down_and_points_pictures_at_docs() {
    let report = "# T\n\n## Verdicts\n- x\n![a b](paired.png)\n";
    assert_eq!(embedded(report, "demo"), ["### T", "", "#### Verdicts", "- x", "![a b](docs/demo-paired.png)"]);
    let readme = format!("x\n{BEGIN}results/demo/report.md -->\n### T\n{END}\ny\n");
    assert_eq!(blocks(&readme), [("results/demo/report.md".to_string(), vec!["### T".to_string()])]);
}
