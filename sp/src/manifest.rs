//! The SP's FF-A partition manifest (the DTB the SPMC points at from the boot info), parsed once
//! into the facts the SP runs on: where it is loaded, where its heap is, which devices it may map.
//!
//! Binding: TF-A `ffa-manifest-binding.rst` / Hafnium `src/manifest.c`. The heap is the
//! `memory-regions` child named `heap`; the secure UART the `device-regions` child named `uart`.
//! Flex-Mem ([`FlexMemRegions`]): the memory firewall's device regions (`tzc400`; on RK3588
//! `firewall-ddr` and `firewall-dsu`) and the `flexmem-window` memory region.

use fdt::{Fdt, node::FdtNode};

pub const PAGE_SIZE: u64 = 0x1000;

/// Region `attributes` bits of the binding.
pub mod attr {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const EXECUTE: u32 = 0x4;
    pub const NS: u32 = 0x8;
}

/// A page-aligned physical range the manifest grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
    /// [`attr`] bits.
    pub attributes: u32,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// What the SP needs from its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpManifest {
    pub ffa_version: u32,
    pub uuid_cells: [u32; 4],
    pub load_address: u64,
    pub entrypoint_offset: u64,
    pub execution_ctx_count: u32,
    pub messaging_method: u32,
    /// The heap (RW, secure, not executable).
    pub heap: Region,
    /// The secure UART, if the manifest grants one.
    pub uart: Option<Region>,
    pub flexmem: FlexMemRegions,
    /// Flex-NPU's devices; all three or none is used.
    pub flexnpu: FlexNpuRegions,
    /// Root property `flexserve,test-device-root` (32 bytes): a *test* device root secret for
    /// SPMCs that hand the SP no device-root boot information (real Hafnium or TF-A's EL3 SPMC
    /// on QEMU). `xtask` writes it only into those QEMU manifests; the manifest lies in secure
    /// memory only the SP is given.
    pub test_device_root: Option<[u8; 32]>,
}

/// What the manifest grants Flex-Mem; all optional (absent firewall: Flex-Mem is off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlexMemRegions {
    /// Device region `tzc400`: a TZC-400's registers (FVP Base, the testbed).
    pub tzc400: Option<Region>,
    /// Device regions `firewall-ddr` and `firewall-dsu` (RK3588).
    pub firewall_ddr: Option<Region>,
    pub firewall_dsu: Option<Region>,
    /// Memory region `flexmem-window`: NS DRAM the SPMC maps into the SP's secure IPA space.
    pub window: Option<Region>,
}

/// What the manifest grants Flex-NPU: device regions `npu` (the testbed NPU's registers),
/// `smmu` (the SMMUv3 page with its secure interface) and `tzpc` (the TZPC that switches the
/// NPU's MMIO and DMA security).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlexNpuRegions {
    pub npu: Option<Region>,
    pub smmu: Option<Region>,
    pub tzpc: Option<Region>,
    /// The `npu` region's interrupt (its first `interrupts` entry's INTID).
    pub npu_irq: Option<u32>,
}

