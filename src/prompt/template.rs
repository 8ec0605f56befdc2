//! Rendering a prompt body with minijinja into chat messages, with errors located in the file
//! (and test case) that caused them.
//!
//! The environment is strict (undefined variables are errors), never auto-escapes, is bounded by
//! fuel and a recursion limit, and loads includes, imports and extended templates only from the
//! prompt library through the [`Workspace`]: `../`, absolute paths and symlinks that lead out are
//! refused.

use std::path::PathBuf;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

use super::roles::{Message, split_messages};
use super::{PROMPT_EXTENSION, PromptFile, TemplateFormat, Workspace, normalize_name};
use crate::diagnostic::{Diagnostic, Position};

/// Bounds on template execution.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Instructions a render may execute; a runaway loop fails fast instead of hanging.
    pub fuel: u64,
    /// Maximum nesting of includes, macro calls and blocks.
    pub recursion_limit: usize,
    /// Shown in errors: which test case was being rendered.
    pub case_label: Option<String>,
}

pub const DEFAULT_FUEL: u64 = 2_000_000;

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            fuel: DEFAULT_FUEL,
            recursion_limit: 64,
            case_label: None,
        }
    }
}

/// The messages a prompt rendered to, and anything worth a warning.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub messages: Vec<Message>,
    pub warnings: Vec<Diagnostic>,
}

/// Partials may be named without their extension: `{% include "_partials/steps" %}`.
const PARTIAL_EXTENSIONS: &[&str] = &["jinja", "j2", "txt", "md", PROMPT_EXTENSION];

/// The source of a library template, with `.prompty` front matter blanked out (keeping its lines
/// so error line numbers stay those of the file).
fn load_template(
    workspace: &dyn Workspace,
    requested: &str,
) -> Result<Option<(String, String)>, Error> {
    let name = normalize_name(requested).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("refused to load template: {e}"),
        )
    })?;
    let has_extension = name
        .rsplit('/')
        .next()
        .is_some_and(|file| file.contains('.'));
    let mut candidates = vec![name.clone()];
    if !has_extension {
        candidates.extend(PARTIAL_EXTENSIONS.iter().map(|ext| format!("{name}.{ext}")));
    }
    for candidate in candidates {
        let text = workspace.read_library_file(&candidate).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot load template `{candidate}`: {e}"),
            )
        })?;
        if let Some(text) = text {
            let source = if candidate.ends_with(&format!(".{PROMPT_EXTENSION}")) {
                match super::parse_prompt(&candidate, workspace.display_path(&candidate), &text) {
                    Ok((prompt, _)) => prompt.body,
                    Err(errors) => {
                        let first = errors.first().map(ToString::to_string).unwrap_or_default();
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            format!("cannot load `{candidate}`: {first}"),
                        ));
                    }
                }
            } else {
                text
            };
            return Ok(Some((candidate, source)));
        }
    }
    Ok(None)
}

fn environment(workspace: Arc<dyn Workspace>, options: &RenderOptions) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are not HTML: no file name may switch escaping on (minijinja's json feature would
    // otherwise JSON-escape templates named *.json or *.yaml).
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_debug(true);
    env.set_fuel(Some(options.fuel));
    env.set_recursion_limit(options.recursion_limit);
    super::helpers::register(&mut env);
    env.set_loader(move |name| {
        Ok(load_template(workspace.as_ref(), name)?.map(|(_, source)| source))
    });
    env
}

