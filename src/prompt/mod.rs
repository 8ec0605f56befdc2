//! Prompt files: parsing `.prompty` files and rendering them into chat messages. PURE: files are
//! reached only through the [`Workspace`] trait, which the project module implements on disk.
//!
//! A `.prompty` file is YAML front matter between `---` lines ([`front_matter`]) and a Jinja body
//! ([`template`]). After rendering, the text is split into messages at role markers ([`roles`]).

pub mod front_matter;
pub mod helpers;
pub mod roles;
pub mod technique;
pub mod template;

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostic, Position};
use crate::yaml;
pub use front_matter::{FrontMatter, InputType, Parameters, SampleSpec, TemplateFormat};
pub use roles::{Message, Role};
pub use template::{RenderOptions, Rendered, render};

/// Extension of prompt files.
pub const PROMPT_EXTENSION: &str = "prompty";
/// Suffix of the tests file that sits beside a prompt: `math.prompty` -> `math.tests.yaml`.
pub const TESTS_SUFFIX: &str = ".tests.yaml";

/// Access to the files of a project's prompt library (`prompts/`), by library-relative names
/// that [`normalize_name`] has already validated. Implementations must also refuse names that
/// escape the library through symbolic links.
pub trait Workspace: Send + Sync {
    /// The text of a library file, or `None` when it does not exist.
    fn read_library_file(&self, name: &str) -> Result<Option<String>, String>;
    /// The text of a file addressed relative to the project root (for `file://` test variables).
    fn read_project_file(&self, path: &str) -> Result<Option<String>, String>;
    /// The path to show a user for a library file.
    fn display_path(&self, name: &str) -> PathBuf;
}

/// Why a name was refused by [`normalize_name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{0}` is an absolute path; names are relative to the prompts folder")]
    Absolute(String),
    #[error("`{0}` leads outside the prompts folder (`..` is not allowed)")]
    Escapes(String),
    #[error("`{0}` is not a valid file name")]
    Invalid(String),
}

/// Validates and normalises a '/'-separated relative name: no absolute paths, no `..`, no
/// backslashes or drive letters, `.` and empty components removed. Pure; symlinks are the
/// workspace's job.
pub fn normalize_name(name: &str) -> Result<String, NameError> {
    if name.starts_with('/') || name.starts_with('\\') || name.get(1..2) == Some(":") {
        return Err(NameError::Absolute(name.to_owned()));
    }
    if name.contains('\\') || name.contains('\0') {
        return Err(NameError::Invalid(name.to_owned()));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(NameError::Escapes(name.to_owned())),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(NameError::Invalid(name.to_owned()));
    }
    Ok(parts.join("/"))
}

/// Joins `target` to the directory of the library file `from` and normalises the result.
pub fn join_relative(from: &str, target: &str) -> Result<String, NameError> {
    if target.starts_with('/') || target.get(1..2) == Some(":") {
        return Err(NameError::Absolute(target.to_owned()));
    }
    let dir = from.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(NameError::Escapes(target.to_owned()));
                }
            }
            part => parts.push(part),
        }
    }
    normalize_name(&parts.join("/"))
}

/// A parsed prompt file.
#[derive(Debug, Clone)]
pub struct PromptFile {
    /// Library name without extension: `cot/math`.
    pub name: String,
    /// Library-relative file name: `cot/math.prompty`.
    pub file_name: String,
    pub path: PathBuf,
    pub front_matter: FrontMatter,
    /// The body, preceded by one empty line per front-matter line so that template line numbers
    /// are file line numbers.
    pub body: String,
    /// 1-based line of the first body line.
    pub body_line: usize,
}

impl PromptFile {
    pub fn tests_file_name(&self) -> String {
        format!("{}{TESTS_SUFFIX}", self.name)
    }

    pub fn input(&self, name: &str) -> Option<&front_matter::InputSpec> {
        self.front_matter.inputs.iter().find(|i| i.name == name)
    }

    /// Defaults declared in `inputs`, the lowest-precedence variables.
    pub fn input_defaults(&self) -> Map<String, Value> {
        self.front_matter
            .inputs
            .iter()
            .filter_map(|i| i.default.clone().map(|d| (i.name.clone(), d)))
            .collect()
    }

    /// The `sample` variables, loading `${file:...}` through the workspace.
    pub fn sample(&self, workspace: &dyn Workspace) -> Result<Map<String, Value>, Diagnostic> {
        match &self.front_matter.sample {
            SampleSpec::None => Ok(Map::new()),
            SampleSpec::Inline(map) => Ok(map.clone()),
            SampleSpec::File { path, position } => {
                let fail = |message: String| Diagnostic::error(&self.path, *position, message);
                let name = join_relative(&self.file_name, path).map_err(|e| fail(e.to_string()))?;
                let text = workspace
                    .read_library_file(&name)
                    .map_err(|e| fail(format!("cannot read sample file `{path}`: {e}")))?
                    .ok_or_else(|| fail(format!("sample file `{path}` not found")))?;
                let node = if name.ends_with(".json") {
                    serde_json::from_str::<Value>(&text).map_err(|e| {
                        Diagnostic::error(
                            workspace.display_path(&name),
                            Position::new(e.line(), e.column()),
                            format!("invalid JSON: {e}"),
                        )
                    })?
                } else {
                    yaml::parse(&text)
                        .map_err(|e| {
                            Diagnostic::error(workspace.display_path(&name), e.position, e.message)
                        })?
                        .to_json()
                };
                match node {
                    Value::Object(map) => Ok(map),
                    _ => Err(fail(format!(
                        "sample file `{path}` must hold a JSON or YAML object"
                    ))),
                }
            }
        }
    }
}

