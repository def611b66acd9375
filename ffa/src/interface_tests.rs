use super::*;

fn uuid() -> Uuid {
    Uuid::from_cells([0x12345678, 0x9abcdef0, 0x11223344, 0x55667788])
}

fn mem(buf: MemOpBuf) -> MemOpArgs {
    MemOpArgs {
        total_len: 0x1234,
        frag_len: 0x1000,
        buf,
    }
}

/// One value of every variant (and every width / sub-form).
fn samples() -> std::vec::Vec<Interface> {
    use Interface as I;
    let args2 = DirectMsg2Args(core::array::from_fn(|i| {
        0x1111_0000_0000_0000 * (i as u64 + 1)
    }));
    let mut v = std::vec![
        I::Error {
            target_info: 7,
            code: FfaError::NotReady
        },
        I::Success {
            target_info: 0,
            args: SuccessArgs::Args32([1, 2, 3, 4, 5, 0xFFFF_FFFF])
        },
        I::Success {
            target_info: 3,
            args: SuccessArgs::Args64(core::array::from_fn(|i| u64::MAX - i as u64))
        },
        I::Interrupt {
            target_info: 0x8001_0000,
            interrupt_id: 3
        },
        I::Version {
            input: Version::V1_2
        },
        I::Features {
            feature_id: FuncId::MemRetrieveReq64 as u32,
            input_properties: 2
        },
        I::RxAcquire { vm_id: 5 },
        I::RxRelease { vm_id: 0 },
        I::RxTxMap {
            addr: RxTxAddr::Addr32 {
                tx: 0xe40_0000,
                rx: 0xe40_1000
            },
            page_count: RxTxPageCount::new(1).unwrap()
        },
        I::RxTxMap {
            addr: RxTxAddr::Addr64 {
                tx: 0x1_0000_0000,
                rx: 0x1_0000_1000
            },
            page_count: RxTxPageCount::new(63).unwrap()
        },
        I::RxTxUnmap { id: 0x8001 },
        I::PartitionInfoGet {
            uuid: uuid(),
            flags: PartitionInfoGetFlags { count_only: true }
        },
        I::PartitionInfoGetRegs {
            uuid: uuid(),
            start_index: 5,
            tag: 0xabcd
        },
        I::IdGet,
        I::SpmIdGet,
        I::MsgWait {
            flags: MsgWaitFlags {
                retain_rx_buffer: true
            }
        },
        I::Yield,
        I::Run {
            target_id: 0x8001,
            vcpu_id: 2
        },
        I::NormalWorldResume,
        I::MsgSendDirectReq2 {
            src_id: 0,
            dst_id: 0x8001,
            uuid: uuid(),
            args: args2
        },
        I::MsgSendDirectResp2 {
            src_id: 0x8001,
            dst_id: 0,
            args: args2
        },
        I::ConsoleLog {
            chars: ConsoleLogChars::new32(b"hello, world\n").unwrap()
        },
        I::ConsoleLog {
            chars: ConsoleLogChars::new32(&[b'x'; 24]).unwrap()
        },
        I::ConsoleLog {
            chars: ConsoleLogChars::new64(&[b'y'; 128]).unwrap()
        },
        I::ConsoleLog {
            chars: ConsoleLogChars::new64(b"a").unwrap()
        },
        I::SecondaryEpRegister {
            entrypoint: EntryPoint::Addr32(0xe304000)
        },
        I::SecondaryEpRegister {
            entrypoint: EntryPoint::Addr64(0x1_0e30_4000)
        },
        I::Abort { code: 0xdead },
        I::MemRetrieveResp {
            total_len: 100,
            frag_len: 64
        },
        I::MemRelinquish,
        I::MemReclaim {
            handle: Handle(0x8000_0000_0000_0042),
            flags: ReclaimFlags {
                zero_memory: true,
                time_slicing: false
            }
        },
        I::MemFragRx {
            handle: Handle(0x1_0000_0002),
            frag_offset: 4096,
            endpoint_id: 0
        },
        I::MemFragTx {
            handle: Handle(0x1_0000_0002),
            frag_len: 200,
            endpoint_id: 0x8001
        },
    ];
    for args in [
        DirectMsgArgs::Args32([1, 2, 3, 4, 0xFFFF_FFFF]),
        DirectMsgArgs::Args64([u64::MAX, 2, 3, 4, 5]),
        DirectMsgArgs::Framework32 {
            msg_type: 2,
            args: [0, 0, 0, 0, 1],
        },
        DirectMsgArgs::Framework64 {
            msg_type: 0xff,
            args: [9; 5],
        },
    ] {
        v.push(I::MsgSendDirectReq {
            src_id: 0,
            dst_id: 0x8001,
            args,
        });
        v.push(I::MsgSendDirectResp {
            src_id: 0x8001,
            dst_id: 0,
            args,
        });
    }
    for buf in [
        MemOpBuf::Tx32,
        MemOpBuf::Tx64,
        MemOpBuf::Buf32 {
            addr: 0x4000_0000,
            page_count: 2,
        },
        MemOpBuf::Buf64 {
            addr: 0x8_0000_0000,
            page_count: 1,
        },
    ] {
        v.push(I::MemDonate(mem(buf)));
        v.push(I::MemLend(mem(buf)));
        v.push(I::MemShare(mem(buf)));
        v.push(I::MemRetrieveReq(mem(buf)));
    }
    v
}

