//! Host tests of the Flex-Mem manager against one model of the machine ([`World`]): memory, the
//! SP's stage-1, a firewall with a region budget, the caches and the partition manager. The
//! model enforces what hardware would: an access (or cache maintenance) through an NS=1
//! mapping of a secured page, or through an NS=0 mapping of a page no extent secures, is
//! blocked (loads see poison, stores are dropped) and recorded. Every step can be made to fail.

use super::*;
use crate::shmem::{MapFail, MemError};
use alloc::vec;
use ffa::{FfaError, Handle, PartitionId, RetrieveError, memory::MemTransaction};
use flexserve_proto::Checksum;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const SP: PartitionId = 0x8001;
const NW: PartitionId = 0;
const BASE: u64 = 0x5000_0000;
const WINDOW_PAGES: u64 = 256;
const POISON: u8 = 0xde;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Map,
    Unmap,
    Secure,
    Release,
    Relinquish,
    Clean,
}

#[derive(Default)]
struct World {
    mem: Vec<u8>,
    mapped: BTreeMap<u64, Access>,
    /// Firewall: secured page -> owner.
    secured: BTreeMap<u64, u32>,
    budget: u32,
    granule: u64,
    reprograms: u64,
    offers: BTreeMap<u64, MemTransaction>,
    held: Vec<u64>,
    /// Blocked accesses (page, what).
    blocked: Vec<(u64, &'static str)>,
    /// Steps in order, for ordering checks.
    log: Vec<(Step, u64)>,
    cleaned: Vec<Range<u64>>,
    calls: BTreeMap<Step, u32>,
    /// Fail the n-th (0-based) call of a step.
    fail: Option<(Step, u32)>,
}

impl World {
    fn step(&mut self, s: Step, addr: u64) -> bool {
        let n = self.calls.entry(s).or_insert(0);
        let fail = self.fail == Some((s, *n));
        *n += 1;
        if !fail {
            self.log.push((s, addr));
        }
        !fail
    }

    /// Whether an access to `page` through its mapping gets through the firewall.
    fn passes(&mut self, page: u64, what: &'static str) -> bool {
        let a = *self
            .mapped
            .get(&page)
            .unwrap_or_else(|| panic!("{what} of unmapped {page:#x}"));
        let secured = self.secured.contains_key(&page);
        if a.ns == secured {
            self.blocked.push((page, what));
            return false;
        }
        true
    }

    fn extents_of(&self, owner: u32) -> u32 {
        let mut runs = 0;
        let mut last = None;
        for (&p, &o) in &self.secured {
            if o == owner {
                if last != Some(p - PAGE) {
                    runs += 1;
                }
                last = Some(p);
            }
        }
        runs
    }

    fn extents(&self) -> u32 {
        let owners: std::collections::BTreeSet<u32> = self.secured.values().copied().collect();
        owners.iter().map(|&o| self.extents_of(o)).sum()
    }
}

type Shared = Arc<Mutex<World>>;

struct Platform(Shared);

impl MemPlatform for Platform {
    fn retrieve(&mut self, req: &MemTransaction) -> Result<MemTransaction, RetrieveError> {
        let mut w = self.0.lock().unwrap();
        let t = w.offers.get(&req.handle.0).cloned().ok_or(RetrieveError {
            error: ffa::Error::Ffa(FfaError::InvalidParameters),
            retrieved: false,
        })?;
        w.held.push(req.handle.0);
        Ok(t)
    }

    fn relinquish(&mut self, handle: Handle) -> Result<(), ffa::Error> {
        let mut w = self.0.lock().unwrap();
        if !w.step(Step::Relinquish, handle.0) {
            return Err(ffa::Error::Ffa(FfaError::Denied));
        }
        // FF-A: relinquish while the SP still maps the pages is the SP's bug.
        let t = &w.offers[&handle.0];
        for r in &t.ranges {
            for p in (r.address..r.address + r.len()).step_by(PAGE as usize) {
                assert!(!w.mapped.contains_key(&p), "relinquish of mapped {p:#x}");
                assert!(!w.secured.contains_key(&p), "relinquish of secured {p:#x}");
            }
        }
        w.held.retain(|h| *h != handle.0);
        Ok(())
    }

    fn map(&mut self, range: Range<u64>, access: Access) -> Result<(), MapFail> {
        let mut w = self.0.lock().unwrap();
        if !w.step(Step::Map, range.start) {
            return Err(MapFail::Refused);
        }
        for p in (range.start..range.end).step_by(PAGE as usize) {
            // Break-before-make: a live entry is never changed in place.
            assert!(w.mapped.insert(p, access).is_none(), "{p:#x} mapped twice");
        }
        Ok(())
    }

