//! Compiler-style diagnostics: `file:line:col: error: message`.
//!
//! Every problem promptdeck finds in a user's files is reported through [`Diagnostic`], so the CLI,
//! the TUI and tests all print the same text and a user can jump to the spot from any editor.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is: errors make `check` exit 2, warnings are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A 1-based line and column inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, col: 1 };

    pub fn new(line: usize, col: usize) -> Self {
        Position { line, col }
    }

    /// Shifts a position found inside an embedded text (a template body, a front-matter block)
    /// to the position in the whole file, given the 0-based line where the embedded text starts.
    pub fn offset_lines(self, lines_before: usize) -> Self {
        Position {
            line: self.line + lines_before,
            col: self.col,
        }
    }

    /// The position of a byte offset in `text`; columns count characters, not bytes, so that
    /// editors land on the right spot in lines with non-ASCII text.
    pub fn of_byte_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Position { line, col }
    }
}

/// One problem, located in a file where there is one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: PathBuf,
    pub position: Position,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: impl Into<PathBuf>, position: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            position,
            message: message.into(),
        }
    }

    pub fn warning(
        path: impl Into<PathBuf>,
        position: Position,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            path: path.into(),
            position,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The same diagnostic with its path shown relative to `base` when it lies below it, the way
    /// compilers print paths relative to the directory they were started in.
    pub fn relative_to(mut self, base: &Path) -> Self {
        if let Ok(rel) = self.path.strip_prefix(base) {
            self.path = rel.to_path_buf();
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {label}: {}",
            self.path.display(),
            self.position.line,
            self.position.col,
            self.message
        )
    }
}

/// Diagnostics gathered while checking several things, so that all problems are reported at once
/// instead of stopping at the first.
pub type Diagnostics = Vec<Diagnostic>;

pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_offsets_become_one_based_char_columns() {
        let text = "ab\nçd{{ x }}\n";
        assert_eq!(Position::of_byte_offset(text, 0), Position::new(1, 1));
        assert_eq!(Position::of_byte_offset(text, 3), Position::new(2, 1));
        // "ç" is two bytes but one column.
        assert_eq!(Position::of_byte_offset(text, 6), Position::new(2, 3));
        assert_eq!(Position::of_byte_offset(text, 999), Position::new(3, 1));
    }

    #[test]
    fn display_is_compiler_style() {
        let d = Diagnostic::error(
            "prompts/a.prompty",
            Position::new(3, 7),
            "undefined variable `x`",
        );
        assert_eq!(
            d.to_string(),
            "prompts/a.prompty:3:7: error: undefined variable `x`"
        );
    }
}
