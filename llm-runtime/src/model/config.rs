//! [`Config`]: the hyperparameters of a model, from the `{arch}.*` GGUF keys and the tensor
//! shapes, checked against [`limits`].

use super::{Arch, KvHeadMap, ModelError, Quirks, RopeStyle, limits};
use crate::gguf::{Gguf, Value};

/// Hyperparameters (from the `{arch}.*` keys and the tensor shapes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub arch: Arch,
    /// Model width (`{arch}.embedding_length`).
    pub dim: usize,
    /// Feed-forward width (`{arch}.feed_forward_length`).
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Width of each query, key and value head: `{arch}.attention.key_length` (=
    /// `value_length`), `dim / n_heads` when absent.
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Training context (`{arch}.context_length`); the default KV-cache length.
    pub context_length: usize,
    /// Dimensions of each head that RoPE rotates (`{arch}.rope.dimension_count`; fewer than
    /// `head_dim` is partial rotary: the rest pass through).
    pub rope_dim: usize,
    /// RoPE base of the global layers (`{arch}.rope.freq_base`).
    pub rope_theta: f32,
    /// RoPE base of the sliding-window layers (`{arch}.rope.freq_base_swa`; Gemma 3: 10000
    /// when absent, Gemma 2: `rope_theta`).
    pub rope_theta_swa: f32,
    /// Linear RoPE scaling of the global layers: positions are multiplied by this
    /// (`1 / {arch}.rope.scaling.factor`; Gemma 3 4B and larger). 1 elsewhere.
    pub rope_scale: f32,
    /// Which dimensions RoPE pairs (from the architecture).
    pub rope_style: RopeStyle,
    /// `rope_freqs.weight` divides the RoPE frequencies (Llama 3.x scaling).
    pub rope_freqs: bool,
    pub norm_eps: f32,
    /// No `output.weight`: the head reuses `token_embd.weight`.
    pub tied_output: bool,
    /// Queries are multiplied by this before `q . k` (`1/sqrt(head_dim)`; see `arch.rs`).
    pub attn_scale: f32,
    /// `cap * tanh(score / cap)` on attention scores (`{arch}.attn_logit_softcapping`, Gemma 2).
    pub attn_softcap: Option<f32>,
    /// `cap * tanh(logit / cap)` on the output logits (`{arch}.final_logit_softcapping`).
    pub final_softcap: Option<f32>,
    /// Local layers attend to the last `sliding_window` positions only
    /// (`{arch}.attention.sliding_window`); `None`: every layer is global.
    pub sliding_window: Option<usize>,
    /// Which layers are local, llama.cpp's rule: layer `l` is local iff `swa_pattern == 0`
    /// or `l % swa_pattern < swa_pattern - 1` (`{arch}.attention.sliding_window_pattern`;
    /// Gemma 2: 2, every other layer; Gemma 3: 6, five local then one global).
    pub swa_pattern: usize,
    /// Embedding rows are multiplied by this (`sqrt(dim)` for Gemma, else 1).
    pub embed_scale: f32,
    /// Test-only deviations; default = correct.
    pub quirks: Quirks,
}

impl Config {
    /// Reads and checks the hyperparameters of a GGUF file.
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
        if n_kv_heads > n_heads || n_heads % n_kv_heads != 0 {
            return Err(bad(k.head_count_kv, n_kv_heads));
        }
        // Head width: key_length when present (Gemma, Qwen3 0.6B and larger), dim / n_heads
        // otherwise. Values as wide as keys only (no MLA-style split widths).
        let head_dim = match g.get(k.key_length) {
            Some(_) => get_count(g, k.key_length, None, limits::MAX_HEAD_DIM)?,
            None if dim % n_heads == 0 => dim / n_heads,
            None => return Err(bad(k.head_count, n_heads)),
        };
        if head_dim % 2 != 0 {
            return Err(bad(k.key_length, head_dim));
        }
        if get_count(g, k.value_length, Some(head_dim), limits::MAX_HEAD_DIM)? != head_dim {
            return Err(ModelError::Unsupported(k.value_length));
        }
        if n_heads
            .checked_mul(head_dim)
            .is_none_or(|q| q > limits::MAX_DIM)
        {
            return Err(bad(k.key_length, head_dim));
        }
        // phi3's llama.cpp graph and tensors assume n_heads * head_dim == dim.
        if arch == Arch::Phi3 && n_heads * head_dim != dim {
            return Err(bad(k.key_length, head_dim));
        }
        let rope_dim = get_count(g, k.rope_dim, Some(head_dim), head_dim)?;
        if rope_dim % 2 != 0 {
            return Err(bad(k.rope_dim, rope_dim));
        }
        let rope_theta = get_f32(g, k.freq_base, 10000.0)?;
        let theta_ok = |t: f32| t.is_finite() && t > 1.0;
        if !theta_ok(rope_theta) {
            return Err(bad(k.freq_base, rope_theta as usize));
        }
        let norm_eps = get_f32(g, k.norm_eps, 1e-5)?;
        if !(norm_eps.is_finite() && norm_eps >= 0.0) {
            return Err(bad(k.norm_eps, 0));
        }
        arch.check_unsupported(g)?;

