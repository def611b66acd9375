//! RK3588 RKNPU backend: register definitions ([`regs`]), regcmd lists ([`regcmd`]), operand
//! layouts ([`layout`]), the split of a GEMM across the three cores ([`plan`]) and the
//! [`Rknpu`] driver implementing [`crate::Npu`].
//!
//! # What it does
//! An int8 GEMM (`Mode::I32`, operands packed by [`layout`]) is cut into tasks
//! ([`plan::plan`]: `N` split into 32-kernel groups across the cores, then into CBUF-sized
//! tasks). Each task is one regcmd list ([`regcmd::MatmulTask::encode`]: a 1x1 convolution on
//! CNA + CORE, int32 written back by DPU). All lists are written to the command buffer the
//! platform gives ([`RknpuConfig::cmd_iova`]), then each core is kicked with its first task
//! exactly as Linux's rocket driver does it (`rocket_job_hw_submit`):
//!
//! 1. `PC_BASE_ADDRESS` = 1;
//! 2. `CNA_S_POINTER` and `CORE_S_POINTER` = PP_EN | EXECUTER_PP_EN | PP_MODE | `0x1000_0000 *
//!    core`;
//! 3. `PC_BASE_ADDRESS` = the task's regcmd IOVA; `PC_REGISTER_AMOUNTS` = `(entries + 1) / 2 -
//!    1`;
//! 4. `INTERRUPT_MASK` = DPU_0 | DPU_1, `INTERRUPT_CLEAR` = the same;
//! 5. `TASK_CON` = bit 14 | TASK_COUNT_CLEAR | TASK_PP_EN | TASK_NUMBER(1);
//!    `TASK_DMA_BASE_ADDR` = 0; `OPERATION_ENABLE` = 1.
//!
//! A task is done when `INTERRUPT_RAW_STATUS` shows DPU_0 or DPU_1 (rocket's hard IRQ
//! handler). The driver then masks the interrupt, writes `OPERATION_ENABLE` = 0 and
//! `INTERRUPT_CLEAR` = 0x1ffff (rocket's threaded handler) and kicks the core's next task, or
//! marks the core finished. [`crate::Npu::clear_irq`] is that handler; [`crate::Npu::poll`]
//! runs it too and reports the job once every core is finished.
//!
//! Faults: `DMA_READ_ERROR` / `DMA_WRITE_ERROR` in the raw status (rocket only warns on them)
//! end the job with [`crate::FaultKind::Bus`] and no IOVA: all cores are stopped. IOMMU page
//! faults are reported by the Rockchip IOMMU (`smmu::rkiommu`), which the platform reads.
//!
//! Scrub: the CBUF cannot be read or cleared through any documented register, so
//! [`crate::Npu::scrub`] overwrites it: every core runs a 32 x 2048 x 160 matmul of zero
//! features and zero weights ([`SCRUB_TASK`]), which fills its 2 data banks and 10 weight banks
//! (all 12) with zeros. It needs a zeroed buffer and an output buffer ([`ScrubBuffers`]).
//!
//! Reset: this window has no reset register. [`crate::Npu::reset`] stops every core
//! (`OPERATION_ENABLE` = 0, interrupts masked and cleared) and forgets the job; the full reset
//! rocket does (`rocket_core_reset`: the SRST_A_RKNN / SRST_H_RKNN resets in the CRU) belongs to
//! the platform.
//!
//! # Sources
//! Register offsets and fields: Linux `drivers/accel/rocket/rocket_registers.h` (Mesa
//! `registers.xml`) and mtx512/rk3588-npu `include/npu_hw.h`. The matmul register values:
//! mtx512 `src/npu_matmul.c` (`gen_matmul_task`, `gen_matmul_int8`). regcmd format and tail:
//! Mesa `src/gallium/drivers/rocket/rkt_regcmd.c`; chaining: Mesa `rkt_ml.c`
//! (`compile_operation`). Submission and IRQ: Linux `drivers/accel/rocket/rocket_job.c`.
//! Everything was re-derived here; no code was copied.
//!
//! # Unverified (no board here)
//! Everything about real hardware behaviour: that these register values produce a correct
//! int32 matmul for every shape [`layout::check`] admits (mtx512 reports it for its test
//! shapes, with the vendor kernel driver, not rocket), the packed layouts, that a task's DPU
//! interrupt means its output is in memory, that DMA errors show up as the raw-status bits,
//! that the zero job really overwrites all of the CBUF (and that nothing else inside the NPU
//! keeps data), and whether the NPU can be made a secure-only DMA master at all
//! (platform-facts.md sec. 9). The host tests check this code against the sources' numbers
//! and a register model written from the same reading, not against silicon.

