//! The TZC-400 register model against the TRM's register rules and TF-A's FVP programming.

use tzasc::tzc400::{Action, Config, Model, Request, Response, Tzc400, offset};
use tzasc::{Access, IdMask, MemoryFirewall, NsAccess, Region, RegionIndex, RegisterAccess};

/// FVP NSAIDs TF-A grants NS DRAM (fvp_def.h): default 0, PCI 1, virtio 8, APs 9, old virtio 15.
const FVP_NS_DEV: u128 = 1 << 0 | 1 << 1 | 1 << 8 | 1 << 9 | 1 << 15;
const AP: u8 = 9;

/// TF-A v2.15.0 `arm_tzc400_setup` on FVP (non-RME): disable filters, region 0 no access,
/// region 1 = trusted DRAM 0xff00_0000..=0xffff_ffff secure RW, region 2 = NS DRAM1
/// 0x8000_0000..=0xfeff_ffff, region 3 = DRAM2 0x8_8000_0000..=0xf_ffff_ffff, both NS for
/// PLAT_ARM_TZC_NS_DEV_ACCESS, all on filter 0, ACTION = ERR, enable filters.
fn fvp_tfa_setup() -> Tzc400<Model> {
    let mut tzc = Tzc400::new(Model::new(Config::FVP_BASE_REVC)).expect("probe");
    tzc.set_gates(0).unwrap();
    tzc.configure_region0(Access::NONE, NsAccess::NONE).unwrap();
    let ns = NsAccess::rw(IdMask(FVP_NS_DEV));
    let regions = [
        Region {
            base: 0xff00_0000,
            top: 0xffff_ffff,
            secure: Access::RW,
            ns: NsAccess::NONE,
            filters: 1,
        },
        Region {
            base: 0x8000_0000,
            top: 0xfeff_ffff,
            secure: Access::NONE,
            ns,
            filters: 1,
        },
        Region {
            base: 0x8_8000_0000,
            top: 0xf_ffff_ffff,
            secure: Access::NONE,
            ns,
            filters: 1,
        },
    ];
    for (i, r) in regions.iter().enumerate() {
        tzc.program(RegionIndex(i as u8 + 1), r).unwrap();
    }
    tzc.set_action(Action::Error);
    tzc.set_gates(0xf).unwrap();
    tzc
}

fn req(filter: u8, addr: u64, secure: bool, nsaid: u8, write: bool) -> Request {
    Request {
        filter,
        addr,
        secure,
        nsaid,
        write,
        privileged: false,
        id: u32::from(nsaid),
    }
}

#[test]
fn identification_and_build_config() {
    let mut m = Model::new(Config::TESTBED);
    // NF = 0 (1 filter), AW = 47 (48 bits), NR = 8 (9 regions).
    assert_eq!(m.read(offset::BUILD_CONFIG), 0x0000_2f08);
    let mut pid = 0u64;
    for (i, off) in [0xfe0, 0xfe4, 0xfe8, 0xfec, 0xfd0, 0xfd4, 0xfd8, 0xfdc]
        .iter()
        .enumerate()
    {
        pid |= u64::from(m.read(*off)) << (8 * i);
    }
    assert_eq!(pid, 0x4_002b_b460);
    let cid = (0..4).fold(0u32, |acc, i| acc | m.read(0xff0 + 4 * i) << (8 * i));
    assert_eq!(cid, 0xb105_f00d);
    let fvp = Tzc400::new(Model::new(Config::FVP_BASE_REVC)).unwrap();
    let b = fvp.build_config();
    assert_eq!((b.filters, b.regions, b.address_width), (4, 9, 36));
    m.write(offset::BUILD_CONFIG, 0);
    assert_eq!(
        m.read(offset::BUILD_CONFIG),
        0x0000_2f08,
        "BUILD_CONFIG is read-only"
    );
}

#[test]
fn probe_refuses_other_devices() {
    struct Zero;
    impl RegisterAccess for Zero {
        fn read(&mut self, _: usize) -> u32 {
            0
        }
        fn write(&mut self, _: usize, _: u32) {}
    }
    assert_eq!(
        Tzc400::new(Zero).err(),
        Some(tzasc::Error::WrongDevice { part: 0 })
    );
}

