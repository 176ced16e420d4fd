//! `manifest.json`: what an artifact is, how it was made and what its files hash to.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cpu::CpuKind;
use super::key::ArtifactKey;

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: String,
    pub key: ArtifactKey,
    pub schema_version: u32,
    pub params: Value,
    /// Input name → key of the artifact it was made from.
    pub inputs: BTreeMap<String, ArtifactKey>,
    /// Output file, relative to the artifact directory with `/` separators → blake3 hex.
    pub outputs: BTreeMap<String, String>,
    pub tool_version: String,
    pub libtorch_version: String,
    pub device: String,
    pub threads: usize,
    /// The CPU the artifact was computed on (absent in manifests written before it was recorded).
    #[serde(default)]
    pub cpu: CpuKind,
    /// RFC 3339, UTC, whole seconds.
    pub started: String,
    pub seconds: f64,
    /// Headline metrics, a JSON object.
    pub metrics: Value,
    pub producer: Producer,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest; run `clip-ast audit` on it", path.display()))
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest always serialises");
        text.push('\n');
        text
    }
}

/// The process that computed an artifact, so concurrent runs can be shown to have computed it
/// once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    pub host: String,
    pub pid: u32,
}

impl Producer {
    pub fn this_process() -> Producer {
        Producer { host: hostname(), pid: std::process::id() }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// How a run was executed. Recorded in the manifest, never in the key: these cannot change the
/// output beyond floating-point tolerance, and a rerun reads them back to reproduce exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    pub device: String,
    pub threads: usize,
    pub libtorch_version: String,
}

impl Default for RunInfo {
    fn default() -> Self {
        RunInfo { device: "cpu".to_string(), threads: 1, libtorch_version: "unknown".to_string() }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`. Times before 1970 cannot come from a clock we record, so they clamp.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 → proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> String {
        rfc3339_utc(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(at(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(at(1_234_567_890), "2009-02-13T23:31:30Z");
    }

    #[test]
    fn producer_names_this_process() {
        let p = Producer::this_process();
        assert_eq!(p.pid, std::process::id());
        assert!(!p.host.is_empty());
    }
}
