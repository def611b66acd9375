use super::*;

#[test]
fn uuid_cells_follow_manifest_convention() {
    // Hafnium/ACS: bytes read as little-endian words.
    assert_eq!(
        service_uuid_manifest_cells(),
        [0xd476fe9d, 0xa545b350, 0x42cdb1b7, 0x7af1f864]
    );
    let mut buf = [0u8; 36];
    assert_eq!(
        service_uuid_text(&mut buf),
        "9dfe76d4-50b3-45a5-b7b1-cd4264f8f17a"
    );
}

#[test]
fn ping_round_trip_both_widths() {
    for (width, p) in [
        (Width::W32, [0xdead_beef_u64, 1, 0xffff_ffff]),
        (Width::W64, [0xdead_beef_0000_0001, 2, u64::MAX]),
    ] {
        let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
        Request::Ping { payload: &p }
            .encode(&mut regs, width)
            .unwrap();
        let Request::Ping { payload } = Request::decode(&regs, width).unwrap() else {
            panic!("not a ping");
        };
        assert_eq!(payload, &p);

        let mut out = [0u64; DIRECT_PAYLOAD_REGS];
        Response::Ping {
            counter: 7,
            payload,
        }
        .encode(&mut out, width)
        .unwrap();
        assert_eq!(
            Response::decode(&out, width, Command::Ping).unwrap(),
            Response::Ping {
                counter: 7,
                payload: &p
            }
        );
    }
}

#[test]
fn w32_rejects_wide_values_and_ignores_upper_bits() {
    let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
    assert_eq!(
        Request::Ping {
            payload: &[1 << 32]
        }
        .encode(&mut regs, Width::W32),
        Err(EncodeError::TooWide { index: 2 })
    );
    // Garbage above bit 31 of an SMC32 call is not part of the message.
    let regs = [0xffff_ffff_0000_0002, 0xaaaa_0000_0000_0000, 0, 0, 0];
    assert_eq!(Request::decode(&regs, Width::W32), Ok(Request::Info));
    // ... and a ping's echo of such garbage still encodes, without it.
    let mut out = [0u64; DIRECT_PAYLOAD_REGS];
    let echo = Response::Ping {
        counter: 1,
        payload: &[0xaaaa_0000_0000_0003],
    };
    assert_eq!(echo.encode(&mut out, Width::W32), Ok(()));
    assert_eq!(out[2], 3);
    assert_eq!(
        Request::decode(&regs, Width::W64),
        Err(ProtoError::Malformed { index: 0 })
    );
}

#[test]
fn malformed_and_unknown_requests_are_errors() {
    assert_eq!(
        Request::decode(&[], Width::W64),
        Err(ProtoError::TooShort { regs: 0 })
    );
    assert_eq!(
        Request::decode(&[0x77, 0, 0, 0, 0], Width::W64),
        Err(ProtoError::UnknownCommand(0x77))
    );
    assert_eq!(
        Request::decode(&[1 | 1 << 16, 0, 0, 0, 0], Width::W32),
        Err(ProtoError::Malformed { index: 0 })
    );
    assert_eq!(
        Request::decode(&[1, 5, 0, 0, 0], Width::W64),
        Err(ProtoError::Malformed { index: 1 })
    );
    assert_eq!(
        Request::decode(&[1], Width::W64),
        Err(ProtoError::TooShort { regs: 1 })
    );
    assert_eq!(
        Request::decode(&[2, 0, 0, 9, 0], Width::W64),
        Err(ProtoError::Malformed { index: 3 })
    );
}

#[test]
fn error_and_info_responses_round_trip() {
    let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
    let e = Response::error(ProtoError::UnknownCommand(0x1234));
    e.encode(&mut out, Width::W64).unwrap();
    assert_eq!(&out[..2], &[Status::UnknownCommand as u64, 0x1234]);
    assert_eq!(Response::decode(&out, Width::W64, Command::Ping), Ok(e));

    let info = Info {
        protocol_version: PROTOCOL_VERSION,
        build_id: 0x1234_5678,
        capabilities: caps::PING | caps::INFO,
        sp_version: 0x00_01_00,
    };
    Response::Info(info).encode(&mut out, Width::W32).unwrap();
    assert_eq!(
        Response::decode(&out, Width::W32, Command::Info),
        Ok(Response::Info(info))
    );
    assert_eq!(
        Response::decode(&[99, 0], Width::W64, Command::Info),
        Err(DecodeError::BadStatus(99))
    );
    assert_eq!(
        Response::decode(&[0, 1], Width::W64, Command::Info),
        Err(DecodeError::TooShort { regs: 2 })
    );
}

