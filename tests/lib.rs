//! Nothing: this package only holds the e2e test binary (see e2e/main.rs).
