//! FF-A calls and replies as data: [`Interface`] and its register encoding.
//!
//! Register conventions are FF-A v1.2 (the version this project declares):
//! - SMC32 calls (`0x84..`) read only w1-w7; the upper halves of x1-x7 are ignored (SMCCC
//!   says the callee must not rely on them), and x8-x17 are ignored. Encoding writes zeros.
//! - SMC64 calls use x1-x17 as the call defines; registers a call does not use are ignored
//!   on decode and written as zero on encode.
//! - Bits and registers the spec marks MBZ in a *request* are rejected
//!   ([`DecodeError::ReservedNotZero`]), so an SPMC or SP can return `INVALID_PARAMETERS`.
//!   Generic replies (`FFA_SUCCESS`, `FFA_ERROR`) carry their registers as-is.
//! - `FFA_MSG_SEND_DIRECT_REQ/RESP_64` carry x3-x7 only (v1.2). The v1.3 extension to x17 is
//!   not decoded: x8-x17 are ignored, so a v1.3 sender's extra payload is dropped, never
//!   misread. Use DIRECT_REQ2 for larger payloads.
//!
//! # Decoding a reply
//! Most replies are ordinary calls (`FFA_SUCCESS`, `FFA_ERROR`, a direct response, the next
//! request) and [`Interface::from_regs`] decodes them. The exception is `FFA_VERSION`,
//! whose reply is a bare version word in w0 (or `NOT_SUPPORTED` = -1): decode it with
//! [`Interface::decode_reply`], which takes the request's function ID and yields
//! [`Interface::VersionOut`] or [`Interface::Error`].

use crate::{DecodeError, FfaError, FuncId, Uuid, Version};

/// FF-A endpoint / partition ID (SPs have bit 15 set; the NWd OS is 0, the SPMC 0x8000).
pub type PartitionId = u16;

/// Number of general-purpose registers an FF-A call or reply uses (x0-x17, SMCCC v1.2).
pub const REG_COUNT: usize = 18;

/// Registers x0-x17 of a call or reply.
pub type Regs = [u64; REG_COUNT];

/// Arguments of `FFA_SUCCESS`: w2-w7 for the 32-bit form, x2-x17 for the 64-bit form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuccessArgs {
    Args32([u32; 6]),
    Args64([u64; 16]),
}

impl SuccessArgs {
    /// A 32-bit success with `w2 = v` and the rest zero (e.g. FFA_ID_GET's reply).
    pub const fn w2(v: u32) -> Self {
        Self::Args32([v, 0, 0, 0, 0, 0])
    }

    /// Argument `i` (0 = w2/x2) as a u64; 0 if out of range.
    pub fn get(&self, i: usize) -> u64 {
        match self {
            Self::Args32(a) => a.get(i).map_or(0, |&v| v.into()),
            Self::Args64(a) => a.get(i).copied().unwrap_or(0),
        }
    }
}

/// Payload and kind of a direct message (FFA_MSG_SEND_DIRECT_REQ/RESP).
///
/// w2 (flags): bit 31 = framework message, \[7:0\] its type; every other bit MBZ, and \[7:0\]
/// MBZ for partition messages. Payload: w3-w7 (32-bit) or x3-x7 (64-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectMsgArgs {
    Args32([u32; 5]),
    Args64([u64; 5]),
    /// A framework message (e.g. PSCI power management, VM created/destroyed).
    Framework32 {
        msg_type: u8,
        args: [u32; 5],
    },
    Framework64 {
        msg_type: u8,
        args: [u64; 5],
    },
}

impl DirectMsgArgs {
    const fn is_64(&self) -> bool {
        matches!(self, Self::Args64(_) | Self::Framework64 { .. })
    }

    const fn flags(&self) -> u32 {
        match self {
            Self::Args32(_) | Self::Args64(_) => 0,
            Self::Framework32 { msg_type, .. } | Self::Framework64 { msg_type, .. } => {
                FRAMEWORK_MSG_BIT | *msg_type as u32
            }
        }
    }

    fn payload(&self) -> [u64; 5] {
        match self {
            Self::Args32(a) | Self::Framework32 { args: a, .. } => a.map(u64::from),
            Self::Args64(a) | Self::Framework64 { args: a, .. } => *a,
        }
    }
}

const FRAMEWORK_MSG_BIT: u32 = 1 << 31;

/// Payload of DIRECT_REQ2 / DIRECT_RESP2: x4-x17.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectMsg2Args(pub [u64; 14]);

/// FFA_MSG_WAIT flags (w2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgWaitFlags {
    /// Bit 0 (v1.2): the caller keeps ownership of its RX buffer.
    pub retain_rx_buffer: bool,
}

