//! The Slurm commands the executor runs: `sbatch` to submit, `squeue` to follow, `scontrol
//! show job -o` for a finished job's exit code, `scancel`. No accounting (`sacct`) is needed:
//! `squeue -t all` lists a finished job with its final state for the cluster's MinJobAge
//! (300 s by default); after that the job is unknown and the store alone says how it went.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// What `sbatch` gets besides the script.
pub struct Submission<'a> {
    pub name: &'a str,
    /// `--output`; `%j` is the job id.
    pub log: &'a Path,
    /// Job ids that must complete successfully first.
    pub after: &'a [String],
    pub resources: &'a [String],
    /// The job's command line, one argument each.
    pub argv: &'a [String],
    /// Lines the command reads on its standard input (a group's stage commands), if any.
    pub input: Option<&'a str>,
}

/// Submit; returns the job id.
pub fn sbatch(s: &Submission) -> Result<String> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={}", s.name),
        format!("--output={}", s.log.display()),
        // An afterok child of a failed job is cancelled at once, not left pending forever, on
        // clusters that do not set DependencyParameters=kill_invalid_depend.
        "--kill-on-invalid-dep=yes".to_string(),
    ];
    if !s.after.is_empty() {
        args.push(format!("--dependency=afterok:{}", s.after.join(":")));
    }
    args.extend(s.resources.iter().cloned());
    let mut script = format!("#!/bin/sh\nexec {}", s.argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
    match s.input {
        // A quoted here-document: the shell expands nothing in it.
        Some(input) => script += &format!(" <<'{HEREDOC_END}'\n{input}{HEREDOC_END}\n"),
        None => script.push('\n'),
    }
    let mut child = Command::new("sbatch")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `sbatch`: is Slurm installed here (scripts/slurm-local.sh starts a local one)?")?;
    child.stdin.take().expect("stdin is piped").write_all(script.as_bytes()).context("cannot write to sbatch")?;
    let out = child.wait_with_output().context("sbatch did not finish")?;
    if !out.status.success() {
        return Err(super::limit::Refused {
            command: format!("sbatch {}", args.join(" ")),
            name: s.name.to_string(),
            message: one_line(&out.stderr),
        }
        .into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed `{}`, not a job id", stdout.trim());
    }
    Ok(id)
}

/// Ends the here-document of a group's stage commands (JSON lines never start with a letter).
const HEREDOC_END: &str = "CLIP_AST_STAGES";

/// A job as `squeue` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, ...
    pub state: String,
    pub name: String,
    /// Why it is pending, or why it ended.
    pub reason: String,
}

impl JobStatus {
    /// Still queued or running: it may yet produce its artifact.
    pub fn active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
        )
    }
}

/// The jobs Slurm still knows among `ids`, by id. Unknown ids (ended longer ago than
/// MinJobAge, or from before a controller restart) are absent.
pub fn squeue(ids: &[String]) -> Result<HashMap<String, JobStatus>> {
    let mut jobs = HashMap::new();
    // One call per few hundred ids keeps the command line short.
    for chunk in ids.chunks(200) {
        let out = Command::new("squeue")
            .args(["--noheader", "--states=all", "--format=%i|%T|%j|%r", "--jobs"])
            .arg(chunk.join(","))
            .output()
            .context("cannot run `squeue`")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            // Every id of the call unknown: squeue fails instead of printing nothing.
            if stderr.contains("Invalid job id") {
                continue;
            }
            bail!("squeue failed: {}", one_line(&out.stderr));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.splitn(4, '|').collect();
            if let [id, state, name, reason] = f[..] {
                let status = JobStatus { state: state.to_string(), name: name.to_string(), reason: reason.to_string() };
                jobs.insert(id.to_string(), status);
            }
        }
    }
    Ok(jobs)
}

/// `ExitCode=status:signal` of a job Slurm still knows.
pub fn exit_code(id: &str) -> Option<String> {
    let out = Command::new("scontrol").args(["show", "job", "--oneliner", id]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // ` ExitCode=`, not `DerivedExitCode=`.
    text.split_whitespace().find_map(|f| f.strip_prefix("ExitCode=")).map(str::to_string)
}

/// Cancel jobs; ones that ended meanwhile are no error.
pub fn scancel(ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let out = Command::new("scancel").args(ids).output().context("cannot run `scancel`")?;
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("already completing or completed") {
        bail!("scancel {} failed: {}", ids.join(" "), one_line(&out.stderr));
    }
    Ok(())
}

fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().replace('\n', " ")
}

/// `'…'` with inner quotes closed, escaped and reopened: the argument as it is, for `sh`.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_sh() {
        let args = ["plain", "with space", "it's", "$HOME `x` \"q\"", ""];
        let script = format!("printf '%s\\n' {}", args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), args.iter().map(|a| format!("{a}\n")).collect::<String>());
    }

    #[test]
    fn active_states() {
        let s = |state: &str| JobStatus { state: state.into(), name: String::new(), reason: String::new() };
        assert!(s("PENDING").active() && s("RUNNING").active() && s("COMPLETING").active());
        assert!(!s("COMPLETED").active() && !s("FAILED").active() && !s("CANCELLED").active());
        assert!(!s("TIMEOUT").active() && !s("NODE_FAIL").active() && !s("OUT_OF_MEMORY").active());
    }
}
