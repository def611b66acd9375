use super::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

const NWD: PartitionId = 0;
const SP: PartitionId = 0x8001;

fn rw(id: PartitionId) -> Emad {
    Emad::new(MemAccessPerm {
        endpoint_id: id,
        data_access: DataAccess::ReadWrite,
        instruction_access: InstructionAccess::NotSpecified,
        non_retrieval_borrower: false,
    })
}

fn lend(emad_size: EmadSize) -> MemTransaction {
    MemTransaction {
        sender_id: NWD,
        attributes: MemRegionAttributes::NORMAL_WB_INNER,
        flags: MemFlags(MemFlags::ZERO_MEMORY),
        handle: Handle(0),
        tag: 0,
        emad_size,
        receivers: vec![rw(SP)],
        ranges: vec![
            MemRange {
                address: 0x4000_0000,
                page_count: 4,
            },
            MemRange {
                address: 0x4001_0000,
                page_count: 1,
            },
        ],
    }
}

const LEND: DescKind = DescKind::Send(SendKind::Lend);

fn parse(buf: &[u8], kind: DescKind) -> Result<MemTransaction, MemError> {
    MemTransaction::parse(buf, kind, ParseOptions::default())
}

/// SP's retrieve request for a lent handle, as Hafnium expects it.
fn retrieve_req(emad_size: EmadSize) -> MemTransaction {
    let mut e = rw(SP);
    e.perm.instruction_access = InstructionAccess::NotExecutable;
    MemTransaction {
        sender_id: NWD,
        attributes: MemRegionAttributes::NORMAL_WB_INNER,
        flags: MemFlags(0).with_type(TransactionType::Lend),
        handle: Handle(0x8000_0000_0000_0001),
        tag: 0,
        emad_size,
        receivers: vec![e],
        ranges: vec![],
    }
}

#[test]
fn spmc_flow_send_retrieve_response() {
    // NWd lends; the SPMC parses it (sender must be the caller), the SP builds a retrieve
    // request, the SPMC parses that and answers; the SP parses the answer.
    let sent = lend(EmadSize::V1_1).to_vec(LEND).unwrap();
    let opts = ParseOptions {
        expected_sender: Some(NWD),
        emad_size: None,
    };
    let stored = MemTransaction::parse(&sent, LEND, opts).unwrap();
    let handle = Handle(0x8000_0000_0000_0007);
    let granted = MemAccessPerm {
        endpoint_id: SP,
        data_access: DataAccess::ReadWrite,
        instruction_access: InstructionAccess::NotExecutable,
        non_retrieval_borrower: false,
    };
    let req = MemTransaction::retrieve_request(
        handle,
        NWD,
        granted,
        TransactionType::Lend,
        0,
        EmadSize::for_version(crate::Version::V1_2),
    );
    let req_bytes = req.to_vec(DescKind::RetrieveReq).unwrap();
    assert_eq!(req_bytes.len(), 80);
    let got_req = parse(&req_bytes, DescKind::RetrieveReq).unwrap();
    assert_eq!(got_req.flags.transaction_type(), TransactionType::Lend);
    let resp = MemTransaction::retrieve_response(
        &stored,
        got_req.handle,
        TransactionType::Lend,
        granted,
        true,
        got_req.emad_size,
    );
    let resp_bytes = resp.to_vec(DescKind::RetrieveResp).unwrap();
    let got = parse(&resp_bytes, DescKind::RetrieveResp).unwrap();
    assert_eq!(got.ranges, stored.ranges);
    assert_eq!(got.emad_size, EmadSize::V1_2);
    assert!(got.attributes.ns);
    assert_eq!(got.flags.transaction_type(), TransactionType::Lend);
    assert!(got.flags.contains(MemFlags::ZERO_MEMORY));
    assert_eq!(got.receivers, vec![Emad::new(granted)]);
}

