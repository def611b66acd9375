//! Memory the normal world gives the SP through FF-A (SHARE, LEND, DONATE): retrieve by handle,
//! map with the descriptor's attributes, access through a bounded view, unmap and relinquish.
//!
//! Flow of a region (FF-A v1.2 sec. 10.4-10.9; Hafnium's rules, platform-facts.md sec. 3.3):
//! 1. `retrieve`: FFA_MEM_RETRIEVE_REQ in the form Hafnium expects (one EMAD for this SP,
//!    composite offset 0), the response gathered with FFA_MEM_FRAG_RX and parsed as hostile
//!    input by the `ffa` crate, then checked against what was asked (handle, sender, receiver,
//!    transaction type) and against what the SP will map (normal write-back memory, readable,
//!    clear of the SP's own memory and of every region it holds, bounded in size).
//! 2. Map each constituent range in the SP's stage-1 (identity, never executable, NS as the
//!    response's attribute bit 6 says, read-only unless write access was granted). A region
//!    that fails any check or cannot be mapped is unmapped again and relinquished at once, so
//!    the owner can reclaim it: nothing half-held remains. That includes a response the SPMC
//!    granted (RETRIEVE_RESP) that the `ffa` parser then refused.
//! 3. Access: a [`Span`] is an (offset, length) checked once against the region; its bytes are
//!    reached only through the platform's copy routines, chunk by chunk, into private buffers.
//! 4. `release`: unmap (the page-table layer invalidates the TLB), then FFA_MEM_RELINQUISH.
//!    If the relinquish is refused the mapping is restored and the region stays held. Donated
//!    memory is not relinquished (it belongs to the SP now); it is only unmapped.
//!
//! The attributes a region is mapped with follow one rule the spec and Hafnium agree on:
//! - Memory type: the SP's retrieve request leaves it unspecified (FF-A v1.2 sec. 10.10.4.1,
//!   Table 10.18: the retriever may; Hafnium accepts unspecified or Normal WB inner-shareable).
//!   The response carries the sender's attributes: a share names its type, which must be Normal
//!   write-back (the only normal type in the SP's MAIR); a single-borrower lend or donate
//!   leaves it unspecified (Hafnium requires that of the sender; Linux's FF-A driver always
//!   does), and then the SP maps Normal write-back inner-shareable, the type Hafnium and TF-A
//!   map the memory with at stage 2 / EL3 anyway. Any other type is refused.
//! - Security state: the response's NS bit (sec. 10.10.4.1.1: set only by the SPMC). Hafnium
//!   sets it for normal-world memory; TF-A's EL3 SPMC too.
//! - Instruction access: never executable, whatever was granted (an unspecified one in a share
//!   response is mapped NX too). Data access: what the response grants.
//! - Request form: instruction access per [`InstructionAccess::for_retrieve`] (a share leaves it
//!   unspecified, a single-borrower lend/donate names NX), data access unspecified.

use alloc::vec::Vec;
use core::ops::Range;
use ffa::{
    FfaError, Handle, PAGE_SIZE, PartitionId, RetrieveError,
    memory::{
        Cacheability, DataAccess, EmadSize, InstructionAccess, MemAccessPerm, MemRange,
        MemTransaction, MemType, TransactionType,
    },
};
use flexserve_proto::{Checksum, MemStats, RegionInfo, RejectReason, pattern_byte, region_flags};

/// Regions the SP holds at once.
pub const MAX_REGIONS: usize = 16;
/// Constituent ranges in one region.
pub const MAX_RANGES: usize = 2048;
/// Pages in one region (64 MiB).
pub const MAX_REGION_PAGES: u64 = 16 * 1024;
/// The largest retrieve response the SP accepts (one 32-byte EMAD, MAX_RANGES ranges); bounds
/// the buffer an SPMC-announced total length can make it allocate.
pub const MAX_RESPONSE: usize = ffa::memory::TRANSACTION_HEADER_SIZE
    + EmadSize::V1_2.bytes()
    + ffa::memory::COMPOSITE_HEADER_SIZE
    + MAX_RANGES * ffa::memory::RANGE_SIZE;