/// Renders `prompt` with `vars` and splits the result into messages.
pub fn render(
    prompt: &PromptFile,
    workspace: Arc<dyn Workspace>,
    vars: &Map<String, Value>,
    options: &RenderOptions,
) -> Result<Rendered, Diagnostic> {
    let text = match prompt.front_matter.template {
        TemplateFormat::None => prompt.body.clone(),
        TemplateFormat::Jinja => {
            let env = environment(Arc::clone(&workspace), options);
            let rendered = env
                .template_from_named_str(&prompt.file_name, &prompt.body)
                .and_then(|template| {
                    template.render(minijinja::Value::from(minijinja::value::Serde(vars)))
                });
            match rendered {
                Ok(text) => text,
                Err(err) => return Err(locate_error(&err, prompt, workspace.as_ref(), options)),
            }
        }
    };
    let (messages, dropped) = split_messages(&text);
    let suffix = case_suffix(options);
    let warnings = dropped
        .into_iter()
        .map(|d| {
            Diagnostic::warning(
                &prompt.path,
                Position::new(prompt.body_line, 1),
                format!(
                    "message {} ({}) is empty after rendering and was dropped{suffix}",
                    d.index,
                    d.role.as_str()
                ),
            )
        })
        .collect();
    if messages.is_empty() {
        return Err(Diagnostic::error(
            &prompt.path,
            Position::new(prompt.body_line, 1),
            format!("prompt rendered to no messages{suffix}"),
        ));
    }
    Ok(Rendered { messages, warnings })
}

fn case_suffix(options: &RenderOptions) -> String {
    options
        .case_label
        .as_ref()
        .map(|c| format!(" (case {c})"))
        .unwrap_or_default()
}

