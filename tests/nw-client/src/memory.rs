//! Scenario `memory`: FF-A memory management between this client (the owner) and the FlexServe
//! SP (the borrower), with the partition manager enforcing it. Each check's FF-A spec section
//! and the ff-a-acs test it mirrors are listed in `tests/ffa-coverage.md`.
//!
//! Client pages (offsets in the share window, `Env::share_window`): share 0-1 and 4-5, cycles 8,
//! lend 16-17, donate 32 (never comes back), the cross-CPU LEND check 40
//! (`cores::SHOOTDOWN_PAGE`), fragmented 64..1088 (every other page), malformed
//! and state-machine probes from 2000.
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its reason inline; checks are not hot"
)]

use crate::{
    Env, fail,
    memory_rules::{self, Answer},
    report::{CheckResult, Fail, Needs, Report},
    scenarios::{Ctx, discovery, setup},
};
use alloc::{vec, vec::Vec};
use core::fmt::Write;
use ffa::{
    Error, FfaError, FuncId, Handle, MemOpArgs, MemOpBuf, MemSendReply, PartitionId, ReclaimFlags,
    RxTxBuffers,
    memory::{
        COMPOSITE_HEADER_SIZE, DataAccess, DescKind, Emad, EmadSize, InstructionAccess,
        MemAccessPerm, MemFlags, MemRange, MemRegionAttributes, MemTransaction, SendKind,
        TRANSACTION_HEADER_SIZE,
    },
};
use flexserve_proto::{
    Checksum, Command, DIRECT_PAYLOAD_REGS, MemStats, RegionInfo, RejectReason, Request, Response,
    Status, Width, caps, pattern_byte, region_flags,
};
use testbed_layout::control;

const PAGE: u64 = 4096;
const S2: Needs = Needs::Stage2Enforcement;
const SHARE: [(u64, u32); 2] = [(0, 2), (4, 2)];
const CYCLE: [(u64, u32); 1] = [(8, 1)];
const LEND: [(u64, u32); 1] = [(16, 2)];
const DONATE: [(u64, u32); 1] = [(32, 1)];
const FRAG_FIRST: u64 = 64;
const FRAG_RANGES: usize = 512;
const PROBE: u64 = 2000;
const DONATE_UNSUPPORTED: &str = "the SPMC does not support FFA_MEM_DONATE (FFA_FEATURES)";
/// The `donate` checks, all skipped where DONATE is not supported.
const DONATE_CHECKS: [&str; 7] = [
    "donate.send",
    "donate.nw_read_blocked",
    "donate.retrieve",
    "donate.sp_uses",
    "donate.owner_cannot_reclaim",
    "donate.sp_unmaps",
    "donate.never_returns",
];
pub const CYCLES: u32 = 200;

/// Offsets of fields the malformed cases corrupt (ffa::memory module doc; FF-A v1.2
/// Tables 10.20, 10.21, 10.13, 10.14), for a descriptor built with one or two 32-byte EMADs.
mod at {
    use super::*;
    pub const SENDER: usize = 0;
    pub const ATTRIBUTES: usize = 2;
    pub const FLAGS: usize = 4;
    pub const EMAD_SIZE: usize = 24;
    pub const EMAD_COUNT: usize = 28;
    pub const EMAD_OFFSET: usize = 32;
    pub const RESERVED: usize = 36;
    pub const EMAD: usize = TRANSACTION_HEADER_SIZE;
    pub const EMAD_COMPOSITE: usize = EMAD + 4;
    /// The composite after one EMAD.
    pub const COMPOSITE: usize = EMAD + EmadSize::V1_2.bytes();
    pub const TOTAL_PAGES: usize = COMPOSITE;
    pub const RANGE_COUNT: usize = COMPOSITE + 4;
    pub const RANGE0: usize = COMPOSITE + COMPOSITE_HEADER_SIZE;
    pub const RANGE0_PAGES: usize = RANGE0 + 8;
}

/// An SP reply to a memory command, owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpReply {
    Region(RegionInfo),
    Checksum(u32),
    Stats(MemStats),
    Done,
    Error(Status, u64),
}

fn f(args: core::fmt::Arguments<'_>) -> Fail {
    Fail::new(args)
}

