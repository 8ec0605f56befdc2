//! Converting a promptfoo config (`promptfooconfig.yaml`) into a promptdeck project: prompts
//! become `.prompty` files, `tests` and `defaultTest` become a tests file beside each prompt
//! (promptdeck reads promptfoo's test schema, so cases carry over nearly verbatim), and
//! providers become `[backends.*]` tables. PURE: files the config names with `file://` are read
//! through the caller's [`ReadFile`]; the result is text for the caller to write.
//!
//! Whatever cannot be converted faithfully is left out and listed in [`Conversion::notes`] with
//! the reason, so nothing is dropped silently: prompts and assertions that run code
//! (JavaScript, Python), providers promptdeck has no client for, promptfoo-only keys. API keys
//! written inline in a config are never copied.

use serde_json::{Map, Value};

use crate::suite::AssertionKind;
use crate::yaml;

/// Reads a file named relative to the config's folder; `Err` carries why it cannot be read.
pub type ReadFile<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// A converted project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversion {
    /// Path relative to the output folder -> content.
    pub files: Vec<(String, String)>,
    /// The backends created, in order; the first is the default.
    pub backends: Vec<String>,
    /// What was not converted, or converted with a change, and why.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("{line}:{col}: {message}")]
    Yaml {
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{0}")]
    Shape(String),
}

/// One prompt found in the config.
struct PromptSource {
    name: String,
    label: Option<String>,
    /// The prompty body (role markers and Jinja).
    body: String,
}

/// A backend table to write.
struct Backend {
    name: String,
    kind: &'static str,
    model: String,
    base_url: Option<String>,
    api_key_env: Option<String>,
    parameters: Map<String, Value>,
}

