//! The SPMC's FF-A state machine: what the normal world and the secure partition may call, in
//! which state, and with which answer. Pure logic over registers and a guest-memory trait, so it
//! runs under host `cargo test`; `arch::el2` moves registers between it and the SP's vCPU.
//! Decoding (including the spec's MBZ checks) and encoding are the `ffa` crate's.
//!
//! Follows FF-A v1.2 (DEN0077A) and, where the spec leaves room, Hafnium (`src/api.c`): version
//! lock after the first other call, FFA_RXTX_MAP_64 only, FEATURES(MEM_RETRIEVE_REQ) input
//! bit 1, REQ2 UUID check (nil matches any), DENIED for a messaging method the receiver does not
//! declare, BUSY for a receiver that is not waiting, RETRY for a PARTITION_INFO_GET_REGS tag,
//! `[8001 0] ` console prefix, ABORTED once the SP has failed.
//!
//! Memory management (SHARE/LEND/DONATE, FRAG_TX/RX, RETRIEVE_REQ, RELINQUISH, RECLAIM) is
//! `memshare`'s state machine; this module moves its descriptors between it and the RX/TX
//! buffers and applies Hafnium's buffer rules (descriptor in the TX buffer only, RX busy =
//! BUSY, RX released with FFA_RX_RELEASE after each retrieve-response fragment).

use core::fmt::Write;

extern crate alloc;
use alloc::vec::Vec;

use ffa::{
    DirectMsgArgs, FfaError, FuncId, Interface as Call, PartitionInfo, PartitionInfoRegs,
    PartitionProperties as Props, Regs, RxTxAddr, SuccessArgs, Uuid, Version,
};

use crate::manifest::{self, SpManifest};
use crate::memshare::{self, CallerInfo, HandleRng, MemHw, MemShare, SplitMix};
use ffa::memory::SendKind;
use ffa::{Handle, MemOpArgs, MemOpBuf};

/// The FF-A version the testbed SPMC implements.
pub const SPMC_VERSION: Version = Version::V1_2;
/// What FFA_VERSION answers: Hafnium v2.15 reports v1.3 to any compatible caller (a v1.2 caller
/// then runs at v1.2). Callers asking for v1.3 itself are still refused here (not modelled).
pub const REPORTED_VERSION: Version = Version::V1_3;
/// Endpoint IDs (Hafnium `vm_ids.h`): the NW OS without a hypervisor, the first SP.
pub const NW_ID: u16 = 0;
pub const FIRST_SP_ID: u16 = 0x8001;

/// Guest physical memory as the SPMC sees it (IPA == PA for both worlds), and the stage-2
/// operations memory sharing needs ([`MemHw`]).
pub trait GuestMem: MemHw {
    /// Copies bytes out of guest memory; false if the range is not accessible.
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool;
    /// Copies bytes into guest memory; false if the range is not accessible.
    fn write(&mut self, pa: u64, data: &[u8]) -> bool;
}

/// RX/TX buffer size: one 4 KiB page each (Hafnium's HF_MAILBOX_SIZE).
pub const MAILBOX_PAGES: u32 = 1;
const PAGE: u64 = 0x1000;
/// FF-A v1.0 partition info descriptors stop after the properties (no UUID).
const INFO_DESC_SIZE_V1_0: usize = 8;
const CONSOLE_LINE: usize = 256;

/// SMCCC's return value for an unknown function ID.
pub const SMCCC_NOT_SUPPORTED: u64 = u64::MAX;

/// Whether an SMC function ID (w0) is an FF-A call (0x60-0xFF of the standard secure service
/// range, SMC32 or SMC64), i.e. one the monitor forwards to the SPMC.
pub fn is_ffa_fid(w0: u32) -> bool {
    (w0 & 0xBFFF_FF00) == 0x8400_0000 && (w0 & 0xFF) >= 0x60
}

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
    pub version: Version,
    /// Set by the first FF-A call other than FFA_VERSION.
    pub version_locked: bool,
    /// The endpoint called FFA_VERSION successfully. DIRECT_REQ2 needs a caller that
    /// negotiated v1.2 or later: TF-A's EL3 SPMC answers NOT_SUPPORTED to anyone else
    /// (`direct_req_smc_handler`), so the testbed does too.
    pub negotiated: bool,
    pub mailbox: Option<Mailbox>,
}