/// FFA_PARTITION_INFO_GET flags (w5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionInfoGetFlags {
    /// Bit 0: return only the count in w2, write no descriptors.
    pub count_only: bool,
}

/// RX/TX buffer addresses for FFA_RXTX_MAP (x1 = TX, x2 = RX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxTxAddr {
    Addr32 { tx: u32, rx: u32 },
    Addr64 { tx: u64, rx: u64 },
}

/// FFA_RXTX_MAP page count: w3\[5:0\], 1..=63 4 KiB pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RxTxPageCount(u8);

impl RxTxPageCount {
    pub const MAX: u32 = 63;

    pub const fn new(pages: u32) -> Option<Self> {
        if pages >= 1 && pages <= Self::MAX {
            Some(Self(pages as u8))
        } else {
            None
        }
    }

    pub const fn get(self) -> u32 {
        self.0 as u32
    }
}

/// Characters of one FFA_CONSOLE_LOG call: up to 24 (w2-w7) or 128 (x2-x17), packed
/// little-endian, first character in the least significant byte of w2/x2; w1/x1 = count.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConsoleLogChars {
    is_64: bool,
    len: u8,
    buf: [u8; Self::MAX_64],
}

impl ConsoleLogChars {
    /// Characters per FFA_CONSOLE_LOG_32 call.
    pub const MAX_32: usize = 24;
    /// Characters per FFA_CONSOLE_LOG_64 call.
    pub const MAX_64: usize = 128;

    /// 1..=24 bytes for CONSOLE_LOG_32; `None` otherwise.
    pub fn new32(bytes: &[u8]) -> Option<Self> {
        Self::new(false, bytes)
    }

    /// 1..=128 bytes for CONSOLE_LOG_64; `None` otherwise.
    pub fn new64(bytes: &[u8]) -> Option<Self> {
        Self::new(true, bytes)
    }

    fn new(is_64: bool, bytes: &[u8]) -> Option<Self> {
        let max = if is_64 { Self::MAX_64 } else { Self::MAX_32 };
        if bytes.is_empty() || bytes.len() > max {
            return None;
        }
        let mut buf = [0; Self::MAX_64];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            is_64,
            len: bytes.len() as u8,
            buf,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub const fn is_64(&self) -> bool {
        self.is_64
    }
}

impl core::fmt::Debug for ConsoleLogChars {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConsoleLogChars")
            .field("is_64", &self.is_64)
            .field("chars", &core::str::from_utf8(self.as_bytes()))
            .finish()
    }
}

/// Entry point for FFA_SECONDARY_EP_REGISTER (x1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    Addr32(u32),
    Addr64(u64),
}

/// A memory transaction handle (w1 = low, w2 = high half in calls that carry it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

impl Handle {
    /// Bit 63, the handle allocator (FF-A v1.2 sec. 10.10.2): 0 = the SPMC allocated it.
    /// Hafnium's handles are share-state indices with this bit clear, the first being 0x0.
    pub const ALLOCATOR_SPMC: u64 = 0;
    /// Bit 63 set: a hypervisor (the NS partition manager) allocated the handle.
    pub const ALLOCATOR_HYPERVISOR: u64 = 1 << 63;
    /// The one value no transaction ever has (Hafnium `FFA_MEMORY_HANDLE_INVALID`).
    pub const INVALID: Self = Self(u64::MAX);

    pub const fn from_halves(lo: u32, hi: u32) -> Self {
        Self(((hi as u64) << 32) | lo as u64)
    }

    pub const fn halves(self) -> (u32, u32) {
        (self.0 as u32, (self.0 >> 32) as u32)
    }
}

/// Where a memory transaction descriptor lives (x3 address, w4 page count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOpBuf {
    /// In the caller's TX buffer (x3 = w4 = 0), SMC32 call.
    Tx32,
    /// In the caller's TX buffer, SMC64 call.
    Tx64,
    /// In a separate buffer (SMC32). `addr == 0 && page_count == 0` decodes as [`Self::Tx32`].
    Buf32 { addr: u32, page_count: u32 },
    /// In a separate buffer (SMC64).
    Buf64 { addr: u64, page_count: u32 },
}

impl MemOpBuf {
    const fn is_64(self) -> bool {
        matches!(self, Self::Tx64 | Self::Buf64 { .. })
    }

    const fn regs(self) -> (u64, u64) {
        match self {
            Self::Tx32 | Self::Tx64 => (0, 0),
            Self::Buf32 { addr, page_count } => (addr as u64, page_count as u64),
            Self::Buf64 { addr, page_count } => (addr, page_count as u64),
        }
    }