/// Parses a prompt file's text. On failure every problem found is returned.
pub fn parse_prompt(
    file_name: &str,
    path: PathBuf,
    text: &str,
) -> Result<(PromptFile, Vec<Diagnostic>), Vec<Diagnostic>> {
    let name = file_name
        .strip_suffix(&format!(".{PROMPT_EXTENSION}"))
        .unwrap_or(file_name)
        .to_owned();
    if text.trim().is_empty() {
        return Err(vec![Diagnostic::error(
            &path,
            Position::START,
            "prompt file is empty",
        )]);
    }
    let (front_text, body_line) = match split_front_matter(text) {
        Ok(split) => split,
        Err(position) => {
            return Err(vec![Diagnostic::error(
                &path,
                position,
                "front matter opened with `---` is never closed; add a line with only `---` after it",
            )]);
        }
    };
    let mut warnings = Vec::new();
    let front_matter = match front_text {
        None => FrontMatter::default(),
        Some(front_text) => {
            let mut node = yaml::parse(front_text).map_err(|e| {
                vec![Diagnostic::error(
                    &path,
                    e.position.offset_lines(1),
                    e.message,
                )]
            })?;
            node.offset_lines(1);
            let (fm, fm_warnings) = front_matter::parse(&node).map_err(|errors| {
                errors
                    .into_iter()
                    .map(|e| Diagnostic::error(&path, e.position, e.message))
                    .collect::<Vec<_>>()
            })?;
            warnings.extend(
                fm_warnings
                    .into_iter()
                    .map(|w| Diagnostic::warning(&path, w.position, w.message)),
            );
            fm
        }
    };
    let body_text: String = text.split_inclusive('\n').skip(body_line - 1).collect();
    let body = "\n".repeat(body_line - 1) + &body_text;
    if body_text.trim().is_empty() {
        return Err(vec![Diagnostic::error(
            &path,
            Position::new(body_line, 1),
            "prompt has no body after its front matter",
        )]);
    }
    Ok((
        PromptFile {
            name,
            file_name: file_name.to_owned(),
            path,
            front_matter,
            body,
            body_line,
        },
        warnings,
    ))
}

/// Finds the front matter: `Ok((Some(yaml), body_line))` when the file opens with a `---` line
/// and a later `---` line closes it, `Ok((None, 1))` when the file has no front matter, and
/// `Err(position of the opening line)` when it is never closed.
fn split_front_matter(text: &str) -> Result<(Option<&str>, usize), Position> {
    let mut lines = text.split_inclusive('\n');
    let is_fence = |line: &str| line.trim_end() == "---";
    match lines.next() {
        Some(first) if is_fence(first) => {}
        _ => return Ok((None, 1)),
    }
    let start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut offset = start;
    for (index, line) in lines.enumerate() {
        if is_fence(line) {
            // Line 1 is the opening fence, this fence is line index + 2, the body follows it.
            return Ok((Some(&text[start..offset]), index + 3));
        }
        offset += line.len();
    }
    Err(Position::START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_confined_to_the_library() {
        assert_eq!(
            normalize_name("_partials/./steps.jinja").unwrap(),
            "_partials/steps.jinja"
        );
        assert!(matches!(
            normalize_name("../secrets.txt"),
            Err(NameError::Escapes(_))
        ));
        assert!(matches!(
            normalize_name("a/../../b"),
            Err(NameError::Escapes(_))
        ));
        assert!(matches!(
            normalize_name("/etc/passwd"),
            Err(NameError::Absolute(_))
        ));
        assert!(matches!(
            normalize_name("C:/x"),
            Err(NameError::Absolute(_))
        ));
        assert!(matches!(normalize_name("a\\b"), Err(NameError::Invalid(_))));
        assert_eq!(
            join_relative("tasks/x.prompty", "data/a.txt").unwrap(),
            "tasks/data/a.txt"
        );
        assert_eq!(
            join_relative("tasks/x.prompty", "../shared.json").unwrap(),
            "shared.json"
        );
        assert!(join_relative("tasks/x.prompty", "../../etc/passwd").is_err());
    }

    #[test]
    fn front_matter_split() {
        let (fm, body_line) = split_front_matter("---\nname: x\n---\nhello\n").unwrap();
        assert_eq!(fm, Some("name: x\n"));
        assert_eq!(body_line, 4);
        assert_eq!(split_front_matter("hello\n").unwrap(), (None, 1));
        assert_eq!(
            split_front_matter("---\nname: x\nhello\n").unwrap_err(),
            Position::START
        );
    }

    #[test]
    fn body_lines_keep_file_numbering() {
        let (prompt, _) = parse_prompt(
            "a.prompty",
            "a.prompty".into(),
            "---\nname: x\n---\nuser:\nhi {{ x }}\n",
        )
        .unwrap();
        assert_eq!(prompt.body_line, 4);
        assert_eq!(prompt.body.lines().nth(4), Some("hi {{ x }}"));
        assert_eq!(prompt.name, "a");
    }

    #[test]
    fn front_matter_errors_have_file_positions() {
        let errors = parse_prompt(
            "a.prompty",
            "a.prompty".into(),
            "---\nname: x\nmodel:\n  parameters:\n    top_k: many\n---\nhi\n",
        )
        .unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "a.prompty:5:12: error: invalid type: string \"many\", expected u32"
        );
    }
}
