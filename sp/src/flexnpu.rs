//! Flex-NPU (DESIGN.md sec. 7): the NPU time-multiplexed between the worlds. The normal world
//! drains its jobs and hands the NPU over ([`FlexNpu::acquire`]); the SP then owns it:
//!
//! 1. its MMIO secure-only (TZPC DECPROT0), so nothing new can be started from outside;
//! 2. idle checked (a normal world that did not drain is refused, and keeps the NPU);
//! 3. its DMA confined: the secure STE of its stream gets stage-2 tables that map nothing
//!    until a job maps its buffers (IOVAs from [`IOVA_BASE`], only pages of secured Flex-Mem);
//! 4. its bus master made secure (TZPC), so the SMMU's secure stream table applies;
//! 5. reset and scrubbed, so nothing the normal world left in it is used or leaks.
//!
//! 6. its interrupt moved to the secure group ([`IrqSwitch`]: Hafnium's
//!    `HF_INTERRUPT_RECONFIGURE`), so the normal world neither sees nor clears it.
//!
//! [`FlexNpu::release`] reverses every step after waiting idle and scrubbing, so the next
//! owner reads zeros from the NPU's internal buffers. The SP polls its jobs; the interrupt
//! is moved so that it cannot be used (or spoofed) by the normal world while secure.
//!
//! [`FlexNpu::gemm`] is the testbed's check of a secure job: a matmul handed to the NPU while
//! the SP goes on with CPU work (the same product on the CPU, row by row, polling the NPU
//! between rows), both timed, the outputs compared bit for bit.
//!
//! [`FlexNpu::offload_start`] / [`FlexNpu::offload_finish`] serve the runtime's
//! `llm_runtime::kernels::MatmulOffload` hook while the NPU is the SP's: the weights are read
//! in place (their pages mapped for the job at [`OFFLOAD_IOVA_W`], so only weights in secured
//! memory are reachable: the firewall refuses the secure master anything else, and the job
//! fails over to the CPU), the activations and outputs go through two staging buffers in the
//! SP's own memory.

use alloc::vec::Vec;

use flexserve_proto::{NpuFault, NpuGemmArgs, NpuGemmResult, NpuSwitch, gemm_flags};
use llm_runtime::kernels::{BlockQ8_0, Kernels, OffloadError, blocks_as_bytes};
use npu_driver::{GemmJob, Job, Mode, Npu, NpuError};
use smmu::cmd::Command as SmmuCommand;
use smmu::s2::{Access, S2Tables, TableMemory};
use smmu::ste::Ste;
use smmu::{Bus, SecureSmmu};
use tzasc::RegisterAccess;
use tzasc::tzpc::{Tzpc, testbed as decprot};

use crate::flexmem::Clock;

/// Where a secure job's buffers appear to the NPU (its secure stream's IOVAs).
pub const IOVA_BASE: u64 = flexserve_proto::GEMM_IOVA_BASE;
/// Offloaded products: the weights' pages, the activations' and the outputs' staging buffers.
pub const OFFLOAD_IOVA_W: u64 = 0x2000_0000;
pub const OFFLOAD_IOVA_X: u64 = 0x3000_0000;
pub const OFFLOAD_IOVA_Y: u64 = 0x3800_0000;
/// Staging pages for each of X and Y (a prefill batch's activations / outputs).
pub const STAGING_PAGES: usize = 64;
/// The VMID of the NPU's secure stage-2 (its own; the SMMU tags TLB entries with it).
const VMID: u16 = 1;
/// Polls of the NPU before a job or an idle wait counts as stuck.
const POLLS: u32 = 50_000_000;
/// The largest GEMM side the testbed check runs (a bound on the SP's reference copy).
const MAX_DIM: u32 = 4096;
const PAGE: u64 = 0x1000;

/// Whether the NPU is running a job (its status register, whoever started it).
pub trait NpuStatus {
    fn busy(&mut self) -> bool;
}

impl<B: npu_driver::testbed::NpuBus> NpuStatus for npu_driver::testbed::TestbedNpu<B> {
    fn busy(&mut self) -> bool {
        use npu_driver::testbed::regs;
        self.bus().read32(regs::STATUS) & regs::status::BUSY != 0
    }
}

/// The secured region a job's buffers live in: its pages' physical addresses, in order, and
/// byte access by offset.
pub trait RegionIo {
    fn pages(&self) -> &[u64];
    fn write(&mut self, offset: u64, data: &[u8]) -> bool;
    fn read(&mut self, offset: u64, out: &mut [u8]) -> bool;
}