const PAGE: u64 = PAGE_SIZE as u64;

/// How the SP may access a mapped range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Map with the stage-1 NS bit (normal-world memory).
    pub ns: bool,
    pub writable: bool,
}

/// Why the page-table layer refused a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFail {
    /// Outside the translated address space, or not page aligned.
    BadRange,
    /// The page-table library refused (allocation failure, conflicting live mapping).
    Refused,
}

/// What the memory service needs from the machine: the FF-A calls and the SP's stage-1.
/// `bare-metal` implements it with SMCs and the runtime page table; tests with fakes.
pub trait MemPlatform {
    /// FFA_MEM_RETRIEVE_REQ of `req` through the TX buffer; the response, reassembled from its
    /// fragments and parsed (sender checked against `req`).
    fn retrieve(&mut self, req: &MemTransaction) -> Result<MemTransaction, RetrieveError>;
    /// FFA_MEM_RELINQUISH of `handle` for this endpoint.
    fn relinquish(&mut self, handle: Handle) -> Result<(), ffa::Error>;
    /// Identity-maps `range` (page aligned) with `access`, never executable.
    fn map(&mut self, range: Range<u64>, access: Access) -> Result<(), MapFail>;
    /// Unmaps `range` and invalidates its TLB entries.
    fn unmap(&mut self, range: Range<u64>) -> Result<(), MapFail>;
    /// Pages currently mapped through `map`, as the page table itself says (not counted from
    /// the region table).
    fn mapped_pages(&self) -> u64;
    /// Copies `out.len()` bytes from mapped memory at `pa`.
    fn read(&self, pa: u64, out: &mut [u8]);
    /// Copies `data` to mapped, writable memory at `pa`.
    fn write(&mut self, pa: u64, data: &[u8]);
    /// One aligned 8-byte load from mapped memory at `pa` (a single `LDR`: a partition manager
    /// that emulates a blocked access needs its syndrome). Flex-Mem's probe.
    fn read_u64(&self, pa: u64) -> u64 {
        let mut v = [0u8; 8];
        self.read(pa, &mut v);
        u64::from_le_bytes(v)
    }
    /// Writes `len` zero bytes to mapped, writable memory at `pa` (Flex-Mem's scrub; platforms
    /// override it with wide stores).
    fn zero(&mut self, pa: u64, len: u64) {
        let zeros = [0u8; 512];
        let mut done = 0;
        while done < len {
            let k = (len - done).min(zeros.len() as u64);
            self.write(pa + done, &zeros[..k as usize]);
            done += k;
        }
    }
    /// The `len` mapped bytes at `pa` as a slice, or `None` if the platform cannot give direct
    /// views (then nothing can be parsed in place).
    ///
    /// # Safety
    ///
    /// `pa..pa + len` must be mapped, and must stay mapped and unchanged (by the SP and by
    /// anyone else) for as long as the returned slice is used.
    unsafe fn view(&self, pa: u64, len: usize) -> Option<&'static [u8]>;
}

impl<T: MemPlatform + ?Sized> MemPlatform for alloc::boxed::Box<T> {
    fn retrieve(&mut self, req: &MemTransaction) -> Result<MemTransaction, RetrieveError> {
        (**self).retrieve(req)
    }
    fn relinquish(&mut self, handle: Handle) -> Result<(), ffa::Error> {
        (**self).relinquish(handle)
    }
    fn map(&mut self, range: Range<u64>, access: Access) -> Result<(), MapFail> {
        (**self).map(range, access)
    }
    fn unmap(&mut self, range: Range<u64>) -> Result<(), MapFail> {
        (**self).unmap(range)
    }
    fn mapped_pages(&self) -> u64 {
        (**self).mapped_pages()
    }
    fn read(&self, pa: u64, out: &mut [u8]) {
        (**self).read(pa, out)
    }
    fn write(&mut self, pa: u64, data: &[u8]) {
        (**self).write(pa, data)
    }
    fn zero(&mut self, pa: u64, len: u64) {
        (**self).zero(pa, len)
    }
    fn read_u64(&self, pa: u64) -> u64 {
        (**self).read_u64(pa)
    }
    unsafe fn view(&self, pa: u64, len: usize) -> Option<&'static [u8]> {
        // SAFETY: the caller's guarantee, passed on unchanged.
        unsafe { (**self).view(pa, len) }
    }
}

