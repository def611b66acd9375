extern crate std;
use super::*;
use crate::manifest::{Region, SpManifest};
use crate::memshare::tests::FakeHw;
use FuncId as F;
use ffa::memory::MemRange;
use std::string::String;
use std::vec::Vec;

const CELLS: [u32; 4] = [0x1234_5678, 0x9abc_def0, 0x1122_3344, 0x5566_7788];
const UUID: Uuid = Uuid::from_cells(CELLS);
const NW_TX: u64 = 0x4010_0000;
const NW_RX: u64 = 0x4010_1000;
const SUCCESS32: u64 = F::Success32 as u64;

struct Mem {
    base: u64,
    bytes: Vec<u8>,
    hw: FakeHw,
}
impl MemHw for Mem {
    fn sp_map(&mut self, r: &MemRange, w: bool, x: bool) -> Result<(), memshare::HwError> {
        self.hw.sp_map(r, w, x)
    }
    fn sp_unmap(&mut self, r: &MemRange) {
        self.hw.sp_unmap(r)
    }
    fn nw_revoke(&mut self, r: &MemRange, why: memshare::Revoked) -> Result<(), memshare::HwError> {
        self.hw.nw_revoke(r, why)
    }
    fn nw_restore(&mut self, r: &MemRange) {
        self.hw.nw_restore(r)
    }
    fn zero(&mut self, r: &MemRange) {
        self.hw.zero(r)
    }
}
impl GuestMem for Mem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        let off = (pa - self.base) as usize;
        buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
        true
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> bool {
        let Some(off) = pa.checked_sub(self.base).map(|o| o as usize) else {
            return false;
        };
        match self.bytes.get_mut(off..off + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}
fn mem() -> Mem {
    Mem {
        base: NW_TX,
        bytes: std::vec![0; 0x2000],
        hw: FakeHw::default(),
    }
}

fn manifest(messaging: u32, uuids: &[Uuid]) -> SpManifest {
    let mut u = [Uuid::NIL; manifest::MAX_UUIDS];
    u[..uuids.len()].copy_from_slice(uuids);
    SpManifest {
        uuids: u,
        uuid_count: uuids.len(),
        id: Some(0x8001),
        ffa_version: 0x10002,
        exec_ctx_count: 1,
        load_address: 0x0e30_0000,
        entrypoint_offset: 0x4000,
        messaging_method: messaging,
        gp_register_num: Some(0),
        boot_info_manifest: true,
        regions: [Region {
            name: Default::default(),
            base: 0,
            pages: 0,
            attributes: 0,
            device: false,
            interrupt: None,
        }; manifest::MAX_REGIONS],
        region_count: 0,
    }
}

fn spmc_with(messaging: u32, uuids: &[Uuid]) -> Spmc {
    let mut s = Spmc::new(Some(SpInfo {
        id: 0x8001,
        manifest: manifest(messaging, uuids),
        pkg_base: 0x0e30_0000,
        pkg_size: 0x10_0000,
    }));
    s.sp_state = SpState::Waiting;
    // A normal world that negotiated v1.2, as every client does first.
    s.nw_ep.negotiated = true;
    s
}

fn spmc(messaging: u32) -> Spmc {
    spmc_with(messaging, &[UUID])
}

fn call(fid: FuncId, args: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[0] = u64::from(fid as u32);
    r[1..=args.len()].copy_from_slice(args);
    r
}

fn nw(s: &mut Spmc, r: Regs) -> Regs {
    match s.nw_call(&r, &mut mem()) {
        NwAction::Reply(o) => o,
        NwAction::RunSp(_) => panic!("expected an immediate reply"),
    }
}

fn sp(s: &mut Spmc, r: Regs) -> SpAction {
    s.sp_call(&r, &mut mem(), &mut String::new())
}

fn sp_reply(s: &mut Spmc, r: Regs) -> Regs {
    match sp(s, r) {
        SpAction::Resume { regs, .. } => regs,
        other => panic!("expected the SP to be resumed, got {other:?}"),
    }
}

/// The FF-A error code of an FFA_ERROR reply.
fn err(r: &Regs) -> Option<i32> {
    (r[0] as u32 == F::Error as u32).then_some(r[2] as u32 as i32)
}

#[test]
fn ffa_range() {
    assert!(is_ffa_fid(F::Version as u32));
    assert!(is_ffa_fid(F::MsgSendDirectReq2 as u32));
    assert!(is_ffa_fid(0x8400_00FF));
    assert!(!is_ffa_fid(0x8400_0008), "PSCI SYSTEM_OFF");
    assert!(!is_ffa_fid(0xC200_FF00), "testbed exit");
    assert!(!is_ffa_fid(0x8400_0100));
    assert!(!is_ffa_fid(0x8500_0063));
}

#[test]
fn non_ffa_smc_from_the_sp_is_unknown_to_smccc() {
    let mut s = spmc(0x203);
    let mut psci = [0u64; 18];
    psci[..3].copy_from_slice(&[0x8400_0000, 7, 8]);
    let out = sp_reply(&mut s, psci);
    assert_eq!(out[..3], [u64::MAX, 7, 8]);
    assert!(!s.sp_ep.version_locked, "not an FF-A call");
}

#[test]
fn version_negotiation_and_lock() {
    let mut s = spmc(0x203);
    assert_eq!(nw(&mut s, call(F::Version, &[0x10001]))[0], 0x10003);
    assert_eq!(s.nw_ep.version, Version::V1_1);
    // Still renegotiable before any other call.
    assert_eq!(nw(&mut s, call(F::Version, &[0x10002]))[0], 0x10003);
    for bad in [0x2_0000, 0x1_0003, 0x8001_0002] {
        assert_eq!(
            nw(&mut s, call(F::Version, &[bad]))[0] as u32 as i32,
            -1,
            "{bad:#x}"
        );
    }
    nw(&mut s, call(F::IdGet, &[]));
    assert_eq!(nw(&mut s, call(F::Version, &[0x10002]))[0], 0x10003);
    assert_eq!(
        nw(&mut s, call(F::Version, &[0x10001]))[0] as u32 as i32,
        -1,
        "locked after ID_GET"
    );
    // The SP's lock is its own.
    assert_eq!(sp_reply(&mut s, call(F::Version, &[0x10001]))[0], 0x10003);
}

#[test]
fn ids_and_features() {
    let mut s = spmc(0x203);
    let id = nw(&mut s, call(F::IdGet, &[]));
    assert_eq!((id[0], id[2]), (SUCCESS32, 0));
    assert_eq!(sp_reply(&mut s, call(F::IdGet, &[]))[2], 0x8001);
    assert_eq!(sp_reply(&mut s, call(F::SpmIdGet, &[]))[2], 0x8000);
    assert_eq!(err(&nw(&mut s, call(F::IdGet, &[1]))), Some(-2), "w1 MBZ");
    let feat = |s: &mut Spmc, c: Caller, id: u32, input: u64| {
        let r = call(F::Features, &[u64::from(id), input]);
        match c {
            Caller::Nw => nw(s, r),
            Caller::Sp => sp_reply(s, r),
        }
    };
    let req32 = F::MsgSendDirectReq32 as u32;
    assert_eq!(feat(&mut s, Caller::Nw, req32, 0)[0], SUCCESS32);
    assert_eq!(err(&feat(&mut s, Caller::Sp, req32, 0)), Some(-1));
    assert_eq!(
        err(&feat(&mut s, Caller::Nw, F::MsgWait as u32, 0)),
        Some(-1)
    );
    assert_eq!(feat(&mut s, Caller::Sp, F::MsgWait as u32, 0)[0], SUCCESS32);
    let retrieve = F::MemRetrieveReq64 as u32;
    assert_eq!(
        err(&feat(&mut s, Caller::Sp, retrieve, 0)),
        Some(-1),
        "bit 1 rule"
    );
    let ok = feat(&mut s, Caller::Sp, retrieve, 0b10);
    assert_eq!((ok[0], ok[2]), (SUCCESS32, 0b10), "NS bit; TX buffer only");
    assert_eq!(err(&feat(&mut s, Caller::Nw, retrieve, 0b10)), Some(-1));
    assert_eq!(
        err(&feat(&mut s, Caller::Nw, 0x1, 0)),
        Some(-1),
        "feature ID NPI"
    );
    assert_eq!(err(&feat(&mut s, Caller::Nw, 0x8400_00FE, 0)), Some(-1));
    assert_eq!(
        err(&feat(&mut s, Caller::Nw, F::RxTxMap32 as u32, 0)),
        Some(-1)
    );
    assert_eq!(feat(&mut s, Caller::Nw, F::RxTxMap64 as u32, 0)[2], 1 << 16);
}

#[test]
fn rxtx_map_checks() {
    let mut s = spmc(0x203);
    let map = |tx, rx, n| call(F::RxTxMap64, &[tx, rx, n]);
    assert_eq!(
        err(&nw(&mut s, map(NW_TX, NW_RX, 2))),
        Some(-2),
        "one page only"
    );
    assert_eq!(err(&nw(&mut s, map(NW_TX + 8, NW_RX, 1))), Some(-2));
    assert_eq!(err(&nw(&mut s, map(NW_TX, NW_TX, 1))), Some(-2), "overlap");
    assert_eq!(
        err(&nw(&mut s, map(0x0e30_0000, NW_RX, 1))),
        Some(-2),
        "secure"
    );
    let reserved = testbed_layout::ns_ram::TESTBED_NS_BASE;
    assert_eq!(
        err(&nw(&mut s, map(reserved, NW_RX, 1))),
        Some(-2),
        "the testbed's NS region"
    );
    assert_eq!(
        err(&nw(&mut s, map(NW_TX, NW_RX, 1 | 1 << 6))),
        Some(-2),
        "MBZ"
    );
    let map32 = call(F::RxTxMap32, &[NW_TX, NW_RX, 1]);
    assert_eq!(
        err(&nw(&mut s, map32)),
        Some(-1),
        "Hafnium: RXTX_MAP_64 only"
    );
    assert_eq!(nw(&mut s, map(NW_TX, NW_RX, 1))[0], SUCCESS32);
    assert_eq!(
        err(&nw(&mut s, map(NW_TX, NW_RX, 1))),
        Some(-6),
        "mapped twice"
    );
    assert_eq!(err(&nw(&mut s, call(F::RxTxUnmap, &[1]))), Some(-2), "MBZ");
    assert_eq!(
        err(&nw(&mut s, call(F::RxTxUnmap, &[5 << 16]))),
        Some(-2),
        "not mine"
    );
    assert_eq!(nw(&mut s, call(F::RxTxUnmap, &[0]))[0], SUCCESS32);
    assert_eq!(err(&nw(&mut s, call(F::RxTxUnmap, &[0]))), Some(-2));
    // The SP's buffers must be its own secure memory.
    assert_eq!(err(&sp_reply(&mut s, map(NW_TX, NW_RX, 1))), Some(-2));
    let ok = sp_reply(&mut s, map(0x0e3f_0000, 0x0e3f_1000, 1));
    assert_eq!(ok[0], SUCCESS32);
    // An RW memory region of the SP, even an NS one, holds buffers; an RO one does not.
    let mut s = spmc(0x203);
    let sp_info = s.sp.as_mut().unwrap();
    sp_info.manifest.regions[0] = Region {
        name: Default::default(),
        base: 0x4200_0000,
        pages: 2,
        attributes: 0xb,
        device: false,
        interrupt: None,
    };
    sp_info.manifest.regions[1] = Region {
        name: Default::default(),
        base: 0x4300_0000,
        pages: 2,
        attributes: 0x9,
        device: false,
        interrupt: None,
    };
    sp_info.manifest.region_count = 2;
    let ro = map(0x4300_0000, 0x4300_1000, 1);
    assert_eq!(err(&sp_reply(&mut s, ro)), Some(-2), "read-only region");
    let ns = map(0x4200_0000, 0x4200_1000, 1);
    assert_eq!(sp_reply(&mut s, ns)[0], SUCCESS32);
}

#[test]
fn partition_info_get_by_uuid_nil_and_count() {
    let mut s = spmc(0x203);
    let by = |u: Uuid, flags: u64| {
        let w = u.to_cells().map(u64::from);
        call(F::PartitionInfoGet, &[w[0], w[1], w[2], w[3], flags])
    };
    assert_eq!(err(&nw(&mut s, by(UUID, 0))), Some(-4), "no RX buffer yet");
    let count = nw(&mut s, by(Uuid::NIL, 1));
    assert_eq!((count[0], count[2]), (SUCCESS32, 1));
    assert_eq!(
        err(&nw(&mut s, by(Uuid::from_cells([1, 2, 3, 4]), 1))),
        Some(-2)
    );
    assert_eq!(err(&nw(&mut s, by(UUID, 2))), Some(-2), "flags MBZ");
    nw(&mut s, call(F::RxTxMap64, &[NW_TX, NW_RX, 1]));
    let mut m = mem();
    let NwAction::Reply(r) = s.nw_call(&by(Uuid::NIL, 0), &mut m) else {
        panic!()
    };
    assert_eq!(
        (r[0], r[2], r[3]),
        (SUCCESS32, 1, 48),
        "Hafnium's 48-byte form"
    );
    assert_eq!(
        &m.bytes[0x1028..0x102c],
        &0x10002u32.to_le_bytes(),
        "SP version"
    );
    let d = PartitionInfo::from_bytes(m.bytes[0x1000..0x1018].try_into().unwrap());
    assert_eq!((d.id, d.exec_ctx_count), (0x8001, 1));
    assert_eq!(
        d.properties.0,
        0x201 | Props::AARCH64,
        "no send bit for the NW (Hafnium `ffa_setup_partition_properties`)"
    );
    assert_eq!(d.uuid, UUID, "a nil query reports the UUID");
    assert_eq!(err(&nw(&mut s, by(UUID, 0))), Some(-4), "RX still full");
    assert_eq!(nw(&mut s, call(F::RxRelease, &[]))[0], SUCCESS32);
    assert_eq!(err(&nw(&mut s, call(F::RxRelease, &[]))), Some(-6));
    let mut m = mem();
    let NwAction::Reply(r) = s.nw_call(&by(UUID, 0), &mut m) else {
        panic!()
    };
    assert_eq!(r[2], 1);
    assert_eq!(
        &m.bytes[0x1008..0x1018],
        &[0u8; 16],
        "UUID MBZ for a UUID query"
    );
}

#[test]
fn partition_info_versions_and_uuids() {
    let other = Uuid::from_cells([1, 2, 3, 4]);
    let mut s = spmc_with(0x203, &[UUID, other]);
    nw(&mut s, call(F::Version, &[0x10000]));
    nw(&mut s, call(F::RxTxMap64, &[NW_TX, NW_RX, 1]));
    let mut m = mem();
    let NwAction::Reply(r) = s.nw_call(&call(F::PartitionInfoGet, &[0, 0, 0, 0, 0]), &mut m) else {
        panic!()
    };
    assert_eq!((r[2], r[3]), (1, 8), "v1.0: one 8-byte entry per partition");
    assert_eq!(&m.bytes[0x1000..0x1002], &[0x01, 0x80]);
    let mut s = spmc_with(0x203, &[UUID, other]);
    let count = nw(&mut s, call(F::PartitionInfoGet, &[0, 0, 0, 0, 1]));
    assert_eq!(count[2], 2, "v1.2: one entry per UUID");
    let (lo, hi) = other.to_u64_pair();
    let r = nw(&mut s, call(F::PartitionInfoGetRegs, &[lo, hi, 0]));
    assert_eq!(r[0], F::Success64 as u64);
    assert_eq!(r[2] & 0xffff, 0, "last index");
    assert_eq!(r[2] >> 48, 48, "descriptor size (Hafnium v2.15)");
    assert_eq!(r[8], 0x10002, "the SP's FF-A version in the sixth register");
    assert_eq!(r[3] & 0xffff, 0x8001);
    assert_eq!((r[4], r[5]), (0, 0), "UUID only for a nil query");
    let r = nw(&mut s, call(F::PartitionInfoGetRegs, &[0, 0, 0]));
    assert_eq!(
        (r[2] & 0xffff, (r[2] >> 16) & 0xffff),
        (1, 1),
        "both in one call"
    );
    assert_eq!(
        (r[9] & 0xffff, r[10], r[11]),
        (0x8001, lo, hi),
        "six registers on"
    );
    let r = nw(&mut s, call(F::PartitionInfoGetRegs, &[0, 0, 1]));
    assert_eq!((r[2] & 0xffff, (r[2] >> 16) & 0xffff), (1, 1));
    assert_eq!((r[4], r[5]), (lo, hi));
    let past = call(F::PartitionInfoGetRegs, &[0, 0, 2]);
    assert_eq!(err(&nw(&mut s, past)), Some(-2), "start index past the end");
    let tag = call(F::PartitionInfoGetRegs, &[0, 0, 1 << 16]);
    assert_eq!(err(&nw(&mut s, tag)), Some(-7), "tags: RETRY");
}

#[test]
fn direct_request_round_trip_and_errors() {
    let mut s = spmc(0x203);
    let req = call(F::MsgSendDirectReq32, &[0x8001, 0, 0x1_0000_0007, 8]);
    let NwAction::RunSp(to_sp) = s.nw_call(&req, &mut mem()) else {
        panic!()
    };
    assert_eq!(
        (to_sp[1], to_sp[3], to_sp[4]),
        (0x8001, 7, 8),
        "SMC32: w registers"
    );
    let again = call(F::MsgSendDirectReq32, &[0x8001]);
    assert_eq!(err(&nw(&mut s, again)), Some(-4), "SP busy");
    let resp = |ids: u64, fid| call(fid, &[ids, 0, 8]);
    let wrong_dst = resp(0x8001_0005, F::MsgSendDirectResp32);
    assert_eq!(err(&sp_reply(&mut s, wrong_dst)), Some(-2));
    let resp2 = call(F::MsgSendDirectResp2, &[0x8001_0000, 0, 0, 8]);
    assert_eq!(err(&sp_reply(&mut s, resp2)), Some(-6), "RESP2 for a REQ");
    let SpAction::ToNw(out) = sp(&mut s, resp(0x8001_0000, F::MsgSendDirectResp32)) else {
        panic!()
    };
    assert_eq!(
        (out[0], out[1], out[3]),
        (F::MsgSendDirectResp32 as u64, 0x8001_0000, 8)
    );
    assert_eq!(s.sp_state, SpState::Waiting);
    let late = resp(0x8001_0000, F::MsgSendDirectResp32);
    assert_eq!(err(&sp_reply(&mut s, late)), Some(-6), "no request pending");
    let bad_src = resp(0x8002_0000, F::MsgSendDirectResp32);
    assert_eq!(
        err(&sp_reply(&mut s, bad_src)),
        Some(-2),
        "arguments before state"
    );
    // Hafnium: x8-x17 must be zero in a v1.2 caller's DIRECT_RESP (not in RESP2).
    let NwAction::RunSp(_) = s.nw_call(&req, &mut mem()) else {
        panic!()
    };
    let mut dirty = resp(0x8001_0000, F::MsgSendDirectResp64);
    dirty[9] = 1;
    assert_eq!(err(&sp_reply(&mut s, dirty)), Some(-2), "x9 not zero");
    s.sp_ep.version = Version::V1_1;
    assert!(
        matches!(sp(&mut s, dirty), SpAction::ToNw(_)),
        "v1.1: x8-x17 ignored"
    );
    for (r, e) in [
        (call(F::MsgSendDirectReq32, &[0x8002, 0, 1]), -2),
        (call(F::MsgSendDirectReq32, &[0x0005_8001]), -2),
        (call(F::MsgSendDirectReq64, &[0x8001, 1]), -2),
        (call(F::MsgSendDirectReq64, &[0x8001, 1 << 31 | 1]), -2),
        (call(F::MsgSendDirectReq2, &[0x8001, 5, 6]), -2),
        (call(F::MsgWait, &[]), -1),
        (call(F::Yield, &[]), -1),
        (call(F::MemShare64, &[]), -2),
        (call(F::MemRetrieveReq32, &[]), -1),
    ] {
        assert_eq!(err(&nw(&mut s, r)), Some(e), "{r:x?}");
    }
    let mut unknown = [0u64; 18];
    unknown[0] = 0x8400_00F0;
    assert_eq!(err(&nw(&mut s, unknown)), Some(-1));
}

#[test]
fn req2_needs_a_caller_that_negotiated_v1_2() {
    let (lo, hi) = UUID.to_u64_pair();
    let req2 = call(F::MsgSendDirectReq2, &[0x8001, lo, hi]);
    let mut s = spmc(0x201);
    s.nw_ep.negotiated = false;
    assert_eq!(
        err(&nw(&mut s, req2)),
        Some(-1),
        "never negotiated: NOT_SUPPORTED"
    );
    let mut s = spmc(0x201);
    s.nw_ep.negotiated = false;
    let v = nw(
        &mut s,
        call(F::Version, &[u64::from(Version::V1_1.to_u32())]),
    );
    assert_eq!(v[0], u64::from(REPORTED_VERSION.to_u32()));
    assert_eq!(
        err(&nw(&mut s, req2)),
        Some(-1),
        "v1.1 caller: NOT_SUPPORTED"
    );
    let mut s = spmc(0x201);
    s.nw_ep.negotiated = false;
    nw(
        &mut s,
        call(F::Version, &[u64::from(Version::V1_2.to_u32())]),
    );
    assert!(
        matches!(s.nw_call(&req2, &mut mem()), NwAction::RunSp(_)),
        "v1.2: delivered"
    );
}

#[test]
fn req2_uuid_and_messaging_method() {
    let (lo, hi) = UUID.to_u64_pair();
    let mut s = spmc(0x003);
    let req2 = call(F::MsgSendDirectReq2, &[0x8001, lo, hi]);
    assert_eq!(err(&nw(&mut s, req2)), Some(-6), "no bit 9: DENIED");
    let mut s = spmc(0x200);
    let req = call(F::MsgSendDirectReq64, &[0x8001]);
    assert_eq!(err(&nw(&mut s, req)), Some(-6), "no bit 0: DENIED");
    let mut req = call(F::MsgSendDirectReq2, &[0x8001, lo, hi, 4]);
    req[17] = 17;
    let NwAction::RunSp(to_sp) = s.nw_call(&req, &mut mem()) else {
        panic!()
    };
    assert_eq!((to_sp[2], to_sp[17]), (lo, 17), "UUID and x4-x17 delivered");
    let mut resp = call(F::MsgSendDirectResp2, &[0x8001_0000, 0, 0, 40]);
    resp[17] = 170;
    let SpAction::ToNw(out) = sp(&mut s, resp) else {
        panic!()
    };
    assert_eq!((out[4], out[17]), (40, 170));
    let bad = call(F::MsgSendDirectResp2, &[0x8001_0000, 1]);
    s.sp_state = SpState::Running {
        from: 0,
        kind: ReqKind::Direct2,
    };
    assert_eq!(err(&sp_reply(&mut s, bad)), Some(-2), "RESP2 x2 MBZ");
    s.sp_state = SpState::Waiting;
    // Nil UUID matches any of the SP's UUIDs (Hafnium `ffa_uuid_find`).
    let nil = call(F::MsgSendDirectReq2, &[0x8001, 0, 0]);
    assert!(matches!(s.nw_call(&nil, &mut mem()), NwAction::RunSp(_)));
}

#[test]
fn abort_answers_pending_and_later_requests() {
    let mut s = spmc(0x203);
    let req = call(F::MsgSendDirectReq64, &[0x8001]);
    assert!(matches!(s.nw_call(&req, &mut mem()), NwAction::RunSp(_)));
    let reason = AbortReason::Exception {
        esr: 0x9600_0000,
        far: 0,
        elr: 0,
    };
    assert_eq!(
        s.abort(reason),
        SpAction::Aborted {
            reason,
            reply: Some(error(FfaError::Aborted))
        }
    );
    assert_eq!(err(&nw(&mut s, req)), Some(-8));
    // At init, FFA_ERROR aborts with no one to answer, whatever its code.
    let mut s = spmc(0x203);
    s.sp_state = SpState::Init;
    assert_eq!(
        sp(&mut s, call(F::Error, &[0, 0xffff_ff00])),
        SpAction::Aborted {
            reason: AbortReason::FfaError(-256),
            reply: None
        }
    );
    // FFA_ABORT from a v1.2 SP: NOT_SUPPORTED (Hafnium `api_ffa_abort`, v1.3 SPs only);
    // the SP then ends with FFA_ERROR, which answers the requester.
    let mut s = spmc(0x203);
    assert!(matches!(s.nw_call(&req, &mut mem()), NwAction::RunSp(_)));
    assert_eq!(err(&sp_reply(&mut s, call(F::Abort32, &[0, 7]))), Some(-1));
    assert!(
        matches!(s.sp_state, SpState::Running { .. }),
        "still running"
    );
    assert_eq!(
        sp(&mut s, call(F::Error, &[0, 0xffff_fff8])),
        SpAction::Aborted {
            reason: AbortReason::FfaError(-8),
            reply: Some(error(FfaError::Aborted))
        }
    );
    // From a v1.3 SP, FFA_ABORT while handling a request answers the requester.
    let mut s = spmc(0x203);
    s.sp_ep.version = Version::V1_3;
    assert!(matches!(s.nw_call(&req, &mut mem()), NwAction::RunSp(_)));
    assert_eq!(
        sp(&mut s, call(F::Abort32, &[0, 7])),
        SpAction::Aborted {
            reason: AbortReason::FfaAbort(7),
            reply: Some(error(FfaError::Aborted))
        }
    );
}

#[test]
fn msg_wait_and_console() {
    let mut s = spmc(0x203);
    s.sp_state = SpState::Init;
    let mut out = String::new();
    let mut log = |s: &mut Spmc, text: &[u8]| {
        let c = Call::ConsoleLog {
            chars: ffa::ConsoleLogChars::new64(text).unwrap(),
        };
        s.sp_call(&c.to_regs(), &mut mem(), &mut out)
    };
    log(&mut s, b"hello ");
    log(&mut s, b"world\nsecond");
    let too_long = call(F::ConsoleLog32, &[25]);
    assert_eq!(err(&sp_reply(&mut s, too_long)), Some(-2));
    assert_eq!(out, "[8001 0] hello world\n");
    let flags = call(F::MsgWait, &[0, 2]);
    assert_eq!(err(&sp_reply(&mut s, flags)), Some(-2), "flags MBZ");
    // The SP fills its RX with partition info, then waits: the RX goes back to the SPMC.
    sp_reply(&mut s, call(F::RxTxMap64, &[0x0e3f_0000, 0x0e3f_1000, 1]));
    let mut m = Mem {
        base: 0x0e3f_0000,
        bytes: std::vec![0; 0x2000],
        hw: FakeHw::default(),
    };
    let info = call(F::PartitionInfoGet, &[0, 0, 0, 0, 0]);
    assert!(matches!(
        s.sp_call(&info, &mut m, &mut String::new()),
        SpAction::Resume { .. }
    ));
    assert_eq!(s.sp_ep.mailbox.map(|m| m.rx_full), Some(true));
    assert_eq!(sp(&mut s, call(F::MsgWait, &[])), SpAction::InitDone);
    assert_eq!(s.sp_state, SpState::Waiting);
    assert_eq!(s.sp_ep.mailbox.map(|m| m.rx_full), Some(false));
    let again = call(F::MsgWait, &[]);
    assert_eq!(err(&sp_reply(&mut s, again)), Some(-6), "only at init here");
}

/// Sparse guest memory (any address) with the stage-2 model.
#[derive(Default)]
struct Sparse {
    pages: std::collections::BTreeMap<u64, [u8; 4096]>,
    hw: FakeHw,
}
impl Sparse {
    fn put(&mut self, pa: u64, data: &[u8]) {
        assert!(self.write(pa, data));
    }
    fn get(&self, pa: u64, len: usize) -> Vec<u8> {
        let mut v = std::vec![0; len];
        assert!(self.read(pa, &mut v));
        v
    }
}
impl GuestMem for Sparse {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = pa + i as u64;
            *b = self
                .pages
                .get(&(a & !0xfff))
                .map_or(0, |p| p[(a & 0xfff) as usize]);
        }
        true
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> bool {
        for (i, b) in data.iter().enumerate() {
            let a = pa + i as u64;
            self.pages.entry(a & !0xfff).or_insert([0; 4096])[(a & 0xfff) as usize] = *b;
        }
        true
    }
}
impl MemHw for Sparse {
    fn sp_map(&mut self, r: &MemRange, w: bool, x: bool) -> Result<(), memshare::HwError> {
        self.hw.sp_map(r, w, x)
    }
    fn sp_unmap(&mut self, r: &MemRange) {
        self.hw.sp_unmap(r)
    }
    fn nw_revoke(&mut self, r: &MemRange, why: memshare::Revoked) -> Result<(), memshare::HwError> {
        self.hw.nw_revoke(r, why)
    }
    fn nw_restore(&mut self, r: &MemRange) {
        self.hw.nw_restore(r)
    }
    fn zero(&mut self, r: &MemRange) {
        self.hw.zero(r)
    }
}

