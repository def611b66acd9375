//! The SPMC's FF-A memory-sharing state machine (FF-A v1.2 chapter 10, DEN0077A), with
//! Hafnium's choices where the spec leaves room (`src/ffa_memory.c`:
//! `ffa_memory_region_sanity_check`, `ffa_memory_send_validate`, `ffa_send_check_transition`,
//! `ffa_memory_retrieve_validate`, relinquish and reclaim). Plain logic over the caller's
//! descriptor bytes and a [`MemHw`] that does the stage-2 and zeroing work, so every
//! transition and rejection is host-tested; `spmc` moves the bytes between it and the RX/TX
//! buffers.
//!
//! # Model
//! One owner (the normal world, ID 0) sends to one borrower (the SP). Each transaction is a
//! [`Tx`] in a bounded table ([`MAX_TRANSACTIONS`]; full = NO_MEMORY):
//!
//! ```text
//!   SHARE/LEND/DONATE --(more fragments)--> Sending --FRAG_TX..--+
//!          |                                                    |
//!          +------------------> Sent <--------------------------+
//!                  | RETRIEVE_REQ by the named receiver (maps into the SP's stage-2)
//!                  v
//!               Retrieved --(DONATE: ownership moves, the handle is gone)
//!                  | RELINQUISH (unmaps, TLBI by IPA)
//!                  v
//!                 Sent --RECLAIM by the owner--> freed (LEND: NW access restored)
//! ```
//!
//! LEND and DONATE take the pages out of the normal world's stage-2 when the send completes
//! ([`MemHw::nw_revoke`], tagged with the kind and the receiver so a blocked access can be
//! reported); RECLAIM gives them back ([`MemHw::nw_restore`]); a retrieved DONATE never does.
//! Every rejected call leaves the state as it was (checks run before any change; a stage-2
//! update that fails half-way is rolled back).
//!
//! Handles as Hafnium makes them (`share_state_allocate`): bit 63 clear (allocator = SPMC)
//! and the index of the lowest free table slot, so the first transaction's handle is 0x0.

extern crate alloc;

use alloc::vec::Vec;

use ffa::memory::{
    DataAccess, DescKind, EmadSize, FragmentAssembler, InstructionAccess, MemAccessPerm, MemFlags,
    MemRange, MemRegionAttributes, MemRelinquishDesc, MemTransaction, MemType, ParseOptions,
    SendKind, TransactionType, plan_fragments,
};
use ffa::{FfaError, Handle, Version};
use testbed_layout::{ns_ram, spmc_memory};

/// Live transactions (sending, sent or retrieved).
pub const MAX_TRANSACTIONS: usize = 64;
/// Lowest handle handed out: Hafnium's first handle is 0x0.
pub const FIRST_HANDLE: u64 = 0;
/// Ranges donated to the SP and retrieved (the NW never owns them again); a DONATE that would
/// overflow this record is refused with NO_MEMORY.
pub const MAX_DONATED_RANGES: usize = 1024;
/// Heap bytes the transactions may hold at once (descriptors being assembled, parsed ranges,
/// retrieve responses not yet read, the donation record). Past it a send or retrieve is
/// NO_MEMORY, so the firmware heap (1 MiB, room for the transient copies) never runs out: an
/// allocation failure would stop the testbed.
pub const MAX_HELD_BYTES: usize = 384 * 1024;
/// Largest descriptor accepted (a 512-constituent send is 8.3 KiB).
pub const MAX_DESC_LEN: usize = 64 * 1024;
/// RX/TX buffer size (one page).
pub const BUF_SIZE: usize = 4096;

/// Stage-2 and memory operations the state machine asks for. Ranges are page aligned,
/// non-empty and inside NS DRAM when these are called.
pub trait MemHw {
    /// Maps `r` into the SP's NS IPA space (IPA == PA).
    fn sp_map(&mut self, r: &MemRange, write: bool, exec: bool) -> Result<(), HwError>;
    /// Unmaps `r` from the SP's NS IPA space and invalidates its TLB entries by IPA.
    fn sp_unmap(&mut self, r: &MemRange);
    /// Removes `r` from the normal world's stage-2 (tagged with `why`).
    fn nw_revoke(&mut self, r: &MemRange, why: Revoked) -> Result<(), HwError>;
    /// Gives `r` back to the normal world.
    fn nw_restore(&mut self, r: &MemRange);
    /// Zeroes `r`.
    fn zero(&mut self, r: &MemRange);
}

