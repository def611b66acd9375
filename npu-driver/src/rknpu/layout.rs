//! The RKNPU's native operand layouts for an int8 matmul, and the shape rules of this backend.
//!
//! The NPU does not read row-major matrices: an int8 matmul runs as a 1x1 convolution over an
//! `M x 1` image with `K` channels (mtx512/rk3588-npu `tests/matmul_int8.c` and the
//! `feature_data` / `weight_int8` helpers of `src/npu_matmul.c`; Mesa's input conversion in
//! `rkt_ml_subgraph_invoke` uses the same 16-channel atoms). The caller (the partition's CPU)
//! packs `X` and `W` and unpacks `Y` with the functions here; the layouts are facts from those
//! sources, the code is this crate's:
//!
//! - `X` (features, int8): channel planes of 16: byte `(k / 16) * M * 16 + m * 16 + k % 16`.
//! - `W` (kernels, int8): groups of 32 kernels; inside a group, 32-channel slices of
//!   32 kernels x 32 channels: byte `(n / 32) * 32 * K + (k / 32) * 1024 + (n % 32) * 32 + k % 32`.
//! - `Y` (int32 out): channel planes of 4: element `(n / 4) * M * 4 + m * 4 + n % 4`.
//!
//! So a range of 32-kernel groups is a contiguous slice of `W` and of `Y` planes: the unit
//! [`super::plan`] splits `N` by, across cores and tasks.
//!
//! # Shape rules ([`check`])
//! `M` is 1 or a multiple of 4, at most 1022 (the 10-bit feature-grains field holds `M + 1`);
//! `K` a multiple of 32, at most 32,768 (one kernel per CBUF bank); `N` a multiple of 32, at
//! most 8,192 (13-bit channel fields); `Y` dense. mtx512 ran `M <= 544`, `K`, `N <= 4096`
//! with `N` a multiple of 16; this backend asks `N % 32 == 0` so that no kernel group is
//! partial (how the hardware lays out a partial group is not known).

use crate::{GemmJob, JobError, Mode};

/// Channels per feature atom (int8).
pub const FEATURE_ATOM: usize = 16;
/// Kernels per weight group, and channels per weight slice.
pub const WEIGHT_GROUP: usize = 32;
/// int32 channels per output atom.
pub const OUTPUT_ATOM: usize = 4;
pub const MAX_M: u32 = 1022;
pub const MAX_K: u32 = 32 * 1024;
pub const MAX_N: u32 = 8192;

/// Checks `job` against the shape rules above (and the 32-bit IOVA space of the cores).
pub fn check(job: &GemmJob) -> Result<(), JobError> {
    if job.mode != Mode::I32 {
        return Err(JobError::BadMode);
    }
    job.sizes(32)?;
    let (m, n, k) = (job.m, job.n, job.k);
    if !(m == 1 || m.is_multiple_of(4))
        || !k.is_multiple_of(32)
        || !n.is_multiple_of(WEIGHT_GROUP as u32)
        || job.y_stride != 4 * n
    {
        return Err(JobError::BackendShape);
    }
    if m > MAX_M || k > MAX_K || n > MAX_N {
        return Err(JobError::TooLarge);
    }
    Ok(())
}

/// Byte offset of `X[m][k]` in the packed features.
pub fn feature_offset(m_rows: usize, m: usize, k: usize) -> usize {
    (k / FEATURE_ATOM) * m_rows * FEATURE_ATOM + m * FEATURE_ATOM + k % FEATURE_ATOM
}

/// Byte offset of `W[n][k]` in the packed weights (`k_len` = K).
pub fn weight_offset(k_len: usize, n: usize, k: usize) -> usize {
    (n / WEIGHT_GROUP) * WEIGHT_GROUP * k_len
        + (k / WEIGHT_GROUP) * WEIGHT_GROUP * WEIGHT_GROUP
        + (n % WEIGHT_GROUP) * WEIGHT_GROUP
        + k % WEIGHT_GROUP
}

/// Index (in int32 elements) of `Y[m][n]` in the packed output.
pub fn output_index(m_rows: usize, m: usize, n: usize) -> usize {
    (n / OUTPUT_ATOM) * m_rows * OUTPUT_ATOM + m * OUTPUT_ATOM + n % OUTPUT_ATOM
}

/// Packs row-major `x` (`m x k`) into `out` (`m * k` bytes). Shapes as [`check`].
pub fn pack_features(x: &[i8], m: usize, k: usize, out: &mut [u8]) {
    for (r, row) in x.chunks_exact(k).take(m).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[feature_offset(m, r, c)] = v as u8;
        }
    }
}

/// Packs row-major `w` (`n x k`) into `out` (`n * k` bytes).
pub fn pack_weights(w: &[i8], n: usize, k: usize, out: &mut [u8]) {
    for (r, row) in w.chunks_exact(k).take(n).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[weight_offset(k, r, c)] = v as u8;
        }
    }
}

/// Unpacks the NPU's output bytes (`m * n * 4`, little-endian int32) into row-major `y`.
pub fn unpack_output(raw: &[u8], m: usize, n: usize, y: &mut [i32]) {
    for r in 0..m {
        for c in 0..n {
            let i = 4 * output_index(m, r, c);
            y[r * n + c] = i32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        }
    }
}
