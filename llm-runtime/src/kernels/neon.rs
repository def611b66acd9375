//! aarch64 tiles: plain NEON (`smull`/`sadalp`, ARMv8.0), SDOT (dotprod) and SMMLA (i8mm).
//!
//! The dotprod and i8mm intrinsics are unstable in Rust 1.95, so `sdot` and `smmla` are written
//! with `asm!` inside functions compiled with the matching `#[target_feature]` (llm-facts.md
//! sec. 6.1). All three compute each block's int32 dot product exactly (int8 x int8 products fit
//! in int16 and are widened before any sum could overflow).
//!
//! The tiles are reached only through [`super::Kernels`], whose constructors select a path only
//! after [`super::CpuFeatures::detect`] reported the features; that is what makes the calls into
//! the `#[target_feature]` functions sound.

use core::arch::aarch64::*;
use core::arch::asm;

use super::{BlockQ8_0, Tiles};

pub(crate) struct Neon;
pub(crate) struct Sdot;
pub(crate) struct Smmla;

impl Tiles for Neon {
    #[inline]
    fn tile<const R: usize, const T: usize>(
        w: &[BlockQ8_0],
        kb: usize,
        x: &[BlockQ8_0],
    ) -> [[f32; T]; R] {
        if w.len() < R * kb || x.len() < T * kb {
            return [[0.0; T]; R];
        }
        if R == 4 {
            let mut o = [[0.0; T]; R];
            // SAFETY: as below; R == 4.
            o.copy_from_slice(&unsafe { tile4::<T, false>(w, kb, x) }[..R]);
            return o;
        }
        // SAFETY: the Neon path is only selected when NEON was detected (module doc); the
        // lengths were checked above.
        unsafe { tile_neon::<R, T>(w, kb, x) }
    }
}

impl Tiles for Sdot {
    #[inline]
    fn tile<const R: usize, const T: usize>(
        w: &[BlockQ8_0],
        kb: usize,
        x: &[BlockQ8_0],
    ) -> [[f32; T]; R] {
        if w.len() < R * kb || x.len() < T * kb {
            return [[0.0; T]; R];
        }
        if R == 4 && T == 1 && kb > 0 {
            let mut o = [[0.0; T]; R];
            // SAFETY: as below; R == 4, T == 1, kb > 0.
            let v = unsafe { tile4x1_sdot_asm(w, kb, x) };
            for (or, v) in o.iter_mut().zip(v) {
                or[0] = v;
            }
            return o;
        }
        if R == 4 {
            let mut o = [[0.0; T]; R];
            // SAFETY: as below; R == 4.
            o.copy_from_slice(&unsafe { tile4_sdot::<T>(w, kb, x) }[..R]);
            return o;
        }
        // SAFETY: the Sdot path is only selected when dotprod was detected (module doc); the
        // lengths were checked above.
        unsafe { tile_sdot::<R, T>(w, kb, x) }
    }
}

impl Tiles for Smmla {
    #[inline]
    fn tile<const R: usize, const T: usize>(
        w: &[BlockQ8_0],
        kb: usize,
        x: &[BlockQ8_0],
    ) -> [[f32; T]; R] {
        if w.len() < R * kb || x.len() < T * kb {
            return [[0.0; T]; R];
        }
        if R.is_multiple_of(2) && T.is_multiple_of(2) {
            // SAFETY: the Smmla path is only selected when i8mm and dotprod were detected
            // (module doc); the lengths were checked above; R and T are even.
            unsafe { tile_smmla::<R, T>(w, kb, x) }
        } else {
            // Odd edges: SDOT (i8mm implies dotprod here, see `Path::supported`).
            // SAFETY: as above; dotprod was detected.
            unsafe { tile_sdot::<R, T>(w, kb, x) }
        }
    }
}

