//! The QEMU testbed's platform facts, in one place: the `virt` machine's memory map as the
//! testbed uses it, the flash layout `xtask` writes and the testbed reads, and the testbed's own
//! control calls.
//!
//! Used by the testbed firmware, the normal-world client, their build scripts (linker scripts
//! are generated from these constants) and `xtask`. The SP does not use this crate: it learns its
//! platform from its FF-A manifest.
//!
//! Machine: `qemu-system-aarch64 -M virt,secure=on,virtualization=on,gic-version=3 -cpu max
//! -m 1024` (DESIGN.md sec. 9; platform-facts.md sec. 4.6).
#![no_std]

/// QEMU `virt` memory map (secure=on).
pub mod virt {
    /// Secure flash (`-bios`), executed in place by the testbed at reset. Secure-only.
    pub const SECURE_FLASH_BASE: u64 = 0x0000_0000;
    pub const SECURE_FLASH_SIZE: u64 = 0x0400_0000;
    /// GICv3 distributor and redistributors.
    pub const GICD_BASE: u64 = 0x0800_0000;
    pub const GICR_BASE: u64 = 0x080a_0000;
    /// Non-secure PL011 (first `-serial`).
    pub const NS_UART_BASE: u64 = 0x0900_0000;
    /// Secure PL011 (second `-serial`), secure-only.
    pub const SECURE_UART_BASE: u64 = 0x0904_0000;
    /// Secure PL061 GPIO wired to power-off (pin 3) and reset (pin 4).
    pub const SECURE_GPIO_BASE: u64 = 0x090b_0000;
    /// The testbed's emulated TZC-400 (TrustZone address space controller) register block.
    /// Testbed-only: QEMU `virt` has no device here (the range after the secure GPIO is free
    /// in its memory map). The SPMC leaves it out of the SP's stage-2, so every SP access traps
    /// and is emulated over `tzasc::tzc400::Model`; the normal world's stage-2 leaves it out
    /// too (the real TZC-400's programming interface is secure-only). One filter, regions 0-8,
    /// in front of NS DRAM (`virt::NS_RAM_*`); see `firewall` for what firmware programs.
    pub const TZC400_BASE: u64 = 0x090c_0000;
    pub const TZC400_SIZE: u64 = 0x1000;
    /// The testbed's emulated NPU (`npu_driver::testbed`'s register map): trapped for both
    /// worlds, answered for the normal world only while the TZPC lets non-secure accesses in.
    pub const NPU_BASE: u64 = 0x090d_0000;
    pub const NPU_SIZE: u64 = 0x1000;
    /// The testbed's emulated SMMUv3, secure programming interface only (page 0: the `SMMU_S_*`
    /// registers at +0x8000, `smmu::regs`); the NPU's DMA goes through it while the NPU is a
    /// secure master. Secure-only.
    pub const SMMU_BASE: u64 = 0x090e_0000;
    pub const SMMU_SIZE: u64 = 0x1_0000;
    /// The testbed's TrustZone protection controller (Arm BP147 TZPC layout: DECPROT0 status,
    /// set, clear at +0x800/+0x804/+0x808), the NPU's security switch. Secure-only.
    pub const TZPC_BASE: u64 = 0x090f_0000;
    pub const TZPC_SIZE: u64 = 0x1000;
    /// The testbed's emulated devices (base, size): in no stage-2, so every access traps.
    pub const EMULATED: [(u64, u64); 4] = [
        (TZC400_BASE, TZC400_SIZE),
        (NPU_BASE, NPU_SIZE),
        (SMMU_BASE, SMMU_SIZE),
        (TZPC_BASE, TZPC_SIZE),
    ];
    /// The span they lie in (nothing else of QEMU `virt` is there).
    pub const EMULATED_SPAN: (u64, u64) = (TZC400_BASE, 0x0910_0000);
    /// Secure RAM, 16 MiB, secure-only.
    pub const SECURE_RAM_BASE: u64 = 0x0e00_0000;
    pub const SECURE_RAM_SIZE: u64 = 0x0100_0000;
    /// Normal-world DRAM (`-m 1024`).
    pub const NS_RAM_BASE: u64 = 0x4000_0000;
    pub const NS_RAM_SIZE: u64 = 0x4000_0000;
    pub const PAGE_SIZE: u64 = 0x1000;
}

