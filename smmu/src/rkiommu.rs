//! Rockchip IOMMU v2: the MMU in front of each RK3588 NPU core (`rockchip,rk3588-iommu`,
//! DESIGN.md sec. 7; platform-facts.md sec. 8 "NPU MMU"). Not an SMMUv3: a two-level table
//! (1024 DTEs → 1024 PTEs of 4 KiB pages) over a 32-bit IOVA, per core, behind a small register
//! block. Flex-NPU points it at tables in secure memory while the NPU is secure, so the NPU's
//! DMA reaches only the pages the partition maps.
//!
//! Formats and registers follow Linux `drivers/iommu/rockchip-iommu.c` (the v2 `rk_mk_dte_v2`,
//! `rk_mk_pte_v2`, `rk_dma_addr_dte_v2` encodings and the `RK_MMU_*` registers). Where the
//! driver's comments and its masks disagree (the comment says PA[34:32] in bits 11:9), the masks
//! are taken: PA[35:32] in bits 11:8 and PA[39:36] in bits 7:4. Unverified on a board.
//!
//! - [`Dte`], [`Pte`], [`dte_addr_register`]: encodings, with decoders the model uses.
//! - [`PageTables`]: the tables, built in memory, with [`PageTables::translate`] as the
//!   hardware walks them (the testbed's NPU model uses it for DMA).
//! - [`RkIommu`]: enable / disable / zap over [`crate::Bus`]-like register access, tested
//!   against [`model::RkIommuModel`], which behaves as the driver expects the hardware to.

pub mod model;

use alloc::{boxed::Box, collections::BTreeMap};

/// Register offsets of one IOMMU instance.
pub mod reg {
    pub const DTE_ADDR: usize = 0x00;
    pub const STATUS: usize = 0x04;
    pub const COMMAND: usize = 0x08;
    pub const PAGE_FAULT_ADDR: usize = 0x0c;
    pub const ZAP_ONE_LINE: usize = 0x10;
    pub const INT_RAWSTAT: usize = 0x14;
    pub const INT_CLEAR: usize = 0x18;
    pub const INT_MASK: usize = 0x1c;
    pub const INT_STATUS: usize = 0x20;
    pub const AUTO_GATING: usize = 0x24;
}

/// `COMMAND` values.
pub mod cmd {
    pub const ENABLE_PAGING: u32 = 0;
    pub const DISABLE_PAGING: u32 = 1;
    pub const ENABLE_STALL: u32 = 2;
    pub const DISABLE_STALL: u32 = 3;
    pub const ZAP_CACHE: u32 = 4;
    pub const PAGE_FAULT_DONE: u32 = 5;
    pub const FORCE_RESET: u32 = 6;
}

/// `STATUS` bits.
pub mod status {
    pub const PAGING_ENABLED: u32 = 1 << 0;
    pub const PAGE_FAULT_ACTIVE: u32 = 1 << 1;
    pub const STALL_ACTIVE: u32 = 1 << 2;
    pub const IDLE: u32 = 1 << 3;
    pub const PAGE_FAULT_IS_WRITE: u32 = 1 << 5;
}

/// Interrupt bits (`INT_*`).
pub mod irq {
    pub const PAGE_FAULT: u32 = 1 << 0;
    pub const BUS_ERROR: u32 = 1 << 1;
}

/// Entries per table level.
pub const ENTRIES: usize = 1024;
const PAGE: u64 = 4096;
/// Physical addresses the v2 format can hold: 40 bits.
pub const PA_LIMIT: u64 = 1 << 40;

/// Why an encoding or mapping is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RkError {
    /// Not 4 KiB aligned.
    Unaligned(u64),
    /// Above the 40-bit physical range.
    OutOfRange(u64),
    /// The IOVA is already mapped (unmap first).
    Mapped(u32),
    /// Nothing mapped at the IOVA.
    NotMapped(u32),
    /// The IOMMU did not reach the state a command asks for (status read back).
    Timeout { command: u32, status: u32 },
}

/// PA[31:12] in place, PA[35:32] in bits 11:8, PA[39:36] in bits 7:4.
fn pack(pa: u64) -> Result<u32, RkError> {
    if !pa.is_multiple_of(PAGE) {
        return Err(RkError::Unaligned(pa));
    }
    if pa >= PA_LIMIT {
        return Err(RkError::OutOfRange(pa));
    }
    Ok((pa as u32 & 0xffff_f000) | ((pa >> 24) as u32 & 0xf00) | ((pa >> 32) as u32 & 0xf0))
}

