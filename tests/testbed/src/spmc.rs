//! The SPMC's FF-A state machine: what the normal world and the secure partition may call, in
//! which state, and with which answer. Pure logic over registers and a guest-memory trait, so it
//! runs under host `cargo test`; `arch::el2` moves registers between it and the SP's vCPU.
//!
//! Follows FF-A v1.2 (DEN0077A) and, where the spec leaves room, Hafnium (`src/api.c`): version
//! lock after the first other call, FEATURES(MEM_RETRIEVE_REQ) input bit 1, REQ2 UUID check,
//! DENIED for a messaging method the receiver does not declare, BUSY for a receiver that is not
//! waiting, `[8001 0] ` console prefix, ABORTED once the SP has failed.

use core::fmt::Write;

use crate::ffa_abi::{self as abi, FfaError, Regs, Uuid};
use crate::manifest::{self, SpManifest};

/// Guest physical memory as the SPMC sees it (IPA == PA for the SP; the NW has no stage-2).
pub trait GuestMem {
    /// Copies bytes out of guest memory; false if the range is not accessible.
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool;
    /// Copies bytes into guest memory; false if the range is not accessible.
    fn write(&mut self, pa: u64, data: &[u8]) -> bool;
}

/// RX/TX buffer size: one 4 KiB page each (Hafnium's HF_MAILBOX_SIZE).
pub const MAILBOX_PAGES: u64 = 1;
const PAGE: u64 = 0x1000;
const INFO_DESC_SIZE_V1_1: usize = 24;
const INFO_DESC_SIZE_V1_0: usize = 8;
/// Partition properties bit 8: AArch64 execution state (v1.1+).
const PROP_AARCH64: u32 = 1 << 8;
const CONSOLE_LINE: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub tx: u64,
    pub rx: u64,
    /// The RX buffer holds a message the endpoint has not released yet.
    pub rx_full: bool,
}

/// One FF-A endpoint's negotiated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: u16,
    pub version: u32,
    /// Set by the first FF-A call other than FFA_VERSION.
    pub version_locked: bool,
    pub mailbox: Option<Mailbox>,
}

impl Endpoint {
    fn new(id: u16, version: u32) -> Self {
        Endpoint {
            id,
            version,
            version_locked: false,
            mailbox: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqKind {
    Req32,
    Req64,
    Req2,
}

/// The SP's run state (FF-A "partition runtime model" for a UP S-EL1 SP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpState {
    /// Running its initialisation, until the first FFA_MSG_WAIT.
    Init,
    /// Blocked in MSG_WAIT / DIRECT_RESP: ready for a direct request.
    Waiting,
    /// Handling a direct request from `from`.
    Running { from: u16, kind: ReqKind },
    /// Failed (panic, fault, FFA_ABORT, FFA_ERROR): every request gets ABORTED.
    Aborted,
}

/// What the SPMC knows about the SP from its manifest.
#[derive(Clone, Copy, Debug)]
pub struct SpInfo {
    pub id: u16,
    pub manifest: SpManifest,
    /// Secure memory the SP owns: its package (1 MiB) at `load_address`.
    pub pkg_base: u64,
    pub pkg_size: u64,
}

impl SpInfo {
    /// Whether `[pa, pa + len)` is secure normal memory of this SP (for its RX/TX buffers).
    fn owns(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else {
            return false;
        };
        let inside = |b: u64, s: u64| pa >= b && end <= b.saturating_add(s);
        inside(self.pkg_base, self.pkg_size)
            || self.manifest.regions().iter().any(|r| {
                !r.device
                    && r.attributes & manifest::ATTR_NS == 0
                    && r.attributes & 0x3 == 0x3
                    && inside(r.base, r.pages.saturating_mul(PAGE))
            })
    }

    fn properties(&self, caller_version: u32) -> u32 {
        use manifest::msg;
        let m = self.manifest.messaging_method;
        let mut p = m & (msg::DIRECT_REQ_RECV | msg::DIRECT_REQ_SEND | msg::INDIRECT);
        if caller_version >= abi::version(1, 1) {
            p |= PROP_AARCH64;
        }
        if caller_version >= abi::version(1, 2) {
            p |= m & (msg::DIRECT_REQ2_RECV | msg::DIRECT_REQ2_SEND);
        }
        p
    }
}

/// The world a call comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Nw,
    Sp,
}

/// What the SPMC does after a normal-world call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NwAction {
    /// Answer the normal world at once.
    Reply(Regs),
    /// Resume the SP with these registers (a direct request); its answer goes to the NW.
    RunSp(Regs),
}

/// What the SPMC does after a call from the SP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpAction {
    /// Resume the SP with x0-x7 = these registers (x8-x17 too for `ext`).
    Resume { regs: Regs, ext: bool },
    /// The SP finished its initialisation (first FFA_MSG_WAIT).
    InitDone,
    /// Deliver a response to the normal world; the SP is waiting again.
    ToNw(Regs),
    /// The SP failed; `reply` is what the normal world gets if it was waiting for the SP.
    Aborted { reply: Option<Regs> },
}

