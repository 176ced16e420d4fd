//! `--device cpu|cuda|cuda:N|auto` parsing.

use anyhow::{Result, bail};
use tch::Device;

/// Parse a device flag. `auto` picks the first CUDA device when libtorch sees one.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" => cuda(0),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n),
            _ => bail!("--device `{spec}` is not one of cpu, cuda, cuda:N, auto"),
        },
    }
}

fn cuda(n: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        bail!(
            "--device cuda:{n} requested but libtorch sees {count} CUDA device(s); use --device cpu or auto"
        );
    }
    Ok(Device::Cuda(n))
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
