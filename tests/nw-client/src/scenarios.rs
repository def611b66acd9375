//! Named scenarios. `messaging`: FF-A set-up, discovery and direct messaging with the FlexServe
//! SP, including the error paths, and under a real SPMC requests from a second core
//! ([`crate::cores`]). `demo`: discovery and a few readable round trips. `memory`
//! (in [`crate::memory`]): FF-A memory management with the SP. `serve` (in [`crate::serve`]):
//! model serving; `demo` serves the model too when the boot configuration names one. `flexmem`
//! (in [`crate::flexmem`]): lent pages made secure behind the memory firewall and given back.
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its reason inline: the client has no heap, and checks are not hot"
)]

use crate::{
    Env, Spmc, fail,
    report::{CheckResult, Needs, Report},
};
use core::fmt::Write;
use ffa::{
    Conduit, DirectMsg2Args, DirectMsgArgs, Error, FfaError, FuncId, Interface, PartitionId,
    PartitionInfo, PartitionProperties, REG_COUNT, RxTxPageCount, Uuid, Version,
};
use flexserve_proto::{
    Command, DIRECT_PAYLOAD_REGS, DIRECT2_PAYLOAD_REGS, FaultKind, PROTOCOL_VERSION, Request,
    Response, SERVICE_UUID, Status, Width, caps,
};

/// SMCCC's return value for an unknown function ID (w0).
const SMCCC_UNKNOWN: u32 = 0xffff_ffff;

/// The FF-A version the client is written for.
pub const FFA_VERSION: Version = Version::V1_2;

/// Scenario names, for the registry and error messages.
pub const NAMES: &[&str] = &[
    "messaging",
    "demo",
    "memory",
    "sp-panic",
    "sp-data-abort",
    "sp-stack-overflow",
    "serve",
    "flexmem",
    "flexnpu",
    "sealed",
];

/// Runs scenario `name`, printing check lines and the summary. Returns (passed, failed).
pub fn run<E: Env, W: Write>(name: &str, env: &mut E, out: W) -> (u32, u32) {
    let mut r = Report::new(out);
    match name {
        "messaging" => messaging(&mut Ctx::new(env), &mut r),
        "demo" => demo(&mut Ctx::new(env), &mut r),
        "memory" => crate::memory::memory(&mut Ctx::new(env), &mut r),
        "serve" => crate::serve::serve(&mut Ctx::new(env), &mut r),
        "flexmem" => crate::flexmem::flexmem(&mut Ctx::new(env), &mut r),
        "flexnpu" => crate::flexnpu::flexnpu(&mut Ctx::new(env), &mut r),
        "sealed" => crate::sealed::sealed(&mut Ctx::new(env), &mut r),
        // These need an SP built with the `fault-injection` feature; the SP ends the run dead.
        "sp-panic" => sp_fault(&mut Ctx::new(env), &mut r, FaultKind::Panic),
        "sp-data-abort" => sp_fault(&mut Ctx::new(env), &mut r, FaultKind::DataAbort),
        "sp-stack-overflow" => sp_fault(&mut Ctx::new(env), &mut r, FaultKind::StackOverflow),
        _ => {
            r.check(
                "scenario",
                Err(crate::report::Fail::new(format_args!(
                    "unknown scenario `{name}` (known: {NAMES:?})"
                ))),
            );
        }
    }
    r.finish();
    (r.passed, r.failed)
}

/// State the checks build up as they go.
pub(crate) struct Ctx<'e, E: Env> {
    pub(crate) env: &'e mut E,
    pub(crate) own_id: PartitionId,
    /// The FlexServe SP, once discovered.
    pub(crate) sp: Option<PartitionInfo>,
    /// The SP's request counter as last seen in a ping reply.
    pub(crate) counter: Option<u64>,
    /// Partition IDs seen by a nil-UUID discovery.
    all_ids: [Option<PartitionId>; 16],
}

impl<'e, E: Env> Ctx<'e, E> {
    fn new(env: &'e mut E) -> Self {
        Ctx {
            env,
            own_id: 0,
            sp: None,
            counter: None,
            all_ids: [None; 16],
        }
    }

    pub(crate) fn sp(&self) -> Result<PartitionInfo, crate::report::Fail> {
        match self.sp {
            Some(sp) => Ok(sp),
            None => Err(crate::report::Fail::new(format_args!(
                "the SP was not discovered"
            ))),
        }
    }

