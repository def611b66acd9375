//! The stage-2 side of the firewall: each initiator's map recomputed from the model over
//! changed ranges, and the memory-sharing operations (`memshare::MemHw`) combined with it.
//!
//! Descriptor bookkeeping, so that a page can lose and regain access without the SPMC keeping
//! a page table of its own:
//! - NW stage-2: a page the firewall denies is [`Entry::Revoked`] with [`NW_FIREWALL`]; a lent
//!   or donated page carries `memshare::Revoked`'s tag (bit 31) and is left alone by the
//!   firewall until RECLAIM, which maps it with the firewall's permissions of that moment.
//! - SP NS space: a retrieved page the firewall hides is [`Entry::Revoked`] with
//!   [`SP_HIDDEN`] | its retrieved permissions; a page with fewer permissions than retrieved
//!   keeps them in the descriptor's software nibble (`SW_LIMITED` | rwx).
//! - SP secure space: a gated page is mapped (manifest permissions AND the firewall's secure
//!   ones) or [`Entry::Empty`].

use ffa::memory::MemRange;

use super::{Changes, DRAM, Firewall, Perm};
use crate::memshare::{HwError, Revoked};
use crate::stage2::{Attrs, Chunk, Entry, MapError, PAGE, Stage2};

/// Tag of a NW page the firewall denies (bit 31 clear: not a lend).
pub const NW_FIREWALL: u32 = 0x4000_0000;
/// Tag of an SP NS page the firewall hides; bits \[2:0\] = retrieved r/w/x.
pub const SP_HIDDEN: u32 = 0x2000_0000;
/// Software nibble of a page mapped with fewer permissions than retrieved; bits \[2:0\] =
/// retrieved r/w/x.
pub const SW_LIMITED: u8 = 0x8;

const CHUNK: u64 = 0x20_0000;

fn rwx(a: Attrs) -> u8 {
    u8::from(a.read) | u8::from(a.write) << 1 | u8::from(a.exec) << 2
}

fn from_rwx(b: u8) -> Attrs {
    Attrs {
        read: b & 1 != 0,
        write: b & 2 != 0,
        exec: b & 4 != 0,
        device: false,
    }
}

fn is_lend_tag(t: u32) -> bool {
    Revoked::from_tag(t).is_some()
}

/// What the NW stage-2 should hold for a page it owns (not lent) under `p`.
pub fn nw_desired(p: Perm) -> Entry {
    if !p.ns_r && !p.ns_w {
        return Entry::Revoked(NW_FIREWALL);
    }
    Entry::Page {
        attrs: Attrs {
            read: p.ns_r,
            write: p.ns_w,
            // The TZC sees an instruction fetch as a read.
            exec: p.ns_r,
            device: false,
        },
        sw: 0,
    }
}

/// What the SP's NS space should hold for a page retrieved with `want` under `p`.
pub fn sp_ns_desired(want: Attrs, p: Perm) -> Entry {
    let eff = Attrs {
        read: want.read && p.ns_r,
        write: want.write && p.ns_w,
        exec: want.exec && p.ns_r,
        device: false,
    };
    if !eff.read && !eff.write {
        Entry::Revoked(SP_HIDDEN | u32::from(rwx(want)))
    } else if eff == want {
        Entry::Page { attrs: want, sw: 0 }
    } else {
        Entry::Page {
            attrs: eff,
            sw: SW_LIMITED | rwx(want),
        }
    }
}

/// The permissions an SP NS page was retrieved with, if it is one the firewall manages.
fn sp_ns_wanted(e: Entry) -> Option<Attrs> {
    match e {
        Entry::Page { sw, .. } if sw & SW_LIMITED != 0 => Some(from_rwx(sw)),
        Entry::Page { attrs, .. } => Some(attrs),
        Entry::Revoked(t) if t & SP_HIDDEN != 0 && !is_lend_tag(t) => Some(from_rwx(t as u8)),
        _ => None,
    }
}

/// The stage-2s the firewall rewrites; `None` for one that does not exist (yet).
pub struct Spaces<'a, 'b> {
    pub nw: Option<&'a mut Stage2<'b>>,
    pub sp_ns: Option<&'a mut Stage2<'b>>,
    pub sp_sec: Option<&'a mut Stage2<'b>>,
}

