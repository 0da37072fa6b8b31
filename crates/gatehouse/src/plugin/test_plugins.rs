//! Test support: where in-process tests find the workspace's built plugins.

use std::path::PathBuf;

/// The folder holding `libhello.so` (the workspace's `apps/hello`): `GATEHOUSE_TEST_PLUGINS`,
/// else the profile folder of the running test binary (`target/debug`, where
/// `cargo build -p hello` puts it). Without it, says how to build it and answers `None`:
/// the caller skips.
pub(crate) fn hello_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("GATEHOUSE_TEST_PLUGINS") {
        Some(dir) => PathBuf::from(dir),
        // target/debug/deps/gatehouse-HASH → target/debug
        None => std::env::current_exe().ok()?.parent()?.parent()?.to_path_buf(),
    };
    if dir.join("libhello.so").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: no libhello.so in {} (run `cargo build -p hello` with the same target \
             folder, or set GATEHOUSE_TEST_PLUGINS to the folder holding it)",
            dir.display()
        );
        None
    }
}
