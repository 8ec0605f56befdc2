//! The gemma3 forward pass with ggml's CPU numerics, as llama.cpp's `llama_model_gemma3`
//! graph runs it: the embedding scaled by `sqrt(n_embd)`, RMSNorm on each head of Q and K, NEOX
//! RoPE with a separate base for the sliding-window layers, Q scaled before attention (which
//! then uses scale 1), post-attention and post-FFN norms, a GELU(tanh)-gated FFN through ggml's
//! f16 GELU table, and the tied embedding as the output matrix. Matrices may be Q4_1, Q5_0,
//! Q8_0, Q4_K or Q6_K (the types of the K-quant GGUFs llama.cpp writes for small gemma3s).

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::llama::{
    BlockMatrices, FA_TILE_Q, LlamaState, RopeCache, attend_one, attend_tiled, check_dims,
    required, rms_norm, vector,
};
use crate::matmul::{self, Acts, Job, Matrix};
use crate::quant::{self, WeightKind};
use crate::{KernelError, TensorSource, WeightData, f16};

/// Hyper-parameters read from the GGUF metadata (and llama.cpp's gemma3 defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// `attention.key_length` (also the value length and the rotated dimensions).
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// RoPE base of the global layers.
    pub rope_base: f32,
    /// RoPE base of the sliding-window layers (llama.cpp's default is 10000).
    pub rope_base_swa: f32,
    /// Sliding window in positions; 0 means every layer is global.
    pub sliding_window: usize,
    /// Every `swa_pattern`-th layer is global, the others slide (llama.cpp's default is 6).
    pub swa_pattern: usize,
    pub rms_eps: f32,
    /// Q is multiplied by this before attention (`1/sqrt(head_dim)` below 27B).
    pub attn_scale: f32,
    /// `final_logit_softcapping`; 0 for none.
    pub final_softcap: f32,
    /// KV cache positions to allocate.
    pub max_positions: usize,
}

impl Gemma3Config {
    fn validate(&self) -> Result<(), KernelError> {
        let bad = |m: &str| Err(KernelError::Config(m.to_string()));
        if self.n_head == 0 || self.n_head_kv == 0 || self.n_layer == 0 || self.head_dim == 0 {
            return bad("head and layer counts must be positive");
        }
        if self.n_head % self.n_head_kv != 0 {
            return bad("head counts do not divide evenly");
        }
        if self.head_dim % 2 != 0 {
            return bad("the head size must be even");
        }
        Ok(())
    }

    /// Whether layer `il` uses the sliding window (llama.cpp's `set_swa_pattern`).
    pub fn is_swa(&self, il: usize) -> bool {
        self.sliding_window > 0
            && self.swa_pattern > 0
            && il % self.swa_pattern < self.swa_pattern - 1
    }
}

/// Whether every matrix type in the file is one the gemma3 path computes with.
pub fn supported_matrix_type(ty: &str) -> bool {
    WeightKind::from_ggml(ty).is_some()
}

fn matrix(t: WeightData, name: &str, cols: usize, rows: usize) -> Result<Matrix, KernelError> {
    check_dims(name, &t, &[cols, rows])?;
    let kind = WeightKind::from_ggml(&t.ty).ok_or_else(|| KernelError::UnsupportedType {
        name: name.to_string(),
        ty: t.ty.clone(),
    })?;
    if cols % kind.block_elems() != 0 {
        return Err(KernelError::BadShape {
            name: name.to_string(),
            got: t.dims.clone(),
            want: vec![cols.next_multiple_of(kind.block_elems()), rows],
        });
    }
    let want = rows * cols / kind.block_elems() * kind.block_bytes();
    if t.bytes.len() != want {
        return Err(KernelError::BadSize {
            name: name.to_string(),
            got: t.bytes.len(),
            want,
        });
    }
    Ok(Matrix::new(kind, t.bytes, rows, cols))
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    post_ffw_norm: Vec<f32>,
    mats: BlockMatrices,
}