/// Converts the config text.
pub fn convert(config: &str, read: ReadFile<'_>) -> Result<Conversion, ImportError> {
    let root = yaml::parse(config).map_err(|e| ImportError::Yaml {
        line: e.position.line,
        col: e.position.col,
        message: e.message,
    })?;
    let root = root.to_json();
    let Value::Object(root) = root else {
        return Err(ImportError::Shape(
            "a promptfoo config is a mapping with `prompts`, `providers` and `tests`".to_owned(),
        ));
    };
    let mut notes = Vec::new();
    for (key, value) in &root {
        match key.as_str() {
            "prompts" | "providers" | "tests" | "defaultTest" | "description" => {}
            "evaluateOptions" => {
                if let Some(repeat) = value.get("repeat") {
                    notes.push(format!(
                        "evaluateOptions.repeat {repeat}: pass `promptdeck test --repeat {repeat}` instead"
                    ));
                }
                if value.get("maxConcurrency").is_some() {
                    notes.push(
                        "evaluateOptions.maxConcurrency: set as `concurrency` of each backend"
                            .to_owned(),
                    );
                }
            }
            other => notes.push(format!(
                "`{other}`: a promptfoo setting promptdeck has no equivalent for; left out"
            )),
        }
    }
    let concurrency = root
        .get("evaluateOptions")
        .and_then(|o| o.get("maxConcurrency"))
        .and_then(Value::as_u64);

    let prompts = convert_prompts(root.get("prompts"), read, &mut notes)?;
    let backends = convert_providers(root.get("providers"), &mut notes);
    let default_test = match root.get("defaultTest") {
        Some(Value::String(s)) if s.starts_with("file://") => Some(load_structured(s, read)?),
        Some(other) => Some(other.clone()),
        None => None,
    };
    let tests = match root.get("tests") {
        Some(Value::String(s)) if s.starts_with("file://") && is_structured(s) => {
            Some(load_structured(s, read)?)
        }
        Some(Value::String(s)) => {
            notes.push(format!(
                "tests `{s}`: only inline tests and YAML or JSON test files convert (CSV, scripts and datasets do not); no tests written"
            ));
            None
        }
        Some(other) => Some(other.clone()),
        None => None,
    };
    let tests_file = build_tests(default_test, tests, read, &mut notes);

    for b in &backends {
        for (k, v) in &b.parameters {
            if !backends.iter().all(|o| o.parameters.get(k) == Some(v)) {
                notes.push(format!(
                    "backend {}: {k} = {v} differs between providers; promptdeck sets parameters per project ([defaults.parameters]) or per prompt (model.parameters), so it was not set",
                    b.name
                ));
            }
        }
    }
    let mut files = Vec::new();
    files.push((
        "promptdeck.toml".to_owned(),
        config_text(&backends, concurrency, root.get("description")),
    ));
    let default_backend = backends.first().map(|b| b.name.clone());
    for prompt in &prompts {
        files.push((
            format!("prompts/{}.prompty", prompt.name),
            prompty_text(prompt, root.get("description"), default_backend.as_deref()),
        ));
        if let Some(tests) = &tests_file {
            files.push((format!("prompts/{}.tests.yaml", prompt.name), tests.clone()));
        }
    }
    if backends.len() > 1 {
        notes.push(format!(
            "promptfoo runs every provider; promptdeck runs the prompt's backend ({}) unless told: `promptdeck test --backend {}`",
            backends[0].name,
            backends
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    Ok(Conversion {
        files,
        backends: backends.into_iter().map(|b| b.name).collect(),
        notes,
    })
}

fn is_structured(reference: &str) -> bool {
    let lower = reference.to_ascii_lowercase();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// A `file://` YAML or JSON file, as JSON.
fn load_structured(reference: &str, read: ReadFile<'_>) -> Result<Value, ImportError> {
    let path = reference.trim_start_matches("file://");
    let text = read(path).map_err(ImportError::Shape)?;
    yaml::parse(&text).map(|n| n.to_json()).map_err(|e| {
        ImportError::Shape(format!(
            "{path}:{}:{}: {}",
            e.position.line, e.position.col, e.message
        ))
    })
}

/// `[A-Za-z0-9._-]` names: what backends and prompt files are called.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').trim_start_matches('.').to_owned();
    if out.is_empty() { "x".to_owned() } else { out }
}

fn unique(name: String, taken: &[String]) -> String {
    if !taken.contains(&name) {
        return name;
    }
    (2..)
        .map(|i| format!("{name}-{i}"))
        .find(|n| !taken.contains(n))
        .unwrap_or(name)
}

fn convert_prompts(
    value: Option<&Value>,
    read: ReadFile<'_>,
    notes: &mut Vec<String>,
) -> Result<Vec<PromptSource>, ImportError> {
    let items: Vec<Value> = match value {
        None => {
            return Err(ImportError::Shape("the config has no `prompts`".to_owned()));
        }
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Object(map)) => map
            // The map form: file path (or text) -> label.
            .iter()
            .map(|(k, v)| serde_json::json!({"raw": k, "label": v}))
            .collect(),
        Some(other) => {
            return Err(ImportError::Shape(format!(
                "`prompts` must be a list, found {other}"
            )));
        }
    };
    let mut out: Vec<PromptSource> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (raw, label, id) = match item {
            Value::String(s) => (s.clone(), None, None),
            Value::Object(map) => (
                map.get("raw")
                    .or_else(|| map.get("id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                map.get("label").and_then(Value::as_str).map(str::to_owned),
                map.get("id").and_then(Value::as_str).map(str::to_owned),
            ),
            other => {
                notes.push(format!(
                    "prompt {}: {other} is not a prompt; left out",
                    i + 1
                ));
                continue;
            }
        };
        let (text, stem) = match raw.strip_prefix("file://") {
            Some(path) => {
                let lower = path.to_ascii_lowercase();
                if [".js", ".ts", ".py", ".mjs", ".cjs"]
                    .iter()
                    .any(|e| lower.contains(&format!("{e}:")) || lower.ends_with(e))
                {
                    notes.push(format!(
                        "prompt `{raw}`: generated by code, which promptdeck does not run; left out"
                    ));
                    continue;
                }
                if path.contains('*') {
                    notes.push(format!(
                        "prompt `{raw}`: globs are not expanded; name each file"
                    ));
                    continue;
                }
                let text = read(path).map_err(ImportError::Shape)?;
                let stem = std::path::Path::new(path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned());
                (text, stem)
            }
            None => (raw.clone(), None),
        };
        let body = match chat_body(&text) {
            Some(body) => body,
            None => {
                let text = text.trim_end();
                if text
                    .lines()
                    .any(|l| crate::prompt::roles::marker_role(l).is_some())
                {
                    notes.push(format!(
                        "prompt {}: a line of it reads as a role marker (`user:`...) and starts a new message in promptdeck",
                        i + 1
                    ));
                }
                format!("user:\n{}\n", nunjucks_to_jinja(text))
            }
        };
        let taken: Vec<String> = out.iter().map(|p| p.name.clone()).collect();
        let base = label
            .as_deref()
            .or(id.as_deref().filter(|id| !id.starts_with("file://")))
            .map(slug)
            .or(stem.map(|s| slug(&s)))
            .unwrap_or_else(|| format!("prompt-{}", i + 1));
        out.push(PromptSource {
            name: unique(base, &taken),
            label,
            body,
        });
    }
    if out.is_empty() {
        return Err(ImportError::Shape(
            "no prompt of the config could be converted".to_owned(),
        ));
    }
    Ok(out)
}

/// promptfoo's chat format (a JSON or YAML list of `{role, content}`) as role-marker sections.
fn chat_body(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let value: Value = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).ok()?
    } else if trimmed.starts_with("- role:") {
        yaml::parse(trimmed).ok()?.to_json()
    } else {
        return None;
    };
    let messages = value.as_array()?;
    let mut body = String::new();
    for m in messages {
        let role = m.get("role")?.as_str()?;
        if !matches!(role, "system" | "user" | "assistant") {
            return None;
        }
        let content = m.get("content")?.as_str()?;
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(role);
        body.push_str(":\n");
        body.push_str(&nunjucks_to_jinja(content.trim_end()));
        body.push('\n');
    }
    (!body.is_empty()).then_some(body)
}

/// Nunjucks filters whose Jinja names differ.
fn nunjucks_to_jinja(text: &str) -> String {
    text.replace("| dump", "| tojson")
        .replace("|dump", "|tojson")
}

fn convert_providers(value: Option<&Value>, notes: &mut Vec<String>) -> Vec<Backend> {
    let items: Vec<Value> = match value {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Object(map)) => map
            .iter()
            .map(|(id, options)| {
                let mut o = options.as_object().cloned().unwrap_or_default();
                o.insert("id".into(), Value::String(id.clone()));
                Value::Object(o)
            })
            .collect(),
        Some(other) => {
            notes.push(format!(
                "`providers` {other} is not a list; no backends written"
            ));
            Vec::new()
        }
    };
    let mut out: Vec<Backend> = Vec::new();
    for item in items {
        let (id, label, config) = match &item {
            Value::String(s) => (s.clone(), None, Map::new()),
            Value::Object(map) => (
                map.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                map.get("label").and_then(Value::as_str).map(str::to_owned),
                map.get("config")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            ),
            other => {
                notes.push(format!("provider {other}: not a provider; left out"));
                continue;
            }
        };
        let Some((kind, model, base_url, key_env)) = provider_kind(&id, notes) else {
            continue;
        };
        let mut backend = Backend {
            name: String::new(),
            kind,
            model,
            base_url,
            api_key_env: key_env,
            parameters: Map::new(),
        };
        for (key, value) in &config {
            match key.as_str() {
                "apiBaseUrl" | "baseUrl" => backend.base_url = value.as_str().map(str::to_owned),
                "apiHost" => {
                    backend.base_url = value.as_str().map(|h| format!("https://{h}/v1"));
                }
                "apiKeyEnvar" => backend.api_key_env = value.as_str().map(str::to_owned),
                "apiKey" => notes.push(format!(
                    "provider {id}: an inline apiKey is never copied; put the key in an environment variable and name it with api_key_env"
                )),
                "temperature" | "max_tokens" | "top_p" | "seed" | "stop" => {
                    backend.parameters.insert(key.clone(), value.clone());
                }
                "maxTokens" => {
                    backend.parameters.insert("max_tokens".into(), value.clone());
                }
                other => notes.push(format!(
                    "provider {id}: config `{other}` has no promptdeck backend key; left out"
                )),
            }
        }
        let taken: Vec<String> = out.iter().map(|b| b.name.clone()).collect();
        backend.name = unique(slug(label.as_deref().unwrap_or(&backend.model)), &taken);
        out.push(backend);
    }
    out
}

