//! The pipeline file's `[slurm]` section: what each stage's batch job asks the scheduler for.
//! `[slurm]` sets every stage kind's resources; `[slurm.stage2]` (or any other kind: weights,
//! split, stage1, selection, eval) overrides them for that kind. A local run ignores it.
//!
//! ```toml
//! [slurm]
//! partition = "cpu"
//! time = "0:30:00"
//! cpus = 4
//! [slurm.stage2]
//! partition = "gpu"
//! gpus = 1
//! extra = ["--constraint=a100"]
//! ```

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::store::ArtifactKind as Kind;

/// Keys of `[slurm]` and of each `[slurm.<kind>]`, documented in pipelines/README.md.
pub const KEYS: &[&str] = &[
    "partition",
    "account",
    "qos",
    "time",
    "gpus",
    "cpus",
    "mem",
    "device",
    "extra",
    "requeue",
    "signal_seconds",
    "max_resubmits",
    "group",
    "max_jobs",
];

/// Keys of `[slurm]` alone: they shape the run's jobs, not one kind's request.
const RUN_KEYS: &[&str] = &["group", "max_jobs"];

/// Seconds before the time limit that Slurm sends SIGUSR1 to a `requeue` job, unless
/// `signal_seconds` says: long enough for a step and a checkpoint of a large model.
pub const DEFAULT_SIGNAL_SECONDS: u32 = 120;
/// How often a `requeue` job that ran out of time or was preempted is submitted again.
pub const DEFAULT_MAX_RESUBMITS: u32 = 5;

/// One stage kind's request. `None`: not given, the cluster's default applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time`: minutes, or `[days-]hours:minutes:seconds`.
    pub time: Option<String>,
    /// `--gpus`: a count, or `type:count`.
    pub gpus: Option<String>,
    /// `--cpus-per-task`; also the stage's `--threads` unless the run gives `--threads`.
    pub cpus: Option<u32>,
    /// `--mem`: megabytes, or with a unit (`16G`).
    pub mem: Option<String>,
    /// The stage's `--device`: default `cuda` when GPUs are asked for, else the run's.
    pub device: Option<String>,
    /// More `sbatch` arguments, passed as they are (the section's first, then the kind's).
    pub extra: Vec<String>,
    /// Submit with `--requeue` and a warning signal, and submit again a job that ended
    /// TIMEOUT or PREEMPTED (or stopped by that signal) with a checkpoint behind it.
    pub requeue: Option<bool>,
    /// `--signal=B:USR1@SECONDS` with `requeue`.
    pub signal_seconds: Option<u32>,
    /// With `requeue`: resubmissions per stage before its failure counts.
    pub max_resubmits: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlurmConfig {
    pub all: Resources,
    pub per_kind: BTreeMap<Kind, Resources>,
    /// `group`: which stages share a batch job (`slurm::group`).
    pub group: Grouping,
    /// `max_jobs`: at most this many of the run's jobs queued or running at once.
    pub max_jobs: Option<u32>,
}

/// `[slurm] group`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Grouping {
    /// `"none"`: every stage its own job.
    #[default]
    None,
    /// `"point"`: selections ride with the stage 1 they rank, evaluations with the stage (a
    /// stage 2, else the weights) that made their model.
    Point,
}

impl SlurmConfig {
    /// `[slurm]` with `[slurm.<kind>]` laid over it.
    pub fn for_kind(&self, kind: Kind) -> Resources {
        let Some(k) = self.per_kind.get(&kind) else { return self.all.clone() };
        let a = &self.all;
        let pick = |over: &Option<String>, base: &Option<String>| over.clone().or_else(|| base.clone());
        Resources {
            partition: pick(&k.partition, &a.partition),
            account: pick(&k.account, &a.account),
            qos: pick(&k.qos, &a.qos),
            time: pick(&k.time, &a.time),
            gpus: pick(&k.gpus, &a.gpus),
            cpus: k.cpus.or(a.cpus),
            mem: pick(&k.mem, &a.mem),
            device: pick(&k.device, &a.device),
            extra: a.extra.iter().chain(&k.extra).cloned().collect(),
            requeue: k.requeue.or(a.requeue),
            signal_seconds: k.signal_seconds.or(a.signal_seconds),
            max_resubmits: k.max_resubmits.or(a.max_resubmits),
        }
    }
}

