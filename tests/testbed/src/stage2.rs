//! Stage-2 translation tables for a secure partition (VMSAv8-64, 4 KiB granule, 32-bit IPA,
//! walk starting at level 1), built page by page so that later issues can change single pages
//! (LEND/DONATE/RECLAIM) and report what was mapped where.
//!
//! One `Stage2` is one IPA space: the SPMC keeps two per SP, the secure one (VSTTBR_EL2) and the
//! non-secure one (VTTBR_EL2, VTCR_EL2.NSA = 1), as Hafnium does (platform-facts.md sec. 3.3).
//! Table building is safe and host-tested; only installing the tables (in `arch`) is unsafe.

pub const PAGE: u64 = 0x1000;
/// IPA space size: T0SZ = 32 (4 GiB) covers secure RAM, devices and the NS DRAM of `virt -m 1024`.
pub const IPA_BITS: u32 = 32;
const ENTRIES: usize = 512;

/// One 4 KiB translation table.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

/// What a mapping allows and what memory type it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub device: bool,
}

impl Attrs {
    pub const RWX: Attrs = Attrs {
        read: true,
        write: true,
        exec: true,
        device: false,
    };
    pub const DEVICE_RW: Attrs = Attrs {
        read: true,
        write: true,
        exec: false,
        device: true,
    };

    /// From an FF-A manifest `attributes` value (0x1 R, 0x2 W, 0x4 X; 0x8 NS is the caller's).
    pub fn from_manifest(attr: u32, device: bool) -> Attrs {
        Attrs {
            read: attr & 1 != 0,
            write: attr & 2 != 0,
            exec: attr & 4 != 0 && !device,
            device,
        }
    }

    fn descriptor_bits(self) -> u64 {
        // MemAttr[5:2] (HCR_EL2.FWB = 0): 0b1111 normal WB inner/outer, 0b0001 Device-nGnRE.
        let memattr: u64 = if self.device { 0b0001 } else { 0b1111 };
        let s2ap = u64::from(self.read) | u64::from(self.write) << 1;
        let sh: u64 = if self.device { 0 } else { 0b11 };
        // XN[54:53] = 0b10: not executable at EL1 or EL0.
        let xn: u64 = if self.exec { 0 } else { 0b10 };
        (memattr << 2) | (s2ap << 6) | (sh << 8) | (1 << 10) | (xn << 53)
    }

    fn from_descriptor(d: u64) -> Attrs {
        Attrs {
            read: d & (1 << 6) != 0,
            write: d & (1 << 7) != 0,
            exec: (d >> 53) & 0b11 == 0,
            device: (d >> 2) & 0b1111 == 0b0001,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The IPA, PA or size is not page aligned.
    Unaligned { ipa: u64, pa: u64, size: u64 },
    /// The range reaches past the 4 GiB IPA space or wraps.
    OutOfRange { ipa: u64, size: u64 },
    /// A page of the range is already mapped (overlapping regions in a manifest).
    AlreadyMapped { ipa: u64 },
    /// The table pool is exhausted.
    NoTables,
    /// Unmapping a page that is not mapped.
    NotMapped { ipa: u64 },
}

const VALID_TABLE: u64 = 0b11;
/// A level-1 (1 GiB) or level-2 (2 MiB) block.
const VALID_BLOCK: u64 = 0b01;
/// An invalid descriptor the SPMC wrote on purpose (bit 0 clear, so the walker ignores the
/// rest): bit 1 marks it, bits \[63:32\] carry a tag saying why the page is gone.
const REVOKED: u64 = 0b10;
const VALID_PAGE: u64 = 0b11;
const ADDR_MASK: u64 = 0x0000_FFFF_FFFF_F000;

/// A stage-2 IPA space over a pool of tables. `pool_pa` is the physical address of `pool[0]`
/// (tables point at each other by PA; the SPMC runs with its MMU off, so PA == its address).
pub struct Stage2<'a> {
    pool: &'a mut [Table],
    pool_pa: u64,
    used: usize,
}

impl<'a> Stage2<'a> {
    /// Takes `pool` (at least one table, the level-1 root) and clears it.
    pub fn new(pool: &'a mut [Table], pool_pa: u64) -> Result<Self, MapError> {
        if pool.is_empty() {
            return Err(MapError::NoTables);
        }
        for t in pool.iter_mut() {
            t.0.fill(0);
        }
        Ok(Stage2 {
            pool,
            pool_pa,
            used: 1,
        })
    }

