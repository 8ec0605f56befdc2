//! A user's project: finding its root, reading `promptdeck.toml`, and the on-disk prompt library.
//!
//! The config is parsed in two steps: [`RawConfig`] mirrors the TOML exactly (unknown keys and
//! wrong types are errors with file:line:col), then [`Config::validate`] turns it into settings the
//! rest of promptdeck can trust. [`DiskWorkspace`] is the IO edge behind the pure prompt module's
//! [`Workspace`] trait; it is where symlinks that lead out of the library are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Position};
use crate::prompt::{PROMPT_EXTENSION, Parameters, TESTS_SUFFIX, Workspace};
use crate::user_file::{self, UserFileError};

pub const CONFIG_FILE: &str = "promptdeck.toml";
pub const PROMPTS_DIR: &str = "prompts";
/// Where promptdeck keeps its store and caches, inside the project.
pub const DATA_DIR: &str = ".promptdeck";

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(
        "no {CONFIG_FILE} found in {start} or any parent directory; run `promptdeck init` to create a project, or pass --project DIR"
    )]
    NotFound { start: PathBuf },
    #[error("{dir} has no {CONFIG_FILE}; run `promptdeck init {dir}` to create a project there")]
    NotAProject { dir: PathBuf },
    #[error("{0}")]
    Config(Diagnostic),
    #[error("{}", .0.to_diagnostic())]
    File(#[from] UserFileError),
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Raw config: exactly what the TOML may contain.

/// `promptdeck.toml`, as written.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "promptdeck.toml",
    description = "Configuration of a promptdeck project."
)]
pub struct RawConfig {
    /// Defaults for every prompt of the project.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Limits on template rendering.
    #[serde(default)]
    pub render: RawRender,
    /// Model backends, by the name prompts use in `model.backend` and `--backend`.
    #[serde(default)]
    pub backends: BTreeMap<String, RawBackend>,
    /// Command tools that ReAct prompts may call. Only tools listed here can run.
    #[serde(default)]
    pub tools: BTreeMap<String, RawTool>,
    /// Key bindings of the terminal UI over its defaults: context (global, editor, tree, cases,
    /// preview, outputs, compare, history, models) -> key (`ctrl-r`, `f5`, `?`) -> action name,
    /// or "none" to unbind. `promptdeck tui` checks the names when it starts.
    #[serde(default)]
    pub keys: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Backend used when neither the prompt nor the command line names one.
    pub backend: Option<String>,
    /// Sampling parameters applied under each prompt's own `model.parameters`.
    #[serde(default)]
    pub parameters: Option<RawParameters>,
    /// Colour theme of the terminal UI (a file name in themes/, without `.toml`).
    pub theme: Option<String>,
    /// The backend that grades `llm-rubric` and `model-graded-closedqa` assertions, unless an
    /// assertion's `provider` or a case's `options.provider` names another.
    pub judge: Option<String>,
}

/// Sampling parameters; the same keys as a prompt's `model.parameters`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParameters {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub min_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRender {
    /// Template instructions one render may execute before it is stopped (default 2,000,000).
    pub fuel: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The in-process GGUF engine.
    Local,
    /// OpenAI's Chat Completions API, or any compatible server (vLLM, Ollama, llama.cpp...).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini generateContent API.
    Gemini,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Openai => "openai",
            BackendKind::Anthropic => "anthropic",
            BackendKind::Gemini => "gemini",
        }
    }

    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            BackendKind::Local => None,
            BackendKind::Openai => Some("OPENAI_API_KEY"),
            BackendKind::Anthropic => Some("ANTHROPIC_API_KEY"),
            BackendKind::Gemini => Some("GEMINI_API_KEY"),
        }
    }
}