impl<E: Env> Ctx<'_, E> {
    fn page(&self, n: u64) -> u64 {
        self.env.share_window().0 + n * PAGE
    }

    /// FFA_FEATURES(FFA_MEM_DONATE): DONATE is optional (TF-A's EL3 SPMC: NOT_SUPPORTED,
    /// `spmc_ffa_features` lists SHARE and LEND only).
    fn donate_supported(&mut self) -> bool {
        !matches!(
            self.env.ep().features(FuncId::MemDonate32 as u32, 0),
            Err(Error::Ffa(FfaError::NotSupported))
        )
    }

    fn sp_id(&self) -> PartitionId {
        self.sp.map_or(0, |s| s.id)
    }

    /// A send descriptor from this client to the SP for `pages` (window page, count).
    fn desc(&self, kind: SendKind, pages: &[(u64, u32)]) -> MemTransaction {
        let data_access = match kind {
            SendKind::Donate => DataAccess::NotSpecified,
            _ => DataAccess::ReadWrite,
        };
        MemTransaction {
            sender_id: self.own_id,
            attributes: MemRegionAttributes::for_send(kind, 1),
            flags: MemFlags(0),
            handle: Handle(0),
            tag: 0,
            emad_size: EmadSize::V1_2,
            receivers: vec![Emad::new(MemAccessPerm {
                endpoint_id: self.sp_id(),
                data_access,
                instruction_access: InstructionAccess::NotSpecified,
                non_retrieval_borrower: false,
            })],
            ranges: pages
                .iter()
                .map(|&(p, n)| MemRange {
                    address: self.page(p),
                    page_count: n,
                })
                .collect(),
        }
    }

    fn send(&mut self, kind: SendKind, desc: &MemTransaction) -> Result<Handle, Error> {
        let (ep, bufs) = self.env.ep_bufs();
        ep.mem_send(kind, desc, bufs)
    }

    /// A send of raw descriptor bytes (one fragment of `frag` bytes out of `total`).
    fn send_raw(
        &mut self,
        kind: SendKind,
        bytes: &[u8],
        total: u32,
        frag: u32,
    ) -> Result<MemSendReply, Error> {
        let (ep, bufs) = self.env.ep_bufs();
        bufs.write_tx(bytes);
        let args = MemOpArgs {
            total_len: total,
            frag_len: frag,
            buf: MemOpBuf::Tx32,
        };
        match kind {
            SendKind::Share => ep.mem_share(args),
            SendKind::Lend => ep.mem_lend(args),
            SendKind::Donate => ep.mem_donate(args),
        }
    }

    fn reclaim(&mut self, h: Handle) -> Result<(), Error> {
        self.env.ep().mem_reclaim(h, ReclaimFlags::default())
    }

    /// One memory command to the SP over DIRECT_REQ_64.
    fn call_sp(&mut self, req: Request<'_>) -> Result<SpReply, Fail> {
        let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
        if let Err(e) = req.encode(&mut regs, Width::W64) {
            fail!("cannot encode {req:?}: {e:?}");
        }
        let Some(cmd) = Command::from_id(regs[0] as u16) else {
            fail!("no command id in {regs:x?}");
        };
        let reply = match self.direct(&regs, Width::W64) {
            Ok(r) => r,
            Err(e) => fail!("{cmd:?}: direct request failed: {e:?}"),
        };
        Ok(match Response::decode(&reply, Width::W64, cmd) {
            Ok(Response::MemRegion(i)) => SpReply::Region(i),
            Ok(Response::Checksum(c)) => SpReply::Checksum(c),
            Ok(Response::MemStats(s)) => SpReply::Stats(s),
            Ok(Response::Done) => SpReply::Done,
            Ok(Response::Error { status, detail }) => SpReply::Error(status, detail),
            other => fail!("{cmd:?}: reply {other:?}"),
        })
    }

    fn retrieve(&mut self, h: Handle, tx_type: u8) -> Result<SpReply, Fail> {
        self.call_sp(Request::MemRetrieve {
            handle: h.0,
            tx_type,
        })
    }

    fn retrieve_ok(&mut self, h: Handle, tx_type: u8) -> Result<RegionInfo, Fail> {
        match self.retrieve(h, tx_type)? {
            SpReply::Region(i) => Ok(i),
            other => fail!("retrieve {:#x}: {other:x?}", h.0),
        }
    }

    fn done(&mut self, req: Request<'_>) -> CheckResult {
        match self.call_sp(req)? {
            SpReply::Done => Ok(()),
            other => fail!("{req:?}: {other:x?}"),
        }
    }

    fn checksum(&mut self, region: u32, offset: u32, len: u32) -> Result<u32, Fail> {
        match self.call_sp(Request::MemChecksum {
            region,
            offset,
            len,
        })? {
            SpReply::Checksum(c) => Ok(c),
            other => fail!("checksum: {other:x?}"),
        }
    }

    fn stats(&mut self) -> Result<MemStats, Fail> {
        match self.call_sp(Request::MemStats)? {
            SpReply::Stats(s) => Ok(s),
            other => fail!("stats: {other:x?}"),
        }
    }

    /// The client's own checksum of region bytes `offset..offset + len` laid out over `pages`.
    fn local_checksum(&mut self, pages: &[(u64, u32)], offset: u64, len: u64) -> u32 {
        let mut sum = Checksum::new();
        let mut base = 0u64;
        let mut buf = [0u8; 512];
        for &(p, n) in pages {
            let size = u64::from(n) * PAGE;
            let (s, e) = (offset.max(base), (offset + len).min(base + size));
            let mut o = s;
            while o < e {
                let k = (e - o).min(buf.len() as u64) as usize;
                let pa = self.page(p) + (o - base);
                self.env.mem_read(pa, &mut buf[..k]);
                sum.update(&buf[..k]);
                o += k as u64;
            }
            base += size;
        }
        sum.value()
    }

    /// Fills client pages with bytes that depend on the address and `seed`.
    fn scribble(&mut self, pages: &[(u64, u32)], seed: u8) {
        let mut buf = [0u8; PAGE as usize];
        for &(p, n) in pages {
            for i in 0..u64::from(n) {
                let pa = self.page(p + i);
                for (j, b) in buf.iter_mut().enumerate() {
                    let x = (pa + j as u64).wrapping_mul(0x9e37_79b9) >> 13;
                    *b = (x as u8) ^ seed;
                }
                self.env.mem_write(pa, &buf);
            }
        }
    }
}

fn want_ffa<T: core::fmt::Debug>(r: Result<T, Error>, want: FfaError) -> CheckResult {
    match r {
        Err(Error::Ffa(e)) if e == want => Ok(()),
        other => fail!("{other:x?}, expected {want}"),
    }
}

fn want_sp_ffa(r: Result<SpReply, Fail>, want: FfaError) -> CheckResult {
    match r? {
        SpReply::Error(Status::FfaError, d) if d == u64::from(want as i32 as u32) => Ok(()),
        other => fail!("{other:x?}, expected FfaError({want})"),
    }
}

fn want_status(r: Result<SpReply, Fail>, status: Status, detail: u64) -> CheckResult {
    match r? {
        SpReply::Error(s, d) if s == status && d == detail => Ok(()),
        other => fail!("{other:x?}, expected {status:?} ({detail})"),
    }
}