/// Why a memory command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    NoSuchRegion(u32),
    /// offset + len is outside the region.
    OutOfBounds,
    /// The SP holds [`MAX_REGIONS`] regions.
    NoRoom,
    /// A read-only region was asked to be written.
    ReadOnly(u32),
    /// The partition manager refused an FF-A call.
    Ffa(FfaError),
    /// The SP refused what it was given (and relinquished it).
    Rejected(RejectReason),
    /// `MemRelinquishHandle` for a handle the SP holds.
    Held(Handle),
    /// The region is pinned (it holds the loaded model): it may not be released or written.
    Pinned(u32),
    /// The region is secured by Flex-Mem: only `FlexRelease` gives it back.
    Secured(u32),
}

/// Why a region cannot be pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinError {
    NoSuchRegion(u32),
    /// A SHARE: its owner can still change it.
    NotLent,
    /// Its ranges are not one contiguous run, or the platform gives no direct views.
    NotContiguous,
    AlreadyPinned,
}

impl From<MemError> for flexserve_proto::ProtoError {
    fn from(e: MemError) -> Self {
        use flexserve_proto::ProtoError as P;
        match e {
            MemError::NoSuchRegion(id) => P::NoSuchRegion(id),
            // Register 3 holds `len` in MemChecksum and MemFill.
            MemError::OutOfBounds => P::OutOfBounds { index: 3 },
            MemError::NoRoom => P::NoRoom(MAX_REGIONS as u32),
            MemError::ReadOnly(_) => P::Unsupported(flexserve_proto::Command::MemFill),
            MemError::Ffa(code) => P::Ffa(code as i32),
            MemError::Rejected(r) => P::RegionRejected(r),
            // Registers 1-2 hold the handle.
            MemError::Held(_) => P::Malformed { index: 1 },
            MemError::Pinned(id) => P::InUse(id),
            MemError::Secured(_) => P::FlexMem(flexserve_proto::FlexFault::AlreadySecured),
        }
    }
}

impl From<ffa::Error> for MemError {
    fn from(e: ffa::Error) -> Self {
        match e {
            ffa::Error::Ffa(code) => MemError::Ffa(code),
            // Anything else is a response the SP cannot use: malformed descriptor, reply of
            // the wrong kind, or a response larger than MAX_RESPONSE.
            _ => MemError::Rejected(RejectReason::BadDescriptor),
        }
    }
}

/// A region the SP holds, built from a checked retrieve response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub id: u32,
    pub handle: Handle,
    pub sender: PartitionId,
    pub tx_type: TransactionType,
    pub access: Access,
    /// In descriptor order: region offset 0 is the first byte of `ranges[0]`.
    ranges: Vec<MemRange>,
    pages: u64,
    /// A slice of it is handed out ([`SharedMemory::pin`]).
    pinned: bool,
    /// Flex-Mem switched it to secure memory ([`crate::flexmem`]).
    secured: bool,
}

impl Region {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.pages * PAGE
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    pub fn ranges(&self) -> &[MemRange] {
        &self.ranges
    }

    pub fn info(&self) -> RegionInfo {
        let mut flags = (self.tx_type as u32) << region_flags::TYPE_SHIFT;
        if self.access.ns {
            flags |= region_flags::NS;
        }
        if self.access.writable {
            flags |= region_flags::WRITABLE;
        }
        RegionInfo {
            region: self.id,
            // Bounded by MAX_REGION_PAGES and MAX_RANGES.
            pages: self.pages as u32,
            ranges: self.ranges.len() as u32,
            flags,
        }
    }

