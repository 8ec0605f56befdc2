//! The one error type of the backends, with the classification the retry loop needs.
//!
//! Messages carry what a user needs to act (the provider's own words, the variable to set) and
//! never an API key: keys are only ever placed in request headers, and provider text is passed
//! through [`redact`] before it is stored here.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend `{backend}`: environment variable {var} is not set or empty; it must hold the API key"
    )]
    MissingKey { backend: String, var: String },

    #[error("invalid backend configuration: {0}")]
    Config(String),

    /// The provider answered with an error status; `message` is the provider's own text.
    #[error("HTTP {status}: {message}")]
    Api {
        status: u16,
        message: String,
        /// How long the provider asked us to wait, from `Retry-After` or its reset headers.
        retry_after: Option<Duration>,
    },

    /// Could not connect, or the connection broke before any answer text arrived.
    #[error("connection failed: {0}")]
    Connection(String),

    #[error("no data from the server for {} s", .0.as_secs_f64())]
    Timeout(Duration),

    /// The answer stopped before its end marker; the text received so far is kept.
    #[error("response truncated after {} characters: {reason}", .partial_text.chars().count())]
    Truncated {
        partial_text: String,
        reason: String,
    },

    /// The server answered, but not in the provider's format (wrong content type, bad JSON).
    #[error("unexpected response: {0}")]
    Protocol(String),

    #[error("cache: {0}")]
    Cache(String),
}

impl BackendError {
    /// Whether another attempt may succeed. Only called for failures before any answer text.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Api { status, .. } => {
                matches!(status, 408 | 409 | 429 | 500 | 502 | 503 | 504 | 529)
            }
            BackendError::Connection(_) | BackendError::Timeout(_) => true,
            // A stream that ended with nothing in it is a dropped connection in practice.
            BackendError::Truncated { partial_text, .. } => partial_text.is_empty(),
            _ => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            BackendError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Removes every occurrence of `secret` from provider-supplied text: some gateways echo request
/// headers in their error pages.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 => text.replace(s, "[redacted]"),
        _ => text.to_string(),
    }
}

/// Describes a transport error without its URL (which may carry configured query values).
pub(crate) fn describe_reqwest(err: reqwest::Error) -> String {
    use std::error::Error as _;
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