    /// One request over DIRECT_REQ_32/64; returns the reply registers. BUSY (the SP's one
    /// execution context is running another CPU's request) is retried: the SP never saw it.
    pub(crate) fn direct(
        &mut self,
        req: &[u64; DIRECT_PAYLOAD_REGS],
        width: Width,
    ) -> Result<[u64; 5], Error> {
        let sp = self.sp.map_or(0, |s| s.id);
        retry_busy(|| direct_on(self.env.ep(), self.own_id, sp, req, width))
    }

    /// One request over DIRECT_REQ2; BUSY is retried as for [`Ctx::direct`].
    pub(crate) fn direct2(
        &mut self,
        uuid: Uuid,
        req: &[u64; DIRECT2_PAYLOAD_REGS],
    ) -> Result<[u64; 14], Error> {
        let sp = self.sp.map_or(0, |s| s.id);
        retry_busy(|| direct2_on(self.env.ep(), self.own_id, sp, uuid, req))
    }

    /// A ping over DIRECT_REQ; checks the echo and that the SP's counter moved by exactly one.
    pub(crate) fn ping(&mut self, payload: &[u64; 3], width: Width) -> CheckResult {
        let mut req = [0u64; DIRECT_PAYLOAD_REGS];
        if let Err(e) = (Request::Ping { payload }).encode(&mut req, width) {
            fail!("cannot encode ping: {e:?}");
        }
        let reply = match self.direct(&req, width) {
            Ok(r) => r,
            Err(e) => fail!("direct request failed: {e:?}"),
        };
        self.check_ping_reply(&reply, payload, width)
    }

    fn check_ping_reply(&mut self, reply: &[u64], payload: &[u64], width: Width) -> CheckResult {
        let counter = ping_echo(reply, payload, width)?;
        if let Some(prev) = self.counter
            && counter != prev.wrapping_add(1) & mask(width)
        {
            fail!("SP counter {counter} after {prev}: expected {}", prev + 1);
        }
        self.counter = Some(counter);
        Ok(())
    }
}

/// One request from `own` to `sp` over DIRECT_REQ_32/64; returns the reply registers.
/// Calls `f` again while it answers BUSY, up to a bound (a stuck partition is an error then).
fn retry_busy<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    const TRIES: u32 = 1_000_000;
    let mut last = Err(Error::Ffa(FfaError::Busy));
    for _ in 0..TRIES {
        last = f();
        if !matches!(last, Err(Error::Ffa(FfaError::Busy))) {
            break;
        }
        core::hint::spin_loop();
    }
    last
}

pub(crate) fn direct_on<C: Conduit>(
    ep: &mut ffa::Endpoint<C>,
    own: PartitionId,
    sp: PartitionId,
    req: &[u64; DIRECT_PAYLOAD_REGS],
    width: Width,
) -> Result<[u64; 5], Error> {
    let args = match width {
        Width::W32 => DirectMsgArgs::Args32(req.map(|v| v as u32)),
        Width::W64 => DirectMsgArgs::Args64(*req),
    };
    match ep.direct_req(own, sp, args)? {
        DirectMsgArgs::Args32(a) => Ok(a.map(u64::from)),
        DirectMsgArgs::Args64(a) => Ok(a),
        DirectMsgArgs::Framework32 { msg_type, .. }
        | DirectMsgArgs::Framework64 { msg_type, .. } => Err(Error::UnexpectedReply {
            request: FuncId::MsgSendDirectReq32,
            reply: FuncId::from_u32(u32::from(msg_type)).unwrap_or(FuncId::Error),
        }),
    }
}

/// One request from `own` to service `uuid` of `sp` over DIRECT_REQ2.
pub(crate) fn direct2_on<C: Conduit>(
    ep: &mut ffa::Endpoint<C>,
    own: PartitionId,
    sp: PartitionId,
    uuid: Uuid,
    req: &[u64; DIRECT2_PAYLOAD_REGS],
) -> Result<[u64; 14], Error> {
    Ok(ep.direct_req2(own, sp, uuid, DirectMsg2Args(*req))?.0)
}

/// Checks a ping answer's echo; returns the SP's request counter from it.
pub(crate) fn ping_echo(
    reply: &[u64],
    payload: &[u64],
    width: Width,
) -> Result<u64, crate::report::Fail> {
    match Response::decode(reply, width, Command::Ping) {
        Ok(Response::Ping {
            counter,
            payload: echo,
        }) => {
            if echo != payload {
                fail!("echo {echo:x?} != sent {payload:x?}");
            }
            Ok(counter)
        }
        Ok(other) => fail!("reply {other:?}"),
        Err(e) => fail!("undecodable reply {reply:x?}: {e:?}"),
    }
}

