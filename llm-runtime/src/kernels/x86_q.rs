//! AVX2 and AVX-512 VNNI block sums for Q4_0 / Q4_K / Q5_K / Q6_K (see `qdot` for the sums and
//! the shared f32 combination).
//!
//! The weights are unpacked to unsigned bytes (`0..16`, `0..32`, `0..64`) and multiplied with
//! the signed activations:
//! - AVX2: `vpmaddubsw`, whose pair sums stay below 2^15 for these ranges (at most
//!   63 * 128 * 2), so it never saturates; `vpmaddwd` then applies the sub-block scales in int32;
//! - VNNI: `vpdpbusd` (unsigned x signed bytes, 4-byte sums in int32, no saturation), then
//!   `vpmulld` by the scales.
//!
//! The offsets (`-8` for Q4_0, `-32` for Q6_K) are taken off afterwards with the activation
//! sums, exactly. Every sum equals the scalar reference for every bit pattern.
//!
//! The two families are one source instantiated twice (`isa!`). They are reached only through
//! [`super::Kernels`], which selects the AVX2 path only after detecting AVX2, FMA and F16C, and
//! the VNNI path only after also detecting AVX-512 F/BW/VL and VNNI; that is what makes the
//! calls into the `#[target_feature]` functions sound.

use core::arch::x86_64::*;

#[target_feature(enable = "avx2")]
#[inline]
fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `[sum(a), sum(b), sum(c), sum(d)]` of four int32x8 vectors.
#[target_feature(enable = "avx2")]
#[inline]
fn reduce4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    let abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    _mm_add_epi32(
        _mm256_castsi256_si128(abcd),
        _mm256_extracti128_si256::<1>(abcd),
    )
}

/// fp16 bits to f32 with F16C (exact, like every other conversion).
#[target_feature(enable = "f16c")]
#[inline]
fn h2f(h: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// 32 bytes at `s[at..at + 32]`; `None`-free because every caller passes in-bounds constants.
#[target_feature(enable = "avx2")]
#[inline]
fn load32<T>(s: &[T], at: usize) -> __m256i {
    let bytes = core::mem::size_of_val(s);
    let off = at * core::mem::size_of::<T>();
    if off + 32 > bytes {
        // Unreachable with the fixed block layouts; keeps the load in bounds regardless.
        return _mm256_setzero_si256();
    }
    // SAFETY: `off + 32 <= size_of_val(s)` (checked), so the unaligned load stays inside `s`.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast::<u8>().add(off).cast::<__m256i>()) }
}

/// `sum(u * x)` per 4 bytes times the scale of each 128-bit half (`lo` for bytes 0..16, `hi`
/// for 16..32), in int32, with `vpmaddubsw` + `vpmaddwd` (no saturation for `u < 64`).
#[target_feature(enable = "avx2")]
#[inline]
fn dot_avx2(u: __m256i, x: __m256i, lo: i16, hi: i16) -> __m256i {
    let scale = _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), scale)
}

/// [`dot_avx2`] with `vpdpbusd` + `vpmulld`.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_vnni(u: __m256i, x: __m256i, lo: i16, hi: i16) -> __m256i {
    let scale = _mm256_set_m128i(_mm_set1_epi32(hi.into()), _mm_set1_epi32(lo.into()));
    _mm256_mullo_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x), scale)
}

/// `acc + sum(u * x)` per 4 bytes, unscaled, with `vpmaddubsw` + `vpmaddwd`.
#[target_feature(enable = "avx2")]
#[inline]
fn dot1_avx2(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
    _mm256_add_epi32(acc, p)
}

/// [`dot1_avx2`] as one `vpdpbusd`.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot1_vnni(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, x)
}

