//! The FlexServe service protocol: what normal-world clients and the SP put in the payload
//! registers of FF-A direct messages. Both sides use this crate; nothing here is re-declared
//! elsewhere.
//!
//! A message is a run of payload registers, written and read through [`Request`] and
//! [`Response`]:
//!
//! - FFA_MSG_SEND_DIRECT_REQ/RESP (32- or 64-bit): 5 registers, x3-x7 ([`DIRECT_PAYLOAD_REGS`]);
//!   in the 32-bit variant every register carries only 32 bits ([`Width::W32`]).
//! - FFA_MSG_SEND_DIRECT_REQ2/RESP2: 14 registers, x4-x17 ([`DIRECT2_PAYLOAD_REGS`]).
//!
//! Request register 0 is the command word: bits [15:0] the [`Command`] id, the rest must be zero
//! (reserved for flags). Response register 0 is a [`Status`]; on success the command's results
//! follow, on error register 1 carries a detail value (e.g. the offending register index).
//!
//! The service is found by its UUID, [`SERVICE_UUID`]; the manifests under `fvp/` carry the same
//! value (a test checks them).
#![no_std]

pub mod flexmem;
mod memory;
pub mod npu;
mod request;
mod response;
pub mod sealed;
mod serving;
#[cfg(test)]
mod tests;

pub use flexmem::{FlexFault, FlexStats, FlexSwitch, ScrubKind};
pub use memory::{Checksum, MemStats, RegionInfo, RejectReason, pattern_byte, region_flags};
pub use npu::{GEMM_IOVA_BASE, NpuFault, NpuGemmArgs, NpuGemmResult, NpuSwitch, gemm_flags};
pub use request::Request;
pub use response::{Info, Response};
pub use sealed::{DeviceKey, NONCE_LEN, SealedFault, device_root};
pub use serving::{
    GenerateArgs, GenerateResult, IoFault, ModelFault, ModelInfo, PromptFault, Sampling, StopReason,
};

/// The FlexServe service UUID, `9dfe76d4-50b3-45a5-b7b1-cd4264f8f17a`, in RFC 4122 byte order.
pub const SERVICE_UUID: [u8; 16] = [
    0x9d, 0xfe, 0x76, 0xd4, 0x50, 0xb3, 0x45, 0xa5, 0xb7, 0xb1, 0xcd, 0x42, 0x64, 0xf8, 0xf1, 0x7a,
];

/// The UUID as the four `uuid = <..>` cells of an FF-A manifest: the bytes read as little-endian
/// u32 words (the convention of Hafnium's manifest parser and TF-A's ACS manifests).
pub const fn service_uuid_manifest_cells() -> [u32; 4] {
    let b = SERVICE_UUID;
    let mut cells = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        cells[i] = u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        i += 1;
    }
    cells
}

/// Formats [`SERVICE_UUID`] as the canonical lowercase text form into `out`.
pub fn service_uuid_text(out: &mut [u8; 36]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut o = 0;
    for (i, byte) in SERVICE_UUID.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[usize::from(byte >> 4)];
        out[o + 1] = HEX[usize::from(byte & 0xf)];
        o += 2;
    }
    // Only ASCII hex digits and dashes were written.
    core::str::from_utf8(out).unwrap_or("")
}

/// Protocol version this crate speaks: major in bits [31:16], minor in [15:0]. A client accepts
/// an SP with the same major version.
pub const PROTOCOL_VERSION: u32 = 1 << 16;

/// Payload registers of FFA_MSG_SEND_DIRECT_REQ/RESP (x3-x7).
pub const DIRECT_PAYLOAD_REGS: usize = 5;
/// Payload registers of FFA_MSG_SEND_DIRECT_REQ2/RESP2 (x4-x17).
pub const DIRECT2_PAYLOAD_REGS: usize = 14;
/// The largest payload of any transport; callers can size buffers with it.
pub const MAX_PAYLOAD_REGS: usize = DIRECT2_PAYLOAD_REGS;

