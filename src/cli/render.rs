//! `promptdeck render`: the messages a model would receive for one case.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::{CaseArgs, CliError, Exit, RenderArgs, RenderFormat, print_diagnostics};
use crate::library::{self, PromptUnit};
use crate::project::Project;
use crate::prompt::{InputType, PromptFile};
use crate::suite::TestCase;

/// A prompt unit with one case rendered: what `render` prints and `run` sends.
pub struct PreparedCase {
    /// The library file name (`cot/math.prompty`).
    pub file: String,
    pub unit: PromptUnit,
    /// Position of the selected case in the tests file's cases; `None` renders the sample.
    case_position: Option<usize>,
    pub rendered: library::RenderedCase,
}

impl PreparedCase {
    pub fn case(&self) -> Option<&TestCase> {
        let cases = &self.unit.suite.as_ref()?.cases;
        cases.get(self.case_position?)
    }
}

/// Resolves PROMPT, loads its unit, selects the case and renders it, printing warnings.
pub fn prepare(project: &Project, cwd: &Path, target: &CaseArgs) -> Result<PreparedCase, CliError> {
    let file = project
        .resolve_prompt(&target.prompt, cwd)
        .map_err(CliError::Usage)?;
    let (unit, warnings) = library::load_unit(project, &file).map_err(CliError::Diagnostics)?;
    print_diagnostics(&warnings, cwd);
    let selected = select_case(&unit, target.case.as_deref(), target.case_index)?;
    let overrides = parse_overrides(&unit.prompt, &target.vars)?;
    let rendered = library::render_case(project, &unit, selected, &overrides)
        .map_err(|d| CliError::Diagnostics(vec![d]))?;
    print_diagnostics(&rendered.warnings, cwd);
    let case_position = selected.and_then(|c| {
        unit.suite
            .as_ref()
            .and_then(|s| s.cases.iter().position(|x| x.index == c.index))
    });
    Ok(PreparedCase {
        file,
        unit,
        case_position,
        rendered,
    })
}

pub fn run(project: &Project, cwd: &Path, args: &RenderArgs) -> Result<Exit, CliError> {
    let prepared = prepare(project, cwd, &args.target)?;
    let rendered = &prepared.rendered;
    let backend = args.backend.clone().unwrap_or(rendered.backend.clone());
    if !project.config.backends.contains_key(&backend) {
        return Err(CliError::Usage(format!(
            "no backend `{backend}` in promptdeck.toml"
        )));
    }
    match args.format {
        RenderFormat::Model => {
            if project
                .api_backend_config(&backend)
                .map_err(CliError::Usage)?
                .is_some()
            {
                return Err(CliError::Usage(format!(
                    "`--format model` shows the local model's input; `{backend}` is an API backend, which receives the messages (`--format json`)"
                )));
            }
            let (path, _) = super::local::local_model_path(Some(project), Some(&backend))?;
            let inspector = crate::local::inspect::Inspector::open(&path)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            print!(
                "{}",
                inspector
                    .chat_text(&rendered.messages)
                    .map_err(CliError::Usage)?
            );
        }
        RenderFormat::Text => print!("{}", format_text(&rendered.messages)),
        RenderFormat::Json => {
            let out = json!({
                "messages": rendered.messages,
                "parameters": rendered.parameters,
                "backend": backend,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| CliError::Io(e.to_string()))?
            );
        }
    }
    Ok(Exit::Ok)
}

/// Messages as role-marker sections, the same syntax a prompt body uses.
pub fn format_text(messages: &[crate::prompt::Message]) -> String {
    let mut out = String::new();
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(message.role.as_str());
        out.push_str(":\n");
        out.push_str(&message.content);
        out.push('\n');
    }
    out
}

/// The case chosen by `--case NAME` or `--case-index N` (1-based); `None` when neither is given.
pub fn select_case<'a>(
    unit: &'a PromptUnit,
    case: Option<&str>,
    case_index: Option<usize>,
) -> Result<Option<&'a TestCase>, CliError> {
    if case.is_none() && case_index.is_none() {
        return Ok(None);
    }
    let cases = unit.suite.as_ref().map_or(&[][..], |s| s.cases.as_slice());
    if cases.is_empty() {
        return Err(CliError::Usage(format!(
            "{} has no test cases (expected them in {})",
            unit.prompt.name,
            unit.prompt.tests_file_name()
        )));
    }
    let names = || {
        cases
            .iter()
            .map(|c| format!("  {} {}", c.index, c.name()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(index) = case_index {
        return cases
            .iter()
            .find(|c| c.index == index)
            .map(Some)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "no case {index}; {} has cases 1 to {}:\n{}",
                    unit.prompt.name,
                    cases.len(),
                    names()
                ))
            });
    }
    let wanted = case.unwrap_or_default();
    cases
        .iter()
        .find(|c| c.name() == wanted)
        .map(Some)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no case named `{wanted}` in {}; its cases are:\n{}",
                unit.prompt.name,
                names()
            ))
        })
}

/// `--var KEY=VALUE` pairs; values of inputs declared with a non-string type are JSON.
pub fn parse_overrides(
    prompt: &PromptFile,
    pairs: &[String],
) -> Result<Map<String, Value>, CliError> {
    let mut vars = Map::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--var `{pair}` must be KEY=VALUE")))?;
        let key = key.trim();
        crate::prompt::front_matter::check_identifier(key, crate::diagnostic::Position::START)
            .map_err(|e| CliError::Usage(format!("--var: {}", e.message)))?;
        let declared = prompt.input(key).and_then(|i| i.kind);
        let value = match declared {
            None | Some(InputType::String) => Value::String(raw.to_owned()),
            Some(kind) => {
                let value: Value = serde_json::from_str(raw).map_err(|e| {
                    CliError::Usage(format!("--var {key}: input `{key}` is declared as {}, so its value must be JSON: {e}", kind.name()))
                })?;
                if !kind.accepts(&value) {
                    return Err(CliError::Usage(format!(
                        "--var {key}: expected {}, got `{raw}`",
                        kind.name()
                    )));
                }
                value
            }
        };
        vars.insert(key.to_owned(), value);
    }
    Ok(vars)
}