impl Resources {
    /// The `sbatch` options this request stands for.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in [
            ("--partition", &self.partition),
            ("--account", &self.account),
            ("--qos", &self.qos),
            ("--time", &self.time),
            ("--gpus", &self.gpus),
            ("--mem", &self.mem),
        ] {
            if let Some(v) = value {
                args.push(format!("{flag}={v}"));
            }
        }
        if let Some(cpus) = self.cpus {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        if self.requeues() {
            // B: the signal goes to the batch shell, which `exec`s the stage command.
            let seconds = self.signal_seconds.unwrap_or(DEFAULT_SIGNAL_SECONDS);
            args.extend(["--requeue".to_string(), format!("--signal=B:USR1@{seconds}")]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    pub fn requeues(&self) -> bool {
        self.requeue == Some(true)
    }

    /// How many times a stage is submitted again after running out of time (0 without requeue).
    pub fn resubmits(&self) -> u32 {
        if self.requeues() { self.max_resubmits.unwrap_or(DEFAULT_MAX_RESUBMITS) } else { 0 }
    }
}

/// Read the top-level `slurm` table, if any. `at` turns a byte offset into `file:line`.
pub fn read(doc: &DeTable<'_>, at: &dyn Fn(usize) -> String) -> Result<SlurmConfig> {
    let Some((key, value)) = doc.iter().find(|(k, _)| k.get_ref() == "slurm") else {
        return Ok(SlurmConfig::default());
    };
    let DeValue::Table(table) = value.get_ref() else {
        bail!("{}: `slurm` must be a table: a [slurm] section", at(key.span().start));
    };
    let mut config = SlurmConfig::default();
    for (k, v) in table.iter() {
        let name: &str = k.get_ref();
        if let Some(kind) = Kind::ALL.into_iter().find(|kind| kind.as_str() == name) {
            let DeValue::Table(sub) = v.get_ref() else {
                bail!("{}: [slurm] {name} must be a table: a [slurm.{name}] section", at(k.span().start));
            };
            let mut resources = Resources::default();
            for (k, v) in sub.iter() {
                set(&mut resources, k.get_ref(), v, &format!("slurm.{name}"), at(k.span().start))?;
            }
            config.per_kind.insert(kind, resources);
        } else if RUN_KEYS.contains(&name) {
            set_run_key(&mut config, name, v, at(k.span().start))?;
        } else {
            set(&mut config.all, name, v, "slurm", at(k.span().start))?;
        }
    }
    Ok(config)
}

fn set_run_key(config: &mut SlurmConfig, name: &str, v: &Spanned<DeValue<'_>>, at: String) -> Result<()> {
    match (name, v.get_ref()) {
        ("group", DeValue::String(s)) if s == "none" => config.group = Grouping::None,
        ("group", DeValue::String(s)) if s == "point" => config.group = Grouping::Point,
        ("group", _) => bail!("{at}: [slurm] group must be \"none\" or \"point\""),
        ("max_jobs", DeValue::Integer(i)) if i.as_str().parse::<u32>().is_ok_and(|n| n >= 1) => {
            config.max_jobs = i.as_str().parse().ok();
        }
        _ => bail!("{at}: [slurm] max_jobs must be a whole number ≥ 1"),
    }
    Ok(())
}

fn set(r: &mut Resources, name: &str, v: &Spanned<DeValue<'_>>, section: &str, at: String) -> Result<()> {
    let what = format!("{at}: [{section}] {name}");
    if RUN_KEYS.contains(&name) {
        bail!("{what}: only [slurm] itself takes `{name}` (it shapes the whole run's jobs)");
    }
    let text = || match v.get_ref() {
        DeValue::String(s) if !s.is_empty() => Ok(s.to_string()),
        DeValue::Integer(i) => Ok(i.as_str().to_string()),
        _ => Err(anyhow!("{what} must be a non-empty string or a whole number")),
    };
    match name {
        "partition" => r.partition = Some(text()?),
        "account" => r.account = Some(text()?),
        "qos" => r.qos = Some(text()?),
        "time" => {
            let time = text()?;
            slurm_minutes(&time).map_err(|why| anyhow!("{what} = {time}: {why}"))?;
            r.time = Some(time);
        }
        "gpus" => r.gpus = Some(text()?),
        "mem" => r.mem = Some(text()?),
        "device" => r.device = Some(text()?),
        "cpus" => {
            let n = match v.get_ref() {
                DeValue::Integer(i) => i.as_str().parse::<u32>().ok().filter(|&n| n >= 1),
                _ => None,
            };
            r.cpus = Some(n.ok_or_else(|| anyhow!("{what} must be a whole number ≥ 1"))?);
        }
        "requeue" => match v.get_ref() {
            DeValue::Boolean(b) => r.requeue = Some(*b),
            _ => bail!("{what} must be true or false"),
        },
        "signal_seconds" | "max_resubmits" => {
            let n = match v.get_ref() {
                DeValue::Integer(i) => i.as_str().parse::<u32>().ok(),
                _ => None,
            };
            let n = n.ok_or_else(|| anyhow!("{what} must be a whole number ≥ 0"))?;
            if name == "signal_seconds" {
                r.signal_seconds = Some(n);
            } else {
                r.max_resubmits = Some(n);
            }
        }
        "extra" => {
            let DeValue::Array(items) = v.get_ref() else {
                bail!("{what} must be a list of sbatch arguments, such as [\"--constraint=a100\"]");
            };
            for item in items {
                match item.get_ref() {
                    DeValue::String(s) => r.extra.push(s.to_string()),
                    _ => bail!("{what} must be a list of strings"),
                }
            }
        }
        _ => {
            let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            let sub =
                if section == "slurm" { format!(", or a stage kind: {}", kinds.join(", ")) } else { String::new() };
            bail!("{at}: unknown key `{name}` in [{section}]; known keys: {}{sub}", KEYS.join(", "));
        }
    }
    Ok(())
}

/// A Slurm `--time` in minutes (`None`: no limit), or why sbatch would refuse it: minutes,
/// `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or `UNLIMITED`/`INFINITE`; more than zero.
pub(super) fn slurm_minutes(time: &str) -> Result<Option<u64>, String> {
    const FORM: &str = "must be minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S, more than zero";
    if ["unlimited", "infinite"].contains(&time.to_ascii_lowercase().as_str()) {
        return Ok(None);
    }
    let (days, rest) = match time.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, time),
    };
    let number = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 9 {
            return Err(FORM.to_string());
        }
        s.parse().map_err(|_| FORM.to_string())
    };
    let parts: Vec<u64> = rest.split(':').map(number).collect::<Result<_, _>>()?;
    let seconds = match (days.map(number).transpose()?, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return Err(FORM.to_string()),
    };
    if seconds == 0 {
        return Err(FORM.to_string());
    }
    Ok(Some(seconds.div_ceil(60)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn slurm_times_are_sbatch_forms_above_zero() {
        for (time, minutes) in
            [("30", Some(30)), ("0:30", Some(1)), ("1:00:00", Some(60)), ("2-0", Some(2880)), ("1-0:30", Some(1470))]
        {
            assert_eq!(super::slurm_minutes(time), Ok(minutes), "{time}");
        }
        assert_eq!(super::slurm_minutes("UNLIMITED"), Ok(None));
        for bad in ["-5", "0", "0:00:00", "", "abc", "1:2:3:4", "1-", "5 min", "99999999999999"] {
            assert!(super::slurm_minutes(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    fn parse(text: &str) -> Result<SlurmConfig> {
        let doc = DeTable::parse(text).unwrap();
        let lines = |offset: usize| format!("p.toml:{}", text[..offset].matches('\n').count() + 1);
        read(doc.get_ref(), &lines)
    }

    #[test]
    fn kinds_override_the_section_and_extra_arguments_add_up() {
        let c = parse(
            "[slurm]\npartition = \"cpu\"\ntime = 30\ncpus = 2\nextra = [\"--nice=5\"]\n[slurm.stage2]\npartition = \"gpu\"\ngpus = \"a100:1\"\nextra = [\"--exclusive\"]\n",
        )
        .unwrap();
        let split = c.for_kind(Kind::Split);
        assert_eq!(split.sbatch_args(), ["--partition=cpu", "--time=30", "--cpus-per-task=2", "--nice=5"]);
        let stage2 = c.for_kind(Kind::Stage2);
        assert_eq!(
            stage2.sbatch_args(),
            ["--partition=gpu", "--time=30", "--gpus=a100:1", "--cpus-per-task=2", "--nice=5", "--exclusive"]
        );
        assert_eq!(parse("[data]\n").unwrap(), SlurmConfig::default());
    }

    #[test]
    fn requeue_adds_its_flags_per_kind_and_nothing_without_it() {
        let c = parse("[slurm]\ntime = 30\n[slurm.stage2]\nrequeue = true\nsignal_seconds = 45\n").unwrap();
        assert_eq!(c.for_kind(Kind::Split).sbatch_args(), ["--time=30"]);
        assert_eq!(c.for_kind(Kind::Split).resubmits(), 0);
        let stage2 = c.for_kind(Kind::Stage2);
        assert_eq!(stage2.sbatch_args(), ["--time=30", "--requeue", "--signal=B:USR1@45"]);
        assert_eq!(stage2.resubmits(), DEFAULT_MAX_RESUBMITS);
        let c = parse("[slurm]\nrequeue = true\nmax_resubmits = 2\n[slurm.eval]\nrequeue = false\n").unwrap();
        assert_eq!(c.for_kind(Kind::Stage1).sbatch_args(), ["--requeue", "--signal=B:USR1@120"]);
        assert_eq!((c.for_kind(Kind::Stage1).resubmits(), c.for_kind(Kind::Eval).resubmits()), (2, 0));
        let e = parse("[slurm]\nrequeue = \"yes\"\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: [slurm] requeue must be true or false"), "{e}");
        let e = parse("[slurm]\nmax_resubmits = -1\n").unwrap_err().to_string();
        assert!(e.contains("[slurm] max_resubmits must be a whole number ≥ 0"), "{e}");
    }

    #[test]
    fn group_and_max_jobs_belong_to_the_section_only() {
        let c = parse("[slurm]\ngroup = \"point\"\nmax_jobs = 3\n").unwrap();
        assert_eq!((c.group, c.max_jobs), (Grouping::Point, Some(3)));
        assert_eq!(parse("[slurm]\n").unwrap().group, Grouping::None);
        let e = parse("[slurm]\ngroup = \"chain\"\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: [slurm] group must be \"none\" or \"point\""), "{e}");
        let e = parse("[slurm]\nmax_jobs = 0\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: [slurm] max_jobs must be a whole number ≥ 1"), "{e}");
        let e = parse("[slurm.eval]\nmax_jobs = 3\n").unwrap_err().to_string();
        assert!(e.contains("[slurm.eval] max_jobs: only [slurm] itself takes `max_jobs`"), "{e}");
    }

    #[test]
    fn mistakes_name_the_line_and_key() {
        let e = parse("[slurm]\npartiton = \"x\"\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: unknown key `partiton` in [slurm]; known keys: partition"), "{e}");
        let e = parse("[slurm.stage3]\n").unwrap_err().to_string();
        assert!(e.contains("unknown key `stage3` in [slurm]"), "{e}");
        let e = parse("[slurm.eval]\ncpus = 0\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: [slurm.eval] cpus must be a whole number ≥ 1"), "{e}");
        let e = parse("[slurm]\nextra = \"--x\"\n").unwrap_err().to_string();
        assert!(e.contains("[slurm] extra must be a list"), "{e}");
        let e = parse("slurm = 3\n").unwrap_err().to_string();
        assert!(e.contains("`slurm` must be a table"), "{e}");
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/README.md")).unwrap();
        let start = readme.find("### [slurm]").expect("pipelines/README.md has a `### [slurm]` section");
        let body = &readme[start..];
        let body = &body[..body[4..].find("\n### ").map_or(body.len(), |i| i + 4)];
        for key in KEYS {
            assert!(body.contains(&format!("| `{key}` |")), "pipelines/README.md's [slurm] lacks `{key}`");
        }
    }
}
