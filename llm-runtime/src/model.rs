//! The decoder-only transformer: [`Config`] from the `{arch}.*` GGUF keys (`llama` with Llama
//! 3.x RoPE frequency factors, `qwen2`, `qwen3`, `gemma2`, `gemma3`, `phi3`; `model/arch.rs`
//! says what each changes), [`Weights`] as views into the GGUF bytes (F32, F16, Q8_0, Q4_0,
//! Q4_K, Q5_K or Q6_K matrices, mixed freely as in Q4_K_M files; norms F32; fused tensors as
//! row views), and [`Model`], which owns the run state (all buffers and the f32 KV cache, sized
//! at construction) and runs the forward pass in paper order: embedding (scaled by `sqrt(dim)`
//! for Gemma), RMSNorm, Q/K/V (+ biases, + per-head Q/K norms), RoPE (pairwise or halves, over
//! all or the first `rope_dim` dimensions of each head, with the layer's base), grouped-query
//! attention over the KV cache (causal, windowed in local layers, soft-capped scores), output
//! projection (+ post-norm) and residual, RMSNorm, gated feed-forward (SwiGLU or GeGLU, +
//! post-norm) and residual; final norm; output head (tied to the embedding when the file has
//! no `output.weight`; soft-capped for Gemma 2).
//!
//! Files: `config.rs` (hyperparameters), `arch.rs` (what each family changes, what is
//! refused), `weights.rs` (tensor views), `forward.rs` (run state and the pass),
//! `attention.rs` (attention over the KV cache), `ops.rs` (products, norms, RoPE,
//! activations).
//!
//! The pass can run one layer at a time ([`Model::forward_embed`], [`Model::forward_layer`],
//! [`Model::forward_head`]), so the secure pipeline can hand in a layer's weights just before
//! that layer runs. A batch of tokens (prefill) goes through the matrix-matrix kernels; a single
//! token (decode) through the matrix-vector ones. Nothing allocates after construction.
//!
//! Conventions that a GGUF runtime must follow (llm-facts.md sec. 1.4):
//! - A matrix tensor has `ne = [cols, rows]`: rows are output features.
//! - For `llama` the HF->GGUF converter permutes Q/K rows so that RoPE rotates adjacent pairs
//!   `(2i, 2i+1)` (ggml's NORM mode), not HF's `rotate_half` halves; the other families keep
//!   HF's rows and rotate halves (NEOX).
//! - Gemma's RMSNorm weights are stored as `1 + w` by the converter: used as they are.
//! - With `n_kv_heads < n_heads`, query head `h` uses KV head `h / (n_heads / n_kv_heads)`.
//! - Quantized products quantize the f32 activations first, as llama.cpp does: per 32-block to
//!   Q8_0 for Q8_0 and Q4_0 weights, per 256-block to Q8_K for the K-quants.

use alloc::string::String;
use core::fmt;

mod arch;
mod attention;
mod config;
mod fastexp;
mod forward;
mod ops;
mod weights;

pub use arch::{Activation, Arch};
pub use config::Config;
pub use forward::{MemoryReport, Model, ModelOptions};
pub use weights::{GlobalWeights, LayerWeights, MatData, Matrix, Weights};

use crate::gguf::{Gguf, ViewError};
use crate::kernels::KernelError;

/// Upper bounds on hyperparameters, so a hostile header cannot ask for absurd buffers.
pub mod limits {
    pub const MAX_DIM: usize = 1 << 16;
    pub const MAX_HIDDEN: usize = 1 << 18;
    pub const MAX_LAYERS: usize = 1 << 10;
    pub const MAX_HEADS: usize = 1 << 10;
    pub const MAX_HEAD_DIM: usize = 1 << 12;
    pub const MAX_VOCAB: usize = 1 << 21;
    pub const MAX_CONTEXT: usize = 1 << 20;
    pub const MAX_BATCH: usize = 1 << 12;
}

