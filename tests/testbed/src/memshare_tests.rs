extern crate std;

use super::*;
use ffa::memory::{Emad, MemAccessPerm};
use std::collections::{BTreeMap, BTreeSet};
use std::vec;

/// Page-level model of both stage-2s and of memory contents.
#[derive(Default, Debug)]
pub struct FakeHw {
    /// SP mappings: page -> writable.
    pub sp: BTreeMap<u64, bool>,
    /// Pages revoked from the NW, with the reason.
    pub nw_revoked: BTreeMap<u64, Revoked>,
    /// Zeroed pages (in order; a page may appear more than once).
    pub zeroed: Vec<u64>,
    /// Pages the SP already maps (manifest regions).
    pub sp_fixed: BTreeSet<u64>,
    /// Remaining stage-2 tables: None = unlimited; each newly mapped page costs one.
    pub tables: Option<usize>,
    pub unmaps: usize,
}

fn pages(r: &MemRange) -> impl Iterator<Item = u64> {
    (0..u64::from(r.page_count)).map(move |i| r.address + i * 0x1000)
}

impl MemHw for FakeHw {
    fn sp_map(&mut self, r: &MemRange, write: bool, _exec: bool) -> Result<(), HwError> {
        if pages(r).any(|p| self.sp.contains_key(&p) || self.sp_fixed.contains(&p)) {
            return Err(HwError::AlreadyMapped);
        }
        if let Some(t) = self.tables.as_mut() {
            if *t < r.page_count as usize {
                return Err(HwError::NoTables);
            }
            *t -= r.page_count as usize;
        }
        for p in pages(r) {
            self.sp.insert(p, write);
        }
        Ok(())
    }
    fn sp_unmap(&mut self, r: &MemRange) {
        for p in pages(r) {
            assert!(
                self.sp.remove(&p).is_some(),
                "unmapping an unmapped page {p:#x}"
            );
            if let Some(t) = self.tables.as_mut() {
                *t += 1;
            }
        }
        self.unmaps += 1;
    }
    fn nw_revoke(&mut self, r: &MemRange, why: Revoked) -> Result<(), HwError> {
        if let Some(t) = self.tables.as_mut() {
            if *t < r.page_count as usize {
                return Err(HwError::NoTables);
            }
            *t -= r.page_count as usize;
        }
        for p in pages(r) {
            assert!(
                self.nw_revoked.insert(p, why).is_none(),
                "revoked twice {p:#x}"
            );
        }
        Ok(())
    }
    fn nw_restore(&mut self, r: &MemRange) {
        for p in pages(r) {
            assert!(
                self.nw_revoked.remove(&p).is_some(),
                "restoring a mapped page {p:#x}"
            );
            if let Some(t) = self.tables.as_mut() {
                *t += 1;
            }
        }
    }
    fn zero(&mut self, r: &MemRange) {
        self.zeroed.extend(pages(r));
    }
}

const NW: CallerInfo = CallerInfo {
    id: 0,
    version: Version::V1_2,
};
const SP: CallerInfo = CallerInfo {
    id: 0x8001,
    version: Version::V1_2,
};
const BUF: u64 = 0x4800_0000;

fn perm(id: u16, d: DataAccess) -> MemAccessPerm {
    MemAccessPerm {
        endpoint_id: id,
        data_access: d,
        instruction_access: InstructionAccess::NotSpecified,
        non_retrieval_borrower: false,
    }
}

fn desc(kind: SendKind, ranges: &[(u64, u32)]) -> MemTransaction {
    let data = if kind == SendKind::Donate {
        DataAccess::NotSpecified
    } else {
        DataAccess::ReadWrite
    };
    // Hafnium: a single-borrower LEND/DONATE leaves the type to the borrower.
    let attributes = if kind == SendKind::Share {
        MemRegionAttributes::NORMAL_WB_INNER
    } else {
        MemRegionAttributes {
            mem_type: MemType::Unspecified,
            ns: false,
        }
    };
    MemTransaction {
        sender_id: 0,
        attributes,
        flags: MemFlags(0),
        handle: Handle(0),
        tag: 7,
        emad_size: EmadSize::V1_2,
        receivers: vec![Emad::new(perm(0x8001, data))],
        ranges: ranges
            .iter()
            .map(|&(address, page_count)| MemRange {
                address,
                page_count,
            })
            .collect(),
    }
}

fn bytes(kind: SendKind, d: &MemTransaction) -> Vec<u8> {
    d.to_vec(DescKind::Send(kind)).unwrap()
}

struct T {
    m: MemShare,
    hw: FakeHw,
    rng: SplitMix,
}