/// Why a stage-2 update failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwError {
    /// No translation table left: NO_MEMORY.
    NoTables,
    /// The SP already maps a page of the range (e.g. a manifest region): DENIED.
    AlreadyMapped,
}

impl HwError {
    fn ffa(self) -> FfaError {
        match self {
            HwError::NoTables => FfaError::NoMemory,
            HwError::AlreadyMapped => FfaError::Denied,
        }
    }
}

/// Why a page is missing from the NW's stage-2; stored in the invalid descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revoked {
    pub donated: bool,
    pub to: u16,
}

impl Revoked {
    /// Tag layout: bits \[15:0\] receiver, bit 16 donated, bit 31 set (never zero).
    pub fn tag(self) -> u32 {
        1 << 31 | u32::from(self.donated) << 16 | u32::from(self.to)
    }

    pub fn from_tag(t: u32) -> Option<Self> {
        (t & 1 << 31 != 0).then_some(Revoked {
            donated: t & (1 << 16) != 0,
            to: t as u16,
        })
    }
}

/// Source of handle bits.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64: the firmware seeds it from RNDR and the counter; tests seed it fixed.
pub struct SplitMix(pub u64);

/// Handle bits: SplitMix64 (distinct, well spread) XOR a fresh hardware value per handle when
/// the platform has one (RNDR), so that one handle does not reveal the generator's state and
/// with it the next handle.
pub struct HandleRng {
    pub mix: SplitMix,
    pub hw: Option<fn() -> u64>,
}

impl Entropy for HandleRng {
    fn next_u64(&mut self) -> u64 {
        self.mix.next_u64() ^ self.hw.map_or(0, |f| f())
    }
}

impl Entropy for SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[derive(Clone, Debug)]
enum State {
    /// FRAG_TX fragments still to come (the assembler and the announced total).
    Sending(FragmentAssembler, usize),
    /// Complete; not retrieved.
    Sent,
    /// Retrieved by the receiver; `pending` holds the rest of a fragmented retrieve response
    /// (from `offset`), `zero_after` the retriever's clear-on-relinquish request.
    Retrieved {
        pending: Option<(Vec<u8>, usize)>,
        zero_after: bool,
        write: bool,
    },
}

#[derive(Clone, Debug)]
struct Tx {
    handle: Handle,
    kind: SendKind,
    owner: u16,
    /// Parsed descriptor (None while sending).
    desc: Option<MemTransaction>,
    state: State,
}

/// What the SPMC answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// FFA_SUCCESS with a handle in w2/w3 (send completed).
    Handle(Handle),
    /// FFA_MEM_FRAG_RX(handle, offset): send the next fragment.
    FragRx { handle: Handle, offset: u32 },
    /// FFA_MEM_RETRIEVE_RESP(total, fragment) with `data` to copy into the RX buffer.
    RetrieveResp { total: u32, frag: u32 },
    /// FFA_MEM_FRAG_TX(handle, length) with the fragment to copy into the RX buffer.
    FragTx { handle: Handle, len: u32 },
    /// FFA_SUCCESS without arguments.
    Ok,
}

/// The endpoint making a call, as the state machine needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerInfo {
    pub id: u16,
    pub version: Version,
}

pub struct MemShare {
    txs: Vec<Tx>,
    /// Ranges whose ownership moved to the SP (retrieved DONATEs).
    donated: Vec<MemRange>,
    /// The only borrower (the SP's ID).
    pub receiver: u16,
    /// The owner (the NW's ID).
    pub owner: u16,
}

fn inval() -> FfaError {
    FfaError::InvalidParameters
}

