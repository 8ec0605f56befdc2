//! ggml's K-quant formats with 256-element super-blocks: the Q8_K activation quantizer and the
//! Q4_K x Q8_K and Q6_K x Q8_K dot products, as llama.cpp computes them on an x86 CPU.
//!
//! - Q8_K: `quantize_row_q8_K_ref` (ggml-base is built for plain SSE2, so `iscale * x` is
//!   rounded before the magic-number rounding: `q = round_even(x * iscale)`).
//! - Q4_K, repacked: llama.cpp repacks Q4_K matrices whose row count is a multiple of 8 on AVX2
//!   CPUs (its default extra buffer type) and runs `ggml_gemm_q4_K_8x8_q8_K` on each whole group
//!   of four activation rows, `ggml_gemv_q4_K_8x8_q8_K` on the rest. Both take the exact integer
//!   sum (scales applied) and the exact integer min correction, and accumulate each as
//!   `fma(float(int), d_w * d_a, acc)`, the gemm once per pair of 32-element sub-blocks, the gemv
//!   once per super-block; the result is `acc - acc_min`.
//! - Q4_K, not repacked (other row counts, or llama.cpp without extra buffer types):
//!   `ggml_vec_dot_q4_K_q8_K` (AVX2): eight integer lanes per super-block accumulated with
//!   `fma(d_a * d_w, float(lane), acc)`, plus four lanes of min corrections accumulated with
//!   `fma(-d_a * dmin_w, float(lane), acc_m)`; `hsum_float_8(acc) + ((m0 + m2) + (m1 + m3))`.
//! - Q6_K: `ggml_vec_dot_q6_K_q8_K` (AVX2), eight integer lanes per super-block accumulated
//!   with `fma(d_a * d_w, float(lane), acc)`, then `hsum_float_8`.
//!
//! Integer parts are exact, so the SIMD kernels only have to put the same integers in the same
//! lanes as their scalar twins to give identical bits; tests check that on random blocks.

use crate::f16;
use crate::quant::{WeightKind, hsum8};

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;
/// Bytes of a Q4_K block: `d`, `dmin` (f16), 12 bytes of 6-bit scales and mins, 128 of nibbles.
pub const Q4_K_BYTES: usize = 144;
/// Bytes of a Q6_K block: 128 low nibbles, 64 bytes of high bits, 16 i8 scales, `d` (f16).
pub const Q6_K_BYTES: usize = 210;

/// One Q8_K block of activations.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct KBlock {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// Sums of each 16 consecutive `qs`.
    pub bsums: [i16; 16],
}

impl Default for KBlock {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; 16],
        }
    }
}

/// Quantizes one row (`x.len() == out.len() * 256`) to Q8_K. The element of largest magnitude
/// gives the scale and its sign: the first such element (`quantize_row_q8_K_ref`), or, with
/// `positive_wins`, `+amax` whenever present (`ggml_quantize_mat_q8_K_4x8`, which llama.cpp uses
/// for each group of four rows going into a repacked Q4_K product).
pub fn quantize_row_q8_k(x: &[f32], out: &mut [KBlock], positive_wins: bool) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (xb, blk) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *blk = KBlock::default();
            continue;
        }
        if positive_wins && xb.contains(&amax) {
            max = amax;
        }
        let iscale = -127.0f32 / max;
        let mut bsums = [0i16; 16];
        for (j, (q, &v)) in blk.qs.iter_mut().zip(xb).enumerate() {
            let r = (iscale * v).round_ties_even().min(127.0) as i32;
            *q = r as i8;
            bsums[j / 16] += r as i16;
        }
        blk.bsums = bsums;
        blk.d = 1.0 / iscale;
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The 6-bit scale and min of sub-block `j` (ggml's `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantizes one row of a K-quant matrix (tests and diagnostics).
pub fn dequantize_row(kind: WeightKind, src: &[u8], out: &mut [f32]) {
    match kind {
        WeightKind::Q4K => {
            for (blk, y) in src.chunks_exact(Q4_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let d = f16::to_f32(le16(blk, 0));
                let dmin = f16::to_f32(le16(blk, 2));
                let (sc, qs) = (&blk[4..16], &blk[16..144]);
                for j in 0..4 {
                    let (s1, m1) = scale_min_k4(2 * j, sc);
                    let (s2, m2) = scale_min_k4(2 * j + 1, sc);
                    let (d1, mm1) = (d * f32::from(s1), dmin * f32::from(m1));
                    let (d2, mm2) = (d * f32::from(s2), dmin * f32::from(m2));
                    for l in 0..32 {
                        let q = qs[32 * j + l];
                        y[64 * j + l] = d1 * f32::from(q & 0x0f) - mm1;
                        y[64 * j + 32 + l] = d2 * f32::from(q >> 4) - mm2;
                    }
                }
            }
        }
        WeightKind::Q6K => {
            for (blk, y) in src.chunks_exact(Q6_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let d = f16::to_f32(le16(blk, 208));
                for (e, v) in y.iter_mut().enumerate() {
                    let sc = blk[192 + e / 16] as i8;
                    *v = d * f32::from(sc) * q6_value(blk, e) as f32;
                }
            }
        }
        _ => unreachable!("not a K-quant kind"),
    }
}

/// Element `e` of a Q6_K block as the unsigned 6-bit value (0..64) before the -32 offset.
#[inline(always)]
fn q6_unsigned(blk: &[u8], e: usize) -> i32 {
    let (half, r) = (e / 128, e % 128);
    let (quarter, l) = (r / 32, r % 32);
    let ql = &blk[half * 64..half * 64 + 64];
    let qh = blk[128 + half * 32 + l];
    let low = match quarter {
        0 => ql[l] & 0x0f,
        1 => ql[l + 32] & 0x0f,
        2 => ql[l] >> 4,
        _ => ql[l + 32] >> 4,
    };
    let high = (qh >> (2 * quarter)) & 3;
    i32::from(low | (high << 4))
}

/// A Q4_K super-block's exact integer parts per pair of 32-element sub-blocks, the unit the
/// repacked gemm accumulates in floats: `(s1 * q.a over the first + s2 * q.a over the second,
/// m1 * bsum of the first + m2 * bsum of the second)`.
#[inline(always)]
fn q4k_pair_ints(blk: &[u8], a: &KBlock) -> [(i32, i32); 4] {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { avx2::q4k_pair_ints(blk, a) };
    }
    q4k_pair_ints_scalar(blk, a)
}

