//! The extent planner: which firewall regions to program so that exactly the secured pages are
//! secure, in as few regions as possible, inside the budget firmware leaves.
//!
//! Pure and allocation-free (fixed-size tables). The caller asks for a change
//! ([`ExtentPlanner::plan_secure`], [`ExtentPlanner::plan_release`]), gets a [`Plan`] — the
//! complete target region table and the register changes to reach it, computed and validated
//! before anything is written — applies it ([`Plan::apply`]), then adopts it
//! ([`ExtentPlanner::commit`]). [`ExtentPlanner::secure`] / [`ExtentPlanner::release`] do plan +
//! commit in one step for callers that apply afterwards. A refused request returns a
//! [`PlanError`] and changes nothing.
//!
//! # Model
//!
//! - Firmware regions are inputs: *fixed* ones (e.g. TF-A's secure DRAM) are never touched and
//!   their indices are not in the budget; *NS* ones (TF-A's NS DRAM regions on TZC-400, whose
//!   background region denies everything) are reshaped: a secure extent inside an NS region
//!   needs that region split around it (TZC-400 regions 1-8 must not overlap), and the pieces
//!   count in the budget. With an open background (RK3588) there are no NS regions.
//! - Secured pages are kept per owner (a model id) as extents; the programmed secure regions are
//!   the maximal runs of secured pages, whoever owns them (all secure extents have the same
//!   attributes), so adjacent extents merge and an extent grown at its top keeps its region (one
//!   register write, plus the NS piece above it shrinking).
//! - Index assignment keeps unchanged regions where they are, reuses the index of an overlapping
//!   region of the same kind (grow / shrink = one write), then takes free indices.
//!
//! # Granules
//!
//! Requests must be whole granules (4 KiB on TZC-400, 1 MiB on RK3588): a range whose base or size
//! is not a multiple of the granule is refused with [`PlanError::NotGranuleAligned`]. Nothing is
//! ever rounded, so no page is secured or exposed that nobody asked for; on RK3588 the caller
//! (Flex-Mem) secures only whole MiB that the normal world lent in full.
//!
//! # Write order
//!
//! On a gated firewall (TZC-400) the order inside [`Plan::apply`] does not matter: every write
//! happens behind closed gates. For firewalls without a gate keeper (RK3588) the plan puts the
//! writes that only add secure coverage first, then those that change or remove it, so no
//! intermediate state leaves a page non-secure that is secure both before and after.

use crate::{Access, Error, Granule, MemoryFirewall, NsAccess, Region, RegionIndex};

mod extents;

use extents::{Extent, Extents};

/// Most region indices a planner handles (RK3588 has 16, TZC-400 9).
pub const MAX_REGIONS: usize = 16;
/// Most owner extents tracked (an owner's adjacent pages merge into one extent).
pub const MAX_EXTENTS: usize = 64;

/// Who secured a range (Flex-Mem: the model id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner(pub u32);

/// What the firewall does with addresses no region covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// Denied to every non-secure master (TZC-400 as TF-A programs region 0): NS memory is what
    /// firmware's NS regions cover, and secure requests must lie inside it.
    Denied,
    /// Open to non-secure masters (RK3588): regions are secure regions; requests must only avoid
    /// firmware's fixed regions.
    Open,
}

/// How the planner may treat a firmware region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareKind {
    /// Never touched (its index is not in the budget).
    Fixed,
    /// An NS region the planner may split around secure extents (its index joins the budget).
    Ns,
}

/// A region firmware programmed before the planner starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareRegion {
    /// Where firmware put it.
    pub index: RegionIndex,
    /// What it is.
    pub region: Region,
    /// Fixed or splittable NS.
    pub kind: FirmwareKind,
}

