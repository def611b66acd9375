//! Rockchip RK3588 memory firewalls: FIREWALL_DDR (@0xfe030000) and FIREWALL_DSU (@0xfe010000).
//!
//! Sources: TF-A v2.15.0 `plat/rockchip/rk3588/drivers/secure/secure.{c,h}`, OP-TEE
//! `core/arch/arm/plat-rockchip/platform_rk3588.c`, research/platform-facts.md sec. 7.3. There is
//! no public TRM for these blocks.
//!
//! Both blocks have 16 regions, `RGN(i)` at 0x4 * i, in MiB: `((top_MB - 1) & 0x7fff) << 16 |
//! (base_MB & 0x7fff)` (1 MiB granule, 32 GiB reach). An enabled region is a *secure* region:
//! masters whose deny bit for it is set cannot reach it; memory outside every enabled region is
//! open to all (the background is non-secure, unlike the TZC-400 as TF-A programs it, so on this
//! SoC the planner has no NS regions to split).
//! - FIREWALL_DDR: `MST(i)` at 0x40 + 4 * i (42 registers), `CON` at 0xf0 = region-enable bitmap.
//!   Filters every DDR master except the CPUs' non-secure path.
//! - FIREWALL_DSU: `MST(0)` = dsu-ns (the CPUs' non-secure accesses), `MST(1)` = dsu-s, `CON(ch)` at
//!   0xf0 + 4 * ch enables regions per DDR channel (4). CPU accesses are filtered here, so a secure
//!   range must be programmed in both blocks ([`Rk3588Firewall`] does).
//!
//! # Verified vs. not
//!
//! Verified only against TF-A's and OP-TEE's source (no board, no TRM):
//! - offsets of RGN/MST/CON, the RGN encoding, 16 regions, 42 DDR MST registers, 2 DSU MST
//!   registers, 4 DSU CON registers, and that TF-A enables region 0 for 0-1 MiB in both.
//!
//! NOT verified (assumptions this crate makes; check with the TRM or a board):
//! - **MST bit meaning.** The crate assumes each 32-bit DDR `MST(i)` holds two master slots:
//!   bits \[15:0\] = per-region deny bits of slot `2i`, bits \[31:16\] = slot `2i + 1`, a set bit
//!   denying that slot both reads and writes of the region. This fits every value TF-A writes
//!   ("ddr_mcu can access all" = 0x0000ffff, "dsu_mp_sec can access all" = 0xffff0000, NS
//!   masters 0xffffffff) and other public code that grants one NPU core access by clearing one
//!   half only. A per-direction reading (one half read-deny, the other write-deny) is the
//!   alternative. For the DSU block, whose two registers TF-A only writes as 0 or 0xffffffff, the
//!   crate writes both halves alike and its model denies if either half's bit is set.
//! - That region addresses are CPU physical addresses in MiB (as OP-TEE passes them).
//! - Behaviour of overlapping enabled regions (the model denies if any matching region denies).
//! - Reset values (the model resets to all zero: no region enabled, no master denied).
//! - Whether a DSU region must be enabled on all four channels to take effect (the driver always
//!   enables all four; the model only honours a region enabled on every channel).
//! - There is no gate keeper: reprogramming is not atomic, so [`MemoryFirewall::begin_update`]
//!   and [`MemoryFirewall::commit_update`] do nothing and the planner orders writes so no
//!   intermediate state exposes a page (see [`crate::planner`]).
//! - Fault reporting: no public fail-address registers, so `take_fault` returns `None`.

use crate::RegisterAccess;
use crate::{Access, Error, Fault, Granule, IdMask, MemoryFirewall, NsAccess, Region, RegionIndex};

