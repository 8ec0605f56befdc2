//! The llama-architecture forward pass (SmolLM, Llama 2/3, Mistral-style GGUFs) with ggml's
//! CPU numerics: RMSNorm summed in double, RoPE from ggml's angle cache, an f16 KV cache,
//! flash attention exactly as ggml-cpu runs it (the per-row f16 path for batches under 64
//! queries, the tiled f32 path from 64 up), SwiGLU with ggml's polynomial exp, and matrix
//! products over Q8_1/Q8_0-quantized activations.

use rayon::prelude::*;

use crate::matmul::{self, Acts, Job, Matrix};
use crate::quant::{self, QK, WeightKind};
use crate::{KernelError, f16, math};

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Rotated dimensions per head (`rope.dimension_count`, usually the head size).
    pub n_rot: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    /// KV cache positions to allocate.
    pub max_positions: usize,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    fn validate(&self) -> Result<(), KernelError> {
        let bad = |m: &str| Err(KernelError::Config(m.to_string()));
        if self.n_head == 0 || self.n_head_kv == 0 || self.n_layer == 0 {
            return bad("head and layer counts must be positive");
        }
        if self.n_embd % self.n_head != 0 || self.n_head % self.n_head_kv != 0 {
            return bad("embedding size and head counts do not divide evenly");
        }
        if self.n_embd % QK != 0 || self.n_ff % QK != 0 {
            return bad("matrix sizes must be multiples of 32");
        }
        let hd = self.head_dim();
        if self.n_rot > hd || self.n_rot % 2 != 0 {
            return bad("rope dimension must be even and at most the head size");
        }
        if (hd * self.n_head_kv) % QK != 0 {
            return bad("KV width must be a multiple of 32");
        }
        Ok(())
    }
}