    const fn from_regs(is_64: bool, addr: u64, pages: u32) -> Self {
        match (is_64, addr == 0 && pages == 0) {
            (false, true) => Self::Tx32,
            (true, true) => Self::Tx64,
            (false, false) => Self::Buf32 {
                addr: addr as u32,
                page_count: pages,
            },
            (true, false) => Self::Buf64 {
                addr,
                page_count: pages,
            },
        }
    }
}

/// Arguments shared by FFA_MEM_DONATE/LEND/SHARE/RETRIEVE_REQ: w1 total descriptor length,
/// w2 length of this fragment, x3/w4 buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOpArgs {
    pub total_len: u32,
    pub frag_len: u32,
    pub buf: MemOpBuf,
}

/// FFA_MEM_RECLAIM flags (w3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimFlags {
    /// Bit 0: zero the memory before the owner regains it.
    pub zero_memory: bool,
    /// Bit 1: operation may be time-sliced.
    pub time_slicing: bool,
}

/// One FF-A call or reply. Every value is encodable: [`Interface::to_regs`] never panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// FFA_ERROR: w1 target info, w2 error code.
    Error { target_info: u32, code: FfaError },
    /// FFA_SUCCESS_32/64: w1 target info, w2.. arguments.
    Success { target_info: u32, args: SuccessArgs },
    /// FFA_INTERRUPT: w1 target info (endpoint/vCPU), w2 interrupt ID.
    Interrupt { target_info: u32, interrupt_id: u32 },
    /// FFA_VERSION request: w1 = the caller's version.
    Version { input: Version },
    /// FFA_VERSION reply: w0 = the callee's version (not a function ID; see the module doc).
    VersionOut { output: Version },
    /// FFA_FEATURES: w1 function or feature ID, w2 input properties (e.g. bit 1 = NS-bit
    /// support for FFA_MEM_RETRIEVE_REQ, which Hafnium requires of v1.1+ SPs).
    Features {
        feature_id: u32,
        input_properties: u32,
    },
    /// FFA_RX_ACQUIRE: w1\[15:0\] VM ID (hypervisor only; else 0).
    RxAcquire { vm_id: PartitionId },
    /// FFA_RX_RELEASE: w1\[15:0\] VM ID (hypervisor only; else 0).
    RxRelease { vm_id: PartitionId },
    /// FFA_RXTX_MAP_32/64: x1 TX, x2 RX, w3\[5:0\] page count.
    RxTxMap {
        addr: RxTxAddr,
        page_count: RxTxPageCount,
    },
    /// FFA_RXTX_UNMAP: w1\[31:16\] endpoint ID (hypervisor only; else 0).
    RxTxUnmap { id: PartitionId },
    /// FFA_PARTITION_INFO_GET: w1-w4 UUID (cells), w5 flags.
    PartitionInfoGet {
        uuid: Uuid,
        flags: PartitionInfoGetFlags,
    },
    /// FFA_PARTITION_INFO_GET_REGS: x1/x2 UUID (lo/hi), x3\[15:0\] start index, \[31:16\] tag.
    PartitionInfoGetRegs {
        uuid: Uuid,
        start_index: u16,
        tag: u16,
    },
    /// FFA_ID_GET.
    IdGet,
    /// FFA_SPM_ID_GET.
    SpmIdGet,
    /// FFA_MSG_WAIT: w2 flags.
    MsgWait { flags: MsgWaitFlags },
    /// FFA_YIELD.
    Yield,
    /// FFA_RUN: w1 = target\[31:16\] | vCPU\[15:0\].
    Run {
        target_id: PartitionId,
        vcpu_id: u16,
    },
    /// FFA_NORMAL_WORLD_RESUME.
    NormalWorldResume,
    /// FFA_MSG_SEND_DIRECT_REQ_32/64: w1 = src\[31:16\] | dst\[15:0\].
    MsgSendDirectReq {
        src_id: PartitionId,
        dst_id: PartitionId,
        args: DirectMsgArgs,
    },
    /// FFA_MSG_SEND_DIRECT_RESP_32/64.
    MsgSendDirectResp {
        src_id: PartitionId,
        dst_id: PartitionId,
        args: DirectMsgArgs,
    },
    /// FFA_MSG_SEND_DIRECT_REQ2 (SMC64): x1 ids, x2/x3 service UUID (lo/hi), x4-x17 payload.
    MsgSendDirectReq2 {
        src_id: PartitionId,
        dst_id: PartitionId,
        uuid: Uuid,
        args: DirectMsg2Args,
    },
    /// FFA_MSG_SEND_DIRECT_RESP2 (SMC64): x1 ids, x2/x3 MBZ, x4-x17 payload.
    MsgSendDirectResp2 {
        src_id: PartitionId,
        dst_id: PartitionId,
        args: DirectMsg2Args,
    },
    /// FFA_CONSOLE_LOG_32/64.
    ConsoleLog { chars: ConsoleLogChars },
    /// FFA_SECONDARY_EP_REGISTER_32/64: x1 entry point.
    SecondaryEpRegister { entrypoint: EntryPoint },
    /// Hafnium's FFA_ABORT_32. Hafnium reads no argument; this crate puts an
    /// implementation-defined code in w2 (like FFA_ERROR) and ignores w1-w7 on decode
    /// except w2. FFA_ABORT_64 is a known [`FuncId`] but decodes as unknown here.
    Abort { code: u32 },
    /// FFA_MEM_DONATE_32/64.
    MemDonate(MemOpArgs),
    /// FFA_MEM_LEND_32/64.
    MemLend(MemOpArgs),
    /// FFA_MEM_SHARE_32/64.
    MemShare(MemOpArgs),
    /// FFA_MEM_RETRIEVE_REQ_32/64.
    MemRetrieveReq(MemOpArgs),
    /// FFA_MEM_RETRIEVE_RESP: w1 total length, w2 fragment length (descriptor in RX).
    MemRetrieveResp { total_len: u32, frag_len: u32 },
    /// FFA_MEM_RELINQUISH (descriptor in TX).
    MemRelinquish,
    /// FFA_MEM_RECLAIM: w1/w2 handle, w3 flags.
    MemReclaim { handle: Handle, flags: ReclaimFlags },
    /// FFA_MEM_FRAG_RX: w1/w2 handle, w3 offset, w4\[31:16\] endpoint (hypervisor; else 0).
    MemFragRx {
        handle: Handle,
        frag_offset: u32,
        endpoint_id: PartitionId,
    },
    /// FFA_MEM_FRAG_TX: w1/w2 handle, w3 fragment length, w4\[31:16\] endpoint.
    MemFragTx {
        handle: Handle,
        frag_len: u32,
        endpoint_id: PartitionId,
    },
}

