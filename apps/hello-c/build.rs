//! Builds the `hello-c` plugin: `hello.c` compiled and linked by the C compiler into a
//! standalone `libhello_c.so`, placed in `target/[TRIPLE/]PROFILE/` next to the Rust plugins.
//!
//! Why the C compiler links the library itself instead of Cargo linking a Rust `cdylib` around
//! a static `libhello_c.a` (the usual `cc` crate pattern):
//!
//! - rustc links every `cdylib` with a version script that exports the Rust crate's own
//!   `#[no_mangle]` items and hides everything else (`local: *;`), so a C static library's
//!   `gatehouse_app` is not exported, even with `+whole-archive`; `-Wl,--export-dynamic` and
//!   `-Wl,--export-dynamic-symbol` do not override the script either. Adding a second version
//!   script works with rust-lld (the default linker on x86_64 Linux) but GNU ld rejects it
//!   ("anonymous version tag cannot be combined with other version tags"), so the build would
//!   depend on which linker rustc happens to use. The only portable fix is a Rust forwarding
//!   function, and this app must be C alone.
//! - A Rust `cdylib` would also carry the Rust standard library (megabytes, its own runtime)
//!   into what is meant to show that a plugin needs nothing but `gatehouse.h` and a C compiler.
//!
//! So the `cc` crate only chooses the compiler and flags (`get_compiler()` honours `CC`,
//! `CFLAGS`, the target and the profile's optimisation and debug settings), and this script
//! runs `cc -shared` with them. The result is a plain C shared library exporting exactly
//! `gatehouse_app`.
//!
//! The cost: Cargo only copies rustc's own outputs into `target/PROFILE/`, so this script
//! copies the library there itself, the directory being three levels above `OUT_DIR`
//! (`PROFILE/build/hello-c-HASH/out`). Were Cargo's `build.build-dir` set apart from the target
//! dir, the copy would land in the build dir's profile folder; the canonical artifact is always
//! `OUT_DIR/libhello_c.so`. The copy is written beside the destination and renamed over it, so
//! a daemon that has the old library mapped keeps running.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;

const LIBRARY: &str = "libhello_c.so";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by Cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by Cargo"));
    let source = manifest_dir.join("hello.c");
    let include = manifest_dir.join("../../crates/gatehouse-abi/include");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed={}", include.join("gatehouse.h").display());

    let compiler = cc::Build::new()
        .include(&include)
        .flags(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .get_compiler();
    let library = out_dir.join(LIBRARY);
    let mut link = compiler.to_command();
    link.arg("-shared").arg("-o").arg(&library).arg(&source);
    match link.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("{link:?} failed ({status}); see its messages above")),
        Err(e) => fail(&format!("cannot run the C compiler {link:?}: {e}")),
    }

    match profile_dir(&out_dir) {
        Some(dir) => {
            if let Err(e) = place(&library, &dir.join(LIBRARY)) {
                fail(&format!("cannot copy {} into {}: {e}", library.display(), dir.display()));
            }
        }
        None => println!(
            "cargo:warning=unrecognised Cargo build layout (OUT_DIR {}): {LIBRARY} was built \
             there but not copied next to the other plugins",
            out_dir.display()
        ),
    }
}

/// `target/[TRIPLE/]PROFILE/` from `OUT_DIR`, which is `PROFILE/build/hello-c-HASH/out`.
fn profile_dir(out_dir: &Path) -> Option<&Path> {
    let build = out_dir.parent()?.parent()?;
    if build.file_name()? != "build" {
        return None;
    }
    build.parent()
}

/// Copies `from` to `to` through a temporary file and a rename, so `to` is replaced whole.
fn place(from: &Path, to: &Path) -> std::io::Result<()> {
    let partial = to.with_extension(format!("so.partial-{}", process::id()));
    fs::copy(from, &partial)?;
    fs::rename(&partial, to).inspect_err(|_| {
        let _ = fs::remove_file(&partial);
    })
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1);
}
