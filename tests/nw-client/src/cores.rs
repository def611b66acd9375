//! Requests from a second core (on every SPMC whose machine has one: the testbed on two or more
//! CPUs, TF-A's).
//!
//! The primary hands a [`CoreJob`] to core 1 (PSCI CPU_ON, `Env::on_second_core`); core 1 runs
//! [`run_job`]: `info`, then `rounds` pings over DIRECT_REQ_32, DIRECT_REQ_64 and DIRECT_REQ2,
//! each checked against the SP's answer, posts a [`CoreReport`] through shared memory and calls
//! CPU_OFF. The primary reports core 1's checks, then checks that the SP's request counter
//! continued from core 1's last answer: the SP's service state is one across its execution
//! contexts.
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its reason inline: the client has no heap, and checks are not hot"
)]

use crate::{
    Env, Spmc, fail,
    report::{CheckResult, Fail, Report},
    scenarios::{Ctx, direct_on, direct2_on, ping_echo},
};
use core::fmt::Write;
use ffa::{Conduit, Endpoint, PartitionId, PartitionProperties, Uuid};
use flexserve_proto::{
    Command, DIRECT_PAYLOAD_REGS, DIRECT2_PAYLOAD_REGS, PROTOCOL_VERSION, Request, Response,
    SERVICE_UUID, Width,
};
use testbed_layout::control;

/// Pings per transport on core 1.
pub const ROUNDS: u32 = 32;

/// What core 1 is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreJob {
    pub own_id: PartitionId,
    pub sp: PartitionId,
    /// The SP declared DIRECT_REQ2 receipt.
    pub req2: bool,
    pub rounds: u32,
}

/// Core 1's results.
#[derive(Debug)]
pub struct CoreReport {
    pub info: CheckResult,
    pub req32: CheckResult,
    pub req64: CheckResult,
    pub req2: CheckResult,
    /// The SP's request counter in core 1's last 64-bit ping answer.
    pub last_counter: Option<u64>,
    /// MPIDR_EL1 of the core that ran the job (set by the bare-metal runner).
    pub mpidr: Option<u64>,
}

/// Why core 1 could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuOnError {
    /// The machine has no second core to start (host fakes).
    NoSecondCore,
    /// PSCI CPU_ON failed with this return code.
    Psci(i64),
}

/// A second core's run as the primary saw it.
#[derive(Debug)]
pub struct CoreRun {
    /// `None`: the report did not arrive in time.
    pub report: Option<CoreReport>,
    /// Core 1 off again (PSCI AFFINITY_INFO), or the last state AFFINITY_INFO gave.
    pub off: Result<(), i64>,
}

/// Core 1's side: the requests of `job` through `ep`.
pub fn run_job<C: Conduit>(ep: &mut Endpoint<C>, job: &CoreJob) -> CoreReport {
    let info = info_on(ep, job);
    // 32-bit answers carry the counter's low half: they are checked among themselves.
    let req32 = pings(ep, job, Width::W32, &mut None);
    let mut last = None;
    let req64 = pings(ep, job, Width::W64, &mut last);
    let req2 = if job.req2 {
        pings_req2(ep, job, &mut last)
    } else {
        Err(Fail::new(format_args!(
            "SP {:#x} does not declare DIRECT_REQ2 receipt",
            job.sp
        )))
    };
    CoreReport {
        info,
        req32,
        req64,
        req2,
        last_counter: last,
        mpidr: None,
    }
}

fn info_on<C: Conduit>(ep: &mut Endpoint<C>, job: &CoreJob) -> CheckResult {
    let req = [Command::Info as u64, 0, 0, 0, 0];
    let reply = match direct_on(ep, job.own_id, job.sp, &req, Width::W64) {
        Ok(r) => r,
        Err(e) => fail!("{e:?}"),
    };
    match Response::decode(&reply, Width::W64, Command::Info) {
        Ok(Response::Info(i)) if i.protocol_version >> 16 == PROTOCOL_VERSION >> 16 => Ok(()),
        Ok(other) => fail!("reply {other:?}"),
        Err(e) => fail!("undecodable reply {reply:x?}: {e:?}"),
    }
}

/// Checks a ping's counter against the previous one on this core (nothing else is asking the
/// SP meanwhile: the primary waits).
fn next_counter(counter: u64, last: &mut Option<u64>, width: Width) -> CheckResult {
    let mask = match width {
        Width::W32 => u64::from(u32::MAX),
        Width::W64 => u64::MAX,
    };
    if let Some(prev) = *last
        && counter != prev.wrapping_add(1) & mask
    {
        fail!("SP counter {counter} after {prev}");
    }
    *last = Some(counter);
    Ok(())
}

