//! Validating an SP package and deriving what the SPMC needs to start the SP: where it goes,
//! its stage-2 mappings, its boot-info blob and its entry registers (Hafnium's rules,
//! platform-facts.md sec. 3.2-3.3 and 4.3-4.4). Host-tested; `arch::el2` does the copying.

use ffa::Regs;
use ffa::boot_info::{self, BootInfoContents, BootInfoDesc, BootInfoName, BootInfoType};
use flexserve_proto::device_root;
use testbed_layout::{secure_ram, spkg, spmc_memory, virt};

use crate::manifest::{self, ATTR_NS, ManifestError, Region, SpManifest};
use crate::spmc::FIRST_SP_ID;
use crate::stage2::{Attrs, MapError, PAGE, Stage2};

/// Memory the SP package is given (Hafnium's default `mem_size`): package + image + BSS.
pub const PKG_MEM: u64 = 0x10_0000;
/// Size of the boot-info blob the SPMC writes: header, the manifest descriptor, the device-root
/// descriptor and the root secret it points at.
pub const BOOT_INFO_SIZE: usize =
    boot_info::HEADER_SIZE + 2 * boot_info::DESC_SIZE + device_root::DEVICE_ROOT_LEN;
/// Where in the blob the device root lies.
const DEVICE_ROOT_OFFSET: usize = boot_info::HEADER_SIZE + 2 * boot_info::DESC_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// No valid slot header in front of the package in flash.
    NoSlot,
    Package(spkg::Error),
    Manifest(ManifestError),
    /// An address or size the testbed cannot give the SP (what, value).
    Placement(&'static str, u64),
    Stage2(MapError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NoSlot => write!(f, "no SP package slot in flash"),
            LoadError::Package(e) => write!(f, "bad SPKG header: {e:?}"),
            LoadError::Manifest(e) => write!(f, "bad manifest: {e}"),
            LoadError::Placement(what, a) => write!(f, "{what} {a:#x} not allowed"),
            LoadError::Stage2(e) => write!(f, "stage-2 mapping failed: {e:?}"),
        }
    }
}

/// A package that passed every check.
#[derive(Clone, Copy, Debug)]
pub struct Package<'a> {
    pub header: spkg::Header,
    pub manifest: SpManifest,
    pub id: u16,
    pub bytes: &'a [u8],
}

/// Checks the SPKG header, the manifest and where everything would go.
pub fn validate(pkg: &[u8]) -> Result<Package<'_>, LoadError> {
    let header = spkg::Header::decode(pkg, pkg.len()).map_err(LoadError::Package)?;
    if pkg.len() as u64 > PKG_MEM {
        return Err(LoadError::Placement("package size", pkg.len() as u64));
    }
    let pm_start = header.pm_offset as usize;
    let pm = pm_start
        .checked_add(header.pm_size as usize)
        .and_then(|end| pkg.get(pm_start..end))
        .ok_or(LoadError::Package(spkg::Error::BadLayout))?;
    if (header.pm_offset as usize) < BOOT_INFO_SIZE {
        // The boot-info blob written at +0 would overwrite the manifest.
        return Err(LoadError::Placement(
            "pm_offset",
            u64::from(header.pm_offset),
        ));
    }
    let manifest = manifest::parse(pm).map_err(LoadError::Manifest)?;
    check_placement(&manifest)?;
    let id = manifest.id.unwrap_or(FIRST_SP_ID);
    if id != FIRST_SP_ID {
        // One SP: the testbed's endpoint table has only 0x8001.
        return Err(LoadError::Placement("partition id", u64::from(id)));
    }
    Ok(Package {
        header,
        manifest,
        id,
        bytes: pkg,
    })
}

/// A secure memory region over NS DRAM (the Flex-Mem window, the carve-out): the firewall
/// decides page by page whether the SP's secure IPA space maps it (`firewall::enforce`), so
/// the loader neither maps nor clears it.
pub fn is_gated(r: &Region) -> bool {
    !r.device
        && r.attributes & ATTR_NS == 0
        && r.base >= virt::NS_RAM_BASE
        && r.base < virt::NS_RAM_BASE + virt::NS_RAM_SIZE
}