/// Whether `r` is memory the normal world owns: the SPMC's NS memory (NS DRAM but the secure
/// carve-out; Hafnium: the `ns-memory` ranges its other-world VM owns) outside the testbed's
/// reserved NS region (and not wrapping).
pub fn nw_owns(r: &MemRange) -> bool {
    let Some(end) = r.end() else { return false };
    let in_ram = spmc_memory::contained(&spmc_memory::NS, r.address, end - r.address);
    let reserved = ns_ram::TESTBED_NS_BASE..ns_ram::TESTBED_NS_BASE + ns_ram::TESTBED_NS_SIZE;
    let hits_reserved = r.address < reserved.end && end > reserved.start;
    in_ram && !hits_reserved
}

fn overlaps(a: &MemRange, b: &MemRange) -> bool {
    match (a.end(), b.end()) {
        (Some(ae), Some(be)) => a.address < be && b.address < ae,
        _ => true,
    }
}

fn tx_type(k: SendKind) -> TransactionType {
    match k {
        SendKind::Share => TransactionType::Share,
        SendKind::Lend => TransactionType::Lend,
        SendKind::Donate => TransactionType::Donate,
    }
}

impl MemShare {
    pub fn new(owner: u16, receiver: u16) -> Self {
        MemShare {
            txs: Vec::new(),
            donated: Vec::new(),
            receiver,
            owner,
        }
    }

    /// Live transactions (for leak checks).
    pub fn live(&self) -> usize {
        self.txs.len()
    }

    /// Whether the normal world may name `[pa, pa + len)` as its own (e.g. for its RX/TX
    /// buffers, which the SPMC writes and reads on its behalf): NS DRAM outside the testbed's
    /// region, in no live transaction and not donated. `len` > 0.
    pub fn nw_may_use(&self, pa: u64, len: u64) -> bool {
        let r = MemRange {
            address: pa & !0xfff,
            page_count: (pa & 0xfff)
                .saturating_add(len)
                .div_ceil(0x1000)
                .min(u64::from(u32::MAX)) as u32,
        };
        nw_owns(&r) && !self.in_use(core::slice::from_ref(&r))
    }

    /// Whether any of `ranges` overlaps a live transaction or donated memory.
    fn in_use(&self, ranges: &[MemRange]) -> bool {
        let live = self
            .txs
            .iter()
            .filter_map(|t| t.desc.as_ref())
            .flat_map(|d| d.ranges.iter());
        live.chain(self.donated.iter())
            .any(|a| ranges.iter().any(|b| overlaps(a, b)))
    }

    /// Heap bytes held by the transactions, from above: each buffer rounded up to a power of
    /// two, as the firmware's buddy allocator hands them out (see [`MAX_HELD_BYTES`]).
    pub fn held(&self) -> usize {
        let block = |n: usize| n.next_power_of_two();
        let per_tx = |t: &Tx| {
            let desc = t.desc.as_ref().map_or(0, |d| {
                block(d.ranges.capacity() * core::mem::size_of::<MemRange>())
                    + block(d.receivers.capacity() * core::mem::size_of::<ffa::memory::Emad>())
            });
            let state = match &t.state {
                State::Sending(_, total) => block(*total),
                State::Retrieved {
                    pending: Some((b, _)),
                    ..
                } => block(b.capacity()),
                _ => 0,
            };
            core::mem::size_of::<Tx>() + desc + state
        };
        self.txs.iter().map(per_tx).sum::<usize>()
            + block(self.txs.capacity() * core::mem::size_of::<Tx>())
            + block(self.donated.capacity() * core::mem::size_of::<MemRange>())
    }

    fn find(&self, h: Handle) -> Option<usize> {
        self.txs.iter().position(|t| t.handle == h)
    }

    /// The lowest free slot index (bit 63 clear: allocated by the SPMC), as Hafnium's
    /// `share_state_allocate` does. The table is bounded, so a free index exists when called.
    fn new_handle(&self, _rng: &mut dyn Entropy) -> Handle {
        let mut i = FIRST_HANDLE;
        while self.find(Handle(i)).is_some() {
            i += 1;
        }
        Handle(i)
    }