fn pings<C: Conduit>(
    ep: &mut Endpoint<C>,
    job: &CoreJob,
    width: Width,
    last: &mut Option<u64>,
) -> CheckResult {
    for i in 0..u64::from(job.rounds) {
        let payload = [0xc0de_0001 ^ i, !i & 0xffff_ffff, i << 8];
        let mut req = [0u64; DIRECT_PAYLOAD_REGS];
        if let Err(e) = (Request::Ping { payload: &payload }).encode(&mut req, width) {
            fail!("cannot encode ping: {e:?}");
        }
        let reply = match direct_on(ep, job.own_id, job.sp, &req, width) {
            Ok(r) => r,
            Err(e) => fail!("ping {i}: {e:?}"),
        };
        ping_echo(&reply, &payload, width)
            .and_then(|counter| next_counter(counter, last, width))
            .map_err(|f| Fail::new(format_args!("ping {i}: {}", f.as_str())))?;
    }
    Ok(())
}

fn pings_req2<C: Conduit>(
    ep: &mut Endpoint<C>,
    job: &CoreJob,
    last: &mut Option<u64>,
) -> CheckResult {
    for i in 0..u64::from(job.rounds) {
        let payload: [u64; 12] = core::array::from_fn(|k| (i << 32) | (k as u64 + 0x21));
        let mut req = [0u64; DIRECT2_PAYLOAD_REGS];
        if let Err(e) = (Request::Ping { payload: &payload }).encode(&mut req, Width::W64) {
            fail!("cannot encode ping: {e:?}");
        }
        let reply = match direct2_on(ep, job.own_id, job.sp, Uuid(SERVICE_UUID), &req) {
            Ok(r) => r,
            Err(e) => fail!("ping {i}: {e:?}"),
        };
        ping_echo(&reply, &payload, Width::W64)
            .and_then(|counter| next_counter(counter, last, Width::W64))
            .map_err(|f| Fail::new(format_args!("ping {i}: {}", f.as_str())))?;
    }
    Ok(())
}

/// The primary's side, in the `messaging` scenario: start core 1, report its checks, check that
/// the SP's state is shared. Prints nothing on a one-CPU testbed (a SKIP would fail the run);
/// under TF-A a missing core 1 fails `cores.cpu_on`.
pub(crate) fn cross_core<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    if c.env.spmc() == Spmc::Testbed && !c.env.has_second_core() {
        return;
    }
    let Ok(sp) = c.sp() else {
        return;
    };
    let job = CoreJob {
        own_id: c.own_id,
        sp: sp.id,
        req2: sp
            .properties
            .contains(PartitionProperties::DIRECT_REQ2_RECV),
        rounds: ROUNDS,
    };
    let run = c.env.on_second_core(&job);
    let run = match run {
        Ok(run) => {
            r.check("cores.cpu_on", Ok(()));
            run
        }
        Err(e) => {
            r.check(
                "cores.cpu_on",
                Err(Fail::new(format_args!("core 1 did not start: {e:?}"))),
            );
            return;
        }
    };
    let Some(report) = run.report else {
        r.check(
            "cores.second_core_reported",
            Err(Fail::new(format_args!(
                "no report from core 1 in time (SP context on core 1 stuck?)"
            ))),
        );
        return;
    };
    r.check("cores.second_core_reported", Ok(()));
    // The evidence that the requests below came from another core than the primary's.
    if let Some(m) = report.mpidr {
        r.note(format_args!(
            "core 1 (MPIDR {m:#x}): info + {ROUNDS} pings per transport, answered by SP {:#x}",
            sp.id
        ));
    }
    r.check("cores.second_core_info", report.info);
    r.check("cores.second_core_ping_req32", report.req32);
    r.check("cores.second_core_ping_req64", report.req64);
    r.check("cores.second_core_ping_req2", report.req2);
    r.check(
        "cores.second_core_off",
        run.off
            .map_err(|s| Fail::new(format_args!("AFFINITY_INFO(core 1) = {s}, not OFF (1)"))),
    );
    r.check("cores.sp_state_shared_across_cores", {
        // The primary's own count is stale now; continue from core 1's.
        c.counter = report.last_counter;
        if c.counter.is_none() {
            Err(Fail::new(format_args!("core 1 saw no 64-bit ping answer")))
        } else {
            c.ping(&[0x0c0e, 1, 0xface], Width::W64)
        }
    });
}

/// The share-window page the LEND shoot-down check uses (memory scenario: clear of its others).
pub const SHOOTDOWN_PAGE: u64 = 40;
/// What core 1 stores once the page is lent: it must never land.
const AFTER_LEND: u64 = 0x1e4d_dead_0c0e_0001;