    fn unmap(&mut self, range: Range<u64>) -> Result<(), MapFail> {
        let mut w = self.0.lock().unwrap();
        if !w.step(Step::Unmap, range.start) {
            return Err(MapFail::Refused);
        }
        for p in (range.start..range.end).step_by(PAGE as usize) {
            assert!(w.mapped.remove(&p).is_some(), "{p:#x} not mapped");
        }
        Ok(())
    }

    fn mapped_pages(&self) -> u64 {
        self.0.lock().unwrap().mapped.len() as u64
    }

    fn read(&self, pa: u64, out: &mut [u8]) {
        let mut w = self.0.lock().unwrap();
        for (i, o) in out.iter_mut().enumerate() {
            let a = pa + i as u64;
            *o = if w.passes(a & !(PAGE - 1), "read") {
                w.mem[(a - BASE) as usize]
            } else {
                POISON
            };
        }
    }

    fn write(&mut self, pa: u64, data: &[u8]) {
        let mut w = self.0.lock().unwrap();
        for (i, &b) in data.iter().enumerate() {
            let a = pa + i as u64;
            assert!(w.mapped[&(a & !(PAGE - 1))].writable);
            if w.passes(a & !(PAGE - 1), "write") {
                w.mem[(a - BASE) as usize] = b;
            }
        }
    }

    unsafe fn view(&self, _: u64, _: usize) -> Option<&'static [u8]> {
        None
    }
}

struct Firewall(Shared);

impl Extents for Firewall {
    fn granule(&self) -> u64 {
        self.0.lock().unwrap().granule
    }

    fn secure(&mut self, owner: u32, range: Range<u64>) -> Result<(), ExtentError> {
        let mut w = self.0.lock().unwrap();
        if !w.step(Step::Secure, range.start) {
            return Err(ExtentError::Hardware);
        }
        let before = w.secured.clone();
        for p in (range.start..range.end).step_by(PAGE as usize) {
            if w.secured.insert(p, owner).is_some() {
                w.secured = before;
                return Err(ExtentError::NotOwned);
            }
        }
        if w.extents() > w.budget {
            w.secured = before;
            return Err(ExtentError::BudgetExhausted);
        }
        w.reprograms += 1;
        Ok(())
    }

    fn release(&mut self, owner: u32, range: Range<u64>) -> Result<(), ExtentError> {
        let mut w = self.0.lock().unwrap();
        if !w.step(Step::Release, range.start) {
            return Err(ExtentError::Hardware);
        }
        for p in (range.start..range.end).step_by(PAGE as usize) {
            if w.secured.get(&p) != Some(&owner) {
                return Err(ExtentError::NotOwned);
            }
        }
        for p in (range.start..range.end).step_by(PAGE as usize) {
            w.secured.remove(&p);
        }
        w.reprograms += 1;
        Ok(())
    }

    fn owner_extents(&self, owner: u32) -> u32 {
        self.0.lock().unwrap().extents_of(owner)
    }

    fn regions_used(&self) -> u32 {
        self.0.lock().unwrap().extents()
    }

    fn regions_free(&self) -> u32 {
        let w = self.0.lock().unwrap();
        w.budget - w.extents()
    }

    fn reprograms(&self) -> u64 {
        self.0.lock().unwrap().reprograms
    }
}

struct Caches(Shared);

impl Cache for Caches {
    fn clean_invalidate(&mut self, range: Range<u64>) {
        let mut w = self.0.lock().unwrap();
        // DC CIVAC by VA is an access through the mapping: it must pass the firewall.
        for p in (range.start..range.end).step_by(PAGE as usize) {
            assert!(w.passes(p, "clean"), "cache maintenance of {p:#x} blocked");
        }
        w.log.push((Step::Clean, range.start));
        w.cleaned.push(range);
    }
}

static TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn clock() -> Clock {
    Clock {
        now: || TICKS.fetch_add(10, std::sync::atomic::Ordering::Relaxed),
        hz: || 1000,
    }
}

fn offer(handle: u64, ty: TransactionType, ranges: &[(u64, u32)]) -> MemTransaction {
    crate::shmem::tests::offer_at(BASE, handle, ty, ranges)
}

