//! The model families this runtime runs, as llama.cpp names them in `general.architecture`,
//! and where each one departs from `llama` (llama.cpp `src/models/*.cpp`, `src/llama-arch.cpp`,
//! and the converter's `conversion/*.py`):
//! - `llama`: Q/K rows permuted by the converter, pairwise (NORM) RoPE; Llama 3.x frequency
//!   scaling arrives as the `rope_freqs.weight` tensor of per-pair divisors, which the HF
//!   converter computes from the llama3 rule (factor, low/high frequency factors, original
//!   context length); no scaling keys are written for it.
//! - `qwen2`: Q/K/V projections carry biases; Q/K rows are not permuted, so RoPE rotates
//!   halves (NEOX).
//! - `qwen3`: no biases; an RMSNorm over each head of Q and of K before RoPE (NEOX).
//! - `gemma2`: embeddings scaled by `sqrt(dim)`; RMSNorm weights stored as `1 + w` (the
//!   converter adds the 1, so the file's weight is used as is); extra norms after attention
//!   and after the feed-forward (`attn_post_norm`, `ffn_post_norm`); GeGLU with tanh GELU;
//!   attention scores and final logits soft-capped (`cap * tanh(x / cap)`); even layers attend
//!   within a sliding window, odd layers globally (`attention.sliding_window_pattern`, default
//!   2); NEOX RoPE; head width `attention.key_length`.
//! - `gemma3`: as gemma2 without the attention soft-cap (the final one only if the file has
//!   the key), plus per-head Q/K RMSNorm; five local layers per global one (pattern 6), the
//!   local ones with their own RoPE base (`rope.freq_base_swa`, default 10000) and the global
//!   ones with `rope.freq_base` and the optional linear scaling of Gemma 3 4B and larger.
//! - `phi3`: fused Q/K/V (`attn_qkv`, rows Q then K then V) and fused gate/up (`ffn_up`, gate
//!   rows first); NEOX RoPE over the first `rope.dimension_count` dimensions of each head
//!   (Phi-4-mini: partial rotary). LongRoPE factors (`rope_factors_long/short`) are refused.
//!
//! The query scale is `1/sqrt(head width)`, except for the 27B Gemmas (46 / 62 layers), where
//! llama.cpp (after gemma_pytorch) uses `1/sqrt(dim / n_heads)`; llama.cpp does not read
//! HF's `query_pre_attn_scalar`, and neither does this runtime.
//!
//! Mixture-of-experts families, vision/audio towers and RoPE scaling not listed above are
//! refused by name.

use super::{ModelError, RopeStyle};
use crate::gguf::{Gguf, Value};

/// A supported `general.architecture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
    Phi3,
}

/// The feed-forward activation of the gated unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: `silu(gate) * up`.
    Silu,
    /// GeGLU with the tanh approximation of GELU: `gelu_tanh(gate) * up`.
    GeluTanh,
}

/// The hyperparameter keys of one architecture (`{arch}.embedding_length` and so on).
pub(super) struct Keys {
    pub embedding_length: &'static str,
    pub feed_forward_length: &'static str,
    pub block_count: &'static str,
    pub head_count: &'static str,
    pub head_count_kv: &'static str,
    pub context_length: &'static str,
    pub key_length: &'static str,
    pub value_length: &'static str,
    pub rope_dim: &'static str,
    pub freq_base: &'static str,
    pub freq_base_swa: &'static str,
    pub norm_eps: &'static str,
    pub expert_count: &'static str,
    pub scaling_type: &'static str,
    pub scaling_factor: &'static str,
    pub scaling_attn_factor: &'static str,
    pub vocab_size: &'static str,
    pub attn_softcap: &'static str,
    pub final_softcap: &'static str,
    pub sliding_window: &'static str,
    pub swa_pattern: &'static str,
    pub attn_scale: &'static str,
}