/// The testbed's CPUs (`-smp N`, QEMU `virt`: MPIDR Aff0 = CPU index, one GICv3 redistributor
/// each). CPU 0 boots the monitor, the SPMC and the normal world; CPUs 1.. are the normal
/// world's to start with PSCI CPU_ON, except the last one when there are at least
/// [`cpus::NPU_MIN`]: that one runs the emulated NPU (DESIGN.md sec. 9) and is never the normal
/// world's.
pub mod cpus {
    /// The most CPUs the testbed drives (stacks and contexts are sized for this many).
    pub const MAX: usize = 4;
    /// What `xtask` runs the testbed with unless told otherwise.
    pub const DEFAULT: usize = 3;
    /// From this many CPUs on, the last one is the NPU's.
    pub const NPU_MIN: usize = 3;

    /// The CPU that runs the emulated NPU on a machine of `count` CPUs.
    pub const fn npu_cpu(count: usize) -> Option<usize> {
        if count >= NPU_MIN {
            Some(count - 1)
        } else {
            None
        }
    }
}

/// The emulated NPU's integration: its DMA's stream id and firewall identity (the TZPC bits
/// that make it secure are `tzasc::tzpc::testbed`'s).
pub mod npu {
    /// The NPU's SMMU stream id (secure and non-secure).
    pub const STREAM_ID: u32 = 0x10;
    /// The NPU's TZC-400 NSAID for non-secure DMA: FVP's default master id (0), which TF-A's
    /// NS DRAM regions let in.
    pub const NSAID: u8 = 0;
    /// The NPU's interrupt: SPI 110 (GIC INTID 142), as RK3588's first NPU core. Level: the
    /// testbed keeps it pending while the NPU's interrupt line is high. The SP's manifest
    /// declares it on its `npu` device region (`interrupts`).
    pub const INTID: u32 = 142;
}

/// How the testbed uses secure RAM.
pub mod secure_ram {
    use super::virt;
    /// Testbed EL3 monitor + S-EL2 SPMC: data, BSS, stacks, stage-2 tables.
    pub const TESTBED_BASE: u64 = virt::SECURE_RAM_BASE;
    pub const TESTBED_SIZE: u64 = 0x0030_0000;
    /// Everything from here to the end of secure RAM is available to secure partitions; where each
    /// SP goes is said by its manifest (`load-address`, `memory-regions`) and checked to lie here.
    pub const PARTITIONS_BASE: u64 = TESTBED_BASE + TESTBED_SIZE;
    pub const PARTITIONS_END: u64 = virt::SECURE_RAM_BASE + virt::SECURE_RAM_SIZE;
}

/// How the testbed and the normal-world client use NS DRAM.
pub mod ns_ram {
    use super::virt;
    /// The normal-world client image is copied here and entered at NS-EL1 with x0 = BOOT_CONFIG.
    pub const CLIENT_BASE: u64 = virt::NS_RAM_BASE;
    /// The client's image, data, stack and heap.
    pub const CLIENT_SIZE: u64 = 0x0800_0000;
    /// Memory the client hands to the SP through FF-A (shared/lent/donated pages).
    pub const CLIENT_SHARE_BASE: u64 = CLIENT_BASE + CLIENT_SIZE;
    pub const CLIENT_SHARE_SIZE: u64 = 0x1000_0000;
    /// Where `xtask` has QEMU load a model file (GGUF) for the client to lend to the SP; it lies
    /// inside the client's share window. The boot configuration says `model_size=N` when present.
    pub const MODEL_BASE: u64 = CLIENT_SHARE_BASE + 0x0800_0000;
    pub const MODEL_MAX: u64 = 0x0400_0000;
    const _: () = assert!(MODEL_BASE + MODEL_MAX <= CLIENT_SHARE_BASE + CLIENT_SHARE_SIZE);
    /// Where `xtask` has QEMU load sealed packages (`sealed/FORMAT.md`), one after another on
    /// page boundaries; the boot configuration names each ([`super::SealedKind`]).
    pub const SEALED_BASE: u64 = MODEL_BASE + MODEL_MAX;
    pub const SEALED_MAX: u64 = 0x0400_0000;
    const _: () = assert!(SEALED_BASE + SEALED_MAX <= CLIENT_SHARE_BASE + CLIENT_SHARE_SIZE);
    /// The Flex-Mem window: the NS DRAM the client lends Flex-Mem pages from (the model file
    /// plus 64 MiB), to the end of the share window. The SP manifest declares it as the SECURE
    /// memory region `flexmem-window`: the SP's secure IPA space covers it, and the testbed maps
    /// a page there only while a TZC-400 region grants secure access to it (as the TZC would
    /// refuse a secure access to an NS region); its NS alias is ordinary lent memory.
    pub const FLEXMEM_WINDOW_BASE: u64 = MODEL_BASE;
    pub const FLEXMEM_WINDOW_SIZE: u64 = 0x0800_0000;
    const _: () =
        assert!(FLEXMEM_WINDOW_BASE + FLEXMEM_WINDOW_SIZE <= CLIENT_SHARE_BASE + CLIENT_SHARE_SIZE);
    /// A static secure carve-out in NS DRAM, programmed secure at boot like a phone's TZASC
    /// carve-out (TZC-400 region 3, `firewall::BOOT_REGIONS`) and declared in the SP manifest
    /// as the secure memory region `carveout`: the normal world never maps it and may not send
    /// it (DENIED). Outside the client's memory.
    pub const CARVEOUT_BASE: u64 = 0x6000_0000;
    pub const CARVEOUT_SIZE: u64 = 0x0400_0000;
    const _: () = assert!(CLIENT_SHARE_BASE + CLIENT_SHARE_SIZE <= CARVEOUT_BASE);
    const _: () = assert!(CARVEOUT_BASE + CARVEOUT_SIZE <= TESTBED_NS_BASE);
    /// The boot configuration block (see [`crate::flash::BootConfig`]), copied from flash.
    pub const BOOT_CONFIG: u64 = virt::NS_RAM_BASE + virt::NS_RAM_SIZE - 0x1_0000;

