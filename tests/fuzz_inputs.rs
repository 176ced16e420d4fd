//! Fuzzing what users type: pipeline files and command lines mutated by rule (wrong types,
//! out-of-range and non-finite numbers, sizes that would allocate terabytes, truncation,
//! unknown keys and sections, unicode, raw bytes), drawn from proptest strategies with a fixed
//! seed. Every run of the binary must end within a timeout with exit 0, or with exactly one
//! `error:` line and exit 1; no panic, abort or hang; nothing added to the store or written
//! over the user's files when it fails.
//!
//! `make test` runs `DEFAULT_CASES` cases (cheap commands: `run --dry-run`, `split`, stage
//! commands that stop at their settings or at a missing artifact); set CLIP_AST_FUZZ_CASES for
//! more (the draw is the same for the first N cases whatever N is).

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use common::scratch::{Scratch, colour_images};

const DEFAULT_CASES: usize = 240;
const SEED: &[u8; 32] = b"clip-ast fuzz: files, flags, 021";
/// Far above what any case needs (a split of the fixture takes under a second).
const TIMEOUT: Duration = Duration::from_secs(90);

/// The valid pipeline every file case mutates: (section, key, value as TOML).
fn base_pipeline(data: &str) -> Vec<(String, String, String)> {
    let entries = [
        ("", "name", "\"fuzz\""),
        ("weights", "init", "{ preset = \"mini\", seed = 0 }"),
        ("data", "dataset", "\"imagefolder\""),
        ("data", "root", &format!("{data:?}")),
        ("data", "shots", "2"),
        ("data", "seed", "[1, 2]"),
        ("data", "test_per_class", "2"),
        ("stage1", "lr", "1e-4"),
        ("stage1", "epochs", "1"),
        ("stage1", "batch_size", "8"),
        ("select", "k", "[3, 6]"),
        ("stage2", "lr", "1e-3"),
        ("stage2", "epochs", "2"),
        ("stage2", "warmup_epochs", "1"),
        ("stage2", "lambda", "[0, 1]"),
        ("eval", "precision", "\"fp32\""),
        ("slurm", "time", "\"0:30:00\""),
    ];
    entries.iter().map(|(s, k, v)| (s.to_string(), k.to_string(), v.to_string())).collect()
}

fn render(entries: &[(String, String, String)]) -> String {
    let mut text = String::new();
    let mut section = None;
    for (s, k, v) in entries {
        if section != Some(s) && !s.is_empty() {
            text.push_str(&format!("\n[{s}]\n"));
        }
        section = Some(s);
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}

/// A TOML string literal of any text.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out + "\""
}

/// Numbers a user might type, by rule: boundaries, non-finite, sizes that overflow.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "-1",
            "0",
            "1",
            "2",
            "3",
            "32",
            "1000000000",
            "4611686018427387904",
            "9223372036854775807",
            "-9223372036854775808",
            "100000",
            "1e308",
            "-1e308",
            "1e-320",
            "-0.0",
            "0.5",
            "1.0",
            "0.999999",
        ])
        .prop_map(String::from),
        (0i64..=64).prop_map(|v| v.to_string()),
        (-1e12f64..1e12).prop_map(|v| format!("{v:?}")),
    ]
}

/// TOML values of every type.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => number_text(),
        1 => prop::sample::select(vec!["nan", "inf", "-inf", "+inf", "-nan"]).prop_map(String::from),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        2 => "\\PC{0,12}".prop_map(|s| quoted(&s)),
        1 => prop::sample::select(vec![
            "\"mini\"", "\"ViT-B-16\"", "\"caltech101\"", "\"base-to-novel\"", "\"bf16\"", "\"random\"", "\"\"",
            "\"0.08,1\"", "\"1,0\"", "\"${NOPE}\"", "\"${HOME}\"", "\"-5\"", "\"UNLIMITED\"",
        ])
        .prop_map(String::from),
        1 => prop::sample::select(vec!["[]", "[1, 1]", "[\"a\", 2]", "[[1]]", "{}", "{ a = 1 }", "[1, 2, 3]"])
            .prop_map(String::from),
    ]
}

