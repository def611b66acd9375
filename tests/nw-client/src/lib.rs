//! The normal-world test client's scenarios, generic over an [`Env`] (the FF-A conduit, the RX
//! buffer, and the SIMD world-switch probe) so that they also run on the host against a fake
//! partition manager. The bare-metal entry is in `main.rs`.
//!
//! Output: one line per check, `PASS name`, `FAIL name: reason` or `SKIP name: reason`, and last
//! `N passed, N failed, N skipped`. Checks that need the testbed are skipped elsewhere
//! ([`report::Report::testbed_only`]); on the testbed nothing is skipped.
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod cores;
pub mod flexmem;
mod flexnpu;
pub mod memory;
mod memory_rules;
pub mod report;
pub mod scenarios;
pub mod sealed;
pub mod serve;

use cores::{CoreJob, CoreRun, CpuOnError};
use ffa::{Conduit, Endpoint, Regs, RxTxBuffers};

/// The partition manager the client runs under (one definition, shared with xtask).
pub use testbed_layout::Spmc;

/// The result of [`Env::probe_read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// What the load returned (meaningless if it was blocked).
    pub value: u64,
    /// Whether the partition manager blocked the access; `None` if the machine cannot tell.
    pub blocked: Option<bool>,
    /// The partition manager's details of the blocked access (testbed: the `x3` of
    /// `control::TESTBED_BLOCKED_ACCESSES`), 0 if none.
    pub detail: u64,
}

/// What a scenario needs from the machine it runs on.
pub trait Env {
    type C: Conduit;

    type B: RxTxBuffers;

    fn ep(&mut self) -> &mut Endpoint<Self::C>;

    /// The endpoint and the RX/TX buffers together (memory transactions need both).
    fn ep_bufs(&mut self) -> (&mut Endpoint<Self::C>, &mut Self::B);

    /// Normal-world memory the client may give away through FF-A: (base, size), page aligned.
    fn share_window(&self) -> (u64, u64);

    /// Plain copies to and from client memory inside the share window (pages the client owns).
    fn mem_write(&mut self, pa: u64, data: &[u8]);
    fn mem_read(&mut self, pa: u64, out: &mut [u8]);

    /// One 8-byte load (`LDR Xt, [Xn]`, a syndrome the partition manager can decode) from
    /// `pa`, which may have been lent or donated away.
    fn probe_read(&mut self, pa: u64) -> Probe;

    /// One 8-byte store (`STR Xt, [Xn]`) of `value` to `pa`, which may have been lent or
    /// donated away (then the partition manager drops it). `Probe::value` is 0.
    fn probe_write(&mut self, pa: u64, value: u64) -> Probe;

    /// One 16-byte pair access (`LDP` or, with `write`, `STP` of two words of `value`) at `pa`:
    /// no syndrome for the partition manager (ISV = 0), so it can only skip it.
    /// `Probe::value` is the first loaded word. `blocked: None` where the machine cannot tell.
    fn probe_pair(&mut self, pa: u64, write: bool, value: u64) -> Probe {
        let _ = (pa, write, value);
        Probe {
            value: 0,
            blocked: None,
            detail: 0,
        }
    }

    /// `DC CIVAC` of the line at `pa` (a page that may be secured away). QEMU itself runs cache
    /// maintenance without a translation; the testbed traps it and reports a blocked one.
    fn probe_clean(&mut self, pa: u64) -> Probe {
        let _ = pa;
        Probe {
            value: 0,
            blocked: None,
            detail: 0,
        }
    }

    /// The testbed's blocked-access record (`control::TESTBED_BLOCKED_ACCESSES`: count, last
    /// address, details), e.g. after the SP's own blocked access; `None` off the testbed.
    fn blocked_accesses(&mut self) -> Option<(u64, u64, u64)> {
        None
    }

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

    /// The partition manager this run is under.
    fn spmc(&self) -> Spmc {
        Spmc::Testbed
    }

    /// Whether the machine has a second normal-world core to start (PSCI AFFINITY_INFO knows
    /// core 1). The testbed on one CPU has none, nor does a host fake.
    fn has_second_core(&mut self) -> bool {
        false
    }

    /// Starts a second core (PSCI CPU_ON), has it run `job` ([`cores::run_job`]), waits for its
    /// report and for the core to be off again (it calls CPU_OFF).
    fn on_second_core(&mut self, job: &CoreJob) -> Result<CoreRun, CpuOnError> {
        let _ = job;
        Err(CpuOnError::NoSecondCore)
    }

    /// Starts core 1 as a second writer of `pa` (a page of the share window): it stores what
    /// [`Env::second_core_store`] asks, one store per request, and nothing else.
    fn second_core_writer(&mut self, pa: u64) -> Result<(), CpuOnError> {
        let _ = pa;
        Err(CpuOnError::NoSecondCore)
    }

    /// Has the writer core store `value` (8 bytes) and waits for it to have done so.
    fn second_core_store(&mut self, value: u64) -> bool {
        let _ = value;
        false
    }

    /// Stops the writer core (it calls CPU_OFF); true once PSCI reports it off.
    fn second_core_writer_stop(&mut self) -> bool {
        false
    }

    /// Starts core 1 as a prober of `sp` from `own` ([`cores::probe_round`] in a loop) until
    /// [`Env::second_core_prober_stop`].
    fn second_core_prober(
        &mut self,
        own: ffa::PartitionId,
        sp: ffa::PartitionId,
    ) -> Result<(), CpuOnError> {
        let _ = (own, sp);
        Err(CpuOnError::NoSecondCore)
    }

    /// The prober's outcomes so far.
    fn second_core_probes(&mut self) -> cores::ProbeCounts {
        cores::ProbeCounts::default()
    }

    /// Stops the prober; its final outcomes, and whether core 1 is off again.
    fn second_core_prober_stop(&mut self) -> (cores::ProbeCounts, bool) {
        (cores::ProbeCounts::default(), false)
    }

    /// One 32-bit load from the GIC distributor's register `offset`, as the normal world sees
    /// it (bits of secure interrupts read 0). `None` where the client does not know the GIC.
    fn gicd_read32(&mut self, offset: usize) -> Option<u32> {
        let _ = offset;
        None
    }

    /// One 32-bit load from register `offset` of the testbed's emulated NPU (`LDR Wt`; the
    /// testbed emulates it, or blocks it while the NPU is secure). `None` where there is no
    /// such NPU.
    fn npu_read32(&mut self, offset: usize) -> Option<u32> {
        let _ = offset;
        None
    }

    /// One 32-bit store to register `offset` of the testbed's NPU; false where there is none.
    fn npu_write32(&mut self, offset: usize, value: u32) -> bool {
        let _ = (offset, value);
        false
    }

    /// Where the model file (GGUF) lies in the share window, if the boot configuration names
    /// one (`model_base`, `model_size`): (address, bytes).
    fn model(&self) -> Option<(u64, u64)> {
        None
    }

    /// Where sealed package `kind` lies in the share window, if the boot configuration names
    /// it (`sealed_<name>_base`, `sealed_<name>_size`): (address, bytes).
    fn sealed_package(&self, kind: testbed_layout::SealedKind) -> Option<(u64, u64)> {
        let _ = kind;
        None
    }

    /// Runs `f` on the model file's bytes in place; `None` without a model. The bytes are only
    /// borrowed for the call: the client must not lend the pages away while `f` runs.
    fn with_model_bytes<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let _ = f;
        None
    }
}
