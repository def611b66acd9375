//! Scenario `flexmem`: pages this client lends become secure memory through the SP's Flex-Mem
//! manager and the testbed's TZC-400 model, and come back scrubbed (DESIGN.md sec. 6). The boot
//! configuration turns lend enforcement off (`lend-enforcement=off`), as on FVP or RK3588
//! without an NS hypervisor: only the firewall protects lent pages, so every block seen here is
//! the firewall's.
//!
//! Pages of the Flex-Mem window (`ns_ram::FLEXMEM_WINDOW_BASE`): 0..16 region A and 16..32
//! region B (one owner, B right above A), 64 + 64k single pages for other owners (gaps between
//! them, until the budget runs out), 2048.. the cycles, then the whole 64 MiB from page 0.
//! Under a real SPMC (no firewall on QEMU) the firewall checks skip with a reason.
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its reason inline; checks are not hot"
)]

use crate::{
    Env, fail,
    report::{CheckResult, Fail, Needs, Report},
    scenarios::{Ctx, discovery, setup},
};
use alloc::vec;
use core::fmt::Write;
use ffa::{
    Handle, ReclaimFlags, Uuid,
    memory::{
        DataAccess, Emad, EmadSize, InstructionAccess, MemAccessPerm, MemFlags, MemRange,
        MemRegionAttributes, MemTransaction, SendKind,
    },
};
use flexserve_proto::{
    Checksum, Command, DIRECT_PAYLOAD_REGS, DIRECT2_PAYLOAD_REGS, FlexFault, FlexStats, FlexSwitch,
    MemStats, Request, Response, SERVICE_UUID, ScrubKind, Status, Width, caps,
};
use testbed_layout::{control, ns_ram};

const PAGE: u64 = 4096;
const FW: Needs = Needs::MemoryFirewall;
const A: (u64, u32) = (0, 16);
const B: (u64, u32) = (16, 16);
const OWNER: u32 = 1;
const GAP_BASE: u64 = 64;
const CYCLE: (u64, u32) = (2048, 4);
pub const CYCLES: u32 = 100;
/// 64 MiB.
const BIG: (u64, u32) = (0, 16384);

fn f(args: core::fmt::Arguments<'_>) -> Fail {
    Fail::new(args)
}

/// An SP reply, owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Region(u32),
    Switched(FlexSwitch),
    Stats(FlexStats),
    Mem(MemStats),
    Value(u64),
    NpuSwitched(flexserve_proto::NpuSwitch),
    NpuGemm(flexserve_proto::NpuGemmResult),
    Done,
    Error(Status, u64),
}

