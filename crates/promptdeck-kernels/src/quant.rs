//! ggml block formats: the activation quantizers (`quantize_row_q8_1` / `q8_0` as ggml's x86
//! build computes them) and the Q4_1 x Q8_1 and Q8_0 x Q8_0 dot-product kernels.
//!
//! Numerics follow ggml's x86 CPU kernels (`ggml_vec_dot_q4_1_q8_1`, `ggml_vec_dot_q8_0_q8_0`
//! and llamafile's tinyBLAS, which agree): per block, eight lanes each hold the exact integer
//! dot product of four consecutive elements and accumulate `fma(d_w * d_a, lane, acc)`; the
//! lanes are summed in ggml's `hsum_float_8` order. That is what llama.cpp computes on an x86
//! CPU without AMX (with AMX it uses other kernels, which fault on machines that report AMX
//! but do not enable it, as these test machines do).

use crate::f16;

/// Elements per quantization block (Q4_1, Q8_0, Q8_1).
pub const QK: usize = 32;
/// Weight rows per parallel task.
pub const GROUP: usize = 16;

/// One block of quantized activations. The f16 scale (`d`) and, for Q8_1, the f16 scaled sum
/// (`s`) are stored widened to f32, which is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct ActBlock {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

#[inline(always)]
fn q8_1_body(x: &[f32], out: &mut [ActBlock]) {
    quantize_row(x, out, true);
}

#[inline(always)]
fn q8_0_body(x: &[f32], out: &mut [ActBlock]) {
    quantize_row(x, out, false);
}

multiversion! {
    /// ggml's x86 `quantize_row_q8_1`: `d = amax/127` (stored as f16),
    /// `q = round_even(x*127/amax)`, `s = f16(d * sum(q))` with the unrounded `d`.
    /// `x.len()` must be `out.len() * 32`.
    pub fn quantize_row_q8_1(x: &[f32], out: &mut [ActBlock]) => q8_1_body
}

multiversion! {
    /// ggml's x86 `quantize_row_q8_0` (as `quantize_row_q8_1` without the sum).
    pub fn quantize_row_q8_0(x: &[f32], out: &mut [ActBlock]) => q8_0_body
}

#[inline(always)]
fn quantize_row(x: &[f32], out: &mut [ActBlock], with_sum: bool) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (xb, blk) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in blk.qs.iter_mut().zip(xb) {
            // cvtps2dq after round-to-nearest-even, then the saturating packs to i8.
            let r = (v * id).round_ties_even();
            let i = if r.is_nan() {
                -128
            } else {
                r.clamp(-128.0, 127.0) as i32
            };
            sum += i;
            *q = i as i8;
        }
        blk.d = f16::round(d);
        blk.s = if with_sum {
            f16::round(d * sum as f32)
        } else {
            0.0
        };
    }
}

/// Weight formats the native engine computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKind {
    Q4_1,
    Q5_0,
    Q8_0,
    /// K-quants (256-element super-blocks, Q8_K activations; see `kquant`).
    Q4K,
    Q6K,
}

impl WeightKind {
    /// The kind of a ggml type name, if the native kernels compute with it.
    pub fn from_ggml(ty: &str) -> Option<Self> {
        Some(match ty {
            "Q4_1" => Self::Q4_1,
            "Q5_0" => Self::Q5_0,
            "Q8_0" => Self::Q8_0,
            "Q4K" | "Q4_K" => Self::Q4K,
            "Q6K" | "Q6_K" => Self::Q6K,
            _ => return None,
        })
    }

    /// Bytes of one block in the GGUF file.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
            Self::Q4K => crate::kquant::Q4_K_BYTES,
            Self::Q6K => crate::kquant::Q6_K_BYTES,
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        if self.is_k() { crate::kquant::QK_K } else { QK }
    }

    /// Whether activations are quantized to Q8_1 (true) or Q8_0 for this weight format.
    pub fn uses_q8_1(self) -> bool {
        matches!(self, Self::Q4_1)
    }

    /// Whether this is a K-quant (activations quantized to Q8_K).
    pub fn is_k(self) -> bool {
        matches!(self, Self::Q4K | Self::Q6K)
    }
}

