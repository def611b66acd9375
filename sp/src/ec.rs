//! Execution contexts (ECs): how many the SP runs, and where each secondary EC's stacks are.
//!
//! An SPMC runs an S-EL1 SP either UP (one EC, migrated to whichever core sends a request:
//! Hafnium with `vcpu_count = <1>`) or MP (one EC pinned to each core: Hafnium with `vcpu_count`
//! = the core count, and always under TF-A's EL3 SPMC, which requires `execution-ctx-count` =
//! PLATFORM_CORE_COUNT). An MP SP registers a secondary entry point (FFA_SECONDARY_EP_REGISTER)
//! during its primary EC's initialisation; the SPMC enters it on each other core's first CPU_ON.
//!
//! Secondary entry contract (TF-A v2.15 `spmc_el1_sp_setup` + `spmc_cpu_on_finish_handler`,
//! Hafnium v2.15 `vcpu_bootstrap`): S-EL1, MMU and caches off, DAIF masked, PC = the registered
//! entry, x0 = 0 (EL3: FFA_WB_TYPE_S2RAM = 0; Hafnium: 0), x4 = the core's linear index, which
//! is the EC index under both (EL3: `plat_my_core_pos()`, the SP's `ec[]` index; Hafnium:
//! `cpu_index()`, the pinned vCPU's index). No boot info. The EC ends its initialisation with
//! FFA_MSG_WAIT like the primary.
//!
//! Every EC index `i < count` owns one [`Slot`] in a block taken from the heap:
//! `[guard][exception stack][guard][stack]`, the guards left unmapped so that an overflow
//! faults instead of running into the neighbour. The primary EC keeps its boot stack; its own
//! slot is used only if its core is powered off and on again (then the SPMC enters it at the
//! secondary entry with a fresh context).

use core::ops::Range;

pub const PAGE_SIZE: u64 = 0x1000;
/// A secondary EC's stack: as large as the boot stack (`entry!(main, 16)`), since any EC may
/// serve a `Generate`.
pub const STACK_PAGES: u64 = 16;
/// The stack exception handlers run on (SP_EL1), as for the primary EC.
pub const EXCEPTION_STACK_PAGES: u64 = 4;
pub const SLOT_PAGES: u64 = 1 + EXCEPTION_STACK_PAGES + 1 + STACK_PAGES;
pub const SLOT_SIZE: u64 = SLOT_PAGES * PAGE_SIZE;
/// Offset of the exception stack's top (initial SP_EL1) in a slot.
pub const EXCEPTION_TOP_OFFSET: u64 = (1 + EXCEPTION_STACK_PAGES) * PAGE_SIZE;
/// The most ECs the SP sets up (TF-A's QEMU port has 32 cores; the bound keeps a bad count from
/// eating the heap).
pub const MAX_CONTEXTS: u16 = 64;

/// How the SPMC runs this SP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contexts {
    /// One EC, no secondary entry point.
    Up,
    /// This many pinned ECs (> 1), indexed by linear core index.
    Mp(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcError {
    /// A count of zero (manifest or SPMC).
    NoContexts,
    /// The SPMC runs more ECs than the manifest declares (and the SP has stacks for).
    SpmcRunsMore { spmc: u16, manifest: u32 },
    /// More than [`MAX_CONTEXTS`].
    TooMany(u32),
    /// The slot block is not page aligned, or its end overflows.
    BadBase(u64),
    /// An EC index the SPMC passed (x4) that has no slot.
    IndexOutOfRange { index: u64, count: u16 },
}

/// Decides UP or MP from the manifest's `execution-ctx-count` and the count the SPMC reports
/// for this partition (FFA_PARTITION_INFO_GET; `None` if it could not be asked). The SPMC's word
/// wins: Hafnium takes the count from its own manifest (`vcpu_count`) and ignores the SP's, but
/// the SP cannot serve more ECs than its manifest (which bounds its stacks) declares.
pub fn plan(manifest: u32, spmc: Option<u16>) -> Result<Contexts, EcError> {
    if manifest == 0 {
        return Err(EcError::NoContexts);
    }
    let n = match spmc {
        Some(0) => return Err(EcError::NoContexts),
        Some(n) if u32::from(n) > manifest => {
            return Err(EcError::SpmcRunsMore { spmc: n, manifest });
        }
        Some(n) => u32::from(n),
        None => manifest,
    };
    match u16::try_from(n) {
        Ok(1) => Ok(Contexts::Up),
        Ok(n) if n <= MAX_CONTEXTS => Ok(Contexts::Mp(n)),
        _ => Err(EcError::TooMany(n)),
    }
}

/// One EC's stacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The exception stack (SP_EL1 starts at its end).
    pub exception_stack: Range<u64>,
    /// The stack the EC runs on (SP_EL0 starts at its end).
    pub stack: Range<u64>,
}