#[test]
fn reserved_fields_are_raz_wi() {
    let mut m = Model::new(Config::TESTBED);
    for off in [
        0x018, 0x01c, 0x030, 0x060, 0x0fc, 0x118, 0x220, 0x400, 0xf00, 0xfcc,
    ] {
        m.write(off, 0xffff_ffff);
        assert_eq!(m.read(off), 0, "offset {off:#x}");
    }
    m.write(offset::ACTION, 0xffff_ffff);
    assert_eq!(m.read(offset::ACTION), 3);
    m.write(offset::SPECULATION_CTRL, 0xffff_ffff);
    assert_eq!(m.read(offset::SPECULATION_CTRL), 3);
    // Base [11:0] read 0, top [11:0] read 0xfff, high words keep AW - 32 = 16 bits.
    m.write(offset::region_base_low(1), 0x1234_5fff);
    m.write(offset::region_base_high(1), 0xffff_ffff);
    m.write(offset::region_top_low(1), 0x2345_6000);
    m.write(offset::region_top_high(1), 0xffff_ffff);
    assert_eq!(m.read(offset::region_base_low(1)), 0x1234_5000);
    assert_eq!(m.read(offset::region_base_high(1)), 0xffff);
    assert_eq!(m.read(offset::region_top_low(1)), 0x2345_6fff);
    assert_eq!(m.read(offset::region_top_high(1)), 0xffff);
    // One filter: filter_en [3:1] and reserved [29:4] ignored.
    m.write(offset::region_attributes(1), 0xffff_ffff);
    assert_eq!(m.read(offset::region_attributes(1)), 0xc000_0001);
    m.write(offset::region_id_access(1), 0xffff_ffff);
    assert_eq!(m.read(offset::region_id_access(1)), 0xffff_ffff);
    // INT_CLEAR is write-only; INT_STATUS and FAIL_* are read-only.
    assert_eq!(m.read(offset::INT_CLEAR), 0);
    m.write(offset::INT_STATUS, 0xffff_ffff);
    m.write(offset::fail_address_low(0), 0xffff_ffff);
    assert_eq!(m.read(offset::INT_STATUS), 0);
    assert_eq!(m.read(offset::fail_address_low(0)), 0);
    // Filters beyond NF have no FAIL_* registers.
    assert_eq!(m.read(offset::fail_control(1)), 0);
}

#[test]
fn regions_beyond_build_config_are_raz_wi() {
    let mut cfg = Config::TESTBED;
    cfg.build.regions = 5;
    let mut m = Model::new(cfg);
    m.write(offset::region_attributes(5), 0xc000_0001);
    m.write(offset::region_base_low(8), 0x1000);
    assert_eq!(m.read(offset::region_attributes(5)), 0);
    assert_eq!(m.read(offset::region_base_low(8)), 0);
    let mut tzc = Tzc400::new(m).unwrap();
    assert_eq!(tzc.regions(), 5);
    let r = Region::secure_rw(0x1000, 0x1000, 1).unwrap();
    assert_eq!(
        tzc.program(RegionIndex(5), &r),
        Err(tzasc::Error::NoSuchRegion(RegionIndex(5)))
    );
}

#[test]
fn region0_range_is_read_only() {
    let mut m = Model::new(Config::TESTBED);
    for off in [offset::region_base_low(0), offset::region_base_high(0)] {
        m.write(off, 0x1234_5000);
        assert_eq!(m.read(off), 0);
    }
    m.write(offset::region_top_low(0), 0);
    m.write(offset::region_top_high(0), 0);
    assert_eq!(m.read(offset::region_top_low(0)), 0xffff_ffff);
    assert_eq!(m.read(offset::region_top_high(0)), 0xffff);
    // filter_en reads as every implemented filter and cannot be cleared.
    m.write(offset::region_attributes(0), 0x4000_0000);
    assert_eq!(m.read(offset::region_attributes(0)), 0x4000_0001);
    let mut tzc = Tzc400::new(m).unwrap();
    let bg = tzc.read(RegionIndex(0)).unwrap().unwrap();
    assert_eq!((bg.base, bg.top, bg.filters), (0, 0xffff_ffff_ffff, 1));
    assert_eq!(
        bg.secure,
        Access {
            read: true,
            write: false
        }
    );
    let r = Region::secure_rw(0x1000, 0x1000, 1).unwrap();
    assert_eq!(
        tzc.program(RegionIndex(0), &r),
        Err(tzasc::Error::FixedRange(RegionIndex(0)))
    );
}

