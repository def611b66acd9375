//! SMMUv3 secure-side driver, with a host model of the secure programming interface.
//!
//! The secure partition uses the SMMU to confine the NPU's DMA while the NPU is secure
//! (DESIGN.md sec. 7): the NPU's secure stream gets a stage-2 STE whose tables map only its
//! buffers. This crate has the pieces that do not depend on the SP: register offsets
//! ([`regs`]), queue index arithmetic ([`queue`]), command and STE encodings ([`cmd`], [`ste`]),
//! the driver ([`SecureSmmu`]) over a small [`Bus`] trait, and a host model of the hardware
//! ([`model::Smmuv3Model`]) the driver is tested against and the testbed can later expose as its
//! emulated SMMU.
//!
//! [`rkiommu`] is the RK3588 NPU's own MMU (Rockchip IOMMU v2): table formats, the driver's
//! enable/disable/zap and a host model.
//!
//! [`s2`] builds the stage-2 tables a secure STE points at and walks them as the SMMU does;
//! [`model::Smmuv3Model::translate`] runs a transaction through the STE in force and that walk.
//!
//! Not here yet (issue 9 continues): the secure event queue, GERROR beyond CMDQ_ERR. Hand-written: no maintained `no_std` SMMUv3 or Rockchip IOMMU
//! crate exists for the secure side.
#![no_std]

extern crate alloc;

pub mod cmd;
pub mod model;
pub mod queue;
pub mod regs;
pub mod rkiommu;
pub mod s2;
pub mod ste;

use cmd::{Command, SyncSignal};
use queue::Queue;
use regs::CmdqError;
use ste::Ste;

/// What the driver needs from the platform: the SMMU's register page and the memory holding
/// its stream table and command queue (physical addresses, as the SMMU sees them).
pub trait Bus {
    fn read32(&mut self, offset: usize) -> u32;
    fn write32(&mut self, offset: usize, value: u32);
    fn write64(&mut self, offset: usize, value: u64);
    /// Writes one little-endian word of table/queue memory; `false` if `pa` is not such memory.
    fn mem_write_u64(&mut self, pa: u64, value: u64) -> bool;
}

/// Where the driver's tables live, and how big they are.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Linear stream table: `1 << strtab_log2` STEs of 64 bytes, 64-byte aligned.
    pub strtab_pa: u64,
    pub strtab_log2: u32,
    /// Command queue: `1 << cmdq_log2` entries of 16 bytes, aligned to its size.
    pub cmdq_pa: u64,
    pub cmdq_log2: u32,
}

/// What went wrong, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `S_IDR1.SECURE_IMPL` is clear: there is no secure programming interface.
    NoSecureSide,
    /// The layout asks for more streams than `S_IDR1.S_SIDSIZE` allows, or a misaligned table.
    BadLayout,
    /// A table or queue address the bus cannot write.
    BadMemory,
    /// `S_CR0ACK` did not follow `S_CR0`.
    AckTimeout,
    /// The command queue did not advance (the SMMU is stuck or gone).
    QueueTimeout,
    /// The SMMU stopped on a command and reported this error; the queue was recovered.
    CommandRejected(CmdqError),
    /// A stream id outside the stream table.
    BadStreamId(u32),
}

/// Polls before a register wait gives up. The model answers at once; hardware in microseconds.
const POLL_LIMIT: u32 = 1 << 20;

/// The secure side of one SMMUv3, initialised.
pub struct SecureSmmu<B: Bus> {
    bus: B,
    layout: Layout,
    cmdq: Queue,
    prod: u32,
}

impl<B: Bus> SecureSmmu<B> {
    /// Probes the secure interface, then builds an all-abort stream table and an empty command
    /// queue, enables the queue, invalidates cached configuration and enables translation.
    pub fn init(mut bus: B, layout: Layout) -> Result<Self, Error> {
        let idr1 = bus.read32(regs::S_IDR1);
        if idr1 & regs::S_IDR1_SECURE_IMPL == 0 {
            return Err(Error::NoSecureSide);
        }
        let sid_bits = idr1 & regs::S_IDR1_SIDSIZE_MASK;
        let cmdq = Queue::new(layout.cmdq_log2).ok_or(Error::BadLayout)?;
        if layout.strtab_log2 > sid_bits
            || layout.strtab_log2 > 16
            || !layout.strtab_pa.is_multiple_of(64)
            || !layout
                .cmdq_pa
                .is_multiple_of((16u64 << layout.cmdq_log2).max(32))
        {
            return Err(Error::BadLayout);
        }
        let mut smmu = Self {
            bus,
            layout,
            cmdq,
            prod: 0,
        };
        smmu.set_cr0(0)?;
        for sid in 0..(1u32 << layout.strtab_log2) {
            smmu.write_ste_words(sid, Ste::Abort)?;
        }
        smmu.bus
            .write64(regs::S_STRTAB_BASE, layout.strtab_pa & regs::BASE_ADDR_MASK);
        smmu.bus
            .write32(regs::S_STRTAB_BASE_CFG, layout.strtab_log2); // FMT = linear
        smmu.bus.write64(
            regs::S_CMDQ_BASE,
            (layout.cmdq_pa & regs::BASE_ADDR_MASK) | u64::from(layout.cmdq_log2),
        );
        smmu.bus.write32(regs::S_CMDQ_PROD, 0);
        smmu.bus.write32(regs::S_CMDQ_CONS, 0);
        smmu.set_cr0(regs::CR0_CMDQEN)?;
        smmu.submit(&[Command::CfgiAll])?;
        smmu.set_cr0(regs::CR0_CMDQEN | regs::CR0_SMMUEN)?;
        Ok(smmu)
    }

