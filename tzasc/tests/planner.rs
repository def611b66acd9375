//! The extent planner: unit cases, the 64-layer growth count, and plans applied to the TZC-400
//! and RK3588 models with the resulting permissions checked page by page.

use tzasc::planner::{
    ApplyError, Background, Config, Entry, ExtentPlanner, FirmwareKind, FirmwareRegion, Op, Owner,
    PlanError,
};
use tzasc::tzc400::{self, Tzc400};
use tzasc::{Access, IdMask, MemoryFirewall, Region, RegionIndex};

const PAGE: u64 = 0x1000;
const MIB: u64 = 1 << 20;
const AP: u8 = 9;
const NS_BASE: u64 = 0x4000_0000;
const NS_SIZE: u64 = 0x4000_0000;

/// The testbed's boot programming (as TF-A does on FVP): region 0 reserved, region 1 = secure RAM
/// (fixed), region 2 = NS DRAM for the APs (splittable), region 3 = a static carve-out (fixed).
fn testbed_firmware() -> [FirmwareRegion; 3] {
    [
        FirmwareRegion {
            index: RegionIndex(1),
            region: Region::secure_rw(0x0e00_0000, 0x0100_0000, 1).unwrap(),
            kind: FirmwareKind::Fixed,
        },
        FirmwareRegion {
            index: RegionIndex(2),
            region: Region::ns_rw(NS_BASE, NS_SIZE - 0x0100_0000, IdMask(1 << AP), 1).unwrap(),
            kind: FirmwareKind::Ns,
        },
        FirmwareRegion {
            index: RegionIndex(3),
            region: Region::secure_rw(NS_BASE + NS_SIZE - 0x0100_0000, 0x0100_0000, 1).unwrap(),
            kind: FirmwareKind::Fixed,
        },
    ]
}

fn tzc_planner() -> ExtentPlanner {
    ExtentPlanner::new(Config::tzc400(1), &testbed_firmware()).unwrap()
}

/// A TZC-400 model programmed like the firmware list, gates open.
fn tzc_with_firmware(fw: &[FirmwareRegion]) -> Tzc400<tzc400::Model> {
    let mut t = Tzc400::new(tzc400::Model::new(tzc400::Config::TESTBED)).unwrap();
    t.set_action(tzc400::Action::Error);
    for f in fw {
        t.program(f.index, &f.region).unwrap();
    }
    t.set_gates(1).unwrap();
    t
}

#[test]
fn secure_splits_ns_and_growth_at_top_rewrites_two_regions() {
    let mut p = tzc_planner();
    assert_eq!(p.budget(), 6, "9 regions - region 0 - two fixed");
    let base = NS_BASE + 0x100_0000;
    let plan = p.secure(Owner(1), base, 16 * PAGE).unwrap();
    // The NS region keeps its index as the lower piece, the secure run and the upper NS piece
    // take free indices.
    assert_eq!(plan.ops().len(), 3);
    assert_eq!((p.secure_regions(), p.regions_used()), (1, 3));
    // Growing at the top: the secure region grows, the upper NS piece shrinks; nothing else.
    let plan = p.secure(Owner(1), base + 16 * PAGE, 4 * PAGE).unwrap();
    assert_eq!(plan.ops().len(), 2);
    let secure = plan.ops().iter().find_map(|op| match op {
        Op::Program(_, r) if r.secure == Access::RW => Some(*r),
        _ => None,
    });
    assert_eq!(
        secure.map(|r| (r.base, r.top)),
        Some((base, base + 20 * PAGE - 1))
    );
    assert_eq!(
        p.extents_of(Owner(1)).collect::<Vec<_>>(),
        [(base, base + 20 * PAGE - 1)]
    );
    assert_eq!((p.secure_regions(), p.regions_used()), (1, 3));
    // Another owner right above shares the run (same attributes): still one secure region.
    p.secure(Owner(2), base + 20 * PAGE, PAGE).unwrap();
    assert_eq!(p.secure_regions(), 1);
    assert_eq!(p.owner_of(base + 20 * PAGE), Some(Owner(2)));
    // Releasing the first owner's middle splits the run.
    p.release(Owner(1), base + 4 * PAGE, 4 * PAGE).unwrap();
    assert_eq!((p.secure_regions(), p.regions_used()), (2, 5));
    p.plan_release_all(Owner(1))
        .map(|plan| p.commit(&plan).unwrap())
        .unwrap();
    p.release(Owner(2), base + 20 * PAGE, PAGE).unwrap();
    assert_eq!(
        (p.secure_regions(), p.regions_used()),
        (0, 1),
        "back to the one NS region"
    );
    assert_eq!(p.table(), tzc_planner().table(), "same table as at boot");
}

