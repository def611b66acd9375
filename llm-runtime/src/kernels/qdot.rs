//! Products of Q4_0 / Q4_K / Q5_K / Q6_K weights with quantized activations: the integer sums
//! each block contributes (scalar reference here; SIMD in `x86_q` / `neon_q`), and the one f32
//! combination every path shares.
//!
//! # Integer sums per block (identical, bit for bit, on every path; tested)
//! - Q4_0 x Q8_0: `s = sum_j (q_j - 8) * x_j` over 32 values.
//! - Q4_K x Q8_K, Q5_K x Q8_K: `s = sum_{j<8} sc_j * sum_{l<32} q_{32j+l} * x_{32j+l}` and
//!   `m = sum_{g<16} min_{g/2} * bsums_g` (ggml's `sumi` and min sum).
//! - Q6_K x Q8_K: `s = sum_{g<16} sc_g * sum_{l<16} (q_{16g+l} - 32) * x_{16g+l}`.
//!
//! None can overflow i32 for any bit pattern (worst cases: Q4_K 8 * 63 * 32 * 15 * 128 < 2^25,
//! Q6_K 16 * 128 * 16 * 32 * 128 < 2^28).
//!
//! # Float combination (identical on every path)
//! Per output, blocks in order, one f32 accumulator starting at 0:
//! - Q4_0: `acc += s as f32 * (d_w * d_x)` (both fp16 -> f32), as ggml's generic kernel;
//! - Q4_K / Q5_K: `acc += (d_w * d_x) * s as f32; acc -= (dmin_w * d_x) * m as f32`;
//! - Q6_K: `acc += (d_w * d_x) * s as f32`.
//!
//! llama.cpp's SIMD kernels add the same terms in other orders (8-lane partial sums), so
//! against llama.cpp the results differ only by f32 rounding.

use super::BlockQ8_0;
use super::quants::{
    BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, h2f, scales_mins_k4, unpack_q4_0,
    unpack_q4_k, unpack_q5_k, unpack_q6_k,
};

/// Q4_0 x Q8_0 block sum.
#[inline]
pub fn isum_q4_0(w: &BlockQ4_0, x: &BlockQ8_0) -> i32 {
    unpack_q4_0(w)
        .iter()
        .zip(&x.qs)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

fn k4_sums(q: &[i8; 256], scales: &[u8; 12], x: &BlockQ8K) -> (i32, i32) {
    let (sc, mn) = scales_mins_k4(scales);
    let mut s = 0i32;
    for (j, (qw, qx)) in q.chunks_exact(32).zip(x.qs().chunks_exact(32)).enumerate() {
        let d: i32 = qw
            .iter()
            .zip(qx)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        s += i32::from(sc[j]) * d;
    }
    let m = x
        .bsums()
        .iter()
        .enumerate()
        .map(|(g, &b)| i32::from(mn[g / 2]) * i32::from(b))
        .sum();
    (s, m)
}

/// Q4_K x Q8_K block sums `(s, m)`.
#[inline]
pub fn isum_q4_k(w: &BlockQ4K, x: &BlockQ8K) -> (i32, i32) {
    k4_sums(&unpack_q4_k(w), &w.scales, x)
}

/// Q5_K x Q8_K block sums `(s, m)`.
#[inline]
pub fn isum_q5_k(w: &BlockQ5K, x: &BlockQ8K) -> (i32, i32) {
    k4_sums(&unpack_q5_k(w), &w.scales, x)
}

/// Q6_K x Q8_K block sum.
#[inline]
pub fn isum_q6_k(w: &BlockQ6K, x: &BlockQ8K) -> i32 {
    let q = unpack_q6_k(w);
    q.chunks_exact(16)
        .zip(x.qs().chunks_exact(16))
        .zip(&w.scales)
        .map(|((qw, qx), &sc)| {
            let d: i32 = qw
                .iter()
                .zip(qx)
                .map(|(&a, &b)| i32::from(a) * i32::from(b))
                .sum();
            i32::from(sc) * d
        })
        .sum()
}

// The shared float combination (module doc), one step per block. The fp16 scales come in as
// f32 (each path converts them its own way; fp16 -> f32 is exact, so all agree).

#[inline(always)]
pub(crate) fn acc_q4_0(acc: f32, dw: f32, dx: f32, s: i32) -> f32 {
    acc + s as f32 * (dw * dx)
}

#[inline(always)]
pub(crate) fn acc_k4(acc: f32, d: f32, dmin: f32, dx: f32, s: i32, m: i32) -> f32 {
    let acc = acc + (d * dx) * s as f32;
    acc - (dmin * dx) * m as f32
}

#[inline(always)]
pub(crate) fn acc_q6_k(acc: f32, d: f32, dx: f32, s: i32) -> f32 {
    acc + (d * dx) * s as f32
}

/// Scalar reference row products (`w` one row of blocks, `x` one token's blocks).
pub fn row_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    w.iter().zip(x).fold(0.0, |acc, (a, b)| {
        acc_q4_0(acc, h2f(a.d), h2f(b.d), isum_q4_0(a, b))
    })
}

pub fn row_q4_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    w.iter().zip(x).fold(0.0, |acc, (a, b)| {
        let (s, m) = isum_q4_k(a, b);
        acc_k4(acc, h2f(a.d), h2f(a.dmin), b.d(), s, m)
    })
}

pub fn row_q5_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    w.iter().zip(x).fold(0.0, |acc, (a, b)| {
        let (s, m) = isum_q5_k(a, b);
        acc_k4(acc, h2f(a.d), h2f(a.dmin), b.d(), s, m)
    })
}

pub fn row_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    w.iter().zip(x).fold(0.0, |acc, (a, b)| {
        acc_q6_k(acc, h2f(a.d), b.d(), isum_q6_k(a, b))
    })
}