pub mod layout;
pub mod plan;
pub mod regcmd;
pub mod regs;

use crate::{
    Fault, FaultKind, GemmJob, Job, JobDone, JobError, Mode, Npu, NpuError, OperandLayout,
    Unsupported,
};
use plan::{MAX_TASKS_PER_CORE, Plan};
use regcmd::{MatmulTask, TASK_ENTRIES, TASK_STRIDE};
use regs::{CORES, cna, core, int, pc, s_pointer};

/// Register and command-buffer access for the driver.
pub trait RkBus {
    /// A 32-bit register of core `core` at `offset` from its 64 KiB base.
    fn read32(&mut self, core: usize, offset: usize) -> u32;
    fn write32(&mut self, core: usize, offset: usize, value: u32);
    /// Stores regcmd entries at byte `offset` of the command buffer (the NPU fetches them at
    /// [`RknpuConfig::cmd_iova`]` + offset`), made visible to the NPU (cleaned to memory)
    /// before the call returns. `false` if the range is outside the buffer.
    fn write_cmd(&mut self, offset: usize, entries: &[u64]) -> bool;
}

/// Buffers the CBUF scrub needs, as IOVAs the cores can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrubBuffers {
    /// At least [`SCRUB_ZERO_BYTES`] of zeros (read-only to the NPU is enough).
    pub zeros: u32,
    /// At least [`SCRUB_OUT_BYTES`] the NPU may write (the zero results land here).
    pub out: u32,
}

/// The scrub task: 2 banks of features, 10 of weights.
pub const SCRUB_TASK: (u32, u32, u32) = (32, 2048, 160);
pub const SCRUB_ZERO_BYTES: usize = (SCRUB_TASK.2 * SCRUB_TASK.1) as usize;
pub const SCRUB_OUT_BYTES: usize = (SCRUB_TASK.0 * SCRUB_TASK.2 * 4) as usize;

/// Polls of the raw status a scrub may take before it counts as stuck.
const SCRUB_POLLS: u32 = 1 << 20;

/// Where the driver's memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RknpuConfig {
    /// IOVA of the command buffer (64-byte aligned) and its size in bytes.
    pub cmd_iova: u32,
    pub cmd_len: usize,
    /// Cores to use (1..=3).
    pub cores: usize,
    pub scrub: Option<ScrubBuffers>,
}

/// Why a configuration is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    CmdUnaligned,
    /// The buffer does not hold one task, or ends beyond 2^32.
    CmdSize,
    Cores,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CoreState {
    /// Index of the task running (or next to run) on the core.
    next: usize,
    running: bool,
}

/// The RKNPU, driven through [`RkBus`].
pub struct Rknpu<B: RkBus> {
    bus: B,
    cfg: RknpuConfig,
    plan: Plan,
    cores: [CoreState; CORES],
    in_flight: bool,
    outcome: Option<Result<JobDone, NpuError>>,
    last_fault: Option<Fault>,
}

impl<B: RkBus> Rknpu<B> {
    pub fn new(bus: B, cfg: RknpuConfig) -> Result<Self, ConfigError> {
        if !cfg.cmd_iova.is_multiple_of(64) {
            return Err(ConfigError::CmdUnaligned);
        }
        if cfg.cmd_len < TASK_STRIDE || u64::from(cfg.cmd_iova) + cfg.cmd_len as u64 > 1 << 32 {
            return Err(ConfigError::CmdSize);
        }
        if !(1..=CORES).contains(&cfg.cores) {
            return Err(ConfigError::Cores);
        }
        Ok(Self {
            bus,
            cfg,
            plan: Plan::EMPTY,
            cores: [CoreState::default(); CORES],
            in_flight: false,
            outcome: None,
            last_fault: None,
        })
    }