/// One `[backends.NAME]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub kind: BackendKind,
    /// Model name for APIs; for `local`, a GGUF path or the default model's name.
    pub model: Option<String>,
    /// API base URL; with `kind = "openai"` any OpenAI-compatible server.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
    pub requests_per_minute: Option<u32>,
    /// Seconds without data (keep-alive pings do not count) before a request fails.
    pub timeout: Option<f64>,
    /// Attempts after the first on 429, 5xx and connection errors.
    pub retries: Option<u32>,
    /// Seconds all attempts of one request may take together, waits included (default 120).
    pub max_retry_time: Option<f64>,
    /// Seconds of the first backoff step before a retry (default 1); it doubles per retry,
    /// with full jitter. A server's Retry-After wins over it.
    pub backoff_base: Option<f64>,
    /// Seconds to wait for a connection (default 10).
    pub connect_timeout: Option<f64>,
    /// Extra HTTP headers (for Azure-style deployments or gateways).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra query parameters (e.g. Azure's `api-version`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Prices in USD per million tokens.
    pub prices: Option<RawPrices>,
    /// Local engine: CPU threads for inference.
    pub threads: Option<u32>,
    /// Local engine, candle only: keep Q4_1 weights as stored (slower, closer to llama.cpp)
    /// instead of repacking them to Q8_0. Files the native kernels run (llama Q4_1/Q8_0, gemma3
    /// Q4_1/Q5_0/Q8_0/Q4_K/Q6_K) are always held as stored, so there it changes nothing.
    pub exact: Option<bool>,
    /// Sampling parameters laid over every prompt's own on this backend (the command line's
    /// still win): two entries for one model are two sampling configurations to compare.
    pub sampling: Option<RawSampling>,
}

/// A backend's `sampling` table: the sampling subset of a prompt's `model.parameters`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub min_p: Option<f64>,
    pub seed: Option<u64>,
    pub repeat_penalty: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrices {
    pub input: f64,
    pub output: f64,
}

/// A command a ReAct prompt may run: executed without a shell, with a timeout.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    /// Program and fixed arguments; the model's action input is passed as the last argument.
    pub command: Vec<String>,
    /// Shown to the model in the tool list.
    pub description: String,
    /// Seconds before the command is killed (default 10).
    pub timeout: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Validated config.

#[derive(Debug, Clone)]
pub struct Config {
    pub default_backend: String,
    pub default_parameters: Parameters,
    pub theme: Option<String>,
    /// `[defaults] judge`, checked to be a configured backend.
    pub judge: Option<String>,
    pub fuel: u64,
    pub backends: BTreeMap<String, RawBackend>,
    pub tools: BTreeMap<String, RawTool>,
    /// `[keys]`: key binding overrides for the TUI, validated by `tui::keymap`.
    pub keys: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config::validate(
            RawConfig::default(),
            &|_| Position::START,
            Path::new(CONFIG_FILE),
        )
        .unwrap_or_else(|_| Config {
            default_backend: "local".to_owned(),
            default_parameters: Parameters::default(),
            theme: None,
            judge: None,
            fuel: crate::prompt::template::DEFAULT_FUEL,
            backends: BTreeMap::new(),
            tools: BTreeMap::new(),
            keys: BTreeMap::new(),
        })
    }
}