fn ok<T>(r: Result<T, Error>) -> Result<T, Fail> {
    r.map_err(|e| f(format_args!("{e:?}")))
}

/// The SP holds `regions` and its page table maps `pages` pages beyond its own memory.
fn expect_held<E: Env>(c: &mut Ctx<'_, E>, regions: u32, pages: u32) -> CheckResult {
    let s = c.stats()?;
    if (s.live_regions, s.mapped_pages) != (regions, pages) {
        fail!("SP holds {s:?}, expected {regions} region(s), {pages} page(s) mapped");
    }
    Ok(())
}

fn expect_info(i: &RegionInfo, pages: u32, ranges: u32, tx_type: u32) -> CheckResult {
    let want = region_flags::NS | region_flags::WRITABLE | tx_type << region_flags::TYPE_SHIFT;
    if (i.pages, i.ranges, i.flags) != (pages, ranges, want) || i.region == 0 {
        fail!("region {i:x?}, expected {pages} pages in {ranges} ranges, flags {want:#x}");
    }
    Ok(())
}

/// The scenario.
pub(crate) fn memory<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    r.check("version.v1_2", {
        match c.env.ep().version(crate::scenarios::FFA_VERSION) {
            Ok(v) if crate::scenarios::FFA_VERSION.is_compatible_with(v) => Ok(()),
            other => Err(f(format_args!("{other:?}"))),
        }
    });
    if !setup(c, r) {
        return;
    }
    discovery(c, r);
    if c.sp.is_none() {
        return;
    }
    let caps_ok = r.check("mem.capability", {
        match c.direct(&[Command::Info as u64, 0, 0, 0, 0], Width::W64) {
            Ok(reply) => match Response::decode(&reply, Width::W64, Command::Info) {
                Ok(Response::Info(i)) if i.capabilities & caps::MEMORY != 0 => Ok(()),
                other => Err(f(format_args!("SP serves no memory commands: {other:?}"))),
            },
            Err(e) => Err(f(format_args!("{e:?}"))),
        }
    });
    if !caps_ok {
        return;
    }
    let start = c.stats();
    r.check(
        "mem.stats_initial",
        start
            .as_ref()
            .map_err(|e| f(format_args!("{e:?}")))
            .and_then(|s| {
                if (s.live_regions, s.mapped_pages) != (0, 0) {
                    fail!("{s:?}");
                }
                Ok(())
            }),
    );
    r.check("mem.commands_over_req32_and_req2", transports(c));
    share(c, r);
    lend(c, r);
    lend_zeroing(c, r);
    donate(c, r);
    fragmented(c, r);
    malformed(c, r);
    cycles(c, r);
    crate::cores::lend_shootdown(c, r);
    r.check("mem.still_serving", {
        c.counter = None;
        c.ping(&[0x5eed, 1, 2], Width::W64)
            .and_then(|()| c.ping(&[0x5eed, 3, 4], Width::W32))
    });
}

fn share<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    c.scribble(&SHARE, 0x11);
    let desc = c.desc(SendKind::Share, &SHARE);
    let h = c.send(SendKind::Share, &desc);
    let sent = r.check(
        "share.send",
        match h {
            Ok(h) if h != Handle::INVALID => Ok(()),
            other => Err(f(format_args!("{other:x?}"))),
        },
    );
    let Some(h) = h.ok().filter(|_| sent) else {
        return;
    };
    let info = c.retrieve_ok(h, 1);
    let got = r.check(
        "share.retrieve",
        info.as_ref()
            .map_err(|e| f(format_args!("{e:?}")))
            .and_then(|i| expect_info(i, 4, 2, 1))
            .and_then(|()| expect_held(c, 1, 4)),
    );
    let Some(info) = info.ok().filter(|_| got) else {
        let _ = c.reclaim(h);
        return;
    };
    let id = info.region;
    let len = 4 * PAGE as u32;
    r.check("share.sp_checksum_matches", {
        let want = c.local_checksum(&SHARE, 0, u64::from(len));
        match c.checksum(id, 0, len) {
            Ok(got) if got == want => Ok(()),
            other => Err(f(format_args!("SP {other:x?}, client {want:#x}"))),
        }
    });
    r.check("share.sp_checksum_across_ranges", {
        // Region bytes 8000..9000 lie in two constituent ranges (pages 1 and 4).
        let want = c.local_checksum(&SHARE, 8000, 1000);
        match c.checksum(id, 8000, 1000) {
            Ok(got) if got == want => Ok(()),
            other => Err(f(format_args!("SP {other:x?}, client {want:#x}"))),
        }
    });
    r.check("share.sp_fill_seen_by_nw", {
        let (off, n, pattern) = (8100u32, 200u32, 0xc0de_0042u32);
        let before = c.local_checksum(&SHARE, 0, 8100);
        (|| {
            c.done(Request::MemFill {
                region: id,
                offset: off,
                len: n,
                pattern,
            })?;
            // Region offset 8100.. is page 1 (window page 1) then page 4 from 8192.
            let mut got = [0u8; 200];
            c.env.mem_read(c.page(1) + 8100 - 4096, &mut got[..92]);
            c.env.mem_read(c.page(4), &mut got[92..]);
            for (i, b) in got.iter().enumerate() {
                let want = pattern_byte(pattern, off + i as u32);
                if *b != want {
                    fail!("byte {} is {b:#x}, SP wrote {want:#x}", off + i as u32);
                }
            }
            if c.local_checksum(&SHARE, 0, 8100) != before {
                fail!("bytes before the filled span changed");
            }
            Ok(())
        })()
    });
    r.check("share.nw_write_seen_by_sp", {
        c.scribble(&SHARE, 0x77);
        let want = c.local_checksum(&SHARE, 0, u64::from(len));
        match c.checksum(id, 0, len) {
            Ok(got) if got == want => Ok(()),
            other => Err(f(format_args!("SP {other:x?}, client {want:#x}"))),
        }
    });
    r.check(
        "share.sp_span_out_of_bounds",
        want_status(
            c.call_sp(Request::MemChecksum {
                region: id,
                offset: len - 1,
                len: 2,
            }),
            Status::OutOfBounds,
            3,
        ),
    );
    r.check(
        "share.reclaim_while_retrieved",
        want_ffa(c.reclaim(h), FfaError::Denied),
    );
    r.check("share.release", {
        c.done(Request::MemRelease { region: id })
            .and_then(|()| expect_held(c, 0, 0))
    });
    r.check(
        "share.double_relinquish",
        want_sp_ffa(
            c.call_sp(Request::MemRelinquishHandle { handle: h.0 }),
            FfaError::InvalidParameters,
        ),
    );
    r.check(
        "share.release_twice",
        want_status(
            c.call_sp(Request::MemRelease { region: id }),
            Status::NoSuchRegion,
            u64::from(id),
        ),
    );
    r.check("share.reclaim", ok(c.reclaim(h)));
    r.check("share.read_only", share_read_only(c));
    r.check(
        "share.reclaim_twice",
        want_ffa(c.reclaim(h), FfaError::InvalidParameters),
    );
    r.check(
        "share.retrieve_after_reclaim",
        want_sp_ffa(c.retrieve(h, 1), FfaError::InvalidParameters),
    );
}

