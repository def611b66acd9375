//! NPU backends behind one trait: the testbed's emulated int8 matmul NPU and the RK3588 RKNPU.
//!
//! Flex-NPU (DESIGN.md sec. 7) time-multiplexes the NPU between the worlds. While it is secure,
//! the partition submits int8 GEMM jobs whose buffers live in Flex-Mem, addressed by IOVA (the
//! address the NPU's DMA issues, translated by the SMMU / Rockchip IOMMU and checked by the
//! memory firewall). Before the NPU goes back to the normal world its internal buffers are
//! scrubbed, so the next owner finds nothing of the secure jobs.
//!
//! # The interface
//! [`Npu`] is what the engine sees of every backend: [`Npu::submit`] a [`Job`], [`Npu::poll`] or
//! [`Npu::wait`] for it (with [`Npu::irq_pending`] / [`Npu::clear_irq`] as the interrupt
//! hook), [`Npu::reset`], [`Npu::scrub`] of the internal buffers, and fault reporting through
//! [`NpuError::Fault`] / [`Npu::last_fault`]. Errors are data ([`NpuError`], [`JobError`],
//! [`FaultKind`]), never panics.
//!
//! A [`GemmJob`] multiplies `M x K` activations `X` by `N x K` weights `W` (both row-major, one
//! row per output column of `Y`) into `Y`, `M` rows of `N` values, `y_stride` bytes apart:
//! `Y[m][n] = sum_k W[n][k] * X[m][k]`. [`Mode`] says what the bytes are:
//!
//! - [`Mode::Q8_0`]: `W` and `X` are ggml `block_q8_0` rows (`K / 32` blocks of an fp16 scale
//!   followed by 32 int8, 34 bytes a block, rows contiguous, as in a GGUF Q8_0 tensor and as
//!   `llm-runtime` quantizes activations); `Y` is f32.
//! - [`Mode::I32`]: `W` and `X` are plain int8, `Y` is int32 (what RKNPU does natively).
//!
//! [`Job::DumpScratch`] copies the NPU's internal scratch buffer out to an IOVA (testbed only): a
//! test shows with it that the next owner reads zeros if, and only if, the scrub happened.
//!
//! # Q8_0: bit-identical to the runtime's CPU kernel
//! The testbed NPU computes each output exactly as `llm-runtime`'s scalar Q8_0 kernel
//! (`llm-runtime/src/kernels/scalar.rs`, `dot_row`), which is the definition every runtime path
//! matches:
//!
//! ```text
//! acc = 0.0f32
//! for b in 0..K/32 (in order):
//!     s  = sum_{j<32} (w.qs[j] as i32) * (x.qs[j] as i32)      // exact int32
//!     d  = f16_to_f32(w.d) * f16_to_f32(x.d)                    // one f32 rounding
//!     acc = acc + (s as f32) * d                                 // two f32 roundings, no FMA
//! Y[m][n] = acc
//! ```
//!
//! (`matvec_q8_0` and the scalar `matmul_rows` both reduce each output with `dot_row`.)
//! The fp16 -> f32 conversion is exact ([`q8::f16_to_f32`], checked against the `half` crate
//! for all 65,536 inputs), the int32 sums cannot overflow (32 * 128 * 128 < 2^20), and Rust never
//! contracts `a + b * c` into a fused multiply-add, so the f32 result is bit for bit the one the
//! CPU computes. The host tests compare against `llm-runtime` itself on random data.
//! An RKNPU cannot do this (it has no per-32-block scales): it runs [`Mode::I32`] only.
//!
//! # Backends
//! - [`testbed`]: the emulated NPU of the QEMU testbed. The register map (one module shared by
//!   driver and device model), the job lifecycle and the fault semantics are specified there;
//!   [`testbed::TestbedNpu`] is the driver, [`testbed::TestbedNpuModel`] the device, which the
//!   testbed firmware runs on a CPU of its own.
//! - [`rknpu`]: RK3588 RKNPU (3 cores): PC/CNA/CORE/DPU registers, the register-command
//!   (regcmd) builder for an int8 matmul, the split of a GEMM across the cores, and the
//!   [`rknpu::Rknpu`] backend. Everything about real RKNPU behaviour is unverified without a
//!   board; the module doc says what comes from where.
//!
//! # Files
//! | file | what |
//! |---|---|
//! | `lib.rs` | [`Npu`], [`Job`], [`GemmJob`] and its validation ([`GemmJob::sizes`]), errors |
//! | `q8.rs` | `block_q8_0` byte arithmetic in the runtime's order, fp16 -> f32 |
//! | `testbed.rs` | the testbed NPU's specification (register map, lifecycle, faults), [`testbed::Dma`], [`testbed::NpuBus`], [`testbed::MmioBus`] |
//! | `testbed/regs.rs` | the register map, `#[repr(C)]` block + offsets (shared by driver and model) |
//! | `testbed/driver.rs` | [`testbed::TestbedNpu`] |
//! | `testbed/model.rs` | [`testbed::TestbedNpuModel`] |
//! | `rknpu.rs` | [`rknpu::Rknpu`], what is unverified |
//! | `rknpu/regs.rs`, `regcmd.rs`, `layout.rs`, `plan.rs` | RKNPU registers, regcmd lists, operand layouts, the split over cores |
//!
//! `no_std`, no allocation; everything runs in host `cargo test` and builds for
//! `aarch64-unknown-none`. The only `unsafe` is [`testbed::MmioBus`]'s volatile access.
#![no_std]