type Snapshot = (
    BTreeMap<u64, Access>,
    BTreeMap<u64, u32>,
    Vec<u64>,
    Vec<(u32, flexserve_proto::RegionInfo, bool)>,
    Vec<Secured>,
    (u64, u64, u32),
);

struct Rig {
    w: Shared,
    mem: SharedMemory<Platform>,
    flex: FlexMem,
}

fn rig(budget: u32) -> Rig {
    let w = Arc::new(Mutex::new(World {
        mem: (0..WINDOW_PAGES * PAGE)
            .map(|i| (i * 13 % 251) as u8)
            .collect(),
        budget,
        granule: PAGE,
        ..Default::default()
    }));
    let mem = SharedMemory::new(Platform(w.clone()), SP, vec![]);
    let flex = FlexMem::new(
        Box::new(Firewall(w.clone())),
        Box::new(Caches(w.clone())),
        SecureAlias::Window(BASE..BASE + WINDOW_PAGES * PAGE),
        clock(),
    );
    Rig { w, mem, flex }
}

impl Rig {
    /// Lends `ranges` (window pages) as `handle` and retrieves them; the region id.
    fn lend(&mut self, handle: u64, ranges: &[(u64, u32)]) -> u32 {
        self.offer(handle, TransactionType::Lend, ranges)
    }

    fn offer(&mut self, handle: u64, ty: TransactionType, ranges: &[(u64, u32)]) -> u32 {
        let o = offer(handle, ty, ranges);
        self.w.lock().unwrap().offers.insert(handle, o);
        self.mem.retrieve(NW, handle, ty).unwrap().region
    }

    fn fail(&mut self, step: Step, nth: u32) {
        let mut w = self.w.lock().unwrap();
        w.calls.clear();
        w.fail = Some((step, nth));
    }

    fn no_fail(&mut self) {
        let mut w = self.w.lock().unwrap();
        w.fail = None;
        w.calls.clear();
    }

    /// Everything "half-switched" could differ in.
    fn snapshot(&self) -> Snapshot {
        let s = self.flex.stats();
        let w = self.w.lock().unwrap();
        let regions: Vec<_> = (1..32)
            .filter_map(|id| self.mem.region(id).ok())
            .map(|r| (r.id, r.info(), self.mem.is_secured(r.id).unwrap()))
            .collect();
        (
            w.mapped.clone(),
            w.secured.clone(),
            w.held.clone(),
            regions,
            self.flex.secured.clone(),
            (s.pages_secured, s.pages_released, s.regions_used),
        )
    }

    fn page_bytes(&self, page: u64) -> Vec<u8> {
        let w = self.w.lock().unwrap();
        let o = (page * PAGE) as usize;
        w.mem[o..o + PAGE as usize].to_vec()
    }

    fn blocked(&self) -> Vec<(u64, &'static str)> {
        self.w.lock().unwrap().blocked.clone()
    }
}

fn is_ns(r: &Rig, page: u64) -> Option<bool> {
    r.w.lock()
        .unwrap()
        .mapped
        .get(&(BASE + page * PAGE))
        .map(|a| a.ns)
}

#[test]
fn secure_compute_release_round_trip() {
    let mut r = rig(4);
    let id = r.lend(1, &[(8, 4)]);
    let before: Vec<u8> = (8..12).flat_map(|p| r.page_bytes(p)).collect();
    let sw = r.flex.secure(&mut r.mem, id, 7, ScrubKind::Zero).unwrap();
    assert_eq!((sw.pages, sw.owner_extents, sw.regions_used), (4, 1, 1));
    assert!(sw.ticks > 0);
    assert_eq!(is_ns(&r, 8), Some(false));
    assert_eq!(r.w.lock().unwrap().secured.len(), 4);
    // The SP computes over the secured pages through its NS=0 alias.
    assert_eq!(r.mem.checksum(id, 0, 4 * 4096), Ok(Checksum::of(&before)));
    assert!(r.mem.region(id).unwrap().info().flags & flexserve_proto::region_flags::NS == 0);
    // Only FlexRelease gives it back.
    assert_eq!(r.mem.release(id), Err(MemError::Secured(id)));
    assert_eq!(
        r.flex.secure(&mut r.mem, id, 7, ScrubKind::Zero),
        Err(ProtoError::FlexMem(FlexFault::AlreadySecured))
    );
    let back = r.flex.release(&mut r.mem, id).unwrap();
    assert_eq!(
        (back.pages, back.owner_extents, back.regions_used),
        (4, 0, 0)
    );
    for p in 8..12 {
        assert!(
            r.page_bytes(p).iter().all(|&b| b == 0),
            "page {p} not zeroed"
        );
    }
    let w = r.w.lock().unwrap();
    assert!(w.mapped.is_empty() && w.secured.is_empty() && w.held.is_empty());
    assert!(w.blocked.is_empty(), "{:x?}", w.blocked);
    // The neighbours were not touched.
    assert_eq!(w.mem[(7 * PAGE) as usize], ((7 * PAGE) * 13 % 251) as u8);
    drop(w);
    let s = r.flex.stats();
    assert_eq!(
        (s.pages_secured, s.pages_released, s.secured_pages),
        (4, 4, 0)
    );
    assert_eq!(s.bytes_cleaned, 2 * 4 * PAGE);
    assert_eq!(s.tlb_invalidations, 4 + 4);
    assert_eq!(s.firewall_reprograms, 2);
    assert_eq!((s.last_switch_pages, s.counter_hz), (4, 1000));
    assert_eq!(r.mem.region(id), Err(MemError::NoSuchRegion(id)));
}

