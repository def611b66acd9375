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

use crate::mmio;

/// The answer of the model for one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The region that decided (`None`: two enabled regions matched).
    pub region: Option<u8>,
    pub overlap: bool,
}

/// What the testbed needs of a TZC-400 model: its 32-bit register interface and the access
/// check, latching (`check`, what an access does) and not (`permits`, for recomputing maps).
pub trait Tzc {
    fn read32(&mut self, offset: u32) -> u32;
    fn write32(&mut self, offset: u32, value: u32);
    fn check(&mut self, addr: u64, secure: bool, nsaid: u8, write: bool) -> Verdict;
    fn permits(&self, addr: u64, secure: bool, nsaid: u8, write: bool) -> Verdict;
}

/// TZC-400 register offsets the testbed reads to see what changed (TRM DDI 0504C, table 3-1).
pub mod reg {
    pub const ACTION: u32 = 0x004;
    pub const GATE_KEEPER: u32 = 0x008;
    /// Region n's block: base low/high, top low/high, attributes, id_access.
    pub const REGION0: u32 = 0x100;
    pub const REGION_STRIDE: u32 = 0x20;
    pub const BASE_LOW: u32 = 0x0;
    pub const BASE_HIGH: u32 = 0x4;
    pub const TOP_LOW: u32 = 0x8;
    pub const TOP_HIGH: u32 = 0xc;
    pub const ATTRIBUTES: u32 = 0x10;
    pub const ID_ACCESS: u32 = 0x14;
    /// ATTRIBUTES: s_rd_en, s_wr_en, filter_en\[3:0\].
    pub const S_RD_EN: u32 = 1 << 30;
    pub const S_WR_EN: u32 = 1 << 31;
    /// GATE_KEEPER: open_request\[3:0\], open_status\[19:16\].
    pub const OPEN_STATUS_SHIFT: u32 = 16;
}

/// One region's registers as last applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionRegs {
    pub base: u64,
    pub top: u64,
    pub attributes: u32,
    pub id_access: u32,
}

impl RegionRegs {
    /// Enabled on filter 0 (the testbed's only filter); region 0 always is.
    fn enabled(&self, index: usize) -> bool {
        index == 0 || self.attributes & 1 != 0
    }
}

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

/// The emulated TZC-400 with its enforcement state.
pub struct Firewall<M: Tzc> {
    pub model: M,
    /// The region registers the stage-2 maps currently reflect.
    applied: [RegionRegs; fw::REGIONS as usize],
    gated: [Option<Gated>; MAX_GATED],
    /// LEND/DONATE take pages out of the NW stage-2 (boot config `lend-enforcement`).
    pub lend_enforcement: bool,
    /// Changed ranges waiting for the stage-2s that did not exist yet (the NW's is built
    /// after the SP's init): applied in full when it appears, so nothing is kept here.
    pub stats: Stats,
}

/// How much enforcement work was done (for the boot log and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Permission maps applied (gate reopened with changes).
    pub applies: u64,
    /// Page descriptors rewritten, all spaces.
    pub pages_changed: u64,
    /// Pages looked at, all spaces.
    pub pages_visited: u64,
}