/// A read-only share: the SP maps it without write access, reads it, and refuses to write it.
fn share_read_only<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let pages = [(PROBE + 30, 1)];
    c.scribble(&pages, 0x66);
    let mut desc = c.desc(SendKind::Share, &pages);
    desc.receivers[0].perm.data_access = DataAccess::ReadOnly;
    let h = ok(c.send(SendKind::Share, &desc))?;
    let res = (|| {
        let i = c.retrieve_ok(h, 1)?;
        let want = c.local_checksum(&pages, 0, PAGE);
        let fill = c.call_sp(Request::MemFill {
            region: i.region,
            offset: 0,
            len: 8,
            pattern: 1,
        });
        let sum = c.checksum(i.region, 0, PAGE as u32);
        c.done(Request::MemRelease { region: i.region })?;
        if i.flags != region_flags::NS | 1 << region_flags::TYPE_SHIFT {
            fail!("flags {:#x}: expected NS, read-only, share", i.flags);
        }
        want_status(fill, Status::Unsupported, Command::MemFill as u64)?;
        match sum? {
            s if s == want => Ok(()),
            s => fail!("checksum {s:#x}, the page has {want:#x}"),
        }
    })();
    let reclaim = c.reclaim(h);
    res?;
    ok(reclaim)
}

/// Checks that a probe of `pa` was blocked and reported as `owner`'s page given to the SP.
fn blocked<E: Env>(c: &mut Ctx<'_, E>, pa: u64, owner: u64) -> CheckResult {
    let p = c.env.probe_read(pa);
    match p.blocked {
        Some(true) => {}
        Some(false) => fail!("read of {pa:#x} was not blocked (got {:#x})", p.value),
        None => fail!("this machine cannot tell whether a read was blocked"),
    }
    if p.value != control::POISON {
        fail!("blocked read returned {:#x}, not the poison value", p.value);
    }
    reported(c, p, control::KIND_READ, owner)
}

/// Checks that a store to `pa` was blocked and reported.
fn write_blocked<E: Env>(c: &mut Ctx<'_, E>, pa: u64, owner: u64) -> CheckResult {
    let p = c.env.probe_write(pa, 0xbad0_bad0_bad0_bad0);
    match p.blocked {
        Some(true) => reported(c, p, control::KIND_WRITE, owner),
        Some(false) => fail!("write to {pa:#x} was not blocked"),
        None => fail!("this machine cannot tell whether a write was blocked"),
    }
}

/// The partition manager's report of a blocked access: kind, why, to whom.
fn reported<E: Env>(c: &mut Ctx<'_, E>, p: crate::Probe, want: u64, owner: u64) -> CheckResult {
    let (kind, why, to) = (
        p.detail & 0xff,
        (p.detail >> 8) & 0xff,
        (p.detail >> 16) & 0xffff,
    );
    if (kind, why, to) != (want, owner, u64::from(c.sp_id())) {
        fail!(
            "reported as kind {kind}, owner {why}, to {to:#x} ({:#x})",
            p.detail
        );
    }
    Ok(())
}

