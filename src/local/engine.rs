//! The inference engine: loads a GGUF model's weights, tokenizes prompts, and runs prefill +
//! decode with sampling, stop sequences, EOS and cancellation. llama-architecture files whose
//! matrices are Q4_1/Q8_0, and gemma3 files whose matrices are Q4_1/Q5_0/Q8_0/Q4_K/Q6_K, run on
//! promptdeck's native kernels (`promptdeck-kernels`, numerics matching llama.cpp); everything
//! else runs on candle-transformers (optionally repacking Q4_1 to Q8_0 for speed). Single-threaded from the caller's view; `worker` puts it on its own
//! thread.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{
    quantized_gemma3, quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
};
use promptdeck_kernels::{
    AttentionKernel, Gemma3Config, Gemma3Model, KernelError, LlamaConfig, LlamaModel, LlamaState,
    TensorSource, WeightData,
};

use super::chat_template::{ChatMessage, ChatTemplate, TemplateError};
use super::gguf::{Architecture, GgufError, GgufModel, ModelInfo};
use super::sampling::{Sampler, SamplingParams};
use super::stop::StopMatcher;
use super::tokenizer::{Tokenizer, TokenizerError, Utf8Stream};

/// `quantized_llama` precomputes RoPE tables for this many positions; beyond it the model
/// fails mid-generation, so requests are checked against it up front.
pub const LLAMA_MAX_POSITIONS: usize = quantized_llama::MAX_SEQ_LEN;

/// quantized_qwen2 precomputes RoPE for the whole declared context; the KV cache for more
/// than this is more memory than a workbench should take.
pub const QWEN2_MAX_POSITIONS: usize = 8192;

/// Texts of end-of-generation control tokens that chat models emit besides the declared EOS
/// (llama.cpp treats the same set as end-of-generation).
const EOG_TEXTS: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
];

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("native engine: {0}")]
    Native(#[from] KernelError),
    #[error("cannot start the inference thread pool: {0}")]
    ThreadPool(String),
    #[error(
        "prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the usable context of {context} tokens"
    )]
    ContextOverflow {
        prompt_tokens: usize,
        max_tokens: usize,
        context: usize,
    },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    InvalidToken { id: u32, vocab: usize },
    #[error("the inference worker has stopped")]
    WorkerGone,
}

/// How the weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightMode {
    /// As stored in the file.
    Exact,
    /// Q4_1 matrices requantized to Q8_0 at load: candle has SIMD kernels for Q8_0 but not for
    /// Q4_1 on x86, so decode is much faster, at the cost of memory and tiny numeric drift.
    RepackedQ8_0,
    /// promptdeck's native kernels: weights as stored (repacked eight rows at a time, values
    /// unchanged), computed with llama.cpp's CPU numerics. Both fast and exact.
    Native,
}

impl WeightMode {
    /// A short description for `models` and `bench`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Exact => "candle, weights as stored",
            Self::RepackedQ8_0 => "candle, Q4_1 repacked to Q8_0",
            Self::Native => "native kernels, weights as stored (llama.cpp numerics)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Keep the file's quantization (true) or repack Q4_1 to Q8_0 for speed (false).
    pub exact: bool,
    /// Threads for the engine's rayon pool (the native kernels run on it). See
    /// [`super::configure_process_threads`] for candle's quantized-matmul pool, which candle
    /// sizes once per process.
    pub threads: usize,
    /// Use the native kernels for models they support (llama with Q4_1/Q8_0 matrices, gemma3
    /// with Q4_1/Q5_0/Q8_0/Q4_K/Q6_K matrices). Off forces candle, for comparisons.
    pub native: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            exact: false,
            threads: default_threads(),
            native: true,
        }
    }
}

/// Threads for the native kernels: the available cores, at most 4. The kernels split every
/// product into many small tasks that idle threads steal, so a thread the OS deschedules (the
/// other core busy with a build) slows the step instead of stalling it; see
/// docs/benchmarks.md for the busy-core measurements.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// One thread for candle's quantized matmul. Its workers busy-wait for each other, so when
/// anything else uses the cores (a build, the UI) a second thread costs more than it gives:
/// measured with the other core busy, decode ran 25 tok/s on 1 thread vs 18 on 2 (Q8_0), 6.8
/// vs 2.1 (Q4_1).
pub const CANDLE_THREADS: usize = 1;

