//! The emulated TZC-400 and what it enforces: the device state is `tzasc::tzc400::Model` (one
//! definition of TZC-400 semantics, shared with the SP's driver tests), reached by the SP
//! through a stage-2 trap ([`mmio::Device`]) at `virt::TZC400_BASE`; this module turns the
//! model's permissions into the stage-2 maps of every initiator:
//!
//! - the normal world's CPU (NSAID 9): its stage-2 loses every NS DRAM page the model denies
//!   to NSAID 9 (read-only if it grants only reads), on top of the LEND/DONATE revocations
//!   (`memshare`), which win while they last;
//! - the SP's NS IPA space (its NS = 1 accesses, NSAID 9 too): a retrieved page the model
//!   denies to NS accesses leaves it until the model grants them again (a secured page
//!   answers no NS access from anyone);
//! - the SP's secure IPA space over its *gated* regions (secure manifest memory regions lying
//!   in NS DRAM: the Flex-Mem window and the carve-out): a page is mapped only while a region
//!   grants secure access there, as the TZC refuses a secure access to an NS region.
//!
//! The maps change only when the permissions do: when the filter's gate reopens after a
//! reprogramming (or at once for a region written while the gate is open), and only over the
//! address ranges of the regions that changed, so securing 64 MiB costs one pass over 16384
//! pages per space. A blocked access (a stage-2 fault there) is checked against the model,
//! which latches FAIL_ADDRESS/CONTROL/ID and INT_STATUS as the hardware does (`fault`).
//!
//! Pure logic over [`Stage2`] and a [`Tzc`], host-tested; `arch` owns the globals.

pub mod enforce;
pub mod fault;
#[cfg(test)]
mod tests;

use testbed_layout::{firewall as fw, virt};
use tzasc::tzc400::{self, Model, Request, Verdict, offset};
use tzasc::{Region, RegisterAccess};

use crate::mmio;

/// NS DRAM, the only memory behind the filter.
pub const DRAM: (u64, u64) = (virt::NS_RAM_BASE, virt::NS_RAM_BASE + virt::NS_RAM_SIZE);

/// A secure manifest memory region over NS DRAM: the SP's secure IPA space maps its pages
/// only where the firewall grants secure access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gated {
    pub base: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

pub const MAX_GATED: usize = 4;
const REGIONS: usize = fw::REGIONS as usize;

/// The regions in force on filter 0, by index.
type Map = [Option<Region>; REGIONS];

/// The emulated TZC-400 with its enforcement state.
pub struct Firewall {
    pub model: Model,
    /// The map the stage-2s currently reflect, and the model generation it came from.
    applied: Map,
    applied_generation: u64,
    gated: [Option<Gated>; MAX_GATED],
    /// LEND/DONATE take pages out of the NW stage-2 (boot config `lend-enforcement`).
    pub lend_enforcement: bool,
    pub stats: Stats,
}

/// How much enforcement work was done (for the boot log and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Permission maps applied (the map changed).
    pub applies: u64,
    /// Page descriptors rewritten, all spaces.
    pub pages_changed: u64,
    /// Pages looked at, all spaces.
    pub pages_visited: u64,
}

impl Firewall {
    /// The testbed's TZC-400 (`Config::TESTBED`: 9 regions, 1 filter) programmed as firmware
    /// does at boot ([`boot_program`]); nothing is applied to a stage-2 yet (see [`enforce`]).
    pub fn new(lend_enforcement: bool) -> Self {
        let mut model = Model::new(tzc400::Config::TESTBED);
        boot_program(&mut model);
        let mut f = Firewall {
            applied: [None; REGIONS],
            applied_generation: model.generation(),
            model,
            gated: [None; MAX_GATED],
            lend_enforcement,
            stats: Stats::default(),
        };
        f.applied = f.current();
        f
    }

    /// Declares a gated region (from the SP manifest); `false` if the table is full.
    pub fn add_gated(&mut self, g: Gated) -> bool {
        match self.gated.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(g);
                true
            }
            None => false,
        }
    }

    pub fn gated(&self) -> impl Iterator<Item = &Gated> {
        self.gated.iter().flatten()
    }

    /// The gated region holding `addr`.
    pub fn gated_at(&self, addr: u64) -> Option<&Gated> {
        self.gated().find(|g| (g.base..g.end).contains(&addr))
    }

    fn current(&self) -> Map {
        let mut m = [None; REGIONS];
        for (i, r) in self.model.effective_regions(0) {
            if let Some(slot) = m.get_mut(usize::from(i.0)) {
                *slot = Some(r);
            }
        }
        m
    }

    /// After a register write: if the map in force changed since the last apply (the gate
    /// reopened over new regions, or a region was written while it was open), the address
    /// ranges whose permissions may have changed: the old and new extents of each changed
    /// region (DRAM-clipped, sorted, merged; everything for region 0). The caller applies them
    /// ([`Firewall::apply`]); they become the applied map.
    pub fn take_changes(&mut self) -> Changes {
        let mut out = Changes::default();
        if self.model.generation() == self.applied_generation {
            return out;
        }
        self.applied_generation = self.model.generation();
        let cur = self.current();
        for (i, (old, new)) in self.applied.iter().zip(cur.iter()).enumerate() {
            if old == new {
                continue;
            }
            if i == 0 {
                // The background region covers whatever the others do not.
                out.push(DRAM.0, DRAM.1);
                continue;
            }
            match (old, new) {
                // Same permissions, moved bounds: only the difference changed hands.
                (Some(o), Some(n)) if (o.secure, o.ns) == (n.secure, n.ns) => {
                    if o.base != n.base {
                        out.push(o.base.min(n.base), o.base.max(n.base));
                    }
                    if o.top != n.top {
                        let (a, b) = (o.top.min(n.top), o.top.max(n.top));
                        out.push(a.saturating_add(1), b.saturating_add(1));
                    }
                }
                _ => {
                    for r in [old, new].into_iter().flatten() {
                        out.push(r.base, r.top.saturating_add(1));
                    }
                }
            }
        }
        self.applied = cur;
        if !out.is_empty() {
            self.stats.applies += 1;
        }
        out
    }

    /// The model's answer for an access by the CPU (NSAID 9), without latching anything.
    pub fn permits(&self, addr: u64, secure: bool, write: bool) -> Verdict {
        self.permits_master(addr, secure, write, fw::CPU_NSAID)
    }

    /// The model's answer for an access by the master with `nsaid` (a device's DMA), without
    /// latching anything.
    pub fn permits_master(&self, addr: u64, secure: bool, write: bool, nsaid: u8) -> Verdict {
        self.model.permission(&Request {
            filter: 0,
            addr,
            secure,
            nsaid,
            write,
            privileged: false,
            id: u32::from(nsaid),
        })
    }

    /// The permissions of the page at `addr` for the testbed's initiators (no latching).
    pub fn perm(&self, addr: u64) -> Perm {
        Perm {
            ns_r: self.permits(addr, false, false).allowed,
            ns_w: self.permits(addr, false, true).allowed,
            s_r: self.permits(addr, true, false).allowed,
            s_w: self.permits(addr, true, true).allowed,
        }
    }
}