/// How many bits each payload register carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// SMC32 calls (DIRECT_REQ_32): only the low 32 bits are defined.
    W32,
    /// SMC64 calls (DIRECT_REQ_64, DIRECT_REQ2).
    W64,
}

impl Width {
    fn mask(self) -> u64 {
        match self {
            Width::W32 => u64::from(u32::MAX),
            Width::W64 => u64::MAX,
        }
    }
}

/// Command ids (request register 0, bits [15:0]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Command {
    /// Echo: request `[PING, 0, p...]`, reply `[OK, counter, p...]` where `counter` is the number
    /// of well-formed requests the SP has served, this one included.
    Ping = 1,
    /// Describe the SP: reply `[OK, PROTOCOL_VERSION, build id, capabilities, sp version]`.
    Info = 2,
    /// Retrieve a memory transaction the sender of this request made to the SP, map it and hold
    /// it: request `[MEM_RETRIEVE, handle lo, handle hi, transaction type]` (type 0 = as the
    /// handle says, 1 share, 2 lend, 3 donate), reply `[OK, region, pages, ranges, flags]`
    /// ([`RegionInfo`]).
    MemRetrieve = 0x10,
    /// `[MEM_CHECKSUM, region, offset, len]` -> `[OK, checksum]`: [`Checksum`] (FNV-1a, 32-bit)
    /// of `len` bytes at `offset` in the region.
    MemChecksum = 0x11,
    /// `[MEM_FILL, region, offset, len, pattern]` -> `[OK]`: byte `o` of the region becomes
    /// [`pattern_byte`]`(pattern, o)` for `o` in `offset..offset + len`.
    MemFill = 0x12,
    /// `[MEM_RELEASE, region]` -> `[OK]`: unmap the region (with TLB invalidation) and
    /// relinquish it to the partition manager; the owner may then reclaim it.
    MemRelease = 0x13,
    /// `[MEM_STATS]` -> `[OK, live regions, mapped pages, retrieves, relinquishes]`
    /// ([`MemStats`]): what the SP holds now and has done so far (leak checks).
    MemStats = 0x14,
    /// `[MEM_RELINQUISH_HANDLE, handle lo, handle hi]` -> `[OK]`: FFA_MEM_RELINQUISH for a handle
    /// the SP does *not* hold (a probe of the partition manager's checks, e.g. a relinquish
    /// after release). A handle the SP holds is refused with `Malformed` (use `MemRelease`).
    MemRelinquishHandle = 0x15,
    /// `[MODEL_LOAD, handle lo, handle hi]` -> [`ModelInfo`] (DIRECT_REQ2 only: the reply
    /// needs 8 registers). The SP retrieves the memory transaction `handle` (a LEND or DONATE of
    /// the GGUF file; a SHARE is refused, since its owner could still read and change the
    /// weights), parses the file in place and builds tokenizer, weights and run state (KV cache
    /// for the file's context length). One model at a time.
    ModelLoad = 0x20,
    /// [`GenerateArgs`] -> [`GenerateResult`] (DIRECT_REQ2 only). The prompt is read from the
    /// SHARE'd I/O buffer named by its handle; the output is written back to it ([`io`]).
    Generate = 0x21,
    /// `[MODEL_UNLOAD]` -> `[OK]`: drops the model and relinquishes its memory (the owner may
    /// reclaim it).
    ModelUnload = 0x22,
    /// `[DEVICE_KEY]` -> [`DeviceKey`] (DIRECT_REQ2 only: 9 registers): the device's X25519
    /// recipient key and Ed25519 attestation key, derived from the platform's device secret.
    DeviceKey = 0x23,
    /// `[MODEL_LOAD_SEALED, package lo, package hi, dest lo, dest hi, len lo, len hi]` ->
    /// [`ModelInfo`] (DIRECT_REQ2 only). `package` is a SHARE or LEND whose first `len` bytes
    /// are a sealed package (`sealed/FORMAT.md`;
    /// the SP copies what it reads, so it need not trust the bytes to stay put); `dest` a LEND
    /// of zeroed pages at least the plaintext GGUF's size, which become secure (Flex-Mem where
    /// the platform has a firewall). The SP unwraps the content key, checks the header, copies
    /// each chunk to its place in `dest` and decrypts and verifies it there, then builds the
    /// model from `dest` as `ModelLoad` does. Any failure scrubs `dest` and gives both back.
    /// The package is relinquished once loaded.
    ModelLoadSealed = 0x24,
    /// `[ATTEST, io lo, io hi, nonce (4 registers)]` -> `[OK, report bytes]`: the SP writes an
    /// attestation report (`sealed/FORMAT.md`: device keys, model id, package version, header
    /// hash, the nonce, Ed25519 signature) at offset 0 of the SHARE'd buffer `io`.
    Attest = 0x25,
    /// `[FLEX_SECURE, region, owner, scrub]` -> [`FlexSwitch`]: switch a region the SP holds
    /// (retrieved from a LEND) to secure memory for `owner` (a model id): caches cleaned and
    /// invalidated by VA, a firewall extent programmed over its pages (merged with the owner's
    /// adjacent extents), the SP's mapping made NS=0. `scrub` ([`ScrubKind`]) says what
    /// `FlexRelease` does with the bytes. All or nothing: on error the region is as before.
    FlexSecure = 0x30,
    /// `[FLEX_RELEASE, region]` -> [`FlexSwitch`]: scrub the secured region, clean the caches,
    /// clear its firewall extent, unmap it and relinquish it (the owner may then reclaim
    /// zeroed pages). On error the region stays secured (or, if only the relinquish was
    /// refused, held non-secure and mapped, like `MemRelease`).
    FlexRelease = 0x31,
    /// `[FLEX_STATS]` -> [`FlexStats`] (DIRECT_REQ2 only: the reply needs 12 registers).
    FlexStats = 0x32,
    /// `[FLEX_PROBE, addr lo, addr hi]` -> `[OK, value]`: the SP maps the 8-byte aligned
    /// address of the `flexmem-window` with NS=0 (if it does not hold it already) and loads
    /// from it. A test of the partition manager's secure mapping: on the testbed a page no
    /// firewall region secures answers the poison value and the access is reported. Refused
    /// outside the window and for pages the SP holds non-secure. Not for real hardware, where
    /// the firewall answers such a load with an external abort.
    FlexProbe = 0x33,
    /// `[NPU_ACQUIRE]` -> [`NpuSwitch`]: the normal world has drained its NPU jobs and hands
    /// the NPU over. The SP makes its MMIO secure-only, checks it is idle, confines its DMA
    /// to a secure SMMU stream that maps nothing yet, makes it a secure master, resets and
    /// scrubs it. On error the NPU stays the normal world's.
    NpuAcquire = 0x40,
    /// `[NPU_RELEASE]` -> [`NpuSwitch`]: wait idle, scrub, reset, secure stream to abort, DMA
    /// and MMIO non-secure again.
    NpuRelease = 0x41,
    /// [`NpuGemmArgs`] -> [`NpuGemmResult`] (DIRECT_REQ2 only).
    NpuGemm = 0x42,
    /// Test builds only (SP feature `fault-injection`, capability [`caps::FAULT_INJECTION`]):
    /// `[FAULT, kind]` makes the SP fail on purpose, to test that its failure reaches the
    /// partition manager. Other builds reply `Unsupported`.
    Fault = 0xf000,
}

