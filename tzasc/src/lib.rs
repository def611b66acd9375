//! Memory firewalls (TZASC) behind one trait.
//!
//! - [`MemoryFirewall`]: what Flex-Mem needs from a memory firewall: a granule, a region budget,
//!   program / clear / read back a region with secure and per-master (NSAID / master index)
//!   access, an atomic update bracket (the TZC-400 gate keeper), and fault status.
//! - [`tzc400`]: the Arm CoreLink TZC-400 driver ([`tzc400::Tzc400`], FVP Base RevC @0x2a4a0000)
//!   and a register-exact model ([`tzc400::Model`]) that also performs the access check the
//!   hardware does. The QEMU testbed uses that model as its emulated device state, so it is
//!   `no_std` and needs no allocator.
//! - [`rk3588`]: Rockchip RK3588 FIREWALL_DDR (@0xfe030000) + FIREWALL_DSU (@0xfe010000), one
//!   [`MemoryFirewall`] over both, and models of both blocks.
//! - [`planner`]: the pure extent planner that keeps each owner's secured pages in as few regions
//!   as possible inside the budget firmware leaves, and turns each change into a checked list of
//!   region writes ([`planner::Plan`]) before anything touches the hardware.
//!
//! Hardware is reached through [`RegisterAccess`] (32-bit reads and writes at a byte offset of a
//! register block): [`Mmio`] on the target, a model on the host and in the testbed.
//!
//! # Granules
//!
//! Region boundaries are never rounded: drivers refuse a misaligned region
//! ([`Error::NotGranuleAligned`]) and the planner a misaligned request
//! ([`planner::PlanError::NotGranuleAligned`]), so no page is secured or exposed that nobody asked
//! for. On RK3588 (1 MiB) the caller secures only whole MiB the normal world lent in full.
//!
//! # Tests
//!
//! `tests/`: the TZC-400 model against the TRM's register rules and TF-A's FVP programming
//! (`arm_tzc400_setup` replayed, permissions checked at known addresses), the driver's refusals
//! (nothing written), the RK3588 blocks against TF-A's `secure_region_init`, and the planner with
//! property tests that apply every plan to the models and compare permissions page by page. A
//! 64-layer model grown layer by layer stays in 1 secure region (TZC-400: 3 regions with the two
//! NS pieces around it; RK3588: 1).
//!
//! # What could not be verified here
//!
//! Everything is checked against TF-A v2.15.0's code, the `arm-tzc` crate's documentation and
//! research/platform-facts.md sec. 7, on register models. Without a board, an FVP or the TRMs:
//! - RK3588 (see [`rk3588`] for details): the meaning of the MST bits (the crate assumes two
//!   master slots per register, one deny bit per region and slot, no read/write split), that
//!   RGN holds CPU physical addresses, behaviour of overlapping regions, reset values, whether a
//!   DSU region must be enabled on all four channels, and the lack of fault registers.
//! - TZC-400 on FVP: the address width BUILD_CONFIG reports (the model says 36 bits, which
//!   TF-A's DRAM2 top of 2^36 - 1 needs), whether the FVP lets filter 0's gate close at run time
//!   (TF-A avoids closing it; [`tzc400::Tzc400::set_update_filters`] can leave it open), the
//!   reset value of GATE_KEEPER, and the NSAID 9 of the application processors (TF-A's
//!   `FVP_NSAID_AP`).
//! - The TZC-400 TRM calls overlapping enabled regions UNDEFINED; the model denies such accesses
//!   and flags the overlap, and the planner never programs one.
//!
//! # Why not the `arm-tzc` crate
//!
//! `arm-tzc` 0.2.1 (Arm's firmware crates) was evaluated and is not used: it is bound to real MMIO
//! (no register model can stand behind it), panics on values we must report as errors, spins
//! forever on the gate keeper and has no access check. Details in the [`tzc400`] module doc.
#![no_std]

pub mod planner;
pub mod rk3588;
pub mod tzc400;
pub mod tzpc;

use core::ptr::NonNull;

/// The smallest unit a firewall region can start or end on (a power of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granule {
    shift: u8,
}