/// Planner configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The firewall's granule.
    pub granule: Granule,
    /// Number of region indices (`MemoryFirewall::regions`, at most [`MAX_REGIONS`]).
    pub regions: u8,
    /// Indices the planner must never use besides firmware's fixed ones (bit i = index i; TZC-400:
    /// bit 0, the background region).
    pub reserved: u16,
    /// What uncovered memory is.
    pub background: Background,
    /// Secure access of the regions the planner creates for secured pages.
    pub secure: Access,
    /// Non-secure access of those regions (normally none).
    pub secure_ns: NsAccess,
    /// Filters of those regions (TZC-400: every filter; RK3588: ignored).
    pub filters: u8,
}

impl Config {
    /// TZC-400 as TF-A leaves it: 9 regions, region 0 reserved, background denied, secure extents
    /// secure RW / no NS on `filters`.
    pub const fn tzc400(filters: u8) -> Config {
        Config {
            granule: Granule::KIB_4,
            regions: 9,
            reserved: 1,
            background: Background::Denied,
            secure: Access::RW,
            secure_ns: NsAccess::NONE,
            filters,
        }
    }

    /// RK3588 FIREWALL_DDR + DSU: 16 regions, 1 MiB, open background.
    pub const fn rk3588() -> Config {
        Config {
            granule: Granule::MIB_1,
            regions: 16,
            reserved: 0,
            background: Background::Open,
            secure: Access::RW,
            secure_ns: NsAccess::NONE,
            filters: 0,
        }
    }
}

/// Why a plan was refused. The planner's state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Base or size is not a multiple of the granule.
    NotGranuleAligned {
        /// The offending address or size.
        value: u64,
    },
    /// Size 0, or the range wraps around the address space.
    EmptyRange,
    /// Part of the range is already secured (by this or another owner).
    AlreadySecured {
        /// First such address.
        addr: u64,
    },
    /// Part of the range is not secured by this owner.
    NotSecured {
        /// First such address.
        addr: u64,
    },
    /// Part of the range is not NS memory (background `Denied`: outside firmware's NS regions).
    NotNsMemory {
        /// First such address.
        addr: u64,
    },
    /// The range overlaps a fixed firmware region.
    FirmwareRegion {
        /// That region's index.
        index: RegionIndex,
    },
    /// The result would need more regions than the budget has.
    BudgetExhausted {
        /// Regions the result needs (secure runs + NS pieces).
        needed: u8,
        /// Indices available to the planner.
        available: u8,
    },
    /// More owner extents than [`MAX_EXTENTS`].
    TooManyExtents,
    /// The plan was computed from an older state than the planner's.
    Stale,
    /// The configuration or the firmware regions are inconsistent (index out of range or used
    /// twice, misaligned, overlapping, more than [`MAX_REGIONS`]).
    BadFirmware {
        /// The index at fault.
        index: RegionIndex,
    },
    /// Reading the firewall failed ([`ExtentPlanner::from_firewall`]).
    Firewall(Error),
}

/// Why [`ExtentPlanner::secure_on`] / [`ExtentPlanner::release_on`] failed. The planner is
/// unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// Refused before anything was written.
    Plan(PlanError),
    /// The firewall refused a write or its gate did not follow; the planner then reprogrammed the
    /// committed state ([`ExtentPlanner::restore`]).
    Firewall {
        /// The first error.
        error: Error,
        /// Whether reprogramming the committed state succeeded (if not, the hardware may hold
        /// part of the failed plan: treat the firewall as broken).
        restored: bool,
    },
}

impl From<PlanError> for ApplyError {
    fn from(e: PlanError) -> Self {
        ApplyError::Plan(e)
    }
}

/// What a region index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Nothing (disabled).
    Free,
    /// Not the planner's: reserved, or a fixed firmware region (unchanged, never written).
    Foreign,
    /// A piece of firmware NS region `parent` (index into the firmware NS list).
    Ns {
        /// Which original NS region it is part of.
        parent: u8,
        /// The piece.
        region: Region,
    },
    /// A run of secured pages.
    Secure(Region),
}