/// What to complete.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Raw text; special-token texts in it are honoured; BOS is added if the model asks for it.
    Text(String),
    /// Rendered through the model's chat template with the generation prompt.
    Chat(Vec<ChatMessage>),
    /// Exact token ids, used as given.
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before the first occurrence of any of these; the stop text is not
    /// returned.
    pub stop: Vec<String>,
}

impl GenerateRequest {
    pub fn new(prompt: Prompt, max_tokens: usize) -> Self {
        Self {
            prompt,
            max_tokens,
            sampling: SamplingParams::greedy(),
            stop: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Time the model took to load (the same for every request on one engine).
    pub load_ms: f64,
    pub prefill_ms: f64,
    pub prefill_tokens_per_s: f64,
    /// Tokens per second over the decode steps (every forward pass after the prompt).
    pub decode_tokens_per_s: f64,
    /// From the start of the request to the first generated token.
    pub time_to_first_token_ms: f64,
    /// Leading prompt tokens whose keys and values were kept from the previous request, so the
    /// prefill skipped them (`prefill_tokens_per_s` counts only the tokens it ran).
    pub reused_prompt_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

enum Model {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
    Native {
        model: Box<LlamaModel>,
        state: LlamaState,
        cached: CachedPrompt,
    },
    NativeGemma3 {
        model: Box<Gemma3Model>,
        state: LlamaState,
    },
}

/// The prompt whose keys and values the native cache holds from the last prefill, and the
/// attention kernel that computed them. Generated tokens are not included: their rows came from
/// the per-row decode kernel, which a fresh prefill of the same text might not use.
#[derive(Debug, Default)]
struct CachedPrompt {
    tokens: Vec<u32>,
    kernel: Option<AttentionKernel>,
}

impl CachedPrompt {
    /// How many leading tokens of `prompt` can be kept so that the result is bit for bit that
    /// of a fresh prefill: a common prefix computed with the kernel the whole prompt gets, and
    /// never the last token, whose logits are needed.
    fn reusable(&self, prompt: &[u32], kernel: AttentionKernel) -> usize {
        if self.kernel != Some(kernel) {
            return 0;
        }
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        common.min(prompt.len().saturating_sub(1))
    }
}

impl Model {
    fn load(
        arch: Architecture,
        content: Content,
        reader: &mut (impl std::io::Read + std::io::Seek),
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(match arch {
            Architecture::Llama => Self::Llama(quantized_llama::ModelWeights::from_gguf(
                content, reader, device,
            )?),
            Architecture::Qwen2 => Self::Qwen2(quantized_qwen2::ModelWeights::from_gguf(
                content, reader, device,
            )?),
            Architecture::Qwen3 => Self::Qwen3(quantized_qwen3::ModelWeights::from_gguf(
                content, reader, device,
            )?),
            // candle's CPU flash attention is not built (no `flash-attn` feature).
            Architecture::Phi3 => Self::Phi3(quantized_phi3::ModelWeights::from_gguf(
                false, content, reader, device,
            )?),
            Architecture::Gemma3 => Self::Gemma3(quantized_gemma3::ModelWeights::from_gguf(
                content, reader, device,
            )?),
        })
    }

    /// Logits (f32, one row) of the last of `tokens`, run at positions `pos..`.
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        device: &Device,
    ) -> Result<Tensor, EngineError> {
        let input = || Tensor::new(tokens, device)?.unsqueeze(0);
        let out = match self {
            Self::Native { model, state, .. } => {
                let logits = model.forward(state, tokens, pos)?;
                let n = logits.len();
                return Ok(Tensor::from_vec(logits, n, device)?);
            }
            Self::NativeGemma3 { model, state } => {
                let logits = model.forward(state, tokens, pos)?;
                let n = logits.len();
                return Ok(Tensor::from_vec(logits, n, device)?);
            }
            Self::Llama(m) => m.forward(&input()?, pos)?,
            Self::Qwen2(m) => m.forward(&input()?, pos)?,
            Self::Qwen3(m) => m.forward(&input()?, pos)?,
            Self::Phi3(m) => m.forward(&input()?, pos)?,
            Self::Gemma3(m) => m.forward(&input()?, pos)?,
        };
        Ok(out.squeeze(0)?.to_dtype(candle_core::DType::F32)?)
    }

    /// Runs the prompt from position 0 and returns the last token's logits and how many
    /// leading tokens were reused from the previous prompt instead of being run again.
    fn prefill(&mut self, prompt: &[u32], device: &Device) -> Result<(Tensor, usize), EngineError> {
        if let Self::Native {
            model,
            state,
            cached,
        } = self
        {
            let kernel = AttentionKernel::for_batch(prompt.len());
            let reused = cached.reusable(prompt, kernel);
            // Forgotten first: a failed forward leaves rows of the cache overwritten.
            *cached = CachedPrompt::default();
            let logits = model.forward_as_part_of(state, &prompt[reused..], reused, kernel)?;
            *cached = CachedPrompt {
                tokens: prompt.to_vec(),
                kernel: Some(kernel),
            };
            let n = logits.len();
            return Ok((Tensor::from_vec(logits, n, device)?, reused));
        }
        if let Self::NativeGemma3 { model, state } = self {
            let swa = model.config().sliding_window > 0;
            let mut logits = Vec::new();
            for batch in llama_server_prompt_batches(prompt.len(), swa) {
                logits = model.forward(state, &prompt[batch.clone()], batch.start)?;
            }
            let n = logits.len();
            return Ok((Tensor::from_vec(logits, n, device)?, 0));
        }
        self.clear_kv_cache();
        Ok((self.forward(prompt, 0, device)?, 0))
    }

    fn clear_kv_cache(&mut self) {
        match self {
            Self::Llama(m) => m.clear_kv_cache(),
            Self::Qwen2(m) => m.clear_kv_cache(),
            // Its layers drop their cache whenever a forward starts at position 0.
            Self::Qwen3(m) => m.clear_kv_cache(),
            // Its layers reset their cache whenever a forward starts at position 0.
            Self::Phi3(_) => {}
            Self::Gemma3(_) => {}
            Self::Native { cached, .. } => *cached = CachedPrompt::default(),
            // Positions are overwritten from 0 by the next prefill.
            Self::NativeGemma3 { .. } => {}
        }
    }
}

/// llama-server's default logical batch and physical micro-batch sizes (`-b`, `-ub`).
const SERVER_BATCH: usize = 2048;
const SERVER_UBATCH: usize = 512;

/// The runs of prompt positions llama-server evaluates one after another for an `n`-token
/// prompt with its default settings, which the native gemma3 prefill follows so that its
/// numbers are llama-server's. Each run's length picks ggml's kernels (tiled or one-row
/// attention, gemm or gemv products), so the split changes logits, not just speed.
///
/// The server fills a batch token by token up to `-b`; for a model with sliding-window layers
/// it also stops where a context checkpoint goes, 4 + `-ub` and 4 tokens before the prompt's
/// end (llama.cpp PR 20288). `llama_decode` then cuts each batch into runs of at most `-ub`.
pub(crate) fn llama_server_prompt_batches(
    n: usize,
    sliding_window: bool,
) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < n {
        let mut end = start;
        loop {
            end += 1;
            let left = n - end;
            if left == 0
                || end - start == SERVER_BATCH
                || (sliding_window && (left == 4 + SERVER_UBATCH || left == 4))
            {
                break;
            }
        }
        let mut ubatch = start;
        while ubatch < end {
            let ubatch_end = (ubatch + SERVER_UBATCH).min(end);
            runs.push(ubatch..ubatch_end);
            ubatch = ubatch_end;
        }
        start = end;
    }
    runs
}

/// A loaded model, ready to generate.
pub struct Engine {
    info: ModelInfo,
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eog: HashSet<u32>,
    usable_context: usize,
    device: Device,
    pool: rayon::ThreadPool,
    weight_mode: WeightMode,
    load_time: Duration,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("info", &self.info)
            .field("weight_mode", &self.weight_mode)
            .field("usable_context", &self.usable_context)
            .finish_non_exhaustive()
    }
}

