//! The testbed NPU as a device: register reads and writes (what the testbed's stage-2 trap
//! handler forwards) and [`TestbedNpuModel::run_pending`], which executes a doorbelled job
//! through a [`Dma`] (the testbed's SMMU + firewall path). Plain `no_std` logic, no allocation:
//! the testbed firmware runs it on a CPU of its own.
//!
//! Jobs stream through the internal scratch (an SRAM of [`SCRATCH_BYTES`]): a tile of `X` rows,
//! a tile of `W` rows and the tile of outputs they make, each moved by one DMA call per
//! contiguous run (whole row blocks for `X` and `W`, one call per `Y` row segment), and the
//! products are computed from the scratch. After a job the scratch still holds its last tiles:
//! only a scrub clears it.

use super::regs::{self, ctrl, irq, mode, status};
use super::{Dma, DmaFault, fault_code};
use crate::{FaultKind, GemmJob, JobError, Mode, q8};

/// Bytes of internal scratch.
pub const SCRATCH_BYTES: usize = 64 * 1024;
/// Longest `W` / `X` row a job may have: a quarter of the scratch (Q8_0: `K <= 15,392`;
/// I32: `K <= 16,384`).
pub const MAX_ROW_BYTES: u64 = (SCRATCH_BYTES / 4) as u64;

/// The job registers as the doorbell latched them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct JobRegs {
    mode: u32,
    m: u32,
    n: u32,
    k: u32,
    w: u64,
    x: u64,
    y: u64,
    y_stride: u32,
}

impl JobRegs {
    const ZERO: JobRegs = JobRegs {
        mode: 0,
        m: 0,
        n: 0,
        k: 0,
        w: 0,
        x: 0,
        y: 0,
        y_stride: 0,
    };
}

/// What ended a job: a DMA fault or a descriptor fault.
enum Stop {
    Dma(DmaFault),
    Descriptor(JobError),
}

impl From<DmaFault> for Stop {
    fn from(f: DmaFault) -> Self {
        Stop::Dma(f)
    }
}

impl From<JobError> for Stop {
    fn from(e: JobError) -> Self {
        Stop::Descriptor(e)
    }
}

/// One emulated NPU.
pub struct TestbedNpuModel {
    stream_id: u32,
    enabled: bool,
    status: u32,
    irq_status: u32,
    irq_mask: u32,
    job_count: u32,
    cycles: u64,
    fault_kind: u32,
    fault_iova: u64,
    regs: JobRegs,
    /// The job the doorbell accepted, until `run_pending` runs it.
    pending: Option<JobRegs>,
    scratch: [u8; SCRATCH_BYTES],
}

impl TestbedNpuModel {
    /// A device after power-on: disabled, idle, scratch zero. `stream_id` is what the
    /// `STREAM_ID` register reports (the testbed layout assigns it).
    pub const fn new(stream_id: u32) -> Self {
        Self {
            stream_id,
            enabled: false,
            status: status::IDLE,
            irq_status: 0,
            irq_mask: 0,
            job_count: 0,
            cycles: 0,
            fault_kind: regs::fault::NONE,
            fault_iova: 0,
            regs: JobRegs::ZERO,
            pending: None,
            scratch: [0; SCRATCH_BYTES],
        }
    }

    /// Whether the interrupt line is high.
    pub fn irq_line(&self) -> bool {
        self.irq_status & self.irq_mask != 0
    }

    /// Whether a doorbelled job waits for [`Self::run_pending`].
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// A 32-bit register read at `offset` in the window. Unknown and write-only offsets read 0.
    pub fn read32(&self, offset: usize) -> u32 {
        let r = &self.regs;
        match offset {
            regs::ID => regs::ID_VALUE,
            regs::VERSION => regs::VERSION_VALUE,
            regs::CTRL => u32::from(self.enabled) * ctrl::ENABLE,
            regs::STATUS => self.status,
            regs::IRQ_STATUS => self.irq_status,
            regs::IRQ_MASK => self.irq_mask,
            regs::SCRATCH_SIZE => SCRATCH_BYTES as u32,
            regs::STREAM_ID => self.stream_id,
            regs::JOB_COUNT => self.job_count,
            regs::JOB_CYCLES_LO => self.cycles as u32,
            regs::JOB_CYCLES_HI => (self.cycles >> 32) as u32,
            regs::FAULT_KIND => self.fault_kind,
            regs::FAULT_IOVA_LO => self.fault_iova as u32,
            regs::FAULT_IOVA_HI => (self.fault_iova >> 32) as u32,
            regs::JOB_MODE => r.mode,
            regs::JOB_M => r.m,
            regs::JOB_N => r.n,
            regs::JOB_K => r.k,
            regs::JOB_W_LO => r.w as u32,
            regs::JOB_W_HI => (r.w >> 32) as u32,
            regs::JOB_X_LO => r.x as u32,
            regs::JOB_X_HI => (r.x >> 32) as u32,
            regs::JOB_Y_LO => r.y as u32,
            regs::JOB_Y_HI => (r.y >> 32) as u32,
            regs::JOB_Y_STRIDE => r.y_stride,
            _ => 0,
        }
    }

