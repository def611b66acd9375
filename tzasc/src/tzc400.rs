//! Arm CoreLink TZC-400 TrustZone Address Space Controller.
//!
//! Register map and field layout: TZC-400 TRM (Arm DDI 0504), as used by TF-A v2.15.0
//! `include/drivers/arm/tzc400.h`, `drivers/arm/tzc/tzc400.c` and summarised in
//! research/platform-facts.md sec. 7.1. FVP Base RevC has one at 0x2a4a_0000; the QEMU testbed
//! emulates the same register map with [`Model`].
//!
//! Rules the driver and the model follow:
//! - 4 KiB granule: base and top bits \[11:0\] are fixed; top is inclusive (`...fff`).
//! - Region 0 is the background region: it covers the whole address space on every filter, its
//!   base/top are read-only, only its attributes (secure rd/wr) and ID access can be programmed.
//! - Regions 1..=8 apply on the filters named by their `filter_en` bits. Two enabled regions that
//!   overlap on one filter are UNDEFINED behaviour in the TRM and raise INT_STATUS.overlap; the
//!   model denies such accesses, and the planner never programs overlapping regions.
//! - A secure access is permitted by `s_rd_en`/`s_wr_en` of the matching region; a non-secure one
//!   by that region's `nsaid_rd_en[nsaid]`/`nsaid_wr_en[nsaid]`.
//! - Reprogramming is atomic only behind the gate keeper: close every filter's gate
//!   (open_request = 0, wait until open_status = 0), write, reopen.
//! - ACTION selects whether a denied access gets a DECERR response or is RAZ/WI with OKAY, and
//!   whether the interrupt is raised.
//!
//! # Why not the `arm-tzc` crate
//!
//! `arm-tzc` 0.2.1 (Arm's firmware crates, MIT/Apache-2.0) was read in full. Its register layout
//! agrees with this one (and its docs supplied two details the model follows: region 0's
//! filter_en bits read as all ones, and an overlap also sets INT_STATUS.status). It is not used:
//! - it is bound to `safe_mmio::UniqueMmioPointer` over real memory, so the same driver cannot run
//!   over a register *model*; the testbed needs one definition of TZC-400 semantics that both the
//!   SP's driver (through the SPMC's stage-2 trap) and the host tests drive, with W1C INT_CLEAR,
//!   the gate keeper handshake and RAZ/WI fields, which plain memory cannot give;
//! - it panics where we need error values: reserved BUILD_CONFIG encodings, misaligned or
//!   out-of-width addresses (`assert!`), any region count but 9, filter index >= 4;
//! - its gate keeper request spins forever; ours polls a bounded number of times and reports
//!   [`Error::GateTimeout`];
//! - it has no access check (which regions match, overlap, NSAID permission, FAIL_* latching),
//!   the part the testbed and the planner's tests need most.
//!
//! The `arm-tzc` docs and TF-A agree on the layout, so nothing here depends on it.

mod model;

pub use model::{Config, EffectiveRegions, Model, Request, Response, Verdict};

use crate::RegisterAccess;
use crate::{Access, Error, Fault, Granule, IdMask, MemoryFirewall, NsAccess, Region, RegionIndex};
use core::mem::offset_of;

/// A read-only register (writes are ignored by the hardware).
#[repr(transparent)]
pub struct Ro(pub u32);
/// A read/write register.
#[repr(transparent)]
pub struct Rw(pub u32);
/// A write-only register (reads as zero).
#[repr(transparent)]
pub struct Wo(pub u32);

/// Failure registers of one filter, at 0x020 + 0x10 * filter.
#[repr(C)]
pub struct FailRegisters {
    /// +0x0 FAIL_ADDRESS_LOW: address bits \[31:0\] of the first failing access.
    pub address_low: Ro,
    /// +0x4 FAIL_ADDRESS_HIGH: address bits \[63:32\].
    pub address_high: Ro,
    /// +0x8 FAIL_CONTROL: direction bit 24 (1 = write), non-secure bit 21, privileged bit 20.
    pub control: Ro,
    /// +0xC FAIL_ID: VNET \[27:24\], master ID \[23:0\].
    pub id: Ro,
}

