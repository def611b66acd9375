//! [`Config`]: the hyperparameters of a model, from the `{arch}.*` GGUF keys and the tensor
//! shapes, checked against [`limits`].

use super::{Arch, KvHeadMap, ModelError, Quirks, RopeStyle, limits};
use crate::gguf::Gguf;

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
    pub(super) fn kv_head(&self, h: usize) -> usize {
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
