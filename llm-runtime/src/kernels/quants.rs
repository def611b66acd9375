//! ggml's 4-, 5- and 6-bit weight formats and the Q8_K activation format, byte for byte as
//! `ggml-common.h` lays them out (read in the llama-cpp-python 0.3.36 sdist), so GGUF tensor
//! data is used where it lies.
//!
//! | type | code | values / block | bytes | layout |
//! |---|---|---|---|---|
//! | [`BlockQ4_0`] | 2 | 32 | 18 | fp16 `d`; 16 bytes: value `j` is the low nibble of byte `j`, value `j + 16` the high nibble; `x = d * (q - 8)` |
//! | [`BlockQ4K`] | 12 | 256 | 144 | fp16 `d`, fp16 `dmin`; 12 bytes of 6-bit scale/min pairs for 8 sub-blocks of 32; 128 bytes of nibbles; `x = d*sc*q - dmin*m` |
//! | [`BlockQ5K`] | 13 | 256 | 176 | as Q4_K plus 32 bytes `qh` holding each value's fifth bit |
//! | [`BlockQ6K`] | 14 | 256 | 210 | 128 bytes low nibbles `ql`, 64 bytes high 2 bits `qh`, 16 int8 scales (one per 16 values), fp16 `d` last; `x = d * sc * (q - 32)` |
//! | [`BlockQ8K`] | 15 | 256 | 292 | f32 `d`, 256 int8, 16 int16 sums of each 16 values (`bsums`) |
//!
//! Activations are quantized as llama.cpp does before each product: to Q8_0 for Q4_0 weights
//! ([`super::BlockQ8_0`]), to Q8_K for the K-quants ([`quantize_row_q8_k`], which is ggml's
//! `quantize_row_q8_K_ref`, the one its x86 and generic CPU back-ends call).

use super::KernelError;

/// Values per K-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;
/// Values per Q4_0 block.
pub const QK4_0: usize = 32;

/// ggml's `block_q4_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// Scale, IEEE fp16 bits.
    pub d: u16,
    pub qs: [u8; QK4_0 / 2],
}

/// ggml's `block_q4_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4K {
    /// Super-block scale of the scales, fp16 bits.
    pub d: u16,
    /// Super-block scale of the mins, fp16 bits.
    pub dmin: u16,
    /// 8 six-bit scales and 8 six-bit mins, packed (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// ggml's `block_q5_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    /// Fifth bits: value `64c + l` (low nibble) uses bit `2c` of `qh[l]`, value `64c + 32 + l`
    /// bit `2c + 1`.
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// ggml's `block_q6_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    /// Scale, fp16 bits (last in the block).
    pub d: u16,
}

/// ggml's `block_q8_K` (activations only; never stored in files this runtime reads).
///
/// Invariant: `bsums[g]` is the sum of `qs[16g..16g + 16]`. The kernels rely on it (they take
/// the min and offset corrections from `bsums`, as llama.cpp does), so blocks are only made by
/// [`quantize_row_q8_k`] or [`BlockQ8K::from_parts`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    d: f32,
    qs: [i8; QK_K],
    bsums: [i16; QK_K / 16],
}

