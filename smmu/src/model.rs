//! A host model of the SMMUv3 secure programming interface, behaving as the hardware does in
//! the ways a driver can get wrong: the command queue is consumed when PROD is written and CONS
//! advances past each command; an illegal command stops the queue with `CONS.ERR` set and
//! `S_GERROR.CMDQ_ERR` toggled until software acknowledges it through `S_GERRORN`; STEs are
//! cached when first used and only `CFGI_STE` / `CFGI_ALL` drop them, so a driver that forgets
//! the invalidation keeps getting the old configuration.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::Bus;
use crate::cmd::Command;
use crate::queue::Queue;
use crate::regs::{self, CmdqError};
use crate::ste::{Ste, SteError};

/// Why the model refuses a stream's transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The stream id is outside the stream table (`C_BAD_STREAMID`).
    BadStreamId(u32),
    /// The STE is malformed or uses an unimplemented configuration (`C_BAD_STE`).
    BadSte(SteError),
    /// The STE could not be fetched (`F_STE_FETCH`).
    SteFetch,
    /// The stream's STE aborts it (Config abort, or V=0).
    Abort,
    /// The stage-2 walk refused the access.
    Walk(crate::s2::WalkFault),
}

/// The memory the model's table walks and queue reads see (physical addresses, as the SMMU
/// sees them): a buffer on the host, the machine's RAM in the testbed.
pub trait Memory {
    fn read_u64(&self, pa: u64) -> Option<u64>;
    /// `false` if `pa` is not memory the model may write.
    fn write_u64(&mut self, pa: u64, value: u64) -> bool;
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
    cr0: u32,
    gerror: u32,
    gerrorn: u32,
    strtab_base: u64,
    strtab_cfg: u32,
    cmdq_base: u64,
    cmdq_prod: u32,
    cmdq_cons: u32,
    ste_cache: BTreeMap<u32, Result<Ste, Fault>>,
    mem: M,
    /// Commands the model executed, in order (for tests and the testbed's log).
    pub executed: Vec<Command>,
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
            cr0: 0,
            gerror: 0,
            gerrorn: 0,
            strtab_base: 0,
            strtab_cfg: 0,
            cmdq_base: 0,
            cmdq_prod: 0,
            cmdq_cons: 0,
            ste_cache: BTreeMap::new(),
            mem,
            executed: Vec::new(),
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
            *word = self
                .mem_read_u64(base + 8 * i as u64)
                .ok_or(Fault::SteFetch)?;
        }
        Ste::decode(w).map_err(Fault::BadSte)
    }

    /// A transaction of secure stream `sid` to `iova` (a write if `write`), through the STE in
    /// force and its stage-2 tables in the model's memory; the output address or the fault.
    pub fn translate(&mut self, sid: u32, iova: u64, write: bool) -> Result<u64, Fault> {
        match self.ste(sid)? {
            Ste::Invalid | Ste::Abort => Err(Fault::Abort),
            Ste::Bypass => Ok(iova),
            Ste::Stage2(s2) => {
                crate::s2::walk(&mut ModelMem(&self.mem), &s2, iova, write).map_err(Fault::Walk)
            }
        }
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
            regs::S_IDR1 => self.idr1,
            regs::S_CR0 => self.cr0,
            regs::S_CR0ACK => self.cr0, // acknowledged at once
            regs::S_GERROR => self.gerror,
            regs::S_GERRORN => self.gerrorn,
            regs::S_STRTAB_BASE_CFG => self.strtab_cfg,
            regs::S_CMDQ_PROD => self.cmdq_prod,
            regs::S_CMDQ_CONS => self.cmdq_cons,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        match offset {
            regs::S_CR0 => {
                self.cr0 = value & (regs::CR0_SMMUEN | regs::CR0_EVENTQEN | regs::CR0_CMDQEN);
                self.process_cmdq();
            }
            regs::S_GERRORN => {
                self.gerrorn = value;
                self.process_cmdq();
            }
            regs::S_STRTAB_BASE_CFG => self.strtab_cfg = value,
            regs::S_CMDQ_PROD => {
                self.cmdq_prod = value;
                self.process_cmdq();
            }
            // Software may only move CONS while the queue is disabled.
            regs::S_CMDQ_CONS if self.cr0 & regs::CR0_CMDQEN == 0 => self.cmdq_cons = value,
            _ => {}
        }
    }

    fn write64(&mut self, offset: usize, value: u64) {
        match offset {
            regs::S_STRTAB_BASE => self.strtab_base = value,
            regs::S_CMDQ_BASE => self.cmdq_base = value,
            _ => {}
        }
    }

    fn mem_write_u64(&mut self, pa: u64, value: u64) -> bool {
        self.mem.write_u64(pa, value)
    }
}
