//! IEEE half-precision conversion, bit-identical to x86's F16C instructions (round to nearest,
//! ties to even; subnormals kept), which is what ggml's `GGML_CPU_FP32_TO_FP16` compiles to.

/// f16 bits to f32 (exact: every half value is representable).
#[inline(always)]
pub fn to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // Subnormal: value = man * 2^-24; normalise it.
            let shift = man.leading_zeros() - 21; // bring the top set bit to bit 10
            let man = (man << shift) & 0x3ff;
            let exp = 127 - 15 + 1 - shift;
            sign | (exp << 23) | (man << 13)
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// f32 to f16 bits, rounding to nearest even like `vcvtps2ph` with rounding mode 0.
#[inline(always)]
pub fn from_f32(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        // Inf or NaN; NaNs stay quiet NaNs with their top payload bits.
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the full mantissa (with implicit bit) right.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round_up = rem > halfway || (rem == halfway && (half & 1) == 1);
        return sign | (half + u32::from(round_up)) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round_up = rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1);
    // A carry out of the mantissa correctly bumps the exponent (and overflows to infinity).
    sign | (half + u32::from(round_up)) as u16
}

/// Rounds an f32 through f16 and back.
#[inline(always)]
pub fn round(x: f32) -> f32 {
    let bits = x.to_bits();
    let mag = bits & 0x7fff_ffff;
    // Normal halves (2^-14 <= |x| < 65520, which rounds below infinity): round the mantissa to
    // 10 bits, ties to even, in place; a carry moves into the exponent as it should.
    if (0x3880_0000..0x477f_f000).contains(&mag) {
        let r = bits + 0x0fff + ((bits >> 13) & 1);
        return f32::from_bits(r & !0x1fff);
    }
    to_f32(from_f32(x))
}

/// Rounds every element through f16 (see [`round`]), with F16C when the CPU has it.
pub fn round_slice(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        // SAFETY: the CPU has AVX2 and F16C (checked above).
        unsafe { round_slice_f16c(x) };
        return;
    }
    for v in x.iter_mut() {
        *v = round(*v);
    }
}

/// # Safety
/// The CPU must support AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn round_slice_f16c(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 floats.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            let r = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
            _mm256_storeu_ps(c.as_mut_ptr(), r);
        }
    }
    for v in chunks.into_remainder() {
        *v = round(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_half_round_trips() {
        for h in 0..=u16::MAX {
            let f = to_f32(h);
            if f.is_nan() {
                assert!(to_f32(from_f32(f)).is_nan());
            } else {
                assert_eq!(from_f32(f), h, "{h:#x} {f}");
            }
        }
    }

    #[test]
    fn fast_round_matches_conversion() {
        let mut rng = crate::quant::tests::Rng(777);
        for _ in 0..1_000_000 {
            let x = f32::from_bits(rng.next() as u32);
            if x.is_nan() {
                continue;
            }
            assert_eq!(round(x).to_bits(), to_f32(from_f32(x)).to_bits(), "{x:e}");
        }
        for x in [
            65504.0f32,
            65519.9,
            65520.0,
            6.1035156e-5,
            6.1e-5,
            -0.0,
            1.0 + 1.0 / 2048.0,
        ] {
            assert_eq!(round(x).to_bits(), to_f32(from_f32(x)).to_bits(), "{x:e}");
        }
    }

    #[test]
    fn round_slice_matches_scalar() {
        let mut rng = crate::quant::tests::Rng(99);
        let xs: Vec<f32> = (0..10_007)
            .map(|_| f32::from_bits(rng.next() as u32))
            .filter(|x| !x.is_nan())
            .collect();
        let mut fast = xs.clone();
        round_slice(&mut fast);
        for (a, x) in fast.iter().zip(&xs) {
            assert_eq!(a.to_bits(), round(*x).to_bits(), "{x:e}");
        }
    }

    #[test]
    fn matches_f16c_on_random_floats() {
        #[cfg(target_arch = "x86_64")]
        if crate::has_avx2() {
            let mut rng = crate::quant::tests::Rng(12345);
            for _ in 0..200_000 {
                let x = f32::from_bits(rng.next() as u32);
                let scale = [1.0f32, 1e-3, 1e-6, 1e3][(rng.next() % 4) as usize];
                let x = if x.is_finite() { x * scale } else { x };
                // SAFETY: has_avx2 checked F16C.
                let hw = unsafe { hw_from_f32(x) };
                if x.is_nan() {
                    continue;
                }
                assert_eq!(from_f32(x), hw, "{x:e}");
                // SAFETY: as above.
                assert_eq!(to_f32(hw).to_bits(), unsafe { hw_to_f32(hw) }.to_bits());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "f16c")]
    unsafe fn hw_from_f32(x: f32) -> u16 {
        use std::arch::x86_64::*;
        // SAFETY: F16C is enabled for this function; the caller checked the CPU has it.
        _mm_extract_epi16::<0>(_mm_cvtps_ph::<0>(_mm_set_ss(x))) as u16
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "f16c")]
    unsafe fn hw_to_f32(h: u16) -> f32 {
        use std::arch::x86_64::*;
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h as i16)))
    }
}