/// FIREWALL_DDR physical base.
pub const FIREWALL_DDR_BASE: u64 = 0xfe03_0000;
/// FIREWALL_DSU physical base.
pub const FIREWALL_DSU_BASE: u64 = 0xfe01_0000;
/// Size of each register block mapped by the SP.
pub const BLOCK_SIZE: usize = 0x1000;
/// Regions per block.
pub const REGIONS: usize = 16;
/// FIREWALL_DDR MST registers.
pub const DDR_MST_REGS: usize = 42;
/// FIREWALL_DDR master slots (two per MST register; see the module doc).
pub const DDR_MASTER_SLOTS: usize = 2 * DDR_MST_REGS;
/// FIREWALL_DSU MST registers (0 = dsu-ns, 1 = dsu-s).
pub const DSU_MST_REGS: usize = 2;
/// DDR channels (FIREWALL_DSU CON registers).
pub const DDR_CHANNELS: usize = 4;
/// The [`IdMask`] bit standing for the CPUs' non-secure accesses (FIREWALL_DSU MST(0)).
pub const CPU_NS: u8 = 127;
/// The highest address a region can reach (32 GiB - 1).
pub const MAX_ADDRESS: u64 = (0x8000 << 20) - 1;

/// Register offsets (both blocks).
pub mod offset {
    /// RGN(i).
    pub const fn rgn(i: usize) -> usize {
        4 * i
    }
    /// MST(i).
    pub const fn mst(i: usize) -> usize {
        0x40 + 4 * i
    }
    /// FIREWALL_DDR CON.
    pub const DDR_CON: usize = 0xf0;
    /// FIREWALL_DSU CON(ch).
    pub const fn dsu_con(ch: usize) -> usize {
        0xf0 + 4 * ch
    }
}

/// Encodes a RGN value for `[base, top]` (inclusive); both ends must be MiB aligned.
pub const fn encode_rgn(base: u64, top: u64) -> u32 {
    let base_mb = base >> 20;
    let top_mb = (top >> 20) + 1;
    (((top_mb - 1) & 0x7fff) as u32) << 16 | (base_mb & 0x7fff) as u32
}

/// Decodes a RGN value into `(base, top)` (inclusive); `None` if top < base.
pub const fn decode_rgn(v: u32) -> Option<(u64, u64)> {
    let base = ((v & 0x7fff) as u64) << 20;
    let top = ((((v >> 16) & 0x7fff) as u64 + 1) << 20) - 1;
    if top < base { None } else { Some((base, top)) }
}

fn validate(region: &Region) -> Result<(), Error> {
    let g = Granule::MIB_1;
    if region.top < region.base {
        return Err(Error::EmptyRange);
    }
    if !g.is_aligned(region.base) {
        return Err(Error::NotGranuleAligned { addr: region.base });
    }
    if region.top > MAX_ADDRESS {
        return Err(Error::AddressTooWide { addr: region.top });
    }
    if !g.is_aligned(region.top + 1) {
        return Err(Error::NotGranuleAligned {
            addr: region.top + 1,
        });
    }
    if region.ns.read != region.ns.write || region.secure.read != region.secure.write {
        return Err(Error::Unsupported);
    }
    let bad = region.ns.read.0 & !(ddr_slots_mask() | 1 << CPU_NS);
    if bad != 0 {
        return Err(Error::NoSuchMaster(IdMask(bad)));
    }
    Ok(())
}

const fn ddr_slots_mask() -> u128 {
    (1u128 << DDR_MASTER_SLOTS) - 1
}

fn check_index(index: RegionIndex) -> Result<usize, Error> {
    if usize::from(index.0) < REGIONS {
        Ok(usize::from(index.0))
    } else {
        Err(Error::NoSuchRegion(index))
    }
}

/// FIREWALL_DDR driver.
pub struct FirewallDdr<R> {
    regs: R,
}

impl<R: RegisterAccess> FirewallDdr<R> {
    /// Wraps the register block.
    pub fn new(regs: R) -> Self {
        FirewallDdr { regs }
    }