#[test]
fn round_trip_every_interface() {
    let all = samples();
    let mut seen = std::collections::BTreeSet::new();
    for i in &all {
        let regs = i.to_regs();
        assert_eq!(regs[0] as u32, i.func_id() as u32, "{i:?}");
        assert_eq!(Interface::from_regs(&regs), Ok(*i), "{i:?} -> {regs:x?}");
        seen.insert(i.func_id() as u32);
    }
    // Every function ID this crate decodes appears in the samples.
    for &f in FuncId::ALL {
        let decodable = !matches!(
            f,
            FuncId::MemOpPause
                | FuncId::MemOpResume
                | FuncId::MsgSend2
                | FuncId::El3IntrHandle
                | FuncId::Abort64
        );
        assert_eq!(seen.contains(&(f as u32)), decodable, "{f:?}");
    }
}

#[test]
fn version_reply_round_trip() {
    let out = Interface::VersionOut {
        output: Version::V1_3,
    };
    let regs = out.to_regs();
    assert_eq!(regs[0], 0x10003);
    assert_eq!(Interface::decode_reply(FuncId::Version, &regs), Ok(out));
    // NOT_SUPPORTED is w0 = -1 (sign-extended or not).
    for w0 in [0xFFFF_FFFFu64, u64::MAX] {
        let mut r = [0; 18];
        r[0] = w0;
        assert_eq!(
            Interface::decode_reply(FuncId::Version, &r),
            Ok(Interface::Error {
                target_info: 0,
                code: FfaError::NotSupported
            })
        );
    }
    let mut r = [0; 18];
    r[0] = 0x8000_0001;
    assert_eq!(
        Interface::decode_reply(FuncId::Version, &r),
        Err(DecodeError::InvalidVersion(0x8000_0001))
    );
    // Other requests decode as usual.
    let s = Interface::Success {
        target_info: 0,
        args: SuccessArgs::w2(0x8001),
    };
    assert_eq!(Interface::decode_reply(FuncId::IdGet, &s.to_regs()), Ok(s));
}

#[test]
fn smc32_upper_halves_are_masked() {
    for i in samples() {
        if i.func_id().is_64bit() {
            continue;
        }
        let mut regs = i.to_regs();
        for r in &mut regs[1..8] {
            *r |= 0xDEAD_BEEF_0000_0000;
        }
        // x8-x17 are not part of an SMC32 call.
        for r in &mut regs[8..] {
            *r = 0x5555_5555_5555_5555;
        }
        regs[0] |= 0xFFFF_FFFF_0000_0000;
        assert_eq!(Interface::from_regs(&regs), Ok(i), "{i:?}");
    }
}

fn with(i: Interface, reg: usize, v: u64) -> Regs {
    let mut r = i.to_regs();
    r[reg] = v;
    r
}

fn reserved(f: FuncId, reg: u8, value: u64) -> Result<Interface, DecodeError> {
    Err(DecodeError::ReservedNotZero {
        func: f,
        reg,
        value,
    })
}

#[test]
fn rejects_unknown_function_ids() {
    for w0 in [
        0u64,
        0x8400_006A,
        0x8400_0078,
        0xC400_0062,
        0x8400_0091,
        0x10003,
    ] {
        let mut r = [0; 18];
        r[0] = w0;
        assert_eq!(
            Interface::from_regs(&r),
            Err(DecodeError::UnknownFunction(w0 as u32))
        );
    }
}

