//! `gatehouse new NAME [DIR]`: a plugin crate of one's own, outside any checkout, that
//! builds (offline) against the SDK sources beside this daemon: `Cargo.toml`, `src/lib.rs`
//! (GET, a form POST, JSON, 404 and 405, `env` settings read at `init`), a `README.md` with
//! the alias to serve it and the development loop, a `.gitignore`, and with an installed SDK
//! (`packaging/sdk-sources`: its dependencies vendored) a `.cargo/config.toml` that takes
//! every crate from it, so no registry is needed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why the crate was not written.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name cannot be a crate (and library) name.
    #[error(
        "`{0}` cannot be a plugin name (hint: use lower-case letters, digits, `-` and `_`, \
         starting with a letter, as `myapp` or `price-list`)"
    )]
    Name(String),
    /// The folder is there and not empty.
    #[error("{0} already exists and is not empty (hint: name a new folder as the second argument)")]
    Exists(PathBuf),
    /// No SDK sources were found.
    #[error(
        "the SDK sources (the gatehouse-app and gatehouse-abi crates) are not in {looked} \
         (hint: pass `--sdk DIR`, the folder holding `gatehouse-app/` and `gatehouse-abi/`: \
         `crates/` of a Gatehouse checkout)"
    )]
    NoSdk {
        /// Where it looked.
        looked: String,
    },
    /// Writing failed.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Where the SDK sources are installed by the Debian package.
pub const INSTALLED_SDK: &str = "/usr/share/gatehouse/sdk";

/// The folder holding `gatehouse-app/` and `gatehouse-abi/`: `explicit` if given, else the
/// installed SDK ([`INSTALLED_SDK`]), else the checkout this binary was built from.
pub fn find_sdk(explicit: Option<&Path>) -> Result<PathBuf, NewError> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => std::iter::once(PathBuf::from(INSTALLED_SDK)).chain(built_from).collect(),
    };
    for dir in &candidates {
        if dir.join("gatehouse-app/Cargo.toml").is_file()
            && dir.join("gatehouse-abi/Cargo.toml").is_file()
        {
            return std::fs::canonicalize(dir)
                .map_err(|error| NewError::Write { path: dir.clone(), error });
        }
    }
    let looked = candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>();
    Err(NewError::NoSdk { looked: looked.join(" or ") })
}

/// Whether `name` can be the package and library name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