    /// NS memory the testbed keeps for itself: the top 16 MiB of NS DRAM up to the
    /// boot-config block. The normal world's stage-2 (NS-EL2, built by EL3 before the client
    /// starts) leaves it out, so the client cannot touch it, and memory sends naming it are
    /// DENIED. It holds what must be in NS PA space: the NW's stage-2 tables (walks in
    /// Non-secure state read NS PAs) and the NS-EL2 vector stub.
    pub const TESTBED_NS_BASE: u64 = virt::NS_RAM_BASE + virt::NS_RAM_SIZE - 0x100_0000;
    pub const TESTBED_NS_SIZE: u64 = BOOT_CONFIG - TESTBED_NS_BASE;
    const _: () = assert!(CLIENT_SHARE_BASE + CLIENT_SHARE_SIZE <= TESTBED_NS_BASE);
    /// The NW stage-2 table pool (4 KiB tables, the first is the level-1 root): enough to
    /// split every 2 MiB block of NS DRAM (lent pages and firewall-denied pages are
    /// page-granular).
    pub const NW_S2_TABLES: u64 = TESTBED_NS_BASE;
    pub const NW_S2_TABLE_COUNT: u64 = 520;
    /// The NS-EL2 exception vector stub (VBAR_EL2 of the normal world; one page). Every entry
    /// saves x0 in TPIDR_EL2 and SMCs `control::NS_EL2_TRAP + entry index` to EL3.
    pub const NS_EL2_VECTORS: u64 = TESTBED_NS_BASE + 0x30_0000;
}

/// The emulated TZC-400 ([`virt::TZC400_BASE`]) as the testbed's firmware leaves it at boot:
/// what TF-A's `arm_tzc400_setup` does on FVP (region 0 no access, ACTION = error, then one
/// region per entry of the platform's list, filters enabled), over this memory map.
pub mod firewall {
    use super::{ns_ram, virt};

    /// TZC-400 NSAID of the application processors (FVP `FVP_NSAID_AP`): the normal world's
    /// CPU and the SP's NS (NS = 1) accesses.
    pub const CPU_NSAID: u8 = 9;
    /// NSAIDs TF-A's FVP port lets into NS DRAM (`PLAT_ARM_TZC_NS_DEV_ACCESS`: default, PCI,
    /// AP, VIRTIO, VIRTIO (old)).
    pub const NS_DRAM_NSAIDS: [u8; 5] = [0, 1, 9, 8, 15];
    /// Regions 1-8 exist; one filter.
    pub const REGIONS: u8 = 9;
    pub const FILTERS: u8 = 1;
    /// ACTION register value TF-A writes (`TZC_ACTION_ERR`: DECERR, interrupt low).
    pub const ACTION_ERR: u32 = 0b10;

