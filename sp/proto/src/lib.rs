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
pub mod npu;
pub mod sealed;

pub use flexmem::{FlexFault, FlexStats, FlexSwitch, ScrubKind};
pub use npu::{NpuFault, NpuGemmArgs, NpuGemmResult, NpuSwitch, gemm_flags};
pub use sealed::{DeviceKey, NONCE_LEN, SealedFault, device_root};

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

/// Why the SP refused a model (`BadModel` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ModelFault {
    /// The memory was SHARE'd: its owner could still read and change it.
    NotLent = 1,
    /// The region's ranges are not one contiguous run of pages.
    NotContiguous = 2,
    /// The GGUF container does not parse.
    Gguf = 3,
    /// Hyperparameters or tensors are missing, inconsistent or unsupported.
    Model = 4,
    /// The vocabulary does not make a tokenizer.
    Tokenizer = 5,
    /// More tensors or metadata entries than the SP indexes.
    TooManyEntries = 6,
}

/// Why the SP refused a prompt (`BadPrompt` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PromptFault {
    Empty = 1,
    /// Longer than the I/O buffer or than [`io::MAX_PROMPT_BYTES`].
    TooLong = 2,
    NotUtf8 = 3,
}

/// Why the SP refused an I/O buffer (`BadIoBuffer` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum IoFault {
    /// Not a SHARE (a lent or donated buffer would hide the output from its owner).
    NotShared = 1,
    /// The SP may not write it.
    ReadOnly = 2,
    /// The token ids of `max_tokens` would not fit.
    TooSmall = 3,
}

/// `ModelLoad` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub n_layers: u32,
    pub dim: u32,
    pub vocab: u32,
    /// Context length (KV-cache positions).
    pub context: u32,
    /// [`kernel_path`] codes for decode (matrix-vector) and prefill (matrix-matrix).
    pub matvec_path: u8,
    pub matmul_path: u8,
    /// The SP's region id of the model's memory (refused by `MemRelease`/`MemFill` while
    /// loaded).
    pub region: u32,
    /// Heap bytes the run state (KV cache, activations) and tokenizer took.
    pub heap_bytes: u64,
}

/// Sampling settings of `Generate`. `temperature == 0` is greedy.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub temperature: f32,
    /// 0 = no limit.
    pub top_k: u32,
    /// In (0, 1]; 1 = no limit.
    pub top_p: f32,
    pub seed: u64,
}

impl Sampling {
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
    };
}

// Compared by bits, so equality is reflexive (decoded values are never NaN anyway).
impl PartialEq for Sampling {
    fn eq(&self, o: &Self) -> bool {
        self.temperature.to_bits() == o.temperature.to_bits()
            && self.top_k == o.top_k
            && self.top_p.to_bits() == o.top_p.to_bits()
            && self.seed == o.seed
    }
}

impl Eq for Sampling {}

/// `Generate` request: `[GENERATE, io handle lo, io handle hi, prompt_len, max_tokens,
/// temperature (f32 bits), top_k, top_p (f32 bits), seed lo, seed hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateArgs {
    pub io_handle: u64,
    pub prompt_len: u32,
    /// New tokens at most (>= 1).
    pub max_tokens: u32,
    pub sampling: Sampling,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StopReason {
    /// `max_tokens` were generated.
    MaxTokens = 1,
    /// The model produced an end-of-generation token (not included in the output).
    EndOfText = 2,
}

/// `Generate` reply: `[OK, prompt tokens, generated, text_len, stop, prefill ticks, decode
/// ticks, counter Hz]`. Ticks are of the SP's physical counter (CNTPCT_EL0) at `counter_hz`
/// (CNTFRQ_EL0); prefill includes sampling the first token (time to first token inside the SP),
/// decode covers the remaining tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateResult {
    pub prompt_tokens: u32,
    pub generated: u32,
    pub text_len: u32,
    pub stop: StopReason,
    pub prefill_ticks: u64,
    pub decode_ticks: u64,
    pub counter_hz: u64,
}

/// The checksum `MemChecksum` replies with: 32-bit FNV-1a over the bytes, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum(u32);

impl Checksum {
    pub const fn new() -> Self {
        Checksum(0x811c_9dc5)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }

    pub const fn value(self) -> u32 {
        self.0
    }

    pub fn of(bytes: &[u8]) -> u32 {
        let mut c = Self::new();
        c.update(bytes);
        c.value()
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

/// The byte `MemFill` writes at region offset `offset`: the pattern's little-endian bytes in
/// turn, plus the word index, so a byte written at the wrong place shows.
pub const fn pattern_byte(pattern: u32, offset: u32) -> u8 {
    pattern.to_le_bytes()[(offset % 4) as usize].wrapping_add((offset / 4) as u8)
}

/// Flag bits of [`RegionInfo::flags`].
pub mod region_flags {
    /// The SP maps the region non-secure (the retrieve response's NS attribute).
    pub const NS: u32 = 1 << 0;
    /// The SP may write the region.
    pub const WRITABLE: u32 = 1 << 1;
    /// Bits [3:2]: the transaction type (1 share, 2 lend, 3 donate).
    pub const TYPE_SHIFT: u32 = 2;
    pub const TYPE_MASK: u32 = 3 << TYPE_SHIFT;
}

/// The `MemRetrieve` reply: the SP's name for the region and what it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// The SP's region id (never 0), used by the other `Mem*` commands.
    pub region: u32,
    pub pages: u32,
    pub ranges: u32,
    /// [`region_flags`] bits.
    pub flags: u32,
}

/// The `MemStats` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStats {
    /// Regions retrieved and not yet released.
    pub live_regions: u32,
    /// Pages the SP's stage-1 maps beyond its own memory, counted by walking the page table
    /// (not from the region table, so the two can be compared).
    pub mapped_pages: u32,
    /// Successful retrieves and relinquishes since start-up (wrapping).
    pub retrieves: u32,
    pub relinquishes: u32,
}

/// Why the SP refused a region the partition manager handed it (`RegionRejected` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RejectReason {
    /// The retrieve response does not parse or does not describe the requested transaction.
    BadDescriptor = 1,
    /// The memory type or cacheability is one the SP does not map (device, non-cacheable).
    UnsupportedAttributes = 2,
    /// A range overlaps the SP's own memory or a region it already holds.
    Overlap = 3,
    /// More pages or ranges than the SP accepts in one region.
    TooLarge = 4,
    /// The page-table layer refused to map a range.
    MapFailed = 5,
    /// The data access granted is not read or read-write.
    NoAccess = 6,
}

impl RejectReason {
    pub fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::BadDescriptor,
            2 => Self::UnsupportedAttributes,
            3 => Self::Overlap,
            4 => Self::TooLarge,
            5 => Self::MapFailed,
            6 => Self::NoAccess,
            _ => return None,
        })
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