impl Endpoint {
    fn new(id: u16, version: Version) -> Self {
        Endpoint {
            id,
            version,
            version_locked: false,
            negotiated: false,
            mailbox: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqKind {
    Direct,
    Direct2,
}

/// The SP's run state (FF-A partition runtime model for a UP S-EL1 SP).
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
    /// Whether `[pa, pa + len)` is normal RW memory of this SP (for its RX/TX buffers): its
    /// package or an RW memory region, secure or NS (Hafnium takes any RW mapping).
    fn owns(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else {
            return false;
        };
        let inside = |b: u64, s: u64| pa >= b && end <= b.saturating_add(s);
        inside(self.pkg_base, self.pkg_size)
            || self.manifest.regions().iter().any(|r| {
                !r.device
                    && r.attributes & 0x3 == 0x3
                    && inside(r.base, r.pages.saturating_mul(PAGE))
            })
    }

    fn properties(&self, caller_version: Version, world: Caller) -> Props {
        use manifest::msg;
        let m = self.manifest.messaging_method;
        // Hafnium `ffa_setup_partition_properties`: an SP sends direct requests to SPs only,
        // so the send bits are reported to SP callers only.
        let m = match world {
            Caller::Sp => m,
            Caller::Nw => m & !(msg::DIRECT_REQ_SEND | msg::DIRECT_REQ2_SEND),
        };
        let mut p = Props::AARCH64 | (m & (msg::DIRECT_REQ_RECV | msg::DIRECT_REQ_SEND));
        if caller_version >= Version::V1_1 {
            p |= m & msg::INDIRECT;
        }
        if caller_version >= Version::V1_2 {
            p |= m & (msg::DIRECT_REQ2_RECV | msg::DIRECT_REQ2_SEND);
        }
        Props(p)
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

/// Why the SP was marked aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// FFA_ABORT (Hafnium, FF-A v1.3) with its w2 code.
    FfaAbort(u32),
    /// FFA_ERROR from the SP with this code.
    FfaError(i32),
    /// An exception the SPMC took from the SP (stage-2 fault, unknown trap).
    Exception { esr: u64, far: u64, elr: u64 },
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
    Aborted {
        reason: AbortReason,
        reply: Option<Regs>,
    },
}

fn error(e: FfaError) -> Regs {
    Call::Error {
        target_info: 0,
        code: e,
    }
    .to_regs()
}

fn success(w2: u32) -> Regs {
    Call::Success {
        target_info: 0,
        args: SuccessArgs::w2(w2),
    }
    .to_regs()
}

fn resume(regs: Regs) -> SpAction {
    SpAction::Resume { regs, ext: false }
}

pub struct Spmc {
    pub sp: Option<SpInfo>,
    pub sp_state: SpState,
    pub sp_ep: Endpoint,
    pub nw_ep: Endpoint,
    console: [u8; CONSOLE_LINE],
    console_len: usize,
    /// FF-A memory transactions.
    pub mem: MemShare,
    /// Handle bits (fixed seed in tests; the firmware adds RNDR, see [`Self::seed`]).
    pub rng: HandleRng,
}

/// Address range of the normal world's RAM, where its RX/TX buffers must lie.
pub const NW_RAM: (u64, u64) = (
    testbed_layout::virt::NS_RAM_BASE,
    testbed_layout::virt::NS_RAM_SIZE,
);

impl Spmc {
    /// An SPMC with the SP described by `sp` (None: no usable SP package; requests to 0x8001
    /// are then answered INVALID_PARAMETERS).
    pub fn new(sp: Option<SpInfo>) -> Self {
        let (id, version) = sp.map_or((FIRST_SP_ID, SPMC_VERSION), |s| {
            let v = Version::from_u32(s.manifest.ffa_version).unwrap_or(SPMC_VERSION);
            (s.id, v)
        });
        Spmc {
            sp,
            sp_state: SpState::Init,
            sp_ep: Endpoint::new(id, version),
            nw_ep: Endpoint::new(NW_ID, SPMC_VERSION),
            console: [0; CONSOLE_LINE],
            console_len: 0,
            mem: MemShare::new(NW_ID, id),
            rng: HandleRng {
                mix: SplitMix(0x5eed),
                hw: None,
            },
        }
    }

    fn caller(&self, c: Caller) -> CallerInfo {
        let ep = match c {
            Caller::Nw => &self.nw_ep,
            Caller::Sp => &self.sp_ep,
        };
        CallerInfo {
            id: ep.id,
            version: ep.version,
        }
    }

    /// Copies `len` bytes (at most one buffer) from the caller's TX buffer.
    fn read_tx(&self, c: Caller, len: usize, mem: &dyn GuestMem) -> Result<Vec<u8>, FfaError> {
        let ep = match c {
            Caller::Nw => &self.nw_ep,
            Caller::Sp => &self.sp_ep,
        };
        let mb = ep.mailbox.ok_or(FfaError::InvalidParameters)?;
        if len == 0 || len > memshare::BUF_SIZE {
            return Err(FfaError::InvalidParameters);
        }
        let mut v = alloc::vec![0u8; len];
        if !mem.read(mb.tx, &mut v) {
            return Err(FfaError::Aborted);
        }
        Ok(v)
    }

    /// The caller's RX buffer if it is mapped and free (else BUSY, as Hafnium answers).
    fn free_rx(&self, c: Caller) -> Result<u64, FfaError> {
        let ep = match c {
            Caller::Nw => &self.nw_ep,
            Caller::Sp => &self.sp_ep,
        };
        match ep.mailbox {
            None => Err(FfaError::InvalidParameters),
            Some(m) if m.rx_full => Err(FfaError::Busy),
            Some(m) => Ok(m.rx),
        }
    }

    fn fill_rx(&mut self, c: Caller, data: &[u8], mem: &mut dyn GuestMem) -> Result<(), FfaError> {
        let rx = self.free_rx(c)?;
        if !mem.write(rx, data) {
            return Err(FfaError::Aborted);
        }
        if let Some(m) = self.ep(c).mailbox.as_mut() {
            m.rx_full = true;
        }
        Ok(())
    }

    // ---- memory management ------------------------------------------------------------------

    fn mem_reply(r: Result<memshare::Reply, FfaError>) -> Regs {
        use memshare::Reply as R;
        match r {
            Err(e) => error(e),
            Ok(R::Ok) => success(0),
            Ok(R::Handle(h)) => {
                let (lo, hi) = h.halves();
                Call::Success {
                    target_info: 0,
                    args: SuccessArgs::Args32([lo, hi, 0, 0, 0, 0]),
                }
                .to_regs()
            }
            Ok(R::FragRx { handle, offset }) => Call::MemFragRx {
                handle,
                frag_offset: offset,
                endpoint_id: 0,
            }
            .to_regs(),
            Ok(R::RetrieveResp { total, frag }) => Call::MemRetrieveResp {
                total_len: total,
                frag_len: frag,
            }
            .to_regs(),
            Ok(R::FragTx { handle, len }) => Call::MemFragTx {
                handle,
                frag_len: len,
                endpoint_id: 0,
            }
            .to_regs(),
        }
    }

    /// FFA_MEM_SHARE/LEND/DONATE from the normal world.
    fn mem_send(&mut self, kind: SendKind, a: MemOpArgs, mem: &mut dyn GuestMem) -> Regs {
        let r = (|| {
            // Hafnium: the descriptor must be in the TX buffer (x3 = w4 = 0).
            if !matches!(a.buf, MemOpBuf::Tx32 | MemOpBuf::Tx64) {
                return Err(FfaError::InvalidParameters);
            }
            if a.frag_len == 0 || a.frag_len > a.total_len {
                return Err(FfaError::InvalidParameters);
            }
            let frag = self.read_tx(Caller::Nw, a.frag_len as usize, mem)?;
            let who = self.caller(Caller::Nw);
            let avoid = self.nw_ep.mailbox.map(|b| (b.tx, b.rx));
            self.mem
                .send(who, kind, a.total_len, &frag, avoid, mem, &mut self.rng)
        })();
        Self::mem_reply(r)
    }

    /// FFA_MEM_FRAG_TX from the NW. w4\[31:16\] (`_ep`) is a hypervisor's sender ID at this
    /// instance; Hafnium checks it at the SP's instance only, so it is not checked here.
    fn mem_frag_tx(&mut self, handle: Handle, len: u32, _ep: u16, mem: &mut dyn GuestMem) -> Regs {
        let r = (|| {
            let frag = self.read_tx(Caller::Nw, len as usize, mem)?;
            let who = self.caller(Caller::Nw);
            let avoid = self.nw_ep.mailbox.map(|b| (b.tx, b.rx));
            self.mem.frag_tx(who, handle, &frag, avoid, mem)
        })();
        Self::mem_reply(r)
    }

    fn mem_retrieve(&mut self, a: MemOpArgs, mem: &mut dyn GuestMem) -> Regs {
        let r = (|| {
            if !matches!(a.buf, MemOpBuf::Tx32 | MemOpBuf::Tx64) {
                return Err(FfaError::InvalidParameters);
            }
            if a.frag_len != a.total_len {
                return Err(FfaError::InvalidParameters);
            }
            let req = self.read_tx(Caller::Sp, a.frag_len as usize, mem)?;
            self.free_rx(Caller::Sp)?;
            let who = self.caller(Caller::Sp);
            let (reply, head) = self.mem.retrieve(who, a.total_len, &req, mem)?;
            self.fill_rx(Caller::Sp, &head, mem)?;
            Ok(reply)
        })();
        Self::mem_reply(r)
    }

    fn mem_frag_rx(
        &mut self,
        handle: Handle,
        offset: u32,
        ep: u16,
        mem: &mut dyn GuestMem,
    ) -> Regs {
        let r = (|| {
            if ep != 0 {
                return Err(FfaError::InvalidParameters);
            }
            self.free_rx(Caller::Sp)?;
            let who = self.caller(Caller::Sp);
            let (reply, chunk) = self.mem.frag_rx(who, handle, offset)?;
            self.fill_rx(Caller::Sp, &chunk, mem)?;
            Ok(reply)
        })();
        Self::mem_reply(r)
    }

    fn mem_relinquish(&mut self, mem: &mut dyn GuestMem) -> Regs {
        let r = (|| {
            let desc = self.read_tx(Caller::Sp, memshare::BUF_SIZE, mem)?;
            let who = self.caller(Caller::Sp);
            self.mem.relinquish(who, &desc, mem)
        })();
        Self::mem_reply(r)
    }

    /// Seeds the handle generator and gives it a hardware source mixed into every handle.
    pub fn seed(&mut self, hw: fn() -> u64) {
        self.rng = HandleRng {
            mix: SplitMix(hw()),
            hw: Some(hw),
        };
    }

    fn ep(&mut self, c: Caller) -> &mut Endpoint {
        match c {
            Caller::Nw => &mut self.nw_ep,
            Caller::Sp => &mut self.sp_ep,
        }
    }

    // ---- calls common to both worlds --------------------------------------------------------

    /// FFA_VERSION: the reply is a bare version word (or -1) in w0, not FFA_SUCCESS/ERROR.
    fn version(&mut self, c: Caller, w1: u32) -> Regs {
        let ep = self.ep(c);
        let mut not_supported = [0u64; 18];
        not_supported[0] = FfaError::NotSupported.to_u32().into();
        let Ok(req) = Version::from_u32(w1) else {
            return not_supported;
        };
        if !req.is_compatible_with(SPMC_VERSION) || (ep.version_locked && req != ep.version) {
            return not_supported;
        }
        ep.version = req;
        ep.negotiated = true;
        Call::VersionOut {
            output: REPORTED_VERSION,
        }
        .to_regs()
    }

    fn features(&mut self, c: Caller, id: u32, input: u32) -> Regs {
        use FuncId as F;
        // Feature IDs (bit 31 clear: NPI, MEI, SRI, notifications): the testbed has neither
        // interrupts nor notifications.
        let Some(f) = FuncId::from_u32(id).filter(|_| id & 0x8000_0000 != 0) else {
            return error(FfaError::NotSupported);
        };
        let version = self.ep(c).version;
        let supported = match f {
            F::RxTxMap64 => {
                // Minimum buffer 4 KiB; v1.2 callers also learn the maximum page count.
                let max = if version >= Version::V1_2 {
                    MAILBOX_PAGES
                } else {
                    0
                };
                return success(max << 16);
            }
            F::MemRetrieveReq32 | F::MemRetrieveReq64 if c == Caller::Sp => {
                // Hafnium: a v1.1+ caller must set input bit 1 (NS-bit support).
                if version >= Version::V1_1 && input & 0b10 == 0 {
                    return error(FfaError::NotSupported);
                }
                // Bit 0 clear: descriptors in the TX buffer only (no separate buffer); bit 1:
                // the NS bit is reported; bit 2 clear: no hypervisor retrieve.
                return success(0b10);
            }
            // Sends from the normal world (bit 0 clear: TX buffer only, as above).
            F::MemShare32
            | F::MemShare64
            | F::MemLend32
            | F::MemLend64
            | F::MemDonate32
            | F::MemDonate64
            | F::MemReclaim => c == Caller::Nw,
            F::MemRelinquish => c == Caller::Sp,
            F::MemFragRx | F::MemFragTx => true,
            F::Error
            | F::Success32
            | F::Success64
            | F::Version
            | F::Features
            | F::RxRelease
            | F::RxTxUnmap
            | F::PartitionInfoGet
            | F::PartitionInfoGetRegs
            | F::IdGet
            | F::SpmIdGet => true,
            F::MsgSendDirectReq32 | F::MsgSendDirectReq64 | F::MsgSendDirectReq2 => c == Caller::Nw,
            F::MsgWait
            | F::MsgSendDirectResp32
            | F::MsgSendDirectResp64
            | F::MsgSendDirectResp2
            | F::ConsoleLog32
            | F::ConsoleLog64 => c == Caller::Sp,
            // Hafnium: only to v1.3 SPs.
            F::Abort32 | F::Abort64 => c == Caller::Sp && version >= Version::V1_3,
            _ => false,
        };
        if supported {
            success(0)
        } else {
            error(FfaError::NotSupported)
        }
    }

    fn rxtx_map(&mut self, c: Caller, tx: u64, rx: u64, count: u32) -> Regs {
        // Hafnium `api_vm_configure_pages`: a second pair is DENIED before any argument check.
        if self.ep(c).mailbox.is_some() {
            return error(FfaError::Denied);
        }
        let size = u64::from(count) * PAGE;
        if count != MAILBOX_PAGES
            || tx == 0
            || rx == 0
            || !tx.is_multiple_of(PAGE)
            || !rx.is_multiple_of(PAGE)
        {
            return error(FfaError::InvalidParameters);
        }
        if tx < rx.saturating_add(size) && rx < tx.saturating_add(size) {
            return error(FfaError::InvalidParameters);
        }
        // The NW's buffers: its own NS DRAM (not the testbed's region, not lent or donated
        // memory: the SPMC writes and reads them on the NW's behalf).
        let allowed = |a: u64| match c {
            Caller::Nw => self.mem.nw_may_use(a, size),
            Caller::Sp => self.sp.is_some_and(|s| s.owns(a, size)),
        };
        if !allowed(tx) || !allowed(rx) {
            return error(FfaError::InvalidParameters);
        }
        self.ep(c).mailbox = Some(Mailbox {
            tx,
            rx,
            rx_full: false,
        });
        success(0)
    }

    fn rxtx_unmap(&mut self, c: Caller, id: u16) -> Regs {
        let ep = self.ep(c);
        // Hafnium `api_ffa_rxtx_unmap`: the ID MBZ at the SP's (virtual) instance.
        if id != 0 && (c == Caller::Sp || id != ep.id) {
            return error(FfaError::InvalidParameters);
        }
        if ep.mailbox.take().is_none() {
            return error(FfaError::InvalidParameters);
        }
        success(0)
    }

    fn rx_release(&mut self, c: Caller, id: u16) -> Regs {
        let ep = self.ep(c);
        // Hafnium `api_ffa_rx_release`: the ID MBZ at the SP's (virtual) instance.
        if id != 0 && (c == Caller::Sp || id != ep.id) {
            return error(FfaError::InvalidParameters);
        }
        match ep.mailbox.as_mut() {
            Some(m) if m.rx_full => {
                m.rx_full = false;
                success(0)
            }
            _ => error(FfaError::Denied),
        }
    }

    /// The partitions matching `uuid` (nil: all, one entry per UUID for v1.2+ callers, as
    /// Hafnium lists them; the UUID field is filled only for a nil query).
    fn matching(&self, uuid: Uuid, caller: Version, world: Caller) -> ([PartitionInfo; 4], usize) {
        let mut out = [PartitionInfo::default(); 4];
        let mut n = 0;
        if let Some(sp) = &self.sp {
            let base = PartitionInfo {
                id: sp.id,
                exec_ctx_count: sp.manifest.exec_ctx_count,
                properties: sp.properties(caller, world),
                uuid: Uuid::NIL,
            };
            for u in sp.manifest.uuids() {
                if uuid.is_nil() {
                    out[n] = PartitionInfo { uuid: *u, ..base };
                    n += 1;
                    if caller < Version::V1_2 {
                        break;
                    }
                } else if *u == uuid {
                    out[0] = base;
                    n = 1;
                    break;
                }
            }
        }
        (out, n)
    }

    fn partition_info_get(
        &mut self,
        c: Caller,
        uuid: Uuid,
        count_only: bool,
        mem: &mut dyn GuestMem,
    ) -> Regs {
        let version = self.ep(c).version;
        let (list, n) = self.matching(uuid, version, c);
        if n == 0 {
            return error(FfaError::InvalidParameters);
        }
        if count_only {
            return success(n as u32);
        }
        let Some(mb) = self.ep(c).mailbox else {
            return error(FfaError::Busy);
        };
        if mb.rx_full {
            return error(FfaError::Busy);
        }
        // Hafnium v2.15 (`send_versioned_partition_info_descriptors`): the 48-byte v1.3
        // descriptor to every v1.1+ caller, whose reader goes by w3; 8 bytes to v1.0.
        let mut buf = [0u8; 4 * PartitionInfo::SIZE_V1_3];
        let desc = if version >= Version::V1_1 {
            PartitionInfo::SIZE_V1_3
        } else {
            INFO_DESC_SIZE_V1_0
        };
        let sp_version = self.sp_ep.version.to_u32();
        for (d, info) in buf.chunks_exact_mut(desc).zip(&list[..n]) {
            d.copy_from_slice(&info.to_bytes_v1_3(Uuid::NIL, sp_version)[..desc]);
        }
        if !mem.write(mb.rx, &buf[..n * desc]) {
            return error(FfaError::Aborted);
        }
        if let Some(m) = self.ep(c).mailbox.as_mut() {
            m.rx_full = true;
        }
        let mut out = success(n as u32);
        out[3] = desc as u64;
        out
    }

    fn partition_info_get_regs(&mut self, c: Caller, uuid: Uuid, start: u16, tag: u16) -> Regs {
        if tag != 0 {
            return error(FfaError::Retry);
        }
        let version = self.ep(c).version;
        let (list, n) = self.matching(uuid, version, c);
        // Hafnium v2.15: 48-byte descriptors, six registers each, two per call.
        let versions = [self.sp_ep.version.to_u32(); 4];
        match PartitionInfoRegs::for_range_v1_3(&list[..n], &versions, start, 0) {
            Some(r) => Call::Success {
                target_info: 0,
                args: r.to_success_args(),
            }
            .to_regs(),
            None => error(FfaError::InvalidParameters),
        }
    }

    /// Calls both worlds may make; None if `call` is not one of them.
    fn common(&mut self, c: Caller, call: &Call, mem: &mut dyn GuestMem) -> Option<Regs> {
        Some(match *call {
            Call::Features {
                feature_id,
                input_properties,
            } => self.features(c, feature_id, input_properties),
            Call::IdGet => success(u32::from(self.ep(c).id)),
            Call::SpmIdGet => success(u32::from(ffa::SPMC_ID)),
            Call::RxTxMap {
                addr: RxTxAddr::Addr64 { tx, rx },
                page_count,
            } => self.rxtx_map(c, tx, rx, page_count.get()),
            Call::RxTxUnmap { id } => self.rxtx_unmap(c, id),
            Call::RxRelease { vm_id } => self.rx_release(c, vm_id),
            Call::PartitionInfoGet { uuid, flags } => {
                self.partition_info_get(c, uuid, flags.count_only, mem)
            }
            Call::PartitionInfoGetRegs {
                uuid,
                start_index,
                tag,
            } => self.partition_info_get_regs(c, uuid, start_index, tag),
            _ => return None,
        })
    }

    /// The version word of an FFA_VERSION call, which is answered before any decoding.
    fn version_call(r: &Regs) -> Option<u32> {
        (r[0] as u32 == FuncId::Version as u32).then_some(r[1] as u32)
    }

    // ---- normal world -----------------------------------------------------------------------

    /// Handles an FF-A call from the normal world (x0-x17 as the NW passed them).
    pub fn nw_call(&mut self, r: &Regs, mem: &mut dyn GuestMem) -> NwAction {
        if let Some(w1) = Self::version_call(r) {
            return NwAction::Reply(self.version(Caller::Nw, w1));
        }
        self.nw_ep.version_locked = true;
        let call = match Call::from_regs(r) {
            Ok(c) => c,
            Err(e) => return NwAction::Reply(error(e.into())),
        };
        if let Some(out) = self.common(Caller::Nw, &call, mem) {
            return NwAction::Reply(out);
        }
        let reply = match call {
            Call::MsgSendDirectReq { .. } | Call::MsgSendDirectReq2 { .. } => {
                return self.direct_req(&call);
            }
            Call::MemShare(a) => self.mem_send(SendKind::Share, a, mem),
            Call::MemLend(a) => self.mem_send(SendKind::Lend, a, mem),
            Call::MemDonate(a) => self.mem_send(SendKind::Donate, a, mem),
            Call::MemFragTx {
                handle,
                frag_len,
                endpoint_id,
            } => self.mem_frag_tx(handle, frag_len, endpoint_id, mem),
            Call::MemReclaim { handle, flags } => {
                let who = self.caller(Caller::Nw);
                Self::mem_reply(self.mem.reclaim(who, handle, flags.zero_memory, mem))
            }
            // No hypervisor retrieve; relinquish is the borrower's.
            Call::MemFragRx { .. } => error(FfaError::InvalidParameters),
            _ => error(FfaError::NotSupported),
        };
        NwAction::Reply(reply)
    }

    fn direct_req(&mut self, call: &Call) -> NwAction {
        use manifest::msg;
        let reply = |e| NwAction::Reply(error(e));
        let (src, dst, kind, uuid) = match *call {
            Call::MsgSendDirectReq {
                src_id,
                dst_id,
                args,
            } => {
                if matches!(
                    args,
                    DirectMsgArgs::Framework32 { .. } | DirectMsgArgs::Framework64 { .. }
                ) {
                    // The testbed SPMC sends no framework messages and accepts none.
                    return reply(FfaError::InvalidParameters);
                }
                (src_id, dst_id, ReqKind::Direct, None)
            }
            Call::MsgSendDirectReq2 {
                src_id,
                dst_id,
                uuid,
                ..
            } => {
                if !self.nw_ep.negotiated || self.nw_ep.version < Version::V1_2 {
                    return reply(FfaError::NotSupported);
                }
                (src_id, dst_id, ReqKind::Direct2, Some(uuid))
            }
            _ => return reply(FfaError::NotSupported),
        };
        if src != self.nw_ep.id {
            return reply(FfaError::InvalidParameters);
        }
        let Some(sp) = self.sp.filter(|s| s.id == dst) else {
            return reply(FfaError::InvalidParameters);
        };
        if let Some(u) = uuid
            && !u.is_nil()
            && !sp.manifest.uuids().contains(&u)
        {
            return reply(FfaError::InvalidParameters);
        }
        let needed = match kind {
            ReqKind::Direct2 => msg::DIRECT_REQ2_RECV,
            ReqKind::Direct => msg::DIRECT_REQ_RECV,
        };
        if sp.manifest.messaging_method & needed == 0 {
            return reply(FfaError::Denied);
        }
        match self.sp_state {
            SpState::Waiting => {}
            SpState::Aborted => return reply(FfaError::Aborted),
            SpState::Init | SpState::Running { .. } => return reply(FfaError::Busy),
        }
        self.sp_state = SpState::Running { from: src, kind };
        // Re-encoding drops what the call does not carry (upper halves of SMC32 registers,
        // x8-x17 of DIRECT_REQ), as Hafnium's `api_ffa_dir_msg_value` does.
        NwAction::RunSp(call.to_regs())
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
        if self.sp_state == SpState::Aborted {
            // Not reachable from the runtime, which never resumes an aborted SP.
            return self.abort(AbortReason::FfaAbort(0));
        }
        if let Some(w1) = Self::version_call(r) {
            return resume(self.version(Caller::Sp, w1));
        }
        if !is_ffa_fid(r[0] as u32) {
            // Not an FF-A call (PSCI, SMCCC_VERSION, ...): SMCCC "unknown function", x0 = -1,
            // the other registers as they were.
            let mut out = *r;
            out[0] = SMCCC_NOT_SUPPORTED;
            return resume(out);
        }
        self.sp_ep.version_locked = true;
        if r[0] as u32 == FuncId::Error as u32 {
            // Whatever its code, FFA_ERROR from an SP (at init: it could not start) ends it.
            return self.abort(AbortReason::FfaError(r[2] as u32 as i32));
        }
        let call = match Call::from_regs(r) {
            Ok(c) => c,
            Err(e) => return resume(error(e.into())),
        };
        if let Some(out) = self.common(Caller::Sp, &call, mem) {
            return resume(out);
        }
        match call {
            Call::ConsoleLog { chars } => {
                // Hafnium `api_ffa_console_log`: CONSOLE_LOG_64 carries x2-x7 (48 characters)
                // before v1.2.
                if chars.is_64()
                    && self.sp_ep.version < Version::V1_2
                    && chars.as_bytes().len() > 48
                {
                    return resume(error(FfaError::InvalidParameters));
                }
                self.console_write(chars.as_bytes(), console);
                resume(success(0))
            }
            // Hafnium `api_ffa_msg_wait`: x8-x17 MBZ from a v1.2+ caller, w2 (flags) before.
            Call::MsgWait { flags }
                if (self.sp_ep.version >= Version::V1_2 && r[8..].iter().any(|&x| x != 0))
                    || (self.sp_ep.version < Version::V1_2 && flags.retain_rx_buffer) =>
            {
                resume(error(FfaError::InvalidParameters))
            }
            Call::MsgWait { flags } => match self.sp_state {
                SpState::Init => {
                    // MSG_WAIT hands the RX buffer back unless the caller keeps it (v1.2).
                    if !flags.retain_rx_buffer
                        && let Some(m) = self.sp_ep.mailbox.as_mut()
                    {
                        m.rx_full = false;
                    }
                    self.sp_state = SpState::Waiting;
                    SpAction::InitDone
                }
                _ => resume(error(FfaError::Denied)),
            },
            Call::MsgSendDirectResp { .. } | Call::MsgSendDirectResp2 { .. } => {
                self.direct_resp(&call, r)
            }
            // SP-to-SP only, and there is one SP: no valid destination.
            Call::MsgSendDirectReq { .. } | Call::MsgSendDirectReq2 { .. } => {
                resume(error(FfaError::InvalidParameters))
            }
            // Hafnium `api_ffa_abort`: FFA_ABORT is for v1.3 SPs only; an older one gets
            // NOT_SUPPORTED and must end another way (the SP falls back to FFA_ERROR).
            Call::Abort { .. } if self.sp_ep.version < Version::V1_3 => {
                resume(error(FfaError::NotSupported))
            }
            Call::Abort { code } => self.abort(AbortReason::FfaAbort(code)),
            Call::MemRetrieveReq(a) => resume(self.mem_retrieve(a, mem)),
            Call::MemFragRx {
                handle,
                frag_offset,
                endpoint_id,
            } => resume(self.mem_frag_rx(handle, frag_offset, endpoint_id, mem)),
            Call::MemRelinquish => resume(self.mem_relinquish(mem)),
            Call::MemReclaim { handle, flags } => {
                let who = self.caller(Caller::Sp);
                resume(Self::mem_reply(self.mem.reclaim(
                    who,
                    handle,
                    flags.zero_memory,
                    mem,
                )))
            }
            // The SP is no owner of NS memory and has no other SP to send to.
            Call::MemFragTx { .. } => resume(error(FfaError::InvalidParameters)),
            _ => resume(error(FfaError::NotSupported)),
        }
    }

    /// DIRECT_RESP(2) from the SP, checked in Hafnium's order: arguments (INVALID_PARAMETERS:
    /// w2 MBZ, x8-x17 zero for a v1.2+ DIRECT_RESP, own ID as sender), then state (DENIED: no
    /// request pending, RESP/RESP2 not matching REQ/REQ2), then the requester as receiver.
    fn direct_resp(&mut self, call: &Call, r: &Regs) -> SpAction {
        let fail = |e| resume(error(e));
        let (src, dst, is2) = match *call {
            Call::MsgSendDirectResp {
                src_id,
                dst_id,
                args,
            } => {
                if matches!(
                    args,
                    DirectMsgArgs::Framework32 { .. } | DirectMsgArgs::Framework64 { .. }
                ) {
                    // No framework request is ever sent to the SP.
                    return fail(FfaError::Denied);
                }
                if self.sp_ep.version >= Version::V1_2 && r[8..].iter().any(|&x| x != 0) {
                    return fail(FfaError::InvalidParameters);
                }
                (src_id, dst_id, false)
            }
            Call::MsgSendDirectResp2 { src_id, dst_id, .. } => (src_id, dst_id, true),
            _ => return fail(FfaError::NotSupported),
        };
        if src != self.sp_ep.id {
            return fail(FfaError::InvalidParameters);
        }
        let SpState::Running { from, kind } = self.sp_state else {
            return fail(FfaError::Denied);
        };
        if is2 != (kind == ReqKind::Direct2) {
            return fail(FfaError::Denied);
        }
        if dst != from {
            return fail(FfaError::InvalidParameters);
        }
        self.sp_state = SpState::Waiting;
        SpAction::ToNw(call.to_regs())
    }

    /// Marks the SP aborted (FFA_ABORT, FFA_ERROR, or an exception the runtime took).
    pub fn abort(&mut self, reason: AbortReason) -> SpAction {
        let was = self.sp_state;
        self.sp_state = SpState::Aborted;
        SpAction::Aborted {
            reason,
            reply: matches!(was, SpState::Running { .. }).then(|| error(FfaError::Aborted)),
        }
    }

    fn console_write(&mut self, bytes: &[u8], console: &mut dyn Write) {
        for &b in bytes {
            if b == b'\n' || self.console_len == CONSOLE_LINE {
                let line = &self.console[..self.console_len];
                let text = core::str::from_utf8(line).unwrap_or("<non-UTF-8 console line>");
                let _ = writeln!(console, "[{:x} 0] {}", self.sp_ep.id, text);
                self.console_len = 0;
            }
            if b != b'\n' {
                self.console[self.console_len] = b;
                self.console_len += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        fn nw_revoke(
            &mut self,
            r: &MemRange,
            why: memshare::Revoked,
        ) -> Result<(), memshare::HwError> {
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
        };
        sp_info.manifest.regions[1] = Region {
            name: Default::default(),
            base: 0x4300_0000,
            pages: 2,
            attributes: 0x9,
            device: false,
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
        let NwAction::Reply(r) = s.nw_call(&call(F::PartitionInfoGet, &[0, 0, 0, 0, 0]), &mut m)
        else {
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
        fn nw_revoke(
            &mut self,
            r: &MemRange,
            why: memshare::Revoked,
        ) -> Result<(), memshare::HwError> {
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
            DataAccess, DescKind, Emad, EmadSize, FragmentAssembler, InstructionAccess,
            MemAccessPerm, MemFlags, MemRegionAttributes, MemRelinquishDesc, MemTransaction,
            ParseOptions, TransactionType,
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
        let req =
            MemTransaction::retrieve_request(h, 0, rp, TransactionType::Share, 0, EmadSize::V1_2)
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
        let req =
            MemTransaction::retrieve_request(hl, 0, rp, TransactionType::Lend, 0, EmadSize::V1_2)
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
}