/// The files of plugin `name` against the SDK in `sdk`: (path in the crate, contents).
pub fn files(name: &str, sdk: &Path) -> Result<Vec<(&'static str, String)>, NewError> {
    if !valid_name(name) {
        return Err(NewError::Name(name.to_owned()));
    }
    let lib = name.replace('-', "_");
    let ty: String = name
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let app_path = sdk.join("gatehouse-app");
    let cargo = format!(
        "[package]\n\
         name = \"{name}\"\n\
         version = \"0.1.0\"\n\
         edition = \"2024\"\n\
         \n\
         # A Gatehouse plugin is a C-compatible shared library: target/release/lib{lib}.so\n\
         [lib]\n\
         crate-type = [\"cdylib\"]\n\
         \n\
         [dependencies]\n\
         # The SDK, from the sources installed beside the daemon.\n\
         gatehouse-app = {{ path = {:?} }}\n\
         \n\
         # Its own workspace, even when created inside another project's folder.\n\
         [workspace]\n",
        app_path.display().to_string()
    );
    let mut lib_rs = String::new();
    let _ = write!(
        lib_rs,
        r#"//! {name}: a Gatehouse app plugin. `GET /` greets, `GET /json` answers JSON, `POST /`
//! takes a form field `name`; other methods get 405, other paths 404.

use std::collections::BTreeMap;

use gatehouse_app::{{App, Init, Request, Response}};

/// Made once by `init`, then shared by every request: `handle` runs on several threads at
/// once, so the state is read-only here (or behind a `Mutex`).
struct {ty} {{
    greeting: String,
}}

impl App for {ty} {{
    // `handle` below never waits (no network, no sleep, no lock held for long): the promise
    // lets the daemon run it on its HTTP workers, with no hand-off to the alias's threads.
    // Make it false once `handle` talks to a database server or another service.
    const NEVER_BLOCKS: bool = true;

    fn init(init: &Init<'_>) -> Result<Self, String> {{
        // The alias's `env:` settings in hosting.yaml. An `Err` refuses the load, and its
        // text goes to the daemon's error log.
        let greeting = init.env("GREETING").unwrap_or("Hello").to_owned();
        Ok({ty} {{ greeting }})
    }}

    fn handle(&self, req: &Request<'_>) -> Response {{
        // PATH_INFO: the part of the URL after the alias (`/json` for `/{name}/json`).
        match (req.method(), req.path_info()) {{
            ("GET" | "HEAD", "" | "/") => {{
                let who = req.param("name").unwrap_or("world");
                Response::text(format!("{{}}, {{who}}!\n", self.greeting))
            }}
            ("GET" | "HEAD", "/json") => {{
                let body = BTreeMap::from([("app", "{name}"), ("greeting", self.greeting.as_str())]);
                Response::json(&body)
            }}
            ("POST", "" | "/") => match req.param("name") {{
                Some(who) => {{
                    // An INFO line in the daemon's error log, tagged with the app and request.
                    req.log_info(format!("greeted {{who}}"));
                    Response::text(format!("{{}}, {{who}}! (posted)\n", self.greeting))
                }}
                None => Response::text("missing the form field `name`\n").with_status(400),
            }},
            (_, "" | "/" | "/json") => {{
                Response::text("method not allowed\n").with_status(405).header("Allow", "GET, HEAD, POST")
            }}
            _ => Response::text("not found\n").with_status(404),
        }}
    }}
}}

gatehouse_app::export!(app: {ty});
"#
    );
    let readme = format!(
        "# {name}\n\n\
         A Gatehouse app plugin. Build it:\n\n\
         ```sh\n\
         cargo build --release      # target/release/lib{lib}.so\n\
         ```\n\n\
         Serve it with an alias in `hosting.yaml`:\n\n\
         ```yaml\n\
         aliases:\n  \
           - url: /{name}\n    \
             path: /ABSOLUTE/PATH/TO/{name}/target/release/lib{lib}.so\n    \
             env: {{GREETING: Hello}}\n\
         ```\n\n\
         ```sh\n\
         gatehouse check --config hosting.yaml   # the plugin file is checked too\n\
         curl http://127.0.0.1:8080/{name}/?name=Ada\n\
         curl http://127.0.0.1:8080/{name}/json\n\
         curl -d name=Ada http://127.0.0.1:8080/{name}/\n\
         ```\n\n\
         The development loop: leave the daemon running and run `cargo build --release` \
         again. The daemon sees the new `lib{lib}.so` and swaps it in (about 0.1 s after the \
         build ends; requests in flight finish on the old build), and the error log says \
         `reloaded ...: now app {name} 0.1.0 (sha256 ...)`. With `develop_mode: true` on \
         the alias, `req.debug_log(...)` lines go to `LOGS_DIR/{name}/debug.log`.\n\n\
         The SDK's calls are described in Gatehouse's `docs/sdk.md`; `cargo doc --open` \
         shows them for the version this crate builds against ({}).\n",
        app_path.display()
    );
    let mut out = vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", lib_rs),
        ("README.md", readme),
        (".gitignore", "/target\n".to_owned()),
    ];
    // An installed SDK carries the crates it depends on: builds need no registry at all.
    let vendor = sdk.join("vendor");
    if vendor.is_dir() {
        out.push((
            ".cargo/config.toml",
            format!(
                "# The SDK's dependencies come from the sources installed with it, not from a\n\
                 # registry: `cargo build --offline` works on a machine with no network.\n\
                 [source.crates-io]\n\
                 replace-with = \"gatehouse-sdk\"\n\
                 \n\
                 [source.gatehouse-sdk]\n\
                 directory = {:?}\n",
                vendor.display().to_string()
            ),
        ));
    }
    Ok(out)
}