    /// PA of the level-1 root table: the base address for VSTTBR_EL2 / VTTBR_EL2.
    pub fn root_pa(&self) -> u64 {
        self.pool_pa
    }

    pub fn tables_used(&self) -> usize {
        self.used
    }

    fn index_of(&self, desc: u64) -> usize {
        ((desc & ADDR_MASK) - self.pool_pa) as usize / PAGE as usize
    }

    fn check(ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
        if !ipa.is_multiple_of(PAGE)
            || !pa.is_multiple_of(PAGE)
            || !size.is_multiple_of(PAGE)
            || size == 0
        {
            return Err(MapError::Unaligned { ipa, pa, size });
        }
        match ipa.checked_add(size) {
            Some(end) if end <= 1 << IPA_BITS => Ok(()),
            _ => Err(MapError::OutOfRange { ipa, size }),
        }
    }

    /// Returns the level-3 table for `ipa`, allocating tables on the way if `alloc`.
    fn l3_for(&mut self, ipa: u64, alloc: bool) -> Result<Option<usize>, MapError> {
        let mut table = 0usize;
        for shift in [30u32, 21] {
            let idx = ((ipa >> shift) & 0x1ff) as usize;
            let d = self.pool[table].0[idx];
            if d & 0b11 == VALID_TABLE {
                table = self.index_of(d);
                continue;
            }
            if !alloc {
                return Ok(None);
            }
            if self.used == self.pool.len() {
                return Err(MapError::NoTables);
            }
            let new = self.used;
            self.used += 1;
            self.pool[table].0[idx] = (self.pool_pa + new as u64 * PAGE) | VALID_TABLE;
            table = new;
        }
        Ok(Some(table))
    }

    /// Maps `size` bytes at `ipa` to `pa` with `attrs`; refuses to overwrite a live mapping.
    /// On error, pages mapped by this call stay mapped only if the error is `NoTables`; the
    /// overlap check runs over the whole range first.
    pub fn map(&mut self, ipa: u64, pa: u64, size: u64, attrs: Attrs) -> Result<(), MapError> {
        Self::check(ipa, pa, size)?;
        for off in (0..size).step_by(PAGE as usize) {
            if self.lookup(ipa + off).is_some() {
                return Err(MapError::AlreadyMapped { ipa: ipa + off });
            }
        }
        for off in (0..size).step_by(PAGE as usize) {
            let a = ipa + off;
            let t = self.l3_for(a, true)?.ok_or(MapError::NoTables)?;
            self.pool[t].0[((a >> 12) & 0x1ff) as usize] =
                ((pa + off) & ADDR_MASK) | attrs.descriptor_bits() | VALID_PAGE;
        }
        Ok(())
    }

    /// Unmaps `size` bytes at `ipa`; every page must be mapped. The caller invalidates the TLB.
    pub fn unmap(&mut self, ipa: u64, size: u64) -> Result<(), MapError> {
        Self::check(ipa, 0, size)?;
        for off in (0..size).step_by(PAGE as usize) {
            if self.lookup(ipa + off).is_none() {
                return Err(MapError::NotMapped { ipa: ipa + off });
            }
        }
        for off in (0..size).step_by(PAGE as usize) {
            let a = ipa + off;
            if let Ok(Some(t)) = self.l3_for(a, false) {
                self.pool[t].0[((a >> 12) & 0x1ff) as usize] = 0;
            }
        }
        Ok(())
    }

