//! `--device cpu|cuda|cuda:N|auto` parsing.

use anyhow::{Result, bail};
use tch::Device;

/// Parse a device flag. `auto` picks the first CUDA device when libtorch sees one.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            load_cuda_backend();
            Ok(Device::cuda_if_available())
        }
        "cuda" => cuda(0),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n),
            _ => bail!("--device `{spec}` is not one of cpu, cuda, cuda:N, auto"),
        },
    }
}

fn cuda(n: usize) -> Result<Device> {
    load_cuda_backend();
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        bail!("--device cuda:{n} requested but libtorch sees {count} CUDA device(s); use --device cpu or auto");
    }
    Ok(Device::Cuda(n))
}

unsafe extern "C" {
    fn dlopen(filename: *const std::ffi::c_char, flags: std::ffi::c_int) -> *mut std::ffi::c_void;
}

/// Load libtorch's CUDA backend on first use. Its static initialisers register the CUDA hooks
/// with libtorch, as importing torch does in Python. Tried from the folder the binary was
/// linked against, then by name (LD_LIBRARY_PATH, e.g. another machine's torch install).
/// Failure is silent: CUDA then reports no devices and the caller says so.
fn load_cuda_backend() {
    static LOADED: std::sync::Once = std::sync::Once::new();
    LOADED.call_once(|| {
        const RTLD_NOW: std::ffi::c_int = 2;
        const RTLD_GLOBAL: std::ffi::c_int = 0x100;
        let linked = option_env!("CLIP_AST_LIBTORCH_LIB").map(|dir| format!("{dir}/libtorch_cuda.so"));
        for candidate in linked.into_iter().chain(["libtorch_cuda.so".to_string()]) {
            let Ok(name) = std::ffi::CString::new(candidate) else { continue };
            // SAFETY: dlopen takes a NUL-terminated path; the handle is kept for the process.
            if !unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_GLOBAL) }.is_null() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_nonsense() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        let err = parse_device("gpu0").unwrap_err().to_string();
        assert!(err.contains("gpu0"), "{err}");
        assert!(parse_device("cuda:x").is_err());
    }
}