#[test]
fn extent_at_ns_edges_needs_one_piece() {
    let mut p = tzc_planner();
    p.secure(Owner(1), NS_BASE, PAGE).unwrap();
    assert_eq!(p.regions_used(), 2);
    let top = NS_BASE + NS_SIZE - 0x0100_0000;
    p.secure(Owner(1), top - PAGE, PAGE).unwrap();
    assert_eq!(p.regions_used(), 3);
}

#[test]
fn refusals_change_nothing() {
    let mut p = tzc_planner();
    p.secure(Owner(1), NS_BASE + MIB, 4 * PAGE).unwrap();
    let before = p.clone();
    let carve = NS_BASE + NS_SIZE - 0x0100_0000;
    let cases = [
        (
            p.plan_secure(Owner(2), NS_BASE + 0x800, PAGE),
            PlanError::NotGranuleAligned {
                value: NS_BASE + 0x800,
            },
        ),
        (
            p.plan_secure(Owner(2), NS_BASE, 0x1800),
            PlanError::NotGranuleAligned { value: 0x1800 },
        ),
        (p.plan_secure(Owner(2), NS_BASE, 0), PlanError::EmptyRange),
        (
            p.plan_secure(Owner(2), u64::MAX - 0xfff, 2 * PAGE),
            PlanError::EmptyRange,
        ),
        (
            p.plan_secure(Owner(2), NS_BASE + MIB + PAGE, PAGE),
            PlanError::AlreadySecured {
                addr: NS_BASE + MIB + PAGE,
            },
        ),
        (
            p.plan_secure(Owner(1), NS_BASE + MIB - PAGE, 2 * PAGE),
            PlanError::AlreadySecured {
                addr: NS_BASE + MIB,
            },
        ),
        (
            p.plan_secure(Owner(2), 0x0e00_0000, PAGE),
            PlanError::FirmwareRegion {
                index: RegionIndex(1),
            },
        ),
        (
            p.plan_secure(Owner(2), carve - PAGE, 2 * PAGE),
            PlanError::FirmwareRegion {
                index: RegionIndex(3),
            },
        ),
        (
            p.plan_secure(Owner(2), 0x1000_0000, PAGE),
            PlanError::NotNsMemory { addr: 0x1000_0000 },
        ),
        (
            p.plan_secure(Owner(2), NS_BASE - PAGE, 2 * PAGE),
            PlanError::NotNsMemory {
                addr: NS_BASE - PAGE,
            },
        ),
        (
            p.plan_release(Owner(2), NS_BASE + MIB, PAGE),
            PlanError::NotSecured {
                addr: NS_BASE + MIB,
            },
        ),
        (
            p.plan_release(Owner(1), NS_BASE + MIB, 5 * PAGE),
            PlanError::NotSecured {
                addr: NS_BASE + MIB + 4 * PAGE,
            },
        ),
        (
            p.plan_release(Owner(1), NS_BASE, PAGE),
            PlanError::NotSecured { addr: NS_BASE },
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.err(), Some(want));
    }
    assert_eq!(p, before);
    // A plan computed before another commit is stale.
    let stale = p.plan_secure(Owner(3), NS_BASE + 2 * MIB, PAGE).unwrap();
    p.secure(Owner(3), NS_BASE + 3 * MIB, PAGE).unwrap();
    let after = p.clone();
    assert_eq!(p.commit(&stale), Err(PlanError::Stale));
    assert_eq!(p, after);
}

