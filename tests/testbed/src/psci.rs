//! PSCI (Arm DEN0022, v1.1) for the normal world, as the EL3 monitor answers it: VERSION,
//! FEATURES, CPU_ON, CPU_OFF, AFFINITY_INFO, SYSTEM_OFF, SYSTEM_RESET (function ids and return
//! codes are the `smccc` crate's).
//!
//! The power state of each CPU lives in atomics, because the caller and the target are
//! different CPUs: CPU_ON claims an OFF CPU (`Off -> Claimed`), writes the entry point and
//! context id, then publishes `OnPending` (Release); the target, woken by an SGI, takes them
//! (`OnPending -> On`, Acquire) and enters the normal world there. CPU_OFF returns the caller to
//! its EL3 park loop, which marks it `Off` only once it no longer uses its contexts, so a new
//! CPU_ON can never race with the CPU's way out.
//!
//! Testbed rules where PSCI leaves a choice: CPU 0 (the boot CPU, where the normal world's
//! first context runs) answers CPU_OFF with DENIED; the NPU's CPU (`testbed_layout::cpus`) is
//! always ON and CPU_ON for it is DENIED; only affinity level 0 is implemented (MPIDR Aff0 is
//! the CPU index, the other affinity fields must be 0).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use smccc::psci::error::{
    ALREADY_ON, DENIED, INVALID_ADDRESS, INVALID_PARAMETERS, NOT_SUPPORTED, ON_PENDING, SUCCESS,
};
use smccc::psci::{
    PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_32, PSCI_CPU_ON_64,
    PSCI_FEATURES, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
};
use testbed_layout::cpus;

/// PSCI 1.1.
pub const VERSION_1_1: i64 = 0x0001_0001;
/// AFFINITY_INFO's answers.
pub const AFF_ON: i64 = 0;
pub const AFF_OFF: i64 = 1;
pub const AFF_ON_PENDING: i64 = 2;

const OFF: u8 = 0;
/// A CPU_ON has claimed the CPU and is writing its entry point.
const CLAIMED: u8 = 1;
const ON_PENDING_STATE: u8 = 2;
const ON: u8 = 3;

/// Whether `w0` is in PSCI's function-id range (SMC32 0x8400_0000.. or SMC64 0xC400_0000..,
/// function numbers 0-0x1f).
pub fn is_psci(w0: u32) -> bool {
    w0 & !0x4000_001f == 0x8400_0000
}

/// What the monitor does after a PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Return this in x0 to the caller.
    Return(i64),
    /// CPU_ON succeeded: wake `cpu` (SGI), then return SUCCESS.
    Wake(usize),
    /// CPU_OFF: the caller leaves the normal world and parks.
    CpuOff,
    SystemOff,
    SystemReset,
}

struct Slot {
    state: AtomicU8,
    entry: AtomicU64,
    context: AtomicU64,
}

impl Slot {
    const fn new(state: u8) -> Slot {
        Slot {
            state: AtomicU8::new(state),
            entry: AtomicU64::new(0),
            context: AtomicU64::new(0),
        }
    }
}

/// The normal world's CPUs as PSCI sees them.
pub struct Psci {
    /// CPUs present (set once at boot, before any secondary can call).
    count: AtomicU8,
    slots: [Slot; cpus::MAX],
    /// Where a CPU_ON entry point may lie: `[start, end)` of the normal world's own RAM.
    entry_window: (u64, u64),
}

impl Psci {
    /// All CPUs but the boot CPU off, `count` = 1 until [`Psci::set_count`].
    pub const fn new(entry_window: (u64, u64)) -> Psci {
        Psci {
            count: AtomicU8::new(1),
            slots: [
                Slot::new(ON),
                Slot::new(OFF),
                Slot::new(OFF),
                Slot::new(OFF),
            ],
            entry_window,
        }
    }

    /// The machine has `n` CPUs (clamped to `cpus::MAX`); the NPU's one is ON from now on.
    pub fn set_count(&self, n: usize) {
        let n = n.clamp(1, cpus::MAX);
        self.count.store(n as u8, Ordering::Release);
        if let Some(npu) = cpus::npu_cpu(n) {
            self.slots[npu].state.store(ON, Ordering::Release);
        }
    }

    pub fn count(&self) -> usize {
        usize::from(self.count.load(Ordering::Acquire))
    }

    /// The NPU's CPU on this machine, if it has one.
    pub fn npu_cpu(&self) -> Option<usize> {
        cpus::npu_cpu(self.count())
    }