/// fp16 bits to f32.
#[inline(always)]
pub(crate) fn h2f(h: u16) -> f32 {
    let out: f32;
    // SAFETY: `fcvt` from a half register is base ARMv8.0 FP (always present with NEON); it only
    // touches the named registers.
    unsafe {
        asm!(
            "fmov {h:s}, {i:w}",
            "fcvt {o:s}, {h:h}",
            i = in(reg) u32::from(h),
            h = out(vreg) _,
            o = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// The 32 int8 of a block as two vectors.
#[inline(always)]
fn load(b: &BlockQ8_0) -> (int8x16_t, int8x16_t) {
    let p = b.qs.as_ptr();
    // SAFETY: `qs` is 32 bytes, so both 16-byte loads stay inside it (no alignment needed).
    unsafe { (vld1q_s8(p), vld1q_s8(p.add(16))) }
}

/// Exact int32x4 partial sums of a 32-byte dot product with `smull`/`smull2` + `sadalp`.
#[target_feature(enable = "neon")]
#[inline]
fn dot_neon(wl: int8x16_t, wh: int8x16_t, xl: int8x16_t, xh: int8x16_t) -> int32x4_t {
    let p0 = vmull_s8(vget_low_s8(wl), vget_low_s8(xl));
    let p1 = vmull_high_s8(wl, xl);
    let p2 = vmull_s8(vget_low_s8(wh), vget_low_s8(xh));
    let p3 = vmull_high_s8(wh, xh);
    let s = vpaddlq_s16(p0);
    let s = vpadalq_s16(s, p1);
    let s = vpadalq_s16(s, p2);
    vpadalq_s16(s, p3)
}

/// Exact int32x4 partial sums of a 32-byte dot product with two `sdot`.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn dot_sdot(wl: int8x16_t, wh: int8x16_t, xl: int8x16_t, xh: int8x16_t) -> int32x4_t {
    let mut acc = vdupq_n_s32(0);
    // SAFETY: `sdot` needs FEAT_DotProd, which this function's target feature (and the caller's
    // detection) guarantees; it only touches the named registers.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            "sdot {acc:v}.4s, {c:v}.16b, {d:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) wl,
            b = in(vreg) xl,
            c = in(vreg) wh,
            d = in(vreg) xh,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// # Safety
/// The CPU must support NEON; `w.len() >= R*kb`, `x.len() >= T*kb`.
// Index loops over the small const-size tile arrays keep them in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile_neon<const R: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
) -> [[f32; T]; R] {
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    for b in 0..kb {
        let mut xl = [vdupq_n_s8(0); T];
        let mut xh = [vdupq_n_s8(0); T];
        let mut dx = [0.0f32; T];
        for t in 0..T {
            // SAFETY: `t*kb + b < T*kb <= x.len()` (caller's contract).
            let xb = unsafe { x.get_unchecked(t * kb + b) };
            (xl[t], xh[t]) = load(xb);
            dx[t] = h2f(xb.d);
        }
        for r in 0..R {
            // SAFETY: `r*kb + b < R*kb <= w.len()` (caller's contract).
            let wb = unsafe { w.get_unchecked(r * kb + b) };
            let (wl, wh) = load(wb);
            let dw = h2f(wb.d);
            for t in 0..T {
                let p = dot_neon(wl, wh, xl[t], xh[t]);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(p), dw * dx[t]);
            }
        }
    }
    let mut o = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            o[r][t] = vaddvq_f32(acc[r][t]);
        }
    }
    o
}

/// # Safety
/// The CPU must support NEON and dotprod; `w.len() >= R*kb`, `x.len() >= T*kb`.
// Index loops over the small const-size tile arrays keep them in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn tile_sdot<const R: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
) -> [[f32; T]; R] {
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    for b in 0..kb {
        let mut xl = [vdupq_n_s8(0); T];
        let mut xh = [vdupq_n_s8(0); T];
        let mut dx = [0.0f32; T];
        for t in 0..T {
            // SAFETY: `t*kb + b < T*kb <= x.len()` (caller's contract).
            let xb = unsafe { x.get_unchecked(t * kb + b) };
            (xl[t], xh[t]) = load(xb);
            dx[t] = h2f(xb.d);
        }
        for r in 0..R {
            // SAFETY: `r*kb + b < R*kb <= w.len()` (caller's contract).
            let wb = unsafe { w.get_unchecked(r * kb + b) };
            let (wl, wh) = load(wb);
            let dw = h2f(wb.d);
            for t in 0..T {
                let p = dot_sdot(wl, wh, xl[t], xh[t]);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(p), dw * dx[t]);
            }
        }
    }
    let mut o = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            o[r][t] = vaddvq_f32(acc[r][t]);
        }
    }
    o
}

