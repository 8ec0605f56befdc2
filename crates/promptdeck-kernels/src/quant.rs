//! ggml block formats: the activation quantizers (`quantize_row_q8_1` / `q8_0` as ggml's x86
//! build computes them) and the weight formats repacked eight rows at a time, with their
//! integer dot-product kernels.
//!
//! Numerics follow ggml's AMX/VNNI backend for these types (what llama.cpp uses for Q4_1 and
//! Q8_0 matrices on a CPU with AMX-INT8): for each output, blocks are visited in order and
//! accumulated as `c = fma(isum, d_w * d_a, c)` (then `c = fma(m_w, s_a, c)` for Q4_1), where
//! `isum` is the exact integer dot product of the block. The AVX2 kernels put eight weight rows
//! in the eight lanes, so each lane performs exactly that scalar sequence.

use crate::f16;

/// Elements per quantization block (Q4_1, Q8_0, Q8_1).
pub const QK: usize = 32;
/// Weight rows interleaved together in the packed formats (one per AVX2 lane).
pub const GROUP: usize = 8;

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
    Q8_0,
}

impl WeightKind {
    /// Bytes of one 32-element block in the GGUF file.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }

    /// Bytes of one packed block of eight rows.
    pub fn group_block_bytes(self) -> usize {
        match self {
            // 8 d + 8 m (f16) + 8 rows x 16 nibble bytes
            Self::Q4_1 => 32 + 128,
            // 8 d (f16) + 8 rows x 32 bytes
            Self::Q8_0 => 16 + 256,
        }
    }