impl<E: Env> Ctx<'_, E> {
    pub(crate) fn wpage(&self, n: u64) -> u64 {
        ns_ram::FLEXMEM_WINDOW_BASE + n * PAGE
    }

    pub(crate) fn flex_call(&mut self, req: Request<'_>) -> Result<Reply, Fail> {
        let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
        if let Err(e) = req.encode(&mut regs, Width::W64) {
            fail!("cannot encode {req:?}: {e:?}");
        }
        let Some(cmd) = Command::from_id(regs[0] as u16) else {
            fail!("no command id in {regs:x?}");
        };
        // Stats and NPU GEMMs need DIRECT_REQ2's registers; the rest goes over DIRECT_REQ_64.
        let reply: [u64; DIRECT2_PAYLOAD_REGS] =
            if matches!(cmd, Command::FlexStats | Command::NpuGemm) {
                match self.direct2(Uuid(SERVICE_UUID), &regs) {
                    Ok(r) => r,
                    Err(e) => fail!("{cmd:?}: {e:?}"),
                }
            } else {
                let mut short = [0u64; DIRECT_PAYLOAD_REGS];
                short.copy_from_slice(&regs[..DIRECT_PAYLOAD_REGS]);
                match self.direct(&short, Width::W64) {
                    Ok(r) => {
                        let mut long = [0u64; DIRECT2_PAYLOAD_REGS];
                        long[..DIRECT_PAYLOAD_REGS].copy_from_slice(&r);
                        long
                    }
                    Err(e) => fail!("{cmd:?}: {e:?}"),
                }
            };
        Ok(match Response::decode(&reply, Width::W64, cmd) {
            Ok(Response::MemRegion(i)) => Reply::Region(i.region),
            Ok(Response::FlexSwitched(s)) => Reply::Switched(s),
            Ok(Response::FlexStats(s)) => Reply::Stats(s),
            Ok(Response::MemStats(s)) => Reply::Mem(s),
            Ok(Response::Probed(v)) => Reply::Value(v),
            Ok(Response::Checksum(v)) => Reply::Value(u64::from(v)),
            Ok(Response::NpuSwitched(s)) => Reply::NpuSwitched(s),
            Ok(Response::NpuGemm(g)) => Reply::NpuGemm(g),
            Ok(Response::Done) => Reply::Done,
            Ok(Response::Error { status, detail }) => Reply::Error(status, detail),
            other => fail!("{cmd:?}: reply {other:?}"),
        })
    }

    fn lend(&mut self, (first, n): (u64, u32)) -> Result<Handle, Fail> {
        let desc = MemTransaction {
            sender_id: self.own_id,
            attributes: MemRegionAttributes::for_send(SendKind::Lend, 1),
            flags: MemFlags(0),
            handle: Handle(0),
            tag: 0,
            emad_size: EmadSize::V1_2,
            receivers: vec![Emad::new(MemAccessPerm {
                endpoint_id: self.sp.map_or(0, |s| s.id),
                data_access: DataAccess::ReadWrite,
                instruction_access: InstructionAccess::NotSpecified,
                non_retrieval_borrower: false,
            })],
            ranges: vec![MemRange {
                address: self.wpage(first),
                page_count: n,
            }],
        };
        let (ep, bufs) = self.env.ep_bufs();
        ep.mem_send(SendKind::Lend, &desc, bufs)
            .map_err(|e| f(format_args!("lend of {n} pages: {e:?}")))
    }

    /// Lends and retrieves `pages`: (handle, region).
    pub(crate) fn lend_retrieve(&mut self, pages: (u64, u32)) -> Result<(Handle, u32), Fail> {
        let h = self.lend(pages)?;
        match self.flex_call(Request::MemRetrieve {
            handle: h.0,
            tx_type: 2,
        })? {
            Reply::Region(id) => Ok((h, id)),
            other => fail!("retrieve {:#x}: {other:x?}", h.0),
        }
    }

    fn secure(&mut self, region: u32, owner: u32) -> Result<Reply, Fail> {
        self.flex_call(Request::FlexSecure {
            region,
            owner,
            scrub: ScrubKind::Zero,
        })
    }

    pub(crate) fn secure_ok(&mut self, region: u32, owner: u32) -> Result<FlexSwitch, Fail> {
        match self.secure(region, owner)? {
            Reply::Switched(s) => Ok(s),
            other => fail!("secure of region {region}: {other:x?}"),
        }
    }

    pub(crate) fn release_ok(&mut self, region: u32) -> Result<FlexSwitch, Fail> {
        match self.flex_call(Request::FlexRelease { region })? {
            Reply::Switched(s) => Ok(s),
            other => fail!("release of region {region}: {other:x?}"),
        }
    }

    pub(crate) fn give_back(&mut self, h: Handle) -> CheckResult {
        self.env
            .ep()
            .mem_reclaim(h, ReclaimFlags::default())
            .map_err(|e| f(format_args!("reclaim {:#x}: {e:?}", h.0)))
    }

    fn flex_stats(&mut self) -> Result<FlexStats, Fail> {
        match self.flex_call(Request::FlexStats)? {
            Reply::Stats(s) => Ok(s),
            other => fail!("flex stats: {other:x?}"),
        }
    }

    pub(crate) fn flex_mem_stats(&mut self) -> Result<MemStats, Fail> {
        match self.flex_call(Request::MemStats)? {
            Reply::Mem(s) => Ok(s),
            other => fail!("mem stats: {other:x?}"),
        }
    }

    /// Fills window pages with bytes that depend on the address and `seed`; their checksum.
    fn fill_pages(&mut self, (first, n): (u64, u32), seed: u8) -> u32 {
        let mut sum = Checksum::new();
        let mut buf = [0u8; PAGE as usize];
        for p in first..first + u64::from(n) {
            let pa = self.wpage(p);
            for (j, b) in buf.iter_mut().enumerate() {
                *b = (((pa + j as u64).wrapping_mul(0x9e37_79b9) >> 11) as u8) ^ seed;
            }
            self.env.mem_write(pa, &buf);
            sum.update(&buf);
        }
        sum.value()
    }

    /// The NW reads page `p` unblocked and it holds what `fill_pages` wrote with `seed` (or
    /// zeros with `None`).
    fn nw_reads(&mut self, p: u64, seed: Option<u8>) -> CheckResult {
        let pa = self.wpage(p) + 0x40;
        let probe = self.env.probe_read(pa);
        if probe.blocked == Some(true) {
            fail!("NW read of {pa:#x} blocked ({:#x})", probe.detail);
        }
        let want = match seed {
            Some(s) => u64::from_le_bytes(core::array::from_fn(|i| {
                (((pa + i as u64).wrapping_mul(0x9e37_79b9) >> 11) as u8) ^ s
            })),
            None => 0,
        };
        if probe.value != want {
            fail!("NW read {:#x} at {pa:#x}, expected {want:#x}", probe.value);
        }
        Ok(())
    }
}

