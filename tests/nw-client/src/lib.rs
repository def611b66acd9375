//! The normal-world test client's scenarios, generic over an [`Env`] (the FF-A conduit, the RX
//! buffer, and the SIMD world-switch probe) so that they also run on the host against a fake
//! partition manager. The bare-metal entry is in `main.rs`.
//!
//! Output: one line per check, `PASS name` or `FAIL name: reason`, and last `N passed, N failed`.
#![cfg_attr(target_os = "none", no_std)]

pub mod report;
pub mod scenarios;

use ffa::{Conduit, Endpoint, Regs};

/// What a scenario needs from the machine it runs on.
pub trait Env {
    type C: Conduit;

    fn ep(&mut self) -> &mut Endpoint<Self::C>;

    /// Addresses of the client's TX and RX pages, as given to FFA_RXTX_MAP.
    fn rxtx(&self) -> (u64, u64);

    /// Copies the start of the RX buffer (written by the partition manager) into `out`.
    fn read_rx(&self, out: &mut [u8]);

    /// Issues the call `regs` with v0-v31 loaded from `pattern` (16 bytes each) and returns the
    /// reply registers and v0-v31 as they were after the call; `None` where the build cannot
    /// load vector registers around the call (host fakes).
    fn call_with_simd(&mut self, regs: Regs, pattern: &[u8; 512]) -> Option<(Regs, [u8; 512])>;

    /// A monotonic counter and its frequency in Hz (the generic timer), for information lines
    /// only; `None` where there is none.
    fn counter(&self) -> Option<(u64, u64)> {
        None
    }
}
