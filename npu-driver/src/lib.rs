//! NPU backends behind one trait.
//!
//! Will contain: an `Npu` trait (switch to secure / back, submit an int8 matmul job whose buffers
//! live in Flex-Mem, wait for completion, scrub internal buffers), the testbed's emulated int8
//! matmul NPU (documented MMIO), and the RK3588 RKNPU backend (PC/CNA/CORE/DPU regcmd jobs).
#![no_std]