#[test]
fn fault_requests() {
    let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
    Request::Fault {
        kind: FaultKind::DataAbort,
    }
    .encode(&mut regs, Width::W32)
    .unwrap();
    assert_eq!(regs, [0xf000, 2, 0, 0, 0]);
    assert_eq!(
        Request::decode(&regs, Width::W32),
        Ok(Request::Fault {
            kind: FaultKind::DataAbort
        })
    );
    assert_eq!(
        Request::decode(&[0xf000, 4, 0, 0, 0], Width::W64),
        Err(ProtoError::Malformed { index: 1 })
    );
    assert_eq!(
        Request::decode(&[0xf000], Width::W64),
        Err(ProtoError::Malformed { index: 1 })
    );
    assert_eq!(
        Request::decode(&[0xf000, 1, 0, 4, 0], Width::W64),
        Err(ProtoError::Malformed { index: 3 })
    );
}

/// xorshift64*: a fixed-seed generator, so failures reproduce.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_registers_never_panic_and_pings_round_trip() {
    let mut st = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200_000u32 {
        let n = (rng(&mut st) % 16) as usize;
        let mut regs = [0u64; 16];
        for r in regs.iter_mut().take(n) {
            // Mostly small values so that valid commands come up often.
            let v = rng(&mut st);
            *r = if v & 1 == 0 { v >> 60 } else { v };
        }
        if i % 3 == 0 && n > 0 {
            regs[0] = [
                1, 2, 0xf000, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x20, 0x21, 0x22, 0x30, 0x31,
                0x32, 0x33,
            ][(i as usize / 3) % 16];
        }
        let width = if i % 2 == 0 { Width::W32 } else { Width::W64 };
        let regs = &regs[..n];
        if let Ok(req) = Request::decode(regs, width) {
            let mut out = [0u64; 16];
            if req.encode(&mut out[..n.max(2)], width).is_ok() {
                assert_eq!(Request::decode(&out[..n.max(2)], width), Ok(req));
            }
        }
        for cmd in ALL_COMMANDS {
            let _ = Response::decode(regs, width, cmd);
        }
    }
}

const ALL_COMMANDS: [Command; 22] = [
    Command::NpuAcquire,
    Command::NpuRelease,
    Command::NpuGemm,
    Command::DeviceKey,
    Command::ModelLoadSealed,
    Command::Attest,
    Command::FlexSecure,
    Command::FlexRelease,
    Command::FlexStats,
    Command::FlexProbe,
    Command::ModelLoad,
    Command::Generate,
    Command::ModelUnload,
    Command::Ping,
    Command::Info,
    Command::Fault,
    Command::MemRetrieve,
    Command::MemChecksum,
    Command::MemFill,
    Command::MemRelease,
    Command::MemStats,
    Command::MemRelinquishHandle,
];

#[test]
fn command_ids_round_trip() {
    for c in ALL_COMMANDS {
        assert_eq!(Command::from_id(c as u16), Some(c));
    }
    for code in 0..32 {
        if let Some(s) = Status::from_code(code) {
            assert_eq!(s as u64, code);
        }
    }
    for r in 1..=6 {
        assert_eq!(RejectReason::from_u64(r).map(|r| r as u64), Some(r));
    }
    assert_eq!(RejectReason::from_u64(0), None);
}

#[test]
fn memory_requests_round_trip_in_both_widths() {
    let reqs = [
        Request::MemRetrieve {
            handle: 0x8000_0000_0000_0042,
            tx_type: 2,
        },
        Request::MemChecksum {
            region: 3,
            offset: 0x10,
            len: u32::MAX,
        },
        Request::MemFill {
            region: 1,
            offset: 0,
            len: 4096,
            pattern: 0xa5a5_0102,
        },
        Request::MemRelease { region: 9 },
        Request::MemStats,
        Request::MemRelinquishHandle { handle: u64::MAX },
    ];
    for width in [Width::W32, Width::W64] {
        for req in reqs {
            let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
            req.encode(&mut regs, width).unwrap();
            assert!(regs.iter().all(|r| r >> 32 == 0), "{regs:x?}");
            assert_eq!(Request::decode(&regs, width), Ok(req));
        }
    }
}

