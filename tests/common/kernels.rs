//! Another CPU kind, emulated on this one. Floating-point results differ in their last bits
//! between CPU kinds (AVX2 against AVX-512 kernels, MKL's code paths, oneDNN's convolutions, how
//! a product is split between threads). libtorch lets a process be held to other kernels through
//! environment variables read when it starts, so a test that compares numbers recorded earlier
//! runs its processes under each of these and holds on any CPU, not only the recording one.
//! docs/store.md ("Golden values on every CPU") says what each variable changes.

use std::process::Command;

/// One way of running libtorch: environment variables for a fresh process, and a thread count.
#[derive(Clone, Debug)]
pub struct KernelVariant {
    pub name: String,
    pub env: Vec<(&'static str, &'static str)>,
    pub threads: usize,
}

impl KernelVariant {
    /// `clip-ast` (or any command) held to this variant's kernels. Clears the variables first,
    /// so a developer's own setting cannot leak into another variant.
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        for name in VARIABLES {
            command.env_remove(name);
        }
        command.envs(self.env.iter().copied())
    }
}

const VARIABLES: [&str; 3] = ["ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"];

/// The vector kernels libtorch can use on this machine, lowest first: `default` (scalar) always,
/// then `avx2` and `avx512` where the CPU has them.
pub fn capabilities() -> Vec<&'static str> {
    let mut out = vec!["default"];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            out.push("avx2");
        }
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
        {
            out.push("avx512");
        }
    }
    out
}

/// Every variant a recorded value must hold under: the machine's own kernels at 1 and 2 threads,
/// each capability it has, oneDNN held to SSE4.1, MKL's reproducible mode, and all of those
/// lowered at once on 2 threads. The first is the recording variant (native, 1 thread).
/// `CLIP_AST_KERNEL_VARIANTS=native` keeps only the first (a quick local loop).
pub fn kernel_variants() -> Vec<KernelVariant> {
    let v = |name: &str, env: Vec<(&'static str, &'static str)>, threads| KernelVariant {
        name: name.to_string(),
        env,
        threads,
    };
    let mut out = vec![v("native, 1 thread", vec![], 1), v("native, 2 threads", vec![], 2)];
    for capability in capabilities() {
        out.push(v(&format!("ATEN_CPU_CAPABILITY={capability}"), vec![("ATEN_CPU_CAPABILITY", capability)], 1));
    }
    out.push(v("ONEDNN_MAX_CPU_ISA=SSE41", vec![("ONEDNN_MAX_CPU_ISA", "SSE41")], 1));
    out.push(v("MKL_CBWR=COMPATIBLE", vec![("MKL_CBWR", "COMPATIBLE")], 1));
    out.push(v(
        "all lowered, 2 threads",
        vec![("ATEN_CPU_CAPABILITY", "default"), ("ONEDNN_MAX_CPU_ISA", "SSE41"), ("MKL_CBWR", "COMPATIBLE")],
        2,
    ));
    if std::env::var("CLIP_AST_KERNEL_VARIANTS").is_ok_and(|v| v == "native") {
        out.truncate(1);
    }
    out
}
