//! The testbed NPU's register map: the one definition the driver ([`super::TestbedNpu`]) and the
//! device model ([`super::TestbedNpuModel`]) both use. Semantics are in the [`super`] module doc.
//!
//! All registers are 32 bits wide and accessed as aligned 32-bit words. Offsets are from the
//! base of the 4 KiB window (the base address belongs to the testbed layout, not to this crate).

use core::mem::{offset_of, size_of};

/// The register block as laid out in the window (offsets in each line; `_rsvd*` read as zero,
/// writes ignored).
#[repr(C)]
pub struct RegisterBlock {
    /// 0x000 RO: [`ID_VALUE`].
    pub id: u32,
    /// 0x004 RO: `major << 16 | minor` ([`VERSION_VALUE`]).
    pub version: u32,
    /// 0x008 RW: [`ctrl`] bits.
    pub ctrl: u32,
    /// 0x00C RO: [`status`] bits.
    pub status: u32,
    /// 0x010 RO: latched interrupt events ([`irq`] bits).
    pub irq_status: u32,
    /// 0x014 RW: interrupt enables; the line is high while `irq_status & irq_mask != 0`.
    pub irq_mask: u32,
    /// 0x018 WO: write 1s to clear those `irq_status` bits.
    pub irq_clear: u32,
    /// 0x01C RO: bytes of internal scratch (what `DUMP_SCRATCH` writes).
    pub scratch_size: u32,
    /// 0x020 RO: the SMMU stream id the NPU's DMA carries.
    pub stream_id: u32,
    /// 0x024 RO: jobs ended (done or faulted) since reset.
    pub job_count: u32,
    /// 0x028 / 0x02C RO: the last job's cycle count (cost model), low / high word.
    pub job_cycles_lo: u32,
    pub job_cycles_hi: u32,
    /// 0x030 RO: why the last job faulted ([`fault`] codes; 0 = none).
    pub fault_kind: u32,
    pub _rsvd0: u32,
    /// 0x038 / 0x03C RO: first IOVA denied (DMA faults; 0 for descriptor faults).
    pub fault_iova_lo: u32,
    pub fault_iova_hi: u32,
    /// 0x040 RW: [`mode`] of the next job.
    pub job_mode: u32,
    /// 0x044 / 0x048 / 0x04C RW: M, N, K.
    pub job_m: u32,
    pub job_n: u32,
    pub job_k: u32,
    /// 0x050 .. 0x064 RW: IOVAs of W, X, Y, low / high word each.
    pub job_w_lo: u32,
    pub job_w_hi: u32,
    pub job_x_lo: u32,
    pub job_x_hi: u32,
    pub job_y_lo: u32,
    pub job_y_hi: u32,
    /// 0x068 RW: bytes between Y rows.
    pub job_y_stride: u32,
    pub _rsvd1: [u32; 5],
    /// 0x080 WO: write [`DOORBELL_RING`] to start the job in the job registers.
    pub doorbell: u32,
    pub _rsvd2: [u32; 991],
}

const _: () = assert!(size_of::<RegisterBlock>() == WINDOW_SIZE);

/// Size of the MMIO window.
pub const WINDOW_SIZE: usize = 0x1000;

