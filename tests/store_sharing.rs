//! A store a group shares: what the tool publishes follows the umask (0644 files and 0755
//! folders under 022, 0664/0775 under a group's 002), safetensors included (the safetensors
//! crate writes through a 0600 temp file), and another user can read and audit the store.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::scratch::{Scratch, colour_images};

/// `cmd` under `mask`, whatever the test runner's own umask is.
fn with_umask(cmd: &mut Command, mask: libc::mode_t) -> &mut Command {
    // SAFETY: umask(2) is async-signal-safe and touches nothing but the child's mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        })
    }
}

/// A weights artifact and a split: the two kinds that write safetensors.
fn fill(s: &Scratch, store: &str, mask: libc::mode_t) {
    let split =
        ["split", "--dataset", "imagefolder", "--root", "data", "--shots", "2", "--seed", "1", "--image-size", "32"];
    for args in [&["init-weights", "--preset", "mini"][..], &split[..]] {
        let mut cmd = s.cmd(args);
        cmd.args(["--quiet", "--store", store]);
        let out = with_umask(&mut cmd, mask).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Every file's and folder's mode under `dir`, as (mode, path) for the messages.
fn modes(dir: &Path) -> Vec<(u32, bool, String)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            (mode, e.file_type().is_dir(), e.path().display().to_string())
        })
        .collect()
}

#[test]
fn published_files_follow_the_umask() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    for (mask, file_mode, dir_mode) in [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)] {
        let store = s.p(&format!("store-{mask:03o}"));
        fill(&s, &store, mask);
        let published: Vec<_> = modes(Path::new(&store))
            .into_iter()
            .filter(|(_, _, p)| p.contains("/weights/") || p.contains("/split/"))
            .collect();
        assert!(published.iter().any(|(_, _, p)| p.ends_with("model.safetensors")), "{published:?}");
        assert!(published.iter().any(|(_, _, p)| p.ends_with("test_images.safetensors")), "{published:?}");
        for (mode, is_dir, path) in published {
            let want = if is_dir { dir_mode } else { file_mode };
            assert_eq!(mode, want, "{path} under umask {mask:03o}: {mode:o}, want {want:o}");
        }
    }
}

/// Why another user cannot be tried here, or `None` when it can.
fn cannot_switch_user() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root, so cannot run a command as another user".into());
    }
    let probe = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", env!("CARGO_BIN_EXE_clip-ast"), "--version"])
        .output();
    match probe {
        Err(e) => Some(format!("setpriv cannot be run ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "user nobody cannot run the binary here (the path or libtorch is not readable to it): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[test]
fn another_user_reads_and_audits_the_store() {
    if let Some(why) = cannot_switch_user() {
        // Under CI the machine is root with setpriv; elsewhere say why nothing was checked.
        assert!(std::env::var_os("CI").is_none(), "CI must check a store as another user: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    let s = Scratch::new();
    // The temp dir itself is 0700: open it (not what is under it) to others.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    colour_images(&s.path("data"));
    let store = s.p("store");
    fill(&s, &store, 0o022);
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", env!("CARGO_BIN_EXE_clip-ast")])
        .args(["audit", "--store", &store])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "audit as nobody:\n{stdout}{stderr}");
    assert!(!stdout.contains("unreadable") && !stdout.contains("BAD"), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "the weights and the split: {stdout}");
}
