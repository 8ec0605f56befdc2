//! Token choice from logits: greedy, or seeded sampling with temperature, top-k, top-p, min-p
//! and a repeat penalty. The same seed and parameters always give the same tokens.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 (or below) means greedy: always the most likely token.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// Drop tokens whose probability is below `min_p` times the top token's.
    pub min_p: Option<f64>,
    /// 1.0 disables it.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens (prompt included) the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            min_p: None,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }

    pub fn is_greedy(&self) -> bool {
        // NaN compares false and would otherwise reach the sampler as a temperature.
        self.temperature.is_nan() || self.temperature <= 0.0
    }
}

pub struct Sampler {
    params: SamplingParams,
    processor: LogitsProcessor,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let sampling = if params.is_greedy() {
            Sampling::ArgMax
        } else {
            let temperature = params.temperature;
            let top_p = params.top_p.filter(|p| *p > 0.0 && *p < 1.0);
            match (params.top_k.filter(|k| *k > 0), top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            params,
        }
    }

    /// `history` is every token so far (prompt and generated), for the repeat penalty.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> candle_core::Result<u32> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        let logits = if self.params.repeat_penalty != 1.0 && self.params.repeat_penalty > 0.0 {
            let start = history.len().saturating_sub(self.params.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                self.params.repeat_penalty,
                &history[start..],
            )?
        } else {
            logits
        };
        let min_p = self.params.min_p.filter(|p| *p > 0.0 && *p <= 1.0);
        self.processor.sample_f(&logits, |probs| {
            if let Some(min_p) = min_p {
                let max = probs.iter().copied().fold(0.0f32, f32::max);
                let floor = max * min_p as f32;
                for p in probs.iter_mut() {
                    if *p < floor {
                        *p = 0.0;
                    }
                }
            }
        })
    }
}
