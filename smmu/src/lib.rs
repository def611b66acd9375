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
//! Faults reach software as event records in the secure event queue ([`event`] has the record
//! formats): the model writes them, [`SecureSmmu::drain_events`] reads and decodes them, and
//! [`SecureSmmu::gerror`] reports and acknowledges the global errors (`S_GERROR`).
//!
//! Hand-written: no maintained `no_std` SMMUv3 or Rockchip IOMMU crate exists for the secure
//! side.
#![no_std]

extern crate alloc;

pub mod cmd;
pub mod event;
pub mod model;
pub mod queue;
pub mod regs;
pub mod rkiommu;
pub mod s2;
pub mod ste;

use alloc::vec::Vec;

use cmd::{Command, SyncSignal};
use event::{Event, Record};
use queue::Queue;
use regs::CmdqError;
use ste::Ste;

/// What the driver needs from the platform: the SMMU's register page and the memory holding
/// its stream table and queues (physical addresses, as the SMMU sees them).
pub trait Bus {
    fn read32(&mut self, offset: usize) -> u32;
    fn write32(&mut self, offset: usize, value: u32);
    fn write64(&mut self, offset: usize, value: u64);
    /// Writes one little-endian word of table/queue memory; `false` if `pa` is not such memory.
    fn mem_write_u64(&mut self, pa: u64, value: u64) -> bool;
    /// Reads one little-endian word of the event queue; `None` if `pa` is not that memory.
    fn mem_read_u64(&mut self, pa: u64) -> Option<u64>;
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
    /// Secure event queue: `1 << eventq_log2` records of 32 bytes, aligned to its size. The
    /// SMMU uses at most `SMMU_IDR1.EVENTQS` of it (see [`SecureSmmu::eventq_log2`]).
    pub eventq_pa: u64,
    pub eventq_log2: u32,
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

/// What one [`SecureSmmu::drain_events`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Records consumed (each handed to the callback, decoded or not).
    pub records: u32,
    /// The queue overflowed since the last drain: the SMMU dropped one or more records. The
    /// overflow is acknowledged (`CONS.OVACKFLG`), so the next one is reported again.
    pub overflowed: bool,
    /// `S_GERROR.EVENTQ_ABT_ERR` is active: a record write aborted, records may have been lost
    /// and none are delivered until [`SecureSmmu::gerror`] acknowledges it.
    pub write_aborted: bool,
}

/// The secure global errors that were active, as [`SecureSmmu::gerror`] found them (and then
/// acknowledged them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalErrors {
    /// Active bits (`S_GERROR ^ S_GERRORN`, the `regs::GERROR_*` bits).
    pub active: u32,
    /// Why the command queue had stopped, if `CMDQ_ERR` was active (the queue was recovered).
    pub cmdq: Option<CmdqError>,
}

impl GlobalErrors {
    pub fn is_empty(&self) -> bool {
        self.active == 0
    }
    pub fn eventq_abort(&self) -> bool {
        self.active & regs::GERROR_EVENTQ_ABT_ERR != 0
    }
    /// Service failure mode: acknowledging does not leave it; the SMMU has stopped.
    pub fn service_failure(&self) -> bool {
        self.active & regs::GERROR_SFM_ERR != 0
    }
}

/// Polls before a register wait gives up. The model answers at once; hardware in microseconds.
const POLL_LIMIT: u32 = 1 << 20;

/// The secure side of one SMMUv3, initialised.
pub struct SecureSmmu<B: Bus> {
    bus: B,
    layout: Layout,
    cmdq: Queue,
    prod: u32,
    /// The event queue in use (capped at `SMMU_IDR1.EVENTQS`).
    evtq: Queue,
    /// This driver's `S_EVENTQ_CONS`: RD, and OVACKFLG = the last OVFLG it acknowledged.
    evtq_cons: u32,
}

