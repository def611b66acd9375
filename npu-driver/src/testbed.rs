//! The QEMU testbed's emulated int8 matmul NPU: its MMIO interface, its driver
//! ([`TestbedNpu`]) and the device itself ([`TestbedNpuModel`]).
//!
//! The testbed (DESIGN.md sec. 9) traps the NPU's MMIO window at stage 2 and forwards each
//! access to a [`TestbedNpuModel`] running on a CPU of its own; the model's DMA goes through the
//! testbed's SMMU (the NPU's stream id) and memory firewall, which may deny it. The register map
//! below is defined once, in [`regs`], and used by both sides.
//!
//! # Register map (4 KiB window, 32-bit registers, base from the testbed layout)
//!
//! | offset | name | access | meaning |
//! |---|---|---|---|
//! | 0x000 | ID | RO | 0x4E50_5531 ("NPU1") |
//! | 0x004 | VERSION | RO | `major << 16 \| minor`, now 1.0 |
//! | 0x008 | CTRL | RW | bit 0 ENABLE; bit 1 RESET (W1, self-clearing); bit 2 SCRUB (W1, self-clearing) |
//! | 0x00C | STATUS | RO | bit 0 IDLE, bit 1 BUSY, bit 2 DONE, bit 3 FAULT |
//! | 0x010 | IRQ_STATUS | RO | latched events: bit 0 DONE, bit 1 FAULT, bit 2 REJECTED |
//! | 0x014 | IRQ_MASK | RW | 1 = event raises the interrupt line |
//! | 0x018 | IRQ_CLEAR | WO | write 1 to clear an IRQ_STATUS bit |
//! | 0x01C | SCRATCH_SIZE | RO | bytes of internal scratch (65,536) |
//! | 0x020 | STREAM_ID | RO | the SMMU stream id of the NPU's DMA |
//! | 0x024 | JOB_COUNT | RO | jobs ended (done or faulted) since reset |
//! | 0x028 / 0x02C | JOB_CYCLES_LO / _HI | RO | the last job's cycles (cost model below) |
//! | 0x030 | FAULT_KIND | RO | 0 none, 1 SMMU translation, 2 SMMU permission, 3 firewall, 4 bus, 0x100 + [`crate::JobError`] code: bad descriptor |
//! | 0x038 / 0x03C | FAULT_IOVA_LO / _HI | RO | first IOVA denied (0 for descriptor faults) |
//! | 0x040 | JOB_MODE | RW | 1 Q8_0, 2 I32, 3 DUMP_SCRATCH |
//! | 0x044 / 0x048 / 0x04C | JOB_M / JOB_N / JOB_K | RW | the shape |
//! | 0x050 / 0x054 | JOB_W_LO / _HI | RW | IOVA of W |
//! | 0x058 / 0x05C | JOB_X_LO / _HI | RW | IOVA of X |
//! | 0x060 / 0x064 | JOB_Y_LO / _HI | RW | IOVA of Y (DUMP_SCRATCH: destination) |
//! | 0x068 | JOB_Y_STRIDE | RW | bytes between Y rows |
//! | 0x080 | DOORBELL | WO | write 1: start the job |
//!
//! Everything else reads 0 and ignores writes.
//!
//! # Job lifecycle
//! 1. The driver writes the job registers, then 1 to DOORBELL.
//! 2. If CTRL.ENABLE is set and no job is running, the device latches the job registers (later
//!    writes to them do not affect this job), clears FAULT_KIND / FAULT_IOVA / JOB_CYCLES and
//!    sets STATUS = BUSY. Otherwise it ignores the doorbell and sets IRQ_STATUS.REJECTED.
//! 3. The device validates the latched descriptor, then runs it. It ends with STATUS = IDLE |
//!    DONE and IRQ_STATUS.DONE, or STATUS = IDLE | FAULT, FAULT_KIND / FAULT_IOVA set and
//!    IRQ_STATUS.FAULT. JOB_COUNT counts both.
//! 4. The interrupt line is high while `IRQ_STATUS & IRQ_MASK != 0`; software clears events
//!    through IRQ_CLEAR.
//!
//! RESET aborts a job that has not run, returns every register to its power-on value
//! (ENABLE clear, IDLE, no events, JOB_COUNT 0) and leaves the scratch as it was. SCRUB zeroes
//! the whole scratch; it is ignored while BUSY. Both read back as 0 once done (the model
//! finishes them within the write).
//!
//! # Faults
//! - **Bad descriptor** (before any DMA; FAULT_KIND = 0x100 + code): unknown mode; M, N or K
//!   zero; Q8_0 with K not a multiple of 32; Y or the stride not 4-byte aligned; stride below
//!   `4 * N`; a buffer whose end overflows or lies at or beyond 2^48 (the IOVA width); a row
//!   (`K / 32 * 34` bytes for Q8_0, `K` for I32) over [`MAX_ROW_BYTES`] (a quarter of the
//!   scratch). Exactly [`crate::GemmJob::sizes`] plus that row limit.
//! - **DMA denied** by the SMMU (no translation, or no permission) or the firewall, or a bus
//!   error: the job stops at that access. FAULT_IOVA is the first IOVA denied. Nothing is read
//!   or written after it; bytes of the faulting write at or beyond FAULT_IOVA are not written
//!   (bytes before it may be, as page-sized bursts would).
//!
//! # How a GEMM runs (the order of DMA accesses)
//! The scratch holds a tile of `mt` X rows (at most half the scratch), a tile of `nt` W rows
//! and the `mt x nt` outputs ([`model::Tiles`]). For each X tile (one read of its contiguous
//! rows), for each W tile (one read), the outputs are computed from the scratch and written
//! back as one write per Y row segment, rows in order. So Y is written tile by tile, and for
//! `M = 1` (decode) in increasing address order. After the job the scratch still holds the
//! last X tile, W tile and outputs.
//!
//! Q8_0 outputs are f32 computed as the crate doc specifies (bit-identical to `llm-runtime`);
//! I32 outputs are int32. Both little-endian.
//!
//! # Cost model (JOB_CYCLES)
//! One cycle per 32-element block product (I32: per started 32 elements of K) plus one cycle
//! per started 64 bytes of each DMA transfer. A reproducible work measure for the engine's
//! simulator, not QEMU's time.
//!
//! # Unverified
//! Nothing here models a real NPU; it is the testbed's own device, specified by this page.