#[test]
fn budget_exhausted_is_defined_and_atomic() {
    let mut p = tzc_planner();
    // Isolated extents inside the NS region cost 2 regions each (secure + one more NS piece):
    // with the testbed's firmware (6 indices left) two fit.
    p.secure(Owner(0), NS_BASE + MIB, PAGE).unwrap();
    p.secure(Owner(1), NS_BASE + 3 * MIB, PAGE).unwrap();
    assert_eq!(p.regions_used(), 5);
    let before = p.clone();
    assert_eq!(
        p.secure(Owner(9), NS_BASE + 20 * MIB, PAGE).err(),
        Some(PlanError::BudgetExhausted {
            needed: 7,
            available: 6
        })
    );
    assert_eq!(p, before);
    // Touching an existing extent still fits: it joins that run.
    p.secure(Owner(9), NS_BASE + MIB + PAGE, PAGE).unwrap();
    p.secure(Owner(1), NS_BASE + 3 * MIB + PAGE, 2 * PAGE)
        .unwrap();
    assert_eq!((p.secure_regions(), p.regions_used()), (2, 5));
    // Releasing the lower end of a run shrinks it: no new region.
    p.release(Owner(0), NS_BASE + MIB, PAGE).unwrap();
    assert_eq!(p.regions_used(), 5);
    // Releasing a run's middle would split it (+2 regions): refused, nothing changed.
    let before = p.clone();
    assert_eq!(
        p.release(Owner(1), NS_BASE + 3 * MIB + PAGE, PAGE).err(),
        Some(PlanError::BudgetExhausted {
            needed: 7,
            available: 6
        })
    );
    assert_eq!(p, before);
    // Releasing everything of an owner always fits.
    p.plan_release_all(Owner(1))
        .map(|plan| p.commit(&plan).unwrap())
        .unwrap();
    assert_eq!(p.regions_used(), 3);
}

#[test]
fn bad_firmware_is_refused() {
    let fw = testbed_firmware();
    let overlap = FirmwareRegion {
        index: RegionIndex(4),
        region: fw[1].region,
        kind: FirmwareKind::Fixed,
    };
    let cases = [
        vec![FirmwareRegion {
            index: RegionIndex(0),
            ..fw[0]
        }],
        vec![FirmwareRegion {
            index: RegionIndex(9),
            ..fw[0]
        }],
        vec![
            fw[0],
            FirmwareRegion {
                index: RegionIndex(1),
                ..fw[2]
            },
        ],
        vec![fw[1], overlap],
        vec![FirmwareRegion {
            region: Region {
                base: 0x800,
                ..fw[0].region
            },
            ..fw[0]
        }],
    ];
    for c in cases {
        assert!(
            matches!(
                ExtentPlanner::new(Config::tzc400(1), &c),
                Err(PlanError::BadFirmware { .. })
            ),
            "{c:?}"
        );
    }
    // An open background has no NS regions to split.
    assert!(
        ExtentPlanner::new(
            Config::rk3588(),
            &[FirmwareRegion {
                kind: FirmwareKind::Ns,
                ..fw[1]
            }]
        )
        .is_err()
    );
}

#[test]
fn plans_applied_to_the_tzc400_model_enforce_exactly() {
    let fw = testbed_firmware();
    let mut p = tzc_planner();
    let mut t = tzc_with_firmware(&fw);
    let base = NS_BASE + 8 * MIB;
    for (owner, off, pages) in [(1, 0, 8), (1, 8, 8), (2, 20, 4), (1, 16, 4)] {
        let plan = p
            .plan_secure(Owner(owner), base + off * PAGE, pages * PAGE)
            .unwrap();
        plan.apply(&mut t).unwrap();
        p.commit(&plan).unwrap();
    }
    let plan = p.plan_release(Owner(1), base + 4 * PAGE, 2 * PAGE).unwrap();
    plan.apply(&mut t).unwrap();
    p.commit(&plan).unwrap();
    let m = t.registers();
    for pg in 0..64 {
        let a = base + pg * PAGE;
        let secured = (0..24).contains(&pg) && !(4..6).contains(&pg);
        let ns = m.check(a, false, AP, true);
        assert_eq!(ns.allowed, !secured, "NS write page {pg}");
        assert!(!ns.overlap);
        assert_eq!(
            m.check(a + 8, true, 0, false).allowed,
            secured,
            "secure read page {pg}"
        );
    }
    assert_eq!(m.int_status().overlap, 0);
    // The firmware's regions are untouched and the hardware matches the planner's table.
    for (i, e) in p.table().iter().enumerate() {
        let hw = t.read(RegionIndex(i as u8)).unwrap();
        match e {
            Entry::Free => assert_eq!(hw, None),
            Entry::Foreign if i == 0 => {}
            Entry::Foreign => assert_eq!(
                hw,
                Some(fw.iter().find(|f| f.index.0 == i as u8).unwrap().region)
            ),
            Entry::Ns { region, .. } | Entry::Secure(region) => {
                assert_eq!(hw.as_ref(), Some(region))
            }
        }
    }
}