pub const ID: usize = offset_of!(RegisterBlock, id);
pub const VERSION: usize = offset_of!(RegisterBlock, version);
pub const CTRL: usize = offset_of!(RegisterBlock, ctrl);
pub const STATUS: usize = offset_of!(RegisterBlock, status);
pub const IRQ_STATUS: usize = offset_of!(RegisterBlock, irq_status);
pub const IRQ_MASK: usize = offset_of!(RegisterBlock, irq_mask);
pub const IRQ_CLEAR: usize = offset_of!(RegisterBlock, irq_clear);
pub const SCRATCH_SIZE: usize = offset_of!(RegisterBlock, scratch_size);
pub const STREAM_ID: usize = offset_of!(RegisterBlock, stream_id);
pub const JOB_COUNT: usize = offset_of!(RegisterBlock, job_count);
pub const JOB_CYCLES_LO: usize = offset_of!(RegisterBlock, job_cycles_lo);
pub const JOB_CYCLES_HI: usize = offset_of!(RegisterBlock, job_cycles_hi);
pub const FAULT_KIND: usize = offset_of!(RegisterBlock, fault_kind);
pub const FAULT_IOVA_LO: usize = offset_of!(RegisterBlock, fault_iova_lo);
pub const FAULT_IOVA_HI: usize = offset_of!(RegisterBlock, fault_iova_hi);
pub const JOB_MODE: usize = offset_of!(RegisterBlock, job_mode);
pub const JOB_M: usize = offset_of!(RegisterBlock, job_m);
pub const JOB_N: usize = offset_of!(RegisterBlock, job_n);
pub const JOB_K: usize = offset_of!(RegisterBlock, job_k);
pub const JOB_W_LO: usize = offset_of!(RegisterBlock, job_w_lo);
pub const JOB_W_HI: usize = offset_of!(RegisterBlock, job_w_hi);
pub const JOB_X_LO: usize = offset_of!(RegisterBlock, job_x_lo);
pub const JOB_X_HI: usize = offset_of!(RegisterBlock, job_x_hi);
pub const JOB_Y_LO: usize = offset_of!(RegisterBlock, job_y_lo);
pub const JOB_Y_HI: usize = offset_of!(RegisterBlock, job_y_hi);
pub const JOB_Y_STRIDE: usize = offset_of!(RegisterBlock, job_y_stride);
pub const DOORBELL: usize = offset_of!(RegisterBlock, doorbell);

/// `ID`: 0x4E50_5531, ASCII "NPU1" with the most significant byte first.
pub const ID_VALUE: u32 = u32::from_be_bytes(*b"NPU1");
/// `VERSION`: 1.0.
pub const VERSION_VALUE: u32 = 1 << 16;
/// The major version a driver must match.
pub const VERSION_MAJOR_SHIFT: u32 = 16;
/// The value `DOORBELL` takes; other values are ignored.
pub const DOORBELL_RING: u32 = 1;
/// IOVA width of the NPU's DMA: addresses at or above `2^48` are a descriptor fault.
pub const IOVA_BITS: u32 = 48;

/// `CTRL` bits.
pub mod ctrl {
    /// RW. Jobs run only while set; clearing it does not stop a running job.
    pub const ENABLE: u32 = 1 << 0;
    /// W1, self-clearing: abort the job, clear STATUS, faults, IRQ_STATUS, JOB_COUNT, cycles
    /// and the job registers. ENABLE is cleared too. The scratch keeps its contents.
    pub const RESET: u32 = 1 << 1;
    /// W1, self-clearing: zero the whole scratch. Ignored while BUSY.
    pub const SCRUB: u32 = 1 << 2;
}

/// `STATUS` bits. Exactly one of IDLE / BUSY is set; DONE / FAULT describe the last job and
/// clear on the next doorbell or a reset.
pub mod status {
    pub const IDLE: u32 = 1 << 0;
    pub const BUSY: u32 = 1 << 1;
    pub const DONE: u32 = 1 << 2;
    pub const FAULT: u32 = 1 << 3;
}

/// `IRQ_STATUS` / `IRQ_MASK` / `IRQ_CLEAR` bits.
pub mod irq {
    /// A job completed.
    pub const DONE: u32 = 1 << 0;
    /// A job ended in a fault.
    pub const FAULT: u32 = 1 << 1;
    /// A doorbell was ignored (BUSY, or ENABLE clear).
    pub const REJECTED: u32 = 1 << 2;
    pub const ALL: u32 = DONE | FAULT | REJECTED;
}

/// `JOB_MODE` values.
pub mod mode {
    pub const Q8_0: u32 = 1;
    pub const I32: u32 = 2;
    /// Write the whole scratch to the Y IOVA (M, N, K, W, X, stride ignored).
    pub const DUMP_SCRATCH: u32 = 3;
}

/// `FAULT_KIND` codes. DMA faults below 0x100; descriptor faults are `DESCRIPTOR | JobError`.
pub mod fault {
    pub const NONE: u32 = 0;
    pub const SMMU_TRANSLATION: u32 = 1;
    pub const SMMU_PERMISSION: u32 = 2;
    pub const FIREWALL: u32 = 3;
    pub const BUS: u32 = 4;
    /// Plus the [`crate::JobError`] code.
    pub const DESCRIPTOR: u32 = 0x100;
}