/// The context the engine serves for a model: the declared context, capped where an
/// architecture's implementation precomputes or masks less (also what `promptdeck compare`
/// reports as the local model's context window).
pub fn usable_context(gguf: &GgufModel) -> Result<usize, GgufError> {
    let info = &gguf.info;
    Ok(match info.architecture {
        Architecture::Llama => info.context_length.min(LLAMA_MAX_POSITIONS),
        // These precompute RoPE and size their caches for the declared context.
        Architecture::Qwen2 | Architecture::Qwen3 | Architecture::Phi3 => {
            info.context_length.min(QWEN2_MAX_POSITIONS)
        }
        // The native kernels mask the sliding window in every step.
        Architecture::Gemma3 if gemma3_config(gguf, 1).is_ok_and(|c| c.is_some()) => {
            info.context_length.min(LLAMA_MAX_POSITIONS)
        }
        Architecture::Gemma3 => candle_gemma3_context(gguf)?,
    })
}

/// candle's gemma3 applies the sliding-window mask only during prefill; past the window, decode
/// would attend further back than the model was trained to.
fn candle_gemma3_context(gguf: &GgufModel) -> Result<usize, GgufError> {
    let window = gguf
        .metadata()
        .opt_u64("gemma3.attention.sliding_window")?
        .map_or(usize::MAX, |w| w as usize);
    Ok(gguf
        .info
        .context_length
        .min(window)
        .min(LLAMA_MAX_POSITIONS))
}