impl T {
    fn new() -> Self {
        T {
            m: MemShare::new(0, 0x8001),
            hw: FakeHw::default(),
            rng: SplitMix(1),
        }
    }
    fn send_raw(&mut self, kind: SendKind, b: &[u8]) -> Result<Reply, FfaError> {
        self.m.send(
            NW,
            kind,
            b.len() as u32,
            b,
            None,
            &mut self.hw,
            &mut self.rng,
        )
    }
    fn send(&mut self, kind: SendKind, d: &MemTransaction) -> Result<Handle, FfaError> {
        match self.send_raw(kind, &bytes(kind, d))? {
            Reply::Handle(h) => Ok(h),
            r => panic!("{r:?}"),
        }
    }
    /// A send of any size, fragmented like the client does.
    fn send_frag(&mut self, kind: SendKind, d: &MemTransaction) -> Result<Handle, FfaError> {
        let b = bytes(kind, d);
        let head = 48 + d.receivers.len() * d.emad_size.bytes() + 16;
        let mut plan = plan_fragments(b.len(), head, BUF_SIZE).unwrap();
        let (_, first) = plan.next().unwrap();
        let mut r = self.m.send(
            NW,
            kind,
            b.len() as u32,
            &b[..first],
            None,
            &mut self.hw,
            &mut self.rng,
        )?;
        for (o, l) in plan {
            let Reply::FragRx { handle, offset } = r else {
                panic!("{r:?}")
            };
            assert_eq!(offset as usize, o);
            r = self
                .m
                .frag_tx(NW, handle, &b[o..o + l], None, &mut self.hw)?;
        }
        match r {
            Reply::Handle(h) => Ok(h),
            r => panic!("{r:?}"),
        }
    }
    fn retrieve_req(&mut self, r: &MemTransaction) -> Result<(Reply, Vec<u8>), FfaError> {
        let b = r.to_vec(DescKind::RetrieveReq).unwrap();
        self.m.retrieve(SP, b.len() as u32, &b, &mut self.hw)
    }
    fn retrieve(&mut self, h: Handle, t: TransactionType) -> Result<MemTransaction, FfaError> {
        let req = req(h, t);
        let (reply, head) = self.retrieve_req(&req)?;
        let Reply::RetrieveResp { total, frag } = reply else {
            panic!()
        };
        assert_eq!(frag as usize, head.len());
        let mut asm = FragmentAssembler::new(total, &head, MAX_DESC_LEN).unwrap();
        while !asm.is_complete() {
            let (r, chunk) = self.m.frag_rx(SP, h, asm.received() as u32).unwrap();
            assert_eq!(
                r,
                Reply::FragTx {
                    handle: h,
                    len: chunk.len() as u32
                }
            );
            assert!(chunk.len() <= BUF_SIZE);
            asm.push(&chunk).unwrap();
        }
        Ok(parse_resp(&asm.finish().unwrap()))
    }
    fn relinquish(&mut self, h: Handle, flags: u32) -> Result<Reply, FfaError> {
        let d = MemRelinquishDesc {
            handle: h,
            flags,
            endpoints: vec![0x8001],
        };
        let mut b = vec![0u8; 64];
        d.encode(&mut b).unwrap();
        self.m.relinquish(SP, &b, &mut self.hw)
    }
    fn reclaim(&mut self, h: Handle, zero: bool) -> Result<Reply, FfaError> {
        self.m.reclaim(NW, h, zero, &mut self.hw)
    }
}

/// Parses a retrieve response as the SP's `ffa` flow does.
pub(crate) fn parse_resp(b: &[u8]) -> MemTransaction {
    MemTransaction::parse(b, DescKind::RetrieveResp, ParseOptions::default()).unwrap()
}

fn raw_attrs(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[2], b[3]])
}

/// A retrieve request as the SP must make it for Hafnium: instruction access unspecified for
/// a SHARE, NX for a LEND/DONATE (and for an unspecified type, used on lends here).
fn req(h: Handle, t: TransactionType) -> MemTransaction {
    let mut p = perm(0x8001, DataAccess::NotSpecified);
    if t != TransactionType::Share {
        p.instruction_access = InstructionAccess::NotExecutable;
    }
    MemTransaction::retrieve_request(h, 0, p, t, 7, EmadSize::V1_2)
}

#[test]
fn share_retrieve_relinquish_reclaim() {
    let mut t = T::new();
    let h = t
        .send(SendKind::Share, &desc(SendKind::Share, &[(BUF, 2)]))
        .unwrap();
    assert_eq!(
        h,
        Handle(FIRST_HANDLE),
        "SPMC-allocated (bit 63 clear), lowest index"
    );
    assert!(t.hw.nw_revoked.is_empty(), "share keeps the owner's access");
    let resp = t.retrieve(h, TransactionType::Share).unwrap();
    assert!(resp.attributes.ns, "NS bit for a v1.2 SP");
    assert_eq!(resp.emad_size, EmadSize::V1_2);
    assert_eq!(resp.flags.transaction_type(), TransactionType::Share);
    assert_eq!(resp.receivers[0].perm.data_access, DataAccess::ReadWrite);
    assert_eq!(
        resp.receivers[0].perm.instruction_access,
        InstructionAccess::NotExecutable
    );
    assert_eq!(t.hw.sp.len(), 2);
    assert_eq!(t.reclaim(h, false), Err(FfaError::Denied), "retrieved");
    assert_eq!(t.relinquish(h, 0), Ok(Reply::Ok));
    assert!(t.hw.sp.is_empty(), "unmapped");
    assert_eq!(
        t.relinquish(h, 0),
        Err(FfaError::InvalidParameters),
        "twice"
    );
    assert_eq!(t.reclaim(h, false), Ok(Reply::Ok));
    assert_eq!(
        t.reclaim(h, false),
        Err(FfaError::InvalidParameters),
        "gone"
    );
    assert_eq!(t.m.live(), 0);
}

#[test]
fn lend_revokes_and_reclaim_restores_with_zeroing() {
    let mut t = T::new();
    let mut d = desc(SendKind::Lend, &[(BUF, 1), (BUF + 0x3000, 2)]);
    d.flags = MemFlags(MemFlags::ZERO_MEMORY);
    let h = t.send(SendKind::Lend, &d).unwrap();
    assert_eq!(t.hw.nw_revoked.len(), 3);
    assert_eq!(
        t.hw.nw_revoked[&BUF],
        Revoked {
            donated: false,
            to: 0x8001
        }
    );
    t.retrieve(h, TransactionType::Lend).unwrap();
    assert_eq!(t.hw.zeroed.len(), 3, "zeroed before the borrower sees it");
    assert_eq!(t.relinquish(h, MemRelinquishDesc::FLAG_ZERO), Ok(Reply::Ok));
    assert_eq!(t.hw.zeroed.len(), 6, "cleared on relinquish");
    assert_eq!(t.hw.nw_revoked.len(), 3, "still lent until reclaimed");
    assert_eq!(t.reclaim(h, true), Ok(Reply::Ok));
    assert_eq!(t.hw.zeroed.len(), 9, "zeroed on reclaim");
    assert!(t.hw.nw_revoked.is_empty(), "access restored");
}