/// A loaded gemma3 model.
#[derive(Debug)]
pub struct Gemma3Model {
    cfg: Gemma3Config,
    /// The embedding table, or `None` when it is the output matrix (tied, the usual case).
    embd: Option<Matrix>,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Matrix,
}

impl Gemma3Model {
    /// Builds the model from its tensors (GGUF names).
    pub fn load(cfg: Gemma3Config, src: &mut dyn TensorSource) -> Result<Self, KernelError> {
        cfg.validate()?;
        let (e, ff, v, hd) = (cfg.n_embd, cfg.n_ff, cfg.n_vocab, cfg.head_dim);
        let (qw, kvw) = (hd * cfg.n_head, hd * cfg.n_head_kv);
        let embd_t = required(src, "token_embd.weight")?;
        let (embd, output) = match src.tensor("output.weight")? {
            Some(t) => (
                Some(matrix(embd_t, "token_embd.weight", e, v)?),
                matrix(t, "output.weight", e, v)?,
            ),
            None => (None, matrix(embd_t, "token_embd.weight", e, v)?),
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let mats = BlockMatrices::load(src, i, (e, qw, kvw, ff), matrix)?;
            let mut vec = |name: &str, n: usize| vector(src, &format!("blk.{i}.{name}.weight"), n);
            layers.push(Layer {
                attn_norm: vec("attn_norm", e)?,
                q_norm: vec("attn_q_norm", hd)?,
                k_norm: vec("attn_k_norm", hd)?,
                post_attn_norm: vec("post_attention_norm", e)?,
                ffn_norm: vec("ffn_norm", e)?,
                post_ffw_norm: vec("post_ffw_norm", e)?,
                mats,
            });
        }
        let output_norm = vector(src, "output_norm.weight", e)?;
        Ok(Self {
            cfg,
            embd,
            layers,
            output_norm,
            output,
        })
    }

    pub fn config(&self) -> &Gemma3Config {
        &self.cfg
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let l: usize = self.layers.iter().map(|l| l.mats.size()).sum();
        l + self.embd.as_ref().map_or(0, Matrix::size) + self.output.size()
    }

    /// A fresh f16 KV cache for up to `cfg.max_positions` positions.
    pub fn new_state(&self) -> LlamaState {
        let c = &self.cfg;
        LlamaState::zeroed(
            c.n_layer,
            c.n_head_kv * c.max_positions * c.head_dim,
            c.max_positions,
        )
    }

    /// Runs `tokens` at positions `pos..pos + tokens.len()` and returns the last token's logits.
    pub fn forward(
        &self,
        state: &mut LlamaState,
        tokens: &[u32],
        pos: usize,
    ) -> Result<Vec<f32>, KernelError> {
        self.forward_traced(state, tokens, pos, &mut |_, _| {})
    }