#[test]
fn rejects_malformed_registers() {
    use FuncId as F;
    use Interface as I;
    let cases: std::vec::Vec<(Regs, Result<Interface, DecodeError>)> = std::vec![
        // FFA_ERROR with an undefined code.
        (
            with(
                I::Error {
                    target_info: 0,
                    code: FfaError::Busy
                },
                2,
                0xFFFF_FFF5
            ),
            Err(DecodeError::UnknownErrorCode(-11))
        ),
        (
            with(
                I::Error {
                    target_info: 0,
                    code: FfaError::Busy
                },
                2,
                0
            ),
            Err(DecodeError::UnknownErrorCode(0))
        ),
        // VERSION: bit 31 MBZ, w2 MBZ.
        (
            with(
                I::Version {
                    input: Version::V1_2
                },
                1,
                0x8001_0002
            ),
            Err(DecodeError::InvalidVersion(0x8001_0002))
        ),
        (
            with(
                I::Version {
                    input: Version::V1_2
                },
                2,
                1
            ),
            reserved(F::Version, 2, 1)
        ),
        (
            with(
                I::Features {
                    feature_id: 0,
                    input_properties: 0
                },
                3,
                1
            ),
            reserved(F::Features, 3, 1)
        ),
        (
            with(I::RxRelease { vm_id: 0 }, 1, 0x10000),
            reserved(F::RxRelease, 1, 0x10000)
        ),
        (
            with(I::RxAcquire { vm_id: 0 }, 7, 1),
            reserved(F::RxAcquire, 7, 1)
        ),
        (
            with(I::RxTxUnmap { id: 0 }, 1, 5),
            reserved(F::RxTxUnmap, 1, 5)
        ),
        (with(I::IdGet, 1, 1), reserved(F::IdGet, 1, 1)),
        (with(I::SpmIdGet, 7, 1), reserved(F::SpmIdGet, 7, 1)),
        (
            with(I::MemRelinquish, 3, 1),
            reserved(F::MemRelinquish, 3, 1)
        ),
        // MSG_WAIT: w1 MBZ, flags beyond bit 0, w3 MBZ.
        (
            with(
                I::MsgWait {
                    flags: MsgWaitFlags::default()
                },
                1,
                1
            ),
            reserved(F::MsgWait, 1, 1)
        ),
        (
            with(
                I::MsgWait {
                    flags: MsgWaitFlags::default()
                },
                2,
                2
            ),
            Err(DecodeError::InvalidFlags {
                func: F::MsgWait,
                flags: 2
            })
        ),
        (
            with(
                I::MsgWait {
                    flags: MsgWaitFlags::default()
                },
                3,
                1
            ),
            reserved(F::MsgWait, 3, 1)
        ),
        (
            with(
                I::Run {
                    target_id: 1,
                    vcpu_id: 0
                },
                2,
                1
            ),
            reserved(F::Run, 2, 1)
        ),
        (with(I::Yield, 2, 1), reserved(F::Yield, 2, 1)),
        (
            with(I::NormalWorldResume, 1, 1),
            reserved(F::NormalWorldResume, 1, 1)
        ),
    ];
    for (i, (regs, want)) in cases.iter().enumerate() {
        assert_eq!(Interface::from_regs(regs), *want, "case {i}: {regs:x?}");
    }
}

#[test]
fn rejects_malformed_rxtx_map() {
    let map = Interface::RxTxMap {
        addr: RxTxAddr::Addr64 { tx: 0, rx: 0 },
        page_count: RxTxPageCount::new(1).unwrap(),
    };
    assert_eq!(
        Interface::from_regs(&with(map, 3, 0)),
        Err(DecodeError::InvalidPageCount(0))
    );
    assert_eq!(
        Interface::from_regs(&with(map, 3, 64)),
        reserved(FuncId::RxTxMap64, 3, 64)
    );
    assert_eq!(
        Interface::from_regs(&with(map, 3, 1 << 32 | 1)),
        reserved(FuncId::RxTxMap64, 3, 1 << 32 | 1)
    );
    assert_eq!(
        Interface::from_regs(&with(map, 4, 1)),
        reserved(FuncId::RxTxMap64, 4, 1)
    );
    assert_eq!(RxTxPageCount::new(0), None);
    assert_eq!(RxTxPageCount::new(64), None);
}

#[test]
fn rejects_malformed_partition_info_get() {
    let pig = Interface::PartitionInfoGet {
        uuid: Uuid::NIL,
        flags: PartitionInfoGetFlags::default(),
    };
    assert_eq!(
        Interface::from_regs(&with(pig, 5, 2)),
        Err(DecodeError::InvalidFlags {
            func: FuncId::PartitionInfoGet,
            flags: 2
        })
    );
    assert_eq!(
        Interface::from_regs(&with(pig, 6, 1)),
        reserved(FuncId::PartitionInfoGet, 6, 1)
    );
    let regs = Interface::PartitionInfoGetRegs {
        uuid: Uuid::NIL,
        start_index: 0,
        tag: 0,
    };
    assert_eq!(
        Interface::from_regs(&with(regs, 3, 1 << 32)),
        reserved(FuncId::PartitionInfoGetRegs, 3, 1 << 32)
    );
    assert_eq!(
        Interface::from_regs(&with(regs, 17, 1)),
        reserved(FuncId::PartitionInfoGetRegs, 17, 1)
    );
}

