//! hosting.yaml parsing and validation: any bytes give a config or located diagnostics,
//! never a panic; every diagnostic names a line and column inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("/nonexistent-gatehouse-fuzz/hosting.yaml");
    match gatehouse_config::parse_bytes(data, path) {
        Ok(loaded) => {
            for a in &loaded.config.aliases {
                assert!(a.url.starts_with('/'), "alias url {:?}", a.url);
                assert!(a.path.is_absolute());
            }
        }
        Err(e) => {
            let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
            for d in &e.diagnostics {
                if let Some(pos) = d.pos {
                    assert!(pos.line >= 1 && pos.line <= lines + 1, "{d}");
                    assert!(pos.column >= 1, "{d}");
                }
            }
        }
    }
});