impl Command {
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            1 => Some(Command::Ping),
            2 => Some(Command::Info),
            0x10 => Some(Command::MemRetrieve),
            0x11 => Some(Command::MemChecksum),
            0x12 => Some(Command::MemFill),
            0x13 => Some(Command::MemRelease),
            0x14 => Some(Command::MemStats),
            0x15 => Some(Command::MemRelinquishHandle),
            0x20 => Some(Command::ModelLoad),
            0x21 => Some(Command::Generate),
            0x22 => Some(Command::ModelUnload),
            0x23 => Some(Command::DeviceKey),
            0x24 => Some(Command::ModelLoadSealed),
            0x25 => Some(Command::Attest),
            0x30 => Some(Command::FlexSecure),
            0x31 => Some(Command::FlexRelease),
            0x32 => Some(Command::FlexStats),
            0x33 => Some(Command::FlexProbe),
            0x40 => Some(Command::NpuAcquire),
            0x41 => Some(Command::NpuRelease),
            0x42 => Some(Command::NpuGemm),
            0xf000 => Some(Command::Fault),
            _ => None,
        }
    }
}

/// How a `fault` request makes the SP fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FaultKind {
    /// A Rust panic (message and location in the log, then FFA_ABORT).
    Panic = 1,
    /// A load from an unmapped address (exception vector, register dump, then FFA_ABORT).
    DataAbort = 2,
    /// Unbounded recursion into the boot stack's guard page (reported from the exception stack).
    StackOverflow = 3,
}

