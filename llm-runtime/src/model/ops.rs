//! The arithmetic of the forward pass: activation quantization, matrix products over every
//! weight type, RMSNorm, RoPE, softmax and the activations.

use super::fastexp;
use super::{MatData, Matrix, ModelError, RopeStyle};
use crate::kernels::quants::{self, BlockQ8K, QK_K};
use crate::kernels::{BlockQ8_0, Kernels, QActs, QK8_0};

/// Quantizes `n` rows of `x` (`[n, cols]`) into `xq` if any of `ws` (which all take inputs of
/// width `cols`) is Q8_0: llama.cpp quantizes activations per 32-block before each Q8_0 product,
/// and products sharing an input can share the quantized copy.
pub(super) fn prepare(
    ws: &[&Matrix<'_>],
    x: &[f32],
    xq: &mut [BlockQ8_0],
    xk: &mut [BlockQ8K],
    n: usize,
) -> Result<(), ModelError> {
    let wants = |w: &&&Matrix<'_>, k: bool| match w.data() {
        MatData::Q8_0(_) => !k,
        MatData::Quant(q) => q.wants_q8_k() == k,
        _ => false,
    };
    let shape = |what| ModelError::WeightsMismatch { what };
    let Some(first) = ws.first() else {
        return Ok(());
    };
    let cols = first.cols();
    if ws.iter().any(|o| o.cols() != cols) {
        return Err(shape("input widths differ"));
    }
    let x = x.get(..n * cols).ok_or(shape("activation buffer"))?;
    if ws.iter().any(|w| wants(&w, false)) {
        let xq = xq
            .get_mut(..n * (cols / QK8_0))
            .ok_or(shape("quantized buffer"))?;
        quantize_activations(x, xq);
    }
    if ws.iter().any(|w| wants(&w, true)) {
        let xk = xk
            .get_mut(..n * (cols / QK_K))
            .ok_or(shape("quantized buffer"))?;
        quants::quantize_row_q8_k(x, xk)?;
    }
    Ok(())
}

/// Rounds half to even for |v| < 2^22 (here |v| <= 127 + rounding): adding and subtracting
/// 1.5 * 2^23 leaves no fraction bits, so the IEEE add rounds to nearest, ties to even. Same
/// result as `rintf`, without a call (Rust never reassociates float arithmetic).
#[inline(always)]
pub(super) fn round_half_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Quantizes activations to Q8_0 the way llama.cpp's SIMD `quantize_row_q8_0` (and the
/// repacked `ggml_quantize_mat_q8_0_4x8`) does on x86, where the oracle logits were made:
/// `d = amax / 127`, `q = x * (127 / amax)` rounded half to even. (Its NEON version multiplies
/// by `1 / d` instead, which can differ by one ulp and so by 1 in `q` near a tie; a
/// Q4_0 oracle on this random model showed such flips as logit differences of 0.1.) The reference quantizer (`Kernels::quantize`, gguf-py) rounds half away from zero; it
/// is right for weights, which are quantized offline by that reference, but at exact .5 ties
/// in activations it disagrees with the llama.cpp that produced the oracle logits, and such
/// ties do occur (a Q8_0 embedding row is an integer multiple of its scale).
/// `x.len()` must be `out.len() * 32` (callers slice both).
pub(super) fn quantize_activations(x: &[f32], out: &mut [BlockQ8_0]) {
    for (xs, blk) in x.chunks_exact(QK8_0).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        blk.d = half::f16::from_f32(d).to_bits();
        for (q, &v) in blk.qs.iter_mut().zip(xs) {
            *q = round_half_even_small(v * id) as i8;
        }
    }
}

/// `y[t, :] = W x[t, :]` for `n` rows of `x` (`[n, cols]`) into `y` (`[n, rows]`). For Q8_0
/// weights `xq` must hold `x` quantized by [`prepare`]; F32/F16 weights use `x` in f32.
pub(super) fn product(
    k: &Kernels,
    w: &Matrix<'_>,
    x: &[f32],
    xq: &[BlockQ8_0],
    xk: &[BlockQ8K],
    n: usize,
    y: &mut [f32],
) -> Result<(), ModelError> {
    let (rows, cols) = (w.rows(), w.cols());
    let shape = |what| ModelError::WeightsMismatch { what };
    let x = x.get(..n * cols).ok_or(shape("activation buffer"))?;
    let y = y.get_mut(..n * rows).ok_or(shape("output buffer"))?;
    match w.data() {
        MatData::Q8_0(wb) => {
            let xq = xq
                .get(..n * (cols / QK8_0))
                .ok_or(shape("quantized buffer"))?;
            if n == 1 {
                k.matvec(wb, xq, y)?;
            } else {
                k.matmul(wb, xq, n, y)?;
            }
        }
        MatData::Quant(q) => {
            let acts = if q.wants_q8_k() {
                QActs::Q8K(
                    xk.get(..n * (cols / QK_K))
                        .ok_or(shape("quantized buffer"))?,
                )
            } else {
                QActs::Q8_0(
                    xq.get(..n * (cols / QK8_0))
                        .ok_or(shape("quantized buffer"))?,
                )
            };
            k.qmatmul(q, acts, n, y)?;
        }
        MatData::F32(wf) => {
            for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
                for (o, wr) in yr.iter_mut().zip(wf.chunks_exact(cols)) {
                    *o = dot_f32(wr, xr);
                }
            }
        }
        MatData::F16(wh) => {
            for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
                for (o, wr) in yr.iter_mut().zip(wh.chunks_exact(cols)) {
                    *o = wr
                        .iter()
                        .zip(xr)
                        .map(|(&h, &v)| half::f16::from_bits(h).to_f32() * v)
                        .sum();
                }
            }
        }
    }
    Ok(())
}