/// Reads a register set for one function, masking SMC32 upper halves.
struct Rd<'a> {
    r: &'a Regs,
    f: FuncId,
}

impl Rd<'_> {
    /// x`i` (masked to 32 bits for SMC32 calls).
    fn x(&self, i: usize) -> u64 {
        if self.f.is_64bit() {
            self.r[i]
        } else {
            self.r[i] & 0xFFFF_FFFF
        }
    }

    fn w(&self, i: usize) -> u32 {
        self.r[i] as u32
    }

    /// x`i` & `mask` must be 0.
    fn mbz_bits(&self, i: usize, mask: u64) -> Result<(), DecodeError> {
        let v = self.x(i);
        if v & mask != 0 {
            Err(DecodeError::ReservedNotZero {
                func: self.f,
                reg: i as u8,
                value: v,
            })
        } else {
            Ok(())
        }
    }

    /// x`from`..=x`to` must be 0 (x`to` capped at x7 for SMC32 calls).
    fn mbz(&self, from: usize, to: usize) -> Result<(), DecodeError> {
        let to = if self.f.is_64bit() { to } else { to.min(7) };
        (from..=to).try_for_each(|i| self.mbz_bits(i, u64::MAX))
    }

    fn ids(&self) -> (PartitionId, PartitionId) {
        let w1 = self.w(1);
        ((w1 >> 16) as u16, w1 as u16)
    }

    fn mem_op(&self) -> Result<MemOpArgs, DecodeError> {
        self.mbz_bits(4, !0xFFFF_FFFF)?;
        self.mbz(5, 7)?;
        Ok(MemOpArgs {
            total_len: self.w(1),
            frag_len: self.w(2),
            buf: MemOpBuf::from_regs(self.f.is_64bit(), self.x(3), self.w(4)),
        })
    }

    fn direct_args(&self) -> Result<DirectMsgArgs, DecodeError> {
        let flags = self.w(2);
        let framework = flags & FRAMEWORK_MSG_BIT != 0;
        let allowed = if framework {
            FRAMEWORK_MSG_BIT | 0xFF
        } else {
            0
        };
        if flags & !allowed != 0 {
            return Err(DecodeError::InvalidDirectMsgFlags(flags));
        }
        let msg_type = flags as u8;
        let a64 = [self.x(3), self.x(4), self.x(5), self.x(6), self.x(7)];
        let a32 = a64.map(|v| v as u32);
        Ok(match (self.f.is_64bit(), framework) {
            (false, false) => DirectMsgArgs::Args32(a32),
            (true, false) => DirectMsgArgs::Args64(a64),
            (false, true) => DirectMsgArgs::Framework32 {
                msg_type,
                args: a32,
            },
            (true, true) => DirectMsgArgs::Framework64 {
                msg_type,
                args: a64,
            },
        })
    }

    fn args2(&self) -> DirectMsg2Args {
        let mut a = [0u64; 14];
        a.copy_from_slice(&self.r[4..18]);
        DirectMsg2Args(a)
    }

    fn handle(&self) -> Handle {
        Handle::from_halves(self.w(1), self.w(2))
    }
}