/// A tensor as stored in the file.
#[derive(Debug, Clone)]
pub struct WeightData {
    /// ggml type name (`F32`, `Q4_1`, `Q8_0`, ...).
    pub ty: String,
    /// Dimensions in ggml order: `dims[0]` is the row length.
    pub dims: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Where the model's tensors come from (the GGUF reader lives in promptdeck).
pub trait TensorSource {
    /// The named tensor, or `None` when the file has no such tensor.
    fn tensor(&mut self, name: &str) -> Result<Option<WeightData>, KernelError>;
}

/// Whether a ggml type name is a matrix format the native engine computes with.
pub fn supported_matrix_type(ty: &str) -> bool {
    matches!(ty, "Q4_1" | "Q8_0")
}

fn weight_kind(name: &str, ty: &str) -> Result<WeightKind, KernelError> {
    match ty {
        "Q4_1" => Ok(WeightKind::Q4_1),
        "Q8_0" => Ok(WeightKind::Q8_0),
        _ => Err(KernelError::UnsupportedType {
            name: name.to_string(),
            ty: ty.to_string(),
        }),
    }
}

pub(crate) fn required(src: &mut dyn TensorSource, name: &str) -> Result<WeightData, KernelError> {
    src.tensor(name)?
        .ok_or_else(|| KernelError::MissingTensor(name.to_string()))
}

pub(crate) fn check_dims(name: &str, t: &WeightData, want: &[usize]) -> Result<(), KernelError> {
    if t.dims != want {
        return Err(KernelError::BadShape {
            name: name.to_string(),
            got: t.dims.clone(),
            want: want.to_vec(),
        });
    }
    Ok(())
}

fn matrix(t: WeightData, name: &str, cols: usize, rows: usize) -> Result<Matrix, KernelError> {
    check_dims(name, &t, &[cols, rows])?;
    let kind = weight_kind(name, &t.ty)?;
    let want = rows * cols / QK * kind.block_bytes();
    if t.bytes.len() != want {
        return Err(KernelError::BadSize {
            name: name.to_string(),
            got: t.bytes.len(),
            want,
        });
    }
    Ok(Matrix::new(kind, t.bytes, rows, cols))
}

pub(crate) fn vector(
    src: &mut dyn TensorSource,
    name: &str,
    n: usize,
) -> Result<Vec<f32>, KernelError> {
    let t = required(src, name)?;
    check_dims(name, &t, &[n])?;
    if t.ty != "F32" {
        return Err(KernelError::UnsupportedType {
            name: name.to_string(),
            ty: t.ty,
        });
    }
    if t.bytes.len() != n * 4 {
        return Err(KernelError::BadSize {
            name: name.to_string(),
            got: t.bytes.len(),
            want: n * 4,
        });
    }
    Ok(t.bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The seven matrices of a transformer block: attention and feed-forward.
#[derive(Debug)]
pub(crate) struct BlockMatrices {
    pub(crate) wq: Matrix,
    pub(crate) wk: Matrix,
    pub(crate) wv: Matrix,
    pub(crate) wo: Matrix,
    pub(crate) gate: Matrix,
    pub(crate) up: Matrix,
    pub(crate) down: Matrix,
}

impl BlockMatrices {
    /// Loads block `i`'s matrices (`blk.{i}.attn_q.weight`, ...) for embedding width `e`,
    /// `q` query and `kv` key/value outputs and `ff` feed-forward units, each checked and
    /// packed by `matrix`.
    pub(crate) fn load(
        src: &mut dyn TensorSource,
        i: usize,
        (e, q, kv, ff): (usize, usize, usize, usize),
        matrix: fn(WeightData, &str, usize, usize) -> Result<Matrix, KernelError>,
    ) -> Result<Self, KernelError> {
        let mut m = |name: &str, cols: usize, rows: usize| -> Result<Matrix, KernelError> {
            let full = format!("blk.{i}.{name}.weight");
            let t = required(src, &full)?;
            matrix(t, &full, cols, rows)
        };
        Ok(Self {
            wq: m("attn_q", e, q)?,
            wk: m("attn_k", e, kv)?,
            wv: m("attn_v", e, kv)?,
            wo: m("attn_output", q, e)?,
            gate: m("ffn_gate", e, ff)?,
            up: m("ffn_up", e, ff)?,
            down: m("ffn_down", ff, e)?,
        })
    }

    /// Bytes of the seven matrices.
    pub(crate) fn size(&self) -> usize {
        [
            &self.wq, &self.wk, &self.wv, &self.wo, &self.gate, &self.up, &self.down,
        ]
        .iter()
        .map(|m| m.size())
        .sum()
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    mats: BlockMatrices,
}

/// A loaded llama model: packed weights and the embedding table as stored.
#[derive(Debug)]
pub struct LlamaModel {
    cfg: LlamaConfig,
    embd_kind: WeightKind,
    embd: Vec<u8>,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Matrix,
}

/// The per-sequence state: the f16 KV cache, laid out `[layer][kv_head][position][dim]`.
#[derive(Debug)]
pub struct LlamaState {
    /// Values are f16 (the cache type llama.cpp uses), held widened to f32 so attention reads
    /// them without converting.
    pub(crate) k: Vec<Vec<f32>>,
    pub(crate) v: Vec<Vec<f32>>,
    pub(crate) cap: usize,
}

impl LlamaState {
    /// An empty cache: `n_layer` layers of `per_layer` zeroed values, for `cap` positions.
    pub(crate) fn zeroed(n_layer: usize, per_layer: usize, cap: usize) -> Self {
        LlamaState {
            k: (0..n_layer).map(|_| vec![0.0f32; per_layer]).collect(),
            v: (0..n_layer).map(|_| vec![0.0f32; per_layer]).collect(),
            cap,
        }
    }
}

impl LlamaModel {
    /// Builds the model from its tensors (GGUF names). Matrices must be Q4_1 or Q8_0.
    pub fn load(cfg: LlamaConfig, src: &mut dyn TensorSource) -> Result<Self, KernelError> {
        cfg.validate()?;
        let (e, ff, v) = (cfg.n_embd, cfg.n_ff, cfg.n_vocab);
        let kv = cfg.head_dim() * cfg.n_head_kv;
        let embd_t = required(src, "token_embd.weight")?;
        check_dims("token_embd.weight", &embd_t, &[e, v])?;
        let embd_kind = weight_kind("token_embd.weight", &embd_t.ty)?;
        let output = match src.tensor("output.weight")? {
            Some(t) => matrix(t, "output.weight", e, v)?,
            // Tied embeddings: the output matrix is a copy of the table (llama.cpp duplicates
            // it too).
            None => matrix(embd_t.clone(), "token_embd.weight", e, v)?,
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let mats = BlockMatrices::load(src, i, (e, e, kv, ff), matrix)?;
            let attn_norm = vector(src, &format!("blk.{i}.attn_norm.weight"), e)?;
            let ffn_norm = vector(src, &format!("blk.{i}.ffn_norm.weight"), e)?;
            layers.push(Layer {
                attn_norm,
                ffn_norm,
                mats,
            });
        }
        let output_norm = vector(src, "output_norm.weight", e)?;
        let want = v * e / QK * embd_kind.block_bytes();
        if embd_t.bytes.len() != want {
            return Err(KernelError::BadSize {
                name: "token_embd.weight".into(),
                got: embd_t.bytes.len(),
                want,
            });
        }
        Ok(Self {
            cfg,
            embd_kind,
            embd: embd_t.bytes,
            layers,
            output_norm,
            output,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let l: usize = self.layers.iter().map(|l| l.mats.size()).sum();
        l + self.embd.len() + self.output.size()
    }

    /// A fresh KV cache for up to `cfg.max_positions` positions.
    pub fn new_state(&self) -> LlamaState {
        let c = &self.cfg;
        LlamaState::zeroed(
            c.n_layer,
            c.n_head_kv * c.max_positions * c.head_dim(),
            c.max_positions,
        )
    }

    /// Runs `tokens` at positions `pos..pos + tokens.len()` (the cache must hold everything
    /// before `pos`) and returns the logits of the last token.
    pub fn forward(
        &self,
        state: &mut LlamaState,
        tokens: &[u32],
        pos: usize,
    ) -> Result<Vec<f32>, KernelError> {
        let kernel = AttentionKernel::for_batch(tokens.len());
        self.forward_with(state, tokens, pos, kernel, &mut |_, _| {})
    }

    /// [`Self::forward`] with the attention kernel chosen by the caller. A prompt whose first
    /// positions are already cached runs only its tail, but must use the kernel that the whole
    /// prompt would have got, or its logits would differ in the last bits from a fresh run.
    pub fn forward_as_part_of(
        &self,
        state: &mut LlamaState,
        tokens: &[u32],
        pos: usize,
        kernel: AttentionKernel,
    ) -> Result<Vec<f32>, KernelError> {
        self.forward_with(state, tokens, pos, kernel, &mut |_, _| {})
    }

    /// [`Self::forward`], handing each intermediate tensor to `trace` under llama.cpp's graph
    /// name (`attn_norm-0`, `Qcur-0`, ...), for numeric comparisons with llama.cpp.
    pub fn forward_traced(
        &self,
        state: &mut LlamaState,
        tokens: &[u32],
        pos: usize,
        trace: &mut dyn FnMut(&str, &[f32]),
    ) -> Result<Vec<f32>, KernelError> {
        let kernel = AttentionKernel::for_batch(tokens.len());
        self.forward_with(state, tokens, pos, kernel, trace)
    }

    fn forward_with(
        &self,
        state: &mut LlamaState,
        tokens: &[u32],
        pos: usize,
        kernel: AttentionKernel,
        trace: &mut dyn FnMut(&str, &[f32]),
    ) -> Result<Vec<f32>, KernelError> {
        let c = &self.cfg;
        let n = tokens.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        if pos + n > state.cap {
            return Err(KernelError::ContextFull {
                pos: pos + n,
                cap: state.cap,
            });
        }
        let e = c.n_embd;
        let hd = c.head_dim();
        let kvw = hd * c.n_head_kv;
        // Embedding lookup (ggml_get_rows dequantizes the row).
        let row_bytes = e / QK * self.embd_kind.block_bytes();
        let mut x = vec![0.0f32; n * e];
        for (t, &id) in tokens.iter().enumerate() {
            if id as usize >= c.n_vocab {
                return Err(KernelError::InvalidToken {
                    id,
                    vocab: c.n_vocab,
                });
            }
            let src = &self.embd[id as usize * row_bytes..(id as usize + 1) * row_bytes];
            quant::dequantize_row(self.embd_kind, src, &mut x[t * e..(t + 1) * e]);
        }
        let rope = RopeCache::new(c, pos, n);
        let mut q = Vec::new();
        let mut k = Vec::new();
        let mut v = Vec::new();
        let mut attn = vec![0.0f32; n * e];
        let mut proj = Vec::new();
        let mut gate = Vec::new();
        let mut up = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            let cur = rms_norm(&x, e, c.rms_eps, &layer.attn_norm);
            trace(&format!("attn_norm-{li}"), &cur);
            let acts = Acts::quantize(layer.mats.wq.kind(), &cur, e);
            let acts_kv = if layer.mats.wk.kind() == layer.mats.wq.kind() {
                None
            } else {
                Some(Acts::quantize(layer.mats.wk.kind(), &cur, e))
            };
            let akv = acts_kv.as_ref().unwrap_or(&acts);
            matmul::run(&mut [
                Job {
                    w: &layer.mats.wq,
                    x: &acts,
                    out: &mut q,
                },
                Job {
                    w: &layer.mats.wk,
                    x: akv,
                    out: &mut k,
                },
                Job {
                    w: &layer.mats.wv,
                    x: akv,
                    out: &mut v,
                },
            ]);
            trace(&format!("Qcur-{li}"), &q);
            trace(&format!("Kcur-{li}"), &k);
            trace(&format!("Vcur-{li}"), &v);
            rope.apply(&mut q, c.n_head, hd);
            rope.apply(&mut k, c.n_head_kv, hd);
            trace(&format!("Qrope-{li}"), &q);
            trace(&format!("Krope-{li}"), &k);
            // Store K and V as f16 (ggml_set_rows into the f16 cache).
            let (kc, vc) = (&mut state.k[li], &mut state.v[li]);
            for t in 0..n {
                for h in 0..c.n_head_kv {
                    let at = (h * state.cap + pos + t) * hd;
                    for d in 0..hd {
                        kc[at + d] = f16::round(k[t * kvw + h * hd + d]);
                        vc[at + d] = f16::round(v[t * kvw + h * hd + d]);
                    }
                }
            }
            attention(c, &q, kc, vc, state.cap, pos, n, kernel, &mut attn);
            trace(&format!("kqv_out-{li}"), &attn);
            let acts = Acts::quantize(layer.mats.wo.kind(), &attn, e);
            matmul::run(&mut [Job {
                w: &layer.mats.wo,
                x: &acts,
                out: &mut proj,
            }]);
            trace(&format!("attn_out-{li}"), &proj);
            for (xv, p) in x.iter_mut().zip(&proj) {
                *xv += *p;
            }
            trace(&format!("ffn_inp-{li}"), &x);
            let cur = rms_norm(&x, e, c.rms_eps, &layer.ffn_norm);
            trace(&format!("ffn_norm-{li}"), &cur);
            let acts = Acts::quantize(layer.mats.gate.kind(), &cur, e);
            let acts_up = if layer.mats.up.kind() == layer.mats.gate.kind() {
                None
            } else {
                Some(Acts::quantize(layer.mats.up.kind(), &cur, e))
            };
            matmul::run(&mut [
                Job {
                    w: &layer.mats.gate,
                    x: &acts,
                    out: &mut gate,
                },
                Job {
                    w: &layer.mats.up,
                    x: acts_up.as_ref().unwrap_or(&acts),
                    out: &mut up,
                },
            ]);
            trace(&format!("ffn_gate-{li}"), &gate);
            trace(&format!("ffn_up-{li}"), &up);
            math::swiglu(&mut gate, &up);
            trace(&format!("ffn_swiglu-{li}"), &gate);
            let acts = Acts::quantize(layer.mats.down.kind(), &gate, c.n_ff);
            matmul::run(&mut [Job {
                w: &layer.mats.down,
                x: &acts,
                out: &mut proj,
            }]);
            trace(&format!("ffn_out-{li}"), &proj);
            for (xv, p) in x.iter_mut().zip(&proj) {
                *xv += *p;
            }
            trace(&format!("l_out-{li}"), &x);
        }
        // Only the last token's logits are needed (llama.cpp also computes just those).
        let last = &x[(n - 1) * e..];
        let cur = rms_norm(last, e, c.rms_eps, &self.output_norm);
        trace("result_norm", &cur);
        let acts = Acts::quantize(self.output.kind(), &cur, e);
        let mut logits = Vec::new();
        matmul::run(&mut [Job {
            w: &self.output,
            x: &acts,
            out: &mut logits,
        }]);
        trace("result_output", &logits);
        Ok(logits)
    }
}

/// ggml_rms_norm followed by the weight multiply: `sum(x*x)` accumulated in double,
/// `scale = 1/sqrtf(mean + eps)`, `y = (x * scale) * w`.
pub(crate) fn rms_norm(x: &[f32], e: usize, eps: f32, w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for (xr, yr) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
        let sum: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
        let mean = (sum / e as f64) as f32;
        let scale = 1.0f32 / (mean + eps).sqrt();
        for ((y, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *y = (xv * scale) * wv;
        }
    }
    out
}

/// ggml's RoPE angle cache for each position of the batch (normal mode: adjacent pairs).
pub(crate) struct RopeCache {
    n_rot: usize,
    /// `[token][n_rot]` of interleaved (cos, sin).
    cs: Vec<f32>,
}

impl RopeCache {
    fn new(c: &LlamaConfig, pos: usize, n: usize) -> Self {
        Self::with_base(c.rope_base, c.n_rot, pos, n)
    }

    pub(crate) fn with_base(base: f32, n_rot: usize, pos: usize, n: usize) -> Self {
        let theta_scale = base.powf(-2.0 / n_rot as f32);
        let mut cs = vec![0.0f32; n * n_rot];
        for t in 0..n {
            let mut theta = (pos + t) as f32;
            for i in (0..n_rot).step_by(2) {
                cs[t * n_rot + i] = theta.cos();
                cs[t * n_rot + i + 1] = theta.sin();
                theta *= theta_scale;
            }
        }
        Self { n_rot, cs }
    }

    /// Rotates `x` (`[token][head][hd]`) in place.
    fn apply(&self, x: &mut [f32], heads: usize, hd: usize) {
        rotate(&self.cs, self.n_rot, x, heads, hd);
    }

    /// NEOX mode: pairs `(i, i + n_rot/2)` use the angles of `2i`.
    pub(crate) fn apply_neox(&self, x: &mut [f32], heads: usize, hd: usize) {
        rotate_neox(&self.cs, self.n_rot, x, heads, hd);
    }
}

multiversion! {
    /// ggml's `rotate_pairs` for NEOX mode, with the same FMA contraction as `rotate`.
    fn rotate_neox(cs: &[f32], n_rot: usize, x: &mut [f32], heads: usize, hd: usize) => rotate_neox_body
}

#[inline(always)]
fn rotate_neox_body(cs: &[f32], n_rot: usize, x: &mut [f32], heads: usize, hd: usize) {
    let half = n_rot / 2;
    for (t, tok) in x.chunks_exact_mut(heads * hd).enumerate() {
        let cs = &cs[t * n_rot..(t + 1) * n_rot];
        for head in tok.chunks_exact_mut(hd) {
            for ic in 0..half {
                let (c, s) = (cs[2 * ic], cs[2 * ic + 1]);
                let (x0, x1) = (head[ic], head[ic + half]);
                head[ic] = x0.mul_add(c, -(x1 * s));
                head[ic + half] = x0.mul_add(s, x1 * c);
            }
        }
    }
}

multiversion! {
    /// ggml's `rotate_pairs` for normal mode, as GCC compiles it with FMA contraction: the
    /// first product of each expression is fused, `x0*cos - x1*sin` becomes
    /// `fma(x0, cos, -(x1*sin))`.
    fn rotate(cs: &[f32], n_rot: usize, x: &mut [f32], heads: usize, hd: usize) => rotate_body
}

#[inline(always)]
fn rotate_body(cs: &[f32], n_rot: usize, x: &mut [f32], heads: usize, hd: usize) {
    for (t, tok) in x.chunks_exact_mut(heads * hd).enumerate() {
        let cs = &cs[t * n_rot..(t + 1) * n_rot];
        for head in tok.chunks_exact_mut(hd) {
            for i in (0..n_rot).step_by(2) {
                let (c, s) = (cs[i], cs[i + 1]);
                let (x0, x1) = (head[i], head[i + 1]);
                head[i] = x0.mul_add(c, -(x1 * s));
                head[i + 1] = x0.mul_add(s, x1 * c);
            }
        }
    }
}

/// ggml-cpu's flash attention tile sizes.
pub(crate) const FA_TILE_Q: usize = 64;
const FA_TILE_KV: usize = 64;

/// ggml-cpu's two flash-attention kernels. They round differently, so which one ran is part of
/// a result's exact bits; each query row's output depends only on its own row and the cache, so
/// a batch may be split anywhere as long as every part uses the same kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// The tiled f32 kernel, which ggml uses for a batch of at least 64 queries.
    Tiled,
    /// The per-row f16 kernel, for smaller batches and every decode step.
    PerRow,
}

impl AttentionKernel {
    /// The kernel ggml picks for a batch of `n` queries.
    pub fn for_batch(n: usize) -> Self {
        if n >= FA_TILE_Q {
            Self::Tiled
        } else {
            Self::PerRow
        }
    }
}

/// Causal attention of `n` queries at positions `pos..pos+n` over the cache, written to `out`
/// (`[token][head][hd]`), with the given kernel.
#[allow(clippy::too_many_arguments)]
fn attention(
    c: &LlamaConfig,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    cap: usize,
    pos: usize,
    n: usize,
    kernel: AttentionKernel,
    out: &mut [f32],
) {
    let hd = c.head_dim();
    let e = c.n_embd;
    let group = c.n_head / c.n_head_kv;
    let scale = 1.0f32 / (hd as f32).sqrt();
    if kernel == AttentionKernel::Tiled {
        // One task per head: each K tile is transposed once and serves every query row.
        let heads: Vec<Vec<f32>> = (0..c.n_head)
            .into_par_iter()
            .map(|h| {
                let kvh = h / group;
                let kbase = &kc[kvh * cap * hd..(kvh + 1) * cap * hd];
                let vbase = &vc[kvh * cap * hd..(kvh + 1) * cap * hd];
                let qh: Vec<f32> = (0..n)
                    .flat_map(|t| q[t * e + h * hd..t * e + (h + 1) * hd].iter().copied())
                    .collect();
                attend_tiled(&qh, kbase, vbase, hd, pos, n, scale, 0)
            })
            .collect();
        for (h, o) in heads.iter().enumerate() {
            for t in 0..n {
                out[t * e + h * hd..t * e + (h + 1) * hd].copy_from_slice(&o[t * hd..(t + 1) * hd]);
            }
        }
        return;
    }
    // One task per (head, token): rows are independent.
    let mut rows: Vec<(usize, usize, Vec<f32>)> = (0..c.n_head)
        .flat_map(|h| (0..n).map(move |t| (h, t, Vec::new())))
        .collect();
    let attend = |(h, t, o): &mut (usize, usize, Vec<f32>)| {
        let kvh = *h / group;
        let kbase = &kc[kvh * cap * hd..(kvh + 1) * cap * hd];
        let vbase = &vc[kvh * cap * hd..(kvh + 1) * cap * hd];
        let qrow = &q[*t * e + *h * hd..*t * e + (*h + 1) * hd];
        *o = attend_one(qrow, kbase, vbase, hd, 0, pos + *t + 1, scale);
    };
    // One token's heads are less work than a fork-join costs.
    if n == 1 {
        rows.iter_mut().for_each(attend);
    } else {
        rows.par_iter_mut().with_min_len(8).for_each(attend);
    }
    for (h, t, o) in rows {
        out[t * e + h * hd..t * e + (h + 1) * hd].copy_from_slice(&o);
    }
}

multiversion! {
    /// `ggml_compute_forward_flash_attn_ext_f16_one_chunk` for one query row: Q rounded to
    /// f16, f16 dot products, online softmax with libm `expf`, V accumulated in f16.
    /// Keys before `lo` are masked (a sliding window); ggml skips masked keys in this path.
    pub(crate) fn attend_one(q: &[f32], k: &[f32], v: &[f32], hd: usize, lo: usize, n_kv: usize, scale: f32) -> Vec<f32> => attend_one_body
}

#[inline(always)]
fn attend_one_body(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    hd: usize,
    lo: usize,
    n_kv: usize,
    scale: f32,
) -> Vec<f32> {
    let qh: Vec<f32> = q.iter().map(|&x| f16::round(x)).collect();
    // Held as f32 values that are always f16-representable.
    let mut acc = vec![0.0f32; hd];
    let mut s_sum = 0.0f32;
    let mut m = f32::NEG_INFINITY;
    for ic in lo..n_kv {
        let mut s = math::dot_f16_avx512(&k[ic * hd..(ic + 1) * hd], &qh);
        s *= scale;
        s += 0.0; // the mask value for a visible position
        let mut ms = 1.0f32;
        let mut vs = 1.0f32;
        if s > m {
            let m_old = m;
            m = s;
            ms = (m_old - m).exp();
            // ggml_vec_scale_f16: f32 products rounded to f16.
            for a in acc.iter_mut() {
                *a *= ms;
            }
            f16::round_slice(&mut acc);
        } else {
            vs = (s - m).exp();
        }
        // ggml_vec_mad_f16: f32 FMAs rounded to f16.
        let vrow = &v[ic * hd..(ic + 1) * hd];
        for (a, &vv) in acc.iter_mut().zip(vrow) {
            *a = vv.mul_add(vs, *a);
        }
        f16::round_slice(&mut acc);
        s_sum = s_sum.mul_add(ms, vs);
    }
    let inv = if s_sum == 0.0 { 0.0 } else { 1.0 / s_sum };
    acc.iter().map(|&a| a * inv).collect()
}

multiversion! {
    /// `ggml_compute_forward_flash_attn_ext_tiled` for the `n` query rows (positions
    /// `pos..pos+n`) of one head, `q` holding `[row][hd]`: f32 Q, K·Q and P·V as sequential
    /// FMAs per output (ggml's `simd_gemm`), 64-wide KV tiles with ggml's vector softmax
    /// (polynomial exp, sums in double per 16 lanes). Returns `[row][hd]`.
    /// `window` (0 for none) masks keys `window` or more positions behind the query.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend_tiled(q: &[f32], k: &[f32], v: &[f32], hd: usize, pos: usize, n: usize, scale: f32, window: usize) -> Vec<f32> => attend_tiled_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_tiled_body(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    hd: usize,
    pos: usize,
    n: usize,
    scale: f32,
    window: usize,
) -> Vec<f32> {
    let mut acc = vec![0.0f32; n * hd];
    let mut s_sum = vec![0.0f32; n];
    let mut m = vec![f32::NEG_INFINITY; n];
    // K tile transposed, [d][tk], so the 64 scores of a row are independent SIMD lanes.
    let mut kt = vec![0.0f32; hd * FA_TILE_KV];
    let mut kq = [0.0f32; FA_TILE_KV];
    let n_kv_max = pos + n;
    let mut ic = 0;
    while ic < n_kv_max {
        let tile = (n_kv_max - ic).min(FA_TILE_KV);
        kt.fill(0.0);
        for tk in 0..tile {
            let krow = &k[(ic + tk) * hd..(ic + tk + 1) * hd];
            for (d, &kv) in krow.iter().enumerate() {
                kt[d * FA_TILE_KV + tk] = kv;
            }
        }
        for t in 0..n {
            let n_kv = pos + t + 1;
            let lo = if window == 0 {
                0
            } else {
                n_kv.saturating_sub(window)
            };
            if n_kv <= ic || ic + tile <= lo {
                // Every position of this tile is masked for this row: ggml skips it.
                continue;
            }
            let visible = (n_kv - ic).min(FA_TILE_KV);
            let qrow = &q[t * hd..(t + 1) * hd];
            kq.fill(0.0);
            for (d, &qd) in qrow.iter().enumerate() {
                let kd = &kt[d * FA_TILE_KV..(d + 1) * FA_TILE_KV];
                for (s, &kv) in kq.iter_mut().zip(kd) {
                    *s = kv.mul_add(qd, *s);
                }
            }
            for (tk, s) in kq.iter_mut().enumerate() {
                // scale, then the mask: 0 for visible positions, -inf past the row's position
                // and in the tile's padding.
                *s = if tk < visible && ic + tk >= lo {
                    *s * scale + 0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
            let tile_max = kq.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let m_new = m[t].max(tile_max);
            let acc_t = &mut acc[t * hd..(t + 1) * hd];
            if m_new > m[t] {
                let ms = (m[t] - m_new).exp();
                for a in acc_t.iter_mut() {
                    *a *= ms;
                }
                s_sum[t] *= ms;
            }
            m[t] = m_new;
            // ggml_vec_soft_max_f32: 16 lanes at a time, each group's sum added in double.
            let mut sum = 0.0f64;
            for chunk in kq.chunks_exact_mut(16) {
                let mut lanes = [0.0f32; 16];
                for (l, s) in lanes.iter_mut().zip(chunk.iter_mut()) {
                    *s = math::v_expf(*s - m_new);
                    *l = *s;
                }
                sum += f64::from(math::reduce16(&lanes));
            }
            s_sum[t] = (f64::from(s_sum[t]) + sum) as f32;
            for (tk, &p) in kq.iter().enumerate().take(tile) {
                let vrow = &v[(ic + tk) * hd..(ic + tk + 1) * hd];
                for (a, &vv) in acc_t.iter_mut().zip(vrow) {
                    *a = vv.mul_add(p, *a);
                }
            }
        }
        ic += FA_TILE_KV;
    }
    for (t, acc_t) in acc.chunks_exact_mut(hd).enumerate() {
        let inv = if s_sum[t] == 0.0 { 0.0 } else { 1.0 / s_sum[t] };
        for a in acc_t.iter_mut() {
            *a *= inv;
        }
    }
    acc
}