    pub fn bus(&mut self) -> &mut B {
        &mut self.bus
    }

    /// Byte offset in the command buffer of core `c`'s task `t`.
    fn cmd_offset(c: usize, t: usize) -> usize {
        (c * MAX_TASKS_PER_CORE + t) * TASK_STRIDE
    }

    /// Writes every task list of `plan` (each core's tasks chained as Mesa chains them) and
    /// checks they fit the buffer.
    fn write_lists(&mut self, plan: &Plan) -> Result<(), NpuError> {
        for (c, cp) in plan.cores.iter().enumerate() {
            let tasks = cp.tasks();
            for (t, task) in tasks.iter().enumerate() {
                let mut list = task.encode()?;
                let off = Self::cmd_offset(c, t);
                if off + TASK_STRIDE > self.cfg.cmd_len {
                    return Err(JobError::TooLarge.into());
                }
                if t + 1 < tasks.len() {
                    let next = self.cfg.cmd_iova + Self::cmd_offset(c, t + 1) as u32;
                    regcmd::chain(&mut list, next, TASK_ENTRIES);
                }
                if !self.bus.write_cmd(off, &list) {
                    return Err(JobError::TooLarge.into());
                }
            }
        }
        Ok(())
    }

    /// Starts task `t` of core `c` (rocket `rocket_job_hw_submit`).
    fn kick(&mut self, c: usize, t: usize) {
        let addr = self.cfg.cmd_iova + Self::cmd_offset(c, t) as u32;
        let b = &mut self.bus;
        b.write32(c, pc::BASE_ADDRESS, 1);
        let sp = s_pointer::PING_PONG | s_pointer::CORE_BIT.wrapping_mul(c as u32);
        b.write32(c, cna::S_POINTER, sp);
        b.write32(c, core::S_POINTER, sp);
        b.write32(c, pc::BASE_ADDRESS, addr);
        b.write32(c, pc::REGISTER_AMOUNTS, regcmd::kick_amount(TASK_ENTRIES));
        b.write32(c, pc::INTERRUPT_MASK, int::DPU_DONE);
        b.write32(c, pc::INTERRUPT_CLEAR, int::DPU_DONE);
        b.write32(
            c,
            pc::TASK_CON,
            pc::TASK_CON_RESERVED_14 | pc::TASK_CON_TASK_COUNT_CLEAR | pc::TASK_CON_TASK_PP_EN | 1,
        );
        b.write32(c, pc::TASK_DMA_BASE_ADDR, 0);
        b.write32(c, pc::OPERATION_ENABLE, 1);
        self.cores[c] = CoreState {
            next: t,
            running: true,
        };
    }