impl Interface {
    /// Decode a call or reply from x0-x17. Never panics; see the module doc for what is
    /// masked, ignored and rejected. `FFA_VERSION`'s reply needs [`Interface::decode_reply`].
    pub fn from_regs(regs: &Regs) -> Result<Self, DecodeError> {
        let w0 = regs[0] as u32;
        let f = FuncId::from_u32(w0).ok_or(DecodeError::UnknownFunction(w0))?;
        let r = Rd { r: regs, f };
        use FuncId as F;
        Ok(match f {
            F::Error => {
                let c = r.w(2) as i32;
                Self::Error {
                    target_info: r.w(1),
                    code: FfaError::from_i32(c).ok_or(DecodeError::UnknownErrorCode(c))?,
                }
            }
            F::Success32 => Self::Success {
                target_info: r.w(1),
                args: SuccessArgs::Args32([r.w(2), r.w(3), r.w(4), r.w(5), r.w(6), r.w(7)]),
            },
            F::Success64 => {
                let mut a = [0u64; 16];
                a.copy_from_slice(&regs[2..18]);
                Self::Success {
                    target_info: r.w(1),
                    args: SuccessArgs::Args64(a),
                }
            }
            F::Interrupt => Self::Interrupt {
                target_info: r.w(1),
                interrupt_id: r.w(2),
            },
            F::Version => {
                r.mbz(2, 7)?;
                Self::Version {
                    input: Version::from_u32(r.w(1))?,
                }
            }
            F::Features => {
                r.mbz(3, 7)?;
                Self::Features {
                    feature_id: r.w(1),
                    input_properties: r.w(2),
                }
            }
            F::RxAcquire | F::RxRelease => {
                r.mbz_bits(1, !0xFFFF)?;
                r.mbz(2, 7)?;
                let vm_id = r.w(1) as u16;
                if f == F::RxAcquire {
                    Self::RxAcquire { vm_id }
                } else {
                    Self::RxRelease { vm_id }
                }
            }
            F::RxTxMap32 | F::RxTxMap64 => {
                r.mbz(4, 7)?;
                r.mbz_bits(3, !0x3F)?;
                let w3 = r.w(3);
                let page_count = RxTxPageCount::new(w3).ok_or(DecodeError::InvalidPageCount(w3))?;
                let addr = if f.is_64bit() {
                    RxTxAddr::Addr64 {
                        tx: r.x(1),
                        rx: r.x(2),
                    }
                } else {
                    RxTxAddr::Addr32 {
                        tx: r.w(1),
                        rx: r.w(2),
                    }
                };
                Self::RxTxMap { addr, page_count }
            }
            F::RxTxUnmap => {
                r.mbz_bits(1, !0xFFFF_0000)?;
                r.mbz(2, 7)?;
                Self::RxTxUnmap {
                    id: (r.w(1) >> 16) as u16,
                }
            }
            F::PartitionInfoGet => {
                r.mbz(6, 7)?;
                let flags = r.w(5);
                if flags & !1 != 0 {
                    return Err(DecodeError::InvalidFlags { func: f, flags });
                }
                Self::PartitionInfoGet {
                    uuid: Uuid::from_cells([r.w(1), r.w(2), r.w(3), r.w(4)]),
                    flags: PartitionInfoGetFlags {
                        count_only: flags & 1 != 0,
                    },
                }
            }
            F::PartitionInfoGetRegs => {
                r.mbz_bits(3, !0xFFFF_FFFF)?;
                r.mbz(4, 17)?;
                Self::PartitionInfoGetRegs {
                    uuid: Uuid::from_u64_pair(r.x(1), r.x(2)),
                    start_index: r.w(3) as u16,
                    tag: (r.w(3) >> 16) as u16,
                }
            }
            F::IdGet | F::SpmIdGet | F::Yield | F::NormalWorldResume | F::MemRelinquish => {
                r.mbz(1, 7)?;
                match f {
                    F::IdGet => Self::IdGet,
                    F::SpmIdGet => Self::SpmIdGet,
                    F::Yield => Self::Yield,
                    F::NormalWorldResume => Self::NormalWorldResume,
                    _ => Self::MemRelinquish,
                }
            }
            F::MsgWait => {
                r.mbz(1, 1)?;
                r.mbz(3, 7)?;
                let flags = r.w(2);
                if flags & !1 != 0 {
                    return Err(DecodeError::InvalidFlags { func: f, flags });
                }
                Self::MsgWait {
                    flags: MsgWaitFlags {
                        retain_rx_buffer: flags & 1 != 0,
                    },
                }
            }
            F::Run => {
                r.mbz(2, 7)?;
                Self::Run {
                    target_id: (r.w(1) >> 16) as u16,
                    vcpu_id: r.w(1) as u16,
                }
            }
            F::MsgSendDirectReq32
            | F::MsgSendDirectReq64
            | F::MsgSendDirectResp32
            | F::MsgSendDirectResp64 => {
                let (src_id, dst_id) = r.ids();
                let args = r.direct_args()?;
                if matches!(f, F::MsgSendDirectReq32 | F::MsgSendDirectReq64) {
                    Self::MsgSendDirectReq {
                        src_id,
                        dst_id,
                        args,
                    }
                } else {
                    Self::MsgSendDirectResp {
                        src_id,
                        dst_id,
                        args,
                    }
                }
            }
            F::MsgSendDirectReq2 => {
                r.mbz_bits(1, !0xFFFF_FFFF)?;
                let (src_id, dst_id) = r.ids();
                Self::MsgSendDirectReq2 {
                    src_id,
                    dst_id,
                    uuid: Uuid::from_u64_pair(r.x(2), r.x(3)),
                    args: r.args2(),
                }
            }
            F::MsgSendDirectResp2 => {
                r.mbz_bits(1, !0xFFFF_FFFF)?;
                r.mbz(2, 3)?;
                let (src_id, dst_id) = r.ids();
                Self::MsgSendDirectResp2 {
                    src_id,
                    dst_id,
                    args: r.args2(),
                }
            }
            F::ConsoleLog32 | F::ConsoleLog64 => {
                let n = r.x(1);
                let (max, per) = if f.is_64bit() {
                    (ConsoleLogChars::MAX_64, 8)
                } else {
                    (ConsoleLogChars::MAX_32, 4)
                };
                if n == 0 || n > max as u64 {
                    return Err(DecodeError::InvalidCharCount(n));
                }
                let mut buf = [0u8; ConsoleLogChars::MAX_64];
                for (i, chunk) in buf[..max].chunks_mut(per).enumerate() {
                    chunk.copy_from_slice(&r.x(2 + i).to_le_bytes()[..per]);
                }
                let len = n as usize;
                let chars = ConsoleLogChars::new(f.is_64bit(), &buf[..len])
                    .ok_or(DecodeError::InvalidCharCount(n))?;
                Self::ConsoleLog { chars }
            }
            F::SecondaryEpRegister32 | F::SecondaryEpRegister64 => {
                r.mbz(2, 7)?;
                Self::SecondaryEpRegister {
                    entrypoint: if f.is_64bit() {
                        EntryPoint::Addr64(r.x(1))
                    } else {
                        EntryPoint::Addr32(r.w(1))
                    },
                }
            }
            F::Abort32 => Self::Abort { code: r.w(2) },
            F::MemDonate32 | F::MemDonate64 => Self::MemDonate(r.mem_op()?),
            F::MemLend32 | F::MemLend64 => Self::MemLend(r.mem_op()?),
            F::MemShare32 | F::MemShare64 => Self::MemShare(r.mem_op()?),
            F::MemRetrieveReq32 | F::MemRetrieveReq64 => Self::MemRetrieveReq(r.mem_op()?),
            F::MemRetrieveResp => {
                r.mbz(3, 7)?;
                Self::MemRetrieveResp {
                    total_len: r.w(1),
                    frag_len: r.w(2),
                }
            }
            F::MemReclaim => {
                r.mbz(4, 7)?;
                let flags = r.w(3);
                if flags & !3 != 0 {
                    return Err(DecodeError::InvalidFlags { func: f, flags });
                }
                Self::MemReclaim {
                    handle: r.handle(),
                    flags: ReclaimFlags {
                        zero_memory: flags & 1 != 0,
                        time_slicing: flags & 2 != 0,
                    },
                }
            }
            F::MemFragRx | F::MemFragTx => {
                r.mbz_bits(4, 0xFFFF)?;
                r.mbz(5, 7)?;
                let handle = r.handle();
                let endpoint_id = (r.w(4) >> 16) as u16;
                if f == F::MemFragRx {
                    Self::MemFragRx {
                        handle,
                        frag_offset: r.w(3),
                        endpoint_id,
                    }
                } else {
                    Self::MemFragTx {
                        handle,
                        frag_len: r.w(3),
                        endpoint_id,
                    }
                }
            }
            // Known IDs this crate does not model (FFA_ABORT_64: SPs use the 32-bit form).
            F::MemOpPause | F::MemOpResume | F::MsgSend2 | F::El3IntrHandle | F::Abort64 => {
                return Err(DecodeError::UnknownFunction(w0));
            }
        })
    }