    /// The register access.
    pub fn registers(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Writes RGN(i) for `[base, top]` and sets CON bit i.
    pub fn enable_region(&mut self, i: usize, base: u64, top: u64) {
        self.regs.write(offset::rgn(i), encode_rgn(base, top));
        let con = self.regs.read(offset::DDR_CON);
        self.regs.write(offset::DDR_CON, con | 1 << i);
    }

    /// Clears CON bit i.
    pub fn disable_region(&mut self, i: usize) {
        let con = self.regs.read(offset::DDR_CON);
        self.regs.write(offset::DDR_CON, con & !(1 << i));
    }

    /// Region i's range if enabled.
    pub fn region(&mut self, i: usize) -> Option<(u64, u64)> {
        if self.regs.read(offset::DDR_CON) & 1 << i == 0 {
            return None;
        }
        decode_rgn(self.regs.read(offset::rgn(i)))
    }

    /// Sets or clears the deny bit of master `slot` for region `i`.
    pub fn set_denied(&mut self, slot: usize, i: usize, denied: bool) {
        let (reg, bit) = (slot / 2, (slot % 2) * 16 + i);
        let v = self.regs.read(offset::mst(reg));
        let n = if denied {
            v | 1 << bit
        } else {
            v & !(1 << bit)
        };
        if n != v {
            self.regs.write(offset::mst(reg), n);
        }
    }

    /// Whether master `slot` is denied region `i`.
    pub fn denied(&mut self, slot: usize, i: usize) -> bool {
        self.regs.read(offset::mst(slot / 2)) & 1 << ((slot % 2) * 16 + i) != 0
    }
}

/// FIREWALL_DSU driver.
pub struct FirewallDsu<R> {
    regs: R,
}

impl<R: RegisterAccess> FirewallDsu<R> {
    /// Wraps the register block.
    pub fn new(regs: R) -> Self {
        FirewallDsu { regs }
    }

    /// The register access.
    pub fn registers(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Writes RGN(i) for `[base, top]` and sets bit i in every channel's CON.
    pub fn enable_region(&mut self, i: usize, base: u64, top: u64) {
        self.regs.write(offset::rgn(i), encode_rgn(base, top));
        for ch in 0..DDR_CHANNELS {
            let con = self.regs.read(offset::dsu_con(ch));
            self.regs.write(offset::dsu_con(ch), con | 1 << i);
        }
    }

    /// Clears bit i in every channel's CON.
    pub fn disable_region(&mut self, i: usize) {
        for ch in 0..DDR_CHANNELS {
            let con = self.regs.read(offset::dsu_con(ch));
            self.regs.write(offset::dsu_con(ch), con & !(1 << i));
        }
    }

    /// Region i's range if enabled on every channel.
    pub fn region(&mut self, i: usize) -> Option<(u64, u64)> {
        for ch in 0..DDR_CHANNELS {
            if self.regs.read(offset::dsu_con(ch)) & 1 << i == 0 {
                return None;
            }
        }
        decode_rgn(self.regs.read(offset::rgn(i)))
    }

    /// Sets or clears the deny bits (both halves) of `MST(m)` (0 = dsu-ns, 1 = dsu-s) for region i.
    pub fn set_denied(&mut self, m: usize, i: usize, denied: bool) {
        let bits = (1u32 << i) | (1 << (16 + i));
        let v = self.regs.read(offset::mst(m));
        let n = if denied { v | bits } else { v & !bits };
        if n != v {
            self.regs.write(offset::mst(m), n);
        }
    }

    /// Whether `MST(m)` denies region i (either half).
    pub fn denied(&mut self, m: usize, i: usize) -> bool {
        self.regs.read(offset::mst(m)) & ((1 << i) | (1 << (16 + i))) != 0
    }
}

/// TF-A's secure DDR master slots (under the two-slots-per-register reading): MST(1) \[31:16\]
/// (ddr_mcu), MST(14) both halves (dcf / crypto_s), MST(36) \[15:0\] (dsu_mp_sec). They keep access
/// to every region the SP programs with secure access.
pub const TFA_SECURE_DDR_SLOTS: IdMask = IdMask(1 << 3 | 1 << 28 | 1 << 29 | 1 << 72);

/// FIREWALL_DDR + FIREWALL_DSU as one [`MemoryFirewall`] with 16 regions, 1 MiB granule.
///
/// A region must grant the same read and write access (the hardware has one bit per master and
/// region, under the crate's reading). `secure` maps to dsu-s (DSU MST(1)) and to the
/// `secure_slots` DDR masters; `ns` lists the DDR master slots allowed plus [`CPU_NS`] for dsu-ns.
pub struct Rk3588Firewall<D, S> {
    ddr: FirewallDdr<D>,
    dsu: FirewallDsu<S>,
    secure_slots: IdMask,
}

impl<D: RegisterAccess, S: RegisterAccess> Rk3588Firewall<D, S> {
    /// Both blocks; `secure_slots` are the DDR master slots firmware treats as secure
    /// (usually [`TFA_SECURE_DDR_SLOTS`]).
    pub fn new(ddr: D, dsu: S, secure_slots: IdMask) -> Self {
        Rk3588Firewall {
            ddr: FirewallDdr::new(ddr),
            dsu: FirewallDsu::new(dsu),
            secure_slots,
        }
    }