fn q4k_pair_ints_scalar(blk: &[u8], a: &KBlock) -> [(i32, i32); 4] {
    let (sc, qs) = (&blk[4..16], &blk[16..144]);
    let mut pairs = [(0i32, 0i32); 4];
    for (j, pair) in pairs.iter_mut().enumerate() {
        let (s1, m1) = scale_min_k4(2 * j, sc);
        let (s2, m2) = scale_min_k4(2 * j + 1, sc);
        let (mut lo, mut hi) = (0i32, 0i32);
        for l in 0..32 {
            let q = qs[32 * j + l];
            lo += i32::from(q & 0x0f) * i32::from(a.qs[64 * j + l]);
            hi += i32::from(q >> 4) * i32::from(a.qs[64 * j + 32 + l]);
        }
        let b = &a.bsums[4 * j..4 * j + 4];
        *pair = (
            i32::from(s1) * lo + i32::from(s2) * hi,
            i32::from(m1) * (i32::from(b[0]) + i32::from(b[1]))
                + i32::from(m2) * (i32::from(b[2]) + i32::from(b[3])),
        );
    }
    pairs
}

fn q6_value(blk: &[u8], e: usize) -> i32 {
    q6_unsigned(blk, e) - 32
}

/// The product llama.cpp runs for a `rows`-row `kind` matrix and `n_tok` activation rows.
pub fn path_for(kind: WeightKind, rows: usize, n_tok: usize) -> KPath {
    // promptdeck's reference is llama-server with its default extra buffer type, which repacks
    // these matrices (see docs/benchmarks.md).
    if kind == WeightKind::Q4K && rows % 8 == 0 {
        KPath::Repacked
    } else if n_tok >= 8 {
        KPath::Tiled
    } else {
        KPath::VecDot
    }
}

/// Which of llama.cpp's K-quant matrix products to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KPath {
    /// `ggml_vec_dot_q{4,6}_K_q8_K`: fewer than 8 activation rows, weights not repacked.
    VecDot,
    /// The repacked Q4_K kernels (`ggml_gemv/gemm_q4_K_8x8_q8_K`).
    Repacked,
    /// ggml-cpu's tiled K-quant matmul (8 or more activation rows, weights not repacked).
    Tiled,
}

/// `out[t * rows + r]` = row `r` of the matrix (`rows` rows of `nb` super-blocks, GGUF layout)
/// times activation row `t`, with `path`'s arithmetic. AVX2 when the CPU has it; both paths give
/// identical bits.
pub fn dot_rows(
    kind: WeightKind,
    path: KPath,
    data: &[u8],
    rows: usize,
    nb: usize,
    acts: &[KBlock],
    out: &mut [f32],
) {
    let n_tok = acts.len() / nb;
    let bb = kind.block_bytes();
    assert!(data.len() >= rows * nb * bb);
    assert!(out.len() >= n_tok * rows);
    if path != KPath::VecDot {
        row_by_row(kind, path, data, rows, nb, acts, out);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above); lengths checked above.
        unsafe { avx2::dot_rows(kind, data, rows, nb, acts, out) };
        return;
    }
    dot_rows_scalar(kind, data, rows, nb, acts, out);
}

