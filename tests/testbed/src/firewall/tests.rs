extern crate std;

use std::format;
use std::vec;
use std::vec::Vec;

use ffa::memory::MemRange;
use testbed_layout::{control, ns_ram, virt};

use super::enforce::{NW_FIREWALL, SP_HIDDEN, Spaces};
use super::*;
use crate::memshare::Revoked;
use crate::mmio::{self, Device};
use crate::nwfault::{Outcome, Syndrome};
use crate::stage2::{Attrs, Entry, Stage2, Table};

use tzasc::RegisterAccess;
use tzasc::tzc400::{ATTR_S_RD_EN, ATTR_S_WR_EN, Model, Request, offset};

const W: u64 = ns_ram::FLEXMEM_WINDOW_BASE;
const MIB: u64 = 0x10_0000;
const PAGES_64M: u32 = 16384;

fn fw(lend: bool) -> Firewall {
    let mut f = Firewall::new(lend);
    assert!(f.add_gated(Gated {
        base: W,
        end: W + ns_ram::FLEXMEM_WINDOW_SIZE,
        read: true,
        write: true,
        exec: false,
    }));
    assert!(f.add_gated(Gated {
        base: ns_ram::CARVEOUT_BASE,
        end: ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE,
        read: true,
        write: true,
        exec: false,
    }));
    f
}

/// The NW stage-2 as EL3 builds it (devices, NS DRAM minus the reserved region).
fn nw_s2(pool: &mut [Table]) -> Stage2<'_> {
    let mut s2 = Stage2::new(pool, 0x1000_0000).unwrap();
    s2.map_identity(
        virt::NS_RAM_BASE,
        ns_ram::TESTBED_NS_BASE - virt::NS_RAM_BASE,
        Attrs::RWX,
    )
    .unwrap();
    s2
}

fn rw() -> Attrs {
    Attrs {
        read: true,
        write: true,
        exec: false,
        device: false,
    }
}

fn region(m: &mut Model, n: usize, base: u64, top: u64, attr: u32, ids: u32) {
    m.write(offset::region_base_low(n), base as u32);
    m.write(offset::region_base_high(n), (base >> 32) as u32);
    m.write(offset::region_top_low(n), top as u32);
    m.write(offset::region_top_high(n), (top >> 32) as u32);
    m.write(offset::region_attributes(n), attr);
    m.write(offset::region_id_access(n), ids);
}

/// An access by master `nsaid`, not latched.
fn permits(m: &Model, addr: u64, secure: bool, nsaid: u8, write: bool) -> tzasc::tzc400::Verdict {
    m.permission(&Request {
        filter: 0,
        addr,
        secure,
        nsaid,
        write,
        privileged: false,
        id: u32::from(nsaid),
    })
}

/// Denials latched in the model: INT_STATUS.status of filter 0 and FAIL_ADDRESS.
fn latched(m: &mut Model) -> Option<u64> {
    (m.int_status().status & 1 != 0).then(|| {
        u64::from(m.read(offset::fail_address_low(0)))
            | u64::from(m.read(offset::fail_address_high(0))) << 32
    })
}

fn clear(m: &mut Model) {
    m.write(offset::INT_CLEAR, 1);
}

/// TF-A's NS DRAM NSAIDs, read and write.
const NS_IDS: u32 = {
    let ids = testbed_layout::firewall::NS_DRAM_NSAIDS;
    let mut v = 0;
    let mut i = 0;
    while i < ids.len() {
        v |= 1 << ids[i] | 1 << (16 + ids[i]);
        i += 1;
    }
    v
};
const SEC: u32 = ATTR_S_RD_EN | ATTR_S_WR_EN | 1;

/// Secures `[base, base + size)` inside NS region 2 as a planner would: gate closed, region 2
/// shrunk below it, region 6 the NS rest above, region 5 the secure extent, gate open.
fn secure(f: &mut Firewall, base: u64, size: u64) {
    let m = &mut f.model;
    m.write(offset::GATE_KEEPER, 0);
    region(m, 2, virt::NS_RAM_BASE, base - 1, 1, NS_IDS);
    region(m, 6, base + size, ns_ram::CARVEOUT_BASE - 1, 1, NS_IDS);
    region(m, 5, base, base + size - 1, SEC, 0);
    m.write(offset::GATE_KEEPER, 1);
}