/// The slots of ECs `0..count`, back to back from `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    base: u64,
    count: u16,
}

impl Slots {
    /// Bytes the slots of `count` ECs take.
    pub const fn bytes(count: u16) -> u64 {
        count as u64 * SLOT_SIZE
    }

    pub fn new(base: u64, count: u16) -> Result<Self, EcError> {
        if count == 0 {
            return Err(EcError::NoContexts);
        }
        if count > MAX_CONTEXTS {
            return Err(EcError::TooMany(u32::from(count)));
        }
        if !base.is_multiple_of(PAGE_SIZE) || base.checked_add(Self::bytes(count)).is_none() {
            return Err(EcError::BadBase(base));
        }
        Ok(Slots { base, count })
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn range(&self) -> Range<u64> {
        self.base..self.base + Self::bytes(self.count)
    }

    /// The slot of EC `index` (the x4 the SPMC passed). The secondary entry makes the same
    /// check and computes the same tops (`base + index * SLOT_SIZE + EXCEPTION_TOP_OFFSET`,
    /// `base + (index + 1) * SLOT_SIZE`) before it has a stack.
    pub fn slot(&self, index: u64) -> Result<Slot, EcError> {
        if index >= u64::from(self.count) {
            return Err(EcError::IndexOutOfRange {
                index,
                count: self.count,
            });
        }
        let start = self.base + index * SLOT_SIZE;
        Ok(Slot {
            exception_stack: start + PAGE_SIZE..start + EXCEPTION_TOP_OFFSET,
            stack: start + EXCEPTION_TOP_OFFSET + PAGE_SIZE..start + SLOT_SIZE,
        })
    }

    /// The guard pages: below each exception stack and below each stack.
    pub fn guards(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        (0..u64::from(self.count)).flat_map(move |i| {
            let start = self.base + i * SLOT_SIZE;
            let stack_guard = start + EXCEPTION_TOP_OFFSET;
            [
                start..start + PAGE_SIZE,
                stack_guard..stack_guard + PAGE_SIZE,
            ]
        })
    }
}

/// What the secondary entry reads, with the MMU off, before it has a stack: the primary EC's
/// translation setup and the slots. The primary fills it, cleans it to the point of coherency,
/// then registers the entry point; `slot_count` stays 0 (every secondary refused) until then.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootTable {
    pub mair: u64,
    pub tcr: u64,
    pub sctlr: u64,
    pub ttbr0: u64,
    pub slots_base: u64,
    pub slot_count: u64,
}

/// Byte offsets of [`BootTable`]'s fields, for the entry's assembly.
pub mod table {
    use super::BootTable;
    use core::mem::offset_of;

    pub const MAIR: usize = offset_of!(BootTable, mair);
    pub const TCR: usize = offset_of!(BootTable, tcr);
    pub const SCTLR: usize = offset_of!(BootTable, sctlr);
    pub const TTBR0: usize = offset_of!(BootTable, ttbr0);
    pub const SLOTS_BASE: usize = offset_of!(BootTable, slots_base);
    pub const SLOT_COUNT: usize = offset_of!(BootTable, slot_count);
}