pub mod q8;
pub mod rknpu;
pub mod testbed;

use core::fmt;

/// What the bytes of a [`GemmJob`] are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `W`, `X`: rows of ggml `block_q8_0`; `Y`: f32. `K` is a multiple of 32.
    Q8_0,
    /// `W`, `X`: int8; `Y`: int32.
    I32,
}

/// One int8 GEMM: `Y[m][n] = sum_k W[n][k] * X[m][k]` (see [`Mode`] for the element formats).
///
/// All addresses are IOVAs (what the NPU's DMA issues). `Y` row `m` starts at
/// `y + m * y_stride`; each row holds `N` 4-byte values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmJob {
    pub mode: Mode,
    /// Rows of `X` and `Y` (tokens).
    pub m: u32,
    /// Rows of `W`, columns of `Y` (output features).
    pub n: u32,
    /// Reduction length (input features), in elements.
    pub k: u32,
    pub w: u64,
    pub x: u64,
    pub y: u64,
    /// Bytes from one `Y` row to the next: at least `4 * N`, a multiple of 4.
    pub y_stride: u32,
}

/// Byte sizes of a valid [`GemmJob`]'s buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmSizes {
    /// Bytes of one `W` or `X` row (`K / 32 * 34` for Q8_0, `K` for I32).
    pub row_bytes: u64,
    /// `N * row_bytes`.
    pub w_bytes: u64,
    /// `M * row_bytes`.
    pub x_bytes: u64,
    /// `(M - 1) * y_stride + 4 * N`: the span of `Y` from its first to its last byte written.
    pub y_bytes: u64,
}

impl GemmJob {
    /// Dense output (`y_stride = 4 * n`).
    pub fn dense(mode: Mode, m: u32, n: u32, k: u32, w: u64, x: u64, y: u64) -> Self {
        Self {
            mode,
            m,
            n,
            k,
            w,
            x,
            y,
            y_stride: n.saturating_mul(4),
        }
    }