impl Entry {
    /// The programmed region, if the planner owns one here.
    pub const fn region(&self) -> Option<&Region> {
        match self {
            Entry::Ns { region, .. } | Entry::Secure(region) => Some(region),
            Entry::Free | Entry::Foreign => None,
        }
    }
}

/// One register-level change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Program (and enable) the region at the index.
    Program(RegionIndex, Region),
    /// Disable the region at the index.
    Clear(RegionIndex),
}

/// A checked set of region changes and the table they lead to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    version: u64,
    table: [Entry; MAX_REGIONS],
    extents: Extents,
    ops: [Op; MAX_REGIONS],
    len: usize,
}

impl Plan {
    /// The changes, in the order [`Plan::apply`] writes them.
    pub fn ops(&self) -> &[Op] {
        &self.ops[..self.len]
    }

    /// The region table after the plan.
    pub fn table(&self) -> &[Entry] {
        &self.table
    }

    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the plan: `begin_update`, every op, `commit_update` (nothing for an empty plan).
    /// On an error the gates are reopened if they were closed and the error returned; the
    /// hardware may then hold part of the plan: apply [`ExtentPlanner::restore`] to go back.
    pub fn apply<F: MemoryFirewall + ?Sized>(&self, fw: &mut F) -> Result<(), Error> {
        if self.is_empty() {
            // Nothing to write: no gate cycle (each is a trapped MMIO round trip on the testbed).
            return Ok(());
        }
        fw.begin_update()?;
        for op in self.ops() {
            let r = match op {
                Op::Program(i, region) => fw.program(*i, region),
                Op::Clear(i) => fw.clear(*i),
            };
            if let Err(e) = r {
                let _ = fw.commit_update();
                return Err(e);
            }
        }
        fw.commit_update()
    }
}

/// The planner's state: firmware's regions, the owner extents, and the region table programmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentPlanner {
    config: Config,
    /// Firmware's NS regions as they were (the NS coverage to keep minus secured pages).
    ns: [Option<Region>; MAX_REGIONS],
    /// Firmware's fixed regions by index.
    fixed: [Option<Region>; MAX_REGIONS],
    table: [Entry; MAX_REGIONS],
    extents: Extents,
    version: u64,
}

/// A half-open-free run list: inclusive `(base, top)` pairs.
type Runs = [(u64, u64); MAX_EXTENTS];

impl ExtentPlanner {
    /// A planner over `config.regions` indices with firmware's regions as programmed at boot.
    pub fn new(config: Config, firmware: &[FirmwareRegion]) -> Result<ExtentPlanner, PlanError> {
        let n = usize::from(config.regions);
        if n == 0 || n > MAX_REGIONS {
            return Err(PlanError::BadFirmware {
                index: RegionIndex(config.regions),
            });
        }
        let mut table = [Entry::Foreign; MAX_REGIONS];
        for (i, t) in table.iter_mut().enumerate().take(n) {
            if config.reserved & (1 << i) == 0 {
                *t = Entry::Free;
            }
        }
        let mut ns = [None; MAX_REGIONS];
        let mut fixed = [None; MAX_REGIONS];
        let mut ns_count = 0u8;
        for (k, fw) in firmware.iter().enumerate() {
            let i = usize::from(fw.index.0);
            let bad = PlanError::BadFirmware { index: fw.index };
            if i >= n || table[i] != Entry::Free {
                return Err(bad);
            }
            let r = &fw.region;
            let g = config.granule;
            if r.top < r.base
                || !g.is_aligned(r.base)
                || r.top.checked_add(1).is_some_and(|t| !g.is_aligned(t))
            {
                return Err(bad);
            }
            if firmware[..k].iter().any(|o| o.region.overlaps(r)) {
                return Err(bad);
            }
            match fw.kind {
                FirmwareKind::Fixed => {
                    fixed[i] = Some(*r);
                    table[i] = Entry::Foreign;
                }
                FirmwareKind::Ns => {
                    if config.background == Background::Open {
                        return Err(bad);
                    }
                    ns[usize::from(ns_count)] = Some(*r);
                    table[i] = Entry::Ns {
                        parent: ns_count,
                        region: *r,
                    };
                    ns_count += 1;
                }
            }
        }
        Ok(ExtentPlanner {
            config,
            ns,
            fixed,
            table,
            extents: Extents::EMPTY,
            version: 0,
        })
    }

