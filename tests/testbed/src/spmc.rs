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
#[path = "spmc_tests.rs"]
mod tests;