/// A decoded request. `Ping` borrows the echo payload from the input registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Ping {
        payload: &'a [u64],
    },
    Info,
    Fault {
        kind: FaultKind,
    },
    MemRetrieve {
        handle: u64,
        tx_type: u8,
    },
    MemChecksum {
        region: u32,
        offset: u32,
        len: u32,
    },
    MemFill {
        region: u32,
        offset: u32,
        len: u32,
        pattern: u32,
    },
    MemRelease {
        region: u32,
    },
    MemStats,
    MemRelinquishHandle {
        handle: u64,
    },
    ModelLoad {
        handle: u64,
    },
    DeviceKey,
    ModelLoadSealed {
        package: u64,
        dest: u64,
        /// The package's length in bytes (the region is whole pages).
        len: u64,
    },
    Attest {
        io_handle: u64,
        nonce: [u8; NONCE_LEN],
    },
    Generate(GenerateArgs),
    ModelUnload,
    FlexSecure {
        region: u32,
        owner: u32,
        scrub: ScrubKind,
    },
    FlexRelease {
        region: u32,
    },
    FlexStats,
    FlexProbe {
        addr: u64,
    },
    NpuAcquire,
    NpuRelease,
    NpuGemm(NpuGemmArgs),
}

/// Register `i` as a 32-bit argument: missing registers read as 0, wider values are malformed.
fn arg32(regs: &[u64], i: usize, width: Width) -> Result<u32, ProtoError> {
    let v = regs.get(i).map_or(0, |r| r & width.mask());
    u32::try_from(v).map_err(|_| ProtoError::Malformed { index: i })
}

/// Registers from `from` on must be zero.
fn rest_zero(regs: &[u64], from: usize, width: Width) -> Result<(), ProtoError> {
    match regs.iter().skip(from).position(|r| r & width.mask() != 0) {
        Some(i) => Err(ProtoError::Malformed { index: from + i }),
        None => Ok(()),
    }
}

fn handle_arg(regs: &[u64], width: Width) -> Result<u64, ProtoError> {
    let lo = arg32(regs, 1, width)?;
    let hi = arg32(regs, 2, width)?;
    Ok(u64::from(hi) << 32 | u64::from(lo))
}

const CMD_ID_MASK: u64 = 0xffff;

