//! The sampler allocates only when it is made, never per token.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use llm_runtime::sampler::{Sampler, SamplerConfig};

struct Counting;

thread_local! {
    // Per thread, so the test harness's own threads do not count. `const` initialisation
    // needs no allocation, so the allocator may use it.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `realloc` is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn sampling_does_not_allocate() {
    let vocab = 32_000;
    let logits: Vec<f32> = (0..vocab)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
        .collect();
    let configs = [
        SamplerConfig::default(),
        SamplerConfig {
            temperature: 0.8,
            top_k: 0,
            top_p: 1.0,
            seed: 1,
        },
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 1.0,
            seed: 2,
        },
        SamplerConfig {
            temperature: 0.8,
            top_k: 0,
            top_p: 0.9,
            seed: 3,
        },
        SamplerConfig {
            temperature: 1.2,
            top_k: 100,
            top_p: 0.5,
            seed: 4,
        },
    ];
    for cfg in configs {
        // The counter works: making a sampler allocates its buffer.
        let mut s = None;
        assert!(allocations(|| s = Some(Sampler::new(cfg, vocab).unwrap())) > 0);
        let mut s = s.unwrap();
        let mut picked = Vec::with_capacity(100);
        let n = allocations(|| {
            for _ in 0..100 {
                picked.push(s.sample(&logits).unwrap());
            }
        });
        assert_eq!(n, 0, "{cfg:?}: {n} allocations in 100 samples");
        assert!(picked.iter().all(|&t| (t as usize) < vocab));
    }
}
