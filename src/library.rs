//! A project's prompt library as units: a prompt, its tests file, and how a case becomes the
//! variables and messages sent to a model. Shared by `render`, `check`, and later `run`, `test`
//! and the TUI, so every consumer renders a case the same way.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostic, Position};
use crate::project::Project;
use crate::prompt::{self, Message, Parameters, PromptFile, RenderOptions, Rendered, Workspace};
use crate::store::UnitFiles;
use crate::suite::{self, TestCase, TestSuite, TestsFileLocation};
use crate::user_file;

/// A prompt with its tests: the unit that is checked, run and (later) versioned together.
#[derive(Debug, Clone)]
pub struct PromptUnit {
    pub prompt: PromptFile,
    pub suite: Option<TestSuite>,
    pub tests_path: Option<PathBuf>,
}

/// Loads a prompt and its tests file. `Ok` carries the warnings; `Err` every problem found.
pub fn load_unit(
    project: &Project,
    file_name: &str,
) -> Result<(PromptUnit, Vec<Diagnostic>), Vec<Diagnostic>> {
    let (unit, diagnostics) = load_unit_lenient(project, file_name);
    match unit {
        Some(unit) if !diagnostics.iter().any(Diagnostic::is_error) => Ok((unit, diagnostics)),
        _ => Err(diagnostics),
    }
}

/// Loads as much of a unit as can be loaded: the unit whenever the prompt itself parsed (with
/// the valid cases of its tests file), and every diagnostic. `check` uses it to go on rendering
/// past errors, so one run reports every problem.
pub fn load_unit_lenient(
    project: &Project,
    file_name: &str,
) -> (Option<PromptUnit>, Vec<Diagnostic>) {
    let workspace = project.workspace();
    let path = workspace.display_path(file_name);
    let text = match user_file::read_text(&path) {
        Ok(text) => text,
        Err(e) => return (None, vec![e.to_diagnostic()]),
    };
    let (prompt, mut diagnostics) = match prompt::parse_prompt(file_name, path, &text) {
        Ok(parsed) => parsed,
        Err(diagnostics) => return (None, diagnostics),
    };
    check_references(project, &prompt, &mut diagnostics);

    let tests_name = prompt.tests_file_name();
    let tests_path = workspace.display_path(&tests_name);
    let suite = if tests_path.exists() {
        match user_file::read_text(&tests_path) {
            Ok(text) => {
                let project_relative = format!("{}/{tests_name}", crate::project::PROMPTS_DIR);
                let at = TestsFileLocation {
                    display: &tests_path,
                    project_relative: &project_relative,
                };
                let (suite, suite_diagnostics) = suite::parse_tests_file(&text, &at, &workspace);
                diagnostics.extend(suite_diagnostics);
                Some(suite)
            }
            Err(e) => {
                diagnostics.push(e.to_diagnostic());
                None
            }
        }
    } else {
        None
    };
    let tests_path = suite.as_ref().map(|_| tests_path);
    (
        Some(PromptUnit {
            prompt,
            suite,
            tests_path,
        }),
        diagnostics,
    )
}

