//! The run state (activation buffers and the f32 KV cache, sized at construction) and the
//! forward pass of [`Model`], one stage at a time.

use alloc::vec::Vec;
use core::fmt;

use super::arch::Activation;
use super::attention::{KvLayer, attention};
use super::ops::{
    gelu_tanh, gelu_tanh_f16, prepare, product, rmsnorm, rmsnorm_in_place, rope, silu, softcap,
};
use super::{Config, GlobalWeights, LayerWeights, MatData, ModelError, Stage, Weights, limits};
use crate::kernels::quants::{BlockQ8K, QK_K};
use crate::kernels::{BlockQ8_0, Kernels, MIN_OFFLOAD_TOKENS, MatmulOffload, QK8_0};

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
/// `B` = max batch, `S` = seq_len, `Q` = `n_heads * head_dim` (`dim` unless the file sets
/// `key_length`), `R` = 1 RoPE table, or 2 when local layers rotate differently (Gemma 3).
struct RunState {
    /// Residual stream `[B, dim]`.
    x: Vec<f32>,
    /// Normed input / scratch `[B, dim]`.
    xb: Vec<f32>,
    /// Attention output `[B, Q]`.
    xb2: Vec<f32>,
    /// Queries `[B, Q]`.
    q: Vec<f32>,
    /// Keys and values of the batch `[B, kv_dim]`.
    k: Vec<f32>,
    v: Vec<f32>,
    /// Feed-forward `[B, hidden_dim]`.
    hb: Vec<f32>,
    hb2: Vec<f32>,
    /// Attention scores of one head, per kernel thread `[threads, S]`.
    att: Vec<f32>,
    /// Quantized activations `[B, max(dim, hidden_dim, Q) / 32]`.
    xq: Vec<BlockQ8_0>,
    /// Q8_K activations (for K-quant weights) `[B, max(dim, hidden_dim, Q) / 256]`.
    xk: Vec<BlockQ8K>,
    /// `[B or 1, vocab]`.
    logits: Vec<f32>,
    /// `[n_layers, S, kv_dim]`.
    key_cache: Vec<f32>,
    value_cache: Vec<f32>,
    /// RoPE inverse frequencies `[R, rope_dim / 2]` (table 0: global layers, 1: local).
    inv_freq: Vec<f32>,
    /// cos/sin of each batch position's angles `[R, B, rope_dim / 2]`, once per pass.
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

/// A model's run state and forward pass. Weights are passed into each call, so they can
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
    /// A device that takes the V projection of prefill batches, if one is attached.
    offload: Option<alloc::boxed::Box<dyn MatmulOffload + Send>>,
    /// Products the device delivered, and those it declined or failed (then the CPU's).
    pub offloaded: u64,
    pub offload_fallbacks: u64,
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
        let (kv, qd) = (cfg.kv_dim(), cfg.q_dim());
        let big = |a: usize, c: usize| {
            a.checked_mul(c)
                .ok_or(ModelError::OutOfMemory { bytes: usize::MAX })
        };
        let cache = big(big(cfg.n_layers, opts.seq_len)?, kv)?;
        let logit_rows = if opts.all_logits { b } else { 1 };
        let rope_dim = rope_dim(&cfg);
        let half = rope_dim / 2;
        let tables = rope_tables(&cfg);
        let mut inv_freq = buffer(big(tables, half)?, 0.0f32)?;
        for (t, table) in inv_freq.chunks_exact_mut(half.max(1)).enumerate() {
            let theta = if t == 0 {
                cfg.quirks.rope_theta_override.unwrap_or(cfg.rope_theta)
            } else {
                cfg.rope_theta_swa
            };
            for (i, f) in table.iter_mut().enumerate() {
                // As HF computes it: 1 / theta^(2i/d), in f32.
                *f = 1.0 / libm::powf(theta, (2 * i) as f32 / rope_dim as f32);
            }
        }
        let widest = cfg.dim.max(cfg.hidden_dim).max(qd);
        let s = RunState {
            x: buffer(big(b, cfg.dim)?, 0.0)?,
            xb: buffer(big(b, cfg.dim)?, 0.0)?,
            xb2: buffer(big(b, qd)?, 0.0)?,
            q: buffer(big(b, qd)?, 0.0)?,
            k: buffer(big(b, kv)?, 0.0)?,
            v: buffer(big(b, kv)?, 0.0)?,
            hb: buffer(big(b, cfg.hidden_dim)?, 0.0)?,
            hb2: buffer(big(b, cfg.hidden_dim)?, 0.0)?,
            // One row of scores per kernel thread (attention runs on all of them).
            att: buffer(big(opts.seq_len, kernels.threads())?, 0.0)?,
            xq: buffer(big(b, widest.div_ceil(QK8_0))?, BlockQ8_0::ZERO)?,
            xk: buffer(big(b, widest.div_ceil(QK_K))?, BlockQ8K::ZERO)?,
            logits: buffer(big(logit_rows, cfg.vocab_size)?, 0.0)?,
            key_cache: buffer(cache, 0.0)?,
            value_cache: buffer(cache, 0.0)?,
            inv_freq,
            rope_cos: buffer(big(big(tables, b)?, half)?, 0.0)?,
            rope_sin: buffer(big(big(tables, b)?, half)?, 0.0)?,
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
            offload: None,
            offloaded: 0,
            offload_fallbacks: 0,
        })
    }

    /// Attaches (or with `None` detaches) a device for the V projections of prefill batches
    /// ([`MatmulOffload`]); the CPU computes everything the device does not deliver.
    pub fn set_offload(&mut self, d: Option<alloc::boxed::Box<dyn MatmulOffload + Send>>) {
        self.offload = d;
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
        let cfg = &self.cfg;
        let (dim, b) = (cfg.dim, self.opts.max_batch);
        let s = &mut self.s;
        let scale = (!cfg.quirks.skip_embed_scale).then_some(cfg.embed_scale);
        for (row, &t) in s.x.chunks_exact_mut(dim).zip(tokens) {
            g.token_embd.row_f32(t as usize, row);
            if let Some(c) = scale.filter(|&c| c != 1.0) {
                row.iter_mut().for_each(|v| *v *= c);
            }
        }
        // The rotation angles depend only on the position (and, for Gemma 3, on whether the
        // layer is local): once per pass, not per layer/head.
        let freqs = g.rope_freqs.filter(|_| !cfg.quirks.skip_rope_freqs);
        let half = rope_dim(cfg) / 2;
        if half > 0 {
            for (table, inv) in s.inv_freq.chunks_exact(half).enumerate() {
                // Table 0 (global layers) carries the frequency factors and linear scaling.
                let (factors, pscale) = if table == 0 {
                    (freqs, cfg.rope_scale)
                } else {
                    (None, 1.0)
                };
                let off = table * b * half;
                let rows = s.rope_cos[off..off + b * half]
                    .chunks_exact_mut(half)
                    .zip(s.rope_sin[off..off + b * half].chunks_exact_mut(half));
                for (t, (cos, sin)) in rows.take(n).enumerate() {
                    let p = (pos + t) as f32;
                    for (i, ((c, sn), &f)) in
                        cos.iter_mut().zip(sin.iter_mut()).zip(inv).enumerate()
                    {
                        // llama.cpp divides each frequency by its factor (ggml_rope_ext's
                        // freq_factors) and multiplies the angle by freq_scale (linear).
                        let f = match factors.and_then(|d| d.get(i)) {
                            Some(d) => f / d,
                            None => f,
                        };
                        let angle = if pscale == 1.0 { p * f } else { p * f * pscale };
                        *c = libm::cosf(angle);
                        *sn = libm::sinf(angle);
                    }
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
        let qk = cfg.quirks;
        let (n, pos0) = (self.n, self.pos0);
        let (dim, kv_dim, hd, hidden) = (cfg.dim, cfg.kv_dim(), cfg.head_dim, cfg.hidden_dim);
        let qd = cfg.q_dim();
        let (eps, off) = (cfg.norm_eps, qk.norm_offset);
        let s = &mut self.s;
        let k = &self.kernels;

        // Attention.
        for (xb, x) in
            s.xb.chunks_exact_mut(dim)
                .zip(s.x.chunks_exact(dim))
                .take(n)
        {
            rmsnorm(xb, x, w.attn_norm, eps, off);
        }
        prepare(&[&w.wq, &w.wk, &w.wv], &s.xb, &mut s.xq, &mut s.xk, n)?;
        // V to the device if one takes it, Q and K on the CPU meanwhile.
        let started = match (self.offload.as_mut(), w.wv.data()) {
            (Some(d), MatData::Q8_0(wb)) if n >= MIN_OFFLOAD_TOKENS => {
                let xq = &s.xq[..n * (dim / QK8_0)];
                d.start(wb, xq, n, kv_dim)
            }
            _ => false,
        };
        product(k, &w.wq, &s.xb, &s.xq, &s.xk, n, &mut s.q)?;
        product(k, &w.wk, &s.xb, &s.xq, &s.xk, n, &mut s.k)?;
        let delivered = started
            && self
                .offload
                .as_mut()
                .is_some_and(|d| d.finish(&mut s.v[..n * kv_dim]).is_ok());
        if delivered {
            self.offloaded += 1;
        } else {
            if started {
                self.offload_fallbacks += 1;
            }
            product(k, &w.wv, &s.xb, &s.xq, &s.xk, n, &mut s.v)?;
        }
        if !qk.skip_qkv_bias {
            for (out, b, width) in [
                (&mut s.q, w.bq, qd),
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
        if !qk.skip_qk_norm {
            for (out, norm, width) in [(&mut s.q, w.q_norm, qd), (&mut s.k, w.k_norm, kv_dim)] {
                if let Some(norm) = norm {
                    for head in out[..n * width].chunks_exact_mut(hd) {
                        rmsnorm_in_place(head, norm, eps, off);
                    }
                }
            }
        }
        let style = qk.rope.unwrap_or(cfg.rope_style);
        let local = cfg.is_local(l);
        let half = rope_dim(&cfg) / 2;
        let b = self.opts.max_batch;
        let table = if local && rope_tables(&cfg) == 2 {
            1
        } else {
            0
        };
        let (cos_all, sin_all) = (
            &s.rope_cos[table * b * half..],
            &s.rope_sin[table * b * half..],
        );
        for t in 0..n {
            let (cos, sin) = (
                &cos_all[t * half..(t + 1) * half],
                &sin_all[t * half..(t + 1) * half],
            );
            for head in s.q[t * qd..(t + 1) * qd].chunks_exact_mut(hd) {
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

        let window = cfg
            .sliding_window
            .filter(|_| local && !qk.no_sliding_window);
        let softcap = cfg.attn_softcap.filter(|_| !qk.skip_attn_softcap);
        let kv = KvLayer {
            keys: &s.key_cache[layer_off..layer_off + self.opts.seq_len * kv_dim],
            values: &s.value_cache[layer_off..layer_off + self.opts.seq_len * kv_dim],
        };
        attention(
            k,
            &cfg,
            &s.q[..n * qd],
            kv,
            pos0,
            window,
            softcap,
            &mut s.xb2[..n * qd],
            &mut s.att,
        );
        prepare(&[&w.wo], &s.xb2, &mut s.xq, &mut s.xk, n)?;
        product(k, &w.wo, &s.xb2, &s.xq, &s.xk, n, &mut s.xb)?;
        let post = |norm: Option<&[f32]>, y: &mut [f32]| {
            if let Some(norm) = norm.filter(|_| !qk.skip_post_norms) {
                for row in y.chunks_exact_mut(dim).take(n) {
                    rmsnorm_in_place(row, norm, eps, off);
                }
            }
        };
        post(w.attn_post_norm, &mut s.xb);
        for (x, y) in s.x.iter_mut().zip(&s.xb).take(n * dim) {
            *x += *y;
        }

        // Feed-forward.
        for (xb, x) in
            s.xb.chunks_exact_mut(dim)
                .zip(s.x.chunks_exact(dim))
                .take(n)
        {
            rmsnorm(xb, x, w.ffn_norm, eps, off);
        }
        prepare(&[&w.w_gate, &w.w_up], &s.xb, &mut s.xq, &mut s.xk, n)?;
        product(k, &w.w_gate, &s.xb, &s.xq, &s.xk, n, &mut s.hb)?;
        product(k, &w.w_up, &s.xb, &s.xq, &s.xk, n, &mut s.hb2)?;
        #[derive(Clone, Copy)]
        enum Act {
            Silu,
            Gelu,
            GeluF16,
        }
        let act = match (cfg.arch.activation(), qk.silu_activation) {
            (Activation::Silu, _) | (_, true) => Act::Silu,
            (Activation::GeluTanh, _) if qk.gelu_f16 => Act::GeluF16,
            (Activation::GeluTanh, _) => Act::Gelu,
        };
        let up = &s.hb2;
        k.for_each_chunk(
            n > 1,
            &mut s.hb[..n * hidden],
            hidden,
            &mut [],
            &|t, gate, _| {
                let pairs = gate.iter_mut().zip(&up[t * hidden..]);
                // One loop per activation, so each inlines.
                match act {
                    Act::Silu => pairs.for_each(|(g, u)| *g = silu(*g) * *u),
                    Act::Gelu => pairs.for_each(|(g, u)| *g = gelu_tanh(*g) * *u),
                    Act::GeluF16 => pairs.for_each(|(g, u)| *g = gelu_tanh_f16(*g) * *u),
                }
            },
        );
        prepare(&[&w.w_down], &s.hb, &mut s.xq, &mut s.xk, n)?;
        product(k, &w.w_down, &s.hb, &s.xq, &s.xk, n, &mut s.xb)?;
        post(w.ffn_post_norm, &mut s.xb);
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

    /// Step 3: final norm and output head (and Gemma's final soft-cap). Returns the logits:
    /// `[n, vocab]` for the whole batch with `all_logits`, otherwise `[vocab]` for its last
    /// token.
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
            rmsnorm(
                xb,
                x,
                g.output_norm,
                self.cfg.norm_eps,
                self.cfg.quirks.norm_offset,
            );
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
        if let Some(cap) = self
            .cfg
            .final_softcap
            .filter(|_| !self.cfg.quirks.skip_final_softcap)
        {
            for v in &mut s.logits[..rows * vocab] {
                *v = softcap(*v, cap);
            }
        }
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

/// Dimensions RoPE rotates per head (the whole head with the `full_rotary` quirk).
fn rope_dim(cfg: &Config) -> usize {
    if cfg.quirks.full_rotary {
        cfg.head_dim
    } else {
        cfg.rope_dim
    }
}

fn rope_tables(cfg: &Config) -> usize {
    cfg.rope_tables()
}