impl<'a> Request<'a> {
    /// Parses request registers. Bits above `width` are ignored (undefined for SMC32); every other
    /// deviation is an error, never a panic.
    pub fn decode(regs: &'a [u64], width: Width) -> Result<Self, ProtoError> {
        let word = *regs.first().ok_or(ProtoError::TooShort { regs: 0 })? & width.mask();
        if word & !CMD_ID_MASK != 0 {
            return Err(ProtoError::Malformed { index: 0 });
        }
        let id = (word & CMD_ID_MASK) as u16;
        match Command::from_id(id).ok_or(ProtoError::UnknownCommand(id))? {
            Command::Ping => {
                if regs.len() < 2 {
                    return Err(ProtoError::TooShort { regs: regs.len() });
                }
                if regs[1] & width.mask() != 0 {
                    return Err(ProtoError::Malformed { index: 1 });
                }
                Ok(Request::Ping {
                    payload: &regs[2..],
                })
            }
            Command::Info => {
                if let Some(i) = regs[1..].iter().position(|r| r & width.mask() != 0) {
                    return Err(ProtoError::Malformed { index: i + 1 });
                }
                Ok(Request::Info)
            }
            Command::Fault => {
                let kind = regs
                    .get(1)
                    .and_then(|k| FaultKind::from_u64(k & width.mask()))
                    .ok_or(ProtoError::Malformed { index: 1 })?;
                if let Some(i) = regs[2..].iter().position(|r| r & width.mask() != 0) {
                    return Err(ProtoError::Malformed { index: i + 2 });
                }
                Ok(Request::Fault { kind })
            }
            Command::MemRetrieve => {
                let handle = handle_arg(regs, width)?;
                let tx_type = arg32(regs, 3, width)?;
                if tx_type > 3 {
                    return Err(ProtoError::Malformed { index: 3 });
                }
                rest_zero(regs, 4, width)?;
                Ok(Request::MemRetrieve {
                    handle,
                    tx_type: tx_type as u8,
                })
            }
            Command::MemChecksum => {
                let r = Request::MemChecksum {
                    region: arg32(regs, 1, width)?,
                    offset: arg32(regs, 2, width)?,
                    len: arg32(regs, 3, width)?,
                };
                rest_zero(regs, 4, width)?;
                Ok(r)
            }
            Command::MemFill => {
                let r = Request::MemFill {
                    region: arg32(regs, 1, width)?,
                    offset: arg32(regs, 2, width)?,
                    len: arg32(regs, 3, width)?,
                    pattern: arg32(regs, 4, width)?,
                };
                rest_zero(regs, 5, width)?;
                Ok(r)
            }
            Command::MemRelease => {
                let region = arg32(regs, 1, width)?;
                rest_zero(regs, 2, width)?;
                Ok(Request::MemRelease { region })
            }
            Command::MemStats => {
                rest_zero(regs, 1, width)?;
                Ok(Request::MemStats)
            }
            Command::MemRelinquishHandle => {
                let handle = handle_arg(regs, width)?;
                rest_zero(regs, 3, width)?;
                Ok(Request::MemRelinquishHandle { handle })
            }
            Command::ModelLoad => {
                let handle = handle_arg(regs, width)?;
                rest_zero(regs, 3, width)?;
                Ok(Request::ModelLoad { handle })
            }
            Command::ModelUnload => {
                rest_zero(regs, 1, width)?;
                Ok(Request::ModelUnload)
            }
            Command::DeviceKey => {
                rest_zero(regs, 1, width)?;
                Ok(Request::DeviceKey)
            }
            Command::ModelLoadSealed => {
                let package = handle_arg(regs, width)?;
                let dest =
                    u64::from(arg32(regs, 4, width)?) << 32 | u64::from(arg32(regs, 3, width)?);
                let len =
                    u64::from(arg32(regs, 6, width)?) << 32 | u64::from(arg32(regs, 5, width)?);
                rest_zero(regs, 7, width)?;
                Ok(Request::ModelLoadSealed { package, dest, len })
            }
            Command::Attest => {
                let io_handle = handle_arg(regs, width)?;
                // The nonce needs 64-bit registers.
                if width != Width::W64 {
                    return Err(ProtoError::Malformed { index: 3 });
                }
                let mut n = [0u64; 4];
                for (i, w) in n.iter_mut().enumerate() {
                    *w = *regs
                        .get(3 + i)
                        .ok_or(ProtoError::TooShort { regs: regs.len() })?;
                }
                rest_zero(regs, 7, width)?;
                Ok(Request::Attest {
                    io_handle,
                    nonce: sealed::nonce_from_regs(&n),
                })
            }
            Command::FlexSecure => {
                let region = arg32(regs, 1, width)?;
                let owner = arg32(regs, 2, width)?;
                let scrub = ScrubKind::from_u64(u64::from(arg32(regs, 3, width)?))
                    .ok_or(ProtoError::Malformed { index: 3 })?;
                rest_zero(regs, 4, width)?;
                Ok(Request::FlexSecure {
                    region,
                    owner,
                    scrub,
                })
            }
            Command::FlexRelease => {
                let region = arg32(regs, 1, width)?;
                rest_zero(regs, 2, width)?;
                Ok(Request::FlexRelease { region })
            }
            Command::FlexStats => {
                rest_zero(regs, 1, width)?;
                Ok(Request::FlexStats)
            }
            Command::FlexProbe => {
                let addr = handle_arg(regs, width)?;
                if !addr.is_multiple_of(8) {
                    return Err(ProtoError::Malformed { index: 1 });
                }
                rest_zero(regs, 3, width)?;
                Ok(Request::FlexProbe { addr })
            }
            Command::NpuAcquire => {
                rest_zero(regs, 1, width)?;
                Ok(Request::NpuAcquire)
            }
            Command::NpuRelease => {
                rest_zero(regs, 1, width)?;
                Ok(Request::NpuRelease)
            }
            Command::NpuGemm => {
                let a = NpuGemmArgs {
                    region: arg32(regs, 1, width)?,
                    m: arg32(regs, 2, width)?,
                    n: arg32(regs, 3, width)?,
                    k: arg32(regs, 4, width)?,
                    seed: arg32(regs, 5, width)?,
                    flags: arg32(regs, 6, width)?,
                };
                if a.flags & !gemm_flags::OUTSIDE_STE != 0 {
                    return Err(ProtoError::Malformed { index: 6 });
                }
                rest_zero(regs, 7, width)?;
                Ok(Request::NpuGemm(a))
            }
            Command::Generate => {
                let io_handle = handle_arg(regs, width)?;
                let prompt_len = arg32(regs, 3, width)?;
                let max_tokens = arg32(regs, 4, width)?;
                if max_tokens == 0 {
                    return Err(ProtoError::Malformed { index: 4 });
                }
                let temperature = f32::from_bits(arg32(regs, 5, width)?);
                if !(temperature.is_finite() && temperature >= 0.0) {
                    return Err(ProtoError::Malformed { index: 5 });
                }
                let top_k = arg32(regs, 6, width)?;
                let top_p = f32::from_bits(arg32(regs, 7, width)?);
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(ProtoError::Malformed { index: 7 });
                }
                let seed =
                    u64::from(arg32(regs, 9, width)?) << 32 | u64::from(arg32(regs, 8, width)?);
                rest_zero(regs, 10, width)?;
                Ok(Request::Generate(GenerateArgs {
                    io_handle,
                    prompt_len,
                    max_tokens,
                    sampling: Sampling {
                        temperature,
                        top_k,
                        top_p,
                        seed,
                    },
                }))
            }
        }
    }

    /// Writes the request into `out` (all of it: unused registers are zeroed).
    pub fn encode(&self, out: &mut [u64], width: Width) -> Result<(), EncodeError> {
        let need = match self {
            Request::Ping { payload } => 2 + payload.len(),
            Request::Info => 1,
            Request::Fault { .. } => 2,
            Request::MemRetrieve { .. } => 4,
            Request::MemChecksum { .. } => 4,
            Request::MemFill { .. } => 5,
            Request::MemRelease { .. } => 2,
            Request::MemStats => 1,
            Request::MemRelinquishHandle { .. } => 3,
            Request::ModelLoad { .. } => 3,
            Request::DeviceKey => 1,
            Request::ModelLoadSealed { .. } => 7,
            Request::Attest { .. } => 7,
            Request::Generate(_) => 10,
            Request::ModelUnload => 1,
            Request::FlexSecure { .. } => 4,
            Request::FlexRelease { .. } => 2,
            Request::FlexStats => 1,
            Request::FlexProbe { .. } => 3,
            Request::NpuAcquire | Request::NpuRelease => 1,
            Request::NpuGemm(_) => 7,
        };
        if out.len() < need {
            return Err(EncodeError::NoRoom {
                need,
                have: out.len(),
            });
        }
        out.fill(0);
        match self {
            Request::Ping { payload } => {
                out[0] = Command::Ping as u64;
                out[2..need].copy_from_slice(payload);
            }
            Request::Info => out[0] = Command::Info as u64,
            Request::Fault { kind } => {
                out[0] = Command::Fault as u64;
                out[1] = *kind as u64;
            }
            Request::MemRetrieve { handle, tx_type } => {
                out[..4].copy_from_slice(&[
                    Command::MemRetrieve as u64,
                    handle & 0xffff_ffff,
                    handle >> 32,
                    u64::from(*tx_type),
                ]);
            }
            Request::MemChecksum {
                region,
                offset,
                len,
            } => {
                out[..4].copy_from_slice(&[
                    Command::MemChecksum as u64,
                    u64::from(*region),
                    u64::from(*offset),
                    u64::from(*len),
                ]);
            }
            Request::MemFill {
                region,
                offset,
                len,
                pattern,
            } => {
                out[..5].copy_from_slice(&[
                    Command::MemFill as u64,
                    u64::from(*region),
                    u64::from(*offset),
                    u64::from(*len),
                    u64::from(*pattern),
                ]);
            }
            Request::MemRelease { region } => {
                out[..2].copy_from_slice(&[Command::MemRelease as u64, u64::from(*region)]);
            }
            Request::MemStats => out[0] = Command::MemStats as u64,
            Request::MemRelinquishHandle { handle } => {
                out[..3].copy_from_slice(&[
                    Command::MemRelinquishHandle as u64,
                    handle & 0xffff_ffff,
                    handle >> 32,
                ]);
            }
            Request::ModelLoad { handle } => {
                out[..3].copy_from_slice(&[
                    Command::ModelLoad as u64,
                    handle & 0xffff_ffff,
                    handle >> 32,
                ]);
            }
            Request::Generate(a) => {
                out[..10].copy_from_slice(&[
                    Command::Generate as u64,
                    a.io_handle & 0xffff_ffff,
                    a.io_handle >> 32,
                    u64::from(a.prompt_len),
                    u64::from(a.max_tokens),
                    u64::from(a.sampling.temperature.to_bits()),
                    u64::from(a.sampling.top_k),
                    u64::from(a.sampling.top_p.to_bits()),
                    a.sampling.seed & 0xffff_ffff,
                    a.sampling.seed >> 32,
                ]);
            }
            Request::ModelUnload => out[0] = Command::ModelUnload as u64,
            Request::DeviceKey => out[0] = Command::DeviceKey as u64,
            Request::ModelLoadSealed { package, dest, len } => {
                out[..7].copy_from_slice(&[
                    Command::ModelLoadSealed as u64,
                    package & 0xffff_ffff,
                    package >> 32,
                    dest & 0xffff_ffff,
                    dest >> 32,
                    len & 0xffff_ffff,
                    len >> 32,
                ]);
            }
            Request::Attest { io_handle, nonce } => {
                out[0] = Command::Attest as u64;
                out[1] = io_handle & 0xffff_ffff;
                out[2] = io_handle >> 32;
                out[3..7].copy_from_slice(&sealed::nonce_to_regs(nonce));
            }
            Request::FlexSecure {
                region,
                owner,
                scrub,
            } => {
                out[..4].copy_from_slice(&[
                    Command::FlexSecure as u64,
                    u64::from(*region),
                    u64::from(*owner),
                    *scrub as u64,
                ]);
            }
            Request::FlexRelease { region } => {
                out[..2].copy_from_slice(&[Command::FlexRelease as u64, u64::from(*region)]);
            }
            Request::FlexStats => out[0] = Command::FlexStats as u64,
            Request::FlexProbe { addr } => {
                out[..3].copy_from_slice(&[
                    Command::FlexProbe as u64,
                    addr & 0xffff_ffff,
                    addr >> 32,
                ]);
            }
            Request::NpuAcquire => out[0] = Command::NpuAcquire as u64,
            Request::NpuRelease => out[0] = Command::NpuRelease as u64,
            Request::NpuGemm(a) => {
                out[..7].copy_from_slice(&[
                    Command::NpuGemm as u64,
                    u64::from(a.region),
                    u64::from(a.m),
                    u64::from(a.n),
                    u64::from(a.k),
                    u64::from(a.seed),
                    u64::from(a.flags),
                ]);
            }
        }
        check_width(out, width)
    }
}

