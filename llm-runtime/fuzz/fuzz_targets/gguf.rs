//! The GGUF reader on arbitrary bytes, then everything the SP builds from an accepted file
//! (`sp/src/serve.rs` `Serving::build`): config, tokenizer, weight views, run state, and for
//! small models one short generation. Nothing may panic.
//!
//! Seed with the committed models (`llm-runtime/fixtures/oracle/*.gguf`,
//! `llm-runtime/models/*.gguf`); see README.md "Fuzzing".
#![no_main]

use core::ops::ControlFlow;
use flexserve_sp::serve::{
    HEAP_RESERVE, MAX_METADATA, MAX_TENSORS, run_state_bytes, tokenizer_bytes,
};
use libfuzzer_sys::fuzz_target;
use llm_runtime::{
    generate::{Generator, NoClock, TextOutput},
    gguf::{AlignedBuf, Gguf, Value},
    kernels::Kernels,
    model::{Config, Model, ModelOptions, Weights},
    sampler::{Sampler, SamplerConfig},
    tokenizer::Tokenizer,
};

/// Heap the target grants a model (the SP's is of this order).
const HEAP: usize = 48 << 20;
/// Models up to this many parameters run a generation (keeps executions fast).
const MAX_RUN_PARAMS: usize = 2 << 20;

fn walk(v: &Value<'_>) -> usize {
    let _ = (
        v.as_u64(),
        v.as_f32(),
        v.as_str(),
        v.as_bool(),
        v.value_type(),
    );
    match v.as_array() {
        Some(a) => {
            let _ = (a.elem_type(), a.is_empty(), a.get(a.len()), a.get(0));
            let mut n = 0usize;
            for e in a.iter() {
                n = n.wrapping_add(walk(&e));
            }
            assert!(a.iter().count() == a.len());
            n.wrapping_add(a.len())
        }
        None => v.as_str().map_or(1, str::len),
    }
}

fn header_counts_ok(bytes: &[u8]) -> bool {
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    !matches!((word(8), word(16)), (Some(t), Some(k)) if t > MAX_TENSORS || k > MAX_METADATA)
}

fuzz_target!(|data: &[u8]| {
    // The SP parses in place from a page-aligned region.
    let buf = AlignedBuf::from_slice(data);
    let bytes = buf.as_bytes();
    if !header_counts_ok(bytes) {
        return;
    }
    let Ok(g) = Gguf::parse(bytes) else {
        return;
    };
    for (k, v) in g.metadata() {
        let _ = k.len();
        walk(v);
        assert!(g.get(k).is_some());
    }
    for t in g.tensors() {
        let _ = (t.n_elements(), t.rows_cols());
        if let Ok(s) = t.as_f32() {
            let _ = s.iter().fold(0f32, |a, x| a + x);
        }
        if let Ok(s) = t.as_f16_bits() {
            let _ = s.iter().fold(0u16, |a, x| a ^ x);
        }
        if let Ok(s) = t.as_q8_0() {
            let _ = s.len();
        }
        assert!(g.tensor(t.name).is_some());
    }

    let Ok(cfg) = Config::from_gguf(&g) else {
        return;
    };
    let _ = (cfg.kv_dim(), cfg.kv_bytes_per_token(), cfg.n_params());
    let opts = ModelOptions::for_config(&cfg);
    let need = run_state_bytes(&cfg, &opts)
        .saturating_add(tokenizer_bytes(&g))
        .saturating_add(HEAP_RESERVE);
    if need > HEAP {
        return;
    }
    let Ok(tok) = Tokenizer::from_gguf(&g) else {
        return;
    };
    if tok.n_tokens() > cfg.vocab_size {
        return;
    }
    let Ok(weights) = Weights::from_gguf(&g, &cfg) else {
        return;
    };
    let _ = weights.bytes();
    if cfg.n_params() > MAX_RUN_PARAMS {
        return;
    }
    let Ok(mut model) = Model::new(cfg, opts, Kernels::detect()) else {
        return;
    };
    let _ = model.memory_report(weights.bytes());

    // The SP's generate path, greedy, two tokens.
    let ids = tok.encode("Once upon a time", true, false);
    let max_tokens = 2;
    if ids.is_empty() || ids.len() + max_tokens > opts.seq_len {
        return;
    }
    let Ok(mut sampler) = Sampler::new(
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        },
        cfg.vocab_size,
    ) else {
        return;
    };
    let mut text = TextOutput::continuing(1 << 16);
    let _ = Generator {
        model: &mut model,
        weights: &weights,
        tokenizer: &tok,
    }
    .generate(&mut sampler, &ids, max_tokens, &NoClock, |id| {
        text.push(&tok, id);
        ControlFlow::Continue(())
    });
    let _ = text.finish();
});