#[test]
fn rejects_malformed_direct_messages() {
    let req32 = Interface::MsgSendDirectReq {
        src_id: 0,
        dst_id: 0x8001,
        args: DirectMsgArgs::Args32([0; 5]),
    };
    // Partition message with a type in [7:0]; reserved bits [30:8]; both.
    for flags in [1u64, 0x100, 0x4000_0000, 0x8000_0100] {
        assert_eq!(
            Interface::from_regs(&with(req32, 2, flags)),
            Err(DecodeError::InvalidDirectMsgFlags(flags as u32)),
            "{flags:#x}"
        );
    }
    let req2 = Interface::MsgSendDirectReq2 {
        src_id: 0,
        dst_id: 0x8001,
        uuid: Uuid::NIL,
        args: DirectMsg2Args::default(),
    };
    assert_eq!(
        Interface::from_regs(&with(req2, 1, 1 << 40)),
        reserved(FuncId::MsgSendDirectReq2, 1, 1 << 40)
    );
    let resp2 = Interface::MsgSendDirectResp2 {
        src_id: 0x8001,
        dst_id: 0,
        args: DirectMsg2Args::default(),
    };
    assert_eq!(
        Interface::from_regs(&with(resp2, 2, 1)),
        reserved(FuncId::MsgSendDirectResp2, 2, 1)
    );
    assert_eq!(
        Interface::from_regs(&with(resp2, 3, 1)),
        reserved(FuncId::MsgSendDirectResp2, 3, 1)
    );
}

#[test]
fn direct_msg_wire_layout() {
    // research/platform-facts.md sec. 4.5: NWd request to 0x8001, SP response.
    let r = Interface::MsgSendDirectResp {
        src_id: 0x8001,
        dst_id: 0,
        args: DirectMsgArgs::Args32([1, 2, 3, 4, 5]),
    }
    .to_regs();
    assert_eq!(&r[..8], &[0x8400_0070, 0x8001_0000, 0, 1, 2, 3, 4, 5]);
    let r = Interface::MsgSendDirectReq {
        src_id: 0,
        dst_id: 0x8001,
        args: DirectMsgArgs::Framework32 {
            msg_type: 8,
            args: [0; 5],
        },
    }
    .to_regs();
    assert_eq!(&r[..3], &[0x8400_006F, 0x8001, 0x8000_0008]);
    // v1.3 senders may fill x8-x17 of a 64-bit direct message: ignored, not misread.
    let mut r = Interface::MsgSendDirectReq {
        src_id: 0,
        dst_id: 0x8001,
        args: DirectMsgArgs::Args64([1; 5]),
    }
    .to_regs();
    r[8] = 99;
    assert!(matches!(
        Interface::from_regs(&r),
        Ok(Interface::MsgSendDirectReq {
            args: DirectMsgArgs::Args64([1, 1, 1, 1, 1]),
            ..
        })
    ));
}

#[test]
fn console_log_packing_and_bad_counts() {
    let r = Interface::ConsoleLog {
        chars: ConsoleLogChars::new32(b"hello").unwrap(),
    }
    .to_regs();
    assert_eq!(
        &r[..4],
        &[
            0x8400_008A,
            5,
            u32::from_le_bytes(*b"hell").into(),
            u64::from(b'o')
        ]
    );
    let r = Interface::ConsoleLog {
        chars: ConsoleLogChars::new64(b"abcdefghi").unwrap(),
    }
    .to_regs();
    assert_eq!(
        &r[..4],
        &[
            0xC400_008A,
            9,
            u64::from_le_bytes(*b"abcdefgh"),
            u64::from(b'i')
        ]
    );
    let log32 = Interface::ConsoleLog {
        chars: ConsoleLogChars::new32(b"a").unwrap(),
    };
    for n in [0u64, 25] {
        assert_eq!(
            Interface::from_regs(&with(log32, 1, n)),
            Err(DecodeError::InvalidCharCount(n))
        );
    }
    let log64 = Interface::ConsoleLog {
        chars: ConsoleLogChars::new64(b"a").unwrap(),
    };
    for n in [0u64, 129, 1 << 32] {
        assert_eq!(
            Interface::from_regs(&with(log64, 1, n)),
            Err(DecodeError::InvalidCharCount(n))
        );
    }
    assert!(ConsoleLogChars::new32(&[0; 25]).is_none());
    assert!(ConsoleLogChars::new64(&[0; 129]).is_none());
    assert!(ConsoleLogChars::new64(&[]).is_none());
}

