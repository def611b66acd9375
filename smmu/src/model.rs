//! A host model of the SMMUv3 secure programming interface, behaving as the hardware does in
//! the ways a driver can get wrong: the command queue is consumed when PROD is written and CONS
//! advances past each command; an illegal command stops the queue with `CONS.ERR` set and
//! `S_GERROR.CMDQ_ERR` toggled until software acknowledges it through `S_GERRORN`; STEs are
//! cached when first used and only `CFGI_STE` / `CFGI_ALL` drop them, so a driver that forgets
//! the invalidation keeps getting the old configuration.
//!
//! A terminated transaction records its event (see [`crate::event`] for which) in the secure
//! event queue through [`Memory::write_u64`], as [`eventq`] describes: PROD advances with wrap,
//! a full queue drops the record and flags overflow, a refused write activates
//! `S_GERROR.EVENTQ_ABT_ERR` until software acknowledges it through `S_GERRORN`.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::Bus;
use crate::cmd::Command;
use crate::event::{AccessAttrs, Class, Event, Stream, TranslationFault};
use crate::queue::Queue;
use crate::regs::{self, CmdqError};
use crate::s2::WalkFault;
use crate::ste::{Ste, SteError};

pub mod eventq;
pub use eventq::Delivery;

/// The model's physical (and, for stage-2-only streams, intermediate) address size: 48 bits.
/// An address at or above `1 << OAS_BITS` entering a stream whose stage 1 is bypassed faults
/// with a stage-1 address size fault (IHI 0070 sec. 3.4).
pub const OAS_BITS: u32 = 48;

/// Why the model refuses a stream's transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The stream id is outside the stream table (`C_BAD_STREAMID`).
    BadStreamId(u32),
    /// The STE is malformed or uses an unimplemented configuration (`C_BAD_STE`).
    BadSte(SteError),
    /// The STE at `pa` could not be fetched (`F_STE_FETCH`).
    SteFetch { pa: u64 },
    /// The STE has V = 0 (`C_BAD_STE`).
    SteInvalid,
    /// A SubstreamID came with a transaction of a stream without stage 1
    /// (`C_BAD_SUBSTREAMID`).
    BadSubstreamId(u32),
    /// The stream's STE aborts it (Config abort: no event), or the SMMU is disabled and
    /// `S_GBPA` aborts.
    Abort,
    /// The address is at or above `1 << OAS_BITS` with stage 1 bypassed (`F_ADDR_SIZE`, S2 = 0).
    AddressSize { iova: u64 },
    /// The stage-2 walk refused the access.
    Walk(WalkFault),
}

/// One transaction presented to the SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub sid: u32,
    /// The SubstreamID, if the device sent one.
    pub ssid: Option<u32>,
    pub iova: u64,
    pub write: bool,
    /// An instruction fetch (a read).
    pub instruction: bool,
    pub privileged: bool,
}

impl Transaction {
    /// A device's plain data access: no SubstreamID, unprivileged.
    pub fn data(sid: u32, iova: u64, write: bool) -> Self {
        Self {
            sid,
            ssid: None,
            iova,
            write,
            instruction: false,
            privileged: false,
        }
    }

    fn stream(&self) -> Stream {
        Stream {
            sid: self.sid,
            ssid: self.ssid,
        }
    }
}

/// The memory the model's table walks and queue reads see (physical addresses, as the SMMU
/// sees them): a buffer on the host, the machine's RAM in the testbed.
pub trait Memory {
    fn read_u64(&self, pa: u64) -> Option<u64>;
    /// `false` if `pa` is not memory the model may write (the SMMU sees an external abort).
    /// The SMMU's own writes are only event records, inside the window last given to
    /// [`Memory::set_write_window`]; the model's [`Bus::mem_write_u64`] (the CPU's table
    /// writes, in host tests) comes here too.
    fn write_u64(&mut self, pa: u64, value: u64) -> bool;
    /// Where the SMMU may write from now on: the secure event queue as software programmed it
    /// (`S_EVENTQ_BASE`), `None` while the queue is disabled. A memory that guards what the
    /// SMMU may touch (the testbed's) refuses writes outside it; by default nothing changes.
    fn set_write_window(&mut self, window: Option<core::ops::Range<u64>>) {
        let _ = window;
    }
}

/// `len` bytes of zeroed memory at `base`.
pub struct VecMemory {
    base: u64,
    bytes: Vec<u8>,
}

impl VecMemory {
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
        }
    }

    fn range(&self, pa: u64) -> Option<core::ops::Range<usize>> {
        let off = usize::try_from(pa.checked_sub(self.base)?).ok()?;
        let end = off.checked_add(8)?;
        (end <= self.bytes.len()).then_some(off..end)
    }
}

