//! The llama-family model: [`Config`] from the `{arch}.*` GGUF keys (`llama` with Llama 3.x
//! RoPE frequency factors, `qwen2`, `qwen3`; `model/arch.rs` says what each changes),
//! [`Weights`] as views into the GGUF bytes (F32, F16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K matrices,
//! mixed freely as in Q4_K_M files; norms F32), and [`Model`], which owns the run state (all
//! buffers and the f32 KV cache, sized at construction) and runs the forward pass in paper
//! order: RMSNorm, Q/K/V, pairwise RoPE, grouped-query attention over the KV cache, output
//! projection and residual, RMSNorm, SwiGLU feed-forward and residual; final norm; output head
//! (tied to the embedding when the file has no `output.weight`).
//!
//! The pass can run one layer at a time ([`Model::forward_embed`], [`Model::forward_layer`],
//! [`Model::forward_head`]), so the secure pipeline can hand in a layer's weights just before
//! that layer runs. A batch of tokens (prefill) goes through the matrix-matrix kernels; a single
//! token (decode) through the matrix-vector ones. Nothing allocates after construction.
//!
//! Conventions that a GGUF runtime must follow (llm-facts.md sec. 1.4):
//! - A matrix tensor has `ne = [cols, rows]`: rows are output features.
//! - The HF->GGUF converter permutes Q/K rows so that RoPE rotates adjacent pairs `(2i, 2i+1)`
//!   (ggml's NORM mode), not HF's `rotate_half` halves.
//! - With `n_kv_heads < n_heads`, query head `h` uses KV head `h / (n_heads / n_kv_heads)`.
//! - Quantized products quantize the f32 activations first, as llama.cpp does: per 32-block to
//!   Q8_0 for Q8_0 and Q4_0 weights, per 256-block to Q8_K for the K-quants.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

mod arch;
mod fastexp;

pub use arch::Arch;

use crate::gguf::{Gguf, TensorInfo, TensorType, ViewError};
use crate::kernels::quants::{self, BlockQ8K, QK_K};
use crate::kernels::{BlockQ8_0, KernelError, Kernels, QActs, QK8_0, QWeights};

/// Upper bounds on hyperparameters, so a hostile header cannot ask for absurd buffers.
pub mod limits {
    pub const MAX_DIM: usize = 1 << 16;
    pub const MAX_HIDDEN: usize = 1 << 18;
    pub const MAX_LAYERS: usize = 1 << 10;
    pub const MAX_HEADS: usize = 1 << 10;
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
            NotLlama => write!(f, "general.architecture is not llama, qwen2 or qwen3"),
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

/// Deliberate deviations, for negative tests only. The default is the correct model.
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
    /// Skip the per-head Q/K RMSNorm (Qwen3).
    pub skip_qk_norm: bool,
}

/// Hyperparameters (from the `{arch}.*` keys and the tensor shapes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub arch: Arch,
    /// Model width (`llama.embedding_length`).
    pub dim: usize,
    /// Feed-forward width (`llama.feed_forward_length`).
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// `dim / n_heads`.
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Training context (`llama.context_length`); the default KV-cache length.
    pub context_length: usize,
    /// Dimensions of each head that RoPE rotates (`llama.rope.dimension_count`).
    pub rope_dim: usize,
    pub rope_theta: f32,
    /// Which dimensions RoPE pairs (from the architecture).
    pub rope_style: RopeStyle,
    /// `rope_freqs.weight` divides the RoPE frequencies (Llama 3.x scaling).
    pub rope_freqs: bool,
    pub norm_eps: f32,
    /// No `output.weight`: the head reuses `token_embd.weight`.
    pub tied_output: bool,
    /// Test-only deviations; default = correct.
    pub quirks: Quirks,
}

impl Config {
    /// Reads and checks the llama hyperparameters of a GGUF file.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Config, ModelError> {
        let arch = Arch::from_gguf(g)?;
        let k = arch.keys();
        let dim = get_count(g, k.embedding_length, None, limits::MAX_DIM)?;
        let hidden_dim = get_count(g, k.feed_forward_length, None, limits::MAX_HIDDEN)?;
        let n_layers = get_count(g, k.block_count, None, limits::MAX_LAYERS)?;
        let n_heads = get_count(g, k.head_count, None, limits::MAX_HEADS)?;
        let n_kv_heads = get_count(g, k.head_count_kv, Some(n_heads), limits::MAX_HEADS)?;
        let context_length = get_count(g, k.context_length, None, limits::MAX_CONTEXT)?;
        let bad = |key, value: usize| ModelError::BadHyperParam {
            key,
            value: value as u64,
        };
        if dim % n_heads != 0 {
            return Err(bad(k.head_count, n_heads));
        }
        let head_dim = dim / n_heads;
        if n_kv_heads > n_heads || n_heads % n_kv_heads != 0 {
            return Err(bad(k.head_count_kv, n_kv_heads));
        }
        // A head width other than dim / n_heads (Qwen3 0.6B and larger) is not implemented.
        for key in [k.key_length, k.value_length] {
            match g.get(key).map(|v| v.as_u64()) {
                None => {}
                Some(None) => return Err(ModelError::KeyType(key)),
                Some(Some(v)) if v == head_dim as u64 => {}
                Some(Some(_)) => return Err(ModelError::Unsupported(key)),
            }
        }
        let rope_dim = get_count(g, k.rope_dim, Some(head_dim), head_dim)?;
        if rope_dim % 2 != 0 {
            return Err(bad(k.rope_dim, rope_dim));
        }
        let rope_theta = get_f32(g, k.freq_base, 10000.0)?;
        if !(rope_theta.is_finite() && rope_theta > 1.0) {
            return Err(ModelError::BadHyperParam {
                key: k.freq_base,
                value: rope_theta as u64,
            });
        }
        let norm_eps = get_f32(g, k.norm_eps, 1e-5)?;
        if !(norm_eps.is_finite() && norm_eps >= 0.0) {
            return Err(bad(k.norm_eps, 0));
        }
        arch.check_unsupported(g)?;
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let vocab_size = usize::try_from(embd.ne[1]).unwrap_or(usize::MAX);
        if vocab_size == 0 || vocab_size > limits::MAX_VOCAB {
            return Err(bad("vocab (token_embd.weight ne[1])", vocab_size));
        }
        if let Some(v) = g.get(k.vocab_size)
            && v.as_u64() != Some(vocab_size as u64)
        {
            return Err(bad(k.vocab_size, v.as_u64().unwrap_or(0) as usize));
        }
        Ok(Config {
            arch,
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            context_length,
            rope_dim,
            rope_theta,
            rope_style: arch.rope_style(),
            rope_freqs: g.tensor("rope_freqs.weight").is_some(),
            norm_eps,
            tied_output: g.tensor("output.weight").is_none(),
            quirks: Quirks::default(),
        })
    }

    /// Width of the K and V projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Bytes of f32 KV cache one token position takes (all layers, K and V).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim() * core::mem::size_of::<f32>()
    }

    /// Parameter count (embedding and head counted once if tied).
    pub fn n_params(&self) -> usize {
        let per_layer = 2 * self.dim
            + self.dim * self.dim * 2
            + 2 * self.dim * self.kv_dim()
            + 3 * self.dim * self.hidden_dim;
        let head = if self.tied_output {
            0
        } else {
            self.vocab_size * self.dim
        };
        self.vocab_size * self.dim + self.n_layers * per_layer + self.dim + head
    }

    /// The KV head query head `h` reads.
    fn kv_head(&self, h: usize) -> usize {
        match self.quirks.kv_head_map {
            KvHeadMap::Grouped => h / (self.n_heads / self.n_kv_heads),
            KvHeadMap::Interleaved => h % self.n_kv_heads,
        }
    }
}