    /// Installs `ste` for stream `sid` and waits until the SMMU no longer uses the old one.
    pub fn set_ste(&mut self, sid: u32, ste: Ste) -> Result<(), Error> {
        self.write_ste_words(sid, ste)?;
        self.submit(&[Command::CfgiSte {
            sid,
            secure: true,
            leaf: true,
        }])
    }

    /// Issues `cmds` then a CMD_SYNC, and waits for the SYNC. On a rejected command the queue is
    /// recovered (the offending entry replaced by a CMD_SYNC, the error acknowledged) and the
    /// error returned; the commands after it still run.
    pub fn submit(&mut self, cmds: &[Command]) -> Result<(), Error> {
        let mut rejected = None;
        for &c in cmds.iter().chain(&[Command::Sync {
            signal: SyncSignal::None,
        }]) {
            rejected = rejected.or(self.push(c.encode())?);
        }
        let sync_at = self.prod.wrapping_sub(1) & ((2 << self.cmdq.log2size()) - 1);
        rejected = rejected.or(self.wait_consumed(sync_at)?);
        rejected.map_or(Ok(()), |e| Err(Error::CommandRejected(e)))
    }

    /// The bus, for the platform (and tests) to reach the model behind it.
    pub fn bus(&mut self) -> &mut B {
        &mut self.bus
    }

    fn write_ste_words(&mut self, sid: u32, ste: Ste) -> Result<(), Error> {
        if sid >= 1 << self.layout.strtab_log2 {
            return Err(Error::BadStreamId(sid));
        }
        let base = self.layout.strtab_pa + u64::from(sid) * 64;
        let words = ste.encode();
        // Word 0 (V, Config) last, so the SMMU never fetches a half-written valid STE.
        for i in (0..8).rev() {
            if !self.bus.mem_write_u64(base + 8 * i as u64, words[i]) {
                return Err(Error::BadMemory);
            }
        }
        Ok(())
    }

    /// Writes one entry at PROD once there is room; returns a rejection seen while waiting.
    fn push(&mut self, words: [u64; 2]) -> Result<Option<CmdqError>, Error> {
        let mut rejected = None;
        let mut polls = 0;
        loop {
            let cons = self.bus.read32(regs::S_CMDQ_CONS);
            if let Some(e) = self.recover(cons) {
                rejected = Some(e);
                continue;
            }
            if !self.cmdq.is_full(self.prod, cons) {
                break;
            }
            polls += 1;
            if polls > POLL_LIMIT {
                return Err(Error::QueueTimeout);
            }
        }
        let slot = self.layout.cmdq_pa + 16 * u64::from(self.cmdq.slot(self.prod));
        if !self.bus.mem_write_u64(slot, words[0]) || !self.bus.mem_write_u64(slot + 8, words[1]) {
            return Err(Error::BadMemory);
        }
        self.prod = self.cmdq.next(self.prod);
        self.bus.write32(regs::S_CMDQ_PROD, self.prod);
        Ok(rejected)
    }

    fn wait_consumed(&mut self, ptr: u32) -> Result<Option<CmdqError>, Error> {
        let mut rejected = None;
        for _ in 0..POLL_LIMIT {
            let cons = self.bus.read32(regs::S_CMDQ_CONS);
            if let Some(e) = self.recover(cons) {
                rejected = Some(e);
                continue;
            }
            if self.cmdq.consumed(ptr, self.prod, cons) {
                return Ok(rejected);
            }
        }
        Err(Error::QueueTimeout)
    }

    /// If the queue stopped on an error: overwrite the offending entry with a CMD_SYNC (a
    /// command that cannot fail) and acknowledge the error so the SMMU resumes there.
    fn recover(&mut self, cons: u32) -> Option<CmdqError> {
        let gerror = self.bus.read32(regs::S_GERROR);
        let gerrorn = self.bus.read32(regs::S_GERRORN);
        if (gerror ^ gerrorn) & regs::GERROR_CMDQ_ERR == 0 {
            return None;
        }
        let err = CmdqError::from_cons(cons);
        let slot = self.layout.cmdq_pa + 16 * u64::from(self.cmdq.slot(cons));
        let sync = Command::Sync {
            signal: SyncSignal::None,
        }
        .encode();
        // The slot was written by this driver, so the bus accepts it.
        self.bus.mem_write_u64(slot, sync[0]);
        self.bus.mem_write_u64(slot + 8, sync[1]);
        self.bus
            .write32(regs::S_GERRORN, gerrorn ^ regs::GERROR_CMDQ_ERR);
        Some(err)
    }

    fn set_cr0(&mut self, value: u32) -> Result<(), Error> {
        self.bus.write32(regs::S_CR0, value);
        for _ in 0..POLL_LIMIT {
            if self.bus.read32(regs::S_CR0ACK) == value {
                return Ok(());
            }
        }
        Err(Error::AckTimeout)
    }
}

#[cfg(test)]
mod tests;
