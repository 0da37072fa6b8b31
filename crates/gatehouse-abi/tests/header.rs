//! Checks that the checked-in `include/gatehouse.h` matches the Rust types.
//! Set `GATEHOUSE_BLESS=1` to rewrite it.

use std::path::Path;

#[test]
fn header_is_current() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))?;
    let mut generated = Vec::new();
    cbindgen::Builder::new().with_crate(dir).with_config(config).generate()?.write(&mut generated);
    let path = dir.join("include/gatehouse.h");
    if std::env::var_os("GATEHOUSE_BLESS").is_some() {
        std::fs::write(&path, &generated)?;
        return Ok(());
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == generated,
        "{} is stale: the ABI types changed. Regenerate it with \
         `GATEHOUSE_BLESS=1 cargo test -p gatehouse-abi --test header` and commit it.",
        path.display()
    );
    Ok(())
}