impl Memory for VecMemory {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        let bytes = self.bytes.get(self.range(pa)?)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    fn write_u64(&mut self, pa: u64, value: u64) -> bool {
        match self.range(pa) {
            Some(r) => {
                self.bytes[r].copy_from_slice(&value.to_le_bytes());
                true
            }
            None => false,
        }
    }
}

/// The model: registers, an STE cache, and the memory the tables live in.
pub struct Smmuv3Model<M = VecMemory> {
    pub idr1: u32,
    /// `SMMU_IDR1.EVENTQS`: the largest event queue this SMMU uses (architectural maximum by
    /// default; tests shrink it).
    pub eventqs: u32,
    cr0: u32,
    cr2: u32,
    gerror: u32,
    gerrorn: u32,
    strtab_base: u64,
    strtab_cfg: u32,
    cmdq_base: u64,
    cmdq_prod: u32,
    cmdq_cons: u32,
    eventq: eventq::EventQueue,
    ste_cache: BTreeMap<u32, Result<Ste, Fault>>,
    mem: M,
    /// Commands the model executed, in order (for tests and the testbed's log).
    pub executed: Vec<Command>,
    /// What became of the last event the model raised (for tests).
    pub last_delivery: Option<(Event, Delivery)>,
}

/// The model's memory as the table walker reads it (the walker allocates and writes nothing).
struct ModelMem<'a, M>(&'a M);

impl<M: Memory> crate::s2::TableMemory for ModelMem<'_, M> {
    fn alloc_page(&mut self) -> Option<u64> {
        None
    }
    fn read_u64(&mut self, pa: u64) -> Option<u64> {
        self.0.read_u64(pa)
    }
    fn write_u64(&mut self, _: u64, _: u64) -> bool {
        false
    }
}

impl Smmuv3Model {
    /// A secure-capable SMMU with `sid_bits`-bit stream ids and `mem_len` bytes of memory at
    /// `mem_base` for its tables.
    pub fn new(sid_bits: u32, mem_base: u64, mem_len: usize) -> Self {
        Self::with_memory(sid_bits, VecMemory::new(mem_base, mem_len))
    }
}

impl<M: Memory> Smmuv3Model<M> {
    /// A secure-capable SMMU with `sid_bits`-bit stream ids over `mem`.
    pub fn with_memory(sid_bits: u32, mem: M) -> Self {
        Self {
            idr1: regs::S_IDR1_SECURE_IMPL
                | regs::S_IDR1_SEL2
                | (sid_bits & regs::S_IDR1_SIDSIZE_MASK),
            eventqs: crate::queue::MAX_LOG2SIZE,
            cr0: 0,
            cr2: 0,
            gerror: 0,
            gerrorn: 0,
            strtab_base: 0,
            strtab_cfg: 0,
            cmdq_base: 0,
            cmdq_prod: 0,
            cmdq_cons: 0,
            eventq: eventq::EventQueue::default(),
            ste_cache: BTreeMap::new(),
            mem,
            executed: Vec::new(),
            last_delivery: None,
        }
    }

    /// The configuration in force for secure stream `sid`, as a transaction would see it.
    pub fn ste(&mut self, sid: u32) -> Result<Ste, Fault> {
        if self.cr0 & regs::CR0_SMMUEN == 0 {
            return Ok(Ste::Abort); // S_GBPA.ABORT, as the driver leaves it
        }
        if let Some(cached) = self.ste_cache.get(&sid) {
            return *cached;
        }
        let fetched = self.fetch_ste(sid);
        self.ste_cache.insert(sid, fetched);
        fetched
    }

    fn fetch_ste(&self, sid: u32) -> Result<Ste, Fault> {
        let log2 = self.strtab_cfg & regs::STRTAB_CFG_LOG2SIZE_MASK;
        if log2 > 31 || sid >= 1 << log2 {
            return Err(Fault::BadStreamId(sid));
        }
        let base = (self.strtab_base & regs::BASE_ADDR_MASK & !0x3f) + u64::from(sid) * 64;
        let mut w = [0u64; 8];
        for (i, word) in w.iter_mut().enumerate() {
            let pa = base + 8 * i as u64;
            *word = self.mem_read_u64(pa).ok_or(Fault::SteFetch { pa })?;
        }
        Ste::decode(w).map_err(Fault::BadSte)
    }

    /// A data transaction of secure stream `sid` to `iova` (a write if `write`): see
    /// [`Self::translate_txn`].
    pub fn translate(&mut self, sid: u32, iova: u64, write: bool) -> Result<u64, Fault> {
        self.translate_txn(Transaction::data(sid, iova, write))
    }