/// `(kind, model, base_url, api_key_env)` of a provider id, or `None` (with a note).
fn provider_kind(
    id: &str,
    notes: &mut Vec<String>,
) -> Option<(&'static str, String, Option<String>, Option<String>)> {
    let (prefix, rest) = id.split_once(':').unwrap_or((id, ""));
    let strip = |rest: &str, kinds: &[&str]| -> String {
        for k in kinds {
            if let Some(model) = rest.strip_prefix(&format!("{k}:")) {
                return model.to_owned();
            }
        }
        rest.to_owned()
    };
    let model = match prefix {
        "openai" => {
            if rest.starts_with("embedding") || rest.starts_with("embeddings") {
                notes.push(format!(
                    "provider {id}: embeddings are not a chat backend; left out"
                ));
                return None;
            }
            if rest.starts_with("completion:") {
                notes.push(format!(
                    "provider {id}: converted to the chat API (promptdeck has no completion endpoint)"
                ));
            }
            return Some((
                "openai",
                strip(rest, &["chat", "completion", "responses"]),
                None,
                None,
            ));
        }
        "anthropic" => strip(rest, &["messages", "completion"]),
        "vertex" | "google" => {
            if prefix == "vertex" {
                notes.push(format!(
                    "provider {id}: Vertex AI authenticates with Google Cloud credentials; converted to the Gemini API, which takes GEMINI_API_KEY"
                ));
            }
            return Some(("gemini", strip(rest, &["chat"]), None, None));
        }
        "ollama" => {
            return Some((
                "openai",
                strip(rest, &["chat", "completion"]),
                Some("http://localhost:11434/v1".to_owned()),
                None,
            ));
        }
        _ => {
            notes.push(format!(
                "provider {id}: no promptdeck backend for this kind (promptdeck has openai and any OpenAI-compatible server, anthropic, gemini and local); left out"
            ));
            return None;
        }
    };
    if model.is_empty() {
        notes.push(format!("provider {id}: names no model; left out"));
        return None;
    }
    Some(("anthropic", model, None, None))
}

