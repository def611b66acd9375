use super::model::RkIommuModel;
use super::*;

const RW: Perm = Perm {
    read: true,
    write: true,
};
const RO: Perm = Perm {
    read: true,
    write: false,
};

#[test]
fn encodings_place_the_high_address_bits_as_the_driver_does() {
    // PA[35:32] -> bits 11:8, PA[39:36] -> bits 7:4.
    let pa = 0xab_1234_5000u64;
    let d = Dte::new(pa).unwrap();
    assert_eq!(d.0, 0x1234_5000 | 0xb00 | 0xa0 | 1);
    assert_eq!(d.table(), Some(pa));
    let p = Pte::new(pa, RO).unwrap();
    assert_eq!(p.0, 0x1234_5000 | 0xb00 | 0xa0 | 0b011);
    assert_eq!(p.page(), Some((pa, RO)));
    assert_eq!(Pte::new(0x1000, RW).unwrap().0, 0x1007);
    assert_eq!(Pte(0x1006).page(), None, "not valid");
    assert_eq!(Dte::new(0x1001), Err(RkError::Unaligned(0x1001)));
    assert_eq!(Pte::new(1 << 40, RW), Err(RkError::OutOfRange(1 << 40)));
    // DTE_ADDR: PA[39:32] -> bits 11:4.
    let r = dte_addr_register(0xab_1234_5000).unwrap();
    assert_eq!(r, 0x1234_5000 | 0xab0);
    assert_eq!(dte_addr_decode(r), 0xab_1234_5000);
    for pa in [0u64, 0x1000, 0xffff_f000, 0x1_0000_0000, 0xff_ffff_f000] {
        assert_eq!(Dte::new(pa).unwrap().table(), Some(pa), "{pa:#x}");
        assert_eq!(dte_addr_decode(dte_addr_register(pa).unwrap()), pa);
    }
}

#[test]
fn tables_map_translate_and_refuse() {
    let mut t = PageTables::new();
    let at = |d: usize| 0x8000_0000 + d as u64 * 0x1000;
    t.map(0x0040_3000, 0x1_2345_6000, RW, at).unwrap();
    t.map(0x0040_4000, 0x2000, RO, at).unwrap();
    assert_eq!(t.directory()[1], Dte::new(0x8000_1000).unwrap().0);
    assert_eq!(t.translate(0x0040_3abc, true), Ok(0x1_2345_6abc));
    assert_eq!(t.translate(0x0040_4010, false), Ok(0x2010));
    assert_eq!(
        t.translate(0x0040_4010, true),
        Err(Fault::Permission {
            iova: 0x0040_4010,
            write: true
        })
    );
    assert_eq!(
        t.translate(0x0040_5000, false),
        Err(Fault::Unmapped(0x0040_5000))
    );
    assert_eq!(
        t.translate(0x9000_0000, false),
        Err(Fault::Unmapped(0x9000_0000))
    );
    assert_eq!(
        t.map(0x0040_3000, 0x3000, RW, at),
        Err(RkError::Mapped(0x0040_3000))
    );
    assert_eq!(
        t.map(0x0040_3001, 0x3000, RW, at),
        Err(RkError::Unaligned(0x0040_3001))
    );
    t.unmap(0x0040_3000).unwrap();
    assert_eq!(
        t.translate(0x0040_3000, false),
        Err(Fault::Unmapped(0x0040_3000))
    );
    assert_eq!(t.unmap(0x0040_3000), Err(RkError::NotMapped(0x0040_3000)));
}

#[test]
fn enable_disable_and_zap_against_the_model() {
    let dir = 0x8000_0000u64;
    let mut t = PageTables::new();
    t.map(0x1000, 0x5000, RW, |d| dir + 0x1000 + d as u64 * 0x1000)
        .unwrap();
    let mut mmu = RkIommu::new(RkIommuModel::new());
    // Before enable: no translation, and the fault is latched.
    assert_eq!(
        mmu.bus().access(&t, dir, 0x1000, false),
        Err(Fault::Unmapped(0x1000))
    );
    mmu.enable(dir).unwrap();
    let m = mmu.bus();
    assert!(m.paging());
    assert_eq!(m.directory(), dir);
    assert_eq!(m.ignored, 0, "every command was one the model takes");
    assert_eq!(m.read32(reg::STATUS) & status::STALL_ACTIVE, 0, "unstalled");
    assert_eq!(
        m.read32(reg::INT_RAWSTAT),
        0,
        "reset cleared the early fault"
    );
    assert_eq!(m.access(&t, dir, 0x1234, true), Ok(0x5234));
    // Unmapping without a zap leaves the cached translation: the driver must zap.
    t.unmap(0x1000).unwrap();
    assert_eq!(mmu.bus().access(&t, dir, 0x1000, false), Ok(0x5000));
    mmu.zap_one(0x1fff);
    assert_eq!(
        mmu.bus().access(&t, dir, 0x1000, false),
        Err(Fault::Unmapped(0x1000))
    );
    let m = mmu.bus();
    assert_eq!(m.read32(reg::PAGE_FAULT_ADDR), 0x1000);
    assert!(m.irq_pending(), "page faults are unmasked");
    m.write32(reg::COMMAND, cmd::PAGE_FAULT_DONE);
    assert!(!m.irq_pending());
    t.map(0x2000, 0x6000, RO, |_| unreachable!("slot 0 has a table"))
        .unwrap();
    assert_eq!(mmu.bus().access(&t, dir, 0x2000, false), Ok(0x6000));
    mmu.zap();
    mmu.disable().unwrap();
    let m = mmu.bus();
    assert!(!m.paging());
    assert_eq!(
        m.access(&t, dir, 0x2000, false),
        Err(Fault::Unmapped(0x2000))
    );
    assert_eq!(m.ignored, 0);
}

/// A stuck IOMMU (the stall never shows) is an error, not a hang.
#[test]
fn a_stuck_iommu_times_out() {
    struct Stuck;
    impl RkBus for Stuck {
        fn read32(&mut self, _: usize) -> u32 {
            0
        }
        fn write32(&mut self, _: usize, _: u32) {}
    }
    let mut mmu = RkIommu::new(Stuck);
    assert_eq!(
        mmu.enable(0x8000_0000),
        Err(RkError::Timeout {
            command: cmd::ENABLE_STALL,
            status: 0
        })
    );
}