/// 2x2 int32 tile `[w0.x0, w0.x1, w1.x0, w1.x1]` of two weight blocks by two activation blocks,
/// with four `smmla` over the 64-bit-interleaved halves.
#[target_feature(enable = "neon,i8mm")]
#[inline]
fn mm2x2(w0: &BlockQ8_0, w1: &BlockQ8_0, x0: &BlockQ8_0, x1: &BlockQ8_0) -> int32x4_t {
    let (w0l, w0h) = load(w0);
    let (w1l, w1h) = load(w1);
    let (x0l, x0h) = load(x0);
    let (x1l, x1h) = load(x1);
    let z = |a: int8x16_t, b: int8x16_t| {
        let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
        (
            vreinterpretq_s8_s64(vzip1q_s64(a, b)),
            vreinterpretq_s8_s64(vzip2q_s64(a, b)),
        )
    };
    let (a0, a1) = z(w0l, w1l);
    let (a2, a3) = z(w0h, w1h);
    let (b0, b1) = z(x0l, x1l);
    let (b2, b3) = z(x0h, x1h);
    let mut acc = vdupq_n_s32(0);
    // SAFETY: `smmla` needs FEAT_I8MM, which this function's target feature (and the caller's
    // detection) guarantees; it only touches the named registers.
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {a0:v}.16b, {b0:v}.16b",
            "smmla {acc:v}.4s, {a1:v}.16b, {b1:v}.16b",
            "smmla {acc:v}.4s, {a2:v}.16b, {b2:v}.16b",
            "smmla {acc:v}.4s, {a3:v}.16b, {b3:v}.16b",
            acc = inout(vreg) acc,
            a0 = in(vreg) a0,
            a1 = in(vreg) a1,
            a2 = in(vreg) a2,
            a3 = in(vreg) a3,
            b0 = in(vreg) b0,
            b1 = in(vreg) b1,
            b2 = in(vreg) b2,
            b3 = in(vreg) b3,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// # Safety
/// The CPU must support NEON and i8mm; `R` and `T` even; `w.len() >= R*kb`, `x.len() >= T*kb`.
#[target_feature(enable = "neon,i8mm")]
#[inline]
unsafe fn tile_smmla<const R: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
) -> [[f32; T]; R] {
    let mut o = [[0.0f32; T]; R];
    let mut r = 0;
    while r + 2 <= R {
        let mut t = 0;
        while t + 2 <= T {
            let mut acc = vdupq_n_f32(0.0);
            for b in 0..kb {
                // SAFETY: indices below `R*kb` / `T*kb` (caller's contract).
                let (w0, w1, x0, x1) = unsafe {
                    (
                        w.get_unchecked(r * kb + b),
                        w.get_unchecked((r + 1) * kb + b),
                        x.get_unchecked(t * kb + b),
                        x.get_unchecked((t + 1) * kb + b),
                    )
                };
                let p = mm2x2(w0, w1, x0, x1);
                let (dw0, dw1, dx0, dx1) = (h2f(w0.d), h2f(w1.d), h2f(x0.d), h2f(x1.d));
                let d = [dw0 * dx0, dw0 * dx1, dw1 * dx0, dw1 * dx1];
                // SAFETY: `d` is 4 f32.
                let dv = unsafe { vld1q_f32(d.as_ptr()) };
                acc = vfmaq_f32(acc, vcvtq_f32_s32(p), dv);
            }
            o[r][t] = vgetq_lane_f32::<0>(acc);
            o[r][t + 1] = vgetq_lane_f32::<1>(acc);
            o[r + 1][t] = vgetq_lane_f32::<2>(acc);
            o[r + 1][t + 1] = vgetq_lane_f32::<3>(acc);
            t += 2;
        }
        r += 2;
    }
    o
}