/// A firewall whose programs fail after `fail_after` successes, `failures` times in a row (a
/// stuck or refusing device).
struct Flaky {
    inner: Tzc400<tzc400::Model>,
    fail_after: usize,
    failures: usize,
}

impl Flaky {
    fn new(inner: Tzc400<tzc400::Model>) -> Flaky {
        Flaky {
            inner,
            fail_after: usize::MAX,
            failures: usize::MAX,
        }
    }
}

impl MemoryFirewall for Flaky {
    fn granule(&self) -> tzasc::Granule {
        self.inner.granule()
    }
    fn regions(&self) -> u8 {
        self.inner.regions()
    }
    fn is_background(&self, i: RegionIndex) -> bool {
        self.inner.is_background(i)
    }
    fn program(&mut self, i: RegionIndex, r: &Region) -> Result<(), tzasc::Error> {
        if self.fail_after == 0 && self.failures > 0 {
            self.failures -= 1;
            return Err(tzasc::Error::GateTimeout { filters: 1 });
        }
        self.fail_after = self.fail_after.saturating_sub(1);
        self.inner.program(i, r)
    }
    fn clear(&mut self, i: RegionIndex) -> Result<(), tzasc::Error> {
        self.inner.clear(i)
    }
    fn read(&mut self, i: RegionIndex) -> Result<Option<Region>, tzasc::Error> {
        self.inner.read(i)
    }
    fn begin_update(&mut self) -> Result<(), tzasc::Error> {
        self.inner.begin_update()
    }
    fn commit_update(&mut self) -> Result<(), tzasc::Error> {
        self.inner.commit_update()
    }
    fn take_fault(&mut self) -> Option<tzasc::Fault> {
        self.inner.take_fault()
    }
    fn clear_fault(&mut self) {
        self.inner.clear_fault()
    }
}

/// A failed apply (a refused write) leaves the planner unchanged; `restore` reprograms the
/// hardware to the committed state.
#[test]
fn failed_apply_then_restore() {
    let fw = testbed_firmware();
    let p = tzc_planner();
    let mut f = Flaky::new(tzc_with_firmware(&fw));
    f.fail_after = 1;
    let plan = p.plan_secure(Owner(1), NS_BASE + MIB, PAGE).unwrap();
    assert!(plan.apply(&mut f).is_err());
    assert_eq!(f.inner.open_gates(), 1, "gates reopened after the failure");
    f.fail_after = usize::MAX;
    p.restore().apply(&mut f).unwrap();
    let m = f.inner.registers();
    assert!(
        m.check(NS_BASE + MIB, false, AP, false).allowed,
        "back to the committed state"
    );
    assert!(m.check(NS_BASE + 2 * MIB, false, AP, false).allowed);
}