impl Granule {
    /// 4 KiB: TZC-400 region base/top bits \[11:0\] are fixed.
    pub const KIB_4: Granule = Granule { shift: 12 };
    /// 1 MiB: RK3588 FIREWALL_DDR / FIREWALL_DSU regions are programmed in MiB.
    pub const MIB_1: Granule = Granule { shift: 20 };

    /// A granule of `1 << shift` bytes; `None` unless `12 <= shift <= 40`.
    pub const fn from_shift(shift: u8) -> Option<Granule> {
        if shift >= 12 && shift <= 40 {
            Some(Granule { shift })
        } else {
            None
        }
    }

    /// log2 of the size in bytes.
    pub const fn shift(self) -> u8 {
        self.shift
    }

    /// Size in bytes.
    pub const fn size(self) -> u64 {
        1 << self.shift
    }

    /// Whether `addr` is a multiple of the granule.
    pub const fn is_aligned(self, addr: u64) -> bool {
        addr & (self.size() - 1) == 0
    }
}

/// A firewall region number (TZC-400: 0 = background, 1-8; RK3588: 0-15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionIndex(pub u8);

/// Read / write permission of one kind of access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// Reads are permitted.
    pub read: bool,
    /// Writes are permitted.
    pub write: bool,
}

impl Access {
    /// No access.
    pub const NONE: Access = Access {
        read: false,
        write: false,
    };
    /// Read and write.
    pub const RW: Access = Access {
        read: true,
        write: true,
    };

    /// Whether an access in direction `write` is permitted.
    pub const fn permits(self, write: bool) -> bool {
        if write { self.write } else { self.read }
    }
}

/// A set of bus masters: bit `i` = NSAID `i` (TZC-400, 16 NSAIDs) or master slot `i` (RK3588, see
/// [`rk3588`]: FIREWALL_DDR master slots 0..84, and [`rk3588::CPU_NS`] for the CPUs' non-secure
/// accesses filtered by FIREWALL_DSU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdMask(pub u128);

impl IdMask {
    /// No master.
    pub const NONE: IdMask = IdMask(0);

    /// The mask with only `id` set (`None` if `id >= 128`).
    pub const fn single(id: u8) -> Option<IdMask> {
        if id < 128 {
            Some(IdMask(1 << id))
        } else {
            None
        }
    }

    /// Whether master `id` is in the set.
    pub const fn contains(self, id: u8) -> bool {
        id < 128 && self.0 & (1 << id) != 0
    }

    /// Masters in both sets.
    pub const fn and(self, other: IdMask) -> IdMask {
        IdMask(self.0 & other.0)
    }

    /// Masters in either set.
    pub const fn or(self, other: IdMask) -> IdMask {
        IdMask(self.0 | other.0)
    }
}

/// Non-secure access to a region, per master.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NsAccess {
    /// Masters that may read.
    pub read: IdMask,
    /// Masters that may write.
    pub write: IdMask,
}

impl NsAccess {
    /// No non-secure master has access.
    pub const NONE: NsAccess = NsAccess {
        read: IdMask::NONE,
        write: IdMask::NONE,
    };

    /// Read and write for every master in `ids`.
    pub const fn rw(ids: IdMask) -> NsAccess {
        NsAccess {
            read: ids,
            write: ids,
        }
    }

    /// Whether master `id` may access in direction `write`.
    pub const fn permits(self, id: u8, write: bool) -> bool {
        if write {
            self.write.contains(id)
        } else {
            self.read.contains(id)
        }
    }
}

/// One firewall region: an inclusive physical address range and who may access it.
///
/// `base` and `top + 1` must be multiples of the firewall's [`Granule`]; drivers reject others
/// with [`Error::NotGranuleAligned`] instead of rounding (rounding would secure or expose pages
/// nobody asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Last byte (inclusive, as the TZC-400 programs it).
    pub top: u64,
    /// Secure (NS=0) access.
    pub secure: Access,
    /// Non-secure access per master.
    pub ns: NsAccess,
    /// Filters (TZC-400 filter_en bits) the region applies to; ignored where a firewall has no
    /// filters (RK3588, which uses all its DDR channels).
    pub filters: u8,
}

impl Region {
    /// A secure-only region (secure RW, no NS master) over `[base, base + size)` on `filters`.
    /// `None` if `size` is 0 or the range wraps.
    pub const fn secure_rw(base: u64, size: u64, filters: u8) -> Option<Region> {
        match Self::top_of(base, size) {
            Some(top) => Some(Region {
                base,
                top,
                secure: Access::RW,
                ns: NsAccess::NONE,
                filters,
            }),
            None => None,
        }
    }