#[test]
fn rejects_malformed_memory_calls() {
    use FuncId as F;
    let share = Interface::MemShare(mem(MemOpBuf::Tx32));
    assert_eq!(
        Interface::from_regs(&with(share, 5, 1)),
        reserved(F::MemShare32, 5, 1)
    );
    let share64 = Interface::MemShare(mem(MemOpBuf::Tx64));
    assert_eq!(
        Interface::from_regs(&with(share64, 4, 1 << 32)),
        reserved(F::MemShare64, 4, 1 << 32)
    );
    let reclaim = Interface::MemReclaim {
        handle: Handle(1),
        flags: ReclaimFlags::default(),
    };
    assert_eq!(
        Interface::from_regs(&with(reclaim, 3, 4)),
        Err(DecodeError::InvalidFlags {
            func: F::MemReclaim,
            flags: 4
        })
    );
    assert_eq!(
        Interface::from_regs(&with(reclaim, 4, 1)),
        reserved(F::MemReclaim, 4, 1)
    );
    let frag = Interface::MemFragRx {
        handle: Handle(1),
        frag_offset: 0,
        endpoint_id: 0,
    };
    assert_eq!(
        Interface::from_regs(&with(frag, 4, 1)),
        reserved(F::MemFragRx, 4, 1)
    );
    let resp = Interface::MemRetrieveResp {
        total_len: 1,
        frag_len: 1,
    };
    assert_eq!(
        Interface::from_regs(&with(resp, 3, 1)),
        reserved(F::MemRetrieveResp, 3, 1)
    );
    let ep = Interface::SecondaryEpRegister {
        entrypoint: EntryPoint::Addr64(0),
    };
    assert_eq!(
        Interface::from_regs(&with(ep, 2, 1)),
        reserved(F::SecondaryEpRegister64, 2, 1)
    );
}

#[test]
fn uuid_register_orders() {
    let u = uuid();
    let r = Interface::MsgSendDirectReq2 {
        src_id: 0,
        dst_id: 0x8001,
        uuid: u,
        args: DirectMsg2Args::default(),
    }
    .to_regs();
    assert_eq!((r[2], r[3]), (0x9abcdef0_12345678, 0x55667788_11223344));
    let r = Interface::PartitionInfoGet {
        uuid: u,
        flags: PartitionInfoGetFlags::default(),
    }
    .to_regs();
    assert_eq!(&r[1..5], &[0x12345678, 0x9abcdef0, 0x11223344, 0x55667788]);
}

#[test]
fn decode_error_maps_to_ffa_error() {
    assert_eq!(
        DecodeError::UnknownFunction(0).to_ffa_error(),
        FfaError::NotSupported
    );
    assert_eq!(
        FfaError::from(DecodeError::InvalidPageCount(0)),
        FfaError::InvalidParameters
    );
    assert_eq!(
        DecodeError::InvalidVersion(0x8001_0002).to_ffa_error(),
        FfaError::NotSupported
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// x0 is a known function ID most of the time (so decoding goes deep), x1-x17 are
    /// random but often small or zero (so MBZ checks pass sometimes).
    fn arb_regs() -> impl Strategy<Value = Regs> {
        let w0 = prop_oneof![
            4 => prop::sample::select(FuncId::ALL).prop_map(|f| f as u32 as u64),
            1 => any::<u64>(),
        ];
        let reg = prop_oneof![3 => Just(0u64), 2 => 0u64..256, 2 => any::<u64>()];
        (w0, prop::array::uniform17(reg)).prop_map(|(w0, rest)| {
            let mut r = [0u64; 18];
            r[0] = w0;
            r[1..].copy_from_slice(&rest);
            r
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn decode_never_panics_and_round_trips(regs in arb_regs()) {
            if let Ok(i) = Interface::from_regs(&regs) {
                prop_assert_eq!(Interface::from_regs(&i.to_regs()), Ok(i));
                prop_assert_eq!(i.func_id() as u32, regs[0] as u32);
            }
            if let Ok(i @ Interface::VersionOut { .. }) =
                Interface::decode_reply(FuncId::Version, &regs)
            {
                prop_assert_eq!(Interface::decode_reply(FuncId::Version, &i.to_regs()), Ok(i));
            }
        }
    }
}