/// Registers of one region, at 0x100 + 0x20 * region.
#[repr(C)]
pub struct RegionRegisters {
    /// +0x00 REGION_BASE_LOW: base \[31:12\]; \[11:0\] RAZ/WI. Read-only for region 0.
    pub base_low: Rw,
    /// +0x04 REGION_BASE_HIGH: base \[63:32\] (bits above the address width RAZ/WI).
    pub base_high: Rw,
    /// +0x08 REGION_TOP_LOW: inclusive top \[31:12\]; \[11:0\] read as 0xfff, writes ignored.
    pub top_low: Rw,
    /// +0x0C REGION_TOP_HIGH: top \[63:32\].
    pub top_high: Rw,
    /// +0x10 REGION_ATTRIBUTES: s_wr_en bit 31, s_rd_en bit 30, filter_en \[3:0\] (region 0: all
    /// implemented filters, read-only).
    pub attributes: Rw,
    /// +0x14 REGION_ID_ACCESS: nsaid_wr_en \[31:16\], nsaid_rd_en \[15:0\].
    pub id_access: Rw,
    _reserved: [u32; 2],
}

/// The TZC-400 register block (4 KiB).
#[repr(C)]
pub struct Registers {
    /// 0x000 BUILD_CONFIG: NF \[25:24\] = filters - 1, AW \[13:8\] = address width - 1,
    /// NR \[4:0\] = regions - 1.
    pub build_config: Ro,
    /// 0x004 ACTION: \[1:0\], see [`Action`].
    pub action: Rw,
    /// 0x008 GATE_KEEPER: open_status \[19:16\] (RO, follows the request), open_request \[3:0\].
    pub gate_keeper: Rw,
    /// 0x00C SPECULATION_CTRL: write speculation disable bit 1, read speculation disable bit 0.
    pub speculation_ctrl: Rw,
    /// 0x010 INT_STATUS: overlap \[19:16\], overrun \[11:8\], status \[3:0\], one bit per filter.
    pub int_status: Ro,
    /// 0x014 INT_CLEAR: write 1 to bit f to clear filter f's status, overrun and overlap.
    pub int_clear: Wo,
    _reserved0: [u32; 2],
    /// 0x020 + 0x10 * f: FAIL_* of filter f (0..=3).
    pub fail: [FailRegisters; 4],
    _reserved1: [u32; 40],
    /// 0x100 + 0x20 * n: REGION_* of region n (0..=8).
    pub region: [RegionRegisters; 9],
    _reserved2: [u32; 876],
    /// 0xFD0..=0xFDC PID4..PID7, 0xFE0..=0xFEC PID0..PID3.
    pub pid: [Ro; 8],
    /// 0xFF0..=0xFFC CID0..CID3 (component ID 0xB105F00D).
    pub cid: [Ro; 4],
}

/// Byte offsets of the registers (from [`Registers`]).
pub mod offset {
    use super::{FailRegisters, RegionRegisters, Registers};
    use core::mem::{offset_of, size_of};

    /// BUILD_CONFIG.
    pub const BUILD_CONFIG: usize = offset_of!(Registers, build_config);
    /// ACTION.
    pub const ACTION: usize = offset_of!(Registers, action);
    /// GATE_KEEPER.
    pub const GATE_KEEPER: usize = offset_of!(Registers, gate_keeper);
    /// SPECULATION_CTRL.
    pub const SPECULATION_CTRL: usize = offset_of!(Registers, speculation_ctrl);
    /// INT_STATUS.
    pub const INT_STATUS: usize = offset_of!(Registers, int_status);
    /// INT_CLEAR.
    pub const INT_CLEAR: usize = offset_of!(Registers, int_clear);
    /// PID4 (first of the identification block).
    pub const PID4: usize = offset_of!(Registers, pid);
    /// PID0.
    pub const PID0: usize = PID4 + 0x10;
    /// PID1.
    pub const PID1: usize = PID4 + 0x14;
    /// CID0.
    pub const CID0: usize = offset_of!(Registers, cid);

    const FAIL: usize = offset_of!(Registers, fail);
    const FAIL_STRIDE: usize = size_of::<FailRegisters>();
    const REGION: usize = offset_of!(Registers, region);
    const REGION_STRIDE: usize = size_of::<RegionRegisters>();

