//! Scalar reference kernels: the definition every SIMD path must match.

use super::{BlockQ8_0, QK8_0};

/// Integer dot product of two blocks (exact).
#[inline]
pub fn dot_block(a: &BlockQ8_0, b: &BlockQ8_0) -> i32 {
    a.qs.iter()
        .zip(b.qs.iter())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// `y[r] = sum_b dot(w[r*kb + b], x[b]) * d(w) * d(x)`, with `kb = x.len()` blocks per row and
/// `rows = y.len()`. Panics if `w.len() != rows * kb` (callers size buffers up front).
pub fn matvec_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0], y: &mut [f32]) {
    let kb = x.len();
    assert_eq!(
        w.len(),
        y.len() * kb,
        "matvec_q8_0: weight/activation shape mismatch"
    );
    for (row, out) in w.chunks_exact(kb.max(1)).zip(y.iter_mut()) {
        *out = dot_row(row, x);
    }
}

/// Reference quantizer, byte-exact with ggml's `quantize_row_q8_0_ref` and gguf-py:
/// `d = amax / 127`, `q = round_half_away(x / d)` with the unrounded f32 `d`, `d` stored as fp16.
/// Panics if `x.len() != out.len() * QK8_0`.
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK8_0,
        "quantize_row_q8_0: length mismatch"
    );
    for (xs, blk) in x.chunks_exact(QK8_0).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk.d = half::f16::from_f32(d).to_bits();
        for (q, &v) in blk.qs.iter_mut().zip(xs) {
            *q = round_to_i8(v * id);
        }
    }
}

/// `roundf(v) as i8` (round half away from zero, saturating, NaN to 0) without the libm call,
/// so the quantizer loop vectorizes.
#[inline(always)]
pub fn round_to_i8(v: f32) -> i8 {
    // Anything beyond +-129 saturates anyway; the clamp keeps `t` and `f` exact (NaN stays NaN).
    let v = v.clamp(-129.0, 129.0);
    let t = v as i32; // toward zero; NaN -> 0
    let f = v - t as f32; // exact for |v| < 2^23
    let r = if f >= 0.5 {
        t + 1
    } else if f <= -0.5 {
        t - 1
    } else {
        t
    };
    r.clamp(-128, 127) as i8
}

/// Reference matrix-matrix product for the output columns `out.cols()` (weights `w` hold just
/// those rows): `out[t][r] = sum_b dot(w[r*kb + b], x[t*kb + b]) * d_w * d_x`, summed in block
/// order like [`matvec_q8_0`].
pub(crate) fn matmul_rows(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
    n: usize,
    out: &mut super::OutMat<'_>,
) {
    if kb == 0 {
        return;
    }
    for (t, xt) in x.chunks_exact(kb).take(n).enumerate() {
        for (r, row) in w.chunks_exact(kb).enumerate() {
            out.put(t, r, dot_row(row, xt));
        }
    }
}

/// One output: the block-ordered f32 sum of scaled integer block dots.
#[inline]
fn dot_row(row: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (wb, xb) in row.iter().zip(x) {
        let d = half::f16::from_bits(wb.d).to_f32() * half::f16::from_bits(xb.d).to_f32();
        sum += dot_block(wb, xb) as f32 * d;
    }
    sum
}