const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(core::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(core::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(core::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(core::mem::size_of::<BlockQ8K>() == 292);
const _: () = assert!(core::mem::align_of::<BlockQ4_0>() == 2);
const _: () = assert!(core::mem::align_of::<BlockQ4K>() == 2);
const _: () = assert!(core::mem::align_of::<BlockQ5K>() == 2);
const _: () = assert!(core::mem::align_of::<BlockQ6K>() == 2);

impl BlockQ8K {
    pub const ZERO: BlockQ8K = BlockQ8K {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };

    /// A block from its scale and values, with the sums computed.
    pub fn from_parts(d: f32, qs: [i8; QK_K]) -> BlockQ8K {
        let mut b = BlockQ8K {
            d,
            qs,
            bsums: [0; QK_K / 16],
        };
        b.fill_bsums();
        b
    }

    pub fn d(&self) -> f32 {
        self.d
    }

    pub fn qs(&self) -> &[i8; QK_K] {
        &self.qs
    }

    pub fn bsums(&self) -> &[i16; QK_K / 16] {
        &self.bsums
    }

    fn fill_bsums(&mut self) {
        for (s, g) in self.bsums.iter_mut().zip(self.qs.chunks_exact(16)) {
            // 16 * 128 fits in i16.
            *s = g.iter().map(|&q| i16::from(q)).sum();
        }
    }
}

/// A block type whose every bit pattern is valid, so bytes can be viewed as it.
///
/// # Safety
/// Implementors must be `repr(C)` structs of integers and integer arrays with no padding.
unsafe trait WeightBlock: Copy {}
// SAFETY: repr(C) u16 + [u8; 16], 18 bytes (asserted above), no padding.
unsafe impl WeightBlock for BlockQ4_0 {}
// SAFETY: repr(C) u16, u16, [u8; 12], [u8; 128], 144 bytes (asserted), no padding.
unsafe impl WeightBlock for BlockQ4K {}
// SAFETY: repr(C) u16, u16, [u8; 12], [u8; 32], [u8; 128], 176 bytes (asserted), no padding.
unsafe impl WeightBlock for BlockQ5K {}
// SAFETY: repr(C) [u8; 128], [u8; 64], [i8; 16], u16 at offset 208: 210 bytes (asserted), no
// padding.
unsafe impl WeightBlock for BlockQ6K {}

/// Views weight bytes as blocks of `T` in place.
fn view<T: WeightBlock>(bytes: &[u8]) -> Result<&[T], KernelError> {
    let size = core::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(KernelError::BytesNotWholeBlocks { len: bytes.len() });
    }
    if bytes.as_ptr().align_offset(core::mem::align_of::<T>()) != 0 {
        return Err(KernelError::BytesMisaligned);
    }
    // SAFETY: `T` accepts every bit pattern and has no padding (`WeightBlock`); the pointer is
    // aligned for `T` (checked); the slice covers exactly `len / size` whole values inside
    // `bytes` and borrows it for the same lifetime.
    Ok(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Q4_0 blocks of `bytes`, without copying.
pub fn blocks_q4_0(bytes: &[u8]) -> Result<&[BlockQ4_0], KernelError> {
    view(bytes)
}
/// Q4_K blocks of `bytes`, without copying.
pub fn blocks_q4_k(bytes: &[u8]) -> Result<&[BlockQ4K], KernelError> {
    view(bytes)
}
/// Q5_K blocks of `bytes`, without copying.
pub fn blocks_q5_k(bytes: &[u8]) -> Result<&[BlockQ5K], KernelError> {
    view(bytes)
}
/// Q6_K blocks of `bytes`, without copying.
pub fn blocks_q6_k(bytes: &[u8]) -> Result<&[BlockQ6K], KernelError> {
    view(bytes)
}

#[inline(always)]
pub(crate) fn h2f(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block: ggml's `get_scale_min_k4`.
/// Sub-blocks 0..3 keep their 6 bits in the low bits of bytes `j` (scale) and `j + 4` (min);
/// sub-blocks 4..7 keep their low 4 bits in the nibbles of byte `j + 4` and their top 2 bits in
/// the top bits of bytes `j - 4` (scale) and `j` (min).
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All 8 scales and 8 mins of a Q4_K/Q5_K block.
#[inline(always)]
pub fn scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = scale_min_k4(j, q);
    }
    (sc, m)
}

/// The unsigned 4-bit value `i` (0..256) of a Q4_K block.
#[inline(always)]
fn q4k_value(qs: &[u8; 128], i: usize) -> u8 {
    let (c, l) = (i / 64, i % 64);
    let b = qs[32 * c + l % 32];
    if l < 32 { b & 0xF } else { b >> 4 }
}

/// The unsigned 5-bit value `i` of a Q5_K block.
#[inline(always)]
fn q5k_value(b: &BlockQ5K, i: usize) -> u8 {
    let (c, l) = (i / 64, i % 64);
    let hi_bit = 2 * c + usize::from(l >= 32);
    q4k_value(&b.qs, i) | (((b.qh[l % 32] >> hi_bit) & 1) << 4)
}

/// The unsigned 6-bit value `i` of a Q6_K block (the signed value is this minus 32).
#[inline(always)]
fn q6k_value(b: &BlockQ6K, i: usize) -> u8 {
    let (n, r) = (i / 128, i % 128);
    let (quarter, l) = (r / 32, r % 32);
    let ql = b.ql[64 * n + l + 32 * (quarter & 1)];
    let low = if quarter < 2 { ql & 0xF } else { ql >> 4 };
    let high = (b.qh[32 * n + l] >> (2 * quarter)) & 3;
    low | (high << 4)
}

/// The 256 weights of a block as signed integers in value order (for the scalar reference and
/// the tests): Q4_0 `q - 8`, Q4_K/Q5_K `q`, Q6_K `q - 32`.
pub fn unpack_q4_0(b: &BlockQ4_0) -> [i8; QK4_0] {
    let mut o = [0i8; QK4_0];
    for j in 0..16 {
        o[j] = (b.qs[j] & 0xF) as i8 - 8;
        o[j + 16] = (b.qs[j] >> 4) as i8 - 8;
    }
    o
}

pub fn unpack_q4_k(b: &BlockQ4K) -> [i8; QK_K] {
    core::array::from_fn(|i| q4k_value(&b.qs, i) as i8)
}

pub fn unpack_q5_k(b: &BlockQ5K) -> [i8; QK_K] {
    core::array::from_fn(|i| q5k_value(b, i) as i8)
}

pub fn unpack_q6_k(b: &BlockQ6K) -> [i8; QK_K] {
    core::array::from_fn(|i| q6k_value(b, i) as i8 - 32)
}

/// Dequantization with ggml's float operations in ggml's order (`dequantize_row_*`), so an
/// embedding row read from a quantized table is bit-identical to llama.cpp's `get_rows`.
/// `out.len()` must be `blocks.len() * VALUES`; extra output is left untouched.
pub fn dequantize_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK4_0)) {
        let d = h2f(b.d);
        for (v, &q) in o.iter_mut().zip(unpack_q4_0(b).iter()) {
            *v = f32::from(q) * d;
        }
    }
}