#[test]
fn attributes_encoding() {
    assert_eq!(MemRegionAttributes::NORMAL_WB_INNER.to_u16(), 0x2F);
    let ns = MemRegionAttributes {
        ns: true,
        ..MemRegionAttributes::NORMAL_WB_INNER
    };
    assert_eq!(ns.to_u16(), 0x6F);
    for v in 0..=u16::MAX {
        if let Ok(a) = MemRegionAttributes::from_u16(v) {
            assert_eq!(a.to_u16(), v);
        }
    }
    // Reserved: type 0b11, normal cacheability 0b00/0b10, shareability 0b01, bits [15:7],
    // unspecified with low bits, device with shareability.
    for v in [0x30u16, 0x23, 0x2B, 0x2D, 0x80, 0x01, 0x12] {
        assert_eq!(
            MemRegionAttributes::from_u16(v),
            Err(MemError::BadAttributes(v)),
            "{v:#x}"
        );
    }
    assert_eq!(
        MemRegionAttributes::from_u16(0x1C),
        Ok(MemRegionAttributes {
            mem_type: MemType::Device(DeviceType::GRE),
            ns: false
        })
    );
}

#[test]
fn lend_layout_and_round_trip() {
    for size in [EmadSize::V1_1, EmadSize::V1_2] {
        let t = lend(size);
        let b = t.to_vec(LEND).unwrap();
        let e = size.bytes();
        assert_eq!(b.len(), 48 + e + 16 + 2 * 16);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), e as u32);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 48);
        // EMAD composite offset points right after the EMAD array.
        let comp = u32::from_le_bytes(b[52..56].try_into().unwrap()) as usize;
        assert_eq!(comp, 48 + e);
        assert_eq!(u32::from_le_bytes(b[comp..comp + 4].try_into().unwrap()), 5);
        assert_eq!(parse(&b, LEND), Ok(t));
    }
}

#[test]
fn retrieve_request_as_hafnium_expects() {
    let t = retrieve_req(EmadSize::V1_2);
    let b = t.to_vec(DescKind::RetrieveReq).unwrap();
    assert_eq!(b.len(), 48 + 32);
    assert_eq!(&b[52..56], &[0, 0, 0, 0], "composite offset must be 0");
    assert_eq!(b[50], 0b0110, "RW, NX");
    assert_eq!(parse(&b, DescKind::RetrieveReq), Ok(t));
}

#[test]
fn retrieve_response_accepts_both_emad_sizes() {
    for size in [EmadSize::V1_1, EmadSize::V1_2] {
        let mut t = lend(size);
        t.handle = Handle(0x8000_0000_0000_0001);
        t.flags = MemFlags(0).with_type(TransactionType::Lend);
        t.attributes.ns = true;
        t.receivers[0].perm.instruction_access = InstructionAccess::NotExecutable;
        let b = t.to_vec(DescKind::RetrieveResp).unwrap();
        let got = parse(&b, DescKind::RetrieveResp).unwrap();
        assert_eq!(got, t);
        assert!(got.attributes.ns);
        assert_eq!(got.total_pages(), 5);
        // Restricting the size rejects the other one.
        let other = if size == EmadSize::V1_1 {
            EmadSize::V1_2
        } else {
            EmadSize::V1_1
        };
        let opts = ParseOptions {
            emad_size: Some(other),
            ..Default::default()
        };
        assert_eq!(
            MemTransaction::parse(&b, DescKind::RetrieveResp, opts),
            Err(MemError::BadEmadSize(size.bytes() as u32))
        );
    }
}

#[test]
fn v12_impdef_round_trips_and_v11_refuses_it() {
    let mut t = lend(EmadSize::V1_2);
    t.receivers[0].impdef = [1, 2];
    let b = t.to_vec(LEND).unwrap();
    assert_eq!(parse(&b, LEND), Ok(t.clone()));
    t.emad_size = EmadSize::V1_1;
    assert_eq!(t.to_vec(LEND), Err(MemError::ImpdefInV11Emad { index: 0 }));
}