impl FaultKind {
    pub fn from_u64(v: u64) -> Option<Self> {
        match v {
            1 => Some(FaultKind::Panic),
            2 => Some(FaultKind::DataAbort),
            3 => Some(FaultKind::StackOverflow),
            _ => None,
        }
    }
}

/// Capability bits of the `info` reply.
pub mod caps {
    pub const PING: u64 = 1 << 0;
    pub const INFO: u64 = 1 << 1;
    /// The SP accepts DIRECT_REQ2 addressed to [`super::SERVICE_UUID`].
    pub const DIRECT_REQ2: u64 = 1 << 2;
    /// The SP writes its log to FFA_CONSOLE_LOG.
    pub const CONSOLE_LOG: u64 = 1 << 3;
    /// A test build that serves `fault` requests.
    pub const FAULT_INJECTION: u64 = 1 << 4;
    /// The SP retrieves and serves FF-A memory transactions (the `Mem*` commands).
    pub const MEMORY: u64 = 1 << 5;
    /// The SP serves models (`ModelLoad`, `Generate`, `ModelUnload`).
    pub const SERVING: u64 = 1 << 6;
    /// The SP drives a memory firewall and serves the `Flex*` commands.
    pub const FLEXMEM: u64 = 1 << 7;
    /// The SP has a device key and loads sealed packages (`DeviceKey`, `ModelLoadSealed`,
    /// `Attest`).
    pub const SEALED: u64 = 1 << 8;
    /// The SP also loads plaintext GGUF files (`ModelLoad`): test builds only (feature
    /// `plaintext-models`).
    pub const PLAINTEXT_MODELS: u64 = 1 << 9;
    /// The SP drives an NPU it can take over (`NpuAcquire`, `NpuRelease`, `NpuGemm`).
    pub const FLEX_NPU: u64 = 1 << 10;
}

/// The I/O buffer of `Generate`: input at offset 0, the prompt (`prompt_len` UTF-8 bytes); on
/// success the SP overwrites it with the output: the generated token ids as little-endian u32
/// at [`io::IDS_OFFSET`], then the generated text (UTF-8, `text_len` bytes) right after the ids,
/// at [`io::text_offset`]`(generated)`. Text that does not fit is cut at a character boundary.
pub mod io {
    pub const IDS_OFFSET: usize = 0;
    /// The largest prompt the SP takes, in bytes.
    pub const MAX_PROMPT_BYTES: u32 = 16 * 1024;

    pub const fn text_offset(generated: u32) -> usize {
        IDS_OFFSET + 4 * generated as usize
    }
}

