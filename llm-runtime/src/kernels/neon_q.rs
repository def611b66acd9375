//! aarch64 block sums for Q4_0 / Q4_K / Q5_K / Q6_K (see `qdot` for the sums and the shared
//! f32 combination): the weights are unpacked to signed bytes (`q - 8`, `q`, `q - 32`) and
//! dotted with the activations 16 bytes at a time, by `sdot` (dotprod, via `asm!`) or by
//! `smull` + `sadalp` (plain ARMv8.0 NEON); both are exact. Sub-block scales are applied in
//! int32 with `mla`.
//!
//! Reached only through [`super::Kernels`], which selects these paths only after detecting
//! NEON (and dotprod for `SDOT = true`); that is what makes the calls into the
//! `#[target_feature]` functions sound.

use core::arch::aarch64::*;
use core::arch::asm;

use super::BlockQ8_0;
use super::neon::h2f;
use super::qdot::{acc_k4, acc_q4_0, acc_q6_k};
use super::quants::{BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, scales_mins_k4};

/// 16 bytes at `s[at..at + 16]` as int8 (zeros if out of range, which the fixed block layouts
/// never are).
#[target_feature(enable = "neon")]
#[inline]
fn ld<T>(s: &[T], at: usize) -> int8x16_t {
    let off = at * core::mem::size_of::<T>();
    if off + 16 > core::mem::size_of_val(s) {
        return vdupq_n_s8(0);
    }
    // SAFETY: `off + 16 <= size_of_val(s)` (checked); `vld1q_s8` needs no alignment.
    unsafe { vld1q_s8(s.as_ptr().cast::<i8>().add(off)) }
}

#[target_feature(enable = "neon,dotprod")]
#[inline]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` needs FEAT_DotProd, which this function's target feature (and the caller's
    // detection) guarantees; it only touches the named registers.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `acc + ` the exact 4-lane partial dot product of 16 int8 pairs.
///
/// # Safety
/// With `SDOT`, the CPU must support dotprod.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn dot16<const SDOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if SDOT {
        // SAFETY: the caller guarantees dotprod.
        unsafe { sdot(acc, a, b) }
    } else {
        let p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let acc = vpadalq_s16(acc, p);
        vpadalq_s16(acc, vmull_high_s8(a, b))
    }
}

/// # Safety
/// See [`dot16`].
#[target_feature(enable = "neon")]
#[inline]
unsafe fn isum_q4_0_g<const SDOT: bool>(w: &BlockQ4_0, x: &BlockQ8_0) -> i32 {
    let q = vreinterpretq_u8_s8(ld(&w.qs, 0));
    let eight = vdupq_n_s8(8);
    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), eight);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
    // SAFETY: forwarded.
    let acc = unsafe { dot16::<SDOT>(vdupq_n_s32(0), lo, ld(&x.qs, 0)) };
    // SAFETY: forwarded.
    vaddvq_s32(unsafe { dot16::<SDOT>(acc, hi, ld(&x.qs, 16)) })
}

/// Q4_K / Q5_K; `high(c, half)` gives the fifth bits (`0` or `16`) of the 16-byte `half` (0, 1)
/// of the low- (`.0`) and high-nibble (`.1`) sub-blocks of chunk `c`.
///
/// # Safety
/// See [`dot16`].
#[target_feature(enable = "neon")]
#[inline]
unsafe fn isum_k4_g<const SDOT: bool>(
    qs: &[u8; 128],
    scales: &[u8; 12],
    x: &BlockQ8K,
    high: impl Fn(usize, usize) -> (uint8x16_t, uint8x16_t),
) -> (i32, i32) {
    let (sc, mn) = scales_mins_k4(scales);
    let m4 = vdupq_n_u8(0x0F);
    let mut acc = vdupq_n_s32(0);
    for c in 0..4 {
        let mut d0 = vdupq_n_s32(0);
        let mut d1 = vdupq_n_s32(0);
        for half in 0..2 {
            let q = vreinterpretq_u8_s8(ld(qs, 32 * c + 16 * half));
            let (h0, h1) = high(c, half);
            let lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), h0));
            let hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(q), h1));
            // SAFETY: forwarded.
            unsafe {
                d0 = dot16::<SDOT>(d0, lo, ld(x.qs(), 64 * c + 16 * half));
                d1 = dot16::<SDOT>(d1, hi, ld(x.qs(), 64 * c + 32 + 16 * half));
            }
        }
        acc = vmlaq_n_s32(acc, d0, i32::from(sc[2 * c]));
        acc = vmlaq_n_s32(acc, d1, i32::from(sc[2 * c + 1]));
    }
    let m = x
        .bsums()
        .iter()
        .enumerate()
        .map(|(g, &b)| i32::from(mn[g / 2]) * i32::from(b))
        .sum();
    (vaddvq_s32(acc), m)
}

