//! Branch-free `expf` for the softmax and SiLU loops.
//!
//! Scalar libm `expf` was ~10% of single-thread prefill. This one has no branches or
//! table look-ups, so LLVM vectorises the slice loops that inline it (SSE2/NEON at the
//! baseline ISA). Method: Cody-Waite range reduction `x = n ln2 + r`, |r| <= ln2/2, a
//! degree-7 polynomial (Cephes-style minimax) for `e^r`, then scaling by `2^n` in two exact steps so
//! subnormal results round once. Within 2 ulp of libm (see the tests).

// ln 2 split so that `n * LN2_HI` is exact for |n| <= 150 (LN2_HI has 9 significant bits).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const LOG2E: f32 = core::f32::consts::LOG2_E;
// Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
const SHIFTER: f32 = 12_582_912.0;
// e^x overflows above ~88.72 and is 0 below ~-103.97; clamping keeps n in [-150, 128].
const X_MAX: f32 = 89.0;
const X_MIN: f32 = -104.0;

/// `e^x` within 2 ulp of `libm::expf`, NaN in NaN out, +inf above ~88.72, 0 below ~-104.
#[inline(always)]
pub(super) fn expf(x: f32) -> f32 {
    // Comparisons (not `f32::clamp`/`max`) so NaN passes through unchanged.
    let x = if x > X_MAX { X_MAX } else { x };
    let x = if x < X_MIN { X_MIN } else { x };
    let z = x * LOG2E + SHIFTER;
    let n = z.to_bits() as i32 - SHIFTER.to_bits() as i32;
    let nf = z - SHIFTER;
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    // e^r = 1 + r + r^2 * P(r) (Cephes-style minimax coefficients).
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = (p * r * r + r) + 1.0;
    // 2^n as 2^n1 * 2^n2 with both halves normal; e * 2^n1 is exact, so the only
    // rounding (into subnormals or to inf) happens in the last product.
    let n1 = n >> 1;
    let n2 = n - n1;
    e * pow2(n1) * pow2(n2)
}

/// 2^n for n in the normal exponent range [-126, 127].
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::expf;

    /// Distance in representable values between two non-negative finite-or-inf floats.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    fn check(x: f32, worst: &mut (u32, f32)) {
        let (got, want) = (expf(x), libm::expf(x));
        assert!(got >= 0.0 && want >= 0.0, "x={x:e}: {got:e} vs {want:e}");
        let d = ulps(got, want);
        if d > worst.0 {
            *worst = (d, x);
        }
    }

    #[test]
    fn within_two_ulp_of_libm_over_dense_range() {
        let mut worst = (0u32, 0.0f32);
        // Every 61st float of each sign up to |x| = 105: covers tiny |x|, the
        // normal range, the subnormal/underflow tail and the overflow edge.
        let top = 105.0f32.to_bits();
        for bits in (0..=top).step_by(61) {
            let x = f32::from_bits(bits);
            check(x, &mut worst);
            check(-x, &mut worst);
        }
        // Every float around the range-reduction and scaling edges.
        for centre in [88.72f32, -87.33, -103.28, -103.97, 0.3466, -0.3466, 0.0] {
            let c = centre.to_bits();
            for bits in c.saturating_sub(20_000)..c + 20_000 {
                check(f32::from_bits(bits), &mut worst);
            }
        }
        println!("max ulp error {} at x = {:e}", worst.0, worst.1);
        assert!(
            worst.0 <= 2,
            "max ulp error {} at x = {:e}",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn special_values() {
        assert!(expf(f32::NAN).is_nan());
        assert!(expf(-f32::NAN).is_nan());
        assert_eq!(expf(f32::INFINITY), f32::INFINITY);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(-0.0), 1.0);
        assert_eq!(expf(88.8), f32::INFINITY);
        assert_eq!(expf(f32::MAX), f32::INFINITY);
        assert_eq!(expf(-110.0), 0.0);
        assert_eq!(expf(f32::MIN), 0.0);
        // Largest finite result and a subnormal one.
        assert!(expf(88.72).is_finite());
        let sub = expf(-100.0);
        assert!(sub > 0.0 && !sub.is_normal());
    }
}
