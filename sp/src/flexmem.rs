//! Flex-Mem (DESIGN.md sec. 6): pages the normal world lent become secure memory on demand and
//! go back scrubbed.
//!
//! A region arrives through the ordinary retrieve path ([`crate::shmem`]), mapped NS=1. Then:
//!
//! | step (secure)                                    | undo                                 |
//! |--------------------------------------------------|--------------------------------------|
//! | 1. check: lent, writable, in the window, held    | -                                    |
//! | 2. clean+invalidate the caches by VA (NS alias)  | - (changes no data)                  |
//! | 3. firewall extent, one atomic update per range  | release the extents programmed      |
//! | 4. unmap NS (TLBI per page), map NS=0            | unmap NS=0, map NS=1 again           |
//! | 5. record the region as secured for its owner    | -                                    |
//!
//! | step (release)                                   | on failure                           |
//! |--------------------------------------------------|--------------------------------------|
//! | 1. encrypt-out hook (KV), then zero              | still secured (maybe zeroed: safe)   |
//! | 2. clean+invalidate by VA (NS=0 alias)           | -                                    |
//! | 3. unmap NS=0 (TLBI per page)                    | map NS=0 again: still secured        |
//! | 4. clear the firewall extents                    | re-secure, map NS=0: still secured   |
//! | 5. FFA_MEM_RELINQUISH                            | map NS=1: held, not secured (scrubbed)|
//!
//! Steps 2 and 4 of securing follow from the cache tags: lines filled through the NS alias are
//! NS-tagged and would be written back over the now-secure page, so they go first; after the
//! firewall flips, only an NS=0 mapping reaches the page (a secured page answers no NS access
//! from anyone, the SP included). On release the secure-tagged lines must reach memory (zeros)
//! and leave the caches before the firewall opens.
//!
//! How the SP reaches a secured page ([`SecureAlias`]): under an SPMC at S-EL2 (the testbed,
//! Hafnium) its stage-2 is the SPMC's, and only pages of the manifest's `flexmem-window`
//! memory region are in its secure IPA space; under the EL3 SPMC (RK3588, qemu-el3) there is no
//! stage-2 and the SP's own stage-1 maps any page NS=0.
//!
//! Hardware is behind two small traits: [`Extents`] (the firewall with its planner:
//! `firewall::Planned` over `tzasc`) and [`Cache`] (maintenance by VA); the stage-1 and the
//! FF-A calls are the memory service's [`MemPlatform`].

pub mod firewall;

use crate::shmem::{Access, MemPlatform, SharedMemory};
use alloc::{boxed::Box, vec::Vec};
use core::ops::Range;
use ffa::memory::TransactionType;
use flexserve_proto::{FlexFault, FlexStats, FlexSwitch, ProtoError, ScrubKind};

const PAGE: u64 = 4096;

/// Regions Flex-Mem holds secured at once (the firewall's budget is far smaller per extent,
/// but adjacent regions of one owner share an extent).
pub const MAX_SECURED: usize = 64;

/// Why the firewall side refused; nothing changed when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentError {
    /// No free region for the extent this change needs.
    BudgetExhausted,
    /// A range boundary is not on the firewall's granule.
    NotGranuleAligned,
    /// The range is not what this owner has secured (release), or already secured (secure).
    NotOwned,
    /// Not memory Flex-Mem may secure (outside firmware's NS memory, or a firmware region).
    Forbidden,
    /// The hardware did not take the programming.
    Hardware,
}

impl From<ExtentError> for FlexFault {
    fn from(e: ExtentError) -> Self {
        match e {
            ExtentError::BudgetExhausted => FlexFault::BudgetExhausted,
            ExtentError::NotGranuleAligned => FlexFault::NotGranuleAligned,
            ExtentError::Forbidden => FlexFault::NotInWindow,
            ExtentError::NotOwned | ExtentError::Hardware => FlexFault::Firewall,
        }
    }
}