impl Engine {
    pub fn load(path: impl AsRef<Path>, config: &EngineConfig) -> Result<Self, EngineError> {
        let started = Instant::now();
        let gguf = GgufModel::open(path.as_ref())?;
        let tokenizer = Tokenizer::from_gguf(&gguf.tokenizer_data()?)?;
        let token_string = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or_default()
                .to_string()
        };
        let template = ChatTemplate::new(
            gguf.chat_template.as_deref(),
            token_string(tokenizer.bos_id()),
            token_string(tokenizer.eos_id()),
        )?;
        let mut eog: HashSet<u32> = tokenizer.eos_id().into_iter().collect();
        if let Some(eot) = gguf.metadata().opt_u32("tokenizer.ggml.eot_token_id")? {
            eog.insert(eot);
        }
        for text in EOG_TEXTS {
            if let Some(id) = tokenizer.token_id(text)
                && tokenizer.is_control(id)
            {
                eog.insert(id);
            }
        }

        let info = gguf.info.clone();
        let mut usable_context = usable_context(&gguf)?;
        if !config.native && info.architecture == Architecture::Gemma3 {
            usable_context = candle_gemma3_context(&gguf)?;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .thread_name(|i| format!("promptdeck-local-{i}"))
            .build()
            .map_err(|e| EngineError::ThreadPool(e.to_string()))?;
        let device = Device::Cpu;
        let has_q4_1 = gguf
            .content
            .tensor_infos
            .values()
            .any(|t| t.ggml_dtype == GgmlDType::Q4_1);
        let native = if config.native {
            native_config(&gguf, usable_context)?
        } else {
            None
        };
        let weight_mode = if native.is_some() {
            WeightMode::Native
        } else if config.exact || !has_q4_1 {
            WeightMode::Exact
        } else {
            WeightMode::RepackedQ8_0
        };
        let file = File::open(&info.path).map_err(|source| GgufError::Io {
            path: info.path.clone(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let arch = info.architecture;
        let model = pool.install(|| -> Result<Model, EngineError> {
            match (weight_mode, native) {
                (_, Some(cfg)) => {
                    let mut source = GgufTensors {
                        content: &gguf.content,
                        reader: &mut reader,
                        path: &info.path,
                    };
                    Ok(match cfg {
                        NativeConfig::Llama(cfg) => {
                            let model = LlamaModel::load(cfg, &mut source)?;
                            let state = model.new_state();
                            Model::Native {
                                model: Box::new(model),
                                state,
                                cached: CachedPrompt::default(),
                            }
                        }
                        NativeConfig::Gemma3(cfg) => {
                            let model = Gemma3Model::load(cfg, &mut source)?;
                            let state = model.new_state();
                            Model::NativeGemma3 {
                                model: Box::new(model),
                                state,
                            }
                        }
                    })
                }
                (WeightMode::Exact | WeightMode::Native, None) => {
                    Ok(Model::load(arch, gguf.content, &mut reader, &device)?)
                }
                (WeightMode::RepackedQ8_0, None) => {
                    let bytes = repack_q4_1_to_q8_0(&gguf.content, &mut reader, &device)?;
                    let mut cursor = Cursor::new(bytes);
                    let content = Content::read(&mut cursor)?;
                    Ok(Model::load(arch, content, &mut cursor, &device)?)
                }
            }
        })?;
        Ok(Self {
            info,
            model,
            tokenizer,
            template,
            eog,
            usable_context,
            device,
            pool,
            weight_mode,
            load_time: started.elapsed(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn weight_mode(&self) -> WeightMode {
        self.weight_mode
    }

    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Drops the keys and values kept from the previous prompt, so the next request runs its
    /// whole prompt (benchmarks measure a cold prefill).
    pub fn forget_cached_prompt(&mut self) {
        self.model.clear_kv_cache();
    }

    /// Prompt plus generated tokens may not exceed this.
    pub fn usable_context(&self) -> usize {
        self.usable_context
    }

    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        Ok(self.template.render(messages, true)?)
    }

    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        let ids = match prompt {
            Prompt::Text(text) => self
                .tokenizer
                .encode(text, self.tokenizer.add_bos(), true)?,
            Prompt::Chat(messages) => {
                let rendered = self.render_chat(messages)?;
                // Templates that emit BOS themselves must not get a second one.
                let bos_in_text = self
                    .tokenizer
                    .bos_id()
                    .and_then(|id| self.tokenizer.token_text(id))
                    .is_some_and(|b| !b.is_empty() && rendered.starts_with(b));
                self.tokenizer
                    .encode(&rendered, self.tokenizer.add_bos() && !bos_in_text, true)?
            }
            Prompt::Tokens(ids) => ids.clone(),
        };
        let vocab = self.tokenizer.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::InvalidToken { id, vocab });
        }
        Ok(ids)
    }

    /// Generates a completion, calling `on_text` with each new piece of text as soon as it is
    /// known not to be part of a stop sequence. `cancel` is checked before every model step.
    pub fn generate(
        &mut self,
        request: &GenerateRequest,
        cancel: &AtomicBool,
        mut on_text: impl FnMut(&str) + Send,
    ) -> Result<Completion, EngineError> {
        let started = Instant::now();
        let prompt = self.prompt_tokens(&request.prompt)?;
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if prompt.len().saturating_add(request.max_tokens) > self.usable_context {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: request.max_tokens,
                context: self.usable_context,
            });
        }
        let load_ms = ms(self.load_time);
        let pool = &self.pool;
        let model = &mut self.model;
        let tokenizer = &self.tokenizer;
        let eog = &self.eog;
        let device = &self.device;
        pool.install(|| {
            let mut run = Run {
                model,
                tokenizer,
                eog,
                device,
                cancel,
            };
            let mut out = run.generate(request, &prompt, started, &mut on_text)?;
            out.timings.load_ms = load_ms;
            Ok(out)
        })
    }
}

/// One request's decode loop, borrowing the engine's parts.
struct Run<'a> {
    model: &'a mut Model,
    tokenizer: &'a Tokenizer,
    eog: &'a HashSet<u32>,
    device: &'a Device,
    cancel: &'a AtomicBool,
}