/// A probe blocked by the firewall and reported as the normal world's.
fn firewall_blocked(p: crate::Probe, what: &str, pa: u64) -> CheckResult {
    match p.blocked {
        Some(true) => {}
        Some(false) => fail!("{what} of {pa:#x} not blocked (read {:#x})", p.value),
        None => fail!("this machine cannot tell whether the {what} was blocked"),
    }
    let (kind, owner, region) = (
        p.detail & 0xff,
        (p.detail >> 8) & 0xff,
        (p.detail >> 16) & 0xffff,
    );
    if owner != control::OWNER_FIREWALL || region == 0 || p.detail & control::BLOCKED_BY_SP != 0 {
        fail!("{what} of {pa:#x} reported as {:#x}", p.detail);
    }
    let want = if what.contains("write") {
        control::KIND_WRITE
    } else if what == "cache maintenance" {
        control::KIND_CACHE_MAINT
    } else {
        control::KIND_READ
    };
    if kind != want {
        fail!("{what} of {pa:#x}: kind {kind}, expected {want}");
    }
    Ok(())
}

/// Every NW access kind to every page of `pages` is blocked and reported.
fn probe_all<E: Env>(c: &mut Ctx<'_, E>, (first, n): (u64, u32)) -> CheckResult {
    for p in first..first + u64::from(n) {
        let pa = c.wpage(p) + 0x100;
        firewall_blocked(c.env.probe_read(pa), "read", pa)?;
        if c.env.probe_read(pa).value != control::POISON {
            fail!("blocked read of {pa:#x} did not return the poison value");
        }
        firewall_blocked(c.env.probe_write(pa, 0xbad0_bad0), "write", pa)?;
        let pair = c.env.probe_pair(pa, false, 0);
        firewall_blocked(pair, "load pair", pa)?;
        if pair.detail & control::UNEMULATED == 0 {
            fail!(
                "load pair at {pa:#x} not flagged unemulated ({:#x})",
                pair.detail
            );
        }
        firewall_blocked(c.env.probe_pair(pa, true, 0xbad1), "store pair write", pa)?;
        // The testbed traps the NW's cache maintenance by VA (QEMU itself runs DC CIVAC
        // without a translation) and reports one on a page the NW lost.
        let cm = c.env.probe_clean(pa);
        firewall_blocked(cm, "cache maintenance", pa)?;
        firewall_blocked(c.env.probe_read(pa), "read after cache maintenance", pa)?;
    }
    Ok(())
}

fn us(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    (u128::from(ticks) * 1_000_000 / u128::from(hz)) as u64
}

fn print_stats<W: Write>(r: &mut Report<W>, s: &FlexStats) {
    r.note(format_args!(
        "flexmem counters: {} pages secured, {} released, {} bytes cleaned, {} firewall \
         reprograms, {} TLB invalidations, {} regions used, {} free, {} pages secured now",
        s.pages_secured,
        s.pages_released,
        s.bytes_cleaned,
        s.firewall_reprograms,
        s.tlb_invalidations,
        s.regions_used,
        s.regions_free,
        s.secured_pages
    ));
}