    /// Whether activations are quantized to Q8_1 (true) or Q8_0 for this weight format.
    pub fn uses_q8_1(self) -> bool {
        matches!(self, Self::Q4_1)
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Repacks `rows` rows of GGUF blocks (row-major, `nb` blocks per row) into groups of eight
/// rows. Rows past `rows` in the last group are zero (their outputs are discarded).
pub fn pack(kind: WeightKind, src: &[u8], rows: usize, nb: usize) -> Vec<u8> {
    let groups = rows.div_ceil(GROUP);
    let gbb = kind.group_block_bytes();
    let bb = kind.block_bytes();
    let mut out = vec![0u8; groups * nb * gbb];
    for g in 0..groups {
        for b in 0..nb {
            let dst = &mut out[(g * nb + b) * gbb..][..gbb];
            for r in 0..GROUP {
                let row = g * GROUP + r;
                if row >= rows {
                    continue;
                }
                let blk = &src[(row * nb + b) * bb..][..bb];
                match kind {
                    WeightKind::Q4_1 => {
                        dst[2 * r..2 * r + 2].copy_from_slice(&blk[0..2]);
                        dst[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&blk[2..4]);
                        let qs = &blk[4..20];
                        let nib = |e: usize| {
                            if e < 16 {
                                qs[e] & 0x0f
                            } else {
                                qs[e - 16] >> 4
                            }
                        };
                        for p in 0..4 {
                            for i in 0..4 {
                                dst[32 + p * 32 + r * 4 + i] =
                                    nib(8 * p + i) | (nib(8 * p + 4 + i) << 4);
                            }
                        }
                    }
                    WeightKind::Q8_0 => {
                        dst[2 * r..2 * r + 2].copy_from_slice(&blk[0..2]);
                        let qs = &blk[2..34];
                        for k in 0..8 {
                            dst[16 + k * 32 + r * 4..16 + k * 32 + r * 4 + 4]
                                .copy_from_slice(&qs[4 * k..4 * k + 4]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Dequantizes one GGUF row (for embedding lookups), as ggml's `dequantize_row_*`.
pub fn dequantize_row(kind: WeightKind, src: &[u8], out: &mut [f32]) {
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
        }
    }
}

/// Computes one group of eight rows against `acts.len() / nb` activation rows: `out[t * 8 + r]`
/// is the dot product of packed row `r` with activation row `t`. `data` is the group's packed
/// blocks. Dispatches to AVX2 when the CPU has it; both paths give identical bits.
pub fn group_dot(kind: WeightKind, data: &[u8], nb: usize, acts: &[ActBlock], out: &mut [f32]) {
    let n_tok = acts.len() / nb;
    debug_assert_eq!(out.len(), n_tok * GROUP);
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked above); slice lengths are
        // checked inside against `nb` and the token count.
        unsafe { avx2::group_dot(kind, data, nb, acts, out) };
        return;
    }
    group_dot_scalar(kind, data, nb, acts, out);
}

/// The scalar reference for [`group_dot`].
pub fn group_dot_scalar(
    kind: WeightKind,
    data: &[u8],
    nb: usize,
    acts: &[ActBlock],
    out: &mut [f32],
) {
    let gbb = kind.group_block_bytes();
    let n_tok = acts.len() / nb;
    for t in 0..n_tok {
        let arow = &acts[t * nb..(t + 1) * nb];
        for r in 0..GROUP {
            let mut c = 0.0f32;
            for (b, a) in arow.iter().enumerate() {
                let blk = &data[b * gbb..(b + 1) * gbb];
                let dw = f16::to_f32(le16(blk, 2 * r));
                match kind {
                    WeightKind::Q4_1 => {
                        let mw = f16::to_f32(le16(blk, 16 + 2 * r));
                        let mut isum = 0i32;
                        for p in 0..4 {
                            for i in 0..4 {
                                let byte = blk[32 + p * 32 + r * 4 + i];
                                isum += i32::from(byte & 0x0f) * i32::from(a.qs[8 * p + i]);
                                isum += i32::from(byte >> 4) * i32::from(a.qs[8 * p + 4 + i]);
                            }
                        }
                        c = (isum as f32).mul_add(dw * a.d, c);
                        c = mw.mul_add(a.s, c);
                    }
                    WeightKind::Q8_0 => {
                        let mut isum = 0i32;
                        for k in 0..8 {
                            for i in 0..4 {
                                let w = blk[16 + k * 32 + r * 4 + i] as i8;
                                isum += i32::from(w) * i32::from(a.qs[4 * k + i]);
                            }
                        }
                        c = (isum as f32).mul_add(dw * a.d, c);
                    }
                }
            }
            out[t * GROUP + r] = c;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ActBlock, GROUP, WeightKind};
    use std::arch::x86_64::*;

    /// Tokens computed together against one unpacked weight block.
    const TILE: usize = 4;

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn group_dot(
        kind: WeightKind,
        data: &[u8],
        nb: usize,
        acts: &[ActBlock],
        out: &mut [f32],
    ) {
        let n_tok = acts.len() / nb;
        assert!(data.len() >= nb * kind.group_block_bytes());
        assert!(out.len() >= n_tok * GROUP);
        let mut t = 0;
        while t < n_tok {
            let n = (n_tok - t).min(TILE);
            let a = &acts[t * nb..(t + n) * nb];
            let o = &mut out[t * GROUP..(t + n) * GROUP];
            // SAFETY: features are enabled by this function's attribute; lengths checked above.
            unsafe {
                match (kind, n) {
                    (WeightKind::Q4_1, 4) => q4_1::<4>(data, nb, a, o),
                    (WeightKind::Q4_1, 3) => q4_1::<3>(data, nb, a, o),
                    (WeightKind::Q4_1, 2) => q4_1::<2>(data, nb, a, o),
                    (WeightKind::Q4_1, _) => q4_1::<1>(data, nb, a, o),
                    (WeightKind::Q8_0, 4) => q8_0::<4>(data, nb, a, o),
                    (WeightKind::Q8_0, 3) => q8_0::<3>(data, nb, a, o),
                    (WeightKind::Q8_0, 2) => q8_0::<2>(data, nb, a, o),
                    (WeightKind::Q8_0, _) => q8_0::<1>(data, nb, a, o),
                }
            }
            t += n;
        }
    }

    /// Four consecutive activation bytes broadcast to every 32-bit lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn bcast4(q: &[i8; 32], at: usize) -> __m256i {
        let v = i32::from_le_bytes([q[at] as u8, q[at + 1] as u8, q[at + 2] as u8, q[at + 3] as u8]);
        _mm256_set1_epi32(v)
    }

    /// Q4_1 x Q8_1 for eight rows and `T` activation rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1<const T: usize>(data: &[u8], nb: usize, acts: &[ActBlock], out: &mut [f32]) {
        const GBB: usize = 160;
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let blk = &data[b * GBB..(b + 1) * GBB];
            // SAFETY: `blk` is 160 bytes: d at 0..16, m at 16..32, nibbles at 32..160.
            let (dw, mw, w) = unsafe {
                let p = blk.as_ptr();
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
                let mw = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
                let mut w = [_mm256_setzero_si256(); 8];
                for q in 0..4 {
                    let v = _mm256_loadu_si256(p.add(32 + 32 * q) as *const __m256i);
                    w[2 * q] = _mm256_and_si256(v, low);
                    w[2 * q + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                }
                (dw, mw, w)
            };
            for (t, acc) in acc.iter_mut().enumerate() {
                let a = &acts[t * nb + b];
                // Each i16 lane sums at most 8 products of 15*128*2, so it cannot saturate.
                let mut s16 = _mm256_maddubs_epi16(w[0], bcast4(&a.qs, 0));
                for (k, wk) in w.iter().enumerate().skip(1) {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(*wk, bcast4(&a.qs, 4 * k)));
                }
                let isum = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
                let dd = _mm256_mul_ps(dw, _mm256_set1_ps(a.d));
                *acc = _mm256_fmadd_ps(isum, dd, *acc);
                *acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s), *acc);
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            // SAFETY: `out` holds T*8 floats (checked by the caller).
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(t * GROUP), *acc) };
        }
    }

    /// Q8_0 x Q8_0 for eight rows and `T` activation rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0<const T: usize>(data: &[u8], nb: usize, acts: &[ActBlock], out: &mut [f32]) {
        const GBB: usize = 272;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let blk = &data[b * GBB..(b + 1) * GBB];
            // SAFETY: `blk` is 272 bytes: d at 0..16, quants at 16..272.
            let (dw, w) = unsafe {
                let p = blk.as_ptr();
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
                let mut w = [_mm256_setzero_si256(); 8];
                for (k, w) in w.iter_mut().enumerate() {
                    *w = _mm256_loadu_si256(p.add(16 + 32 * k) as *const __m256i);
                }
                (dw, w)
            };
            let aw: [__m256i; 8] = std::array::from_fn(|k| _mm256_sign_epi8(w[k], w[k]));
            for (t, acc) in acc.iter_mut().enumerate() {
                let a = &acts[t * nb + b];
                // |w| * sign(a, w) = w * a; pairs stay below 2*127*128, no saturation.
                let mut isum = _mm256_setzero_si256();
                for k in 0..8 {
                    let sa = _mm256_sign_epi8(bcast4(&a.qs, 4 * k), w[k]);
                    isum = _mm256_add_epi32(
                        isum,
                        _mm256_madd_epi16(_mm256_maddubs_epi16(aw[k], sa), ones),
                    );
                }
                let dd = _mm256_mul_ps(dw, _mm256_set1_ps(a.d));
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dd, *acc);
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            // SAFETY: `out` holds T*8 floats (checked by the caller).
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(t * GROUP), *acc) };
        }
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

    fn reference_dot(kind: WeightKind, row: &[u8], acts: &[ActBlock]) -> f32 {
        // Straight from the GGUF layout, independent of packing.
        let bb = kind.block_bytes();
        let mut c = 0.0f32;
        for (blk, a) in row.chunks_exact(bb).zip(acts) {
            let dw = f16::to_f32(le16(blk, 0));
            match kind {
                WeightKind::Q4_1 => {
                    let mw = f16::to_f32(le16(blk, 2));
                    let mut isum = 0i32;
                    for j in 0..16 {
                        isum += i32::from(blk[4 + j] & 15) * i32::from(a.qs[j]);
                        isum += i32::from(blk[4 + j] >> 4) * i32::from(a.qs[j + 16]);
                    }
                    c = (isum as f32).mul_add(dw * a.d, c);
                    c = mw.mul_add(a.s, c);
                }
                WeightKind::Q8_0 => {
                    let mut isum = 0i32;
                    for j in 0..32 {
                        isum += i32::from(blk[2 + j] as i8) * i32::from(a.qs[j]);
                    }
                    c = (isum as f32).mul_add(dw * a.d, c);
                }
            }
        }
        c
    }

    #[test]
    fn simd_and_scalar_kernels_agree_bit_for_bit() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for kind in [WeightKind::Q4_1, WeightKind::Q8_0] {
            for &(rows, nb, n_tok) in &[(8, 1, 1), (13, 18, 3), (16, 48, 7), (24, 5, 4)] {
                let w = random_weights(kind, rows, nb, &mut rng);
                let packed = pack(kind, &w, rows, nb);
                let x: Vec<f32> = (0..n_tok * nb * QK).map(|_| rng.f32() * 3.0).collect();
                let mut acts = vec![ActBlock::default(); n_tok * nb];
                for (xr, ar) in x.chunks_exact(nb * QK).zip(acts.chunks_exact_mut(nb)) {
                    if kind.uses_q8_1() {
                        quantize_row_q8_1(xr, ar);
                    } else {
                        quantize_row_q8_0(xr, ar);
                    }
                }
                let gbb = kind.group_block_bytes();
                for g in 0..rows.div_ceil(GROUP) {
                    let data = &packed[g * nb * gbb..(g + 1) * nb * gbb];
                    let mut fast = vec![0.0; n_tok * GROUP];
                    let mut slow = vec![0.0; n_tok * GROUP];
                    group_dot(kind, data, nb, &acts, &mut fast);
                    group_dot_scalar(kind, data, nb, &acts, &mut slow);
                    for t in 0..n_tok {
                        for r in 0..GROUP {
                            let row = g * GROUP + r;
                            let (f, s) = (fast[t * GROUP + r], slow[t * GROUP + r]);
                            assert_eq!(f.to_bits(), s.to_bits(), "{kind:?} row {row} tok {t}");
                            if row < rows {
                                let bb = kind.block_bytes();
                                let want = reference_dot(
                                    kind,
                                    &w[row * nb * bb..(row + 1) * nb * bb],
                                    &acts[t * nb..(t + 1) * nb],
                                );
                                assert_eq!(s.to_bits(), want.to_bits());
                            }
                        }
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
