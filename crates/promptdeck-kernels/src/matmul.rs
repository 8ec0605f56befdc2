//! Weight matrices and the parallel products of activations with them. Work is split into many small row-group tasks on the caller's rayon pool, so a thread
//! that the OS deschedules (the other core is busy) delays nobody: the others take its tasks.

use rayon::prelude::*;

use crate::kquant::{self, KBlock};
use crate::quant::{self, ActBlock, GROUP, WeightKind};

/// A weight matrix of `rows` outputs by `cols` inputs, in GGUF block layout.
#[derive(Debug)]
pub struct Matrix {
    kind: WeightKind,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl Matrix {
    /// Takes GGUF bytes (row-major blocks); the caller has checked the byte length.
    pub fn new(kind: WeightKind, data: Vec<u8>, rows: usize, cols: usize) -> Self {
        debug_assert_eq!(cols % kind.block_elems(), 0);
        debug_assert_eq!(
            data.len(),
            rows * cols / kind.block_elems() * kind.block_bytes()
        );
        Self {
            kind,
            rows,
            cols,
            data,
        }
    }

    pub fn kind(&self) -> WeightKind {
        self.kind
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The blocks as stored in the file.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.data.len()
    }
}

/// Activations quantized for one weight kind: `n_tok` rows of `cols / block` blocks, Q8_1/Q8_0
/// in `blocks` or Q8_K in `kblocks`.
#[derive(Debug, Default)]
pub struct Acts {
    pub blocks: Vec<ActBlock>,
    pub kblocks: Vec<KBlock>,
    pub n_tok: usize,
    q8_1: bool,
    k: bool,
}

impl Acts {
    /// Quantizes `x` (`n_tok` rows of `cols`) as ggml does for `kind`'s `vec_dot_type`.
    pub fn quantize(kind: WeightKind, x: &[f32], cols: usize) -> Self {
        let n_tok = x.len() / cols;
        if kind.is_k() {
            return Self::quantize_k(kind, x, cols);
        }
        let nb = cols / quant::QK;
        let mut blocks = vec![ActBlock::default(); n_tok * nb];
        let q8_1 = kind.uses_q8_1();
        let quantize = |(xr, br): (&[f32], &mut [ActBlock])| {
            if q8_1 {
                quant::quantize_row_q8_1(xr, br);
            } else {
                quant::quantize_row_q8_0(xr, br);
            }
        };
        // A few rows take less time than waking another thread; every fork-join also waits for
        // the slowest thread, which hurts when the OS has descheduled one.
        if n_tok < 16 {
            x.chunks_exact(cols)
                .zip(blocks.chunks_exact_mut(nb))
                .for_each(quantize);
        } else {
            x.par_chunks_exact(cols)
                .zip(blocks.par_chunks_exact_mut(nb))
                .with_min_len(4)
                .for_each(quantize);
        }
        Self {
            blocks,
            kblocks: Vec::new(),
            n_tok,
            q8_1,
            k: false,
        }
    }

    fn quantize_k(kind: WeightKind, x: &[f32], cols: usize) -> Self {
        let nb = cols / kquant::QK_K;
        let n_tok = x.len() / cols;
        let mut kblocks = vec![KBlock::default(); n_tok * nb];
        // llama.cpp quantizes the rows going into a repacked Q4_K product four at a time with
        // `ggml_quantize_mat_q8_K_4x8` and the remainder with the reference quantizer; they
        // differ only in the sign rule when +max and -max tie. (A Q4_K matrix with a row count
        // that is not a multiple of 8 is not repacked, and llama.cpp then uses the reference
        // quantizer for every row; no supported model has one.)
        let grouped = if kind == WeightKind::Q4K {
            n_tok - n_tok % 4
        } else {
            0
        };
        x.chunks_exact(cols)
            .zip(kblocks.chunks_exact_mut(nb))
            .enumerate()
            .for_each(|(t, (xr, br))| kquant::quantize_row_q8_k(xr, br, t < grouped));
        Self {
            blocks: Vec::new(),
            kblocks,
            n_tok,
            q8_1: false,
            k: true,
        }
    }

    fn fits(&self, m: &Matrix) -> bool {
        let nb = m.cols / m.kind.block_elems();
        if m.kind.is_k() {
            self.k && self.kblocks.len() == self.n_tok * nb
        } else {
            !self.k && self.q8_1 == m.kind.uses_q8_1() && self.blocks.len() == self.n_tok * nb
        }
    }
}

/// One product: `out[t * rows + r] = sum_k w[r][k] * x[t][k]`.
pub struct Job<'a> {
    pub w: &'a Matrix,
    pub x: &'a Acts,
    pub out: &'a mut Vec<f32>,
}

/// Runs several products in one parallel region (for example Q, K and V of a layer), so the
/// threads meet once instead of once per matrix.
pub fn run(jobs: &mut [Job<'_>]) {
    struct Task<'b> {
        w: &'b Matrix,
        x: &'b Acts,
        group: usize,
        out: &'b mut [f32],
    }
    let mut scratch: Vec<Vec<f32>> = jobs
        .iter()
        .map(|j| {
            assert!(
                j.x.fits(j.w),
                "activations quantized for another weight type"
            );
            vec![0.0f32; j.w.rows * j.x.n_tok]
        })
        .collect();
    let mut tasks: Vec<Task<'_>> = Vec::new();
    for (job, buf) in jobs.iter().zip(scratch.iter_mut()) {
        let n_tok = job.x.n_tok;
        for (group, out) in buf.chunks_mut(GROUP * n_tok).enumerate() {
            tasks.push(Task {
                w: job.w,
                x: job.x,
                group,
                out,
            });
        }
    }
    // Small tasks (a few microseconds each for decode), so idle threads always find work.
    tasks.into_par_iter().with_min_len(2).for_each(|t| {
        let nb = t.w.cols / t.w.kind.block_elems();
        let row_bytes = nb * t.w.kind.block_bytes();
        let r0 = t.group * GROUP;
        let rows = GROUP.min(t.w.rows - r0);
        let data = &t.w.data[r0 * row_bytes..(r0 + rows) * row_bytes];
        if t.w.kind.is_k() {
            let path = kquant::path_for(t.w.kind, t.w.rows, t.x.n_tok);
            kquant::dot_rows(t.w.kind, path, data, rows, nb, &t.x.kblocks, t.out);
        } else {
            quant::dot_rows(t.w.kind, data, rows, nb, &t.x.blocks, t.out);
        }
    });
    for (job, buf) in jobs.iter_mut().zip(scratch) {
        let (rows, n_tok) = (job.w.rows, job.x.n_tok);
        job.out.clear();
        job.out.resize(rows * n_tok, 0.0);
        // Group-major [group][token][row in group] to token-major [token][row].
        for (g, gb) in buf.chunks(GROUP * n_tok).enumerate() {
            let r0 = g * GROUP;
            let n = GROUP.min(rows - r0);
            for t in 0..n_tok {
                job.out[t * rows + r0..t * rows + r0 + n].copy_from_slice(&gb[t * n..(t + 1) * n]);
            }
        }
    }
}