        // Sliding-window attention and the per-layer RoPE bases (llama.cpp's defaults).
        let window = match g.get(k.sliding_window) {
            None => None,
            Some(v) => Some(v.as_u64().ok_or(ModelError::KeyType(k.sliding_window))?),
        };
        let (sliding_window, default_pattern, theta_swa_default) = match arch {
            Arch::Gemma2 => (Some(window.unwrap_or(4096)), 2, rope_theta),
            Arch::Gemma3 => (window.filter(|&w| w > 0), 6, 10000.0),
            // llama.cpp turns Phi-3's window off (its converters do not say which layers
            // use it); a window that would matter is refused rather than ignored.
            Arch::Phi3 => {
                if window.is_some_and(|w| w > 0 && w < context_length as u64) {
                    return Err(ModelError::Unsupported(k.sliding_window));
                }
                (None, 1, rope_theta)
            }
            _ => {
                if window.is_some_and(|w| w > 0) {
                    return Err(ModelError::Unsupported(k.sliding_window));
                }
                (None, 1, rope_theta)
            }
        };
        let sliding_window = match sliding_window {
            Some(0) => return Err(bad(k.sliding_window, 0)),
            Some(w) => Some(usize::try_from(w).unwrap_or(usize::MAX)),
            None => None,
        };
        let swa_pattern = match sliding_window {
            Some(_) => swa_pattern(g, k.swa_pattern, default_pattern, n_layers)?,
            None => 1,
        };
        let rope_theta_swa = get_f32(g, k.freq_base_swa, theta_swa_default)?;
        if !theta_ok(rope_theta_swa) {
            return Err(bad(k.freq_base_swa, rope_theta_swa as usize));
        }
        let rope_scale = match g.get(k.scaling_type) {
            Some(Value::String("linear")) => {
                let f = get_f32(g, k.scaling_factor, 1.0)?;
                if !(f.is_finite() && f >= 1.0) {
                    return Err(bad(k.scaling_factor, f as usize));
                }
                1.0 / f
            }
            _ => 1.0,
        };
        let softcap =
            |key: &'static str, default: Option<f32>| -> Result<Option<f32>, ModelError> {
                let v = match g.get(key) {
                    None => default,
                    Some(v) => Some(v.as_f32().ok_or(ModelError::KeyType(key))?),
                };
                match v {
                    // llama.cpp reads 0 as "no cap" (Gemma 3).
                    Some(0.0) => Ok(None),
                    Some(c) if c.is_finite() && c > 0.0 => Ok(Some(c)),
                    Some(_) => Err(ModelError::BadHyperParam { key, value: 0 }),
                    None => Ok(None),
                }
            };
        let (attn_softcap, final_softcap) = match arch {
            Arch::Gemma2 => (
                softcap(k.attn_softcap, Some(50.0))?,
                softcap(k.final_softcap, Some(30.0))?,
            ),
            Arch::Gemma3 => {
                if g.get(k.attn_softcap).is_some() {
                    return Err(ModelError::Unsupported(k.attn_softcap));
                }
                (None, softcap(k.final_softcap, None)?)
            }
            _ => {
                for key in [k.attn_softcap, k.final_softcap] {
                    if g.get(key).is_some() {
                        return Err(ModelError::Unsupported(key));
                    }
                }
                (None, None)
            }
        };
        // gemma_pytorch's (and llama.cpp's) query scale: the 27B models use dim / n_heads.
        let big_gemma = matches!((arch, n_layers), (Arch::Gemma2, 46) | (Arch::Gemma3, 62));
        let scale_width = if big_gemma {
            (dim / n_heads).max(1)
        } else {
            head_dim
        };
        let attn_scale = 1.0 / libm::sqrtf(scale_width as f32);
        let embed_scale = if arch.scales_embedding() {
            libm::sqrtf(dim as f32)
        } else {
            1.0
        };

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
            rope_theta_swa,
            rope_scale,
            rope_style: arch.rope_style(),
            rope_freqs: g.tensor("rope_freqs.weight").is_some(),
            norm_eps,
            tied_output: g.tensor("output.weight").is_none(),
            attn_scale,
            attn_softcap,
            final_softcap,
            sliding_window,
            swa_pattern,
            embed_scale,
            quirks: Quirks::default(),
        })
    }

    /// Width of all query heads together (`n_heads * head_dim`; `dim` unless the file sets
    /// `key_length`).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
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
        let norms = if self.arch.post_norms() { 4 } else { 2 };
        let qk_norm = if self.arch.qk_norm() {
            2 * self.head_dim
        } else {
            0
        };
        let per_layer = norms * self.dim
            + qk_norm
            + self.dim * self.q_dim() * 2
            + 2 * self.dim * self.kv_dim()
            + 3 * self.dim * self.hidden_dim;
        let head = if self.tied_output {
            0
        } else {
            self.vocab_size * self.dim
        };
        self.vocab_size * self.dim + self.n_layers * per_layer + self.dim + head
    }

    /// Layer `l` attends within the sliding window (a local layer).
    pub fn is_local(&self, l: usize) -> bool {
        if self.sliding_window.is_none() {
            return false;
        }
        let p = self.swa_pattern;
        p == 0 || l % p < p - 1
    }

    /// RoPE angle tables the run state keeps: 2 when local layers rotate with their own
    /// base or scale (Gemma 3), else 1.
    pub fn rope_tables(&self) -> usize {
        let differ = self.rope_theta_swa != self.rope_theta || self.rope_scale != 1.0;
        if self.sliding_window.is_some() && differ && !self.quirks.single_rope_base {
            2
        } else {
            1
        }
    }

    /// The KV head query head `h` reads.
    pub(super) fn kv_head(&self, h: usize) -> usize {
        match self.quirks.kv_head_map {
            KvHeadMap::Grouped => h / (self.n_heads / self.n_kv_heads),
            KvHeadMap::Interleaved => h % self.n_kv_heads,
        }
    }
}

