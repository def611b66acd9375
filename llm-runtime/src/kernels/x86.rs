//! x86-64 tiles: AVX2 (+FMA, F16C) and AVX-512 VNNI (256-bit `vpdpbusd`, AVX-512VL).
//!
//! Both compute each block's int32 dot product exactly, for every int8 value including -128:
//! - AVX2 sign-extends to int16 and uses `vpmaddwd` (pairs of int16 products summed in int32),
//!   not llama.cpp's `vpmaddubsw` sign trick, which saturates (and so differs from the scalar
//!   reference) when both operands are -128.
//! - VNNI's `vpdpbusd` multiplies unsigned by signed bytes, so the weight is biased to
//!   `w + 128` (an XOR with 0x80) and `128 * sum(x)` (per 4-byte lane, computed once per
//!   activation block with another `vpdpbusd`) is subtracted by starting the accumulator at its
//!   negation. `vpdpbusd` does not saturate, so the result is exact.
//!
//! The tiles are reached only through [`super::Kernels`], whose constructors select a path only
//! after [`super::CpuFeatures::detect`] reported the features; that is what makes the calls into
//! the `#[target_feature]` functions sound.

use core::arch::x86_64::*;

use super::{BlockQ8_0, Tiles};

pub(crate) struct Avx2;
pub(crate) struct Vnni;

impl Tiles for Avx2 {
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
            o.copy_from_slice(&unsafe { tile4_avx2::<T>(w, kb, x) }[..R]);
            return o;
        }
        // SAFETY: the Avx2 path is only selected when AVX2, FMA and F16C were detected (module
        // doc); the lengths were checked above.
        unsafe { tile_avx2::<R, T>(w, kb, x) }
    }
}

impl Tiles for Vnni {
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
            let q = unsafe { tile4_vnni::<1, T>(w, kb, x) };
            for (d, s) in o.iter_mut().zip(q.as_flattened()) {
                *d = *s;
            }
            return o;
        }
        if R == 8 {
            let mut o = [[0.0; T]; R];
            // SAFETY: as below; R == 8.
            let q = unsafe { tile4_vnni::<2, T>(w, kb, x) };
            for (d, s) in o.iter_mut().zip(q.as_flattened()) {
                *d = *s;
            }
            return o;
        }
        // SAFETY: the Vnni path is only selected when AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI
        // were detected (module doc); the lengths were checked above.
        unsafe { tile_vnni::<R, T>(w, kb, x) }
    }
}

/// fp16 bits to f32 with F16C.
#[target_feature(enable = "f16c")]
#[inline]
fn h2f(h: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// Hints that the line at `p` will be read soon. A prefetch never faults, so `p` may point
/// anywhere (it is computed with `wrapping_add` and never dereferenced).
#[inline(always)]
fn prefetch(p: *const i8) {
    // SAFETY: `prefetcht0` is an SSE instruction (baseline on x86-64) that only hints the cache;
    // it does not access memory architecturally and ignores invalid addresses.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
}

/// Horizontal sum of 8 f32.
#[target_feature(enable = "avx2")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The 32 int8 of a block as two vectors of 16 sign-extended int16.
#[target_feature(enable = "avx2")]
#[inline]
fn widen(b: &BlockQ8_0) -> (__m256i, __m256i) {
    let p = b.qs.as_ptr().cast::<__m128i>();
    // SAFETY: `qs` is 32 bytes, so both unaligned 16-byte loads stay inside it.
    let (lo, hi) = unsafe { (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1))) };
    (_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi))
}