impl Run<'_> {
    fn generate(
        &mut self,
        request: &GenerateRequest,
        prompt: &[u32],
        started: Instant,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion, EngineError> {
        let mut timings = Timings::default();
        let mut usage = Usage {
            prompt_tokens: prompt.len(),
            completion_tokens: 0,
        };
        let mut text = String::new();
        let mut generated: Vec<u32> = Vec::new();
        let finish = |reason, text, generated, usage, timings| Completion {
            text,
            token_ids: generated,
            finish_reason: reason,
            usage,
            timings,
        };
        if self.cancel.load(Ordering::Relaxed) {
            return Ok(finish(
                FinishReason::Cancelled,
                text,
                generated,
                usage,
                timings,
            ));
        }
        if request.max_tokens == 0 {
            return Ok(finish(
                FinishReason::Length,
                text,
                generated,
                usage,
                timings,
            ));
        }

        let prefill_start = Instant::now();
        let (mut logits, reused) = self.model.prefill(prompt, self.device)?;
        let prefill = prefill_start.elapsed();
        timings.prefill_ms = ms(prefill);
        timings.prefill_tokens_per_s = per_second(prompt.len() - reused, prefill);
        timings.reused_prompt_tokens = reused;

        let mut sampler = Sampler::new(request.sampling.clone());
        let mut history: Vec<u32> = prompt.to_vec();
        let mut utf8 = Utf8Stream::default();
        let mut stops = StopMatcher::new(&request.stop);
        let mut decode_time = Duration::ZERO;
        let mut decode_steps = 0usize;
        let mut stopped_by_sequence = false;
        let reason = loop {
            if self.cancel.load(Ordering::Relaxed) {
                break FinishReason::Cancelled;
            }
            let next = sampler.sample(&logits, &history)?;
            if generated.is_empty() {
                timings.time_to_first_token_ms = ms(started.elapsed());
            }
            if self.eog.contains(&next) {
                break FinishReason::Stop;
            }
            generated.push(next);
            history.push(next);
            usage.completion_tokens = generated.len();
            let piece = utf8.push(&self.tokenizer.token_bytes(next)?);
            let step = stops.push(&piece);
            if !step.emit.is_empty() {
                on_text(&step.emit);
                text.push_str(&step.emit);
            }
            if step.stopped {
                stopped_by_sequence = true;
                break FinishReason::Stop;
            }
            if generated.len() >= request.max_tokens {
                break FinishReason::Length;
            }
            if self.cancel.load(Ordering::Relaxed) {
                break FinishReason::Cancelled;
            }
            let step_start = Instant::now();
            logits = self
                .model
                .forward(&[next], history.len() - 1, self.device)?;
            decode_time += step_start.elapsed();
            decode_steps += 1;
        };
        // Text after a stop sequence is discarded; otherwise held-back text is still output.
        if !stopped_by_sequence {
            let tail = utf8.finish();
            let step = stops.push(&tail);
            let mut rest = step.emit;
            if !step.stopped {
                rest.push_str(&stops.finish());
            }
            if !rest.is_empty() {
                on_text(&rest);
                text.push_str(&rest);
            }
        }
        timings.decode_tokens_per_s = per_second(decode_steps, decode_time);
        Ok(finish(reason, text, generated, usage, timings))
    }
}