/// `secure_on` / `release_on`: all or nothing against a firewall that fails mid-plan.
#[test]
fn secure_on_is_all_or_nothing() {
    let fw = testbed_firmware();
    let mut p = tzc_planner();
    let mut f = Flaky::new(tzc_with_firmware(&fw));
    let a = NS_BASE + MIB;
    let plan = p.secure_on(&mut f, Owner(1), a, 4 * PAGE).unwrap();
    assert_eq!(plan.ops().len(), 3);
    assert!(!f.inner.registers().check(a, false, AP, false).allowed);
    // Growing fails after one of its two writes: state and hardware stay as before.
    let before = p.clone();
    f.fail_after = 1;
    let e = p
        .secure_on(&mut f, Owner(1), a + 4 * PAGE, PAGE)
        .unwrap_err();
    assert_eq!(
        e,
        ApplyError::Firewall {
            error: tzasc::Error::GateTimeout { filters: 1 },
            restored: false
        }
    );
    assert_eq!(p, before);
    f.fail_after = usize::MAX;
    p.restore().apply(&mut f).unwrap();
    let m = f.inner.registers();
    assert!(!m.check(a + 3 * PAGE, false, AP, false).allowed);
    assert!(
        m.check(a + 4 * PAGE, false, AP, false).allowed,
        "the failed growth is not in force"
    );
    // A single refused write: the restore succeeds and the error says so.
    let before = p.clone();
    (f.fail_after, f.failures) = (1, 1);
    let e = p.release_on(&mut f, Owner(1), a, PAGE).unwrap_err();
    assert_eq!(
        e,
        ApplyError::Firewall {
            error: tzasc::Error::GateTimeout { filters: 1 },
            restored: true
        }
    );
    assert_eq!(p, before);
    assert!(
        !f.inner.registers().check(a, false, AP, false).allowed,
        "still secured"
    );
    // Plan errors pass through unchanged.
    f.fail_after = usize::MAX;
    assert_eq!(
        p.release_on(&mut f, Owner(2), a, PAGE).unwrap_err(),
        ApplyError::Plan(PlanError::NotSecured { addr: a })
    );
    p.release_all_on(&mut f, Owner(1)).unwrap();
    assert_eq!(p.regions_used(), 1);
    assert!(f.inner.registers().check(a, false, AP, false).allowed);
}

/// Flex-Mem's worst realistic case: a 64-layer model whose layers arrive one by one, each
/// secured as it is loaded, in pages the normal world lent contiguously.
#[test]
fn grow_64_layer_model_layer_by_layer() {
    // TZC-400 (testbed / FVP), 4 KiB granule; layer sizes vary (int8 llama-like: 1.5-2 MiB + tail).
    let mut p = tzc_planner();
    let mut t = tzc_with_firmware(&testbed_firmware());
    let window = NS_BASE + 0x0200_0000;
    let mut at = window;
    let mut max_used = 0;
    let mut ops = 0;
    for layer in 0..64u64 {
        let size = 0x18_0000 + (layer % 5) * 0x3000;
        let plan = p.plan_secure(Owner(7), at, size).unwrap();
        ops += plan.ops().len();
        plan.apply(&mut t).unwrap();
        p.commit(&plan).unwrap();
        at += size;
        max_used = max_used.max(p.regions_used());
    }
    let secure = p.secure_regions();
    println!(
        "TZC-400: 64 layers ({} MiB) in {} secure region(s); {} region(s) incl. NS pieces at most; {} region writes",
        (at - window) >> 20,
        secure,
        max_used,
        ops
    );
    assert_eq!(secure, 1);
    assert_eq!(max_used, 3);
    assert_eq!(
        ops,
        3 + 63 * 2,
        "first layer splits NS, then each layer moves two boundaries"
    );
    let m = t.registers();
    assert!(!m.check(window, false, AP, false).allowed);
    assert!(!m.check(at - 1, false, AP, false).allowed);
    assert!(m.check(at, false, AP, false).allowed);
    assert!(m.check(window - 1, false, AP, false).allowed);

    // RK3588, 1 MiB granule: whole-MiB layers (Flex-Mem rounds a layer's lend up to whole MiB the
    // normal world lends in full; the planner never rounds).
    let mut p = ExtentPlanner::new(
        Config::rk3588(),
        &[FirmwareRegion {
            index: RegionIndex(0),
            region: Region::secure_rw(0, MIB, 0).unwrap(),
            kind: FirmwareKind::Fixed,
        }],
    )
    .unwrap();
    let mut at = 0x4000_0000u64;
    for _ in 0..64 {
        p.secure(Owner(7), at, 2 * MIB).unwrap();
        at += 2 * MIB;
    }
    println!(
        "RK3588: 64 layers (128 MiB) in {} secure region(s)",
        p.secure_regions()
    );
    assert_eq!((p.secure_regions(), p.regions_used()), (1, 1));
}

