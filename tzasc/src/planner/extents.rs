//! Owner extents: which owner secured which range, kept sorted and merged per owner.

use super::{MAX_EXTENTS, Owner, PlanError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) owner: Owner,
    pub(crate) base: u64,
    pub(crate) top: u64,
}

pub(crate) const NO_EXTENT: Extent = Extent {
    owner: Owner(0),
    base: 0,
    top: 0,
};

/// Owner extents sorted by base, non-overlapping; same-owner neighbours merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extents {
    pub(crate) items: [Extent; MAX_EXTENTS],
    pub(crate) len: usize,
}

impl Extents {
    pub(crate) const EMPTY: Extents = Extents {
        items: [NO_EXTENT; MAX_EXTENTS],
        len: 0,
    };

    pub(crate) fn as_slice(&self) -> &[Extent] {
        &self.items[..self.len]
    }

    pub(crate) fn first_overlap(&self, base: u64, top: u64) -> Option<u64> {
        self.as_slice()
            .iter()
            .find(|e| e.base <= top && base <= e.top)
            .map(|e| e.base.max(base))
    }

    pub(crate) fn insert(&mut self, x: Extent) -> Result<(), PlanError> {
        let mut out = Extents::EMPTY;
        let mut placed = false;
        // Merge in order of base.
        let push = |out: &mut Extents, e: Extent| -> Result<(), PlanError> {
            if out.len > 0 {
                let last = &mut out.items[out.len - 1];
                if last.owner == e.owner && last.top.checked_add(1) == Some(e.base) {
                    last.top = e.top;
                    return Ok(());
                }
            }
            if out.len == MAX_EXTENTS {
                return Err(PlanError::TooManyExtents);
            }
            out.items[out.len] = e;
            out.len += 1;
            Ok(())
        };
        for e in self.as_slice() {
            if !placed && x.base < e.base {
                push(&mut out, x)?;
                placed = true;
            }
            push(&mut out, *e)?;
        }
        if !placed {
            push(&mut out, x)?;
        }
        *self = out;
        Ok(())
    }

    /// Removes `[base, top]` from `owner`'s extents (all of it must be owned).
    pub(crate) fn remove(&mut self, owner: Owner, base: u64, top: u64) -> Result<(), PlanError> {
        // Coverage check: walk the owner's extents (sorted) through the range; `next` is the
        // first address not yet known to be the owner's.
        let mut next = base;
        let mut covered = false;
        for e in self.as_slice() {
            if e.owner == owner && e.base <= next && next <= e.top {
                if e.top >= top {
                    covered = true;
                    break;
                }
                next = e.top + 1;
            }
        }
        if !covered {
            return Err(PlanError::NotSecured { addr: next });
        }
        let mut out = Extents::EMPTY;
        for e in self.as_slice() {
            let pieces: [Option<Extent>; 2] = if e.owner == owner && e.base <= top && base <= e.top
            {
                [
                    (e.base < base).then_some(Extent {
                        owner,
                        base: e.base,
                        top: base - 1,
                    }),
                    (e.top > top).then_some(Extent {
                        owner,
                        base: top + 1,
                        top: e.top,
                    }),
                ]
            } else {
                [Some(*e), None]
            };
            for p in pieces.into_iter().flatten() {
                if out.len == MAX_EXTENTS {
                    return Err(PlanError::TooManyExtents);
                }
                out.items[out.len] = p;
                out.len += 1;
            }
        }
        *self = out;
        Ok(())
    }
}
