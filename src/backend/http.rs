//! The provider-independent half of a request: HTTP client, headers, idle timeouts, status and
//! content-type checks, and reading a body as one JSON document or as an SSE stream.
//!
//! Each provider module implements [`Wire`] (its request body, its response and event formats,
//! its error body); this module runs one attempt with it. Retries, limits and the cache sit a
//! layer above, in `managed`.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::config::BackendConfig;
use super::error::{BackendError, describe_reqwest, redact};
use super::retry::retry_hint;
use super::sse::{SseEvent, SseParser};
use super::types::{ChatRequest, Chunk, FinishReason, Usage};

/// Largest body read into memory: far above any real answer, low enough to survive a server
/// that streams garbage forever.
const MAX_BODY: usize = 64 << 20;
/// How much of an unexpected body is quoted in an error message.
const SNIPPET: usize = 300;

/// A provider's request, ready to send.
pub(crate) struct Prepared {
    /// Appended to the base URL.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
    pub warnings: Vec<String>,
}

/// How an answer ended, as reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Final {
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

/// The state of one streamed answer, fed event by event.
pub(crate) trait Decoder: Send {
    /// Handles one event, appending any answer text to `text`.
    fn event(&mut self, event: &SseEvent, text: &mut Vec<String>) -> Result<(), BackendError>;
    /// `Some` once the provider's end marker has been seen.
    fn end(&self) -> Option<Final>;
    /// Whether to stop reading at the end marker rather than at the end of the body.
    fn stop_at_end(&self) -> bool {
        true
    }
    /// Names the end marker for truncation messages.
    fn end_marker(&self) -> &'static str;
}

/// One provider's wire format.
pub(crate) trait Wire: Send + Sync {
    fn provider(&self) -> &'static str;
    /// Authentication and fixed headers; `key` is `None` only for key-less local servers.
    fn auth_headers(&self, key: Option<&str>) -> Vec<(&'static str, String)>;
    fn prepare(
        &self,
        cfg: &BackendConfig,
        model: &str,
        req: &ChatRequest,
        stream: bool,
    ) -> Prepared;
    /// Parses a whole (non-streamed) answer.
    fn parse_full(&self, body: &Value) -> Result<(String, Final), BackendError>;
    fn decoder(&self) -> Box<dyn Decoder>;
    /// The provider's own message from an error body.
    fn error_message(&self, body: &Value) -> Option<String>;
    /// Path and query of one page of the model list.
    fn models_page(&self, page: Option<&str>) -> (String, Vec<(String, String)>);
    /// Model ids of one page and the token of the next.
    fn parse_models(&self, body: &Value) -> Result<(Vec<String>, Option<String>), BackendError>;
}

pub(crate) fn protocol(provider: &str, what: impl std::fmt::Display) -> BackendError {
    BackendError::Protocol(format!("{provider}: {what}"))
}

/// Deep-merges `extra` into `body`: objects merge key by key, anything else replaces.
pub(crate) fn merge_extra(body: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        match (body.get_mut(k), v) {
            (Some(Value::Object(dst)), Value::Object(src)) => merge_extra(dst, src),
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
}

pub(crate) fn warn_unsupported(provider: &str, name: &str, warnings: &mut Vec<String>) {
    warnings.push(format!(
        "{provider} does not support the `{name}` parameter; it was not sent"
    ));
}

pub(crate) struct Http {
    pub cfg: BackendConfig,
    client: reqwest::Client,
    extra_headers: HeaderMap,
    pub wire: Box<dyn Wire>,
}

fn snippet(bytes: &[u8], key: Option<&str>) -> String {
    // Redact before cutting: a cut through the middle of an echoed key would leave a piece of
    // it that no longer matches the whole key.
    let text = redact(String::from_utf8_lossy(bytes).trim(), key);
    let mut cut: String = text.chars().take(SNIPPET).collect();
    if text.chars().count() > SNIPPET {
        cut.push_str("...");
    }
    cut
}

/// Redirects followed per request, all to the same origin.
const MAX_REDIRECTS: usize = 5;

/// Follows a redirect only to the origin (scheme, host and port) the request went to. reqwest
/// drops `Authorization` when a redirect changes origin, but not the other key headers
/// (`x-api-key`, `x-goog-api-key`) or configured extra headers, so a provider or proxy that
/// redirected elsewhere would hand the key to another server. The unfollowed redirect comes back
/// as the response, and `send` reports it.
fn same_origin_redirects(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let same_origin = attempt
        .previous()
        .last()
        .is_some_and(|from| from.origin() == attempt.url().origin());
    if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
        attempt.follow()
    } else {
        attempt.stop()
    }
}

impl Http {
    pub fn new(cfg: BackendConfig, wire: Box<dyn Wire>) -> Result<Self, BackendError> {
        cfg.validate()?;
        super::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("promptdeck/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(same_origin_redirects));
        if cfg.is_loopback() {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| {
            BackendError::Config(format!(
                "backend `{}`: cannot build the HTTP client: {}",
                cfg.name,
                describe_reqwest(e)
            ))
        })?;
        let mut extra_headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            // `validate` checked both; skipping keeps this panic-free regardless.
            if let (Ok(n), Ok(mut v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                v.set_sensitive(true);
                extra_headers.insert(n, v);
            }
        }
        Ok(Http {
            cfg,
            client,
            extra_headers,
            wire,
        })
    }

    fn provider(&self) -> &'static str {
        self.wire.provider()
    }