impl Config {
    /// Parses the text of a `promptdeck.toml`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Diagnostic> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let position = e.span().map_or(Position::START, |span| {
                Position::of_byte_offset(text, span.start)
            });
            Diagnostic::error(path, position, e.message().trim().to_owned())
        })?;
        let locate = |needle: &str| {
            text.find(needle).map_or(Position::START, |offset| {
                Position::of_byte_offset(text, offset)
            })
        };
        Config::validate(raw, &locate, path)
    }

    /// Checks what the TOML types cannot express. `locate` finds a table or key in the text so
    /// that these errors are located too.
    fn validate(
        raw: RawConfig,
        locate: &dyn Fn(&str) -> Position,
        path: &Path,
    ) -> Result<Config, Diagnostic> {
        let fail =
            |needle: &str, message: String| Err(Diagnostic::error(path, locate(needle), message));
        let mut backends = raw.backends;
        // The embedded local model is always available, configured or not.
        backends
            .entry("local".to_owned())
            .or_insert_with(|| RawBackend {
                kind: BackendKind::Local,
                model: None,
                base_url: None,
                api_key_env: None,
                concurrency: None,
                requests_per_minute: None,
                timeout: None,
                retries: None,
                max_retry_time: None,
                backoff_base: None,
                connect_timeout: None,
                headers: BTreeMap::new(),
                query: BTreeMap::new(),
                prices: None,
                threads: None,
                exact: None,
                sampling: None,
            });
        for (name, backend) in &backends {
            let table = format!("[backends.{name}]");
            if !valid_name(name) {
                return fail(
                    &table,
                    format!("backend name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                );
            }
            if let Some(env) = &backend.api_key_env {
                if !valid_env_name(env) {
                    // Someone pasted a key where the variable's name belongs: refuse, and do not
                    // echo the value back into a terminal or log.
                    return fail(
                        &table,
                        format!(
                            "backends.{name}.api_key_env must name an environment variable (like OPENAI_API_KEY), not hold a key"
                        ),
                    );
                }
            }
            if backend.kind == BackendKind::Local
                && (backend.base_url.is_some() || backend.api_key_env.is_some())
            {
                return fail(
                    &table,
                    format!("backends.{name}: a local backend takes no base_url or api_key_env"),
                );
            }
            if let Some(url) = &backend.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return fail(
                        &table,
                        format!("backends.{name}.base_url must start with http:// or https://"),
                    );
                }
            }
            if backend.kind != BackendKind::Local && backend.model.is_none() {
                return fail(&table, format!("backends.{name} needs a `model`"));
            }
            if backend.concurrency == Some(0)
                || backend.requests_per_minute == Some(0)
                || backend.threads == Some(0)
            {
                return fail(
                    &table,
                    format!(
                        "backends.{name}: concurrency, requests_per_minute and threads must be at least 1"
                    ),
                );
            }
            for (key, value) in [
                ("timeout", backend.timeout),
                ("max_retry_time", backend.max_retry_time),
                ("backoff_base", backend.backoff_base),
                ("connect_timeout", backend.connect_timeout),
            ] {
                if value.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
                    return fail(
                        &table,
                        format!("backends.{name}.{key} must be a positive number of seconds"),
                    );
                }
            }
            if let Some(prices) = &backend.prices {
                if prices.input < 0.0 || prices.output < 0.0 {
                    return fail(
                        &table,
                        format!("backends.{name}.prices must not be negative"),
                    );
                }
            }
        }
        for (name, tool) in &raw.tools {
            let table = format!("[tools.{name}]");
            if !valid_name(name)
                || crate::prompt::technique::builtin_tool_description(name).is_some()
            {
                return fail(
                    &table,
                    format!("tool name `{name}` is invalid or taken by a built-in tool"),
                );
            }
            if tool
                .command
                .first()
                .is_none_or(|program| program.trim().is_empty())
            {
                return fail(
                    &table,
                    format!("tools.{name}.command needs at least the program to run"),
                );
            }
        }
        let default_backend = raw.defaults.backend.unwrap_or_else(|| "local".to_owned());
        if !backends.contains_key(&default_backend) {
            return fail(
                "backend",
                format!("defaults.backend `{default_backend}` is not a configured backend"),
            );
        }
        if let Some(judge) = &raw.defaults.judge {
            if !backends.contains_key(judge) {
                let known: Vec<&str> = backends.keys().map(String::as_str).collect();
                return fail(
                    "judge",
                    format!(
                        "defaults.judge `{judge}` is not a configured backend (configured: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        let default_parameters = raw.defaults.parameters.map(|p| Parameters {
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            min_p: p.min_p,
            max_tokens: p.max_tokens,
            seed: p.seed,
            stop: p.stop.unwrap_or_default(),
            repeat_penalty: p.repeat_penalty,
        });
        Ok(Config {
            default_backend,
            default_parameters: default_parameters.unwrap_or_default(),
            theme: raw.defaults.theme,
            judge: raw.defaults.judge,
            fuel: raw
                .render
                .fuel
                .unwrap_or(crate::prompt::template::DEFAULT_FUEL)
                .max(1),
            backends,
            tools: raw.tools,
            keys: raw.keys,
        })
    }

    pub fn tool_description(&self, name: &str) -> Option<String> {
        crate::prompt::technique::builtin_tool_description(name)
            .or_else(|| self.tools.get(name).map(|t| t.description.clone()))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// The JSON schema of `promptdeck.toml`, published as docs/promptdeck.schema.json.
pub fn config_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The project on disk.

#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config: Config,
}

impl Project {
    /// Finds the project: `explicit` if given (it must hold promptdeck.toml), else the nearest
    /// directory from `start` upwards that holds one, like git.
    pub fn discover(start: &Path, explicit: Option<&Path>) -> Result<Project, ProjectError> {
        let root = match explicit {
            Some(dir) => {
                let dir = if dir.is_absolute() {
                    dir.to_path_buf()
                } else {
                    start.join(dir)
                };
                if !dir.join(CONFIG_FILE).is_file() {
                    return Err(ProjectError::NotAProject { dir });
                }
                dir
            }
            None => start
                .ancestors()
                .find(|dir| dir.join(CONFIG_FILE).is_file())
                .map(Path::to_path_buf)
                .ok_or_else(|| ProjectError::NotFound {
                    start: start.to_path_buf(),
                })?,
        };
        let config_path = root.join(CONFIG_FILE);
        let text = user_file::read_text(&config_path)?;
        let config = Config::parse(&text, &config_path).map_err(ProjectError::Config)?;
        Ok(Project { root, config })
    }

    pub fn prompts_dir(&self) -> PathBuf {
        self.root.join(PROMPTS_DIR)
    }

    /// Where the version store lives: `.promptdeck/store`.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join(DATA_DIR).join("store")
    }

    /// Opens (creating on first use) the project's version store.
    pub fn open_store(&self) -> Result<crate::store::SledStore, crate::store::StoreError> {
        crate::store::SledStore::open(self.store_dir())
    }

    /// Where API responses are cached: `.promptdeck/cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(DATA_DIR).join("cache")
    }

    /// The API-client configuration of a configured backend; `None` for the local engine.
    pub fn api_backend_config(
        &self,
        name: &str,
    ) -> Result<Option<crate::backend::BackendConfig>, String> {
        use crate::backend::{BackendConfig, Kind, Prices};
        let raw = self.config.backends.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.backends.keys().map(String::as_str).collect();
            format!(
                "no backend `{name}` in {CONFIG_FILE} (configured: {})",
                known.join(", ")
            )
        })?;
        let kind = match raw.kind {
            BackendKind::Local => return Ok(None),
            BackendKind::Openai => Kind::OpenAi,
            BackendKind::Anthropic => Kind::Anthropic,
            BackendKind::Gemini => Kind::Gemini,
        };
        // Validation guarantees API backends name a model.
        let mut config = BackendConfig::new(name, kind, raw.model.clone().unwrap_or_default());
        config.base_url = raw.base_url.clone();
        config.api_key_env = raw.api_key_env.clone();
        if let Some(concurrency) = raw.concurrency {
            config.concurrency = concurrency;
        }
        config.requests_per_minute = raw.requests_per_minute;
        if let Some(timeout) = raw.timeout {
            config.timeout = std::time::Duration::from_secs_f64(timeout);
        }
        if let Some(retries) = raw.retries {
            config.retries = retries;
        }
        if let Some(seconds) = raw.max_retry_time {
            config.max_retry_time = std::time::Duration::from_secs_f64(seconds);
        }
        if let Some(seconds) = raw.backoff_base {
            config.backoff_base = std::time::Duration::from_secs_f64(seconds);
        }
        if let Some(seconds) = raw.connect_timeout {
            config.connect_timeout = std::time::Duration::from_secs_f64(seconds);
        }
        config.headers = raw.headers.clone();
        config.query = raw.query.clone();
        config.prices = raw.prices.as_ref().map(|p| Prices {
            input: p.input,
            output: p.output,
        });
        Ok(Some(config))
    }

    /// The `sampling` table of a backend as parameters to lay over a prompt's own (empty for
    /// an unknown backend or one without the table).
    pub fn backend_sampling(&self, name: &str) -> crate::backend::Parameters {
        let Some(s) = self
            .config
            .backends
            .get(name)
            .and_then(|b| b.sampling.as_ref())
        else {
            return crate::backend::Parameters::default();
        };
        crate::backend::Parameters {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            seed: s.seed,
            repeat_penalty: s.repeat_penalty,
            ..crate::backend::Parameters::default()
        }
    }

    pub fn workspace(&self) -> DiskWorkspace {
        DiskWorkspace::new(&self.root)
    }

    /// Resolves what a user typed as PROMPT: a path to a `.prompty` file, or its name relative
    /// to `prompts/` (`cot/math`). Returns the library file name (`cot/math.prompty`).
    pub fn resolve_prompt(&self, spec: &str, cwd: &Path) -> Result<String, String> {
        let prompts = self.prompts_dir();
        let as_path = if Path::new(spec).is_absolute() {
            PathBuf::from(spec)
        } else {
            cwd.join(spec)
        };
        if spec.ends_with(&format!(".{PROMPT_EXTENSION}")) && as_path.is_file() {
            let canonical_prompts = prompts
                .canonicalize()
                .map_err(|e| format!("cannot access {}: {e}", prompts.display()))?;
            let canonical = as_path
                .canonicalize()
                .map_err(|e| format!("cannot access {spec}: {e}"))?;
            return canonical
                .strip_prefix(&canonical_prompts)
                .map(|rel| rel.to_string_lossy().replace('\\', "/"))
                .map_err(|_| {
                    format!(
                        "{spec} is not inside this project's prompts folder ({})",
                        prompts.display()
                    )
                });
        }
        let name = spec
            .strip_suffix(&format!(".{PROMPT_EXTENSION}"))
            .unwrap_or(spec);
        let name = name
            .strip_prefix(&format!("{PROMPTS_DIR}/"))
            .unwrap_or(name);
        let file = crate::prompt::normalize_name(&format!("{name}.{PROMPT_EXTENSION}"))
            .map_err(|e| e.to_string())?;
        if prompts.join(&file).is_file() {
            return Ok(file);
        }
        let known = self.list_prompts().unwrap_or_default();
        let hint = known
            .iter()
            .map(|f| {
                f.trim_end_matches(&format!(".{PROMPT_EXTENSION}"))
                    .to_owned()
            })
            .min_by_key(|candidate| crate::suite::assertion::edit_distance(name, candidate))
            .filter(|candidate| crate::suite::assertion::edit_distance(name, candidate) <= 3)
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_else(|| " (`promptdeck check` lists the prompts it finds)".to_owned());
        Err(format!("no prompt `{spec}` in {}{hint}", prompts.display()))
    }

    /// Every prompt in the library, as library file names, sorted. Folders starting with `_`
    /// hold partials and are skipped.
    pub fn list_prompts(&self) -> Result<Vec<String>, ProjectError> {
        let mut found = Vec::new();
        walk(&self.prompts_dir(), "", &mut |name| {
            if name.ends_with(&format!(".{PROMPT_EXTENSION}")) {
                found.push(name.to_owned());
            }
        })?;
        found.sort();
        Ok(found)
    }

    /// Tests files that have no prompt beside them.
    pub fn orphan_tests_files(&self) -> Result<Vec<String>, ProjectError> {
        let mut orphans = Vec::new();
        let prompts = self.prompts_dir();
        walk(&prompts, "", &mut |name| {
            if let Some(stem) = name.strip_suffix(TESTS_SUFFIX) {
                if !prompts.join(format!("{stem}.{PROMPT_EXTENSION}")).is_file() {
                    orphans.push(name.to_owned());
                }
            }
        })?;
        orphans.sort();
        Ok(orphans)
    }
}