/// What the service needs of Flex-NPU (the SP binary wires a [`FlexNpu`] to its devices).
pub trait NpuControl {
    fn acquire(&mut self) -> Result<NpuSwitch, NpuFault>;
    fn release(&mut self) -> Result<NpuSwitch, NpuFault>;
    fn gemm(
        &mut self,
        a: &NpuGemmArgs,
        region: &mut dyn RegionIo,
    ) -> Result<NpuGemmResult, NpuFault>;
    /// The runtime's offload hook ([`FlexNpu::offload_start`]).
    fn offload_start(&mut self, w: &[BlockQ8_0], x: &[BlockQ8_0], n: usize, rows: usize) -> bool;
    fn offload_finish(&mut self, y: &mut [f32]) -> Result<(), OffloadError>;
}

/// The physical address of the SP's own memory at `ptr` (its map is the identity on the
/// target; host tests translate).
pub type PhysOf = fn(*const u8) -> u64;

/// Moves the NPU's interrupt between the groups: `set_secure(intid, secure)` is true if the
/// partition manager did it.
#[derive(Clone, Copy)]
pub struct IrqSwitch {
    pub intid: u32,
    pub set_secure: fn(u32, bool) -> bool,
}

/// A product in flight for the offload hook.
struct InFlight {
    n: usize,
    rows: usize,
    w_pages: usize,
}

/// The Flex-NPU switch over an NPU, the SMMU's secure side, the TZPC and memory for the
/// NPU's stage-2 tables.
pub struct FlexNpu<N, B: Bus, R, M> {
    npu: N,
    smmu: SecureSmmu<B>,
    tzpc: Tzpc<R>,
    tables: M,
    s2: Option<S2Tables>,
    sid: u32,
    secure: bool,
    switches: u64,
    jobs: u64,
    clock: Clock,
    kernels: Kernels,
    /// Staging pages for offloaded X and Y (allocated from the table memory on first use).
    staging: Option<(Vec<u64>, Vec<u64>)>,
    in_flight: Option<InFlight>,
    phys: PhysOf,
    irq: Option<IrqSwitch>,
    /// The last SMMU event record drained after a faulting job.
    last_smmu_event: Option<smmu::event::Record>,
}