fn check_width(regs: &[u64], width: Width) -> Result<(), EncodeError> {
    match regs.iter().position(|r| r & !width.mask() != 0) {
        Some(index) => Err(EncodeError::TooWide { index }),
        None => Ok(()),
    }
}

/// The `info` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub protocol_version: u32,
    /// Identifies the SP build (e.g. the commit); opaque to clients.
    pub build_id: u32,
    /// [`caps`] bits.
    pub capabilities: u64,
    /// The SP crate version, major << 16 | minor << 8 | patch.
    pub sp_version: u32,
}

/// A decoded response. `Ping` borrows its echo from the registers it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    Ping {
        counter: u64,
        payload: &'a [u64],
    },
    Info(Info),
    MemRegion(RegionInfo),
    Checksum(u32),
    MemStats(MemStats),
    Model(ModelInfo),
    Generated(GenerateResult),
    FlexSwitched(FlexSwitch),
    FlexStats(FlexStats),
    /// The value a `FlexProbe` load returned.
    Probed(u64),
    DeviceKey(DeviceKey),
    /// `Attest`: the report's length in the I/O buffer.
    Attested(u32),
    NpuSwitched(NpuSwitch),
    NpuGemm(NpuGemmResult),
    /// A command that succeeded without results (`MemFill`, `MemRelease`,
    /// `MemRelinquishHandle`, `ModelUnload`).
    Done,
    Error {
        status: Status,
        detail: u64,
    },
}

impl<'a> Response<'a> {
    pub fn error(e: ProtoError) -> Self {
        Response::Error {
            status: e.status(),
            detail: e.detail(),
        }
    }

    /// Writes the response into `out`, zeroing unused registers. In a 32-bit transport, values
    /// wider than 32 bits are truncated only where the protocol says so (the ping counter and
    /// echo);
    /// anything else too wide is an error.
    pub fn encode(&self, out: &mut [u64], width: Width) -> Result<(), EncodeError> {
        let need = match self {
            Response::Ping { payload, .. } => 2 + payload.len(),
            Response::Info(_) | Response::MemRegion(_) | Response::MemStats(_) => 5,
            Response::Model(_) | Response::Generated(_) => 8,
            Response::Checksum(_) | Response::Probed(_) | Response::Attested(_) => 2,
            Response::DeviceKey(_) => 1 + DeviceKey::REGS,
            Response::FlexSwitched(_) => 5,
            Response::FlexStats(_) => FlexStats::REGS,
            Response::NpuSwitched(_) => 4,
            Response::NpuGemm(_) => 1 + NpuGemmResult::REGS,
            Response::Done => 1,
            Response::Error { .. } => 2,
        };
        if out.len() < need {
            return Err(EncodeError::NoRoom {
                need,
                have: out.len(),
            });
        }
        out.fill(0);
        match *self {
            Response::Ping { counter, payload } => {
                out[1] = counter & width.mask();
                // The echo is of the message: bits a 32-bit request left undefined go too.
                for (o, p) in out[2..need].iter_mut().zip(payload) {
                    *o = p & width.mask();
                }
            }
            Response::Info(i) => {
                out[1] = u64::from(i.protocol_version);
                out[2] = u64::from(i.build_id);
                out[3] = i.capabilities & width.mask();
                out[4] = u64::from(i.sp_version);
            }
            Response::MemRegion(r) => {
                out[1..5].copy_from_slice(&[r.region, r.pages, r.ranges, r.flags].map(u64::from));
            }
            Response::Checksum(c) => out[1] = u64::from(c),
            Response::MemStats(s) => {
                out[1..5].copy_from_slice(
                    &[s.live_regions, s.mapped_pages, s.retrieves, s.relinquishes].map(u64::from),
                );
            }
            Response::Model(m) => {
                out[1..8].copy_from_slice(&[
                    u64::from(m.n_layers),
                    u64::from(m.dim),
                    u64::from(m.vocab),
                    u64::from(m.context),
                    u64::from(m.matvec_path) | u64::from(m.matmul_path) << 8,
                    u64::from(m.region),
                    m.heap_bytes,
                ]);
            }
            Response::Generated(g) => {
                out[1..8].copy_from_slice(&[
                    u64::from(g.prompt_tokens),
                    u64::from(g.generated),
                    u64::from(g.text_len),
                    g.stop as u64,
                    g.prefill_ticks,
                    g.decode_ticks,
                    g.counter_hz,
                ]);
            }
            Response::FlexSwitched(f) => {
                out[1..5].copy_from_slice(&[
                    u64::from(f.pages),
                    u64::from(f.owner_extents),
                    u64::from(f.regions_used),
                    f.ticks,
                ]);
            }
            Response::FlexStats(f) => out[1..FlexStats::REGS].copy_from_slice(&f.to_regs()),
            Response::Probed(v) => out[1] = v,
            Response::DeviceKey(k) => out[1..1 + DeviceKey::REGS].copy_from_slice(&k.to_regs()),
            Response::Attested(n) => out[1] = u64::from(n),
            Response::NpuSwitched(s) => out[1..4].copy_from_slice(&[s.ticks, s.switches, s.jobs]),
            Response::NpuGemm(g) => out[1..1 + NpuGemmResult::REGS].copy_from_slice(&g.to_regs()),
            Response::Done => {}
            Response::Error { status, detail } => {
                out[0] = status as u64;
                out[1] = detail & width.mask();
            }
        }
        check_width(out, width)
    }