fn lend<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    c.scribble(&LEND, 0x22);
    let before = c.local_checksum(&LEND, 0, 2 * PAGE);
    let desc = c.desc(SendKind::Lend, &LEND);
    let h = c.send(SendKind::Lend, &desc);
    let sent = r.check(
        "lend.send",
        h.map(drop).map_err(|e| f(format_args!("{e:?}"))),
    );
    let Some(h) = h.ok().filter(|_| sent) else {
        return;
    };
    let pa = c.page(LEND[0].0) + 0x808;
    let spmc = c.env.spmc();
    r.testbed_only(spmc, "lend.nw_read_blocked_and_reported", S2, || {
        blocked(c, pa, control::OWNER_LENT)
    });
    r.testbed_only(spmc, "lend.nw_write_blocked_and_reported", S2, || {
        write_blocked(c, pa, control::OWNER_LENT)
    });
    let info = c.retrieve_ok(h, 2);
    let got = r.check(
        "lend.retrieve",
        info.as_ref()
            .map_err(|e| f(format_args!("{e:?}")))
            .and_then(|i| expect_info(i, 2, 1, 2)),
    );
    let Some(info) = info.ok().filter(|_| got) else {
        return;
    };
    let (id, len, pattern) = (info.region, 2 * PAGE as u32, 0x1e4d_0001u32);
    r.check("lend.sp_sees_the_data_not_the_blocked_write", {
        match c.checksum(id, 0, len) {
            Ok(got) if got == before => Ok(()),
            other => Err(f(format_args!(
                "SP {other:x?}, the lender's data before the lend {before:#x}"
            ))),
        }
    });
    r.check("lend.sp_uses", {
        (|| {
            c.done(Request::MemFill {
                region: id,
                offset: 0,
                len,
                pattern,
            })?;
            let want: Vec<u8> = (0..len).map(|o| pattern_byte(pattern, o)).collect();
            match c.checksum(id, 0, len)? {
                got if got == Checksum::of(&want) => Ok(()),
                got => fail!(
                    "checksum {got:#x} after fill, expected {:#x}",
                    Checksum::of(&want)
                ),
            }
        })()
    });
    r.check("lend.release", c.done(Request::MemRelease { region: id }));
    r.testbed_only(spmc, "lend.blocked_until_reclaimed", S2, || {
        blocked(c, pa, control::OWNER_LENT)
    });
    r.check("lend.reclaim", ok(c.reclaim(h)));
    r.check("lend.nw_reads_again", {
        let p = c.env.probe_read(pa);
        let want = u64::from_le_bytes(core::array::from_fn(|i| {
            pattern_byte(pattern, 0x808 + i as u32)
        }));
        match p.blocked {
            Some(true) => Err(f(format_args!("still blocked after reclaim"))),
            _ if p.value != want => Err(f(format_args!(
                "read {:#x}, the SP wrote {want:#x}",
                p.value
            ))),
            _ => Ok(()),
        }
    });
}

fn donate<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    if !c.donate_supported() {
        for name in DONATE_CHECKS {
            r.skip(name, DONATE_UNSUPPORTED);
        }
        return;
    }
    let desc = c.desc(SendKind::Donate, &DONATE);
    let h = c.send(SendKind::Donate, &desc);
    let sent = r.check(
        "donate.send",
        h.map(drop).map_err(|e| f(format_args!("{e:?}"))),
    );
    let Some(h) = h.ok().filter(|_| sent) else {
        return;
    };
    let pa = c.page(DONATE[0].0);
    let spmc = c.env.spmc();
    r.testbed_only(spmc, "donate.nw_read_blocked", S2, || {
        blocked(c, pa, control::OWNER_DONATED)
    });
    let info = c.retrieve_ok(h, 3);
    let got = r.check(
        "donate.retrieve",
        info.as_ref()
            .map_err(|e| f(format_args!("{e:?}")))
            .and_then(|i| expect_info(i, 1, 1, 3)),
    );
    let Some(info) = info.ok().filter(|_| got) else {
        return;
    };
    r.check("donate.sp_uses", {
        (|| {
            c.done(Request::MemFill {
                region: info.region,
                offset: 0,
                len: PAGE as u32,
                pattern: 0xd0,
            })?;
            let want: Vec<u8> = (0..PAGE as u32).map(|o| pattern_byte(0xd0, o)).collect();
            match c.checksum(info.region, 0, PAGE as u32)? {
                got if got == Checksum::of(&want) => Ok(()),
                got => fail!("checksum {got:#x}"),
            }
        })()
    });
    r.check(
        "donate.owner_cannot_reclaim",
        want_ffa(c.reclaim(h), FfaError::InvalidParameters),
    );
    r.check(
        "donate.sp_unmaps",
        c.done(Request::MemRelease {
            region: info.region,
        }),
    );
    r.testbed_only(spmc, "donate.never_returns", S2, || {
        blocked(c, pa, control::OWNER_DONATED)
    });
}

/// `MemStats` over DIRECT_REQ_32 and DIRECT_REQ2 answers as over DIRECT_REQ_64.
fn transports<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let s64 = c.stats()?;
    let req = [Command::MemStats as u64, 0, 0, 0, 0];
    let r32 = match c.direct(&req, Width::W32) {
        Ok(r) => r,
        Err(e) => fail!("REQ_32: {e:?}"),
    };
    let mut req2 = [0u64; flexserve_proto::DIRECT2_PAYLOAD_REGS];
    req2[0] = Command::MemStats as u64;
    let r2 = match c.direct2(ffa::Uuid(flexserve_proto::SERVICE_UUID), &req2) {
        Ok(r) => r,
        Err(e) => fail!("REQ2: {e:?}"),
    };
    for (name, regs, width) in [
        ("REQ_32", &r32[..], Width::W32),
        ("REQ2", &r2[..], Width::W64),
    ] {
        match Response::decode(regs, width, Command::MemStats) {
            Ok(Response::MemStats(s)) if s == s64 => {}
            other => fail!("{name}: {other:?}, REQ_64 said {s64:?}"),
        }
    }
    Ok(())
}