/// Everything that can go wrong loading or running a model.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelError {
    /// `general.architecture` is missing or not one of [`Arch`]'s.
    NotLlama,
    /// A required metadata key is absent.
    MissingKey(&'static str),
    /// A metadata key has the wrong value type.
    KeyType(&'static str),
    /// A hyperparameter is zero, too large, or inconsistent with another one.
    BadHyperParam { key: &'static str, value: u64 },
    /// A llama variant this runtime does not implement (named by the key or tensor that shows
    /// it), refused rather than run wrongly.
    Unsupported(&'static str),
    /// A required tensor is absent.
    MissingTensor(String),
    /// A tensor has the wrong shape.
    TensorShape {
        name: String,
        expected: [u64; 2],
        found: [u64; 4],
    },
    /// A tensor has a type the model cannot use there.
    TensorType { name: String, code: u32 },
    /// A tensor's bytes cannot be viewed as its type.
    View { name: String, err: ViewError },
    /// Matrix data of the wrong length for its shape (weights built by hand).
    MatrixLength {
        rows: usize,
        cols: usize,
        len: usize,
    },
    /// The weights handed in were built for another configuration.
    WeightsMismatch { what: &'static str },
    /// A kernel rejected its arguments (a bug if reached: shapes are checked before).
    Kernel(KernelError),
    /// A token id outside the vocabulary.
    TokenOutOfRange { token: u32, vocab: usize },
    /// The batch would run past the context window.
    ContextFull {
        pos: usize,
        n: usize,
        seq_len: usize,
    },
    /// A position beyond what the KV cache holds (`pos` must be <= the filled length).
    PositionGap { pos: usize, filled: usize },
    /// More tokens than the batch buffers were sized for, or none.
    BadBatch { n: usize, max: usize },
    /// Layer-at-a-time calls out of order.
    OutOfOrder { expected: Stage, got: Stage },
    /// Buffer allocation failed at construction.
    OutOfMemory { bytes: usize },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ModelError::*;
        match self {
            NotLlama => write!(
                f,
                "general.architecture is not llama, qwen2, qwen3, gemma2, gemma3 or phi3"
            ),
            MissingKey(k) => write!(f, "metadata key {k} missing"),
            KeyType(k) => write!(f, "metadata key {k} has the wrong type"),
            BadHyperParam { key, value } => write!(f, "{key} = {value} is invalid"),
            Unsupported(what) => write!(f, "unsupported model variant: {what}"),
            MissingTensor(n) => write!(f, "tensor {n} missing"),
            TensorShape {
                name,
                expected,
                found,
            } => write!(f, "tensor {name}: shape {found:?}, expected {expected:?}"),
            TensorType { name, code } => {
                write!(f, "tensor {name}: ggml type {code} unsupported here")
            }
            View { name, err } => write!(f, "tensor {name}: {err}"),
            MatrixLength { rows, cols, len } => {
                write!(f, "matrix {rows}x{cols}: data length {len} does not match")
            }
            WeightsMismatch { what } => write!(f, "weights do not match the model config: {what}"),
            Kernel(e) => write!(f, "kernel: {e}"),
            TokenOutOfRange { token, vocab } => write!(f, "token {token} outside vocab {vocab}"),
            ContextFull { pos, n, seq_len } => {
                write!(
                    f,
                    "{n} tokens at position {pos} exceed the context of {seq_len}"
                )
            }
            PositionGap { pos, filled } => {
                write!(f, "position {pos} is past the {filled} cached positions")
            }
            BadBatch { n, max } => write!(f, "batch of {n} tokens not in 1..={max}"),
            OutOfOrder { expected, got } => write!(f, "expected {expected:?}, got {got:?}"),
            OutOfMemory { bytes } => write!(f, "cannot allocate {bytes} bytes"),
        }
    }
}

impl From<KernelError> for ModelError {
    fn from(e: KernelError) -> Self {
        ModelError::Kernel(e)
    }
}

/// Where a layer-at-a-time pass is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for `forward_embed`.
    Embed,
    /// Waiting for `forward_layer(i)`.
    Layer(usize),
    /// Waiting for `forward_head`.
    Head,
}

/// How RoPE pairs dimensions. Only [`RopeStyle::Pairwise`] is right for GGUF files; the other
/// exists so tests can show the oracle catches the mistake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RopeStyle {
    /// ggml NORM mode: rotate `(2i, 2i+1)`.
    #[default]
    Pairwise,
    /// HF `rotate_half`: rotate `(i, i + d/2)` (wrong on GGUF's permuted Q/K rows).
    RotateHalf,
}

/// Which KV head a query head reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvHeadMap {
    /// `h / (n_heads / n_kv_heads)`: consecutive query heads share a KV head (right).
    #[default]
    Grouped,
    /// `h % n_kv_heads` (a classic GQA mistake).
    Interleaved,
}