#[test]
fn gate_keeper_handshake() {
    let mut m = Model::new(Config::FVP_BASE_REVC);
    assert_eq!(m.read(offset::GATE_KEEPER), 0, "gates closed at reset");
    m.write(offset::GATE_KEEPER, 0x5);
    assert_eq!(
        m.read(offset::GATE_KEEPER),
        0x0005_0005,
        "open_status follows open_request"
    );
    m.write(offset::GATE_KEEPER, 0xffff_fff4);
    assert_eq!(
        m.read(offset::GATE_KEEPER),
        0x0004_0004,
        "status bits are not writable"
    );
    let mut one = Model::new(Config::TESTBED);
    one.write(offset::GATE_KEEPER, 0xf);
    assert_eq!(
        one.read(offset::GATE_KEEPER),
        0x0001_0001,
        "only implemented filters"
    );
    let mut tzc = Tzc400::new(one).unwrap();
    tzc.begin_update().unwrap();
    assert_eq!(tzc.open_gates(), 0);
    assert_eq!(tzc.begin_update(), Err(tzasc::Error::UpdateState));
    tzc.commit_update().unwrap();
    assert_eq!(tzc.open_gates(), 1);
    assert_eq!(tzc.commit_update(), Err(tzasc::Error::UpdateState));
}

#[test]
fn gate_keeper_timeout_is_an_error() {
    /// A TZC-400 whose open_status never follows (a stuck filter).
    struct Stuck(Model);
    impl RegisterAccess for Stuck {
        fn read(&mut self, off: usize) -> u32 {
            let v = self.0.read(off);
            if off == offset::GATE_KEEPER {
                v | 1 << 16
            } else {
                v
            }
        }
        fn write(&mut self, off: usize, v: u32) {
            self.0.write(off, v)
        }
    }
    let mut tzc = Tzc400::new(Stuck(Model::new(Config::TESTBED))).unwrap();
    assert_eq!(
        tzc.begin_update(),
        Err(tzasc::Error::GateTimeout { filters: 1 })
    );
}

#[test]
fn tfa_fvp_setup_permissions() {
    let mut tzc = fvp_tfa_setup();
    let m = tzc.registers();
    // Trusted DRAM: secure RW, no NS master.
    let v = m.check(0xff00_0000, true, 0, true);
    assert!(v.allowed && v.region == Some(1) && v.response == Response::Okay);
    let v = m.check(0xffff_ffff, false, AP, false);
    assert!(!v.allowed && v.region == Some(1) && v.response == Response::Error);
    // NS DRAM1: the APs (9) and the other listed NSAIDs, no secure access, not NSAID 3.
    assert!(m.check(0x8000_0000, false, AP, true).allowed);
    assert!(m.check(0xfeff_ffff, false, 15, false).allowed);
    assert!(!m.check(0x8000_0000, false, 3, false).allowed);
    assert!(!m.check(0x8000_0000, true, 0, false).allowed);
    // DRAM2 up to the inclusive top (2^36 - 1, the address width).
    let v = m.check(0xf_ffff_ffff, false, AP, true);
    assert!(v.allowed && v.region == Some(3));
    // Everything else falls to region 0: no access.
    for addr in [0, 0x7fff_ffff, 0x1_0000_0000, 0x8_7fff_ffff] {
        let v = m.check(addr, false, AP, false);
        assert!(!v.allowed && v.region == Some(0), "{addr:#x}");
        assert!(!m.check(addr, true, 0, false).allowed);
    }
    // Regions are on filter 0 only (PLAT_ARM_TZC_FILTERS): filter 2 sees only region 0.
    let v = m.check_request(&req(2, 0x8000_0000, false, AP, false));
    assert!(!v.allowed && v.region == Some(0));
}

