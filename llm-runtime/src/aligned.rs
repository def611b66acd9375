//! [`AlignedBytes`]: a file's bytes in 8-byte-aligned storage. GGUF tensor views are taken in
//! place and need their element alignment (2 for Q8_0 blocks, 4 for f32), which a `Vec<u8>`
//! does not promise; every host-side loader (tests, examples, the SP's tests) goes through this.

use alloc::vec::Vec;

/// Bytes backed by `u64` words, so their start is 8-byte aligned.
#[derive(Clone, Debug, Default)]
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    /// A copy of `bytes` (zero-padded to whole words).
    pub fn new(bytes: &[u8]) -> Self {
        let words = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w)
            })
            .collect();
        Self {
            words,
            len: bytes.len(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds `len.div_ceil(8)` initialised u64s, so its first `len` bytes
        // are initialised and in bounds; u8 has no alignment or validity requirements, and the
        // slice borrows `self`.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The bytes for the rest of the process (the storage is leaked).
    pub fn leak(self) -> &'static [u8] {
        let words: &'static [u64] = Vec::leak(self.words);
        // SAFETY: as in `bytes`; the leaked storage lives for the rest of the process.
        unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_exact() {
        for n in [0usize, 1, 7, 8, 9, 35] {
            let src: Vec<u8> = (0..n as u8).collect();
            let a = AlignedBytes::new(&src);
            assert_eq!(a.bytes(), &src[..]);
            assert_eq!(a.bytes().as_ptr() as usize % 8, 0);
        }
    }
}