macro_rules! keys {
    ($p:literal) => {
        Keys {
            embedding_length: concat!($p, ".embedding_length"),
            feed_forward_length: concat!($p, ".feed_forward_length"),
            block_count: concat!($p, ".block_count"),
            head_count: concat!($p, ".attention.head_count"),
            head_count_kv: concat!($p, ".attention.head_count_kv"),
            context_length: concat!($p, ".context_length"),
            key_length: concat!($p, ".attention.key_length"),
            value_length: concat!($p, ".attention.value_length"),
            rope_dim: concat!($p, ".rope.dimension_count"),
            freq_base: concat!($p, ".rope.freq_base"),
            freq_base_swa: concat!($p, ".rope.freq_base_swa"),
            norm_eps: concat!($p, ".attention.layer_norm_rms_epsilon"),
            expert_count: concat!($p, ".expert_count"),
            scaling_type: concat!($p, ".rope.scaling.type"),
            scaling_factor: concat!($p, ".rope.scaling.factor"),
            scaling_attn_factor: concat!($p, ".rope.scaling.attn_factor"),
            vocab_size: concat!($p, ".vocab_size"),
            attn_softcap: concat!($p, ".attn_logit_softcapping"),
            final_softcap: concat!($p, ".final_logit_softcapping"),
            sliding_window: concat!($p, ".attention.sliding_window"),
            swa_pattern: concat!($p, ".attention.sliding_window_pattern"),
            attn_scale: concat!($p, ".attention.scale"),
        }
    };
}

const LLAMA: Keys = keys!("llama");
const QWEN2: Keys = keys!("qwen2");
const QWEN3: Keys = keys!("qwen3");
const GEMMA2: Keys = keys!("gemma2");
const GEMMA3: Keys = keys!("gemma3");
const PHI3: Keys = keys!("phi3");

/// Families llama.cpp knows that this runtime refuses, with the reason in the name.
const REFUSED: &[(&str, &str)] = &[
    ("qwen2moe", "qwen2moe"),
    ("qwen3moe", "qwen3moe"),
    ("llama4", "llama4"),
    ("gemma", "gemma (Gemma 1)"),
    ("gemma3n", "gemma3n"),
    ("gemma4", "gemma4"),
    ("gemma-embedding", "gemma-embedding"),
    ("phi2", "phi2"),
    ("phimoe", "phimoe"),
    ("clip", "clip (vision/audio projector)"),
];