fn mask(width: Width) -> u64 {
    match width {
        Width::W32 => u64::from(u32::MAX),
        Width::W64 => u64::MAX,
    }
}

fn service_uuid() -> Uuid {
    Uuid(SERVICE_UUID)
}

// ------------------------------------------------------------------------------------------
// Set-up and discovery.

fn version_checks<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    // The callee reports its own version; the caller decides. The version this client speaks
    // first: under TF-A + Hafnium the first FFA_VERSION already fixes the normal world's version
    // (the SPMD forwards it to Hafnium as a framework message, which Hafnium counts as a call
    // after negotiation, `handler.c`), so a later different one may be refused (NOT_SUPPORTED).
    // Last the same version again: the one that stays (the SPMD keeps the last one asked before
    // any other call, and forwards x8-x17 only for v1.2 callers).
    let negotiate = |c: &mut Ctx<'_, E>| match c.env.ep().version(FFA_VERSION) {
        Ok(v) if FFA_VERSION.is_compatible_with(v) => Ok(()),
        Ok(v) => Err(crate::report::Fail::new(format_args!(
            "SPMC {v} cannot serve a {FFA_VERSION} caller"
        ))),
        Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
    };
    r.check("version.v1_2", negotiate(c));
    r.check("version.newer_major_caller", {
        match c
            .env
            .ep()
            .version(Version::new(2, 0).unwrap_or(FFA_VERSION))
        {
            Ok(v) if v.major() == 1 => Ok(()),
            Ok(v) => Err(crate::report::Fail::new(format_args!(
                "a v2.0 caller was told {v}"
            ))),
            Err(Error::Ffa(FfaError::NotSupported)) => Ok(()),
            Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
        }
    });
    r.check("version.older_caller", {
        match c.env.ep().version(Version::V1_1) {
            Ok(v) if Version::V1_1.is_compatible_with(v) => Ok(()),
            Ok(v) => Err(crate::report::Fail::new(format_args!(
                "a v1.1 caller was told {v}"
            ))),
            // Refused once a version is fixed (Hafnium `api_ffa_version`).
            Err(Error::Ffa(FfaError::NotSupported)) => Ok(()),
            Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
        }
    });
    r.check("version.v1_2_again", negotiate(c));
}

pub(crate) fn setup<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) -> bool {
    let id = c.env.ep().id_get();
    let ok = r.check(
        "id_get",
        match id {
            Ok(id) if id & 0x8000 == 0 => {
                c.own_id = id;
                Ok(())
            }
            Ok(id) => Err(crate::report::Fail::new(format_args!(
                "normal-world ID {id:#x} has bit 15 set"
            ))),
            Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
        },
    );
    let (tx, rx) = c.env.rxtx();
    let map = match RxTxPageCount::new(1) {
        Some(pages) => c.env.ep().rxtx_map(tx, rx, pages),
        None => Err(Error::Ffa(FfaError::InvalidParameters)),
    };
    ok & r.check(
        "rxtx_map",
        map.map_err(|e| crate::report::Fail::new(format_args!("{e:?}"))),
    )
}

/// PARTITION_INFO_GET for `uuid`; copies up to `out.len()` descriptors out of RX and releases
/// it. Returns the count the SPMC reported.
fn partition_info<E: Env>(
    c: &mut Ctx<'_, E>,
    uuid: Uuid,
    out: &mut [PartitionInfo],
) -> Result<usize, crate::report::Fail> {
    let count = match c.env.ep().partition_info_get(uuid, false) {
        Ok(n) => n,
        Err(e) => fail!("PARTITION_INFO_GET: {e:?}"),
    };
    let mut rx = [0u8; 1024];
    c.env.read_rx(&mut rx);
    let parsed = PartitionInfo::iter(&rx, count.count, count.desc_size);
    let release = c.env.ep().rx_release();
    let iter = match parsed {
        Ok(i) => i,
        Err(e) => fail!(
            "{} descriptors of {} bytes: {e:?}",
            count.count,
            count.desc_size
        ),
    };
    for (o, p) in out.iter_mut().zip(iter) {
        *o = p;
    }
    if let Err(e) = release {
        fail!("RX_RELEASE: {e:?}");
    }
    Ok(count.count as usize)
}