    /// The CPU index an MPIDR value names (level 0 only), if it exists.
    fn target(&self, mpidr: u64) -> Option<usize> {
        // Aff3 [39:32], Aff2 [23:16], Aff1 [15:8] must be 0; Aff0 is the index.
        if mpidr & 0xff_00ff_ff00 != 0 {
            return None;
        }
        let i = (mpidr & 0xff) as usize;
        (i < self.count()).then_some(i)
    }

    /// Answers one PSCI call from normal-world CPU `caller`; `x` = x0..x3 of the call.
    pub fn call(&self, caller: usize, x: [u64; 4]) -> Outcome {
        let fid = x[0] as u32;
        let arg = |i: usize| {
            if fid & 0x4000_0000 == 0 {
                x[i] & 0xffff_ffff
            } else {
                x[i]
            }
        };
        match fid {
            PSCI_VERSION => Outcome::Return(VERSION_1_1),
            PSCI_FEATURES => Outcome::Return(if Self::supported(x[1] as u32) {
                SUCCESS.into()
            } else {
                NOT_SUPPORTED.into()
            }),
            PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => self.cpu_on(arg(1), arg(2), arg(3)),
            PSCI_CPU_OFF => {
                if caller == 0 {
                    Outcome::Return(DENIED.into())
                } else {
                    Outcome::CpuOff
                }
            }
            PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => {
                Outcome::Return(self.affinity_info(arg(1), arg(2)))
            }
            PSCI_SYSTEM_OFF => Outcome::SystemOff,
            PSCI_SYSTEM_RESET => Outcome::SystemReset,
            _ => Outcome::Return(NOT_SUPPORTED.into()),
        }
    }

    fn supported(fid: u32) -> bool {
        matches!(
            fid,
            PSCI_VERSION
                | PSCI_FEATURES
                | PSCI_CPU_ON_32
                | PSCI_CPU_ON_64
                | PSCI_CPU_OFF
                | PSCI_AFFINITY_INFO_32
                | PSCI_AFFINITY_INFO_64
                | PSCI_SYSTEM_OFF
                | PSCI_SYSTEM_RESET
        )
    }