/// Values that are sizes, in the keys that size something.
fn size_edit() -> impl Strategy<Value = (String, String, String)> {
    let keys = vec![
        ("data", "shots"),
        ("data", "image_size"),
        ("data", "test_per_class"),
        ("stage1", "batch_size"),
        ("stage1", "min_steps"),
        ("select", "k"),
        ("stage2", "warmup_epochs"),
        ("stage2", "batch_size"),
        ("slurm", "time"),
        ("slurm", "cpus"),
    ];
    let sizes = vec!["0", "-5", "1000000000", "4611686018427387904", "100000", "64", "13", "\"-5\"", "\"0\""];
    (prop::sample::select(keys), prop::sample::select(sizes))
        .prop_map(|((s, k), v)| (s.to_string(), k.to_string(), v.to_string()))
}

#[derive(Clone, Debug)]
enum FileEdit {
    Replace(prop::sample::Index, String),
    Size((String, String, String)),
    UnknownKey(prop::sample::Index, String, String),
    UnknownSection(String),
    UnicodeKey(prop::sample::Index, String),
    Remove(prop::sample::Index),
    Duplicate(prop::sample::Index),
}

fn file_edit() -> impl Strategy<Value = FileEdit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), toml_value()).prop_map(|(i, v)| FileEdit::Replace(i, v)),
        3 => size_edit().prop_map(FileEdit::Size),
        1 => (any::<prop::sample::Index>(), "[a-z_]{1,10}", toml_value()).prop_map(|(i, k, v)| FileEdit::UnknownKey(i, k, v)),
        1 => "[a-z.]{1,12}".prop_map(FileEdit::UnknownSection),
        1 => (any::<prop::sample::Index>(), "\\PC{1,6}").prop_map(|(i, k)| FileEdit::UnicodeKey(i, k)),
        1 => any::<prop::sample::Index>().prop_map(FileEdit::Remove),
        1 => any::<prop::sample::Index>().prop_map(FileEdit::Duplicate),
    ]
}

/// Byte-level damage after rendering: cut the file short, or splice raw bytes in.
#[derive(Clone, Debug)]
enum ByteEdit {
    None,
    Truncate(prop::sample::Index),
    Splice(prop::sample::Index, Vec<u8>),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        6 => Just(ByteEdit::None),
        1 => any::<prop::sample::Index>().prop_map(ByteEdit::Truncate),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, b)| ByteEdit::Splice(i, b)),
    ]
}

fn pipeline_bytes(data: &str, edits: &[FileEdit], bytes: &ByteEdit) -> Vec<u8> {
    let mut entries = base_pipeline(data);
    for edit in edits {
        let n = entries.len();
        match edit {
            FileEdit::Replace(i, v) => entries[i.index(n)].2 = v.clone(),
            FileEdit::Size((s, k, v)) => match entries.iter_mut().find(|(es, ek, _)| es == s && ek == k) {
                Some(e) => e.2 = v.clone(),
                None => {
                    let at = entries.iter().rposition(|(es, _, _)| es == s).map_or(n, |p| p + 1);
                    entries.insert(at, (s.clone(), k.clone(), v.clone()));
                }
            },
            FileEdit::UnknownKey(i, k, v) => {
                let s = entries[i.index(n)].0.clone();
                entries.insert(i.index(n) + 1, (s, k.clone(), v.clone()));
            }
            FileEdit::UnknownSection(name) => entries.push((name.clone(), "x".into(), "1".into())),
            FileEdit::UnicodeKey(i, k) => entries[i.index(n)].1 = quoted(k),
            FileEdit::Remove(i) => {
                entries.remove(i.index(n));
            }
            FileEdit::Duplicate(i) => {
                let e = entries[i.index(n)].clone();
                entries.insert(i.index(n), e);
            }
        }
        if entries.is_empty() {
            break;
        }
    }
    let mut text = render(&entries).into_bytes();
    match bytes {
        ByteEdit::None => {}
        ByteEdit::Truncate(i) => text.truncate(i.index(text.len() + 1)),
        ByteEdit::Splice(i, b) => {
            let at = i.index(text.len() + 1);
            text.splice(at..at, b.iter().copied());
        }
    }
    text
}