fn get_count(
    g: &Gguf<'_>,
    key: &'static str,
    default: Option<usize>,
    max: usize,
) -> Result<usize, ModelError> {
    let v = match (g.get(key), default) {
        (Some(v), _) => v.as_u64().ok_or(ModelError::KeyType(key))?,
        (None, Some(d)) => d as u64,
        (None, None) => return Err(ModelError::MissingKey(key)),
    };
    if v == 0 || v > max as u64 {
        return Err(ModelError::BadHyperParam { key, value: v });
    }
    Ok(v as usize)
}

fn get_f32(g: &Gguf<'_>, key: &'static str, default: f32) -> Result<f32, ModelError> {
    match g.get(key) {
        Some(v) => v.as_f32().ok_or(ModelError::KeyType(key)),
        None => Ok(default),
    }
}

/// Matrix storage, borrowed from the model bytes.
#[derive(Clone, Copy, Debug)]
pub enum MatData<'a> {
    F32(&'a [f32]),
    /// IEEE fp16 bits.
    F16(&'a [u16]),
    Q8_0(&'a [BlockQ8_0]),
    /// Q4_0 / Q4_K / Q5_K / Q6_K blocks, in place.
    Quant(QWeights<'a>),
}

/// A `rows x cols` row-major weight matrix (GGUF `ne = [cols, rows]`).
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    rows: usize,
    cols: usize,
    data: MatData<'a>,
}

impl<'a> Matrix<'a> {
    /// Wraps matrix data, checking its length (and, for Q8_0, that rows are whole blocks).
    pub fn new(rows: usize, cols: usize, data: MatData<'a>) -> Result<Self, ModelError> {
        let len = match data {
            MatData::F32(d) => d.len(),
            MatData::F16(d) => d.len(),
            MatData::Q8_0(d) => d.len().saturating_mul(QK8_0),
            MatData::Quant(q) => q.len().saturating_mul(quant_block(q)),
        };
        let block = match data {
            MatData::Q8_0(_) => QK8_0,
            MatData::Quant(q) => quant_block(q),
            _ => 1,
        };
        let block_ok = cols.is_multiple_of(block);
        if !block_ok || rows.checked_mul(cols) != Some(len) {
            return Err(ModelError::MatrixLength { rows, cols, len });
        }
        Ok(Matrix { rows, cols, data })
    }

    /// A view of a GGUF tensor that must be `rows x cols` (`ne = [cols, rows, 1, 1]`).
    pub fn from_tensor(t: &TensorInfo<'a>, rows: usize, cols: usize) -> Result<Self, ModelError> {
        if t.ne != [cols as u64, rows as u64, 1, 1] {
            return Err(ModelError::TensorShape {
                name: t.name.into(),
                expected: [cols as u64, rows as u64],
                found: t.ne,
            });
        }
        let view = |err| ModelError::View {
            name: t.name.into(),
            err,
        };
        let data = match t.ty {
            TensorType::F32 => MatData::F32(t.as_f32().map_err(view)?),
            TensorType::F16 => MatData::F16(t.as_f16_bits().map_err(view)?),
            TensorType::Q8_0 => MatData::Q8_0(t.as_q8_0().map_err(view)?),
            TensorType::Other { code: 2, .. } => {
                MatData::Quant(QWeights::Q4_0(t.as_q4_0().map_err(view)?))
            }
            TensorType::Other { code: 12, .. } => {
                MatData::Quant(QWeights::Q4K(t.as_q4_k().map_err(view)?))
            }
            TensorType::Other { code: 13, .. } => {
                MatData::Quant(QWeights::Q5K(t.as_q5_k().map_err(view)?))
            }
            TensorType::Other { code: 14, .. } => {
                MatData::Quant(QWeights::Q6K(t.as_q6_k().map_err(view)?))
            }
            other => {
                return Err(ModelError::TensorType {
                    name: t.name.into(),
                    code: other.code(),
                });
            }
        };
        Matrix::new(rows, cols, data)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn data(&self) -> MatData<'a> {
        self.data
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        match self.data {
            MatData::F32(d) => core::mem::size_of_val(d),
            MatData::F16(d) => core::mem::size_of_val(d),
            MatData::Q8_0(d) => core::mem::size_of_val(d),
            MatData::Quant(q) => q.bytes(),
        }
    }

    /// Row `r` as f32 (dequantized), into `out` (`cols` long). `r < rows` is checked by the
    /// caller; out-of-range rows leave `out` untouched.
    fn row_f32(&self, r: usize, out: &mut [f32]) {
        let c = self.cols;
        match self.data {
            MatData::F32(d) => {
                if let Some(src) = d.get(r * c..(r + 1) * c) {
                    out.copy_from_slice(src);
                }
            }
            MatData::F16(d) => {
                if let Some(src) = d.get(r * c..(r + 1) * c) {
                    for (o, &h) in out.iter_mut().zip(src) {
                        *o = half::f16::from_bits(h).to_f32();
                    }
                }
            }
            MatData::Q8_0(d) => {
                let kb = c / QK8_0;
                if let Some(src) = d.get(r * kb..(r + 1) * kb) {
                    for (o, b) in out.chunks_exact_mut(QK8_0).zip(src) {
                        let s = half::f16::from_bits(b.d).to_f32();
                        for (v, &q) in o.iter_mut().zip(b.qs.iter()) {
                            *v = f32::from(q) * s;
                        }
                    }
                }
            }
            MatData::Quant(q) => {
                let kb = c / quant_block(q);
                let rows = r * kb..(r + 1) * kb;
                let Some(out) = out.get_mut(..c) else { return };
                match q {
                    QWeights::Q4_0(d) => d.get(rows).map(|b| quants::dequantize_q4_0(b, out)),
                    QWeights::Q4K(d) => d.get(rows).map(|b| quants::dequantize_q4_k(b, out)),
                    QWeights::Q5K(d) => d.get(rows).map(|b| quants::dequantize_q5_k(b, out)),
                    QWeights::Q6K(d) => d.get(rows).map(|b| quants::dequantize_q6_k(b, out)),
                };
            }
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &'static str) -> Result<(), ModelError> {
        if self.rows == rows && self.cols == cols {
            Ok(())
        } else {
            Err(ModelError::WeightsMismatch { what })
        }
    }
}

/// One transformer block's weights.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a> {
    /// `[dim]`
    pub attn_norm: &'a [f32],
    /// `[n_heads * head_dim, dim]`, rows permuted for pairwise RoPE (as in GGUF).
    pub wq: Matrix<'a>,
    /// `[n_kv_heads * head_dim, dim]`, rows permuted likewise.
    pub wk: Matrix<'a>,
    /// `[n_kv_heads * head_dim, dim]`
    pub wv: Matrix<'a>,
    /// `[dim, n_heads * head_dim]`
    pub wo: Matrix<'a>,
    /// `[dim]`
    pub ffn_norm: &'a [f32],
    /// `[hidden_dim, dim]`
    pub w_gate: Matrix<'a>,
    /// `[hidden_dim, dim]`
    pub w_up: Matrix<'a>,
    /// `[dim, hidden_dim]`
    pub w_down: Matrix<'a>,
    /// Q/K/V biases `[dim]`, `[kv_dim]`, `[kv_dim]` (Qwen2; `None` elsewhere).
    pub bq: Option<&'a [f32]>,
    pub bk: Option<&'a [f32]>,
    pub bv: Option<&'a [f32]>,
    /// Per-head Q and K RMSNorm weights `[head_dim]` (Qwen3; `None` elsewhere).
    pub q_norm: Option<&'a [f32]>,
    pub k_norm: Option<&'a [f32]>,
}

impl<'a> LayerWeights<'a> {
    /// Layer `l`'s tensors (`blk.{l}.*`) from a GGUF file, shapes checked against `cfg`. The
    /// file may hold just this layer (a streamed chunk) or the whole model.
    pub fn from_gguf(g: &Gguf<'a>, cfg: &Config, l: usize) -> Result<Self, ModelError> {
        let (d, kv, h) = (cfg.dim, cfg.kv_dim(), cfg.hidden_dim);
        let m = |name: &str, rows, cols| {
            let name = format!("blk.{l}.{name}.weight");
            let t = g.tensor(&name).ok_or(ModelError::MissingTensor(name))?;
            Matrix::from_tensor(t, rows, cols)
        };
        let vec = |name: String, n: usize| {
            let t = g.tensor(&name).ok_or(ModelError::MissingTensor(name))?;
            norm_vector(t, n)
        };
        let v = |name: &str| vec(format!("blk.{l}.{name}.weight"), d);
        let bias = |name: &str, n| {
            cfg.arch
                .qkv_bias()
                .then(|| vec(format!("blk.{l}.{name}.bias"), n))
                .transpose()
        };
        let head_norm = |name: &str| {
            cfg.arch
                .qk_norm()
                .then(|| vec(format!("blk.{l}.{name}.weight"), cfg.head_dim))
                .transpose()
        };
        Ok(LayerWeights {
            attn_norm: v("attn_norm")?,
            wq: m("attn_q", d, d)?,
            wk: m("attn_k", kv, d)?,
            wv: m("attn_v", kv, d)?,
            wo: m("attn_output", d, d)?,
            ffn_norm: v("ffn_norm")?,
            w_gate: m("ffn_gate", h, d)?,
            w_up: m("ffn_up", h, d)?,
            w_down: m("ffn_down", d, h)?,
            bq: bias("attn_q", d)?,
            bk: bias("attn_k", kv)?,
            bv: bias("attn_v", kv)?,
            q_norm: head_norm("attn_q_norm")?,
            k_norm: head_norm("attn_k_norm")?,
        })
    }

    /// Checks these weights fit `cfg` (for weights built by hand or streamed in).
    pub fn check(&self, cfg: &Config) -> Result<(), ModelError> {
        let (d, kv, h) = (cfg.dim, cfg.kv_dim(), cfg.hidden_dim);
        if self.attn_norm.len() != d || self.ffn_norm.len() != d {
            return Err(ModelError::WeightsMismatch {
                what: "norm length",
            });
        }
        self.wq.check(d, d, "attn_q")?;
        self.wk.check(kv, d, "attn_k")?;
        self.wv.check(kv, d, "attn_v")?;
        self.wo.check(d, d, "attn_output")?;
        self.w_gate.check(h, d, "ffn_gate")?;
        self.w_up.check(h, d, "ffn_up")?;
        self.w_down.check(d, h, "ffn_down")?;
        let fits = |v: Option<&[f32]>, want: bool, n: usize| match v {
            Some(v) => want && v.len() == n,
            None => !want,
        };
        let (bias, norm) = (cfg.arch.qkv_bias(), cfg.arch.qk_norm());
        if !(fits(self.bq, bias, d) && fits(self.bk, bias, kv) && fits(self.bv, bias, kv)) {
            return Err(ModelError::WeightsMismatch { what: "qkv bias" });
        }
        if !(fits(self.q_norm, norm, cfg.head_dim) && fits(self.k_norm, norm, cfg.head_dim)) {
            return Err(ModelError::WeightsMismatch { what: "q/k norm" });
        }
        Ok(())
    }

    /// Bytes of weight data in this layer.
    pub fn bytes(&self) -> usize {
        let small = [self.bq, self.bk, self.bv, self.q_norm, self.k_norm];
        (self.attn_norm.len() + self.ffn_norm.len()) * 4
            + small.iter().flatten().map(|v| v.len() * 4).sum::<usize>()
            + [
                &self.wq,
                &self.wk,
                &self.wv,
                &self.wo,
                &self.w_gate,
                &self.w_up,
                &self.w_down,
            ]
            .iter()
            .map(|m| m.bytes())
            .sum::<usize>()
    }
}

/// Weights outside the blocks: embedding, final norm, output head.
#[derive(Clone, Copy, Debug)]
pub struct GlobalWeights<'a> {
    /// `[vocab, dim]`
    pub token_embd: Matrix<'a>,
    /// `[dim]`
    pub output_norm: &'a [f32],
    /// `[vocab, dim]`; the embedding itself when tied.
    pub output: Matrix<'a>,
    /// Divisors of the RoPE frequencies `[rope_dim / 2]` (Llama 3.x `rope_freqs.weight`).
    pub rope_freqs: Option<&'a [f32]>,
}

impl<'a> GlobalWeights<'a> {
    pub fn from_gguf(g: &Gguf<'a>, cfg: &Config) -> Result<Self, ModelError> {
        let get = |name: &str| {
            g.tensor(name)
                .ok_or_else(|| ModelError::MissingTensor(name.into()))
        };
        let token_embd = Matrix::from_tensor(get("token_embd.weight")?, cfg.vocab_size, cfg.dim)?;
        let output = match g.tensor("output.weight") {
            Some(t) => Matrix::from_tensor(t, cfg.vocab_size, cfg.dim)?,
            None => token_embd,
        };
        let rope_freqs = match g.tensor("rope_freqs.weight") {
            Some(t) => Some(norm_vector(t, cfg.rope_dim / 2)?),
            None => None,
        };
        if let Some(f) = rope_freqs
            && !f.iter().all(|&x| x.is_finite() && x > 0.0)
        {
            return Err(ModelError::BadHyperParam {
                key: "rope_freqs.weight",
                value: 0,
            });
        }
        Ok(GlobalWeights {
            token_embd,
            output_norm: norm_vector(get("output_norm.weight")?, cfg.dim)?,
            output,
            rope_freqs,
        })
    }

    pub fn check(&self, cfg: &Config) -> Result<(), ModelError> {
        self.token_embd
            .check(cfg.vocab_size, cfg.dim, "token_embd")?;
        self.output.check(cfg.vocab_size, cfg.dim, "output")?;
        if self.output_norm.len() != cfg.dim {
            return Err(ModelError::WeightsMismatch {
                what: "output_norm length",
            });
        }
        if self.rope_freqs.map(<[f32]>::len) != cfg.rope_freqs.then_some(cfg.rope_dim / 2) {
            return Err(ModelError::WeightsMismatch { what: "rope_freqs" });
        }
        Ok(())
    }
}

fn norm_vector<'a>(t: &TensorInfo<'a>, dim: usize) -> Result<&'a [f32], ModelError> {
    if t.ne != [dim as u64, 1, 1, 1] {
        return Err(ModelError::TensorShape {
            name: t.name.into(),
            expected: [dim as u64, 1],
            found: t.ne,
        });
    }
    t.as_f32().map_err(|err| match err {
        ViewError::WrongType { found, .. } => ModelError::TensorType {
            name: t.name.into(),
            code: found,
        },
        err => ModelError::View {
            name: t.name.into(),
            err,
        },
    })
}