fn set32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn set64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn rejects_malformed_send_descriptors() {
    let good = lend(EmadSize::V1_2).to_vec(LEND).unwrap();
    // EMAD at 48 (32 bytes), composite at 80, ranges at 96 and 112; total 128.
    type Case = (&'static str, fn(&mut Vec<u8>), MemError);
    let cases: &[Case] = &[
        (
            "reserved header",
            |b| b[40] = 1,
            MemError::ReservedNotZero { offset: 40 },
        ),
        (
            "emad size 24",
            |b| set32(b, 24, 24),
            MemError::BadEmadSize(24),
        ),
        ("no receivers", |b| set32(b, 28, 0), MemError::NoReceivers),
        (
            "emad offset 40",
            |b| set32(b, 32, 40),
            MemError::BadEmadOffset(40),
        ),
        (
            "emad offset unaligned",
            |b| set32(b, 32, 56),
            MemError::BadEmadOffset(56),
        ),
        (
            "emad count past buffer",
            |b| set32(b, 28, u32::MAX),
            MemError::Truncated {
                needed: 48 + u32::MAX as u64 * 32,
                available: 128,
            },
        ),
        (
            "emad offset past buffer",
            |b| set32(b, 32, 0xFFFF_FFF0),
            MemError::Truncated {
                needed: 0xFFFF_FFF0 + 32,
                available: 128,
            },
        ),
        (
            "attributes reserved",
            |b| b[2] = 0x30,
            MemError::BadAttributes(0x30),
        ),
        (
            "NS set by sender",
            |b| b[2] = 0x6F,
            MemError::AttributesNotAllowed(0x6F),
        ),
        (
            "flags reserved",
            |b| set32(b, 4, 1 << 5),
            MemError::BadFlags(1 << 5),
        ),
        ("handle in send", |b| set64(b, 8, 7), MemError::BadHandle(7)),
        (
            "perm reserved",
            |b| b[50] = 0x13,
            MemError::BadPermissions {
                index: 0,
                perms: 0x13,
            },
        ),
        (
            "data access 0b11",
            |b| b[50] = 0x03,
            MemError::BadPermissions {
                index: 0,
                perms: 0x03,
            },
        ),
        (
            "exec in lend",
            |b| b[50] = 0x0A,
            MemError::PermissionsNotAllowed {
                index: 0,
                perms: 0x0A,
            },
        ),
        (
            "no data access in lend",
            |b| b[50] = 0,
            MemError::PermissionsNotAllowed { index: 0, perms: 0 },
        ),
        (
            "emad flags reserved",
            |b| b[51] = 2,
            MemError::BadEmadFlags { index: 0, flags: 2 },
        ),
        (
            "emad reserved",
            |b| b[72] = 1,
            MemError::ReservedNotZero { offset: 72 },
        ),
        (
            "composite in emads",
            |b| set32(b, 52, 64),
            MemError::BadCompositeOffset(64),
        ),
        (
            "composite unaligned",
            |b| set32(b, 52, 84),
            MemError::BadCompositeOffset(84),
        ),
        (
            "composite past end",
            |b| set32(b, 52, 0xFFFF_FFF8),
            MemError::Truncated {
                needed: 0xFFFF_FFF8 + 16,
                available: 128,
            },
        ),
        (
            "composite reserved",
            |b| b[90] = 1,
            MemError::ReservedNotZero { offset: 90 },
        ),
        ("no ranges", |b| set32(b, 84, 0), MemError::NoRanges),
        (
            "range count past end",
            |b| set32(b, 84, 3),
            MemError::Truncated {
                needed: 96 + 48,
                available: 128,
            },
        ),
        (
            "zero pages",
            |b| set32(b, 104, 0),
            MemError::ZeroLengthRange { index: 0 },
        ),
        (
            "misaligned",
            |b| set64(b, 112, 0x4001_0800),
            MemError::MisalignedRange {
                index: 1,
                address: 0x4001_0800,
            },
        ),
        (
            "wraps",
            |b| set64(b, 112, 0xFFFF_FFFF_FFFF_F000),
            MemError::RangeWraps { index: 1 },
        ),
        (
            "overlap",
            |b| set64(b, 112, 0x4000_3000),
            MemError::OverlappingRanges {
                first: 0,
                second: 1,
            },
        ),
        (
            "duplicate range",
            |b| set64(b, 112, 0x4000_0000),
            MemError::OverlappingRanges {
                first: 0,
                second: 1,
            },
        ),
        (
            "range reserved",
            |b| b[124] = 1,
            MemError::ReservedNotZero { offset: 124 },
        ),
        (
            "page count mismatch",
            |b| set32(b, 80, 6),
            MemError::PageCountMismatch {
                declared: 6,
                actual: 5,
            },
        ),
    ];
    assert_eq!(good.len(), 128);
    for (name, mutate, want) in cases {
        let mut b = good.clone();
        mutate(&mut b);
        assert_eq!(parse(&b, LEND), Err(*want), "{name}");
    }
    for n in 0..good.len() {
        assert!(parse(&good[..n], LEND).is_err(), "truncated to {n}");
    }
}

#[test]
fn rejects_wrong_sender_and_duplicate_receivers() {
    let b = lend(EmadSize::V1_1).to_vec(LEND).unwrap();
    let opts = ParseOptions {
        expected_sender: Some(5),
        emad_size: None,
    };
    let e = MemTransaction::parse(&b, LEND, opts).unwrap_err();
    assert_eq!(
        e,
        MemError::WrongSender {
            expected: 5,
            found: 0
        }
    );
    assert_eq!(e.to_ffa_error(), FfaError::Denied);

    let mut t = lend(EmadSize::V1_1);
    t.receivers = vec![rw(SP), rw(0x8002), rw(SP)];
    let b = t.to_vec(LEND).unwrap();
    let e = parse(&b, LEND).unwrap_err();
    assert_eq!(e, MemError::DuplicateReceiver(SP));
    assert_eq!(e.to_ffa_error(), FfaError::InvalidParameters);

    // Different composite offsets between receivers.
    let mut t = lend(EmadSize::V1_1);
    t.receivers = vec![rw(SP), rw(0x8002)];
    let mut b = t.to_vec(LEND).unwrap();
    set32(&mut b, 48 + 16 + 4, 96);
    assert_eq!(
        parse(&b, LEND),
        Err(MemError::CompositeOffsetMismatch {
            index: 1,
            offset: 96,
            first: 80
        })
    );
}

#[test]
fn per_kind_rules() {
    // Share: no zero flag, type must be specified.
    let share = DescKind::Send(SendKind::Share);
    let mut t = lend(EmadSize::V1_2);
    let b = t.to_vec(share).unwrap();
    assert_eq!(parse(&b, share), Err(MemError::BadFlags(1)));
    t.flags = MemFlags(0);
    t.attributes.mem_type = MemType::Unspecified;
    let b = t.to_vec(share).unwrap();
    assert_eq!(parse(&b, share), Err(MemError::AttributesNotAllowed(0)));
    assert!(parse(&b, LEND).is_ok());
    // Donate: no access stated by the donor.
    let donate = DescKind::Send(SendKind::Donate);
    assert_eq!(
        parse(&b, donate),
        Err(MemError::PermissionsNotAllowed {
            index: 0,
            perms: 0b10
        })
    );
    t.receivers[0].perm.data_access = DataAccess::NotSpecified;
    assert!(parse(&t.to_vec(donate).unwrap(), donate).is_ok());

    // Retrieve request: composite offset must be 0, handle non-zero, no NS, no
    // non-retrieval-borrower flag.
    let r = retrieve_req(EmadSize::V1_2);
    let good = r.to_vec(DescKind::RetrieveReq).unwrap();
    let mut b = good.clone();
    set32(&mut b, 52, 80);
    assert_eq!(
        parse(&b, DescKind::RetrieveReq),
        Err(MemError::BadCompositeOffset(80))
    );
    // Hafnium's first handle is 0x0 (allocator bit 63 clear = SPMC); only all-ones is invalid.
    let mut b = good.clone();
    set64(&mut b, 8, 0);
    assert_eq!(
        parse(&b, DescKind::RetrieveReq).map(|t| t.handle),
        Ok(Handle(0))
    );
    let mut b = good.clone();
    set64(&mut b, 8, u64::MAX);
    assert_eq!(
        parse(&b, DescKind::RetrieveReq),
        Err(MemError::BadHandle(u64::MAX))
    );
    let mut b = good.clone();
    b[2] |= 0x40;
    assert_eq!(
        parse(&b, DescKind::RetrieveReq),
        Err(MemError::AttributesNotAllowed(0x6F))
    );
    let mut b = good.clone();
    b[51] = 1;
    assert_eq!(
        parse(&b, DescKind::RetrieveReq),
        Err(MemError::BadEmadFlags { index: 0, flags: 1 })
    );
}

/// Retrieve responses as Hafnium v2.15 and TF-A's EL3 SPMC build them for a single-borrower
/// lend whose sender left the memory type unspecified (as Linux's FF-A driver always does):
/// attributes 0x40 (type unspecified + NS) from Hafnium, 0x00 or 0x40 from the EL3 SPMC. A
/// share's response always names a type.
#[test]
fn retrieve_response_attributes_of_both_spmcs() {
    let mut t = lend(EmadSize::V1_2);
    t.handle = Handle(0);
    t.receivers[0].perm.instruction_access = InstructionAccess::NotExecutable;
    for (tx, raw, ok) in [
        (TransactionType::Lend, 0x40, true),
        (TransactionType::Lend, 0x00, true),
        (TransactionType::Donate, 0x40, true),
        (TransactionType::Share, 0x40, false),
        (TransactionType::Share, 0x00, false),
        (TransactionType::Share, 0x6F, true),
        (TransactionType::Unspecified, 0x40, true),
    ] {
        t.flags = MemFlags(0).with_type(tx);
        let mut b = t.to_vec(DescKind::RetrieveResp).unwrap();
        b[2..4].copy_from_slice(&u16::to_le_bytes(raw));
        let got = parse(&b, DescKind::RetrieveResp);
        if ok {
            let a = got.unwrap().attributes;
            assert_eq!(a.to_u16(), raw, "{tx:?} {raw:#x}");
        } else {
            assert_eq!(got, Err(MemError::AttributesNotAllowed(raw)), "{tx:?}");
        }
    }
}

#[test]
fn retrieve_instruction_access_follows_the_transaction_type() {
    use InstructionAccess::*;
    assert_eq!(
        InstructionAccess::for_retrieve(TransactionType::Share),
        &[NotSpecified]
    );
    assert_eq!(
        InstructionAccess::for_retrieve(TransactionType::Lend),
        &[NotExecutable]
    );
    assert_eq!(
        InstructionAccess::for_retrieve(TransactionType::Donate),
        &[NotExecutable]
    );
    assert_eq!(
        InstructionAccess::for_retrieve(TransactionType::Unspecified),
        &[NotSpecified, NotExecutable]
    );
}

#[test]
fn relinquish_round_trip_and_rejects() {
    let d = MemRelinquishDesc {
        handle: Handle(0x8000_0000_0000_0001),
        flags: MemRelinquishDesc::FLAG_ZERO,
        endpoints: vec![SP],
    };
    let mut b = [0u8; 64];
    let n = d.encode(&mut b).unwrap();
    assert_eq!(n, 18);
    assert_eq!(&b[12..18], &[1, 0, 0, 0, 0x01, 0x80]);
    assert_eq!(MemRelinquishDesc::parse(&b[..n]), Ok(d.clone()));
    let mut bad = b;
    bad[8] = 4;
    assert_eq!(
        MemRelinquishDesc::parse(&bad[..n]),
        Err(MemError::BadFlags(4))
    );
    let mut bad = b;
    bad[12] = 0;
    assert_eq!(
        MemRelinquishDesc::parse(&bad[..n]),
        Err(MemError::NoEndpoints)
    );
    let mut bad = b;
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        MemRelinquishDesc::parse(&bad[..n]),
        Err(MemError::Truncated { .. })
    ));
    let mut zero = b;
    zero[..8].fill(0);
    assert_eq!(
        MemRelinquishDesc::parse(&zero[..n]).map(|d| d.handle),
        Ok(Handle(0))
    );
    let mut bad = b;
    bad[..8].fill(0xff);
    assert_eq!(
        MemRelinquishDesc::parse(&bad[..n]),
        Err(MemError::BadHandle(u64::MAX))
    );
    let dup = MemRelinquishDesc {
        endpoints: vec![SP, SP],
        ..d
    };
    let n = dup.encode(&mut b).unwrap();
    assert_eq!(
        MemRelinquishDesc::parse(&b[..n]),
        Err(MemError::DuplicateReceiver(SP))
    );
    assert!(MemRelinquishDesc::parse(&b[..15]).is_err());
}

