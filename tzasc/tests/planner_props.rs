//! Property tests of the planner: random secure / release sequences, each plan applied to the
//! TZC-400 or RK3588 register models, the resulting permissions compared page by page with a
//! reference map, and the region count compared with the minimum.

use proptest::prelude::*;
use tzasc::planner::{Config, ExtentPlanner, FirmwareKind, FirmwareRegion, Op, Owner, PlanError};
use tzasc::rk3588::{self, Block, Rk3588Firewall, TFA_SECURE_DDR_SLOTS};
use tzasc::tzc400::{self, Tzc400};
use tzasc::{IdMask, MemoryFirewall, Region, RegionIndex};

const PAGES: u64 = 128;
const AP: u8 = 9;

#[derive(Clone, Debug)]
enum Step {
    Secure {
        owner: u32,
        page: u64,
        len: u64,
        misalign: bool,
    },
    Release {
        owner: u32,
        page: u64,
        len: u64,
    },
    ReleaseAll {
        owner: u32,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..3u32, 0..PAGES + 4, 1..12u64, proptest::bool::weighted(0.05))
            .prop_map(|(owner, page, len, misalign)| Step::Secure { owner, page, len, misalign }),
        3 => (0..3u32, 0..PAGES, 1..12u64).prop_map(|(owner, page, len)| Step::Release { owner, page, len }),
        1 => (0..3u32).prop_map(|owner| Step::ReleaseAll { owner }),
    ]
}

/// Regions the reference map needs at least: maximal secured runs, plus the NS pieces left of
/// each firmware NS region (`ns` = page ranges of those regions, in pages of the window).
fn needed(map: &[Option<u32>], ns: &[(u64, u64)]) -> usize {
    let mut n = 0;
    for i in 0..map.len() {
        if map[i].is_some() && (i == 0 || map[i - 1].is_none()) {
            n += 1;
        }
    }
    for &(lo, hi) in ns {
        for i in lo..hi {
            let i = i as usize;
            if map[i].is_none() && (i as u64 == lo || map[i - 1].is_some()) {
                n += 1;
            }
        }
    }
    n
}

/// Applies `step` to the planner and the reference; returns the plan if one was made. Checks
/// the error against the reference when refused, and that a refusal changed nothing.
fn run_step(
    p: &mut ExtentPlanner,
    map: &mut [Option<u32>],
    s: &Step,
    base: u64,
    granule: u64,
    in_ns: impl Fn(u64) -> bool,
    ns: &[(u64, u64)],
) -> Result<Option<tzasc::planner::Plan>, TestCaseError> {
    let before = p.clone();
    let addr = |page: u64| base + page * granule;
    let (result, expect) = match *s {
        Step::Secure {
            owner,
            page,
            len,
            misalign,
        } => {
            let a = addr(page) + if misalign { granule / 2 } else { 0 };
            let r = p.plan_secure(Owner(owner), a, len * granule);
            let pages = page..page + len;
            let e = if misalign {
                Some(PlanError::NotGranuleAligned { value: a })
            } else if let Some(q) = pages.clone().find(|&q| map[q as usize].is_some()) {
                Some(PlanError::AlreadySecured { addr: addr(q) })
            } else {
                pages
                    .clone()
                    .find(|&q| !in_ns(q))
                    .map(|q| PlanError::NotNsMemory { addr: addr(q) })
            };
            (r, e.map(Err).unwrap_or(Ok((owner, pages, true))))
        }
        Step::Release { owner, page, len } => {
            let r = p.plan_release(Owner(owner), addr(page), len * granule);
            let pages = page..page + len;
            let e = pages
                .clone()
                .find(|&q| map[q as usize] != Some(owner))
                .map(|q| PlanError::NotSecured { addr: addr(q) });
            (r, e.map(Err).unwrap_or(Ok((owner, pages, false))))
        }
        Step::ReleaseAll { owner } => {
            let r = p.plan_release_all(Owner(owner));
            (r, Ok((owner, 0..0, false)))
        }
    };
    match (result, expect) {
        (Err(e), Err(want)) => {
            prop_assert_eq!(e, want);
            prop_assert_eq!(&*p, &before);
            Ok(None)
        }
        (r, Ok((owner, pages, secure))) => {
            let mut next = map.to_vec();
            if let Step::ReleaseAll { owner } = *s {
                next.iter_mut()
                    .filter(|o| **o == Some(owner))
                    .for_each(|o| *o = None);
            }
            for q in pages {
                next[q as usize] = if secure { Some(owner) } else { None };
            }
            let need = needed(&next, ns);
            match r {
                Err(PlanError::BudgetExhausted {
                    needed: n,
                    available,
                }) => {
                    prop_assert!(need > usize::from(available), "refused though {need} fit");
                    prop_assert_eq!(usize::from(n), need);
                    prop_assert_eq!(&*p, &before);
                    Ok(None)
                }
                Err(e) => Err(TestCaseError::fail(format!("unexpected {e:?}"))),
                Ok(plan) => {
                    prop_assert!(need <= usize::from(p.budget()));
                    p.commit(&plan)
                        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                    prop_assert_eq!(usize::from(p.regions_used()), need, "not minimal");
                    map.copy_from_slice(&next);
                    Ok(Some(plan))
                }
            }
        }
        (r, Err(want)) => Err(TestCaseError::fail(format!("wanted {want:?}, got {r:?}"))),
    }
}