    /// FAIL_ADDRESS_LOW of filter `f`.
    pub const fn fail_address_low(f: usize) -> usize {
        FAIL + FAIL_STRIDE * f + offset_of!(FailRegisters, address_low)
    }
    /// FAIL_ADDRESS_HIGH of filter `f`.
    pub const fn fail_address_high(f: usize) -> usize {
        FAIL + FAIL_STRIDE * f + offset_of!(FailRegisters, address_high)
    }
    /// FAIL_CONTROL of filter `f`.
    pub const fn fail_control(f: usize) -> usize {
        FAIL + FAIL_STRIDE * f + offset_of!(FailRegisters, control)
    }
    /// FAIL_ID of filter `f`.
    pub const fn fail_id(f: usize) -> usize {
        FAIL + FAIL_STRIDE * f + offset_of!(FailRegisters, id)
    }
    /// REGION_BASE_LOW of region `n`.
    pub const fn region_base_low(n: usize) -> usize {
        REGION + REGION_STRIDE * n + offset_of!(RegionRegisters, base_low)
    }
    /// REGION_BASE_HIGH of region `n`.
    pub const fn region_base_high(n: usize) -> usize {
        REGION + REGION_STRIDE * n + offset_of!(RegionRegisters, base_high)
    }
    /// REGION_TOP_LOW of region `n`.
    pub const fn region_top_low(n: usize) -> usize {
        REGION + REGION_STRIDE * n + offset_of!(RegionRegisters, top_low)
    }
    /// REGION_TOP_HIGH of region `n`.
    pub const fn region_top_high(n: usize) -> usize {
        REGION + REGION_STRIDE * n + offset_of!(RegionRegisters, top_high)
    }
    /// REGION_ATTRIBUTES of region `n`.
    pub const fn region_attributes(n: usize) -> usize {
        REGION + REGION_STRIDE * n + offset_of!(RegionRegisters, attributes)
    }
    /// REGION_ID_ACCESS of region `n`.
    pub const fn region_id_access(n: usize) -> usize {
        REGION + REGION_STRIDE * n + offset_of!(RegionRegisters, id_access)
    }
}

/// Size of the register block.
pub const BLOCK_SIZE: usize = 0x1000;
/// The peripheral part number in PID0/PID1.
pub const PART_NUMBER: u16 = 0x460;
/// Maximum number of regions (NR = 8).
pub const MAX_REGIONS: usize = 9;
/// Maximum number of filters (NF = 3).
pub const MAX_FILTERS: usize = 4;

/// REGION_ATTRIBUTES.s_wr_en.
pub const ATTR_S_WR_EN: u32 = 1 << 31;
/// REGION_ATTRIBUTES.s_rd_en.
pub const ATTR_S_RD_EN: u32 = 1 << 30;
/// REGION_ATTRIBUTES.filter_en.
pub const ATTR_FILTER_EN_MASK: u32 = 0xf;
/// FAIL_CONTROL direction (1 = write).
pub const FAIL_CONTROL_WRITE: u32 = 1 << 24;
/// FAIL_CONTROL non-secure.
pub const FAIL_CONTROL_NS: u32 = 1 << 21;
/// FAIL_CONTROL privileged.
pub const FAIL_CONTROL_PRIV: u32 = 1 << 20;
/// GATE_KEEPER open_status shift.
pub const GATE_KEEPER_OS_SHIFT: u32 = 16;
/// INT_STATUS overrun shift.
pub const INT_STATUS_OVERRUN_SHIFT: u32 = 8;
/// INT_STATUS overlap shift.
pub const INT_STATUS_OVERLAP_SHIFT: u32 = 16;

/// What a denied access does (ACTION \[1:0\]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// 0: interrupt low, OKAY response (reads return zero, writes are dropped).
    Okay = 0,
    /// 1: interrupt low, DECERR response (TF-A's TZC_ACTION_ERR, used on FVP).
    Error = 1,
    /// 2: interrupt high, OKAY response.
    InterruptOkay = 2,
    /// 3: interrupt high, DECERR response.
    InterruptError = 3,
}

impl Action {
    /// Decodes ACTION \[1:0\].
    pub const fn from_bits(bits: u32) -> Action {
        match bits & 3 {
            0 => Action::Okay,
            1 => Action::Error,
            2 => Action::InterruptOkay,
            _ => Action::InterruptError,
        }
    }
    /// Whether a denied access gets an error response.
    pub const fn error_response(self) -> bool {
        matches!(self, Action::Error | Action::InterruptError)
    }
    /// Whether a denied access raises the interrupt.
    pub const fn interrupt(self) -> bool {
        matches!(self, Action::InterruptOkay | Action::InterruptError)
    }
}

/// Decoded BUILD_CONFIG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// Number of filters (1..=4).
    pub filters: u8,
    /// Address width in bits (1..=64).
    pub address_width: u8,
    /// Number of regions including region 0 (1..=32 encodable; TZC-400 has 9).
    pub regions: u8,
}

