//! Logit comparison shared by the oracle tests (`oracle.rs`, `oracle_quant.rs`,
//! `oracle_arch.rs`): one definition of max/mean |diff|, argmax agreement and the share of
//! positions that agree to rounding.

#[derive(Debug)]
pub struct Stats {
    pub max_abs: f32,
    pub mean_abs: f32,
    /// Fraction of positions with the same argmax (the first maximum wins a tie).
    pub argmax_agree: f32,
    /// Fraction of positions whose logits are all within the `exact` tolerance given to
    /// [`compare`].
    pub exact_rows: f32,
}

/// Compares `got` with `want`, both `positions x vocab` row-major; a non-finite logit counts
/// as an infinite difference.
pub fn compare(got: &[f32], want: &[f32], vocab: usize, exact: f32) -> Stats {
    assert_eq!(got.len(), want.len(), "logit counts differ");
    let mut max_abs = 0.0f32;
    let mut sum = 0.0f64;
    for (a, b) in got.iter().zip(want) {
        let d = if a.is_finite() {
            (a - b).abs()
        } else {
            f32::INFINITY
        };
        max_abs = max_abs.max(d);
        sum += f64::from(d);
    }
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv { (i, v) } else { (bi, bv) }
            })
            .0
    };
    let rows = got.len() / vocab;
    let pairs = || got.chunks_exact(vocab).zip(want.chunks_exact(vocab));
    let agree = pairs().filter(|(a, b)| argmax(a) == argmax(b)).count();
    let close = pairs()
        .filter(|(a, b)| a.iter().zip(*b).all(|(x, y)| (x - y).abs() <= exact))
        .count();
    Stats {
        max_abs,
        mean_abs: (sum / got.len() as f64) as f32,
        argmax_agree: agree as f32 / rows as f32,
        exact_rows: close as f32 / rows as f32,
    }
}