/// The memory firewall with its extent planner: each call is one checked, atomic update
/// (TZC-400: behind the gate keeper), or nothing.
pub trait Extents {
    /// Bytes of the region granule (TZC-400 4 KiB, RK3588 1 MiB).
    fn granule(&self) -> u64;
    /// Makes `range` secure-only for `owner` (merged with its adjacent extents).
    fn secure(&mut self, owner: u32, range: Range<u64>) -> Result<(), ExtentError>;
    /// Opens `range` (secured by `owner`) to the normal world again.
    fn release(&mut self, owner: u32, range: Range<u64>) -> Result<(), ExtentError>;
    /// Extents `owner`'s secured pages take.
    fn owner_extents(&self, owner: u32) -> u32;
    /// Regions Flex-Mem uses (extents plus the split firmware regions around them).
    fn regions_used(&self) -> u32;
    /// Regions still free.
    fn regions_free(&self) -> u32;
    /// Atomic updates committed so far.
    fn reprograms(&self) -> u64;
}

/// Cache maintenance by virtual address (identity map: VA = PA).
pub trait Cache {
    /// DC CIVAC over every line of `range`, then DSB: the range's dirty lines are in memory and
    /// none of its lines is cached.
    fn clean_invalidate(&mut self, range: Range<u64>);
}

/// Where the SP's secure (NS=0) alias of a lent page comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecureAlias {
    /// An SPMC at S-EL2 maps this window (the manifest's `flexmem-window`) in the SP's secure
    /// IPA space: only pages inside it can be secured.
    Window(Range<u64>),
    /// No stage-2 (EL3 SPMC): the SP's stage-1 maps any page NS=0.
    Direct,
}

/// The serving engine's encrypt-out hook for KV regions: seals the secured bytes of
/// `ranges` (owner `owner`) to where the normal world can keep them, before they are zeroed.
pub type EncryptOut = Box<dyn FnMut(u32, &[Range<u64>]) -> Result<(), ()> + Send>;

/// The clock switches are timed with (CNTPCT_EL0 on the target).
#[derive(Clone, Copy)]
pub struct Clock {
    pub now: fn() -> u64,
    pub hz: fn() -> u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Secured {
    region: u32,
    owner: u32,
    scrub: ScrubKind,
    ranges: Vec<Range<u64>>,
}

/// The Flex-Mem manager. It works on regions of a [`SharedMemory`] passed to each call.
pub struct FlexMem {
    extents: Box<dyn Extents + Send>,
    cache: Box<dyn Cache + Send>,
    alias: SecureAlias,
    clock: Clock,
    encrypt_out: Option<EncryptOut>,
    secured: Vec<Secured>,
    stats: FlexStats,
}

impl core::fmt::Debug for FlexMem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlexMem")
            .field("alias", &self.alias)
            .field("secured", &self.secured)
            .field("stats", &self.stats)
            .finish()
    }
}

fn fault(f: FlexFault) -> ProtoError {
    ProtoError::FlexMem(f)
}

fn pages(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| (r.end - r.start) / PAGE).sum()
}

impl FlexMem {
    pub fn new(
        extents: Box<dyn Extents + Send>,
        cache: Box<dyn Cache + Send>,
        alias: SecureAlias,
        clock: Clock,
    ) -> Self {
        FlexMem {
            extents,
            cache,
            alias,
            clock,
            encrypt_out: None,
            secured: Vec::new(),
            stats: FlexStats::default(),
        }
    }

    /// Installs the serving engine's encrypt-out hook ([`ScrubKind::EncryptOut`] regions).
    pub fn set_encrypt_out(&mut self, hook: EncryptOut) {
        self.encrypt_out = Some(hook);
    }

    pub fn alias(&self) -> &SecureAlias {
        &self.alias
    }

    pub fn stats(&self) -> FlexStats {
        FlexStats {
            firewall_reprograms: self.extents.reprograms(),
            regions_used: self.extents.regions_used(),
            regions_free: self.extents.regions_free(),
            secured_pages: self.secured.iter().map(|s| pages(&s.ranges)).sum(),
            counter_hz: (self.clock.hz)(),
            ..self.stats
        }
    }

    /// Whether the manager holds region `id` secured.
    pub fn holds(&self, id: u32) -> bool {
        self.secured.iter().any(|s| s.region == id)
    }