/// The scenario.
pub(crate) fn flexmem<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    // FlexStats goes over DIRECT_REQ2, which needs a negotiated v1.2.
    crate::serve::negotiate_v1_2(c, r);
    if !setup(c, r) {
        return;
    }
    discovery(c, r);
    if c.sp.is_none() {
        return;
    }
    let caps = c.capabilities();
    let spmc = c.env.spmc();
    if caps & caps::MEMORY == 0 {
        r.check(
            "flexmem.memory_service",
            Err(f(format_args!("caps {caps:#x}"))),
        );
        return;
    }
    if caps & caps::FLEXMEM == 0 {
        // No firewall (QEMU under TF-A): the commands answer the defined error.
        r.check("flexmem.no_firewall_is_a_defined_error", {
            match c.secure(1, OWNER) {
                Ok(Reply::Error(Status::FlexMem, d)) if d == FlexFault::NoFirewall as u64 => Ok(()),
                other => Err(f(format_args!("{other:x?}"))),
            }
        });
        for name in [
            "flexmem.secure_blocks_the_nw",
            "flexmem.extents_merge",
            "flexmem.budget",
            "flexmem.sp_unsecured_access_blocked",
            "flexmem.release_scrubs",
            "flexmem.cycles",
            "flexmem.timed_64mib",
        ] {
            r.testbed_only(spmc, name, FW, || {
                fail!("the testbed's SP drives a firewall")
            });
        }
        return;
    }
    let start = match c.flex_stats() {
        Ok(s) => s,
        Err(e) => {
            r.check("flexmem.stats", Err(e));
            return;
        }
    };
    r.check("flexmem.stats_initial", {
        if start.secured_pages == 0 && start.regions_free > 0 {
            Ok(())
        } else {
            Err(f(format_args!("{start:?}")))
        }
    });
    let base_regions = start.regions_used;
    let Some((ha, a)) = secure_and_probe(c, r) else {
        return;
    };
    let grown = grow(c, r);
    let gaps = budget(c, r);
    sp_probe(c, r);
    r.check("flexmem.release_scrubs", {
        (|| {
            let mut held = vec![(ha, a)];
            held.extend(grown);
            held.extend(gaps.iter().copied());
            for &(h, id) in &held {
                c.release_ok(id)?;
                c.give_back(h)?;
            }
            for p in (A.0..A.0 + u64::from(A.1)).chain(B.0..B.0 + u64::from(B.1)) {
                let mut page = [0u8; PAGE as usize];
                let pa = c.wpage(p);
                c.env.mem_read(pa, &mut page);
                if let Some(i) = page.iter().position(|&b| b != 0) {
                    fail!("returned page {pa:#x} holds {:#x} at {i:#x}", page[i]);
                }
            }
            let s = c.flex_stats()?;
            if s.secured_pages != 0 || s.regions_used != base_regions {
                fail!("after release: {s:?} (started with {base_regions} regions)");
            }
            Ok(())
        })()
    });
    cycles(c, r, base_regions);
    timed(c, r);
    if let Ok(s) = c.flex_stats() {
        print_stats(r, &s);
    }
}

/// Lend -> readable while lent (enforcement off) -> secure -> every NW access blocked -> the
/// SP computes over it.
fn secure_and_probe<E: Env, W: Write>(
    c: &mut Ctx<'_, E>,
    r: &mut Report<W>,
) -> Option<(Handle, u32)> {
    let sum = c.fill_pages(A, 0x5a);
    let lent = c.lend_retrieve(A);
    let ok = r.check(
        "flexmem.lend_retrieve",
        lent.as_ref()
            .map(drop)
            .map_err(|e| f(format_args!("{e:?}"))),
    );
    let (h, id) = lent.ok().filter(|_| ok)?;
    r.check("flexmem.lent_unsecured_pages_still_readable", {
        (0..u64::from(A.1)).try_for_each(|p| c.nw_reads(A.0 + p, Some(0x5a)))
    });
    let sw = c.secure_ok(id, OWNER);
    let ok = r.check(
        "flexmem.secure",
        sw.and_then(|s| {
            if s.pages != A.1 || s.owner_extents != 1 {
                fail!("{s:?}");
            }
            Ok(())
        }),
    );
    if !ok {
        return Some((h, id));
    }
    r.check("flexmem.secure_blocks_the_nw", probe_all(c, A));
    r.check("flexmem.sp_computes_over_secured_pages", {
        match c.flex_call(Request::MemChecksum {
            region: id,
            offset: 0,
            len: A.1 * PAGE as u32,
        }) {
            Ok(Reply::Value(v)) if v == u64::from(sum) => Ok(()),
            other => Err(f(format_args!("{other:x?}, the NW wrote {sum:#x}"))),
        }
    });
    r.check("flexmem.memrelease_of_secured_refused", {
        match c.flex_call(Request::MemRelease { region: id }) {
            Ok(Reply::Error(Status::FlexMem, d)) if d == FlexFault::AlreadySecured as u64 => Ok(()),
            other => Err(f(format_args!("{other:x?}"))),
        }
    });
    Some((h, id))
}