/// All weights of a model, as views into one GGUF file.
#[derive(Clone, Debug)]
pub struct Weights<'a> {
    pub global: GlobalWeights<'a>,
    pub layers: Vec<LayerWeights<'a>>,
}

impl<'a> Weights<'a> {
    pub fn from_gguf(g: &Gguf<'a>, cfg: &Config) -> Result<Self, ModelError> {
        let global = GlobalWeights::from_gguf(g, cfg)?;
        let layers = (0..cfg.n_layers)
            .map(|l| LayerWeights::from_gguf(g, cfg, l))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Weights { global, layers })
    }

    /// Bytes of weight data (the tied head counted once).
    pub fn bytes(&self) -> usize {
        let g = &self.global;
        let head = match (g.output.data, g.token_embd.data) {
            (MatData::Q8_0(a), MatData::Q8_0(b)) if core::ptr::eq(a, b) => 0,
            (MatData::F32(a), MatData::F32(b)) if core::ptr::eq(a, b) => 0,
            (MatData::F16(a), MatData::F16(b)) if core::ptr::eq(a, b) => 0,
            (MatData::Quant(a), MatData::Quant(b)) if same_quant(a, b) => 0,
            _ => g.output.bytes(),
        };
        g.token_embd.bytes()
            + head
            + g.output_norm.len() * 4
            + self.layers.iter().map(LayerWeights::bytes).sum::<usize>()
    }
}