/// Why the SP was marked aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// FFA_ABORT (Hafnium, FF-A v1.3).
    FfaAbort,
    /// FFA_ERROR from the SP (init failure) with this code.
    FfaError(i32),
    /// An exception the SPMC took from the SP (data/instruction abort, unknown trap).
    Exception { esr: u64, far: u64, elr: u64 },
}

pub struct Spmc {
    pub sp: Option<SpInfo>,
    pub sp_state: SpState,
    pub sp_ep: Endpoint,
    pub nw_ep: Endpoint,
    console: [u8; CONSOLE_LINE],
    console_len: usize,
}

/// Address range of the normal world's RAM, where its RX/TX buffers must lie.
pub const NW_RAM: (u64, u64) = (
    testbed_layout::virt::NS_RAM_BASE,
    testbed_layout::virt::NS_RAM_SIZE,
);

fn w(r: &Regs, i: usize) -> u32 {
    r[i] as u32
}

fn is_smc32(fid: u32) -> bool {
    fid & 0x4000_0000 == 0
}

fn success64(r: Regs) -> Regs {
    let mut r = r;
    r[0] = u64::from(abi::SUCCESS_64);
    r
}

impl Spmc {
    /// An SPMC with the SP described by `sp` (None: no usable SP package; requests to 0x8001
    /// are then answered INVALID_PARAMETERS).
    pub fn new(sp: Option<SpInfo>) -> Self {
        let (id, version) = sp.map_or((abi::FIRST_SP_ID, abi::SPMC_VERSION), |s| {
            (s.id, s.manifest.ffa_version)
        });
        Spmc {
            sp,
            sp_state: SpState::Init,
            sp_ep: Endpoint::new(id, version),
            nw_ep: Endpoint::new(abi::NW_ID, abi::SPMC_VERSION),
            console: [0; CONSOLE_LINE],
            console_len: 0,
        }
    }

    fn ep(&mut self, c: Caller) -> &mut Endpoint {
        match c {
            Caller::Nw => &mut self.nw_ep,
            Caller::Sp => &mut self.sp_ep,
        }
    }

    // ---- calls common to both worlds --------------------------------------------------------

    fn version(&mut self, c: Caller, r: &Regs) -> Regs {
        let req = w(r, 1);
        let ep = self.ep(c);
        let mut out = [0u64; 18];
        let compatible =
            req >> 16 == abi::SPMC_VERSION >> 16 && (req & 0xffff) <= (abi::SPMC_VERSION & 0xffff);
        if req & 0x8000_0000 != 0 || !compatible || (ep.version_locked && req != ep.version) {
            out[0] = FfaError::NotSupported as i32 as u32 as u64;
            return out;
        }
        ep.version = req;
        out[0] = u64::from(abi::SPMC_VERSION);
        out
    }

    fn features(&mut self, c: Caller, r: &Regs) -> Regs {
        let id = w(r, 1);
        let input = w(r, 2);
        if id & 0x8000_0000 == 0 {
            // Feature IDs (NPI, MEI, SRI, notifications): the testbed has no interrupts or
            // notifications. Bits [30:8] and the input property MBZ; either way NOT_SUPPORTED.
            return abi::error(FfaError::NotSupported);
        }
        let common = [
            abi::ERROR,
            abi::SUCCESS_32,
            abi::SUCCESS_64,
            abi::VERSION,
            abi::FEATURES,
            abi::RX_RELEASE,
            abi::RXTX_MAP_32,
            abi::RXTX_UNMAP,
            abi::PARTITION_INFO_GET,
            abi::PARTITION_INFO_GET_REGS,
            abi::ID_GET,
            abi::SPM_ID_GET,
        ];
        let nw_only = [abi::DIRECT_REQ_32, abi::DIRECT_REQ_64, abi::DIRECT_REQ2];
        let sp_only = [
            abi::MSG_WAIT,
            abi::DIRECT_RESP_32,
            abi::DIRECT_RESP_64,
            abi::DIRECT_RESP2,
            abi::CONSOLE_LOG_32,
            abi::CONSOLE_LOG_64,
            abi::ABORT_32,
            abi::ABORT_64,
        ];
        let version = self.ep(c).version;
        match id {
            abi::RXTX_MAP_64 => {
                // Minimum buffer 4 KiB; v1.2 callers also learn the maximum page count.
                let max = if version >= abi::version(1, 2) {
                    MAILBOX_PAGES as u32
                } else {
                    0
                };
                abi::success32(max << 16)
            }
            abi::MEM_RETRIEVE_REQ_32 | abi::MEM_RETRIEVE_REQ_64 if c == Caller::Sp => {
                // Hafnium: a v1.1+ caller must set input bit 1 (NS-bit support).
                if version >= abi::version(1, 1) && input & 0b10 == 0 {
                    return abi::error(FfaError::NotSupported);
                }
                // Buffer support (bit 0), NS bit (bit 1), hypervisor retrieve (bit 2).
                abi::success32(0b111)
            }
            _ if common.contains(&id)
                || (c == Caller::Nw && nw_only.contains(&id))
                || (c == Caller::Sp && sp_only.contains(&id)) =>
            {
                abi::success32(0)
            }
            _ => abi::error(FfaError::NotSupported),
        }
    }