fn walk(dir: &Path, prefix: &str, visit: &mut dyn FnMut(&str)) -> Result<(), ProjectError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => return Ok(()),
        Err(source) => {
            return Err(ProjectError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| ProjectError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let name = if prefix.is_empty() {
            file_name.clone()
        } else {
            format!("{prefix}/{file_name}")
        };
        // Follow the entry's type without following symlinks out of the library.
        let file_type = entry.file_type().map_err(|source| ProjectError::Io {
            path: entry.path(),
            source,
        })?;
        if file_type.is_dir() {
            if !file_name.starts_with('_') && !file_name.starts_with('.') {
                walk(&entry.path(), &name, visit)?;
            }
        } else if file_type.is_file() {
            visit(&name);
        }
    }
    Ok(())
}

/// The prompt library on disk, confined to `prompts/` (and the project root for `file://`).
#[derive(Debug, Clone)]
pub struct DiskWorkspace {
    root: PathBuf,
    prompts: PathBuf,
}

impl DiskWorkspace {
    pub fn new(root: &Path) -> Self {
        DiskWorkspace {
            root: root.to_path_buf(),
            prompts: root.join(PROMPTS_DIR),
        }
    }

    /// Reads `base/name` if it exists, refusing it when its real location (symlinks resolved)
    /// is outside `base`.
    fn read_confined(&self, base: &Path, name: &str, what: &str) -> Result<Option<String>, String> {
        let path = base.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let real = path
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
        let real_base = base
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", base.display()))?;
        if !real.starts_with(&real_base) {
            return Err(format!(
                "`{name}` is a link that leads outside the {what} ({})",
                real.display()
            ));
        }
        if !real.is_file() {
            return Ok(None);
        }
        user_file::read_text(&real)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

impl Workspace for DiskWorkspace {
    fn read_library_file(&self, name: &str) -> Result<Option<String>, String> {
        self.read_confined(&self.prompts, name, "prompts folder")
    }

    fn read_project_file(&self, path: &str) -> Result<Option<String>, String> {
        self.read_confined(&self.root, path, "project")
    }

    fn display_path(&self, name: &str) -> PathBuf {
        self.prompts.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("promptdeck.toml")).map_err(|d| d.to_string())
    }

    #[test]
    fn defaults_include_the_local_backend() {
        let config = parse("").unwrap();
        assert_eq!(config.default_backend, "local");
        assert_eq!(config.backends["local"].kind, BackendKind::Local);
    }

    #[test]
    fn the_judge_must_be_a_configured_backend() {
        let config = parse("[defaults]\njudge = \"local\"\n").unwrap();
        assert_eq!(config.judge.as_deref(), Some("local"));
        assert_eq!(
            parse("[defaults]\njudge = \"gpt\"\n").unwrap_err(),
            "promptdeck.toml:2:1: error: defaults.judge `gpt` is not a configured backend (configured: local)"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_located() {
        assert_eq!(
            parse("[defaults]\nbakend = \"x\"\n").unwrap_err(),
            "promptdeck.toml:2:1: error: unknown field `bakend`, expected one of `backend`, `parameters`, `theme`, `judge`"
        );
        assert_eq!(
            parse("[backends.gpt]\nkind = \"openai\"\nmodel = \"gpt-4o-mini\"\nconcurrency = \"lots\"\n").unwrap_err(),
            "promptdeck.toml:4:15: error: invalid type: string \"lots\", expected u32"
        );
        assert!(
            parse("[backends.x]\nkind = \"cohere\"\n")
                .unwrap_err()
                .starts_with("promptdeck.toml:2:8: error: unknown variant `cohere`")
        );
    }

    #[test]
    fn validation_errors_are_located() {
        assert_eq!(
            parse(
                "\n[backends.gpt]\nkind = \"openai\"\nmodel = \"m\"\napi_key_env = \"sk-abc123\"\n"
            )
            .unwrap_err(),
            "promptdeck.toml:2:1: error: backends.gpt.api_key_env must name an environment variable (like OPENAI_API_KEY), not hold a key"
        );
        assert_eq!(
            parse("[defaults]\nbackend = \"gpt\"\n").unwrap_err(),
            "promptdeck.toml:2:1: error: defaults.backend `gpt` is not a configured backend"
        );
        assert!(
            parse("[backends.gpt]\nkind = \"openai\"\n")
                .unwrap_err()
                .ends_with("backends.gpt needs a `model`")
        );
    }

    #[test]
    fn workspace_refuses_symlinks_out_of_the_library() {
        let dir = tempfile::tempdir().unwrap();
        let prompts = dir.path().join(PROMPTS_DIR);
        std::fs::create_dir_all(&prompts).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s3cret").unwrap();
        std::fs::write(prompts.join("ok.jinja"), "fine").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), prompts.join("leak.jinja"))
            .unwrap();
        let ws = DiskWorkspace::new(dir.path());
        assert_eq!(
            ws.read_library_file("ok.jinja").unwrap().as_deref(),
            Some("fine")
        );
        assert_eq!(ws.read_library_file("missing.jinja").unwrap(), None);
        #[cfg(unix)]
        assert!(
            ws.read_library_file("leak.jinja")
                .unwrap_err()
                .contains("leads outside the prompts folder")
        );
        // The project root is wider: file:// variables may read any project file.
        assert_eq!(
            ws.read_project_file("secret.txt").unwrap().as_deref(),
            Some("s3cret")
        );
    }
}