#[test]
fn memory_requests_reject_bad_arguments() {
    let w = Width::W64;
    // Transaction type 4 does not exist.
    assert_eq!(
        Request::decode(&[0x10, 1, 0, 4, 0], w),
        Err(ProtoError::Malformed { index: 3 })
    );
    // A 64-bit value where the protocol has 32 bits.
    assert_eq!(
        Request::decode(&[0x11, 1, 1 << 32, 4, 0], w),
        Err(ProtoError::Malformed { index: 2 })
    );
    assert_eq!(
        Request::decode(&[0x13, 1, 0, 0, 7], w),
        Err(ProtoError::Malformed { index: 4 })
    );
    assert_eq!(
        Request::decode(&[0x14, 0, 1, 0, 0], w),
        Err(ProtoError::Malformed { index: 2 })
    );
    // Over SMC32 the upper halves are not part of the message.
    assert_eq!(
        Request::decode(&[0x11, 1, 1 << 32, 4, 0], Width::W32),
        Ok(Request::MemChecksum {
            region: 1,
            offset: 0,
            len: 4
        })
    );
    // Short payloads read missing registers as zero (REQ2 and REQ carry at least 5).
    assert_eq!(Request::decode(&[0x14], w), Ok(Request::MemStats));
}

#[test]
fn memory_responses_round_trip() {
    let resps = [
        (
            Command::MemRetrieve,
            Response::MemRegion(RegionInfo {
                region: 1,
                pages: 512,
                ranges: 512,
                flags: region_flags::NS | region_flags::WRITABLE | 2 << 2,
            }),
        ),
        (Command::MemChecksum, Response::Checksum(0xdead_beef)),
        (
            Command::MemStats,
            Response::MemStats(MemStats {
                live_regions: 2,
                mapped_pages: 3,
                retrieves: 200,
                relinquishes: 198,
            }),
        ),
        (Command::MemRelease, Response::Done),
        (Command::MemRetrieve, Response::error(ProtoError::Ffa(-2))),
    ];
    for width in [Width::W32, Width::W64] {
        for (cmd, r) in resps {
            let mut out = [0u64; DIRECT_PAYLOAD_REGS];
            r.encode(&mut out, width).unwrap();
            assert_eq!(Response::decode(&out, width, cmd), Ok(r));
        }
    }
    let mut out = [0u64; 2];
    Response::error(ProtoError::Ffa(-2))
        .encode(&mut out, Width::W32)
        .unwrap();
    assert_eq!(out, [Status::FfaError as u64, 0xffff_fffe]);
}

#[test]
fn checksum_and_pattern() {
    // FNV-1a 32 reference values.
    assert_eq!(Checksum::of(b""), 0x811c_9dc5);
    assert_eq!(Checksum::of(b"a"), 0xe40c_292c);
    assert_eq!(Checksum::of(b"foobar"), 0xbf9c_f968);
    let mut c = Checksum::new();
    c.update(b"foo");
    c.update(b"bar");
    assert_eq!(c.value(), Checksum::of(b"foobar"));
    let p = 0x0403_0201;
    let bytes: [u8; 9] = core::array::from_fn(|i| pattern_byte(p, i as u32));
    assert_eq!(bytes, [1, 2, 3, 4, 2, 3, 4, 5, 3]);
}

#[test]
fn encode_needs_room() {
    let mut out = [0u64; 3];
    assert_eq!(
        Request::Ping {
            payload: &[1, 2, 3]
        }
        .encode(&mut out, Width::W64),
        Err(EncodeError::NoRoom { need: 5, have: 3 })
    );
    assert_eq!(
        Response::Info(Info {
            protocol_version: 0,
            build_id: 0,
            capabilities: 0,
            sp_version: 0
        })
        .encode(&mut out, Width::W64),
        Err(EncodeError::NoRoom { need: 5, have: 3 })
    );
}