    fn start(&mut self, plan: Plan) -> Result<(), NpuError> {
        self.write_lists(&plan)?;
        self.plan = plan;
        self.cores = [CoreState::default(); CORES];
        self.outcome = None;
        self.last_fault = None;
        self.in_flight = true;
        for c in 0..CORES {
            if !self.plan.cores[c].tasks().is_empty() {
                self.kick(c, 0);
            }
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for c in 0..CORES {
            self.bus.write32(c, pc::OPERATION_ENABLE, 0);
            self.bus.write32(c, pc::INTERRUPT_MASK, 0);
            self.bus.write32(c, pc::INTERRUPT_CLEAR, int::CLEAR_ALL);
            self.cores[c].running = false;
        }
    }

    /// The interrupt handler: finishes cores whose task is done, kicks their next tasks, and
    /// records the job's outcome once every core is done or one faulted.
    fn service(&mut self) {
        if !self.in_flight {
            return;
        }
        for c in 0..CORES {
            if !self.cores[c].running {
                continue;
            }
            let raw = self.bus.read32(c, pc::INTERRUPT_RAW_STATUS);
            if raw & int::DMA_ERROR != 0 {
                self.stop_all();
                let f = Fault {
                    kind: FaultKind::Bus,
                    iova: None,
                };
                self.last_fault = Some(f);
                self.outcome = Some(Err(NpuError::Fault(f)));
                self.in_flight = false;
                return;
            }
            if raw & int::DPU_DONE == 0 {
                continue;
            }
            self.bus.write32(c, pc::INTERRUPT_MASK, 0);
            self.bus.write32(c, pc::OPERATION_ENABLE, 0);
            self.bus.write32(c, pc::INTERRUPT_CLEAR, int::CLEAR_ALL);
            let next = self.cores[c].next + 1;
            if next < self.plan.cores[c].tasks().len() {
                self.kick(c, next);
            } else {
                self.cores[c].running = false;
            }
        }
        if self.cores.iter().all(|s| !s.running) {
            self.in_flight = false;
            self.outcome = Some(Ok(JobDone { cycles: 0 }));
        }
    }

    /// The plan a scrub runs: the zero task on every configured core.
    fn scrub_plan(&self, bufs: ScrubBuffers) -> Result<Plan, JobError> {
        let (m, k, n) = SCRUB_TASK;
        let task = MatmulTask {
            m,
            k,
            n,
            input: bufs.zeros,
            weights: bufs.zeros,
            output: bufs.out,
        };
        let job = GemmJob::dense(
            Mode::I32,
            m,
            n,
            k,
            bufs.zeros.into(),
            bufs.zeros.into(),
            bufs.out.into(),
        );
        // One task per core covering all 160 kernels.
        let mut plan = plan::plan(&job, 1)?;
        let one = plan.cores[0];
        debug_assert_eq!(one.tasks(), &[task]);
        for c in 0..self.cfg.cores {
            plan.cores[c] = one;
        }
        Ok(plan)
    }
}

impl<B: RkBus> Npu for Rknpu<B> {
    fn reset(&mut self) -> Result<(), NpuError> {
        self.stop_all();
        self.in_flight = false;
        self.outcome = None;
        self.last_fault = None;
        Ok(())
    }

    fn submit(&mut self, job: &Job) -> Result<(), NpuError> {
        if self.in_flight || self.outcome.is_some() {
            return Err(NpuError::Busy);
        }
        let g = match job {
            Job::DumpScratch { .. } => {
                return Err(NpuError::Unsupported(Unsupported::DumpScratch));
            }
            Job::Gemm(g) if g.mode == Mode::Q8_0 => {
                return Err(NpuError::Unsupported(Unsupported::Mode(Mode::Q8_0)));
            }
            Job::Gemm(g) => g,
        };
        let plan = plan::plan(g, self.cfg.cores)?;
        self.start(plan)
    }

    fn poll(&mut self) -> Result<Option<JobDone>, NpuError> {
        self.service();
        match self.outcome.take() {
            Some(r) => r.map(Some),
            None if self.in_flight => Ok(None),
            None => Err(NpuError::NoJob),
        }
    }

    fn scrub(&mut self) -> Result<(), NpuError> {
        if self.in_flight {
            return Err(NpuError::Busy);
        }
        let bufs = self
            .cfg
            .scrub
            .ok_or(NpuError::Unsupported(Unsupported::Scrub))?;
        let plan = self.scrub_plan(bufs)?;
        self.start(plan)?;
        let r = self.wait(SCRUB_POLLS);
        if r == Err(NpuError::Timeout) {
            self.stop_all();
            self.in_flight = false;
        }
        r.map(|_| ())
    }

    fn irq_pending(&mut self) -> bool {
        (0..CORES).any(|c| self.bus.read32(c, pc::INTERRUPT_STATUS) != 0)
    }

    fn clear_irq(&mut self) {
        self.service();
        if !self.in_flight {
            for c in 0..CORES {
                self.bus.write32(c, pc::INTERRUPT_CLEAR, int::CLEAR_ALL);
            }
        }
    }

    fn last_fault(&self) -> Option<Fault> {
        self.last_fault
    }

    fn scratch_size(&self) -> usize {
        0
    }

    fn operand_layout(&self) -> OperandLayout {
        OperandLayout::Rknpu
    }
}