/// How [`Engine::load`] would hold this file's weights with `exact` off and on; `promptdeck
/// models` shows it so the speed/parity trade-off is visible before loading.
pub fn planned_weight_modes(gguf: &GgufModel) -> Result<(WeightMode, WeightMode), EngineError> {
    if native_config(gguf, 1)?.is_some() {
        return Ok((WeightMode::Native, WeightMode::Native));
    }
    let has_q4_1 = gguf
        .content
        .tensor_infos
        .values()
        .any(|t| t.ggml_dtype == GgmlDType::Q4_1);
    let default = if has_q4_1 {
        WeightMode::RepackedQ8_0
    } else {
        WeightMode::Exact
    };
    Ok((default, WeightMode::Exact))
}

/// A configuration of one of the native forward passes.
enum NativeConfig {
    Llama(LlamaConfig),
    Gemma3(Gemma3Config),
}

/// The native kernels' configuration when they can run this file (see [`llama_config`] and
/// [`gemma3_config`]); `None` sends the model to candle instead.
fn native_config(gguf: &GgufModel, positions: usize) -> Result<Option<NativeConfig>, EngineError> {
    Ok(match gguf.info.architecture {
        Architecture::Llama => llama_config(gguf, positions)?.map(NativeConfig::Llama),
        Architecture::Gemma3 => gemma3_config(gguf, positions)?.map(NativeConfig::Gemma3),
        _ => None,
    })
}

/// A float metadata value (F32 or F64), or `default` when absent.
fn metadata_f32(gguf: &GgufModel, key: &str, default: f32) -> Result<f32, EngineError> {
    Ok(match gguf.content.metadata.get(key) {
        Some(gguf_file::Value::F32(v)) => *v,
        Some(gguf_file::Value::F64(v)) => *v as f32,
        Some(_) => {
            return Err(GgufError::WrongType {
                path: gguf.info.path.clone(),
                key: key.to_string(),
                expected: "float",
            }
            .into());
        }
        None => default,
    })
}

