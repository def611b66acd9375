//! The int8 transformer runtime the secure partition runs: GGUF models, tokenizers, a llama
//! forward pass that can take its weights one layer at a time, and int8 kernels (scalar
//! reference, NEON, x86 SIMD) for Q8_0, Q4_0, Q4_K, Q5_K and Q6_K weights used in place.
//!
//! `no_std` + `alloc`; the `std` feature adds run-time CPU feature detection and host tools.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod generate;
pub mod gguf;
pub mod gguf_write;
pub mod kernels;
pub mod model;
pub mod sampler;
pub mod tokenizer;