#[test]
fn donate_moves_ownership_for_good() {
    let mut t = T::new();
    let h = t
        .send(SendKind::Donate, &desc(SendKind::Donate, &[(BUF, 1)]))
        .unwrap();
    assert!(t.hw.nw_revoked[&BUF].donated);
    let resp = t.retrieve(h, TransactionType::Donate).unwrap();
    assert_eq!(resp.receivers[0].perm.data_access, DataAccess::ReadWrite);
    assert_eq!(t.m.live(), 0, "the handle is gone");
    assert_eq!(t.reclaim(h, false), Err(FfaError::InvalidParameters));
    assert_eq!(t.relinquish(h, 0), Err(FfaError::InvalidParameters));
    assert_eq!(t.hw.nw_revoked.len(), 1, "never given back");
    assert_eq!(t.hw.sp.len(), 1, "the SP keeps it");
    for k in [SendKind::Share, SendKind::Lend, SendKind::Donate] {
        assert_eq!(
            t.send(k, &desc(k, &[(BUF, 1)])),
            Err(FfaError::Denied),
            "donated memory is not the NW's to send"
        );
    }
    assert!(!t.m.nw_may_use(BUF + 0x10, 0x100), "nor to use as a buffer");
    assert!(t.m.nw_may_use(BUF + 0x1000, 0x1000));
    // A donate not yet retrieved can be reclaimed.
    let h = t
        .send(
            SendKind::Donate,
            &desc(SendKind::Donate, &[(BUF + 0x1000, 1)]),
        )
        .unwrap();
    assert_eq!(t.reclaim(h, false), Ok(Reply::Ok));
    assert_eq!(t.hw.nw_revoked.len(), 1);
}

#[test]
fn owners_buffers_and_donation_record_are_protected() {
    let mut t = T::new();
    let b = bytes(SendKind::Lend, &desc(SendKind::Lend, &[(BUF, 4)]));
    let mailbox = Some((BUF + 0x2000, 0x4010_0000));
    assert_eq!(
        t.m.send(
            NW,
            SendKind::Lend,
            b.len() as u32,
            &b,
            mailbox,
            &mut t.hw,
            &mut t.rng
        ),
        Err(FfaError::Denied),
        "the sender's TX buffer"
    );
    let h = t
        .send(SendKind::Lend, &desc(SendKind::Lend, &[(BUF, 4)]))
        .unwrap();
    assert!(
        !t.m.nw_may_use(BUF + 0x3000, 0x1000),
        "lent pages are no buffer"
    );
    assert!(!t.m.nw_may_use(ns_ram::TESTBED_NS_BASE, 0x1000), "reserved");
    t.reclaim(h, false).unwrap();
    assert!(t.m.nw_may_use(BUF + 0x3000, 0x1000));
    // The record of donated ranges is bounded: NO_MEMORY before anything changes.
    let many: Vec<(u64, u32)> = (0..512).map(|i| (BUF + i * 0x2000, 1)).collect();
    for round in 0..2u64 {
        let r: Vec<(u64, u32)> = many.iter().map(|&(a, n)| (a + round * 0x1000, n)).collect();
        let h = t
            .send_frag(SendKind::Donate, &desc(SendKind::Donate, &r))
            .unwrap();
        t.retrieve(h, TransactionType::Donate).unwrap();
    }
    let d = desc(SendKind::Donate, &[(0x5000_0000, 1)]);
    assert_eq!(t.send(SendKind::Donate, &d), Err(FfaError::NoMemory));
    assert_eq!(t.hw.nw_revoked.len(), 1024);
}

#[test]
fn handles_are_hafnium_share_state_indices() {
    let mut t = T::new();
    let mut hs = vec![];
    for i in 0..8 {
        let d = desc(SendKind::Share, &[(BUF + i * 0x1000, 1)]);
        hs.push(t.send(SendKind::Share, &d).unwrap());
    }
    // Bit 63 clear (SPMC), consecutive indices from the first.
    let want: Vec<Handle> = (0..8).map(|i| Handle(FIRST_HANDLE + i)).collect();
    assert_eq!(hs, want);
    // A freed index is the next one handed out, as in Hafnium's `share_state_allocate`.
    t.reclaim(hs[2], false).unwrap();
    let d = desc(SendKind::Share, &[(BUF + 0x10_0000, 1)]);
    assert_eq!(t.send(SendKind::Share, &d), Ok(hs[2]));
    // A fragmented send takes its index at the first fragment.
    let d = desc(SendKind::Share, &[(BUF + 0x20_0000, 1)]);
    let b = bytes(SendKind::Share, &d);
    let first = b.len() - 16;
    let r =
        t.m.send(
            NW,
            SendKind::Share,
            b.len() as u32,
            &b[..first],
            None,
            &mut t.hw,
            &mut t.rng,
        )
        .unwrap();
    assert_eq!(
        r,
        Reply::FragRx {
            handle: Handle(FIRST_HANDLE + 8),
            offset: first as u32
        }
    );
}

#[test]
fn table_full_is_no_memory() {
    let mut t = T::new();
    for i in 0..MAX_TRANSACTIONS as u64 {
        t.send(
            SendKind::Share,
            &desc(SendKind::Share, &[(BUF + i * 0x1000, 1)]),
        )
        .unwrap();
    }
    let d = desc(SendKind::Share, &[(BUF + 0x100_0000, 1)]);
    assert_eq!(t.send(SendKind::Share, &d), Err(FfaError::NoMemory));
    assert_eq!(t.m.live(), MAX_TRANSACTIONS);
}

#[test]
fn held_bytes_are_bounded() {
    let mut t = T::new();
    let ranges: Vec<(u64, u32)> = (0..4000).map(|i| (BUF + i * 0x2000, 1)).collect();
    let b = bytes(SendKind::Share, &desc(SendKind::Share, &ranges));
    assert!(b.len() <= MAX_DESC_LEN);
    let mut n = 0;
    let first = 96 + 16 * 200;
    loop {
        let r = t.m.send(
            NW,
            SendKind::Share,
            b.len() as u32,
            &b[..first],
            None,
            &mut t.hw,
            &mut t.rng,
        );
        match r {
            Ok(Reply::FragRx { .. }) => n += 1,
            Err(e) => {
                assert_eq!(e, FfaError::NoMemory);
                break;
            }
            Ok(r) => panic!("{r:?}"),
        }
        assert!(n < MAX_TRANSACTIONS, "the byte budget binds first");
    }
    assert!(n >= 2 && n < MAX_HELD_BYTES / b.len(), "{n}");
    assert!(t.m.held() <= MAX_HELD_BYTES);
}