    /// Sends one request and returns a success response; error statuses become `Api` errors.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<reqwest::Response, BackendError> {
        let provider = self.provider();
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.cfg.base_url()))
            .map_err(|e| BackendError::Config(format!("bad request URL: {e}")))?;
        if !query.is_empty() || !self.cfg.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(self.cfg.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            {
                pairs.append_pair(k, v);
            }
        }
        let mut headers = self.extra_headers.clone();
        for (name, value) in self.wire.auth_headers(key) {
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                BackendError::Config(format!(
                    "backend `{}`: the value for header `{name}` (from {}) has characters not allowed in HTTP",
                    self.cfg.name,
                    self.cfg.api_key_env()
                ))
            })?;
            v.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), v);
        }
        let mut request = self.client.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.json(body);
        }
        let idle = self.cfg.timeout;
        let response = match timeout(idle, request.send()).await {
            Err(_) => return Err(BackendError::Timeout(idle)),
            Ok(Err(e)) if e.is_builder() => {
                return Err(BackendError::Config(redact(&describe_reqwest(e), key)));
            }
            Ok(Err(e)) => return Err(BackendError::Connection(redact(&describe_reqwest(e), key))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            // Only a redirect to another server is left unfollowed (see same_origin_redirects).
            return Err(BackendError::Api {
                status: status.as_u16(),
                message: format!(
                    "{provider}: the server redirects to another server, which promptdeck does not follow because the API key would go along; set base_url to the final address"
                ),
                retry_after: None,
            });
        }
        let retry_after = retry_hint(response.headers(), std::time::SystemTime::now());
        // A broken error body must not hide the status, so read failures become empty bodies.
        let bytes = read_all(response, idle).await.unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| self.wire.error_message(&v))
            .map(|m| redact(&m, key))
            .unwrap_or_else(|| {
                let reason = status.canonical_reason().unwrap_or("error");
                let body = snippet(&bytes, key);
                if body.is_empty() {
                    format!("{provider}: {reason}")
                } else {
                    format!("{provider}: {reason}: {body}")
                }
            });
        Err(BackendError::Api {
            status: status.as_u16(),
            message,
            retry_after,
        })
    }

    /// One chat attempt. Text goes to `tx` as it arrives and is appended to `text`; the result
    /// tells how the answer ended.
    pub async fn chat_attempt(
        &self,
        prepared: &Prepared,
        stream: bool,
        key: Option<&str>,
        tx: &mpsc::Sender<Result<Chunk, BackendError>>,
        text: &mut String,
    ) -> Result<Final, BackendError> {
        let provider = self.provider();
        let idle = self.cfg.timeout;
        let response = self
            .send(
                reqwest::Method::POST,
                &prepared.path,
                &prepared.query,
                Some(&prepared.body),
                key,
            )
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let is_sse = content_type.starts_with("text/event-stream");
        let is_json = content_type.contains("json") || content_type.is_empty();
        if !is_sse {
            if !is_json || stream && content_type.is_empty() {
                let body = read_all(response, idle).await.unwrap_or_default();
                let expected = if stream { "text/event-stream" } else { "JSON" };
                return Err(protocol(
                    provider,
                    format!(
                        "expected {expected} but the server sent content type `{content_type}`: {}",
                        snippet(&body, key)
                    ),
                ));
            }
            // Some OpenAI-compatible servers ignore `stream: true` and answer in one piece.
            let body = read_all(response, idle).await?;
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                protocol(
                    provider,
                    format!("malformed JSON ({e}): {}", snippet(&body, key)),
                )
            })?;
            let (answer, fin) = self.wire.parse_full(&value)?;
            if !answer.is_empty() {
                text.push_str(&answer);
                send_text(tx, answer).await?;
            }
            return Ok(fin);
        }

        let mut body = response.bytes_stream();
        let mut parser = SseParser::new();
        let mut decoder = self.wire.decoder();
        let mut pieces = Vec::new();
        // The idle timeout runs from the last event that carried something, not from the last
        // byte: a server that stalls but keeps sending keep-alive comments or pings would
        // otherwise hold the request (and a whole `promptdeck test`) forever.
        let mut quiet_until = tokio::time::Instant::now() + idle;
        loop {
            let wait = quiet_until.saturating_duration_since(tokio::time::Instant::now());
            let (events, eof) = match timeout(wait, body.next()).await {
                // The answer is complete once the end marker was seen; a server that then
                // stalls or drops the connection does not spoil it.
                Err(_) | Ok(Some(Err(_))) if decoder.end().is_some() => (Vec::new(), true),
                Err(_) => return Err(BackendError::Timeout(idle)),
                Ok(Some(Ok(bytes))) => (parser.feed(&bytes), false),
                Ok(Some(Err(e))) => {
                    return Err(BackendError::Connection(redact(&describe_reqwest(e), key)));
                }
                Ok(None) => (parser.finish(), true),
            };
            if events.iter().any(|e| !is_keep_alive(e)) {
                quiet_until = tokio::time::Instant::now() + idle;
            }
            for event in &events {
                decoder.event(event, &mut pieces).map_err(|e| match e {
                    BackendError::Protocol(m) => BackendError::Protocol(redact(&m, key)),
                    BackendError::Api {
                        status,
                        message,
                        retry_after,
                    } => BackendError::Api {
                        status,
                        message: redact(&message, key),
                        retry_after,
                    },
                    other => other,
                })?;
                for piece in pieces.drain(..) {
                    if !piece.is_empty() {
                        text.push_str(&piece);
                        send_text(tx, piece).await?;
                    }
                }
                if decoder.stop_at_end() {
                    if let Some(fin) = decoder.end() {
                        return Ok(fin);
                    }
                }
            }
            if eof {
                return decoder.end().ok_or_else(|| BackendError::Truncated {
                    partial_text: String::new(),
                    reason: format!("the stream ended before {}", decoder.end_marker()),
                });
            }
        }
    }

    /// All model ids, following pagination (bounded, against a server that never ends it).
    pub async fn list_models(&self, key: Option<&str>) -> Result<Vec<String>, BackendError> {
        let mut models = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..50 {
            let (path, query) = self.wire.models_page(page.as_deref());
            let response = self
                .send(reqwest::Method::GET, &path, &query, None, key)
                .await?;
            let body = read_all(response, self.cfg.timeout).await?;
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                protocol(
                    self.provider(),
                    format!("malformed model list ({e}): {}", snippet(&body, key)),
                )
            })?;
            let (ids, next) = self.wire.parse_models(&value)?;
            models.extend(ids);
            match next {
                Some(n) if !n.is_empty() => page = Some(n),
                _ => break,
            }
        }
        Ok(models)
    }
}