#[test]
fn memory_calls_through_the_buffers() {
    use ffa::memory::{
        DataAccess, DescKind, Emad, EmadSize, FragmentAssembler, InstructionAccess, MemAccessPerm,
        MemFlags, MemRegionAttributes, MemRelinquishDesc, MemTransaction, ParseOptions,
        TransactionType,
    };
    let (sp_tx, sp_rx) = (0x0e3f_0000u64, 0x0e3f_1000u64);
    let mut s = spmc(0x203);
    let mut m = Sparse::default();
    let nwc = |s: &mut Spmc, m: &mut Sparse, c: Call| match s.nw_call(&c.to_regs(), m) {
        NwAction::Reply(r) => r,
        NwAction::RunSp(_) => panic!(),
    };
    let spc = |s: &mut Spmc, m: &mut Sparse, c: Call| match s.sp_call(
        &c.to_regs(),
        m,
        &mut String::new(),
    ) {
        SpAction::Resume { regs, .. } => regs,
        other => panic!("{other:?}"),
    };
    let tx = |len: usize| MemOpArgs {
        total_len: len as u32,
        frag_len: len as u32,
        buf: MemOpBuf::Tx32,
    };
    // FEATURES: sends and reclaim for the NW, retrieve and relinquish for the SP.
    let feat = |id: FuncId| Call::Features {
        feature_id: id as u32,
        input_properties: 0,
    };
    for (f, nw_ok, sp_ok) in [
        (F::MemShare32, true, false),
        (F::MemLend64, true, false),
        (F::MemDonate32, true, false),
        (F::MemReclaim, true, false),
        (F::MemRelinquish, false, true),
        (F::MemFragRx, true, true),
        (F::MemFragTx, true, true),
        (F::MemRetrieveReq64, false, false), // v1.2 SP: input bit 1 required
    ] {
        assert_eq!(
            nwc(&mut s, &mut m, feat(f))[0] == SUCCESS32,
            nw_ok,
            "{f:?} NW"
        );
        assert_eq!(
            spc(&mut s, &mut m, feat(f))[0] == SUCCESS32,
            sp_ok,
            "{f:?} SP"
        );
    }

    let perm = MemAccessPerm {
        endpoint_id: 0x8001,
        data_access: DataAccess::ReadWrite,
        instruction_access: InstructionAccess::NotSpecified,
        non_retrieval_borrower: false,
    };
    let desc = |n: u64| MemTransaction {
        sender_id: 0,
        attributes: MemRegionAttributes::NORMAL_WB_INNER,
        flags: MemFlags(0),
        handle: Handle(0),
        tag: 0,
        emad_size: EmadSize::V1_2,
        receivers: std::vec![Emad::new(perm)],
        ranges: (0..n)
            .map(|i| MemRange {
                address: 0x4800_0000 + i * 0x2000,
                page_count: 1,
            })
            .collect(),
    };
    let share = desc(2).to_vec(DescKind::Send(SendKind::Share)).unwrap();
    let share_call = Call::MemShare(tx(share.len()));
    assert_eq!(
        err(&nwc(&mut s, &mut m, share_call)),
        Some(-2),
        "no TX buffer"
    );
    nwc(
        &mut s,
        &mut m,
        Call::RxTxMap {
            addr: RxTxAddr::Addr64 {
                tx: NW_TX,
                rx: NW_RX,
            },
            page_count: ffa::RxTxPageCount::new(1).unwrap(),
        },
    );
    m.put(NW_TX, &share);
    let by_addr = Call::MemShare(MemOpArgs {
        buf: MemOpBuf::Buf64 {
            addr: 0x4900_0000,
            page_count: 1,
        },
        ..tx(share.len())
    });
    assert_eq!(
        err(&nwc(&mut s, &mut m, by_addr)),
        Some(-2),
        "TX buffer only"
    );
    let longer = Call::MemShare(MemOpArgs {
        frag_len: share.len() as u32 + 16,
        ..tx(share.len())
    });
    assert_eq!(
        err(&nwc(&mut s, &mut m, longer)),
        Some(-2),
        "fragment > total"
    );
    let ok = nwc(&mut s, &mut m, share_call);
    assert_eq!(ok[0], SUCCESS32);
    let h = Handle::from_halves(ok[2] as u32, ok[3] as u32);
    assert_eq!(h.0 >> 63, 0, "SPMC-allocated handle");

    // SP retrieve: BUSY while its RX holds a message, then the response in RX.
    spc(
        &mut s,
        &mut m,
        Call::RxTxMap {
            addr: RxTxAddr::Addr64 {
                tx: sp_tx,
                rx: sp_rx,
            },
            page_count: ffa::RxTxPageCount::new(1).unwrap(),
        },
    );
    let mut rp = perm;
    rp.data_access = DataAccess::NotSpecified;
    let req = MemTransaction::retrieve_request(h, 0, rp, TransactionType::Share, 0, EmadSize::V1_2)
        .to_vec(DescKind::RetrieveReq)
        .unwrap();
    m.put(sp_tx, &req);
    s.sp_ep.mailbox.as_mut().unwrap().rx_full = true;
    let retrieve = Call::MemRetrieveReq(tx(req.len()));
    assert_eq!(err(&spc(&mut s, &mut m, retrieve)), Some(-4), "RX busy");
    assert!(m.hw.sp.is_empty(), "nothing mapped on BUSY");
    assert_eq!(
        spc(&mut s, &mut m, Call::RxRelease { vm_id: 0 })[0],
        SUCCESS32
    );
    let r = spc(&mut s, &mut m, retrieve);
    assert_eq!(r[0], F::MemRetrieveResp as u64);
    assert_eq!(r[1], r[2], "one fragment");
    let resp = MemTransaction::parse(
        &m.get(sp_rx, r[2] as usize),
        DescKind::RetrieveResp,
        ParseOptions::default(),
    )
    .unwrap();
    assert_eq!((resp.handle, resp.ranges.len()), (h, 2));
    assert!(resp.attributes.ns);
    assert_eq!(s.sp_ep.mailbox.map(|b| b.rx_full), Some(true));
    assert_eq!(m.hw.sp.len(), 2);
    spc(&mut s, &mut m, Call::RxRelease { vm_id: 0 });

    // A fragmented lend: FRAG_RX/FRAG_TX both ways.
    let lend = desc(400);
    let mut l = lend.clone();
    // Hafnium: a single-borrower lend leaves the memory type unspecified.
    l.attributes.mem_type = ffa::memory::MemType::Unspecified;
    for r in &mut l.ranges {
        r.address += 0x1000;
    }
    l.attributes = MemRegionAttributes::for_send(SendKind::Lend, 1);
    let lb = l.to_vec(DescKind::Send(SendKind::Lend)).unwrap();
    let mut plan = ffa::memory::plan_fragments(lb.len(), 96, 4096).unwrap();
    let (_, first) = plan.next().unwrap();
    m.put(NW_TX, &lb[..first]);
    let r = nwc(
        &mut s,
        &mut m,
        Call::MemLend(MemOpArgs {
            total_len: lb.len() as u32,
            frag_len: first as u32,
            buf: MemOpBuf::Tx64,
        }),
    );
    assert_eq!(r[0], F::MemFragRx as u64);
    let hl = Handle::from_halves(r[1] as u32, r[2] as u32);
    assert_eq!(r[3] as usize, first);
    let mut last = [0u64; 18];
    for (i, (o, len)) in plan.enumerate() {
        m.put(NW_TX, &lb[o..o + len]);
        // w4[31:16] from the NW is a hypervisor's sender ID, which Hafnium ignores
        // (`api_ffa_mem_frag_tx` checks it at the SP's instance only).
        last = nwc(
            &mut s,
            &mut m,
            Call::MemFragTx {
                handle: hl,
                frag_len: len as u32,
                endpoint_id: if i == 0 { 5 } else { 0 },
            },
        );
        assert_ne!(err(&last), Some(-2), "fragment {i}");
    }
    assert_eq!(
        (last[0], last[2], last[3]),
        (SUCCESS32, hl.0 & 0xffff_ffff, hl.0 >> 32)
    );
    assert_eq!(m.hw.nw_revoked.len(), 400);
    // A single-borrower lend's retriever names its instruction access (Hafnium).
    rp.instruction_access = InstructionAccess::NotExecutable;
    let req = MemTransaction::retrieve_request(hl, 0, rp, TransactionType::Lend, 0, EmadSize::V1_2)
        .to_vec(DescKind::RetrieveReq)
        .unwrap();
    m.put(sp_tx, &req);
    let r = spc(&mut s, &mut m, Call::MemRetrieveReq(tx(req.len())));
    assert_eq!(r[0], F::MemRetrieveResp as u64);
    assert!(r[1] > r[2], "fragmented response");
    let mut asm =
        FragmentAssembler::new(r[1] as u32, &m.get(sp_rx, r[2] as usize), 1 << 16).unwrap();
    let frag_rx = |off: usize| Call::MemFragRx {
        handle: hl,
        frag_offset: off as u32,
        endpoint_id: 0,
    };
    assert_eq!(
        err(&spc(&mut s, &mut m, frag_rx(asm.received()))),
        Some(-4),
        "RX not released"
    );
    while !asm.is_complete() {
        spc(&mut s, &mut m, Call::RxRelease { vm_id: 0 });
        assert_eq!(
            err(&spc(&mut s, &mut m, frag_rx(1))),
            Some(-2),
            "wrong offset"
        );
        let r = spc(&mut s, &mut m, frag_rx(asm.received()));
        assert_eq!(r[0], F::MemFragTx as u64);
        asm.push(&m.get(sp_rx, r[3] as usize)).unwrap();
    }
    spc(&mut s, &mut m, Call::RxRelease { vm_id: 0 });
    let whole = asm.finish().unwrap();
    // Hafnium's response attributes for a lend: the sender's (unspecified) plus NS.
    assert_eq!(u16::from_le_bytes([whole[2], whole[3]]), 0x40);
    let resp = crate::memshare::tests::parse_resp(&whole);
    assert_eq!(resp.ranges, l.ranges);
    assert_eq!(m.hw.sp.len(), 402);

    // Relinquish (descriptor in the SP's TX), reclaim by the owner only.
    let rel = |h| {
        let mut b = [0u8; 32];
        MemRelinquishDesc {
            handle: h,
            flags: 0,
            endpoints: std::vec![0x8001],
        }
        .encode(&mut b)
        .unwrap();
        b
    };
    let reclaim = |h| Call::MemReclaim {
        handle: h,
        flags: ffa::ReclaimFlags::default(),
    };
    assert_eq!(
        err(&nwc(&mut s, &mut m, reclaim(hl))),
        Some(-6),
        "retrieved"
    );
    m.put(sp_tx, &rel(hl));
    assert_eq!(spc(&mut s, &mut m, Call::MemRelinquish)[0], SUCCESS32);
    assert_eq!(
        err(&spc(&mut s, &mut m, Call::MemRelinquish)),
        Some(-2),
        "twice"
    );
    assert_eq!(
        err(&spc(&mut s, &mut m, reclaim(hl))),
        Some(-2),
        "SP is not the owner (Hafnium: INVALID_PARAMETERS)"
    );
    assert_eq!(nwc(&mut s, &mut m, reclaim(hl))[0], SUCCESS32);
    assert!(m.hw.nw_revoked.is_empty());
    m.put(sp_tx, &rel(h));
    assert_eq!(spc(&mut s, &mut m, Call::MemRelinquish)[0], SUCCESS32);
    assert_eq!(nwc(&mut s, &mut m, reclaim(h))[0], SUCCESS32);
    assert_eq!(s.mem.live(), 0);
    assert!(m.hw.sp.is_empty());
    // The SP sends nothing; the NW retrieves and relinquishes nothing.
    assert_eq!(err(&spc(&mut s, &mut m, Call::MemShare(tx(64)))), Some(-1));
    assert_eq!(
        err(&nwc(&mut s, &mut m, Call::MemRetrieveReq(tx(64)))),
        Some(-1)
    );
    assert_eq!(err(&nwc(&mut s, &mut m, Call::MemRelinquish)), Some(-1));
}