/// The scales of block `b` of 4 consecutive rows (`kb` blocks each) as f32.
///
/// # Safety
/// `3*kb + b < w.len()`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn scales4(w: &[BlockQ8_0], kb: usize, b: usize) -> float32x4_t {
    let p = w.as_ptr();
    // SAFETY: the four blocks are inside `w` (caller's contract); `d` is a plain u16 field.
    let h = unsafe {
        let h = vld1_lane_u16::<0>(&raw const (*p.add(b)).d, vdup_n_u16(0));
        let h = vld1_lane_u16::<1>(&raw const (*p.add(kb + b)).d, h);
        let h = vld1_lane_u16::<2>(&raw const (*p.add(2 * kb + b)).d, h);
        vld1_lane_u16::<3>(&raw const (*p.add(3 * kb + b)).d, h)
    };
    let out: float32x4_t;
    // SAFETY: `fcvtl` (half to single, 4 lanes) is base ARMv8.0 FP/NEON; it only touches the
    // named registers.
    unsafe {
        asm!(
            "fcvtl {o:v}.4s, {i:v}.4h",
            i = in(vreg) h,
            o = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// 4-row tile: per block and token, the four rows' exact int32 partial sums are reduced with
/// `addp` to one int32x4 `[row0..row3]`, then converted and scaled together. `SDOT` selects
/// the dot-product instruction (else `smull` + `sadalp`).
///
/// # Safety
/// The CPU must support NEON (and dotprod if `SDOT`); `w.len() >= 4*kb`, `x.len() >= T*kb`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile4<const T: usize, const SDOT: bool>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
) -> [[f32; T]; 4] {
    let mut acc = [vdupq_n_f32(0.0); T];
    for b in 0..kb {
        // SAFETY: `3*kb + b < 4*kb <= w.len()` (caller's contract).
        let dw = unsafe { scales4(w, kb, b) };
        let mut wl = [vdupq_n_s8(0); 4];
        let mut wh = [vdupq_n_s8(0); 4];
        for r in 0..4 {
            // SAFETY: `r*kb + b < 4*kb <= w.len()` (caller's contract).
            (wl[r], wh[r]) = load(unsafe { w.get_unchecked(r * kb + b) });
        }
        for t in 0..T {
            // SAFETY: `t*kb + b < T*kb <= x.len()` (caller's contract).
            let xb = unsafe { x.get_unchecked(t * kb + b) };
            let (xl, xh) = load(xb);
            let p = |r: usize| {
                if SDOT {
                    // SAFETY: `SDOT` is only set by `tile4_sdot`, whose caller guarantees dotprod.
                    unsafe { dot_sdot(wl[r], wh[r], xl, xh) }
                } else {
                    dot_neon(wl[r], wh[r], xl, xh)
                }
            };
            let s = vpaddq_s32(vpaddq_s32(p(0), p(1)), vpaddq_s32(p(2), p(3)));
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_n_f32(dw, h2f(xb.d)));
        }
    }
    let mut o = [[0.0f32; T]; 4];
    for t in 0..T {
        let v = [
            vgetq_lane_f32::<0>(acc[t]),
            vgetq_lane_f32::<1>(acc[t]),
            vgetq_lane_f32::<2>(acc[t]),
            vgetq_lane_f32::<3>(acc[t]),
        ];
        for r in 0..4 {
            o[r][t] = v[r];
        }
    }
    o
}

/// [`tile4`] with SDOT, compiled with dotprod enabled so `dot_sdot` inlines.
///
/// # Safety
/// The CPU must support NEON and dotprod; `w.len() >= 4*kb`, `x.len() >= T*kb`.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn tile4_sdot<const T: usize>(w: &[BlockQ8_0], kb: usize, x: &[BlockQ8_0]) -> [[f32; T]; 4] {
    // SAFETY: forwarded contract; dotprod is enabled here and guaranteed by the caller.
    unsafe { tile4::<T, true>(w, kb, x) }
}

