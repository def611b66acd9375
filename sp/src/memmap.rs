//! The SP's runtime stage-1 map, by intent: code RX, read-only data, RW data/stack/heap, devices,
//! and (later) normal-world shared memory with the NS bit. Everything else is unmapped.
//!
//! MAIR (set at entry by aarch64-rt's `DEFAULT_MAIR`, kept by the runtime table):
//! index 0 = Device-nGnRE, index 1 = Normal inner/outer write-back read/write-allocate.

use crate::manifest::{PAGE_SIZE, Region, SpManifest};
use crate::shmem::Access;
use aarch64_paging::{
    MapError,
    descriptor::El1Attributes as A,
    idmap::IdMap,
    paging::{Constraints, El1And0, MemoryRegion},
};
use core::ops::{Deref, Range};

/// The translation regime's root level: level 1 covers 512 GiB (TCR_EL1.T0SZ = 25).
pub const ROOT_LEVEL: usize = 1;
/// The ASID the runtime table uses.
pub const ASID: usize = 0;

/// How a range is used; each maps to one attribute set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Executable, read-only.
    Code,
    /// Read-only, never executable.
    ReadOnly,
    /// Read-write, never executable.
    Data,
    /// Device-nGnRE, read-write, never executable.
    Device,
    /// Normal-world memory shared with the SP: read-write, never executable, NS=1.
    NsShared,
}

impl Intent {
    pub fn attributes(self) -> A {
        let normal = A::VALID | A::ACCESSED | A::ATTRIBUTE_INDEX_1 | A::INNER_SHAREABLE;
        let xn = A::PXN | A::UXN;
        match self {
            Intent::Code => normal | A::READ_ONLY | A::UXN,
            Intent::ReadOnly => normal | A::READ_ONLY | xn,
            Intent::Data => normal | xn,
            Intent::Device => A::VALID | A::ACCESSED | A::ATTRIBUTE_INDEX_0 | xn,
            Intent::NsShared => normal | A::NS | xn,
        }
    }
}

/// Attributes of a retrieved memory region: normal write-back (the only normal type in the
/// MAIR), never executable, NS and read-only as the retrieve response says.
pub fn shared_attributes(access: Access) -> A {
    let mut a =
        A::VALID | A::ACCESSED | A::ATTRIBUTE_INDEX_1 | A::INNER_SHAREABLE | A::PXN | A::UXN;
    if access.ns {
        a |= A::NS;
    }
    if !access.writable {
        a |= A::READ_ONLY;
    }
    a
}

/// Maps a retrieved range into the live table with pages only (no blocks), so that each region
/// can later be unmapped on its own without splitting a live block (break-before-make).
pub fn map_shared(
    idmap: &mut IdMap<El1And0>,
    range: Range<u64>,
    access: Access,
) -> Result<(), MapError> {
    let r = MemoryRegion::new(range.start as usize, range.end as usize);
    idmap.map_range_with_constraints(
        &r,
        shared_attributes(access),
        Constraints::NO_BLOCK_MAPPINGS,
    )
}

/// Unmaps a range mapped by [`map_shared`]. On a live table aarch64-paging invalidates the TLB
/// entry of every page it clears (TLBI VAAE1IS, then DSB ISH) before returning; empty subtables
/// are freed afterwards, so map/unmap cycles do not grow the heap.
pub fn unmap_shared(idmap: &mut IdMap<El1And0>, range: Range<u64>) -> Result<(), MapError> {
    let r = MemoryRegion::new(range.start as usize, range.end as usize);
    idmap.map_range_with_constraints(&r, A::empty(), Constraints::NO_BLOCK_MAPPINGS)?;
    idmap.compact_subtables();
    Ok(())
}

/// Pages the table maps (valid leaf entries, blocks counted by their size), by walking it: the
/// leak check of shared-memory mappings, independent of any bookkeeping.
pub fn mapped_pages(idmap: &IdMap<El1And0>) -> u64 {
    let all = MemoryRegion::new(0, idmap.size());
    let mut pages = 0u64;
    // The whole translated range is in range by construction; the callback cannot fail.
    let _ = idmap.walk_range(&all, &mut |mr, d, _| {
        if d.is_valid() {
            pages += (mr.end().0 - mr.start().0) as u64 / PAGE_SIZE;
        }
        Ok(())
    });
    pages
}