    /// A transaction through the STE in force and its stage-2 tables in the model's memory:
    /// the output address, or the fault, whose event (if it has one) goes to the secure event
    /// queue.
    pub fn translate_txn(&mut self, t: Transaction) -> Result<u64, Fault> {
        let r = self.resolve(&t);
        if let Err(f) = r
            && let Some(ev) = self.event_for(&t, f)
        {
            let d = self.eventq.record(
                &mut self.mem,
                self.cr0 & regs::CR0_EVENTQEN != 0,
                self.eventqs,
                &mut self.gerror,
                self.gerrorn,
                &ev,
            );
            self.last_delivery = Some((ev, d));
        }
        r
    }

    fn resolve(&mut self, t: &Transaction) -> Result<u64, Fault> {
        let ste = self.ste(t.sid)?;
        if matches!(ste, Ste::Bypass | Ste::Stage2(_))
            && let Some(ssid) = t.ssid
        {
            return Err(Fault::BadSubstreamId(ssid)); // no stage 1, so no substreams
        }
        let oas_ok = t.iova >> OAS_BITS == 0;
        match ste {
            Ste::Invalid => Err(Fault::SteInvalid),
            Ste::Abort => Err(Fault::Abort),
            Ste::Bypass | Ste::Stage2(_) if !oas_ok => Err(Fault::AddressSize { iova: t.iova }),
            Ste::Bypass => Ok(t.iova),
            Ste::Stage2(s2) => {
                crate::s2::walk(&mut ModelMem(&self.mem), &s2, t.iova, t.write).map_err(Fault::Walk)
            }
        }
    }

    /// The event a fault records (IHI 0070 sec. 7.3; the table in [`crate::event`]).
    fn event_for(&self, t: &Transaction, f: Fault) -> Option<Event> {
        let stream = t.stream();
        let fault = |stage2: bool, ipa: bool| TranslationFault {
            stream,
            attrs: AccessAttrs {
                read: !t.write,
                instruction: t.instruction && !t.write,
                privileged: t.privileged,
            },
            stage2,
            class: Class::Input,
            input_addr: t.iova,
            // Stage 2 only: the IPA is the input address.
            ipa: ipa.then_some(t.iova & !0xfff),
        };
        Some(match f {
            Fault::BadStreamId(_) if self.cr2 & regs::CR2_RECINVSID == 0 => return None,
            Fault::BadStreamId(_) => Event::BadStreamId(stream),
            Fault::SteFetch { pa } => Event::SteFetch {
                stream,
                fetch_addr: pa,
            },
            Fault::BadSte(_) | Fault::SteInvalid => Event::BadSte(stream),
            Fault::BadSubstreamId(ssid) => Event::BadSubstreamId { sid: t.sid, ssid },
            Fault::Abort => return None,
            Fault::AddressSize { .. } => Event::AddressSize(fault(false, false)),
            Fault::Walk(w) => match w {
                WalkFault::Translation { .. } | WalkFault::AddressSize { .. } => {
                    Event::Translation(fault(true, true))
                }
                WalkFault::AccessFlag { .. } => Event::AccessFlag(fault(true, true)),
                WalkFault::OutputSize { .. } => Event::AddressSize(fault(true, true)),
                WalkFault::Permission { .. } => Event::Permission(fault(true, true)),
                WalkFault::External { pa } => Event::WalkAbort {
                    fault: fault(true, false),
                    fetch_addr: pa,
                },
            },
        })
    }

    /// The secure event queue's memory while it is enabled.
    pub fn eventq_window(&self) -> Option<core::ops::Range<u64>> {
        (self.cr0 & regs::CR0_EVENTQEN != 0).then(|| self.eventq.window(self.eventqs))
    }

    fn update_write_window(&mut self) {
        let w = self.eventq_window();
        self.mem.set_write_window(w);
    }

    /// The memory the model walks and writes records into.
    pub fn memory(&mut self) -> &mut M {
        &mut self.mem
    }

    pub fn mem_read_u64(&self, pa: u64) -> Option<u64> {
        self.mem.read_u64(pa)
    }

    fn cmdq(&self) -> Option<Queue> {
        Queue::new((self.cmdq_base & regs::QBASE_LOG2SIZE_MASK) as u32)
    }

    fn cmdq_stopped(&self) -> bool {
        (self.gerror ^ self.gerrorn) & regs::GERROR_CMDQ_ERR != 0
    }

