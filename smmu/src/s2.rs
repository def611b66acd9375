//! Stage-2 translation tables for the NPU's secure stream (VMSAv8-64, 4 KiB granule, AArch64
//! descriptors; Arm ARM D8.3 and IHI 0070 sec. 3.4): what [`crate::ste::Stage2`] points at.
//! The partition maps exactly the NPU's buffers; everything else faults.
//!
//! The geometry is fixed: a 32-bit IOVA (`S2T0SZ` = 32) starting at level 1 (`S2SL0` = 1), four
//! level-1 entries, then level-2 and level-3 tables. Page descriptors are normal write-back
//! memory, inner shareable, access flag set, with `S2AP` read/write as asked.

use crate::ste::Stage2;

/// The stage-2 geometry this builder makes.
pub const T0SZ: u8 = 32;
pub const SL0: u8 = 1;
/// The first IOVA the tables cannot map.
pub const IOVA_LIMIT: u64 = 1 << (64 - T0SZ as u32);
const PAGE: u64 = 4096;
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

const VALID: u64 = 1 << 0;
/// Table (levels 1-2) or page (level 3).
const TABLE_OR_PAGE: u64 = 1 << 1;
/// `MemAttr` = 0b1111: normal, inner and outer write-back.
const MEMATTR_WB: u64 = 0b1111 << 2;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
/// `SH` = 0b11: inner shareable.
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;

/// Where the tables live: zeroed pages, and 64-bit stores and loads to them.
pub trait TableMemory {
    /// A zeroed, 4 KiB aligned page for a table; `None` when out of pages.
    fn alloc_page(&mut self) -> Option<u64>;
    fn read_u64(&mut self, pa: u64) -> Option<u64>;
    fn write_u64(&mut self, pa: u64, value: u64) -> bool;
}

/// Access a page grants the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S2Error {
    Unaligned(u64),
    /// The IOVA is at or above [`IOVA_LIMIT`], or the PA beyond 48 bits.
    OutOfRange(u64),
    /// Already mapped (unmap first).
    Mapped(u64),
    NotMapped(u64),
    /// No page for a new table, or a table store failed.
    NoMemory,
}

/// Why a device access does not translate (stage-2 faults; the event each one records is in
/// [`crate::event`]'s table: `F_TRANSLATION`, `F_ACCESS`, `F_PERMISSION`, `F_WALK_EABT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    Translation {
        iova: u64,
        level: u8,
    },
    /// The page descriptor has AF = 0 (the STEs leave `S2AFFD` clear, so this faults).
    AccessFlag {
        iova: u64,
        level: u8,
    },
    Permission {
        iova: u64,
        write: bool,
    },
    /// A table or page descriptor outputs an address beyond the STE's `S2PS` (a stage-2
    /// address size fault, IHI 0070 sec. 3.4 stage 2 check 2).
    OutputSize {
        iova: u64,
        level: u8,
    },
    /// A table address outside the walker's memory.
    External {
        pa: u64,
    },
    /// The input address is beyond the STE's `S2T0SZ` range: a stage-2 translation fault
    /// (IHI 0070 sec. 3.4, stage 2 check 1), kept apart from a hole in the tables.
    AddressSize {
        iova: u64,
    },
}

/// Index of `iova` at level `l` (1..=3) with 9 bits per level.
fn index(iova: u64, level: u8) -> u64 {
    (iova >> (12 + 9 * (3 - u32::from(level)))) & 0x1ff
}

/// A stage-2 table tree rooted at `root` (a level-1 table).
pub struct S2Tables {
    root: u64,
}

impl S2Tables {
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, S2Error> {
        Ok(S2Tables {
            root: mem.alloc_page().ok_or(S2Error::NoMemory)?,
        })
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    /// The STE fields for these tables.
    pub fn stage2(&self, vmid: u16) -> Stage2 {
        Stage2 {
            vmid,
            ttb: self.root,
            t0sz: T0SZ,
            sl0: SL0,
            ps: 5,
        }
    }

    /// Maps the page at `iova` to `pa`.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        iova: u64,
        pa: u64,
        access: Access,
    ) -> Result<(), S2Error> {
        for a in [iova, pa] {
            if !a.is_multiple_of(PAGE) {
                return Err(S2Error::Unaligned(a));
            }
        }
        if iova >= IOVA_LIMIT || pa & !OA_MASK != 0 {
            return Err(S2Error::OutOfRange(if iova >= IOVA_LIMIT {
                iova
            } else {
                pa
            }));
        }
        let mut table = self.root;
        for level in 1..3u8 {
            let slot = table + 8 * index(iova, level);
            let d = mem.read_u64(slot).ok_or(S2Error::NoMemory)?;
            table = if d & VALID != 0 {
                d & OA_MASK
            } else {
                let t = mem.alloc_page().ok_or(S2Error::NoMemory)?;
                if !mem.write_u64(slot, t | TABLE_OR_PAGE | VALID) {
                    return Err(S2Error::NoMemory);
                }
                t
            };
        }
        let slot = table + 8 * index(iova, 3);
        if mem.read_u64(slot).ok_or(S2Error::NoMemory)? & VALID != 0 {
            return Err(S2Error::Mapped(iova));
        }
        let ap =
            if access.read { S2AP_READ } else { 0 } | if access.write { S2AP_WRITE } else { 0 };
        let desc = pa | AF | SH_INNER | ap | MEMATTR_WB | TABLE_OR_PAGE | VALID;
        if !mem.write_u64(slot, desc) {
            return Err(S2Error::NoMemory);
        }
        Ok(())
    }