#[test]
fn model_requests_round_trip_and_reject_bad_arguments() {
    let gen_args = GenerateArgs {
        io_handle: 0x8000_0000_0000_0007,
        prompt_len: 10,
        max_tokens: 48,
        sampling: Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            seed: 0x1234_5678_9abc_def0,
        },
    };
    for req in [
        Request::ModelLoad { handle: u64::MAX },
        Request::ModelUnload,
        Request::Generate(gen_args),
    ] {
        let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
        req.encode(&mut regs, Width::W64).unwrap();
        assert_eq!(Request::decode(&regs, Width::W64), Ok(req));
    }
    let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
    Request::Generate(gen_args)
        .encode(&mut regs, Width::W64)
        .unwrap();
    let bad = |i: usize, v: u64| {
        let mut r = regs;
        r[i] = v;
        Request::decode(&r, Width::W64).map(|_| ())
    };
    assert_eq!(bad(4, 0), Err(ProtoError::Malformed { index: 4 }));
    assert_eq!(
        bad(5, u64::from(f32::NAN.to_bits())),
        Err(ProtoError::Malformed { index: 5 })
    );
    assert_eq!(
        bad(5, u64::from((-1.0f32).to_bits())),
        Err(ProtoError::Malformed { index: 5 })
    );
    assert_eq!(
        bad(7, u64::from(1.5f32.to_bits())),
        Err(ProtoError::Malformed { index: 7 })
    );
    assert_eq!(bad(7, 0), Err(ProtoError::Malformed { index: 7 }));
    assert_eq!(bad(10, 1), Err(ProtoError::Malformed { index: 10 }));
    assert_eq!(bad(3, 1 << 32), Err(ProtoError::Malformed { index: 3 }));
    assert_eq!(
        Request::decode(&[0x22, 1], Width::W64),
        Err(ProtoError::Malformed { index: 1 })
    );
}

#[test]
fn model_responses_round_trip() {
    let resps = [
        (
            Command::ModelLoad,
            Response::Model(ModelInfo {
                n_layers: 4,
                dim: 192,
                vocab: 1024,
                context: 256,
                matvec_path: kernel_path::SDOT,
                matmul_path: kernel_path::SMMLA,
                region: 3,
                heap_bytes: 1 << 20,
            }),
        ),
        (
            Command::Generate,
            Response::Generated(GenerateResult {
                prompt_tokens: 4,
                generated: 48,
                text_len: 200,
                stop: StopReason::EndOfText,
                prefill_ticks: 1 << 40,
                decode_ticks: 12345,
                counter_hz: 62_500_000,
            }),
        ),
        (Command::ModelUnload, Response::Done),
        (
            Command::Generate,
            Response::error(ProtoError::BadPrompt(PromptFault::NotUtf8)),
        ),
        (
            Command::ModelLoad,
            Response::error(ProtoError::NoMemory(9 << 20)),
        ),
    ];
    for (cmd, r) in resps {
        let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
        r.encode(&mut out, Width::W64).unwrap();
        assert_eq!(Response::decode(&out, Width::W64, cmd), Ok(r));
    }
    // Eight registers do not fit a DIRECT_REQ reply.
    let mut out = [0u64; DIRECT_PAYLOAD_REGS];
    assert!(resps[0].1.encode(&mut out, Width::W64).is_err());
    assert_eq!(
        Response::decode(&[0, 1, 1, 1, 9, 0, 0, 0], Width::W64, Command::Generate),
        Err(DecodeError::BadStatus(0))
    );
    for code in 12..=19 {
        assert_eq!(Status::from_code(code).map(|s| s as u64), Some(code));
    }
    assert_eq!(io::text_offset(3), 12);
    assert_eq!(kernel_path::name(kernel_path::SMMLA), "smmla");
}

