//! The forward pass allocates nothing per token: all buffers are sized at construction. A
//! counting global allocator watches decode and prefill after the model is built.
//!
//! Only the test's own thread is counted: libtest's main thread runs beside it and may allocate
//! at any time. Kernel pool workers run only the product kernels, which the single-threaded
//! runs here cover on the counted thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use llm_runtime::gguf::Gguf;
use llm_runtime::kernels::Kernels;
use llm_runtime::model::{Config, Model, ModelOptions, Weights};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while the current thread is being counted (const-initialised: reading it never
    /// allocates).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts allocations made by `f`.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::SeqCst)
}

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