/// The zero flags: LEND with "zero memory" (the borrower sees zeros) and RECLAIM with "zero
/// memory" (the owner gets zeros back, not what the borrower left).
fn lend_zeroing<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    let zeros = Checksum::of(&[0u8; PAGE as usize]);
    let zeroes = memory_rules::zeroes_on_request(c.env.spmc());
    r.check("lend.zero_flag_on_send", {
        (|| {
            let pages = [(PROBE + 20, 1)];
            c.scribble(&pages, 0x44);
            let mut desc = c.desc(SendKind::Lend, &pages);
            desc.flags = MemFlags(MemFlags::ZERO_MEMORY);
            if !zeroes {
                return refused_send(c, SendKind::Lend, &desc, FfaError::InvalidParameters);
            }
            let h = ok(c.send(SendKind::Lend, &desc))?;
            let i = c.retrieve_ok(h, 2)?;
            let sum = c.checksum(i.region, 0, PAGE as u32);
            c.done(Request::MemRelease { region: i.region })?;
            ok(c.reclaim(h))?;
            match sum? {
                s if s == zeros => Ok(()),
                s => fail!("the borrower saw checksum {s:#x}, not zeroed memory"),
            }
        })()
    });
    r.check("lend.reclaim_zero_flag", {
        (|| {
            let pages = [(PROBE + 22, 1)];
            c.scribble(&pages, 0x55);
            let desc = c.desc(SendKind::Lend, &pages);
            let h = ok(c.send(SendKind::Lend, &desc))?;
            let i = c.retrieve_ok(h, 2)?;
            c.done(Request::MemFill {
                region: i.region,
                offset: 0,
                len: PAGE as u32,
                pattern: 0x005e_c2e7,
            })?;
            c.done(Request::MemRelease { region: i.region })?;
            let flags = ReclaimFlags {
                zero_memory: true,
                time_slicing: false,
            };
            if !zeroes {
                // Refused, and the plain reclaim still works.
                let zeroed = c.env.ep().mem_reclaim(h, flags);
                let plain = c.reclaim(h);
                want_ffa(zeroed, FfaError::InvalidParameters)?;
                return ok(plain);
            }
            ok(c.env.ep().mem_reclaim(h, flags))?;
            match c.local_checksum(&pages, 0, PAGE) {
                s if s == zeros => Ok(()),
                s => fail!("the owner got checksum {s:#x} back, not zeroed memory"),
            }
        })()
    });
}

fn fragmented<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    let pages: Vec<(u64, u32)> = (0..FRAG_RANGES as u64)
        .map(|i| (FRAG_FIRST + 2 * i, 1))
        .collect();
    c.scribble(&pages, 0x33);
    let desc = c.desc(SendKind::Share, &pages);
    let h = c.send(SendKind::Share, &desc);
    let sent = r.check("frag.send_512_ranges", {
        match (&h, desc.encoded_len(DescKind::Send(SendKind::Share))) {
            (Ok(_), Ok(n)) if n > 4096 => Ok(()),
            (Ok(_), n) => Err(f(format_args!("descriptor of {n:?} bytes fits one buffer"))),
            (Err(e), _) => Err(f(format_args!("{e:?}"))),
        }
    });
    let Some(h) = h.ok().filter(|_| sent) else {
        return;
    };
    let n = FRAG_RANGES as u32;
    let info = c.retrieve_ok(h, 1);
    let got = r.check(
        "frag.retrieve_fragmented_response",
        info.as_ref()
            .map_err(|e| f(format_args!("{e:?}")))
            .and_then(|i| expect_info(i, n, n, 1))
            .and_then(|()| expect_held(c, 1, n)),
    );
    if let Some(info) = info.ok().filter(|_| got) {
        r.check("frag.sp_checksum_matches", {
            let len = n * PAGE as u32;
            let want = c.local_checksum(&pages, 0, u64::from(len));
            match c.checksum(info.region, 0, len) {
                Ok(got) if got == want => Ok(()),
                other => Err(f(format_args!("SP {other:x?}, client {want:#x}"))),
            }
        });
        r.check(
            "frag.release",
            c.done(Request::MemRelease {
                region: info.region,
            }),
        );
    }
    r.check("frag.reclaim", ok(c.reclaim(h)));
}

/// Sends raw bytes that must be refused with `want`; reclaims anything wrongly accepted.
fn refused<E: Env>(
    c: &mut Ctx<'_, E>,
    kind: SendKind,
    bytes: &[u8],
    frag: Option<u32>,
    want: FfaError,
) -> CheckResult {
    let total = bytes.len() as u32;
    let res = c.send_raw(kind, bytes, total, frag.unwrap_or(total));
    if let Ok(MemSendReply::Done(h)) = res {
        let _ = c.reclaim(h);
    }
    want_ffa(res, want)
}

/// The malformed share `bytes` (check `name`, spec answer `spec`) gets this SPMC's answer
/// (`memory_rules::malformed`).
fn malformed_send<E: Env>(
    c: &mut Ctx<'_, E>,
    name: &str,
    bytes: &[u8],
    spec: FfaError,
) -> CheckResult {
    let answer = memory_rules::malformed(c.env.spmc(), name, spec);
    let total = bytes.len() as u32;
    let h = match answer {
        Answer::Refused(want) => return refused(c, SendKind::Share, bytes, None, want),
        Answer::Accepted | Answer::AcceptedUnchecked => {
            match c.send_raw(SendKind::Share, bytes, total, total) {
                Ok(MemSendReply::Done(h)) => h,
                other => fail!("{other:x?}, expected the send accepted ({answer:?})"),
            }
        }
    };
    if answer == Answer::AcceptedUnchecked {
        // The SP must not map what the SPMC did not check, and must leave nothing behind.
        let got = c.retrieve(h, 1);
        if let Ok(SpReply::Region(i)) = &got {
            let _ = c.call_sp(Request::MemRelease { region: i.region });
        }
        let reclaim = c.reclaim(h);
        match got? {
            SpReply::Error(Status::RegionRejected | Status::FfaError, _) => {}
            other => fail!("the SP took the unchecked descriptor: {other:x?}"),
        }
        expect_held(c, 0, 0)?;
        return ok(reclaim);
    }
    ok(c.reclaim(h))
}