/// The tests file shared by every converted prompt, as YAML text.
fn build_tests(
    default_test: Option<Value>,
    tests: Option<Value>,
    read: ReadFile<'_>,
    notes: &mut Vec<String>,
) -> Option<String> {
    let cases = match tests {
        Some(Value::Array(cases)) => cases,
        Some(other) if other.is_object() => vec![other],
        Some(_) | None => {
            notes
                .push("no `tests` to convert; prompts were written without tests files".to_owned());
            return None;
        }
    };
    let mut out = Map::new();
    if let Some(Value::Object(d)) = default_test {
        let d = clean_case(&d, "defaultTest", read, notes, true);
        if !d.is_empty() {
            out.insert("defaultTest".into(), Value::Object(d));
        }
    }
    let mut converted = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        match case {
            Value::Object(c) => {
                let name = c
                    .get("description")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("test {}", i + 1), |d| format!("test \"{d}\""));
                converted.push(Value::Object(clean_case(c, &name, read, notes, false)));
            }
            Value::String(s) => notes.push(format!(
                "tests: `{s}` names more tests in a file; only inline tests convert"
            )),
            other => notes.push(format!("test {}: {other} is not a test case", i + 1)),
        }
    }
    if converted.is_empty() {
        notes.push("no test case could be converted".to_owned());
        return None;
    }
    out.insert("tests".into(), Value::Array(converted));
    Some(yaml_text(&Value::Object(out)))
}

/// A test case (or defaultTest) with what promptdeck understands.
fn clean_case(
    case: &Map<String, Value>,
    name: &str,
    read: ReadFile<'_>,
    notes: &mut Vec<String>,
    is_default: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in case {
        match key.as_str() {
            "description" | "threshold" | "metadata" => {
                if !(is_default && key == "description") {
                    out.insert(key.clone(), value.clone());
                }
            }
            "options" => {
                if let Value::Object(options) = value {
                    let mut kept = Map::new();
                    for (k, v) in options {
                        if k == "provider" || k.contains("transform") || k.ends_with("Function") {
                            notes.push(format!("{name}: options.{k} is not supported; left out"));
                        } else {
                            kept.insert(k.clone(), v.clone());
                        }
                    }
                    if !kept.is_empty() {
                        out.insert(key.clone(), Value::Object(kept));
                    }
                }
            }
            "vars" => {
                if let Value::Object(vars) = value {
                    let mut kept = Map::new();
                    for (k, v) in vars {
                        match v.as_str().and_then(|s| s.strip_prefix("file://")) {
                            Some(path) if is_code(path) => notes.push(format!(
                                "{name}: var `{k}` is computed by code ({path}); left out"
                            )),
                            Some(path) => match read(path) {
                                // The file's text, inlined: the file lives beside the promptfoo
                                // config, outside the new project's prompts folder.
                                Ok(text) => {
                                    kept.insert(k.clone(), Value::String(text));
                                }
                                Err(e) => notes.push(format!("{name}: var `{k}`: {e}; left out")),
                            },
                            None => {
                                kept.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    out.insert(key.clone(), Value::Object(kept));
                } else {
                    notes.push(format!("{name}: `vars` is not a mapping; left out"));
                }
            }
            "assert" => {
                let mut kept = Vec::new();
                for assertion in value.as_array().into_iter().flatten() {
                    if let Some(a) = clean_assertion(assertion, name, notes) {
                        kept.push(a);
                    }
                }
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Array(kept));
                }
            }
            other => notes.push(format!("{name}: `{other}` is not supported; left out")),
        }
    }
    out
}

fn is_code(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".js", ".ts", ".py", ".mjs", ".cjs"]
        .iter()
        .any(|e| lower.ends_with(e) || lower.contains(&format!("{e}:")))
}