impl<M: Tzc> Firewall<M> {
    /// Wraps a model in its reset state and programs it as firmware does at boot
    /// ([`boot_program`]); nothing is applied to a stage-2 yet (see [`enforce`]).
    pub fn new(mut model: M, lend_enforcement: bool) -> Self {
        boot_program(&mut model);
        let mut f = Firewall {
            model,
            applied: [RegionRegs::default(); fw::REGIONS as usize],
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

    fn current(&mut self) -> [RegionRegs; fw::REGIONS as usize] {
        let mut r = [RegionRegs::default(); fw::REGIONS as usize];
        for (i, e) in r.iter_mut().enumerate() {
            let b = reg::REGION0 + reg::REGION_STRIDE * i as u32;
            let m = &mut self.model;
            let w = |m: &mut M, o| u64::from(m.read32(b + o));
            e.base = (w(m, reg::BASE_HIGH) << 32 | w(m, reg::BASE_LOW)) & !0xfff;
            e.top = w(m, reg::TOP_HIGH) << 32 | w(m, reg::TOP_LOW) | 0xfff;
            e.attributes = m.read32(b + reg::ATTRIBUTES);
            e.id_access = m.read32(b + reg::ID_ACCESS);
        }
        r
    }

    /// Whether filter 0's gate is open (accesses flow; a new map takes effect).
    pub fn gate_open(&mut self) -> bool {
        self.model.read32(reg::GATE_KEEPER) >> reg::OPEN_STATUS_SHIFT & 1 != 0
    }

    /// After a register write: if the gate is open and a region changed since the last
    /// apply, the address ranges whose permissions may have changed (DRAM-clipped, sorted,
    /// merged; at most one per changed region side); the caller applies them
    /// ([`enforce::Spaces::apply`]) and the new registers become the applied ones.
    pub fn take_changes(&mut self) -> Changes {
        let mut out = Changes::default();
        if !self.gate_open() {
            return out;
        }
        let cur = self.current();
        if cur == self.applied {
            return out;
        }
        for (i, (old, new)) in self.applied.iter().zip(cur.iter()).enumerate() {
            if old == new {
                continue;
            }
            if i == 0 {
                // The background region covers whatever the others do not.
                out.push(DRAM.0, DRAM.1);
                continue;
            }
            for r in [old, new] {
                if r.enabled(i) && r.top >= r.base {
                    out.push(r.base, r.top.saturating_add(1));
                }
            }
        }
        self.applied = cur;
        self.stats.applies += 1;
        out
    }

    /// The permissions of the page at `addr` for the testbed's initiators (no latching).
    pub fn perm(&self, addr: u64) -> Perm {
        let m = &self.model;
        let n = fw::CPU_NSAID;
        Perm {
            ns_r: m.permits(addr, false, n, false).allowed,
            ns_w: m.permits(addr, false, n, true).allowed,
            s_r: m.permits(addr, true, n, false).allowed,
            s_w: m.permits(addr, true, n, true).allowed,
        }
    }

    /// Region boundaries inside `[start, end)` (starts of constant-permission segments).
    fn breakpoints(&self, start: u64, end: u64, out: &mut [u64; 2 * fw::REGIONS as usize + 1]) -> usize {
        let mut n = 0;
        out[n] = start;
        n += 1;
        for (i, r) in self.applied.iter().enumerate().skip(1) {
            if !r.enabled(i) {
                continue;
            }
            for b in [r.base, r.top.saturating_add(1)] {
                if b > start && b < end {
                    out[n] = b;
                    n += 1;
                }
            }
        }
        out[..n].sort_unstable();
        n
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
    ranges: [(u64, u64); 2 * fw::REGIONS as usize],
    n: usize,
}

impl Changes {
    fn push(&mut self, start: u64, end: u64) {
        let (s, e) = (start.max(DRAM.0) & !0xfff, end.min(DRAM.1).next_multiple_of(0x1000));
        if s >= e {
            return;
        }
        self.ranges[self.n] = (s, e);
        self.n += 1;
        self.ranges[..self.n].sort_unstable();
        // Merge overlapping or touching ranges.
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
pub fn boot_program<M: Tzc>(m: &mut M) {
    m.write32(reg::GATE_KEEPER, 0);
    let r0 = reg::REGION0;
    m.write32(r0 + reg::ATTRIBUTES, 0);
    m.write32(r0 + reg::ID_ACCESS, 0);
    for r in fw::BOOT_REGIONS {
        let b = reg::REGION0 + reg::REGION_STRIDE * u32::from(r.index);
        m.write32(b + reg::BASE_LOW, r.base as u32);
        m.write32(b + reg::BASE_HIGH, (r.base >> 32) as u32);
        m.write32(b + reg::TOP_LOW, r.top as u32);
        m.write32(b + reg::TOP_HIGH, (r.top >> 32) as u32);
        let sec = if r.secure_rw {
            reg::S_RD_EN | reg::S_WR_EN
        } else {
            0
        };
        m.write32(b + reg::ATTRIBUTES, sec | 1);
        let ids = r.ns_rw.iter().fold(0u32, |a, &id| a | 1 << id | 1 << (16 + id));
        m.write32(b + reg::ID_ACCESS, ids);
    }
    m.write32(reg::ACTION, fw::ACTION_ERR);
    m.write32(reg::GATE_KEEPER, 1);
}

/// The register block as the SP sees it through the stage-2 trap: 32-bit registers; a 64-bit
/// access is two (low word first), narrower accesses read as zero and are ignored (the
/// TZC-400's APB slave takes 32-bit accesses only). The caller applies
/// [`Firewall::take_changes`] after every write.
pub struct TzcDevice<'a, M: Tzc>(pub &'a mut Firewall<M>);

impl<M: Tzc> mmio::Device for TzcDevice<'_, M> {
    fn range(&self) -> (u64, u64) {
        (virt::TZC400_BASE, virt::TZC400_SIZE)
    }

    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let o = offset as u32;
        match size {
            4 => u64::from(self.0.model.read32(o)),
            8 => {
                u64::from(self.0.model.read32(o))
                    | u64::from(self.0.model.read32(o.wrapping_add(4))) << 32
            }
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let o = offset as u32;
        match size {
            4 => self.0.model.write32(o, value as u32),
            8 => {
                self.0.model.write32(o, value as u32);
                self.0.model.write32(o.wrapping_add(4), (value >> 32) as u32);
            }
            _ => {}
        }
    }
}