/// Checks what needs the project: the backend exists, technique prompts and tools exist.
fn check_references(project: &Project, prompt: &PromptFile, diagnostics: &mut Vec<Diagnostic>) {
    let model = &prompt.front_matter.model;
    if let Some(backend) = &model.backend {
        if !project.config.backends.contains_key(backend) {
            let known: Vec<&str> = project.config.backends.keys().map(String::as_str).collect();
            diagnostics.push(Diagnostic::error(
                &prompt.path,
                model.backend_position.unwrap_or(Position::START),
                format!(
                    "backend `{backend}` is not configured in promptdeck.toml (configured: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let Some(technique) = &prompt.front_matter.technique else {
        return;
    };
    let at = prompt
        .front_matter
        .technique_position
        .unwrap_or(Position::START);
    let before = diagnostics.len();
    for referenced in technique.referenced_prompts() {
        match project.resolve_prompt(referenced, &project.root) {
            Ok(file) if file == prompt.file_name => diagnostics.push(Diagnostic::error(
                &prompt.path,
                at,
                format!(
                    "{} technique refers to this prompt itself",
                    technique.kind_name()
                ),
            )),
            Ok(_) => {}
            Err(message) => diagnostics.push(Diagnostic::error(&prompt.path, at, message)),
        }
    }
    // A chain of steps or generators that leads back to an earlier prompt would never end.
    // Only checked when every direct reference resolved, so a problem is reported once.
    if diagnostics.len() == before && !technique.referenced_prompts().is_empty() {
        let mut references = |name: &str| Ok(technique_references(project, name));
        if let Err(message) = crate::execution::plan::check_chain(&prompt.name, &mut references) {
            diagnostics.push(Diagnostic::error(&prompt.path, at, message));
        }
    }
    if let prompt::technique::Technique::React { tools, .. } = technique {
        for tool in tools {
            if project.config.tool_description(tool).is_none() {
                diagnostics.push(Diagnostic::error(
                    &prompt.path,
                    at,
                    format!(
                        "tool `{tool}` is neither built in (calculator, search, date) nor allow-listed under [tools.{tool}] in promptdeck.toml"
                    ),
                ));
            }
        }
    }
}

/// The prompts a library prompt's technique runs, read without checking anything else (a
/// prompt that cannot be read references nothing here; loading it reports why).
fn technique_references(project: &Project, name: &str) -> Vec<String> {
    let Ok(file) = project.resolve_prompt(name, &project.root) else {
        return Vec::new();
    };
    let path = project.workspace().display_path(&file);
    let Ok(text) = user_file::read_text(&path) else {
        return Vec::new();
    };
    match prompt::parse_prompt(&file, path, &text) {
        Ok((prompt, _)) => prompt
            .front_matter
            .technique
            .map(|t| {
                t.referenced_prompts()
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Which variables a case is rendered with, lowest precedence first: technique-provided values,
/// input defaults, then either the case's vars (which already include `defaultTest` vars) or,
/// without a case, the prompt's `sample`; `overrides` (`--var`) win over everything. PURE.
pub fn assemble_variables(
    prompt: &PromptFile,
    technique_vars: Map<String, Value>,
    case: Option<&TestCase>,
    sample: &Map<String, Value>,
    overrides: &Map<String, Value>,
) -> Map<String, Value> {
    let mut vars = technique_vars;
    vars.extend(prompt.input_defaults());
    match case {
        Some(case) => vars.extend(case.vars.clone()),
        None => vars.extend(sample.clone()),
    }
    vars.extend(overrides.clone());
    vars
}

/// Warnings for variables whose type does not match the declared input. PURE.
pub fn type_warnings(
    prompt: &PromptFile,
    vars: &Map<String, Value>,
    case: Option<&TestCase>,
    tests_path: Option<&PathBuf>,
) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for input in &prompt.front_matter.inputs {
        let (Some(kind), Some(value)) = (input.kind, vars.get(&input.name)) else {
            continue;
        };
        if !kind.accepts(value) {
            let (path, position, whose) = match (case, tests_path) {
                (Some(case), Some(path)) => (
                    path.clone(),
                    case.position,
                    format!("case {}", case.label()),
                ),
                _ => (prompt.path.clone(), input.position, "sample".to_owned()),
            };
            warnings.push(Diagnostic::warning(
                path,
                position,
                format!(
                    "{whose}: variable `{}` is declared as {} but is {}",
                    input.name,
                    kind.name(),
                    json_kind(value)
                ),
            ));
        }
    }
    warnings
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A rendered case, ready for a backend.
#[derive(Debug, Clone)]
pub struct RenderedCase {
    pub messages: Vec<Message>,
    pub parameters: Parameters,
    pub backend: String,
    pub warnings: Vec<Diagnostic>,
}

/// Renders one case of a unit (or its sample when `case` is `None`).
pub fn render_case(
    project: &Project,
    unit: &PromptUnit,
    case: Option<&TestCase>,
    overrides: &Map<String, Value>,
) -> Result<RenderedCase, Diagnostic> {
    render_case_in(
        project,
        Arc::new(project.workspace()),
        unit,
        case,
        overrides,
        &Map::new(),
    )
}

/// Renders one case with values a technique produced at run time (a step's output, the
/// generated prompt, the tools), which replace the placeholders a plain render shows. They keep
/// the technique's place in the precedence: lowest.
pub fn render_case_with(
    project: &Project,
    unit: &PromptUnit,
    case: Option<&TestCase>,
    overrides: &Map<String, Value>,
    provided: &Map<String, Value>,
) -> Result<RenderedCase, Diagnostic> {
    render_case_in(
        project,
        Arc::new(project.workspace()),
        unit,
        case,
        overrides,
        provided,
    )
}

fn render_case_in(
    project: &Project,
    workspace: Arc<dyn Workspace>,
    unit: &PromptUnit,
    case: Option<&TestCase>,
    overrides: &Map<String, Value>,
    provided: &Map<String, Value>,
) -> Result<RenderedCase, Diagnostic> {
    let prompt = &unit.prompt;
    let sample = match case {
        Some(_) => Map::new(),
        None => prompt.sample(workspace.as_ref())?,
    };
    let mut technique_vars = prompt
        .front_matter
        .technique
        .as_ref()
        .map(|t| t.render_variables(&|name| project.config.tool_description(name)))
        .unwrap_or_default();
    technique_vars.extend(provided.clone());
    let vars = assemble_variables(prompt, technique_vars, case, &sample, overrides);
    let options = RenderOptions {
        fuel: project.config.fuel,
        case_label: case.map(TestCase::label),
        ..RenderOptions::default()
    };
    let Rendered {
        messages,
        mut warnings,
    } = prompt::render(prompt, workspace, &vars, &options)?;
    warnings.extend(type_warnings(prompt, &vars, case, unit.tests_path.as_ref()));
    Ok(RenderedCase {
        messages,
        parameters: project
            .config
            .default_parameters
            .overlay(&prompt.front_matter.model.parameters),
        backend: prompt
            .front_matter
            .model
            .backend
            .clone()
            .unwrap_or_else(|| project.config.default_backend.clone()),
        warnings,
    })
}

/// A workspace that remembers every file it was asked for, so that the files a unit really
/// depends on (partials, sample files, `file://` variables) can be versioned with it.
struct RecordingWorkspace {
    inner: crate::project::DiskWorkspace,
    read: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl RecordingWorkspace {
    fn record(&self, project_path: String) {
        // A poisoned lock only means another render panicked; the set itself is still valid.
        let mut read = self
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read.insert(project_path);
    }
}

impl Workspace for RecordingWorkspace {
    fn read_library_file(&self, name: &str) -> Result<Option<String>, String> {
        let text = self.inner.read_library_file(name)?;
        if text.is_some() {
            self.record(format!("{}/{name}", crate::project::PROMPTS_DIR));
        }
        Ok(text)
    }

    fn read_project_file(&self, path: &str) -> Result<Option<String>, String> {
        let text = self.inner.read_project_file(path)?;
        if text.is_some() {
            self.record(path.to_owned());
        }
        Ok(text)
    }

    fn display_path(&self, name: &str) -> PathBuf {
        self.inner.display_path(name)
    }
}

/// The files of a unit as the version store keeps them: project-relative path to content. The
/// prompt, its tests file, and every file that loading the tests or rendering the sample or any
/// case read. Rendering errors do not stop a snapshot (a user may save work in progress); they
/// are returned as diagnostics beside the files.
pub fn unit_files(
    project: &Project,
    file_name: &str,
) -> Result<(UnitFiles, Vec<Diagnostic>), Vec<Diagnostic>> {
    let recorder = Arc::new(RecordingWorkspace {
        inner: project.workspace(),
        read: std::sync::Mutex::new(std::collections::BTreeSet::new()),
    });
    let prompts = crate::project::PROMPTS_DIR;
    recorder.record(format!("{prompts}/{file_name}"));
    let (unit, mut diagnostics) = load_unit_lenient(project, file_name);
    let Some(unit) = unit else {
        return Err(diagnostics);
    };
    if unit.tests_path.is_some() {
        recorder.record(format!("{prompts}/{}", unit.prompt.tests_file_name()));
        // Re-parse the tests file through the recorder to see the `file://` variables it reads.
        let tests_name = unit.prompt.tests_file_name();
        if let Ok(Some(text)) = recorder.read_library_file(&tests_name) {
            let display = recorder.display_path(&tests_name);
            let project_relative = format!("{prompts}/{tests_name}");
            let at = TestsFileLocation {
                display: &display,
                project_relative: &project_relative,
            };
            let _ = suite::parse_tests_file(&text, &at, recorder.as_ref());
        }
    }
    let workspace: Arc<dyn Workspace> = recorder.clone();
    let cases: Vec<Option<&TestCase>> = match &unit.suite {
        Some(suite) if !suite.cases.is_empty() => suite.cases.iter().map(Some).collect(),
        _ => vec![None],
    };
    for case in cases {
        if let Err(diagnostic) = render_case_in(
            project,
            Arc::clone(&workspace),
            &unit,
            case,
            &Map::new(),
            &Map::new(),
        ) {
            diagnostics.push(diagnostic);
        }
    }
    let read = recorder
        .read
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut files = std::collections::BTreeMap::new();
    for path in read {
        match user_file::read_text(&project.root.join(&path)) {
            Ok(text) => {
                files.insert(path, text);
            }
            Err(e) => diagnostics.push(e.to_diagnostic()),
        }
    }
    Ok((
        UnitFiles {
            prompt: unit.prompt.name.clone(),
            files,
        },
        diagnostics,
    ))
}