    /// The FIREWALL_DDR driver.
    pub fn ddr(&mut self) -> &mut FirewallDdr<D> {
        &mut self.ddr
    }

    /// The FIREWALL_DSU driver.
    pub fn dsu(&mut self) -> &mut FirewallDsu<S> {
        &mut self.dsu
    }
}

impl<D: RegisterAccess, S: RegisterAccess> MemoryFirewall for Rk3588Firewall<D, S> {
    fn granule(&self) -> Granule {
        Granule::MIB_1
    }

    fn regions(&self) -> u8 {
        REGIONS as u8
    }

    fn is_background(&self, _index: RegionIndex) -> bool {
        false
    }

    /// Order: master bits first, then RGN + enable in DDR, then DSU, so the range is never
    /// enabled with stale master bits.
    fn program(&mut self, index: RegionIndex, region: &Region) -> Result<(), Error> {
        let i = check_index(index)?;
        validate(region)?;
        let allowed = region.ns.read;
        for slot in 0..DDR_MASTER_SLOTS {
            let secure_ok = region.secure.read && self.secure_slots.contains(slot as u8);
            self.ddr
                .set_denied(slot, i, !(secure_ok || allowed.contains(slot as u8)));
        }
        self.dsu.set_denied(0, i, !allowed.contains(CPU_NS));
        self.dsu.set_denied(1, i, !region.secure.read);
        self.ddr.enable_region(i, region.base, region.top);
        self.dsu.enable_region(i, region.base, region.top);
        Ok(())
    }

    fn clear(&mut self, index: RegionIndex) -> Result<(), Error> {
        let i = check_index(index)?;
        self.dsu.disable_region(i);
        self.ddr.disable_region(i);
        Ok(())
    }

    /// Reads DDR's view (range and masters) and DSU's (CPU access); a region enabled in only one
    /// block, or with different ranges, reads as `Err(Unsupported)`.
    fn read(&mut self, index: RegionIndex) -> Result<Option<Region>, Error> {
        let i = check_index(index)?;
        let (d, s) = (self.ddr.region(i), self.dsu.region(i));
        let (base, top) = match (d, s) {
            (None, None) => return Ok(None),
            (Some(d), Some(s)) if d == s => d,
            _ => return Err(Error::Unsupported),
        };
        let mut ns = 0u128;
        for slot in 0..DDR_MASTER_SLOTS {
            if !self.ddr.denied(slot, i) && !self.secure_slots.contains(slot as u8) {
                ns |= 1 << slot;
            }
        }
        if !self.dsu.denied(0, i) {
            ns |= 1 << CPU_NS;
        }
        let s = !self.dsu.denied(1, i);
        Ok(Some(Region {
            base,
            top,
            secure: Access { read: s, write: s },
            ns: NsAccess::rw(IdMask(ns)),
            filters: 0,
        }))
    }

    fn begin_update(&mut self) -> Result<(), Error> {
        Ok(())
    }

