//! The backend a caller gets from `build`: one provider wire format plus the admission limits,
//! the retry loop and the disk cache around each request.
//!
//! Each request runs in its own task that feeds a bounded channel, so the provider code is
//! straight-line async; the task stops as soon as the consumer drops the stream, which drops the
//! HTTP response and so cancels the request.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Backend;
use super::cache::{Cache, Entry};
use super::config::Prices;
use super::error::BackendError;
use super::http::Http;
use super::limit::Limiter;
use super::pricing::{cost, default_prices};
use super::retry::RetryPolicy;
use super::types::{ChatRequest, Chunk, Done};

pub(crate) struct Managed {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    limiter: Limiter,
    cache: Option<Cache>,
    policy: RetryPolicy,
}

impl Managed {
    pub fn new(http: Http, cache: Option<Cache>) -> Self {
        let cfg = &http.cfg;
        let limiter = Limiter::new(cfg.concurrency, cfg.requests_per_minute);
        let policy = RetryPolicy {
            retries: cfg.retries,
            max_elapsed: cfg.max_retry_time,
            base: cfg.backoff_base,
        };
        Managed {
            inner: Arc::new(Inner {
                http,
                limiter,
                cache,
                policy,
            }),
        }
    }
}

type Tx = mpsc::Sender<Result<Chunk, BackendError>>;

impl Inner {
    fn model<'a>(&'a self, req: &'a ChatRequest) -> &'a str {
        if req.model.trim().is_empty() {
            &self.http.cfg.model
        } else {
            &req.model
        }
    }

    fn prices(&self, model: &str) -> Option<Prices> {
        self.http.cfg.prices.or_else(|| default_prices(model))
    }

    async fn drive(&self, req: &ChatRequest, tx: &Tx) -> Result<Box<Done>, BackendError> {
        let cfg = &self.http.cfg;
        let model = self.model(req);
        let cache = self.cache.as_ref().filter(|_| !req.no_cache);
        let cache_key = cache.map(|_| Cache::key(cfg.kind, cfg.base_url(), model, req));
        if let (Some(cache), Some(key)) = (cache, &cache_key) {
            if let Some(entry) = cache.get(key).await {
                if !entry.text.is_empty() {
                    send(tx, Chunk::Text(entry.text)).await?;
                }
                return Ok(Box::new(Done {
                    finish_reason: entry.finish_reason,
                    usage: entry.usage,
                    cached: true,
                    cost: self.prices(model).map(|p| cost(entry.usage, p)),
                    warnings: entry.warnings,
                }));
            }
        }

        let key = cfg.read_key()?;
        let key = key.as_deref();
        let prepared = self.http.wire.prepare(cfg, model, req, cfg.stream);
        let started = Instant::now();
        let mut text = String::new();
        let mut retry = 0;
        let fin = loop {
            let permit = self.limiter.acquire().await?;
            let result = self
                .http
                .chat_attempt(&prepared, cfg.stream, key, tx, &mut text)
                .await;
            drop(permit);
            let err = match result {
                Ok(fin) => break fin,
                Err(e) => e,
            };
            if tx.is_closed() {
                return Err(err);
            }
            let attempts = retry + 1;
            // Text already reached the consumer: another attempt would repeat or contradict it.
            if !text.is_empty() {
                let reason = match err {
                    BackendError::Truncated { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(gave_up(
                    BackendError::Truncated {
                        partial_text: text,
                        reason,
                    },
                    attempts,
                ));
            }
            if !err.is_retryable() {
                return Err(gave_up(err, attempts));
            }
            match self
                .policy
                .next_delay(retry, started.elapsed(), err.retry_after())
            {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(gave_up(err, attempts)),
            }
            retry += 1;
        };

        let mut warnings = prepared.warnings;
        if let (Some(cache), Some(key)) = (cache, &cache_key) {
            let entry = Entry {
                format: super::cache::FORMAT,
                model: model.to_string(),
                text,
                finish_reason: fin.finish_reason,
                usage: fin.usage,
                warnings: warnings.clone(),
            };
            // A full disk should not lose an answer that was paid for.
            if let Err(e) = cache.put(key, &entry).await {
                warnings.push(format!("the answer was not cached: {e}"));
            }
        }
        Ok(Box::new(Done {
            finish_reason: fin.finish_reason,
            usage: fin.usage,
            cached: false,
            cost: self.prices(model).map(|p| cost(fin.usage, p)),
            warnings,
        }))
    }

    async fn list_models(&self) -> Result<Vec<String>, BackendError> {
        let key = self.http.cfg.read_key()?;
        let started = Instant::now();
        let mut retry = 0;
        loop {
            let result = {
                let _permit = self.limiter.acquire().await?;
                self.http.list_models(key.as_deref()).await
            };
            match result {
                Ok(models) => return Ok(models),
                Err(e) if e.is_retryable() => {
                    match self
                        .policy
                        .next_delay(retry, started.elapsed(), e.retry_after())
                    {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(e),
                    }
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The error a request ends with, saying how many attempts it took when there were several:
/// "HTTP 503" alone does not tell a user whether the retries were spent or skipped. An idle
/// timeout keeps its own variant and text (it has no message to extend).
fn gave_up(err: BackendError, attempts: u32) -> BackendError {
    if attempts < 2 {
        return err;
    }
    let note = format!(" (gave up after {attempts} attempts)");
    match err {
        BackendError::Api {
            status,
            message,
            retry_after,
        } => BackendError::Api {
            status,
            message: message + &note,
            retry_after,
        },
        BackendError::Connection(message) => BackendError::Connection(message + &note),
        BackendError::Protocol(message) => BackendError::Protocol(message + &note),
        BackendError::Truncated {
            partial_text,
            reason,
        } => BackendError::Truncated {
            partial_text,
            reason: reason + &note,
        },
        other => other,
    }
}

async fn send(tx: &Tx, chunk: Chunk) -> Result<(), BackendError> {
    tx.send(Ok(chunk))
        .await
        .map_err(|_| BackendError::Connection("the consumer stopped reading".into()))
}

impl Backend for Managed {
    fn name(&self) -> &str {
        &self.inner.http.cfg.name
    }

    fn stream(&self, req: ChatRequest) -> BoxStream<'static, Result<Chunk, BackendError>> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return futures_util::stream::once(async {
                Err(BackendError::Config(
                    "backend streams must be polled inside a tokio runtime".into(),
                ))
            })
            .boxed();
        };
        let (tx, rx) = mpsc::channel(64);
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            tokio::select! {
                _ = tx.closed() => {}
                result = inner.drive(&req, &tx) => {
                    let _ = tx.send(result.map(Chunk::Done)).await;
                }
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(self.inner.list_models())
    }
}