    /// A planner over the regions firmware left programmed in `fw`, read back at boot: the
    /// background region and indices in `config.reserved` are not used; with a `Denied`
    /// background, a region granting NS access and no secure access is firmware NS memory
    /// ([`FirmwareKind::Ns`]); every other enabled region is [`FirmwareKind::Fixed`].
    pub fn from_firewall<F: MemoryFirewall + ?Sized>(
        mut config: Config,
        fw: &mut F,
    ) -> Result<ExtentPlanner, PlanError> {
        let n = fw.regions().min(MAX_REGIONS as u8);
        config.regions = config.regions.min(n);
        let mut list = [FirmwareRegion {
            index: RegionIndex(0),
            region: Region {
                base: 0,
                top: 0,
                secure: Access::NONE,
                ns: NsAccess::NONE,
                filters: 0,
            },
            kind: FirmwareKind::Fixed,
        }; MAX_REGIONS];
        let mut len = 0;
        for i in 0..config.regions {
            let index = RegionIndex(i);
            if fw.is_background(index) {
                config.reserved |= 1 << i;
                continue;
            }
            if config.reserved & (1 << i) != 0 {
                continue;
            }
            let Some(region) = fw.read(index).map_err(PlanError::Firewall)? else {
                continue;
            };
            let ns = region.ns.read.0 | region.ns.write.0 != 0;
            let kind =
                if config.background == Background::Denied && ns && region.secure == Access::NONE {
                    FirmwareKind::Ns
                } else {
                    FirmwareKind::Fixed
                };
            list[len] = FirmwareRegion {
                index,
                region,
                kind,
            };
            len += 1;
        }
        ExtentPlanner::new(config, &list[..len])
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The region table as programmed (after the last commit).
    pub fn table(&self) -> &[Entry] {
        &self.table[..usize::from(self.config.regions)]
    }

    /// Indices the planner may use (not reserved, not fixed firmware).
    pub fn budget(&self) -> u8 {
        self.table()
            .iter()
            .filter(|e| !matches!(e, Entry::Foreign))
            .count() as u8
    }

    /// Regions holding secured pages.
    pub fn secure_regions(&self) -> u8 {
        self.table()
            .iter()
            .filter(|e| matches!(e, Entry::Secure(_)))
            .count() as u8
    }

    /// Indices in use by the planner (secure runs and NS pieces).
    pub fn regions_used(&self) -> u8 {
        self.table().iter().filter(|e| e.region().is_some()).count() as u8
    }

    /// The owner of the page at `addr`, if secured.
    pub fn owner_of(&self, addr: u64) -> Option<Owner> {
        self.extents
            .as_slice()
            .iter()
            .find(|e| e.base <= addr && addr <= e.top)
            .map(|e| e.owner)
    }

    /// `owner`'s secured ranges (inclusive `(base, top)`), in address order.
    pub fn extents_of(&self, owner: Owner) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.extents
            .as_slice()
            .iter()
            .filter(move |e| e.owner == owner)
            .map(|e| (e.base, e.top))
    }