impl BootTable {
    pub fn new(regs: [u64; 4], slots: &Slots) -> Self {
        let [mair, tcr, sctlr, ttbr0] = regs;
        BootTable {
            mair,
            tcr,
            sctlr,
            ttbr0,
            slots_base: slots.base(),
            slot_count: u64::from(slots.count()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_or_mp_from_manifest_and_spmc() {
        // Hafnium UP (vcpu_count 1), whatever the manifest says.
        assert_eq!(plan(1, Some(1)), Ok(Contexts::Up));
        assert_eq!(plan(8, Some(1)), Ok(Contexts::Up));
        // The EL3 SPMC: PLATFORM_CORE_COUNT, which the manifest must equal.
        assert_eq!(plan(32, Some(32)), Ok(Contexts::Mp(32)));
        assert_eq!(plan(8, Some(8)), Ok(Contexts::Mp(8)));
        // Hafnium MP on fewer cores than the manifest allows: as many as the SPMC runs.
        assert_eq!(plan(8, Some(2)), Ok(Contexts::Mp(2)));
        // No answer from the SPMC: the manifest.
        assert_eq!(plan(1, None), Ok(Contexts::Up));
        assert_eq!(plan(4, None), Ok(Contexts::Mp(4)));
        assert_eq!(
            plan(1, Some(4)),
            Err(EcError::SpmcRunsMore {
                spmc: 4,
                manifest: 1
            })
        );
        assert_eq!(plan(0, Some(1)), Err(EcError::NoContexts));
        assert_eq!(plan(4, Some(0)), Err(EcError::NoContexts));
        assert_eq!(plan(65, None), Err(EcError::TooMany(65)));
        assert_eq!(plan(u32::MAX, Some(100)), Err(EcError::TooMany(100)));
        assert_eq!(plan(64, None), Ok(Contexts::Mp(64)));
    }

    #[test]
    fn slots_are_what_the_entry_computes() {
        let base = 0x0e60_0000;
        let s = Slots::new(base, 32).unwrap();
        assert_eq!(s.range(), base..base + 32 * SLOT_SIZE);
        for i in 0..32u64 {
            let slot = s.slot(i).unwrap();
            // The entry's arithmetic.
            assert_eq!(
                slot.exception_stack.end,
                base + i * SLOT_SIZE + EXCEPTION_TOP_OFFSET
            );
            assert_eq!(slot.stack.end, base + (i + 1) * SLOT_SIZE);
            assert_eq!(slot.stack.end - slot.stack.start, STACK_PAGES * PAGE_SIZE);
            assert_eq!(
                slot.exception_stack.end - slot.exception_stack.start,
                EXCEPTION_STACK_PAGES * PAGE_SIZE
            );
            // 16-byte aligned tops (SCTLR_EL1.SA).
            assert!(slot.stack.end.is_multiple_of(16));
            assert!(slot.exception_stack.end.is_multiple_of(16));
        }
        assert_eq!(
            s.slot(32),
            Err(EcError::IndexOutOfRange {
                index: 32,
                count: 32
            })
        );
        assert!(s.slot(u64::MAX).is_err());
    }

    #[test]
    fn guards_sit_below_every_stack_and_nothing_overlaps() {
        let s = Slots::new(0x4000_0000, 3).unwrap();
        let guards: Vec<_> = s.guards().collect();
        assert_eq!(guards.len(), 6);
        let mut used: Vec<Range<u64>> = guards.clone();
        for i in 0..3 {
            let slot = s.slot(i).unwrap();
            assert!(guards.contains(&(slot.stack.start - PAGE_SIZE..slot.stack.start)));
            assert!(
                guards.contains(
                    &(slot.exception_stack.start - PAGE_SIZE..slot.exception_stack.start)
                )
            );
            used.push(slot.stack);
            used.push(slot.exception_stack);
        }
        used.sort_by_key(|r| r.start);
        // Back to back: the slots are exactly guards and stacks.
        for w in used.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{used:x?}");
        }
        assert_eq!(used.first().unwrap().start, s.range().start);
        assert_eq!(used.last().unwrap().end, s.range().end);
    }

    #[test]
    fn bad_slot_blocks() {
        assert_eq!(Slots::new(0x1000, 0), Err(EcError::NoContexts));
        assert_eq!(Slots::new(0x1000, 65), Err(EcError::TooMany(65)));
        assert_eq!(Slots::new(0x1800, 2), Err(EcError::BadBase(0x1800)));
        assert_eq!(Slots::new(!0xfff_u64, 2), Err(EcError::BadBase(!0xfff_u64)));
    }

    #[test]
    fn boot_table_layout_is_fixed() {
        // The entry's assembly reads these offsets.
        assert_eq!(
            [
                table::MAIR,
                table::TCR,
                table::SCTLR,
                table::TTBR0,
                table::SLOTS_BASE,
                table::SLOT_COUNT
            ],
            [0, 8, 16, 24, 32, 40]
        );
        let s = Slots::new(0x8000_0000, 8).unwrap();
        let t = BootTable::new([1, 2, 3, 4], &s);
        assert_eq!((t.slots_base, t.slot_count, t.ttbr0), (0x8000_0000, 8, 4));
    }
}