    /// One region firmware programs: `[base, top]` (inclusive top), secure read/write and the
    /// NSAIDs that get NS read/write.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BootRegion {
        pub index: u8,
        pub base: u64,
        pub top: u64,
        pub secure_rw: bool,
        pub ns_rw: &'static [u8],
    }

    /// Regions 1-4; 5-8 stay free for the Flex-Mem planner. NS DRAM is split around the
    /// carve-out (regions 1-8 may not overlap).
    pub const BOOT_REGIONS: [BootRegion; 4] = [
        BootRegion {
            index: 1,
            base: virt::SECURE_RAM_BASE,
            top: virt::SECURE_RAM_BASE + virt::SECURE_RAM_SIZE - 1,
            secure_rw: true,
            ns_rw: &[],
        },
        BootRegion {
            index: 2,
            base: virt::NS_RAM_BASE,
            top: ns_ram::CARVEOUT_BASE - 1,
            secure_rw: false,
            ns_rw: &NS_DRAM_NSAIDS,
        },
        BootRegion {
            index: 3,
            base: ns_ram::CARVEOUT_BASE,
            top: ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE - 1,
            secure_rw: true,
            ns_rw: &[],
        },
        BootRegion {
            index: 4,
            base: ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE,
            top: virt::NS_RAM_BASE + virt::NS_RAM_SIZE - 1,
            secure_rw: false,
            ns_rw: &NS_DRAM_NSAIDS,
        },
    ];

    const _: () = {
        // The window lies in NS region 2: lent pages start out NS-accessible.
        assert!(ns_ram::FLEXMEM_WINDOW_BASE >= virt::NS_RAM_BASE);
        assert!(ns_ram::FLEXMEM_WINDOW_BASE + ns_ram::FLEXMEM_WINDOW_SIZE <= ns_ram::CARVEOUT_BASE);
    };
}

/// The testbed SPMC's memory ranges, as Hafnium's SPMC manifest declares them (`memory`,
/// `ns-memory` nodes; `src/manifest.c` `check_partition_memory_is_valid`): an SP's secure
/// memory regions must lie inside a [`SECURE`](spmc_memory::SECURE) range, its NS ones inside
/// an [`NS`](spmc_memory::NS) range, and normal-world memory sends must name NS memory. The
/// Flex-Mem window is in both (lent as NS memory, reached through its secure alias once the
/// firewall secures it); the carve-out is secure only.
pub mod spmc_memory {
    use super::{ns_ram, secure_ram, virt};

    /// `(base, size)` ranges.
    pub const SECURE: [(u64, u64); 3] = [
        (
            secure_ram::PARTITIONS_BASE,
            secure_ram::PARTITIONS_END - secure_ram::PARTITIONS_BASE,
        ),
        (ns_ram::FLEXMEM_WINDOW_BASE, ns_ram::FLEXMEM_WINDOW_SIZE),
        (ns_ram::CARVEOUT_BASE, ns_ram::CARVEOUT_SIZE),
    ];
    pub const NS: [(u64, u64); 2] = [
        (virt::NS_RAM_BASE, ns_ram::CARVEOUT_BASE - virt::NS_RAM_BASE),
        (
            ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE,
            virt::NS_RAM_BASE + virt::NS_RAM_SIZE - ns_ram::CARVEOUT_BASE - ns_ram::CARVEOUT_SIZE,
        ),
    ];

    /// Whether `[base, base + size)` lies inside one of `ranges` (Hafnium's
    /// `is_memory_region_contained_by_ranges`).
    pub fn contained(ranges: &[(u64, u64)], base: u64, size: u64) -> bool {
        let Some(end) = base.checked_add(size) else {
            return false;
        };
        ranges.iter().any(|&(b, s)| base >= b && end <= b + s)
    }
}

/// Secure flash layout written by `xtask` (`-bios flash.bin`), like TF-A's BL1 + FIP.
///
/// Each slot starts with a [`SlotHeader`]; its payload follows at `SLOT_HEADER_SIZE`.
pub mod flash {
    /// The testbed firmware (EL3 + S-EL2), executed in place from offset 0.
    pub const TESTBED_OFFSET: u64 = 0x0000_0000;
    pub const TESTBED_MAX: u64 = 0x0020_0000;
    /// The SP package (SPKG: boot info +0, manifest +0x1000, image +0x4000).
    pub const SP_PKG_OFFSET: u64 = 0x0020_0000;
    pub const SP_PKG_MAX: u64 = 0x00e0_0000;
    /// The normal-world client image (flat binary, entered at its first byte).
    pub const NW_IMAGE_OFFSET: u64 = 0x0100_0000;
    pub const NW_IMAGE_MAX: u64 = 0x0100_0000;
    /// Boot configuration for the client: which scenario to run.
    pub const BOOT_CONFIG_OFFSET: u64 = 0x0200_0000;
    pub const BOOT_CONFIG_MAX: u64 = 0x1000;

    pub const SLOT_MAGIC: [u8; 4] = *b"FSLT";
    pub const SLOT_HEADER_SIZE: u64 = 16;