#[test]
fn flexmem_requests_round_trip_and_reject_bad_arguments() {
    for width in [Width::W32, Width::W64] {
        for req in [
            Request::FlexSecure {
                region: 7,
                owner: 0xffff_ffff,
                scrub: ScrubKind::Zero,
            },
            Request::FlexSecure {
                region: 1,
                owner: 3,
                scrub: ScrubKind::EncryptOut,
            },
            Request::FlexRelease { region: 9 },
            Request::FlexStats,
            Request::FlexProbe { addr: 0x5800_1008 },
        ] {
            let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
            req.encode(&mut regs, width).unwrap();
            assert_eq!(Request::decode(&regs, width), Ok(req), "{req:?}");
        }
    }
    let bad = |regs: &[u64]| Request::decode(regs, Width::W64).map(|_| ());
    // Unknown scrub kind, stray registers, unaligned or too wide probe addresses.
    assert_eq!(
        bad(&[0x30, 1, 2, 2, 0]),
        Err(ProtoError::Malformed { index: 3 })
    );
    assert_eq!(
        bad(&[0x30, 1, 2, 0, 5]),
        Err(ProtoError::Malformed { index: 4 })
    );
    assert_eq!(bad(&[0x31, 1, 1]), Err(ProtoError::Malformed { index: 2 }));
    assert_eq!(
        bad(&[0x32, 0, 0, 1]),
        Err(ProtoError::Malformed { index: 3 })
    );
    assert_eq!(
        bad(&[0x33, 0x1004, 0, 0, 0]),
        Err(ProtoError::Malformed { index: 1 })
    );
    assert_eq!(
        bad(&[0x33, 1 << 32, 0, 0, 0]),
        Err(ProtoError::Malformed { index: 1 })
    );
    assert_eq!(
        bad(&[0x30, 1 << 33, 0, 0, 0]),
        Err(ProtoError::Malformed { index: 1 })
    );
}

#[test]
fn sealed_messages_round_trip_and_reject_bad_arguments() {
    let nonce: [u8; NONCE_LEN] = core::array::from_fn(|i| 0xa0 ^ i as u8);
    for req in [
        Request::DeviceKey,
        Request::ModelLoadSealed {
            package: 0x1_0000_0002,
            dest: 0x3_0000_0004,
            len: 0x5_0000_0006,
        },
        Request::Attest {
            io_handle: 0x5_0000_0006,
            nonce,
        },
    ] {
        let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
        req.encode(&mut regs, Width::W64).unwrap();
        assert_eq!(Request::decode(&regs, Width::W64), Ok(req));
        let mut bad = regs;
        bad[9] = 1;
        assert_eq!(
            Request::decode(&bad, Width::W64),
            Err(ProtoError::Malformed { index: 9 })
        );
    }
    let attest = [Command::Attest as u64, 1, 0, 1, 2, 3, 4];
    assert_eq!(
        Request::decode(&attest, Width::W32),
        Err(ProtoError::Malformed { index: 3 })
    );
    assert_eq!(
        Request::decode(&attest[..5], Width::W64),
        Err(ProtoError::TooShort { regs: 5 })
    );
    let key = DeviceKey {
        kem: [1; 32],
        sign: [2; 32],
    };
    let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
    Response::DeviceKey(key)
        .encode(&mut out, Width::W64)
        .unwrap();
    assert_eq!(
        Response::decode(&out, Width::W64, Command::DeviceKey),
        Ok(Response::DeviceKey(key))
    );
    Response::Attested(248)
        .encode(&mut out, Width::W64)
        .unwrap();
    assert_eq!(
        Response::decode(&out, Width::W64, Command::Attest),
        Ok(Response::Attested(248))
    );
    let e = ProtoError::Sealed {
        fault: SealedFault::ChunkAuth,
        chunk: 9,
    };
    assert_eq!(e.status(), Status::Sealed);
    assert_eq!(
        SealedFault::from_detail(e.detail()),
        Some((SealedFault::ChunkAuth, 9))
    );
}