fn release(f: &mut Firewall) {
    let m = &mut f.model;
    m.write(offset::GATE_KEEPER, 0);
    region(m, 5, 0, 0, 0, 0);
    region(m, 6, 0, 0, 0, 0);
    region(
        m,
        2,
        virt::NS_RAM_BASE,
        ns_ram::CARVEOUT_BASE - 1,
        1,
        NS_IDS,
    );
    m.write(offset::GATE_KEEPER, 1);
}

#[test]
fn boot_regions_as_tf_a_programs_them() {
    let mut f = fw(true);
    let p = f.perm(W);
    assert_eq!(
        (p.ns_r, p.ns_w, p.s_r, p.s_w),
        (true, true, false, false),
        "window: NS"
    );
    let p = f.perm(ns_ram::CARVEOUT_BASE + 0x5000);
    assert_eq!(
        (p.ns_r, p.ns_w, p.s_r, p.s_w),
        (false, false, true, true),
        "carve-out"
    );
    let p = f.perm(ns_ram::TESTBED_NS_BASE);
    assert!(p.ns_r && p.ns_w && !p.s_r);
    let p = f.perm(virt::SECURE_RAM_BASE);
    assert!(p.s_r && p.s_w && !p.ns_r);
    // Other NSAIDs of TF-A's list get NS DRAM too; an unknown one does not.
    assert!(permits(&f.model, W, false, 8, true).allowed);
    assert!(!permits(&f.model, W, false, 3, false).allowed);
    // Region 0: no access, background.
    let v = permits(&f.model, 0x3000_0000_0000, false, 9, false);
    assert_eq!((v.allowed, v.region), (false, Some(0)));
    assert_eq!(
        f.model.read(offset::ACTION),
        testbed_layout::firewall::ACTION_ERR
    );
}

#[test]
fn nw_stage2_loses_the_carveout_at_boot_and_keeps_its_blocks() {
    let mut f = fw(true);
    let mut pool = vec![Table::EMPTY; 64];
    let mut nw = nw_s2(&mut pool);
    let stale = f
        .apply_all(&mut Spaces {
            nw: Some(&mut nw),
            sp_ns: None,
            sp_sec: None,
        })
        .unwrap();
    assert!(stale.nw);
    assert_eq!(nw.entry(ns_ram::CARVEOUT_BASE), Entry::Revoked(NW_FIREWALL));
    assert_eq!(
        nw.entry(ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE - 0x1000),
        Entry::Revoked(NW_FIREWALL)
    );
    assert!(nw.lookup(ns_ram::CARVEOUT_BASE - 0x1000).is_some());
    assert!(
        nw.lookup(ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE)
            .is_some()
    );
    assert!(nw.lookup(W).is_some());
    // Only the carve-out's 32 blocks were split: root, one L2, 32 L3.
    assert_eq!(nw.tables_used(), 2 + 32);
    assert_eq!(f.stats.pages_changed, u64::from(PAGES_64M));
}

/// Three spaces as the SPMC has them: the NW's, the SP's NS one with `pages` of the window
/// retrieved RW, the SP's secure one (gated pages only).
struct World {
    nw: Vec<Table>,
    ns: Vec<Table>,
    sec: Vec<Table>,
}

impl World {
    fn new() -> Self {
        World {
            nw: vec![Table::EMPTY; 300],
            ns: vec![Table::EMPTY; 80],
            sec: vec![Table::EMPTY; 120],
        }
    }
}