pub(crate) fn discovery<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    r.check("discovery.uuid", {
        let mut infos = [PartitionInfo::default(); 1];
        (|| {
            let n = partition_info(c, service_uuid(), &mut infos)?;
            let p = infos[0];
            if n != 1 {
                fail!("{n} partitions serve the FlexServe UUID, expected 1");
            }
            if p.id & 0x8000 == 0 {
                fail!("partition ID {:#x} is not a secure partition", p.id);
            }
            if !p.properties.contains(PartitionProperties::DIRECT_REQ_RECV) {
                fail!(
                    "properties {:#x} lack direct-request receipt",
                    p.properties.0
                );
            }
            if p.exec_ctx_count == 0 {
                fail!("no execution contexts");
            }
            c.sp = Some(p);
            Ok(())
        })()
    });
    r.check("discovery.count_only", {
        match c.env.ep().partition_info_get(service_uuid(), true) {
            Ok(n) if n.count == 1 => Ok(()),
            Ok(n) => Err(crate::report::Fail::new(format_args!("count {}", n.count))),
            Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
        }
    });
    r.check("discovery.nil_uuid", {
        let mut infos = [PartitionInfo::default(); 16];
        (|| {
            let sp = c.sp()?;
            let n = partition_info(c, Uuid::NIL, &mut infos)?;
            let listed = &infos[..n.min(infos.len())];
            for (slot, p) in c.all_ids.iter_mut().zip(listed) {
                *slot = Some(p.id);
            }
            match listed.iter().find(|p| p.id == sp.id) {
                None => fail!("SP {:#x} missing from {n} partitions", sp.id),
                Some(p) if p.uuid != service_uuid() => {
                    fail!("SP {:#x} listed with UUID {}", sp.id, p.uuid)
                }
                Some(_) => Ok(()),
            }
        })()
    });
    r.check("discovery.unknown_uuid", {
        let stranger = Uuid([0x5a; 16]);
        match c.env.ep().partition_info_get(stranger, false) {
            Err(Error::Ffa(FfaError::InvalidParameters)) => Ok(()),
            Ok(n) => Err(crate::report::Fail::new(format_args!(
                "{} partitions for an unknown UUID",
                n.count
            ))),
            Err(e) => Err(crate::report::Fail::new(format_args!(
                "{e:?}, expected INVALID_PARAMETERS"
            ))),
        }
    });
}

// ------------------------------------------------------------------------------------------
// Messaging.

fn messaging<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    version_checks(c, r);
    if !setup(c, r) {
        return;
    }
    discovery(c, r);
    if c.sp.is_none() {
        return;
    }

    r.check("features.direct_req", {
        match c.env.ep().features(FuncId::MsgSendDirectReq32 as u32, 0) {
            Ok(_) => Ok(()),
            Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
        }
    });
    r.check(
        "ping.req32",
        c.ping(&[0x1111_1111, 0x2222_2222, 0xffff_ffff], Width::W32),
    );
    r.check(
        "ping.req64",
        c.ping(
            &[0x1111_2222_3333_4444, u64::MAX, 0x8000_0000_0000_0001],
            Width::W64,
        ),
    );
    r.check("ping.req2", ping_req2(c));
    r.check("ping.req2_unknown_service", ping_req2_unknown(c));
    let start = c.env.counter();
    r.check("ping.round_trips_1000", round_trips(c, 1000));
    if let (Some((t0, hz)), Some((t1, _))) = (start, c.env.counter())
        && hz != 0
    {
        let us = (t1.wrapping_sub(t0) as u128 * 1_000_000 / hz as u128) as u64;
        r.note(format_args!(
            "1000 DIRECT_REQ_64 round trips: {} us, {} us each (guest time)",
            us,
            us / 1000
        ));
    }
    r.check("info", info(c));
    r.check("sp.unknown_command", unknown_command(c));
    r.check("sp.malformed_then_good", malformed_then_good(c));
    r.check("direct.unknown_destination", unknown_destination(c));
    r.check("ffa.unsupported_function", unsupported_function(c));
    r.check("simd.preserved_across_world_switch", simd_preserved(c));
    crate::cores::cross_core(c, r);
}