#[test]
fn denial_latches_fail_registers_and_w1c_clears() {
    let mut tzc = fvp_tfa_setup();
    let m = tzc.registers();
    assert!(
        !m.check_request(&Request {
            privileged: true,
            ..req(0, 0xff00_0010, false, AP, true)
        })
        .allowed
    );
    assert_eq!(m.read(offset::INT_STATUS), 0x1);
    assert_eq!(m.read(offset::fail_address_low(0)), 0xff00_0010);
    assert_eq!(m.read(offset::fail_address_high(0)), 0);
    assert_eq!(m.read(offset::fail_control(0)), 1 << 24 | 1 << 21 | 1 << 20);
    assert_eq!(m.read(offset::fail_id(0)), 9);
    // A second failure keeps the first and sets overrun.
    assert!(
        !m.check_request(&req(0, 0x0000_1000, true, 0, false))
            .allowed
    );
    assert_eq!(m.read(offset::INT_STATUS), 0x101);
    assert_eq!(m.read(offset::fail_address_low(0)), 0xff00_0010);
    // A failure on another filter latches there.
    assert!(
        !m.check_request(&req(2, 0x8_8000_0000, true, 0, false))
            .allowed
    );
    assert_eq!(m.read(offset::INT_STATUS), 0x105);
    assert_eq!(m.read(offset::fail_address_high(2)), 0x8);
    assert_eq!(m.read(offset::fail_control(2)), 0, "secure read");
    let f = tzc.take_fault().unwrap();
    assert_eq!(
        (f.addr, f.write, f.secure, f.id, f.filter, f.overrun),
        (0xff00_0010, true, false, 9, 0, true)
    );
    // Write 1 to clear filter 0 only; writing 0 bits changes nothing.
    tzc.registers().write(offset::INT_CLEAR, 0x1);
    assert_eq!(tzc.registers().read(offset::INT_STATUS), 0x4);
    tzc.registers().write(offset::INT_CLEAR, 0x0);
    assert_eq!(tzc.registers().read(offset::INT_STATUS), 0x4);
    assert_eq!(tzc.take_fault().unwrap().filter, 2);
    tzc.clear_fault();
    assert_eq!(tzc.take_fault(), None);
    // After clearing, the next failure latches afresh.
    assert!(!tzc.registers().check(0x10_0000, false, AP, false).allowed);
    assert_eq!(tzc.take_fault().unwrap().addr, 0x10_0000);
    // Permitted accesses latch nothing.
    tzc.clear_fault();
    assert!(tzc.registers().check(0x8000_0000, false, AP, false).allowed);
    assert_eq!(tzc.registers().read(offset::INT_STATUS), 0);
}

#[test]
fn action_selects_response_and_interrupt() {
    let mut tzc = fvp_tfa_setup();
    for (action, response, int) in [
        (Action::Okay, Response::RazWi, false),
        (Action::Error, Response::Error, false),
        (Action::InterruptOkay, Response::RazWi, true),
        (Action::InterruptError, Response::Error, true),
    ] {
        tzc.set_action(action);
        tzc.clear_fault();
        let m = tzc.registers();
        assert!(!m.interrupt());
        let v = m.check(0, false, AP, false);
        assert_eq!(v.response, response);
        assert_eq!(
            m.int_status().status,
            1,
            "status latches whatever ACTION says"
        );
        assert_eq!(m.interrupt(), int);
    }
}

#[test]
fn overlapping_regions_deny_and_flag() {
    let mut tzc = fvp_tfa_setup();
    let ns = NsAccess::rw(IdMask(1 << AP));
    let r = Region {
        base: 0x9000_0000,
        top: 0x9000_ffff,
        secure: Access::RW,
        ns,
        filters: 1,
    };
    tzc.begin_update().unwrap();
    tzc.program(RegionIndex(4), &r).unwrap();
    tzc.commit_update().unwrap();
    let m = tzc.registers();
    let v = m.check(0x9000_8000, false, AP, false);
    assert!(!v.allowed && v.overlap && v.region.is_none());
    assert_eq!(m.int_status().overlap, 1);
    assert_eq!(m.int_status().status, 1);
    // Outside the overlap region 2 decides alone; an overlap with region 0 is no overlap.
    assert!(m.check(0x9001_0000, false, AP, false).allowed);
    assert!(!m.check(0x1000, false, AP, false).overlap);
    tzc.clear_fault();
    assert_eq!(tzc.registers().int_status().overlap, 0);
}

#[test]
fn map_changes_only_when_gates_open() {
    let mut tzc = Tzc400::new(Model::new(Config::TESTBED)).unwrap();
    tzc.set_gates(1).unwrap();
    let g0 = tzc.registers().generation();
    let r = Region::ns_rw(0x4000_0000, 0x10_0000, IdMask(1 << AP), 1).unwrap();
    tzc.program(RegionIndex(1), &r).unwrap();
    let g1 = tzc.registers().generation();
    assert!(g1 > g0, "a write on an open filter takes effect at once");
    assert!(tzc.registers().check(0x4000_0000, false, AP, false).allowed);
    // Rewriting the same values changes nothing.
    tzc.program(RegionIndex(1), &r).unwrap();
    assert_eq!(tzc.registers().generation(), g1);
    // Behind a closed gate the old map stays in force...
    tzc.begin_update().unwrap();
    tzc.clear(RegionIndex(1)).unwrap();
    let moved = Region::ns_rw(0x5000_0000, 0x10_0000, IdMask(1 << AP), 1).unwrap();
    tzc.program(RegionIndex(2), &moved).unwrap();
    let m = tzc.registers();
    assert_eq!(m.generation(), g1);
    let v = m.permission(&req(0, 0x4000_0000, false, AP, false));
    assert!(v.allowed && v.gate_closed);
    assert!(!m.permission(&req(0, 0x5000_0000, false, AP, false)).allowed);
    // ...and the whole update takes effect when it reopens.
    tzc.commit_update().unwrap();
    let m = tzc.registers();
    assert_eq!(m.generation(), g1 + 1);
    assert!(!m.check(0x4000_0000, false, AP, false).allowed);
    let v = m.check(0x5000_0000, false, AP, false);
    assert!(v.allowed && !v.gate_closed && v.region == Some(2));
}

