//! RK3588 FIREWALL_DDR / FIREWALL_DSU drivers and models against TF-A's `secure_region_init`.

use tzasc::rk3588::{
    Block, CPU_NS, DDR_MST_REGS, FirewallDdr, FirewallDsu, Model, Rk3588Firewall,
    TFA_SECURE_DDR_SLOTS, decode_rgn, encode_rgn, offset,
};
use tzasc::{Access, Error, IdMask, MemoryFirewall, NsAccess, Region, RegionIndex, RegisterAccess};

const MIB: u64 = 1 << 20;

/// TF-A v2.15.0 `secure_region_init` for RK3588: disable regions 1-15, master masks (ddr_mcu
/// MST(1) = 0x0000ffff, dcf/crypto_s MST(14) = 0, dsu_mp_sec MST(36) = 0xffff0000, every other
/// DDR master 0xffffffff; DSU MST(0) = 0xffffffff, MST(1) = 0), then region 0 = 0..1 MiB secure
/// in both blocks.
fn tfa_setup() -> (Model, Model) {
    let mut ddr = FirewallDdr::new(Model::new(Block::Ddr));
    let mut dsu = FirewallDsu::new(Model::new(Block::Dsu));
    let r = ddr.registers();
    let con = r.read(offset::DDR_CON);
    r.write(offset::DDR_CON, con & !0xfffe);
    for i in 0..DDR_MST_REGS {
        let v = match i {
            1 => 0x0000_ffff,
            14 => 0,
            36 => 0xffff_0000,
            _ => 0xffff_ffff,
        };
        r.write(offset::mst(i), v);
    }
    dsu.registers().write(offset::mst(0), 0xffff_ffff);
    dsu.registers().write(offset::mst(1), 0);
    dsu.enable_region(0, 0, MIB - 1);
    ddr.enable_region(0, 0, MIB - 1);
    assert_eq!(
        ddr.registers().read(offset::rgn(0)),
        0,
        "RG_MAP_SECURE(1, 0) = 0"
    );
    (ddr.registers().clone(), dsu.registers().clone())
}

#[test]
fn rgn_encoding_matches_tfa_macro() {
    // RG_MAP_SECURE(top_mb, base_mb) = ((top_mb - 1) & 0x7fff) << 16 | (base_mb & 0x7fff).
    assert_eq!(encode_rgn(0, MIB - 1), 0);
    assert_eq!(encode_rgn(0x1000 * MIB, 0x1400 * MIB - 1), 0x13ff_1000);
    assert_eq!(
        decode_rgn(0x13ff_1000),
        Some((0x1000 * MIB, 0x1400 * MIB - 1))
    );
    assert_eq!(decode_rgn(0x0000_0001), None, "top below base");
    assert_eq!(encode_rgn(0, 0x8000 * MIB - 1), 0x7fff_0000, "32 GiB reach");
}

#[test]
fn tfa_setup_secures_first_mib() {
    let (ddr, dsu) = tfa_setup();
    // DDR: masters whose half is all ones are denied; ddr_mcu (slot 3), crypto_s (28, 29),
    // dsu_mp_sec (72) pass.
    for slot in 0..84 {
        let expect_ok = [3, 28, 29, 72].contains(&slot);
        assert_eq!(ddr.check(0x8_0000, slot).is_ok(), expect_ok, "slot {slot}");
        assert!(ddr.check(MIB, slot).is_ok(), "above region 0 is open");
    }
    assert_eq!(dsu.check(0, 0), Err(RegionIndex(0)), "dsu-ns denied");
    assert!(dsu.check(0, 1).is_ok(), "dsu-s allowed");
    assert!(dsu.check(MIB, 0).is_ok());
}

#[test]
fn registers_raz_wi() {
    let mut m = Model::new(Block::Dsu);
    m.write(offset::rgn(3), 0xffff_ffff);
    assert_eq!(m.read(offset::rgn(3)), 0x7fff_7fff);
    m.write(offset::mst(2), 1);
    assert_eq!(
        m.read(offset::mst(2)),
        0,
        "the DSU block has 2 MST registers"
    );
    m.write(offset::dsu_con(3), 0xffff_ffff);
    assert_eq!(m.read(offset::dsu_con(3)), 0xffff);
    m.write(0x100, 1);
    assert_eq!(m.read(0x100), 0);
    let mut d = Model::new(Block::Ddr);
    d.write(offset::dsu_con(1), 1);
    assert_eq!(d.read(offset::dsu_con(1)), 0, "the DDR block has one CON");
    d.write(offset::mst(41), 0xffff_ffff);
    assert_eq!(d.read(offset::mst(41)), 0xffff_ffff);
    d.write(offset::mst(42), 1);
    assert_eq!(d.read(offset::mst(42)), 0);
}