/// Turns a minijinja error into a diagnostic at the file, line and column where it happened.
/// Errors raised inside an include are reported in the partial, where the fix belongs.
fn locate_error(
    outer: &Error,
    prompt: &PromptFile,
    workspace: &dyn Workspace,
    options: &RenderOptions,
) -> Diagnostic {
    // minijinja wraps an error raised inside an include or import as the source of an
    // "error in <template>" error; the innermost one has the real location and message.
    let mut err = outer;
    while let Some(inner) = std::error::Error::source(err).and_then(|s| s.downcast_ref::<Error>()) {
        err = inner;
    }
    let (path, source): (PathBuf, Option<String>) = match err.name() {
        Some(name) if name != prompt.file_name => {
            let loaded = load_template(workspace, name).ok().flatten();
            let path = loaded.as_ref().map_or_else(
                || workspace.display_path(name),
                |(file, _)| workspace.display_path(file),
            );
            (path, loaded.map(|(_, source)| source))
        }
        _ => (prompt.path.clone(), Some(prompt.body.clone())),
    };
    let snippet = match (err.range(), &source) {
        (Some(range), Some(source)) => source.get(range).map(str::trim),
        _ => None,
    };
    let position = match (err.range(), &source) {
        (Some(range), Some(source)) => Position::of_byte_offset(source, range.start),
        _ => Position::new(err.line().unwrap_or(prompt.body_line), 1),
    };
    let detail = err.detail().unwrap_or_default();
    let message = match err.kind() {
        ErrorKind::UndefinedError => match snippet {
            Some(expr) if is_identifier(expr) => format!("undefined variable `{expr}`"),
            Some(expr) if !detail.is_empty() => format!("{detail} in `{expr}`"),
            Some(expr) => format!("undefined value in `{expr}`"),
            None if !detail.is_empty() => detail.to_owned(),
            None => "undefined variable".to_owned(),
        },
        ErrorKind::OutOfFuel => format!(
            "template stopped after {} steps (fuel exhausted): an endless or very long loop?",
            options.fuel
        ),
        ErrorKind::TemplateNotFound => format!("{detail} (looked under the prompts folder)"),
        ErrorKind::SyntaxError => format!("template syntax error: {detail}"),
        _ if detail.contains("recursion") => {
            format!("{detail} (includes, macros or blocks nested too deeply)")
        }
        kind => {
            if detail.is_empty() {
                kind.to_string()
            } else {
                detail.to_owned()
            }
        }
    };
    Diagnostic::error(path, position, format!("{message}{}", case_suffix(options)))
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory prompt library.
    struct Files(BTreeMap<String, String>);

    impl Workspace for Files {
        fn read_library_file(&self, name: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(name).cloned())
        }
        fn read_project_file(&self, path: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(path).cloned())
        }
        fn display_path(&self, name: &str) -> PathBuf {
            PathBuf::from("prompts").join(name)
        }
    }

    fn files(entries: &[(&str, &str)]) -> Arc<dyn Workspace> {
        Arc::new(Files(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ))
    }

    fn prompt(file: &str, text: &str) -> PromptFile {
        super::super::parse_prompt(file, PathBuf::from("prompts").join(file), text)
            .unwrap()
            .0
    }

    fn vars(json: serde_json::Value) -> Map<String, Value> {
        json.as_object().cloned().unwrap_or_default()
    }

    fn render_case(
        prompt: &PromptFile,
        ws: Arc<dyn Workspace>,
        v: serde_json::Value,
        case: Option<&str>,
    ) -> Result<Rendered, Diagnostic> {
        let options = RenderOptions {
            case_label: case.map(|c| format!("\"{c}\"")),
            ..RenderOptions::default()
        };
        render(prompt, ws, &vars(v), &options)
    }

    #[test]
    fn loops_emit_fewshot_turns() {
        let p = prompt(
            "c.prompty",
            "---\nname: c\n---\nsystem:\nClassify.\n{% for ex in examples %}\nuser:\n{{ ex.q }}\nassistant:\n{{ ex.a }}\n{% endfor %}\nuser:\n{{ q }}\n",
        );
        let r = render_case(
            &p,
            files(&[]),
            serde_json::json!({"examples": [{"q": "good", "a": "pos"}, {"q": "bad", "a": "neg"}], "q": "ok"}),
            None,
        )
        .unwrap();
        let got: Vec<_> = r
            .messages
            .iter()
            .map(|m| format!("{}={}", m.role.as_str(), m.content))
            .collect();
        assert_eq!(
            got,
            [
                "system=Classify.",
                "user=good",
                "assistant=pos",
                "user=bad",
                "assistant=neg",
                "user=ok"
            ]
        );
    }

    #[test]
    fn include_import_extends() {
        let ws = files(&[
            ("_partials/persona.jinja", "You are {{ who }}."),
            (
                "_partials/fmt.jinja",
                "{% macro answer_line() %}End with `Answer: <n>`.{% endmacro %}",
            ),
            (
                "_partials/base.jinja",
                "system:\n{% block system %}default{% endblock %}\nuser:\n{% block user %}{% endblock %}\n",
            ),
        ]);
        let p = prompt(
            "x.prompty",
            "---\nname: x\n---\n{% extends \"_partials/base\" %}{% import \"_partials/fmt.jinja\" as fmt %}\n{% block system %}{% include \"_partials/persona.jinja\" %} {{ fmt.answer_line() }}{% endblock %}\n{% block user %}{{ q }}{% endblock %}\n",
        );
        let r = render_case(
            &p,
            ws,
            serde_json::json!({"who": "a tutor", "q": "2+2?"}),
            None,
        )
        .unwrap();
        assert_eq!(
            r.messages[0].content,
            "You are a tutor. End with `Answer: <n>`."
        );
        assert_eq!(r.messages[1].content, "2+2?");
    }

    #[test]
    fn path_escapes_are_refused_at_the_include() {
        let p = prompt(
            "x.prompty",
            "---\nname: x\n---\nuser:\n{% include \"../secrets.txt\" %}\n",
        );
        let err = render_case(&p, files(&[]), serde_json::json!({}), None).unwrap_err();
        assert_eq!(err.path, PathBuf::from("prompts/x.prompty"));
        assert_eq!(err.position.line, 5);
        assert!(
            err.message.contains("leads outside the prompts folder"),
            "{}",
            err.message
        );
    }

    #[test]
    fn undefined_variables_name_variable_line_column_and_case() {
        let p = prompt(
            "m.prompty",
            "---\nname: m\n---\nuser:\nSolve: {{ questoin }}\n",
        );
        let err = render_case(
            &p,
            files(&[]),
            serde_json::json!({"question": "1+1"}),
            Some("apples"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompts/m.prompty:5:11: error: undefined variable `questoin` (case \"apples\")"
        );
    }

    #[test]
    fn errors_in_partials_point_into_the_partial() {
        let ws = files(&[("_partials/p.jinja", "line one\n{{ missing }}\n")]);
        let p = prompt(
            "m.prompty",
            "---\nname: m\n---\n{% include '_partials/p.jinja' %}\n",
        );
        let err = render_case(&p, ws, serde_json::json!({}), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompts/_partials/p.jinja:2:4: error: undefined variable `missing`"
        );
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let p = prompt(
            "l.prompty",
            "---\nname: l\n---\n{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\n",
        );
        let start = std::time::Instant::now();
        let err = render_case(&p, files(&[]), serde_json::json!({}), None).unwrap_err();
        assert!(err.message.contains("fuel exhausted"), "{}", err.message);
        // Not a timing assertion on speed, only a guard that the bound is a bound at all.
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn huge_ranges_fail_with_a_clear_message() {
        let p = prompt(
            "l.prompty",
            "---\nname: l\n---\n{% for i in range(1000000000) %}x{% endfor %}\n",
        );
        let err = render_case(&p, files(&[]), serde_json::json!({}), None).unwrap_err();
        assert!(
            err.message.contains("range has too many elements"),
            "{}",
            err.message
        );
        assert_eq!(err.position, Position::new(4, 13));
    }

    #[test]
    fn unbounded_recursion_is_stopped() {
        let ws = files(&[(
            "_partials/self.jinja",
            "{% include '_partials/self.jinja' %}",
        )]);
        let p = prompt(
            "r.prompty",
            "---\nname: r\n---\n{% include '_partials/self.jinja' %}\n",
        );
        let err = render_case(&p, ws, serde_json::json!({}), None).unwrap_err();
        assert!(err.message.contains("recursion"), "{}", err.message);
    }

    #[test]
    fn raw_blocks_and_template_none_keep_braces() {
        let p = prompt(
            "r.prompty",
            "---\nname: r\n---\n{% raw %}{\"a\": {{x}}}{% endraw %}\n",
        );
        let r = render_case(&p, files(&[]), serde_json::json!({}), None).unwrap();
        assert_eq!(r.messages[0].content, "{\"a\": {{x}}}");
        let p = prompt(
            "n.prompty",
            "---\nname: n\ntemplate: none\n---\n{\"a\": {{x}} {% if %}}\n",
        );
        let r = render_case(&p, files(&[]), serde_json::json!({}), None).unwrap();
        assert_eq!(r.messages[0].content, "{\"a\": {{x}} {% if %}}");
    }

    #[test]
    fn no_autoescape_for_any_name() {
        let p = prompt("data.json.prompty", "---\nname: j\n---\n{{ s }}\n");
        let r = render_case(
            &p,
            files(&[]),
            serde_json::json!({"s": "<b>\"q\"</b> & 'x'"}),
            None,
        )
        .unwrap();
        assert_eq!(r.messages[0].content, "<b>\"q\"</b> & 'x'");
    }

    #[test]
    fn syntax_errors_are_located() {
        let p = prompt(
            "s.prompty",
            "---\nname: s\n---\nuser:\n{% if x %}\nno end\n",
        );
        let err = render_case(&p, files(&[]), serde_json::json!({"x": true}), None).unwrap_err();
        assert!(
            err.message.starts_with("template syntax error"),
            "{}",
            err.message
        );
        assert_eq!(err.path, PathBuf::from("prompts/s.prompty"));
    }

    #[test]
    fn empty_messages_warn() {
        let p = prompt(
            "e.prompty",
            "---\nname: e\n---\nsystem:\n{{ s }}\nuser:\nhi\n",
        );
        let r = render_case(&p, files(&[]), serde_json::json!({"s": ""}), None).unwrap();
        assert_eq!(r.messages.len(), 1);
        assert_eq!(
            r.warnings[0].message,
            "message 1 (system) is empty after rendering and was dropped"
        );
    }
}