impl<N, B, R, M> FlexNpu<N, B, R, M>
where
    N: Npu + NpuStatus,
    B: Bus,
    R: RegisterAccess,
    M: TableMemory,
{
    /// The NPU starts as the normal world's; `sid` is its stream id (the NPU reports it).
    pub fn new(
        npu: N,
        smmu: SecureSmmu<B>,
        tzpc: Tzpc<R>,
        tables: M,
        sid: u32,
        clock: Clock,
    ) -> Self {
        Self {
            npu,
            smmu,
            tzpc,
            tables,
            s2: None,
            sid,
            secure: false,
            switches: 0,
            jobs: 0,
            clock,
            // The runtime's reference kernel: the NPU's Q8_0 results are specified bit for bit
            // against it (the SIMD paths add the same block terms in other orders).
            kernels: Kernels::scalar(),
            staging: None,
            in_flight: None,
            phys: |p| p as u64,
            irq: None,
            last_smmu_event: None,
        }
    }

    /// The last SMMU event record drained after a faulting job (the log has them all).
    pub fn last_smmu_event(&self) -> Option<smmu::event::Record> {
        self.last_smmu_event
    }

    /// After a job faulted: drains the SMMU's secure event queue into the log (the fault's
    /// own record is among them) and acknowledges a queue write abort, so the next fault is
    /// recorded too.
    fn log_smmu_events(&mut self) {
        let mut last = None;
        let drained = self.smmu.drain_events(|r| {
            log::warn!("Flex-NPU: SMMU event {r:?}");
            last = Some(r);
        });
        match drained {
            Ok(d) => {
                if d.overflowed {
                    log::warn!("Flex-NPU: SMMU event queue overflowed, records were lost");
                }
                if d.write_aborted {
                    let g = self.smmu.gerror();
                    log::warn!("Flex-NPU: SMMU event queue write aborted ({g:?}), acknowledged");
                }
            }
            Err(e) => log::warn!("Flex-NPU: SMMU event queue unreadable: {e:?}"),
        }
        if last.is_some() {
            self.last_smmu_event = last;
        }
    }

    /// The NPU's interrupt, moved to the secure group while the SP holds the NPU.
    pub fn with_irq(mut self, irq: IrqSwitch) -> Self {
        self.irq = Some(irq);
        self
    }

    fn irq_secure(&mut self, secure: bool) -> bool {
        self.irq.is_none_or(|i| (i.set_secure)(i.intid, secure))
    }

    /// How to find the physical address of the SP's memory (the identity by default).
    pub fn with_phys(mut self, phys: PhysOf) -> Self {
        self.phys = phys;
        self
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    fn now(&self) -> u64 {
        (self.clock.now)()
    }

    fn switched(&mut self, t0: u64) -> NpuSwitch {
        self.switches += 1;
        NpuSwitch {
            ticks: self.now().wrapping_sub(t0),
            switches: self.switches,
            jobs: self.jobs,
        }
    }

    /// Hands the NPU to the SP (module doc, steps 1-5). On error it stays the normal world's.
    pub fn acquire(&mut self) -> Result<NpuSwitch, NpuFault> {
        if self.secure {
            return Err(NpuFault::AlreadySecure);
        }
        let t0 = self.now();
        self.tzpc
            .secure(decprot::NPU_MMIO_NS)
            .map_err(|_| NpuFault::Device)?;
        if self.npu.busy() {
            // Not drained: give the registers back, change nothing else.
            let _ = self.tzpc.allow_ns(decprot::NPU_MMIO_NS);
            return Err(NpuFault::NotIdle);
        }
        let undo = |s: &mut Self, f: NpuFault| {
            let _ = s.irq_secure(false);
            let _ = s.smmu.set_ste(s.sid, Ste::Abort);
            let _ = s.tzpc.allow_ns(decprot::RESET);
            f
        };
        if !self.irq_secure(true) {
            return Err(undo(self, NpuFault::Device));
        }
        if self.s2.is_none() {
            self.s2 = Some(S2Tables::new(&mut self.tables).map_err(|_| NpuFault::NoMemory)?);
        }
        let stage2 = self.s2.as_ref().map(|t| t.stage2(VMID));
        if let Some(s2) = stage2
            && self.smmu.set_ste(self.sid, Ste::Stage2(s2)).is_err()
        {
            return Err(undo(self, NpuFault::Smmu));
        }
        if self.tzpc.secure(decprot::NPU_DMA_NS).is_err() {
            return Err(undo(self, NpuFault::Device));
        }
        if self.npu.reset().is_err() || self.npu.scrub().is_err() {
            return Err(undo(self, NpuFault::Device));
        }
        self.secure = true;
        Ok(self.switched(t0))
    }

    /// Gives the NPU back: idle, scrubbed, reset, secure stream aborting, DMA and MMIO
    /// non-secure. If the NPU does not go idle it stays the SP's (`Device`).
    pub fn release(&mut self) -> Result<NpuSwitch, NpuFault> {
        if !self.secure {
            return Err(NpuFault::NotSecure);
        }
        let t0 = self.now();
        if !self.wait_idle() {
            return Err(NpuFault::Device);
        }
        self.npu.scrub().map_err(|_| NpuFault::Device)?;
        self.npu.reset().map_err(|_| NpuFault::Device)?;
        self.smmu
            .set_ste(self.sid, Ste::Abort)
            .map_err(|_| NpuFault::Smmu)?;
        if !self.irq_secure(false) {
            return Err(NpuFault::Device);
        }
        self.tzpc
            .allow_ns(decprot::NPU_DMA_NS)
            .map_err(|_| NpuFault::Device)?;
        self.tzpc
            .allow_ns(decprot::NPU_MMIO_NS)
            .map_err(|_| NpuFault::Device)?;
        self.secure = false;
        Ok(self.switched(t0))
    }

    fn wait_idle(&mut self) -> bool {
        (0..POLLS).any(|_| !self.npu.busy())
    }

    /// Maps `pages` at [`IOVA_BASE`] in the secure stream's tables (and invalidates its TLB).
    fn map(&mut self, pages: &[u64]) -> Result<(), NpuFault> {
        let s2 = self.s2.as_mut().ok_or(NpuFault::NotSecure)?;
        let rw = Access {
            read: true,
            write: true,
        };
        for (i, &pa) in pages.iter().enumerate() {
            if s2
                .map(&mut self.tables, IOVA_BASE + i as u64 * PAGE, pa, rw)
                .is_err()
            {
                self.unmap(i);
                return Err(NpuFault::NoMemory);
            }
        }
        self.tlbi()
    }

    /// Unmaps the first `n` pages from [`IOVA_BASE`].
    fn unmap(&mut self, n: usize) {
        if let Some(s2) = self.s2.as_mut() {
            for i in 0..n {
                let _ = s2.unmap(&mut self.tables, IOVA_BASE + i as u64 * PAGE);
            }
        }
        let _ = self.tlbi();
    }

    fn tlbi(&mut self) -> Result<(), NpuFault> {
        self.smmu
            .submit(&[SmmuCommand::TlbiS12Vmall { vmid: VMID }])
            .map_err(|_| NpuFault::Smmu)
    }

    /// A Q8_0 GEMM on the NPU over `region` (proto `NpuGemmArgs`), the same on the CPU
    /// meanwhile, compared bit for bit.
    pub fn gemm(
        &mut self,
        a: &NpuGemmArgs,
        region: &mut dyn RegionIo,
    ) -> Result<NpuGemmResult, NpuFault> {
        if !self.secure {
            return Err(NpuFault::NotSecure);
        }
        let (m, n, k) = (a.m as usize, a.n as usize, a.k as usize);
        let dims_ok = [a.m, a.n, a.k].iter().all(|&d| d > 0 && d <= MAX_DIM);
        if !dims_ok || !a.k.is_multiple_of(32) {
            return Err(NpuFault::BadShape);
        }
        let kb = k / 32;
        let (w_bytes, x_bytes) = ((n * kb * 34) as u64, (m * kb * 34) as u64);
        let y_off = (w_bytes + x_bytes).next_multiple_of(PAGE);
        let y_bytes = (m * n * 4) as u64;
        let pages = region.pages().to_vec();
        let region_len = pages.len() as u64 * PAGE;
        if y_off + y_bytes > region_len {
            return Err(NpuFault::BadShape);
        }
        let mut rng = Lcg(u64::from(a.seed) ^ 0x9e37_79b9_7f4a_7c15);
        let w = q8_blocks(&mut rng, n * kb)?;
        let x = q8_blocks(&mut rng, m * kb)?;
        let mut cpu = try_vec(m * n, 0f32)?;
        if !(region.write(0, blocks_as_bytes(&w)) && region.write(w_bytes, blocks_as_bytes(&x))) {
            return Err(NpuFault::BadShape);
        }
        self.map(&pages)?;
        let y_iova = if a.flags & gemm_flags::OUTSIDE_STE != 0 {
            IOVA_BASE + region_len
        } else {
            IOVA_BASE + y_off
        };
        let job = GemmJob::dense(
            Mode::Q8_0,
            a.m,
            a.n,
            a.k,
            IOVA_BASE,
            IOVA_BASE + w_bytes,
            y_iova,
        );
        let npu_start = self.now();
        if let Err(e) = self.npu.submit(&Job::Gemm(job)) {
            self.unmap(pages.len());
            return Err(match e {
                NpuError::BadJob(_) | NpuError::Unsupported(_) => NpuFault::BadShape,
                _ => NpuFault::Device,
            });
        }
        // The CPU's share of the work while the NPU runs: the same product, row by row.
        let cpu_start = self.now();
        let mut outcome = None;
        let mut npu_end = 0;
        for t in 0..m {
            let _ = self
                .kernels
                .matvec(&w, &x[t * kb..(t + 1) * kb], &mut cpu[t * n..(t + 1) * n]);
            if outcome.is_none() {
                match self.npu.poll() {
                    Ok(None) => {}
                    other => {
                        npu_end = self.now();
                        outcome = Some(other);
                    }
                }
            }
        }
        let cpu_end = self.now();
        let outcome = match outcome {
            Some(o) => o,
            None => {
                let o = self.npu.wait(POLLS);
                npu_end = self.now();
                o.map(Some)
            }
        };
        self.jobs += 1;
        let mut res = NpuGemmResult {
            npu_start,
            npu_end,
            cpu_start,
            cpu_end,
            counter_hz: (self.clock.hz)(),
            ..NpuGemmResult::default()
        };
        match outcome {
            Ok(Some(done)) => {
                res.cycles = done.cycles;
                let Ok(mut y) = try_vec(m * n * 4, 0u8) else {
                    self.unmap(pages.len());
                    return Err(NpuFault::NoMemory);
                };
                if !region.read(y_off, &mut y) {
                    self.unmap(pages.len());
                    return Err(NpuFault::BadShape);
                }
                res.mismatches = y
                    .chunks_exact(4)
                    .zip(&cpu)
                    .filter(|(b, c)| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != c.to_bits())
                    .count() as u32;
            }
            Err(NpuError::Fault(f)) => {
                res.fault_kind = npu_driver::testbed::fault_code(f.kind);
                res.fault_iova = f.iova.unwrap_or(0);
                res.mismatches = (m * n) as u32;
                self.log_smmu_events();
            }
            Ok(None) | Err(_) => {
                self.unmap(pages.len());
                return Err(NpuFault::Device);
            }
        }
        self.unmap(pages.len());
        Ok(res)
    }
}

impl<N, B, R, M> NpuControl for FlexNpu<N, B, R, M>
where
    N: Npu + NpuStatus,
    B: Bus,
    R: RegisterAccess,
    M: TableMemory,
{
    fn acquire(&mut self) -> Result<NpuSwitch, NpuFault> {
        FlexNpu::acquire(self)
    }
    fn release(&mut self) -> Result<NpuSwitch, NpuFault> {
        FlexNpu::release(self)
    }
    fn gemm(
        &mut self,
        a: &NpuGemmArgs,
        region: &mut dyn RegionIo,
    ) -> Result<NpuGemmResult, NpuFault> {
        FlexNpu::gemm(self, a, region)
    }
    fn offload_start(&mut self, w: &[BlockQ8_0], x: &[BlockQ8_0], n: usize, rows: usize) -> bool {
        FlexNpu::offload_start(self, w, x, n, rows)
    }
    fn offload_finish(&mut self, y: &mut [f32]) -> Result<(), OffloadError> {
        FlexNpu::offload_finish(self, y)
    }
}

#[cfg(test)]
mod tests;

impl<N, B, R, M> FlexNpu<N, B, R, M>
where
    N: Npu + NpuStatus,
    B: Bus,
    R: RegisterAccess,
    M: TableMemory,
{
    fn staging(&mut self) -> Option<(Vec<u64>, Vec<u64>)> {
        if self.staging.is_none() {
            let tables = &mut self.tables;
            let mut alloc =
                |n| -> Option<Vec<u64>> { (0..n).map(|_| tables.alloc_page()).collect() };
            let x = alloc(STAGING_PAGES)?;
            let y = alloc(STAGING_PAGES)?;
            self.staging = Some((x, y));
        }
        self.staging.clone()
    }

    /// Maps `pages` at `iova` (undone on failure).
    fn map_at(&mut self, iova: u64, pages: &[u64], write: bool) -> bool {
        let Some(s2) = self.s2.as_mut() else {
            return false;
        };
        let acc = Access { read: true, write };
        for (i, &pa) in pages.iter().enumerate() {
            if s2
                .map(&mut self.tables, iova + i as u64 * PAGE, pa, acc)
                .is_err()
            {
                for j in 0..i {
                    let _ = s2.unmap(&mut self.tables, iova + j as u64 * PAGE);
                }
                return false;
            }
        }
        true
    }

    fn unmap_at(&mut self, iova: u64, n: usize) {
        if let Some(s2) = self.s2.as_mut() {
            for i in 0..n {
                let _ = s2.unmap(&mut self.tables, iova + i as u64 * PAGE);
            }
        }
    }

    /// Starts `y = W x` on the NPU (the runtime's offload hook): `w` read where it lies,
    /// `x` copied to the staging buffer. `false` (the CPU computes it) unless the NPU is the
    /// SP's and idle and the shape fits.
    pub fn offload_start(
        &mut self,
        w: &[BlockQ8_0],
        x: &[BlockQ8_0],
        n: usize,
        rows: usize,
    ) -> bool {
        if !self.secure || self.in_flight.is_some() || n == 0 || rows == 0 {
            return false;
        }
        let kb = x.len() / n;
        let (x_bytes, y_bytes) = (x.len() * BlockQ8_0::BYTES, n * rows * 4);
        let cap = STAGING_PAGES * PAGE as usize;
        if kb == 0 || x.len() != n * kb || w.len() != rows * kb || x_bytes > cap || y_bytes > cap {
            return false;
        }
        let w_pa = (self.phys)(w.as_ptr().cast());
        let w_end = w_pa + (w.len() * BlockQ8_0::BYTES) as u64;
        let first = w_pa & !(PAGE - 1);
        let w_pages: Vec<u64> = (first..w_end).step_by(PAGE as usize).collect();
        let Some((xs, ys)) = self.staging() else {
            return false;
        };
        // X into its staging pages, 8 bytes at a time (they are table-memory pages).
        let xb = blocks_as_bytes(x);
        for (i, c) in xb.chunks(8).enumerate() {
            let off = i * 8;
            let pa = xs[off / PAGE as usize] + off as u64 % PAGE;
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            let word = u64::from_le_bytes(w);
            if !self.tables.write_u64(pa, word) {
                return false;
            }
        }
        let y_pages = y_bytes.div_ceil(PAGE as usize);
        let x_pages = xb.len().div_ceil(PAGE as usize);
        self.in_flight = Some(InFlight {
            n,
            rows,
            w_pages: w_pages.len(),
        });
        if !(self.map_at(OFFLOAD_IOVA_W, &w_pages, false)
            && self.map_at(OFFLOAD_IOVA_X, &xs[..x_pages], false)
            && self.map_at(OFFLOAD_IOVA_Y, &ys[..y_pages], true)
            && self.tlbi().is_ok())
        {
            self.end_offload();
            return false;
        }
        let job = GemmJob::dense(
            Mode::Q8_0,
            n as u32,
            rows as u32,
            (kb * 32) as u32,
            OFFLOAD_IOVA_W + (w_pa - first),
            OFFLOAD_IOVA_X,
            OFFLOAD_IOVA_Y,
        );
        if self.npu.submit(&Job::Gemm(job)).is_err() {
            self.end_offload();
            return false;
        }
        true
    }

    /// Unmaps everything an offloaded product mapped (unmapping what was not mapped is a no-op).
    fn end_offload(&mut self) {
        if let Some(f) = self.in_flight.take() {
            self.unmap_at(OFFLOAD_IOVA_W, f.w_pages);
            self.unmap_at(OFFLOAD_IOVA_X, STAGING_PAGES);
            self.unmap_at(OFFLOAD_IOVA_Y, STAGING_PAGES);
            let _ = self.tlbi();
        }
    }

    /// The product started by [`Self::offload_start`], into `y`.
    pub fn offload_finish(&mut self, y: &mut [f32]) -> Result<(), OffloadError> {
        let Some(f) = self.in_flight.as_ref() else {
            return Err(OffloadError::NothingStarted);
        };
        let (n, rows) = (f.n, f.rows);
        let done = self.npu.wait(POLLS);
        self.jobs += 1;
        let result = match done {
            Ok(_) if y.len() >= n * rows => self.read_y(&mut y[..n * rows]),
            Ok(_) => Err(OffloadError::Device),
            Err(NpuError::Timeout) => Err(OffloadError::Timeout),
            Err(e) => {
                if matches!(e, NpuError::Fault(_)) {
                    self.log_smmu_events();
                }
                Err(OffloadError::Device)
            }
        };
        self.end_offload();
        result
    }

    /// The outputs from the Y staging pages.
    fn read_y(&mut self, y: &mut [f32]) -> Result<(), OffloadError> {
        let ys = self
            .staging
            .as_ref()
            .map(|s| s.1.clone())
            .unwrap_or_default();
        for (i, pair) in y.chunks_mut(2).enumerate() {
            let off = i * 8;
            let pa = ys.get(off / PAGE as usize).ok_or(OffloadError::Device)? + off as u64 % PAGE;
            let v = self.tables.read_u64(pa).ok_or(OffloadError::Device)?;
            pair[0] = f32::from_bits(v as u32);
            if let Some(hi) = pair.get_mut(1) {
                *hi = f32::from_bits((v >> 32) as u32);
            }
        }
        Ok(())
    }
}

/// A small deterministic generator for the test operands (the client never sees them).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// `len` copies of `v`, or `NoMemory` if the heap cannot hold them (the sizes come from the
/// normal world's request: never an allocation failure).
fn try_vec<T: Clone>(len: usize, v: T) -> Result<Vec<T>, NpuFault> {
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| NpuFault::NoMemory)?;
    out.resize(len, v);
    Ok(out)
}

/// Q8_0 blocks with random int8 and normal fp16 scales between 2^-10 and 2^-3.
fn q8_blocks(rng: &mut Lcg, count: usize) -> Result<Vec<BlockQ8_0>, NpuFault> {
    let mut out = try_vec(count, BlockQ8_0::ZERO)?;
    for b in &mut out {
        let exp = 5 + (rng.next() % 8) as u16; // biased exponent 5..12
        b.d = exp << 10 | (rng.next() & 0x3ff) as u16;
        b.qs.iter_mut().for_each(|q| *q = rng.next() as i8);
    }
    Ok(out)
}