    fn cpu_on(&self, mpidr: u64, entry: u64, context: u64) -> Outcome {
        let Some(t) = self.target(mpidr) else {
            return Outcome::Return(INVALID_PARAMETERS.into());
        };
        if Some(t) == self.npu_cpu() {
            return Outcome::Return(DENIED.into());
        }
        let (lo, hi) = self.entry_window;
        if !entry.is_multiple_of(4) || entry < lo || entry >= hi {
            return Outcome::Return(INVALID_ADDRESS.into());
        }
        let slot = &self.slots[t];
        match slot
            .state
            .compare_exchange(OFF, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                slot.entry.store(entry, Ordering::Relaxed);
                slot.context.store(context, Ordering::Relaxed);
                slot.state.store(ON_PENDING_STATE, Ordering::Release);
                Outcome::Wake(t)
            }
            Err(ON) => Outcome::Return(ALREADY_ON.into()),
            Err(_) => Outcome::Return(ON_PENDING.into()),
        }
    }

    fn affinity_info(&self, mpidr: u64, level: u64) -> i64 {
        if level != 0 {
            return INVALID_PARAMETERS.into();
        }
        let Some(t) = self.target(mpidr) else {
            return INVALID_PARAMETERS.into();
        };
        match self.slots[t].state.load(Ordering::Acquire) {
            OFF => AFF_OFF,
            ON => AFF_ON,
            _ => AFF_ON_PENDING,
        }
    }

    /// The target's side of CPU_ON: the entry point and context id if a CPU_ON is pending for
    /// `cpu` (it is ON from now on).
    pub fn take_start(&self, cpu: usize) -> Option<(u64, u64)> {
        let slot = self.slots.get(cpu)?;
        slot.state
            .compare_exchange(ON_PENDING_STATE, ON, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some((
            slot.entry.load(Ordering::Relaxed),
            slot.context.load(Ordering::Relaxed),
        ))
    }

    /// `cpu` has left the normal world after CPU_OFF and parks: it may be turned on again.
    pub fn parked(&self, cpu: usize) {
        if let Some(s) = self.slots.get(cpu) {
            s.state.store(OFF, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIN: (u64, u64) = (0x4000_0000, 0x4800_0000);

    fn psci(n: usize) -> Psci {
        let p = Psci::new(WIN);
        p.set_count(n);
        p
    }

    fn on(p: &Psci, mpidr: u64, entry: u64) -> Outcome {
        p.call(0, [u64::from(PSCI_CPU_ON_64), mpidr, entry, 0x77])
    }

    fn aff(p: &Psci, mpidr: u64) -> i64 {
        match p.call(0, [u64::from(PSCI_AFFINITY_INFO_64), mpidr, 0, 0]) {
            Outcome::Return(v) => v,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn version_and_features() {
        let p = psci(3);
        assert_eq!(
            p.call(0, [u64::from(PSCI_VERSION), 0, 0, 0]),
            Outcome::Return(VERSION_1_1)
        );
        let feat = |f: u32| p.call(0, [u64::from(PSCI_FEATURES), u64::from(f), 0, 0]);
        assert_eq!(feat(PSCI_CPU_ON_64), Outcome::Return(0));
        assert_eq!(feat(PSCI_SYSTEM_RESET), Outcome::Return(0));
        assert_eq!(feat(0x8400_0001), Outcome::Return(NOT_SUPPORTED.into()));
        assert_eq!(feat(0x1234), Outcome::Return(NOT_SUPPORTED.into()));
        assert!(is_psci(0x8400_0000) && is_psci(0xC400_0003) && is_psci(0x8400_001f));
        assert!(!is_psci(0x8400_0020) && !is_psci(0x8400_ff00) && !is_psci(0x8500_0000));
    }

    #[test]
    fn cpu_on_lifecycle() {
        let p = psci(3);
        assert_eq!(aff(&p, 1), AFF_OFF);
        assert_eq!(aff(&p, 0), AFF_ON);
        // CPU 2 is the NPU's: on, and not the normal world's.
        assert_eq!(aff(&p, 2), AFF_ON);
        assert_eq!(on(&p, 2, WIN.0), Outcome::Return(DENIED.into()));
        assert_eq!(on(&p, 1, WIN.0 + 0x100), Outcome::Wake(1));
        assert_eq!(aff(&p, 1), AFF_ON_PENDING);
        assert_eq!(on(&p, 1, WIN.0), Outcome::Return(ON_PENDING.into()));
        assert_eq!(p.take_start(1), Some((WIN.0 + 0x100, 0x77)));
        assert_eq!(p.take_start(1), None);
        assert_eq!(aff(&p, 1), AFF_ON);
        assert_eq!(on(&p, 1, WIN.0), Outcome::Return(ALREADY_ON.into()));
        assert_eq!(on(&p, 0, WIN.0), Outcome::Return(ALREADY_ON.into()));
        assert_eq!(
            p.call(1, [u64::from(PSCI_CPU_OFF), 0, 0, 0]),
            Outcome::CpuOff
        );
        // Still ON until the CPU has parked.
        assert_eq!(aff(&p, 1), AFF_ON);
        p.parked(1);
        assert_eq!(aff(&p, 1), AFF_OFF);
        assert_eq!(on(&p, 1, WIN.0), Outcome::Wake(1));
    }

    #[test]
    fn bad_arguments() {
        let p = psci(2);
        // No NPU CPU on two CPUs: CPU 1 is the normal world's.
        assert_eq!(p.npu_cpu(), None);
        assert_eq!(on(&p, 2, WIN.0), Outcome::Return(INVALID_PARAMETERS.into()));
        assert_eq!(
            on(&p, 1 << 8 | 1, WIN.0),
            Outcome::Return(INVALID_PARAMETERS.into())
        );
        assert_eq!(on(&p, 1, WIN.1), Outcome::Return(INVALID_ADDRESS.into()));
        assert_eq!(
            on(&p, 1, WIN.0 + 2),
            Outcome::Return(INVALID_ADDRESS.into())
        );
        assert_eq!(
            on(&p, 1, 0x0e00_0000),
            Outcome::Return(INVALID_ADDRESS.into())
        );
        assert_eq!(aff(&p, 1), AFF_OFF);
        assert_eq!(aff(&p, 9), INVALID_PARAMETERS.into());
        assert_eq!(
            p.call(0, [u64::from(PSCI_AFFINITY_INFO_64), 1, 1, 0]),
            Outcome::Return(INVALID_PARAMETERS.into())
        );
        assert_eq!(
            p.call(0, [u64::from(PSCI_CPU_OFF), 0, 0, 0]),
            Outcome::Return(DENIED.into())
        );
        // SMC32 CPU_ON ignores the upper halves of its arguments.
        assert_eq!(
            p.call(
                0,
                [u64::from(PSCI_CPU_ON_32), 0xffff_ffff_0000_0001, WIN.0, 0]
            ),
            Outcome::Wake(1)
        );
        let one = psci(1);
        assert_eq!(
            on(&one, 1, WIN.0),
            Outcome::Return(INVALID_PARAMETERS.into())
        );
    }
}