    /// Checks the descriptor's shape and that every buffer fits below `2^iova_bits`, with
    /// checked arithmetic; returns the buffer sizes. The testbed device runs the same check
    /// (the register values it was given) before any DMA.
    pub fn sizes(&self, iova_bits: u32) -> Result<GemmSizes, JobError> {
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(JobError::ZeroDimension);
        }
        let row_bytes = match self.mode {
            Mode::Q8_0 => {
                if !self.k.is_multiple_of(q8::QK8_0 as u32) {
                    return Err(JobError::KNotBlockMultiple);
                }
                u64::from(self.k / q8::QK8_0 as u32) * q8::BLOCK_BYTES as u64
            }
            Mode::I32 => u64::from(self.k),
        };
        let y_row = 4 * u64::from(self.n);
        if u64::from(self.y_stride) < y_row {
            return Err(JobError::StrideTooSmall);
        }
        if !self.y_stride.is_multiple_of(4) || !self.y.is_multiple_of(4) {
            return Err(JobError::Unaligned);
        }
        let w_bytes = u64::from(self.n)
            .checked_mul(row_bytes)
            .ok_or(JobError::Overflow)?;
        let x_bytes = u64::from(self.m)
            .checked_mul(row_bytes)
            .ok_or(JobError::Overflow)?;
        let y_bytes = u64::from(self.m - 1)
            .checked_mul(u64::from(self.y_stride))
            .and_then(|v| v.checked_add(y_row))
            .ok_or(JobError::Overflow)?;
        let limit = 1u64.checked_shl(iova_bits).unwrap_or(u64::MAX);
        for (base, len) in [(self.w, w_bytes), (self.x, x_bytes), (self.y, y_bytes)] {
            match base.checked_add(len) {
                Some(end) if end <= limit => {}
                _ => return Err(JobError::Overflow),
            }
        }
        Ok(GemmSizes {
            row_bytes,
            w_bytes,
            x_bytes,
            y_bytes,
        })
    }
}

/// Work for an NPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Job {
    Gemm(GemmJob),
    /// Writes the whole internal scratch buffer ([`Npu::scratch_size`] bytes) to `dst`.
    DumpScratch {
        dst: u64,
    },
}

/// Why a job descriptor is refused (by the driver before it reaches the device, or by the
/// testbed device itself, before any DMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum JobError {
    /// The mode register holds no known mode.
    BadMode = 1,
    /// `M`, `N` or `K` is zero.
    ZeroDimension = 2,
    /// Q8_0 with `K` not a multiple of 32.
    KNotBlockMultiple = 3,
    /// A buffer's end overflows 64 bits or lies beyond the NPU's IOVA range.
    Overflow = 4,
    /// `y_stride < 4 * N`.
    StrideTooSmall = 5,
    /// `Y` or `y_stride` is not 4-byte aligned.
    Unaligned = 6,
    /// The shape exceeds what the backend can hold (testbed: one row over a quarter of the
    /// scratch; RKNPU: the matrices over the CBUF or a register field, see [`rknpu::layout`]).
    TooLarge = 7,
    /// The backend cannot run this shape at all (RKNPU: `M` not 1 or a multiple of 4, `K` not
    /// a multiple of 32, `N` not a multiple of 32, or `Y` not dense).
    BackendShape = 8,
}

impl JobError {
    pub const ALL: [JobError; 8] = [
        JobError::BadMode,
        JobError::ZeroDimension,
        JobError::KNotBlockMultiple,
        JobError::Overflow,
        JobError::StrideTooSmall,
        JobError::Unaligned,
        JobError::TooLarge,
        JobError::BackendShape,
    ];

    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// What ended a job early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The SMMU (or IOMMU) found no translation for the IOVA.
    SmmuTranslation,
    /// A translation exists but forbids the access (e.g. a write to a read-only page).
    SmmuPermission,
    /// The memory firewall (TZC-400 / FIREWALL_DDR) denied the access.
    Firewall,
    /// Any other bus error (RKNPU: `DMA_READ_ERROR` / `DMA_WRITE_ERROR`).
    Bus,
    /// The device refused the descriptor (before any DMA).
    Descriptor(JobError),
    /// A fault code this driver does not know (a newer device, or a broken one).
    Unknown(u32),
}

/// A job's fault: what, and where (the first IOVA denied, when the device reports one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    pub kind: FaultKind,
    pub iova: Option<u64>,
}

/// A finished job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobDone {
    /// The device's cycle count for the job (testbed: its cost model, see [`testbed`]; RKNPU:
    /// not available, 0).
    pub cycles: u64,
}

/// Something a backend cannot do at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unsupported {
    Mode(Mode),
    DumpScratch,
    /// The backend was configured without what a scrub needs (RKNPU: its zero buffers).
    Scrub,
}