#[test]
fn stage2_exhaustion_rolls_back() {
    let mut t = T::new();
    t.hw.tables = Some(2);
    let d = desc(SendKind::Lend, &[(BUF, 1), (BUF + 0x10000, 2)]);
    assert_eq!(t.send(SendKind::Lend, &d), Err(FfaError::NoMemory));
    assert!(t.hw.nw_revoked.is_empty(), "rolled back");
    assert_eq!(t.m.live(), 0);
    t.hw.tables = Some(3);
    let h = t.send(SendKind::Lend, &d).unwrap();
    assert_eq!(t.hw.tables, Some(0));
    assert_eq!(
        t.retrieve_req(&req(h, TransactionType::Lend)).err(),
        Some(FfaError::NoMemory)
    );
    assert!(t.hw.sp.is_empty(), "SP map rolled back");
    assert_eq!(
        t.reclaim(h, false),
        Ok(Reply::Ok),
        "still in the Sent state"
    );
    // A page the SP already maps: DENIED.
    t.hw.tables = None;
    t.hw.sp_fixed.insert(BUF);
    let h = t
        .send(SendKind::Share, &desc(SendKind::Share, &[(BUF, 1)]))
        .unwrap();
    assert_eq!(
        t.retrieve_req(&req(h, TransactionType::Share)).err(),
        Some(FfaError::Denied)
    );
}

#[test]
fn fragmented_send_and_retrieve_of_512_constituents() {
    let mut t = T::new();
    let ranges: Vec<(u64, u32)> = (0..512).map(|i| (BUF + i * 0x2000, 1)).collect();
    let d = desc(SendKind::Lend, &ranges);
    let b = bytes(SendKind::Lend, &d);
    assert!(b.len() > BUF_SIZE);
    let head = 48 + 32 + 16;
    let mut plan = plan_fragments(b.len(), head, BUF_SIZE).unwrap();
    let (_, first) = plan.next().unwrap();
    let r =
        t.m.send(
            NW,
            SendKind::Lend,
            b.len() as u32,
            &b[..first],
            None,
            &mut t.hw,
            &mut t.rng,
        )
        .unwrap();
    let Reply::FragRx { handle, offset } = r else {
        panic!("{r:?}")
    };
    assert_eq!(offset as usize, first);
    assert!(
        t.hw.nw_revoked.is_empty(),
        "nothing happens before the last fragment"
    );
    assert_eq!(
        t.reclaim(handle, false),
        Err(FfaError::InvalidParameters),
        "incomplete"
    );
    assert_eq!(
        t.retrieve_req(&req(handle, TransactionType::Lend)).err(),
        Some(FfaError::InvalidParameters)
    );
    let mut last = None;
    for (o, l) in plan {
        last = Some(
            t.m.frag_tx(NW, handle, &b[o..o + l], None, &mut t.hw)
                .unwrap(),
        );
    }
    assert_eq!(last, Some(Reply::Handle(handle)));
    assert_eq!(t.hw.nw_revoked.len(), 512);
    let resp = t.retrieve(handle, TransactionType::Lend).unwrap();
    assert_eq!(
        resp.ranges, d.ranges,
        "reassembled response carries every range"
    );
    assert_eq!(t.hw.sp.len(), 512);
    // Bad continuation: wrong handle, wrong offset, non-multiple-of-16 fragment.
    assert_eq!(
        t.m.frag_rx(SP, Handle(123), 0).err(),
        Some(FfaError::InvalidParameters)
    );
    assert_eq!(t.relinquish(handle, 0), Ok(Reply::Ok));
    assert_eq!(t.reclaim(handle, false), Ok(Reply::Ok));
    assert!(t.hw.nw_revoked.is_empty() && t.hw.sp.is_empty());
}

#[test]
fn fragment_errors_end_the_transaction() {
    let mut t = T::new();
    let ranges: Vec<(u64, u32)> = (0..600).map(|i| (BUF + i * 0x2000, 1)).collect();
    let b = bytes(SendKind::Share, &desc(SendKind::Share, &ranges));
    let r =
        t.m.send(
            NW,
            SendKind::Share,
            b.len() as u32,
            &b[..4000],
            None,
            &mut t.hw,
            &mut t.rng,
        )
        .unwrap();
    let Reply::FragRx { handle, .. } = r else {
        panic!()
    };
    let other = CallerInfo { id: 0x8001, ..NW };
    assert_eq!(
        t.m.frag_tx(other, handle, &b[4000..4016], None, &mut t.hw),
        Err(FfaError::InvalidParameters),
        "only the sender continues"
    );
    assert_eq!(t.m.live(), 1);
    assert_eq!(
        t.m.frag_tx(NW, handle, &b[4000..4010], None, &mut t.hw),
        Err(FfaError::InvalidParameters),
        "not whole ranges"
    );
    assert_eq!(
        t.m.live(),
        1,
        "checked before the handle: the transaction stays"
    );
    assert_eq!(
        t.m.frag_tx(NW, handle, &b[4000..], None, &mut t.hw),
        Err(FfaError::InvalidParameters),
        "longer than what remains (and than a buffer)"
    );
    assert_eq!(t.m.live(), 1);
    assert_eq!(
        t.m.frag_tx(NW, handle, &b[4000..8000], None, &mut t.hw),
        Ok(Reply::FragRx {
            handle,
            offset: 8000
        })
    );
    let too_long = vec![0u8; b.len() - 8000 + 16];
    assert_eq!(
        t.m.frag_tx(NW, handle, &too_long, None, &mut t.hw),
        Err(FfaError::InvalidParameters),
        "past the announced total"
    );
    assert_eq!(t.m.live(), 0, "freed");
    assert_eq!(
        t.m.frag_tx(NW, handle, &b[4000..4016], None, &mut t.hw),
        Err(FfaError::InvalidParameters),
        "unknown handle"
    );
    // A complete handle takes no more fragments.
    let h = t
        .send(SendKind::Share, &desc(SendKind::Share, &[(BUF, 1)]))
        .unwrap();
    assert_eq!(
        t.m.frag_tx(NW, h, &[0; 16], None, &mut t.hw),
        Err(FfaError::InvalidParameters)
    );
    assert_eq!(t.m.live(), 1);
}