/// Which TLBs went stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stale {
    pub nw: bool,
    pub sp: bool,
}

impl Firewall {
    /// Recomputes every space over `changes`. A space out of tables keeps the pages it could
    /// not change with their old permissions: the error is returned after the rest is done
    /// (the pools are sized so this does not happen; `arch` reports it and stops).
    pub fn apply(&mut self, changes: &Changes, s: &mut Spaces) -> Result<Stale, MapError> {
        let mut stale = Stale::default();
        let mut err = Ok(());
        for &(start, end) in changes.ranges() {
            // Segments over which every address matches the same regions.
            let mut a = start;
            while a < end {
                let seg_end = self.model.uniform_until(0, a).saturating_add(1).min(end);
                let p = self.perm(a);
                if let Err(e) = self.apply_segment(a, seg_end, p, s, &mut stale) {
                    err = Err(e);
                }
                a = seg_end;
            }
        }
        err.map(|()| stale)
    }

    fn apply_segment(
        &mut self,
        start: u64,
        end: u64,
        p: Perm,
        s: &mut Spaces,
        stale: &mut Stale,
    ) -> Result<(), MapError> {
        let mut err = Ok(());
        if let Some(nw) = s.nw.as_deref_mut() {
            let want = nw_desired(p);
            let r = self.walk(
                nw,
                start,
                end,
                |_, c| match c {
                    Chunk::Absent => Some(true),
                    Chunk::Block(attrs, sw) => Some(want == Entry::Page { attrs, sw }),
                    Chunk::Table => None,
                },
                |_, e| match e {
                    Entry::Empty => None,
                    Entry::Revoked(t) if is_lend_tag(t) => None,
                    _ => Some(want),
                },
            );
            stale.nw |= r.changed;
            err = err.and(r.result);
        }
        if let Some(ns) = s.sp_ns.as_deref_mut() {
            let r = self.walk(
                ns,
                start,
                end,
                |_, c| match c {
                    Chunk::Absent => Some(true),
                    _ => None,
                },
                |_, e| sp_ns_wanted(e).map(|w| sp_ns_desired(w, p)),
            );
            stale.sp |= r.changed;
            err = err.and(r.result);
        }
        if let Some(sec) = s.sp_sec.as_deref_mut() {
            let gated: [_; super::MAX_GATED] = self.gated;
            for g in gated.iter().flatten() {
                let (a, b) = (start.max(g.base), end.min(g.end));
                if a >= b {
                    continue;
                }
                let want = gated_desired(g, p);
                let r = self.walk(
                    sec,
                    a,
                    b,
                    |_, c| match c {
                        Chunk::Absent => Some(want == Entry::Empty),
                        _ => None,
                    },
                    |_, _| Some(want),
                );
                stale.sp |= r.changed;
                err = err.and(r.result);
            }
        }
        err
    }

    /// Visits `[start, end)` of `s2`: a whole 2 MiB chunk for which `skip_chunk` says
    /// `Some(true)` is passed over; otherwise each page's entry goes to `desired`, and is
    /// rewritten if that returns something different.
    fn walk(
        &mut self,
        s2: &mut Stage2,
        start: u64,
        end: u64,
        skip_chunk: impl Fn(u64, Chunk) -> Option<bool>,
        desired: impl Fn(u64, Entry) -> Option<Entry>,
    ) -> Walked {
        let mut w = Walked {
            changed: false,
            result: Ok(()),
        };
        let mut a = start;
        while a < end {
            let chunk_end = (a | (CHUNK - 1)) + 1;
            let whole = a.is_multiple_of(CHUNK) && chunk_end <= end;
            if whole && skip_chunk(a, s2.chunk(a)) == Some(true) {
                a = chunk_end;
                continue;
            }
            let stop = chunk_end.min(end);
            while a < stop {
                self.stats.pages_visited += 1;
                let e = s2.entry(a);
                if let Some(d) = desired(a, e)
                    && d != e
                {
                    match s2.set(a, d) {
                        Ok(()) => {
                            w.changed = true;
                            self.stats.pages_changed += 1;
                        }
                        Err(err) => w.result = Err(err),
                    }
                }
                a += PAGE;
            }
        }
        w
    }