    /// A non-secure region (NS RW for `ids`, no secure access) over `[base, base + size)`.
    pub const fn ns_rw(base: u64, size: u64, ids: IdMask, filters: u8) -> Option<Region> {
        match Self::top_of(base, size) {
            Some(top) => Some(Region {
                base,
                top,
                secure: Access::NONE,
                ns: NsAccess::rw(ids),
                filters,
            }),
            None => None,
        }
    }

    const fn top_of(base: u64, size: u64) -> Option<u64> {
        if size == 0 {
            return None;
        }
        base.checked_add(size - 1)
    }

    /// Size in bytes (`top - base + 1`; saturates for a whole 64-bit space).
    pub const fn size(&self) -> u64 {
        (self.top - self.base).saturating_add(1)
    }

    /// Whether `addr` is inside.
    pub const fn contains(&self, addr: u64) -> bool {
        self.base <= addr && addr <= self.top
    }

    /// Whether the two ranges share a byte.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.base <= other.top && other.base <= self.top
    }
}

/// Why a firewall operation was refused. Nothing was written when one is returned, except where a
/// variant says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The region index is not implemented by this firewall.
    NoSuchRegion(RegionIndex),
    /// The region's range cannot be changed (TZC-400 region 0 base/top are read-only); only its
    /// attributes can be programmed.
    FixedRange(RegionIndex),
    /// `base` or `top + 1` is not a multiple of the granule.
    NotGranuleAligned {
        /// The offending address.
        addr: u64,
    },
    /// `top < base`.
    EmptyRange,
    /// The range goes beyond the firewall's address width.
    AddressTooWide {
        /// The offending address.
        addr: u64,
    },
    /// A filter bit names a filter this instance does not have, or `filters` is 0 on a firewall
    /// with filters.
    NoSuchFilter(u8),
    /// A master / NSAID bit names a master the firewall does not have.
    NoSuchMaster(IdMask),
    /// The firewall cannot express this access combination (RK3588: a region is secure RW and NS
    /// access is granted per master only).
    Unsupported,
    /// `commit_update` without `begin_update`, or `begin_update` twice.
    UpdateState,
    /// The gate keeper did not report the requested open/closed status in time.
    GateTimeout {
        /// The filters whose status did not follow.
        filters: u8,
    },
    /// The identification registers do not match the expected device.
    WrongDevice {
        /// The peripheral part number read.
        part: u16,
    },
}

/// A latched access failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Address of the failing access.
    pub addr: u64,
    /// The access was a write.
    pub write: bool,
    /// The access was secure (NS=0).
    pub secure: bool,
    /// The master ID (TZC-400 FAIL_ID: VNET\[27:24\] and ID).
    pub id: u32,
    /// The filter that denied it (0 on firewalls without filters).
    pub filter: u8,
    /// Another failure happened on that filter before this one was cleared (TZC-400 overrun).
    pub overrun: bool,
    /// Two enabled regions overlapped (TZC-400 overlap flag).
    pub overlap: bool,
}

/// A memory firewall: regions over physical memory with secure and per-master access.
///
/// Reprogramming that must look atomic to bus masters goes between [`begin_update`] and
/// [`commit_update`] (TZC-400: gate keeper closed; the filters stall transactions meanwhile).
/// Firewalls without such a mechanism (RK3588) make them no-ops; the planner then orders writes so
/// no intermediate state exposes a page that was or will be secure.
///
/// [`begin_update`]: MemoryFirewall::begin_update
/// [`commit_update`]: MemoryFirewall::commit_update
pub trait MemoryFirewall {
    /// The address granule of region boundaries.
    fn granule(&self) -> Granule;

    /// Number of regions, including fixed ones (TZC-400: 9 with region 0; RK3588: 16).
    fn regions(&self) -> u8;

    /// Whether region `index` covers all memory and has a fixed range (TZC-400 region 0).
    fn is_background(&self, index: RegionIndex) -> bool;

    /// Programs region `index` (and enables it).
    fn program(&mut self, index: RegionIndex, region: &Region) -> Result<(), Error>;