/// The 32 int8 of a block as one vector.
#[target_feature(enable = "avx2")]
#[inline]
fn load32(b: &BlockQ8_0) -> __m256i {
    // SAFETY: `qs` is 32 bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(b.qs.as_ptr().cast::<__m256i>()) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C; `w.len() >= R*kb`, `x.len() >= T*kb`.
// Index loops over the small const-size tile arrays keep them in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_avx2<const R: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
) -> [[f32; T]; R] {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for b in 0..kb {
        let mut xl = [_mm256_setzero_si256(); T];
        let mut xh = [_mm256_setzero_si256(); T];
        let mut dx = [0.0f32; T];
        for t in 0..T {
            // SAFETY: `t*kb + b < T*kb <= x.len()` (caller's contract).
            let xb = unsafe { x.get_unchecked(t * kb + b) };
            (xl[t], xh[t]) = widen(xb);
            dx[t] = h2f(xb.d);
        }
        for r in 0..R {
            // SAFETY: `r*kb + b < R*kb <= w.len()` (caller's contract).
            let wb = unsafe { w.get_unchecked(r * kb + b) };
            let (wl, wh) = widen(wb);
            let dw = h2f(wb.d);
            for t in 0..T {
                let p =
                    _mm256_add_epi32(_mm256_madd_epi16(wl, xl[t]), _mm256_madd_epi16(wh, xh[t]));
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx[t]), acc[r][t]);
            }
        }
    }
    let mut o = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            o[r][t] = hsum(acc[r][t]);
        }
    }
    o
}

/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI; `w.len() >= R*kb`,
/// `x.len() >= T*kb`.
// Index loops over the small const-size tile arrays keep them in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn tile_vnni<const R: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
) -> [[f32; T]; R] {
    let bias = _mm256_set1_epi8(i8::MIN);
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for b in 0..kb {
        let mut xv = [_mm256_setzero_si256(); T];
        let mut neg = [_mm256_setzero_si256(); T];
        let mut dx = [0.0f32; T];
        for t in 0..T {
            // SAFETY: `t*kb + b < T*kb <= x.len()` (caller's contract).
            let xb = unsafe { x.get_unchecked(t * kb + b) };
            xv[t] = load32(xb);
            // 128 * (sum of each 4-byte lane of x), negated: the bias correction.
            let c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, xv[t]);
            neg[t] = _mm256_sub_epi32(_mm256_setzero_si256(), c);
            dx[t] = h2f(xb.d);
        }
        for r in 0..R {
            // SAFETY: `r*kb + b < R*kb <= w.len()` (caller's contract).
            let wb = unsafe { w.get_unchecked(r * kb + b) };
            let wu = _mm256_xor_si256(load32(wb), bias);
            let dw = h2f(wb.d);
            for t in 0..T {
                let p = _mm256_dpbusd_epi32(neg[t], wu, xv[t]);
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx[t]), acc[r][t]);
            }
        }
    }
    let mut o = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            o[r][t] = hsum(acc[r][t]);
        }
    }
    o
}

/// The scales of block `b` of 4 consecutive rows (`kb` blocks each) as f32.
///
/// # Safety
/// `3*kb + b < w.len()`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn scales4(w: &[BlockQ8_0], kb: usize, b: usize) -> __m128 {
    // SAFETY: the four blocks are inside `w` (caller's contract).
    let d = |r: usize| unsafe { w.get_unchecked(r * kb + b) }.d as i16;
    _mm_cvtph_ps(_mm_setr_epi16(d(0), d(1), d(2), d(3), 0, 0, 0, 0))
}