#[test]
fn fragments_plan_and_reassemble() {
    // 300 single-page ranges: 48 + 32 + 16 + 4800 = 4896 bytes > one 4 KiB buffer.
    let mut t = lend(EmadSize::V1_2);
    t.ranges = (0..300)
        .map(|i| MemRange {
            address: 0x4000_0000 + i * 0x2000,
            page_count: 1,
        })
        .collect();
    let b = t.to_vec(LEND).unwrap();
    assert_eq!(b.len(), 4896);
    let plan: Vec<_> = plan_fragments(b.len(), 96, 4096).unwrap().collect();
    assert_eq!(plan, vec![(0, 4096), (4096, 800)]);
    let mut asm = FragmentAssembler::new(b.len() as u32, &b[..4096], 1 << 20).unwrap();
    assert!(!asm.is_complete());
    assert_eq!(asm.received(), 4096);
    assert_eq!(asm.push(&b[4096..]), Ok(true));
    let whole = asm.finish().unwrap();
    assert_eq!(parse(&whole, LEND), Ok(t));

    // Small buffers: every fragment after the first is whole ranges.
    let plan: Vec<_> = plan_fragments(b.len(), 96, 1000).unwrap().collect();
    assert_eq!(plan[0], (0, 96 + 896));
    assert!(plan[1..].iter().all(|&(_, l)| l % 16 == 0 && l <= 1000));
    assert_eq!(plan.iter().map(|p| p.1).sum::<usize>(), b.len());
    let mut asm = FragmentAssembler::new(b.len() as u32, &b[..plan[0].1], 1 << 20).unwrap();
    for &(o, l) in &plan[1..] {
        asm.push(&b[o..o + l]).unwrap();
    }
    assert_eq!(asm.finish().unwrap(), b);

    // Hostile totals and fragments.
    assert_eq!(
        FragmentAssembler::new(u32::MAX, &b[..10], 1 << 20).err(),
        Some(MemError::TooLarge)
    );
    assert!(FragmentAssembler::new(5, &b[..10], 1 << 20).is_err());
    let mut asm = FragmentAssembler::new(b.len() as u32, &b[..4096], 1 << 20).unwrap();
    assert_eq!(
        asm.push(&b[4096..4100]),
        Err(MemError::BadFragment {
            len: 4,
            remaining: 800
        }),
        "not whole ranges"
    );
    assert!(asm.push(&b[..]).is_err(), "more than remains");
    assert!(asm.push(&[]).is_err());
    assert!(asm.finish().is_err(), "incomplete");
    // Head larger than a fragment.
    assert!(plan_fragments(b.len(), 96, 64).is_err());
}

