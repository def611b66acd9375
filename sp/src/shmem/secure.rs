//! What Flex-Mem ([`crate::flexmem`]) needs from the region table: remap a held region between
//! its non-secure and secure alias (break-before-make: unmap, which invalidates the TLB, then
//! map), mark it secured, and relinquish a region it already unmapped. Every change either
//! completes or is undone; the region table never says something the page table does not.

use super::{Access, MemError, MemPlatform, Region, SharedMemory, range_of};
use alloc::vec::Vec;
use core::ops::Range;
use ffa::memory::TransactionType;
use flexserve_proto::RejectReason;

impl<P: MemPlatform> SharedMemory<P> {
    fn index_of(&self, id: u32) -> Result<usize, MemError> {
        self.regions
            .iter()
            .position(|r| r.id == id)
            .ok_or(MemError::NoSuchRegion(id))
    }

    /// The physical ranges of region `id`, in region order.
    pub fn ranges_of(&self, id: u32) -> Result<Vec<Range<u64>>, MemError> {
        Ok(self.region(id)?.ranges.iter().map(range_of).collect())
    }

    /// The held region containing `pa`, if any.
    pub fn region_at(&self, pa: u64) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.ranges.iter().any(|m| range_of(m).contains(&pa)))
    }

    pub fn is_secured(&self, id: u32) -> Result<bool, MemError> {
        Ok(self.region(id)?.secured)
    }

    pub fn is_pinned(&self, id: u32) -> Result<bool, MemError> {
        Ok(self.region(id)?.pinned)
    }

    /// Marks region `id` secured (its release then goes through Flex-Mem) or not.
    pub fn set_secured(&mut self, id: u32, secured: bool) -> Result<(), MemError> {
        let i = self.index_of(id)?;
        self.regions[i].secured = secured;
        Ok(())
    }

    /// Unmaps every range of region `id`; returns the pages unmapped (each one TLB
    /// invalidation). If a range cannot be unmapped, the ones already unmapped are mapped
    /// again as they were.
    pub fn unmap_region(&mut self, id: u32) -> Result<u64, MemError> {
        let i = self.index_of(id)?;
        let (ranges, access) = (self.ranges_of(id)?, self.regions[i].access);
        for (k, r) in ranges.iter().enumerate() {
            if self.platform.unmap(r.clone()).is_err() {
                self.restore(&ranges[..k], access);
                return Err(MemError::Rejected(RejectReason::MapFailed));
            }
        }
        Ok(ranges.iter().map(|r| (r.end - r.start) / super::PAGE).sum())
    }

    /// Maps every range of the (unmapped) region `id` with `access` and records it. If a range
    /// cannot be mapped, the ones already mapped are unmapped again (the region stays unmapped,
    /// with its old access recorded).
    pub fn map_region(&mut self, id: u32, access: Access) -> Result<(), MemError> {
        let i = self.index_of(id)?;
        let ranges = self.ranges_of(id)?;
        for (k, r) in ranges.iter().enumerate() {
            if self.platform.map(r.clone(), access).is_err() {
                for done in &ranges[..k] {
                    // Mapped a moment ago by this loop: unmapping it cannot conflict.
                    let _ = self.platform.unmap(done.clone());
                }
                return Err(MemError::Rejected(RejectReason::MapFailed));
            }
        }
        self.regions[i].access = access;
        Ok(())
    }

    /// Maps `ranges` back with `access` after a failed step (best effort: they were mapped
    /// that way a moment ago).
    fn restore(&mut self, ranges: &[Range<u64>], access: Access) {
        for r in ranges {
            if self.platform.map(r.clone(), access).is_err() {
                log::error!("cannot map {:#x}..{:#x} back", r.start, r.end);
            }
        }
    }

    /// Break-before-make remap of region `id` to `access`: unmap (TLB invalidated per page),
    /// then map. On failure the old mapping is back. Returns the TLB invalidations.
    pub fn remap_region(&mut self, id: u32, access: Access) -> Result<u64, MemError> {
        let old = self.region(id)?.access;
        let tlbis = self.unmap_region(id)?;
        if let Err(e) = self.map_region(id, access) {
            let ranges = self.ranges_of(id)?;
            self.restore(&ranges, old);
            return Err(e);
        }
        Ok(tlbis)
    }

    /// FFA_MEM_RELINQUISH of region `id`, which the caller has unmapped, and drops it from the
    /// table. On a refusal nothing changes here (the caller maps it back).
    pub fn relinquish_unmapped(&mut self, id: u32) -> Result<(), MemError> {
        let i = self.index_of(id)?;
        let region = &self.regions[i];
        if region.pinned {
            return Err(MemError::Pinned(id));
        }
        if region.tx_type != TransactionType::Donate {
            self.platform.relinquish(region.handle)?;
            self.relinquishes = self.relinquishes.wrapping_add(1);
        }
        self.regions.swap_remove(i);
        Ok(())
    }

    /// The platform, for Flex-Mem's reads and scrubs of regions it secured.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }
}
