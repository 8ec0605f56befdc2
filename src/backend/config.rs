//! Validated per-backend configuration and the providers' public defaults.
//!
//! The configuration names the environment variable that holds the key, never the key: keys are
//! read at request time only, so they cannot end up in a config dump, a `Debug` print or the cache.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::BackendError;

/// The one place each provider's public API base is written down.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Anthropic's SDKs append `/v1/...` to this base, and so do we.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// Gemini's SDKs append `/v1beta/...` to this base, and so do we.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// OpenAI Chat Completions, and every server that speaks it (Ollama, llama.cpp, vLLM).
    OpenAi,
    Anthropic,
    Gemini,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Kind::OpenAi => OPENAI_BASE_URL,
            Kind::Anthropic => ANTHROPIC_BASE_URL,
            Kind::Gemini => GEMINI_BASE_URL,
        }
    }

    pub fn default_api_key_env(self) -> &'static str {
        match self {
            Kind::OpenAi => "OPENAI_API_KEY",
            Kind::Anthropic => "ANTHROPIC_API_KEY",
            Kind::Gemini => "GEMINI_API_KEY",
        }
    }
}

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub name: String,
    pub kind: Kind,
    pub model: String,
    /// `None`: the provider's public API. For OpenAI-compatible servers include the `/v1`.
    pub base_url: Option<String>,
    /// Name of the variable holding the key; `None`: the provider's usual variable.
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: u32,
    pub requests_per_minute: Option<u32>,
    /// Longest wait for the headers, then for the next event of a streamed body (keep-alive
    /// comments and pings do not count), not for the whole answer: long generations stream
    /// for minutes and must not be cut off.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// No new attempt starts once this much time has passed since the first.
    pub max_retry_time: Duration,
    /// First backoff step; doubles per attempt, with full jitter, capped at 30 s.
    pub backoff_base: Duration,
    /// Stream answers over SSE; `false` for gateways that only do whole responses.
    pub stream: bool,
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    /// Overrides the built-in price table.
    pub prices: Option<Prices>,
}

impl BackendConfig {
    pub fn new(name: impl Into<String>, kind: Kind, model: impl Into<String>) -> Self {
        BackendConfig {
            name: name.into(),
            kind,
            model: model.into(),
            base_url: None,
            api_key_env: None,
            concurrency: 4,
            requests_per_minute: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retries: 4,
            max_retry_time: Duration::from_secs(120),
            backoff_base: Duration::from_secs(1),
            stream: true,
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            prices: None,
        }
    }

    /// The base URL without a trailing slash, so paths can be appended with `/`.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(self.kind.default_base_url())
            .trim_end_matches('/')
    }

    pub fn api_key_env(&self) -> &str {
        self.api_key_env
            .as_deref()
            .unwrap_or(self.kind.default_api_key_env())
    }

    /// Whether the base URL points at this machine, where local servers need no key.
    pub fn is_loopback(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(self.base_url()) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost")
        {
            return true;
        }
        host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Checks what can be checked before the first request, so mistakes surface at start-up.
    pub fn validate(&self) -> Result<(), BackendError> {
        let fail = |msg: String| {
            Err(BackendError::Config(format!(
                "backend `{}`: {msg}",
                self.name
            )))
        };
        match reqwest::Url::parse(self.base_url()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
            Ok(_) => {
                return fail(format!(
                    "base_url `{}` must be an http(s) URL",
                    self.base_url()
                ));
            }
            Err(e) => return fail(format!("base_url `{}` is not a URL: {e}", self.base_url())),
        }
        if self.model.trim().is_empty() {
            return fail("no model given".into());
        }
        if self.concurrency == 0 {
            return fail("concurrency must be at least 1".into());
        }
        if self.requests_per_minute == Some(0) {
            return fail("requests_per_minute must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return fail("timeout must be above zero".into());
        }
        if self.api_key_env().is_empty() {
            return fail("api_key_env is empty".into());
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return fail(format!("`{name}` is not a valid HTTP header name"));
            }
            // The value is not shown: extra headers often carry credentials.
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return fail(format!("the value of header `{name}` is not valid in HTTP"));
            }
        }
        Ok(())
    }

    /// The key from the environment; `None` where a key-less local server is allowed.
    pub(crate) fn read_key(&self) -> Result<Option<String>, BackendError> {
        let var = self.api_key_env();
        match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_string())),
            _ if self.kind == Kind::OpenAi && self.is_loopback() => Ok(None),
            _ => Err(BackendError::MissingKey {
                backend: self.name.clone(),
                var: var.to_string(),
            }),
        }
    }
}