impl BuildConfig {
    /// Decodes the register value.
    pub const fn from_bits(v: u32) -> BuildConfig {
        BuildConfig {
            filters: ((v >> 24) & 0x3) as u8 + 1,
            address_width: ((v >> 8) & 0x3f) as u8 + 1,
            regions: (v & 0x1f) as u8 + 1,
        }
    }
    /// Encodes the register value.
    pub const fn to_bits(self) -> u32 {
        ((self.filters as u32 - 1) & 3) << 24
            | ((self.address_width as u32 - 1) & 0x3f) << 8
            | ((self.regions as u32 - 1) & 0x1f)
    }
    /// Bit mask of the implemented filters.
    pub const fn filter_mask(self) -> u8 {
        ((1u32 << self.filters) - 1) as u8
    }
    /// Highest address the controller decodes.
    pub const fn max_address(self) -> u64 {
        if self.address_width >= 64 {
            u64::MAX
        } else {
            (1u64 << self.address_width) - 1
        }
    }
}

/// Decoded INT_STATUS, one bit per filter in each field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntStatus {
    /// A failure is latched in FAIL_* (interrupt pending if ACTION raises it).
    pub status: u8,
    /// A further failure happened while `status` was set.
    pub overrun: u8,
    /// An access matched two or more enabled regions.
    pub overlap: u8,
}

impl IntStatus {
    /// Decodes the register value.
    pub const fn from_bits(v: u32) -> IntStatus {
        IntStatus {
            status: (v & 0xf) as u8,
            overrun: ((v >> INT_STATUS_OVERRUN_SHIFT) & 0xf) as u8,
            overlap: ((v >> INT_STATUS_OVERLAP_SHIFT) & 0xf) as u8,
        }
    }
    /// Encodes the register value.
    pub const fn to_bits(self) -> u32 {
        (self.status as u32 & 0xf)
            | (self.overrun as u32 & 0xf) << INT_STATUS_OVERRUN_SHIFT
            | (self.overlap as u32 & 0xf) << INT_STATUS_OVERLAP_SHIFT
    }
}

/// How many times the driver polls GATE_KEEPER.open_status before giving up.
pub const GATE_POLLS: u32 = 10_000;

/// The TZC-400 driver.
///
/// # Gate keeper hazard
///
/// While a filter's gate is closed every transaction through it stalls, including the CPU's own
/// (TRM; `arm-tzc` warns of bus deadlock, and TF-A never closes filter 0 once open). The code
/// between [`MemoryFirewall::begin_update`] and [`MemoryFirewall::commit_update`] must therefore
/// not fetch, load or store through a filter it closed: the SP's code, stack and the firewall's
/// own registers must sit behind no closed filter (on FVP the SP runs from Trusted DRAM at
/// 0x0600_0000, which the TZC-400 does not filter; on the testbed the SPMC emulates the block).
/// [`Tzc400::set_update_filters`] limits which gates an update closes where one must stay open.
pub struct Tzc400<R> {
    regs: R,
    build: BuildConfig,
    updating: bool,
    update_filters: u8,
    reopen: u8,
}

impl<R: RegisterAccess> Tzc400<R> {
    /// Probes the block: checks the part number (PID0/PID1 = 0x460) and reads BUILD_CONFIG.
    pub fn new(mut regs: R) -> Result<Tzc400<R>, Error> {
        let part = (regs.read(offset::PID0) & 0xff) | (regs.read(offset::PID1) & 0xf) << 8;
        if part != PART_NUMBER as u32 {
            return Err(Error::WrongDevice { part: part as u16 });
        }
        let build = BuildConfig::from_bits(regs.read(offset::BUILD_CONFIG));
        Ok(Tzc400 {
            regs,
            build,
            updating: false,
            update_filters: build.filter_mask(),
            reopen: 0,
        })
    }

    /// The decoded BUILD_CONFIG.
    pub fn build_config(&self) -> BuildConfig {
        self.build
    }

