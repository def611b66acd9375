//! The model families this runtime runs, as llama.cpp names them in `general.architecture`,
//! and where each one departs from `llama` (llama.cpp `src/llama-model.cpp`, `src/llama-arch.cpp`):
//! - `llama`: Q/K rows permuted by the converter, pairwise (NORM) RoPE; Llama 3.x frequency
//!   scaling arrives as the `rope_freqs.weight` tensor of per-pair divisors, which the HF
//!   converter computes from the llama3 rule (factor, low/high frequency factors, original
//!   context length); no scaling keys are written for it.
//! - `qwen2`: Q/K/V projections carry biases; Q/K rows are not permuted, so RoPE rotates
//!   halves (NEOX).
//! - `qwen3`: no biases; an RMSNorm over each head of Q and of K before RoPE (NEOX).
//!
//! Mixture-of-experts families and RoPE scaling other than llama3's are refused by name.

use super::{ModelError, RopeStyle};
use crate::gguf::{Gguf, Value};

/// A supported `general.architecture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
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
    pub norm_eps: &'static str,
    pub expert_count: &'static str,
    pub scaling_type: &'static str,
    pub scaling_factor: &'static str,
    pub vocab_size: &'static str,
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
            norm_eps: concat!($p, ".attention.layer_norm_rms_epsilon"),
            expert_count: concat!($p, ".expert_count"),
            scaling_type: concat!($p, ".rope.scaling.type"),
            scaling_factor: concat!($p, ".rope.scaling.factor"),
            vocab_size: concat!($p, ".vocab_size"),
        }
    };
}

const LLAMA: Keys = keys!("llama");
const QWEN2: Keys = keys!("qwen2");
const QWEN3: Keys = keys!("qwen3");

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
            "qwen2moe" => return Err(ModelError::Unsupported("qwen2moe")),
            "qwen3moe" => return Err(ModelError::Unsupported("qwen3moe")),
            "llama4" => return Err(ModelError::Unsupported("llama4")),
            _ => return Err(ModelError::NotLlama),
        })
    }

    pub(super) fn keys(self) -> &'static Keys {
        match self {
            Arch::Llama => &LLAMA,
            Arch::Qwen2 => &QWEN2,
            Arch::Qwen3 => &QWEN3,
        }
    }

    /// How the converter laid out Q/K rows, hence which dimensions RoPE pairs.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Pairwise,
            Arch::Qwen2 | Arch::Qwen3 => RopeStyle::RotateHalf,
        }
    }

    /// Q/K/V projections have biases (`blk.N.attn_{q,k,v}.bias`).
    pub fn qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }

    /// Per-head RMSNorm of Q and K (`blk.N.attn_{q,k}_norm.weight`).
    pub fn qk_norm(self) -> bool {
        self == Arch::Qwen3
    }

    /// Refuses what this architecture's file may carry but the runtime does not compute:
    /// experts, RoPE scaling other than llama3's frequency tensor, and (for llama) the optional
    /// biases llama.cpp would add.
    pub(super) fn check_unsupported(self, g: &Gguf<'_>) -> Result<(), ModelError> {
        let k = self.keys();
        if g.get(k.expert_count).and_then(|v| v.as_u64()).unwrap_or(0) > 0 {
            return Err(ModelError::Unsupported(k.expert_count));
        }
        if let Some(v) = g.get(k.scaling_type)
            && !matches!(v, Value::String("none"))
        {
            return Err(ModelError::Unsupported(k.scaling_type));
        }
        if let Some(v) = g.get(k.scaling_factor)
            && !v.as_f32().is_some_and(|f| f == 1.0 || f == 0.0)
        {
            return Err(ModelError::Unsupported(k.scaling_factor));
        }
        if g.tensor("rope_freqs.weight").is_some() && self != Arch::Llama {
            return Err(ModelError::Unsupported("rope_freqs.weight"));
        }
        if !self.qkv_bias() {
            for t in [
                "attn_q.bias",
                "attn_k.bias",
                "attn_v.bias",
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
        Ok(())
    }
}