/// # Safety
/// See [`dot16`].
#[target_feature(enable = "neon")]
#[inline]
unsafe fn isum_q4_k_g<const SDOT: bool>(w: &BlockQ4K, x: &BlockQ8K) -> (i32, i32) {
    let z = vdupq_n_u8(0);
    // SAFETY: forwarded.
    unsafe { isum_k4_g::<SDOT>(&w.qs, &w.scales, x, |_, _| (z, z)) }
}

/// # Safety
/// See [`dot16`].
#[target_feature(enable = "neon")]
#[inline]
unsafe fn isum_q5_k_g<const SDOT: bool>(w: &BlockQ5K, x: &BlockQ8K) -> (i32, i32) {
    let h = [
        vreinterpretq_u8_s8(ld(&w.qh, 0)),
        vreinterpretq_u8_s8(ld(&w.qh, 16)),
    ];
    let sixteen = vdupq_n_u8(16);
    let bit = |half: usize, b: usize| vandq_u8(vtstq_u8(h[half], vdupq_n_u8(1 << b)), sixteen);
    // SAFETY: forwarded.
    unsafe {
        isum_k4_g::<SDOT>(&w.qs, &w.scales, x, |c, half| {
            (bit(half, 2 * c), bit(half, 2 * c + 1))
        })
    }
}

/// # Safety
/// See [`dot16`].
#[target_feature(enable = "neon")]
#[inline]
unsafe fn isum_q6_k_g<const SDOT: bool>(w: &BlockQ6K, x: &BlockQ8K) -> i32 {
    let m4 = vdupq_n_u8(0x0F);
    let m3 = vdupq_n_u8(0x03);
    let t32 = vdupq_n_s8(32);
    let mut acc = vdupq_n_s32(0);
    for n in 0..2 {
        for half in 0..2 {
            let a = vreinterpretq_u8_s8(ld(&w.ql, 64 * n + 16 * half));
            let b = vreinterpretq_u8_s8(ld(&w.ql, 64 * n + 32 + 16 * half));
            let h = vreinterpretq_u8_s8(ld(&w.qh, 32 * n + 16 * half));
            let up = |v: uint8x16_t| vshlq_n_u8::<4>(vandq_u8(v, m3));
            let q = [
                vorrq_u8(vandq_u8(a, m4), up(h)),
                vorrq_u8(vandq_u8(b, m4), up(vshrq_n_u8::<2>(h))),
                vorrq_u8(vshrq_n_u8::<4>(a), up(vshrq_n_u8::<4>(h))),
                vorrq_u8(vshrq_n_u8::<4>(b), up(vshrq_n_u8::<6>(h))),
            ];
            for (k, qk) in q.into_iter().enumerate() {
                let v = vsubq_s8(vreinterpretq_s8_u8(qk), t32);
                // SAFETY: forwarded.
                let d = unsafe {
                    dot16::<SDOT>(vdupq_n_s32(0), v, ld(x.qs(), 128 * n + 32 * k + 16 * half))
                };
                acc = vmlaq_n_s32(acc, d, i32::from(w.scales[8 * n + 2 * k + half]));
            }
        }
    }
    vaddvq_s32(acc)
}

// Rows: the shared f32 combination over the block sums.