/// Kernel paths of the SP's runtime, as [`ModelInfo`] reports them.
pub mod kernel_path {
    pub const SCALAR: u8 = 0;
    pub const NEON: u8 = 1;
    pub const SDOT: u8 = 2;
    pub const SMMLA: u8 = 3;
    pub const AVX2: u8 = 4;
    pub const AVX512VNNI: u8 = 5;

    pub fn name(code: u8) -> &'static str {
        match code {
            SCALAR => "scalar",
            NEON => "neon",
            SDOT => "sdot",
            SMMLA => "smmla",
            AVX2 => "avx2",
            AVX512VNNI => "avx512vnni",
            _ => "unknown",
        }
    }
}

/// Reply status (response register 0). Errors say what was wrong with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    /// The command id is not one this SP knows; detail = the id.
    UnknownCommand = 1,
    /// A reserved field was not zero or an argument was out of range; detail = the register
    /// index.
    Malformed = 2,
    /// The payload had fewer registers than the command needs; detail = the count.
    TooShort = 3,
    /// DIRECT_REQ2 was addressed to a UUID this SP does not serve.
    UnknownService = 4,
    /// The command exists but not over this transport or in this build.
    Unsupported = 5,
    /// The SP failed for a reason of its own (not the client's).
    Internal = 6,
    /// No region with this id is held; detail = the id.
    NoSuchRegion = 7,
    /// offset + len lies outside the region; detail = the register index of `len`.
    OutOfBounds = 8,
    /// The partition manager refused an FF-A call the command needed; detail = the FF-A error
    /// code as a 32-bit two's complement value (e.g. 0xfffffffe = INVALID_PARAMETERS).
    FfaError = 9,
    /// The SP refused the memory it was handed; detail = a [`RejectReason`].
    RegionRejected = 10,
    /// The SP holds as many regions as it can; detail = that number.
    NoRoom = 11,
    /// `Generate` or `ModelUnload` with no model loaded.
    NoModel = 12,
    /// `ModelLoad` while a model is loaded.
    ModelLoaded = 13,
    /// The SP refused the model file (and gave its memory back); detail = a [`ModelFault`].
    BadModel = 14,
    /// The model's run state would not fit the SP's heap; detail = the bytes it needs.
    NoMemory = 15,
    /// detail = a [`PromptFault`].
    BadPrompt = 16,
    /// Prompt tokens + `max_tokens` exceed the context; detail = the context length.
    ContextFull = 17,
    /// detail = an [`IoFault`].
    BadIoBuffer = 18,
    /// The region holds the loaded model; detail = the region id.
    InUse = 19,
    /// A Flex-Mem command was refused; detail = a [`FlexFault`].
    FlexMem = 20,
    /// A sealed package or attestation was refused: detail [`SealedFault::detail`].
    Sealed = 21,
    /// A Flex-NPU command was refused; detail = an [`NpuFault`].
    Npu = 22,
}

impl Status {
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::UnknownCommand,
            2 => Status::Malformed,
            3 => Status::TooShort,
            4 => Status::UnknownService,
            5 => Status::Unsupported,
            6 => Status::Internal,
            7 => Status::NoSuchRegion,
            8 => Status::OutOfBounds,
            9 => Status::FfaError,
            10 => Status::RegionRejected,
            11 => Status::NoRoom,
            12 => Status::NoModel,
            13 => Status::ModelLoaded,
            14 => Status::BadModel,
            15 => Status::NoMemory,
            16 => Status::BadPrompt,
            17 => Status::ContextFull,
            18 => Status::BadIoBuffer,
            19 => Status::InUse,
            20 => Status::FlexMem,
            21 => Status::Sealed,
            22 => Status::Npu,
            _ => return None,
        })
    }
}