fn clean_assertion(assertion: &Value, name: &str, notes: &mut Vec<String>) -> Option<Value> {
    let map = assertion.as_object()?;
    let type_name = map.get("type").and_then(Value::as_str).unwrap_or_default();
    let base = type_name.strip_prefix("not-").unwrap_or(type_name);
    if AssertionKind::from_name(base).is_none() {
        let why = match base {
            "javascript" | "python" | "webhook" => "runs code, which promptdeck does not",
            _ => "is not an assertion type promptdeck has",
        };
        notes.push(format!("{name}: assertion `{type_name}` {why}; left out"));
        return None;
    }
    if let Some(Value::String(v)) = map.get("value") {
        if v.starts_with("file://") {
            notes.push(format!(
                "{name}: assertion `{type_name}` takes its value from {v}; left out"
            ));
            return None;
        }
    }
    let mut out = Map::new();
    for (k, v) in map {
        match k.as_str() {
            "type" | "value" | "threshold" | "weight" | "metric" | "provider" => {
                out.insert(k.clone(), v.clone());
            }
            other => notes.push(format!(
                "{name}: `{other}` of assertion `{type_name}` is not supported; left out"
            )),
        }
    }
    Some(Value::Object(out))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn config_text(
    backends: &[Backend],
    concurrency: Option<u64>,
    description: Option<&Value>,
) -> String {
    let mut text =
        String::from("# Converted from a promptfoo config by `promptdeck import-promptfoo`.\n");
    if let Some(d) = description.and_then(Value::as_str) {
        text.push_str(&format!("# {}\n", d.lines().next().unwrap_or_default()));
    }
    let default = backends.first().map_or("local", |b| b.name.as_str());
    text.push_str(&format!(
        "\n[defaults]\nbackend = {}\n",
        toml_string(default)
    ));
    // Parameters every provider agrees on become project defaults; promptdeck has no per-backend
    // parameters.
    if let Some(first) = backends.first() {
        let shared: Vec<(&String, &Value)> = first
            .parameters
            .iter()
            .filter(|(k, v)| backends.iter().all(|b| b.parameters.get(*k) == Some(*v)))
            .collect();
        if !shared.is_empty() {
            text.push_str("\n[defaults.parameters]\n");
            for (k, v) in shared {
                let value = match v {
                    Value::String(s) => toml_string(s),
                    other => other.to_string(),
                };
                text.push_str(&format!("{k} = {value}\n"));
            }
        }
    }
    if backends.is_empty() {
        text.push_str("\n[backends.local]\nkind = \"local\"\n");
    }
    for b in backends {
        // A bare TOML key cannot hold a dot (`gemini-1.5-pro` would be a nested table).
        let key = if b
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            b.name.clone()
        } else {
            toml_string(&b.name)
        };
        text.push_str(&format!(
            "\n[backends.{key}]\nkind = \"{}\"\nmodel = {}\n",
            b.kind,
            toml_string(&b.model)
        ));
        if let Some(url) = &b.base_url {
            text.push_str(&format!("base_url = {}\n", toml_string(url)));
        }
        if let Some(env) = &b.api_key_env {
            text.push_str(&format!("api_key_env = {}\n", toml_string(env)));
        }
        if let Some(c) = concurrency {
            text.push_str(&format!("concurrency = {c}\n"));
        }
    }
    text
}

fn prompty_text(
    prompt: &PromptSource,
    description: Option<&Value>,
    backend: Option<&str>,
) -> String {
    let mut front = format!("---\nname: {}\n", yaml_scalar(&prompt.name));
    let description = prompt
        .label
        .clone()
        .or_else(|| description.and_then(Value::as_str).map(str::to_owned));
    if let Some(d) = description {
        front.push_str(&format!(
            "description: {}\n",
            yaml_scalar(d.lines().next().unwrap_or_default())
        ));
    }
    if let Some(b) = backend {
        front.push_str(&format!("model:\n  backend: {}\n", yaml_scalar(b)));
    }
    front.push_str("---\n");
    front.push_str(&prompt.body);
    front
}

