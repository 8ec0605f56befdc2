//! The request and result types every backend speaks.
//!
//! Messages and sampling parameters are the prompt module's types; this adds the request, the
//! streamed chunks and the finished completion.

use serde::{Deserialize, Serialize};

// Messages and parameters are promptdeck's own prompt types: what a prompt renders is exactly
// what a backend sends.
pub use crate::prompt::{Message, Parameters, Role};

/// One chat completion to perform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Overrides the backend's configured model when not empty.
    pub model: String,
    pub messages: Vec<Message>,
    pub parameters: Parameters,
    /// Extra top-level body fields, deep-merged into the provider's request body last, so
    /// OpenAI-compatible servers can receive their own options (and any provider its newer ones).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Which of several samples of the same request this is; part of the cache key so repeated
    /// samples are real, independent calls.
    #[serde(default)]
    pub sample_index: u32,
    /// Neither read nor write the cache for this request.
    #[serde(default)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    ToolCall,
    Error,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The last item of a successful stream: everything about the answer except its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Served from the disk cache rather than the provider.
    pub cached: bool,
    /// USD for this answer when generated (a cached answer reports what it originally cost;
    /// sum only uncached ones for spend). `None` when no price is known for the model.
    pub cost: Option<f64>,
    pub warnings: Vec<String>,
}

/// An item of [`super::Backend::stream`]: text as it arrives, then exactly one `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Text(String),
    Done(Box<Done>),
}

/// A finished completion as assembled by [`super::complete`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Milliseconds from the call to the first text (equal to `latency_ms` when no text came).
    pub ttft_ms: u64,
    pub latency_ms: u64,
    pub cached: bool,
    pub cost: Option<f64>,
    pub warnings: Vec<String>,
}