    /// [`Self::forward`], handing intermediate tensors to `trace` under llama.cpp's graph names.
    pub fn forward_traced(
        &self,
        state: &mut LlamaState,
        tokens: &[u32],
        pos: usize,
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
        let (e, hd) = (c.n_embd, c.head_dim);
        let (qw, kvw) = (hd * c.n_head, hd * c.n_head_kv);
        // Embedding lookup (ggml_get_rows dequantizes the row), then ggml_scale.
        let table = self.embd.as_ref().unwrap_or(&self.output);
        let kind = table.kind();
        let row_bytes = e / kind.block_elems() * kind.block_bytes();
        let scale = (e as f32).sqrt();
        let mut x = vec![0.0f32; n * e];
        for (t, &id) in tokens.iter().enumerate() {
            if id as usize >= c.n_vocab {
                return Err(KernelError::InvalidToken {
                    id,
                    vocab: c.n_vocab,
                });
            }
            let src = &table.data()[id as usize * row_bytes..(id as usize + 1) * row_bytes];
            let row = &mut x[t * e..(t + 1) * e];
            quant::dequantize_row(kind, src, row);
            row.iter_mut().for_each(|v| *v *= scale);
        }
        trace("inp_scaled", &x);
        let rope_global = RopeCache::with_base(c.rope_base, hd, pos, n);
        let rope_swa = RopeCache::with_base(c.rope_base_swa, hd, pos, n);
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let mut attn = vec![0.0f32; n * qw];
        let (mut proj, mut gate, mut up) = (Vec::new(), Vec::new(), Vec::new());
        // Rows still computed: llama.cpp keeps only the output row after the last layer's
        // attention, so its last FFN runs on one row.
        let mut rows = n;
        for (li, layer) in self.layers.iter().enumerate() {
            let swa = c.is_swa(li);
            let cur = rms_norm(&x, e, c.rms_eps, &layer.attn_norm);
            trace(&format!("attn_norm-{li}"), &cur);
            let acts = ActsCache::new(
                &cur,
                e,
                &[
                    layer.mats.wq.kind(),
                    layer.mats.wk.kind(),
                    layer.mats.wv.kind(),
                ],
            );
            matmul::run(&mut [
                Job {
                    w: &layer.mats.wq,
                    x: acts.get(layer.mats.wq.kind()),
                    out: &mut q,
                },
                Job {
                    w: &layer.mats.wk,
                    x: acts.get(layer.mats.wk.kind()),
                    out: &mut k,
                },
                Job {
                    w: &layer.mats.wv,
                    x: acts.get(layer.mats.wv.kind()),
                    out: &mut v,
                },
            ]);
            trace(&format!("Vcur-{li}"), &v);
            let mut qn = rms_norm(&q, hd, c.rms_eps, &layer.q_norm);
            let mut kn = rms_norm(&k, hd, c.rms_eps, &layer.k_norm);
            trace(&format!("Qcur_normed-{li}"), &qn);
            trace(&format!("Kcur_normed-{li}"), &kn);
            let rope = if swa { &rope_swa } else { &rope_global };
            rope.apply_neox(&mut qn, c.n_head, hd);
            rope.apply_neox(&mut kn, c.n_head_kv, hd);
            trace(&format!("Qcur-{li}"), &qn);
            trace(&format!("Kcur-{li}"), &kn);
            qn.iter_mut().for_each(|v| *v *= c.attn_scale);
            let (kc, vc) = (&mut state.k[li], &mut state.v[li]);
            for t in 0..n {
                for h in 0..c.n_head_kv {
                    let at = (h * state.cap + pos + t) * hd;
                    for d in 0..hd {
                        kc[at + d] = f16::round(kn[t * kvw + h * hd + d]);
                        vc[at + d] = f16::round(v[t * kvw + h * hd + d]);
                    }
                }
            }
            let window = if swa { c.sliding_window } else { 0 };
            attention(c, &qn, kc, vc, state.cap, pos, n, window, &mut attn);
            trace(&format!("kqv_out-{li}"), &attn);
            let acts = Acts::quantize(layer.mats.wo.kind(), &attn, qw);
            matmul::run(&mut [Job {
                w: &layer.mats.wo,
                x: &acts,
                out: &mut proj,
            }]);
            trace(&format!("attn_out-{li}"), &proj);
            if li + 1 == self.layers.len() && rows > 1 {
                proj.drain(..(rows - 1) * e);
                x.drain(..(rows - 1) * e);
                rows = 1;
            }
            let normed = rms_norm(&proj, e, c.rms_eps, &layer.post_attn_norm);
            trace(&format!("attn_post_norm-{li}"), &normed);
            for (xv, p) in x.iter_mut().zip(&normed) {
                *xv += *p;
            }
            trace(&format!("sa_out-{li}"), &x);
            let cur = rms_norm(&x, e, c.rms_eps, &layer.ffn_norm);
            trace(&format!("ffn_norm-{li}"), &cur);
            let acts = ActsCache::new(&cur, e, &[layer.mats.gate.kind(), layer.mats.up.kind()]);
            matmul::run(&mut [
                Job {
                    w: &layer.mats.gate,
                    x: acts.get(layer.mats.gate.kind()),
                    out: &mut gate,
                },
                Job {
                    w: &layer.mats.up,
                    x: acts.get(layer.mats.up.kind()),
                    out: &mut up,
                },
            ]);
            trace(&format!("ffn_gate-{li}"), &gate);
            trace(&format!("ffn_up-{li}"), &up);
            geglu(&mut gate, &up);
            trace(&format!("ffn_geglu-{li}"), &gate);
            let acts = Acts::quantize(layer.mats.down.kind(), &gate, c.n_ff);
            matmul::run(&mut [Job {
                w: &layer.mats.down,
                x: &acts,
                out: &mut proj,
            }]);
            trace(&format!("ffn_out-{li}"), &proj);
            let normed = rms_norm(&proj, e, c.rms_eps, &layer.post_ffw_norm);
            for (xv, p) in x.iter_mut().zip(&normed) {
                *xv += *p;
            }
            trace(&format!("l_out-{li}"), &x);
        }
        let last = &x[(rows - 1) * e..];
        let cur = rms_norm(last, e, c.rms_eps, &self.output_norm);
        trace("result_norm", &cur);
        let acts = Acts::quantize(self.output.kind(), &cur, e);
        let mut logits = Vec::new();
        matmul::run(&mut [Job {
            w: &self.output,
            x: &acts,
            out: &mut logits,
        }]);
        if c.final_softcap != 0.0 {
            for l in logits.iter_mut() {
                *l = (*l * (1.0 / c.final_softcap)).tanh() * c.final_softcap;
            }
        }
        trace("result_output", &logits);
        Ok(logits)
    }
}

