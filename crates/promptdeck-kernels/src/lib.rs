//! Native CPU inference kernels for promptdeck's local engine.
//!
//! This crate owns the numerics of the native llama forward pass: f16 conversion (`f16`),
//! ggml block formats and the activation quantizers and integer dot kernels (`quant`), the
//! parallel matrix products over repacked weights (`matmul`), ggml's vector math (`math`) and
//! the llama-architecture model with its f16 KV cache (`llama`).
//!
//! The goal is greedy parity with llama.cpp on the CPU: every operation reproduces the rounding
//! of ggml's CPU backend as built natively on an AVX-512 machine (activations quantized to
//! Q8_1/Q8_0, per-block integer dot products accumulated with one FMA per block, an f16 KV
//! cache, flash attention with ggml's accumulation order). Each SIMD kernel has a scalar twin
//! that gives the same bits; tests check that on random data.
//!
//! It lives in its own crate so that promptdeck's dev profile can build it with optimizations
//! (`[profile.dev.package.promptdeck-kernels]`): `cargo test` and `cargo run` stay fast.

/// Defines `$name` that runs `$body` (an `#[inline(always)]` function) compiled with
/// AVX2/FMA/F16C/SSE4.1 when the CPU has them, and as plain code otherwise. Scalar `mul_add`,
/// `round_ties_even` and friends become single instructions in the first case and library calls
/// in the second; IEEE semantics make both give the same bits.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if $crate::has_avx2() {
                #[target_feature(enable = "avx2,fma,f16c,sse4.1")]
                #[allow(clippy::too_many_arguments)]
                fn fast($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: the CPU has every feature `fast` is compiled for (checked above).
                return unsafe { fast($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}

pub mod f16;
pub mod gemma3;
pub mod kquant;
pub mod llama;
pub mod math;
pub mod matmul;
pub mod quant;

pub use gemma3::{Gemma3Config, Gemma3Model};
pub use llama::{AttentionKernel, LlamaConfig, LlamaModel, LlamaState, TensorSource, WeightData};

/// Errors from building a model out of raw tensors.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tensor `{0}` is missing")]
    MissingTensor(String),
    #[error("tensor `{name}` has type {ty}, which the native engine does not support")]
    UnsupportedType { name: String, ty: String },
    #[error("tensor `{name}` has shape {got:?}, expected {want:?}")]
    BadShape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("tensor `{name}` holds {got} bytes, expected {want}")]
    BadSize {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// The tensor source failed (for example an I/O error reading the model file).
    #[error("{0}")]
    Source(String),
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    InvalidToken { id: u32, vocab: usize },
    #[error("position {pos} is beyond the KV cache of {cap} positions")]
    ContextFull { pos: usize, cap: usize },
}

/// Whether the AVX2/FMA/F16C kernels can run on this CPU (checked once, at runtime).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