    /// A 32-bit register write at `offset`. Read-only and unknown offsets ignore it.
    pub fn write32(&mut self, offset: usize, value: u32) {
        fn lo(v: &mut u64, w: u32) {
            *v = (*v & !0xffff_ffff) | u64::from(w);
        }
        fn hi(v: &mut u64, w: u32) {
            *v = (*v & 0xffff_ffff) | (u64::from(w) << 32);
        }
        let r = &mut self.regs;
        match offset {
            regs::CTRL => {
                if value & ctrl::RESET != 0 {
                    self.reset();
                    return;
                }
                self.enabled = value & ctrl::ENABLE != 0;
                if value & ctrl::SCRUB != 0 && self.pending.is_none() {
                    self.scratch.fill(0);
                }
            }
            regs::IRQ_MASK => self.irq_mask = value & irq::ALL,
            regs::IRQ_CLEAR => self.irq_status &= !value,
            regs::JOB_MODE => r.mode = value,
            regs::JOB_M => r.m = value,
            regs::JOB_N => r.n = value,
            regs::JOB_K => r.k = value,
            regs::JOB_W_LO => lo(&mut r.w, value),
            regs::JOB_W_HI => hi(&mut r.w, value),
            regs::JOB_X_LO => lo(&mut r.x, value),
            regs::JOB_X_HI => hi(&mut r.x, value),
            regs::JOB_Y_LO => lo(&mut r.y, value),
            regs::JOB_Y_HI => hi(&mut r.y, value),
            regs::JOB_Y_STRIDE => r.y_stride = value,
            regs::DOORBELL if value == regs::DOORBELL_RING => self.doorbell(),
            _ => {}
        }
    }

    /// Everything back to power-on state except the scratch (field by field: no 64 KiB
    /// temporaries on the firmware's stack).
    fn reset(&mut self) {
        self.enabled = false;
        self.status = status::IDLE;
        self.irq_status = 0;
        self.irq_mask = 0;
        self.job_count = 0;
        self.cycles = 0;
        self.fault_kind = regs::fault::NONE;
        self.fault_iova = 0;
        self.regs = JobRegs::ZERO;
        self.pending = None;
    }

    fn doorbell(&mut self) {
        if !self.enabled || self.pending.is_some() {
            self.irq_status |= irq::REJECTED;
            return;
        }
        self.pending = Some(self.regs);
        self.status = status::BUSY;
        self.fault_kind = regs::fault::NONE;
        self.fault_iova = 0;
        self.cycles = 0;
    }

    /// Runs the doorbelled job, if any, to its end through `dma`; returns whether one ran.
    /// Afterwards STATUS is IDLE with DONE or FAULT, IRQ_STATUS has the matching event and
    /// JOB_COUNT has grown by one.
    pub fn run_pending(&mut self, dma: &mut impl Dma) -> bool {
        let Some(job) = self.pending else {
            return false;
        };
        let mut cycles = 0u64;
        let result = self.execute(&job, dma, &mut cycles);
        self.pending = None;
        self.cycles = cycles;
        self.job_count = self.job_count.wrapping_add(1);
        match result {
            Ok(()) => {
                self.status = status::IDLE | status::DONE;
                self.irq_status |= irq::DONE;
            }
            Err(stop) => {
                let (kind, iova) = match stop {
                    Stop::Dma(f) => (FaultKind::from(f.kind), f.iova),
                    Stop::Descriptor(e) => (FaultKind::Descriptor(e), 0),
                };
                self.fault_kind = fault_code(kind);
                self.fault_iova = iova;
                self.status = status::IDLE | status::FAULT;
                self.irq_status |= irq::FAULT;
            }
        }
        true
    }