/// The decode tile (4 rows x 1 token) as one `asm!` loop: the same arithmetic as [`tile4`]
/// (per block: 8 `sdot`, `addp` to `[row0..row3]`, one `scvtf` and one `fmla` with the four
/// weight scales times the activation scale), but with post-incremented row pointers, so a block
/// of 4 rows costs 32 instructions instead of the ~47 the compiler makes of the intrinsics
/// (it cannot use `ldp` at the blocks' 2-byte offset).
///
/// # Safety
/// The CPU must support NEON and dotprod; `kb > 0`, `w.len() >= 4*kb`, `x.len() >= kb`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile4x1_sdot_asm(w: &[BlockQ8_0], kb: usize, x: &[BlockQ8_0]) -> [f32; 4] {
    let stride = kb * BlockQ8_0::BYTES;
    let p0 = w.as_ptr().cast::<u8>();
    // SAFETY: rows 1..3 start inside `w` (`w.len() >= 4*kb`).
    let (p1, p2, p3) = unsafe { (p0.add(stride), p0.add(2 * stride), p0.add(3 * stride)) };
    let mut acc = vdupq_n_f32(0.0);
    // SAFETY: each iteration reads one 34-byte block from each of the four rows and from `x`,
    // `kb` times, all inside `w` / `x` (caller's contract); it needs dotprod (guaranteed by the
    // caller) and writes only the declared registers (v1-v7 and v16-v24; the callee-saved v8-v15
    // are untouched).
    unsafe {
        asm!(
            "2:",
            "ld1 {{v1.h}}[0], [{p0}], #2",
            "ldp q2, q3, [{p0}], #32",
            "ld1 {{v1.h}}[1], [{p1}], #2",
            "ldp q4, q5, [{p1}], #32",
            "ld1 {{v1.h}}[2], [{p2}], #2",
            "ldp q6, q7, [{p2}], #32",
            "ld1 {{v1.h}}[3], [{p3}], #2",
            "ldp q16, q17, [{p3}], #32",
            "ld1 {{v18.h}}[0], [{px}], #2",
            "ldp q19, q20, [{px}], #32",
            "movi v21.4s, #0",
            "movi v22.4s, #0",
            "movi v23.4s, #0",
            "movi v24.4s, #0",
            "sdot v21.4s, v2.16b, v19.16b",
            "sdot v22.4s, v4.16b, v19.16b",
            "sdot v23.4s, v6.16b, v19.16b",
            "sdot v24.4s, v16.16b, v19.16b",
            "sdot v21.4s, v3.16b, v20.16b",
            "sdot v22.4s, v5.16b, v20.16b",
            "sdot v23.4s, v7.16b, v20.16b",
            "sdot v24.4s, v17.16b, v20.16b",
            "addp v21.4s, v21.4s, v22.4s",
            "addp v23.4s, v23.4s, v24.4s",
            "fcvtl v1.4s, v1.4h",
            "fcvt s18, h18",
            "addp v21.4s, v21.4s, v23.4s",
            "fmul v1.4s, v1.4s, v18.s[0]",
            "scvtf v21.4s, v21.4s",
            "fmla {acc:v}.4s, v1.4s, v21.4s",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            p0 = inout(reg) p0 => _,
            p1 = inout(reg) p1 => _,
            p2 = inout(reg) p2 => _,
            p3 = inout(reg) p3 => _,
            px = inout(reg) x.as_ptr().cast::<u8>() => _,
            n = inout(reg) kb => _,
            acc = inout(vreg) acc,
            out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _,
            out("v7") _, out("v16") _, out("v17") _, out("v18") _, out("v19") _, out("v20") _,
            out("v21") _, out("v22") _, out("v23") _, out("v24") _,
            options(nostack, readonly)
        );
    }
    [
        vgetq_lane_f32::<0>(acc),
        vgetq_lane_f32::<1>(acc),
        vgetq_lane_f32::<2>(acc),
        vgetq_lane_f32::<3>(acc),
    ]
}