/// A device region that is exactly one of the testbed's emulated devices (TZC-400, NPU, SMMU,
/// TZPC): left out of the stage-2 so that every access traps to the SPMC.
pub fn is_emulated_device(r: &Region) -> bool {
    r.device
        && virt::EMULATED
            .iter()
            .any(|&(b, s)| r.base == b && r.pages * PAGE == s)
}

fn region_size(r: &Region) -> Result<u64, LoadError> {
    r.pages
        .checked_mul(PAGE)
        .filter(|s| r.base.checked_add(*s).is_some())
        .ok_or(LoadError::Placement("region size", r.pages))
}

/// Hafnium's placement rules (`src/manifest.c`): the package in the partitions' secure RAM;
/// secure memory regions inside the SPMC's secure memory ranges and NS ones inside its NS
/// ranges (`check_partition_memory_is_valid` over the `memory` / `ns-memory` nodes, here
/// `testbed_layout::spmc_memory`); device regions among the `virt` devices below secure RAM
/// (its `device-memory`), one over the emulated devices' span exactly one of them; page-aligned regions
/// that overlap neither each other nor the package (`check_and_record_memory_used`).
pub fn check_placement(m: &SpManifest) -> Result<(), LoadError> {
    let la = m.load_address;
    if !la.is_multiple_of(PAGE)
        || la < secure_ram::PARTITIONS_BASE
        || la.saturating_add(PKG_MEM) > secure_ram::PARTITIONS_END
    {
        return Err(LoadError::Placement("load-address", la));
    }
    if m.entrypoint_offset >= PKG_MEM || !m.entrypoint_offset.is_multiple_of(4) {
        return Err(LoadError::Placement(
            "entrypoint-offset",
            m.entrypoint_offset,
        ));
    }
    let regions = m.regions();
    for (i, r) in regions.iter().enumerate() {
        let size = region_size(r)?;
        let end = r.base + size;
        let (lo, hi) = virt::EMULATED_SPAN;
        let ok = if r.device {
            r.base >= virt::GICD_BASE
                && end <= virt::SECURE_RAM_BASE
                && (end <= lo || r.base >= hi || is_emulated_device(r))
        } else if r.attributes & ATTR_NS != 0 {
            spmc_memory::contained(&spmc_memory::NS, r.base, size)
        } else {
            spmc_memory::contained(&spmc_memory::SECURE, r.base, size)
        };
        if !ok || !r.base.is_multiple_of(PAGE) {
            return Err(LoadError::Placement("region base-address", r.base));
        }
        let hits = |b: u64, e: u64| r.base < e && b < end;
        if hits(la, la + PKG_MEM) {
            return Err(LoadError::Placement(
                "region overlapping the package",
                r.base,
            ));
        }
        for o in &regions[..i] {
            if hits(o.base, o.base + region_size(o)?) {
                return Err(LoadError::Placement("overlapping region", r.base));
            }
        }
    }
    Ok(())
}

/// Builds the SP's secure (`sec`) and non-secure (`ns`) IPA spaces, IPA == PA: the package
/// memory RWX, memory regions per their attributes, device regions as Device-nGnRE; regions
/// with the NS attribute go into the NS space. Gated regions ([`is_gated`]) and the emulated
/// device ([`is_emulated_device`]) are left out. Overlaps are refused.
pub fn build_stage2<'t>(
    m: &SpManifest,
    sec: &mut Stage2<'t>,
    ns: &mut Stage2<'t>,
) -> Result<(), LoadError> {
    sec.map(m.load_address, m.load_address, PKG_MEM, Attrs::RWX)
        .map_err(LoadError::Stage2)?;
    for r in m.regions() {
        if is_gated(r) || is_emulated_device(r) {
            continue;
        }
        let attrs = Attrs::from_manifest(r.attributes, r.device);
        let space = if r.attributes & ATTR_NS != 0 {
            &mut *ns
        } else {
            &mut *sec
        };
        let size = region_size(r)?;
        space
            .map(r.base, r.base, size, attrs)
            .map_err(LoadError::Stage2)?;
    }
    Ok(())
}