/// A one-line YAML scalar, quoted as JSON (valid YAML) when plain text would be misread.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '/' | '(' | ')' | ',')
        })
        && !s.starts_with(['-', ' '])
        && !s.ends_with(' ')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        );
    if plain && s.parse::<f64>().is_err() {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

fn to_yaml(value: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut hash = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), to_yaml(v));
            }
            Yaml::Hash(hash)
        }
    }
}

fn yaml_text(value: &Value) -> String {
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    // Emitting into a String cannot fail.
    let _ = emitter.dump(&to_yaml(value));
    let body = out.strip_prefix("---\n").unwrap_or(&out).to_owned();
    format!("# Converted from a promptfoo config by `promptdeck import-promptfoo`.\n{body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_files(path: &str) -> Result<String, String> {
        Err(format!("{path}: not found"))
    }

    #[test]
    fn providers_by_kind() {
        let mut notes = Vec::new();
        let backends = convert_providers(
            Some(&serde_json::json!([
                "openai:gpt-4o-mini",
                "openai:chat:llama2",
                "anthropic:messages:claude-3-5-haiku-latest",
                "vertex:gemini-1.5-pro",
                "google:gemini-2.0-flash",
                "ollama:chat:llama3.2",
                {"id": "openai:chat:local-model", "label": "My Server", "config": {"apiBaseUrl": "http://127.0.0.1:8000/v1", "apiKey": "sk-secret", "temperature": 0}},
                "bedrock:anthropic.claude-v2",
                "python:provider.py",
            ])),
            &mut notes,
        );
        let summary: Vec<(String, &str, String, Option<String>)> = backends
            .iter()
            .map(|b| (b.name.clone(), b.kind, b.model.clone(), b.base_url.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("gpt-4o-mini".into(), "openai", "gpt-4o-mini".into(), None),
                ("llama2".into(), "openai", "llama2".into(), None),
                (
                    "claude-3-5-haiku-latest".into(),
                    "anthropic",
                    "claude-3-5-haiku-latest".into(),
                    None
                ),
                (
                    "gemini-1.5-pro".into(),
                    "gemini",
                    "gemini-1.5-pro".into(),
                    None
                ),
                (
                    "gemini-2.0-flash".into(),
                    "gemini",
                    "gemini-2.0-flash".into(),
                    None
                ),
                (
                    "llama3.2".into(),
                    "openai",
                    "llama3.2".into(),
                    Some("http://localhost:11434/v1".into())
                ),
                (
                    "my-server".into(),
                    "openai",
                    "local-model".into(),
                    Some("http://127.0.0.1:8000/v1".into())
                ),
            ]
        );
        let notes = notes.join("\n");
        assert!(notes.contains("Vertex AI"), "{notes}");
        assert!(notes.contains("inline apiKey is never copied"), "{notes}");
        assert!(
            notes.contains("bedrock:anthropic.claude-v2: no promptdeck backend"),
            "{notes}"
        );
        assert!(!notes.contains("sk-secret"), "{notes}");
    }

    #[test]
    fn chat_prompts_and_code() {
        assert_eq!(
            chat_body(r#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{ q | dump }}"}]"#).as_deref(),
            Some("system:\nBe brief.\n\nuser:\n{{ q | tojson }}\n")
        );
        assert_eq!(chat_body("Just text"), None);
        let config = "prompts:\n  - 'Translate to {{language}}: {{input}}'\n  - file://gen.py:make\nproviders: [openai:gpt-4o-mini]\ntests:\n  - vars: {language: French, input: Hello}\n    assert:\n      - type: icontains\n        value: bonjour\n      - type: javascript\n        value: output.length < 100\n";
        let c = convert(config, &no_files).unwrap();
        let names: Vec<&str> = c.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "promptdeck.toml",
                "prompts/prompt-1.prompty",
                "prompts/prompt-1.tests.yaml"
            ]
        );
        assert_eq!(
            c.files[1].1,
            "---\nname: prompt-1\nmodel:\n  backend: gpt-4o-mini\n---\nuser:\nTranslate to {{language}}: {{input}}\n"
        );
        assert!(!c.files[2].1.contains("javascript"), "{}", c.files[2].1);
        let notes = c.notes.join("\n");
        assert!(
            notes.contains("file://gen.py:make`: generated by code"),
            "{notes}"
        );
        assert!(
            notes.contains("assertion `javascript` runs code"),
            "{notes}"
        );
    }
}
