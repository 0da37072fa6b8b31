//! URL normalisation and alias matching: any request path normalises to a clean absolute
//! path or a 400/404, and a routed path splits exactly into SCRIPT_NAME + PATH_INFO.
#![no_main]

use std::sync::OnceLock;

use gatehouse::request::route::{Route, Table, normalize};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let dir = std::env::temp_dir().join("gatehouse-fuzz-routing");
        let _ = std::fs::create_dir_all(dir.join("apps"));
        let _ = std::fs::write(dir.join("app.so"), b"x");
        let yaml = "aliases:\n  - url: /sample\n    path: app.so\n  - url: /a/b\n    path: app.so\n  - url: /wsgi/\n    path: apps/\n  - url: /\n    path: app.so\n";
        match gatehouse_config::parse(yaml, &dir.join("hosting.yaml")) {
            Ok(l) => Table::from_config(&l.config),
            Err(e) => panic!("{e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = normalize(data) else { return };
    assert!(path.starts_with(b"/"), "{path:?}");
    for bad in [&b"//"[..], b"/./", b"/../", b"\0"] {
        assert!(!path.windows(bad.len()).any(|w| w == bad), "{:?} in {path:?}", bad);
    }
    assert!(!path.ends_with(b"/..") && !path.ends_with(b"/."), "{path:?}");
    match table().route(&path) {
        Route::App { script_name, path_info, .. } => {
            assert_eq!([script_name, path_info].concat(), path);
            assert!(path_info.is_empty() || path_info.starts_with(b"/"));
        }
        Route::Group { script_name, path_info, name, .. } => {
            assert_eq!([script_name, path_info].concat(), path);
            assert!(!name.is_empty() && !name.contains(&b'/'));
        }
        Route::Match { script_name, path_info, .. } => {
            assert_eq!([script_name, path_info].concat(), path);
        }
        Route::GroupIndex { .. } | Route::NoMatch => {}
    }
});