#[test]
fn steps_run_in_order() {
    let mut r = rig(4);
    let id = r.lend(1, &[(0, 1)]);
    r.w.lock().unwrap().log.clear();
    r.flex.secure(&mut r.mem, id, 1, ScrubKind::Zero).unwrap();
    let page = BASE;
    let clean = (Step::Clean, page);
    assert_eq!(
        r.w.lock().unwrap().log,
        [
            clean,
            (Step::Secure, page),
            (Step::Unmap, page),
            (Step::Map, page)
        ]
    );
    r.w.lock().unwrap().log.clear();
    r.flex.release(&mut r.mem, id).unwrap();
    assert_eq!(
        r.w.lock().unwrap().log,
        [
            clean,
            (Step::Unmap, page),
            (Step::Release, page),
            (Step::Relinquish, 1)
        ]
    );
}

#[test]
fn extents_merge_and_grow_at_the_top() {
    let mut r = rig(8);
    // A model's layers arrive one region at a time, each right above the last.
    let mut ids = Vec::new();
    for layer in 0..6u64 {
        let id = r.lend(10 + layer, &[(16 + 4 * layer, 4)]);
        let sw = r.flex.secure(&mut r.mem, id, 3, ScrubKind::Zero).unwrap();
        assert_eq!((sw.owner_extents, sw.regions_used), (1, 1), "layer {layer}");
        ids.push(id);
    }
    // Another owner right above: its own extent.
    let other = r.lend(30, &[(40, 2)]);
    let sw = r
        .flex
        .secure(&mut r.mem, other, 4, ScrubKind::Zero)
        .unwrap();
    assert_eq!((sw.owner_extents, sw.regions_used), (1, 2));
    // Releasing a middle layer splits the extent.
    let sw = r.flex.release(&mut r.mem, ids[2]).unwrap();
    assert_eq!((sw.owner_extents, sw.regions_used), (2, 3));
    assert_eq!(r.flex.stats().secured_pages, 5 * 4 + 2);
}

#[test]
fn budget_exhausted_is_a_defined_error_and_changes_nothing() {
    let mut r = rig(2);
    let a = r.lend(1, &[(0, 1)]);
    let b = r.lend(2, &[(4, 1)]);
    let c = r.lend(3, &[(8, 2)]);
    r.flex.secure(&mut r.mem, a, 1, ScrubKind::Zero).unwrap();
    r.flex.secure(&mut r.mem, b, 2, ScrubKind::Zero).unwrap();
    let snap = r.snapshot();
    assert_eq!(
        r.flex.secure(&mut r.mem, c, 3, ScrubKind::Zero),
        Err(ProtoError::FlexMem(FlexFault::BudgetExhausted))
    );
    assert_eq!(r.snapshot(), snap);
    // The refused region is still held and usable non-secure; a page adjacent to an owner's
    // extent still fits the budget.
    assert_eq!(is_ns(&r, 8), Some(true));
    let d = r.lend(4, &[(1, 1)]);
    assert_eq!(
        r.flex
            .secure(&mut r.mem, d, 1, ScrubKind::Zero)
            .map(|s| s.regions_used),
        Ok(2)
    );
    assert!(r.blocked().is_empty());
}