    fn clean(&mut self, ranges: &[Range<u64>]) {
        for r in ranges {
            self.cache.clean_invalidate(r.clone());
            self.stats.bytes_cleaned += r.end - r.start;
        }
    }

    fn switched(&mut self, owner: u32, n: u64, t0: u64) -> FlexSwitch {
        let ticks = (self.clock.now)().wrapping_sub(t0);
        self.stats.last_switch_ticks = ticks;
        self.stats.last_switch_pages = n;
        FlexSwitch {
            pages: n as u32,
            owner_extents: self.extents.owner_extents(owner),
            regions_used: self.extents.regions_used(),
            ticks,
        }
    }

    /// Switches held region `id` (retrieved from a LEND, mapped NS=1) to secure memory for
    /// `owner`. All or nothing.
    pub fn secure<P: MemPlatform>(
        &mut self,
        mem: &mut SharedMemory<P>,
        id: u32,
        owner: u32,
        scrub: ScrubKind,
    ) -> Result<FlexSwitch, ProtoError> {
        let t0 = (self.clock.now)();
        let region = mem.region(id)?;
        if region.tx_type != TransactionType::Lend {
            return Err(fault(FlexFault::NotLent));
        }
        if mem.is_secured(id)? {
            return Err(fault(FlexFault::AlreadySecured));
        }
        if mem.is_pinned(id)? {
            return Err(fault(FlexFault::Pinned));
        }
        if !region.access.writable {
            return Err(fault(FlexFault::ReadOnly));
        }
        if scrub == ScrubKind::EncryptOut && self.encrypt_out.is_none() {
            return Err(fault(FlexFault::NoEncryptHook));
        }
        if self.secured.len() >= MAX_SECURED {
            return Err(fault(FlexFault::NoRoom));
        }
        let ranges = mem.ranges_of(id)?;
        if let SecureAlias::Window(w) = &self.alias
            && ranges.iter().any(|r| r.start < w.start || r.end > w.end)
        {
            return Err(fault(FlexFault::NotInWindow));
        }
        let g = self.extents.granule();
        if ranges
            .iter()
            .any(|r| !r.start.is_multiple_of(g) || !r.end.is_multiple_of(g))
        {
            return Err(fault(FlexFault::NotGranuleAligned));
        }

        // 2. NS-tagged lines out of the caches while the NS alias still maps the pages.
        self.clean(&ranges);
        // 3. The firewall, range by range; undone in reverse on a refusal.
        for (k, r) in ranges.iter().enumerate() {
            if let Err(e) = self.extents.secure(owner, r.clone()) {
                self.unsecure(owner, &ranges[..k]);
                return Err(fault(e.into()));
            }
        }
        // 4. Break-before-make to the secure alias.
        let secure = Access {
            ns: false,
            writable: true,
        };
        match mem.remap_region(id, secure) {
            Ok(tlbis) => self.stats.tlb_invalidations += tlbis,
            Err(e) => {
                self.unsecure(owner, &ranges);
                log::warn!("flexmem: remap of region {id} to NS=0: {e:?}");
                return Err(fault(FlexFault::MapFailed));
            }
        }
        // 5. Recorded: MemRelease now refuses it.
        mem.set_secured(id, true)?;
        let n = pages(&ranges);
        self.stats.pages_secured += n;
        self.secured.push(Secured {
            region: id,
            owner,
            scrub,
            ranges,
        });
        Ok(self.switched(owner, n, t0))
    }

    /// Releases `ranges`' extents after a failed secure (their pages were not yet mapped
    /// NS=0, so nothing secure is in them).
    fn unsecure(&mut self, owner: u32, ranges: &[Range<u64>]) {
        for r in ranges.iter().rev() {
            if let Err(e) = self.extents.release(owner, r.clone()) {
                log::error!(
                    "flexmem: undo of extent {:#x}..{:#x} failed: {e:?}",
                    r.start,
                    r.end
                );
            }
        }
    }