/// One command-line argument's replacement: numbers, non-finite, unicode, raw bytes, paths to
/// the user's own files, flags in a value's place.
fn arg_value(victims: Vec<String>) -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => number_text().prop_map(OsString::from),
        2 => prop::sample::select(vec!["nan", "inf", "-inf", "NaN", "1e400", "0x10", "", "-", "--", "--help=x"])
            .prop_map(OsString::from),
        2 => "\\PC{0,10}".prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>().prop_filter("no NUL in argv", |b| *b != 0), 1..8).prop_map(OsString::from_vec),
        2 => prop::sample::select(victims).prop_map(OsString::from),
        1 => prop::sample::select(vec!["--lr", "--threads", "--store", "--shots", "--k", "--frobnicate", "--quiet"])
            .prop_map(OsString::from),
    ]
}

#[derive(Clone, Debug)]
enum ArgEdit {
    Replace(prop::sample::Index, OsString),
    Insert(prop::sample::Index, String, OsString),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn arg_edit(victims: Vec<String>) -> impl Strategy<Value = ArgEdit> {
    let flags = vec![
        "--lr",
        "--eps",
        "--beta1",
        "--beta2",
        "--weight-decay",
        "--epochs",
        "--batch-size",
        "--min-steps",
        "--crop-scale",
        "--threads",
        "--shots",
        "--seed",
        "--image-size",
        "--test-per-class",
        "--k",
        "--lmbd",
        "--warmup-epochs",
        "--hash-cache",
        "--store",
        "--out",
        "--jobs",
        "--device",
        "--precision",
        "--unknown",
    ];
    prop_oneof![
        5 => (any::<prop::sample::Index>(), arg_value(victims.clone())).prop_map(|(i, v)| ArgEdit::Replace(i, v)),
        3 => (any::<prop::sample::Index>(), prop::sample::select(flags), arg_value(victims))
            .prop_map(|(i, f, v)| ArgEdit::Insert(i, f.to_string(), v)),
        1 => any::<prop::sample::Index>().prop_map(ArgEdit::Remove),
        1 => any::<prop::sample::Index>().prop_map(ArgEdit::Truncate),
    ]
}

/// The command lines every argv case mutates. Stage commands name a split that does not
/// exist, so valid settings end at the lookup instead of training.
fn base_commands(s: &Scratch) -> Vec<Vec<OsString>> {
    let (data, cache) = (s.p("data"), s.p("cache/hashes.json"));
    let cmds: Vec<Vec<&str>> = vec![
        vec![
            "split",
            "--dataset",
            "imagefolder",
            "--root",
            &data,
            "--shots",
            "2",
            "--seed",
            "1",
            "--image-size",
            "32",
            "--test-per-class",
            "2",
            "--hash-cache",
            &cache,
        ],
        vec![
            "stage1",
            "--split",
            "0000",
            "--weights",
            "0000",
            "--lr",
            "1e-4",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--min-steps",
            "2",
        ],
        vec![
            "stage2",
            "--split",
            "0000",
            "--weights",
            "0000",
            "--selection",
            "0000",
            "--lr",
            "1e-3",
            "--lmbd",
            "1",
            "--epochs",
            "2",
            "--warmup-epochs",
            "1",
        ],
        vec!["select", "--stage1", "0000", "--k", "6", "--score", "random"],
        vec!["run", "fuzz-base.toml", "--dry-run", "--jobs", "2", "--out", "out"],
        vec!["ls"],
    ];
    cmds.into_iter().map(|c| c.into_iter().map(OsString::from).collect()).collect()
}

fn apply_args(mut args: Vec<OsString>, edits: &[ArgEdit]) -> Vec<OsString> {
    for edit in edits {
        // The command name stays: a bare `clip-ast` prints its help, as a tool should.
        let n = args.len() - 1;
        match edit {
            ArgEdit::Replace(i, v) if n > 0 => args[1 + i.index(n)] = v.clone(),
            ArgEdit::Insert(i, f, v) => {
                let at = 1 + i.index(n + 1);
                args.splice(at..at, [OsString::from(f), v.clone()]);
            }
            ArgEdit::Remove(i) if n > 0 => {
                args.remove(1 + i.index(n));
            }
            ArgEdit::Truncate(i) => args.truncate(1 + i.index(n + 1)),
            _ => {}
        }
    }
    // A mutation that drops `--dry-run` would train the whole grid: a cost, not a finding.
    if args[0] == "run" && !args.iter().any(|a| a == "--dry-run") {
        args.push("--dry-run".into());
    }
    args
}

/// What a case saw: the exit and stderr, or a hang.
enum Outcome {
    Exit(Option<i32>, Option<i32>, String),
    Hang,
}

fn run(s: &Scratch, args: &[OsString], store: &Path) -> Outcome {
    let mut child = common::clip_ast()
        .args(args)
        .arg("--quiet")
        .arg("--store")
        .arg(store)
        .current_dir(s.dir.path())
        .env("XDG_CACHE_HOME", s.path("cache"))
        .env_remove("RUST_BACKTRACE")
        .env_remove("CLIP_AST_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut { stderr }, &mut text).unwrap();
        String::from_utf8_lossy(&text).into_owned()
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Outcome::Exit(status.code(), status.signal(), reader.join().unwrap());
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::Hang;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Published artifacts and leftovers in `tmp/` (depth 2, lock files aside): what a failed
/// command must not change. The layout's empty folders (`split/`, `tmp/`) may appear.
fn store_state(store: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    for entry in walkdir::WalkDir::new(store).min_depth(2).max_depth(2).sort_by_file_name() {
        // A store not made yet is empty.
        let Ok(entry) = entry else { continue };
        let rel = entry.path().strip_prefix(store).unwrap().display().to_string();
        if !rel.starts_with("locks") {
            seen.push(rel);
        }
    }
    seen
}

#[derive(Default)]
struct Counts {
    cases: usize,
    ok: usize,
    errors: usize,
    failures: Vec<String>,
}

fn check(counts: &Mutex<Counts>, label: &str, outcome: Outcome, before: &[String], after: &[String]) {
    let mut c = counts.lock().unwrap();
    c.cases += 1;
    let problem = match outcome {
        Outcome::Hang => Some(format!("no exit within {TIMEOUT:?}")),
        Outcome::Exit(Some(0), _, _) => {
            c.ok += 1;
            None
        }
        Outcome::Exit(code, signal, stderr) => {
            let errors = stderr.lines().filter(|l| l.starts_with("error: ")).count();
            let others: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("error: ") && !l.starts_with("warning: ") && !l.starts_with("note: "))
                .collect();
            if code != Some(1) || signal.is_some() {
                Some(format!("exit {code:?} signal {signal:?}: {stderr}"))
            } else if errors != 1 || !others.is_empty() || stderr.contains("internal error") {
                Some(format!("want one `error:` line, got: {stderr}"))
            } else if before != after {
                Some(format!("the store changed on error: {before:?} → {after:?}"))
            } else {
                c.errors += 1;
                None
            }
        }
    };
    // Whatever the outcome, a finished command leaves no work in progress behind.
    let leftovers: Vec<&String> = after.iter().filter(|e| e.starts_with("tmp/")).collect();
    let problem = problem.or_else(|| (!leftovers.is_empty()).then(|| format!("left in the store: {leftovers:?}")));
    if let Some(problem) = problem {
        c.failures.push(format!("{label}\n  {problem}"));
    }
}

#[test]
fn mutated_pipelines_and_command_lines_end_cleanly() {
    let cases: usize = std::env::var("CLIP_AST_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    let s = Scratch::new();
    colour_images(&s.path("data"));
    // The user's own files, offered to every path argument; never to be written over.
    std::fs::create_dir_all(s.path("mine")).unwrap();
    let victims = [("notes.txt", "important notes\n"), ("mine/summary.csv", "my,own\n1,2\n")];
    for (rel, text) in victims {
        s.write(rel, text);
    }
    s.write("fuzz-base.toml", &render(&base_pipeline(&s.p("data"))));
    let victim_paths: Vec<String> =
        victims.iter().map(|(rel, _)| s.p(rel)).chain([s.p("mine"), "/etc/passwd".to_string()]).collect();
    let passwd = std::fs::read("/etc/passwd").ok();

    let mut runner = TestRunner::new_with_rng(
        Config { failure_persistence: None, ..Config::default() },
        TestRng::from_seed(RngAlgorithm::ChaCha, SEED),
    );
    let commands = base_commands(&s);
    // Two thirds pipeline files (all --dry-run), one third command lines.
    let file_case = (prop::collection::vec(file_edit(), 1..4), byte_edit());
    let argv_case = (0..commands.len(), prop::collection::vec(arg_edit(victim_paths.clone()), 1..4));
    let mut work: Vec<(String, Vec<OsString>, Option<Vec<u8>>)> = Vec::new();
    for i in 0..cases {
        if i % 3 != 2 {
            let (edits, bytes) = file_case.new_tree(&mut runner).unwrap().current();
            let text = pipeline_bytes(&s.p("data"), &edits, &bytes);
            let name = format!("case-{i}.toml");
            let label = format!("case {i}: run {name} --dry-run; edits {edits:?} {bytes:?}");
            work.push((label, vec!["run".into(), name.into(), "--dry-run".into()], Some(text)));
        } else {
            let (which, edits) = argv_case.new_tree(&mut runner).unwrap().current();
            let args = apply_args(commands[which].clone(), &edits);
            work.push((format!("case {i}: {args:?}"), args, None));
        }
    }
    for (label, args, text) in &work {
        if let Some(text) = text {
            std::fs::write(s.path(args[1].to_str().unwrap()), text).unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }

    let counts = Mutex::new(Counts::default());
    let next = Mutex::new(0usize);
    // Dry runs share a store nothing may write to; command lines (a split may succeed and
    // publish) get their own, one at a time, so each failure is checked against a still store.
    let (dry_store, argv_store) = (s.path("store-dry"), s.path("store"));
    let argv_turn = Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some((label, args, text)) = work.get(i) else { break };
                    let (store, _turn) = if text.is_some() {
                        (&dry_store, None)
                    } else {
                        (&argv_store, Some(argv_turn.lock().unwrap()))
                    };
                    let before = store_state(store);
                    let outcome = run(&s, args, store);
                    let after = store_state(store);
                    check(&counts, label, outcome, &before, &after);
                }
            });
        }
    });
    assert!(store_state(&dry_store).is_empty(), "a dry run wrote to the store: {:?}", store_state(&dry_store));

    let c = counts.into_inner().unwrap();
    eprintln!(
        "fuzz: {} cases, {} exit 0, {} one-line `error:` exits, {} panics/aborts/hangs/other",
        c.cases,
        c.ok,
        c.errors,
        c.failures.len()
    );
    assert!(c.failures.is_empty(), "{} case(s) failed:\n{}", c.failures.len(), c.failures.join("\n"));
    assert_eq!(c.cases, cases);
    for (rel, text) in victims {
        assert_eq!(std::fs::read_to_string(s.path(rel)).unwrap(), text, "{rel} was written over");
    }
    assert_eq!(std::fs::read("/etc/passwd").ok(), passwd, "/etc/passwd was written over");
    // The mutations must reach both outcomes, or the test checks less than it says.
    assert!(c.ok > 0 && c.errors > c.ok, "{} ok, {} errors", c.ok, c.errors);
}