    /// Unmaps the page at `iova` (the caller then invalidates the SMMU's TLB for the VMID).
    pub fn unmap(&mut self, mem: &mut impl TableMemory, iova: u64) -> Result<(), S2Error> {
        let mut table = self.root;
        for level in 1..3u8 {
            let d = mem
                .read_u64(table + 8 * index(iova, level))
                .ok_or(S2Error::NoMemory)?;
            if d & VALID == 0 {
                return Err(S2Error::NotMapped(iova));
            }
            table = d & OA_MASK;
        }
        let slot = table + 8 * index(iova, 3);
        if mem.read_u64(slot).ok_or(S2Error::NoMemory)? & VALID == 0 {
            return Err(S2Error::NotMapped(iova));
        }
        if !mem.write_u64(slot, 0) {
            return Err(S2Error::NoMemory);
        }
        Ok(())
    }
}

/// The hardware walk of a stage-2 STE's tables, as the SMMU does it for a transaction.
pub fn walk(
    mem: &mut impl TableMemory,
    s2: &Stage2,
    iova: u64,
    write: bool,
) -> Result<u64, WalkFault> {
    if iova >= 1u64 << (64 - u32::from(s2.t0sz)) {
        return Err(WalkFault::AddressSize { iova });
    }
    // 4 KiB granule: SL0 0 = level 2, 1 = level 1, 2 = level 0.
    let start = 2u8.saturating_sub(s2.sl0);
    if start == 0 {
        // Level-0 starts need a 48-bit IOVA; the builder never makes them.
        return Err(WalkFault::Translation { iova, level: 0 });
    }
    // S2PS as ID_AA64MMFR0.PARange: 32, 36, 40, 42, 44, 48 bits.
    let ps_bits: u32 = [32, 36, 40, 42, 44, 48][usize::from(s2.ps.min(5))];
    let mut table = s2.ttb & OA_MASK;
    for level in start..=3u8 {
        let slot = table + 8 * index(iova, level);
        let d = mem.read_u64(slot).ok_or(WalkFault::External { pa: slot })?;
        let is_table_or_page = d & TABLE_OR_PAGE != 0;
        if d & VALID == 0 || (level == 3 && !is_table_or_page) {
            return Err(WalkFault::Translation { iova, level });
        }
        if (d & OA_MASK) >> ps_bits != 0 {
            return Err(WalkFault::OutputSize { iova, level });
        }
        if level < 3 && is_table_or_page {
            table = d & OA_MASK;
            continue;
        }
        if level < 3 {
            // A block descriptor: the builder makes none, so the model treats one as a fault.
            return Err(WalkFault::Translation { iova, level });
        }
        if d & AF == 0 {
            return Err(WalkFault::AccessFlag { iova, level });
        }
        let ok = if write {
            d & S2AP_WRITE != 0
        } else {
            d & S2AP_READ != 0
        };
        if !ok {
            return Err(WalkFault::Permission { iova, write });
        }
        return Ok((d & OA_MASK) | (iova & (PAGE - 1)));
    }
    Err(WalkFault::Translation { iova, level: 3 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// Pages handed out from `next`, read and written in a map.
    struct Mem {
        next: u64,
        limit: u64,
        words: BTreeMap<u64, u64>,
    }

    impl TableMemory for Mem {
        fn alloc_page(&mut self) -> Option<u64> {
            (self.next < self.limit).then(|| {
                self.next += PAGE;
                self.next - PAGE
            })
        }
        fn read_u64(&mut self, pa: u64) -> Option<u64> {
            (pa < self.limit).then(|| self.words.get(&pa).copied().unwrap_or(0))
        }
        fn write_u64(&mut self, pa: u64, v: u64) -> bool {
            self.words.insert(pa, v);
            pa < self.limit
        }
    }

    fn mem(pages: u64) -> Mem {
        Mem {
            next: 0x8000_0000,
            limit: 0x8000_0000 + pages * PAGE,
            words: BTreeMap::new(),
        }
    }

    const RW: Access = Access {
        read: true,
        write: true,
    };
    const RO: Access = Access {
        read: true,
        write: false,
    };

    #[test]
    fn mapped_pages_translate_and_nothing_else_does() {
        let mut m = mem(16);
        let mut t = S2Tables::new(&mut m).unwrap();
        t.map(&mut m, 0x4000_0000, 0x1_2345_6000, RW).unwrap();
        t.map(&mut m, 0x4000_1000, 0x9000, RO).unwrap();
        let s2 = t.stage2(3);
        assert_eq!((s2.t0sz, s2.sl0, s2.ttb), (32, 1, 0x8000_0000));
        assert_eq!(walk(&mut m, &s2, 0x4000_0abc, true), Ok(0x1_2345_6abc));
        assert_eq!(walk(&mut m, &s2, 0x4000_1008, false), Ok(0x9008));
        assert_eq!(
            walk(&mut m, &s2, 0x4000_1008, true),
            Err(WalkFault::Permission {
                iova: 0x4000_1008,
                write: true
            })
        );
        assert_eq!(
            walk(&mut m, &s2, 0x4000_2000, false),
            Err(WalkFault::Translation {
                iova: 0x4000_2000,
                level: 3
            })
        );
        assert_eq!(
            walk(&mut m, &s2, 0x1000, false),
            Err(WalkFault::Translation {
                iova: 0x1000,
                level: 1
            })
        );
        assert_eq!(
            walk(&mut m, &s2, 1 << 32, false),
            Err(WalkFault::AddressSize { iova: 1 << 32 })
        );
        // With a 32-bit S2PS, the page at 0x1_2345_6000 is out of range (F_ADDR_SIZE).
        let narrow = Stage2 { ps: 0, ..s2 };
        assert_eq!(
            walk(&mut m, &narrow, 0x4000_0abc, false),
            Err(WalkFault::OutputSize {
                iova: 0x4000_0abc,
                level: 3
            })
        );
        assert_eq!(walk(&mut m, &narrow, 0x4000_1008, false), Ok(0x9008));
        // AF = 0 in the page descriptor: an access flag fault (F_ACCESS), not a hole.
        let (slot, d) = m
            .words
            .iter()
            .map(|(&a, &d)| (a, d))
            .find(|&(_, d)| d & OA_MASK == 0x9000)
            .unwrap();
        m.words.insert(slot, d & !AF);
        assert_eq!(
            walk(&mut m, &s2, 0x4000_1008, false),
            Err(WalkFault::AccessFlag {
                iova: 0x4000_1008,
                level: 3
            })
        );
        m.words.insert(slot, d);
        // 1 root + 1 level-2 + 1 level-3 table.
        assert_eq!(m.next, 0x8000_0000 + 3 * PAGE);
        t.unmap(&mut m, 0x4000_0000).unwrap();
        assert!(walk(&mut m, &s2, 0x4000_0000, false).is_err());
        assert_eq!(
            t.unmap(&mut m, 0x4000_0000),
            Err(S2Error::NotMapped(0x4000_0000))
        );
        assert_eq!(t.unmap(&mut m, 0x1000), Err(S2Error::NotMapped(0x1000)));
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut m = mem(3);
        let mut t = S2Tables::new(&mut m).unwrap();
        assert_eq!(
            t.map(&mut m, 0x1001, 0, RW),
            Err(S2Error::Unaligned(0x1001))
        );
        assert_eq!(
            t.map(&mut m, 1 << 32, 0, RW),
            Err(S2Error::OutOfRange(1 << 32))
        );
        assert_eq!(
            t.map(&mut m, 0, 1 << 48, RW),
            Err(S2Error::OutOfRange(1 << 48))
        );
        t.map(&mut m, 0, 0x5000, RW).unwrap();
        assert_eq!(t.map(&mut m, 0, 0x6000, RW), Err(S2Error::Mapped(0)));
        // Out of table pages: a mapping in another 1 GiB needs two more.
        assert_eq!(
            t.map(&mut m, 0x8000_0000, 0x6000, RW),
            Err(S2Error::NoMemory)
        );
        // A walk through a table outside memory is an external abort.
        let s2 = Stage2 {
            ttb: 0x1_0000_0000,
            ..t.stage2(1)
        };
        assert!(matches!(
            walk(&mut m, &s2, 0, false),
            Err(WalkFault::External { .. })
        ));
    }
}