/// Activations quantized once per activation format among the matrices that read them.
struct ActsCache(Vec<(Format, Acts)>);

/// What an activation quantization depends on: Q5_0 and Q8_0 share Q8_0 activations; Q4_K and
/// Q6_K both use Q8_K but group rows differently (see `Acts::quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Q8_0,
    Other(WeightKind),
}

impl Format {
    fn of(kind: WeightKind) -> Self {
        match kind {
            WeightKind::Q5_0 | WeightKind::Q8_0 => Self::Q8_0,
            k => Self::Other(k),
        }
    }
}

impl ActsCache {
    fn new(x: &[f32], cols: usize, kinds: &[WeightKind]) -> Self {
        let mut v: Vec<(Format, Acts)> = Vec::new();
        for &k in kinds {
            let f = Format::of(k);
            if !v.iter().any(|(g, _)| *g == f) {
                v.push((f, Acts::quantize(k, x, cols)));
            }
        }
        Self(v)
    }

    fn get(&self, kind: WeightKind) -> &Acts {
        let f = Format::of(kind);
        // `new` quantized for every kind the caller passes, and callers look up only those.
        &self
            .0
            .iter()
            .find(|(g, _)| *g == f)
            .expect("quantized in new")
            .1
    }
}

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// ggml's `ggml_table_gelu_f16`: GELU(tanh) of every f16 value, rounded to f16, computed as
/// ggml-cpu's `ggml_gelu_f32` compiles with FMA contraction.
fn gelu_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|h| {
                let x = f16::to_f32(h);
                let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
                let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh());
                f16::round(y)
            })
            .collect()
    })
}

/// `ggml_vec_geglu_f32` with the f16 table: `gate = gelu(gate) * up`.
fn geglu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[usize::from(f16::from_f32(x))] * u
        };
    }
}

