//! Local inference: runs GGUF models in-process on the CPU, on promptdeck's native kernels
//! (`promptdeck-kernels`, llama.cpp's numerics) for llama Q4_1/Q8_0 files and on candle for the
//! other architectures. Owns model files
//! (`gguf`), tokenization (`tokenizer`), chat prompt rendering (`chat_template`), sampling and
//! stop sequences, the decode loop (`engine`) and the dedicated model thread (`worker`).
//! `models` finds and fetches model files; `backend` serves the engine through promptdeck's
//! `Backend` trait.

pub mod backend;
pub mod chat_template;
pub mod engine;
pub mod gguf;
pub mod inspect;
pub mod models;
pub mod sampling;
pub mod stop;
pub mod tokenizer;
pub mod worker;

pub use chat_template::{ChatMessage, ChatTemplate, TemplateError};
pub use engine::{
    Completion, Engine, EngineConfig, EngineError, FinishReason, GenerateRequest, Prompt, Timings,
    Usage, WeightMode,
};
pub use gguf::{Architecture, GgufError, GgufModel, ModelInfo};
pub use sampling::SamplingParams;
pub use tokenizer::{Tokenizer, TokenizerError};
pub use worker::{Event, LocalWorker};

/// Sets how many threads candle's quantized matmul uses. candle sizes that pool once per
/// process, from `CANDLE_NUM_THREADS`, on first use; a value already set in the environment
/// wins, so a user can still override it.
///
/// # Safety
/// Writes the process environment: call it at start-up, before any other thread exists
/// (before the async runtime or any worker starts), as `std::env::set_var` requires.
pub unsafe fn configure_process_threads(threads: usize) {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the caller guarantees no other thread is running.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", threads.max(1).to_string()) };
    }
}

#[cfg(test)]
mod tests;
