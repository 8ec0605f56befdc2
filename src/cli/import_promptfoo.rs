//! `promptdeck import-promptfoo CONFIG [--out DIR]`: converts a promptfoo config with
//! `import::promptfoo` and writes the project, refusing to overwrite files; prints every file
//! created on stdout and everything not converted (and why) on stderr.

use std::path::{Path, PathBuf};

use super::{CliError, Exit};
use crate::diagnostic::{Diagnostic, Position};
use crate::import::promptfoo::{self, ImportError};

pub const AFTER_HELP: &str = "Examples:
  promptdeck import-promptfoo promptfooconfig.yaml               into the current folder
  promptdeck import-promptfoo evals/promptfooconfig.yaml --out converted
  cd converted && promptdeck check && promptdeck test

Prompts (inline, file://, chat JSON), providers (openai:, anthropic:, vertex:/google:, ollama:,
OpenAI-compatible servers with apiBaseUrl), tests and defaultTest are converted; what cannot be
(code-based prompts and assertions, other providers, promptfoo-only settings) is listed with the
reason. Existing files are never overwritten.";

pub fn run(cwd: &Path, config: &Path, out: Option<&Path>) -> Result<Exit, CliError> {
    let config = cwd.join(config);
    let text = crate::user_file::read_text(&config)
        .map_err(|e| CliError::Diagnostics(vec![e.to_diagnostic()]))?;
    let base = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let read = |relative: &str| -> Result<String, String> {
        let path = base.join(relative);
        crate::user_file::read_text(&path).map_err(|e| e.to_string())
    };
    let conversion = promptfoo::convert(&text, &read).map_err(|e| match e {
        ImportError::Yaml { line, col, message } => CliError::Diagnostics(vec![Diagnostic::error(
            &config,
            Position { line, col },
            message,
        )]),
        ImportError::Shape(message) => {
            CliError::Diagnostics(vec![Diagnostic::error(&config, Position::START, message)])
        }
    })?;
    let out: PathBuf = out.map_or_else(|| cwd.to_path_buf(), |o| cwd.join(o));
    let existing: Vec<String> = conversion
        .files
        .iter()
        .filter(|(p, _)| out.join(p).exists())
        .map(|(p, _)| super::relative(&out.join(p), cwd).display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(CliError::Usage(format!(
            "not overwriting existing files: {} (choose another --out)",
            existing.join(", ")
        )));
    }
    for (path, content) in &conversion.files {
        let full = out.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&full, content)
            .map_err(|e| CliError::Io(format!("cannot write {}: {e}", full.display())))?;
        println!("created {}", super::relative(&full, cwd).display());
    }
    for note in &conversion.notes {
        eprintln!("note: {note}");
    }
    println!(
        "Next: {}promptdeck check, then promptdeck test{}",
        if out == cwd {
            String::new()
        } else {
            format!("cd {} && ", super::relative(&out, cwd).display())
        },
        if conversion.backends.len() > 1 {
            format!(" --backend {}", conversion.backends.join(","))
        } else {
            String::new()
        }
    );
    Ok(Exit::Ok)
}