    fn rxtx_map(&mut self, c: Caller, r: &Regs) -> Regs {
        let fid = w(r, 0);
        let (tx, rx) = if is_smc32(fid) {
            (u64::from(w(r, 1)), u64::from(w(r, 2)))
        } else {
            (r[1], r[2])
        };
        let count = w(r, 3);
        if count >> 6 != 0 {
            return abi::error(FfaError::InvalidParameters);
        }
        let count = u64::from(count);
        let size = count * PAGE;
        if count != MAILBOX_PAGES || tx == 0 || rx == 0 || tx % PAGE != 0 || rx % PAGE != 0 {
            return abi::error(FfaError::InvalidParameters);
        }
        if tx < rx.saturating_add(size) && rx < tx.saturating_add(size) {
            return abi::error(FfaError::InvalidParameters);
        }
        let allowed = |a: u64| match c {
            Caller::Nw => {
                a >= NW_RAM.0
                    && a.checked_add(size)
                        .is_some_and(|e| e <= NW_RAM.0 + NW_RAM.1)
            }
            Caller::Sp => self.sp.is_some_and(|s| s.owns(a, size)),
        };
        if !allowed(tx) || !allowed(rx) {
            return abi::error(FfaError::InvalidParameters);
        }
        let ep = self.ep(c);
        if ep.mailbox.is_some() {
            return abi::error(FfaError::Denied);
        }
        ep.mailbox = Some(Mailbox {
            tx,
            rx,
            rx_full: false,
        });
        abi::success32(0)
    }

    fn rxtx_unmap(&mut self, c: Caller, r: &Regs) -> Regs {
        let a = w(r, 1);
        let ep = self.ep(c);
        let id = (a >> 16) as u16;
        if a & 0xffff != 0 || (id != 0 && id != ep.id) {
            return abi::error(FfaError::InvalidParameters);
        }
        if ep.mailbox.take().is_none() {
            return abi::error(FfaError::InvalidParameters);
        }
        abi::success32(0)
    }

    fn rx_release(&mut self, c: Caller, r: &Regs) -> Regs {
        let ep = self.ep(c);
        let id = w(r, 1) as u16;
        if w(r, 1) >> 16 != 0 || (id != 0 && id != ep.id) {
            return abi::error(FfaError::InvalidParameters);
        }
        match ep.mailbox.as_mut() {
            Some(m) if m.rx_full => {
                m.rx_full = false;
                abi::success32(0)
            }
            _ => abi::error(FfaError::Denied),
        }
    }

    /// The partitions matching `uuid` (nil: all, one entry per UUID as Hafnium lists them), as
    /// (id, exec ctx count, properties, uuid-to-report).
    fn matching(&self, uuid: Uuid, caller_version: u32) -> ([(u16, u16, u32, Uuid); 4], usize) {
        let mut out = [(0u16, 0u16, 0u32, Uuid::NIL); 4];
        let mut n = 0;
        if let Some(sp) = &self.sp {
            let props = sp.properties(caller_version);
            let count = sp.manifest.exec_ctx_count;
            if uuid.is_nil() {
                for u in sp.manifest.uuids() {
                    out[n] = (sp.id, count, props, *u);
                    n += 1;
                }
            } else if sp.manifest.uuids().contains(&uuid) {
                out[0] = (sp.id, count, props, Uuid::NIL);
                n = 1;
            }
        }
        (out, n)
    }

    fn partition_info_get(&mut self, c: Caller, r: &Regs, mem: &mut dyn GuestMem) -> Regs {
        let uuid = Uuid::from_w1_w4(r);
        let flags = w(r, 5);
        if flags & !1 != 0 {
            return abi::error(FfaError::InvalidParameters);
        }
        let version = self.ep(c).version;
        let (list, n) = self.matching(uuid, version);
        if n == 0 {
            return abi::error(FfaError::InvalidParameters);
        }
        if flags & 1 != 0 {
            return abi::success32(0).map_with(|o| o[2] = n as u64);
        }
        let desc = if version >= abi::version(1, 1) {
            INFO_DESC_SIZE_V1_1
        } else {
            INFO_DESC_SIZE_V1_0
        };
        let Some(mb) = self.ep(c).mailbox else {
            return abi::error(FfaError::Busy);
        };
        if mb.rx_full {
            return abi::error(FfaError::Busy);
        }
        let mut buf = [0u8; 4 * INFO_DESC_SIZE_V1_1];
        for (i, (id, count, props, u)) in list[..n].iter().enumerate() {
            let d = &mut buf[i * desc..(i + 1) * desc];
            d[0..2].copy_from_slice(&id.to_le_bytes());
            d[2..4].copy_from_slice(&count.to_le_bytes());
            d[4..8].copy_from_slice(&props.to_le_bytes());
            if desc == INFO_DESC_SIZE_V1_1 {
                d[8..24].copy_from_slice(&u.to_bytes());
            }
        }
        if !mem.write(mb.rx, &buf[..n * desc]) {
            return abi::error(FfaError::Aborted);
        }
        if let Some(m) = self.ep(c).mailbox.as_mut() {
            m.rx_full = true;
        }
        let mut out = abi::success32(n as u32);
        out[3] = desc as u64;
        out
    }