impl<B: Bus> SecureSmmu<B> {
    /// Probes the secure interface, then builds an all-abort stream table, an empty command
    /// queue and an empty event queue, enables both queues, invalidates cached configuration
    /// and enables translation with `C_BAD_STREAMID` recording on (IHI 0070 sec. 6.3.60, 7.2).
    pub fn init(mut bus: B, layout: Layout) -> Result<Self, Error> {
        let idr1 = bus.read32(regs::S_IDR1);
        if idr1 & regs::S_IDR1_SECURE_IMPL == 0 {
            return Err(Error::NoSecureSide);
        }
        let sid_bits = idr1 & regs::S_IDR1_SIDSIZE_MASK;
        let cmdq = Queue::new(layout.cmdq_log2).ok_or(Error::BadLayout)?;
        let eventqs = (bus.read32(regs::IDR1) >> regs::IDR1_EVENTQS_SHIFT) & regs::IDR1_QS_MASK;
        let evtq = Queue::new(layout.eventq_log2.min(eventqs)).ok_or(Error::BadLayout)?;
        if Queue::new(layout.eventq_log2).is_none()
            || !layout
                .eventq_pa
                .is_multiple_of(regs::EVENTQ_ENTRY_BYTES << layout.eventq_log2)
            || layout.strtab_log2 > sid_bits
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
            evtq,
            evtq_cons: 0,
        };
        smmu.set_cr0(0)?;
        // The driver reads the records the SMMU writes: check it can, at both ends.
        let evtq_last = layout.eventq_pa + (regs::EVENTQ_ENTRY_BYTES << evtq.log2size()) - 8;
        if smmu.bus.mem_read_u64(layout.eventq_pa).is_none()
            || smmu.bus.mem_read_u64(evtq_last).is_none()
        {
            return Err(Error::BadMemory);
        }
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
        // The event queue's base, PROD and CONS are guarded by EVENTQEN = 0 (sec. 6.3.77-79).
        smmu.bus.write64(
            regs::S_EVENTQ_BASE,
            (layout.eventq_pa & regs::BASE_ADDR_MASK) | u64::from(evtq.log2size()),
        );
        smmu.bus.write32(regs::S_EVENTQ_PROD, 0);
        smmu.bus.write32(regs::S_EVENTQ_CONS, 0);
        smmu.bus.write32(regs::S_CR2, regs::CR2_RECINVSID);
        let queues = regs::CR0_CMDQEN | regs::CR0_EVENTQEN;
        smmu.set_cr0(queues)?;
        smmu.submit(&[Command::CfgiAll])?;
        smmu.set_cr0(queues | regs::CR0_SMMUEN)?;
        Ok(smmu)
    }

    /// `LOG2SIZE` of the event queue in use: the layout's, capped at `SMMU_IDR1.EVENTQS`.
    pub fn eventq_log2(&self) -> u32 {
        self.evtq.log2size()
    }

    /// Consumes the event records between CONS and the PROD read on entry, oldest first: each
    /// is decoded and handed to `f` (an undecodable one as `Err`), then CONS moves past all of
    /// them with the overflow acknowledged. Records the SMMU writes meanwhile wait for the next
    /// call. A record the bus cannot read stops the drain with [`Error::BadMemory`], CONS left
    /// at that record.
    pub fn drain_events(&mut self, mut f: impl FnMut(Record)) -> Result<Drained, Error> {
        let prod = self.bus.read32(regs::S_EVENTQ_PROD);
        let ovflg = prod & regs::EVENTQ_OVFLG;
        let mut drained = Drained {
            overflowed: ovflg != self.evtq_cons & regs::EVENTQ_OVFLG,
            ..Drained::default()
        };
        let mut cons = self.evtq_cons & regs::EVENTQ_PTR_MASK;
        let mut bad = false;
        while !self.evtq.is_empty(prod, cons) {
            let slot =
                self.layout.eventq_pa + regs::EVENTQ_ENTRY_BYTES * u64::from(self.evtq.slot(cons));
            let mut words = [0u64; 4];
            for (i, w) in words.iter_mut().enumerate() {
                match self.bus.mem_read_u64(slot + 8 * i as u64) {
                    Some(v) => *w = v,
                    None => bad = true,
                }
            }
            if bad {
                break;
            }
            f(Event::decode(words));
            drained.records += 1;
            cons = self.evtq.next(cons);
        }
        if drained.records > 0 || drained.overflowed {
            self.evtq_cons = ovflg | cons;
            self.bus.write32(regs::S_EVENTQ_CONS, self.evtq_cons);
        }
        let active = self.bus.read32(regs::S_GERROR) ^ self.bus.read32(regs::S_GERRORN);
        drained.write_aborted = active & regs::GERROR_EVENTQ_ABT_ERR != 0;
        if bad {
            return Err(Error::BadMemory);
        }
        Ok(drained)
    }

    /// [`Self::drain_events`] into a vector.
    pub fn events(&mut self) -> Result<(Vec<Record>, Drained), Error> {
        let mut v = Vec::new();
        let d = self.drain_events(|r| v.push(r))?;
        Ok((v, d))
    }

    /// Reads the active secure global errors and acknowledges each (toggling its
    /// `S_GERRORN` bit, and only active ones: sec. 6.3.68). An active `CMDQ_ERR` is recovered
    /// as [`Self::submit`] does (the offending command replaced by a CMD_SYNC) so the queue
    /// resumes; an acknowledged `EVENTQ_ABT_ERR` lets the SMMU deliver records again (the
    /// model's aborts are synchronous, so the records before PROD stay valid).
    pub fn gerror(&mut self) -> GlobalErrors {
        let active = (self.bus.read32(regs::S_GERROR) ^ self.bus.read32(regs::S_GERRORN))
            & regs::S_GERROR_MASK;
        let mut cmdq = None;
        if active & regs::GERROR_CMDQ_ERR != 0 {
            let cons = self.bus.read32(regs::S_CMDQ_CONS);
            cmdq = self.recover(cons);
        }
        let rest = active & !regs::GERROR_CMDQ_ERR;
        if rest != 0 {
            let n = self.bus.read32(regs::S_GERRORN);
            self.bus.write32(regs::S_GERRORN, n ^ rest);
        }
        GlobalErrors { active, cmdq }
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