/// Causal attention (scale 1: Q is pre-scaled) with an optional sliding window, through the same
/// two flash-attention kernels as the llama path.
#[allow(clippy::too_many_arguments)]
fn attention(
    c: &Gemma3Config,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    cap: usize,
    pos: usize,
    n: usize,
    window: usize,
    out: &mut [f32],
) {
    let hd = c.head_dim;
    let qw = hd * c.n_head;
    let group = c.n_head / c.n_head_kv;
    if n >= FA_TILE_Q {
        let heads: Vec<Vec<f32>> = (0..c.n_head)
            .into_par_iter()
            .map(|h| {
                let kvh = h / group;
                let kbase = &kc[kvh * cap * hd..(kvh + 1) * cap * hd];
                let vbase = &vc[kvh * cap * hd..(kvh + 1) * cap * hd];
                let qh: Vec<f32> = (0..n)
                    .flat_map(|t| q[t * qw + h * hd..t * qw + (h + 1) * hd].iter().copied())
                    .collect();
                attend_tiled(&qh, kbase, vbase, hd, pos, n, 1.0, window)
            })
            .collect();
        for (h, o) in heads.iter().enumerate() {
            for t in 0..n {
                out[t * qw + h * hd..t * qw + (h + 1) * hd]
                    .copy_from_slice(&o[t * hd..(t + 1) * hd]);
            }
        }
        return;
    }
    let mut rows: Vec<(usize, usize, Vec<f32>)> = (0..c.n_head)
        .flat_map(|h| (0..n).map(move |t| (h, t, Vec::new())))
        .collect();
    let attend = |(h, t, o): &mut (usize, usize, Vec<f32>)| {
        let kvh = *h / group;
        let kbase = &kc[kvh * cap * hd..(kvh + 1) * cap * hd];
        let vbase = &vc[kvh * cap * hd..(kvh + 1) * cap * hd];
        let qrow = &q[*t * qw + *h * hd..*t * qw + (*h + 1) * hd];
        let n_kv = pos + *t + 1;
        let lo = if window == 0 {
            0
        } else {
            n_kv.saturating_sub(window)
        };
        *o = attend_one(qrow, kbase, vbase, hd, lo, n_kv, 1.0);
    };
    if n == 1 {
        rows.iter_mut().for_each(attend);
    } else {
        rows.par_iter_mut().with_min_len(2).for_each(attend);
    }
    for (h, t, o) in rows {
        out[t * qw + h * hd..t * qw + (h + 1) * hd].copy_from_slice(&o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Gemma3Config {
        Gemma3Config {
            n_layer: 18,
            n_embd: 640,
            n_head: 4,
            n_head_kv: 1,
            head_dim: 256,
            n_ff: 2048,
            n_vocab: 10,
            rope_base: 1e6,
            rope_base_swa: 1e4,
            sliding_window: 512,
            swa_pattern: 6,
            rms_eps: 1e-6,
            attn_scale: 0.0625,
            final_softcap: 0.0,
            max_positions: 16,
        }
    }

    #[test]
    fn every_sixth_layer_is_global() {
        let c = cfg();
        let global: Vec<usize> = (0..18).filter(|&i| !c.is_swa(i)).collect();
        assert_eq!(global, [5, 11, 17]);
        let none = Gemma3Config {
            sliding_window: 0,
            ..cfg()
        };
        assert!((0..18).all(|i| !none.is_swa(i)));
    }

    #[test]
    fn gelu_table_matches_the_formula() {
        let t = gelu_table();
        assert_eq!(t[usize::from(f16::from_f32(0.0))], 0.0);
        for x in [-3.0f32, -0.5, 0.25, 1.0, 2.0, 5.0] {
            let exact = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh());
            let got = t[usize::from(f16::from_f32(x))];
            assert!(
                (got - exact).abs() <= 2e-3 * exact.abs().max(1.0),
                "{x}: {got} {exact}"
            );
        }
        let mut g = [-11.0f32, 11.0, 1.0];
        geglu(&mut g, &[2.0, 2.0, 2.0]);
        assert_eq!(g[0], 0.0);
        assert_eq!(g[1], 22.0);
        assert_eq!(g[2], t[usize::from(f16::from_f32(1.0))] * 2.0);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let c = Gemma3Config {
            n_head: 3,
            n_head_kv: 2,
            ..cfg()
        };
        assert!(c.validate().is_err());
        assert!(cfg().validate().is_ok());
    }
}
