//! Flex-NPU messages (DESIGN.md sec. 7): the normal world hands the NPU to the SP and takes it
//! back, and asks for a secure GEMM on it (the testbed's check that secure jobs run, confined,
//! beside the SP's CPU work). The commands are [`crate::Command::NpuAcquire`],
//! [`crate::Command::NpuRelease`] and [`crate::Command::NpuGemm`].

/// Why the SP refused a Flex-NPU command (`Status::Npu` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum NpuFault {
    /// The platform gives the SP no NPU (its manifest grants no `npu`, `smmu` and `tzpc`).
    NoNpu = 1,
    /// `NpuAcquire` while the NPU is the SP's already.
    AlreadySecure = 2,
    /// `NpuRelease` or `NpuGemm` while the NPU is the normal world's.
    NotSecure = 3,
    /// The normal world did not drain its jobs: the NPU was busy when the SP took it.
    NotIdle = 4,
    /// The SMMU refused the programming (command queue error, no secure interface).
    Smmu = 5,
    /// The NPU did not answer as the testbed NPU (wrong id) or did not finish in time.
    Device = 6,
    /// The GEMM's buffers do not fit the region, or its shape is not one the NPU runs.
    BadShape = 7,
    /// `NpuGemm` on a region that is not secured Flex-Mem.
    NotSecured = 8,
    /// The SP's heap could not hold the job's reference copy or the SMMU tables.
    NoMemory = 9,
}

impl NpuFault {
    pub fn from_u64(v: u64) -> Option<Self> {
        use NpuFault::*;
        Some(match v {
            1 => NoNpu,
            2 => AlreadySecure,
            3 => NotSecure,
            4 => NotIdle,
            5 => Smmu,
            6 => Device,
            7 => BadShape,
            8 => NotSecured,
            9 => NoMemory,
            _ => return None,
        })
    }
}

/// The `NpuAcquire` / `NpuRelease` reply: `[OK, ticks, switches, jobs]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpuSwitch {
    /// Counter ticks the switch took inside the SP (CNTPCT_EL0).
    pub ticks: u64,
    /// Switches (either way) since start-up, this one included.
    pub switches: u64,
    /// Secure jobs run since start-up.
    pub jobs: u64,
}

/// Where `NpuGemm`'s region appears to the NPU (the IOVA of its byte 0), so `fault_iova`
/// says which page a faulting job reached for.
pub const GEMM_IOVA_BASE: u64 = 0x1000_0000;

/// `NpuGemm` flags.
pub mod gemm_flags {
    /// Aim the job's output one page past what the SP's SMMU tables map (a hostile descriptor
    /// from the SP's own side): the job must end in a fault, nothing written.
    pub const OUTSIDE_STE: u32 = 1 << 0;
}

/// `[NPU_GEMM, region, m, n, k, seed, flags]`: a Q8_0 GEMM on the NPU over secured Flex-Mem
/// `region` (W at offset 0, X after it, Y after that on a page boundary), W and X made by
/// the SP from `seed`, with the same product computed on the SP's CPU while the NPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpuGemmArgs {
    pub region: u32,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub seed: u32,
    pub flags: u32,
}

/// The `NpuGemm` reply (DIRECT_REQ2: 10 registers): `[OK, mismatches, fault kind, fault
/// iova, npu start, npu end, cpu start, cpu end, job cycles, counter Hz]`. Times are counter
/// ticks; `npu end` is when the SP saw the job end (it polls between rows of its own work).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NpuGemmResult {
    /// Outputs whose bits differ from the CPU kernel's (0: bit-identical).
    pub mismatches: u32,
    /// 0, or the NPU's fault kind (`npu_driver::testbed` FAULT_KIND) if the job faulted.
    pub fault_kind: u32,
    pub fault_iova: u64,
    pub npu_start: u64,
    pub npu_end: u64,
    pub cpu_start: u64,
    pub cpu_end: u64,
    pub cycles: u64,
    pub counter_hz: u64,
}

impl NpuGemmResult {
    pub const REGS: usize = 9;

    pub fn to_regs(&self) -> [u64; Self::REGS] {
        [
            u64::from(self.mismatches),
            u64::from(self.fault_kind),
            self.fault_iova,
            self.npu_start,
            self.npu_end,
            self.cpu_start,
            self.cpu_end,
            self.cycles,
            self.counter_hz,
        ]
    }

    pub fn from_regs(r: &[u64; Self::REGS]) -> Self {
        Self {
            mismatches: r[0] as u32,
            fault_kind: r[1] as u32,
            fault_iova: r[2],
            npu_start: r[3],
            npu_end: r[4],
            cpu_start: r[5],
            cpu_end: r[6],
            cycles: r[7],
            counter_hz: r[8],
        }
    }

    /// Ticks during which the NPU's job and the SP's CPU work both ran.
    pub fn overlap_ticks(&self) -> u64 {
        let start = self.npu_start.max(self.cpu_start);
        let end = self.npu_end.min(self.cpu_end);
        end.saturating_sub(start)
    }
}
