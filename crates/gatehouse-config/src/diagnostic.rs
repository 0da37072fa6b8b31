//! Diagnostics: the positioned errors and warnings this crate reports, their
//! `FILE:LINE:COLUMN: error: MESSAGE` rendering, and [`ConfigError`], the error of
//! [`crate::load`] and [`crate::parse`].

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in the configuration file: 1-based line and 1-based column, counted in
/// characters (not bytes), as an editor shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number, in characters.
    pub column: usize,
}

impl Pos {
    /// A position from 1-based line and column.
    #[must_use]
    pub const fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The configuration is unusable; [`crate::load`] returns a [`ConfigError`].
    Error,
    /// The configuration is usable, but probably not what the operator meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One error or warning about the configuration file, with its position when known.
///
/// Displays as `FILE:LINE:COLUMN: error: MESSAGE` (or `warning:`), followed, when there
/// is a hint, by a second line `  hint: HINT`. Without a position: `FILE: error: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The configuration file, as it was given to [`crate::load`] or [`crate::parse`].
    pub file: PathBuf,
    /// Where in the file, if the problem has a place (a read error has none).
    pub pos: Option<Pos>,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Whether this is an error (not a warning).
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.pos {
            write!(f, ":{pos}")?;
        }
        write!(f, ": {}: {}", self.severity, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The configuration could not be used: every error found, then the warnings found so
/// far. Displays each diagnostic on its own line (a hint adds a line of its own).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_all(.diagnostics))]
pub struct ConfigError {
    /// The errors (at least one), sorted by position, then the warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// The errors only (without the warnings).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

fn render_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Collects the diagnostics of one pass over one file.
#[derive(Debug)]
pub(crate) struct Diags {
    file: PathBuf,
    list: Vec<Diagnostic>,
}

impl Diags {
    pub(crate) fn new(file: &Path) -> Self {
        Self { file: file.to_path_buf(), list: Vec::new() }
    }

    fn push(
        &mut self,
        severity: Severity,
        pos: Option<Pos>,
        message: String,
        hint: Option<String>,
    ) {
        self.list.push(Diagnostic { severity, file: self.file.clone(), pos, message, hint });
    }

    /// An error at `pos`.
    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(Severity::Error, Some(pos), message.into(), None);
    }

    /// An error at `pos`, with a hint on how to fix it.
    pub(crate) fn error_hint(
        &mut self,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Error, Some(pos), message.into(), Some(hint.into()));
    }

    /// An error with an optional position and hint.
    pub(crate) fn error_at(&mut self, pos: Option<Pos>, message: String, hint: Option<String>) {
        self.push(Severity::Error, pos, message, hint);
    }

    /// A warning at `pos`, with a hint.
    pub(crate) fn warning_hint(
        &mut self,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Warning, Some(pos), message.into(), Some(hint.into()));
    }

    /// Splits into (errors, warnings), each sorted by position (stable).
    pub(crate) fn finish(self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let (mut errors, mut warnings): (Vec<_>, Vec<_>) =
            self.list.into_iter().partition(Diagnostic::is_error);
        errors.sort_by_key(|d| d.pos);
        warnings.sort_by_key(|d| d.pos);
        (errors, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(severity: Severity, pos: Option<Pos>, hint: Option<&str>) -> Diagnostic {
        Diagnostic {
            severity,
            file: PathBuf::from("conf/hosting.yaml"),
            pos,
            message: "something is off".into(),
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn display_forms() {
        let cases = [
            (
                diag(Severity::Error, Some(Pos::new(3, 7)), None),
                "conf/hosting.yaml:3:7: error: something is off",
            ),
            (
                diag(Severity::Warning, Some(Pos::new(1, 1)), Some("do this")),
                "conf/hosting.yaml:1:1: warning: something is off\n  hint: do this",
            ),
            (diag(Severity::Error, None, None), "conf/hosting.yaml: error: something is off"),
            (
                diag(Severity::Error, None, Some("check it")),
                "conf/hosting.yaml: error: something is off\n  hint: check it",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(d.to_string(), want);
        }
    }

    #[test]
    fn config_error_prints_one_per_line() {
        let e = ConfigError {
            diagnostics: vec![
                diag(Severity::Error, Some(Pos::new(2, 1)), Some("fix")),
                diag(Severity::Warning, Some(Pos::new(1, 1)), None),
            ],
        };
        assert_eq!(
            e.to_string(),
            "conf/hosting.yaml:2:1: error: something is off\n  hint: fix\n\
             conf/hosting.yaml:1:1: warning: something is off"
        );
        assert_eq!(e.errors().count(), 1);
    }

    #[test]
    fn finish_sorts_and_splits() {
        let mut d = Diags::new(Path::new("x.yaml"));
        d.warning_hint(Pos::new(9, 1), "w", "h");
        d.error(Pos::new(5, 2), "b");
        d.error(Pos::new(1, 4), "a");
        d.error_at(None, "c".into(), None);
        let (errors, warnings) = d.finish();
        let msgs: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["c", "a", "b"]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].severity, Severity::Warning);
    }
}