/// Where the linker put the image's parts (all page aligned: aarch64-rt's image.ld aligns
/// .init/.rodata/.data/.stack to 4 KiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    pub text: Range<u64>,
    pub rodata: Range<u64>,
    /// .data and .bss.
    pub data: Range<u64>,
    /// The boot stack. Its lowest page is left unmapped as a guard: an overflow faults (and
    /// the fault is handled on the separate exception stack) instead of overwriting .bss.
    pub stack: Range<u64>,
}

/// One planned mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub name: &'static str,
    pub range: Range<u64>,
    pub intent: Intent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// An image part is not page aligned or is backwards.
    BadImageRange(&'static str),
    /// Two ranges that must be apart overlap.
    Overlap(&'static str, &'static str),
    /// The page-table library refused a range.
    Map(&'static str, MapError),
    /// A guard page (at this address) is unaligned or outside every data mapping.
    BadGuard(u64),
}

fn page_round(r: Range<u64>) -> Range<u64> {
    let start = r.start & !(PAGE_SIZE - 1);
    let end = r.end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    start..end
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn region(r: &Region) -> Range<u64> {
    r.base..r.end()
}

/// The most mappings a plan holds.
pub const MAX_MAPPINGS: usize = 16;

/// A checked plan. It needs no heap, so it can be made (and the heap checked against the image)
/// before the heap exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    maps: [Mapping; MAX_MAPPINGS],
    len: usize,
}

impl Deref for Plan {
    type Target = [Mapping];

    fn deref(&self) -> &[Mapping] {
        &self.maps[..self.len]
    }
}

/// Plans the runtime map: the image by section, the boot-info blob and the manifest read-only,
/// the heap, and the secure UART if the manifest grants it. Rejects a heap or device region that
/// overlaps the image or each other.
pub fn plan(
    image: &ImageLayout,
    boot_info: Range<u64>,
    manifest_dtb: Range<u64>,
    manifest: &SpManifest,
) -> Result<Plan, PlanError> {
    let aligned =
        |r: &Range<u64>| r.start.is_multiple_of(PAGE_SIZE) && r.end.is_multiple_of(PAGE_SIZE);
    for (name, r) in [
        ("text", &image.text),
        ("rodata", &image.rodata),
        ("data", &image.data),
        ("stack", &image.stack),
    ] {
        if !aligned(r) || r.start > r.end {
            return Err(PlanError::BadImageRange(name));
        }
    }
    if image.stack.end - image.stack.start < 2 * PAGE_SIZE {
        return Err(PlanError::BadImageRange("stack"));
    }
    let image_and_heap = [
        ("text", image.text.clone(), Intent::Code),
        ("rodata", image.rodata.clone(), Intent::ReadOnly),
        ("data", image.data.clone(), Intent::Data),
        (
            "stack",
            image.stack.start + PAGE_SIZE..image.stack.end,
            Intent::Data,
        ),
        ("boot-info", page_round(boot_info), Intent::ReadOnly),
        ("manifest", page_round(manifest_dtb), Intent::ReadOnly),
        ("heap", region(&manifest.heap), Intent::Data),
    ];
    let uart = manifest.uart.map(|u| ("uart", region(&u), Intent::Device));
    // The memory firewall's registers (Flex-Mem), at most 3.
    let firewall = manifest
        .flexmem
        .devices()
        .map(|(name, r)| (name, region(&r), Intent::Device));
    // Flex-NPU's devices (NPU, SMMU, TZPC), at most 3.
    let npu = manifest
        .flexnpu
        .devices()
        .map(|(name, r)| (name, region(&r), Intent::Device));
    let mut plan = Plan {
        maps: core::array::from_fn(|_| Mapping {
            name: "",
            range: 0..0,
            intent: Intent::ReadOnly,
        }),
        len: 0,
    };
    // 7 + 1 + 3 + 3 entries: always fits MAX_MAPPINGS.
    for (slot, (name, range, intent)) in plan.maps.iter_mut().zip(
        image_and_heap
            .into_iter()
            .chain(uart)
            .chain(firewall)
            .chain(npu),
    ) {
        *slot = Mapping {
            name,
            range,
            intent,
        };
        plan.len += 1;
    }
    let maps = &plan[..];
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[i + 1..] {
            // Boot info and manifest may share a page; both are read-only.
            if overlaps(&a.range, &b.range) && a.intent != b.intent {
                return Err(PlanError::Overlap(a.name, b.name));
            }
            if overlaps(&a.range, &b.range) && a.intent == Intent::Data {
                return Err(PlanError::Overlap(a.name, b.name));
            }
        }
    }
    Ok(plan)
}

