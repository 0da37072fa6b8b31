//! Test support: where in-process tests find the workspace's built plugins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The folder holding `libhello.so` (the workspace's `apps/hello`): `GATEHOUSE_TEST_PLUGINS`,
/// else the profile folder of the running test binary (`target/debug`), where a nested
/// `cargo build -p hello` puts it when it is not there yet (`cargo test` builds no cdylib
/// for a test of another package; it releases its build lock before running tests). When
/// neither works, says why and answers `None`: the caller skips.
pub(crate) fn hello_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(find_or_build) {
        Ok(dir) => Some(dir.clone()),
        Err(why) => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

fn find_or_build() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("GATEHOUSE_TEST_PLUGINS") {
        let dir = PathBuf::from(dir);
        return if dir.join("libhello.so").is_file() {
            Ok(dir)
        } else {
            Err(format!("GATEHOUSE_TEST_PLUGINS={} holds no libhello.so", dir.display()))
        };
    }
    // target/debug/deps/gatehouse-HASH → target/debug
    let exe = std::env::current_exe().map_err(|e| format!("no test binary path: {e}"))?;
    let dir = exe.parent().and_then(Path::parent).ok_or("no profile folder")?.to_path_buf();
    if dir.join("libhello.so").is_file() {
        return Ok(dir);
    }
    let target = dir.parent().ok_or("no target folder")?;
    let profile = dir.file_name().and_then(|n| n.to_str()).ok_or("no profile name")?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // This package's variables would make build scripts that watch them rerun.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_PRIMARY_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            cmd.env_remove(name.as_ref());
        }
    }
    let out = cmd
        .args(["build", "--locked", "-p", "hello", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target)
        .args(["--profile", if profile == "debug" { "dev" } else { profile }])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo build -p hello: {e}"))?;
    if out.status.success() && dir.join("libhello.so").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "`cargo build -p hello` did not make {}: {}",
            dir.join("libhello.so").display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