/// B, right above A, for the same owner: the extent grows at its top, no new region.
fn grow<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) -> Option<(Handle, u32)> {
    let before = c.flex_stats().ok()?;
    c.fill_pages(B, 0x6b);
    let held = c.lend_retrieve(B).ok();
    r.check("flexmem.extents_merge", {
        (|| {
            let Some((_, id)) = held else {
                fail!("lend/retrieve of B failed");
            };
            let s = c.secure_ok(id, OWNER)?;
            if s.owner_extents != 1 || s.regions_used != before.regions_used {
                fail!("{s:?}, before {} regions", before.regions_used);
            }
            probe_all(c, (B.0, 1))?;
            probe_all(c, (B.0 + u64::from(B.1) - 1, 1))
        })()
    });
    held
}

/// Other owners' single pages with gaps between them until the budget runs out: the defined
/// error, and nothing half-switched.
fn budget<E: Env, W: Write>(
    c: &mut Ctx<'_, E>,
    r: &mut Report<W>,
) -> alloc::vec::Vec<(Handle, u32)> {
    let mut secured = alloc::vec::Vec::new();
    let mut fitted = None;
    r.check("flexmem.budget", {
        (|| {
            for k in 0..8u64 {
                let page = GAP_BASE + 64 * k;
                c.fill_pages((page, 1), 0x70 + k as u8);
                c.fill_pages((page + 1, 1), 0x70 + k as u8);
                let (h, id) = c.lend_retrieve((page, 1))?;
                let before = c.flex_stats()?;
                match c.secure(id, 2 + k as u32)? {
                    Reply::Switched(_) => secured.push((h, id)),
                    Reply::Error(Status::FlexMem, d) if d == FlexFault::BudgetExhausted as u64 => {
                        if secured.is_empty() {
                            fail!("no room for even one more owner");
                        }
                        let after = c.flex_stats()?;
                        if (
                            after.regions_used,
                            after.secured_pages,
                            after.firewall_reprograms,
                        ) != (
                            before.regions_used,
                            before.secured_pages,
                            before.firewall_reprograms,
                        ) {
                            fail!("refused secure changed state: {before:?} -> {after:?}");
                        }
                        // The refused page is still lent, unsecured: readable (enforcement off).
                        c.nw_reads(page, Some(0x70 + k as u8))?;
                        // Every page the NW did not give stays readable.
                        for j in 0..=k {
                            c.nw_reads(GAP_BASE + 64 * j + 1, Some(0x70 + j as u8))?;
                        }
                        match c.flex_call(Request::MemRelease { region: id })? {
                            Reply::Done => {}
                            other => fail!("release of the refused region: {other:x?}"),
                        }
                        c.give_back(h)?;
                        fitted = Some((secured.len(), after.regions_used));
                        return Ok(());
                    }
                    other => fail!("owner {}: {other:x?}", 2 + k),
                }
            }
            fail!("8 separate extents fitted: no budget limit seen")
        })()
    });
    if let Some((n, used)) = fitted {
        r.note(format_args!(
            "budget: {n} more owners' extents fitted, then BudgetExhausted at {used} regions used"
        ));
    }
    secured
}