/// Permissions of one page for NSAID 9 (NS) and for secure accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub ns_r: bool,
    pub ns_w: bool,
    pub s_r: bool,
    pub s_w: bool,
}

/// Address ranges to recompute (page aligned, inside DRAM, sorted and disjoint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    ranges: [(u64, u64); 2 * REGIONS],
    n: usize,
}

impl Changes {
    fn push(&mut self, start: u64, end: u64) {
        let (s, e) = (
            start.max(DRAM.0) & !0xfff,
            end.min(DRAM.1).next_multiple_of(0x1000),
        );
        if s >= e {
            return;
        }
        self.ranges[self.n] = (s, e);
        self.n += 1;
        self.ranges[..self.n].sort_unstable();
        // Merge overlapping or touching ranges (at most 2 * REGIONS are ever pushed).
        let mut w = 0;
        for i in 1..self.n {
            if self.ranges[i].0 <= self.ranges[w].1 {
                self.ranges[w].1 = self.ranges[w].1.max(self.ranges[i].1);
            } else {
                w += 1;
                self.ranges[w] = self.ranges[i];
            }
        }
        self.n = w + 1;
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.n]
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Everything behind the filter (a stage-2 that appears late gets the whole map).
    pub fn all() -> Self {
        let mut c = Changes::default();
        c.push(DRAM.0, DRAM.1);
        c
    }
}

/// Programs `m` as TF-A's `arm_tzc400_setup` does on FVP (`tzc400_init`, filters disabled,
/// region 0 `TZC_REGION_S_NONE` with no NSAID, one region per `BOOT_REGIONS` entry on filter
/// 0, `tzc400_set_action(TZC_ACTION_ERR)`, filters enabled).
pub fn boot_program(m: &mut impl RegisterAccess) {
    m.write(offset::GATE_KEEPER, 0);
    m.write(offset::region_attributes(0), 0);
    m.write(offset::region_id_access(0), 0);
    for r in fw::BOOT_REGIONS {
        let n = usize::from(r.index);
        m.write(offset::region_base_low(n), r.base as u32);
        m.write(offset::region_base_high(n), (r.base >> 32) as u32);
        m.write(offset::region_top_low(n), r.top as u32);
        m.write(offset::region_top_high(n), (r.top >> 32) as u32);
        let sec = if r.secure_rw {
            tzc400::ATTR_S_RD_EN | tzc400::ATTR_S_WR_EN
        } else {
            0
        };
        m.write(offset::region_attributes(n), sec | 1);
        let ids = r
            .ns_rw
            .iter()
            .fold(0u32, |a, &id| a | 1 << id | 1 << (16 + id));
        m.write(offset::region_id_access(n), ids);
    }
    m.write(offset::ACTION, fw::ACTION_ERR);
    m.write(offset::GATE_KEEPER, 1);
}

/// The register block as the SP sees it through the stage-2 trap: 32-bit registers; a 64-bit
/// access is two (low word first), narrower or unaligned accesses read as zero and are
/// ignored (the TZC-400's APB slave takes aligned 32-bit accesses). The caller applies
/// [`Firewall::take_changes`] after every write.
pub struct TzcDevice<'a>(pub &'a mut Firewall);

impl mmio::Device for TzcDevice<'_> {
    fn range(&self) -> (u64, u64) {
        (virt::TZC400_BASE, virt::TZC400_SIZE)
    }

    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let o = offset as usize;
        let m = &mut self.0.model;
        match size {
            4 if o.is_multiple_of(4) => u64::from(m.read(o)),
            8 if o.is_multiple_of(8) => u64::from(m.read(o)) | u64::from(m.read(o + 4)) << 32,
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let o = offset as usize;
        let m = &mut self.0.model;
        match size {
            4 if o.is_multiple_of(4) => m.write(o, value as u32),
            8 if o.is_multiple_of(8) => {
                m.write(o, value as u32);
                m.write(o + 4, (value >> 32) as u32);
            }
            _ => {}
        }
    }
}
