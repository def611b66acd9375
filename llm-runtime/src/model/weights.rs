//! Weights as views into the model bytes: [`Matrix`] (any supported tensor type, in place),
//! one block's [`LayerWeights`], the [`GlobalWeights`] around the blocks, and [`Weights`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{Config, ModelError};
use crate::gguf::{Gguf, TensorInfo, TensorType, ViewError};
use crate::kernels::quants::{self, QK_K};
use crate::kernels::{BlockQ8_0, QK8_0, QWeights};

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
    pub(super) fn row_f32(&self, r: usize, out: &mut [f32]) {
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

    /// Rows `start..start + n` as a matrix of their own, in place (a part of a fused tensor).
    pub fn row_range(&self, start: usize, n: usize) -> Result<Matrix<'a>, ModelError> {
        let bad = ModelError::MatrixLength {
            rows: n,
            cols: self.cols,
            len: self.rows,
        };
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.rows)
            .ok_or(bad.clone())?;
        let c = self.cols;
        let data = match self.data {
            MatData::F32(d) => d.get(start * c..end * c).map(MatData::F32),
            MatData::F16(d) => d.get(start * c..end * c).map(MatData::F16),
            MatData::Q8_0(d) => {
                let kb = c / QK8_0;
                d.get(start * kb..end * kb).map(MatData::Q8_0)
            }
            MatData::Quant(q) => {
                let kb = c / quant_block(q);
                let r = start * kb..end * kb;
                match q {
                    QWeights::Q4_0(b) => b.get(r).map(QWeights::Q4_0),
                    QWeights::Q4K(b) => b.get(r).map(QWeights::Q4K),
                    QWeights::Q5K(b) => b.get(r).map(QWeights::Q5K),
                    QWeights::Q6K(b) => b.get(r).map(QWeights::Q6K),
                }
                .map(MatData::Quant)
            }
        };
        Matrix::new(n, c, data.ok_or(bad)?)
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
    /// `[n_heads * head_dim, dim]`, rows permuted for pairwise RoPE (as in GGUF). For a fused
    /// `attn_qkv` (phi3), a view of its first rows.
    pub wq: Matrix<'a>,
    /// `[n_kv_heads * head_dim, dim]`, rows permuted likewise (fused: the next rows).
    pub wk: Matrix<'a>,
    /// `[n_kv_heads * head_dim, dim]` (fused: the last rows).
    pub wv: Matrix<'a>,
    /// `[dim, n_heads * head_dim]`
    pub wo: Matrix<'a>,
    /// `[dim]`
    pub ffn_norm: &'a [f32],
    /// `[hidden_dim, dim]` (phi3: the first half of the fused `ffn_up`).
    pub w_gate: Matrix<'a>,
    /// `[hidden_dim, dim]` (phi3: the second half of the fused `ffn_up`).
    pub w_up: Matrix<'a>,
    /// `[dim, hidden_dim]`
    pub w_down: Matrix<'a>,
    /// Q/K/V biases `[q_dim]`, `[kv_dim]`, `[kv_dim]` (Qwen2; `None` elsewhere).
    pub bq: Option<&'a [f32]>,
    pub bk: Option<&'a [f32]>,
    pub bv: Option<&'a [f32]>,
    /// Per-head Q and K RMSNorm weights `[head_dim]` (Qwen3, Gemma 3; `None` elsewhere).
    pub q_norm: Option<&'a [f32]>,
    pub k_norm: Option<&'a [f32]>,
    /// RMSNorm weights `[dim]` of the attention output and of the feed-forward output, before
    /// each residual add (Gemma; `None` elsewhere).
    pub attn_post_norm: Option<&'a [f32]>,
    pub ffn_post_norm: Option<&'a [f32]>,
}