    fn execute(&mut self, j: &JobRegs, dma: &mut impl Dma, cycles: &mut u64) -> Result<(), Stop> {
        let mode = match j.mode {
            mode::Q8_0 => Mode::Q8_0,
            mode::I32 => Mode::I32,
            mode::DUMP_SCRATCH => {
                match j.y.checked_add(SCRATCH_BYTES as u64) {
                    Some(end) if end <= 1 << regs::IOVA_BITS => {}
                    _ => return Err(JobError::Overflow.into()),
                }
                *cycles += dma_cycles(SCRATCH_BYTES);
                return Ok(dma.write(j.y, &self.scratch)?);
            }
            _ => return Err(JobError::BadMode.into()),
        };
        let job = GemmJob {
            mode,
            m: j.m,
            n: j.n,
            k: j.k,
            w: j.w,
            x: j.x,
            y: j.y,
            y_stride: j.y_stride,
        };
        let sizes = job.sizes(regs::IOVA_BITS)?;
        if sizes.row_bytes > MAX_ROW_BYTES {
            return Err(JobError::TooLarge.into());
        }
        let tiles = Tiles::new(sizes.row_bytes as usize, j.m as usize, j.n as usize);
        self.gemm(&job, &tiles, dma, cycles)
    }

    fn gemm(
        &mut self,
        job: &GemmJob,
        t: &Tiles,
        dma: &mut impl Dma,
        cycles: &mut u64,
    ) -> Result<(), Stop> {
        let (m, n, rb) = (job.m as usize, job.n as usize, t.row_bytes);
        let (x_tile, rest) = self.scratch.split_at_mut(t.mt * rb);
        let (w_tile, rest) = rest.split_at_mut(t.nt * rb);
        let y_tile = &mut rest[..t.mt * t.nt * 4];
        let blocks_per_row = match job.mode {
            Mode::Q8_0 => (rb / q8::BLOCK_BYTES) as u64,
            Mode::I32 => rb.div_ceil(q8::QK8_0) as u64,
        };
        for m0 in (0..m).step_by(t.mt) {
            let mc = t.mt.min(m - m0);
            let xs = &mut x_tile[..mc * rb];
            dma.read(job.x + (m0 * rb) as u64, xs)?;
            *cycles += dma_cycles(xs.len());
            for n0 in (0..n).step_by(t.nt) {
                let nc = t.nt.min(n - n0);
                let ws = &mut w_tile[..nc * rb];
                dma.read(job.w + (n0 * rb) as u64, ws)?;
                *cycles += dma_cycles(ws.len());
                for i in 0..mc {
                    let xr = &xs[i * rb..(i + 1) * rb];
                    let out = &mut y_tile[i * nc * 4..(i + 1) * nc * 4];
                    for (wr, o) in ws.chunks_exact(rb).zip(out.chunks_exact_mut(4)) {
                        let v = match job.mode {
                            Mode::Q8_0 => q8::dot_row(wr, xr).to_le_bytes(),
                            Mode::I32 => q8::dot_i8(wr, xr).to_le_bytes(),
                        };
                        o.copy_from_slice(&v);
                    }
                }
                *cycles += (mc * nc) as u64 * blocks_per_row;
                for i in 0..mc {
                    let row = (m0 + i) as u64 * u64::from(job.y_stride);
                    let at = job.y + row + (n0 * 4) as u64;
                    dma.write(at, &y_tile[i * nc * 4..(i + 1) * nc * 4])?;
                    *cycles += dma_cycles(nc * 4);
                }
            }
        }
        Ok(())
    }
}

impl Default for TestbedNpuModel {
    fn default() -> Self {
        Self::new(0)
    }
}

/// The cost model's DMA term: one cycle per 64 bytes moved, rounded up per transfer.
fn dma_cycles(bytes: usize) -> u64 {
    bytes.div_ceil(64) as u64
}

/// How a GEMM is cut into scratch-sized tiles: `mt` rows of `X`, `nt` rows of `W`, and the
/// `mt x nt` outputs, all resident at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub row_bytes: usize,
    pub mt: usize,
    pub nt: usize,
}

impl Tiles {
    /// `row_bytes <= MAX_ROW_BYTES` (checked by the caller): `X` gets at most half the scratch,
    /// `W` rows and their outputs share the rest, so `mt, nt >= 1`.
    pub fn new(row_bytes: usize, m: usize, n: usize) -> Self {
        let mt = (SCRATCH_BYTES / 2 / row_bytes).clamp(1, m.max(1));
        let nt = ((SCRATCH_BYTES - mt * row_bytes) / (row_bytes + mt * 4)).clamp(1, n.max(1));
        Self { row_bytes, mt, nt }
    }
}