/// Run-time sizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelOptions {
    /// KV-cache length in positions (at most the config's context length).
    pub seq_len: usize,
    /// Most tokens one prefill step takes (decode uses 1).
    pub max_batch: usize,
    /// Keep logits for every token of a batch (oracle tests), not just the last.
    pub all_logits: bool,
}

impl ModelOptions {
    /// Full context, batches of up to 64, last-token logits.
    pub fn for_config(cfg: &Config) -> Self {
        ModelOptions {
            seq_len: cfg.context_length,
            max_batch: 64,
            all_logits: false,
        }
    }
}

/// Memory the model needs, for sizing and reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    /// Weight bytes (the model file's tensor data).
    pub weights: usize,
    /// KV cache for `seq_len` positions.
    pub kv_cache: usize,
    pub kv_bytes_per_token: usize,
    /// Activation and logits buffers.
    pub activations: usize,
}

impl MemoryReport {
    /// Everything the forward pass touches: weights + KV cache + activations.
    pub fn peak(&self) -> usize {
        self.weights + self.kv_cache + self.activations
    }
}

/// Activation buffers and the KV cache, all sized at construction (llama2.c's `RunState`).
/// `B` = max batch, `S` = seq_len.
struct RunState {
    /// Residual stream `[B, dim]`.
    x: Vec<f32>,
    /// Normed input / scratch `[B, dim]`.
    xb: Vec<f32>,
    /// Attention output `[B, dim]`.
    xb2: Vec<f32>,
    /// Queries `[B, dim]`.
    q: Vec<f32>,
    /// Keys and values of the batch `[B, kv_dim]`.
    k: Vec<f32>,
    v: Vec<f32>,
    /// Feed-forward `[B, hidden_dim]`.
    hb: Vec<f32>,
    hb2: Vec<f32>,
    /// Attention scores of one head, per kernel thread `[threads, S]`.
    att: Vec<f32>,
    /// Quantized activations `[B, max(dim, hidden_dim) / 32]`.
    xq: Vec<BlockQ8_0>,
    /// Q8_K activations (for K-quant weights) `[B, max(dim, hidden_dim) / 256]`.
    xk: Vec<BlockQ8K>,
    /// `[B or 1, vocab]`.
    logits: Vec<f32>,
    /// `[n_layers, S, kv_dim]`.
    key_cache: Vec<f32>,
    value_cache: Vec<f32>,
    /// RoPE inverse frequencies `[rope_dim / 2]`.
    inv_freq: Vec<f32>,
    /// cos/sin of each batch position's angles `[B, rope_dim / 2]`, computed once per pass.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
}