    /// Decode the reply to a call with function ID `request`. Only FFA_VERSION differs from
    /// [`Interface::from_regs`]: its reply is a bare version word in w0, or -1
    /// (NOT_SUPPORTED), which becomes `Interface::Error`.
    pub fn decode_reply(request: FuncId, regs: &Regs) -> Result<Self, DecodeError> {
        if request == FuncId::Version {
            let w0 = regs[0] as u32;
            if w0 == FfaError::NotSupported.to_u32() {
                return Ok(Self::Error {
                    target_info: 0,
                    code: FfaError::NotSupported,
                });
            }
            return Ok(Self::VersionOut {
                output: Version::from_u32(w0)?,
            });
        }
        Self::from_regs(regs)
    }

    /// The function ID in w0 (`VersionOut` has none and reports [`FuncId::Version`]).
    pub const fn func_id(&self) -> FuncId {
        use FuncId as F;
        match self {
            Self::Error { .. } => F::Error,
            Self::Success { args, .. } => match args {
                SuccessArgs::Args32(_) => F::Success32,
                SuccessArgs::Args64(_) => F::Success64,
            },
            Self::Interrupt { .. } => F::Interrupt,
            Self::Version { .. } | Self::VersionOut { .. } => F::Version,
            Self::Features { .. } => F::Features,
            Self::RxAcquire { .. } => F::RxAcquire,
            Self::RxRelease { .. } => F::RxRelease,
            Self::RxTxMap { addr, .. } => match addr {
                RxTxAddr::Addr32 { .. } => F::RxTxMap32,
                RxTxAddr::Addr64 { .. } => F::RxTxMap64,
            },
            Self::RxTxUnmap { .. } => F::RxTxUnmap,
            Self::PartitionInfoGet { .. } => F::PartitionInfoGet,
            Self::PartitionInfoGetRegs { .. } => F::PartitionInfoGetRegs,
            Self::IdGet => F::IdGet,
            Self::SpmIdGet => F::SpmIdGet,
            Self::MsgWait { .. } => F::MsgWait,
            Self::Yield => F::Yield,
            Self::Run { .. } => F::Run,
            Self::NormalWorldResume => F::NormalWorldResume,
            Self::MsgSendDirectReq { args, .. } => {
                if args.is_64() {
                    F::MsgSendDirectReq64
                } else {
                    F::MsgSendDirectReq32
                }
            }
            Self::MsgSendDirectResp { args, .. } => {
                if args.is_64() {
                    F::MsgSendDirectResp64
                } else {
                    F::MsgSendDirectResp32
                }
            }
            Self::MsgSendDirectReq2 { .. } => F::MsgSendDirectReq2,
            Self::MsgSendDirectResp2 { .. } => F::MsgSendDirectResp2,
            Self::ConsoleLog { chars } => {
                if chars.is_64 {
                    F::ConsoleLog64
                } else {
                    F::ConsoleLog32
                }
            }
            Self::SecondaryEpRegister { entrypoint } => match entrypoint {
                EntryPoint::Addr32(_) => F::SecondaryEpRegister32,
                EntryPoint::Addr64(_) => F::SecondaryEpRegister64,
            },
            Self::Abort { .. } => F::Abort32,
            Self::MemDonate(a) => pick(a.buf.is_64(), F::MemDonate32, F::MemDonate64),
            Self::MemLend(a) => pick(a.buf.is_64(), F::MemLend32, F::MemLend64),
            Self::MemShare(a) => pick(a.buf.is_64(), F::MemShare32, F::MemShare64),
            Self::MemRetrieveReq(a) => {
                pick(a.buf.is_64(), F::MemRetrieveReq32, F::MemRetrieveReq64)
            }
            Self::MemRetrieveResp { .. } => F::MemRetrieveResp,
            Self::MemRelinquish => F::MemRelinquish,
            Self::MemReclaim { .. } => F::MemReclaim,
            Self::MemFragRx { .. } => F::MemFragRx,
            Self::MemFragTx { .. } => F::MemFragTx,
        }
    }