#[test]
fn flexmem_responses_round_trip() {
    let sw = FlexSwitch {
        pages: 16384,
        owner_extents: 1,
        regions_used: 3,
        ticks: 1 << 40,
    };
    let mut out = [0u64; DIRECT_PAYLOAD_REGS];
    Response::FlexSwitched(sw)
        .encode(&mut out, Width::W64)
        .unwrap();
    for cmd in [Command::FlexSecure, Command::FlexRelease] {
        assert_eq!(
            Response::decode(&out, Width::W64, cmd),
            Ok(Response::FlexSwitched(sw))
        );
    }
    // 40-bit ticks do not fit SMC32: an encode error, not a silent cut.
    assert_eq!(
        Response::FlexSwitched(sw).encode(&mut out, Width::W32),
        Err(EncodeError::TooWide { index: 4 })
    );
    let st = FlexStats {
        pages_secured: 1,
        pages_released: 2,
        bytes_cleaned: 3,
        firewall_reprograms: 4,
        tlb_invalidations: 5,
        regions_used: 6,
        regions_free: 7,
        secured_pages: 8,
        last_switch_ticks: 9,
        last_switch_pages: 10,
        counter_hz: 62_500_000,
    };
    let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
    Response::FlexStats(st)
        .encode(&mut out, Width::W64)
        .unwrap();
    assert_eq!(&out[..4], &[0, 1, 2, 3]);
    assert_eq!(
        Response::decode(&out, Width::W64, Command::FlexStats),
        Ok(Response::FlexStats(st))
    );
    // Does not fit DIRECT_REQ's five registers.
    let mut short = [0u64; DIRECT_PAYLOAD_REGS];
    assert_eq!(
        Response::FlexStats(st).encode(&mut short, Width::W64),
        Err(EncodeError::NoRoom {
            need: 12,
            have: DIRECT_PAYLOAD_REGS
        })
    );
    assert_eq!(
        Response::decode(&short, Width::W64, Command::FlexStats),
        Err(DecodeError::TooShort {
            regs: DIRECT_PAYLOAD_REGS
        })
    );
    let mut out = [0u64; DIRECT_PAYLOAD_REGS];
    Response::Probed(u64::MAX)
        .encode(&mut out, Width::W64)
        .unwrap();
    assert_eq!(
        Response::decode(&out, Width::W64, Command::FlexProbe),
        Ok(Response::Probed(u64::MAX))
    );
    for f in 1..=14 {
        let fault = FlexFault::from_u64(f).unwrap();
        assert_eq!(fault as u64, f);
        let e = ProtoError::FlexMem(fault);
        assert_eq!((e.status(), e.detail()), (Status::FlexMem, f));
    }
    assert_eq!(FlexFault::from_u64(0), None);
    assert_eq!(FlexFault::from_u64(15), None);
}

#[test]
fn npu_messages_round_trip() {
    let gemm = NpuGemmArgs {
        region: 4,
        m: 8,
        n: 96,
        k: 256,
        seed: 7,
        flags: gemm_flags::OUTSIDE_STE,
    };
    for req in [
        Request::NpuAcquire,
        Request::NpuRelease,
        Request::NpuGemm(gemm),
    ] {
        let mut regs = [0u64; DIRECT_PAYLOAD_REGS + 2];
        req.encode(&mut regs, Width::W64).unwrap();
        assert_eq!(Request::decode(&regs, Width::W64), Ok(req), "{req:?}");
    }
    // Unknown flag bits and stray registers are malformed.
    assert_eq!(
        Request::decode(&[0x42, 1, 1, 1, 32, 0, 2], Width::W64),
        Err(ProtoError::Malformed { index: 6 })
    );
    assert_eq!(
        Request::decode(&[0x40, 1], Width::W64),
        Err(ProtoError::Malformed { index: 1 })
    );
    let res = NpuGemmResult {
        mismatches: 0,
        fault_kind: 1,
        fault_iova: 0x1_0000,
        npu_start: 10,
        npu_end: 50,
        cpu_start: 20,
        cpu_end: 70,
        cycles: 123,
        counter_hz: 1_000_000_000,
    };
    assert_eq!(res.overlap_ticks(), 30);
    let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
    Response::NpuGemm(res).encode(&mut out, Width::W64).unwrap();
    assert_eq!(
        Response::decode(&out, Width::W64, Command::NpuGemm),
        Ok(Response::NpuGemm(res))
    );
    let sw = NpuSwitch {
        ticks: 5,
        switches: 2,
        jobs: 1,
    };
    Response::NpuSwitched(sw)
        .encode(&mut out, Width::W64)
        .unwrap();
    assert_eq!(
        Response::decode(&out, Width::W64, Command::NpuRelease),
        Ok(Response::NpuSwitched(sw))
    );
    let e = Response::error(ProtoError::Npu(NpuFault::NotIdle));
    e.encode(&mut out, Width::W64).unwrap();
    assert_eq!(out[..2], [Status::Npu as u64, NpuFault::NotIdle as u64]);
    assert_eq!(NpuFault::from_u64(4), Some(NpuFault::NotIdle));
}
