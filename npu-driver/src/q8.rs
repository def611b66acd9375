//! ggml `block_q8_0` arithmetic on raw bytes, in exactly `llm-runtime`'s scalar order (crate doc,
//! "Q8_0: bit-identical"). The testbed device model computes from its scratch buffer with these
//! functions; they take byte slices because that is what the DMA brought in.

/// Values per Q8_0 block.
pub const QK8_0: usize = 32;
/// Bytes per block: fp16 scale (little-endian) + 32 int8.
pub const BLOCK_BYTES: usize = 34;

/// IEEE 754 binary16 bits to f32. Exact (every half is representable as an f32); NaNs keep
/// their sign and payload (shifted into the f32 mantissa) and stay NaNs, as the `half` crate
/// converts them.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24. Normalise: shift until the implicit bit (bit 10)
            // is set; each shift lowers the exponent by one.
            let shift = man.leading_zeros() - 21; // man < 2^10: leading zeros >= 22
            let man = (man << shift) & 0x3ff;
            let exp = 127 - 15 + 1 - shift;
            sign | (exp << 23) | (man << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// The exact int32 dot product of two blocks' 32 int8 values (`a`, `b`: whole 34-byte
/// blocks; the scale bytes are skipped).
#[inline(always)]
pub fn block_isum(a: &[u8], b: &[u8]) -> i32 {
    let (qa, qb) = (&a[2..BLOCK_BYTES], &b[2..BLOCK_BYTES]);
    let mut s = 0i32;
    for j in 0..QK8_0 {
        s += i32::from(qa[j] as i8) * i32::from(qb[j] as i8);
    }
    s
}

#[inline(always)]
fn scale(block: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[0], block[1]]))
}

/// One output: `w` and `x` are rows of the same number of whole blocks. Blocks in order, one
/// f32 accumulator from 0: `acc = acc + (isum as f32) * (d_w * d_x)`.
#[inline]
pub fn dot_row(w: &[u8], x: &[u8]) -> f32 {
    let mut acc = 0.0f32;
    for (wb, xb) in w.chunks_exact(BLOCK_BYTES).zip(x.chunks_exact(BLOCK_BYTES)) {
        let d = scale(wb) * scale(xb);
        acc += block_isum(wb, xb) as f32 * d;
    }
    acc
}

/// Plain int8 dot product (wrapping, though `K` within the testbed's limit cannot overflow).
#[inline]
pub fn dot_i8(w: &[u8], x: &[u8]) -> i32 {
    let mut s = 0i32;
    for (&a, &b) in w.iter().zip(x) {
        s = s.wrapping_add(i32::from(a as i8) * i32::from(b as i8));
    }
    s
}