/// `[sum(a), sum(b), sum(c), sum(d)]` of four int32x8 vectors.
#[target_feature(enable = "avx2")]
#[inline]
fn reduce4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// 4-row tile: per block, the four rows' exact int32 sums are reduced to one int32x4, then
/// converted and scaled together (one `cvt` + one FMA per block instead of four).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `w.len() >= 4*kb`, `x.len() >= T*kb`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile4_avx2<const T: usize>(w: &[BlockQ8_0], kb: usize, x: &[BlockQ8_0]) -> [[f32; T]; 4] {
    let mut acc = [_mm_setzero_ps(); T];
    // Stream in the next 4 rows, as in `tile4_vnni`.
    let step = 4 * BlockQ8_0::BYTES;
    let next = w.as_ptr().cast::<i8>().wrapping_add(step * kb);
    for b in 0..kb {
        let ahead = next.wrapping_add(b * step);
        for line in 0..step.div_ceil(64) + 1 {
            prefetch(ahead.wrapping_add(line * 64));
        }
        // SAFETY: `3*kb + b < 4*kb <= w.len()` (caller's contract).
        let dw = unsafe { scales4(w, kb, b) };
        let mut wl = [_mm256_setzero_si256(); 4];
        let mut wh = [_mm256_setzero_si256(); 4];
        for r in 0..4 {
            // SAFETY: `r*kb + b < 4*kb <= w.len()` (caller's contract).
            (wl[r], wh[r]) = widen(unsafe { w.get_unchecked(r * kb + b) });
        }
        for t in 0..T {
            // SAFETY: `t*kb + b < T*kb <= x.len()` (caller's contract).
            let xb = unsafe { x.get_unchecked(t * kb + b) };
            let (xl, xh) = widen(xb);
            let p = |r: usize| {
                _mm256_add_epi32(_mm256_madd_epi16(wl[r], xl), _mm256_madd_epi16(wh[r], xh))
            };
            let s = reduce4(p(0), p(1), p(2), p(3));
            let d = _mm_mul_ps(dw, _mm_set1_ps(h2f(xb.d)));
            acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(s), d, acc[t]);
        }
    }
    let mut o = [[0.0f32; T]; 4];
    for t in 0..T {
        let mut v = [0.0f32; 4];
        // SAFETY: `v` is 4 f32; unaligned store.
        unsafe { _mm_storeu_ps(v.as_mut_ptr(), acc[t]) };
        for r in 0..4 {
            o[r][t] = v[r];
        }
    }
    o
}

/// VNNI version of [`tile4_avx2`], for `G` groups of 4 rows at once (`4*G` rows; the
/// activation block's load, bias correction and scale are shared by all of them).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI; `w.len() >= 4*G*kb`,
/// `x.len() >= T*kb`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn tile4_vnni<const G: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
) -> [[[f32; T]; 4]; G] {
    let bias = _mm256_set1_epi8(i8::MIN);
    let mut acc = [[_mm_setzero_ps(); T]; G];
    // The next `4*G` rows follow these in memory: stream them in while this tile computes, so
    // the loads below find their lines in cache (decode is bound by weight bandwidth, and four
    // interleaved row streams defeat the hardware prefetcher).
    let step = 4 * G * BlockQ8_0::BYTES;
    let next = w.as_ptr().cast::<i8>().wrapping_add(step * kb);
    for b in 0..kb {
        let ahead = next.wrapping_add(b * step);
        for line in 0..step.div_ceil(64) + 1 {
            prefetch(ahead.wrapping_add(line * 64));
        }
        let mut dw = [_mm_setzero_ps(); G];
        let mut wu = [[_mm256_setzero_si256(); 4]; G];
        for g in 0..G {
            // SAFETY: rows `4g..4g+4` are inside `w` (`w.len() >= 4*G*kb`, caller's contract).
            let wg = unsafe { w.get_unchecked(4 * g * kb..) };
            // SAFETY: `3*kb + b < 4*kb <= wg.len()`.
            dw[g] = unsafe { scales4(wg, kb, b) };
            for r in 0..4 {
                // SAFETY: `r*kb + b < 4*kb <= wg.len()`.
                wu[g][r] = _mm256_xor_si256(load32(unsafe { wg.get_unchecked(r * kb + b) }), bias);
            }
        }
        for t in 0..T {
            // SAFETY: `t*kb + b < T*kb <= x.len()` (caller's contract).
            let xb = unsafe { x.get_unchecked(t * kb + b) };
            let xv = load32(xb);
            let neg = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, xv),
            );
            let dx = _mm_set1_ps(h2f(xb.d));
            for g in 0..G {
                let p = |r: usize| _mm256_dpbusd_epi32(neg, wu[g][r], xv);
                let s = reduce4(p(0), p(1), p(2), p(3));
                acc[g][t] = _mm_fmadd_ps(_mm_cvtepi32_ps(s), _mm_mul_ps(dw[g], dx), acc[g][t]);
            }
        }
    }
    let mut o = [[[0.0f32; T]; 4]; G];
    for g in 0..G {
        for t in 0..T {
            let mut v = [0.0f32; 4];
            // SAFETY: `v` is 4 f32; unaligned store.
            unsafe { _mm_storeu_ps(v.as_mut_ptr(), acc[g][t]) };
            for r in 0..4 {
                o[g][r][t] = v[r];
            }
        }
    }
    o
}