    /// The bytes `offset..offset + len`, checked once here; `None` if any part lies outside.
    pub fn span(&self, offset: u32, len: u32) -> Option<Span<'_>> {
        let (offset, len) = (u64::from(offset), u64::from(len));
        // u32 + u32 cannot overflow a u64.
        (offset + len <= self.len()).then_some(Span {
            region: self,
            offset,
            len,
        })
    }
}

/// A checked byte range of a region. Its parts are reached as physical chunks, each inside one
/// constituent range.
#[derive(Clone, Copy, Debug)]
pub struct Span<'r> {
    region: &'r Region,
    offset: u64,
    len: u64,
}

impl Span<'_> {
    /// (physical address, length, region offset) of each piece, in order.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        let (start, end) = (self.offset, self.offset + self.len);
        let mut base = 0u64;
        self.region.ranges.iter().filter_map(move |r| {
            let (lo, hi) = (base, base + r.len());
            base = hi;
            let (s, e) = (start.max(lo), end.min(hi));
            (s < e).then(|| (r.address + (s - lo), e - s, s))
        })
    }
}

/// The regions the SP holds, and the memory they must stay clear of.
#[derive(Debug)]
pub struct SharedMemory<P> {
    platform: P,
    own_id: PartitionId,
    /// The SP's own memory (image, stacks, heap, boot info, devices): no region may overlap it.
    reserved: Vec<Range<u64>>,
    regions: Vec<Region>,
    next_id: u32,
    retrieves: u32,
    relinquishes: u32,
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn range_of(r: &MemRange) -> Range<u64> {
    // The parser rejected ranges whose end wraps.
    r.address..r.address.saturating_add(r.len())
}

impl<P: MemPlatform> SharedMemory<P> {
    pub fn new(platform: P, own_id: PartitionId, reserved: Vec<Range<u64>>) -> Self {
        SharedMemory {
            platform,
            own_id,
            reserved,
            regions: Vec::new(),
            next_id: 1,
            retrieves: 0,
            relinquishes: 0,
        }
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn region(&self, id: u32) -> Result<&Region, MemError> {
        self.regions
            .iter()
            .find(|r| r.id == id)
            .ok_or(MemError::NoSuchRegion(id))
    }

    pub fn stats(&self) -> MemStats {
        MemStats {
            live_regions: self.regions.len() as u32,
            mapped_pages: u32::try_from(self.platform.mapped_pages()).unwrap_or(u32::MAX),
            retrieves: self.retrieves,
            relinquishes: self.relinquishes,
        }
    }

    fn fresh_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if self.regions.iter().all(|r| r.id != id) {
                return id;
            }
        }
    }

    /// Retrieves `handle` from `sender`, checks and maps it, and holds it as a new region.
    pub fn retrieve(
        &mut self,
        sender: PartitionId,
        handle: u64,
        tx_type: TransactionType,
    ) -> Result<RegionInfo, MemError> {
        if self.regions.len() >= MAX_REGIONS {
            return Err(MemError::NoRoom);
        }
        let handle = Handle(handle);
        let resp = self.retrieve_from_spmc(handle, sender, tx_type)?;
        self.retrieves = self.retrieves.wrapping_add(1);
        let region = match self.check(&resp, sender, handle, tx_type) {
            Ok(access) => Region {
                id: self.fresh_id(),
                handle,
                sender,
                tx_type: resp.flags.transaction_type(),
                access,
                pages: resp.total_pages(),
                ranges: resp.ranges,
                pinned: false,
                secured: false,
            },
            Err(reason) => return Err(self.give_back(handle, reason, &[])),
        };
        for (i, r) in region.ranges.iter().enumerate() {
            if self.platform.map(range_of(r), region.access).is_err() {
                let mapped = &region.ranges[..i];
                return Err(self.give_back(handle, RejectReason::MapFailed, mapped));
            }
        }
        let info = region.info();
        self.regions.push(region);
        Ok(info)
    }