    fn partition_info_get_regs(&mut self, c: Caller, r: &Regs) -> Regs {
        let uuid = Uuid::from_u64_pair(r[1], r[2]);
        let start = (r[3] & 0xffff) as usize;
        let tag = (r[3] >> 16) & 0xffff;
        if r[3] >> 32 != 0 || tag != 0 {
            return abi::error(FfaError::InvalidParameters);
        }
        let version = self.ep(c).version;
        let (list, n) = self.matching(uuid, version);
        if n == 0 || start >= n {
            return abi::error(FfaError::InvalidParameters);
        }
        let mut out = [0u64; 18];
        let mut cur = start;
        for (slot, (id, count, props, u)) in list[start..n].iter().enumerate().take(5) {
            let (lo, hi) = u.to_u64_pair();
            out[3 + 3 * slot] = u64::from(*id) | u64::from(*count) << 16 | u64::from(*props) << 32;
            out[4 + 3 * slot] = lo;
            out[5 + 3 * slot] = hi;
            cur = start + slot;
        }
        out[2] = (n as u64 - 1) | (cur as u64) << 16 | (INFO_DESC_SIZE_V1_1 as u64) << 48;
        success64(out)
    }

    /// Calls both worlds may make; None if `fid` is not one of them.
    fn common(&mut self, c: Caller, r: &Regs, mem: &mut dyn GuestMem) -> Option<Regs> {
        let fid = w(r, 0);
        Some(match fid {
            abi::FEATURES => self.features(c, r),
            abi::ID_GET => abi::success32(u32::from(self.ep(c).id)),
            abi::SPM_ID_GET => abi::success32(u32::from(abi::SPMC_ID)),
            abi::RXTX_MAP_32 | abi::RXTX_MAP_64 => self.rxtx_map(c, r),
            abi::RXTX_UNMAP => self.rxtx_unmap(c, r),
            abi::RX_RELEASE => self.rx_release(c, r),
            abi::PARTITION_INFO_GET => self.partition_info_get(c, r, mem),
            abi::PARTITION_INFO_GET_REGS => self.partition_info_get_regs(c, r),
            _ => return None,
        })
    }

    // ---- normal world -----------------------------------------------------------------------

    /// Handles an FF-A call from the normal world (x0-x17 as the NW passed them).
    pub fn nw_call(&mut self, r: &Regs, mem: &mut dyn GuestMem) -> NwAction {
        let fid = w(r, 0);
        if fid == abi::VERSION && r[0] >> 32 == 0 {
            return NwAction::Reply(self.version(Caller::Nw, r));
        }
        self.nw_ep.version_locked = true;
        if r[0] >> 32 != 0 {
            return NwAction::Reply(abi::error(FfaError::NotSupported));
        }
        if let Some(out) = self.common(Caller::Nw, r, mem) {
            return NwAction::Reply(out);
        }
        match fid {
            abi::DIRECT_REQ_32 => self.direct_req(r, ReqKind::Req32),
            abi::DIRECT_REQ_64 => self.direct_req(r, ReqKind::Req64),
            abi::DIRECT_REQ2 => self.direct_req(r, ReqKind::Req2),
            _ => NwAction::Reply(abi::error(FfaError::NotSupported)),
        }
    }

    fn direct_req(&mut self, r: &Regs, kind: ReqKind) -> NwAction {
        use manifest::msg;
        let reply = |e| NwAction::Reply(abi::error(e));
        let ids = w(r, 1);
        let (sender, receiver) = ((ids >> 16) as u16, ids as u16);
        if kind != ReqKind::Req2 && (w(r, 2) != 0 || (kind == ReqKind::Req64 && r[2] != 0)) {
            // w2 MBZ for partition messages; framework messages are not accepted from the NW.
            return reply(FfaError::InvalidParameters);
        }
        if sender & 0x8000 != 0 || sender != self.nw_ep.id {
            return reply(FfaError::InvalidParameters);
        }
        let Some(sp) = self.sp.filter(|s| s.id == receiver) else {
            return reply(FfaError::InvalidParameters);
        };
        if kind == ReqKind::Req2 {
            let u = Uuid::from_u64_pair(r[2], r[3]);
            if !u.is_nil() && !sp.manifest.uuids().contains(&u) {
                return reply(FfaError::InvalidParameters);
            }
        }
        let needed = match kind {
            ReqKind::Req2 => msg::DIRECT_REQ2_RECV,
            _ => msg::DIRECT_REQ_RECV,
        };
        if sp.manifest.messaging_method & needed == 0 {
            return reply(FfaError::Denied);
        }
        match self.sp_state {
            SpState::Waiting => {}
            SpState::Aborted => return reply(FfaError::Aborted),
            SpState::Init | SpState::Running { .. } => return reply(FfaError::Busy),
        }
        self.sp_state = SpState::Running { from: sender, kind };
        let mut out = *r;
        match kind {
            ReqKind::Req32 => {
                for x in out.iter_mut() {
                    *x &= 0xffff_ffff;
                }
                out[8..].fill(0);
            }
            ReqKind::Req64 => out[8..].fill(0),
            ReqKind::Req2 => {}
        }
        NwAction::RunSp(out)
    }

    // ---- secure partition -------------------------------------------------------------------