/// A LEND takes the page from every CPU of the lender at once (testbed, two or more normal-world
/// CPUs): core 1 keeps storing to a page (so its TLB holds the translation), the primary lends
/// it, then core 1 stores once more. That store must be blocked and reported, and after the
/// reclaim the page must not hold it: a CPU that kept a stale TLB entry would have written
/// memory the SP now owns.
pub(crate) fn lend_shootdown<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    use ffa::memory::{
        DataAccess, Emad, EmadSize, InstructionAccess, MemAccessPerm, MemFlags, MemRange,
        MemRegionAttributes, MemTransaction, SendKind,
    };
    use ffa::{Handle, ReclaimFlags};
    if c.env.spmc() != Spmc::Testbed || !c.env.has_second_core() {
        return;
    }
    let Ok(sp_id) = c.sp().map(|s| s.id) else {
        return;
    };
    let pa = c.env.share_window().0 + SHOOTDOWN_PAGE * 4096 + 0x100;
    if let Err(e) = c.env.second_core_writer(pa) {
        r.check(
            "cores.writer_started",
            Err(Fail::new(format_args!("core 1 did not start: {e:?}"))),
        );
        return;
    }
    let landed = r.check("cores.second_core_stores_land", {
        (|| {
            for i in 0..64u64 {
                let v = 0x5707_0000 + i;
                if !c.env.second_core_store(v) {
                    fail!("core 1 did not confirm store {i}");
                }
                let got = c.env.probe_read(pa).value;
                if got != v {
                    fail!("core 1 stored {v:#x}, the primary reads {got:#x}");
                }
            }
            Ok(())
        })()
    });
    if !landed {
        c.env.second_core_writer_stop();
        return;
    }
    let desc = MemTransaction {
        sender_id: c.own_id,
        attributes: MemRegionAttributes::for_send(SendKind::Lend, 1),
        flags: MemFlags(0),
        handle: Handle(0),
        tag: 0,
        emad_size: EmadSize::V1_2,
        receivers: alloc::vec![Emad::new(MemAccessPerm {
            endpoint_id: sp_id,
            data_access: DataAccess::ReadWrite,
            instruction_access: InstructionAccess::NotSpecified,
            non_retrieval_borrower: false,
        })],
        ranges: alloc::vec![MemRange {
            address: pa & !0xfff,
            page_count: 1,
        }],
    };
    let before = c.env.blocked_accesses();
    let lent = {
        let (ep, bufs) = c.env.ep_bufs();
        ep.mem_send(SendKind::Lend, &desc, bufs)
    };
    let Ok(h) = lent else {
        r.check(
            "cores.lend",
            Err(Fail::new(format_args!("LEND failed: {lent:?}"))),
        );
        c.env.second_core_writer_stop();
        return;
    };
    let stored = c.env.second_core_store(AFTER_LEND);
    r.check("cores.lend_blocks_the_other_cpu", {
        let after = c.env.blocked_accesses();
        match (before, after) {
            _ if !stored => Err(Fail::new(format_args!(
                "core 1 did not come back from its store (a blocked store is skipped)"
            ))),
            (Some((n0, ..)), Some((n1, addr, info))) => {
                let (kind, why) = (info & 0xff, (info >> 8) & 0xff);
                if n1 != n0 + 1 || addr != pa || kind != control::KIND_WRITE {
                    Err(Fail::new(format_args!(
                        "core 1's store after the LEND: {} blocked accesses reported (last \
                         {addr:#x}, kind {kind}), expected one write of {pa:#x}",
                        n1 - n0
                    )))
                } else if why != control::OWNER_LENT {
                    Err(Fail::new(format_args!(
                        "blocked, but as owner {why}, not lent"
                    )))
                } else {
                    Ok(())
                }
            }
            _ => Err(Fail::new(format_args!(
                "the testbed reports no blocked accesses"
            ))),
        }
    });
    r.check("cores.reclaim", {
        c.env
            .ep()
            .mem_reclaim(h, ReclaimFlags::default())
            .map_err(|e| Fail::new(format_args!("{e:?}")))
    });
    r.check("cores.blocked_store_never_landed", {
        let got = c.env.probe_read(pa).value;
        if got == AFTER_LEND {
            Err(Fail::new(format_args!(
                "the page holds core 1's store made after the LEND"
            )))
        } else {
            Ok(())
        }
    });
    r.check(
        "cores.writer_off",
        if c.env.second_core_writer_stop() {
            Ok(())
        } else {
            Err(Fail::new(format_args!("core 1 is not off")))
        },
    );
}

/// One prober round's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// FFA_ID_GET answered and the ping came back with its echo.
    Answered,
    /// FFA_ID_GET answered; the ping got BUSY (the SP was running another CPU's request).
    Busy,
    /// FFA_ID_GET failed: the SPMC did not answer this CPU.
    IdGetFailed,
    /// The ping failed otherwise, or its echo was wrong.
    Other,
}