#[test]
fn securing_64_mib_moves_every_page_between_the_spaces_in_linear_time() {
    let mut f = fw(false);
    let mut w = World::new();
    let mut nw = nw_s2(&mut w.nw);
    let mut ns = Stage2::new(&mut w.ns, 0x2000_0000).unwrap();
    let mut sec = Stage2::new(&mut w.sec, 0x3000_0000).unwrap();
    {
        let mut s = Spaces {
            nw: Some(&mut nw),
            sp_ns: Some(&mut ns),
            sp_sec: Some(&mut sec),
        };
        f.apply_all(&mut s).unwrap();
    }
    let lent = MemRange {
        address: W,
        page_count: PAGES_64M,
    };
    // lend-enforcement=off: the LEND leaves the NW stage-2 alone.
    f.nw_revoke(
        &mut nw,
        &lent,
        Revoked {
            donated: false,
            to: 0x8001,
        },
    )
    .unwrap();
    assert!(nw.lookup(W).is_some());
    f.sp_map(&mut ns, &lent, rw()).unwrap();
    assert_eq!(ns.lookup(W + 0x1000), Some((W + 0x1000, rw())));
    assert_eq!(sec.lookup(W), None, "not secured: no secure alias");

    let before = f.stats;
    secure(&mut f, W, 64 * MIB);
    let ch = f.take_changes();
    // Region 2 shrank, 6 and 5 appeared: the changed span is the window part of region 2.
    assert_eq!(ch.ranges(), &[(W, ns_ram::CARVEOUT_BASE)]);
    let stale = f
        .apply(
            &ch,
            &mut Spaces {
                nw: Some(&mut nw),
                sp_ns: Some(&mut ns),
                sp_sec: Some(&mut sec),
            },
        )
        .unwrap();
    assert!(stale.nw && stale.sp);
    let changed = f.stats.pages_changed - before.pages_changed;
    assert_eq!(
        changed,
        3 * u64::from(PAGES_64M),
        "NW, SP NS, SP secure: each page once"
    );
    let visited = f.stats.pages_visited - before.pages_visited;
    assert!(
        visited <= 4 * u64::from(PAGES_64M),
        "visited {visited}: linear, blocks skipped"
    );
    for a in [W, W + 0x123_4000, W + 64 * MIB - 0x1000] {
        assert_eq!(nw.entry(a), Entry::Revoked(NW_FIREWALL));
        assert_eq!(ns.entry(a), Entry::Revoked(SP_HIDDEN | 0b011));
        assert_eq!(sec.lookup(a), Some((a, rw())));
    }
    // The neighbours keep what they had.
    let above = W + 64 * MIB;
    assert!(nw.lookup(above).is_some());
    assert_eq!(sec.lookup(above), None);
    assert!(nw.lookup(W - 0x1000).is_some());
    // A second look changes nothing.
    assert!(f.take_changes().is_empty());

    release(&mut f);
    let ch = f.take_changes();
    f.apply(
        &ch,
        &mut Spaces {
            nw: Some(&mut nw),
            sp_ns: Some(&mut ns),
            sp_sec: Some(&mut sec),
        },
    )
    .unwrap();
    for a in [W, W + 64 * MIB - 0x1000] {
        assert!(nw.lookup(a).is_some());
        assert_eq!(ns.lookup(a), Some((a, rw())), "retrieved permissions back");
        assert_eq!(sec.lookup(a), None);
    }
    enforce::sp_unmap(&mut ns, &lent);
    assert_eq!(ns.entry(W), Entry::Empty);
}

#[test]
fn nothing_changes_while_the_gate_is_closed() {
    let mut f = fw(true);
    let m = &mut f.model;
    m.write(offset::GATE_KEEPER, 0);
    region(m, 5, W, W + 0xfff, SEC, 0);
    assert!(f.take_changes().is_empty(), "gate closed");
    f.model.write(offset::GATE_KEEPER, 1);
    let ch = f.take_changes();
    assert_eq!(ch.ranges(), &[(W, W + 0x1000)]);
    // Written while open: effective at once.
    region(&mut f.model, 7, W + 0x10_0000, W + 0x10_0fff, SEC, 0);
    assert_eq!(f.take_changes().ranges(), &[(W + 0x10_0000, W + 0x10_1000)]);
    // Region 0 changes everything behind the filter.
    f.model.write(offset::region_attributes(0), ATTR_S_RD_EN);
    assert_eq!(f.take_changes().ranges(), &[DRAM]);
}

