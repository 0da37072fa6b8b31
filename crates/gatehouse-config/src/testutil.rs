//! Helpers for the table-driven tests of every module.

use super::*;

/// A temporary folder with a `hosting.yaml` path in it (not written), an app file
/// `lib/app.so` and an empty folder `apps/`.
pub(crate) struct Fixture {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) file: PathBuf,
}

pub(crate) fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("lib")).expect("mkdir lib");
    std::fs::write(tmp.path().join("lib/app.so"), b"not really").expect("write app");
    std::fs::create_dir_all(tmp.path().join("apps")).expect("mkdir apps");
    let file = tmp.path().join("hosting.yaml");
    Fixture { tmp, file }
}

impl Fixture {
    /// Parses `text` with the test database of users and groups
    /// ([`crate::accounts::table`]), not the machine's.
    pub(crate) fn parse(&self, text: &str) -> Result<Loaded, ConfigError> {
        parse_with(text, &self.file, &crate::accounts::table::Table)
    }

    pub(crate) fn ok(&self, text: &str) -> Loaded {
        self.parse(text).unwrap_or_else(|e| panic!("unexpected errors for\n{text}\n{e}"))
    }

    pub(crate) fn errors(&self, text: &str) -> Vec<Diagnostic> {
        match self.parse(text) {
            Ok(l) => panic!("expected errors for\n{text}\ngot {:#?}", l.config),
            Err(e) => e.errors().cloned().collect(),
        }
    }
}

/// Expected diagnostics of a table row: (line, column, part of the message).
pub(crate) type Expected = &'static [(usize, usize, &'static str)];

/// Checks an errors table: each text has exactly the expected errors (all of them: several
/// per text check that the pass goes on after the first).
#[track_caller]
pub(crate) fn check_errors_table<T: AsRef<str>>(cases: &[(T, Expected)]) {
    let fx = fixture();
    for (text, expected) in cases {
        let text = text.as_ref();
        let errors = fx.errors(text);
        for &(line, column, needle) in *expected {
            assert_has(&errors, line, column, needle);
        }
        assert_eq!(errors.len(), expected.len(), "for {text:?}: {errors:#?}");
    }
}

/// Asserts that `diags` has one entry at (line, column) whose message contains
/// `needle`.
pub(crate) fn assert_has(diags: &[Diagnostic], line: usize, column: usize, needle: &str) {
    let pos = Some(Pos::new(line, column));
    assert!(
        diags.iter().any(|d| d.pos == pos && d.message.contains(needle)),
        "no diagnostic at {line}:{column} containing {needle:?} in:\n{}",
        diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
}