fn check_table(p: &ExtentPlanner) -> Result<(), TestCaseError> {
    let t = p.table();
    for i in 0..t.len() {
        for j in i + 1..t.len() {
            if let (Some(a), Some(b)) = (t[i].region(), t[j].region()) {
                prop_assert!(!a.overlaps(b), "regions {i} and {j} overlap");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// TZC-400: two adjacent firmware NS regions (APs only / APs + NSAID 1) form the window; a
    /// fixed secure region sits elsewhere.
    #[test]
    fn tzc400_sequences_enforce_exactly(steps in proptest::collection::vec(step(), 1..40)) {
        const PAGE: u64 = 0x1000;
        let base = 0x6000_0000u64;
        let half = base + (PAGES / 2) * PAGE;
        let fw = [
            FirmwareRegion { index: RegionIndex(5), region: Region::secure_rw(0x0e00_0000, 0x10_0000, 1).unwrap(), kind: FirmwareKind::Fixed },
            FirmwareRegion { index: RegionIndex(1), region: Region::ns_rw(base, half - base, IdMask(1 << AP), 1).unwrap(), kind: FirmwareKind::Ns },
            FirmwareRegion { index: RegionIndex(2), region: Region::ns_rw(half, half - base, IdMask(1 << AP | 1 << 1), 1).unwrap(), kind: FirmwareKind::Ns },
        ];
        let mut p = ExtentPlanner::new(Config::tzc400(1), &fw).unwrap();
        let mut t = Tzc400::new(tzc400::Model::new(tzc400::Config::TESTBED)).unwrap();
        for f in &fw {
            t.program(f.index, &f.region).unwrap();
        }
        t.set_gates(1).unwrap();
        let mut map = vec![None; PAGES as usize + 16];
        let ns = [(0, PAGES / 2), (PAGES / 2, PAGES)];
        for s in &steps {
            if let Some(plan) = run_step(&mut p, &mut map, s, base, PAGE, |q| q < PAGES, &ns)? {
                let g = t.registers().generation();
                plan.apply(&mut t).unwrap();
                // Behind the gate keeper the whole plan is one map change for the testbed.
                let changed = u64::from(!plan.is_empty());
                prop_assert_eq!(t.registers().generation(), g + changed);
            }
            check_table(&p)?;
            let m = t.registers();
            for q in 0..PAGES + 1 {
                let a = base + q * PAGE;
                let secured = map.get(q as usize).copied().flatten();
                let in_ns = q < PAGES;
                prop_assert_eq!(p.owner_of(a).map(|o| o.0), secured);
                let v = m.permission(&tzc400::Request { filter: 0, addr: a + 0x10, secure: false, nsaid: AP, write: q % 2 == 0, privileged: false, id: 0 });
                prop_assert!(!v.overlap);
                prop_assert_eq!(v.allowed, in_ns && secured.is_none(), "NS page {}", q);
                let v1 = m.permission(&tzc400::Request { filter: 0, addr: a, secure: false, nsaid: 1, write: false, privileged: false, id: 0 });
                prop_assert_eq!(v1.allowed, q >= PAGES / 2 && in_ns && secured.is_none());
                let vs = m.permission(&tzc400::Request { filter: 0, addr: a, secure: true, nsaid: 0, write: true, privileged: false, id: 0 });
                prop_assert_eq!(vs.allowed, secured.is_some(), "secure page {}", q);
            }
            prop_assert!(m.check(0x0e00_0000, true, 0, true).allowed, "firmware region kept");
            prop_assert_eq!(m.int_status().overlap, 0);
        }
    }

    /// RK3588: applied op by op; no intermediate state lets an NS master or the CPUs' NS path
    /// into a page secured both before and after the plan.
    #[test]
    fn rk3588_sequences_never_expose(steps in proptest::collection::vec(step(), 1..30)) {
        const MIB: u64 = 1 << 20;
        let base = 0x4000_0000u64;
        let fw = [FirmwareRegion { index: RegionIndex(0), region: Region::secure_rw(0, MIB, 0).unwrap(), kind: FirmwareKind::Fixed }];
        let mut p = ExtentPlanner::new(Config::rk3588(), &fw).unwrap();
        let mut f = Rk3588Firewall::new(rk3588::Model::new(Block::Ddr), rk3588::Model::new(Block::Dsu), TFA_SECURE_DDR_SLOTS);
        f.program(RegionIndex(0), &fw[0].region).unwrap();
        let mut map = vec![None; PAGES as usize + 16];
        let blocked = |f: &mut Rk3588Firewall<rk3588::Model, rk3588::Model>, q: u64| {
            let a = base + q * MIB;
            let dma = f.ddr().registers().check(a, 0).is_err();
            let cpu_ns = f.dsu().registers().check(a, 0).is_err();
            let cpu_s = f.dsu().registers().check(a, 1).is_ok() && f.ddr().registers().check(a, 72).is_ok();
            (dma, cpu_ns, cpu_s)
        };
        for s in &steps {
            let old = map.clone();
            // Background open: every page of the window is NS memory (beyond it too).
            let Some(plan) = run_step(&mut p, &mut map, s, base, MIB, |_| true, &[])? else { continue };
            check_table(&p)?;
            for op in plan.ops() {
                match op {
                    Op::Program(i, r) => f.program(*i, r).unwrap(),
                    Op::Clear(i) => f.clear(*i).unwrap(),
                }
                for q in 0..PAGES {
                    if old[q as usize].is_some() && map[q as usize].is_some() {
                        let (dma, cpu_ns, _) = blocked(&mut f, q);
                        prop_assert!(dma && cpu_ns, "page {} exposed mid-plan", q);
                    }
                }
            }
            for q in 0..PAGES + 4 {
                let secured = map.get(q as usize).is_some_and(|o| o.is_some());
                let (dma, cpu_ns, cpu_s) = blocked(&mut f, q);
                prop_assert_eq!((dma, cpu_ns), (secured, secured), "page {}", q);
                prop_assert!(cpu_s, "secure CPU keeps access");
            }
        }
    }
}
