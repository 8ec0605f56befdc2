//! API backends: OpenAI-compatible, Anthropic and Gemini chat completions behind one trait,
//! with per-backend limits, retries, a disk cache and pricing.
//!
//! Layers, from the wire up: `sse` parses event streams; `openai`, `anthropic` and `gemini` know
//! their provider's request, response, event and error formats; `http` runs one attempt with any
//! of them; `managed` adds `limit` (concurrency, requests per minute), `retry` (backoff, server
//! hints) and `cache`; [`complete`] assembles a [`Completion`] with timing and cost (`pricing`).

mod anthropic;
mod cache;
mod config;
mod error;
mod gemini;
mod http;
mod limit;
mod managed;
mod openai;
mod pricing;
mod retry;
pub mod sse;
mod types;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::time::Instant;

pub use cache::Cache;
pub use config::{
    ANTHROPIC_BASE_URL, BackendConfig, GEMINI_BASE_URL, Kind, OPENAI_BASE_URL, Prices,
};
pub use error::BackendError;
pub use limit::{Limiter, RateWindow};
pub use pricing::{cost, default_prices};
pub use retry::{RetryPolicy, parse_go_duration, parse_http_date, parse_rfc3339, retry_hint};
pub use types::{
    ChatRequest, Chunk, Completion, Done, FinishReason, Message, Parameters, Role, Usage,
};

/// Installs rustls' ring provider. reqwest is built without a default crypto provider (aws-lc
/// needs a C toolchain and cmake); without one installed, building a client panics. A second
/// install fails harmlessly, so every place that builds a client may call this.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A chat backend as built by [`build`].
pub trait Backend: Send + Sync {
    fn name(&self) -> &str;

    /// Starts a request and yields its text as it arrives, then one [`Chunk::Done`]; or one
    /// error, after which the stream ends. The cache, the limits and the retries apply: a cache
    /// hit yields the stored text at once, and failures before any text are retried. A failure
    /// after text is [`BackendError::Truncated`] with that text. Dropping the stream cancels the
    /// request. Must be polled inside a tokio runtime.
    fn stream(&self, req: ChatRequest) -> BoxStream<'static, Result<Chunk, BackendError>>;

    /// The ids of the models the provider offers to this key.
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>>;
}

/// Builds a backend from its configuration. `cache_dir: None` disables the cache.
pub fn build(
    config: &BackendConfig,
    cache_dir: Option<PathBuf>,
) -> Result<Arc<dyn Backend>, BackendError> {
    let wire: Box<dyn http::Wire> = match config.kind {
        Kind::OpenAi => Box::new(openai::OpenAi),
        Kind::Anthropic => Box::new(anthropic::Anthropic),
        Kind::Gemini => Box::new(gemini::Gemini),
    };
    let http = http::Http::new(config.clone(), wire)?;
    Ok(Arc::new(managed::Managed::new(
        http,
        cache_dir.map(Cache::new),
    )))
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs a request to the end, calling `on_chunk` with each piece of text as it arrives, and
/// measures time to first text and total latency (of the whole call, retries and waits included).
pub async fn complete(
    backend: &dyn Backend,
    req: ChatRequest,
    mut on_chunk: impl FnMut(&str),
) -> Result<Completion, BackendError> {
    let start = Instant::now();
    let mut stream = backend.stream(req);
    let mut text = String::new();
    let mut ttft = None;
    while let Some(item) = stream.next().await {
        match item? {
            Chunk::Text(piece) => {
                ttft.get_or_insert_with(|| millis(start));
                on_chunk(&piece);
                text.push_str(&piece);
            }
            Chunk::Done(done) => {
                let latency_ms = millis(start);
                return Ok(Completion {
                    text,
                    finish_reason: done.finish_reason,
                    usage: done.usage,
                    ttft_ms: ttft.unwrap_or(latency_ms),
                    latency_ms,
                    cached: done.cached,
                    cost: done.cost,
                    warnings: done.warnings,
                });
            }
        }
    }
    Err(BackendError::Truncated {
        partial_text: text,
        reason: "the backend stream ended without a result".into(),
    })
}