// --- properties ------------------------------------------------------------------------

fn arb_perm(kind: DescKind) -> impl Strategy<Value = MemAccessPerm> {
    let data = match kind {
        DescKind::Send(SendKind::Donate) => Just(DataAccess::NotSpecified).boxed(),
        DescKind::Send(_) => {
            prop_oneof![Just(DataAccess::ReadOnly), Just(DataAccess::ReadWrite)].boxed()
        }
        _ => prop_oneof![
            Just(DataAccess::NotSpecified),
            Just(DataAccess::ReadOnly),
            Just(DataAccess::ReadWrite)
        ]
        .boxed(),
    };
    let instr = match kind {
        DescKind::Send(_) => Just(InstructionAccess::NotSpecified).boxed(),
        _ => prop_oneof![
            Just(InstructionAccess::NotSpecified),
            Just(InstructionAccess::NotExecutable),
            Just(InstructionAccess::Executable)
        ]
        .boxed(),
    };
    let nrb = if matches!(kind, DescKind::Send(_)) {
        any::<bool>().boxed()
    } else {
        Just(false).boxed()
    };
    (any::<u16>(), data, instr, nrb).prop_map(
        |(endpoint_id, data_access, instruction_access, nrb)| MemAccessPerm {
            endpoint_id,
            data_access,
            instruction_access,
            non_retrieval_borrower: nrb,
        },
    )
}