#[test]
fn effective_regions_and_uniform_spans() {
    let tzc = fvp_tfa_setup();
    let m = tzc.into_inner();
    let mut it = m.effective_regions(0);
    let (i, bg) = it.next().unwrap();
    assert_eq!((i, bg.base, bg.top), (RegionIndex(0), 0, 0xf_ffff_ffff));
    let rest: Vec<_> = it.map(|(i, r)| (i.0, r.base, r.top)).collect();
    assert_eq!(
        rest,
        [
            (1, 0xff00_0000, 0xffff_ffff),
            (2, 0x8000_0000, 0xfeff_ffff),
            (3, 0x8_8000_0000, 0xf_ffff_ffff)
        ]
    );
    assert_eq!(m.effective_regions(2).count(), 1, "filter 2: region 0 only");
    assert_eq!(m.effective_regions(4).count(), 0, "no filter 4");
    assert_eq!(m.uniform_until(0, 0), 0x7fff_ffff);
    assert_eq!(m.uniform_until(0, 0x8000_1000), 0xfeff_ffff);
    assert_eq!(m.uniform_until(0, 0xff00_0000), 0xffff_ffff);
    assert_eq!(m.uniform_until(0, 0x1_0000_0000), 0x8_7fff_ffff);
    assert_eq!(m.uniform_until(0, 0x8_8000_0000), 0xf_ffff_ffff);
}

#[test]
fn nsaid_read_and_write_enables_are_separate() {
    let mut tzc = Tzc400::new(Model::new(Config::TESTBED)).unwrap();
    let r = Region {
        base: 0x1000,
        top: 0x1fff,
        secure: Access {
            read: true,
            write: false,
        },
        ns: NsAccess {
            read: IdMask(1 << 2 | 1 << AP),
            write: IdMask(1 << 2),
        },
        filters: 1,
    };
    tzc.program(RegionIndex(8), &r).unwrap();
    tzc.set_gates(1).unwrap();
    assert_eq!(tzc.read(RegionIndex(8)).unwrap(), Some(r));
    let m = tzc.registers();
    assert!(m.check(0x1000, false, AP, false).allowed);
    assert!(!m.check(0x1000, false, AP, true).allowed);
    assert!(m.check(0x1fff, false, 2, true).allowed);
    assert!(m.check(0x1000, true, 0, false).allowed);
    assert!(!m.check(0x1000, true, 0, true).allowed);
    assert!(
        !m.check(0x1000, false, 16, false).allowed,
        "NSAIDs are 4 bits"
    );
}

/// The offsets derived from the `#[repr(C)]` block equal TF-A's `tzc400.h` / `tzc400.c` constants.
#[test]
fn register_offsets_match_tfa() {
    use tzasc::tzc400::{BLOCK_SIZE, Registers};
    assert_eq!(core::mem::size_of::<Registers>(), BLOCK_SIZE);
    assert_eq!(
        [
            offset::BUILD_CONFIG,
            offset::ACTION,
            offset::GATE_KEEPER,
            offset::SPECULATION_CTRL,
            offset::INT_STATUS,
            offset::INT_CLEAR
        ],
        [0x000, 0x004, 0x008, 0x00c, 0x010, 0x014]
    );
    for f in 0..4 {
        assert_eq!(
            [
                offset::fail_address_low(f),
                offset::fail_address_high(f),
                offset::fail_control(f),
                offset::fail_id(f)
            ],
            [0x020, 0x024, 0x028, 0x02c].map(|o| o + 0x10 * f)
        );
    }
    for n in 0..9 {
        assert_eq!(
            [
                offset::region_base_low(n),
                offset::region_base_high(n),
                offset::region_top_low(n),
                offset::region_top_high(n),
                offset::region_attributes(n),
                offset::region_id_access(n),
            ],
            [0x100, 0x104, 0x108, 0x10c, 0x110, 0x114].map(|o| o + 0x20 * n)
        );
    }
    assert_eq!(
        (offset::PID4, offset::PID0, offset::PID1, offset::CID0),
        (0xfd0, 0xfe0, 0xfe4, 0xff0)
    );
}
