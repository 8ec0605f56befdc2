//! The local engine as a [`Backend`]: the same trait every API backend implements, so `run`,
//! `serve`, `test` and the TUI drive the embedded model exactly as they drive an API. Requests go
//! to the model thread ([`LocalWorker`]); its events are bridged onto an async stream, and
//! dropping the stream cancels the generation before its next token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::models::{self, ModelSource};
use super::{
    ChatMessage, EngineConfig, Event, GenerateRequest, LocalWorker, Prompt, SamplingParams,
};
use crate::backend::{Backend, BackendError, ChatRequest, Chunk, Done, FinishReason, Usage};

/// Tokens generated when a prompt sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: usize = 256;

pub struct LocalBackend {
    name: String,
    model_path: PathBuf,
    worker: LocalWorker,
}

impl LocalBackend {
    /// Starts the model thread for `model_path`; the model itself loads on the first request.
    pub fn start(
        name: &str,
        model_path: &Path,
        config: EngineConfig,
    ) -> Result<Self, BackendError> {
        let worker = LocalWorker::spawn(model_path, config)
            .map_err(|e| BackendError::Config(e.to_string()))?;
        Ok(LocalBackend {
            name: name.to_owned(),
            model_path: model_path.to_path_buf(),
            worker,
        })
    }

    pub fn model_file_name(&self) -> String {
        self.model_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Sets the cancel flag when the consumer drops the stream.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn generate_request(req: &ChatRequest) -> GenerateRequest {
    let p = &req.parameters;
    let messages = req
        .messages
        .iter()
        .map(|m| ChatMessage::new(m.role.as_str(), m.content.clone()))
        .collect();
    let mut sampling = SamplingParams::greedy();
    sampling.temperature = p.temperature.unwrap_or(0.0);
    sampling.top_k = p.top_k.map(|k| k as usize);
    sampling.top_p = p.top_p;
    sampling.min_p = p.min_p;
    sampling.repeat_penalty = p.repeat_penalty.unwrap_or(1.0) as f32;
    // Samples of one case must differ: the sample index perturbs the seed.
    sampling.seed = p
        .seed
        .unwrap_or(0)
        .wrapping_add(u64::from(req.sample_index));
    let mut request = GenerateRequest::new(
        Prompt::Chat(messages),
        p.max_tokens.map_or(DEFAULT_MAX_TOKENS, |n| n as usize),
    );
    request.sampling = sampling;
    request.stop = p.stop.clone();
    request
}

impl Backend for LocalBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn stream(&self, req: ChatRequest) -> BoxStream<'static, Result<Chunk, BackendError>> {
        let cancel = Arc::new(AtomicBool::new(false));
        let events = match self
            .worker
            .generate(generate_request(&req), Arc::clone(&cancel))
        {
            Ok(events) => events,
            Err(e) => {
                return Box::pin(futures_util::stream::once(async move {
                    Err(BackendError::Config(e.to_string()))
                }));
            }
        };
        // The worker reports on a std channel; a blocking forwarder moves events onto a tokio
        // channel so the async side never blocks on the model.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            while let Ok(event) = events.recv() {
                let last = !matches!(event, Event::Token(_));
                if tx.send(event).is_err() || last {
                    break;
                }
            }
        });
        let guard = CancelOnDrop(cancel);
        let stream = futures_util::stream::unfold(
            (rx, Some(guard), false),
            |(mut rx, guard, finished)| async move {
                if finished {
                    return None;
                }
                let item = match rx.recv().await {
                    Some(Event::Token(text)) => (Ok(Chunk::Text(text)), false),
                    Some(Event::Done {
                        finish_reason,
                        usage,
                        ..
                    }) => {
                        let finish_reason = match finish_reason {
                            super::FinishReason::Stop => FinishReason::Stop,
                            super::FinishReason::Length => FinishReason::Length,
                            super::FinishReason::Cancelled => FinishReason::Error,
                        };
                        let done = Done {
                            finish_reason,
                            usage: Usage {
                                input_tokens: usage.prompt_tokens as u64,
                                output_tokens: usage.completion_tokens as u64,
                            },
                            cached: false,
                            cost: Some(0.0),
                            warnings: Vec::new(),
                        };
                        (Ok(Chunk::Done(Box::new(done))), true)
                    }
                    Some(Event::Error(e)) => (Err(BackendError::Protocol(e.to_string())), true),
                    None => (
                        Err(BackendError::Protocol(
                            "the local model thread stopped".to_owned(),
                        )),
                        true,
                    ),
                };
                Some((item.0, (rx, guard, item.1)))
            },
        );
        Box::pin(stream)
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        let name = self.model_file_name();
        Box::pin(async move { Ok(vec![name]) })
    }
}

/// Finds (fetching on first use) the model of a configured local backend and starts it.
pub fn open(
    project: &crate::project::Project,
    name: &str,
) -> Result<(LocalBackend, ModelSource), String> {
    let raw = project
        .config
        .backends
        .get(name)
        .ok_or_else(|| format!("no backend `{name}`"))?;
    let configured = raw.model.as_ref().map(|m| project.root.join(m));
    let (path, source) =
        models::ensure_default(configured.as_deref()).map_err(|e| e.to_string())?;
    let mut config = EngineConfig::default();
    if let Some(threads) = raw.threads {
        config.threads = threads as usize;
    }
    config.exact = raw.exact.unwrap_or(false);
    let backend = LocalBackend::start(name, &path, config).map_err(|e| e.to_string())?;
    Ok((backend, source))
}