fn arb_kind() -> impl Strategy<Value = DescKind> {
    prop_oneof![
        Just(DescKind::Send(SendKind::Share)),
        Just(DescKind::Send(SendKind::Lend)),
        Just(DescKind::Send(SendKind::Donate)),
        Just(DescKind::RetrieveReq),
        Just(DescKind::RetrieveResp),
    ]
}

/// Non-overlapping, aligned, non-empty ranges in shuffled order.
fn arb_ranges() -> impl Strategy<Value = Vec<MemRange>> {
    proptest::collection::vec((1u64..64, 1u32..16), 1..20)
        .prop_map(|gaps| {
            let mut addr = 0x4000_0000u64;
            gaps.into_iter()
                .map(|(gap, pages)| {
                    addr += gap * 4096;
                    let r = MemRange {
                        address: addr,
                        page_count: pages,
                    };
                    addr += r.len();
                    r
                })
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn arb_transaction() -> impl Strategy<Value = (DescKind, MemTransaction)> {
    arb_kind().prop_flat_map(|kind| {
        let valid_attrs: Vec<MemRegionAttributes> = (0u16..0x80)
            .filter_map(|v| {
                let a = MemRegionAttributes::from_u16(v).ok()?;
                // Valid whatever the flags' transaction type says (a share is strictest).
                let share = MemFlags(0).with_type(TransactionType::Share);
                check_attributes(kind, a, v, share).ok().map(|_| a)
            })
            .collect();
        let attrs = prop::sample::select(valid_attrs);
        let mask = allowed_flags(kind);
        let flags = any::<u32>().prop_map(move |v| MemFlags(v & mask));
        let handle = match kind {
            DescKind::Send(_) => Just(0u64).boxed(),
            _ => (0u64..u64::MAX).boxed(),
        };
        let size = prop_oneof![Just(EmadSize::V1_1), Just(EmadSize::V1_2)];
        let receivers = proptest::collection::vec((arb_perm(kind), any::<[u64; 2]>()), 1..5);
        let ranges = if kind == DescKind::RetrieveReq {
            Just(Vec::new()).boxed()
        } else {
            arb_ranges().boxed()
        };
        (
            any::<u16>(),
            attrs,
            flags,
            handle,
            any::<u64>(),
            size,
            receivers,
            ranges,
        )
            .prop_map(
                move |(sender_id, attributes, flags, handle, tag, emad_size, recv, ranges)| {
                    let mut receivers: Vec<Emad> = Vec::new();
                    for (perm, impdef) in recv {
                        if receivers
                            .iter()
                            .all(|e| e.perm.endpoint_id != perm.endpoint_id)
                        {
                            let impdef = if emad_size == EmadSize::V1_2 {
                                impdef
                            } else {
                                [0; 2]
                            };
                            receivers.push(Emad { perm, impdef });
                        }
                    }
                    (
                        kind,
                        MemTransaction {
                            sender_id,
                            attributes,
                            flags,
                            handle: Handle(handle),
                            tag,
                            emad_size,
                            receivers,
                            ranges,
                        },
                    )
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn build_parse_round_trip((kind, t) in arb_transaction()) {
        let b = t.to_vec(kind).unwrap();
        let opts = ParseOptions { expected_sender: Some(t.sender_id), emad_size: Some(t.emad_size) };
        prop_assert_eq!(MemTransaction::parse(&b, kind, opts), Ok(t));
    }

    #[test]
    fn fragments_reassemble((kind, t) in arb_transaction(), max in 128usize..600) {
        prop_assume!(kind != DescKind::RetrieveReq);
        let b = t.to_vec(kind).unwrap();
        let head = 48 + t.receivers.len() * t.emad_size.bytes() + 16;
        prop_assume!(head <= max);
        let plan: Vec<_> = plan_fragments(b.len(), head, max).unwrap().collect();
        let mut asm = FragmentAssembler::new(b.len() as u32, &b[..plan[0].1], 1 << 20).unwrap();
        for &(o, l) in &plan[1..] {
            prop_assert!(l <= max);
            asm.push(&b[o..o + l]).unwrap();
        }
        prop_assert_eq!(asm.finish().unwrap(), b);
    }

    #[test]
    fn parse_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..512), kind in arb_kind()) {
        let _ = parse(&b, kind);
        let _ = MemRelinquishDesc::parse(&b);
    }

    #[test]
    fn parse_never_panics_on_mutations(
        (kind, t) in arb_transaction(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = t.to_vec(kind).unwrap();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        let n = cut.index(b.len() + 1);
        for k in [kind, DescKind::RetrieveResp, DescKind::RetrieveReq] {
            if let Ok(p) = parse(&b[..n], k) {
                // Anything accepted re-encodes to something that parses the same.
                let again = p.to_vec(k).unwrap();
                prop_assert_eq!(parse(&again, k), Ok(p));
            }
        }
    }
}