/// The gemma3 configuration when the native kernels can run this file: every matrix Q4_1, Q5_0,
/// Q8_0, Q4_K or Q6_K, no biases, no RoPE scaling, a sliding-window pattern given as a period
/// (or absent). Defaults follow llama.cpp's gemma3 loader.
fn gemma3_config(gguf: &GgufModel, positions: usize) -> Result<Option<Gemma3Config>, EngineError> {
    let md = gguf.metadata();
    let tensors = &gguf.content.tensor_infos;
    for (name, t) in tensors {
        let is_matrix = t.shape.rank() >= 2;
        if is_matrix
            && !promptdeck_kernels::gemma3::supported_matrix_type(&format!("{:?}", t.ggml_dtype))
        {
            return Ok(None);
        }
        if name.ends_with(".bias") || name.starts_with("rope_freqs") || name.contains("dense_") {
            return Ok(None);
        }
    }
    if md
        .opt_string("gemma3.rope.scaling.type")?
        .is_some_and(|t| t != "none")
    {
        return Ok(None);
    }
    // A per-layer array of sliding flags is not supported by the native path.
    let swa_pattern = match gguf
        .content
        .metadata
        .get("gemma3.attention.sliding_window_pattern")
    {
        None => 6,
        Some(gguf_file::Value::Array(_)) => return Ok(None),
        Some(_) => md.u64("gemma3.attention.sliding_window_pattern")? as usize,
    };
    let Some(embd) = tensors.get("token_embd.weight") else {
        return Ok(None);
    };
    let n_vocab = embd.shape.dims().first().copied().unwrap_or(0);
    let u = |key: &str| -> Result<usize, EngineError> { Ok(md.u64(key)? as usize) };
    let n_layer = u("gemma3.block_count")?;
    let n_embd = u("gemma3.embedding_length")?;
    let n_head = u("gemma3.attention.head_count")?;
    let head_dim = md
        .opt_u64("gemma3.attention.key_length")?
        .map_or(n_embd.checked_div(n_head).unwrap_or(0), |v| v as usize);
    if md
        .opt_u64("gemma3.attention.value_length")?
        .is_some_and(|v| v as usize != head_dim)
    {
        return Ok(None);
    }
    // llama.cpp: the 27B model (62 layers) scales by the embedding per head, others by the
    // head size.
    let attn_scale = if n_layer == 62 {
        1.0 / ((n_embd / n_head.max(1)) as f32).sqrt()
    } else {
        1.0 / (head_dim as f32).sqrt()
    };
    Ok(Some(Gemma3Config {
        n_layer,
        n_embd,
        n_head,
        n_head_kv: md
            .opt_u64("gemma3.attention.head_count_kv")?
            .map_or(n_head, |v| v as usize),
        head_dim,
        n_ff: u("gemma3.feed_forward_length")?,
        n_vocab,
        rope_base: metadata_f32(gguf, "gemma3.rope.freq_base", 10_000.0)?,
        rope_base_swa: metadata_f32(gguf, "gemma3.rope.freq_base_swa", 10_000.0)?,
        sliding_window: md
            .opt_u64("gemma3.attention.sliding_window")?
            .map_or(0, |v| v as usize),
        swa_pattern,
        rms_eps: metadata_f32(gguf, "gemma3.attention.layer_norm_rms_epsilon", 1e-6)?,
        attn_scale,
        final_softcap: metadata_f32(gguf, "gemma3.final_logit_softcapping", 0.0)?,
        max_positions: positions,
    }))
}

/// The llama configuration when the native kernels can run this file: plain RoPE (no scaling,
/// no frequency factors), no biases, every matrix Q4_1 or Q8_0.
fn llama_config(gguf: &GgufModel, positions: usize) -> Result<Option<LlamaConfig>, EngineError> {
    let md = gguf.metadata();
    let tensors = &gguf.content.tensor_infos;
    for (name, t) in tensors {
        let is_matrix = t.shape.rank() >= 2;
        if is_matrix
            && !promptdeck_kernels::llama::supported_matrix_type(&format!("{:?}", t.ggml_dtype))
        {
            return Ok(None);
        }
        if name.ends_with(".bias") || name.starts_with("rope_freqs") || name.contains("_exps") {
            return Ok(None);
        }
    }
    if md
        .opt_string("llama.rope.scaling.type")?
        .is_some_and(|t| t != "none")
        || md.opt_u64("llama.expert_count")?.unwrap_or(0) > 0
    {
        return Ok(None);
    }
    let Some(embd) = tensors.get("token_embd.weight") else {
        return Ok(None);
    };
    let n_vocab = embd.shape.dims().first().copied().unwrap_or(0);
    let u = |key: &str| -> Result<usize, EngineError> { Ok(md.u64(key)? as usize) };
    let n_head = u("llama.attention.head_count")?;
    let n_embd = u("llama.embedding_length")?;
    let float = |key: &str, default: f32| metadata_f32(gguf, key, default);
    let head_dim = n_embd.checked_div(n_head).unwrap_or(0);
    Ok(Some(LlamaConfig {
        n_layer: u("llama.block_count")?,
        n_embd,
        n_head,
        n_head_kv: md
            .opt_u64("llama.attention.head_count_kv")?
            .map_or(n_head, |v| v as usize),
        n_ff: u("llama.feed_forward_length")?,
        n_vocab,
        n_rot: md
            .opt_u64("llama.rope.dimension_count")?
            .map_or(head_dim, |v| v as usize),
        rope_base: float("llama.rope.freq_base", 10_000.0)?,
        rms_eps: float("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        max_positions: positions,
    }))
}

/// Reads tensors straight from the GGUF file for the native kernels.
struct GgufTensors<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
    path: &'a Path,
}

