//! Records which Python the bridge is built against: the interpreter's path becomes the
//! embedded interpreter's program name (so `sys.prefix`, `sys.executable` and the standard
//! library are that installation's), and its version is checked against a `python_home`.

fn main() {
    let config = pyo3_build_config::get();
    let executable = config.executable().unwrap_or("python3");
    let version = config.version();
    println!("cargo:rustc-env=WSGI_PYTHON_EXECUTABLE={executable}");
    println!("cargo:rustc-env=WSGI_PYTHON_VERSION={}.{}", version.major, version.minor);
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