    /// `magic` ("FSLT"), `len` (payload bytes), two reserved words; little-endian.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SlotHeader {
        pub len: u32,
    }

    impl SlotHeader {
        pub fn encode(&self) -> [u8; SLOT_HEADER_SIZE as usize] {
            let mut b = [0u8; SLOT_HEADER_SIZE as usize];
            b[0..4].copy_from_slice(&SLOT_MAGIC);
            b[4..8].copy_from_slice(&self.len.to_le_bytes());
            b
        }

        /// Parses a header; `None` if the magic is wrong or the payload would not fit in `max`.
        pub fn decode(bytes: &[u8], max: u64) -> Option<Self> {
            let h = bytes.get(..SLOT_HEADER_SIZE as usize)?;
            if h[0..4] != SLOT_MAGIC {
                return None;
            }
            let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            (u64::from(len) + SLOT_HEADER_SIZE <= max).then_some(SlotHeader { len })
        }
    }

    /// The boot configuration payload: UTF-8 `key=value` lines, e.g. `scenario=messaging`.
    ///
    /// Keys the testbed itself reads: [`BootConfig::LEND_ENFORCEMENT`].
    pub struct BootConfig;
    impl BootConfig {
        /// `lend-enforcement=off` (default `on`): FF-A LEND and DONATE no longer take the
        /// pages out of the normal world's stage-2, as on FVP or RK3588 without an NS
        /// hypervisor; only the TZC-400 model protects them.
        pub const LEND_ENFORCEMENT: &'static str = "lend-enforcement";

        /// Whether lend enforcement is on (anything but `off` keeps it on).
        pub fn lend_enforcement(payload: &[u8]) -> bool {
            Self::get(payload, Self::LEND_ENFORCEMENT) != Some("off")
        }

        /// Finds `key` in a boot configuration payload.
        pub fn get<'a>(payload: &'a [u8], key: &str) -> Option<&'a str> {
            let text = core::str::from_utf8(payload).ok()?;
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim())
            })
        }
    }
}

/// Testbed control calls (SiP fast calls, SMC64) that the normal-world client makes to EL3.
pub mod control {
    /// Power QEMU off with exit status x1 (via semihosting SYS_EXIT_EXTENDED).
    pub const TESTBED_EXIT: u32 = 0xC200_FF00;
    /// PSCI SYSTEM_OFF: powers off with status 0.
    pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
    /// Exit statuses.
    pub const EXIT_PASS: u64 = 0;
    pub const EXIT_FAIL: u64 = 1;
    /// The testbed found itself or an SP in a state it cannot go on from.
    pub const EXIT_TESTBED_ERROR: u64 = 3;