pub fn dequantize_q4_k(blocks: &[BlockQ4K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let (d, min) = (h2f(b.d), h2f(b.dmin));
        for (j, o) in o.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
            for (l, v) in o.iter_mut().enumerate() {
                *v = d1 * f32::from(q4k_value(&b.qs, 32 * j + l)) - m1;
            }
        }
    }
}

pub fn dequantize_q5_k(blocks: &[BlockQ5K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let (d, min) = (h2f(b.d), h2f(b.dmin));
        for (j, o) in o.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
            for (l, v) in o.iter_mut().enumerate() {
                *v = d1 * f32::from(q5k_value(b, 32 * j + l)) - m1;
            }
        }
    }
}

pub fn dequantize_q6_k(blocks: &[BlockQ6K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = h2f(b.d);
        let q = unpack_q6_k(b);
        for (i, v) in o.iter_mut().enumerate() {
            *v = d * f32::from(b.scales[i / 16]) * f32::from(q[i]);
        }
    }
}

/// ggml's `nearest_int`: round half to even via the 1.5 * 2^23 trick (exact for |v| < 2^22).
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// Quantizes f32 activations to Q8_K exactly as ggml's `quantize_row_q8_K_ref`: per 256 values
/// the signed value `max` of largest magnitude (the first one on ties), `iscale = -127 / max`,
/// `q = min(127, nearest_int(iscale * x))`, `d = 1 / iscale` (so `d` is negative when `max` is
/// positive), and the 16-value sums. An all-zero block has `d = 0`. `x.len()` must be
/// `out.len() * 256`.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8K]) -> Result<(), KernelError> {
    if out.len().checked_mul(QK_K) != Some(x.len()) {
        return Err(KernelError::QuantizeShape {
            values: x.len(),
            blocks: out.len(),
        });
    }
    for (xs, blk) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *blk = BlockQ8K::ZERO;
            continue;
        }
        let iscale = -127.0f32 / max;
        for (q, &v) in blk.qs.iter_mut().zip(xs) {
            // |iscale * v| <= 127 (+ rounding), well inside nearest_int's range.
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        blk.fill_bsums();
        blk.d = 1.0 / iscale;
    }
    Ok(())
}