    fn commit_update(&mut self) -> Result<(), Error> {
        Ok(())
    }

    fn take_fault(&mut self) -> Option<Fault> {
        None
    }

    fn clear_fault(&mut self) {}
}

/// Which block a [`Model`] emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// FIREWALL_DDR: 42 MST registers, one CON.
    Ddr,
    /// FIREWALL_DSU: 2 MST registers, four CON.
    Dsu,
}

/// A register model of FIREWALL_DDR or FIREWALL_DSU with the crate's reading of the bits (see the
/// module doc): RGN keeps bits \[30:16\] and \[14:0\], CON \[15:0\], MST all 32 bits; other offsets
/// RAZ/WI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    block: Block,
    rgn: [u32; REGIONS],
    mst: [u32; DDR_MST_REGS],
    con: [u32; DDR_CHANNELS],
    generation: u64,
}

impl Model {
    /// A block in the assumed reset state (all zero).
    pub const fn new(block: Block) -> Model {
        Model {
            block,
            rgn: [0; REGIONS],
            mst: [0; DDR_MST_REGS],
            con: [0; DDR_CHANNELS],
            generation: 0,
        }
    }

    /// Increments on every register write that changes state.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn mst_regs(&self) -> usize {
        match self.block {
            Block::Ddr => DDR_MST_REGS,
            Block::Dsu => DSU_MST_REGS,
        }
    }

    fn enabled(&self, i: usize) -> bool {
        match self.block {
            Block::Ddr => self.con[0] & 1 << i != 0,
            Block::Dsu => self.con.iter().all(|c| c & 1 << i != 0),
        }
    }

    fn slot_denied(&self, slot: usize, i: usize) -> bool {
        match self.block {
            Block::Ddr => {
                slot >= DDR_MASTER_SLOTS || self.mst[slot / 2] & 1 << ((slot % 2) * 16 + i) != 0
            }
            Block::Dsu => {
                slot >= DSU_MST_REGS || self.mst[slot] & ((1 << i) | (1 << (16 + i))) != 0
            }
        }
    }

    /// Whether master `slot` (DDR: master slot; DSU: 0 = dsu-ns, 1 = dsu-s) may access `addr`:
    /// denied if any enabled region containing it denies the slot. Returns the first deciding
    /// region on denial.
    pub fn check(&self, addr: u64, slot: usize) -> Result<(), RegionIndex> {
        for i in 0..REGIONS {
            if !self.enabled(i) {
                continue;
            }
            if let Some((b, t)) = decode_rgn(self.rgn[i])
                && b <= addr
                && addr <= t
                && self.slot_denied(slot, i)
            {
                return Err(RegionIndex(i as u8));
            }
        }
        Ok(())
    }
}

impl RegisterAccess for Model {
    fn read(&mut self, off: usize) -> u32 {
        if !off.is_multiple_of(4) {
            return 0;
        }
        match off {
            0x00..=0x3f => self.rgn[off / 4],
            0x40..=0xef if (off - 0x40) / 4 < self.mst_regs() => self.mst[(off - 0x40) / 4],
            0xf0 => self.con[0],
            0xf4..=0xff if self.block == Block::Dsu => self.con[(off - 0xf0) / 4],
            _ => 0,
        }
    }

    fn write(&mut self, off: usize, value: u32) {
        if !off.is_multiple_of(4) {
            return;
        }
        let v = match off {
            0x00..=0x3f => value & 0x7fff_7fff,
            0xf0..=0xff => value & 0xffff,
            _ => value,
        };
        let mst_regs = self.mst_regs();
        let slot = match off {
            0x00..=0x3f => &mut self.rgn[off / 4],
            0x40..=0xef if (off - 0x40) / 4 < mst_regs => &mut self.mst[(off - 0x40) / 4],
            0xf0 => &mut self.con[0],
            0xf4..=0xff if self.block == Block::Dsu => &mut self.con[(off - 0xf0) / 4],
            _ => return,
        };
        if *slot != v {
            *slot = v;
            self.generation += 1;
        }
    }
}