    /// The register access (for tests and the testbed).
    pub fn registers(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Releases the register access.
    pub fn into_inner(self) -> R {
        self.regs
    }

    /// Chooses the filters whose gates an atomic update closes (default: all implemented). A
    /// filter left out is reprogrammed while it carries traffic, so its transactions may see
    /// intermediate states; only leave one out if closing it would stall the updating CPU.
    pub fn set_update_filters(&mut self, filters: u8) {
        self.update_filters = filters & self.build.filter_mask();
    }

    /// Sets ACTION.
    pub fn set_action(&mut self, action: Action) {
        self.regs.write(offset::ACTION, action as u32);
    }

    /// Reads ACTION.
    pub fn action(&mut self) -> Action {
        Action::from_bits(self.regs.read(offset::ACTION))
    }

    /// Sets SPECULATION_CTRL (true = speculation disabled for that direction).
    pub fn set_speculation_disabled(&mut self, read: bool, write: bool) {
        self.regs.write(
            offset::SPECULATION_CTRL,
            u32::from(read) | u32::from(write) << 1,
        );
    }

    /// Programs the background region 0: its secure access and per-NSAID access.
    pub fn configure_region0(&mut self, secure: Access, ns: NsAccess) -> Result<(), Error> {
        self.write_access(0, secure, ns, 0)
    }

    /// Gates open per filter (GATE_KEEPER.open_status).
    pub fn open_gates(&mut self) -> u8 {
        ((self.regs.read(offset::GATE_KEEPER) >> GATE_KEEPER_OS_SHIFT) & 0xf) as u8
    }

    /// Requests gates `filters` open and all others closed, and waits until open_status follows.
    pub fn set_gates(&mut self, filters: u8) -> Result<(), Error> {
        let want = filters & self.build.filter_mask();
        self.regs.write(offset::GATE_KEEPER, u32::from(want));
        for _ in 0..GATE_POLLS {
            if self.open_gates() == want {
                return Ok(());
            }
        }
        Err(Error::GateTimeout {
            filters: self.open_gates() ^ want,
        })
    }

    /// Decoded INT_STATUS.
    pub fn int_status(&mut self) -> IntStatus {
        IntStatus::from_bits(self.regs.read(offset::INT_STATUS))
    }

    /// Clears the latched failure (status, overrun, overlap) of the filters in `filters`.
    pub fn clear_interrupts(&mut self, filters: u8) {
        self.regs.write(
            offset::INT_CLEAR,
            u32::from(filters & self.build.filter_mask()),
        );
    }

    /// The failure latched on `filter`, if its status bit is set.
    pub fn fault(&mut self, filter: u8) -> Option<Fault> {
        let f = usize::from(filter);
        if filter >= self.build.filters {
            return None;
        }
        let st = self.int_status();
        if st.status & (1 << filter) == 0 && st.overlap & (1 << filter) == 0 {
            return None;
        }
        let lo = self.regs.read(offset::fail_address_low(f));
        let hi = self.regs.read(offset::fail_address_high(f));
        let control = self.regs.read(offset::fail_control(f));
        let id = self.regs.read(offset::fail_id(f));
        Some(Fault {
            addr: u64::from(hi) << 32 | u64::from(lo),
            write: control & FAIL_CONTROL_WRITE != 0,
            secure: control & FAIL_CONTROL_NS == 0,
            id,
            filter,
            overrun: st.overrun & (1 << filter) != 0,
            overlap: st.overlap & (1 << filter) != 0,
        })
    }

    fn check_index(&self, index: RegionIndex) -> Result<usize, Error> {
        if index.0 < self.build.regions && usize::from(index.0) < MAX_REGIONS {
            Ok(usize::from(index.0))
        } else {
            Err(Error::NoSuchRegion(index))
        }
    }

    fn validate(&self, region: &Region) -> Result<(), Error> {
        if region.top < region.base {
            return Err(Error::EmptyRange);
        }
        let g = Granule::KIB_4;
        if !g.is_aligned(region.base) {
            return Err(Error::NotGranuleAligned { addr: region.base });
        }
        // top + 1 overflows only for a top of 2^64 - 1, which is aligned (and too wide below).
        if let Some(end) = region.top.checked_add(1)
            && !g.is_aligned(end)
        {
            return Err(Error::NotGranuleAligned { addr: end });
        }
        if region.top > self.build.max_address() {
            return Err(Error::AddressTooWide { addr: region.top });
        }
        let filters = region.filters & 0xf;
        if region.filters == 0
            || filters != region.filters
            || filters & !self.build.filter_mask() != 0
        {
            return Err(Error::NoSuchFilter(region.filters));
        }
        Self::id_bits(region.ns).map(|_| ())
    }

    fn id_bits(ns: NsAccess) -> Result<u32, Error> {
        let bad = (ns.read.0 | ns.write.0) & !0xffff;
        if bad != 0 {
            return Err(Error::NoSuchMaster(IdMask(bad)));
        }
        Ok((ns.write.0 as u32) << 16 | ns.read.0 as u32)
    }

    fn write_access(
        &mut self,
        n: usize,
        s: Access,
        ns: NsAccess,
        filters: u8,
    ) -> Result<(), Error> {
        let ids = Self::id_bits(ns)?;
        let mut attr = u32::from(filters) & ATTR_FILTER_EN_MASK;
        if s.read {
            attr |= ATTR_S_RD_EN;
        }
        if s.write {
            attr |= ATTR_S_WR_EN;
        }
        self.regs.write(offset::region_attributes(n), attr);
        self.regs.write(offset::region_id_access(n), ids);
        Ok(())
    }
}

impl<R: RegisterAccess> MemoryFirewall for Tzc400<R> {
    fn granule(&self) -> Granule {
        Granule::KIB_4
    }