/// Why a request could not be served; carried back as status + detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    UnknownCommand(u16),
    /// Register `index` held a value the command does not allow.
    Malformed {
        index: usize,
    },
    TooShort {
        regs: usize,
    },
    UnknownService,
    Unsupported(Command),
    Internal,
    NoSuchRegion(u32),
    /// The range given by registers `index - 1` (offset) and `index` (len) is out of bounds.
    OutOfBounds {
        index: usize,
    },
    /// The FF-A error code the partition manager returned (negative, as in the spec).
    Ffa(i32),
    RegionRejected(RejectReason),
    NoRoom(u32),
    NoModel,
    ModelLoaded,
    BadModel(ModelFault),
    /// Heap bytes the model needs.
    NoMemory(u64),
    BadPrompt(PromptFault),
    /// The context length.
    ContextFull(u32),
    BadIoBuffer(IoFault),
    /// The model's region.
    InUse(u32),
    FlexMem(FlexFault),
    Sealed {
        fault: SealedFault,
        /// The chunk at fault (0 where none is).
        chunk: u32,
    },
    Npu(NpuFault),
}

impl ProtoError {
    pub fn status(&self) -> Status {
        match self {
            ProtoError::UnknownCommand(_) => Status::UnknownCommand,
            ProtoError::Malformed { .. } => Status::Malformed,
            ProtoError::TooShort { .. } => Status::TooShort,
            ProtoError::UnknownService => Status::UnknownService,
            ProtoError::Unsupported(_) => Status::Unsupported,
            ProtoError::Internal => Status::Internal,
            ProtoError::NoSuchRegion(_) => Status::NoSuchRegion,
            ProtoError::OutOfBounds { .. } => Status::OutOfBounds,
            ProtoError::Ffa(_) => Status::FfaError,
            ProtoError::RegionRejected(_) => Status::RegionRejected,
            ProtoError::NoRoom(_) => Status::NoRoom,
            ProtoError::NoModel => Status::NoModel,
            ProtoError::ModelLoaded => Status::ModelLoaded,
            ProtoError::BadModel(_) => Status::BadModel,
            ProtoError::NoMemory(_) => Status::NoMemory,
            ProtoError::BadPrompt(_) => Status::BadPrompt,
            ProtoError::ContextFull(_) => Status::ContextFull,
            ProtoError::BadIoBuffer(_) => Status::BadIoBuffer,
            ProtoError::InUse(_) => Status::InUse,
            ProtoError::FlexMem(_) => Status::FlexMem,
            ProtoError::Sealed { .. } => Status::Sealed,
            ProtoError::Npu(_) => Status::Npu,
        }
    }

    pub fn detail(&self) -> u64 {
        match *self {
            ProtoError::UnknownCommand(id) => u64::from(id),
            ProtoError::Malformed { index } => index as u64,
            ProtoError::TooShort { regs } => regs as u64,
            ProtoError::Unsupported(c) => c as u64,
            ProtoError::UnknownService
            | ProtoError::Internal
            | ProtoError::NoModel
            | ProtoError::ModelLoaded => 0,
            ProtoError::BadModel(f) => f as u64,
            ProtoError::NoMemory(b) => b,
            ProtoError::BadPrompt(f) => f as u64,
            ProtoError::ContextFull(c) | ProtoError::InUse(c) => u64::from(c),
            ProtoError::BadIoBuffer(f) => f as u64,
            ProtoError::NoSuchRegion(r) | ProtoError::NoRoom(r) => u64::from(r),
            ProtoError::OutOfBounds { index } => index as u64,
            ProtoError::Ffa(code) => u64::from(code as u32),
            ProtoError::RegionRejected(r) => r as u64,
            ProtoError::FlexMem(f) => f as u64,
            ProtoError::Sealed { fault, chunk } => fault.detail(chunk),
            ProtoError::Npu(f) => f as u64,
        }
    }
}

/// Why a message could not be written into or read from registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output has `have` registers, the message needs `need`.
    NoRoom { need: usize, have: usize },
    /// Register `index` needs more bits than the transport's width.
    TooWide { index: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    TooShort {
        regs: usize,
    },
    /// The status word is not a known [`Status`].
    BadStatus(u64),
}
