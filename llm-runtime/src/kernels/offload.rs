//! The hook through which the forward pass hands a Q8_0 product to a device beside the CPU (the
//! secure partition's Flex-NPU) and goes on with its own work meanwhile. The CPU path stays the
//! reference: a device that declines a product, or fails it, costs only the time it took, and
//! the CPU computes the product instead.
//!
//! The forward pass offloads the V projection of a prefill batch (at least
//! [`MIN_OFFLOAD_TOKENS`] tokens) while the CPU computes Q and K: three independent products
//! of the same activations, so nothing waits for the device until V is needed.

use super::BlockQ8_0;

/// Batches smaller than this stay on the CPU (decode: one token's product is not worth a
/// device round trip).
pub const MIN_OFFLOAD_TOKENS: usize = 2;

/// Why a device did not deliver a product it had taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// The device reported a fault (a DMA it was denied, a reset).
    Device,
    /// It did not finish in the time the caller allows.
    Timeout,
    /// `finish` without a product in flight.
    NothingStarted,
}

/// A device that computes `y[t, r] = sum_b dot(w[r*kb + b], x[t*kb + b]) * d_w * d_x` (the
/// runtime's Q8_0 product, [`super::Kernels::matmul`]) for `n` tokens beside the CPU.
pub trait MatmulOffload {
    /// Starts the product of `w` (`rows` rows of `x.len() / n` blocks) and `x` (`n` tokens).
    /// `false`: the device does not take it (busy, `w` not where it can reach, a shape it does
    /// not run); the caller computes it on the CPU.
    fn start(&mut self, w: &[BlockQ8_0], x: &[BlockQ8_0], n: usize, rows: usize) -> bool;

    /// Waits for the product started last and writes it into `y` (`n * rows`). On an error
    /// `y` is unspecified and the caller computes the product on the CPU.
    fn finish(&mut self, y: &mut [f32]) -> Result<(), OffloadError>;
}