fn ping_req2<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let sp = c.sp()?;
    if !sp
        .properties
        .contains(PartitionProperties::DIRECT_REQ2_RECV)
    {
        fail!("SP {:#x} does not declare DIRECT_REQ2 receipt", sp.id);
    }
    let payload: [u64; 12] = core::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1));
    let mut req = [0u64; DIRECT2_PAYLOAD_REGS];
    if let Err(e) = (Request::Ping { payload: &payload }).encode(&mut req, Width::W64) {
        fail!("cannot encode: {e:?}");
    }
    match c.direct2(service_uuid(), &req) {
        Ok(reply) => c.check_ping_reply(&reply, &payload, Width::W64),
        Err(e) => fail!("{e:?}"),
    }
}

fn ping_req2_unknown<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let mut req = [0u64; DIRECT2_PAYLOAD_REGS];
    req[0] = Command::Ping as u64;
    // Either the partition manager refuses the UUID or the SP answers UnknownService;
    // a successful ping would mean the UUID was ignored.
    match c.direct2(Uuid([0xa5; 16]), &req) {
        Err(Error::Ffa(FfaError::InvalidParameters)) => Ok(()),
        Ok(reply) if reply[0] == Status::UnknownService as u64 => Ok(()),
        Ok(reply) => fail!("reply {:x?}", &reply[..3]),
        Err(e) => fail!("{e:?}"),
    }
}

fn round_trips<E: Env>(c: &mut Ctx<'_, E>, n: u64) -> CheckResult {
    for i in 0..n {
        let payload = [i, !i, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)];
        if let Err(f) = c.ping(&payload, Width::W64) {
            fail!("round trip {i}: {}", f.as_str());
        }
    }
    Ok(())
}

fn info<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let sp = c.sp()?;
    let req = [Command::Info as u64, 0, 0, 0, 0];
    let reply = match c.direct(&req, Width::W32) {
        Ok(r) => r,
        Err(e) => fail!("{e:?}"),
    };
    match Response::decode(&reply, Width::W32, Command::Info) {
        Ok(Response::Info(i)) => {
            if i.protocol_version >> 16 != PROTOCOL_VERSION >> 16 {
                fail!(
                    "protocol {:#x}, client speaks {PROTOCOL_VERSION:#x}",
                    i.protocol_version
                );
            }
            let need = caps::PING | caps::INFO;
            if i.capabilities & need != need {
                fail!("capabilities {:#x}", i.capabilities);
            }
            let req2 = sp
                .properties
                .contains(PartitionProperties::DIRECT_REQ2_RECV);
            // `info` is a served request too: the SP's counter moved by one.
            c.counter = c.counter.map(|n| n + 1);
            if (i.capabilities & caps::DIRECT_REQ2 != 0) != req2 {
                fail!(
                    "SP says REQ2 {:?}, partition properties say {req2}",
                    i.capabilities & caps::DIRECT_REQ2 != 0
                );
            }
            Ok(())
        }
        Ok(other) => fail!("reply {other:?}"),
        Err(e) => fail!("undecodable reply {reply:x?}: {e:?}"),
    }
}

fn expect_status(reply: &[u64; 5], status: Status, detail: u64) -> CheckResult {
    match Response::decode(reply, Width::W64, Command::Ping) {
        Ok(Response::Error {
            status: s,
            detail: d,
        }) if s == status && d == detail => Ok(()),
        other => fail!("expected {status:?} ({detail:#x}), got {other:x?}"),
    }
}

fn unknown_command<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    match c.direct(&[0x7777, 0, 0, 0, 0], Width::W64) {
        Ok(reply) => expect_status(&reply, Status::UnknownCommand, 0x7777),
        Err(e) => fail!("{e:?}"),
    }
}

fn malformed_then_good<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    // Reserved bits in the command word, then a ping with a non-zero reserved register.
    let bad = [Command::Ping as u64 | 0xff << 16, 0, 0, 0, 0];
    match c.direct(&bad, Width::W64) {
        Ok(reply) => expect_status(&reply, Status::Malformed, 0)?,
        Err(e) => fail!("malformed request: {e:?}"),
    }
    let bad = [Command::Ping as u64, 0xdead, 0, 0, 0];
    match c.direct(&bad, Width::W32) {
        Ok(reply) => expect_status(&reply, Status::Malformed, 1)?,
        Err(e) => fail!("malformed request: {e:?}"),
    }
    // The SP still serves, and refused requests did not move its counter.
    c.ping(&[1, 2, 3], Width::W32)
}

