//! Matrix products with Q4_0 / Q4_K / Q5_K / Q6_K weights, used in place (row-major blocks,
//! exactly as in the GGUF tensor), against activations quantized per token (Q8_0 / Q8_K), on
//! the path [`Kernels`] selected: scalar, AVX2, AVX-512 VNNI, NEON or SDOT (also under
//! `smmla`). Every path gives the same integer block sums and the same f32 result
//! (`qdot` module doc).

use super::quants::{BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use super::{BlockQ8_0, KernelError, Kernels, OutMat, Path, qdot};

/// Weight blocks of one of the sub-8-bit formats.
#[derive(Clone, Copy, Debug)]
pub enum QWeights<'a> {
    Q4_0(&'a [BlockQ4_0]),
    Q4K(&'a [BlockQ4K]),
    Q5K(&'a [BlockQ5K]),
    Q6K(&'a [BlockQ6K]),
}

/// Quantized activations, token-major (`n x kb` blocks).
#[derive(Clone, Copy, Debug)]
pub enum QActs<'a> {
    Q8_0(&'a [BlockQ8_0]),
    Q8K(&'a [BlockQ8K]),
}

/// One weight block (for [`block_sums`]).
#[derive(Clone, Copy, Debug)]
pub enum QBlock<'a> {
    Q4_0(&'a BlockQ4_0),
    Q4K(&'a BlockQ4K),
    Q5K(&'a BlockQ5K),
    Q6K(&'a BlockQ6K),
}

/// One activation block (for [`block_sums`]).
#[derive(Clone, Copy, Debug)]
pub enum QActBlock<'a> {
    Q8_0(&'a BlockQ8_0),
    Q8K(&'a BlockQ8K),
}

impl QWeights<'_> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        match self {
            QWeights::Q4_0(b) => b.len(),
            QWeights::Q4K(b) => b.len(),
            QWeights::Q5K(b) => b.len(),
            QWeights::Q6K(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the activations must be Q8_K (else Q8_0).
    pub fn wants_q8_k(&self) -> bool {
        !matches!(self, QWeights::Q4_0(_))
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        match self {
            QWeights::Q4_0(b) => core::mem::size_of_val(*b),
            QWeights::Q4K(b) => core::mem::size_of_val(*b),
            QWeights::Q5K(b) => core::mem::size_of_val(*b),
            QWeights::Q6K(b) => core::mem::size_of_val(*b),
        }
    }

    fn rows(&self, r: core::ops::Range<usize>, kb: usize) -> Self {
        let s = r.start * kb..r.end * kb;
        match *self {
            QWeights::Q4_0(b) => QWeights::Q4_0(&b[s]),
            QWeights::Q4K(b) => QWeights::Q4K(&b[s]),
            QWeights::Q5K(b) => QWeights::Q5K(&b[s]),
            QWeights::Q6K(b) => QWeights::Q6K(&b[s]),
        }
    }
}

impl QActs<'_> {
    pub fn len(&self) -> usize {
        match self {
            QActs::Q8_0(b) => b.len(),
            QActs::Q8K(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The quantized-weight kernel a [`Path`] maps to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QPath {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "aarch64")]
    Neon,
    #[cfg(target_arch = "aarch64")]
    Sdot,
}

fn qpath(p: Path) -> QPath {
    match p {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => QPath::Avx2,
        #[cfg(target_arch = "x86_64")]
        Path::Avx512Vnni => QPath::Vnni,
        #[cfg(target_arch = "aarch64")]
        Path::Neon => QPath::Neon,
        #[cfg(target_arch = "aarch64")]
        Path::Sdot | Path::Smmla => QPath::Sdot,
        _ => QPath::Scalar,
    }
}

/// One output: row `w` (`kb` blocks) against one token's activations `x` (`kb` blocks). The
/// caller guarantees the formats pair up (checked in [`Kernels::qmatmul`]) and that `p` was
/// selected by `Kernels` (so the CPU has its features).
#[inline]
fn row_dot(p: QPath, w: QWeights<'_>, x: QActs<'_>) -> f32 {
    use QActs as A;
    use QWeights as W;
    match (p, w, x) {
        #[cfg(target_arch = "x86_64")]
        (QPath::Avx2, w, x) => {
            use super::x86_q::avx2::*;
            // SAFETY: `QPath::Avx2` comes only from `Path::Avx2`, which `Kernels` selects only
            // after detecting AVX2, FMA and F16C.
            unsafe {
                match (w, x) {
                    (W::Q4_0(w), A::Q8_0(x)) => row_q4_0(w, x),
                    (W::Q4K(w), A::Q8K(x)) => row_q4_k(w, x),
                    (W::Q5K(w), A::Q8K(x)) => row_q5_k(w, x),
                    (W::Q6K(w), A::Q8K(x)) => row_q6_k(w, x),
                    _ => 0.0,
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        (QPath::Vnni, w, x) => {
            use super::x86_q::vnni::*;
            // SAFETY: `QPath::Vnni` comes only from `Path::Avx512Vnni`, which `Kernels` selects
            // only after detecting AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI.
            unsafe {
                match (w, x) {
                    (W::Q4_0(w), A::Q8_0(x)) => row_q4_0(w, x),
                    (W::Q4K(w), A::Q8K(x)) => row_q4_k(w, x),
                    (W::Q5K(w), A::Q8K(x)) => row_q5_k(w, x),
                    (W::Q6K(w), A::Q8K(x)) => row_q6_k(w, x),
                    _ => 0.0,
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        (QPath::Neon, w, x) => {
            use super::neon_q::*;
            // SAFETY: `QPath::Neon` comes only from `Path::Neon`, selected after detecting NEON.
            unsafe {
                match (w, x) {
                    (W::Q4_0(w), A::Q8_0(x)) => row_q4_0_neon(w, x),
                    (W::Q4K(w), A::Q8K(x)) => row_q4_k_neon(w, x),
                    (W::Q5K(w), A::Q8K(x)) => row_q5_k_neon(w, x),
                    (W::Q6K(w), A::Q8K(x)) => row_q6_k_neon(w, x),
                    _ => 0.0,
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        (QPath::Sdot, w, x) => {
            use super::neon_q::*;
            // SAFETY: `QPath::Sdot` comes only from `Path::Sdot`/`Smmla`, selected after
            // detecting NEON and dotprod.
            unsafe {
                match (w, x) {
                    (W::Q4_0(w), A::Q8_0(x)) => row_q4_0_sdot(w, x),
                    (W::Q4K(w), A::Q8K(x)) => row_q4_k_sdot(w, x),
                    (W::Q5K(w), A::Q8K(x)) => row_q5_k_sdot(w, x),
                    (W::Q6K(w), A::Q8K(x)) => row_q6_k_sdot(w, x),
                    _ => 0.0,
                }
            }
        }
        (_, W::Q4_0(w), A::Q8_0(x)) => qdot::row_q4_0(w, x),
        (_, W::Q4K(w), A::Q8K(x)) => qdot::row_q4_k(w, x),
        (_, W::Q5K(w), A::Q8K(x)) => qdot::row_q5_k(w, x),
        (_, W::Q6K(w), A::Q8K(x)) => qdot::row_q6_k(w, x),
        _ => 0.0,
    }
}

/// Four outputs at once where a path has a 4-row kernel (same results as four [`row_dot`]s).
#[inline]
fn rows4_dot(p: QPath, w: QWeights<'_>, kb: usize, x: QActs<'_>) -> Option<[f32; 4]> {
    match (p, w, x) {
        #[cfg(target_arch = "x86_64")]
        (QPath::Avx2 | QPath::Vnni, QWeights::Q4_0(w), QActs::Q8_0(x)) => {
            let r: [&[BlockQ4_0]; 4] = core::array::from_fn(|i| &w[i * kb..(i + 1) * kb]);
            // SAFETY: these paths come only from `Path::Avx2` / `Path::Avx512Vnni`, which
            // `Kernels` selects only after detecting their features.
            Some(unsafe {
                if p == QPath::Vnni {
                    super::x86_q::vnni::rows4_q4_0(r, x)
                } else {
                    super::x86_q::avx2::rows4_q4_0(r, x)
                }
            })
        }
        _ => {
            // Only x86 has 4-row kernels so far.
            let _ = kb;
            None
        }
    }
}

/// Rows (weight rows outer, so a row stays in L1 while every token passes over it) of the
/// output columns `out.cols()`; `w` holds just those rows.
fn rows(p: QPath, w: QWeights<'_>, kb: usize, x: QActs<'_>, n: usize, out: &mut OutMat<'_>) {
    let nrows = out.cols().len();
    let tok = |t: usize| match x {
        QActs::Q8_0(b) => QActs::Q8_0(&b[t * kb..(t + 1) * kb]),
        QActs::Q8K(b) => QActs::Q8K(&b[t * kb..(t + 1) * kb]),
    };
    let mut r = 0;
    while r + 4 <= nrows {
        let w4 = w.rows(r..r + 4, kb);
        if rows4_dot(p, w4, kb, tok(0)).is_none() {
            break;
        }
        for t in 0..n {
            if let Some(v) = rows4_dot(p, w4, kb, tok(t)) {
                for (i, v) in v.into_iter().enumerate() {
                    out.put(t, r + i, v);
                }
            }
        }
        r += 4;
    }
    for r in r..nrows {
        let wr = w.rows(r..r + 1, kb);
        for t in 0..n {
            out.put(t, r, row_dot(p, wr, tok(t)));
        }
    }
}

impl Kernels {
    /// `y[t*rows + r] = sum_b w[r*kb + b] . x[t*kb + b]` over `n` tokens, with
    /// `x.len() == n * kb`, `y.len() == n * rows`, `w.len() == rows * kb`; the matvec path when
    /// `n == 1`, else the matmul path. Q4_0 takes Q8_0 activations, the K-quants Q8_K.
    pub fn qmatmul(
        &self,
        w: QWeights<'_>,
        x: QActs<'_>,
        n: usize,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        if w.wants_q8_k() != matches!(x, QActs::Q8K(_)) {
            return Err(KernelError::ActivationType);
        }
        // n == 0 with empty x and y gives kb == 0 and returns below.
        let (kb, nrows) = super::shape_of(w.len(), x.len(), y.len(), n)?;
        if kb == 0 {
            y.fill(0.0);
            return Ok(());
        }
        let p = qpath(if n == 1 { self.matvec } else { self.matmul });
        let out = OutMat::new(y, nrows);
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            let chunks = super::RowChunks::new(nrows, pool.threads());
            let shared = super::SharedOut(out);
            pool.run(&|_| {
                while let Some(r) = chunks.next() {
                    // SAFETY: `RowChunks::next` hands out each (disjoint) range only once.
                    let mut part = unsafe { shared.claim(r) };
                    let r = part.cols();
                    rows(p, w.rows(r, kb), kb, x, n, &mut part);
                }
            });
            return Ok(());
        }
        let mut out = out;
        rows(p, w, kb, x, n, &mut out);
        Ok(())
    }
}

/// The integer sums `(s, m)` of one block pair on `path` (`m = 0` for types without mins), for
/// tests that hold every path to the scalar reference.
pub fn block_sums(path: Path, w: QBlock<'_>, x: QActBlock<'_>) -> Result<(i32, i32), KernelError> {
    use QActBlock as A;
    use QBlock as W;
    if !path.supported(super::CpuFeatures::detect(), path == Path::Smmla) {
        return Err(KernelError::Unsupported(path));
    }
    let p = qpath(path);
    let r = match (p, w, x) {
        #[cfg(target_arch = "x86_64")]
        (QPath::Avx2, w, x) => {
            use super::x86_q::avx2::*;
            // SAFETY: the path was just checked to be supported (AVX2, FMA, F16C detected).
            unsafe {
                match (w, x) {
                    (W::Q4_0(a), A::Q8_0(b)) => (isum_q4_0(a, b), 0),
                    (W::Q4K(a), A::Q8K(b)) => isum_q4_k(a, b),
                    (W::Q5K(a), A::Q8K(b)) => isum_q5_k(a, b),
                    (W::Q6K(a), A::Q8K(b)) => (isum_q6_k(a, b), 0),
                    _ => return Err(KernelError::ActivationType),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        (QPath::Vnni, w, x) => {
            use super::x86_q::vnni::*;
            // SAFETY: the path was just checked to be supported (the AVX-512 VNNI set).
            unsafe {
                match (w, x) {
                    (W::Q4_0(a), A::Q8_0(b)) => (isum_q4_0(a, b), 0),
                    (W::Q4K(a), A::Q8K(b)) => isum_q4_k(a, b),
                    (W::Q5K(a), A::Q8K(b)) => isum_q5_k(a, b),
                    (W::Q6K(a), A::Q8K(b)) => (isum_q6_k(a, b), 0),
                    _ => return Err(KernelError::ActivationType),
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        (QPath::Neon | QPath::Sdot, w, x) => {
            if matches!(w, W::Q4_0(_)) != matches!(x, A::Q8_0(_)) {
                return Err(KernelError::ActivationType);
            }
            // SAFETY: the path was just checked to be supported (NEON, and dotprod for Sdot).
            unsafe { super::neon_q::block_sums(p == QPath::Sdot, w, x) }
        }
        (_, W::Q4_0(a), A::Q8_0(b)) => (qdot::isum_q4_0(a, b), 0),
        (_, W::Q4K(a), A::Q8K(b)) => qdot::isum_q4_k(a, b),
        (_, W::Q5K(a), A::Q8K(b)) => qdot::isum_q5_k(a, b),
        (_, W::Q6K(a), A::Q8K(b)) => (qdot::isum_q6_k(a, b), 0),
        _ => return Err(KernelError::ActivationType),
    };
    Ok(r)
}
