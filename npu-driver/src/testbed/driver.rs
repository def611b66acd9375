//! The driver for the testbed NPU: [`TestbedNpu`] over a [`NpuBus`].

use super::regs::{self, ctrl, irq, mode, status};
use super::{NpuBus, fault_from_code};
use crate::{
    Fault, FaultKind, GemmJob, Job, JobDone, JobError, Mode, Npu, NpuError, OperandLayout,
};

/// Polls of `CTRL` before a reset or scrub counts as stuck. The model answers at once.
const CTRL_POLLS: u32 = 1 << 16;

/// The testbed NPU, probed and enabled.
pub struct TestbedNpu<B: NpuBus> {
    bus: B,
    scratch_size: usize,
    stream_id: u32,
    in_flight: bool,
    last_fault: Option<Fault>,
}

impl<B: NpuBus> TestbedNpu<B> {
    /// Checks `ID` and the `VERSION` major, resets the device, enables it and unmasks all
    /// interrupts. The scratch is not scrubbed (call [`Npu::scrub`] when taking the NPU over).
    pub fn new(mut bus: B) -> Result<Self, NpuError> {
        let id = bus.read32(regs::ID);
        let version = bus.read32(regs::VERSION);
        if id != regs::ID_VALUE
            || version >> regs::VERSION_MAJOR_SHIFT
                != regs::VERSION_VALUE >> regs::VERSION_MAJOR_SHIFT
        {
            return Err(NpuError::WrongDevice { id, version });
        }
        let scratch_size = bus.read32(regs::SCRATCH_SIZE) as usize;
        let stream_id = bus.read32(regs::STREAM_ID);
        let mut npu = Self {
            bus,
            scratch_size,
            stream_id,
            in_flight: false,
            last_fault: None,
        };
        npu.reset()?;
        Ok(npu)
    }

    /// The SMMU stream id the device's DMA carries (its secure STE must confine it).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Jobs the device ended since its last reset.
    pub fn job_count(&mut self) -> u32 {
        self.bus.read32(regs::JOB_COUNT)
    }

    /// The bus, for the platform (and tests) to reach what is behind it.
    pub fn bus(&mut self) -> &mut B {
        &mut self.bus
    }

    fn wait_ctrl_clear(&mut self, bit: u32) -> Result<(), NpuError> {
        for _ in 0..CTRL_POLLS {
            if self.bus.read32(regs::CTRL) & bit == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(NpuError::Timeout)
    }

    fn write64(&mut self, lo: usize, hi: usize, v: u64) {
        self.bus.write32(lo, v as u32);
        self.bus.write32(hi, (v >> 32) as u32);
    }

    fn validate(&self, job: &Job) -> Result<(), NpuError> {
        match job {
            Job::Gemm(g) => {
                let sizes = g.sizes(regs::IOVA_BITS)?;
                if sizes.row_bytes > super::MAX_ROW_BYTES {
                    return Err(JobError::TooLarge.into());
                }
            }
            Job::DumpScratch { dst } => match dst.checked_add(self.scratch_size as u64) {
                Some(end) if end <= 1 << regs::IOVA_BITS => {}
                _ => return Err(JobError::Overflow.into()),
            },
        }
        Ok(())
    }

    fn program(&mut self, g: &GemmJob) {
        let m = match g.mode {
            Mode::Q8_0 => mode::Q8_0,
            Mode::I32 => mode::I32,
        };
        self.bus.write32(regs::JOB_MODE, m);
        self.bus.write32(regs::JOB_M, g.m);
        self.bus.write32(regs::JOB_N, g.n);
        self.bus.write32(regs::JOB_K, g.k);
        self.write64(regs::JOB_W_LO, regs::JOB_W_HI, g.w);
        self.write64(regs::JOB_X_LO, regs::JOB_X_HI, g.x);
        self.write64(regs::JOB_Y_LO, regs::JOB_Y_HI, g.y);
        self.bus.write32(regs::JOB_Y_STRIDE, g.y_stride);
    }
}

impl<B: NpuBus> Npu for TestbedNpu<B> {
    fn reset(&mut self) -> Result<(), NpuError> {
        self.bus.write32(regs::CTRL, ctrl::RESET);
        self.wait_ctrl_clear(ctrl::RESET)?;
        self.bus.write32(regs::IRQ_CLEAR, irq::ALL);
        self.bus.write32(regs::IRQ_MASK, irq::ALL);
        self.bus.write32(regs::CTRL, ctrl::ENABLE);
        self.in_flight = false;
        self.last_fault = None;
        Ok(())
    }

    fn submit(&mut self, job: &Job) -> Result<(), NpuError> {
        if self.in_flight || self.bus.read32(regs::STATUS) & status::BUSY != 0 {
            return Err(NpuError::Busy);
        }
        self.validate(job)?;
        match job {
            Job::Gemm(g) => self.program(g),
            Job::DumpScratch { dst } => {
                self.bus.write32(regs::JOB_MODE, mode::DUMP_SCRATCH);
                self.write64(regs::JOB_Y_LO, regs::JOB_Y_HI, *dst);
            }
        }
        self.bus.write32(regs::IRQ_CLEAR, irq::REJECTED);
        self.last_fault = None;
        self.bus.write32(regs::DOORBELL, regs::DOORBELL_RING);
        self.in_flight = true;
        Ok(())
    }

    fn poll(&mut self) -> Result<Option<JobDone>, NpuError> {
        if !self.in_flight {
            return Err(NpuError::NoJob);
        }
        let st = self.bus.read32(regs::STATUS);
        if st & status::BUSY != 0 {
            return Ok(None);
        }
        self.in_flight = false;
        if st & status::FAULT != 0 {
            let kind = fault_from_code(self.bus.read32(regs::FAULT_KIND));
            let iova = u64::from(self.bus.read32(regs::FAULT_IOVA_LO))
                | u64::from(self.bus.read32(regs::FAULT_IOVA_HI)) << 32;
            let fault = Fault {
                kind,
                iova: (!matches!(kind, FaultKind::Descriptor(_))).then_some(iova),
            };
            self.last_fault = Some(fault);
            return Err(NpuError::Fault(fault));
        }
        if st & status::DONE != 0 {
            let cycles = u64::from(self.bus.read32(regs::JOB_CYCLES_LO))
                | u64::from(self.bus.read32(regs::JOB_CYCLES_HI)) << 32;
            return Ok(Some(JobDone { cycles }));
        }
        // Idle with no outcome: the doorbell never took (REJECTED) or the device was reset.
        Err(NpuError::Rejected)
    }

    fn scrub(&mut self) -> Result<(), NpuError> {
        if self.in_flight || self.bus.read32(regs::STATUS) & status::BUSY != 0 {
            return Err(NpuError::Busy);
        }
        self.bus.write32(regs::CTRL, ctrl::ENABLE | ctrl::SCRUB);
        self.wait_ctrl_clear(ctrl::SCRUB)
    }

    fn irq_pending(&mut self) -> bool {
        self.bus.read32(regs::IRQ_STATUS) & self.bus.read32(regs::IRQ_MASK) != 0
    }

    fn clear_irq(&mut self) {
        self.bus.write32(regs::IRQ_CLEAR, irq::ALL);
    }

    fn last_fault(&self) -> Option<Fault> {
        self.last_fault
    }

    fn scratch_size(&self) -> usize {
        self.scratch_size
    }

    fn operand_layout(&self) -> OperandLayout {
        OperandLayout::RowMajor
    }
}