    /// FFA_MEM_RETRIEVE_REQ in the form the transaction type needs
    /// ([`InstructionAccess::for_retrieve`]): data access not specified, so the SP takes what
    /// the owner granted (the response says which); never executable when it must be named.
    /// A response the SPMC gave but the SP cannot use is relinquished at once.
    fn retrieve_from_spmc(
        &mut self,
        handle: Handle,
        sender: PartitionId,
        tx_type: TransactionType,
    ) -> Result<MemTransaction, MemError> {
        let forms = InstructionAccess::for_retrieve(tx_type);
        let mut tried = 0;
        loop {
            let req = MemTransaction::retrieve_request(
                handle,
                sender,
                MemAccessPerm {
                    endpoint_id: self.own_id,
                    data_access: DataAccess::NotSpecified,
                    instruction_access: forms[tried],
                    non_retrieval_borrower: false,
                },
                tx_type,
                0,
                EmadSize::V1_2,
            );
            tried += 1;
            match self.platform.retrieve(&req) {
                Ok(resp) => return Ok(resp),
                Err(e) if e.retrieved => {
                    self.retrieves = self.retrieves.wrapping_add(1);
                    log::warn!("retrieve response for {:#x}: {}", handle.0, e.error);
                    return Err(self.give_back(handle, RejectReason::BadDescriptor, &[]));
                }
                // Refused before any state changed: the next form may be the one this
                // handle's type needs.
                Err(e)
                    if e.error == ffa::Error::Ffa(FfaError::InvalidParameters)
                        && tried < forms.len() => {}
                Err(e) => return Err(e.error.into()),
            }
        }
    }

    /// Undoes a retrieve that will not be kept: unmaps `mapped`, relinquishes `handle`.
    fn give_back(&mut self, handle: Handle, reason: RejectReason, mapped: &[MemRange]) -> MemError {
        log::warn!("refusing memory {:#x}: {reason:?}", handle.0);
        for r in mapped {
            // Mapped a moment ago by the same layer; unmapping the same range cannot conflict.
            let _ = self.platform.unmap(range_of(r));
        }
        match self.platform.relinquish(handle) {
            Ok(()) => self.relinquishes = self.relinquishes.wrapping_add(1),
            Err(e) => log::warn!("relinquish of refused {:#x}: {e}", handle.0),
        }
        MemError::Rejected(reason)
    }

    /// What the response must say for the SP to map it; the access it grants.
    fn check(
        &self,
        resp: &MemTransaction,
        sender: PartitionId,
        handle: Handle,
        tx_type: TransactionType,
    ) -> Result<Access, RejectReason> {
        use RejectReason::*;
        let got_type = resp.flags.transaction_type();
        let me = match resp.receivers.as_slice() {
            [e] if e.perm.endpoint_id == self.own_id => e.perm,
            _ => return Err(BadDescriptor),
        };
        if resp.handle != handle
            || resp.sender_id != sender
            || got_type == TransactionType::Unspecified
            || (tx_type != TransactionType::Unspecified && got_type != tx_type)
            || resp.ranges.is_empty()
        {
            return Err(BadDescriptor);
        }
        // The mapping rule (module doc): a named type must be the one normal type the SP's
        // MAIR has (write-back); "not specified" is allowed only for a lend or donate.
        match resp.attributes.mem_type {
            MemType::Normal {
                cacheability: Cacheability::WriteBack,
                ..
            } => {}
            MemType::Unspecified if got_type != TransactionType::Share => {}
            _ => return Err(UnsupportedAttributes),
        }
        let writable = match me.data_access {
            DataAccess::ReadWrite => true,
            DataAccess::ReadOnly => false,
            DataAccess::NotSpecified => return Err(NoAccess),
        };
        if resp.ranges.len() > MAX_RANGES || resp.total_pages() > MAX_REGION_PAGES {
            return Err(TooLarge);
        }
        let held = self
            .regions
            .iter()
            .flat_map(|r| r.ranges.iter().map(range_of));
        let taken: Vec<Range<u64>> = self.reserved.iter().cloned().chain(held).collect();
        // The parser rejected overlaps between the response's own ranges.
        if resp
            .ranges
            .iter()
            .any(|r| taken.iter().any(|t| overlaps(&range_of(r), t)))
        {
            return Err(Overlap);
        }
        Ok(Access {
            ns: resp.attributes.ns,
            writable,
        })
    }