/// Counts of [`Probe`] outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    pub answered: u32,
    pub busy: u32,
    pub other: u32,
    pub id_failed: u32,
}

impl ProbeCounts {
    pub fn rounds(&self) -> u32 {
        self.answered + self.busy + self.other + self.id_failed
    }
}

/// One prober round from core 1: FFA_ID_GET (the SPMC itself), then a DIRECT_REQ_64 ping.
pub fn probe_round<C: Conduit>(
    ep: &mut Endpoint<C>,
    own: PartitionId,
    sp: PartitionId,
    i: u64,
) -> Probe {
    if ep.id_get().map(|id| id != own).unwrap_or(true) {
        return Probe::IdGetFailed;
    }
    let payload = [0x9b0b_0000 ^ i, i, !i];
    let mut req = [0u64; DIRECT_PAYLOAD_REGS];
    if (Request::Ping { payload: &payload })
        .encode(&mut req, Width::W64)
        .is_err()
    {
        return Probe::Other;
    }
    match direct_on(ep, own, sp, &req, Width::W64) {
        Ok(reply) => match ping_echo(&reply, &payload, Width::W64) {
            Ok(_) => Probe::Answered,
            Err(_) => Probe::Other,
        },
        Err(ffa::Error::Ffa(ffa::FfaError::Busy)) => Probe::Busy,
        Err(_) => Probe::Other,
    }
}

/// The SP runs one CPU's request while the SPMC keeps serving the others (testbed on two or
/// more normal-world CPUs; TF-A's SPMCs too): core 1 probes (FFA_ID_GET, ping) in a loop while
/// the primary runs `work` (a long request). On the testbed core 1 must make progress meanwhile
/// (its calls are answered, not held until the SP is done) and its pings get BUSY (one SP
/// execution context, as Hafnium for a UP partition). Under TF-A's EL3 SPMC the SP has a
/// context per core, and core 1's ping waits in the SP for its service state, which core 0's
/// request holds: there the figures are reported, not required. Everywhere: FFA_ID_GET never
/// fails, the SP answers core 1 again after, `work` passes.
pub(crate) fn beside_running_sp<E: Env, W: Write>(
    c: &mut Ctx<'_, E>,
    r: &mut Report<W>,
    work: impl FnOnce(&mut Ctx<'_, E>) -> CheckResult,
) {
    if !c.env.has_second_core() {
        return;
    }
    let Ok(sp_id) = c.sp().map(|s| s.id) else {
        return;
    };
    if let Err(e) = c.env.second_core_prober(c.own_id, sp_id) {
        r.check(
            "cores.prober_started",
            Err(Fail::new(format_args!("core 1 did not start: {e:?}"))),
        );
        return;
    }
    let settle = |c: &mut Ctx<'_, E>, from: u32| {
        let mut n = 0u32;
        while c.env.second_core_probes().answered < from + 8 && n < 50_000_000 {
            core::hint::spin_loop();
            n += 1;
        }
        c.env.second_core_probes()
    };
    let before = settle(c, 0);
    let done = work(c);
    let during = c.env.second_core_probes();
    let after = settle(c, during.answered);
    let (last, off) = c.env.second_core_prober_stop();
    r.check("cores.long_request_beside_prober", done);
    r.note(format_args!(
        "core 1 during core 0's request: {} pings BUSY, {} answered; {} rounds in all",
        during.busy - before.busy,
        during.answered - before.answered,
        last.rounds()
    ));
    r.check("cores.spmc_answers_other_cpu_while_sp_runs", {
        if last.id_failed != 0 || last.other != 0 {
            Err(Fail::new(format_args!("core 1: {last:?}")))
        } else if c.env.spmc() == Spmc::Testbed && during.rounds() < before.rounds() + 8 {
            Err(Fail::new(format_args!(
                "core 1 made no progress during core 0's request ({before:?} -> {during:?})"
            )))
        } else if c.env.spmc() == Spmc::Testbed && during.busy <= before.busy {
            Err(Fail::new(format_args!(
                "no ping got BUSY during core 0's request ({before:?} -> {during:?}): the \
                 SP did not run beside core 1's calls"
            )))
        } else if after.answered < during.answered + 8 {
            Err(Fail::new(format_args!(
                "the SP did not answer core 1 again after core 0's request ({after:?})"
            )))
        } else {
            Ok(())
        }
    });
    r.check(
        "cores.prober_off",
        if off {
            Ok(())
        } else {
            Err(Fail::new(format_args!("core 1 is not off")))
        },
    );
}