    /// Blocked normal-world accesses (FF-A memory enforcement). After LEND or DONATE the
    /// lender's pages are gone from its stage-2; each access to one is a stage-2 fault that EL3
    /// reports on the secure UART as
    /// `testbed: blocked NW read of 0x<addr> (lent to 8001)` (`write`, `fetch`; `donated to
    /// 8001`, `testbed reserved`, `unmapped`), emulates as failed (a load gets
    /// [`POISON`], a store is dropped) and skips, so the client keeps running.
    ///
    /// The SP's accesses the TZC-400 model denies are counted here too ([`BLOCKED_BY_SP`]).
    ///
    /// This call returns x0 = 0, x1 = number of blocked accesses since boot, x2 = the last
    /// blocked address (IPA == PA), x3 = details of the last one: bits \[7:0\] a `KIND_*`,
    /// bits \[15:8\] an `OWNER_*` (why the page is blocked), bits \[31:16\] the endpoint the
    /// page went to (0 if none), bit 32 [`UNEMULATED`]. x1-x3 = 0 before any blocked access.
    pub const TESTBED_BLOCKED_ACCESSES: u32 = 0xC200_FF01;
    /// Value a blocked load returns (truncated to the access size).
    pub const POISON: u64 = 0xdead_beef_dead_beef;
    pub const KIND_READ: u64 = 1;
    pub const KIND_WRITE: u64 = 2;
    pub const KIND_FETCH: u64 = 3;
    /// Cache maintenance by VA (DC CIVAC/CVAC/IVAC...; ESR ISS.CM = 1): skipped.
    pub const KIND_CACHE_MAINT: u64 = 4;
    /// The page is lent / donated (FF-A), testbed-reserved, or simply not in the NW's map.
    pub const OWNER_LENT: u64 = 1;
    pub const OWNER_DONATED: u64 = 2;
    pub const OWNER_RESERVED: u64 = 3;
    pub const OWNER_UNMAPPED: u64 = 4;
    /// The TZC-400 model denies the access; x3 bits \[31:16\] are then the region that
    /// decided (0 = background region 0) or [`FIREWALL_OVERLAP`]. Line:
    /// `blocked NW read of 0x50000000 (firewall region 5)`,
    /// `blocked SP secure read of 0x50000000 (firewall: not secured, region 2)`,
    /// `blocked SP NS read of 0x50000000 (firewall region 5)`.
    pub const OWNER_FIREWALL: u64 = 5;
    /// x3 bits \[31:16\] of a firewall block that matched two enabled regions (TZC-400:
    /// overlapping regions 1-8 are an error; the model denies and sets INT_STATUS.overlap).
    pub const FIREWALL_OVERLAP: u64 = 0xff;
    /// x3 bit 32: the access could not be emulated (ISV = 0, e.g. a load pair, or an
    /// instruction fetch): it was skipped without touching registers (a fetch resumes at the
    /// link register, x30, as if the called function had returned).
    pub const UNEMULATED: u64 = 1 << 32;
    /// x3 bit 33: the secure partition made the access (its loads are poisoned, stores
    /// dropped, like the normal world's); clear for the normal world.
    pub const BLOCKED_BY_SP: u64 = 1 << 33;
    /// x3 bit 34: a secure (NS = 0) access.
    pub const BLOCKED_SECURE: u64 = 1 << 34;
    /// PSCI SYSTEM_RESET: QEMU runs with `-no-reboot`, so the testbed powers off with this
    /// status instead of resetting.
    pub const EXIT_SYSTEM_RESET: u64 = 4;
    /// Internal, from the SPMC (S-EL2) to EL3: invalidate every CPU's TLB entries of the normal
    /// world's EL1&0 regime (its stage-2 lost or regained pages). Only EL3 can name that
    /// regime; the call returns once the broadcast invalidation has completed.
    pub const TESTBED_NS_TLBI: u32 = 0xC200_FF02;
    /// A non-secure access to a device that is secure-only now (the NPU's MMIO while the TZPC
    /// makes it secure): x3 bits \[15:8\] of `TESTBED_BLOCKED_ACCESSES`. Line:
    /// `blocked NW write of 0x90d0080 (secure device)`.
    pub const OWNER_SECURE_DEVICE: u64 = 6;
    /// Internal: the NS-EL2 vector stub's SMC to EL3 (`+ vector entry index`, 0-15).
    pub const NS_EL2_TRAP: u32 = 0xC200_FF10;
}