    /// Maps `[ipa, ipa + size)` to the same PA with the largest blocks that fit (1 GiB at
    /// level 1, 2 MiB at level 2, else pages): for an identity map of a whole address range
    /// with few tables (the normal world's stage-2). Pages must be unmapped so far.
    pub fn map_identity(&mut self, ipa: u64, size: u64, attrs: Attrs) -> Result<(), MapError> {
        Self::check(ipa, ipa, size)?;
        let end = ipa + size;
        let mut a = ipa;
        while a < end {
            let fits = |sz: u64| a.is_multiple_of(sz) && end - a >= sz;
            if fits(1 << 30) && self.pool[0].0[(a >> 30) as usize & 0x1ff] == 0 {
                self.pool[0].0[(a >> 30) as usize & 0x1ff] =
                    (a & ADDR_MASK) | attrs.descriptor_bits() | VALID_BLOCK;
                a += 1 << 30;
            } else if fits(1 << 21) {
                let t = self.l2_for(a)?;
                let e = &mut self.pool[t].0[((a >> 21) & 0x1ff) as usize];
                if *e != 0 {
                    return Err(MapError::AlreadyMapped { ipa: a });
                }
                *e = (a & ADDR_MASK) | attrs.descriptor_bits() | VALID_BLOCK;
                a += 1 << 21;
            } else {
                self.map(a, a, PAGE, attrs)?;
                a += PAGE;
            }
        }
        Ok(())
    }

    /// The level-2 table for `ipa`, allocating it if the level-1 entry is empty.
    fn l2_for(&mut self, ipa: u64) -> Result<usize, MapError> {
        let idx = ((ipa >> 30) & 0x1ff) as usize;
        let d = self.pool[0].0[idx];
        if d & 0b11 == VALID_TABLE {
            return Ok(self.index_of(d));
        }
        if d != 0 {
            return Err(MapError::AlreadyMapped { ipa });
        }
        let new = self.alloc_table()?;
        self.pool[0].0[idx] = (self.pool_pa + new as u64 * PAGE) | VALID_TABLE;
        Ok(new)
    }

    fn alloc_table(&mut self) -> Result<usize, MapError> {
        if self.used == self.pool.len() {
            return Err(MapError::NoTables);
        }
        self.used += 1;
        Ok(self.used - 1)
    }

    /// The level-3 entry slot for `ipa` (table index, entry index), splitting a 2 MiB block
    /// into 512 pages with the same attributes if needed. 1 GiB blocks are not split.
    fn l3_slot_split(&mut self, ipa: u64) -> Result<(usize, usize), MapError> {
        let l1 = self.pool[0].0[((ipa >> 30) & 0x1ff) as usize];
        if l1 & 0b11 != VALID_TABLE {
            return Err(MapError::NotMapped { ipa });
        }
        let l2t = self.index_of(l1);
        let l2i = ((ipa >> 21) & 0x1ff) as usize;
        let d = self.pool[l2t].0[l2i];
        let l3 = match d & 0b11 {
            VALID_TABLE => self.index_of(d),
            VALID_BLOCK => {
                let new = self.alloc_table()?;
                let base = d & ADDR_MASK & !((1 << 21) - 1);
                let attr_bits = d & !ADDR_MASK & !0b11;
                for (i, e) in self.pool[new].0.iter_mut().enumerate() {
                    *e = (base + i as u64 * PAGE) | attr_bits | VALID_PAGE;
                }
                self.pool[l2t].0[l2i] = (self.pool_pa + new as u64 * PAGE) | VALID_TABLE;
                new
            }
            _ => return Err(MapError::NotMapped { ipa }),
        };
        Ok((l3, ((ipa >> 12) & 0x1ff) as usize))
    }

    /// Takes the page at `ipa` away (invalid descriptor carrying `tag`, non-zero), splitting a
    /// block if needed. The page must be mapped (a revoked page is not: a page cannot be
    /// taken twice). The caller invalidates the TLB.
    pub fn revoke(&mut self, ipa: u64, tag: u32) -> Result<(), MapError> {
        Self::check(ipa, 0, PAGE)?;
        let (t, i) = self.l3_slot_split(ipa)?;
        if self.pool[t].0[i] & 0b11 != VALID_PAGE {
            return Err(MapError::NotMapped { ipa });
        }
        self.pool[t].0[i] = u64::from(tag) << 32 | REVOKED;
        Ok(())
    }

    /// Gives a revoked page back, identity-mapped with `attrs`.
    pub fn restore(&mut self, ipa: u64, attrs: Attrs) -> Result<(), MapError> {
        Self::check(ipa, 0, PAGE)?;
        let (t, i) = self.l3_slot_split(ipa)?;
        if self.pool[t].0[i] & 1 != 0 || self.pool[t].0[i] & REVOKED == 0 {
            return Err(MapError::AlreadyMapped { ipa });
        }
        self.pool[t].0[i] = (ipa & ADDR_MASK) | attrs.descriptor_bits() | VALID_PAGE;
        Ok(())
    }

