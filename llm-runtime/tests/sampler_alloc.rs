//! The sampler allocates only when it is made, never per token.

use llm_runtime::sampler::{Sampler, SamplerConfig};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

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