/// Q5_0 block values (`(nibble | high bit << 4) - 16`) as ggml's `bytes_from_bits_32` and
/// tinyBLAS's `bittobyte` build them.
#[inline(always)]
fn q5_0_values(blk: &[u8]) -> [i32; QK] {
    let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
    let mut w = [0i32; QK];
    for j in 0..16 {
        let q = blk[6 + j];
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        w[j] = i32::from(q & 0x0f) | h0 as i32;
        w[j + 16] = i32::from(q >> 4) | h1 as i32;
        w[j] -= 16;
        w[j + 16] -= 16;
    }
    w
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Dequantizes one GGUF row (for embedding lookups), as ggml's `dequantize_row_*`.
pub fn dequantize_row(kind: WeightKind, src: &[u8], out: &mut [f32]) {
    if kind.is_k() {
        crate::kquant::dequantize_row(kind, src, out);
        return;
    }
    let bb = kind.block_bytes();
    for (blk, y) in src.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
        match kind {
            WeightKind::Q4_1 => {
                let d = f16::to_f32(le16(blk, 0));
                let m = f16::to_f32(le16(blk, 2));
                for j in 0..16 {
                    let q = blk[4 + j];
                    y[j] = f32::from(q & 0x0f) * d + m;
                    y[j + 16] = f32::from(q >> 4) * d + m;
                }
            }
            WeightKind::Q8_0 => {
                let d = f16::to_f32(le16(blk, 0));
                for j in 0..QK {
                    y[j] = f32::from(blk[2 + j] as i8) * d;
                }
            }
            WeightKind::Q5_0 => {
                let d = f16::to_f32(le16(blk, 0));
                for (yj, w) in y.iter_mut().zip(q5_0_values(blk)) {
                    *yj = w as f32 * d;
                }
            }
            WeightKind::Q4K | WeightKind::Q6K => unreachable!("handled above"),
        }
    }
}

/// ggml's `hsum_float_8`: (lanes 4..8 + lanes 0..4), then (0 + 2) + (1 + 3).
#[inline(always)]
pub fn hsum8(v: &[f32; 8]) -> f32 {
    let t = [v[4] + v[0], v[5] + v[1], v[6] + v[2], v[7] + v[3]];
    (t[0] + t[2]) + (t[1] + t[3])
}

/// Dot products of `rows` consecutive weight rows (GGUF layout, `nb` blocks each) with every
/// activation row in `acts` (`n_tok` rows of `nb` blocks): `out[t * rows + r]`. Dispatches to
/// AVX2 when the CPU has it; both paths give identical bits.
pub fn dot_rows(
    kind: WeightKind,
    data: &[u8],
    rows: usize,
    nb: usize,
    acts: &[ActBlock],
    out: &mut [f32],
) {
    let n_tok = acts.len() / nb;
    assert!(data.len() >= rows * nb * kind.block_bytes());
    assert!(out.len() >= n_tok * rows);
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked above); lengths checked above.
        unsafe { avx2::dot_rows(kind, data, rows, nb, acts, out) };
        return;
    }
    dot_rows_scalar(kind, data, rows, nb, acts, out);
}