/// f32 dot product with 8 partial sums (vectorizes; order differs from a plain loop only in
/// rounding).
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = x / rms(x) * (w + off)`; the mean square is summed in f64, as ggml does. `off` is
/// 0 except in negative tests (adding 0.0 leaves every weight bit-identical).
pub(super) fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32, off: f32) {
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = (ss / x.len().max(1) as f64) as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * (g + off);
    }
}

/// RMSNorm of `v` onto itself (per-head Q/K norms, Gemma's post norms).
pub(super) fn rmsnorm_in_place(v: &mut [f32], w: &[f32], eps: f32, off: f32) {
    let ss: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let scale = 1.0 / libm::sqrtf((ss / v.len().max(1) as f64) as f32 + eps);
    for (x, &g) in v.iter_mut().zip(w) {
        *x = *x * scale * (g + off);
    }
}

/// Rotates one head's vector by the angles whose cos/sin are given (one per pair).
pub(super) fn rope(v: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
        let (a, b) = match style {
            RopeStyle::Pairwise => (2 * i, 2 * i + 1),
            RopeStyle::RotateHalf => (i, i + half),
        };
        if let (Some(&x0), Some(&x1)) = (v.get(a), v.get(b)) {
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

pub(super) fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    // Exponentials first in a branch-free loop that vectorises, then the ordered sum.
    for v in x.iter_mut() {
        *v = fastexp::expf(*v - max);
    }
    for v in x.iter() {
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

pub(super) fn silu(x: f32) -> f32 {
    x / (1.0 + fastexp::expf(-x))
}

/// GELU, tanh approximation (HF `gelu_pytorch_tanh`, ggml `ggml_gelu_f32`):
/// `0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2)))`.
pub(super) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * x * (1.0 + A * x * x)))
}

/// [`gelu_tanh`] as llama.cpp's CPU backend evaluates it (`GGML_GELU_FP16`): 0 at or below
/// -10, `x` at or above 10, otherwise the input rounded to f16 and the result of its table of
/// f16 `gelu_tanh` values.
pub(super) fn gelu_tanh_f16(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let h = half::f16::from_f32(x).to_f32();
        half::f16::from_f32(gelu_tanh(h)).to_f32()
    }
}

/// `cap * tanh(x / cap)` (Gemma 2's attention and final-logit soft-capping).
#[inline]
pub(super) fn softcap(x: f32, cap: f32) -> f32 {
    cap * libm::tanhf(x / cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_rounding_is_half_to_even() {
        // amax = 127 gives d = 1 exactly: x = k + 0.5 is an exact tie.
        let mut x = [0.0f32; QK8_0];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = 1.5;
        x[3] = -2.5;
        x[4] = 2.6;
        let mut even = [BlockQ8_0::ZERO];
        quantize_activations(&x, &mut even);
        assert_eq!(&even[0].qs[..5], &[127, 0, 2, -2, 3]);
        let mut away = [BlockQ8_0::ZERO];
        crate::kernels::scalar::quantize_row_q8_0(&x, &mut away);
        assert_eq!(&away[0].qs[..5], &[127, 1, 2, -3, 3]);
        assert_eq!(even[0].d, away[0].d);
        // All zero: d = 0, q = 0.
        let mut z = [BlockQ8_0::ZERO];
        quantize_activations(&[0.0; QK8_0], &mut z);
        assert_eq!(z[0], BlockQ8_0::ZERO);
    }

    #[test]
    fn fast_rounding_matches_rintf() {
        let mut v = -140.0f32;
        while v <= 140.0 {
            for x in [v, v + 0.5, v - 0.5, v.next_up(), v.next_down()] {
                assert_eq!(round_half_even_small(x), libm::rintf(x), "{x}");
            }
            v += 0.25;
        }
        assert_eq!(round_half_even_small(-0.4), 0.0);
    }
}