/// Where the operand bytes of a [`GemmJob`] are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperandLayout {
    /// Row-major, as described on [`GemmJob`].
    RowMajor,
    /// RKNPU's native tiled layouts (see [`rknpu::layout`]): the caller packs `W` and `X` and
    /// unpacks `Y` with those helpers.
    Rknpu,
}

/// What went wrong, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NpuError {
    /// A job is still running: nothing new is accepted until it ends (or a reset).
    Busy,
    /// The job ended in a fault; nothing was written after the first denied access.
    Fault(Fault),
    /// The device did not finish (or acknowledge a reset / scrub) within the poll budget.
    Timeout,
    /// The descriptor is invalid; it never reached the device.
    BadJob(JobError),
    /// This backend cannot run the job at all.
    Unsupported(Unsupported),
    /// `poll` / `wait` with no job submitted since the last completion.
    NoJob,
    /// The device at the address is not the expected one (ID or VERSION register).
    WrongDevice { id: u32, version: u32 },
    /// The device refused the doorbell although the driver saw it idle (it was disabled or
    /// busy behind the driver's back).
    Rejected,
}

impl From<JobError> for NpuError {
    fn from(e: JobError) -> Self {
        NpuError::BadJob(e)
    }
}

impl fmt::Display for NpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpuError::Busy => write!(f, "NPU busy"),
            NpuError::Fault(Fault {
                kind,
                iova: Some(a),
            }) => {
                write!(f, "NPU job fault {kind:?} at IOVA {a:#x}")
            }
            NpuError::Fault(Fault { kind, iova: None }) => write!(f, "NPU job fault {kind:?}"),
            NpuError::Timeout => write!(f, "NPU timed out"),
            NpuError::BadJob(e) => write!(f, "bad NPU job: {e:?}"),
            NpuError::Unsupported(u) => write!(f, "NPU backend cannot run {u:?}"),
            NpuError::NoJob => write!(f, "no NPU job in flight"),
            NpuError::WrongDevice { id, version } => {
                write!(f, "not the expected NPU (id {id:#x}, version {version:#x})")
            }
            NpuError::Rejected => write!(f, "NPU refused the doorbell"),
        }
    }
}

/// One interface for every NPU backend.
///
/// One job at a time: [`Npu::submit`] while a job runs returns [`NpuError::Busy`]. A job ends
/// when [`Npu::poll`] returns `Ok(Some(_))` or an error; after that the next job may be
/// submitted.
pub trait Npu {
    /// Aborts whatever runs, clears status, faults and interrupts, and leaves the NPU ready for
    /// jobs. Does not scrub: internal buffers keep their contents.
    fn reset(&mut self) -> Result<(), NpuError>;

    /// Validates `job` and starts it. Nothing reaches the device if validation fails.
    fn submit(&mut self, job: &Job) -> Result<(), NpuError>;

    /// `Ok(None)` while the job runs; `Ok(Some(done))` once it finished, `Err(Fault)` if it
    /// faulted, `Err(NoJob)` if nothing is in flight.
    fn poll(&mut self) -> Result<Option<JobDone>, NpuError>;

    /// Polls up to `max_polls` times.
    fn wait(&mut self, max_polls: u32) -> Result<JobDone, NpuError> {
        for _ in 0..max_polls {
            if let Some(done) = self.poll()? {
                return Ok(done);
            }
            core::hint::spin_loop();
        }
        Err(NpuError::Timeout)
    }

    /// Zeroes the NPU's internal buffers (scratch / CBUF). Refused while a job runs.
    fn scrub(&mut self) -> Result<(), NpuError>;

    /// The interrupt-status hook: whether the NPU asserts its interrupt (a job ended).
    fn irq_pending(&mut self) -> bool;

    /// Acknowledges the interrupt (the job's outcome stays readable through `poll` until the
    /// next job).
    fn clear_irq(&mut self);

    /// The fault that ended the last job, if it faulted.
    fn last_fault(&self) -> Option<Fault>;

    /// Bytes of internal scratch a [`Job::DumpScratch`] writes (0 where unsupported).
    fn scratch_size(&self) -> usize;

    /// How the operands of a [`GemmJob`] must be laid out in memory.
    fn operand_layout(&self) -> OperandLayout;
}