macro_rules! isa {
    ($m:ident, $feat:literal, $dot:ident, $dot1:ident) => {
        pub(crate) mod $m {
            use core::arch::x86_64::*;

            use super::super::BlockQ8_0;
            use super::super::qdot::{acc_k4, acc_q4_0, acc_q6_k};
            use super::super::quants::{
                BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, scales_mins_k4,
            };
            use super::{h2f, hsum, load32, reduce4, $dot as dot, $dot1 as dot1};

            #[target_feature(enable = $feat)]
            #[inline]
            pub(crate) fn isum_q4_0(w: &BlockQ4_0, x: &BlockQ8_0) -> i32 {
                // SAFETY: `qs` is 16 bytes; unaligned load.
                let q = unsafe { _mm_loadu_si128(w.qs.as_ptr().cast::<__m128i>()) };
                let m = _mm_set1_epi8(0x0F);
                let u = _mm256_set_m128i(
                    _mm_and_si128(_mm_srli_epi16::<4>(q), m),
                    _mm_and_si128(q, m),
                );
                let xv = load32(&x.qs, 0);
                let p = dot(u, xv, 1, 1);
                let sx = dot(_mm256_set1_epi8(1), xv, 1, 1);
                hsum(_mm256_sub_epi32(p, _mm256_slli_epi32::<3>(sx)))
            }

            /// The min sum `sum_g min_{g/2} * bsums_g`.
            #[target_feature(enable = $feat)]
            #[inline]
            fn min_sum(mn: &[u8; 8], x: &BlockQ8K) -> i32 {
                let m: [i16; 16] = core::array::from_fn(|g| i16::from(mn[g / 2]));
                hsum(_mm256_madd_epi16(load32(x.bsums(), 0), load32(&m, 0)))
            }

            /// Q4_K / Q5_K: `high(c)` gives the fifth bits (`0` or `16` per byte) of the low- and
            /// high-nibble halves of 64-value chunk `c`.
            #[target_feature(enable = $feat)]
            #[inline]
            fn isum_k4(
                qs: &[u8; 128],
                scales: &[u8; 12],
                x: &BlockQ8K,
                high: impl Fn(usize) -> (__m256i, __m256i),
            ) -> (i32, i32) {
                let (sc, mn) = scales_mins_k4(scales);
                let m4 = _mm256_set1_epi8(0x0F);
                let mut acc = _mm256_setzero_si256();
                for c in 0..4 {
                    let q = load32(qs, 32 * c);
                    let (h0, h1) = high(c);
                    let lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
                    let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), h1);
                    let (s0, s1) = (i16::from(sc[2 * c]), i16::from(sc[2 * c + 1]));
                    let p0 = dot(lo, load32(x.qs(), 64 * c), s0, s0);
                    let p1 = dot(hi, load32(x.qs(), 64 * c + 32), s1, s1);
                    acc = _mm256_add_epi32(acc, _mm256_add_epi32(p0, p1));
                }
                (hsum(acc), min_sum(&mn, x))
            }

            #[target_feature(enable = $feat)]
            #[inline]
            pub(crate) fn isum_q4_k(w: &BlockQ4K, x: &BlockQ8K) -> (i32, i32) {
                let z = _mm256_setzero_si256();
                isum_k4(&w.qs, &w.scales, x, |_| (z, z))
            }

            #[target_feature(enable = $feat)]
            #[inline]
            pub(crate) fn isum_q5_k(w: &BlockQ5K, x: &BlockQ8K) -> (i32, i32) {
                let h = load32(&w.qh, 0);
                let sixteen = _mm256_set1_epi8(16);
                let bit = |b: usize| {
                    let m = _mm256_set1_epi8((1u8 << b) as i8);
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m), m), sixteen)
                };
                isum_k4(&w.qs, &w.scales, x, |c| (bit(2 * c), bit(2 * c + 1)))
            }

            #[target_feature(enable = $feat)]
            #[inline]
            pub(crate) fn isum_q6_k(w: &BlockQ6K, x: &BlockQ8K) -> i32 {
                let (m4, m3) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x03));
                // Masked to 2 bits first, so the 16-bit shifts never carry bits across bytes.
                let up = |v: __m256i| _mm256_slli_epi16::<4>(_mm256_and_si256(v, m3));
                let mut acc = _mm256_setzero_si256();
                for n in 0..2 {
                    let a = load32(&w.ql, 64 * n);
                    let b = load32(&w.ql, 64 * n + 32);
                    let h = load32(&w.qh, 32 * n);
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(a, m4), up(h)),
                        _mm256_or_si256(_mm256_and_si256(b, m4), up(_mm256_srli_epi16::<2>(h))),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(a), m4),
                            up(_mm256_srli_epi16::<4>(h)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(b), m4),
                            up(_mm256_srli_epi16::<6>(h)),
                        ),
                    ];
                    for (k, qk) in q.into_iter().enumerate() {
                        let g = 8 * n + 2 * k;
                        let (lo, hi) = (i16::from(w.scales[g]), i16::from(w.scales[g + 1]));
                        let p = dot(qk, load32(x.qs(), 128 * n + 32 * k), lo, hi);
                        acc = _mm256_add_epi32(acc, p);
                    }
                }
                // The `- 32` offset: 32 * sum_g sc_g * bsums_g.
                let sc: [i16; 16] = core::array::from_fn(|g| i16::from(w.scales[g]));
                let off = _mm256_madd_epi16(load32(x.bsums(), 0), load32(&sc, 0));
                hsum(acc) - 32 * hsum(off)
            }

            // Rows: the shared f32 combination over the block sums above.
            // Safety (all four): the CPU must support the features of this family.

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn row_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
                let mut acc = 0.0;
                for (a, b) in w.iter().zip(x) {
                    acc = acc_q4_0(acc, h2f(a.d), h2f(b.d), isum_q4_0(a, b));
                }
                acc
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn row_q4_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
                let mut acc = 0.0;
                for (a, b) in w.iter().zip(x) {
                    let (s, m) = isum_q4_k(a, b);
                    acc = acc_k4(acc, h2f(a.d), h2f(a.dmin), b.d(), s, m);
                }
                acc
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn row_q5_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
                let mut acc = 0.0;
                for (a, b) in w.iter().zip(x) {
                    let (s, m) = isum_q5_k(a, b);
                    acc = acc_k4(acc, h2f(a.d), h2f(a.dmin), b.d(), s, m);
                }
                acc
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn row_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
                let mut acc = 0.0;
                for (a, b) in w.iter().zip(x) {
                    acc = acc_q6_k(acc, h2f(a.d), b.d(), isum_q6_k(a, b));
                }
                acc
            }

            /// Four Q4_0 rows against one token: the same integer sums and, per row, the same
            /// f32 combination as [`row_q4_0`] (so bit-identical results), with the activation
            /// loads, sums and scale shared by the rows and one reduction for all four.
            ///
            /// # Safety
            /// The CPU must support the features of this family.
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn rows4_q4_0(w: [&[BlockQ4_0]; 4], x: &[BlockQ8_0]) -> [f32; 4] {
                if w.iter().any(|r| r.len() != x.len()) {
                    return [0.0; 4];
                }
                let mut acc = _mm_setzero_ps();
                let m = _mm_set1_epi8(0x0F);
                for (b, xb) in x.iter().enumerate() {
                    let xv = load32(&xb.qs, 0);
                    // -8 * (sum of each 4 bytes of x): the `- 8` offset, as the start value.
                    let zero = _mm256_setzero_si256();
                    let sx = dot1(zero, _mm256_set1_epi8(1), xv);
                    let neg = _mm256_sub_epi32(zero, _mm256_slli_epi32::<3>(sx));
                    let p = w.map(|row| {
                        // SAFETY: `b < x.len() == row.len()` (checked above).
                        let wb = unsafe { row.get_unchecked(b) };
                        // SAFETY: `qs` is 16 bytes; unaligned load.
                        let q = unsafe { _mm_loadu_si128(wb.qs.as_ptr().cast::<__m128i>()) };
                        let u = _mm256_set_m128i(
                            _mm_and_si128(_mm_srli_epi16::<4>(q), m),
                            _mm_and_si128(q, m),
                        );
                        dot1(neg, u, xv)
                    });
                    let s = reduce4(p[0], p[1], p[2], p[3]);
                    // SAFETY: as above.
                    let d = w.map(|row| unsafe { row.get_unchecked(b) }.d as i16);
                    let dw = _mm_cvtph_ps(_mm_setr_epi16(d[0], d[1], d[2], d[3], 0, 0, 0, 0));
                    // Lane r is `acc_q4_0` of row r: the same IEEE operations (no FMA).
                    let scale = _mm_mul_ps(dw, _mm_set1_ps(h2f(xb.d)));
                    acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(s), scale));
                }
                let mut o = [0.0f32; 4];
                // SAFETY: `o` is 16 bytes; unaligned store.
                unsafe { _mm_storeu_ps(o.as_mut_ptr(), acc) };
                o
            }
        }
    };
}

isa!(avx2, "avx2,fma,f16c", dot_avx2, dot1_avx2);
isa!(
    vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_vnni,
    dot1_vnni
);