    /// Handles an FF-A call (SMC or HVC) from the SP. `console` receives completed
    /// FFA_CONSOLE_LOG lines.
    pub fn sp_call(
        &mut self,
        r: &Regs,
        mem: &mut dyn GuestMem,
        console: &mut dyn Write,
    ) -> SpAction {
        let resume = |regs| SpAction::Resume { regs, ext: false };
        let fid = w(r, 0);
        if self.sp_state == SpState::Aborted {
            // Not reachable from a well-behaved runtime (an aborted SP is not run again).
            return SpAction::Aborted { reply: None };
        }
        if fid == abi::VERSION && r[0] >> 32 == 0 {
            return resume(self.version(Caller::Sp, r));
        }
        self.sp_ep.version_locked = true;
        if r[0] >> 32 != 0 {
            return resume(abi::error(FfaError::NotSupported));
        }
        if let Some(out) = self.common(Caller::Sp, r, mem) {
            return resume(out);
        }
        match fid {
            abi::CONSOLE_LOG_32 | abi::CONSOLE_LOG_64 => resume(self.console_log(r, console)),
            abi::MSG_WAIT => {
                if w(r, 1) != 0 || w(r, 2) & !1 != 0 {
                    return resume(abi::error(FfaError::InvalidParameters));
                }
                match self.sp_state {
                    SpState::Init => {
                        self.sp_state = SpState::Waiting;
                        SpAction::InitDone
                    }
                    _ => resume(abi::error(FfaError::Denied)),
                }
            }
            abi::DIRECT_RESP_32 | abi::DIRECT_RESP_64 | abi::DIRECT_RESP2 => self.direct_resp(r),
            abi::DIRECT_REQ_32 | abi::DIRECT_REQ_64 | abi::DIRECT_REQ2 => {
                // SP-to-SP only, and there is one SP: no valid destination.
                resume(abi::error(FfaError::InvalidParameters))
            }
            abi::ABORT_32 | abi::ABORT_64 => self.abort(AbortReason::FfaAbort),
            abi::ERROR => self.abort(AbortReason::FfaError(w(r, 2) as i32)),
            _ => resume(abi::error(FfaError::NotSupported)),
        }
    }

    fn direct_resp(&mut self, r: &Regs) -> SpAction {
        let fid = w(r, 0);
        let resume = |e| SpAction::Resume {
            regs: abi::error(e),
            ext: false,
        };
        let SpState::Running { from, kind } = self.sp_state else {
            return resume(FfaError::Denied);
        };
        let ids = w(r, 1);
        if (ids >> 16) as u16 != self.sp_ep.id || ids as u16 != from {
            return resume(FfaError::InvalidParameters);
        }
        if (fid == abi::DIRECT_RESP2) != (kind == ReqKind::Req2) {
            return resume(FfaError::Denied);
        }
        let mut out = *r;
        match fid {
            abi::DIRECT_RESP_32 => {
                if w(r, 2) != 0 {
                    return resume(FfaError::InvalidParameters);
                }
                for x in out.iter_mut() {
                    *x &= 0xffff_ffff;
                }
                out[8..].fill(0);
            }
            abi::DIRECT_RESP_64 => {
                if r[2] != 0 {
                    return resume(FfaError::InvalidParameters);
                }
                out[8..].fill(0);
            }
            _ => {
                out[2] = 0;
                out[3] = 0;
            }
        }
        self.sp_state = SpState::Waiting;
        SpAction::ToNw(out)
    }

    /// Marks the SP aborted (FFA_ABORT, FFA_ERROR, or an exception the runtime took).
    pub fn abort(&mut self, _reason: AbortReason) -> SpAction {
        let was = self.sp_state;
        self.sp_state = SpState::Aborted;
        SpAction::Aborted {
            reply: matches!(was, SpState::Running { .. }).then(|| abi::error(FfaError::Aborted)),
        }
    }

    fn console_log(&mut self, r: &Regs, console: &mut dyn Write) -> Regs {
        let fid = w(r, 0);
        let count = w(r, 1) as usize;
        let (regs, width) = if fid == abi::CONSOLE_LOG_32 {
            (6, 4)
        } else {
            (16, 8)
        };
        if count == 0 || count > regs * width {
            return abi::error(FfaError::InvalidParameters);
        }
        for i in 0..count {
            let byte = (r[2 + i / width] >> (8 * (i % width))) as u8;
            if byte == b'\n' || self.console_len == CONSOLE_LINE {
                self.flush_console(console);
            }
            if byte != b'\n' {
                self.console[self.console_len] = byte;
                self.console_len += 1;
            }
        }
        abi::success32(0)
    }

    fn flush_console(&mut self, console: &mut dyn Write) {
        let line = &self.console[..self.console_len];
        let text = core::str::from_utf8(line).unwrap_or("<non-UTF-8 console line>");
        let _ = writeln!(console, "[{:x} 0] {}", self.sp_ep.id, text);
        self.console_len = 0;
    }
}

trait MapWith {
    fn map_with(self, f: impl FnOnce(&mut Self)) -> Self;
}
impl MapWith for Regs {
    fn map_with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::manifest::{Region, SpManifest};
    use std::string::String;
    use std::vec::Vec;

