//! Grouped-query attention of a batch over one layer's f32 KV cache: causal, optionally
//! limited to a sliding window (Gemma's local layers) and with soft-capped scores (Gemma 2).

use super::Config;
use super::ops::{dot_f32, softcap, softmax};
use crate::kernels::Kernels;

/// One layer's slice of the KV cache, `[S, kv_dim]` each.
#[derive(Clone, Copy)]
pub(super) struct KvLayer<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
}

/// `out[t, h] = softmax(scores) . V` for each token `t` of the batch (at position `pos0 + t`)
/// and query head `h`, where `score(p) = q . k_p * attn_scale` (capped by `cap * tanh(s/cap)`
/// with a soft-cap) over the positions `p <= pos0 + t`, and with a `window` only the last
/// `window` of them (`pos - p < window`, llama.cpp's `LLAMA_SWA_TYPE_STANDARD` and HF's
/// sliding mask). `q` and `out` are `[n, n_heads * head_dim]`; `att` holds one `S`-long row
/// of scores per kernel thread. Positions up to `pos0 + n - 1` must be in the cache.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    k: &Kernels,
    cfg: &Config,
    q: &[f32],
    kv: KvLayer<'_>,
    pos0: usize,
    window: Option<usize>,
    cap: Option<f32>,
    out: &mut [f32],
    att: &mut [f32],
) {
    let (hd, qd, kv_dim) = (cfg.head_dim, cfg.q_dim(), cfg.kv_dim());
    let n = q.len() / qd.max(1);
    let scale = cfg.quirks.attn_scale_override.unwrap_or(cfg.attn_scale);
    // One chunk of `out` per (token, head); spread over the kernel threads once there is
    // enough of it (prefill, or decode deep into the context) to outweigh the hand-off.
    let parallel = n > 1 || pos0 >= 256;
    k.for_each_chunk(parallel, out, hd, att, &|i, out, att| {
        let (t, h) = (i / cfg.n_heads, i % cfg.n_heads);
        let pos = pos0 + t;
        let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let kvh = cfg.kv_head(h);
        let q = &q[t * qd + h * hd..t * qd + (h + 1) * hd];
        let att = &mut att[..=pos - lo];
        for (j, a) in att.iter_mut().enumerate() {
            let o = (lo + j) * kv_dim + kvh * hd;
            let s = dot_f32(q, &kv.keys[o..o + hd]) * scale;
            *a = match cap {
                Some(c) => softcap(s, c),
                None => s,
            };
        }
        softmax(att);
        out.fill(0.0);
        for (j, &a) in att.iter().enumerate() {
            let o = (lo + j) * kv_dim + kvh * hd;
            for (y, &v) in out.iter_mut().zip(&kv.values[o..o + hd]) {
                *y += a * v;
            }
        }
    });
}