#[test]
fn overlapping_regions_deny_and_say_so() {
    let mut f = fw(true);
    // Region 5 secure over a page of NS region 2 without splitting it: two matches.
    region(&mut f.model, 5, W, W + 0xfff, SEC, 0);
    let v = permits(&f.model, W, false, 9, false);
    assert!(!v.allowed && v.overlap);
    let v = permits(&f.model, W, true, 9, false);
    assert!(!v.allowed && v.overlap);
    let mut pool = vec![Table::EMPTY; 64];
    let mut nw = nw_s2(&mut pool);
    let ch = f.take_changes();
    f.apply(
        &ch,
        &mut Spaces {
            nw: Some(&mut nw),
            sp_ns: None,
            sp_sec: None,
        },
    )
    .unwrap();
    assert_eq!(nw.entry(W), Entry::Revoked(NW_FIREWALL));
    let (owner, to) = f.classify_nw(Some(&nw), W, control::KIND_READ);
    assert_eq!(
        (owner, u64::from(to)),
        (control::OWNER_FIREWALL, control::FIREWALL_OVERLAP)
    );
}

#[test]
fn lends_and_the_firewall_combine() {
    let mut f = fw(true);
    let mut pool = vec![Table::EMPTY; 64];
    let mut nw = nw_s2(&mut pool);
    let r = MemRange {
        address: W,
        page_count: 2,
    };
    let why = Revoked {
        donated: false,
        to: 0x8001,
    };
    f.nw_revoke(&mut nw, &r, why).unwrap();
    assert_eq!(nw.entry(W), Entry::Revoked(why.tag()));
    secure(&mut f, W, 0x1000);
    let ch = f.take_changes();
    f.apply(
        &ch,
        &mut Spaces {
            nw: Some(&mut nw),
            sp_ns: None,
            sp_sec: None,
        },
    )
    .unwrap();
    assert_eq!(
        nw.entry(W),
        Entry::Revoked(why.tag()),
        "the lend wins while it lasts"
    );
    // The NS stage-2 stops the access: reported as lent, nothing latched in the TZC.
    assert_eq!(
        f.classify_nw(Some(&nw), W, control::KIND_READ),
        (control::OWNER_LENT, 0x8001)
    );
    assert_eq!(latched(&mut f.model), None);
    // RECLAIM: the secured page stays away from the NW, its neighbour comes back.
    f.nw_restore(&mut nw, &r);
    assert_eq!(nw.entry(W), Entry::Revoked(NW_FIREWALL));
    assert!(nw.lookup(W + 0x1000).is_some());
    assert_eq!(
        f.classify_nw(Some(&nw), W, control::KIND_WRITE),
        (control::OWNER_FIREWALL, 5)
    );
    assert_eq!(latched(&mut f.model), Some(W), "latched like the hardware");
    assert_eq!(f.model.read(offset::fail_id(0)), 9);
    clear(&mut f.model);
    // Cache maintenance is reported but moves no data: nothing latched.
    assert_eq!(
        f.classify_nw(Some(&nw), W, control::KIND_CACHE_MAINT),
        (control::OWNER_FIREWALL, 5)
    );
    assert_eq!(latched(&mut f.model), None);
    // A lend of a page the firewall denies takes the lend tag; RECLAIM puts the firewall's back.
    f.nw_revoke(
        &mut nw,
        &MemRange {
            address: W,
            page_count: 1,
        },
        why,
    )
    .unwrap();
    assert_eq!(nw.entry(W), Entry::Revoked(why.tag()));
    f.nw_restore(
        &mut nw,
        &MemRange {
            address: W,
            page_count: 1,
        },
    );
    assert_eq!(nw.entry(W), Entry::Revoked(NW_FIREWALL));
}