/// Sends `desc`, which must be refused with `want`; reclaims it if wrongly accepted.
fn refused_send<E: Env>(
    c: &mut Ctx<'_, E>,
    kind: SendKind,
    desc: &MemTransaction,
    want: FfaError,
) -> CheckResult {
    let res = c.send(kind, desc);
    if let Ok(h) = res {
        let _ = c.reclaim(h);
    }
    want_ffa(res, want)
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at + v.len()) {
        d.copy_from_slice(v);
    }
}

fn malformed<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    use FfaError::{Denied, InvalidParameters as Inv};
    let good_pages = [(PROBE, 1), (PROBE + 2, 1)];
    let good = c
        .desc(SendKind::Share, &good_pages)
        .to_vec(DescKind::Send(SendKind::Share))
        .unwrap_or_default();
    let u16b = |v: u16| v.to_le_bytes().to_vec();
    let u32b = |v: u32| v.to_le_bytes().to_vec();
    let u64b = |v: u64| v.to_le_bytes().to_vec();
    let sp = c.sp_id();
    let base = c.page(PROBE);
    // (name, field offset, new bytes, expected error)
    let corruptions: [(&str, usize, Vec<u8>, FfaError); 13] = [
        ("mal.zero_receivers", at::EMAD_COUNT, u32b(0), Inv),
        ("mal.emad_offset_misaligned", at::EMAD_OFFSET, u32b(56), Inv),
        ("mal.emad_size_unknown", at::EMAD_SIZE, u32b(24), Inv),
        (
            "mal.composite_offset_out_of_bounds",
            at::EMAD_COMPOSITE,
            u32b(0x1_0000),
            Inv,
        ),
        ("mal.page_count_mismatch", at::TOTAL_PAGES, u32b(3), Inv),
        (
            "mal.range_count_beyond_descriptor",
            at::RANGE_COUNT,
            u32b(100),
            Inv,
        ),
        (
            "mal.misaligned_range_address",
            at::RANGE0,
            u64b(base + 0x800),
            Inv,
        ),
        ("mal.wrong_sender", at::SENDER, u16b(sp), Denied),
        ("mal.unknown_receiver", at::EMAD, u16b(0x80fe), Inv),
        (
            "mal.ns_bit_from_sender",
            at::ATTRIBUTES,
            u16b(0x2f | 1 << 6),
            Inv,
        ),
        (
            "mal.reserved_attribute_bits",
            at::ATTRIBUTES,
            u16b(0x2f | 1 << 9),
            Inv,
        ),
        (
            "mal.share_with_zero_flag",
            at::FLAGS,
            u32b(MemFlags::ZERO_MEMORY),
            Inv,
        ),
        (
            "mal.reserved_header_nonzero",
            at::RESERVED + 4,
            u32b(1),
            Inv,
        ),
    ];
    for (name, off, bytes, want) in corruptions {
        let mut d = good.clone();
        put(&mut d, off, &bytes);
        r.check(name, malformed_send(c, name, &d, want));
    }
    r.check("mal.zero_page_range", {
        let mut d = good.clone();
        put(&mut d, at::RANGE0_PAGES, &u32b(0));
        put(&mut d, at::TOTAL_PAGES, &u32b(1));
        malformed_send(c, "mal.zero_page_range", &d, Inv)
    });
    r.check("mal.zero_ranges", {
        let mut d = good.clone();
        put(&mut d, at::RANGE_COUNT, &u32b(0));
        put(&mut d, at::TOTAL_PAGES, &u32b(0));
        d.truncate(at::RANGE0);
        malformed_send(c, "mal.zero_ranges", &d, Inv)
    });
    r.check("mal.overlapping_ranges", {
        let d = c
            .desc(SendKind::Share, &[(PROBE, 2), (PROBE + 1, 1)])
            .to_vec(DescKind::Send(SendKind::Share))
            .unwrap_or_default();
        malformed_send(c, "mal.overlapping_ranges", &d, Inv)
    });
    r.check("mal.duplicate_receiver", {
        let mut desc = c.desc(SendKind::Share, &good_pages);
        desc.receivers.push(desc.receivers[0]);
        let d = desc
            .to_vec(DescKind::Send(SendKind::Share))
            .unwrap_or_default();
        refused(c, SendKind::Share, &d, None, Inv)
    });
    let donate = c.donate_supported();
    r.skip_unless(donate, "mal.donate_with_access", DONATE_UNSUPPORTED, || {
        let mut desc = c.desc(SendKind::Donate, &good_pages);
        desc.receivers[0].perm.data_access = DataAccess::ReadWrite;
        let d = desc
            .to_vec(DescKind::Send(SendKind::Donate))
            .unwrap_or_default();
        refused(c, SendKind::Donate, &d, None, Inv)
    });
    r.check("mal.fragment_longer_than_total", {
        let total = good.len() as u32;
        let res = c.send_raw(SendKind::Share, &good, total, total + 16);
        if let Ok(MemSendReply::Done(h)) = res {
            let _ = c.reclaim(h);
        }
        want_ffa(res, Inv)
    });
    let spmc = c.env.spmc();
    r.testbed_only(
        spmc,
        "mal.memory_not_owned",
        Needs::TestbedReservedMemory,
        || {
            let mut d = good.clone();
            put(
                &mut d,
                at::RANGE0,
                &u64b(testbed_layout::ns_ram::TESTBED_NS_BASE),
            );
            refused(c, SendKind::Share, &d, None, Denied)
        },
    );
    r.check("mal.lend_already_lent", {
        (|| {
            let desc = c.desc(SendKind::Lend, &[(PROBE + 10, 1)]);
            let h = ok(c.send(SendKind::Lend, &desc))?;
            let again = c.send(SendKind::Lend, &desc);
            if let Ok(h2) = again {
                let _ = c.reclaim(h2);
            }
            let reclaim = c.reclaim(h);
            want_ffa(again, memory_rules::lend_already_lent(spmc))?;
            ok(reclaim)
        })()
    });
    r.check(
        "mal.reclaim_unknown_handle",
        want_ffa(c.reclaim(Handle(0x1234_5678)), Inv),
    );
    r.check(
        "mal.retrieve_unknown_handle",
        want_sp_ffa(c.retrieve(Handle(0x1234_5678), 0), Inv),
    );
    r.check("mal.retrieve_wrong_type", {
        (|| {
            let desc = c.desc(SendKind::Share, &[(PROBE + 12, 1)]);
            let h = ok(c.send(SendKind::Share, &desc))?;
            let res = want_sp_ffa(c.retrieve(h, 2), Inv);
            let reclaim = c.reclaim(h);
            res?;
            ok(reclaim)
        })()
    });
    r.check("mal.relinquish_never_retrieved", {
        (|| {
            let desc = c.desc(SendKind::Share, &[(PROBE + 14, 1)]);
            let h = ok(c.send(SendKind::Share, &desc))?;
            let res = want_sp_ffa(c.call_sp(Request::MemRelinquishHandle { handle: h.0 }), Inv);
            let reclaim = c.reclaim(h);
            res?;
            ok(reclaim)
        })()
    });
    r.check("mal.retrieve_lent_twice", {
        (|| {
            let desc = c.desc(SendKind::Lend, &[(PROBE + 16, 1)]);
            let h = ok(c.send(SendKind::Lend, &desc))?;
            let first = c.retrieve_ok(h, 2);
            let second = c.retrieve(h, 2);
            if let Ok(i) = &first {
                let _ = c.call_sp(Request::MemRelease { region: i.region });
            }
            let reclaim = c.reclaim(h);
            first?;
            if memory_rules::grants_second_retrieve(spmc) {
                // The SPMC hands the same pages out again; the SP refuses (and relinquishes)
                // a region overlapping one it holds.
                want_status(second, Status::RegionRejected, RejectReason::Overlap as u64)?;
            } else {
                want_sp_ffa(second, Denied)?;
            }
            ok(reclaim)
        })()
    });
    r.check(
        "mal.sp_unknown_region",
        want_status(
            c.call_sp(Request::MemChecksum {
                region: 0xbad,
                offset: 0,
                len: 1,
            }),
            Status::NoSuchRegion,
            0xbad,
        ),
    );
    r.check("mal.system_still_serves", {
        (|| {
            let s = c.stats()?;
            if (s.live_regions, s.mapped_pages) != (0, 0) {
                fail!("left behind: {s:?}");
            }
            let desc = c.desc(SendKind::Share, &good_pages);
            let h = ok(c.send(SendKind::Share, &desc))?;
            let i = c.retrieve_ok(h, 1)?;
            c.done(Request::MemRelease { region: i.region })?;
            ok(c.reclaim(h))
        })()
    });
}

