//! The TZC-400 driver over the model: round trips and refused requests that write nothing.

use tzasc::tzc400::{Config, Model, Tzc400};
use tzasc::{Access, Error, IdMask, MemoryFirewall, NsAccess, Region, RegionIndex};

fn tzc() -> Tzc400<Model> {
    Tzc400::new(Model::new(Config::TESTBED)).unwrap()
}

fn region(base: u64, top: u64) -> Region {
    Region {
        base,
        top,
        secure: Access::RW,
        ns: NsAccess::NONE,
        filters: 1,
    }
}

#[test]
fn program_read_clear_round_trip() {
    let mut t = tzc();
    assert_eq!(t.granule(), tzasc::Granule::KIB_4);
    assert_eq!(t.regions(), 9);
    assert!(t.is_background(RegionIndex(0)) && !t.is_background(RegionIndex(1)));
    for i in 1..9 {
        assert_eq!(t.read(RegionIndex(i)).unwrap(), None, "disabled at reset");
    }
    let r = Region {
        base: 0x1_2345_6000,
        top: 0xffff_ffff_ffff,
        secure: Access {
            read: false,
            write: true,
        },
        ns: NsAccess {
            read: IdMask(0xffff),
            write: IdMask(1),
        },
        filters: 1,
    };
    t.program(RegionIndex(3), &r).unwrap();
    assert_eq!(t.read(RegionIndex(3)).unwrap(), Some(r));
    t.clear(RegionIndex(3)).unwrap();
    assert_eq!(t.read(RegionIndex(3)).unwrap(), None);
    // Region 0: attributes only, the full range.
    let bg = Region {
        base: 0,
        top: 0xffff_ffff_ffff,
        secure: Access::RW,
        ns: NsAccess::rw(IdMask(1 << 9)),
        filters: 1,
    };
    t.program(RegionIndex(0), &bg).unwrap();
    assert_eq!(t.read(RegionIndex(0)).unwrap(), Some(bg));
    t.clear(RegionIndex(0)).unwrap();
    assert_eq!(
        t.read(RegionIndex(0)).unwrap().unwrap().secure,
        Access::NONE
    );
}

#[test]
fn refused_requests_write_nothing() {
    let mut t = tzc();
    t.program(RegionIndex(1), &region(0x1000, 0x1fff)).unwrap();
    let before = t.registers().clone();
    let cases = [
        (
            RegionIndex(9),
            region(0x1000, 0x1fff),
            Error::NoSuchRegion(RegionIndex(9)),
        ),
        (
            RegionIndex(2),
            region(0x1800, 0x1fff),
            Error::NotGranuleAligned { addr: 0x1800 },
        ),
        (
            RegionIndex(2),
            region(0x1000, 0x1ffe),
            Error::NotGranuleAligned { addr: 0x1fff },
        ),
        (RegionIndex(2), region(0x2000, 0x0fff), Error::EmptyRange),
        (
            RegionIndex(2),
            region(0x1000, 0x1_0000_0000_0fff),
            Error::AddressTooWide {
                addr: 0x1_0000_0000_0fff,
            },
        ),
        (
            RegionIndex(2),
            Region {
                filters: 2,
                ..region(0x1000, 0x1fff)
            },
            Error::NoSuchFilter(2),
        ),
        (
            RegionIndex(2),
            Region {
                filters: 0,
                ..region(0x1000, 0x1fff)
            },
            Error::NoSuchFilter(0),
        ),
        (
            RegionIndex(2),
            Region {
                ns: NsAccess::rw(IdMask(1 << 16)),
                ..region(0x1000, 0x1fff)
            },
            Error::NoSuchMaster(IdMask(1 << 16)),
        ),
        (
            RegionIndex(0),
            region(0x1000, 0x1fff),
            Error::FixedRange(RegionIndex(0)),
        ),
    ];
    for (i, r, e) in cases {
        assert_eq!(t.program(i, &r), Err(e), "{r:?}");
        assert_eq!(t.registers(), &before, "nothing written for {e:?}");
    }
    assert_eq!(
        t.clear(RegionIndex(9)),
        Err(Error::NoSuchRegion(RegionIndex(9)))
    );
    assert_eq!(
        t.read(RegionIndex(200)),
        Err(Error::NoSuchRegion(RegionIndex(200)))
    );
}

#[test]
fn faults_and_interrupt_status() {
    let mut t = tzc();
    t.set_gates(1).unwrap();
    assert_eq!(t.take_fault(), None);
    assert!(!t.registers().check(0x4000_0000, false, 9, false).allowed);
    let st = t.int_status();
    assert_eq!((st.status, st.overrun, st.overlap), (1, 0, 0));
    let f = t.take_fault().unwrap();
    assert_eq!(
        (f.addr, f.write, f.secure, f.id, f.overlap),
        (0x4000_0000, false, false, 9, false)
    );
    assert_eq!(t.take_fault(), Some(f), "take_fault does not clear");
    t.clear_fault();
    assert_eq!(t.take_fault(), None);
}

#[test]
fn speculation_and_action_registers() {
    let mut t = tzc();
    t.set_speculation_disabled(true, false);
    assert_eq!(
        t.registers()
            .clone()
            .into_read(tzasc::tzc400::offset::SPECULATION_CTRL),
        1
    );
    t.set_action(tzasc::tzc400::Action::InterruptError);
    assert_eq!(t.action(), tzasc::tzc400::Action::InterruptError);
}

trait IntoRead {
    fn into_read(self, off: usize) -> u32;
}

impl IntoRead for Model {
    fn into_read(mut self, off: usize) -> u32 {
        tzasc::RegisterAccess::read(&mut self, off)
    }
}

#[test]
fn update_closes_chosen_open_gates_and_restores_them() {
    let mut t = Tzc400::new(Model::new(Config::FVP_BASE_REVC)).unwrap();
    t.set_gates(0b0101).unwrap();
    t.begin_update().unwrap();
    assert_eq!(t.open_gates(), 0);
    t.commit_update().unwrap();
    assert_eq!(
        t.open_gates(),
        0b0101,
        "gates firmware left closed stay closed"
    );
    t.set_gates(0xf).unwrap();
    t.set_update_filters(0b1110);
    t.begin_update().unwrap();
    assert_eq!(t.open_gates(), 0b0001, "filter 0 left open");
    t.commit_update().unwrap();
    assert_eq!(t.open_gates(), 0xf);
}