multiversion! {
    /// The repacked and tiled products, one output at a time; compiled for FMA where the CPU
    /// has it, so `mul_add` is one instruction rather than a call.
    fn row_by_row(kind: WeightKind, path: KPath, data: &[u8], rows: usize, nb: usize, acts: &[KBlock], out: &mut [f32]) => row_by_row_body
}

#[inline(always)]
fn row_by_row_body(
    kind: WeightKind,
    path: KPath,
    data: &[u8],
    rows: usize,
    nb: usize,
    acts: &[KBlock],
    out: &mut [f32],
) {
    let bb = kind.block_bytes();
    let n_tok = acts.len() / nb;
    // The repacked product runs whole groups of four activation rows through its gemm and the
    // rest through its gemv.
    let gemm_rows = n_tok - n_tok % 4;
    for t in 0..n_tok {
        let arow = &acts[t * nb..(t + 1) * nb];
        for r in 0..rows {
            let row = &data[r * nb * bb..(r + 1) * nb * bb];
            out[t * rows + r] = if path == KPath::Repacked && kind == WeightKind::Q4K {
                if t < gemm_rows {
                    q4k_repacked_gemm_row(row, arow)
                } else {
                    q4k_repacked_gemv_row(row, arow)
                }
            } else {
                tiled_row(kind, row, arow)
            };
        }
    }
}

/// The exact integer parts of one super-block product: `(sum of scale * q * a, sum of min *
/// bsum)`, with Q6_K's -32 offset applied (its second part is 0).
#[inline(always)]
fn block_ints(kind: WeightKind, blk: &[u8], a: &KBlock) -> (i32, i32) {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { avx2::block_ints(kind, blk, a) };
    }
    block_ints_scalar(kind, blk, a)
}

fn block_ints_scalar(kind: WeightKind, blk: &[u8], a: &KBlock) -> (i32, i32) {
    match kind {
        WeightKind::Q4K => q4k_pair_ints_scalar(blk, a)
            .iter()
            .fold((0, 0), |(s, m), &(ps, pm)| (s + ps, m + pm)),
        _ => {
            let sc = &blk[192..208];
            let mut isum = 0i32;
            for (g, &scale) in sc.iter().enumerate() {
                let mut s = 0i32;
                for e in 16 * g..16 * g + 16 {
                    s += q6_value(blk, e) * i32::from(a.qs[e]);
                }
                isum += i32::from(scale as i8) * s;
            }
            (isum, 0)
        }
    }
}

/// One row of ggml-cpu's tiled K-quant matmul (its AVX512-VNNI microkernel): per super-block
/// `r = fma(-dmin_w, float(min part), float(int part) * d_w)`, then `acc = fma(r, d_a, acc)`
/// (the epilogue's `add(acc, mul(r, d_a))`, which GCC fuses in llama.cpp's AVX-512 build).
#[inline(always)]
fn tiled_row(kind: WeightKind, row: &[u8], acts: &[KBlock]) -> f32 {
    let bb = kind.block_bytes();
    let mut acc = 0.0f32;
    for (blk, a) in row.chunks_exact(bb).zip(acts) {
        let (isum, imin) = block_ints(kind, blk, a);
        let r = match kind {
            WeightKind::Q4K => {
                let d = f16::to_f32(le16(blk, 0));
                let dmin = f16::to_f32(le16(blk, 2));
                (-dmin).mul_add(imin as f32, isum as f32 * d)
            }
            _ => isum as f32 * f16::to_f32(le16(blk, 208)),
        };
        acc = r.mul_add(a.d, acc);
    }
    acc
}

/// One row of the repacked Q4_K gemm (see the module documentation): floats accumulate once per
/// pair of sub-blocks.
#[inline(always)]
fn q4k_repacked_gemm_row(row: &[u8], acts: &[KBlock]) -> f32 {
    let mut acc = 0.0f32;
    let mut acc_min = 0.0f32;
    for (blk, a) in row.chunks_exact(Q4_K_BYTES).zip(acts) {
        let d = f16::to_f32(le16(blk, 0)) * a.d;
        let dmin = f16::to_f32(le16(blk, 2)) * a.d;
        for (isum, imin) in q4k_pair_ints(blk, a) {
            acc = (isum as f32).mul_add(d, acc);
            acc_min = (imin as f32).mul_add(dmin, acc_min);
        }
    }
    acc - acc_min
}