impl Arch {
    /// The file's architecture; known-but-unimplemented families are refused by name.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Arch, ModelError> {
        let name = match g.get("general.architecture") {
            Some(Value::String(s)) => s,
            _ => return Err(ModelError::NotLlama),
        };
        Ok(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma2" => Arch::Gemma2,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            other => {
                return Err(REFUSED
                    .iter()
                    .find(|(n, _)| *n == other)
                    .map_or(ModelError::NotLlama, |(_, why)| {
                        ModelError::Unsupported(why)
                    }));
            }
        })
    }

    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
        }
    }

    pub(super) fn keys(self) -> &'static Keys {
        match self {
            Arch::Llama => &LLAMA,
            Arch::Qwen2 => &QWEN2,
            Arch::Qwen3 => &QWEN3,
            Arch::Gemma2 => &GEMMA2,
            Arch::Gemma3 => &GEMMA3,
            Arch::Phi3 => &PHI3,
        }
    }

    /// How the converter laid out Q/K rows, hence which dimensions RoPE pairs.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Pairwise,
            _ => RopeStyle::RotateHalf,
        }
    }

    /// Q/K/V projections have biases (`blk.N.attn_{q,k,v}.bias`).
    pub fn qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }

    /// Per-head RMSNorm of Q and K (`blk.N.attn_{q,k}_norm.weight`).
    pub fn qk_norm(self) -> bool {
        matches!(self, Arch::Qwen3 | Arch::Gemma3)
    }

    /// RMSNorm of the attention and feed-forward outputs before their residual adds
    /// (`blk.N.attn_post_norm.weight`, `blk.N.ffn_post_norm.weight`).
    pub fn post_norms(self) -> bool {
        self.is_gemma()
    }

    /// Q/K/V may come fused in one `blk.N.attn_qkv.weight`, gate/up in one `blk.N.ffn_up`.
    pub fn fused_projections(self) -> bool {
        self == Arch::Phi3
    }

    pub fn activation(self) -> Activation {
        if self.is_gemma() {
            Activation::GeluTanh
        } else {
            Activation::Silu
        }
    }

    /// The embedding rows are multiplied by `sqrt(dim)`.
    pub fn scales_embedding(self) -> bool {
        self.is_gemma()
    }

    fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }

    /// Refuses what this architecture's file may carry but the runtime does not compute:
    /// experts, RoPE scaling other than llama3's frequency tensor (and Gemma 3's linear
    /// scaling), vision towers, and the optional biases llama.cpp would add.
    pub(super) fn check_unsupported(self, g: &Gguf<'_>) -> Result<(), ModelError> {
        let k = self.keys();
        if g.get(k.expert_count).and_then(|v| v.as_u64()).unwrap_or(0) > 0 {
            return Err(ModelError::Unsupported(k.expert_count));
        }
        let linear_ok = self == Arch::Gemma3;
        if let Some(v) = g.get(k.scaling_type)
            && !matches!(v, Value::String("none"))
            && !(linear_ok && matches!(v, Value::String("linear")))
        {
            return Err(ModelError::Unsupported(k.scaling_type));
        }
        if let Some(v) = g.get(k.scaling_factor)
            && !v.as_f32().is_some_and(|f| f == 1.0 || f == 0.0)
            && !(linear_ok && matches!(g.get(k.scaling_type), Some(Value::String("linear"))))
        {
            return Err(ModelError::Unsupported(k.scaling_factor));
        }
        if let Some(v) = g.get(k.scaling_attn_factor)
            && v.as_f32() != Some(1.0)
        {
            return Err(ModelError::Unsupported(k.scaling_attn_factor));
        }
        if g.get(k.attn_scale).is_some() {
            return Err(ModelError::Unsupported(k.attn_scale));
        }
        if g.tensor("rope_freqs.weight").is_some() && self != Arch::Llama {
            return Err(ModelError::Unsupported("rope_freqs.weight"));
        }
        for t in ["rope_factors_long.weight", "rope_factors_short.weight"] {
            if g.tensor(t).is_some() || g.tensor(&alloc::format!("blk.0.{t}")).is_some() {
                return Err(ModelError::Unsupported(
                    "rope_factors_long/short (LongRoPE)",
                ));
            }
        }
        // Multimodal files keep their towers under `v.*` / `a.*` / `mm.*` (llama.cpp mmproj).
        if g.tensors().iter().any(|t| {
            t.name.starts_with("v.") || t.name.starts_with("a.") || t.name.starts_with("mm.")
        }) {
            return Err(ModelError::Unsupported("vision/audio tower tensors"));
        }
        if !self.qkv_bias() {
            for t in [
                "attn_q.bias",
                "attn_k.bias",
                "attn_v.bias",
                "attn_qkv.bias",
                "attn_output.bias",
            ] {
                if g.tensor(&alloc::format!("blk.0.{t}")).is_some() {
                    return Err(ModelError::Unsupported("blk.N.attn_*.bias"));
                }
            }
        }
        if self.qkv_bias() && g.tensor("blk.0.attn_output.bias").is_some() {
            return Err(ModelError::Unsupported("blk.N.attn_output.bias"));
        }
        for t in [
            "blk.0.attn_norm.bias",
            "blk.0.ffn_norm.bias",
            "blk.0.ffn_up.bias",
            "blk.0.ffn_down.bias",
            "output_norm.bias",
            "output.bias",
        ] {
            if g.tensor(t).is_some() {
                return Err(ModelError::Unsupported("norm/feed-forward/output biases"));
            }
        }
        Ok(())
    }
}