    fn regions(&self) -> u8 {
        self.build.regions.min(MAX_REGIONS as u8)
    }

    fn is_background(&self, index: RegionIndex) -> bool {
        index.0 == 0
    }

    /// Writes base, top, attributes, ID access in that order (as TF-A's
    /// `tzc400_configure_region`). Region 0: only attributes and ID access, and only if the
    /// range asked for is the whole address space (else [`Error::FixedRange`]).
    fn program(&mut self, index: RegionIndex, region: &Region) -> Result<(), Error> {
        let n = self.check_index(index)?;
        if n == 0 {
            if region.base != 0 || region.top != self.build.max_address() {
                return Err(Error::FixedRange(index));
            }
            return self.write_access(0, region.secure, region.ns, 0);
        }
        self.validate(region)?;
        self.regs
            .write(offset::region_base_low(n), region.base as u32);
        self.regs
            .write(offset::region_base_high(n), (region.base >> 32) as u32);
        self.regs
            .write(offset::region_top_low(n), region.top as u32);
        self.regs
            .write(offset::region_top_high(n), (region.top >> 32) as u32);
        self.write_access(n, region.secure, region.ns, region.filters)
    }

    fn clear(&mut self, index: RegionIndex) -> Result<(), Error> {
        let n = self.check_index(index)?;
        self.write_access(n, Access::NONE, NsAccess::NONE, 0)
    }

    fn read(&mut self, index: RegionIndex) -> Result<Option<Region>, Error> {
        let n = self.check_index(index)?;
        let attr = self.regs.read(offset::region_attributes(n));
        let ids = self.regs.read(offset::region_id_access(n));
        let filters = (attr & ATTR_FILTER_EN_MASK) as u8;
        let (base, top, filters) = if n == 0 {
            (0, self.build.max_address(), self.build.filter_mask())
        } else {
            if filters == 0 {
                return Ok(None);
            }
            let base = u64::from(self.regs.read(offset::region_base_high(n))) << 32
                | u64::from(self.regs.read(offset::region_base_low(n)) & !0xfff);
            let top = u64::from(self.regs.read(offset::region_top_high(n))) << 32
                | u64::from(self.regs.read(offset::region_top_low(n)) | 0xfff);
            (base, top, filters)
        };
        Ok(Some(Region {
            base,
            top,
            secure: Access {
                read: attr & ATTR_S_RD_EN != 0,
                write: attr & ATTR_S_WR_EN != 0,
            },
            ns: NsAccess {
                read: IdMask(u128::from(ids & 0xffff)),
                write: IdMask(u128::from(ids >> 16)),
            },
            filters,
        }))
    }

    /// Closes the open gates of the update filters (all by default) and waits until
    /// open_status shows them closed. On a timeout the gates are reopened as they were.
    fn begin_update(&mut self) -> Result<(), Error> {
        if self.updating {
            return Err(Error::UpdateState);
        }
        let open = self.open_gates();
        if let Err(e) = self.set_gates(open & !self.update_filters) {
            let _ = self.set_gates(open);
            return Err(e);
        }
        self.reopen = open;
        self.updating = true;
        Ok(())
    }

    /// Reopens the gates `begin_update` found open and waits until open_status shows them open.
    fn commit_update(&mut self) -> Result<(), Error> {
        if !self.updating {
            return Err(Error::UpdateState);
        }
        self.set_gates(self.reopen)?;
        self.updating = false;
        Ok(())
    }

    fn take_fault(&mut self) -> Option<Fault> {
        (0..self.build.filters).find_map(|f| self.fault(f))
    }

    fn clear_fault(&mut self) {
        self.clear_interrupts(self.build.filter_mask());
    }
}

const _: () = assert!(core::mem::size_of::<Registers>() == BLOCK_SIZE);
const _: () = assert!(offset_of!(Registers, region) == 0x100);
