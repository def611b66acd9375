//! Q8_0 x Q8_0 kernels.
//!
//! The layout is ggml's: a [`BlockQ8_0`] is an fp16 scale `d` followed by 32 int8 values, 34
//! bytes, so GGUF Q8_0 tensor data is used in place. Activations are quantized per 32-block
//! before every product, as llama.cpp does (llm-facts.md sec. 1.2), and each block's int32 dot
//! product is scaled once by `d_w * d_x` and accumulated in f32.

pub mod scalar;

/// Values per Q8_0 block.
pub const QK8_0: usize = 32;

/// ggml's `block_q8_0`: fp16 scale (IEEE half bits) + 32 int8.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// Scale as IEEE fp16 bits.
    pub d: u16,
    pub qs: [i8; QK8_0],
}

const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(core::mem::align_of::<BlockQ8_0>() == 2);

impl BlockQ8_0 {
    pub const ZERO: BlockQ8_0 = BlockQ8_0 {
        d: 0,
        qs: [0; QK8_0],
    };
}