/// Builds the identity map for a plan (page tables come from the global allocator).
pub fn build(maps: &[Mapping]) -> Result<IdMap<El1And0>, PlanError> {
    build_with_guards(maps, core::iter::empty())
}

/// Builds the identity map for a plan and leaves `guards` (page-aligned ranges inside a `Data`
/// mapping: the guard pages of the secondary ECs' stacks, carved from the heap) unmapped. The
/// table is not live yet, so splitting a block around a guard needs no break-before-make.
pub fn build_with_guards(
    maps: &[Mapping],
    guards: impl IntoIterator<Item = Range<u64>>,
) -> Result<IdMap<El1And0>, PlanError> {
    let mut idmap = IdMap::with_asid(ASID, ROOT_LEVEL, El1And0);
    for m in maps.iter().filter(|m| !m.range.is_empty()) {
        let r = MemoryRegion::new(m.range.start as usize, m.range.end as usize);
        idmap
            .map_range(&r, m.intent.attributes())
            .map_err(|e| PlanError::Map(m.name, e))?;
    }
    for g in guards {
        let inside_data = maps
            .iter()
            .any(|m| m.intent == Intent::Data && m.range.start <= g.start && g.end <= m.range.end);
        let aligned = g.start.is_multiple_of(PAGE_SIZE) && g.end.is_multiple_of(PAGE_SIZE);
        if !inside_data || !aligned || g.is_empty() {
            return Err(PlanError::BadGuard(g.start));
        }
        let r = MemoryRegion::new(g.start as usize, g.end as usize);
        idmap
            .map_range(&r, A::empty())
            .map_err(|e| PlanError::Map("guard", e))?;
    }
    Ok(idmap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::attr;

    fn manifest(uart: bool) -> SpManifest {
        SpManifest {
            ffa_version: 0x10002,
            uuid_cells: [0; 4],
            load_address: 0xe30_0000,
            entrypoint_offset: 0x4000,
            execution_ctx_count: 1,
            messaging_method: 0x201,
            heap: Region {
                base: 0xe40_0000,
                size: 0x80_0000,
                attributes: attr::READ | attr::WRITE,
            },
            uart: uart.then_some(Region {
                base: 0x904_0000,
                size: 0x1000,
                attributes: 3,
            }),
            flexmem: Default::default(),
            flexnpu: Default::default(),
            test_device_root: None,
        }
    }

    fn image() -> ImageLayout {
        ImageLayout {
            text: 0xe30_4000..0xe30_8000,
            rodata: 0xe30_8000..0xe30_a000,
            data: 0xe30_a000..0xe31_0000,
            stack: 0xe31_0000..0xe32_0000,
        }
    }

    fn flags_at(idmap: &IdMap<El1And0>, addr: usize) -> Option<A> {
        let mut found = None;
        idmap
            .walk_range(&MemoryRegion::new(addr, addr + 1), &mut |_, d, _| {
                if d.is_valid() {
                    found = Some(d.flags());
                }
                Ok(())
            })
            .unwrap();
        found
    }

    #[test]
    fn maps_by_intent_and_leaves_the_rest_unmapped() {
        let m = manifest(true);
        let maps = plan(&image(), 0xe30_0000..0xe30_0040, 0xe30_1000..0xe30_13e2, &m).unwrap();
        let idmap = build(&maps).unwrap();
        let text = flags_at(&idmap, 0xe30_4000).unwrap();
        assert!(text.contains(A::READ_ONLY) && !text.contains(A::PXN));
        let ro = flags_at(&idmap, 0xe30_9000).unwrap();
        assert!(ro.contains(A::READ_ONLY | A::PXN));
        let data = flags_at(&idmap, 0xe30_f000).unwrap();
        assert!(!data.contains(A::READ_ONLY) && data.contains(A::PXN));
        let stack_top = flags_at(&idmap, 0xe31_f000).unwrap();
        assert_eq!(stack_top, data);
        // The stack's guard page.
        assert_eq!(flags_at(&idmap, 0xe31_0000), None);
        assert!(flags_at(&idmap, 0xe31_1000).is_some());
        let heap = flags_at(&idmap, 0xebf_f000).unwrap();
        // A 2 MiB block or a page: either way exactly the data attributes.
        assert_eq!(heap - A::TABLE_OR_PAGE, Intent::Data.attributes());
        let uart = flags_at(&idmap, 0x904_0000).unwrap();
        assert!(uart.contains(A::PXN) && !uart.contains(A::ATTRIBUTE_INDEX_1));
        assert!(flags_at(&idmap, 0xe30_1000).unwrap().contains(A::READ_ONLY));
        // Gaps: between boot info/manifest and the image, after the image, past the heap.
        assert_eq!(flags_at(&idmap, 0xe30_2000), None);
        assert_eq!(flags_at(&idmap, 0xe32_0000), None);
        assert_eq!(flags_at(&idmap, 0xec0_0000), None);
        assert_eq!(flags_at(&idmap, 0x4000_0000), None);
    }

    #[test]
    fn shared_ranges_map_by_page_and_unmap_alone() {
        let maps = plan(
            &image(),
            0xe30_0000..0xe30_0040,
            0xe30_1000..0xe30_1100,
            &manifest(false),
        )
        .unwrap();
        let mut idmap = build(&maps).unwrap();
        let base = mapped_pages(&idmap);
        let own: u64 = maps
            .iter()
            .map(|m| (m.range.end - m.range.start) / PAGE_SIZE)
            .sum();
        // Every planned page, counted from the table itself (no range overlaps in this plan).
        assert_eq!(base, own);
        let rw_ns = Access {
            ns: true,
            writable: true,
        };
        // 2 MiB aligned: would be a block without the constraint.
        map_shared(&mut idmap, 0x4820_0000..0x4840_0000, rw_ns).unwrap();
        map_shared(
            &mut idmap,
            0x4840_0000..0x4840_1000,
            Access {
                ns: true,
                writable: false,
            },
        )
        .unwrap();
        let f = flags_at(&idmap, 0x4830_0000).unwrap();
        assert!(f.contains(A::NS | A::PXN | A::UXN | A::TABLE_OR_PAGE));
        assert!(!f.contains(A::READ_ONLY));
        assert!(
            flags_at(&idmap, 0x4840_0000)
                .unwrap()
                .contains(A::READ_ONLY | A::NS)
        );
        // A secure region gets no NS bit.
        map_shared(
            &mut idmap,
            0x4900_0000..0x4900_1000,
            Access {
                ns: false,
                writable: true,
            },
        )
        .unwrap();
        assert!(!flags_at(&idmap, 0x4900_0000).unwrap().contains(A::NS));
        assert_eq!(mapped_pages(&idmap), base + 512 + 2);
        // Unmapping one range leaves its neighbour and the SP's own memory alone.
        unmap_shared(&mut idmap, 0x4820_0000..0x4840_0000).unwrap();
        assert_eq!(mapped_pages(&idmap), base + 2);
        assert_eq!(flags_at(&idmap, 0x4820_0000), None);
        assert_eq!(flags_at(&idmap, 0x483f_f000), None);
        assert!(flags_at(&idmap, 0x4840_0000).is_some());
        assert!(flags_at(&idmap, 0xe30_4000).is_some());
        // The same pages can be mapped again (cycles).
        for _ in 0..50 {
            map_shared(&mut idmap, 0x4820_0000..0x4820_2000, rw_ns).unwrap();
            unmap_shared(&mut idmap, 0x4820_0000..0x4820_2000).unwrap();
        }
        assert_eq!(flags_at(&idmap, 0x4820_1000), None);
        unmap_shared(&mut idmap, 0x4840_0000..0x4840_1000).unwrap();
        unmap_shared(&mut idmap, 0x4900_0000..0x4900_1000).unwrap();
        assert_eq!(mapped_pages(&idmap), base);
    }

    #[test]
    fn guard_pages_in_the_heap_are_left_unmapped() {
        let m = manifest(false);
        let maps = plan(&image(), 0xe30_0000..0xe30_0040, 0xe30_1000..0xe30_1100, &m).unwrap();
        let slots = crate::ec::Slots::new(0xe60_0000, 4).unwrap();
        let idmap = build_with_guards(&maps, slots.guards()).unwrap();
        for g in slots.guards() {
            assert_eq!(flags_at(&idmap, g.start as usize), None, "{g:x?}");
        }
        for i in 0..4 {
            let s = slots.slot(i).unwrap();
            for a in [s.stack.start, s.stack.end - 1, s.exception_stack.start] {
                let f = flags_at(&idmap, a as usize).unwrap();
                assert_eq!(f - A::TABLE_OR_PAGE, Intent::Data.attributes(), "{a:#x}");
            }
        }
        // The rest of the heap (a 2 MiB block before the split) is still mapped.
        assert!(flags_at(&idmap, 0xe40_0000).is_some());
        assert!(flags_at(&idmap, 0xebf_f000).is_some());
        let heap_pages = m.heap.size / PAGE_SIZE;
        let unguarded = build(&maps).unwrap();
        assert_eq!(mapped_pages(&unguarded) - mapped_pages(&idmap), 8);
        assert!(heap_pages > 8);
        // Guards must lie in RW memory the SP owns, page aligned.
        for bad in [
            0xe30_4000..0xe30_5000,
            0x4000_0000..0x4000_1000,
            0xe60_0800..0xe60_1800,
        ] {
            assert_eq!(
                build_with_guards(&maps, [bad.clone()]).err(),
                Some(PlanError::BadGuard(bad.start))
            );
        }
    }

    #[test]
    fn no_uart_unless_granted() {
        let maps = plan(
            &image(),
            0xe30_0000..0xe30_0040,
            0xe30_1000..0xe30_1100,
            &manifest(false),
        )
        .unwrap();
        assert!(maps.iter().all(|m| m.intent != Intent::Device));
        let idmap = build(&maps).unwrap();
        assert_eq!(flags_at(&idmap, 0x904_0000), None);
    }

    #[test]
    fn rejects_overlaps_and_misalignment() {
        let mut m = manifest(false);
        m.heap.base = 0xe30_f000;
        assert_eq!(
            plan(&image(), 0xe30_0000..0xe30_0040, 0xe30_1000..0xe30_1100, &m),
            Err(PlanError::Overlap("data", "heap"))
        );
        let mut img = image();
        img.stack.start = img.stack.end - PAGE_SIZE;
        assert_eq!(
            plan(&img, 0..1, 0..1, &manifest(false)),
            Err(PlanError::BadImageRange("stack"))
        );
        let mut img = image();
        img.text.end = 0xe30_7ff0;
        assert_eq!(
            plan(&img, 0..1, 0..1, &manifest(false)),
            Err(PlanError::BadImageRange("text"))
        );
        assert_eq!(
            plan(
                &image(),
                0xe30_3000..0xe30_4010,
                0xe30_1000..0xe30_1100,
                &manifest(false)
            ),
            Err(PlanError::Overlap("text", "boot-info"))
        );
    }
}