    /// Unmaps region `id` and relinquishes it (donated memory is only unmapped).
    pub fn release(&mut self, id: u32) -> Result<(), MemError> {
        let index = self
            .regions
            .iter()
            .position(|r| r.id == id)
            .ok_or(MemError::NoSuchRegion(id))?;
        let region = &self.regions[index];
        if region.pinned {
            return Err(MemError::Pinned(id));
        }
        if region.secured {
            return Err(MemError::Secured(id));
        }
        for r in &region.ranges {
            if self.platform.unmap(range_of(r)).is_err() {
                // Unmapping what this layer mapped cannot conflict; if it does, the SP's page
                // table is not what it thinks. Keep the region (still held, maybe mapped).
                log::error!("cannot unmap {:#x} of region {id}", r.address);
                return Err(MemError::Rejected(RejectReason::MapFailed));
            }
        }
        if region.tx_type != TransactionType::Donate {
            let (handle, access) = (region.handle, region.access);
            if let Err(e) = self.platform.relinquish(handle) {
                // The partition manager still counts the SP as a borrower: map it back.
                let ranges = self.regions[index].ranges.clone();
                for r in &ranges {
                    let _ = self.platform.map(range_of(r), access);
                }
                return Err(e.into());
            }
            self.relinquishes = self.relinquishes.wrapping_add(1);
        }
        self.regions.swap_remove(index);
        Ok(())
    }

    /// FFA_MEM_RELINQUISH for a handle the SP does not hold (a probe of the partition
    /// manager's state checks).
    pub fn relinquish_unheld(&mut self, handle: u64) -> Result<(), MemError> {
        let handle = Handle(handle);
        if self.regions.iter().any(|r| r.handle == handle) {
            return Err(MemError::Held(handle));
        }
        Ok(self.platform.relinquish(handle)?)
    }

    /// Checksum of `len` bytes at `offset` in region `id`, read in chunks into a private buffer.
    pub fn checksum(&self, id: u32, offset: u32, len: u32) -> Result<u32, MemError> {
        let region = self.region(id)?;
        let span = region.span(offset, len).ok_or(MemError::OutOfBounds)?;
        let mut sum = Checksum::new();
        let mut buf = [0u8; 512];
        for (pa, n, _) in span.chunks() {
            let mut done = 0u64;
            while done < n {
                let k = (n - done).min(buf.len() as u64) as usize;
                let part = &mut buf[..k];
                self.platform.read(pa + done, part);
                sum.update(part);
                done += k as u64;
            }
        }
        Ok(sum.value())
    }

    /// Writes [`pattern_byte`] over `len` bytes at `offset` of region `id`.
    pub fn fill(&mut self, id: u32, offset: u32, len: u32, pattern: u32) -> Result<(), MemError> {
        let region = self.region(id)?;
        if region.pinned {
            return Err(MemError::Pinned(id));
        }
        if !region.access.writable {
            return Err(MemError::ReadOnly(id));
        }
        let span = region.span(offset, len).ok_or(MemError::OutOfBounds)?;
        let mut buf = [0u8; 512];
        // Collected first: the platform's write needs `&mut self`.
        let chunks: Vec<(u64, u64, u64)> = span.chunks().collect();
        for (pa, n, off) in chunks {
            let mut done = 0u64;
            while done < n {
                let k = (n - done).min(buf.len() as u64) as usize;
                for (i, b) in buf[..k].iter_mut().enumerate() {
                    // Region offsets are below 2^32 (checked by `span`).
                    *b = pattern_byte(pattern, (off + done) as u32 + i as u32);
                }
                self.platform.write(pa + done, &buf[..k]);
                done += k as u64;
            }
        }
        Ok(())
    }
}