#[test]
fn read_only_ns_regions_map_read_only() {
    let mut f = fw(false);
    let mut w = World::new();
    let mut nw = nw_s2(&mut w.nw);
    let mut ns = Stage2::new(&mut w.ns, 0x2000_0000).unwrap();
    let r = MemRange {
        address: W,
        page_count: 1,
    };
    f.sp_map(&mut ns, &r, rw()).unwrap();
    // Region 2 made read-only for NSAID 9.
    region(
        &mut f.model,
        2,
        virt::NS_RAM_BASE,
        ns_ram::CARVEOUT_BASE - 1,
        1,
        NS_IDS & 0xffff,
    );
    let ch = f.take_changes();
    f.apply(
        &ch,
        &mut Spaces {
            nw: Some(&mut nw),
            sp_ns: Some(&mut ns),
            sp_sec: None,
        },
    )
    .unwrap();
    let ro = Attrs {
        read: true,
        write: false,
        exec: true,
        device: false,
    };
    assert_eq!(nw.lookup(W), Some((W, ro)));
    let (_, a) = ns.lookup(W).unwrap();
    assert!(a.read && !a.write);
    // An SP store there: a permission fault the firewall explains.
    let esr = mmio::EC_DABT_LOWER << 26 | 1 << 24 | 3 << 22 | 4 << 16 | 1 << 15 | 1 << 6 | 0b001111;
    let s = Syndrome {
        esr,
        far: W + 8,
        hpfar: (W >> 12) << 4 | 1 << 63,
        elr: 0x0e30_5000,
    };
    let mut x = [0u64; 31];
    let (b, pc) = f.sp_fault(Some(&ns), None, &s, &mut x).unwrap();
    assert_eq!(
        format!("{b}"),
        "blocked SP NS write of 0x50000008 (firewall region 2)"
    );
    assert_eq!(pc, 0x0e30_5004);
    // Back to RW: the retrieved permissions return.
    region(
        &mut f.model,
        2,
        virt::NS_RAM_BASE,
        ns_ram::CARVEOUT_BASE - 1,
        1,
        NS_IDS,
    );
    let ch = f.take_changes();
    f.apply(
        &ch,
        &mut Spaces {
            nw: Some(&mut nw),
            sp_ns: Some(&mut ns),
            sp_sec: None,
        },
    )
    .unwrap();
    assert_eq!(ns.lookup(W), Some((W, rw())));
    assert_eq!(nw.lookup(W), Some((W, Attrs::RWX)));
}

fn dabt(reg: u64, write: bool, isv: bool) -> u64 {
    mmio::EC_DABT_LOWER << 26
        | u64::from(isv) << 24
        | 3 << 22
        | reg << 16
        | 1 << 15
        | u64::from(write) << 6
        | 0b000111
}

#[test]
fn sp_accesses_the_firewall_blocks_are_reported_and_resumed() {
    let mut f = fw(true);
    let mut w = World::new();
    let mut ns = Stage2::new(&mut w.ns, 0x2000_0000).unwrap();
    let mut sec = Stage2::new(&mut w.sec, 0x3000_0000).unwrap();
    f.apply_all(&mut Spaces {
        nw: None,
        sp_ns: Some(&mut ns),
        sp_sec: Some(&mut sec),
    })
    .unwrap();
    // The carve-out is secure at boot: its secure alias is mapped; the window's is not.
    assert_eq!(
        sec.lookup(ns_ram::CARVEOUT_BASE),
        Some((ns_ram::CARVEOUT_BASE, rw()))
    );
    assert_eq!(sec.lookup(W), None);
    let mut x = [7u64; 31];
    // ldr x3, [W + 0x10] with NS = 0 (HPFAR.NS clear).
    let s = Syndrome {
        esr: dabt(3, false, true),
        far: W + 0x10,
        hpfar: (W >> 12) << 4,
        elr: 0x0e30_6000,
    };
    let (b, pc) = f.sp_fault(Some(&ns), Some(&sec), &s, &mut x).unwrap();
    assert_eq!(
        format!("{b}"),
        "blocked SP secure read of 0x50000010 (firewall: not secured, region 2)"
    );
    assert_eq!((x[3], pc), (control::POISON, 0x0e30_6004));
    assert_eq!(
        b.info(),
        control::KIND_READ
            | control::OWNER_FIREWALL << 8
            | 2 << 16
            | control::BLOCKED_BY_SP
            | control::BLOCKED_SECURE
    );
    assert_eq!(latched(&mut f.model), Some(W + 0x10));
    // An LDP there: reported and skipped.
    let s = Syndrome {
        esr: dabt(0, false, false),
        ..s
    };
    let (b, _) = f.sp_fault(Some(&ns), Some(&sec), &s, &mut x).unwrap();
    assert!(format!("{b}").ends_with(", not emulated: no syndrome (ISV=0)"));
    // The space is read from the stage-2s, not HPFAR.NS (QEMU sets it the other way): the
    // same report with NS set.
    let s = Syndrome {
        hpfar: (W >> 12) << 4 | 1 << 63,
        ..s
    };
    let (b, _) = f.sp_fault(Some(&ns), Some(&sec), &s, &mut x).unwrap();
    assert!(b.secure);
    // A page outside the gated regions and never retrieved: not the firewall's business (an
    // SP failure).
    let a = W - 0x1000;
    let s = Syndrome {
        far: a,
        hpfar: (a >> 12) << 4 | 1 << 63,
        ..s
    };
    assert!(f.sp_fault(Some(&ns), Some(&sec), &s, &mut x).is_none());
    let s = Syndrome {
        far: W + 0x10,
        hpfar: (W >> 12) << 4,
        ..s
    };
    // Secured and retrieved: the NS alias is blocked, the secure one works.
    f.sp_map(
        &mut ns,
        &MemRange {
            address: W,
            page_count: 1,
        },
        rw(),
    )
    .unwrap();
    secure(&mut f, W, 0x1000);
    let ch = f.take_changes();
    f.apply(
        &ch,
        &mut Spaces {
            nw: None,
            sp_ns: Some(&mut ns),
            sp_sec: Some(&mut sec),
        },
    )
    .unwrap();
    assert_eq!(sec.lookup(W), Some((W, rw())));
    let s = Syndrome {
        esr: dabt(5, true, true),
        ..s
    };
    x[5] = 0x1234;
    let (b, _) = f.sp_fault(Some(&ns), Some(&sec), &s, &mut x).unwrap();
    assert_eq!(
        format!("{b}"),
        "blocked SP NS write of 0x50000010 (firewall region 5)"
    );
    assert_eq!(x[5], 0x1234, "store dropped, registers untouched");
    // Outside DRAM (a device): never the firewall's.
    let s = Syndrome {
        far: 0x0904_0000,
        hpfar: 0x09040 << 4,
        ..s
    };
    assert!(f.sp_fault(Some(&ns), Some(&sec), &s, &mut x).is_none());
}