#[test]
fn combined_firewall_programs_both_blocks() {
    let (ddr, dsu) = tfa_setup();
    let mut fw = Rk3588Firewall::new(ddr, dsu, TFA_SECURE_DDR_SLOTS);
    assert_eq!(fw.granule(), tzasc::Granule::MIB_1);
    assert_eq!(fw.regions(), 16);
    let r = Region::secure_rw(0x4000_0000, 64 * MIB, 0).unwrap();
    fw.program(RegionIndex(5), &r).unwrap();
    assert_eq!(fw.read(RegionIndex(5)).unwrap(), Some(r));
    {
        let (d, s) = (fw.ddr().registers().clone(), fw.dsu().registers().clone());
        assert_eq!(
            s.check(0x4000_0000, 0),
            Err(RegionIndex(5)),
            "CPU NS blocked by the DSU"
        );
        assert!(s.check(0x43ff_ffff, 1).is_ok(), "CPU secure passes");
        assert!(
            s.check(0x4400_0000, 0).is_ok(),
            "end is exclusive of the next MiB"
        );
        assert_eq!(
            d.check(0x4000_0000, 0),
            Err(RegionIndex(5)),
            "DMA master blocked"
        );
        assert!(
            d.check(0x4000_0000, 72).is_ok(),
            "dsu_mp_sec (secure) passes"
        );
    }
    // One NS master granted: only its slot passes.
    let shared = Region {
        ns: NsAccess::rw(IdMask(1 << 10 | 1 << CPU_NS)),
        ..r
    };
    fw.program(RegionIndex(5), &shared).unwrap();
    assert_eq!(fw.read(RegionIndex(5)).unwrap(), Some(shared));
    let d = fw.ddr().registers().clone();
    assert!(d.check(0x4000_0000, 10).is_ok());
    assert!(d.check(0x4000_0000, 11).is_err());
    assert!(fw.dsu().registers().check(0x4000_0000, 0).is_ok());
    fw.clear(RegionIndex(5)).unwrap();
    assert_eq!(fw.read(RegionIndex(5)).unwrap(), None);
    assert!(fw.dsu().registers().check(0x4000_0000, 0).is_ok());
    assert!(fw.begin_update().is_ok() && fw.commit_update().is_ok());
    assert_eq!(fw.take_fault(), None);
}

#[test]
fn combined_firewall_refusals_write_nothing() {
    let (ddr, dsu) = tfa_setup();
    let mut fw = Rk3588Firewall::new(ddr, dsu, TFA_SECURE_DDR_SLOTS);
    let before = (fw.ddr().registers().clone(), fw.dsu().registers().clone());
    let ok = Region::secure_rw(0x4000_0000, MIB, 0).unwrap();
    let cases = [
        (RegionIndex(16), ok, Error::NoSuchRegion(RegionIndex(16))),
        (
            RegionIndex(1),
            Region {
                base: 0x4000_1000,
                ..ok
            },
            Error::NotGranuleAligned { addr: 0x4000_1000 },
        ),
        (
            RegionIndex(1),
            Region {
                top: 0x4000_0fff,
                ..ok
            },
            Error::NotGranuleAligned { addr: 0x4000_1000 },
        ),
        (
            RegionIndex(1),
            Region {
                top: 0x8_0000_0000,
                ..ok
            },
            Error::AddressTooWide {
                addr: 0x8_0000_0000,
            },
        ),
        (
            RegionIndex(1),
            Region {
                secure: Access {
                    read: true,
                    write: false,
                },
                ..ok
            },
            Error::Unsupported,
        ),
        (
            RegionIndex(1),
            Region {
                ns: NsAccess {
                    read: IdMask(1),
                    write: IdMask::NONE,
                },
                ..ok
            },
            Error::Unsupported,
        ),
        (
            RegionIndex(1),
            Region {
                ns: NsAccess::rw(IdMask(1 << 100)),
                ..ok
            },
            Error::NoSuchMaster(IdMask(1 << 100)),
        ),
    ];
    for (i, r, e) in cases {
        assert_eq!(fw.program(i, &r), Err(e));
        assert_eq!(
            (fw.ddr().registers().clone(), fw.dsu().registers().clone()),
            before
        );
    }
}

#[test]
fn mismatched_blocks_read_as_unsupported() {
    let mut fw = Rk3588Firewall::new(Model::new(Block::Ddr), Model::new(Block::Dsu), IdMask::NONE);
    fw.ddr().enable_region(2, 0, MIB - 1);
    assert_eq!(fw.read(RegionIndex(2)), Err(Error::Unsupported));
    fw.dsu().enable_region(2, 0, 2 * MIB - 1);
    assert_eq!(fw.read(RegionIndex(2)), Err(Error::Unsupported));
}

#[test]
fn dsu_region_needs_every_channel() {
    let mut dsu = FirewallDsu::new(Model::new(Block::Dsu));
    dsu.registers().write(offset::mst(0), 0xffff_ffff);
    dsu.registers()
        .write(offset::rgn(1), encode_rgn(0, MIB - 1));
    dsu.registers().write(offset::dsu_con(0), 1 << 1);
    assert!(
        dsu.registers().check(0, 0).is_ok(),
        "enabled on one channel only: not in force"
    );
    assert_eq!(dsu.region(1), None);
    dsu.enable_region(1, 0, MIB - 1);
    assert_eq!(dsu.registers().check(0, 0), Err(RegionIndex(1)));
    let g = dsu.registers().generation();
    dsu.enable_region(1, 0, MIB - 1);
    assert_eq!(
        dsu.registers().generation(),
        g,
        "rewriting the same values changes nothing"
    );
}