macro_rules! rows {
    ($isum:ident, $neon:ident, $sdot:ident, $w:ty, $x:ty, ($acc:ident, $a:ident, $b:ident, $s:ident) => $comb:expr) => {
        /// # Safety
        /// The CPU must support NEON.
        #[target_feature(enable = "neon")]
        pub(crate) unsafe fn $neon(w: &[$w], x: &[$x]) -> f32 {
            let mut $acc = 0.0;
            for ($a, $b) in w.iter().zip(x) {
                // SAFETY: no dotprod needed with SDOT = false.
                let $s = unsafe { $isum::<false>($a, $b) };
                $acc = $comb;
            }
            $acc
        }

        /// # Safety
        /// The CPU must support NEON and dotprod.
        #[target_feature(enable = "neon,dotprod")]
        pub(crate) unsafe fn $sdot(w: &[$w], x: &[$x]) -> f32 {
            let mut $acc = 0.0;
            for ($a, $b) in w.iter().zip(x) {
                // SAFETY: dotprod is guaranteed by the caller.
                let $s = unsafe { $isum::<true>($a, $b) };
                $acc = $comb;
            }
            $acc
        }
    };
}

rows!(
    isum_q4_0_g,
    row_q4_0_neon,
    row_q4_0_sdot,
    BlockQ4_0,
    BlockQ8_0,
    (acc, a, b, s) => acc_q4_0(acc, h2f(a.d), h2f(b.d), s)
);
rows!(
    isum_q4_k_g,
    row_q4_k_neon,
    row_q4_k_sdot,
    BlockQ4K,
    BlockQ8K,
    (acc, a, b, s) => acc_k4(acc, h2f(a.d), h2f(a.dmin), b.d(), s.0, s.1)
);
rows!(
    isum_q5_k_g,
    row_q5_k_neon,
    row_q5_k_sdot,
    BlockQ5K,
    BlockQ8K,
    (acc, a, b, s) => acc_k4(acc, h2f(a.d), h2f(a.dmin), b.d(), s.0, s.1)
);
rows!(
    isum_q6_k_g,
    row_q6_k_neon,
    row_q6_k_sdot,
    BlockQ6K,
    BlockQ8K,
    (acc, a, b, s) => acc_q6_k(acc, h2f(a.d), b.d(), s)
);

/// Block sums on one path, for the cross-path tests: `(s, m)` (`m = 0` where the type has no
/// min).
///
/// # Safety
/// The CPU must support NEON, and dotprod if `sdot`.
pub(crate) unsafe fn block_sums(
    sdot: bool,
    w: super::QBlock<'_>,
    x: super::QActBlock<'_>,
) -> (i32, i32) {
    use super::{QActBlock as A, QBlock as W};
    // SAFETY: forwarded to the caller.
    unsafe {
        match (w, x, sdot) {
            (W::Q4_0(a), A::Q8_0(b), false) => (isum_q4_0_g::<false>(a, b), 0),
            (W::Q4_0(a), A::Q8_0(b), true) => (sdot_q4_0(a, b), 0),
            (W::Q4K(a), A::Q8K(b), false) => isum_q4_k_g::<false>(a, b),
            (W::Q4K(a), A::Q8K(b), true) => sdot_q4_k(a, b),
            (W::Q5K(a), A::Q8K(b), false) => isum_q5_k_g::<false>(a, b),
            (W::Q5K(a), A::Q8K(b), true) => sdot_q5_k(a, b),
            (W::Q6K(a), A::Q8K(b), false) => (isum_q6_k_g::<false>(a, b), 0),
            (W::Q6K(a), A::Q8K(b), true) => (sdot_q6_k(a, b), 0),
            _ => (0, 0),
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_q4_0(w: &BlockQ4_0, x: &BlockQ8_0) -> i32 {
    // SAFETY: dotprod enabled here and guaranteed by the caller.
    unsafe { isum_q4_0_g::<true>(w, x) }
}
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_q4_k(w: &BlockQ4K, x: &BlockQ8K) -> (i32, i32) {
    // SAFETY: as above.
    unsafe { isum_q4_k_g::<true>(w, x) }
}
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_q5_k(w: &BlockQ5K, x: &BlockQ8K) -> (i32, i32) {
    // SAFETY: as above.
    unsafe { isum_q5_k_g::<true>(w, x) }
}
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_q6_k(w: &BlockQ6K, x: &BlockQ8K) -> i32 {
    // SAFETY: as above.
    unsafe { isum_q6_k_g::<true>(w, x) }
}