    const UUID: Uuid = Uuid([0x1234_5678, 0x9abc_def0, 0x1122_3344, 0x5566_7788]);
    const OTHER: Uuid = Uuid([1, 2, 3, 4]);
    const NW_TX: u64 = 0x4010_0000;
    const NW_RX: u64 = 0x4010_1000;

    struct Mem {
        base: u64,
        bytes: Vec<u8>,
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
        }
    }

    fn manifest(messaging: u32) -> SpManifest {
        SpManifest {
            uuids: [UUID, Uuid::NIL, Uuid::NIL, Uuid::NIL],
            uuid_count: 1,
            id: Some(0x8001),
            ffa_version: 0x10002,
            exec_ctx_count: 1,
            load_address: 0x0e30_0000,
            entrypoint_offset: 0x4000,
            messaging_method: messaging,
            gp_register_num: Some(0),
            boot_info_manifest: true,
            regions: [Region {
                base: 0,
                pages: 0,
                attributes: 0,
                device: false,
            }; manifest::MAX_REGIONS],
            region_count: 0,
        }
    }

    fn spmc(messaging: u32) -> Spmc {
        let mut s = Spmc::new(Some(SpInfo {
            id: 0x8001,
            manifest: manifest(messaging),
            pkg_base: 0x0e30_0000,
            pkg_size: 0x10_0000,
        }));
        s.sp_state = SpState::Waiting;
        s
    }

    fn call(fid: u32, args: &[u64]) -> Regs {
        let mut r = [0u64; 18];
        r[0] = u64::from(fid);
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

    fn err(r: &Regs) -> Option<i32> {
        abi::error_code(r)
    }

    #[test]
    fn version_negotiation_and_lock() {
        let mut s = spmc(0x203);
        assert_eq!(nw(&mut s, call(abi::VERSION, &[0x10001]))[0], 0x10002);
        assert_eq!(s.nw_ep.version, 0x10001);
        // Still renegotiable before any other call.
        assert_eq!(nw(&mut s, call(abi::VERSION, &[0x10002]))[0], 0x10002);
        assert_eq!(
            nw(&mut s, call(abi::VERSION, &[0x2_0000]))[0] as u32 as i32,
            -1
        );
        assert_eq!(
            nw(&mut s, call(abi::VERSION, &[0x1_0003]))[0] as u32 as i32,
            -1
        );
        assert_eq!(
            nw(&mut s, call(abi::VERSION, &[0x8001_0002]))[0] as u32 as i32,
            -1
        );
        nw(&mut s, call(abi::ID_GET, &[]));
        assert_eq!(nw(&mut s, call(abi::VERSION, &[0x10002]))[0], 0x10002);
        assert_eq!(
            nw(&mut s, call(abi::VERSION, &[0x10001]))[0] as u32 as i32,
            -1,
            "locked after ID_GET"
        );
        // The SP's lock is its own.
        let SpAction::Resume { regs, .. } = sp(&mut s, call(abi::VERSION, &[0x10001])) else {
            panic!()
        };
        assert_eq!(regs[0], 0x10002);
    }

    #[test]
    fn ids_and_features() {
        let mut s = spmc(0x203);
        let id = nw(&mut s, call(abi::ID_GET, &[]));
        assert_eq!((id[0] as u32, id[2]), (abi::SUCCESS_32, 0));
        let SpAction::Resume { regs, .. } = sp(&mut s, call(abi::ID_GET, &[])) else {
            panic!()
        };
        assert_eq!(regs[2], 0x8001);
        let SpAction::Resume { regs, .. } = sp(&mut s, call(abi::SPM_ID_GET, &[])) else {
            panic!()
        };
        assert_eq!(regs[2], 0x8000);
        let f = |s: &mut Spmc, c: Caller, id: u32, input: u64| {
            let r = call(abi::FEATURES, &[u64::from(id), input]);
            match c {
                Caller::Nw => nw(s, r),
                Caller::Sp => match sp(s, r) {
                    SpAction::Resume { regs, .. } => regs,
                    other => panic!("{other:?}"),
                },
            }
        };
        assert_eq!(
            f(&mut s, Caller::Nw, abi::DIRECT_REQ_32, 0)[0] as u32,
            abi::SUCCESS_32
        );
        assert_eq!(err(&f(&mut s, Caller::Nw, abi::MSG_WAIT, 0)), Some(-1));
        assert_eq!(
            f(&mut s, Caller::Sp, abi::MSG_WAIT, 0)[0] as u32,
            abi::SUCCESS_32
        );
        assert_eq!(
            err(&f(&mut s, Caller::Sp, abi::MEM_RETRIEVE_REQ_32, 0)),
            Some(-1)
        );
        let ok = f(&mut s, Caller::Sp, abi::MEM_RETRIEVE_REQ_32, 0b10);
        assert_eq!((ok[0] as u32, ok[2]), (abi::SUCCESS_32, 0b111));
        assert_eq!(
            err(&f(&mut s, Caller::Nw, 0x1, 0)),
            Some(-1),
            "feature ID NPI"
        );
        assert_eq!(err(&f(&mut s, Caller::Nw, 0x8400_00FE, 0)), Some(-1));
        assert_eq!(f(&mut s, Caller::Nw, abi::RXTX_MAP_64, 0)[2], 1 << 16);
    }

    #[test]
    fn rxtx_map_checks() {
        let mut s = spmc(0x203);
        let map = |tx, rx, n| call(abi::RXTX_MAP_64, &[tx, rx, n]);
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
        assert_eq!(
            err(&nw(&mut s, map(NW_TX, NW_RX, 1 | 1 << 6))),
            Some(-2),
            "MBZ"
        );
        assert_eq!(nw(&mut s, map(NW_TX, NW_RX, 1))[0] as u32, abi::SUCCESS_32);
        assert_eq!(
            err(&nw(&mut s, map(NW_TX, NW_RX, 1))),
            Some(-6),
            "mapped twice"
        );
        assert_eq!(err(&nw(&mut s, call(abi::RXTX_UNMAP, &[1]))), Some(-2));
        assert_eq!(
            nw(&mut s, call(abi::RXTX_UNMAP, &[0]))[0] as u32,
            abi::SUCCESS_32
        );
        assert_eq!(err(&nw(&mut s, call(abi::RXTX_UNMAP, &[0]))), Some(-2));
        // The SP's buffers must be its own secure memory.
        let SpAction::Resume { regs, .. } = sp(&mut s, map(NW_TX, NW_RX, 1)) else {
            panic!()
        };
        assert_eq!(err(&regs), Some(-2));
        let SpAction::Resume { regs, .. } = sp(&mut s, map(0x0e3f_0000, 0x0e3f_1000, 1)) else {
            panic!()
        };
        assert_eq!(regs[0] as u32, abi::SUCCESS_32);
    }

    #[test]
    fn partition_info_get_by_uuid_nil_and_count() {
        let mut s = spmc(0x203);
        let (lo, hi) = UUID.to_u64_pair();
        let by = |u: Uuid, flags: u64| {
            let w = u.0.map(u64::from);
            call(abi::PARTITION_INFO_GET, &[w[0], w[1], w[2], w[3], flags])
        };
        assert_eq!(err(&nw(&mut s, by(UUID, 0))), Some(-4), "no RX buffer yet");
        let count = nw(&mut s, by(Uuid::NIL, 1));
        assert_eq!((count[0] as u32, count[2]), (abi::SUCCESS_32, 1));
        assert_eq!(err(&nw(&mut s, by(OTHER, 1))), Some(-2));
        assert_eq!(err(&nw(&mut s, by(UUID, 2))), Some(-2), "flags MBZ");
        nw(&mut s, call(abi::RXTX_MAP_64, &[NW_TX, NW_RX, 1]));
        let mut m = mem();
        let NwAction::Reply(r) = s.nw_call(&by(Uuid::NIL, 0), &mut m) else {
            panic!()
        };
        assert_eq!((r[0] as u32, r[2], r[3]), (abi::SUCCESS_32, 1, 24));
        let d = &m.bytes[0x1000..0x1000 + 24];
        assert_eq!(u16::from_le_bytes([d[0], d[1]]), 0x8001);
        assert_eq!(u16::from_le_bytes([d[2], d[3]]), 1);
        let props = u32::from_le_bytes(d[4..8].try_into().unwrap());
        assert_eq!(props, 0x203 | PROP_AARCH64);
        assert_eq!(&d[8..24], &UUID.to_bytes(), "nil query reports the UUID");
        assert_eq!(err(&nw(&mut s, by(UUID, 0))), Some(-4), "RX still full");
        assert_eq!(
            nw(&mut s, call(abi::RX_RELEASE, &[]))[0] as u32,
            abi::SUCCESS_32
        );
        assert_eq!(err(&nw(&mut s, call(abi::RX_RELEASE, &[]))), Some(-6));
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
        // _REGS form.
        let r = nw(&mut s, call(abi::PARTITION_INFO_GET_REGS, &[lo, hi, 0]));
        assert_eq!(r[0] as u32, abi::SUCCESS_64);
        assert_eq!(r[2] & 0xffff, 0, "last index");
        assert_eq!(r[2] >> 48, 24);
        assert_eq!(r[3] & 0xffff, 0x8001);
        assert_eq!(
            err(&nw(
                &mut s,
                call(abi::PARTITION_INFO_GET_REGS, &[lo, hi, 1])
            )),
            Some(-2),
            "start index past the end"
        );
    }

    #[test]
    fn direct_request_round_trip_and_errors() {
        let mut s = spmc(0x203);
        let req = call(abi::DIRECT_REQ_32, &[0x8001, 0, 0x1_0000_0007, 8]);
        let NwAction::RunSp(to_sp) = s.nw_call(&req, &mut mem()) else {
            panic!()
        };
        assert_eq!(to_sp[3], 7, "32-bit call: upper halves dropped");
        assert_eq!(
            nw(&mut s, call(abi::DIRECT_REQ_32, &[0x8001])),
            abi::error(FfaError::Busy)
        );
        // Wrong receiver in the response, then the right one.
        let SpAction::Resume { regs, .. } =
            sp(&mut s, call(abi::DIRECT_RESP_32, &[0x8001_0005, 0, 8]))
        else {
            panic!()
        };
        assert_eq!(err(&regs), Some(-2));
        let SpAction::Resume { regs, .. } = sp(&mut s, call(abi::DIRECT_RESP2, &[0x8001_0000]))
        else {
            panic!()
        };
        assert_eq!(err(&regs), Some(-6), "RESP2 for a REQ");
        let SpAction::ToNw(resp) = sp(&mut s, call(abi::DIRECT_RESP_32, &[0x8001_0000, 0, 8]))
        else {
            panic!()
        };
        assert_eq!(
            (resp[0] as u32, resp[1], resp[3]),
            (abi::DIRECT_RESP_32, 0x8001_0000, 8)
        );
        assert_eq!(s.sp_state, SpState::Waiting);
        let SpAction::Resume { regs, .. } = sp(&mut s, call(abi::DIRECT_RESP_32, &[0x8001_0000]))
        else {
            panic!()
        };
        assert_eq!(err(&regs), Some(-6), "no request pending");
        for (r, e) in [
            (call(abi::DIRECT_REQ_32, &[0x8002]), -2),
            (call(abi::DIRECT_REQ_32, &[0x0005_8001]), -2),
            (call(abi::DIRECT_REQ_64, &[0x8001, 1]), -2),
            (call(abi::DIRECT_REQ2, &[0x8001, 5, 6]), -2),
            (call(abi::MSG_WAIT, &[]), -1),
            (call(abi::YIELD, &[]), -1),
            (call(abi::MEM_RETRIEVE_REQ_32, &[]), -1),
        ] {
            assert_eq!(err(&nw(&mut s, r)), Some(e), "{r:x?}");
        }
    }

    #[test]
    fn req2_uuid_and_messaging_method() {
        let (lo, hi) = UUID.to_u64_pair();
        let mut s = spmc(0x003);
        assert_eq!(
            err(&nw(&mut s, call(abi::DIRECT_REQ2, &[0x8001, lo, hi]))),
            Some(-6),
            "no bit 9"
        );
        let mut s = spmc(0x200);
        assert_eq!(
            err(&nw(&mut s, call(abi::DIRECT_REQ_64, &[0x8001]))),
            Some(-6),
            "no bit 0"
        );
        let mut req = call(abi::DIRECT_REQ2, &[0x8001, lo, hi, 4]);
        req[17] = 17;
        let NwAction::RunSp(to_sp) = s.nw_call(&req, &mut mem()) else {
            panic!()
        };
        assert_eq!(to_sp[17], 17, "x4-x17 payload delivered");
        let mut resp = call(abi::DIRECT_RESP2, &[0x8001_0000, 9, 9, 40]);
        resp[17] = 170;
        let SpAction::ToNw(out) = sp(&mut s, resp) else {
            panic!()
        };
        assert_eq!((out[2], out[3], out[4], out[17]), (0, 0, 40, 170));
        // Nil UUID matches any of the SP's UUIDs (Hafnium `ffa_uuid_find`).
        assert!(matches!(
            s.nw_call(&call(abi::DIRECT_REQ2, &[0x8001, 0, 0]), &mut mem()),
            NwAction::RunSp(_)
        ));
    }

    #[test]
    fn abort_answers_pending_and_later_requests() {
        let mut s = spmc(0x203);
        let NwAction::RunSp(_) = s.nw_call(&call(abi::DIRECT_REQ_64, &[0x8001]), &mut mem()) else {
            panic!()
        };
        let a = s.abort(AbortReason::Exception {
            esr: 0x9600_0000,
            far: 0,
            elr: 0,
        });
        assert_eq!(
            a,
            SpAction::Aborted {
                reply: Some(abi::error(FfaError::Aborted))
            }
        );
        assert_eq!(
            err(&nw(&mut s, call(abi::DIRECT_REQ_64, &[0x8001]))),
            Some(-8)
        );
        // At init, FFA_ERROR aborts with no one to answer.
        let mut s = spmc(0x203);
        s.sp_state = SpState::Init;
        assert_eq!(
            sp(&mut s, call(abi::ERROR, &[0, 0xffff_fffe])),
            SpAction::Aborted { reply: None }
        );
    }

    #[test]
    fn msg_wait_and_console() {
        let mut s = spmc(0x203);
        s.sp_state = SpState::Init;
        let mut out = String::new();
        let mut log = |s: &mut Spmc, text: &[u8]| {
            let mut r = call(abi::CONSOLE_LOG_64, &[text.len() as u64]);
            for (i, b) in text.iter().enumerate() {
                r[2 + i / 8] |= u64::from(*b) << (8 * (i % 8));
            }
            s.sp_call(&r, &mut mem(), &mut out)
        };
        log(&mut s, b"hello ");
        log(&mut s, b"world\nsecond");
        assert_eq!(
            sp(&mut s, call(abi::CONSOLE_LOG_32, &[25])),
            SpAction::Resume {
                regs: abi::error(FfaError::InvalidParameters),
                ext: false
            }
        );
        assert_eq!(out, "[8001 0] hello world\n");
        assert_eq!(
            sp(&mut s, call(abi::MSG_WAIT, &[0, 2])),
            SpAction::Resume {
                regs: abi::error(FfaError::InvalidParameters),
                ext: false
            }
        );
        assert_eq!(sp(&mut s, call(abi::MSG_WAIT, &[])), SpAction::InitDone);
        assert_eq!(s.sp_state, SpState::Waiting);
    }
}
