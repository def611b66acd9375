//! The forward pass allocates nothing per token: all buffers are sized at construction. A
//! counting global allocator watches decode and prefill after the model is built.
//!
//! Only the test's own thread is counted: libtest's main thread runs beside it and may allocate
//! at any time. Kernel pool workers run only the product kernels, which the single-threaded
//! runs here cover on the counted thread.

use llm_runtime::gguf::Gguf;
use llm_runtime::kernels::Kernels;
use llm_runtime::model::{Config, Model, ModelOptions, Weights};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn no_allocation_per_token() {
    let raw = std::fs::read(format!(
        "{}/fixtures/oracle/gqa-q8_0.gguf",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut buf = vec![0u64; raw.len().div_ceil(8)];
    // SAFETY: viewing the u64 buffer as bytes; it holds at least `raw.len()` bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), raw.len()) };
    bytes.copy_from_slice(&raw);
    let g = Gguf::parse(bytes).unwrap();
    let cfg = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &cfg).unwrap();
    for kernels in [
        Kernels::scalar(),
        Kernels::detect(),
        Kernels::detect().with_threads(2),
    ] {
        let opts = ModelOptions {
            seq_len: 128,
            max_batch: 16,
            all_logits: false,
        };
        let mut m = Model::new(cfg, opts, kernels).unwrap();

        // The counter itself works: building a model allocates.
        assert!(allocations(|| drop(Model::new(cfg, opts, Kernels::scalar()).unwrap())) > 0);

        let prompt: Vec<u32> = (1..40).collect();
        // Warm-up, uncounted: the first product on a fresh thread pool may let std initialise
        // per-thread state (thread handles for parking) once. Per-token cost is what counts.
        m.prefill(&w, &prompt, 0).unwrap();
        for pos in prompt.len()..prompt.len() + 3 {
            m.forward(&w, 1, pos).unwrap();
        }
        m.reset();
        let n = allocations(|| {
            m.prefill(&w, &prompt, 0).unwrap();
        });
        assert_eq!(n, 0, "prefill allocated {n} times");
        let mut tok = 7u32;
        let n = allocations(|| {
            for pos in prompt.len()..prompt.len() + 60 {
                let logits = m.forward(&w, tok, pos).unwrap();
                tok = logits
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i as u32)
                    .unwrap();
            }
        });
        assert_eq!(n, 0, "60 decoded tokens allocated {n} times");
        // Layer-at-a-time calls allocate nothing either.
        let n = allocations(|| {
            m.forward_embed(&w.global, &[3], 99).unwrap();
            for (l, lw) in w.layers.iter().enumerate() {
                m.forward_layer(l, lw).unwrap();
            }
            m.forward_head(&w.global).unwrap();
        });
        assert_eq!(n, 0);
    }
}