/// The scalar reference for [`dot_rows`]: ggml's x86 `ggml_vec_dot_q4_1_q8_1` and
/// `ggml_vec_dot_q8_0_q8_0` lane by lane. Lane `l` of a block holds the exact integer sum of
/// elements `4l..4l+4`; lanes accumulate `fma(d_w * d_a, lane, acc)` over the blocks; the row
/// result is `hsum8(acc)` plus, for Q4_1, `sum(m_w * s_a)` accumulated with FMA in order.
pub fn dot_rows_scalar(
    kind: WeightKind,
    data: &[u8],
    rows: usize,
    nb: usize,
    acts: &[ActBlock],
    out: &mut [f32],
) {
    let bb = kind.block_bytes();
    let n_tok = acts.len() / nb;
    for t in 0..n_tok {
        let arow = &acts[t * nb..(t + 1) * nb];
        for r in 0..rows {
            let row = &data[r * nb * bb..(r + 1) * nb * bb];
            let mut acc = [0.0f32; 8];
            let mut summs = 0.0f32;
            for (blk, a) in row.chunks_exact(bb).zip(arow) {
                let dw = f16::to_f32(le16(blk, 0));
                let dd = dw * a.d;
                let mut w = [0i32; QK];
                match kind {
                    WeightKind::Q4_1 => {
                        let mw = f16::to_f32(le16(blk, 2));
                        summs = mw.mul_add(a.s, summs);
                        for j in 0..16 {
                            w[j] = i32::from(blk[4 + j] & 0x0f);
                            w[j + 16] = i32::from(blk[4 + j] >> 4);
                        }
                    }
                    WeightKind::Q8_0 => {
                        for (j, wj) in w.iter_mut().enumerate() {
                            *wj = i32::from(blk[2 + j] as i8);
                        }
                    }
                    WeightKind::Q5_0 => w = q5_0_values(blk),
                    WeightKind::Q4K | WeightKind::Q6K => unreachable!("K-quants use kquant"),
                }
                for (l, acc) in acc.iter_mut().enumerate() {
                    let isum: i32 = (4 * l..4 * l + 4).map(|j| w[j] * i32::from(a.qs[j])).sum();
                    *acc = dd.mul_add(isum as f32, *acc);
                }
            }
            out[t * rows + r] = hsum8(&acc) + summs;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ActBlock, WeightKind};
    use std::arch::x86_64::*;

    /// Activation rows computed together against one unpacked weight block.
    const TILE: usize = 4;

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `data` must hold `rows * nb` blocks and `out`
    /// `n_tok * rows` floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows(
        kind: WeightKind,
        data: &[u8],
        rows: usize,
        nb: usize,
        acts: &[ActBlock],
        out: &mut [f32],
    ) {
        let n_tok = acts.len() / nb;
        let bb = kind.block_bytes();
        let row_bytes = nb * bb;
        let mut r = 0;
        while r < rows {
            // Two rows at a time give the CPU two independent FMA chains per token.
            let nr = if rows - r >= 2 { 2 } else { 1 };
            let data = &data[r * row_bytes..(r + nr) * row_bytes];
            let mut t = 0;
            while t < n_tok {
                let n = (n_tok - t).min(TILE);
                let a = &acts[t * nb..(t + n) * nb];
                let mut res = [[0.0f32; TILE]; 2];
                macro_rules! go {
                    ($f:ident) => {
                        match (nr, n) {
                            (2, 4) => $f::<2, 4>(data, nb, a, &mut res),
                            (2, 3) => $f::<2, 3>(data, nb, a, &mut res),
                            (2, 2) => $f::<2, 2>(data, nb, a, &mut res),
                            (2, _) => $f::<2, 1>(data, nb, a, &mut res),
                            (_, 4) => $f::<1, 4>(data, nb, a, &mut res),
                            (_, 3) => $f::<1, 3>(data, nb, a, &mut res),
                            (_, 2) => $f::<1, 2>(data, nb, a, &mut res),
                            (_, _) => $f::<1, 1>(data, nb, a, &mut res),
                        }
                    };
                }
                match kind {
                    WeightKind::Q4_1 => go!(q4_1),
                    WeightKind::Q8_0 => go!(q8_0),
                    WeightKind::Q5_0 => go!(q5_0),
                    WeightKind::Q4K | WeightKind::Q6K => unreachable!("K-quants use kquant"),
                }
                for (i, row_res) in res.iter().enumerate().take(nr) {
                    for (j, v) in row_res.iter().enumerate().take(n) {
                        out[(t + j) * rows + r + i] = *v;
                    }
                }
                t += n;
            }
            r += nr;
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn half(b: &[u8]) -> f32 {
        let h = u16::from_le_bytes([b[0], b[1]]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
    }

    /// ggml's `hsum_float_8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(x: __m256) -> f32 {
        let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load32(q: &[i8; 32]) -> __m256i {
        // SAFETY: `q` is exactly 32 bytes.
        unsafe { _mm256_loadu_si256(q.as_ptr() as *const __m256i) }
    }

    /// `ggml_vec_dot_q4_1_q8_1` (x86) for `R` consecutive rows and `T` activation rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4_1<const R: usize, const T: usize>(
        rows: &[u8],
        nb: usize,
        acts: &[ActBlock],
        out: &mut [[f32; TILE]; 2],
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut summs = [[0.0f32; T]; R];
        for b in 0..nb {
            let mut w = [_mm256_setzero_si256(); R];
            let mut dw = [0.0f32; R];
            let mut mw = [0.0f32; R];
            for i in 0..R {
                let blk = &rows[(i * nb + b) * 20..(i * nb + b + 1) * 20];
                dw[i] = half(&blk[0..2]);
                mw[i] = half(&blk[2..4]);
                w[i] = nibbles(&blk[4..20]);
            }
            for t in 0..T {
                let a = &acts[t * nb + b];
                let qa = load32(&a.qs);
                for i in 0..R {
                    summs[i][t] = mw[i].mul_add(a.s, summs[i][t]);
                    let xy =
                        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w[i], qa), ones));
                    acc[i][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[i] * a.d), xy, acc[i][t]);
                }
            }
        }
        for i in 0..R {
            for t in 0..T {
                out[i][t] = hsum(acc[i][t]) + summs[i][t];
            }
        }
    }

    /// Adds the signed-byte dot (ggml's `mul_sum_i8_pairs_float`) of each of the `R` unpacked
    /// weight blocks `w` (scales `dw`) with the block at `acts[t * nb]` of each of the `T`
    /// activation rows into `acc`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn signed_dot<const R: usize, const T: usize>(
        w: &[__m256i; R],
        dw: &[f32; R],
        acts: &[ActBlock],
        nb: usize,
        acc: &mut [[__m256; T]; R],
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut ax = [_mm256_setzero_si256(); R];
        for i in 0..R {
            ax[i] = _mm256_sign_epi8(w[i], w[i]);
        }
        for t in 0..T {
            let a = &acts[t * nb];
            let qa = load32(&a.qs);
            for i in 0..R {
                let sy = _mm256_sign_epi8(qa, w[i]);
                let xy =
                    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ax[i], sy), ones));
                acc[i][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[i] * a.d), xy, acc[i][t]);
            }
        }
    }

    /// Writes the horizontal sums of `acc` to `out`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store<const R: usize, const T: usize>(acc: &[[__m256; T]; R], out: &mut [[f32; TILE]; 2]) {
        for i in 0..R {
            for t in 0..T {
                out[i][t] = hsum(acc[i][t]);
            }
        }
    }

    /// `ggml_vec_dot_q8_0_q8_0` (x86; tinyBLAS gives the same sums) for `R` consecutive rows
    /// and `T` activation rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_0<const R: usize, const T: usize>(
        rows: &[u8],
        nb: usize,
        acts: &[ActBlock],
        out: &mut [[f32; TILE]; 2],
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            let mut w = [_mm256_setzero_si256(); R];
            let mut dw = [0.0f32; R];
            for i in 0..R {
                let blk = &rows[(i * nb + b) * 34..(i * nb + b + 1) * 34];
                dw[i] = half(&blk[0..2]);
                // SAFETY: `blk[2..34]` is 32 bytes.
                w[i] = unsafe { _mm256_loadu_si256(blk[2..34].as_ptr() as *const __m256i) };
            }
            signed_dot(&w, &dw, &acts[b..], nb, &mut acc);
        }
        store(&acc, out);
    }

    /// `bytes_from_nibbles_32`: the 16 bytes of `p` as 32 values, the low nibbles elements
    /// 0..16 and the high nibbles 16..32.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn nibbles(p: &[u8]) -> __m256i {
        let p = &p[..16];
        // SAFETY: `p` is 16 bytes.
        let tmp = unsafe { _mm_loadu_si128(p.as_ptr() as *const __m128i) };
        _mm256_and_si256(
            _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(tmp), _mm_srli_epi16::<4>(tmp)),
            _mm256_set1_epi8(0x0f),
        )
    }

    /// tinyBLAS's `bittobyte`: 0xF0 in each byte whose high bit is clear (the value - 16).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn bittobyte(p: &[u8]) -> __m256i {
        let x32 = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as i32;
        let bytes = _mm256_cmpeq_epi8(
            _mm256_set1_epi64x(-1),
            _mm256_or_si256(
                _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe),
                _mm256_shuffle_epi8(
                    _mm256_set1_epi32(x32),
                    _mm256_set_epi64x(
                        0x0303_0303_0303_0303,
                        0x0202_0202_0202_0202,
                        0x0101_0101_0101_0101,
                        0,
                    ),
                ),
            ),
        );
        _mm256_andnot_si256(bytes, _mm256_set1_epi8(0xf0u8 as i8))
    }

    /// `ggml_vec_dot_q5_0_q8_0` (x86; tinyBLAS gives the same sums) for `R` consecutive rows
    /// and `T` activation rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q5_0<const R: usize, const T: usize>(
        rows: &[u8],
        nb: usize,
        acts: &[ActBlock],
        out: &mut [[f32; TILE]; 2],
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            let mut w = [_mm256_setzero_si256(); R];
            let mut dw = [0.0f32; R];
            for i in 0..R {
                let blk = &rows[(i * nb + b) * 22..(i * nb + b + 1) * 22];
                dw[i] = half(&blk[0..2]);
                let nib = nibbles(&blk[6..22]);
                w[i] = _mm256_or_si256(nib, bittobyte(&blk[2..6]));
            }
            signed_dot(&w, &dw, &acts[b..], nb, &mut acc);
        }
        store(&acc, out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift64*, enough for test data.
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    fn random_weights(kind: WeightKind, rows: usize, nb: usize, rng: &mut Rng) -> Vec<u8> {
        let bb = kind.block_bytes();
        let mut v = vec![0u8; rows * nb * bb];
        for blk in v.chunks_exact_mut(bb) {
            for x in blk.iter_mut() {
                *x = rng.next() as u8;
            }
            // Keep scales finite and modest.
            blk[0..2].copy_from_slice(&f16::from_f32(rng.f32() * 0.05).to_le_bytes());
            if kind == WeightKind::Q4_1 {
                blk[2..4].copy_from_slice(&f16::from_f32(rng.f32() * 0.3).to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn simd_and_scalar_kernels_agree_bit_for_bit() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for kind in [WeightKind::Q4_1, WeightKind::Q8_0, WeightKind::Q5_0] {
            for &(rows, nb, n_tok) in &[(8, 1, 1), (13, 18, 3), (16, 48, 7), (24, 5, 4)] {
                let w = random_weights(kind, rows, nb, &mut rng);
                let x: Vec<f32> = (0..n_tok * nb * QK).map(|_| rng.f32() * 3.0).collect();
                let mut acts = vec![ActBlock::default(); n_tok * nb];
                for (xr, ar) in x.chunks_exact(nb * QK).zip(acts.chunks_exact_mut(nb)) {
                    if kind.uses_q8_1() {
                        quantize_row_q8_1(xr, ar);
                    } else {
                        quantize_row_q8_0(xr, ar);
                    }
                }
                let mut fast = vec![0.0; n_tok * rows];
                let mut slow = vec![0.0; n_tok * rows];
                dot_rows(kind, &w, rows, nb, &acts, &mut fast);
                dot_rows_scalar(kind, &w, rows, nb, &acts, &mut slow);
                for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                    assert_eq!(f.to_bits(), s.to_bits(), "{kind:?} output {i}");
                }
                // And the products are right to within f32 rounding.
                for t in 0..n_tok {
                    for r in 0..rows {
                        let mut row = vec![0.0f32; nb * QK];
                        let bb = kind.block_bytes();
                        dequantize_row(kind, &w[r * nb * bb..(r + 1) * nb * bb], &mut row);
                        let exact: f64 = acts[t * nb..(t + 1) * nb]
                            .iter()
                            .flat_map(|a| a.qs.iter().map(move |&q| f64::from(q) * f64::from(a.d)))
                            .zip(&row)
                            .map(|(a, w)| a * f64::from(*w))
                            .sum();
                        let got = f64::from(slow[t * rows + r]);
                        assert!(
                            (got - exact).abs() < 1e-2 * (1.0 + exact.abs()),
                            "{got} {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn q8_1_quantization_matches_ggml_rules() {
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.1).collect();
        let mut b = [ActBlock::default()];
        quantize_row_q8_1(&x, &mut b);
        assert_eq!(b[0].qs[0], -127);
        assert_eq!(b[0].qs[31], 127);
        assert_eq!(b[0].d, f16::round(1.55 / 127.0));
        let sum: i32 = b[0].qs.iter().map(|&q| i32::from(q)).sum();
        assert_eq!(b[0].s, f16::round(1.55f32 / 127.0 * sum as f32));
        // Ties go to even, as _mm256_round_ps(_MM_ROUND_NEAREST) does.
        let mut x = vec![0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        quantize_row_q8_0(&x, &mut b);
        assert_eq!((b[0].qs[1], b[0].qs[2]), (2, 4));
    }
}