/// One row of the repacked Q4_K gemv (see the module documentation): floats accumulate once per
/// super-block.
#[inline(always)]
fn q4k_repacked_gemv_row(row: &[u8], acts: &[KBlock]) -> f32 {
    let mut acc = 0.0f32;
    let mut acc_min = 0.0f32;
    for (blk, a) in row.chunks_exact(Q4_K_BYTES).zip(acts) {
        let d = f16::to_f32(le16(blk, 0));
        let dmin = f16::to_f32(le16(blk, 2));
        let (isum, imin) = block_ints(WeightKind::Q4K, blk, a);
        acc = (isum as f32).mul_add(d * a.d, acc);
        acc_min = (imin as f32).mul_add(dmin * a.d, acc_min);
    }
    acc - acc_min
}

/// The scalar reference for [`dot_rows`] (see the module documentation for the arithmetic).
pub fn dot_rows_scalar(
    kind: WeightKind,
    data: &[u8],
    rows: usize,
    nb: usize,
    acts: &[KBlock],
    out: &mut [f32],
) {
    let bb = kind.block_bytes();
    let n_tok = acts.len() / nb;
    for t in 0..n_tok {
        let arow = &acts[t * nb..(t + 1) * nb];
        for r in 0..rows {
            let row = &data[r * nb * bb..(r + 1) * nb * bb];
            out[t * rows + r] = match kind {
                WeightKind::Q4K => q4k_row_scalar(row, arow),
                WeightKind::Q6K => q6k_row_scalar(row, arow),
                _ => unreachable!("not a K-quant kind"),
            };
        }
    }
}

fn q4k_row_scalar(row: &[u8], acts: &[KBlock]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut acc_m = [0.0f32; 4];
    for (blk, a) in row.chunks_exact(Q4_K_BYTES).zip(acts) {
        let d = a.d * f16::to_f32(le16(blk, 0));
        let dmin = -a.d * f16::to_f32(le16(blk, 2));
        let (sc, qs) = (&blk[4..16], &blk[16..144]);
        let mut scales = [0i32; 8];
        let mut mins = [0i32; 8];
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, sc);
            scales[j] = i32::from(s);
            mins[j] = i32::from(m);
        }
        // Lane l: bytes 4l..4l+4 of each 32-element chunk, times that chunk's scale.
        let mut lanes = [0i32; 8];
        for j in 0..4 {
            for (l, lane) in lanes.iter_mut().enumerate() {
                let (mut lo, mut hi) = (0i32, 0i32);
                for b in 4 * l..4 * l + 4 {
                    let q = qs[32 * j + b];
                    lo += i32::from(q & 0x0f) * i32::from(a.qs[64 * j + b]);
                    hi += i32::from(q >> 4) * i32::from(a.qs[64 * j + 32 + b]);
                }
                *lane += scales[2 * j] * lo + scales[2 * j + 1] * hi;
            }
        }
        for (acc, &lane) in acc.iter_mut().zip(&lanes) {
            *acc = d.mul_add(lane as f32, *acc);
        }
        // Four lanes of min corrections, each over two sub-blocks.
        for (k, acc) in acc_m.iter_mut().enumerate() {
            let q8s = |m: usize| i32::from(a.bsums[2 * m]) + i32::from(a.bsums[2 * m + 1]);
            let prod = mins[2 * k] * q8s(2 * k) + mins[2 * k + 1] * q8s(2 * k + 1);
            *acc = dmin.mul_add(prod as f32, *acc);
        }
    }
    let m = [acc_m[0] + acc_m[2], acc_m[1] + acc_m[3]];
    hsum8(&acc) + (m[0] + m[1])
}

fn q6k_row_scalar(row: &[u8], acts: &[KBlock]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (blk, a) in row.chunks_exact(Q6_K_BYTES).zip(acts) {
        let d = a.d * f16::to_f32(le16(blk, 208));
        let sc = &blk[192..208];
        let mut lanes = [0i32; 8];
        // Lane l holds bytes 4l..4l+4 of each 32-element chunk (scale per 16 elements), less
        // 32 * (bsums[2l] * sc[2l] + bsums[2l+1] * sc[2l+1]).
        for chunk in 0..8 {
            for (l, lane) in lanes.iter_mut().enumerate() {
                let mut s = 0i32;
                for b in 4 * l..4 * l + 4 {
                    let e = chunk * 32 + b;
                    s += q6_unsigned(blk, e) * i32::from(a.qs[e]);
                }
                *lane += i32::from(sc[e_scale(chunk, l)] as i8) * s;
            }
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            let sub = i32::from(a.bsums[2 * l]) * i32::from(sc[2 * l] as i8)
                + i32::from(a.bsums[2 * l + 1]) * i32::from(sc[2 * l + 1] as i8);
            *lane -= sub << 5;
        }
        for (acc, &lane) in acc.iter_mut().zip(&lanes) {
            *acc = d.mul_add(lane as f32, *acc);
        }
    }
    hsum8(&acc)
}