/// The SP's own secure (NS=0) load from a window page no region secures is blocked.
fn sp_probe<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    let pa = c.wpage(40) + 0x18;
    r.check("flexmem.sp_unsecured_access_blocked", {
        (|| {
            let before = c.env.blocked_accesses();
            let v = match c.flex_call(Request::FlexProbe { addr: pa })? {
                Reply::Value(v) => v,
                other => fail!("probe: {other:x?}"),
            };
            if v != control::POISON {
                fail!("SP secure load of unsecured {pa:#x} returned {v:#x}");
            }
            let (Some((n0, _, _)), Some((n1, last, detail))) = (before, c.env.blocked_accesses())
            else {
                fail!("no blocked-access record");
            };
            let want = control::BLOCKED_BY_SP | control::BLOCKED_SECURE;
            if n1 != n0 + 1 || last != pa || detail & want != want {
                fail!("record {n0} -> {n1}, last {last:#x}, detail {detail:#x}");
            }
            Ok(())
        })()
    });
    r.check("flexmem.sp_probe_refused_outside_window", {
        match c.flex_call(Request::FlexProbe {
            addr: ns_ram::FLEXMEM_WINDOW_BASE - PAGE,
        }) {
            Ok(Reply::Error(Status::FlexMem, d)) if d == FlexFault::NotInWindow as u64 => Ok(()),
            other => Err(f(format_args!("{other:x?}"))),
        }
    });
}

fn cycles<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>, base_regions: u32) {
    let before = c.flex_mem_stats();
    r.check("flexmem.cycles", {
        (|| {
            for i in 0..CYCLES {
                let (h, id) = c
                    .lend_retrieve(CYCLE)
                    .map_err(|e| f(format_args!("cycle {i}: {e:?}")))?;
                c.secure_ok(id, 77)
                    .map_err(|e| f(format_args!("cycle {i}: {e:?}")))?;
                c.release_ok(id)
                    .map_err(|e| f(format_args!("cycle {i}: {e:?}")))?;
                c.give_back(h)?;
            }
            let (Ok(b), Ok(a)) = (before.as_ref(), c.flex_mem_stats()) else {
                fail!("no stats");
            };
            let s = c.flex_stats()?;
            if (a.live_regions, a.mapped_pages) != (0, 0)
                || a.relinquishes.wrapping_sub(b.relinquishes) != CYCLES
                || s.secured_pages != 0
                || s.regions_used != base_regions
            {
                fail!("leak: before {b:?}, after {a:?}, {s:?}");
            }
            c.nw_reads(CYCLE.0, None)
        })()
    });
}

/// Secure and release of 64 MiB, timed in guest time by the client and inside the SP.
fn timed<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    let mut line = None;
    r.check("flexmem.timed_64mib", {
        (|| {
            let (h, id) = c.lend_retrieve(BIG)?;
            let t0 = c.env.counter();
            let s = c.secure_ok(id, 99)?;
            let t1 = c.env.counter();
            let rel = c.release_ok(id)?;
            let t2 = c.env.counter();
            c.give_back(h)?;
            let hz = c.flex_stats()?.counter_hz;
            let mib = (u64::from(BIG.1) * PAGE) >> 20;
            let (sec_us, rel_us) = (us(s.ticks, hz), us(rel.ticks, hz));
            let round = match (t0, t1, t2) {
                (Some((a, fhz)), Some((b, _)), Some((d, _))) => {
                    (us(b.wrapping_sub(a), fhz), us(d.wrapping_sub(b), fhz))
                }
                _ => (0, 0),
            };
            line = Some((sec_us, round, rel_us, mib));
            for p in [
                BIG.0,
                BIG.0 + u64::from(BIG.1) / 2,
                BIG.0 + u64::from(BIG.1) - 1,
            ] {
                c.nw_reads(p, None)?;
            }
            Ok(())
        })()
    });
    if let Some((sec_us, round, rel_us, mib)) = line {
        r.note(format_args!(
            "64 MiB ({} pages): secure {} us in the SP ({} us round trip), release {} us \
                 ({} us); switch cost {} us/MiB secure, {} us/MiB release; {} pages/s \
                 switched (guest time)",
            BIG.1,
            sec_us,
            round.0,
            rel_us,
            round.1,
            sec_us / mib,
            rel_us / mib,
            (2 * u64::from(BIG.1) * 1_000_000)
                .checked_div(sec_us + rel_us)
                .unwrap_or(0)
        ));
    }
}