    /// LEND/DONATE completed: takes `r` out of the NW stage-2 (tagged `why`), unless lend
    /// enforcement is off. A page the firewall already denies takes the lend tag (the lend is
    /// what RECLAIM undoes). All or nothing.
    pub fn nw_revoke(
        &mut self,
        nw: &mut Stage2,
        r: &MemRange,
        why: Revoked,
    ) -> Result<(), HwError> {
        if !self.lend_enforcement {
            return Ok(());
        }
        for i in 0..u64::from(r.page_count) {
            let a = r.address + i * PAGE;
            let ok = match nw.entry(a) {
                Entry::Page { .. } | Entry::Revoked(NW_FIREWALL) => {
                    nw.set(a, Entry::Revoked(why.tag())).is_ok()
                }
                _ => false,
            };
            if !ok {
                self.nw_restore(
                    nw,
                    &MemRange {
                        address: r.address,
                        page_count: i as u32,
                    },
                );
                return Err(HwError::NoTables);
            }
        }
        Ok(())
    }

    /// RECLAIM: gives the lent pages of `r` back with the firewall's current permissions.
    pub fn nw_restore(&mut self, nw: &mut Stage2, r: &MemRange) {
        if !self.lend_enforcement {
            return;
        }
        for i in 0..u64::from(r.page_count) {
            let a = r.address + i * PAGE;
            if let Entry::Revoked(t) = nw.entry(a)
                && is_lend_tag(t)
            {
                // The page's table exists (it holds the tag): this cannot run out of tables.
                let _ = nw.set(a, nw_desired(self.perm(a)));
            }
        }
    }

    /// RETRIEVE: maps `r` into the SP's NS space, each page with what the firewall lets NS
    /// accesses do there. Refuses a page already mapped; all or nothing.
    pub fn sp_map(&mut self, ns: &mut Stage2, r: &MemRange, want: Attrs) -> Result<(), HwError> {
        for i in 0..u64::from(r.page_count) {
            let a = r.address + i * PAGE;
            let res = match ns.entry(a) {
                Entry::Empty => ns.set(a, sp_ns_desired(want, self.perm(a))),
                _ => Err(MapError::AlreadyMapped { ipa: a }),
            };
            if let Err(e) = res {
                sp_unmap(
                    ns,
                    &MemRange {
                        address: r.address,
                        page_count: i as u32,
                    },
                );
                return Err(match e {
                    MapError::AlreadyMapped { .. } => HwError::AlreadyMapped,
                    _ => HwError::NoTables,
                });
            }
        }
        Ok(())
    }

    /// Re-applies the whole map to a stage-2 that was built after the model was programmed
    /// (the NW's, built when the normal world starts).
    pub fn apply_all(&mut self, s: &mut Spaces) -> Result<Stale, MapError> {
        self.apply(&Changes::all(), s)
    }
}

/// RELINQUISH: unmaps `r` from the SP's NS space, whatever the firewall made of its pages.
/// The caller invalidates the TLB.
pub fn sp_unmap(ns: &mut Stage2, r: &MemRange) {
    for i in 0..u64::from(r.page_count) {
        // Clearing an existing entry needs no table.
        let _ = ns.set(r.address + i * PAGE, Entry::Empty);
    }
}

/// What a gated page of the SP's secure space should hold under `p`.
fn gated_desired(g: &super::Gated, p: Perm) -> Entry {
    let attrs = Attrs {
        read: g.read && p.s_r,
        write: g.write && p.s_w,
        exec: g.exec && p.s_r,
        device: false,
    };
    if attrs.read || attrs.write {
        Entry::Page { attrs, sw: 0 }
    } else {
        Entry::Empty
    }
}

struct Walked {
    changed: bool,
    result: Result<(), MapError>,
}

/// Whether `addr` is behind the filter.
pub fn in_dram(addr: u64) -> bool {
    (DRAM.0..DRAM.1).contains(&addr)
}