    /// Every secured range with its owner, in address order.
    pub fn extents(&self) -> impl Iterator<Item = (Owner, u64, u64)> + '_ {
        self.extents
            .as_slice()
            .iter()
            .map(|e| (e.owner, e.base, e.top))
    }

    fn range(&self, base: u64, size: u64) -> Result<u64, PlanError> {
        let g = self.config.granule;
        if !g.is_aligned(base) {
            return Err(PlanError::NotGranuleAligned { value: base });
        }
        if !g.is_aligned(size) {
            return Err(PlanError::NotGranuleAligned { value: size });
        }
        if size == 0 {
            return Err(PlanError::EmptyRange);
        }
        base.checked_add(size - 1).ok_or(PlanError::EmptyRange)
    }

    /// Plans securing `[base, base + size)` for `owner`. Refused if any of it is secured
    /// already, is firmware's, or (background `Denied`) is not NS memory.
    pub fn plan_secure(&self, owner: Owner, base: u64, size: u64) -> Result<Plan, PlanError> {
        let top = self.range(base, size)?;
        if let Some(addr) = self.extents.first_overlap(base, top) {
            return Err(PlanError::AlreadySecured { addr });
        }
        for (i, f) in self.fixed.iter().enumerate() {
            if f.is_some_and(|f| f.base <= top && base <= f.top) {
                return Err(PlanError::FirmwareRegion {
                    index: RegionIndex(i as u8),
                });
            }
        }
        if self.config.background == Background::Denied
            && let Some(addr) = self.first_not_ns(base, top)
        {
            return Err(PlanError::NotNsMemory { addr });
        }
        let mut extents = self.extents;
        extents.insert(Extent { owner, base, top })?;
        self.plan_for(extents)
    }

    /// Plans releasing `[base, base + size)` from `owner` (all of it must be `owner`'s).
    pub fn plan_release(&self, owner: Owner, base: u64, size: u64) -> Result<Plan, PlanError> {
        let top = self.range(base, size)?;
        let mut extents = self.extents;
        extents.remove(owner, base, top)?;
        self.plan_for(extents)
    }

    /// Plans releasing everything `owner` secured.
    pub fn plan_release_all(&self, owner: Owner) -> Result<Plan, PlanError> {
        let mut extents = Extents::EMPTY;
        for e in self.extents.as_slice().iter().filter(|e| e.owner != owner) {
            extents.items[extents.len] = *e;
            extents.len += 1;
        }
        self.plan_for(extents)
    }

    /// Adopts a plan made from the current state (after applying it to the firewall).
    pub fn commit(&mut self, plan: &Plan) -> Result<(), PlanError> {
        if plan.version != self.version {
            return Err(PlanError::Stale);
        }
        self.table = plan.table;
        self.extents = plan.extents;
        self.version += 1;
        Ok(())
    }

    /// [`plan_secure`](Self::plan_secure) + [`commit`](Self::commit); returns the plan to apply.
    pub fn secure(&mut self, owner: Owner, base: u64, size: u64) -> Result<Plan, PlanError> {
        let plan = self.plan_secure(owner, base, size)?;
        self.commit(&plan)?;
        Ok(plan)
    }

    /// [`plan_release`](Self::plan_release) + [`commit`](Self::commit); returns the plan to apply.
    pub fn release(&mut self, owner: Owner, base: u64, size: u64) -> Result<Plan, PlanError> {
        let plan = self.plan_release(owner, base, size)?;
        self.commit(&plan)?;
        Ok(plan)
    }

    /// Secures `[base, base + size)` for `owner` on `fw`, all or nothing: plan, apply (gated),
    /// commit; on a firewall error the committed state is reprogrammed and nothing changes.
    /// Returns the applied plan (its `ops().len()` is the number of region writes).
    pub fn secure_on<F: MemoryFirewall + ?Sized>(
        &mut self,
        fw: &mut F,
        owner: Owner,
        base: u64,
        size: u64,
    ) -> Result<Plan, ApplyError> {
        let plan = self.plan_secure(owner, base, size)?;
        self.apply_and_commit(fw, plan)
    }

    /// Releases `[base, base + size)` from `owner` on `fw`, all or nothing (see
    /// [`secure_on`](Self::secure_on)).
    pub fn release_on<F: MemoryFirewall + ?Sized>(
        &mut self,
        fw: &mut F,
        owner: Owner,
        base: u64,
        size: u64,
    ) -> Result<Plan, ApplyError> {
        let plan = self.plan_release(owner, base, size)?;
        self.apply_and_commit(fw, plan)
    }

    /// Releases everything `owner` secured on `fw`, all or nothing.
    pub fn release_all_on<F: MemoryFirewall + ?Sized>(
        &mut self,
        fw: &mut F,
        owner: Owner,
    ) -> Result<Plan, ApplyError> {
        let plan = self.plan_release_all(owner)?;
        self.apply_and_commit(fw, plan)
    }

    fn apply_and_commit<F: MemoryFirewall + ?Sized>(
        &mut self,
        fw: &mut F,
        plan: Plan,
    ) -> Result<Plan, ApplyError> {
        if let Err(error) = plan.apply(fw) {
            let restored = self.restore().apply(fw).is_ok();
            return Err(ApplyError::Firewall { error, restored });
        }
        self.commit(&plan)?;
        Ok(plan)
    }

    /// A plan that rewrites every index the planner manages to the committed state (to undo a
    /// partly applied plan). Committing it is a no-op apart from the version.
    pub fn restore(&self) -> Plan {
        let mut plan = self.empty_plan(self.extents, self.table);
        for i in 0..usize::from(self.config.regions) {
            let op = match &self.table[i] {
                Entry::Foreign => continue,
                Entry::Free => Op::Clear(RegionIndex(i as u8)),
                Entry::Ns { region, .. } | Entry::Secure(region) => {
                    Op::Program(RegionIndex(i as u8), *region)
                }
            };
            plan.ops[plan.len] = op;
            plan.len += 1;
        }
        plan
    }

    fn empty_plan(&self, extents: Extents, table: [Entry; MAX_REGIONS]) -> Plan {
        Plan {
            version: self.version,
            table,
            extents,
            ops: [Op::Clear(RegionIndex(0)); MAX_REGIONS],
            len: 0,
        }
    }

    fn first_not_ns(&self, base: u64, top: u64) -> Option<u64> {
        let mut at = base;
        while let Some(r) = self.ns.iter().flatten().find(|r| r.contains(at)) {
            if r.top >= top {
                return None;
            }
            at = r.top + 1;
        }
        Some(at)
    }

    /// Computes the table for `extents` and the ops from the current table to it.
    fn plan_for(&self, extents: Extents) -> Result<Plan, PlanError> {
        // 1. Secure runs: maximal runs of secured pages, whoever owns them.
        let mut runs: Runs = [(0, 0); MAX_EXTENTS];
        let mut nruns = 0;
        for e in extents.as_slice() {
            if nruns > 0 && runs[nruns - 1].1.checked_add(1) == Some(e.base) {
                runs[nruns - 1].1 = e.top;
            } else {
                runs[nruns] = (e.base, e.top);
                nruns += 1;
            }
        }
        let runs = &runs[..nruns];

        // 2. The wanted regions: secure runs and NS pieces (original NS minus runs).
        // Only the first MAX_REGIONS are kept (more never fit); all are counted for the error.
        let mut want = [Entry::Free; MAX_REGIONS];
        let mut nwant = 0;
        let budget = self.budget();
        let push = |want: &mut [Entry], nwant: &mut usize, e: Entry| {
            if let Some(w) = want.get_mut(*nwant) {
                *w = e;
            }
            *nwant += 1;
        };
        for &(base, top) in runs {
            let region = Region {
                base,
                top,
                secure: self.config.secure,
                ns: self.config.secure_ns,
                filters: self.config.filters,
            };
            push(&mut want, &mut nwant, Entry::Secure(region));
        }
        for (p, ns) in self.ns.iter().enumerate() {
            let Some(ns) = ns else { continue };
            let mut at = Some(ns.base);
            for &(base, top) in runs.iter().filter(|r| r.0 <= ns.top && ns.base <= r.1) {
                if let Some(a) = at.filter(|&a| base > a) {
                    let piece = Region {
                        base: a,
                        top: base - 1,
                        ..*ns
                    };
                    push(
                        &mut want,
                        &mut nwant,
                        Entry::Ns {
                            parent: p as u8,
                            region: piece,
                        },
                    );
                }
                at = top.checked_add(1);
            }
            if let Some(a) = at.filter(|&a| a <= ns.top) {
                let piece = Region { base: a, ..*ns };
                push(
                    &mut want,
                    &mut nwant,
                    Entry::Ns {
                        parent: p as u8,
                        region: piece,
                    },
                );
            }
        }
        if nwant > usize::from(budget) {
            return Err(PlanError::BudgetExhausted {
                needed: nwant.min(u8::MAX as usize) as u8,
                available: budget,
            });
        }
        let want = &want[..nwant];

        // 3. Assign indices: identical first, then same-kind overlapping, then any free.
        let n = usize::from(self.config.regions);
        let mut table = [Entry::Foreign; MAX_REGIONS];
        let mut taken = [false; MAX_REGIONS];
        let mut placed = [false; MAX_REGIONS];
        for (t, e) in taken.iter_mut().zip(&self.table).take(n) {
            *t = matches!(e, Entry::Foreign);
        }
        let passes: [fn(&Entry, &Entry) -> bool; 2] = [
            |old, new| old == new,
            |old, new| match (old, new) {
                (Entry::Secure(a), Entry::Secure(b)) => a.overlaps(b),
                (
                    Entry::Ns {
                        parent: p,
                        region: a,
                    },
                    Entry::Ns {
                        parent: q,
                        region: b,
                    },
                ) => p == q && a.overlaps(b),
                _ => false,
            },
        ];
        for same in passes {
            for (w, e) in want.iter().enumerate() {
                if placed[w] {
                    continue;
                }
                if let Some(i) = (0..n).find(|&i| !taken[i] && same(&self.table[i], e)) {
                    table[i] = *e;
                    taken[i] = true;
                    placed[w] = true;
                }
            }
        }
        for (w, e) in want.iter().enumerate() {
            if placed[w] {
                continue;
            }
            // Prefer indices free now, then indices being vacated.
            let i = (0..n)
                .find(|&i| !taken[i] && matches!(self.table[i], Entry::Free))
                .or_else(|| (0..n).find(|&i| !taken[i]));
            let Some(i) = i else {
                return Err(PlanError::BudgetExhausted {
                    needed: nwant as u8,
                    available: budget,
                });
            };
            table[i] = *e;
            taken[i] = true;
        }
        for i in 0..n {
            if !taken[i] {
                table[i] = Entry::Free;
            }
        }

        // 4. Validate: aligned, no two planner regions overlap, none overlaps firmware's fixed.
        let g = self.config.granule;
        for i in 0..n {
            let Some(a) = table[i].region() else { continue };
            let aligned =
                g.is_aligned(a.base) && a.top.checked_add(1).is_none_or(|t| g.is_aligned(t));
            let clash = (i + 1..n).any(|j| table[j].region().is_some_and(|b| a.overlaps(b)))
                || self.fixed.iter().flatten().any(|f| f.overlaps(a));
            if !aligned || clash {
                return Err(PlanError::BadFirmware {
                    index: RegionIndex(i as u8),
                });
            }
        }

        // 5. Ops: additions of secure coverage first, then the rest, clears last.
        let mut plan = self.empty_plan(extents, table);
        for rank in 0..3 {
            for (i, (old, new)) in self.table.iter().zip(&table).enumerate().take(n) {
                if old == new || matches!(new, Entry::Foreign) {
                    continue;
                }
                let r = match (old, new) {
                    (_, Entry::Free) => 2,
                    (Entry::Free, Entry::Secure(_)) => 0,
                    (Entry::Secure(a), Entry::Secure(b)) if b.base <= a.base && a.top <= b.top => 0,
                    _ => 1,
                };
                if r != rank {
                    continue;
                }
                plan.ops[plan.len] = match new.region() {
                    Some(region) => Op::Program(RegionIndex(i as u8), *region),
                    None => Op::Clear(RegionIndex(i as u8)),
                };
                plan.len += 1;
            }
        }
        Ok(plan)
    }
}
