//! `promptdeck check`: every prompt and tests file parsed, every case rendered, every problem
//! reported.

use std::path::{Path, PathBuf};

use super::{CliError, Exit, plural, print_diagnostics};
use crate::diagnostic::{Diagnostic, Position, Severity};
use crate::library;
use crate::project::Project;
use crate::prompt::{PROMPT_EXTENSION, TESTS_SUFFIX};

/// Counts for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    pub prompts: usize,
    pub cases: usize,
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckSummary {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

pub fn run(project: &Project, cwd: &Path, paths: &[PathBuf]) -> Result<Exit, CliError> {
    let files = select(project, cwd, paths)?;
    let summary = check_prompts(project, &files, paths.is_empty())?;
    print_diagnostics(&summary.diagnostics, cwd);
    let line = format!(
        "checked {}, {}: {}, {}",
        plural(summary.prompts, "prompt"),
        plural(summary.cases, "case"),
        plural(summary.errors(), "error"),
        plural(summary.warnings(), "warning")
    );
    if summary.errors() > 0 {
        eprintln!("{line}");
        Ok(Exit::InputError)
    } else {
        println!("{line}");
        Ok(Exit::Ok)
    }
}

/// Checks the given prompts (library file names); with `whole_library`, also reports tests
/// files that have no prompt.
pub fn check_prompts(
    project: &Project,
    files: &[String],
    whole_library: bool,
) -> Result<CheckSummary, CliError> {
    let mut summary = CheckSummary::default();
    for file in files {
        summary.prompts += 1;
        let (unit, diagnostics) = library::load_unit_lenient(project, file);
        summary.diagnostics.extend(diagnostics);
        let Some(unit) = unit else { continue };
        let cases: Vec<Option<&crate::suite::TestCase>> = match &unit.suite {
            Some(suite) if !suite.cases.is_empty() => suite.cases.iter().map(Some).collect(),
            // Without cases, the prompt must at least render with its sample and defaults.
            _ => vec![None],
        };
        for case in cases {
            summary.cases += usize::from(case.is_some());
            match library::render_case(project, &unit, case, &serde_json::Map::new()) {
                Ok(rendered) => summary.diagnostics.extend(rendered.warnings),
                Err(diagnostic) => summary.diagnostics.push(diagnostic),
            }
        }
    }
    if whole_library {
        for orphan in project.orphan_tests_files()? {
            summary.diagnostics.push(Diagnostic::error(
                project.prompts_dir().join(&orphan),
                Position::START,
                format!(
                    "tests file has no prompt beside it (expected {})",
                    orphan.replace(TESTS_SUFFIX, &format!(".{PROMPT_EXTENSION}"))
                ),
            ));
        }
    }
    // Files in order, problems in each file by position, as a compiler lists them.
    summary
        .diagnostics
        .sort_by(|a, b| (&a.path, a.position).cmp(&(&b.path, b.position)));
    summary.diagnostics.dedup();
    Ok(summary)
}

/// Resolves PATH arguments (files or folders under prompts/) to library prompt files.
fn select(project: &Project, cwd: &Path, paths: &[PathBuf]) -> Result<Vec<String>, CliError> {
    let all = project.list_prompts()?;
    if paths.is_empty() {
        return Ok(all);
    }
    let prompts_dir = project
        .prompts_dir()
        .canonicalize()
        .map_err(|e| CliError::Io(format!("{}: {e}", project.prompts_dir().display())))?;
    let mut selected = Vec::new();
    for path in paths {
        let absolute = if path.is_absolute() {
            path.clone()
        } else {
            cwd.join(path)
        };
        let spec = path.to_string_lossy();
        let library_relative = match absolute.canonicalize() {
            Ok(real) => real
                .strip_prefix(&prompts_dir)
                .map(|rel| rel.to_string_lossy().replace('\\', "/"))
                .map_err(|_| {
                    CliError::Usage(format!(
                        "{spec} is not inside the prompts folder ({})",
                        project.prompts_dir().display()
                    ))
                })?,
            // Not a path: a prompt name such as `cot/math`.
            Err(_) => {
                let file = project
                    .resolve_prompt(&spec, cwd)
                    .map_err(CliError::Usage)?;
                selected.push(file);
                continue;
            }
        };
        if absolute.is_dir() {
            let prefix = if library_relative.is_empty() {
                String::new()
            } else {
                format!("{library_relative}/")
            };
            selected.extend(all.iter().filter(|f| f.starts_with(&prefix)).cloned());
        } else if let Some(stem) = library_relative.strip_suffix(TESTS_SUFFIX) {
            selected.push(format!("{stem}.{PROMPT_EXTENSION}"));
        } else if library_relative.ends_with(&format!(".{PROMPT_EXTENSION}")) {
            selected.push(library_relative);
        } else {
            return Err(CliError::Usage(format!(
                "{spec} is neither a .prompty file, a tests file nor a folder"
            )));
        }
    }
    selected.sort();
    selected.dedup();
    Ok(selected)
}