    /// Parses a response to `cmd`. Bits above `width` are ignored.
    pub fn decode(regs: &'a [u64], width: Width, cmd: Command) -> Result<Self, DecodeError> {
        let too_short = DecodeError::TooShort { regs: regs.len() };
        let word = *regs.first().ok_or(too_short)? & width.mask();
        let status = Status::from_code(word).ok_or(DecodeError::BadStatus(word))?;
        let reg = |i: usize| regs.get(i).map(|r| r & width.mask()).ok_or(too_short);
        if status != Status::Ok {
            return Ok(Response::Error {
                status,
                detail: reg(1)?,
            });
        }
        match cmd {
            Command::Ping => Ok(Response::Ping {
                counter: reg(1)?,
                payload: &regs[2..],
            }),
            Command::Info => Ok(Response::Info(Info {
                protocol_version: reg(1)? as u32,
                build_id: reg(2)? as u32,
                capabilities: reg(3)?,
                sp_version: reg(4)? as u32,
            })),
            // A fault request never gets a successful reply.
            Command::Fault => Err(DecodeError::BadStatus(word)),
            Command::MemRetrieve => Ok(Response::MemRegion(RegionInfo {
                region: reg(1)? as u32,
                pages: reg(2)? as u32,
                ranges: reg(3)? as u32,
                flags: reg(4)? as u32,
            })),
            Command::MemChecksum => Ok(Response::Checksum(reg(1)? as u32)),
            Command::MemStats => Ok(Response::MemStats(MemStats {
                live_regions: reg(1)? as u32,
                mapped_pages: reg(2)? as u32,
                retrieves: reg(3)? as u32,
                relinquishes: reg(4)? as u32,
            })),
            Command::MemFill
            | Command::MemRelease
            | Command::MemRelinquishHandle
            | Command::ModelUnload => Ok(Response::Done),
            Command::DeviceKey => {
                let mut r = [0u64; DeviceKey::REGS];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = reg(i + 1)?;
                }
                Ok(Response::DeviceKey(DeviceKey::from_regs(&r)))
            }
            Command::Attest => Ok(Response::Attested(reg(1)? as u32)),
            Command::ModelLoad | Command::ModelLoadSealed => {
                let paths = reg(5)?;
                Ok(Response::Model(ModelInfo {
                    n_layers: reg(1)? as u32,
                    dim: reg(2)? as u32,
                    vocab: reg(3)? as u32,
                    context: reg(4)? as u32,
                    matvec_path: paths as u8,
                    matmul_path: (paths >> 8) as u8,
                    region: reg(6)? as u32,
                    heap_bytes: reg(7)?,
                }))
            }
            Command::Generate => Ok(Response::Generated(GenerateResult {
                prompt_tokens: reg(1)? as u32,
                generated: reg(2)? as u32,
                text_len: reg(3)? as u32,
                stop: match reg(4)? {
                    1 => StopReason::MaxTokens,
                    2 => StopReason::EndOfText,
                    _ => return Err(DecodeError::BadStatus(word)),
                },
                prefill_ticks: reg(5)?,
                decode_ticks: reg(6)?,
                counter_hz: reg(7)?,
            })),
            Command::FlexSecure | Command::FlexRelease => Ok(Response::FlexSwitched(FlexSwitch {
                pages: reg(1)? as u32,
                owner_extents: reg(2)? as u32,
                regions_used: reg(3)? as u32,
                ticks: reg(4)?,
            })),
            Command::FlexStats => {
                let mut r = [0u64; FlexStats::REGS - 1];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = reg(i + 1)?;
                }
                Ok(Response::FlexStats(FlexStats::from_regs(&r)))
            }
            Command::FlexProbe => Ok(Response::Probed(reg(1)?)),
            Command::NpuAcquire | Command::NpuRelease => Ok(Response::NpuSwitched(NpuSwitch {
                ticks: reg(1)?,
                switches: reg(2)?,
                jobs: reg(3)?,
            })),
            Command::NpuGemm => {
                let mut r = [0u64; NpuGemmResult::REGS];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = reg(i + 1)?;
                }
                Ok(Response::NpuGemm(NpuGemmResult::from_regs(&r)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_cells_follow_manifest_convention() {
        // Hafnium/ACS: bytes read as little-endian words.
        assert_eq!(
            service_uuid_manifest_cells(),
            [0xd476fe9d, 0xa545b350, 0x42cdb1b7, 0x7af1f864]
        );
        let mut buf = [0u8; 36];
        assert_eq!(
            service_uuid_text(&mut buf),
            "9dfe76d4-50b3-45a5-b7b1-cd4264f8f17a"
        );
    }

    #[test]
    fn ping_round_trip_both_widths() {
        for (width, p) in [
            (Width::W32, [0xdead_beef_u64, 1, 0xffff_ffff]),
            (Width::W64, [0xdead_beef_0000_0001, 2, u64::MAX]),
        ] {
            let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
            Request::Ping { payload: &p }
                .encode(&mut regs, width)
                .unwrap();
            let Request::Ping { payload } = Request::decode(&regs, width).unwrap() else {
                panic!("not a ping");
            };
            assert_eq!(payload, &p);

            let mut out = [0u64; DIRECT_PAYLOAD_REGS];
            Response::Ping {
                counter: 7,
                payload,
            }
            .encode(&mut out, width)
            .unwrap();
            assert_eq!(
                Response::decode(&out, width, Command::Ping).unwrap(),
                Response::Ping {
                    counter: 7,
                    payload: &p
                }
            );
        }
    }

    #[test]
    fn w32_rejects_wide_values_and_ignores_upper_bits() {
        let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
        assert_eq!(
            Request::Ping {
                payload: &[1 << 32]
            }
            .encode(&mut regs, Width::W32),
            Err(EncodeError::TooWide { index: 2 })
        );
        // Garbage above bit 31 of an SMC32 call is not part of the message.
        let regs = [0xffff_ffff_0000_0002, 0xaaaa_0000_0000_0000, 0, 0, 0];
        assert_eq!(Request::decode(&regs, Width::W32), Ok(Request::Info));
        // ... and a ping's echo of such garbage still encodes, without it.
        let mut out = [0u64; DIRECT_PAYLOAD_REGS];
        let echo = Response::Ping {
            counter: 1,
            payload: &[0xaaaa_0000_0000_0003],
        };
        assert_eq!(echo.encode(&mut out, Width::W32), Ok(()));
        assert_eq!(out[2], 3);
        assert_eq!(
            Request::decode(&regs, Width::W64),
            Err(ProtoError::Malformed { index: 0 })
        );
    }

    #[test]
    fn malformed_and_unknown_requests_are_errors() {
        assert_eq!(
            Request::decode(&[], Width::W64),
            Err(ProtoError::TooShort { regs: 0 })
        );
        assert_eq!(
            Request::decode(&[0x77, 0, 0, 0, 0], Width::W64),
            Err(ProtoError::UnknownCommand(0x77))
        );
        assert_eq!(
            Request::decode(&[1 | 1 << 16, 0, 0, 0, 0], Width::W32),
            Err(ProtoError::Malformed { index: 0 })
        );
        assert_eq!(
            Request::decode(&[1, 5, 0, 0, 0], Width::W64),
            Err(ProtoError::Malformed { index: 1 })
        );
        assert_eq!(
            Request::decode(&[1], Width::W64),
            Err(ProtoError::TooShort { regs: 1 })
        );
        assert_eq!(
            Request::decode(&[2, 0, 0, 9, 0], Width::W64),
            Err(ProtoError::Malformed { index: 3 })
        );
    }

    #[test]
    fn error_and_info_responses_round_trip() {
        let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
        let e = Response::error(ProtoError::UnknownCommand(0x1234));
        e.encode(&mut out, Width::W64).unwrap();
        assert_eq!(&out[..2], &[Status::UnknownCommand as u64, 0x1234]);
        assert_eq!(Response::decode(&out, Width::W64, Command::Ping), Ok(e));

        let info = Info {
            protocol_version: PROTOCOL_VERSION,
            build_id: 0x1234_5678,
            capabilities: caps::PING | caps::INFO,
            sp_version: 0x00_01_00,
        };
        Response::Info(info).encode(&mut out, Width::W32).unwrap();
        assert_eq!(
            Response::decode(&out, Width::W32, Command::Info),
            Ok(Response::Info(info))
        );
        assert_eq!(
            Response::decode(&[99, 0], Width::W64, Command::Info),
            Err(DecodeError::BadStatus(99))
        );
        assert_eq!(
            Response::decode(&[0, 1], Width::W64, Command::Info),
            Err(DecodeError::TooShort { regs: 2 })
        );
    }

    #[test]
    fn fault_requests() {
        let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
        Request::Fault {
            kind: FaultKind::DataAbort,
        }
        .encode(&mut regs, Width::W32)
        .unwrap();
        assert_eq!(regs, [0xf000, 2, 0, 0, 0]);
        assert_eq!(
            Request::decode(&regs, Width::W32),
            Ok(Request::Fault {
                kind: FaultKind::DataAbort
            })
        );
        assert_eq!(
            Request::decode(&[0xf000, 4, 0, 0, 0], Width::W64),
            Err(ProtoError::Malformed { index: 1 })
        );
        assert_eq!(
            Request::decode(&[0xf000], Width::W64),
            Err(ProtoError::Malformed { index: 1 })
        );
        assert_eq!(
            Request::decode(&[0xf000, 1, 0, 4, 0], Width::W64),
            Err(ProtoError::Malformed { index: 3 })
        );
    }

    /// xorshift64*: a fixed-seed generator, so failures reproduce.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn random_registers_never_panic_and_pings_round_trip() {
        let mut st = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000u32 {
            let n = (rng(&mut st) % 16) as usize;
            let mut regs = [0u64; 16];
            for r in regs.iter_mut().take(n) {
                // Mostly small values so that valid commands come up often.
                let v = rng(&mut st);
                *r = if v & 1 == 0 { v >> 60 } else { v };
            }
            if i % 3 == 0 && n > 0 {
                regs[0] = [
                    1, 2, 0xf000, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x20, 0x21, 0x22, 0x30, 0x31,
                    0x32, 0x33,
                ][(i as usize / 3) % 16];
            }
            let width = if i % 2 == 0 { Width::W32 } else { Width::W64 };
            let regs = &regs[..n];
            if let Ok(req) = Request::decode(regs, width) {
                let mut out = [0u64; 16];
                if req.encode(&mut out[..n.max(2)], width).is_ok() {
                    assert_eq!(Request::decode(&out[..n.max(2)], width), Ok(req));
                }
            }
            for cmd in ALL_COMMANDS {
                let _ = Response::decode(regs, width, cmd);
            }
        }
    }

    const ALL_COMMANDS: [Command; 22] = [
        Command::NpuAcquire,
        Command::NpuRelease,
        Command::NpuGemm,
        Command::DeviceKey,
        Command::ModelLoadSealed,
        Command::Attest,
        Command::FlexSecure,
        Command::FlexRelease,
        Command::FlexStats,
        Command::FlexProbe,
        Command::ModelLoad,
        Command::Generate,
        Command::ModelUnload,
        Command::Ping,
        Command::Info,
        Command::Fault,
        Command::MemRetrieve,
        Command::MemChecksum,
        Command::MemFill,
        Command::MemRelease,
        Command::MemStats,
        Command::MemRelinquishHandle,
    ];

    #[test]
    fn command_ids_round_trip() {
        for c in ALL_COMMANDS {
            assert_eq!(Command::from_id(c as u16), Some(c));
        }
        for code in 0..32 {
            if let Some(s) = Status::from_code(code) {
                assert_eq!(s as u64, code);
            }
        }
        for r in 1..=6 {
            assert_eq!(RejectReason::from_u64(r).map(|r| r as u64), Some(r));
        }
        assert_eq!(RejectReason::from_u64(0), None);
    }

    #[test]
    fn memory_requests_round_trip_in_both_widths() {
        let reqs = [
            Request::MemRetrieve {
                handle: 0x8000_0000_0000_0042,
                tx_type: 2,
            },
            Request::MemChecksum {
                region: 3,
                offset: 0x10,
                len: u32::MAX,
            },
            Request::MemFill {
                region: 1,
                offset: 0,
                len: 4096,
                pattern: 0xa5a5_0102,
            },
            Request::MemRelease { region: 9 },
            Request::MemStats,
            Request::MemRelinquishHandle { handle: u64::MAX },
        ];
        for width in [Width::W32, Width::W64] {
            for req in reqs {
                let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
                req.encode(&mut regs, width).unwrap();
                assert!(regs.iter().all(|r| r >> 32 == 0), "{regs:x?}");
                assert_eq!(Request::decode(&regs, width), Ok(req));
            }
        }
    }

    #[test]
    fn memory_requests_reject_bad_arguments() {
        let w = Width::W64;
        // Transaction type 4 does not exist.
        assert_eq!(
            Request::decode(&[0x10, 1, 0, 4, 0], w),
            Err(ProtoError::Malformed { index: 3 })
        );
        // A 64-bit value where the protocol has 32 bits.
        assert_eq!(
            Request::decode(&[0x11, 1, 1 << 32, 4, 0], w),
            Err(ProtoError::Malformed { index: 2 })
        );
        assert_eq!(
            Request::decode(&[0x13, 1, 0, 0, 7], w),
            Err(ProtoError::Malformed { index: 4 })
        );
        assert_eq!(
            Request::decode(&[0x14, 0, 1, 0, 0], w),
            Err(ProtoError::Malformed { index: 2 })
        );
        // Over SMC32 the upper halves are not part of the message.
        assert_eq!(
            Request::decode(&[0x11, 1, 1 << 32, 4, 0], Width::W32),
            Ok(Request::MemChecksum {
                region: 1,
                offset: 0,
                len: 4
            })
        );
        // Short payloads read missing registers as zero (REQ2 and REQ carry at least 5).
        assert_eq!(Request::decode(&[0x14], w), Ok(Request::MemStats));
    }

    #[test]
    fn memory_responses_round_trip() {
        let resps = [
            (
                Command::MemRetrieve,
                Response::MemRegion(RegionInfo {
                    region: 1,
                    pages: 512,
                    ranges: 512,
                    flags: region_flags::NS | region_flags::WRITABLE | 2 << 2,
                }),
            ),
            (Command::MemChecksum, Response::Checksum(0xdead_beef)),
            (
                Command::MemStats,
                Response::MemStats(MemStats {
                    live_regions: 2,
                    mapped_pages: 3,
                    retrieves: 200,
                    relinquishes: 198,
                }),
            ),
            (Command::MemRelease, Response::Done),
            (Command::MemRetrieve, Response::error(ProtoError::Ffa(-2))),
        ];
        for width in [Width::W32, Width::W64] {
            for (cmd, r) in resps {
                let mut out = [0u64; DIRECT_PAYLOAD_REGS];
                r.encode(&mut out, width).unwrap();
                assert_eq!(Response::decode(&out, width, cmd), Ok(r));
            }
        }
        let mut out = [0u64; 2];
        Response::error(ProtoError::Ffa(-2))
            .encode(&mut out, Width::W32)
            .unwrap();
        assert_eq!(out, [Status::FfaError as u64, 0xffff_fffe]);
    }

    #[test]
    fn checksum_and_pattern() {
        // FNV-1a 32 reference values.
        assert_eq!(Checksum::of(b""), 0x811c_9dc5);
        assert_eq!(Checksum::of(b"a"), 0xe40c_292c);
        assert_eq!(Checksum::of(b"foobar"), 0xbf9c_f968);
        let mut c = Checksum::new();
        c.update(b"foo");
        c.update(b"bar");
        assert_eq!(c.value(), Checksum::of(b"foobar"));
        let p = 0x0403_0201;
        let bytes: [u8; 9] = core::array::from_fn(|i| pattern_byte(p, i as u32));
        assert_eq!(bytes, [1, 2, 3, 4, 2, 3, 4, 5, 3]);
    }

    #[test]
    fn encode_needs_room() {
        let mut out = [0u64; 3];
        assert_eq!(
            Request::Ping {
                payload: &[1, 2, 3]
            }
            .encode(&mut out, Width::W64),
            Err(EncodeError::NoRoom { need: 5, have: 3 })
        );
        assert_eq!(
            Response::Info(Info {
                protocol_version: 0,
                build_id: 0,
                capabilities: 0,
                sp_version: 0
            })
            .encode(&mut out, Width::W64),
            Err(EncodeError::NoRoom { need: 5, have: 3 })
        );
    }

    #[test]
    fn model_requests_round_trip_and_reject_bad_arguments() {
        let gen_args = GenerateArgs {
            io_handle: 0x8000_0000_0000_0007,
            prompt_len: 10,
            max_tokens: 48,
            sampling: Sampling {
                temperature: 0.8,
                top_k: 40,
                top_p: 0.95,
                seed: 0x1234_5678_9abc_def0,
            },
        };
        for req in [
            Request::ModelLoad { handle: u64::MAX },
            Request::ModelUnload,
            Request::Generate(gen_args),
        ] {
            let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
            req.encode(&mut regs, Width::W64).unwrap();
            assert_eq!(Request::decode(&regs, Width::W64), Ok(req));
        }
        let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
        Request::Generate(gen_args)
            .encode(&mut regs, Width::W64)
            .unwrap();
        let bad = |i: usize, v: u64| {
            let mut r = regs;
            r[i] = v;
            Request::decode(&r, Width::W64).map(|_| ())
        };
        assert_eq!(bad(4, 0), Err(ProtoError::Malformed { index: 4 }));
        assert_eq!(
            bad(5, u64::from(f32::NAN.to_bits())),
            Err(ProtoError::Malformed { index: 5 })
        );
        assert_eq!(
            bad(5, u64::from((-1.0f32).to_bits())),
            Err(ProtoError::Malformed { index: 5 })
        );
        assert_eq!(
            bad(7, u64::from(1.5f32.to_bits())),
            Err(ProtoError::Malformed { index: 7 })
        );
        assert_eq!(bad(7, 0), Err(ProtoError::Malformed { index: 7 }));
        assert_eq!(bad(10, 1), Err(ProtoError::Malformed { index: 10 }));
        assert_eq!(bad(3, 1 << 32), Err(ProtoError::Malformed { index: 3 }));
        assert_eq!(
            Request::decode(&[0x22, 1], Width::W64),
            Err(ProtoError::Malformed { index: 1 })
        );
    }

    #[test]
    fn model_responses_round_trip() {
        let resps = [
            (
                Command::ModelLoad,
                Response::Model(ModelInfo {
                    n_layers: 4,
                    dim: 192,
                    vocab: 1024,
                    context: 256,
                    matvec_path: kernel_path::SDOT,
                    matmul_path: kernel_path::SMMLA,
                    region: 3,
                    heap_bytes: 1 << 20,
                }),
            ),
            (
                Command::Generate,
                Response::Generated(GenerateResult {
                    prompt_tokens: 4,
                    generated: 48,
                    text_len: 200,
                    stop: StopReason::EndOfText,
                    prefill_ticks: 1 << 40,
                    decode_ticks: 12345,
                    counter_hz: 62_500_000,
                }),
            ),
            (Command::ModelUnload, Response::Done),
            (
                Command::Generate,
                Response::error(ProtoError::BadPrompt(PromptFault::NotUtf8)),
            ),
            (
                Command::ModelLoad,
                Response::error(ProtoError::NoMemory(9 << 20)),
            ),
        ];
        for (cmd, r) in resps {
            let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
            r.encode(&mut out, Width::W64).unwrap();
            assert_eq!(Response::decode(&out, Width::W64, cmd), Ok(r));
        }
        // Eight registers do not fit a DIRECT_REQ reply.
        let mut out = [0u64; DIRECT_PAYLOAD_REGS];
        assert!(resps[0].1.encode(&mut out, Width::W64).is_err());
        assert_eq!(
            Response::decode(&[0, 1, 1, 1, 9, 0, 0, 0], Width::W64, Command::Generate),
            Err(DecodeError::BadStatus(0))
        );
        for code in 12..=19 {
            assert_eq!(Status::from_code(code).map(|s| s as u64), Some(code));
        }
        assert_eq!(io::text_offset(3), 12);
        assert_eq!(kernel_path::name(kernel_path::SMMLA), "smmla");
    }

    #[test]
    fn flexmem_requests_round_trip_and_reject_bad_arguments() {
        for width in [Width::W32, Width::W64] {
            for req in [
                Request::FlexSecure {
                    region: 7,
                    owner: 0xffff_ffff,
                    scrub: ScrubKind::Zero,
                },
                Request::FlexSecure {
                    region: 1,
                    owner: 3,
                    scrub: ScrubKind::EncryptOut,
                },
                Request::FlexRelease { region: 9 },
                Request::FlexStats,
                Request::FlexProbe { addr: 0x5800_1008 },
            ] {
                let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
                req.encode(&mut regs, width).unwrap();
                assert_eq!(Request::decode(&regs, width), Ok(req), "{req:?}");
            }
        }
        let bad = |regs: &[u64]| Request::decode(regs, Width::W64).map(|_| ());
        // Unknown scrub kind, stray registers, unaligned or too wide probe addresses.
        assert_eq!(
            bad(&[0x30, 1, 2, 2, 0]),
            Err(ProtoError::Malformed { index: 3 })
        );
        assert_eq!(
            bad(&[0x30, 1, 2, 0, 5]),
            Err(ProtoError::Malformed { index: 4 })
        );
        assert_eq!(bad(&[0x31, 1, 1]), Err(ProtoError::Malformed { index: 2 }));
        assert_eq!(
            bad(&[0x32, 0, 0, 1]),
            Err(ProtoError::Malformed { index: 3 })
        );
        assert_eq!(
            bad(&[0x33, 0x1004, 0, 0, 0]),
            Err(ProtoError::Malformed { index: 1 })
        );
        assert_eq!(
            bad(&[0x33, 1 << 32, 0, 0, 0]),
            Err(ProtoError::Malformed { index: 1 })
        );
        assert_eq!(
            bad(&[0x30, 1 << 33, 0, 0, 0]),
            Err(ProtoError::Malformed { index: 1 })
        );
    }

    #[test]
    fn sealed_messages_round_trip_and_reject_bad_arguments() {
        let nonce: [u8; NONCE_LEN] = core::array::from_fn(|i| 0xa0 ^ i as u8);
        for req in [
            Request::DeviceKey,
            Request::ModelLoadSealed {
                package: 0x1_0000_0002,
                dest: 0x3_0000_0004,
                len: 0x5_0000_0006,
            },
            Request::Attest {
                io_handle: 0x5_0000_0006,
                nonce,
            },
        ] {
            let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
            req.encode(&mut regs, Width::W64).unwrap();
            assert_eq!(Request::decode(&regs, Width::W64), Ok(req));
            let mut bad = regs;
            bad[9] = 1;
            assert_eq!(
                Request::decode(&bad, Width::W64),
                Err(ProtoError::Malformed { index: 9 })
            );
        }
        let attest = [Command::Attest as u64, 1, 0, 1, 2, 3, 4];
        assert_eq!(
            Request::decode(&attest, Width::W32),
            Err(ProtoError::Malformed { index: 3 })
        );
        assert_eq!(
            Request::decode(&attest[..5], Width::W64),
            Err(ProtoError::TooShort { regs: 5 })
        );
        let key = DeviceKey {
            kem: [1; 32],
            sign: [2; 32],
        };
        let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
        Response::DeviceKey(key)
            .encode(&mut out, Width::W64)
            .unwrap();
        assert_eq!(
            Response::decode(&out, Width::W64, Command::DeviceKey),
            Ok(Response::DeviceKey(key))
        );
        Response::Attested(248)
            .encode(&mut out, Width::W64)
            .unwrap();
        assert_eq!(
            Response::decode(&out, Width::W64, Command::Attest),
            Ok(Response::Attested(248))
        );
        let e = ProtoError::Sealed {
            fault: SealedFault::ChunkAuth,
            chunk: 9,
        };
        assert_eq!(e.status(), Status::Sealed);
        assert_eq!(
            SealedFault::from_detail(e.detail()),
            Some((SealedFault::ChunkAuth, 9))
        );
    }

    #[test]
    fn flexmem_responses_round_trip() {
        let sw = FlexSwitch {
            pages: 16384,
            owner_extents: 1,
            regions_used: 3,
            ticks: 1 << 40,
        };
        let mut out = [0u64; DIRECT_PAYLOAD_REGS];
        Response::FlexSwitched(sw)
            .encode(&mut out, Width::W64)
            .unwrap();
        for cmd in [Command::FlexSecure, Command::FlexRelease] {
            assert_eq!(
                Response::decode(&out, Width::W64, cmd),
                Ok(Response::FlexSwitched(sw))
            );
        }
        // 40-bit ticks do not fit SMC32: an encode error, not a silent cut.
        assert_eq!(
            Response::FlexSwitched(sw).encode(&mut out, Width::W32),
            Err(EncodeError::TooWide { index: 4 })
        );
        let st = FlexStats {
            pages_secured: 1,
            pages_released: 2,
            bytes_cleaned: 3,
            firewall_reprograms: 4,
            tlb_invalidations: 5,
            regions_used: 6,
            regions_free: 7,
            secured_pages: 8,
            last_switch_ticks: 9,
            last_switch_pages: 10,
            counter_hz: 62_500_000,
        };
        let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
        Response::FlexStats(st)
            .encode(&mut out, Width::W64)
            .unwrap();
        assert_eq!(&out[..4], &[0, 1, 2, 3]);
        assert_eq!(
            Response::decode(&out, Width::W64, Command::FlexStats),
            Ok(Response::FlexStats(st))
        );
        // Does not fit DIRECT_REQ's five registers.
        let mut short = [0u64; DIRECT_PAYLOAD_REGS];
        assert_eq!(
            Response::FlexStats(st).encode(&mut short, Width::W64),
            Err(EncodeError::NoRoom {
                need: 12,
                have: DIRECT_PAYLOAD_REGS
            })
        );
        assert_eq!(
            Response::decode(&short, Width::W64, Command::FlexStats),
            Err(DecodeError::TooShort {
                regs: DIRECT_PAYLOAD_REGS
            })
        );
        let mut out = [0u64; DIRECT_PAYLOAD_REGS];
        Response::Probed(u64::MAX)
            .encode(&mut out, Width::W64)
            .unwrap();
        assert_eq!(
            Response::decode(&out, Width::W64, Command::FlexProbe),
            Ok(Response::Probed(u64::MAX))
        );
        for f in 1..=14 {
            let fault = FlexFault::from_u64(f).unwrap();
            assert_eq!(fault as u64, f);
            let e = ProtoError::FlexMem(fault);
            assert_eq!((e.status(), e.detail()), (Status::FlexMem, f));
        }
        assert_eq!(FlexFault::from_u64(0), None);
        assert_eq!(FlexFault::from_u64(15), None);
    }

    #[test]
    fn npu_messages_round_trip() {
        let gemm = NpuGemmArgs {
            region: 4,
            m: 8,
            n: 96,
            k: 256,
            seed: 7,
            flags: gemm_flags::OUTSIDE_STE,
        };
        for req in [
            Request::NpuAcquire,
            Request::NpuRelease,
            Request::NpuGemm(gemm),
        ] {
            let mut regs = [0u64; DIRECT_PAYLOAD_REGS + 2];
            req.encode(&mut regs, Width::W64).unwrap();
            assert_eq!(Request::decode(&regs, Width::W64), Ok(req), "{req:?}");
        }
        // Unknown flag bits and stray registers are malformed.
        assert_eq!(
            Request::decode(&[0x42, 1, 1, 1, 32, 0, 2], Width::W64),
            Err(ProtoError::Malformed { index: 6 })
        );
        assert_eq!(
            Request::decode(&[0x40, 1], Width::W64),
            Err(ProtoError::Malformed { index: 1 })
        );
        let res = NpuGemmResult {
            mismatches: 0,
            fault_kind: 1,
            fault_iova: 0x1_0000,
            npu_start: 10,
            npu_end: 50,
            cpu_start: 20,
            cpu_end: 70,
            cycles: 123,
            counter_hz: 1_000_000_000,
        };
        assert_eq!(res.overlap_ticks(), 30);
        let mut out = [0u64; DIRECT2_PAYLOAD_REGS];
        Response::NpuGemm(res).encode(&mut out, Width::W64).unwrap();
        assert_eq!(
            Response::decode(&out, Width::W64, Command::NpuGemm),
            Ok(Response::NpuGemm(res))
        );
        let sw = NpuSwitch {
            ticks: 5,
            switches: 2,
            jobs: 1,
        };
        Response::NpuSwitched(sw)
            .encode(&mut out, Width::W64)
            .unwrap();
        assert_eq!(
            Response::decode(&out, Width::W64, Command::NpuRelease),
            Ok(Response::NpuSwitched(sw))
        );
        let e = Response::error(ProtoError::Npu(NpuFault::NotIdle));
        e.encode(&mut out, Width::W64).unwrap();
        assert_eq!(out[..2], [Status::Npu as u64, NpuFault::NotIdle as u64]);
        assert_eq!(NpuFault::from_u64(4), Some(NpuFault::NotIdle));
    }
}