    /// Encode into x0-x17. Unused registers are zero. Never panics.
    pub fn to_regs(&self) -> Regs {
        let mut r = [0u64; REG_COUNT];
        r[0] = self.func_id() as u32 as u64;
        let ids = |src: u16, dst: u16| ((src as u64) << 16) | dst as u64;
        match *self {
            Self::Error { target_info, code } => {
                r[1] = target_info.into();
                r[2] = code.to_u32().into();
            }
            Self::Success { target_info, args } => {
                r[1] = target_info.into();
                match args {
                    SuccessArgs::Args32(a) => {
                        for (d, s) in r[2..8].iter_mut().zip(a) {
                            *d = s.into();
                        }
                    }
                    SuccessArgs::Args64(a) => r[2..18].copy_from_slice(&a),
                }
            }
            Self::Interrupt {
                target_info,
                interrupt_id,
            } => {
                r[1] = target_info.into();
                r[2] = interrupt_id.into();
            }
            Self::Version { input } => r[1] = input.to_u32().into(),
            Self::VersionOut { output } => r[0] = output.to_u32().into(),
            Self::Features {
                feature_id,
                input_properties,
            } => {
                r[1] = feature_id.into();
                r[2] = input_properties.into();
            }
            Self::RxAcquire { vm_id } | Self::RxRelease { vm_id } => r[1] = vm_id.into(),
            Self::RxTxMap { addr, page_count } => {
                (r[1], r[2]) = match addr {
                    RxTxAddr::Addr32 { tx, rx } => (tx.into(), rx.into()),
                    RxTxAddr::Addr64 { tx, rx } => (tx, rx),
                };
                r[3] = page_count.get().into();
            }
            Self::RxTxUnmap { id } => r[1] = u64::from(id) << 16,
            Self::PartitionInfoGet { uuid, flags } => {
                for (d, c) in r[1..5].iter_mut().zip(uuid.to_cells()) {
                    *d = c.into();
                }
                r[5] = flags.count_only.into();
            }
            Self::PartitionInfoGetRegs {
                uuid,
                start_index,
                tag,
            } => {
                (r[1], r[2]) = uuid.to_u64_pair();
                r[3] = u64::from(start_index) | u64::from(tag) << 16;
            }
            Self::IdGet
            | Self::SpmIdGet
            | Self::Yield
            | Self::NormalWorldResume
            | Self::MemRelinquish => {}
            Self::MsgWait { flags } => r[2] = flags.retain_rx_buffer.into(),
            Self::Run { target_id, vcpu_id } => r[1] = ids(target_id, vcpu_id),
            Self::MsgSendDirectReq {
                src_id,
                dst_id,
                args,
            }
            | Self::MsgSendDirectResp {
                src_id,
                dst_id,
                args,
            } => {
                r[1] = ids(src_id, dst_id);
                r[2] = args.flags().into();
                r[3..8].copy_from_slice(&args.payload());
            }
            Self::MsgSendDirectReq2 {
                src_id,
                dst_id,
                uuid,
                args,
            } => {
                r[1] = ids(src_id, dst_id);
                (r[2], r[3]) = uuid.to_u64_pair();
                r[4..18].copy_from_slice(&args.0);
            }
            Self::MsgSendDirectResp2 {
                src_id,
                dst_id,
                args,
            } => {
                r[1] = ids(src_id, dst_id);
                r[4..18].copy_from_slice(&args.0);
            }
            Self::ConsoleLog { chars } => {
                r[1] = chars.len.into();
                let per = if chars.is_64 { 8 } else { 4 };
                let used = usize::from(chars.len).div_ceil(per);
                for (i, chunk) in chars.buf.chunks(per).take(used).enumerate() {
                    let mut b = [0u8; 8];
                    b[..per].copy_from_slice(chunk);
                    r[2 + i] = u64::from_le_bytes(b);
                }
            }
            Self::SecondaryEpRegister { entrypoint } => {
                r[1] = match entrypoint {
                    EntryPoint::Addr32(a) => a.into(),
                    EntryPoint::Addr64(a) => a,
                }
            }
            Self::Abort { code } => r[2] = code.into(),
            Self::MemDonate(a) | Self::MemLend(a) | Self::MemShare(a) | Self::MemRetrieveReq(a) => {
                r[1] = a.total_len.into();
                r[2] = a.frag_len.into();
                (r[3], r[4]) = a.buf.regs();
            }
            Self::MemRetrieveResp {
                total_len,
                frag_len,
            } => {
                r[1] = total_len.into();
                r[2] = frag_len.into();
            }
            Self::MemReclaim { handle, flags } => {
                let (lo, hi) = handle.halves();
                r[1] = lo.into();
                r[2] = hi.into();
                r[3] = u64::from(flags.zero_memory) | u64::from(flags.time_slicing) << 1;
            }
            Self::MemFragRx {
                handle,
                frag_offset: v,
                endpoint_id,
            }
            | Self::MemFragTx {
                handle,
                frag_len: v,
                endpoint_id,
            } => {
                let (lo, hi) = handle.halves();
                r[1] = lo.into();
                r[2] = hi.into();
                r[3] = v.into();
                r[4] = u64::from(endpoint_id) << 16;
            }
        }
        r
    }
}

const fn pick(is_64: bool, f32: FuncId, f64: FuncId) -> FuncId {
    if is_64 { f64 } else { f32 }
}

#[cfg(test)]
#[path = "interface_tests.rs"]
mod tests;
