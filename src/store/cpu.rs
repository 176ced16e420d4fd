//! The CPU kind an artifact was computed on: its model name and the vector extensions that
//! change which kernels libtorch picks. Floating-point results are bit-identical only on the
//! same kind at the same thread count (docs/store.md, "Reproducibility"); the manifest records
//! both so `audit --rerun` knows which promise applies.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Extensions whose presence changes libtorch's (oneDNN's, Sleef's) kernel choice, and with it
/// the last bits of reductions. Other flags are left out so two machines of the same kind
/// compare equal even when their kernels expose different unrelated features.
const VECTOR_EXTENSIONS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    // aarch64
    "asimd",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuKind {
    /// `model name` from /proc/cpuinfo (empty where unknown).
    pub model: String,
    /// The vector extensions of [`VECTOR_EXTENSIONS`] this CPU has, in that list's order.
    pub vector_extensions: Vec<String>,
}

impl CpuKind {
    /// This machine's CPU, read once per process.
    pub fn this_machine() -> &'static CpuKind {
        static KIND: OnceLock<CpuKind> = OnceLock::new();
        KIND.get_or_init(|| CpuKind::from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()))
    }

    /// Parse the first processor's entry of a `/proc/cpuinfo` text (x86 `flags`, arm `Features`).
    pub fn from_cpuinfo(text: &str) -> CpuKind {
        let field = |name: &str| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let model = field("model name").or_else(|| field("Model")).unwrap_or_default();
        let flags = field("flags").or_else(|| field("Features")).unwrap_or_default();
        let have: Vec<&str> = flags.split_whitespace().collect();
        let vector_extensions =
            VECTOR_EXTENSIONS.iter().filter(|ext| have.contains(ext)).map(|ext| ext.to_string()).collect();
        CpuKind { model, vector_extensions }
    }

    /// One line for reports: `AMD EPYC [avx2 fma ...]`.
    pub fn describe(&self) -> String {
        let model = if self.model.is_empty() { "unknown CPU" } else { &self.model };
        format!("{model} [{}]", self.vector_extensions.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 sha_ni\n\nprocessor\t: 1\nmodel name\t: other\n";

    #[test]
    fn reads_the_first_processor_and_keeps_vector_flags_only() {
        let kind = CpuKind::from_cpuinfo(ZEN4);
        assert_eq!(kind.model, "AMD EPYC 9R14");
        assert_eq!(kind.vector_extensions, ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"]);
        assert_eq!(kind.describe(), "AMD EPYC 9R14 [sse4_2 avx avx2 fma avx512f avx512_bf16]");
    }

    #[test]
    fn unknown_machines_give_an_empty_kind() {
        assert_eq!(CpuKind::from_cpuinfo(""), CpuKind::default());
        let arm = CpuKind::from_cpuinfo("processor\t: 0\nFeatures\t: fp asimd sve crc32\n");
        assert_eq!(arm.vector_extensions, ["asimd", "sve"]);
    }
}