    /// Consumes commands from CONS to PROD, stopping at the first illegal one.
    fn process_cmdq(&mut self) {
        let Some(q) = self.cmdq() else { return };
        if self.cr0 & regs::CR0_CMDQEN == 0 || self.cmdq_stopped() {
            return;
        }
        let base = self.cmdq_base & regs::BASE_ADDR_MASK;
        let mut cons = self.cmdq_cons & !regs::CONS_ERR_MASK;
        while !q.is_empty(self.cmdq_prod, cons) {
            let slot = base + 16 * u64::from(q.slot(cons));
            let entry = self.mem_read_u64(slot).zip(self.mem_read_u64(slot + 8));
            let err = match entry.map(|(a, b)| Command::decode([a, b])) {
                None => Some(CmdqError::Abort),
                Some(Err(_)) => Some(CmdqError::Illegal),
                Some(Ok(c)) => {
                    self.execute(c);
                    None
                }
            };
            if let Some(e) = err {
                self.cmdq_cons = cons | (u32::from(e as u8) << regs::CONS_ERR_SHIFT);
                self.gerror ^= regs::GERROR_CMDQ_ERR;
                return;
            }
            cons = q.next(cons);
        }
        self.cmdq_cons = cons;
    }

    fn execute(&mut self, c: Command) {
        match c {
            Command::CfgiSte { sid, .. } => {
                self.ste_cache.remove(&sid);
            }
            Command::CfgiAll => self.ste_cache.clear(),
            // No TLB is modelled; completion is CONS moving past the command.
            Command::TlbiS12Vmall { .. } | Command::TlbiNsnhAll | Command::Sync { .. } => {}
        }
        self.executed.push(c);
    }
}

impl<M: Memory> Bus for Smmuv3Model<M> {
    fn read32(&mut self, offset: usize) -> u32 {
        match offset {
            regs::IDR1 => {
                (crate::queue::MAX_LOG2SIZE << regs::IDR1_CMDQS_SHIFT)
                    | ((self.eventqs & regs::IDR1_QS_MASK) << regs::IDR1_EVENTQS_SHIFT)
            }
            regs::S_IDR1 => self.idr1,
            regs::S_CR0 => self.cr0,
            regs::S_CR0ACK => self.cr0, // acknowledged at once
            regs::S_GERROR => self.gerror,
            regs::S_GERRORN => self.gerrorn,
            regs::S_CR2 => self.cr2,
            regs::S_STRTAB_BASE_CFG => self.strtab_cfg,
            regs::S_CMDQ_PROD => self.cmdq_prod,
            regs::S_CMDQ_CONS => self.cmdq_cons,
            regs::S_EVENTQ_BASE => self.eventq.base as u32,
            r if r == regs::S_EVENTQ_BASE + 4 => (self.eventq.base >> 32) as u32,
            regs::S_EVENTQ_PROD => self.eventq.prod,
            regs::S_EVENTQ_CONS => self.eventq.cons,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        match offset {
            regs::S_CR0 => {
                self.cr0 = value & (regs::CR0_SMMUEN | regs::CR0_EVENTQEN | regs::CR0_CMDQEN);
                self.update_write_window();
                self.process_cmdq();
            }
            // Read-only while translation is enabled (sec. 6.3.60).
            regs::S_CR2 if self.cr0 & regs::CR0_SMMUEN == 0 => {
                self.cr2 = value & (regs::CR2_RECINVSID | 0b101);
            }
            regs::S_GERRORN => {
                self.gerrorn = value & regs::S_GERROR_MASK;
                self.process_cmdq();
            }
            regs::S_STRTAB_BASE_CFG => self.strtab_cfg = value,
            regs::S_CMDQ_PROD => {
                self.cmdq_prod = value;
                self.process_cmdq();
            }
            // Software may only move CONS while the queue is disabled.
            regs::S_CMDQ_CONS if self.cr0 & regs::CR0_CMDQEN == 0 => self.cmdq_cons = value,
            // PROD is the SMMU's, software sets it only while the queue is disabled; CONS is
            // software's.
            regs::S_EVENTQ_PROD if self.cr0 & regs::CR0_EVENTQEN == 0 => {
                self.eventq.prod = value & (regs::EVENTQ_OVFLG | regs::EVENTQ_PTR_MASK);
            }
            regs::S_EVENTQ_CONS => {
                self.eventq.cons = value & (regs::EVENTQ_OVFLG | regs::EVENTQ_PTR_MASK);
            }
            _ => {}
        }
    }

    fn write64(&mut self, offset: usize, value: u64) {
        match offset {
            regs::S_STRTAB_BASE => self.strtab_base = value,
            regs::S_CMDQ_BASE => self.cmdq_base = value,
            // Guarded by EVENTQEN (sec. 6.3.77).
            regs::S_EVENTQ_BASE if self.cr0 & regs::CR0_EVENTQEN == 0 => {
                self.eventq.base = value & ((1 << 63) - 1);
                self.update_write_window();
            }
            _ => {}
        }
    }

    fn mem_write_u64(&mut self, pa: u64, value: u64) -> bool {
        self.mem.write_u64(pa, value)
    }

    fn mem_read_u64(&mut self, pa: u64) -> Option<u64> {
        self.mem.read_u64(pa)
    }
}