fn unknown_destination<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let taken = |id: PartitionId| c.all_ids.iter().flatten().any(|&t| t == id);
    let Some(nobody) = (0x8001..0x8100u16).rev().find(|&id| !taken(id)) else {
        fail!("no free partition ID to aim at");
    };
    let args = DirectMsgArgs::Args32([Command::Ping as u32, 0, 1, 2, 3]);
    match c.env.ep().direct_req(c.own_id, nobody, args) {
        Err(Error::Ffa(FfaError::InvalidParameters)) => Ok(()),
        other => fail!("request to {nobody:#x}: {other:?}, expected INVALID_PARAMETERS"),
    }
}

fn unsupported_function<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    // An SMC32 ID in the FF-A range that no FF-A version defines.
    let mut regs = [0u64; REG_COUNT];
    regs[0] = 0x8400_00fe;
    let reply = c.env.ep().conduit_mut().call(regs);
    match (c.env.spmc(), Interface::from_regs(&reply)) {
        (
            Spmc::Testbed,
            Ok(Interface::Error {
                code: FfaError::NotSupported,
                ..
            }),
        ) => {}
        // SMCCC's "unknown function" (-1 in w0): TF-A's SPMD routes only IDs 0x60..=0x90
        // (`is_ffa_fid`, include/services/ffa_svc.h), so `std_svc_smc_handler` answers SMC_UNK
        // before Hafnium or the EL3 SPMC sees the call.
        (Spmc::Hafnium | Spmc::El3, _) if reply[0] as u32 == SMCCC_UNKNOWN => {}
        (spmc, other) => fail!("function 0x840000fe under {}: {other:?}", spmc.name()),
    }
    match c.env.ep().features(0x8400_00fe, 0) {
        Err(Error::Ffa(FfaError::NotSupported)) => Ok(()),
        other => fail!("FFA_FEATURES(0x840000fe): {other:?}, expected NOT_SUPPORTED"),
    }
}

/// A byte pattern for v0-v31, different in every byte and register.
pub fn simd_pattern() -> [u8; 512] {
    core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5 ^ (i >> 4) as u8)
}