/// An event that only says the connection is alive: Anthropic's `ping`, or one without data.
/// (SSE comments, which OpenAI-compatible servers send, produce no event at all.)
fn is_keep_alive(event: &SseEvent) -> bool {
    let data = event.data.trim();
    event.event == "ping"
        || data.is_empty()
        || data == r#"{"type": "ping"}"#
        || data == r#"{"type":"ping"}"#
}

/// Sends text to the consumer; a consumer that went away cancels the attempt.
async fn send_text(
    tx: &mpsc::Sender<Result<Chunk, BackendError>>,
    text: String,
) -> Result<(), BackendError> {
    tx.send(Ok(Chunk::Text(text)))
        .await
        .map_err(|_| BackendError::Connection("the consumer stopped reading".into()))
}

/// Reads a whole body with the idle timeout applied to each read.
async fn read_all(response: reqwest::Response, idle: Duration) -> Result<Vec<u8>, BackendError> {
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    loop {
        match timeout(idle, body.next()).await {
            Err(_) => return Err(BackendError::Timeout(idle)),
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => return Err(BackendError::Connection(describe_reqwest(e))),
            Ok(Some(Ok(bytes))) => {
                if out.len() + bytes.len() > MAX_BODY {
                    return Err(BackendError::Protocol(format!(
                        "response body larger than {} MiB",
                        MAX_BODY >> 20
                    )));
                }
                out.extend_from_slice(&bytes);
            }
        }
    }
}