impl<R: std::io::Read + std::io::Seek> TensorSource for GgufTensors<'_, R> {
    fn tensor(&mut self, name: &str) -> Result<Option<WeightData>, KernelError> {
        use std::io::SeekFrom;
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Ok(None);
        };
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        let len = elems / block * info.ggml_dtype.type_size();
        let mut bytes = vec![0u8; len];
        let start = self.content.tensor_data_offset + info.offset;
        let io = |e: std::io::Error| {
            KernelError::Source(format!("{}: reading `{name}`: {e}", self.path.display()))
        };
        self.reader.seek(SeekFrom::Start(start)).map_err(io)?;
        self.reader.read_exact(&mut bytes).map_err(io)?;
        Ok(Some(WeightData {
            ty: format!("{:?}", info.ggml_dtype),
            // candle lists dimensions outermost first; ggml (and the kernels) innermost first.
            dims: info.shape.dims().iter().rev().copied().collect(),
            bytes,
        }))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_second(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// Rewrites the model as an in-memory GGUF whose Q4_1 matrices are Q8_0, so the stock model
/// loaders can build from it. A tied output matrix (no `output.weight`) gets its own Q8_0 copy
/// while the embedding table stays Q4_1, keeping embeddings exact.
fn repack_q4_1_to_q8_0(
    content: &Content,
    reader: &mut (impl std::io::Read + std::io::Seek),
    device: &Device,
) -> Result<Vec<u8>, EngineError> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len() + 1);
    for name in names {
        let qt = content.tensor(reader, name, device)?;
        if qt.dtype() != GgmlDType::Q4_1 {
            tensors.push((name.clone(), qt));
            continue;
        }
        let requant = QTensor::quantize(&qt.dequantize(device)?, GgmlDType::Q8_0)?;
        if name == "token_embd.weight" {
            if !content.tensor_infos.contains_key("output.weight") {
                tensors.push(("output.weight".to_string(), requant));
            }
            tensors.push((name.clone(), qt));
        } else {
            tensors.push((name.clone(), requant));
        }
    }
    // The tokenizer arrays are large and the loaders do not read them; the alignment key must
    // go because `gguf_file::write` always uses its own alignment.
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("tokenizer.") && k.as_str() != "general.alignment")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensor_refs)?;
    Ok(out.into_inner())
}

#[cfg(test)]
impl Engine {
    /// Runs a prefill on the native kernels and returns every traced intermediate tensor.
    pub(super) fn trace_native(&mut self, ids: &[u32]) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        let mut push = |name: &str, v: &[f32]| out.push((name.to_string(), v.to_vec()));
        match &mut self.model {
            Model::Native { model, state, .. } => self.pool.install(|| {
                model
                    .forward_traced(state, ids, 0, &mut push)
                    .expect("forward");
            }),
            Model::NativeGemma3 { model, state } => self.pool.install(|| {
                model
                    .forward_traced(state, ids, 0, &mut push)
                    .expect("forward");
            }),
            _ => {}
        }
        out
    }

    /// Logits after a prefill of `ids` that may keep the previous prompt's cached prefix, and
    /// how many tokens it kept.
    pub(super) fn prefill_logits_reusing(
        &mut self,
        ids: &[u32],
    ) -> Result<(Vec<f32>, usize), EngineError> {
        let model = &mut self.model;
        let device = &self.device;
        self.pool.install(|| {
            let (logits, reused) = model.prefill(ids, device)?;
            Ok((logits.to_vec1()?, reused))
        })
    }

    /// Logits of the last of `ids` run at positions `pos..` on the current cache.
    pub(super) fn step_logits(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>, EngineError> {
        let model = &mut self.model;
        let device = &self.device;
        self.pool
            .install(|| Ok(model.forward(ids, pos, device)?.to_vec1()?))
    }

    /// Logits after a prefill of `ids`, for numeric comparisons in tests.
    pub(super) fn prefill_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        let model = &mut self.model;
        let device = &self.device;
        self.pool.install(|| {
            model.clear_kv_cache();
            Ok(model.forward(ids, 0, device)?.to_vec1()?)
        })
    }
}