impl<'a> LayerWeights<'a> {
    /// Layer `l`'s tensors (`blk.{l}.*`) from a GGUF file, shapes checked against `cfg`. The
    /// file may hold just this layer (a streamed chunk) or the whole model.
    pub fn from_gguf(g: &Gguf<'a>, cfg: &Config, l: usize) -> Result<Self, ModelError> {
        let (d, q, kv, h) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.hidden_dim);
        let name_of = |name: &str| format!("blk.{l}.{name}.weight");
        let m = |name: &str, rows, cols| {
            let name = name_of(name);
            let t = g.tensor(&name).ok_or(ModelError::MissingTensor(name))?;
            Matrix::from_tensor(t, rows, cols)
        };
        let vec = |name: String, n: usize| {
            let t = g.tensor(&name).ok_or(ModelError::MissingTensor(name))?;
            norm_vector(t, n)
        };
        let v = |name: &str| vec(name_of(name), d);
        let bias = |name: &str, n| {
            cfg.arch
                .qkv_bias()
                .then(|| vec(format!("blk.{l}.{name}.bias"), n))
                .transpose()
        };
        let head_norm = |name: &str| {
            cfg.arch
                .qk_norm()
                .then(|| vec(name_of(name), cfg.head_dim))
                .transpose()
        };
        let post_norm = |name: &str| cfg.arch.post_norms().then(|| v(name)).transpose();
        let fused = cfg.arch.fused_projections();
        // phi3: one `attn_qkv` (Q rows, then K, then V) or, as llama.cpp also accepts, three.
        let (wq, wk, wv) = match g.tensor(&name_of("attn_qkv")) {
            Some(t) if fused => {
                let all = Matrix::from_tensor(t, q + 2 * kv, d)?;
                let (k_at, v_at) = if cfg.quirks.fused_qvk {
                    (q + kv, q)
                } else {
                    (q, q + kv)
                };
                (
                    all.row_range(0, q)?,
                    all.row_range(k_at, kv)?,
                    all.row_range(v_at, kv)?,
                )
            }
            Some(_) => return Err(ModelError::Unsupported("blk.N.attn_qkv.weight")),
            None => (m("attn_q", q, d)?, m("attn_k", kv, d)?, m("attn_v", kv, d)?),
        };
        // phi3: `ffn_up` holds gate rows then up rows, and there is no `ffn_gate`.
        let (w_gate, w_up) = match g.tensor(&name_of("ffn_gate")) {
            Some(_) => (m("ffn_gate", h, d)?, m("ffn_up", h, d)?),
            None if fused => {
                let both = m("ffn_up", 2 * h, d)?;
                (both.row_range(0, h)?, both.row_range(h, h)?)
            }
            None => return Err(ModelError::MissingTensor(name_of("ffn_gate"))),
        };
        Ok(LayerWeights {
            attn_norm: v("attn_norm")?,
            wq,
            wk,
            wv,
            wo: m("attn_output", d, q)?,
            ffn_norm: v("ffn_norm")?,
            w_gate,
            w_up,
            w_down: m("ffn_down", d, h)?,
            bq: bias("attn_q", q)?,
            bk: bias("attn_k", kv)?,
            bv: bias("attn_v", kv)?,
            q_norm: head_norm("attn_q_norm")?,
            k_norm: head_norm("attn_k_norm")?,
            attn_post_norm: post_norm("post_attention_norm")?,
            ffn_post_norm: post_norm("post_ffw_norm")?,
        })
    }

    /// Checks these weights fit `cfg` (for weights built by hand or streamed in).
    pub fn check(&self, cfg: &Config) -> Result<(), ModelError> {
        let (d, q, kv, h) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.hidden_dim);
        if self.attn_norm.len() != d || self.ffn_norm.len() != d {
            return Err(ModelError::WeightsMismatch {
                what: "norm length",
            });
        }
        self.wq.check(q, d, "attn_q")?;
        self.wk.check(kv, d, "attn_k")?;
        self.wv.check(kv, d, "attn_v")?;
        self.wo.check(d, q, "attn_output")?;
        self.w_gate.check(h, d, "ffn_gate")?;
        self.w_up.check(h, d, "ffn_up")?;
        self.w_down.check(d, h, "ffn_down")?;
        let fits = |v: Option<&[f32]>, want: bool, n: usize| match v {
            Some(v) => want && v.len() == n,
            None => !want,
        };
        let (bias, norm, post) = (
            cfg.arch.qkv_bias(),
            cfg.arch.qk_norm(),
            cfg.arch.post_norms(),
        );
        if !(fits(self.bq, bias, q) && fits(self.bk, bias, kv) && fits(self.bv, bias, kv)) {
            return Err(ModelError::WeightsMismatch { what: "qkv bias" });
        }
        if !(fits(self.q_norm, norm, cfg.head_dim) && fits(self.k_norm, norm, cfg.head_dim)) {
            return Err(ModelError::WeightsMismatch { what: "q/k norm" });
        }
        if !(fits(self.attn_post_norm, post, d) && fits(self.ffn_post_norm, post, d)) {
            return Err(ModelError::WeightsMismatch { what: "post norms" });
        }
        Ok(())
    }

    /// Bytes of weight data in this layer (a fused tensor's views counted once each, which
    /// adds up to the tensor).
    pub fn bytes(&self) -> usize {
        let small = [
            self.bq,
            self.bk,
            self.bv,
            self.q_norm,
            self.k_norm,
            self.attn_post_norm,
            self.ffn_post_norm,
        ];
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