impl<P: MemPlatform> SharedMemory<P> {
    /// Copies `out.len()` bytes at `offset` of region `id` into `out` (a private copy: the
    /// owner may change shared memory at any time, so callers validate the copy, never the
    /// original).
    pub fn read_at(&self, id: u32, offset: u32, out: &mut [u8]) -> Result<(), MemError> {
        let region = self.region(id)?;
        let len = u32::try_from(out.len()).map_err(|_| MemError::OutOfBounds)?;
        let span = region.span(offset, len).ok_or(MemError::OutOfBounds)?;
        for (pa, n, off) in span.chunks() {
            let at = (off - u64::from(offset)) as usize;
            self.platform.read(pa, &mut out[at..at + n as usize]);
        }
        Ok(())
    }

    /// Copies `data` to `offset` of region `id` (writable, not pinned).
    pub fn write_at(&mut self, id: u32, offset: u32, data: &[u8]) -> Result<(), MemError> {
        let region = self.region(id)?;
        if region.pinned {
            return Err(MemError::Pinned(id));
        }
        if !region.access.writable {
            return Err(MemError::ReadOnly(id));
        }
        let len = u32::try_from(data.len()).map_err(|_| MemError::OutOfBounds)?;
        let span = region.span(offset, len).ok_or(MemError::OutOfBounds)?;
        let chunks: Vec<(u64, u64, u64)> = span.chunks().collect();
        for (pa, n, off) in chunks {
            let at = (off - u64::from(offset)) as usize;
            self.platform.write(pa, &data[at..at + n as usize]);
        }
        Ok(())
    }

    /// Zeroes every byte of region `id` (writable, not pinned): plaintext the SP decrypted into
    /// lent pages goes before the pages do.
    pub fn zero_region(&mut self, id: u32) -> Result<(), MemError> {
        let region = self.region(id)?;
        if region.pinned {
            return Err(MemError::Pinned(id));
        }
        if !region.access.writable {
            return Err(MemError::ReadOnly(id));
        }
        let ranges: Vec<(u64, u64)> = region.ranges.iter().map(|r| (r.address, r.len())).collect();
        for (pa, len) in ranges {
            self.platform.zero(pa, len);
        }
        Ok(())
    }

    /// Pins region `id` and returns its bytes as one slice, for parsing in place: the region
    /// must be lent or donated (its owner has lost access, so the bytes cannot change) and one
    /// contiguous run of pages. A pinned region cannot be released or written until
    /// [`SharedMemory::unpin`].
    pub fn pin(&mut self, id: u32) -> Result<&'static [u8], PinError> {
        let index = self
            .regions
            .iter()
            .position(|r| r.id == id)
            .ok_or(PinError::NoSuchRegion(id))?;
        let region = &self.regions[index];
        if region.pinned {
            return Err(PinError::AlreadyPinned);
        }
        if !matches!(
            region.tx_type,
            TransactionType::Lend | TransactionType::Donate
        ) {
            return Err(PinError::NotLent);
        }
        let first = region.ranges.first().ok_or(PinError::NotContiguous)?;
        let mut end = first.address;
        for r in &region.ranges {
            if r.address != end {
                return Err(PinError::NotContiguous);
            }
            end = r.address.saturating_add(r.len());
        }
        let len = usize::try_from(region.len()).map_err(|_| PinError::NotContiguous)?;
        // SAFETY: the range is the region's, which this layer mapped at retrieve and unmaps
        // only in `release`, which refuses pinned regions; `fill` and `write_at` refuse them
        // too, and the owner lent or donated the pages, so the partition manager keeps
        // everyone else out. `unpin`'s contract ends the slice's use before any of that
        // changes.
        let bytes =
            unsafe { self.platform.view(first.address, len) }.ok_or(PinError::NotContiguous)?;
        self.regions[index].pinned = true;
        Ok(bytes)
    }

    /// Ends a [`SharedMemory::pin`]; the region may then be released. No-op for an unknown id.
    ///
    /// # Safety
    ///
    /// No slice returned by `pin` for this region (or anything borrowed from one) may be used
    /// after this call.
    pub unsafe fn unpin(&mut self, id: u32) {
        if let Some(r) = self.regions.iter_mut().find(|r| r.id == id) {
            r.pinned = false;
        }
    }
}

mod secure;

#[cfg(test)]
pub(crate) mod tests;