    /// The tag of a revoked page (see [`Self::revoke`]).
    pub fn revoked_tag(&self, ipa: u64) -> Option<u32> {
        if ipa >= 1 << IPA_BITS {
            return None;
        }
        let mut table = 0usize;
        for shift in [30u32, 21] {
            let d = self.pool[table].0[((ipa >> shift) & 0x1ff) as usize];
            if d & 0b11 != VALID_TABLE {
                return None;
            }
            table = self.index_of(d);
        }
        let d = self.pool[table].0[((ipa >> 12) & 0x1ff) as usize];
        (d & 1 == 0 && d & REVOKED != 0).then_some((d >> 32) as u32)
    }

    /// The PA and attributes `ipa` translates to, if mapped.
    pub fn lookup(&self, ipa: u64) -> Option<(u64, Attrs)> {
        if ipa >= 1 << IPA_BITS {
            return None;
        }
        let mut table = 0usize;
        for shift in [30u32, 21] {
            let d = self.pool[table].0[((ipa >> shift) & 0x1ff) as usize];
            if d & 0b11 == VALID_BLOCK {
                let mask = (1u64 << shift) - 1;
                return Some((
                    (d & ADDR_MASK & !mask) | (ipa & mask),
                    Attrs::from_descriptor(d),
                ));
            }
            if d & 0b11 != VALID_TABLE {
                return None;
            }
            table = self.index_of(d);
        }
        let d = self.pool[table].0[((ipa >> 12) & 0x1ff) as usize];
        (d & 0b11 == VALID_PAGE).then(|| {
            (
                (d & ADDR_MASK) | (ipa & (PAGE - 1)),
                Attrs::from_descriptor(d),
            )
        })
    }
}

/// One page's descriptor as [`Stage2::entry`] sees it and [`Stage2::set`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Nothing there (invalid, no tag).
    Empty,
    /// Taken away on purpose, with a non-zero tag (see [`Stage2::revoke`]).
    Revoked(u32),
    /// Mapped IPA == PA (a page, or a page of a block). `sw` is the descriptor's software
    /// nibble (bits \[58:55\], ignored by the walker), for the SPMC's own bookkeeping.
    Page { attrs: Attrs, sw: u8 },
}

/// What covers a 2 MiB chunk of IPA space (for fast paths over large ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// No table and no block: every page of it is [`Entry::Empty`].
    Absent,
    /// One block descriptor (2 MiB or 1 GiB) with these attributes and software bits.
    Block(Attrs, u8),
    /// A level-3 table: look at each page.
    Table,
}

const SW_SHIFT: u32 = 55;