/// The boot-info blob for the package base (None if the manifest asks for none): the manifest
/// FDT, as Hafnium writes it (the header's size spans up to the end of the manifest,
/// platform-facts.md sec. 4.4), and the testbed's own descriptor with the device root secret
/// (`flexserve_proto::device_root`), which lies in the blob: SP memory no one else maps.
pub fn boot_info(p: &Package) -> Result<Option<[u8; BOOT_INFO_SIZE]>, LoadError> {
    let m = &p.manifest;
    if !m.boot_info_manifest {
        return Ok(None);
    }
    let h = p.header;
    let version = ffa::Version::from_u32(m.ffa_version)
        .map_err(|_| LoadError::Placement("ffa-version", u64::from(m.ffa_version)))?;
    let manifest = BootInfoDesc::manifest_fdt(m.load_address + u64::from(h.pm_offset), h.pm_size);
    let root = BootInfoDesc {
        name: BootInfoName::String(device_root::DEVICE_ROOT_NAME),
        kind: BootInfoType::from_u8(device_root::DEVICE_ROOT_TYPE),
        size: device_root::DEVICE_ROOT_LEN as u32,
        contents: BootInfoContents::Address(m.load_address + DEVICE_ROOT_OFFSET as u64),
    };
    let mut blob = [0u8; BOOT_INFO_SIZE];
    boot_info::build(
        &mut blob,
        version,
        &[manifest, root],
        Some(h.pm_offset + h.pm_size),
    )
    .map_err(|_| LoadError::Placement("boot info", 0))?;
    blob[DEVICE_ROOT_OFFSET..].copy_from_slice(&testbed_layout::TEST_DEVICE_ROOT);
    Ok(Some(blob))
}