/// Every rejected send leaves no trace.
#[test]
fn send_rejections() {
    use SendKind::*;
    let base = |k| desc(k, &[(BUF, 1)]);
    let mut cases: Vec<(&str, SendKind, Vec<u8>, FfaError)> = vec![];
    let mut add = |name, k, d: MemTransaction, e| {
        let b = d.to_vec(DescKind::Send(k)).unwrap();
        cases.push((name, k, b, e));
    };
    let mut d = base(Share);
    d.sender_id = 5;
    add("wrong sender", Share, d, FfaError::Denied);
    let mut d = base(Share);
    d.receivers[0].perm.endpoint_id = 0x8002;
    add("unknown receiver", Share, d, FfaError::InvalidParameters);
    let mut d = base(Share);
    d.receivers.push(d.receivers[0]);
    add("duplicate receivers", Share, d, FfaError::InvalidParameters);
    add(
        "overlapping ranges",
        Share,
        desc(Share, &[(BUF, 2), (BUF + 0x1000, 1)]),
        FfaError::InvalidParameters,
    );
    add(
        "zero pages",
        Share,
        desc(Share, &[(BUF, 0)]),
        FfaError::InvalidParameters,
    );
    add(
        "unaligned",
        Share,
        desc(Share, &[(BUF + 8, 1)]),
        FfaError::InvalidParameters,
    );
    add(
        "secure memory",
        Lend,
        desc(Lend, &[(0x0e30_0000, 1)]),
        FfaError::Denied,
    );
    add(
        "past NS RAM",
        Lend,
        desc(Lend, &[(0x7fff_f000, 2)]),
        FfaError::Denied,
    );
    add(
        "testbed reserved",
        Lend,
        desc(Lend, &[(ns_ram::TESTBED_NS_BASE, 1)]),
        FfaError::Denied,
    );
    add(
        "secure carve-out (not the SPMC's NS memory)",
        Share,
        desc(Share, &[(ns_ram::CARVEOUT_BASE + 0x1000, 1)]),
        FfaError::Denied,
    );
    let mut d = base(Lend);
    d.attributes = MemRegionAttributes {
        mem_type: MemType::Device(ffa::memory::DeviceType::NGnRnE),
        ns: false,
    };
    // Hafnium `ffa_memory_send_validate`: a single-borrower lend names no type at all.
    add("device memory lent", Lend, d, FfaError::InvalidParameters);
    let mut d = base(Lend);
    d.attributes = MemRegionAttributes::NORMAL_WB_INNER;
    add(
        "lend naming normal memory",
        Lend,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Donate);
    d.attributes = MemRegionAttributes::NORMAL_WB_INNER;
    add(
        "donate naming normal memory",
        Donate,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Share);
    d.attributes = MemRegionAttributes {
        mem_type: MemType::Device(ffa::memory::DeviceType::NGnRnE),
        ns: false,
    };
    add("device memory shared", Share, d, FfaError::Denied);
    let mut d = base(Share);
    d.attributes = MemRegionAttributes {
        mem_type: MemType::Normal {
            cacheability: ffa::memory::Cacheability::NonCacheable,
            shareability: ffa::memory::Shareability::Inner,
        },
        ns: false,
    };
    add("non-cacheable share", Share, d, FfaError::Denied);
    let mut d = base(Share);
    d.attributes.ns = true;
    add(
        "NS bit from the sender",
        Share,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Share);
    d.attributes.mem_type = MemType::Unspecified;
    add(
        "share without a memory type",
        Share,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Share);
    d.flags = MemFlags(MemFlags::ZERO_MEMORY);
    add(
        "zero flag on a share",
        Share,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Lend);
    d.flags = MemFlags(1 << 12);
    add("reserved flag", Lend, d, FfaError::InvalidParameters);
    let mut d = base(Lend);
    d.flags = MemFlags(0).with_type(TransactionType::Share);
    add(
        "transaction type in a send",
        Lend,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Share);
    d.handle = Handle(5);
    add("handle in a send", Share, d, FfaError::InvalidParameters);
    let mut d = base(Share);
    d.receivers[0].perm.data_access = DataAccess::NotSpecified;
    add(
        "share without data access",
        Share,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Donate);
    d.receivers[0].perm.data_access = DataAccess::ReadWrite;
    add(
        "donate with data access",
        Donate,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Lend);
    d.receivers[0].perm.instruction_access = InstructionAccess::Executable;
    add(
        "sender sets instruction access",
        Lend,
        d,
        FfaError::InvalidParameters,
    );
    let mut d = base(Share);
    d.emad_size = EmadSize::V1_1;
    add(
        "v1.1 EMADs from a v1.2 caller",
        Share,
        d,
        FfaError::InvalidParameters,
    );

    let mut t = T::new();
    for (name, k, b, e) in &cases {
        assert_eq!(t.send_raw(*k, b), Err(*e), "{name}");
        assert_eq!(t.m.live(), 0, "{name}");
        assert!(t.hw.nw_revoked.is_empty(), "{name}");
    }
    // Raw-byte defects.
    let good = bytes(Share, &base(Share));
    let mut mbz = good.clone();
    mbz[40] = 1;
    assert_eq!(
        t.send_raw(Share, &mbz),
        Err(FfaError::InvalidParameters),
        "MBZ"
    );
    let mut off = good.clone();
    off[52] = 0xff; // composite offset past the end
    assert_eq!(t.send_raw(Share, &off), Err(FfaError::InvalidParameters));
    let mut count = good.clone();
    count[28] = 200; // EMAD count past the buffer
    assert_eq!(t.send_raw(Share, &count), Err(FfaError::InvalidParameters));
    assert_eq!(
        t.send_raw(Share, &good[..40]),
        Err(FfaError::InvalidParameters)
    );
    assert_eq!(
        t.m.send(
            NW,
            Share,
            (MAX_DESC_LEN + 16) as u32,
            &good,
            None,
            &mut t.hw,
            &mut t.rng
        ),
        Err(FfaError::NoMemory),
        "oversize total"
    );
    assert_eq!(
        t.m.send(NW, Share, 16, &good, None, &mut t.hw, &mut t.rng),
        Err(FfaError::InvalidParameters),
        "fragment longer than the total"
    );
    assert_eq!(t.m.live(), 0);
    // Pages already in a transaction: DENIED, whatever the kind.
    let h = t.send(Lend, &base(Lend)).unwrap();
    for k in [Share, Lend, Donate] {
        assert_eq!(
            t.send(k, &desc(k, &[(BUF - 0x1000, 2)])),
            Err(FfaError::Denied)
        );
    }
    assert_eq!(t.m.live(), 1);
    assert_eq!(t.reclaim(h, false), Ok(Reply::Ok));
}