#[test]
fn a_failure_at_any_secure_step_leaves_nothing_half_switched() {
    // Two ranges, so that the second extent and the second map can fail too.
    for (step, nth) in [
        (Step::Secure, 0),
        (Step::Secure, 1),
        (Step::Unmap, 0),
        (Step::Unmap, 1),
        (Step::Map, 0),
        (Step::Map, 1),
    ] {
        let mut r = rig(4);
        let id = r.lend(1, &[(0, 2), (8, 1)]);
        let snap = r.snapshot();
        r.fail(step, nth);
        let e = r.flex.secure(&mut r.mem, id, 1, ScrubKind::Zero);
        assert!(e.is_err(), "{step:?} {nth}");
        r.no_fail();
        assert_eq!(r.snapshot(), snap, "{step:?} {nth}");
        assert!(r.blocked().is_empty(), "{step:?} {nth}: {:x?}", r.blocked());
        // And it can be secured and released afterwards.
        r.flex.secure(&mut r.mem, id, 1, ScrubKind::Zero).unwrap();
        r.flex.release(&mut r.mem, id).unwrap();
        assert!(r.w.lock().unwrap().held.is_empty());
    }
}

#[test]
fn a_failure_at_any_release_step_leaves_a_whole_state() {
    for (step, nth) in [
        (Step::Unmap, 0),
        (Step::Unmap, 1),
        (Step::Release, 0),
        (Step::Release, 1),
        (Step::Relinquish, 0),
    ] {
        let mut r = rig(4);
        let id = r.lend(1, &[(0, 2), (8, 1)]);
        r.flex.secure(&mut r.mem, id, 1, ScrubKind::Zero).unwrap();
        r.fail(step, nth);
        assert!(r.flex.release(&mut r.mem, id).is_err(), "{step:?} {nth}");
        r.no_fail();
        let secured = r.mem.is_secured(id).unwrap();
        let w = r.w.lock().unwrap();
        // Either wholly secured (firewall + NS=0 mapping) or, only when the relinquish was
        // refused, wholly non-secure and mapped NS=1; scrubbed in both cases.
        let want_ns = step == Step::Relinquish;
        assert_eq!(secured, !want_ns, "{step:?} {nth}");
        assert_eq!(
            w.secured.len(),
            if want_ns { 0 } else { 3 },
            "{step:?} {nth}"
        );
        assert_eq!(w.mapped.len(), 3, "{step:?} {nth}");
        assert!(w.mapped.values().all(|a| a.ns == want_ns), "{step:?} {nth}");
        assert!(w.mem[..(2 * PAGE) as usize].iter().all(|&b| b == 0));
        assert!(w.blocked.is_empty(), "{step:?} {nth}: {:x?}", w.blocked);
        drop(w);
        assert_eq!(r.flex.holds(id), !want_ns);
        // The retry completes.
        if want_ns {
            r.mem.release(id).unwrap();
        } else {
            r.flex.release(&mut r.mem, id).unwrap();
        }
        let w = r.w.lock().unwrap();
        assert!(w.held.is_empty() && w.mapped.is_empty() && w.secured.is_empty());
    }
}

#[test]
fn refusals() {
    let mut r = rig(4);
    let shared = r.offer(1, TransactionType::Share, &[(0, 1)]);
    let fx = |f| Err(ProtoError::FlexMem(f));
    assert_eq!(
        r.flex.secure(&mut r.mem, shared, 1, ScrubKind::Zero),
        fx(FlexFault::NotLent)
    );
    let lent = r.lend(2, &[(4, 1)]);
    assert_eq!(
        r.flex.secure(&mut r.mem, lent, 1, ScrubKind::EncryptOut),
        fx(FlexFault::NoEncryptHook)
    );
    assert_eq!(r.flex.release(&mut r.mem, lent), fx(FlexFault::NotSecured));
    assert_eq!(
        r.flex.secure(&mut r.mem, 99, 1, ScrubKind::Zero),
        Err(ProtoError::NoSuchRegion(99))
    );
    // Outside the window.
    r.w.lock()
        .unwrap()
        .mem
        .resize((2 * WINDOW_PAGES * PAGE) as usize, 0);
    let outside = r.lend(3, &[(WINDOW_PAGES + 1, 1)]);
    assert_eq!(
        r.flex.secure(&mut r.mem, outside, 1, ScrubKind::Zero),
        fx(FlexFault::NotInWindow)
    );
    // A coarser granule (RK3588's 1 MiB): a 4 KiB region is not rounded, it is refused.
    r.w.lock().unwrap().granule = 0x10_0000;
    assert_eq!(
        r.flex.secure(&mut r.mem, lent, 1, ScrubKind::Zero),
        fx(FlexFault::NotGranuleAligned)
    );
    assert!(r.w.lock().unwrap().secured.is_empty());
}