    /// FFA_MEM_SHARE/LEND/DONATE from `caller` with the first fragment `frag` (copied out of
    /// its TX buffer) of a `total`-byte descriptor.
    ///
    /// `avoid`: the caller's TX and RX buffer pages, which it may not send.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        caller: CallerInfo,
        kind: SendKind,
        total: u32,
        frag: &[u8],
        avoid: Option<(u64, u64)>,
        hw: &mut dyn MemHw,
        rng: &mut dyn Entropy,
    ) -> Result<Reply, FfaError> {
        if caller.id != self.owner {
            // Only the normal world lends here: the one SP has no other SP to send to.
            return Err(FfaError::Denied);
        }
        let total_len = total as usize;
        if frag.is_empty() || frag.len() > total_len || frag.len() > BUF_SIZE {
            return Err(inval());
        }
        if total_len > MAX_DESC_LEN {
            return Err(FfaError::NoMemory);
        }
        if self.txs.len() == MAX_TRANSACTIONS
            || self.held() + total_len.next_power_of_two() > MAX_HELD_BYTES
        {
            return Err(FfaError::NoMemory);
        }
        if frag.len() < total_len {
            let asm = FragmentAssembler::new(total, frag, MAX_DESC_LEN).map_err(FfaError::from)?;
            let handle = self.new_handle(rng);
            self.txs.push(Tx {
                handle,
                kind,
                owner: caller.id,
                desc: None,
                state: State::Sending(asm, total_len),
            });
            return Ok(Reply::FragRx {
                handle,
                offset: frag.len() as u32,
            });
        }
        let handle = self.new_handle(rng);
        self.complete(caller, kind, handle, frag, avoid, hw)?;
        Ok(Reply::Handle(handle))
    }

    /// FFA_MEM_FRAG_TX: the next fragment of a send in progress.
    pub fn frag_tx(
        &mut self,
        caller: CallerInfo,
        handle: Handle,
        frag: &[u8],
        avoid: Option<(u64, u64)>,
        hw: &mut dyn MemHw,
    ) -> Result<Reply, FfaError> {
        // Hafnium `api_ffa_mem_frag_tx`: whole constituents, at most one buffer (checked
        // before the handle, so such a call leaves the transaction alone).
        if frag.is_empty()
            || !frag.len().is_multiple_of(ffa::memory::RANGE_SIZE)
            || frag.len() > BUF_SIZE
        {
            return Err(inval());
        }
        let i = self.find(handle).ok_or_else(inval)?;
        if self.txs[i].owner != caller.id {
            return Err(inval());
        }
        let State::Sending(asm, _) = &mut self.txs[i].state else {
            return Err(inval());
        };
        // A bad fragment ends the transaction (Hafnium frees the share state).
        let done = match asm.push(frag) {
            Ok(d) => d,
            Err(e) => {
                self.txs.remove(i);
                return Err(e.into());
            }
        };
        if !done {
            return Ok(Reply::FragRx {
                handle,
                offset: asm.received() as u32,
            });
        }
        let tx = self.txs.remove(i);
        let State::Sending(asm, _) = tx.state else {
            return Err(inval());
        };
        let whole = asm.finish().map_err(FfaError::from)?;
        self.complete(caller, tx.kind, handle, &whole, avoid, hw)?;
        Ok(Reply::Handle(handle))
    }

    /// Validates a complete send descriptor and applies it: table entry, NW stage-2.
    fn complete(
        &mut self,
        caller: CallerInfo,
        kind: SendKind,
        handle: Handle,
        bytes: &[u8],
        avoid: Option<(u64, u64)>,
        hw: &mut dyn MemHw,
    ) -> Result<(), FfaError> {
        let opts = ParseOptions {
            expected_sender: Some(caller.id),
            emad_size: Some(EmadSize::for_version(caller.version)),
        };
        let desc =
            MemTransaction::parse(bytes, DescKind::Send(kind), opts).map_err(FfaError::from)?;
        // Receivers: the SP only (the parser already rejected duplicates).
        if desc
            .receivers
            .iter()
            .any(|e| e.perm.endpoint_id != self.receiver)
        {
            return Err(inval());
        }
        check_send_attributes(kind, desc.attributes)?;
        // Ownership: NS DRAM the NW owns, not already in another transaction nor donated
        // (Hafnium `ffa_send_check_transition`: the owner must have exclusive access), and not
        // its own RX/TX buffers (the SPMC keeps using them on its behalf).
        if !desc.ranges.iter().all(nw_owns) || self.in_use(&desc.ranges) {
            return Err(FfaError::Denied);
        }
        if let Some((tx, rx)) = avoid
            && desc.ranges.iter().any(|r| {
                [tx, rx].iter().any(|&b| {
                    overlaps(
                        r,
                        &MemRange {
                            address: b,
                            page_count: 1,
                        },
                    )
                })
            })
        {
            return Err(FfaError::Denied);
        }
        if kind == SendKind::Donate && self.donated.len() + desc.ranges.len() > MAX_DONATED_RANGES {
            return Err(FfaError::NoMemory);
        }
        if kind != SendKind::Share {
            let why = Revoked {
                donated: kind == SendKind::Donate,
                to: self.receiver,
            };
            for (n, r) in desc.ranges.iter().enumerate() {
                if let Err(e) = hw.nw_revoke(r, why) {
                    for done in &desc.ranges[..n] {
                        hw.nw_restore(done);
                    }
                    return Err(e.ffa());
                }
            }
        }
        self.txs.push(Tx {
            handle,
            kind,
            owner: caller.id,
            desc: Some(desc),
            state: State::Sent,
        });
        Ok(())
    }

    /// FFA_MEM_RETRIEVE_REQ by the SP with its request `req` (from its TX buffer). Returns the
    /// reply and the first fragment to write into the SP's RX buffer.
    pub fn retrieve(
        &mut self,
        caller: CallerInfo,
        total: u32,
        req: &[u8],
        hw: &mut dyn MemHw,
    ) -> Result<(Reply, Vec<u8>), FfaError> {
        if caller.id != self.receiver {
            return Err(FfaError::NotSupported);
        }
        if total as usize != req.len() || req.len() > BUF_SIZE {
            // Hafnium takes a retrieve request in one fragment.
            return Err(inval());
        }
        let emad = EmadSize::for_version(caller.version);
        let opts = ParseOptions {
            expected_sender: None,
            emad_size: Some(emad),
        };
        let r = MemTransaction::parse(req, DescKind::RetrieveReq, opts).map_err(FfaError::from)?;
        let i = self.find(r.handle).ok_or_else(inval)?;
        let tx = &self.txs[i];
        let Some(sent) = tx.desc.as_ref() else {
            return Err(inval()); // still being sent
        };
        if matches!(tx.state, State::Retrieved { .. }) {
            return Err(FfaError::Denied);
        }
        if r.sender_id != tx.owner || r.tag != sent.tag {
            return Err(inval());
        }
        let want = r.flags.transaction_type();
        if want != TransactionType::Unspecified && want != tx_type(tx.kind) {
            return Err(inval());
        }
        // One receiver: the caller, named in the send.
        let [e] = r.receivers.as_slice() else {
            return Err(inval());
        };
        if e.perm.endpoint_id != caller.id {
            return Err(inval());
        }
        let Some(granted) = sent
            .receivers
            .iter()
            .find(|s| s.perm.endpoint_id == caller.id)
        else {
            return Err(inval());
        };
        // Attributes: unspecified, or normal write-back inner shareable, the only memory
        // sent here (Hafnium `ffa_memory_retrieve_validate`: `ffa_memory_attributes_validate`,
        // DENIED; the NS bit the parser already refused).
        if r.attributes.mem_type != MemType::Unspecified
            && r.attributes.mem_type != MemRegionAttributes::NORMAL_WB_INNER.mem_type
        {
            return Err(FfaError::Denied);
        }
        // Permissions: never more than the owner granted (donate: the new owner has all).
        let data = match (
            tx.kind,
            r.receivers[0].perm.data_access,
            granted.perm.data_access,
        ) {
            (SendKind::Donate, DataAccess::NotSpecified, _) => DataAccess::ReadWrite,
            (SendKind::Donate, d, _) => d,
            (_, DataAccess::NotSpecified, g) => g,
            (_, DataAccess::ReadWrite, DataAccess::ReadOnly) => return Err(FfaError::Denied),
            (_, d, _) => d,
        };
        // Instruction access (Hafnium `ffa_memory_retrieve_is_memory_access_valid`): a SHARE
        // retriever must not name it (the SPMC grants NX); a single borrower of a LEND/DONATE
        // must, and may not ask for X on NS memory (no RME here to make it secure).
        let instr = match (tx.kind, e.perm.instruction_access) {
            (SendKind::Share, InstructionAccess::NotSpecified) => InstructionAccess::NotExecutable,
            (SendKind::Share, _) => return Err(inval()),
            (_, InstructionAccess::NotSpecified | InstructionAccess::Executable) => {
                return Err(inval());
            }
            (_, x) => x,
        };
        // Flags: clearing shared memory makes no sense (the owner still has it), and donated
        // memory is never relinquished.
        let f = r.flags;
        let zero_now = f.contains(MemFlags::ZERO_MEMORY);
        let zero_after = f.contains(MemFlags::ZERO_AFTER_RELINQUISH);
        if (zero_now || zero_after) && tx.kind == SendKind::Share {
            return Err(inval());
        }
        if zero_after && tx.kind == SendKind::Donate {
            return Err(inval());
        }
        let grant = MemAccessPerm {
            endpoint_id: caller.id,
            data_access: data,
            instruction_access: instr,
            non_retrieval_borrower: false,
        };
        // Hafnium `ffa_memory_add_security_bit_from_mode`: the sender's attributes as sent
        // (unspecified for a LEND/DONATE) plus NS, because the memory is the normal world's;
        // for every caller version.
        let mut resp =
            MemTransaction::retrieve_response(sent, tx.handle, tx_type(tx.kind), grant, true, emad);
        resp.attributes = MemRegionAttributes {
            ns: true,
            ..sent.attributes
        };
        let resp_len = resp
            .encoded_len(DescKind::RetrieveResp)
            .map_err(FfaError::from)?;
        if self.held() + resp_len.next_power_of_two() > MAX_HELD_BYTES {
            return Err(FfaError::NoMemory);
        }
        let bytes = resp
            .to_vec(DescKind::RetrieveResp)
            .map_err(FfaError::from)?;
        let ranges_start = ffa::memory::TRANSACTION_HEADER_SIZE
            + emad.bytes()
            + ffa::memory::COMPOSITE_HEADER_SIZE;
        let first = plan_fragments(bytes.len(), ranges_start, BUF_SIZE)
            .map_err(FfaError::from)?
            .next()
            .map_or(bytes.len(), |(_, l)| l);

        // Map, zero if asked by either side, then commit.
        let write = data == DataAccess::ReadWrite;
        let exec = instr == InstructionAccess::Executable;
        for (n, rg) in sent.ranges.iter().enumerate() {
            if let Err(err) = hw.sp_map(rg, write, exec) {
                for done in &sent.ranges[..n] {
                    hw.sp_unmap(done);
                }
                return Err(err.ffa());
            }
        }
        if (zero_now || sent.flags.contains(MemFlags::ZERO_MEMORY)) && tx.kind != SendKind::Share {
            for rg in &sent.ranges {
                hw.zero(rg);
            }
        }
        let total = bytes.len() as u32;
        let head = bytes[..first].to_vec();
        let pending = (first < bytes.len()).then_some((bytes, first));
        if tx.kind == SendKind::Donate && pending.is_none() {
            // Ownership moved to the SP: the handle is gone, the NW never gets it back.
            let tx = self.txs.remove(i);
            self.donated
                .extend(tx.desc.into_iter().flat_map(|d| d.ranges));
        } else {
            self.txs[i].state = State::Retrieved {
                pending,
                zero_after,
                write,
            };
        }
        Ok((
            Reply::RetrieveResp {
                total,
                frag: first as u32,
            },
            head,
        ))
    }

    /// FFA_MEM_FRAG_RX by the SP: the next retrieve-response fragment from `offset`.
    pub fn frag_rx(
        &mut self,
        caller: CallerInfo,
        handle: Handle,
        offset: u32,
    ) -> Result<(Reply, Vec<u8>), FfaError> {
        let i = self.find(handle).ok_or_else(inval)?;
        if caller.id != self.receiver {
            return Err(inval());
        }
        let State::Retrieved {
            pending: Some((bytes, sent)),
            ..
        } = &mut self.txs[i].state
        else {
            return Err(inval());
        };
        if offset as usize != *sent {
            return Err(inval());
        }
        let remaining = bytes.len() - *sent;
        let len = remaining.min(BUF_SIZE - BUF_SIZE % ffa::memory::RANGE_SIZE);
        let chunk = bytes[*sent..*sent + len].to_vec();
        *sent += len;
        if *sent == bytes.len() {
            if self.txs[i].kind == SendKind::Donate {
                let tx = self.txs.remove(i);
                self.donated
                    .extend(tx.desc.into_iter().flat_map(|d| d.ranges));
            } else if let State::Retrieved { pending, .. } = &mut self.txs[i].state {
                *pending = None;
            }
        }
        Ok((
            Reply::FragTx {
                handle,
                len: len as u32,
            },
            chunk,
        ))
    }

    /// FFA_MEM_RELINQUISH by the SP with the descriptor from its TX buffer.
    pub fn relinquish(
        &mut self,
        caller: CallerInfo,
        desc: &[u8],
        hw: &mut dyn MemHw,
    ) -> Result<Reply, FfaError> {
        let d = MemRelinquishDesc::parse(desc).map_err(FfaError::from)?;
        if d.endpoints.as_slice() != [caller.id] {
            return Err(inval());
        }
        let i = self.find(d.handle).ok_or_else(inval)?;
        let tx = &self.txs[i];
        let State::Retrieved {
            pending: None,
            zero_after,
            ..
        } = tx.state
        else {
            // Not retrieved (or relinquished already), or the response not fully read.
            return Err(inval());
        };
        let clear = d.flags & MemRelinquishDesc::FLAG_ZERO != 0;
        if clear && tx.kind == SendKind::Share {
            return Err(inval());
        }
        let Some(sent) = tx.desc.as_ref() else {
            return Err(inval());
        };
        for r in &sent.ranges {
            hw.sp_unmap(r);
        }
        if clear || zero_after {
            for r in &sent.ranges {
                hw.zero(r);
            }
        }
        self.txs[i].state = State::Sent;
        Ok(Reply::Ok)
    }

    /// FFA_MEM_RECLAIM by the owner.
    pub fn reclaim(
        &mut self,
        caller: CallerInfo,
        handle: Handle,
        zero: bool,
        hw: &mut dyn MemHw,
    ) -> Result<Reply, FfaError> {
        let i = self.find(handle).ok_or_else(inval)?;
        let tx = &self.txs[i];
        if tx.owner != caller.id {
            return Err(FfaError::Denied);
        }
        let Some(sent) = tx.desc.as_ref() else {
            return Err(inval()); // not fully sent
        };
        if matches!(tx.state, State::Retrieved { .. }) {
            return Err(FfaError::Denied);
        }
        if zero && tx.kind == SendKind::Share {
            return Err(inval());
        }
        if tx.kind != SendKind::Share {
            for r in &sent.ranges {
                if zero {
                    hw.zero(r);
                }
                hw.nw_restore(r);
            }
        }
        self.txs.remove(i);
        Ok(Reply::Ok)
    }
}

/// Hafnium `ffa_memory_send_validate`: a DONATE, or a LEND to one borrower (always the case
/// here: the SP is the only receiver), must leave the memory type unspecified
/// (INVALID_PARAMETERS); a SHARE must name it (the parser refuses unspecified) as normal,
/// write-back, inner shareable (`ffa_memory_attributes_validate`, DENIED; the testbed also
/// refuses device memory, which Hafnium accepts as nGnRnE).
fn check_send_attributes(kind: SendKind, a: MemRegionAttributes) -> Result<(), FfaError> {
    match a.mem_type {
        MemType::Unspecified if kind != SendKind::Share => Ok(()),
        MemType::Unspecified => Err(inval()),
        _ if kind != SendKind::Share => Err(inval()),
        t if t == MemRegionAttributes::NORMAL_WB_INNER.mem_type => Ok(()),
        _ => Err(FfaError::Denied),
    }
}

#[cfg(test)]
#[path = "memshare_tests.rs"]
pub(crate) mod tests;