/// Scale index of lane `l`'s bytes in 32-element chunk `chunk`.
#[inline(always)]
fn e_scale(chunk: usize, l: usize) -> usize {
    2 * chunk + usize::from(l >= 4)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{KBlock, Q4_K_BYTES, Q6_K_BYTES, le16, scale_min_k4};
    use crate::quant::WeightKind;
    use std::arch::x86_64::*;

    /// Activation rows computed together against one unpacked weight row.
    const TILE: usize = 4;

    /// # Safety
    /// The CPU must support AVX2 and FMA; `data` must hold `rows * nb` blocks and `out`
    /// `n_tok * rows` floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows(
        kind: WeightKind,
        data: &[u8],
        rows: usize,
        nb: usize,
        acts: &[KBlock],
        out: &mut [f32],
    ) {
        let n_tok = acts.len() / nb;
        let row_bytes = nb * kind.block_bytes();
        for r in 0..rows {
            let row = &data[r * row_bytes..(r + 1) * row_bytes];
            let mut t = 0;
            while t < n_tok {
                let n = (n_tok - t).min(TILE);
                let a = &acts[t * nb..(t + n) * nb];
                let mut res = [0.0f32; TILE];
                macro_rules! go {
                    ($f:ident) => {
                        match n {
                            4 => $f::<4>(row, nb, a, &mut res),
                            3 => $f::<3>(row, nb, a, &mut res),
                            2 => $f::<2>(row, nb, a, &mut res),
                            _ => $f::<1>(row, nb, a, &mut res),
                        }
                    };
                }
                match kind {
                    WeightKind::Q4K => go!(q4k),
                    WeightKind::Q6K => go!(q6k),
                    _ => unreachable!("not a K-quant kind"),
                }
                for (j, v) in res.iter().enumerate().take(n) {
                    out[(t + j) * rows + r] = *v;
                }
                t += n;
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load(p: &[u8]) -> __m256i {
        assert!(p.len() >= 32);
        // SAFETY: at least 32 bytes (asserted).
        unsafe { _mm256_loadu_si256(p.as_ptr() as *const __m256i) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_i8(p: &[i8]) -> __m256i {
        assert!(p.len() >= 32);
        // SAFETY: at least 32 bytes (asserted).
        unsafe { _mm256_loadu_si256(p.as_ptr() as *const __m256i) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum_f32(x: __m256) -> f32 {
        let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// `ggml_vec_dot_q4_K_q8_K` (AVX2) for `T` activation rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4k<const T: usize>(row: &[u8], nb: usize, acts: &[KBlock], out: &mut [f32; TILE]) {
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); T];
        let mut acc_m = [_mm_setzero_ps(); T];
        for b in 0..nb {
            let blk = &row[b * Q4_K_BYTES..(b + 1) * Q4_K_BYTES];
            let dw = super::f16::to_f32(le16(blk, 0));
            let dminw = super::f16::to_f32(le16(blk, 2));
            let (sc, qs) = (&blk[4..16], &blk[16..144]);
            let mut scales = [_mm256_setzero_si256(); 8];
            let mut mins16 = [0i16; 8];
            for (j, s) in scales.iter_mut().enumerate() {
                let (sv, mv) = scale_min_k4(j, sc);
                *s = _mm256_set1_epi16(i16::from(sv));
                mins16[j] = i16::from(mv);
            }
            // SAFETY: `mins16` is 16 bytes.
            let mins = unsafe { _mm_loadu_si128(mins16.as_ptr() as *const __m128i) };
            let mut w = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let bits = load(&qs[32 * j..]);
                w[2 * j] = _mm256_and_si256(bits, m4);
                w[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
            }
            for t in 0..T {
                let a = &acts[t * nb + b];
                let d = a.d * dw;
                let dmin = -a.d * dminw;
                // SAFETY: `bsums` is 32 bytes.
                let q8sums = unsafe { _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i) };
                let q8s = _mm_hadd_epi16(
                    _mm256_castsi256_si128(q8sums),
                    _mm256_extracti128_si256::<1>(q8sums),
                );
                let prod = _mm_madd_epi16(mins, q8s);
                acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[t]);
                let mut sumi = _mm256_setzero_si256();
                for j in 0..8 {
                    let p16 = _mm256_maddubs_epi16(w[j], load_i8(&a.qs[32 * j..]));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scales[j], p16));
                }
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[t]);
            }
        }
        for t in 0..T {
            let mut m = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
            m = _mm_add_ss(m, _mm_movehdup_ps(m));
            out[t] = hsum_f32(acc[t]) + _mm_cvtss_f32(m);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
        _mm_cvtsi128_si32(s)
    }

    /// [`super::q4k_pair_ints_scalar`] with AVX2 (exact integers, so any order gives the same).
    #[target_feature(enable = "avx2")]
    pub fn q4k_pair_ints(blk: &[u8], a: &KBlock) -> [(i32, i32); 4] {
        let m4 = _mm256_set1_epi8(0x0f);
        let (sc, qs) = (&blk[4..16], &blk[16..144]);
        let mut pairs = [(0i32, 0i32); 4];
        for (j, pair) in pairs.iter_mut().enumerate() {
            let (s1, m1) = scale_min_k4(2 * j, sc);
            let (s2, m2) = scale_min_k4(2 * j + 1, sc);
            let bits = load(&qs[32 * j..]);
            let lo = _mm256_and_si256(bits, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
            let plo = _mm256_maddubs_epi16(lo, load_i8(&a.qs[64 * j..]));
            let phi = _mm256_maddubs_epi16(hi, load_i8(&a.qs[64 * j + 32..]));
            let sum = _mm256_add_epi32(
                _mm256_madd_epi16(_mm256_set1_epi16(i16::from(s1)), plo),
                _mm256_madd_epi16(_mm256_set1_epi16(i16::from(s2)), phi),
            );
            let b = &a.bsums[4 * j..4 * j + 4];
            *pair = (
                hsum_i32(sum),
                i32::from(m1) * (i32::from(b[0]) + i32::from(b[1]))
                    + i32::from(m2) * (i32::from(b[2]) + i32::from(b[3])),
            );
        }
        pairs
    }

    /// [`super::block_ints_scalar`] with AVX2 (exact integers, so any order gives the same).
    #[target_feature(enable = "avx2")]
    pub fn block_ints(kind: WeightKind, blk: &[u8], a: &KBlock) -> (i32, i32) {
        match kind {
            WeightKind::Q4K => q4k_pair_ints(blk, a)
                .iter()
                .fold((0, 0), |(s, m), &(ps, pm)| (s + ps, m + pm)),
            _ => {
                let m3 = _mm256_set1_epi8(3);
                let m15 = _mm256_set1_epi8(15);
                let sc = &blk[192..208];
                let mut scales16 = [0i16; 16];
                for (s, &v) in scales16.iter_mut().zip(sc) {
                    *s = i16::from(v as i8);
                }
                // SAFETY: both arrays are 32 bytes.
                let (scales_16, q8sums) = unsafe {
                    (
                        _mm256_loadu_si256(scales16.as_ptr() as *const __m256i),
                        _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i),
                    )
                };
                let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, scales_16));
                let mut sumi = _mm256_setzero_si256();
                for j in 0..2 {
                    let q4bits1 = load(&blk[64 * j..]);
                    let q4bits2 = load(&blk[64 * j + 32..]);
                    let q4bits_h = load(&blk[128 + 32 * j..]);
                    let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m3));
                    let h1 =
                        _mm256_slli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(12)));
                    let h2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
                    let h3 =
                        _mm256_srli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(-64)));
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(q4bits1, m15), h0),
                        _mm256_or_si256(_mm256_and_si256(q4bits2, m15), h1),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m15), h2),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m15), h3),
                    ];
                    for (k, qk) in q.iter().enumerate() {
                        let c = 4 * j + k;
                        let p16 = _mm256_maddubs_epi16(*qk, load_i8(&a.qs[32 * c..]));
                        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_pair(sc, c), p16));
                    }
                }
                (hsum_i32(_mm256_sub_epi32(sumi, q8sclsub)), 0)
            }
        }
    }

    /// ggml's `get_scale_shuffle`: scale `2i` for bytes 0..16, `2i + 1` for bytes 16..32.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scale_pair(sc: &[u8], i: usize) -> __m256i {
        let lo = _mm_set1_epi16(i16::from(sc[2 * i] as i8));
        let hi = _mm_set1_epi16(i16::from(sc[2 * i + 1] as i8));
        _mm256_set_m128i(hi, lo)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn q6k<const T: usize>(row: &[u8], nb: usize, acts: &[KBlock], out: &mut [f32; TILE]) {
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let blk = &row[b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES];
            let dw = super::f16::to_f32(le16(blk, 208));
            let sc = &blk[192..208];
            let mut scales16 = [0i16; 16];
            for (s, &v) in scales16.iter_mut().zip(sc) {
                *s = i16::from(v as i8);
            }
            // SAFETY: `scales16` is 32 bytes.
            let scales_16 = unsafe { _mm256_loadu_si256(scales16.as_ptr() as *const __m256i) };
            let mut q = [_mm256_setzero_si256(); 8];
            let mut s = [_mm256_setzero_si256(); 8];
            for j in 0..2 {
                let q4bits1 = load(&blk[64 * j..]);
                let q4bits2 = load(&blk[64 * j + 32..]);
                let q4bits_h = load(&blk[128 + 32 * j..]);
                let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m3));
                let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(12)));
                let h2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
                let h3 = _mm256_srli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(-64)));
                q[4 * j] = _mm256_or_si256(_mm256_and_si256(q4bits1, m15), h0);
                q[4 * j + 1] = _mm256_or_si256(_mm256_and_si256(q4bits2, m15), h1);
                q[4 * j + 2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m15), h2);
                q[4 * j + 3] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m15), h3);
                for k in 0..4 {
                    s[4 * j + k] = scale_pair(sc, 4 * j + k);
                }
            }
            for t in 0..T {
                let a = &acts[t * nb + b];
                let d = _mm256_set1_ps(a.d * dw);
                // SAFETY: `bsums` is 32 bytes.
                let q8sums = unsafe { _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i) };
                let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, scales_16));
                let mut sumi = _mm256_setzero_si256();
                for c in 0..8 {
                    let p16 = _mm256_maddubs_epi16(q[c], load_i8(&a.qs[32 * c..]));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(s[c], p16));
                }
                let sumi = _mm256_sub_epi32(sumi, q8sclsub);
                acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc[t]);
            }
        }
        for t in 0..T {
            out[t] = hsum_f32(acc[t]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::Rng;

    fn random_weights(kind: WeightKind, rows: usize, nb: usize, rng: &mut Rng) -> Vec<u8> {
        let bb = kind.block_bytes();
        let mut v = vec![0u8; rows * nb * bb];
        for blk in v.chunks_exact_mut(bb) {
            for x in blk.iter_mut() {
                *x = rng.next() as u8;
            }
            match kind {
                WeightKind::Q4K => {
                    blk[0..2].copy_from_slice(&f16::from_f32(rng.f32() * 0.01).to_le_bytes());
                    blk[2..4].copy_from_slice(&f16::from_f32(rng.f32() * 0.01).to_le_bytes());
                }
                _ => blk[208..210].copy_from_slice(&f16::from_f32(rng.f32() * 0.01).to_le_bytes()),
            }
        }
        v
    }

    #[test]
    fn simd_and_scalar_kernels_agree_bit_for_bit() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for kind in [WeightKind::Q4K, WeightKind::Q6K] {
            for &(rows, nb, n_tok) in &[(8, 1, 1), (13, 3, 3), (16, 4, 7), (5, 8, 4)] {
                let w = random_weights(kind, rows, nb, &mut rng);
                let x: Vec<f32> = (0..n_tok * nb * QK_K).map(|_| rng.f32() * 3.0).collect();
                let mut acts = vec![KBlock::default(); n_tok * nb];
                for (xr, ar) in x.chunks_exact(nb * QK_K).zip(acts.chunks_exact_mut(nb)) {
                    quantize_row_q8_k(xr, ar, false);
                }
                let mut fast = vec![0.0; n_tok * rows];
                let mut slow = vec![0.0; n_tok * rows];
                dot_rows(kind, KPath::VecDot, &w, rows, nb, &acts, &mut fast);
                dot_rows_scalar(kind, &w, rows, nb, &acts, &mut slow);
                for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                    assert_eq!(f.to_bits(), s.to_bits(), "{kind:?} output {i}");
                }
                // The other paths agree to within f32 rounding, and their exact integer parts
                // agree between AVX2 and scalar.
                for path in [KPath::Repacked, KPath::Tiled] {
                    let mut other = vec![0.0; n_tok * rows];
                    dot_rows(kind, path, &w, rows, nb, &acts, &mut other);
                    for (r, s) in other.iter().zip(&slow) {
                        assert!((r - s).abs() <= 1e-4 * (1.0 + s.abs()), "{path:?} {r} {s}");
                    }
                }
                let bb = kind.block_bytes();
                for (blk, a) in w.chunks_exact(bb).zip(acts.iter().cycle()) {
                    assert_eq!(block_ints(kind, blk, a), block_ints_scalar(kind, blk, a));
                    if kind == WeightKind::Q4K {
                        assert_eq!(q4k_pair_ints(blk, a), q4k_pair_ints_scalar(blk, a));
                    }
                }
                // And the products are right to within f32 rounding.
                let bb = kind.block_bytes();
                for t in 0..n_tok {
                    for r in 0..rows {
                        let mut row = vec![0.0f32; nb * QK_K];
                        dequantize_row(kind, &w[r * nb * bb..(r + 1) * nb * bb], &mut row);
                        let exact: f64 = acts[t * nb..(t + 1) * nb]
                            .iter()
                            .flat_map(|a| a.qs.iter().map(move |&q| f64::from(q) * f64::from(a.d)))
                            .zip(&row)
                            .map(|(a, w)| a * f64::from(*w))
                            .sum();
                        let got = f64::from(slow[t * rows + r]);
                        assert!(
                            (got - exact).abs() < 1e-3 * (1.0 + exact.abs()),
                            "{kind:?} {got} {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn repacked_q4_k_rows_accumulate_like_llama_cpps_gemm_and_gemv() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (rows, nb, n_tok) = (8, 3, 6);
        let w = random_weights(WeightKind::Q4K, rows, nb, &mut rng);
        let x: Vec<f32> = (0..n_tok * nb * QK_K).map(|_| rng.f32() * 3.0).collect();
        let mut acts = vec![KBlock::default(); n_tok * nb];
        for (xr, ar) in x.chunks_exact(nb * QK_K).zip(acts.chunks_exact_mut(nb)) {
            quantize_row_q8_k(xr, ar, false);
        }
        let mut out = vec![0.0; n_tok * rows];
        dot_rows(
            WeightKind::Q4K,
            KPath::Repacked,
            &w,
            rows,
            nb,
            &acts,
            &mut out,
        );
        for t in 0..n_tok {
            for r in 0..rows {
                let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
                for b in 0..nb {
                    let blk = &w[(r * nb + b) * Q4_K_BYTES..(r * nb + b + 1) * Q4_K_BYTES];
                    let a = &acts[t * nb + b];
                    let d = f16::to_f32(le16(blk, 0)) * a.d;
                    let dmin = f16::to_f32(le16(blk, 2)) * a.d;
                    let pairs = q4k_pair_ints_scalar(blk, a);
                    // Rows 0..4 are one gemm group; rows 4 and 5 are left to the gemv.
                    if t < 4 {
                        for (isum, imin) in pairs {
                            acc = (isum as f32).mul_add(d, acc);
                            acc_min = (imin as f32).mul_add(dmin, acc_min);
                        }
                    } else {
                        let (isum, imin) = pairs
                            .iter()
                            .fold((0, 0), |(s, m), &(ps, pm)| (s + ps, m + pm));
                        acc = (isum as f32).mul_add(d, acc);
                        acc_min = (imin as f32).mul_add(dmin, acc_min);
                    }
                }
                assert_eq!(out[t * rows + r].to_bits(), (acc - acc_min).to_bits());
            }
        }
    }

    #[test]
    fn q8_k_quantization_matches_ggml_rules() {
        let mut x: Vec<f32> = (0..256).map(|i| (i as f32 - 100.0) * 0.01).collect();
        let mut b = [KBlock::default()];
        quantize_row_q8_k(&x, &mut b, false);
        // The largest magnitude is +1.55 (i = 255): iscale = -127/1.55, so it maps to -127.
        assert_eq!(b[0].qs[255], -127);
        assert_eq!(b[0].d, 1.0 / (-127.0f32 / 1.55f32));
        let s: i32 = b[0].qs[..16].iter().map(|&q| i32::from(q)).sum();
        assert_eq!(i32::from(b[0].bsums[0]), s);
        // Tie between -m (first) and +m: the reference lets the first give the sign.
        x.iter_mut().for_each(|v| *v = 0.0);
        x[3] = -2.0;
        x[9] = 2.0;
        quantize_row_q8_k(&x, &mut b, false);
        assert_eq!((b[0].qs[3], b[0].qs[9]), (-127, 127));
        assert!(b[0].d > 0.0);
        // The 4-row quantizer lets +max win.
        quantize_row_q8_k(&x, &mut b, true);
        assert_eq!((b[0].qs[3], b[0].qs[9]), (127, -127));
        assert!(b[0].d < 0.0);
        // All zeros.
        quantize_row_q8_k(&[0.0; 256], &mut b, false);
        assert_eq!(b[0], KBlock::default());
    }
}
