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
            // YAML breaks lines at LF, CRLF and a lone CR (old Mac files): count as it does.
            let lone_cr = data.windows(2).filter(|w| w[0] == b'\r' && w[1] != b'\n').count()
                + usize::from(data.last() == Some(&b'\r'));
            let lines = data.iter().filter(|&&b| b == b'\n').count() + lone_cr + 1;
            for d in &e.diagnostics {
                if let Some(pos) = d.pos {
                    assert!(pos.line >= 1 && pos.line <= lines + 1, "{d}");
                    assert!(pos.column >= 1, "{d}");
                }
            }
        }
    }
});