/// Deliberate deviations from the model definition, for negative tests (the classic
/// mistakes the oracles must catch) and, with `gelu_f16`, for reproducing llama.cpp's
/// rounding. The default is the correct model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quirks {
    /// Rotate these pairs instead of the architecture's.
    pub rope: Option<RopeStyle>,
    pub kv_head_map: KvHeadMap,
    /// Use this RoPE base instead of the file's `{arch}.rope.freq_base`.
    pub rope_theta_override: Option<f32>,
    /// Ignore `rope_freqs.weight` (Llama 3.x run without its frequency rule).
    pub skip_rope_freqs: bool,
    /// Ignore the Q/K/V biases (Qwen2).
    pub skip_qkv_bias: bool,
    /// Skip the per-head Q/K RMSNorm (Qwen3, Gemma 3).
    pub skip_qk_norm: bool,
    /// Added to every RMSNorm weight: `-1` is HF Gemma's plain `w` where the file holds
    /// `1 + w`, `+1` adds the one a second time.
    pub norm_offset: f32,
    /// Leave the embeddings unscaled (Gemma's `sqrt(dim)`).
    pub skip_embed_scale: bool,
    /// No soft-cap on attention scores / on the final logits (Gemma 2).
    pub skip_attn_softcap: bool,
    pub skip_final_softcap: bool,
    /// Every layer attends globally (Gemma's sliding window ignored; RoPE unchanged).
    pub no_sliding_window: bool,
    /// Local layers rotate as the global ones do (Gemma 3's local base ignored).
    pub single_rope_base: bool,
    /// Skip the post-attention / post-feed-forward norms (Gemma).
    pub skip_post_norms: bool,
    /// SiLU instead of the architecture's activation (Gemma's GeGLU as SwiGLU).
    pub silu_activation: bool,
    /// Split a fused Q/K/V as Q, V, K (phi3: the wrong order).
    pub fused_qvk: bool,
    /// Rotate whole heads (phi3 partial rotary ignored).
    pub full_rotary: bool,
    /// Scale queries by this instead of `Config::attn_scale` (e.g. Gemma with
    /// `1/sqrt(dim / n_heads)` where its heads are wider).
    pub attn_scale_override: Option<f32>,
    /// GELU as llama.cpp's CPU backend computes it: input rounded to f16, looked up in an
    /// f16 table of `gelu(x)` (ggml `GGML_GELU_FP16`), 0 below -10 and `x` above 10. Not the
    /// model's definition, but what llama.cpp's logits were made with.
    pub gelu_f16: bool,
}

/// Loads config and weights from a parsed GGUF file in one step.
pub fn load<'a>(g: &Gguf<'a>) -> Result<(Config, Weights<'a>), ModelError> {
    let cfg = Config::from_gguf(g)?;
    let w = Weights::from_gguf(g, &cfg)?;
    Ok((cfg, w))
}