fn buffer<T: Clone>(n: usize, v: T) -> Result<Vec<T>, ModelError> {
    let mut b = Vec::new();
    b.try_reserve_exact(n)
        .map_err(|_| ModelError::OutOfMemory {
            bytes: n.saturating_mul(core::mem::size_of::<T>()),
        })?;
    b.resize(n, v);
    Ok(b)
}

/// A llama model's run state and forward pass. Weights are passed into each call, so they can
/// live anywhere (one mapped file, or streamed in layer by layer).
pub struct Model {
    cfg: Config,
    opts: ModelOptions,
    kernels: Kernels,
    s: RunState,
    stage: Stage,
    /// Tokens and first position of the batch in flight.
    n: usize,
    pos0: usize,
    /// Positions `0..filled` of the KV cache are valid.
    filled: usize,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("cfg", &self.cfg)
            .field("opts", &self.opts)
            .field("kernels", &self.kernels)
            .field("stage", &self.stage)
            .field("filled", &self.filled)
            .finish()
    }
}

impl Model {
    /// Allocates every buffer the forward pass needs.
    pub fn new(cfg: Config, opts: ModelOptions, kernels: Kernels) -> Result<Model, ModelError> {
        if opts.seq_len == 0 || opts.seq_len > cfg.context_length.min(limits::MAX_CONTEXT) {
            return Err(ModelError::BadHyperParam {
                key: "seq_len",
                value: opts.seq_len as u64,
            });
        }
        if opts.max_batch == 0 || opts.max_batch > limits::MAX_BATCH {
            return Err(ModelError::BadBatch {
                n: opts.max_batch,
                max: limits::MAX_BATCH,
            });
        }
        let b = opts.max_batch;
        let kv = cfg.kv_dim();
        let big = |a: usize, c: usize| {
            a.checked_mul(c)
                .ok_or(ModelError::OutOfMemory { bytes: usize::MAX })
        };
        let cache = big(big(cfg.n_layers, opts.seq_len)?, kv)?;
        let logit_rows = if opts.all_logits { b } else { 1 };
        let theta = cfg.quirks.rope_theta_override.unwrap_or(cfg.rope_theta);
        let half = cfg.rope_dim / 2;
        let mut inv_freq = buffer(half, 0.0f32)?;
        for (i, f) in inv_freq.iter_mut().enumerate() {
            // As HF computes it: 1 / theta^(2i/d), in f32.
            *f = 1.0 / libm::powf(theta, (2 * i) as f32 / cfg.rope_dim as f32);
        }
        let s = RunState {
            x: buffer(big(b, cfg.dim)?, 0.0)?,
            xb: buffer(big(b, cfg.dim)?, 0.0)?,
            xb2: buffer(big(b, cfg.dim)?, 0.0)?,
            q: buffer(big(b, cfg.dim)?, 0.0)?,
            k: buffer(big(b, kv)?, 0.0)?,
            v: buffer(big(b, kv)?, 0.0)?,
            hb: buffer(big(b, cfg.hidden_dim)?, 0.0)?,
            hb2: buffer(big(b, cfg.hidden_dim)?, 0.0)?,
            // One row of scores per kernel thread (attention runs on all of them).
            att: buffer(big(opts.seq_len, kernels.threads())?, 0.0)?,
            xq: buffer(
                big(b, cfg.dim.max(cfg.hidden_dim).div_ceil(QK8_0))?,
                BlockQ8_0::ZERO,
            )?,
            xk: buffer(
                big(b, cfg.dim.max(cfg.hidden_dim).div_ceil(QK_K))?,
                BlockQ8K::ZERO,
            )?,
            logits: buffer(big(logit_rows, cfg.vocab_size)?, 0.0)?,
            key_cache: buffer(cache, 0.0)?,
            value_cache: buffer(cache, 0.0)?,
            inv_freq,
            rope_cos: buffer(big(b, half)?, 0.0)?,
            rope_sin: buffer(big(b, half)?, 0.0)?,
        };
        Ok(Model {
            cfg,
            opts,
            kernels,
            s,
            stage: Stage::Embed,
            n: 0,
            pos0: 0,
            filled: 0,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn options(&self) -> &ModelOptions {
        &self.opts
    }

    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Positions of the KV cache currently valid (the next decode position).
    pub fn position(&self) -> usize {
        self.filled
    }

    /// Forgets the KV cache (a new conversation).
    pub fn reset(&mut self) {
        self.filled = 0;
        self.stage = Stage::Embed;
    }

    /// Memory the model uses with weights of `weight_bytes`.
    pub fn memory_report(&self, weight_bytes: usize) -> MemoryReport {
        let s = &self.s;
        let f = core::mem::size_of::<f32>();
        let activations = (s.x.len()
            + s.xb.len()
            + s.xb2.len()
            + s.q.len()
            + s.k.len()
            + s.v.len()
            + s.hb.len()
            + s.hb2.len()
            + s.att.len()
            + s.logits.len()
            + s.inv_freq.len()
            + s.rope_cos.len()
            + s.rope_sin.len())
            * f
            + core::mem::size_of_val(s.xq.as_slice())
            + core::mem::size_of_val(s.xk.as_slice());
        MemoryReport {
            weights: weight_bytes,
            kv_cache: (s.key_cache.len() + s.value_cache.len()) * f,
            kv_bytes_per_token: self.cfg.kv_bytes_per_token(),
            activations,
        }
    }

    /// Step 1 of a pass: embeds `tokens` at positions `pos..pos + tokens.len()`.
    pub fn forward_embed(
        &mut self,
        g: &GlobalWeights<'_>,
        tokens: &[u32],
        pos: usize,
    ) -> Result<(), ModelError> {
        g.check(&self.cfg)?;
        let n = tokens.len();
        if n == 0 || n > self.opts.max_batch {
            return Err(ModelError::BadBatch {
                n,
                max: self.opts.max_batch,
            });
        }
        if pos > self.filled {
            return Err(ModelError::PositionGap {
                pos,
                filled: self.filled,
            });
        }
        if pos.checked_add(n).is_none_or(|end| end > self.opts.seq_len) {
            return Err(ModelError::ContextFull {
                pos,
                n,
                seq_len: self.opts.seq_len,
            });
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::TokenOutOfRange {
                token,
                vocab: self.cfg.vocab_size,
            });
        }
        let dim = self.cfg.dim;
        let s = &mut self.s;
        for (row, &t) in s.x.chunks_exact_mut(dim).zip(tokens) {
            g.token_embd.row_f32(t as usize, row);
        }
        // The rotation angles depend only on the position: once per pass, not per layer/head.
        let freqs = g.rope_freqs.filter(|_| !self.cfg.quirks.skip_rope_freqs);
        let half = s.inv_freq.len();
        if half > 0 {
            let rows = s
                .rope_cos
                .chunks_exact_mut(half)
                .zip(s.rope_sin.chunks_exact_mut(half));
            for (t, (cos, sin)) in rows.take(n).enumerate() {
                let p = (pos + t) as f32;
                for (i, ((c, sn), &f)) in cos
                    .iter_mut()
                    .zip(sin.iter_mut())
                    .zip(&s.inv_freq)
                    .enumerate()
                {
                    // llama.cpp divides each frequency by its factor (ggml_rope_ext's freq_factors).
                    let f = match freqs {
                        Some(d) => f / d[i],
                        None => f,
                    };
                    let angle = p * f;
                    *c = libm::cosf(angle);
                    *sn = libm::sinf(angle);
                }
            }
        }
        // Positions from `pos` on are about to be overwritten.
        self.filled = pos;
        self.n = n;
        self.pos0 = pos;
        self.stage = Stage::Layer(0);
        Ok(())
    }

    /// Step 2, once per layer in order: runs block `l` with its weights `w`.
    pub fn forward_layer(&mut self, l: usize, w: &LayerWeights<'_>) -> Result<(), ModelError> {
        if self.stage != Stage::Layer(l) {
            return Err(ModelError::OutOfOrder {
                expected: self.stage,
                got: Stage::Layer(l),
            });
        }
        w.check(&self.cfg)?;
        let cfg = self.cfg;
        let (n, pos0) = (self.n, self.pos0);
        let (dim, kv_dim, hd, hidden) = (cfg.dim, cfg.kv_dim(), cfg.head_dim, cfg.hidden_dim);
        let s = &mut self.s;
        let k = &self.kernels;

        // Attention.
        for (xb, x) in
            s.xb.chunks_exact_mut(dim)
                .zip(s.x.chunks_exact(dim))
                .take(n)
        {
            rmsnorm(xb, x, w.attn_norm, cfg.norm_eps);
        }
        prepare(&[&w.wq, &w.wk, &w.wv], &s.xb, &mut s.xq, &mut s.xk, n)?;
        product(k, &w.wq, &s.xb, &s.xq, &s.xk, n, &mut s.q)?;
        product(k, &w.wk, &s.xb, &s.xq, &s.xk, n, &mut s.k)?;
        product(k, &w.wv, &s.xb, &s.xq, &s.xk, n, &mut s.v)?;
        if !cfg.quirks.skip_qkv_bias {
            for (out, b, width) in [
                (&mut s.q, w.bq, dim),
                (&mut s.k, w.bk, kv_dim),
                (&mut s.v, w.bv, kv_dim),
            ] {
                if let Some(b) = b {
                    for row in out.chunks_exact_mut(width).take(n) {
                        row.iter_mut().zip(b).for_each(|(y, &b)| *y += b);
                    }
                }
            }
        }
        if !cfg.quirks.skip_qk_norm {
            for (out, norm, width) in [(&mut s.q, w.q_norm, dim), (&mut s.k, w.k_norm, kv_dim)] {
                if let Some(norm) = norm {
                    for head in out[..n * width].chunks_exact_mut(hd) {
                        rmsnorm_in_place(head, norm, cfg.norm_eps);
                    }
                }
            }
        }
        let style = cfg.quirks.rope.unwrap_or(cfg.rope_style);
        let half = s.inv_freq.len();
        for t in 0..n {
            let (cos, sin) = (
                &s.rope_cos[t * half..(t + 1) * half],
                &s.rope_sin[t * half..(t + 1) * half],
            );
            for head in s.q[t * dim..(t + 1) * dim].chunks_exact_mut(hd) {
                rope(head, cos, sin, style);
            }
            for head in s.k[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                rope(head, cos, sin, style);
            }
        }
        let layer_off = l * self.opts.seq_len * kv_dim;
        let dst = layer_off + pos0 * kv_dim;
        s.key_cache[dst..dst + n * kv_dim].copy_from_slice(&s.k[..n * kv_dim]);
        s.value_cache[dst..dst + n * kv_dim].copy_from_slice(&s.v[..n * kv_dim]);

        let scale = 1.0 / libm::sqrtf(hd as f32);
        let (q, key_cache, value_cache) = (&s.q, &s.key_cache, &s.value_cache);
        // One chunk of `xb2` per (token, head); spread over the kernel threads once there is
        // enough of it (prefill, or decode deep into the context) to outweigh the hand-off.
        let parallel = n > 1 || pos0 >= 256;
        k.for_each_chunk(
            parallel,
            &mut s.xb2[..n * dim],
            hd,
            &mut s.att,
            &|i, out, att| {
                let (t, h) = (i / cfg.n_heads, i % cfg.n_heads);
                let pos = pos0 + t;
                let kvh = cfg.kv_head(h);
                let q = &q[t * dim + h * hd..t * dim + (h + 1) * hd];
                let att = &mut att[..=pos];
                for (p, a) in att.iter_mut().enumerate() {
                    let o = layer_off + p * kv_dim + kvh * hd;
                    *a = dot_f32(q, &key_cache[o..o + hd]) * scale;
                }
                softmax(att);
                out.fill(0.0);
                for (p, &a) in att.iter().enumerate() {
                    let o = layer_off + p * kv_dim + kvh * hd;
                    for (y, &v) in out.iter_mut().zip(&value_cache[o..o + hd]) {
                        *y += a * v;
                    }
                }
            },
        );
        prepare(&[&w.wo], &s.xb2, &mut s.xq, &mut s.xk, n)?;
        product(k, &w.wo, &s.xb2, &s.xq, &s.xk, n, &mut s.xb)?;
        for (x, y) in s.x.iter_mut().zip(&s.xb).take(n * dim) {
            *x += *y;
        }

        // Feed-forward.
        for (xb, x) in
            s.xb.chunks_exact_mut(dim)
                .zip(s.x.chunks_exact(dim))
                .take(n)
        {
            rmsnorm(xb, x, w.ffn_norm, cfg.norm_eps);
        }
        prepare(&[&w.w_gate, &w.w_up], &s.xb, &mut s.xq, &mut s.xk, n)?;
        product(k, &w.w_gate, &s.xb, &s.xq, &s.xk, n, &mut s.hb)?;
        product(k, &w.w_up, &s.xb, &s.xq, &s.xk, n, &mut s.hb2)?;
        let up = &s.hb2;
        k.for_each_chunk(
            n > 1,
            &mut s.hb[..n * hidden],
            hidden,
            &mut [],
            &|t, gate, _| {
                for (g, u) in gate.iter_mut().zip(&up[t * hidden..]) {
                    *g = silu(*g) * *u;
                }
            },
        );
        prepare(&[&w.w_down], &s.hb, &mut s.xq, &mut s.xk, n)?;
        product(k, &w.w_down, &s.hb, &s.xq, &s.xk, n, &mut s.xb)?;
        for (x, y) in s.x.iter_mut().zip(&s.xb).take(n * dim) {
            *x += *y;
        }

        self.stage = if l + 1 == cfg.n_layers {
            Stage::Head
        } else {
            Stage::Layer(l + 1)
        };
        Ok(())
    }

    /// Step 3: final norm and output head. Returns the logits: `[n, vocab]` for the whole batch
    /// with `all_logits`, otherwise `[vocab]` for its last token.
    pub fn forward_head(&mut self, g: &GlobalWeights<'_>) -> Result<&[f32], ModelError> {
        if self.stage != Stage::Head {
            return Err(ModelError::OutOfOrder {
                expected: self.stage,
                got: Stage::Head,
            });
        }
        g.check(&self.cfg)?;
        let (dim, n, vocab) = (self.cfg.dim, self.n, self.cfg.vocab_size);
        let s = &mut self.s;
        let first = if self.opts.all_logits { 0 } else { n - 1 };
        let rows = n - first;
        for (xb, x) in
            s.xb.chunks_exact_mut(dim)
                .zip(s.x.chunks_exact(dim).skip(first))
                .take(rows)
        {
            rmsnorm(xb, x, g.output_norm, self.cfg.norm_eps);
        }
        prepare(&[&g.output], &s.xb, &mut s.xq, &mut s.xk, rows)?;
        product(
            &self.kernels,
            &g.output,
            &s.xb,
            &s.xq,
            &s.xk,
            rows,
            &mut s.logits,
        )?;
        self.filled = self.pos0 + n;
        self.stage = Stage::Embed;
        Ok(&self.s.logits[..rows * vocab])
    }

    /// One whole pass over `tokens` (at most `max_batch`) at `pos`, all layers from `w`.
    pub fn forward_batch(
        &mut self,
        w: &Weights<'_>,
        tokens: &[u32],
        pos: usize,
    ) -> Result<&[f32], ModelError> {
        if w.layers.len() != self.cfg.n_layers {
            return Err(ModelError::WeightsMismatch {
                what: "layer count",
            });
        }
        self.forward_embed(&w.global, tokens, pos)?;
        for (l, lw) in w.layers.iter().enumerate() {
            self.forward_layer(l, lw)?;
        }
        self.forward_head(&w.global)
    }

    /// Decodes one token at `pos`; returns its logits.
    pub fn forward(
        &mut self,
        w: &Weights<'_>,
        token: u32,
        pos: usize,
    ) -> Result<&[f32], ModelError> {
        self.forward_batch(w, &[token], pos)
    }

    /// Prefills `tokens` from `pos`, in chunks of `max_batch`; returns the logits of the last
    /// chunk (see [`Model::forward_head`]).
    pub fn prefill(
        &mut self,
        w: &Weights<'_>,
        tokens: &[u32],
        pos: usize,
    ) -> Result<&[f32], ModelError> {
        let max = self.opts.max_batch;
        if tokens.is_empty() {
            return Err(ModelError::BadBatch { n: 0, max });
        }
        let last = (tokens.len() - 1) / max * max;
        for start in (0..last).step_by(max) {
            self.forward_batch(w, &tokens[start..start + max], pos + start)?;
        }
        self.forward_batch(w, &tokens[last..], pos + last)
    }
}

/// Quantizes `n` rows of `x` (`[n, cols]`) into `xq` if any of `ws` (which all take inputs of
/// width `cols`) is Q8_0: llama.cpp quantizes activations per 32-block before each Q8_0 product,
/// and products sharing an input can share the quantized copy.
fn prepare(
    ws: &[&Matrix<'_>],
    x: &[f32],
    xq: &mut [BlockQ8_0],
    xk: &mut [BlockQ8K],
    n: usize,
) -> Result<(), ModelError> {
    let wants = |w: &&&Matrix<'_>, k: bool| match w.data {
        MatData::Q8_0(_) => !k,
        MatData::Quant(q) => q.wants_q8_k() == k,
        _ => false,
    };
    let shape = |what| ModelError::WeightsMismatch { what };
    let Some(first) = ws.first() else {
        return Ok(());
    };
    let cols = first.cols;
    if ws.iter().any(|o| o.cols != cols) {
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

/// Values per block of a sub-8-bit format.
fn quant_block(q: QWeights<'_>) -> usize {
    if q.wants_q8_k() { QK_K } else { QK8_0 }
}

/// Whether two quantized matrices are the same memory (a tied head).
fn same_quant(a: QWeights<'_>, b: QWeights<'_>) -> bool {
    match (a, b) {
        (QWeights::Q4_0(a), QWeights::Q4_0(b)) => core::ptr::eq(a, b),
        (QWeights::Q4K(a), QWeights::Q4K(b)) => core::ptr::eq(a, b),
        (QWeights::Q5K(a), QWeights::Q5K(b)) => core::ptr::eq(a, b),
        (QWeights::Q6K(a), QWeights::Q6K(b)) => core::ptr::eq(a, b),
        _ => false,
    }
}

/// Rounds half to even for |v| < 2^22 (here |v| <= 127 + rounding): adding and subtracting
/// 1.5 * 2^23 leaves no fraction bits, so the IEEE add rounds to nearest, ties to even. Same
/// result as `rintf`, without a call (Rust never reassociates float arithmetic).
#[inline(always)]
fn round_half_even_small(v: f32) -> f32 {
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
fn quantize_activations(x: &[f32], out: &mut [BlockQ8_0]) {
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
fn product(
    k: &Kernels,
    w: &Matrix<'_>,
    x: &[f32],
    xq: &[BlockQ8_0],
    xk: &[BlockQ8K],
    n: usize,
    y: &mut [f32],
) -> Result<(), ModelError> {
    let (rows, cols) = (w.rows, w.cols);
    let shape = |what| ModelError::WeightsMismatch { what };
    let x = x.get(..n * cols).ok_or(shape("activation buffer"))?;
    let y = y.get_mut(..n * rows).ok_or(shape("output buffer"))?;
    match w.data {
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
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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

/// `out = x / rms(x) * w`; the mean square is summed in f64, as ggml does.
fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = (ss / x.len().max(1) as f64) as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// RMSNorm of `v` onto itself (Qwen3's per-head Q/K norm).
fn rmsnorm_in_place(v: &mut [f32], w: &[f32], eps: f32) {
    let ss: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let scale = 1.0 / libm::sqrtf((ss / v.len().max(1) as f64) as f32 + eps);
    for (x, &g) in v.iter_mut().zip(w) {
        *x = *x * scale * g;
    }
}

/// Rotates one head's vector by the angles whose cos/sin are given (one per pair).
fn rope(v: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
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

fn softmax(x: &mut [f32]) {
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

fn silu(x: f32) -> f32 {
    x / (1.0 + fastexp::expf(-x))
}

/// Loads config and weights from a parsed GGUF file in one step.
pub fn load<'a>(g: &Gguf<'a>) -> Result<(Config, Weights<'a>), ModelError> {
    let cfg = Config::from_gguf(g)?;
    let w = Weights::from_gguf(g, &cfg)?;
    Ok((cfg, w))
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
