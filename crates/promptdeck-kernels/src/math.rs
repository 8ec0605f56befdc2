//! ggml's vector math in scalar form, lane for lane: the polynomial `expf` of `ggml_v_expf`
//! (used by SiLU/SwiGLU and softmax), the AVX-512 horizontal sum order, and libm `expf` where
//! ggml calls it scalar.

/// `ggml_v_expf` for one lane (AVX-512 variant: `scalef` for the final scaling; identical to
/// the AVX2 variant for |n| <= 126).
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    if n.is_nan() {
        return f32::NAN;
    }
    let n = n as i32;
    if (-126..=127).contains(&n) {
        // j * 2^n is exact here unless it is subnormal, where both round once to nearest.
        let p = j * f32::from_bits(((n + 127) as u32) << 23);
        if p.is_normal() {
            return p;
        }
    }
    // scalef(j, n) = j * 2^n, rounded once; f64 holds the product exactly.
    (f64::from(j) * 2f64.powi(n)) as f32
}

/// ggml's SiLU lane: `x / (1 + v_expf(-x))`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + v_expf(0.0 - x))
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * *u;
    }
}

multiversion! {
    /// `ggml_vec_swiglu_f32`: `gate = silu(gate) * up`, lane by lane.
    pub fn swiglu(gate: &mut [f32], up: &[f32]) => swiglu_body
}

/// `_mm512_reduce_add_ps` as GCC implements it, over 16 lanes.
#[inline(always)]
pub fn reduce16(v: &[f32; 16]) -> f32 {
    let mut t3 = [0.0f32; 8];
    for i in 0..8 {
        t3[i] = v[i + 8] + v[i];
    }
    let mut t6 = [0.0f32; 4];
    for i in 0..4 {
        t6[i] = t3[i + 4] + t3[i];
    }
    let t8 = [t6[0] + t6[2], t6[1] + t6[3]];
    t8[0] + t8[1]
}

/// `ggml_vec_dot_f16` on AVX-512 (F32 accumulation, 4 x 16 lanes per 64 elements) for
/// `n` a multiple of 64; the result is widened to double by ggml then stored as float.
#[inline(always)]
pub fn dot_f16_avx512(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let n = x.len();
    let np = n & !63;
    let mut sum = [[0.0f32; 16]; 4];
    for (xs, ys) in x[..np].chunks_exact(64).zip(y[..np].chunks_exact(64)) {
        for (j, s) in sum.iter_mut().enumerate() {
            let (xj, yj) = (&xs[16 * j..16 * j + 16], &ys[16 * j..16 * j + 16]);
            for ((acc, &a), &b) in s.iter_mut().zip(xj).zip(yj) {
                *acc = a.mul_add(b, *acc);
            }
        }
    }
    // GGML_F32x16_REDUCE: 0 += 2, 1 += 3, then 0 += 1, then the 16-lane reduction.
    let [mut s0, mut s1, s2, s3] = sum;
    for (a, b) in s0.iter_mut().zip(&s2) {
        *a += *b;
    }
    for (a, b) in s1.iter_mut().zip(&s3) {
        *a += *b;
    }
    for (a, b) in s0.iter_mut().zip(&s1) {
        *a += *b;
    }
    let mut sumf = f64::from(reduce16(&s0));
    for k in np..n {
        sumf += f64::from(x[k] * y[k]);
    }
    sumf as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_libm() {
        for i in -2000..2000 {
            let x = i as f32 * 0.01;
            let (a, b) = (v_expf(x), x.exp());
            assert!(((a - b) / b).abs() < 3e-7, "{x} {a} {b}");
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
    }
}