mod driver;
pub mod model;
pub mod regs;

pub use driver::TestbedNpu;
pub use model::{MAX_ROW_BYTES, SCRATCH_BYTES, TestbedNpuModel};

use crate::{FaultKind, JobError};
use core::ptr::NonNull;

/// Register access for the driver: aligned 32-bit words at byte offsets in the window.
pub trait NpuBus {
    fn read32(&mut self, offset: usize) -> u32;
    fn write32(&mut self, offset: usize, value: u32);
}

/// The window mapped as device memory in the partition's address space.
pub struct MmioBus {
    base: NonNull<regs::RegisterBlock>,
}

impl MmioBus {
    /// # Safety
    /// `base` must be the start of the testbed NPU's 4 KiB window, mapped as device memory
    /// (readable and writable) for as long as the `MmioBus` lives, and no one else may access
    /// it meanwhile.
    pub unsafe fn new(base: NonNull<regs::RegisterBlock>) -> Self {
        Self { base }
    }

    fn reg(&self, offset: usize) -> *mut u32 {
        assert!(
            offset.is_multiple_of(4) && offset < regs::WINDOW_SIZE,
            "NPU register offset {offset:#x}"
        );
        // SAFETY: `offset` is inside the 4 KiB block (checked above), so the pointer stays
        // within the mapping `new`'s caller vouched for.
        unsafe { self.base.cast::<u8>().add(offset).cast::<u32>().as_ptr() }
    }
}

impl NpuBus for MmioBus {
    fn read32(&mut self, offset: usize) -> u32 {
        let p = self.reg(offset);
        // SAFETY: `p` is an aligned register of the window `new`'s caller mapped for us alone.
        unsafe { p.read_volatile() }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        let p = self.reg(offset);
        // SAFETY: as in `read32`.
        unsafe { p.write_volatile(value) }
    }
}

/// What the device's DMA may be denied by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DmaFaultKind {
    SmmuTranslation,
    SmmuPermission,
    Firewall,
    Bus,
}

/// A denied DMA access: why, and the first IOVA denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaFault {
    pub kind: DmaFaultKind,
    pub iova: u64,
}

/// The device's path to memory (the testbed's SMMU + firewall). Whole runs of bytes per call:
/// the model never calls it per element.
pub trait Dma {
    /// Fills `buf` from `iova..`. On a fault, `buf`'s contents are unspecified.
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault>;
    /// Writes `data` at `iova..`. On a fault at `f.iova`, no byte at or beyond `f.iova` was
    /// written; bytes before it may have been.
    fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), DmaFault>;
}

impl From<DmaFaultKind> for FaultKind {
    fn from(k: DmaFaultKind) -> Self {
        match k {
            DmaFaultKind::SmmuTranslation => FaultKind::SmmuTranslation,
            DmaFaultKind::SmmuPermission => FaultKind::SmmuPermission,
            DmaFaultKind::Firewall => FaultKind::Firewall,
            DmaFaultKind::Bus => FaultKind::Bus,
        }
    }
}

/// `FAULT_KIND` value of a fault.
pub fn fault_code(kind: FaultKind) -> u32 {
    use regs::fault::*;
    match kind {
        FaultKind::SmmuTranslation => SMMU_TRANSLATION,
        FaultKind::SmmuPermission => SMMU_PERMISSION,
        FaultKind::Firewall => FIREWALL,
        FaultKind::Bus => BUS,
        FaultKind::Descriptor(e) => DESCRIPTOR + e.code(),
        FaultKind::Unknown(c) => c,
    }
}

/// The fault a `FAULT_KIND` value names.
pub fn fault_from_code(code: u32) -> FaultKind {
    use regs::fault::*;
    match code {
        SMMU_TRANSLATION => FaultKind::SmmuTranslation,
        SMMU_PERMISSION => FaultKind::SmmuPermission,
        FIREWALL => FaultKind::Firewall,
        BUS => FaultKind::Bus,
        c if c > DESCRIPTOR => match JobError::from_code(c - DESCRIPTOR) {
            Some(e) => FaultKind::Descriptor(e),
            None => FaultKind::Unknown(c),
        },
        c => FaultKind::Unknown(c),
    }
}