impl Stage2<'_> {
    /// The descriptor of the page at `ipa`.
    pub fn entry(&self, ipa: u64) -> Entry {
        if ipa >= 1 << IPA_BITS {
            return Entry::Empty;
        }
        let mut table = 0usize;
        for shift in [30u32, 21] {
            let d = self.pool[table].0[((ipa >> shift) & 0x1ff) as usize];
            match d & 0b11 {
                VALID_TABLE => table = self.index_of(d),
                VALID_BLOCK => {
                    return Entry::Page {
                        attrs: Attrs::from_descriptor(d),
                        sw: (d >> SW_SHIFT) as u8 & 0xf,
                    };
                }
                _ => return Entry::Empty,
            }
        }
        let d = self.pool[table].0[((ipa >> 12) & 0x1ff) as usize];
        match d & 0b11 {
            VALID_PAGE => Entry::Page {
                attrs: Attrs::from_descriptor(d),
                sw: (d >> SW_SHIFT) as u8 & 0xf,
            },
            _ if d & REVOKED != 0 => Entry::Revoked((d >> 32) as u32),
            _ => Entry::Empty,
        }
    }

    /// What covers the 2 MiB chunk holding `ipa`.
    pub fn chunk(&self, ipa: u64) -> Chunk {
        if ipa >= 1 << IPA_BITS {
            return Chunk::Absent;
        }
        let l1 = self.pool[0].0[((ipa >> 30) & 0x1ff) as usize];
        let l2 = match l1 & 0b11 {
            VALID_TABLE => self.pool[self.index_of(l1)].0[((ipa >> 21) & 0x1ff) as usize],
            VALID_BLOCK => l1,
            _ => return Chunk::Absent,
        };
        match l2 & 0b11 {
            VALID_TABLE => Chunk::Table,
            VALID_BLOCK => Chunk::Block(Attrs::from_descriptor(l2), (l2 >> SW_SHIFT) as u8 & 0xf),
            _ => Chunk::Absent,
        }
    }

    /// Writes the page at `ipa` (identity: a mapped page points at PA == `ipa`), whatever was
    /// there: allocates the tables on the way or splits a 2 MiB block as needed (a 1 GiB block
    /// is refused: `AlreadyMapped`). Writing `Empty` where no table exists allocates nothing.
    /// On `NoTables` nothing changed. The caller invalidates the TLB.
    pub fn set(&mut self, ipa: u64, e: Entry) -> Result<(), MapError> {
        Self::check(ipa, ipa, PAGE)?;
        let d = match e {
            Entry::Empty => 0,
            Entry::Revoked(tag) => u64::from(tag) << 32 | REVOKED,
            Entry::Page { attrs, sw } => {
                (ipa & ADDR_MASK)
                    | attrs.descriptor_bits()
                    | u64::from(sw & 0xf) << SW_SHIFT
                    | VALID_PAGE
            }
        };
        if d == 0 && self.chunk(ipa) == Chunk::Absent {
            return Ok(());
        }
        let l1i = ((ipa >> 30) & 0x1ff) as usize;
        let l1 = self.pool[0].0[l1i];
        if l1 & 0b11 == VALID_BLOCK {
            return Err(MapError::AlreadyMapped { ipa });
        }
        // Tables needed: an L2 if the L1 entry is empty, an L3 if the L2 entry is not a table.
        let need_l2 = l1 & 0b11 != VALID_TABLE;
        let need_l3 = need_l2
            || self.pool[self.index_of(l1)].0[((ipa >> 21) & 0x1ff) as usize] & 0b11 != VALID_TABLE;
        if self.used + usize::from(need_l2) + usize::from(need_l3) > self.pool.len() {
            return Err(MapError::NoTables);
        }
        let l2t = self.l2_for(ipa)?;
        let l2i = ((ipa >> 21) & 0x1ff) as usize;
        let l2 = self.pool[l2t].0[l2i];
        let l3t = match l2 & 0b11 {
            VALID_TABLE => self.index_of(l2),
            VALID_BLOCK => self.l3_slot_split(ipa)?.0,
            _ => {
                let new = self.alloc_table()?;
                self.pool[l2t].0[l2i] = (self.pool_pa + new as u64 * PAGE) | VALID_TABLE;
                new
            }
        };
        self.pool[l3t].0[((ipa >> 12) & 0x1ff) as usize] = d;
        Ok(())
    }
}