#[test]
fn the_sp_programs_the_model_through_the_device() {
    let mut f = fw(true);
    let gen0 = f.model.generation();
    let mut d = TzcDevice(&mut f);
    assert_eq!(d.range(), (virt::TZC400_BASE, 0x1000));
    let mut x = [0u64; 31];
    // str w1, [TZC + GATE_KEEPER] with w1 = 0 closes the gate.
    let esr = mmio::EC_DABT_LOWER << 26 | 1 << 24 | 2 << 22 | 1 << 16 | 1 << 6 | 0b000111;
    let a = mmio::decode(esr, (virt::TZC400_BASE >> 12) << 4, virt::TZC400_BASE + 8).unwrap();
    assert!(mmio::emulate(&a, &mut [&mut d], &mut x));
    assert_eq!(f.model.read(offset::GATE_KEEPER), 0, "gate closed");
    assert_eq!(f.model.generation(), gen0);
    // ldr w2, [TZC + region 3 attributes]
    let esr = mmio::EC_DABT_LOWER << 26 | 1 << 24 | 2 << 22 | 2 << 16 | 0b000111;
    let off = offset::region_attributes(3) as u64;
    let a = mmio::decode(esr, (virt::TZC400_BASE >> 12) << 4, virt::TZC400_BASE + off).unwrap();
    let mut d = TzcDevice(&mut f);
    assert!(mmio::emulate(&a, &mut [&mut d], &mut x));
    assert_eq!(x[2], u64::from(SEC));
}

#[test]
fn nw_reports_name_the_region() {
    let mut f = fw(false);
    let mut pool = vec![Table::EMPTY; 64];
    let mut nw = nw_s2(&mut pool);
    f.apply_all(&mut Spaces {
        nw: Some(&mut nw),
        sp_ns: None,
        sp_sec: None,
    })
    .unwrap();
    let mut x = [0u64; 31];
    let esr = dabt(4, false, true);
    let a = ns_ram::CARVEOUT_BASE + 0x40;
    let s = Syndrome {
        esr,
        far: a,
        hpfar: (a >> 12) << 4,
        elr: 0x4000_2000,
    };
    let out = crate::nwfault::handle(&s, &mut x, |addr, kind| {
        f.classify_nw(Some(&nw), addr, kind)
    });
    let Outcome::Resume { blocked, .. } = out else {
        panic!()
    };
    assert_eq!(
        format!("{blocked}"),
        "blocked NW read of 0x60000040 (firewall region 3)"
    );
    assert_eq!(x[4], control::POISON);
}