#[test]
fn retrieve_rejections() {
    let mut t = T::new();
    let h = t
        .send(SendKind::Lend, &desc(SendKind::Lend, &[(BUF, 1)]))
        .unwrap();
    let tt = TransactionType::Lend;
    let bad = |t: &mut T, r: MemTransaction| t.retrieve_req(&r).err();
    assert_eq!(
        bad(&mut t, req(Handle(1 << 63 | 5), tt)),
        Some(FfaError::InvalidParameters),
        "unknown handle"
    );
    let mut r = req(h, tt);
    r.sender_id = 3;
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::InvalidParameters),
        "wrong sender"
    );
    let mut r = req(h, tt);
    r.tag = 8;
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::InvalidParameters),
        "wrong tag"
    );
    assert_eq!(
        bad(&mut t, req(h, TransactionType::Share)),
        Some(FfaError::InvalidParameters),
        "type mismatch"
    );
    let mut r = req(h, tt);
    r.receivers[0].perm.endpoint_id = 0x8002;
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::InvalidParameters),
        "not the caller"
    );
    let mut r = req(h, tt);
    r.emad_size = EmadSize::V1_1;
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::InvalidParameters),
        "16-byte EMAD from v1.2"
    );
    let mut r = req(h, tt);
    r.attributes.ns = true;
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::InvalidParameters),
        "NS bit in a request"
    );
    let mut r = req(h, tt);
    r.attributes.mem_type = MemType::Device(ffa::memory::DeviceType::GRE);
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::Denied),
        "other attributes (Hafnium: ffa_memory_attributes_validate)"
    );
    // Composite offset must be 0 (Hafnium): patch the encoded request.
    let mut b = req(h, tt).to_vec(DescKind::RetrieveReq).unwrap();
    b[52] = 0x50;
    assert_eq!(
        t.m.retrieve(SP, b.len() as u32, &b, &mut t.hw).err(),
        Some(FfaError::InvalidParameters)
    );
    let b = req(h, tt).to_vec(DescKind::RetrieveReq).unwrap();
    assert_eq!(
        t.m.retrieve(NW, b.len() as u32, &b, &mut t.hw).err(),
        Some(FfaError::NotSupported),
        "the NW does not retrieve"
    );
    assert_eq!(
        t.m.retrieve(SP, b.len() as u32 + 16, &b, &mut t.hw).err(),
        Some(FfaError::InvalidParameters),
        "fragmented request"
    );
    assert!(t.hw.sp.is_empty());
    // Zero flags: not on a share; clear-after-relinquish not on a donate.
    let hs = t
        .send(
            SendKind::Share,
            &desc(SendKind::Share, &[(BUF + 0x1000, 1)]),
        )
        .unwrap();
    let mut r = req(hs, TransactionType::Share);
    r.flags = MemFlags(MemFlags::ZERO_MEMORY);
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::InvalidParameters),
        "zero a share"
    );
    // RW asked of a read-only lend: DENIED.
    let mut ro = desc(SendKind::Lend, &[(BUF + 0x2000, 1)]);
    ro.receivers[0].perm.data_access = DataAccess::ReadOnly;
    let hro = t.send(SendKind::Lend, &ro).unwrap();
    let mut r = req(hro, tt);
    r.receivers[0].perm.data_access = DataAccess::ReadWrite;
    assert_eq!(bad(&mut t, r), Some(FfaError::Denied), "more than granted");
    let resp = t.retrieve(hro, tt).unwrap();
    assert_eq!(resp.receivers[0].perm.data_access, DataAccess::ReadOnly);
    assert_eq!(
        t.hw.sp.get(&(BUF + 0x2000)),
        Some(&false),
        "mapped read-only"
    );
    assert_eq!(
        t.retrieve(hro, tt).err(),
        Some(FfaError::Denied),
        "retrieved twice"
    );
    // Zero on retrieve when the lender did not ask: allowed for a lend, and done.
    let mut r = req(h, tt);
    r.flags = MemFlags(MemFlags::ZERO_MEMORY | MemFlags::ZERO_AFTER_RELINQUISH);
    t.retrieve_req(&r).unwrap();
    assert_eq!(t.hw.zeroed, vec![BUF]);
    assert_eq!(t.relinquish(h, 0), Ok(Reply::Ok));
    assert_eq!(
        t.hw.zeroed,
        vec![BUF, BUF],
        "clear after relinquish as requested"
    );
    let hd = t
        .send(
            SendKind::Donate,
            &desc(SendKind::Donate, &[(BUF + 0x5000, 1)]),
        )
        .unwrap();
    let mut r = req(hd, TransactionType::Donate);
    r.flags = MemFlags(MemFlags::ZERO_AFTER_RELINQUISH);
    assert_eq!(
        bad(&mut t, r),
        Some(FfaError::InvalidParameters),
        "donate is never relinquished"
    );
}