/// The SP's entry point and registers: x[gp-register-num] = boot-info address (the package
/// base) when there is a boot-info node; x4 = 0 (physical core index); everything else 0.
pub fn entry(p: &Package) -> (u64, Regs) {
    let m = &p.manifest;
    let mut regs = [0u64; 18];
    if let (true, Some(gp)) = (m.boot_info_manifest, m.gp_register_num) {
        regs[gp as usize] = m.load_address;
    }
    (m.load_address + m.entrypoint_offset, regs)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::manifest::Region;
    use crate::stage2::Table;
    use std::vec;
    use std::vec::Vec;

    const DTB: &[u8] = include_bytes!("../bringup/sp-manifest.dtb");

    fn package(image: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; spkg::IMG_OFFSET as usize];
        let h = spkg::Header::new(DTB.len() as u32, image.len() as u32);
        p[..spkg::HEADER_SIZE].copy_from_slice(&h.encode());
        p[0x1000..0x1000 + DTB.len()].copy_from_slice(DTB);
        p.extend_from_slice(image);
        p
    }

    #[test]
    fn the_bringup_package_validates() {
        let bytes = package(&[0xd5; 64]);
        let p = validate(&bytes).unwrap();
        assert_eq!(p.id, 0x8001);
        assert_eq!(p.header.img_size, 64);
        let (pc, regs) = entry(&p);
        assert_eq!(pc, 0x0e30_4000);
        assert_eq!(regs[0], 0x0e30_0000, "gp-register-num 0 = boot info");
        assert!(regs[1..].iter().all(|&r| r == 0));
        // As the SP sees it: the blob over the package header, the manifest after it.
        let mut mem = bytes.clone();
        mem[..BOOT_INFO_SIZE].copy_from_slice(&boot_info(&p).unwrap().unwrap());
        let bi = ffa::boot_info::BootInfo::parse(&mem).unwrap();
        assert_eq!(
            bi.manifest_fdt(),
            Some((0x0e30_1000, DTB.len() as u32)),
            "points at the manifest"
        );
        let root = bi
            .descriptors()
            .find(|d| d.kind.to_u8() == device_root::DEVICE_ROOT_TYPE)
            .expect("device root descriptor");
        assert_eq!(
            root.name,
            BootInfoName::String(device_root::DEVICE_ROOT_NAME)
        );
        let BootInfoContents::Address(a) = root.contents else {
            panic!("by address")
        };
        let at = (a - 0x0e30_0000) as usize;
        assert_eq!(mem[at..at + 32], testbed_layout::TEST_DEVICE_ROOT);
        assert!(at + 32 <= 0x1000, "inside the blob, before the manifest");
    }

    #[test]
    fn bad_packages_are_rejected() {
        let good = package(&[0; 16]);
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(matches!(
            validate(&bad_magic),
            Err(LoadError::Package(spkg::Error::BadMagic(_)))
        ));
        assert!(matches!(
            validate(&good[..0x3000]),
            Err(LoadError::Package(spkg::Error::BadLayout))
        ));
        let mut bad_dtb = good.clone();
        bad_dtb[0x1000] = 0;
        assert_eq!(
            validate(&bad_dtb).unwrap_err(),
            LoadError::Manifest(ManifestError::NotDtb)
        );
        let huge = package(&vec![0; PKG_MEM as usize]);
        assert!(matches!(
            validate(&huge),
            Err(LoadError::Placement("package size", _))
        ));
    }

    fn manifest() -> SpManifest {
        validate(&package(&[0; 4])).unwrap().manifest
    }

    #[test]
    fn placement_rules() {
        let ok = manifest();
        assert_eq!(check_placement(&ok), Ok(()));
        // (A closure with `..ok` struct update trips a rustc 1.95 ICE; mutate a copy instead.)
        let at = |la| {
            let mut m = ok;
            m.load_address = la;
            m
        };
        for la in [0x0e00_0000, 0x0e30_0800, 0x0ef0_1000, 0x4000_0000] {
            assert_eq!(
                check_placement(&at(la)),
                Err(LoadError::Placement("load-address", la)),
                "{la:#x}"
            );
        }
        // The manifest with `r` as its only region.
        let with = |r: Region| {
            let mut m = ok;
            m.regions[0] = r;
            m.region_count = 1;
            m
        };
        let region = |base, attributes, device| Region {
            name: Default::default(),
            base,
            pages: 1,
            attributes,
            device,
            interrupt: None,
        };
        // Secure memory only in the partitions' RAM, never the testbed's own.
        assert!(check_placement(&with(region(0x0e10_0000, 3, false))).is_err());
        assert!(check_placement(&with(region(0x4000_0000, 3, false))).is_err());
        assert_eq!(
            check_placement(&with(region(0x4000_0000, 0xb, false))),
            Ok(())
        );
        // Devices: below secure RAM, not flash.
        assert!(check_placement(&with(region(0x0, 3, true))).is_err());
        assert_eq!(check_placement(&with(region(0x0904_0000, 3, true))), Ok(()));
        let wraps = Region {
            pages: u64::MAX,
            ..region(0x0e40_0000, 3, false)
        };
        assert!(check_placement(&with(wraps)).is_err());
        // Hafnium's memory ranges: secure regions in NS DRAM only inside the window or the
        // carve-out (the SPMC's secure `memory`), NS regions never in the carve-out.
        let w = testbed_layout::ns_ram::FLEXMEM_WINDOW_BASE;
        let c = testbed_layout::ns_ram::CARVEOUT_BASE;
        assert_eq!(check_placement(&with(region(w, 3, false))), Ok(()));
        assert_eq!(check_placement(&with(region(c, 3, false))), Ok(()));
        assert_eq!(
            check_placement(&with(region(w, 0xb, false))),
            Ok(()),
            "window is NS too"
        );
        assert!(check_placement(&with(region(c, 0xb, false))).is_err());
        assert!(check_placement(&with(region(w - PAGE, 3, false))).is_err());
        // The emulated TZC-400: its exact block, or clear of it.
        assert_eq!(
            check_placement(&with(region(virt::TZC400_BASE, 3, true))),
            Ok(())
        );
        let mut tzc2 = region(virt::TZC400_BASE - PAGE, 3, true);
        tzc2.pages = 2;
        assert!(check_placement(&with(tzc2)).is_err());
        // Regions overlapping each other or the package are refused before any mapping.
        let mut m = ok;
        m.regions[1] = region(0x0e40_0000, 3, false);
        assert_eq!(
            check_placement(&m),
            Err(LoadError::Placement("overlapping region", 0x0e40_0000))
        );
        assert!(check_placement(&with(region(0x0e30_8000, 3, false))).is_err());
    }

    /// Compiles a DTS with `dtc` (installed by `cargo xtask deps`).
    fn dtc(path: &str) -> Vec<u8> {
        let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
        let out = std::process::Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o", "-"])
            .arg(&p)
            .output()
            .expect("dtc must be installed");
        assert!(out.status.success(), "dtc failed on {}", p.display());
        out.stdout
    }

    #[test]
    fn the_flexserve_manifest_validates_with_its_firewall_regions() {
        let m = manifest::parse(&dtc("../../fvp/qemu/sp-manifest.dts")).unwrap();
        assert_eq!(check_placement(&m), Ok(()));
        let find = |n: &str| *m.regions().iter().find(|r| r.name.as_str() == n).unwrap();
        let w = find("flexmem-window");
        assert!(is_gated(&w) && w.attributes == 3);
        assert_eq!(
            (w.base, w.pages * PAGE),
            (
                testbed_layout::ns_ram::FLEXMEM_WINDOW_BASE,
                testbed_layout::ns_ram::FLEXMEM_WINDOW_SIZE
            )
        );
        let c = find("carveout");
        assert!(is_gated(&c));
        assert_eq!(
            (c.base, c.pages * PAGE),
            (
                testbed_layout::ns_ram::CARVEOUT_BASE,
                testbed_layout::ns_ram::CARVEOUT_SIZE
            )
        );
        let t = find("tzc400");
        assert!(is_emulated_device(&t) && t.pages * PAGE == virt::TZC400_SIZE);
        // The NPU's interrupt as the testbed raises it: non-secure at boot, level, SPI.
        let n = find("npu");
        assert!(is_emulated_device(&n));
        assert_eq!(
            n.interrupt,
            Some((testbed_layout::npu::INTID, 0xaa0)),
            "fvp/qemu/sp-manifest.dts npu interrupts"
        );
        // Neither is mapped at load: the firewall decides (the heap and UART are).
        let mut sp = vec![Table::EMPTY; 8];
        let mut np = vec![Table::EMPTY; 4];
        let mut sec = Stage2::new(&mut sp, 0x0e10_0000).unwrap();
        let mut ns = Stage2::new(&mut np, 0x0e20_0000).unwrap();
        build_stage2(&m, &mut sec, &mut ns).unwrap();
        assert_eq!(sec.lookup(w.base), None);
        assert_eq!(sec.lookup(c.base), None);
        assert_eq!(sec.lookup(virt::TZC400_BASE), None);
        assert!(sec.lookup(find("heap").base).is_some());
        assert!(sec.lookup(find("uart").base).is_some());
    }

    #[test]
    fn stage2_from_manifest() {
        let mut m = manifest();
        m.regions[m.region_count] = Region {
            name: Default::default(),
            base: 0x4100_0000,
            pages: 2,
            attributes: 0xb,
            device: false,
            interrupt: None,
        };
        m.region_count += 1;
        let mut sp = vec![Table::EMPTY; 8];
        let mut np = vec![Table::EMPTY; 4];
        let mut sec = Stage2::new(&mut sp, 0x0e10_0000).unwrap();
        let mut ns = Stage2::new(&mut np, 0x0e20_0000).unwrap();
        build_stage2(&m, &mut sec, &mut ns).unwrap();
        assert_eq!(sec.lookup(0x0e30_4000).map(|x| x.1), Some(Attrs::RWX));
        assert_eq!(sec.lookup(0x0e3f_f000).map(|x| x.0), Some(0x0e3f_f000));
        assert_eq!(
            sec.lookup(0x0e40_0000).map(|x| x.1.exec),
            Some(false),
            "heap RW"
        );
        assert_eq!(sec.lookup(0x0e40_f000).map(|x| x.1.write), Some(true));
        assert_eq!(sec.lookup(0x0e41_0000), None, "heap is 16 pages");
        assert_eq!(sec.lookup(0x0904_0000).map(|x| x.1.device), Some(true));
        assert_eq!(
            sec.lookup(0x4100_0000),
            None,
            "NS region not in the secure space"
        );
        assert_eq!(ns.lookup(0x4100_1000).map(|x| x.0), Some(0x4100_1000));
        assert_eq!(ns.lookup(0x0e30_0000), None);
        // Overlapping regions are refused.
        let mut m2 = manifest();
        m2.regions[0].base = 0x0e3f_f000;
        let mut sp = vec![Table::EMPTY; 8];
        let mut np = vec![Table::EMPTY; 4];
        let mut sec = Stage2::new(&mut sp, 0x0e10_0000).unwrap();
        let mut ns = Stage2::new(&mut np, 0x0e20_0000).unwrap();
        assert_eq!(
            build_stage2(&m2, &mut sec, &mut ns),
            Err(LoadError::Stage2(MapError::AlreadyMapped {
                ipa: 0x0e3f_f000
            }))
        );
    }
}