    /// Disables region `index` (TZC-400: filter_en = 0 and no access; region 0: no access).
    fn clear(&mut self, index: RegionIndex) -> Result<(), Error>;

    /// Reads region `index` back from the hardware; `None` if it is disabled.
    fn read(&mut self, index: RegionIndex) -> Result<Option<Region>, Error>;

    /// Starts an atomic update (TZC-400: close every filter's gate and wait until closed).
    fn begin_update(&mut self) -> Result<(), Error>;

    /// Ends an atomic update (TZC-400: reopen the gates and wait until open).
    fn commit_update(&mut self) -> Result<(), Error>;

    /// The first latched fault, if any (does not clear it).
    fn take_fault(&mut self) -> Option<Fault>;

    /// Clears latched faults and interrupts on every filter.
    fn clear_fault(&mut self);
}

/// 32-bit access to a register block at byte offsets from its base.
///
/// Implemented by [`Mmio`] on the target and by the register models on the host.
pub trait RegisterAccess {
    /// Reads the 32-bit register at `offset` (4-byte aligned).
    fn read(&mut self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset` (4-byte aligned).
    fn write(&mut self, offset: usize, value: u32);
}

impl<T: RegisterAccess + ?Sized> RegisterAccess for &mut T {
    fn read(&mut self, offset: usize) -> u32 {
        (**self).read(offset)
    }
    fn write(&mut self, offset: usize, value: u32) {
        (**self).write(offset, value)
    }
}

/// Device memory of a register block, accessed with volatile 32-bit loads and stores.
pub struct Mmio {
    base: NonNull<u32>,
    len: usize,
}

impl Mmio {
    /// Wraps the register block at virtual address `base`, `len` bytes long.
    ///
    /// # Safety
    ///
    /// `base..base + len` must be mapped as device memory for the lifetime of the `Mmio`, hold the
    /// firewall's registers, and be accessed by nothing else meanwhile.
    pub const unsafe fn new(base: NonNull<u32>, len: usize) -> Mmio {
        Mmio { base, len }
    }

    fn ptr(&self, offset: usize) -> Option<*mut u32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4)? > self.len {
            return None;
        }
        // Pointer arithmetic only; the access itself is in read/write.
        Some(self.base.as_ptr().wrapping_byte_add(offset))
    }
}

impl RegisterAccess for Mmio {
    /// Out-of-block or unaligned offsets read as 0 (drivers only use the documented offsets).
    fn read(&mut self, offset: usize) -> u32 {
        match self.ptr(offset) {
            // SAFETY: `ptr` checked the offset is aligned and inside the block that `new`'s
            // caller promised is mapped device memory owned by us.
            Some(p) => unsafe { p.read_volatile() },
            None => 0,
        }
    }

    /// Out-of-block or unaligned offsets are ignored.
    fn write(&mut self, offset: usize, value: u32) {
        if let Some(p) = self.ptr(offset) {
            // SAFETY: as in `read`.
            unsafe { p.write_volatile(value) }
        }
    }
}

// SAFETY: the block is exclusively ours (contract of `new`); moving the handle to another core
// does not change what it points at.
unsafe impl Send for Mmio {}

#[cfg(test)]
mod tests {
    use super::{Mmio, RegisterAccess};
    use core::ptr::NonNull;

    #[test]
    fn mmio_accesses_only_its_block() {
        let mut regs = [0u32; 4];
        {
            // SAFETY: `regs` is 16 bytes of ordinary memory that outlives `mmio` (this block) and
            // is not touched in it except through `mmio`; volatile access to it is sound.
            let mut mmio = unsafe { Mmio::new(NonNull::from(&mut regs).cast(), 16) };
            mmio.write(0x4, 0xdead_beef);
            mmio.write(0xc, 1);
            assert_eq!(mmio.read(0x4), 0xdead_beef);
            // Outside the block or unaligned: reads 0, writes dropped.
            mmio.write(0x10, 7);
            mmio.write(0x2, 7);
            assert_eq!(mmio.read(0x10), 0);
            assert_eq!(mmio.read(0x2), 0);
            assert_eq!(mmio.read(usize::MAX - 1), 0);
        }
        assert_eq!(regs, [0, 0xdead_beef, 0, 1]);
    }
}