#[test]
fn relinquish_and_reclaim_rejections() {
    let mut t = T::new();
    let h = t
        .send(SendKind::Share, &desc(SendKind::Share, &[(BUF, 1)]))
        .unwrap();
    assert_eq!(
        t.relinquish(h, 0),
        Err(FfaError::InvalidParameters),
        "not retrieved"
    );
    t.retrieve(h, TransactionType::Share).unwrap();
    let enc = |d: MemRelinquishDesc| {
        let mut b = vec![0u8; 64];
        d.encode(&mut b).unwrap();
        b
    };
    let other = enc(MemRelinquishDesc {
        handle: h,
        flags: 0,
        endpoints: vec![0x8002],
    });
    assert_eq!(
        t.m.relinquish(SP, &other, &mut t.hw),
        Err(FfaError::InvalidParameters)
    );
    let flags = enc(MemRelinquishDesc {
        handle: h,
        flags: 4,
        endpoints: vec![0x8001],
    });
    assert_eq!(
        t.m.relinquish(SP, &flags, &mut t.hw),
        Err(FfaError::InvalidParameters),
        "MBZ flags"
    );
    assert_eq!(
        t.relinquish(h, MemRelinquishDesc::FLAG_ZERO),
        Err(FfaError::InvalidParameters),
        "clear a share"
    );
    assert_eq!(t.hw.sp.len(), 1, "still mapped");
    assert_eq!(
        t.m.reclaim(SP, h, false, &mut t.hw),
        Err(FfaError::Denied),
        "not the owner"
    );
    assert_eq!(t.relinquish(h, 0), Ok(Reply::Ok));
    assert_eq!(
        t.reclaim(h, true),
        Err(FfaError::InvalidParameters),
        "zero a share"
    );
    assert_eq!(t.reclaim(h, false), Ok(Reply::Ok));
}

#[test]
fn v1_1_sp_gets_16_byte_emads_and_v1_0_no_ns_bit() {
    let mut t = T::new();
    let h = t
        .send(SendKind::Share, &desc(SendKind::Share, &[(BUF, 1)]))
        .unwrap();
    let sp11 = CallerInfo {
        id: 0x8001,
        version: Version::V1_1,
    };
    let mut r = req(h, TransactionType::Share);
    r.emad_size = EmadSize::V1_1;
    let b = r.to_vec(DescKind::RetrieveReq).unwrap();
    let (_, head) = t.m.retrieve(sp11, b.len() as u32, &b, &mut t.hw).unwrap();
    let resp =
        MemTransaction::parse(&head, DescKind::RetrieveResp, ParseOptions::default()).unwrap();
    assert_eq!(resp.emad_size, EmadSize::V1_1);
    assert!(resp.attributes.ns);
}

#[test]
fn two_hundred_cycles_leave_nothing_behind() {
    let mut t = T::new();
    t.hw.tables = Some(64);
    let mut seen = BTreeSet::new();
    for i in 0..200u64 {
        let kind = [SendKind::Share, SendKind::Lend][i as usize % 2];
        let h = t
            .send(kind, &desc(kind, &[(BUF + (i % 7) * 0x1000, 3)]))
            .unwrap();
        // Hafnium reuses the freed slot's index.
        assert_eq!(h, Handle(FIRST_HANDLE));
        seen.insert(h);
        t.retrieve(h, tx_type(kind)).unwrap();
        t.relinquish(h, 0).unwrap();
        t.reclaim(h, false).unwrap();
    }
    assert_eq!(t.m.live(), 0);
    assert!(t.hw.sp.is_empty() && t.hw.nw_revoked.is_empty());
    assert_eq!(t.hw.tables, Some(64), "every table back");
    assert_eq!(t.hw.unmaps, 200);
}

#[test]
fn revoked_tag_round_trip() {
    for r in [
        Revoked {
            donated: false,
            to: 0x8001,
        },
        Revoked {
            donated: true,
            to: 0x8001,
        },
    ] {
        assert_eq!(Revoked::from_tag(r.tag()), Some(r));
        assert_ne!(r.tag(), 0);
    }
    assert_eq!(Revoked::from_tag(0x8001), None);
}

#[test]
fn nw_ownership_bounds() {
    let r = |a, n| MemRange {
        address: a,
        page_count: n,
    };
    assert!(nw_owns(&r(0x4000_0000, 1)));
    assert!(nw_owns(&r(ns_ram::TESTBED_NS_BASE - 0x1000, 1)));
    assert!(!nw_owns(&r(ns_ram::TESTBED_NS_BASE - 0x1000, 2)));
    assert!(!nw_owns(&r(0x3fff_f000, 1)));
    assert!(
        nw_owns(&r(ns_ram::BOOT_CONFIG, 1)),
        "above the reserved region"
    );
    assert!(!nw_owns(&r(0x7fff_f000, 2)));
    assert!(!nw_owns(&r(!0xfff, 2)));
    // The carve-out is secure memory only (Hafnium: not in `ns-memory`); the window is NS.
    assert!(!nw_owns(&r(ns_ram::CARVEOUT_BASE, 1)));
    assert!(!nw_owns(&r(ns_ram::CARVEOUT_BASE - 0x1000, 2)));
    assert!(nw_owns(&r(
        ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE,
        1
    )));
    assert!(nw_owns(&r(ns_ram::FLEXMEM_WINDOW_BASE, 16384)));
}

/// The hardware state matches the table: revoked NW pages = pages of live LEND/DONATE
/// transactions and donated ranges; SP mappings = retrieved transactions and donated ranges.
fn check_invariants(t: &T) {
    let mut revoked = BTreeMap::new();
    let mut mapped = BTreeSet::new();
    for tx in &t.m.txs {
        let Some(d) = tx.desc.as_ref() else { continue };
        for r in &d.ranges {
            for p in pages(r) {
                if tx.kind != SendKind::Share {
                    revoked.insert(
                        p,
                        Revoked {
                            donated: tx.kind == SendKind::Donate,
                            to: 0x8001,
                        },
                    );
                }
                if matches!(tx.state, State::Retrieved { .. }) {
                    mapped.insert(p);
                }
            }
        }
    }
    for r in &t.m.donated {
        for p in pages(r) {
            revoked.insert(
                p,
                Revoked {
                    donated: true,
                    to: 0x8001,
                },
            );
            mapped.insert(p);
        }
    }
    assert_eq!(t.hw.nw_revoked, revoked);
    assert_eq!(t.hw.sp.keys().copied().collect::<BTreeSet<_>>(), mapped);
    assert!(t.m.held() <= MAX_HELD_BYTES);
}