fn unpack(word: u32) -> u64 {
    u64::from(word & 0xffff_f000) | u64::from(word & 0xf00) << 24 | u64::from(word & 0xf0) << 32
}

const VALID: u32 = 1 << 0;
const READ: u32 = 1 << 1;
const WRITE: u32 = 1 << 2;

/// A directory entry: the page table's PA, valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dte(pub u32);

impl Dte {
    pub fn new(table_pa: u64) -> Result<Self, RkError> {
        Ok(Dte(pack(table_pa)? | VALID))
    }

    pub fn table(self) -> Option<u64> {
        (self.0 & VALID != 0).then(|| unpack(self.0))
    }
}

/// Access a page grants the NPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub read: bool,
    pub write: bool,
}

/// A page-table entry: the page's PA, readable/writable, valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte(pub u32);

impl Pte {
    pub fn new(page_pa: u64, perm: Perm) -> Result<Self, RkError> {
        let flags = if perm.read { READ } else { 0 } | if perm.write { WRITE } else { 0 };
        Ok(Pte(pack(page_pa)? | flags | VALID))
    }

    /// The page and its access, if valid.
    pub fn page(self) -> Option<(u64, Perm)> {
        (self.0 & VALID != 0).then(|| {
            (
                unpack(self.0),
                Perm {
                    read: self.0 & READ != 0,
                    write: self.0 & WRITE != 0,
                },
            )
        })
    }
}

/// The `DTE_ADDR` register value for a directory at `dir_pa`: PA[31:12] in place, PA[39:32] in
/// bits 11:4.
pub fn dte_addr_register(dir_pa: u64) -> Result<u32, RkError> {
    if !dir_pa.is_multiple_of(PAGE) {
        return Err(RkError::Unaligned(dir_pa));
    }
    if dir_pa >= PA_LIMIT {
        return Err(RkError::OutOfRange(dir_pa));
    }
    Ok((dir_pa as u32 & 0xffff_f000) | ((dir_pa >> 28) as u32 & 0xff0))
}

/// The directory's PA from a `DTE_ADDR` value.
pub fn dte_addr_decode(v: u32) -> u64 {
    u64::from(v & 0xffff_f000) | u64::from(v & 0xff0) << 28
}

/// Why a DMA access does not translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No valid DTE or PTE for the IOVA.
    Unmapped(u32),
    /// The page is mapped without the access asked for.
    Permission { iova: u32, write: bool },
}

/// The two-level tables of one IOMMU, in memory: a directory and the page tables it points
/// at. `table_pa` places each page table (the caller's allocator of secure pages).
pub struct PageTables {
    dir: Box<[u32; ENTRIES]>,
    tables: BTreeMap<usize, Box<[u32; ENTRIES]>>,
}

impl Default for PageTables {
    fn default() -> Self {
        Self::new()
    }
}

fn split(iova: u32) -> (usize, usize) {
    ((iova >> 22) as usize, (iova >> 12) as usize & (ENTRIES - 1))
}

impl PageTables {
    pub fn new() -> Self {
        PageTables {
            dir: Box::new([0; ENTRIES]),
            tables: BTreeMap::new(),
        }
    }

    /// Maps the page at `iova` to `pa`. A new page table, when the directory slot has none,
    /// goes at `table_pa(dte_index)`.
    pub fn map(
        &mut self,
        iova: u32,
        pa: u64,
        perm: Perm,
        table_pa: impl FnOnce(usize) -> u64,
    ) -> Result<(), RkError> {
        if !iova.is_multiple_of(PAGE as u32) {
            return Err(RkError::Unaligned(u64::from(iova)));
        }
        let pte = Pte::new(pa, perm)?;
        let (d, p) = split(iova);
        if !self.tables.contains_key(&d) {
            self.dir[d] = Dte::new(table_pa(d))?.0;
            self.tables.insert(d, Box::new([0; ENTRIES]));
        }
        let t = self.tables.get_mut(&d).ok_or(RkError::NotMapped(iova))?;
        if t[p] & VALID != 0 {
            return Err(RkError::Mapped(iova));
        }
        t[p] = pte.0;
        Ok(())
    }

    /// Unmaps the page at `iova` (the caller then zaps the IOMMU's cache line for it).
    pub fn unmap(&mut self, iova: u32) -> Result<(), RkError> {
        let (d, p) = split(iova);
        match self.tables.get_mut(&d) {
            Some(t) if t[p] & VALID != 0 => {
                t[p] = 0;
                Ok(())
            }
            _ => Err(RkError::NotMapped(iova)),
        }
    }