/// Hafnium v2.15's rules for SP-facing calls where the testbed was more lenient, and the
/// order of RXTX_MAP's checks.
#[test]
fn hafnium_sp_instance_rules() {
    let mut s = spmc(0x203);
    s.sp_state = SpState::Init;
    let feat = |s: &mut Spmc, id: F| sp_reply(s, call(F::Features, &[id as u64]));
    assert_eq!(
        err(&feat(&mut s, F::Abort32)),
        Some(-1),
        "FFA_ABORT: v1.3 SPs only"
    );
    assert_eq!(feat(&mut s, F::MsgWait)[0], SUCCESS32);
    // The SP's own ID in w1 of RX_RELEASE / RXTX_UNMAP: MBZ at its instance.
    sp_reply(&mut s, call(F::RxTxMap64, &[0x0e3f_0000, 0x0e3f_1000, 1]));
    assert_eq!(
        err(&sp_reply(&mut s, call(F::RxRelease, &[0x8001]))),
        Some(-2)
    );
    let unmap_own = call(F::RxTxUnmap, &[0x8001 << 16]);
    assert_eq!(err(&sp_reply(&mut s, unmap_own)), Some(-2));
    assert_eq!(
        err(&sp_reply(&mut s, call(F::RxRelease, &[]))),
        Some(-6),
        "empty"
    );
    // A second pair: DENIED even with bad arguments (checked first).
    let bad_map = call(F::RxTxMap64, &[0x0e3f_0008, 0x0e3f_1000, 2]);
    assert_eq!(err(&sp_reply(&mut s, bad_map)), Some(-6));
    // Partition info for the SP itself reports the send bits.
    let count = sp_reply(&mut s, call(F::PartitionInfoGetRegs, &[0, 0, 0]));
    assert_eq!((count[3] >> 32) as u32, 0x203 | Props::AARCH64);
    // CONSOLE_LOG_64 before v1.2: six registers, 48 characters.
    s.sp_ep.version = Version::V1_1;
    let c = Call::ConsoleLog {
        chars: ffa::ConsoleLogChars::new64(&[b'x'; 49]).unwrap(),
    };
    assert_eq!(
        err(&sp_reply(&mut s, c.to_regs())),
        Some(-2),
        "49 chars, v1.1"
    );
    // MSG_WAIT: w2 MBZ before v1.2; x8-x17 MBZ from v1.2.
    assert_eq!(
        err(&sp_reply(&mut s, call(F::MsgWait, &[0, 1]))),
        Some(-2),
        "v1.1 flags"
    );
    s.sp_ep.version = Version::V1_2;
    let c = Call::ConsoleLog {
        chars: ffa::ConsoleLogChars::new64(&[b'x'; 49]).unwrap(),
    };
    assert_eq!(
        sp_reply(&mut s, c.to_regs())[0],
        SUCCESS32,
        "49 chars, v1.2"
    );
    let mut w = call(F::MsgWait, &[]);
    w[12] = 1;
    assert_eq!(err(&sp_reply(&mut s, w)), Some(-2), "x12 set");
    assert_eq!(s.sp_state, SpState::Init);
    assert_eq!(sp(&mut s, call(F::MsgWait, &[])), SpAction::InitDone);
}