/// Random call sequences with valid and corrupted descriptors from both sides: nothing panics
/// and the stage-2 state always matches the table.
#[test]
fn random_sequences_keep_the_invariants() {
    let mut rng = SplitMix(0xfeed);
    let mut t = T::new();
    t.hw.tables = Some(4096);
    let mut handles: Vec<Handle> = vec![];
    let kinds = [SendKind::Share, SendKind::Lend, SendKind::Donate];
    // Successful sends, retrieves, relinquishes, reclaims: the walk must reach every state.
    let mut ok = [0u32; 4];
    for step in 0..20_000 {
        let r = rng.next_u64();
        let pick = |n: u64| (r >> 8) % n;
        let h = if handles.is_empty() || r & 0xc0 == 0 {
            Handle(1 << 63 | rng.next_u64() >> 1)
        } else {
            handles[pick(handles.len() as u64) as usize]
        };
        match r % 8 {
            0..=2 => {
                // Donations are forever: rarer, and each epoch uses fresh pages.
                let k = kinds[[0, 0, 1, 1, 1, 2][pick(6) as usize]];
                let window = BUF + (step / 1000) * 0x10_0000;
                let n = 1 + (rng.next_u64() % 3) as usize;
                let ranges: Vec<(u64, u32)> = (0..n)
                    .map(|_| {
                        (
                            window + (rng.next_u64() % 64) * 0x1000,
                            1 + (rng.next_u64() % 3) as u32,
                        )
                    })
                    .collect();
                let mut b = bytes(k, &desc(k, &ranges));
                if rng.next_u64().is_multiple_of(4) {
                    let i = (rng.next_u64() as usize) % b.len();
                    b[i] ^= 1 << (rng.next_u64() % 8);
                }
                let cut = if rng.next_u64().is_multiple_of(8) {
                    (rng.next_u64() as usize) % b.len() + 1
                } else {
                    b.len()
                };
                if let Ok(Reply::Handle(h) | Reply::FragRx { handle: h, .. }) = t.m.send(
                    NW,
                    k,
                    b.len() as u32,
                    &b[..cut],
                    None,
                    &mut t.hw,
                    &mut t.rng,
                ) {
                    handles.push(h);
                    ok[0] += 1;
                }
            }
            3 => {
                let tt = [
                    TransactionType::Unspecified,
                    TransactionType::Share,
                    TransactionType::Lend,
                    TransactionType::Donate,
                ][pick(4) as usize];
                let mut q = req(h, tt);
                if rng.next_u64().is_multiple_of(4) {
                    q.flags = MemFlags((rng.next_u64() & 0x7ff) as u32);
                }
                ok[1] += u32::from(t.retrieve_req(&q).is_ok());
                // Read any fragmented rest, sometimes.
                if rng.next_u64().is_multiple_of(2) {
                    let mut off = BUF_SIZE as u32;
                    while let Ok((_, c)) = t.m.frag_rx(SP, h, off) {
                        off += c.len() as u32;
                    }
                }
            }
            4 => ok[2] += u32::from(t.relinquish(h, (rng.next_u64() % 2) as u32).is_ok()),
            5 => ok[3] += u32::from(t.reclaim(h, rng.next_u64().is_multiple_of(2)).is_ok()),
            6 => {
                let len = 16 * (rng.next_u64() % 300) as usize;
                let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let _ = t.m.frag_tx(NW, h, &junk, None, &mut t.hw);
            }
            _ => {
                let junk: Vec<u8> = (0..(rng.next_u64() % 200))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                let _ = t.m.relinquish(SP, &junk, &mut t.hw);
                let _ = t.m.retrieve(SP, junk.len() as u32, &junk, &mut t.hw);
            }
        }
        check_invariants(&t);
        if step % 1000 == 999 {
            // Drain: relinquish and reclaim what can be, as the client's cleanup would.
            for &h in &handles {
                let _ = t.relinquish(h, 0);
                let _ = t.reclaim(h, false);
            }
            handles.clear();
            check_invariants(&t);
        }
    }
    assert!(ok.iter().all(|&n| n > 50), "{ok:?}");
    // Everything but donations comes back.
    for tx in t.m.txs.clone() {
        let _ = t.relinquish(tx.handle, 0);
        let _ = t.reclaim(tx.handle, false);
    }
    check_invariants(&t);
    assert!(
        t.m.txs
            .iter()
            .all(|x| matches!(x.state, State::Sending(..))),
        "only unfinished sends remain"
    );
}

/// Hafnium `ffa_memory_retrieve_is_memory_access_valid`: instruction access by transaction
/// type, and the response attributes `ffa_partition_retrieve_request` builds.
#[test]
fn hafnium_instruction_access_and_response_attributes() {
    let mut t = T::new();
    let hs = t
        .send(SendKind::Share, &desc(SendKind::Share, &[(BUF, 1)]))
        .unwrap();
    for x in [
        InstructionAccess::NotExecutable,
        InstructionAccess::Executable,
    ] {
        let mut r = req(hs, TransactionType::Share);
        r.receivers[0].perm.instruction_access = x;
        assert_eq!(
            t.retrieve_req(&r).map(|_| ()),
            Err(FfaError::InvalidParameters),
            "share retrieve naming {x:?}"
        );
    }
    let (_, head) = t.retrieve_req(&req(hs, TransactionType::Share)).unwrap();
    assert_eq!(
        raw_attrs(&head),
        0x6f,
        "share: sender's normal WB inner + NS"
    );
    let resp = parse_resp(&head);
    assert_eq!(
        resp.receivers[0].perm.instruction_access,
        InstructionAccess::NotExecutable
    );
    for kind in [SendKind::Lend, SendKind::Donate] {
        let h = t.send(kind, &desc(kind, &[(BUF + 0x1000, 1)])).unwrap();
        for x in [
            InstructionAccess::NotSpecified,
            InstructionAccess::Executable,
        ] {
            let mut r = req(h, tx_type(kind));
            r.receivers[0].perm.instruction_access = x;
            assert_eq!(
                t.retrieve_req(&r).map(|_| ()),
                Err(FfaError::InvalidParameters),
                "{kind:?} retrieve naming {x:?}"
            );
        }
        let (_, head) = t.retrieve_req(&req(h, tx_type(kind))).unwrap();
        assert_eq!(raw_attrs(&head), 0x40, "{kind:?}: unspecified + NS");
        if kind == SendKind::Lend {
            t.relinquish(h, 0).unwrap();
            t.reclaim(h, false).unwrap();
        }
    }
}