    /// The directory words (to copy into the directory page).
    pub fn directory(&self) -> &[u32; ENTRIES] {
        &self.dir
    }

    /// The page table of directory slot `d`, if any.
    pub fn table(&self, d: usize) -> Option<&[u32; ENTRIES]> {
        self.tables.get(&d).map(|t| &**t)
    }

    /// The hardware walk: DTE, PTE, access check.
    pub fn translate(&self, iova: u32, write: bool) -> Result<u64, Fault> {
        let (d, p) = split(iova);
        Dte(self.dir[d]).table().ok_or(Fault::Unmapped(iova))?;
        let t = self.tables.get(&d).ok_or(Fault::Unmapped(iova))?;
        let (page, perm) = Pte(t[p]).page().ok_or(Fault::Unmapped(iova))?;
        if (write && !perm.write) || (!write && !perm.read) {
            return Err(Fault::Permission { iova, write });
        }
        Ok(page | u64::from(iova) & (PAGE - 1))
    }
}

/// Register access to one IOMMU instance.
pub trait RkBus {
    fn read32(&mut self, offset: usize) -> u32;
    fn write32(&mut self, offset: usize, value: u32);
}

/// How many status reads a command may take before it is a [`RkError::Timeout`].
pub const POLLS: u32 = 1000;

/// The driver for one IOMMU instance.
pub struct RkIommu<B: RkBus> {
    bus: B,
}

impl<B: RkBus> RkIommu<B> {
    pub fn new(bus: B) -> Self {
        RkIommu { bus }
    }

    pub fn bus(&mut self) -> &mut B {
        &mut self.bus
    }

    fn command(&mut self, command: u32, done: impl Fn(u32) -> bool) -> Result<(), RkError> {
        self.bus.write32(reg::COMMAND, command);
        for _ in 0..POLLS {
            let s = self.bus.read32(reg::STATUS);
            if done(s) {
                return Ok(());
            }
        }
        Err(RkError::Timeout {
            command,
            status: self.bus.read32(reg::STATUS),
        })
    }

    /// Stall, reset, point at the directory at `dir_pa`, zap, unmask faults, page, unstall: the
    /// order of Linux's `rk_iommu_enable`. Transactions in flight wait in the stall.
    pub fn enable(&mut self, dir_pa: u64) -> Result<(), RkError> {
        let dte = dte_addr_register(dir_pa)?;
        self.command(cmd::ENABLE_STALL, |s| s & status::STALL_ACTIVE != 0)?;
        self.bus.write32(reg::DTE_ADDR, 0xffff_f000);
        let bus = &mut self.bus;
        bus.write32(reg::COMMAND, cmd::FORCE_RESET);
        let mut reset = false;
        for _ in 0..POLLS {
            if bus.read32(reg::DTE_ADDR) == 0 {
                reset = true;
                break;
            }
        }
        if !reset {
            return Err(RkError::Timeout {
                command: cmd::FORCE_RESET,
                status: bus.read32(reg::STATUS),
            });
        }
        self.bus.write32(reg::DTE_ADDR, dte);
        self.bus.write32(reg::COMMAND, cmd::ZAP_CACHE);
        self.bus
            .write32(reg::INT_MASK, irq::PAGE_FAULT | irq::BUS_ERROR);
        self.command(cmd::ENABLE_PAGING, |s| s & status::PAGING_ENABLED != 0)?;
        self.command(cmd::DISABLE_STALL, |s| s & status::STALL_ACTIVE == 0)
    }

    /// Stall, stop paging, unstall (Linux's `rk_iommu_disable`); the NPU then reaches nothing
    /// until the next enable: the model answers every access with a fault, as a reset MMU's
    /// empty DTE_ADDR would.
    pub fn disable(&mut self) -> Result<(), RkError> {
        self.command(cmd::ENABLE_STALL, |s| s & status::STALL_ACTIVE != 0)?;
        self.bus.write32(reg::INT_MASK, 0);
        self.bus.write32(reg::DTE_ADDR, 0);
        self.command(cmd::DISABLE_PAGING, |s| s & status::PAGING_ENABLED == 0)?;
        self.command(cmd::DISABLE_STALL, |s| s & status::STALL_ACTIVE == 0)
    }

    /// Drops every cached translation.
    pub fn zap(&mut self) {
        self.bus.write32(reg::COMMAND, cmd::ZAP_CACHE);
    }

    /// Drops the cached translation of one page.
    pub fn zap_one(&mut self, iova: u32) {
        self.bus
            .write32(reg::ZAP_ONE_LINE, iova & !(PAGE as u32 - 1));
    }
}

#[cfg(test)]
mod tests;