fn simd_preserved<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let sp = c.sp()?;
    let mut req = [0u64; DIRECT_PAYLOAD_REGS];
    if let Err(e) = (Request::Ping {
        payload: &[7, 8, 9],
    })
    .encode(&mut req, Width::W64)
    {
        fail!("{e:?}");
    }
    let call = Interface::MsgSendDirectReq {
        src_id: c.own_id,
        dst_id: sp.id,
        args: DirectMsgArgs::Args64(req),
    };
    let pattern = simd_pattern();
    let Some((reply, after)) = c.env.call_with_simd(call.to_regs(), &pattern) else {
        fail!("this build cannot load vector registers");
    };
    match Interface::from_regs(&reply) {
        Ok(Interface::MsgSendDirectResp {
            args: DirectMsgArgs::Args64(a),
            ..
        }) => c.check_ping_reply(&a, &[7, 8, 9], Width::W64)?,
        other => fail!("the request itself failed: {other:?}"),
    }
    if let Some(v) = (0..32).find(|&v| after[v * 16..][..16] != pattern[v * 16..][..16]) {
        fail!(
            "v{v} changed: {:02x?} -> {:02x?}",
            &pattern[v * 16..][..16],
            &after[v * 16..][..16]
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// SP failure: the partition manager must see it and keep answering (ABORTED), not hang.

fn sp_fault<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>, kind: FaultKind) {
    r.check("version.v1_2", {
        match c.env.ep().version(FFA_VERSION) {
            Ok(v) if FFA_VERSION.is_compatible_with(v) => Ok(()),
            other => Err(crate::report::Fail::new(format_args!("{other:?}"))),
        }
    });
    if !setup(c, r) {
        return;
    }
    discovery(c, r);
    if c.sp.is_none() {
        return;
    }
    r.check("fault.capability", {
        match c.direct(&[Command::Info as u64, 0, 0, 0, 0], Width::W64) {
            Ok(reply) => match Response::decode(&reply, Width::W64, Command::Info) {
                Ok(Response::Info(i)) if i.capabilities & caps::FAULT_INJECTION != 0 => Ok(()),
                other => Err(crate::report::Fail::new(format_args!(
                    "SP built without fault-injection: {other:?}"
                ))),
            },
            Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
        }
    });
    r.check("fault.ping_before", c.ping(&[1, 2, 3], Width::W64));
    let mut req = [0u64; DIRECT_PAYLOAD_REGS];
    let _ = (Request::Fault { kind }).encode(&mut req, Width::W64);
    let spmc = c.env.spmc();
    r.testbed_only(
        spmc,
        "fault.request_reports_aborted",
        Needs::SpFailureHandling,
        || match c.direct(&req, Width::W64) {
            Err(Error::Ffa(FfaError::Aborted)) => Ok(()),
            other => Err(crate::report::Fail::new(format_args!(
                "{kind:?}: {other:x?}, expected ABORTED"
            ))),
        },
    );
    r.testbed_only(
        spmc,
        "fault.sp_stays_down",
        Needs::SpFailureHandling,
        || {
            let args = [Command::Ping as u64, 0, 4, 5, 6];
            match c.direct(&args, Width::W64) {
                Err(Error::Ffa(FfaError::Aborted)) => Ok(()),
                other => Err(crate::report::Fail::new(format_args!(
                    "ping after the failure: {other:x?}, expected ABORTED"
                ))),
            }
        },
    );
}

// ------------------------------------------------------------------------------------------
// Demo.

fn demo<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    r.note(format_args!(
        "FlexServe demo: normal-world client, FF-A {FFA_VERSION}"
    ));
    let v = match c.env.ep().version(FFA_VERSION) {
        Ok(v) if FFA_VERSION.is_compatible_with(v) => Ok(v),
        other => Err(crate::report::Fail::new(format_args!("{other:?}"))),
    };
    if let Ok(v) = &v {
        r.note(format_args!("partition manager speaks FF-A {v}"));
    }
    r.check("demo.version", v.map(|_| ()));
    if !setup(c, r) {
        return;
    }
    let mut uuid_text = [0u8; 36];
    r.note(format_args!(
        "looking for the FlexServe service {}",
        flexserve_proto::service_uuid_text(&mut uuid_text)
    ));
    let mut infos = [PartitionInfo::default(); 1];
    let found = partition_info(c, service_uuid(), &mut infos).and_then(|n| match n {
        1 => Ok(infos[0]),
        n => Err(crate::report::Fail::new(format_args!("{n} partitions"))),
    });
    let ok = r.check(
        "demo.discovery",
        found.map(|p| {
            c.sp = Some(p);
        }),
    );
    let Some(sp) = c.sp.filter(|_| ok) else {
        return;
    };
    r.note(format_args!(
        "found SP {:#06x}: {} execution context(s), DIRECT_REQ2 {}",
        sp.id,
        sp.exec_ctx_count,
        if sp
            .properties
            .contains(PartitionProperties::DIRECT_REQ2_RECV)
        {
            "yes"
        } else {
            "no"
        }
    ));
    let info = match c.direct(&[Command::Info as u64, 0, 0, 0, 0], Width::W64) {
        Ok(reply) => match Response::decode(&reply, Width::W64, Command::Info) {
            Ok(Response::Info(i)) => Ok(i),
            other => Err(crate::report::Fail::new(format_args!("{other:?}"))),
        },
        Err(e) => Err(crate::report::Fail::new(format_args!("{e:?}"))),
    };
    if let Ok(i) = &info {
        r.note(format_args!(
            "SP info: protocol {}.{}, build {:08x}, version {}.{}.{}, capabilities {:#x}",
            i.protocol_version >> 16,
            i.protocol_version & 0xffff,
            i.build_id,
            i.sp_version >> 16,
            (i.sp_version >> 8) & 0xff,
            i.sp_version & 0xff,
            i.capabilities
        ));
    }
    r.check("demo.info", info.map(|_| ()));
    for (i, word) in [0x464c_4558_u64, 0x5345_5256, 0x4521].iter().enumerate() {
        let payload = [*word, i as u64, !(i as u64) & 0xffff_ffff];
        let res = c.ping(&payload, Width::W32);
        if res.is_ok() {
            r.note(format_args!(
                "ping {}: sent {:x?}, echoed, SP has served {} request(s)",
                i + 1,
                payload,
                c.counter.unwrap_or(0)
            ));
        }
        r.check(["demo.ping1", "demo.ping2", "demo.ping3"][i], res);
    }
    // With a model in the boot configuration (`cargo xtask run`), serve it.
    if c.env.model().is_some()
        || c.env
            .sealed_package(testbed_layout::SealedKind::Main)
            .is_some()
    {
        crate::serve::demo_model(c, r);
    }
}