#[test]
fn rk3588_config_and_ordering() {
    let mut p = ExtentPlanner::new(Config::rk3588(), &[]).unwrap();
    assert_eq!(p.config().background, Background::Open);
    assert_eq!(p.budget(), 16);
    assert_eq!(
        p.plan_secure(Owner(1), MIB / 2, MIB).err(),
        Some(PlanError::NotGranuleAligned { value: MIB / 2 })
    );
    assert_eq!(
        p.plan_secure(Owner(1), MIB, 3 * PAGE).err(),
        Some(PlanError::NotGranuleAligned { value: 3 * PAGE })
    );
    p.secure(Owner(1), 10 * MIB, 4 * MIB).unwrap();
    // Releasing the middle: the new upper region is programmed before the old one shrinks.
    let plan = p.release(Owner(1), 11 * MIB, MIB).unwrap();
    let ops = plan.ops();
    assert_eq!(ops.len(), 2);
    assert!(matches!(ops[0], Op::Program(_, r) if r.base == 12 * MIB));
    assert!(matches!(ops[1], Op::Program(_, r) if r.base == 10 * MIB && r.top == 11 * MIB - 1));
}

/// Sizes that matter for a bare-metal caller's stack (printed for the notes; bounded here).
#[test]
fn sizes_stay_small() {
    use core::mem::size_of;
    let (p, plan, tzc, rk) = (
        size_of::<ExtentPlanner>(),
        size_of::<tzasc::planner::Plan>(),
        size_of::<tzc400::Model>(),
        size_of::<tzasc::rk3588::Model>(),
    );
    println!("ExtentPlanner {p} B, Plan {plan} B, tzc400::Model {tzc} B, rk3588::Model {rk} B");
    assert!(p <= 8192 && plan <= 8192 && tzc <= 2048 && rk <= 512);
}

/// wt-tbfw's boot programming (NOTES-tbfw.md): region 1 secure RAM, region 2 NS DRAM
/// 0x4000_0000-0x5fff_ffff, region 3 carve-out 0x6000_0000-0x63ff_ffff, region 4 NS DRAM
/// 0x6400_0000-0x7fff_ffff; the Flex-Mem window 0x5000_0000-0x57ff_ffff lies in region 2.
#[test]
fn testbed_boot_programming_read_back() {
    let ns = IdMask(1 << 0 | 1 << 1 | 1 << 8 | 1 << AP | 1 << 15);
    let fw = [
        FirmwareRegion {
            index: RegionIndex(1),
            region: Region::secure_rw(0x0e00_0000, 0x100_0000, 1).unwrap(),
            kind: FirmwareKind::Fixed,
        },
        FirmwareRegion {
            index: RegionIndex(2),
            region: Region::ns_rw(0x4000_0000, 0x2000_0000, ns, 1).unwrap(),
            kind: FirmwareKind::Ns,
        },
        FirmwareRegion {
            index: RegionIndex(3),
            region: Region::secure_rw(0x6000_0000, 0x400_0000, 1).unwrap(),
            kind: FirmwareKind::Fixed,
        },
        FirmwareRegion {
            index: RegionIndex(4),
            region: Region::ns_rw(0x6400_0000, 0x1c00_0000, ns, 1).unwrap(),
            kind: FirmwareKind::Ns,
        },
    ];
    let mut t = tzc_with_firmware(&fw);
    let mut p = ExtentPlanner::from_firewall(Config::tzc400(1), &mut t).unwrap();
    assert_eq!(
        p,
        ExtentPlanner::new(Config::tzc400(1), &fw).unwrap(),
        "read back = declared"
    );
    assert_eq!(p.budget(), 6);
    let window = 0x5000_0000;
    for (k, used) in [(0u64, 4u8), (1, 6)] {
        let plan = p.plan_secure(Owner(1), window + k * 16 * MIB, MIB).unwrap();
        plan.apply(&mut t).unwrap();
        p.commit(&plan).unwrap();
        assert_eq!(p.regions_used(), used);
    }
    assert_eq!(
        p.plan_secure(Owner(1), window + 32 * MIB, MIB).err(),
        Some(PlanError::BudgetExhausted {
            needed: 8,
            available: 6
        })
    );
    let m = t.registers();
    assert!(!m.check(window, false, AP, false).allowed);
    assert!(m.check(window + MIB, false, AP, false).allowed);
    assert!(
        m.check(0x6400_0000, false, AP, false).allowed,
        "region 4 untouched"
    );
    assert!(
        m.check(0x6000_0000, true, 0, false).allowed,
        "carve-out untouched"
    );
}