#[test]
fn encrypt_out_sees_the_secret_before_it_is_zeroed() {
    let mut r = rig(4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (w, s) = (r.w.clone(), seen.clone());
    r.flex.set_encrypt_out(Box::new(move |owner, ranges| {
        let w = w.lock().unwrap();
        let o = (ranges[0].start - BASE) as usize;
        s.lock().unwrap().push((owner, w.mem[o..o + 4].to_vec()));
        Ok(())
    }));
    let id = r.lend(1, &[(2, 1)]);
    let secret = r.page_bytes(2)[..4].to_vec();
    r.flex
        .secure(&mut r.mem, id, 5, ScrubKind::EncryptOut)
        .unwrap();
    r.flex.release(&mut r.mem, id).unwrap();
    assert_eq!(*seen.lock().unwrap(), [(5, secret)]);
    assert!(r.page_bytes(2).iter().all(|&b| b == 0));

    // A hook that fails: nothing is released.
    r.flex.set_encrypt_out(Box::new(|_, _| Err(())));
    let id = r.lend(2, &[(3, 1)]);
    r.flex
        .secure(&mut r.mem, id, 5, ScrubKind::EncryptOut)
        .unwrap();
    assert_eq!(r.flex.release(&mut r.mem, id), Err(ProtoError::Internal));
    assert!(r.flex.holds(id));
    assert!(r.page_bytes(3).iter().any(|&b| b != 0));
}

#[test]
fn probe_shows_the_firewall_blocks_an_unsecured_secure_access() {
    let mut r = rig(4);
    let addr = BASE + 20 * PAGE + 8;
    // Not secured: the secure load is blocked (poison) and recorded; the mapping is gone after.
    assert_eq!(
        r.flex.probe(&mut r.mem, addr),
        Ok(u64::from_le_bytes([POISON; 8]))
    );
    assert_eq!(r.blocked(), [(BASE + 20 * PAGE, "read"); 8]);
    assert!(r.w.lock().unwrap().mapped.is_empty());
    // Secured: the load sees the data.
    let id = r.lend(1, &[(20, 1)]);
    let fx = |f| Err(ProtoError::FlexMem(f));
    assert_eq!(r.flex.probe(&mut r.mem, addr), fx(FlexFault::Held));
    r.flex.secure(&mut r.mem, id, 1, ScrubKind::Zero).unwrap();
    let want: [u8; 8] = r.page_bytes(20)[8..16].try_into().unwrap();
    assert_eq!(r.flex.probe(&mut r.mem, addr), Ok(u64::from_le_bytes(want)));
    // Outside the window, unaligned, or with no window at all: refused.
    assert_eq!(
        r.flex.probe(&mut r.mem, BASE + WINDOW_PAGES * PAGE),
        fx(FlexFault::NotInWindow)
    );
    assert_eq!(
        r.flex.probe(&mut r.mem, addr + 1),
        fx(FlexFault::NotInWindow)
    );
    r.flex.alias = SecureAlias::Direct;
    assert_eq!(r.flex.probe(&mut r.mem, addr), fx(FlexFault::NotInWindow));
}

#[test]
fn direct_alias_secures_any_page() {
    let mut r = rig(4);
    r.flex.alias = SecureAlias::Direct;
    r.w.lock()
        .unwrap()
        .mem
        .resize((2 * WINDOW_PAGES * PAGE) as usize, 0);
    let id = r.lend(1, &[(WINDOW_PAGES + 3, 1)]);
    r.flex.secure(&mut r.mem, id, 1, ScrubKind::Zero).unwrap();
    r.flex.release(&mut r.mem, id).unwrap();
}

#[test]
fn hundred_cycles_leak_nothing() {
    let mut r = rig(2);
    for i in 0..100u64 {
        let id = r.lend(100 + i, &[(32, 16)]);
        r.flex.secure(&mut r.mem, id, 9, ScrubKind::Zero).unwrap();
        r.flex.release(&mut r.mem, id).unwrap();
    }
    let w = r.w.lock().unwrap();
    assert!(w.mapped.is_empty() && w.secured.is_empty() && w.held.is_empty());
    drop(w);
    let s = r.flex.stats();
    assert_eq!(
        (s.pages_secured, s.pages_released, s.regions_used),
        (1600, 1600, 0)
    );
    assert_eq!(r.mem.stats().live_regions, 0);
    assert!(r.flex.secured.is_empty());
}