/// Where the WSGI bridge is looked for when `gatehouse serve-app` is given a `.py` file: beside
/// this binary (a checkout's `target/release/`), then where the `gatehouse-wsgi` package puts it.
pub fn find_wsgi_bridge() -> Option<PathBuf> {
    let beside =
        std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("libwsgi.so")));
    beside.into_iter().chain([PathBuf::from("/usr/lib/gatehouse/libwsgi.so")]).find(|p| p.is_file())
}

/// The configuration `gatehouse serve-app FILE` serves, like `mod_wsgi-express
/// start-server FILE`: `file` (a plugin, or a `.py` script through the WSGI bridge `wsgi`) at
/// `/` on `127.0.0.1:PORT`, the access log on stdout, logs, cache and pid file under `state`
/// (a folder of its own), reloading on: an edited script or a rebuilt plugin is served at once.
pub fn serve_app_config(
    file: &Path,
    port: u16,
    state: &Path,
    wsgi: Option<&Path>,
) -> Result<String, String> {
    let file = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if !file.is_file() {
        return Err(format!(
            "{} is not a file (hint: give a plugin, `target/release/libNAME.so`, or a WSGI              script, `app.py`)",
            file.display()
        ));
    }
    let quote = |p: &Path| format!("{:?}", p.display().to_string());
    let mut yaml = format!(
        "listen: [\"127.0.0.1:{port}\"]\n\
         cache_dir: {}\n\
         pid_file: {}\n\
         logs: {{dir: {}, access_log: stdout}}\n",
        quote(&state.join("cache")),
        quote(&state.join("gatehouse.pid")),
        quote(&state.join("logs")),
    );
    let script = file.extension().is_some_and(|e| e == "py");
    if script {
        let wsgi = wsgi.ok_or_else(|| {
            format!(
                "{} is a Python script, and the WSGI bridge (libwsgi.so) is neither beside this                  binary nor in /usr/lib/gatehouse (hint: `cargo build --release -p wsgi` in a                  checkout, or install the gatehouse-wsgi package)",
                file.display()
            )
        })?;
        let _ = write!(yaml, "handlers:\n  - suffix: .py\n    plugin: {}\n", quote(wsgi));
        if let Some(dir) = file.parent() {
            // As mod_wsgi-express: the script's folder is on sys.path, for its own modules.
            let _ = writeln!(yaml, "    python_path: [{}]", quote(dir));
        }
    }
    let _ = write!(yaml, "aliases:\n  - url: /\n    path: {}\n", quote(&file));
    Ok(yaml)
}

/// Writes plugin `name` into `dir` (created; it must not hold anything yet).
pub fn create(name: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, NewError> {
    let files = files(name, sdk)?;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(NewError::Exists(dir.to_path_buf()));
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)
        };
        write().map_err(|error| NewError::Write { path: path.clone(), error })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_names() {
        for (name, ok) in [
            ("myapp", true),
            ("price-list", true),
            ("app_2", true),
            ("", false),
            ("2app", false),
            ("MyApp", false),
            ("my app", false),
            ("../x", false),
            ("a\"b", false),
        ] {
            assert_eq!(files(name, Path::new("/sdk")).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn the_crate_is_a_cdylib_on_the_sdk_with_its_own_workspace() {
        let files = files("price-list", Path::new("/opt/sdk")).unwrap();
        let get = |rel: &str| files.iter().find(|(r, _)| *r == rel).unwrap().1.clone();
        let cargo = get("Cargo.toml");
        for want in [
            "name = \"price-list\"",
            "crate-type = [\"cdylib\"]",
            "gatehouse-app = { path = \"/opt/sdk/gatehouse-app\" }",
            "\n[workspace]\n",
        ] {
            assert!(cargo.contains(want), "{want}:\n{cargo}");
        }
        let lib = get("src/lib.rs");
        assert!(lib.contains("struct PriceList {"), "{lib}");
        assert!(lib.contains("gatehouse_app::export!(app: PriceList);"), "{lib}");
        assert!(get("README.md").contains("target/release/libprice_list.so"));
    }
}