fn cycles<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    let before = c.stats();
    let mut handles: Vec<u64> = Vec::new();
    let t0 = c.env.counter();
    r.check("cycles.share_retrieve_relinquish_reclaim_200", {
        (|| {
            let desc = c.desc(SendKind::Share, &CYCLE);
            for i in 0..CYCLES {
                let h = match c.send(SendKind::Share, &desc) {
                    Ok(h) => h,
                    Err(e) => fail!("cycle {i}: send: {e:?}"),
                };
                handles.push(h.0);
                let info = c
                    .retrieve_ok(h, 1)
                    .map_err(|e| f(format_args!("cycle {i}: {e:?}")))?;
                c.done(Request::MemRelease {
                    region: info.region,
                })
                .map_err(|e| f(format_args!("cycle {i}: {e:?}")))?;
                if let Err(e) = c.reclaim(h) {
                    fail!("cycle {i}: reclaim: {e:?}");
                }
            }
            Ok(())
        })()
    });
    if let (Some((t0, hz)), Some((t1, _))) = (t0, c.env.counter())
        && hz != 0
    {
        let us = (t1.wrapping_sub(t0) as u128 * 1_000_000 / hz as u128) as u64;
        r.note(format_args!(
            "{CYCLES} share/retrieve/release/reclaim cycles: {us} us, {} us each (guest time)",
            us / u64::from(CYCLES)
        ));
    }
    r.check("cycles.no_leaked_mapping", {
        (|| {
            let (Ok(b), Ok(a)) = (before.as_ref(), c.stats()) else {
                fail!("no stats");
            };
            if (a.live_regions, a.mapped_pages) != (0, 0)
                || a.retrieves.wrapping_sub(b.retrieves) != CYCLES
                || a.relinquishes.wrapping_sub(b.relinquishes) != CYCLES
            {
                fail!("before {b:?}, after {a:?}");
            }
            Ok(())
        })()
    });
    r.check("cycles.no_leaked_handle", {
        // Handles may repeat: Hafnium hands out the lowest free share-state index, so a
        // leak-free loop sees the same handle each time. What must hold is that every cycle
        // got one and none of them is still live.
        if handles.len() != CYCLES as usize {
            Err(f(format_args!(
                "{} handles in {} cycles",
                handles.len(),
                CYCLES
            )))
        } else {
            // Every one is gone: reclaiming any again is refused.
            let mut res = Ok(());
            for h in [
                handles[0],
                handles[handles.len() / 2],
                handles[handles.len() - 1],
            ] {
                res =
                    res.and_then(|()| want_ffa(c.reclaim(Handle(h)), FfaError::InvalidParameters));
            }
            res
        }
    });
}