    /// Scrubs secured region `id`, switches it back to normal memory and relinquishes it.
    pub fn release<P: MemPlatform>(
        &mut self,
        mem: &mut SharedMemory<P>,
        id: u32,
    ) -> Result<FlexSwitch, ProtoError> {
        let t0 = (self.clock.now)();
        mem.region(id)?;
        let at = self
            .secured
            .iter()
            .position(|s| s.region == id)
            .ok_or(fault(FlexFault::NotSecured))?;
        if mem.is_pinned(id)? {
            return Err(fault(FlexFault::Pinned));
        }
        let Secured {
            owner,
            scrub,
            ref ranges,
            ..
        } = self.secured[at];
        let ranges = ranges.clone();
        // 1. Scrub through the secure alias.
        if scrub == ScrubKind::EncryptOut {
            let Some(hook) = self.encrypt_out.as_mut() else {
                return Err(fault(FlexFault::NoEncryptHook));
            };
            if hook(owner, &ranges).is_err() {
                return Err(ProtoError::Internal);
            }
        }
        for r in &ranges {
            mem.platform_mut().zero(r.start, r.end - r.start);
        }
        // 2. Zeros to memory, no secure-tagged line left.
        self.clean(&ranges);
        // 3. No SP mapping may reach the pages while the firewall opens.
        let tlbis = mem
            .unmap_region(id)
            .map_err(|_| fault(FlexFault::MapFailed))?;
        self.stats.tlb_invalidations += tlbis;
        let secure = Access {
            ns: false,
            writable: true,
        };
        // 4. Open the firewall; a refusal puts back what was opened and the NS=0 mapping.
        for (k, r) in ranges.iter().enumerate() {
            if let Err(e) = self.extents.release(owner, r.clone()) {
                for done in ranges[..k].iter().rev() {
                    if let Err(e) = self.extents.secure(owner, done.clone()) {
                        log::error!("flexmem: re-secure of {:#x} failed: {e:?}", done.start);
                    }
                }
                self.map_back(mem, id, secure);
                return Err(fault(e.into()));
            }
        }
        self.secured.swap_remove(at);
        mem.set_secured(id, false)?;
        let n = pages(&ranges);
        self.stats.pages_released += n;
        // 5. Back to the partition manager. Refused: held, scrubbed and non-secure, as a
        // refused MemRelease leaves a region.
        if let Err(e) = mem.relinquish_unmapped(id) {
            self.map_back(
                mem,
                id,
                Access {
                    ns: true,
                    writable: true,
                },
            );
            return Err(e.into());
        }
        Ok(self.switched(owner, n, t0))
    }

    fn map_back<P: MemPlatform>(&mut self, mem: &mut SharedMemory<P>, id: u32, access: Access) {
        if let Err(e) = mem.map_region(id, access) {
            log::error!("flexmem: cannot map region {id} back: {e:?}");
        }
    }

    /// The testbed probe: an 8-byte secure (NS=0) load from `addr` in the window. A page the SP
    /// holds secured is read through its mapping; a page it does not hold is mapped NS=0 for
    /// the load only.
    pub fn probe<P: MemPlatform>(
        &mut self,
        mem: &mut SharedMemory<P>,
        addr: u64,
    ) -> Result<u64, ProtoError> {
        let SecureAlias::Window(w) = &self.alias else {
            return Err(fault(FlexFault::NotInWindow));
        };
        if !addr.is_multiple_of(8) || addr < w.start || addr >= w.end {
            return Err(fault(FlexFault::NotInWindow));
        }
        let v = match mem.region_at(addr) {
            Some(r) if !r.access.ns => mem.platform().read_u64(addr),
            Some(_) => return Err(fault(FlexFault::Held)),
            None => {
                let page = addr & !(PAGE - 1);
                let ro = Access {
                    ns: false,
                    writable: false,
                };
                let p = mem.platform_mut();
                if p.map(page..page + PAGE, ro).is_err() {
                    return Err(fault(FlexFault::MapFailed));
                }
                let v = p.read_u64(addr);
                if p.unmap(page..page + PAGE).is_err() {
                    log::error!("flexmem: probe page {page:#x} stays mapped");
                }
                v
            }
        };
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