/// VTCR_EL2 / VSTCR_EL2 value for these tables: T0SZ = 32, SL0 = 1 (start at level 1), inner and
/// outer write-back, inner shareable, 4 KiB granule, PS = 32 bits. `ns_ipa_to_ns_pa` sets
/// VTCR_EL2.NSA (bit 30) so that the NS IPA space reaches NS PAs; NSW (bit 29) stays 0, so NS
/// table walks are secure like Hafnium's. VSTCR_EL2's SA/SW stay 0 (secure IPA -> secure PA).
pub const fn vtcr(ns_ipa_to_ns_pa: bool) -> u64 {
    let t0sz = 64 - IPA_BITS as u64;
    let base = t0sz | (1 << 6) | (1 << 8) | (1 << 10) | (0b11 << 12) | (1 << 31);
    if ns_ipa_to_ns_pa {
        base | (1 << 30)
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    const BASE: u64 = 0x0e10_0000;

    #[test]
    fn map_lookup_unmap() {
        let mut pool = vec![Table::EMPTY; 8];
        let mut s2 = Stage2::new(&mut pool, BASE).unwrap();
        s2.map(0x0e30_0000, 0x0e30_0000, 0x10_0000, Attrs::RWX)
            .unwrap();
        s2.map(0x0904_0000, 0x0904_0000, PAGE, Attrs::DEVICE_RW)
            .unwrap();
        assert_eq!(
            s2.lookup(0x0e30_1234),
            Some((0x0e30_1234, Attrs::RWX)),
            "inside the package"
        );
        assert_eq!(s2.lookup(0x0904_0008).unwrap().1, Attrs::DEVICE_RW);
        assert_eq!(s2.lookup(0x0e40_0000), None, "one past the package");
        assert_eq!(s2.lookup(0x0e2f_f000), None, "one before");
        // Root + one L2 (both regions are in the first GiB) + L3 for 0x0e2.., 0x0e3.. and 0x09..
        assert_eq!(s2.tables_used(), 1 + 1 + 2);
        assert_eq!(
            s2.map(0x0e3f_f000, 0x0, PAGE, Attrs::RWX),
            Err(MapError::AlreadyMapped { ipa: 0x0e3f_f000 })
        );
        s2.unmap(0x0e30_0000, PAGE).unwrap();
        assert_eq!(s2.lookup(0x0e30_0000), None);
        assert!(s2.lookup(0x0e30_1000).is_some());
        assert_eq!(
            s2.unmap(0x0e30_0000, PAGE),
            Err(MapError::NotMapped { ipa: 0x0e30_0000 })
        );
    }

    #[test]
    fn descriptor_bits_follow_the_architecture() {
        let mut pool = vec![Table::EMPTY; 4];
        let mut s2 = Stage2::new(&mut pool, BASE).unwrap();
        let ro = Attrs {
            read: true,
            write: false,
            exec: false,
            device: false,
        };
        s2.map(0x4000_0000, 0x4000_0000, PAGE, ro).unwrap();
        // Root entry 1 (second GiB) is a table descriptor pointing into the pool.
        assert_eq!(pool[0].0[1] & 0b11, 0b11);
        assert_eq!(pool[0].0[1] & ADDR_MASK, BASE + PAGE);
        let page = pool[2].0[0];
        assert_eq!(page & ADDR_MASK, 0x4000_0000);
        assert_eq!((page >> 6) & 0b11, 0b01, "S2AP read-only");
        assert_eq!((page >> 2) & 0xf, 0xf, "normal write-back");
        assert_eq!((page >> 10) & 1, 1, "access flag");
        assert_eq!((page >> 53) & 0b11, 0b10, "execute-never");
    }

    #[test]
    fn rejects_bad_ranges_and_runs_out_cleanly() {
        let mut pool = vec![Table::EMPTY; 2];
        let mut s2 = Stage2::new(&mut pool, BASE).unwrap();
        assert!(matches!(
            s2.map(0x1001, 0x1000, PAGE, Attrs::RWX),
            Err(MapError::Unaligned { .. })
        ));
        assert!(matches!(
            s2.map(0xffff_f000, 0xffff_f000, 2 * PAGE, Attrs::RWX),
            Err(MapError::OutOfRange { .. })
        ));
        assert!(matches!(
            s2.map(!0xfff, 0, PAGE, Attrs::RWX),
            Err(MapError::OutOfRange { .. })
        ));
        // Needs an L2 and an L3 table but only one is left.
        assert_eq!(s2.map(0x0, 0x0, PAGE, Attrs::RWX), Err(MapError::NoTables));
    }

    #[test]
    fn identity_blocks_split_revoke_restore() {
        let mut pool = vec![Table::EMPTY; 4];
        let mut s2 = Stage2::new(&mut pool, BASE).unwrap();
        s2.map_identity(0, 1 << 30, Attrs::DEVICE_RW).unwrap();
        s2.map_identity(0x4000_0000, 0x3f00_0000, Attrs::RWX)
            .unwrap();
        s2.map_identity(0x7fff_0000, 0x1_0000, Attrs::RWX).unwrap();
        assert_eq!(
            s2.tables_used(),
            3,
            "root, one L2, one L3 for the last 64 KiB"
        );
        assert_eq!(
            s2.lookup(0x0900_0010),
            Some((0x0900_0010, Attrs::DEVICE_RW))
        );
        assert_eq!(s2.lookup(0x4800_1234), Some((0x4800_1234, Attrs::RWX)));
        assert_eq!(s2.lookup(0x7f00_0000), None, "reserved region left out");
        assert_eq!(s2.lookup(0x7fff_0008), Some((0x7fff_0008, Attrs::RWX)));
        s2.revoke(0x4800_1000, 0x8001_0001).unwrap();
        assert_eq!(s2.tables_used(), 4, "the 2 MiB block was split");
        assert_eq!(s2.lookup(0x4800_1000), None);
        assert_eq!(s2.revoked_tag(0x4800_1000), Some(0x8001_0001));
        assert!(
            matches!(s2.revoke(0x4800_1000, 2), Err(MapError::NotMapped { .. })),
            "not twice"
        );
        assert_eq!(s2.revoked_tag(0x4800_1000), Some(0x8001_0001));
        assert_eq!(
            s2.lookup(0x4800_0000),
            Some((0x4800_0000, Attrs::RWX)),
            "neighbour kept"
        );
        assert_eq!(s2.lookup(0x481f_f000), Some((0x481f_f000, Attrs::RWX)));
        assert_eq!(s2.revoked_tag(0x4800_0000), None);
        assert!(matches!(
            s2.restore(0x4800_0000, Attrs::RWX),
            Err(MapError::AlreadyMapped { .. })
        ));
        s2.restore(0x4800_1000, Attrs::RWX).unwrap();
        assert_eq!(s2.lookup(0x4800_1000), Some((0x4800_1000, Attrs::RWX)));
        assert_eq!(s2.revoked_tag(0x4800_1000), None);
        assert!(matches!(
            s2.revoke(0x7f00_0000, 1),
            Err(MapError::NotMapped { .. })
        ));
        assert_eq!(
            s2.revoke(0x4a00_0000, 1),
            Err(MapError::NoTables),
            "pool exhausted"
        );
        assert_eq!(
            s2.lookup(0x4a00_0000),
            Some((0x4a00_0000, Attrs::RWX)),
            "left intact"
        );
    }

    #[test]
    fn entry_set_and_chunks() {
        let mut pool = vec![Table::EMPTY; 5];
        let mut s2 = Stage2::new(&mut pool, BASE).unwrap();
        s2.map_identity(0x4000_0000, 0x40_0000, Attrs::RWX).unwrap();
        assert_eq!(s2.chunk(0x4000_0000), Chunk::Block(Attrs::RWX, 0));
        assert_eq!(s2.chunk(0x5000_0000), Chunk::Absent);
        assert_eq!(s2.entry(0x5000_0000), Entry::Empty);
        // Empty where nothing is: no table allocated.
        s2.set(0x5000_0000, Entry::Empty).unwrap();
        assert_eq!(s2.tables_used(), 2);
        // Revoked inside a block: the block is split, neighbours keep their mapping.
        s2.set(0x4000_1000, Entry::Revoked(7)).unwrap();
        assert_eq!(s2.chunk(0x4000_0000), Chunk::Table);
        assert_eq!(s2.entry(0x4000_1000), Entry::Revoked(7));
        assert_eq!(s2.revoked_tag(0x4000_1000), Some(7));
        assert_eq!(
            s2.entry(0x4000_2000),
            Entry::Page {
                attrs: Attrs::RWX,
                sw: 0
            }
        );
        // A page where nothing was: L3 allocated; software bits kept.
        let ro = Attrs {
            read: true,
            write: false,
            exec: false,
            device: false,
        };
        s2.set(0x5000_3000, Entry::Page { attrs: ro, sw: 0xb })
            .unwrap();
        assert_eq!(s2.entry(0x5000_3000), Entry::Page { attrs: ro, sw: 0xb });
        assert_eq!(s2.lookup(0x5000_3008), Some((0x5000_3008, ro)));
        assert_eq!(s2.tables_used(), 4);
        s2.set(0x5000_3000, Entry::Empty).unwrap();
        assert_eq!(s2.lookup(0x5000_3000), None);
        // Out of tables: refused and nothing changed (needs an L2 and an L3, one is left).
        assert_eq!(
            s2.set(0x8000_0000, Entry::Revoked(1)),
            Err(MapError::NoTables)
        );
        assert_eq!(s2.tables_used(), 4);
        assert_eq!(s2.entry(0x8000_0000), Entry::Empty);
    }

    #[test]
    fn vtcr_fields() {
        assert_eq!(vtcr(false) & 0x3f, 32);
        assert_eq!((vtcr(false) >> 6) & 0b11, 1);
        assert_eq!(vtcr(true) & (1 << 30), 1 << 30);
        assert_eq!(vtcr(true) & (1 << 29), 0);
    }
}