/// `{arch}.attention.sliding_window_pattern`: a count `n` (llama.cpp's `set_swa_pattern`), or
/// one bool per layer, accepted when some `n` gives the same layers.
fn swa_pattern(
    g: &Gguf<'_>,
    key: &'static str,
    default: usize,
    n_layers: usize,
) -> Result<usize, ModelError> {
    let Some(v) = g.get(key) else {
        return Ok(default);
    };
    if let Some(n) = v.as_u64() {
        return usize::try_from(n)
            .ok()
            .filter(|&n| n <= limits::MAX_LAYERS)
            .ok_or(ModelError::BadHyperParam { key, value: n });
    }
    let arr = v.as_array().ok_or(ModelError::KeyType(key))?;
    if arr.len() != n_layers {
        return Err(ModelError::BadHyperParam {
            key,
            value: arr.len() as u64,
        });
    }
    let mut local = alloc::vec::Vec::with_capacity(n_layers);
    for e in arr.iter() {
        local.push(e.as_bool().ok_or(ModelError::KeyType(key))?);
    }
    (0..=n_layers)
        .find(|&p| {
            local
                .iter()
                .enumerate()
                .all(|(l, &is)| is == (p == 0 || l % p < p - 1))
        })
        .ok_or(ModelError::Unsupported(key))
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