impl FlexNpuRegions {
    pub fn devices(&self) -> impl Iterator<Item = (&'static str, Region)> + '_ {
        [("npu", self.npu), ("smmu", self.smmu), ("tzpc", self.tzpc)]
            .into_iter()
            .filter_map(|(n, r)| r.map(|r| (n, r)))
    }
}

impl FlexMemRegions {
    /// The firewall's device regions, for the runtime map.
    pub fn devices(&self) -> impl Iterator<Item = (&'static str, Region)> + '_ {
        [
            ("tzc400", self.tzc400),
            ("fw-ddr", self.firewall_ddr),
            ("fw-dsu", self.firewall_dsu),
        ]
        .into_iter()
        .filter_map(|(n, r)| r.map(|r| (n, r)))
    }
}

/// Why the manifest cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// Not a flattened device tree (bad magic or truncated).
    NotDtb,
    /// The root is not `arm,ffa-manifest-1.x`.
    NotFfaManifest,
    /// A mandatory property is missing or has the wrong size.
    Missing(&'static str),
    /// No `memory-regions/heap` node.
    NoHeap,
    /// A region is not page aligned, empty, overflows, or lacks `base-address`.
    BadRegion(&'static str),
    /// A region's attributes do not allow what it is used for.
    BadAttributes {
        region: &'static str,
        attributes: u32,
    },
}

fn prop_u64(node: FdtNode<'_, '_>, name: &'static str) -> Result<u64, ManifestError> {
    node.property(name)
        .and_then(|p| p.as_usize())
        .map(|v| v as u64)
        .ok_or(ManifestError::Missing(name))
}

fn prop_u64_opt(node: FdtNode<'_, '_>, name: &'static str) -> Result<Option<u64>, ManifestError> {
    match node.property(name) {
        None => Ok(None),
        Some(p) => p
            .as_usize()
            .map(|v| Some(v as u64))
            .ok_or(ManifestError::Missing(name)),
    }
}

fn prop_u32(node: FdtNode<'_, '_>, name: &'static str) -> Result<u32, ManifestError> {
    let v = prop_u64(node, name)?;
    u32::try_from(v).map_err(|_| ManifestError::Missing(name))
}

fn node_name<'a>(node: &FdtNode<'_, 'a>) -> &'a str {
    node.name.split('@').next().unwrap_or(node.name)
}

fn region(
    node: FdtNode<'_, '_>,
    what: &'static str,
    load_address: u64,
) -> Result<Region, ManifestError> {
    let base = match prop_u64_opt(node, "base-address")? {
        Some(b) => b,
        None => {
            let off = prop_u64_opt(node, "load-address-relative-offset")?
                .ok_or(ManifestError::BadRegion(what))?;
            load_address
                .checked_add(off)
                .ok_or(ManifestError::BadRegion(what))?
        }
    };
    let pages = prop_u64(node, "pages-count")?;
    let attributes = prop_u32(node, "attributes")?;
    let size = pages
        .checked_mul(PAGE_SIZE)
        .filter(|s| *s != 0)
        .ok_or(ManifestError::BadRegion(what))?;
    if !base.is_multiple_of(PAGE_SIZE) || base.checked_add(size).is_none() {
        return Err(ManifestError::BadRegion(what));
    }
    Ok(Region {
        base,
        size,
        attributes,
    })
}

fn find_child<'b, 'a>(fdt: &'b Fdt<'a>, parent: &str, name: &str) -> Option<FdtNode<'b, 'a>> {
    fdt.find_node(parent)?
        .children()
        .find(|c| node_name(c) == name)
}

impl SpManifest {
    /// Whether the SPMC delivers FFA_MSG_SEND_DIRECT_REQ2 (messaging-method uses the partition
    /// properties bits: Hafnium `FFA_PARTITION_DIRECT_REQ2_RECV`).
    pub fn receives_direct_req2(&self) -> bool {
        self.messaging_method & ffa::PartitionProperties::DIRECT_REQ2_RECV != 0
    }

    /// Parses and validates the manifest DTB.
    pub fn parse(dtb: &[u8]) -> Result<Self, ManifestError> {
        let fdt = Fdt::new(dtb).map_err(|_| ManifestError::NotDtb)?;
        let root = fdt.find_node("/").ok_or(ManifestError::NotDtb)?;
        let is_ffa = root
            .compatible()
            .map(|c| c.all().any(|s| s.starts_with("arm,ffa-manifest-1.")))
            .unwrap_or(false);
        if !is_ffa {
            return Err(ManifestError::NotFfaManifest);
        }
        let uuid = root
            .property("uuid")
            .map(|p| p.value)
            .filter(|v| v.len() >= 16)
            .ok_or(ManifestError::Missing("uuid"))?;
        let mut uuid_cells = [0u32; 4];
        for (c, b) in uuid_cells.iter_mut().zip(uuid.chunks_exact(4)) {
            *c = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        let load_address = prop_u64(root, "load-address")?;

        let heap_node = find_child(&fdt, "/memory-regions", "heap").ok_or(ManifestError::NoHeap)?;
        let heap = region(heap_node, "heap", load_address)?;
        let rw = attr::READ | attr::WRITE;
        if heap.attributes & rw != rw || heap.attributes & (attr::EXECUTE | attr::NS) != 0 {
            return Err(ManifestError::BadAttributes {
                region: "heap",
                attributes: heap.attributes,
            });
        }
        let uart = match find_child(&fdt, "/device-regions", "uart") {
            None => None,
            Some(n) => {
                let r = region(n, "uart", load_address)?;
                if r.attributes & rw != rw {
                    return Err(ManifestError::BadAttributes {
                        region: "uart",
                        attributes: r.attributes,
                    });
                }
                Some(r)
            }
        };
        let device = |name: &'static str| -> Result<Option<Region>, ManifestError> {
            match find_child(&fdt, "/device-regions", name) {
                None => Ok(None),
                Some(n) => {
                    let r = region(n, name, load_address)?;
                    if r.attributes & rw != rw {
                        return Err(ManifestError::BadAttributes {
                            region: name,
                            attributes: r.attributes,
                        });
                    }
                    Ok(Some(r))
                }
            }
        };
        let window = match find_child(&fdt, "/memory-regions", "flexmem-window") {
            None => None,
            Some(n) => {
                let r = region(n, "flexmem-window", load_address)?;
                if r.attributes & rw != rw || r.attributes & attr::EXECUTE != 0 {
                    return Err(ManifestError::BadAttributes {
                        region: "flexmem-window",
                        attributes: r.attributes,
                    });
                }
                Some(r)
            }
        };
        let flexmem = FlexMemRegions {
            tzc400: device("tzc400")?,
            firewall_ddr: device("firewall-ddr")?,
            firewall_dsu: device("firewall-dsu")?,
            window,
        };
        let npu_irq = find_child(&fdt, "/device-regions", "npu")
            .and_then(|n| n.property("interrupts"))
            .and_then(|p| p.value.get(..4))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let flexnpu = FlexNpuRegions {
            npu: device("npu")?,
            smmu: device("smmu")?,
            tzpc: device("tzpc")?,
            npu_irq,
        };
        Ok(SpManifest {
            ffa_version: prop_u32(root, "ffa-version")?,
            uuid_cells,
            load_address,
            entrypoint_offset: prop_u64_opt(root, "entrypoint-offset")?.unwrap_or(0),
            execution_ctx_count: prop_u32(root, "execution-ctx-count")?,
            messaging_method: prop_u32(root, "messaging-method")?,
            heap,
            uart,
            flexmem,
            flexnpu,
            test_device_root: match root.property("flexserve,test-device-root") {
                None => None,
                Some(p) => {
                    Some(p.value.try_into().map_err(|_| {
                        ManifestError::Missing("32-byte flexserve,test-device-root")
                    })?)
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{path::PathBuf, process::Command};

    /// Compiles a DTS with `dtc` (installed by `cargo xtask deps`).
    fn dtc(dts: &str) -> Vec<u8> {
        let out = Command::new("dtc")
            .args(["-I", "dts", "-O", "dtb", "-o", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(dts.as_bytes())?;
                c.wait_with_output()
            })
            .expect("dtc must be installed");
        assert!(out.status.success(), "dtc failed");
        out.stdout
    }

    fn platform_dts(platform: &str) -> String {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fvp")
            .join(platform)
            .join("sp-manifest.dts");
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn platform_manifests_carry_the_service_uuid_and_valid_regions() {
        // (platform, load-address, entrypoint-offset, UART, execution contexts, REQ2)
        for (platform, load, entry, uart, ctx, req2) in [
            ("qemu", 0x0e30_0000, 0x4000, Some(0x0904_0000), 1, true),
            ("fvp-base", 0x0628_0000, 0x4000, Some(0x1c0b_0000), 8, true),
            // EL3 SPMC: raw image entered at the BL32 base; one context per PE.
            ("rk3588", 0x0840_0000, 0, None, 8, true),
            ("qemu-el3", 0x0e10_0000, 0, Some(0x0904_0000), 32, true),
        ] {
            let m = SpManifest::parse(&dtc(&platform_dts(platform))).unwrap();
            assert_eq!(
                m.uuid_cells,
                flexserve_proto::service_uuid_manifest_cells(),
                "{platform}"
            );
            assert_eq!(m.ffa_version, 0x10002, "{platform}");
            assert_eq!(m.load_address, load, "{platform}");
            assert_eq!(m.entrypoint_offset, entry, "{platform}");
            assert_eq!(m.execution_ctx_count, ctx, "{platform}");
            assert_eq!(m.receives_direct_req2(), req2, "{platform}");
            assert_eq!(m.uart.map(|u| u.base), uart, "{platform}");
            // The heap lies outside the 1 MiB package or image.
            assert!(
                m.heap.base >= load + 0x10_0000 || m.heap.end() <= load,
                "{platform}"
            );
            assert!(m.heap.size >= 4 << 20, "{platform}");
            // The heap holds the secondary contexts' stacks with room to spare.
            let stacks = crate::ec::Slots::bytes(ctx as u16);
            assert!(stacks * 4 < m.heap.size, "{platform}");
            // Flex-Mem: (firewall device, window) per platform.
            let fm = m.flexmem;
            let want = match platform {
                "qemu" => (Some(0x090c_0000), Some(0x5000_0000)),
                "fvp-base" => (Some(0x2a4a_0000), Some(0xf700_0000)),
                "rk3588" => (Some(0xfe03_0000), None),
                _ => (None, None),
            };
            let got = (
                fm.tzc400.or(fm.firewall_ddr).map(|r| r.base),
                fm.window.map(|w| w.base),
            );
            assert_eq!(got, want, "{platform}");
            if platform == "rk3588" {
                assert_eq!(fm.firewall_dsu.map(|r| r.base), Some(0xfe01_0000));
            }
            if let Some(w) = fm.window {
                assert_eq!(
                    w.attributes & attr::NS,
                    0,
                    "{platform}: the window is secure"
                );
            }
            if platform == "qemu-el3" {
                // TF-A's QEMU BL32 range: SEC_DRAM 0x0e100000 + 15 MiB.
                assert!(m.heap.end() <= 0x0f00_0000);
            }
        }
    }

    const GOOD: &str = r#"/dts-v1/; / { compatible = "arm,ffa-manifest-1.0";
        ffa-version = <0x10002>; uuid = <1 2 3 4>; execution-ctx-count = <1>;
        load-address = <0x0 0x1000000>; messaging-method = <1>;
        memory-regions { heap { pages-count = <4>; base-address = <0x0 0x2000000>;
        attributes = <3>; }; }; };"#;

    #[test]
    fn parses_minimal_manifest() {
        let m = SpManifest::parse(&dtc(GOOD)).unwrap();
        assert_eq!(m.uuid_cells, [1, 2, 3, 4]);
        assert_eq!(
            m.heap,
            Region {
                base: 0x200_0000,
                size: 0x4000,
                attributes: 3
            }
        );
        assert_eq!(m.uart, None);
        assert_eq!(m.test_device_root, None);
        let with_root = GOOD.replacen(
            "uuid",
            "flexserve,test-device-root = [00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f \
             10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f];\n\tuuid",
            1,
        );
        let m = SpManifest::parse(&dtc(&with_root)).unwrap();
        assert_eq!(m.test_device_root, Some(core::array::from_fn(|i| i as u8)));
        let short = GOOD.replacen("uuid", "flexserve,test-device-root = [00 01];\n\tuuid", 1);
        assert!(SpManifest::parse(&dtc(&short)).is_err());
    }

    #[test]
    fn rejects_bad_manifests() {
        assert_eq!(SpManifest::parse(&[0u8; 64]), Err(ManifestError::NotDtb));
        let cases = [
            (
                GOOD.replace("arm,ffa-manifest-1.0", "acme,thing"),
                ManifestError::NotFfaManifest,
            ),
            (GOOD.replace("heap {", "stack {"), ManifestError::NoHeap),
            (
                GOOD.replace("attributes = <3>", "attributes = <7>"),
                ManifestError::BadAttributes {
                    region: "heap",
                    attributes: 7,
                },
            ),
            (
                GOOD.replace("attributes = <3>", "attributes = <0xb>"),
                ManifestError::BadAttributes {
                    region: "heap",
                    attributes: 0xb,
                },
            ),
            (
                GOOD.replace("0x2000000", "0x2000800"),
                ManifestError::BadRegion("heap"),
            ),
            (
                GOOD.replace("pages-count = <4>", "pages-count = <0>"),
                ManifestError::BadRegion("heap"),
            ),
            (
                GOOD.replace("uuid = <1 2 3 4>;", ""),
                ManifestError::Missing("uuid"),
            ),
        ];
        for (dts, want) in cases {
            assert_eq!(SpManifest::parse(&dtc(&dts)), Err(want), "{dts}");
        }
    }

    #[test]
    fn relative_heap_and_uart() {
        let dts = GOOD.replace(
            "base-address = <0x0 0x2000000>;",
            "load-address-relative-offset = <0x100000>;",
        );
        let dts = dts.replace(
            "}; }; };",
            "}; }; device-regions { uart { base-address = <0x0 0x9040000>; pages-count = <1>; attributes = <3>; }; }; };",
        );
        let m = SpManifest::parse(&dtc(&dts)).unwrap();
        assert_eq!(m.heap.base, 0x110_0000);
        assert_eq!(m.uart.unwrap().base, 0x904_0000);
        assert_eq!(m.flexmem, FlexMemRegions::default());
    }

    #[test]
    fn flexmem_regions() {
        let dts = GOOD.replace(
            "}; }; };",
            "}; flexmem-window { base-address = <0x0 0x50000000>; pages-count = <0x8000>; \
             attributes = <3>; }; }; device-regions { tzc400 { base-address = <0x0 0x90c0000>; \
             pages-count = <1>; attributes = <3>; }; }; };",
        );
        let m = SpManifest::parse(&dtc(&dts)).unwrap();
        let w = m.flexmem.window.unwrap();
        assert_eq!((w.base, w.size), (0x5000_0000, 128 << 20));
        assert_eq!(m.flexmem.tzc400.unwrap().base, 0x90c_0000);
        assert_eq!(m.flexmem.devices().count(), 1);
        let exec = dts.replace(
            "pages-count = <0x8000>; attributes = <3>",
            "pages-count = <0x8000>; attributes = <7>",
        );
        assert_eq!(
            SpManifest::parse(&dtc(&exec)),
            Err(ManifestError::BadAttributes {
                region: "flexmem-window",
                attributes: 7
            })
        );
        let ro = dts.replace(
            "pages-count = <1>; attributes = <3>",
            "pages-count = <1>; attributes = <1>",
        );
        assert_eq!(
            SpManifest::parse(&dtc(&ro)),
            Err(ManifestError::BadAttributes {
                region: "tzc400",
                attributes: 1
            })
        );
    }
}