/// The SP package (SPKG) format of Hafnium's `inc/hf/sp_pkg.h`, version 2, as TF-A's sptool
/// writes it: header (and the FF-A boot-info blob the SPMC writes there) at +0, partition manifest
/// DTB at `pm_offset` (0x1000), image at `img_offset` (0x4000). `xtask` builds packages with it
/// for every platform; the testbed's SPMC loads them with it.
pub mod spkg {
    pub const MAGIC: u32 = 0x474b_5053;
    pub const VERSION_2: u32 = 2;
    pub const HEADER_SIZE: usize = 24;
    pub const PM_OFFSET: u32 = 0x1000;
    pub const IMG_OFFSET: u32 = 0x4000;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Header {
        pub pm_offset: u32,
        pub pm_size: u32,
        pub img_offset: u32,
        pub img_size: u32,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Error {
        TooShort,
        BadMagic(u32),
        BadVersion(u32),
        /// Offsets not page aligned, out of order, or parts overlapping / past the package end.
        BadLayout,
    }

    impl Header {
        pub fn new(pm_size: u32, img_size: u32) -> Self {
            Header {
                pm_offset: PM_OFFSET,
                pm_size,
                img_offset: IMG_OFFSET,
                img_size,
            }
        }

        pub fn encode(&self) -> [u8; HEADER_SIZE] {
            let mut b = [0u8; HEADER_SIZE];
            let words = [
                MAGIC,
                VERSION_2,
                self.pm_offset,
                self.pm_size,
                self.img_offset,
                self.img_size,
            ];
            for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            b
        }

        /// Parses and validates a header against the package length `pkg_len`.
        pub fn decode(bytes: &[u8], pkg_len: usize) -> Result<Self, Error> {
            let b = bytes.get(..HEADER_SIZE).ok_or(Error::TooShort)?;
            let w =
                |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
            if w(0) != MAGIC {
                return Err(Error::BadMagic(w(0)));
            }
            if w(1) != VERSION_2 {
                return Err(Error::BadVersion(w(1)));
            }
            let h = Header {
                pm_offset: w(2),
                pm_size: w(3),
                img_offset: w(4),
                img_size: w(5),
            };
            let page = 0x1000u64;
            let (pm, pms, img, imgs) = (
                u64::from(h.pm_offset),
                u64::from(h.pm_size),
                u64::from(h.img_offset),
                u64::from(h.img_size),
            );
            let ok = pm % page == 0
                && img % page == 0
                && pm >= HEADER_SIZE as u64
                && pm + pms <= img
                && img + imgs <= pkg_len as u64;
            if ok { Ok(h) } else { Err(Error::BadLayout) }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip_and_rejects() {
            let h = Header::new(0x286, 0x9c8);
            assert_eq!(Header::decode(&h.encode(), 0x5000), Ok(h));
            assert_eq!(Header::decode(&h.encode(), 0x4100), Err(Error::BadLayout));
            assert_eq!(
                Header::decode(&h.encode()[..20], 0x5000),
                Err(Error::TooShort)
            );
            let mut bad = h.encode();
            bad[4] = 1;
            assert_eq!(Header::decode(&bad, 0x5000), Err(Error::BadVersion(1)));
            let overlap = Header {
                pm_size: 0x3001,
                ..h
            };
            assert_eq!(
                Header::decode(&overlap.encode(), 0x5000),
                Err(Error::BadLayout)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_do_not_overlap_and_fit_in_flash() {
        let slots = [
            (flash::TESTBED_OFFSET, flash::TESTBED_MAX),
            (flash::SP_PKG_OFFSET, flash::SP_PKG_MAX),
            (flash::NW_IMAGE_OFFSET, flash::NW_IMAGE_MAX),
            (flash::BOOT_CONFIG_OFFSET, flash::BOOT_CONFIG_MAX),
        ];
        for w in slots.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0);
        }
        let (last, max) = slots[slots.len() - 1];
        assert!(last + max <= virt::SECURE_FLASH_SIZE);
    }

    // The testbed's NS region is clear of the client's memory and holds its parts.
    const _: () = {
        let end = virt::NS_RAM_BASE + virt::NS_RAM_SIZE;
        assert!(ns_ram::CLIENT_SHARE_BASE + ns_ram::CLIENT_SHARE_SIZE <= ns_ram::TESTBED_NS_BASE);
        assert!(ns_ram::TESTBED_NS_BASE + ns_ram::TESTBED_NS_SIZE == ns_ram::BOOT_CONFIG);
        assert!(ns_ram::BOOT_CONFIG < end);
        assert!(ns_ram::TESTBED_NS_BASE.is_multiple_of(0x20_0000));
        let tables_end = ns_ram::NW_S2_TABLES + ns_ram::NW_S2_TABLE_COUNT * virt::PAGE_SIZE;
        assert!(tables_end <= ns_ram::NS_EL2_VECTORS);
        assert!(ns_ram::NS_EL2_VECTORS + virt::PAGE_SIZE <= ns_ram::BOOT_CONFIG);
    };

    #[test]
    fn slot_header_round_trip_and_rejects() {
        let h = flash::SlotHeader { len: 1234 };
        let b = h.encode();
        assert_eq!(flash::SlotHeader::decode(&b, 0x1000), Some(h));
        assert_eq!(flash::SlotHeader::decode(&b, 1000), None);
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(flash::SlotHeader::decode(&bad, 0x1000), None);
        assert_eq!(flash::SlotHeader::decode(&b[..8], 0x1000), None);
    }

    #[test]
    fn boot_config_lookup() {
        let p = b"scenario=messaging\nverbose = 1\n";
        assert_eq!(flash::BootConfig::get(p, "scenario"), Some("messaging"));
        assert_eq!(flash::BootConfig::get(p, "verbose"), Some("1"));
        assert_eq!(flash::BootConfig::get(p, "missing"), None);
        assert!(flash::BootConfig::lend_enforcement(p), "default on");
        assert!(!flash::BootConfig::lend_enforcement(
            b"lend-enforcement=off\n"
        ));
        assert!(flash::BootConfig::lend_enforcement(
            b"lend-enforcement = on\n"
        ));
    }

    #[test]
    fn spmc_memory_ranges_and_firewall_regions_agree() {
        use spmc_memory::{NS, SECURE, contained};
        let (w, ws) = (ns_ram::FLEXMEM_WINDOW_BASE, ns_ram::FLEXMEM_WINDOW_SIZE);
        let (c, cs) = (ns_ram::CARVEOUT_BASE, ns_ram::CARVEOUT_SIZE);
        assert!(
            contained(&SECURE, w, ws) && contained(&NS, w, ws),
            "window: both"
        );
        assert!(
            contained(&SECURE, c, cs) && !contained(&NS, c, 0x1000),
            "carve-out: secure"
        );
        assert!(
            !contained(&NS, c - 0x1000, 0x2000),
            "no NS range straddles it"
        );
        assert!(contained(&NS, ns_ram::CLIENT_BASE, ns_ram::CLIENT_SIZE));
        assert!(!contained(&SECURE, w - 0x1000, 0x1000));
        // Firmware's regions do not overlap and cover NS DRAM exactly.
        let r = firewall::BOOT_REGIONS;
        for (i, a) in r.iter().enumerate() {
            for b in &r[i + 1..] {
                assert!(a.top < b.base || b.top < a.base, "{a:?} {b:?}");
            }
        }
        let dram: u64 = r
            .iter()
            .filter(|x| x.base >= virt::NS_RAM_BASE)
            .map(|x| x.top + 1 - x.base)
            .sum();
        assert_eq!(dram, virt::NS_RAM_SIZE);
        assert!(
            r.iter()
                .any(|x| x.base == c && x.secure_rw && x.ns_rw.is_empty())
        );
        assert!(!contained(
            &[(virt::TZC400_BASE, virt::TZC400_SIZE)],
            virt::SECURE_GPIO_BASE,
            1
        ));
    }
}

/// The partition manager a scenario runs under: the boot configuration's `spmc=` value, which
/// xtask writes and the normal-world client reads (`testbed` when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spmc {
    /// The project's QEMU testbed (EL3 + S-EL2 in one image): enforces lends on the normal
    /// world's stage-2, reports blocked accesses, answers its control calls; one CPU. What CI
    /// runs.
    Testbed,
    /// TF-A v2.15.0's BL31 with Hafnium v2.15.0 at S-EL2; the client is TF-A's BL33.
    Hafnium,
    /// TF-A v2.15.0's BL31 with its EL3 SPMC; the client is TF-A's BL33.
    El3,
}

impl Spmc {
    pub const ALL: [Spmc; 3] = [Spmc::Testbed, Spmc::Hafnium, Spmc::El3];

    /// From the boot-configuration value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The boot-configuration value (also xtask's `--spmc` name and output directory).
    pub const fn name(self) -> &'static str {
        match self {
            Spmc::Testbed => "testbed",
            Spmc::Hafnium => "hafnium",
            Spmc::El3 => "el3",
        }
    }
}

/// The testbed's device root secret, handed to the SP in its boot information
/// (`flexserve_proto::device_root`). A test secret: it is in this public source, so anything
/// sealed to the testbed device is readable by anyone. Real platforms take the root from their
/// key source (DESIGN.md sec. 8). `xtask` seals the default model to the keys derived from it.
pub const TEST_DEVICE_ROOT: [u8; 32] = *b"flexserve testbed device root v1";

/// The sealed packages `xtask` loads for the client (at `ns_ram::SEALED_BASE`), each named in
/// the boot configuration by `sealed_<name>_base=` and `sealed_<name>_size=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedKind {
    /// The model sealed to the testbed device ([`TEST_DEVICE_ROOT`]), package version 2.
    Main,
    /// The same model and model id, package version 1 (an older release).
    OlderVersion,
    /// The same GGUF under another model id (another model, as far as the format can tell).
    OtherModel,
    /// The model sealed to another device only.
    OtherDevice,
}

impl SealedKind {
    pub const ALL: [SealedKind; 4] = [
        SealedKind::Main,
        SealedKind::OlderVersion,
        SealedKind::OtherModel,
        SealedKind::OtherDevice,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            SealedKind::Main => "main",
            SealedKind::OlderVersion => "old",
            SealedKind::OtherModel => "other_model",
            SealedKind::OtherDevice => "other_device",
        }
    }

    pub const fn base_key(self) -> &'static str {
        match self {
            SealedKind::Main => "sealed_main_base",
            SealedKind::OlderVersion => "sealed_old_base",
            SealedKind::OtherModel => "sealed_other_model_base",
            SealedKind::OtherDevice => "sealed_other_device_base",
        }
    }

    pub const fn size_key(self) -> &'static str {
        match self {
            SealedKind::Main => "sealed_main_size",
            SealedKind::OlderVersion => "sealed_old_size",
            SealedKind::OtherModel => "sealed_other_model_size",
            SealedKind::OtherDevice => "sealed_other_device_size",
        }
    }
}
