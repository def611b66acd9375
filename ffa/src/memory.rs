//! FF-A memory management descriptors (FF-A v1.2 sec. 10.11; research/platform-facts.md
//! sec. 5): the memory transaction descriptor, endpoint memory access descriptors (EMADs)
//! in the 16-byte (v1.1) and 32-byte (v1.2+) forms, the composite memory region
//! descriptor and its constituent ranges, memory region attributes (with the NS bit),
//! transaction flags, handles, and the relinquish descriptor. A builder and a parser for
//! each, plus fragment assembly/planning for FFA_MEM_FRAG_RX/TX.
//!
//! Layout (little-endian):
//! ```text
//! transaction  0 sender u16 | 2 attributes u16 | 4 flags u32 | 8 handle u64 | 16 tag u64
//!             24 EMAD size u32 | 28 EMAD count u32 | 32 EMAD offset u32 | 36 reserved[12]
//! EMAD         0 endpoint u16 | 2 permissions u8 | 3 flags u8 | 4 composite offset u32
//!              v1.1: 8 reserved u64                      (16 bytes)
//!              v1.2: 8 impdef [u64; 2] | 24 reserved u64   (32 bytes)
//! composite    0 total pages u32 | 4 range count u32 | 8 reserved u64, then ranges:
//! range        0 address u64 | 8 page count u32 | 12 reserved u32
//! relinquish   0 handle u64 | 8 flags u32 | 12 endpoint count u32 | 16 endpoint ids u16..
//! ```
//!
//! # Trust
//! [`MemTransaction::parse`] treats its input as hostile: every offset, count and size is
//! checked against the buffer with checked arithmetic; reserved fields, reserved
//! encodings, zero-length, misaligned, wrapping and overlapping ranges, duplicate
//! receivers and a wrong sender are rejected with a [`MemError`] that names the defect and
//! maps to the FF-A error an SPMC returns ([`MemError::to_ffa_error`]). Nothing panics.
//!
//! The parser takes `&[u8]`: copy the descriptor out of the (shared, concurrently
//! writable) TX/RX buffer into private memory first, then parse the copy. The result owns
//! every field, so nothing is read from the buffer afterwards.
//!
//! # Hafnium specifics
//! - A retrieve request must have every EMAD's composite offset 0 and no composite
//!   ([`DescKind::RetrieveReq`] enforces it; Hafnium `src/ffa_memory.c`).
//! - Hafnium answers a v1.2+ endpoint with 32-byte EMADs; the retrieve-response parser
//!   accepts both sizes.
//! - In a retrieve response, attribute bit 6 (NS) tells the SP to map the region
//!   non-secure.

extern crate alloc;

use alloc::vec::Vec;

use crate::{FfaError, Handle, PAGE_SIZE, PartitionId};

pub const TRANSACTION_HEADER_SIZE: usize = 48;
pub const COMPOSITE_HEADER_SIZE: usize = 16;
pub const RANGE_SIZE: usize = 16;
pub const RELINQUISH_HEADER_SIZE: usize = 16;

/// Size of an endpoint memory access descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmadSize {
    /// FF-A v1.1: 16 bytes.
    V1_1 = 16,
    /// FF-A v1.2 and later: 32 bytes, with 16 implementation-defined bytes.
    V1_2 = 32,
}

impl EmadSize {
    pub const fn bytes(self) -> usize {
        self as usize
    }

    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            16 => Some(Self::V1_1),
            32 => Some(Self::V1_2),
            _ => None,
        }
    }

    /// The size an SPMC uses toward an endpoint of FF-A `version`.
    pub const fn for_version(version: crate::Version) -> Self {
        if version.major() == 1 && version.minor() < 2 {
            Self::V1_1
        } else {
            Self::V1_2
        }
    }
}

/// Shareability, attributes \[1:0\].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shareability {
    NonShareable = 0b00,
    Outer = 0b10,
    Inner = 0b11,
}

/// Cacheability of normal memory, attributes \[3:2\].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cacheability {
    NonCacheable = 0b01,
    WriteBack = 0b11,
}

/// Device memory type, attributes \[3:2\].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    NGnRnE = 0b00,
    NGnRE = 0b01,
    NGRE = 0b10,
    GRE = 0b11,
}

/// Memory type, attributes \[5:4\] with the fields that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// 0b00: not specified (\[3:0\] MBZ).
    Unspecified,
    /// 0b01: device memory (\[1:0\] MBZ).
    Device(DeviceType),
    /// 0b10: normal memory.
    Normal {
        cacheability: Cacheability,
        shareability: Shareability,
    },
}

/// Memory region attributes (u16 at transaction offset 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegionAttributes {
    pub mem_type: MemType,
    /// Bit 6: non-secure. Set only by the SPMC in a retrieve response.
    pub ns: bool,
}

impl MemRegionAttributes {
    /// Normal, write-back, inner shareable: what Linux and the SP use for RAM.
    pub const NORMAL_WB_INNER: Self = Self {
        mem_type: MemType::Normal {
            cacheability: Cacheability::WriteBack,
            shareability: Shareability::Inner,
        },
        ns: false,
    };

    /// What a sender of `kind` to `borrowers` endpoints names (FF-A v1.2 sec. 10.10.4.1 and
    /// Hafnium v2.15's send checks, which Linux's FF-A driver follows): a share, or a lend to
    /// several borrowers, names Normal WB inner-shareable; a donate or a lend to one borrower
    /// leaves the type to the borrower (Hafnium refuses one that names it).
    pub const fn for_send(kind: SendKind, borrowers: usize) -> Self {
        match kind {
            SendKind::Lend if borrowers > 1 => Self::NORMAL_WB_INNER,
            SendKind::Lend | SendKind::Donate => Self {
                mem_type: MemType::Unspecified,
                ns: false,
            },
            SendKind::Share => Self::NORMAL_WB_INNER,
        }
    }

    pub const fn to_u16(self) -> u16 {
        let t = match self.mem_type {
            MemType::Unspecified => 0,
            MemType::Device(d) => 0b01 << 4 | (d as u16) << 2,
            MemType::Normal {
                cacheability,
                shareability,
            } => 0b10 << 4 | (cacheability as u16) << 2 | shareability as u16,
        };
        t | (self.ns as u16) << 6
    }

    pub const fn from_u16(v: u16) -> Result<Self, MemError> {
        let bad = Err(MemError::BadAttributes(v));
        if v & !0x7F != 0 {
            return bad;
        }
        let low = v & 0xF;
        let mem_type = match (v >> 4) & 3 {
            0 if low == 0 => MemType::Unspecified,
            1 if v & 3 == 0 => MemType::Device(match (v >> 2) & 3 {
                0 => DeviceType::NGnRnE,
                1 => DeviceType::NGnRE,
                2 => DeviceType::NGRE,
                _ => DeviceType::GRE,
            }),
            2 => {
                let cacheability = match (v >> 2) & 3 {
                    0b01 => Cacheability::NonCacheable,
                    0b11 => Cacheability::WriteBack,
                    _ => return bad,
                };
                let shareability = match v & 3 {
                    0b00 => Shareability::NonShareable,
                    0b10 => Shareability::Outer,
                    0b11 => Shareability::Inner,
                    _ => return bad,
                };
                MemType::Normal {
                    cacheability,
                    shareability,
                }
            }
            _ => return bad,
        };
        Ok(Self {
            mem_type,
            ns: v & (1 << 6) != 0,
        })
    }
}

/// Data access permission, permissions \[1:0\].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataAccess {
    NotSpecified = 0b00,
    ReadOnly = 0b01,
    ReadWrite = 0b10,
}

/// Instruction access permission, permissions \[3:2\].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstructionAccess {
    NotSpecified = 0b00,
    NotExecutable = 0b01,
    Executable = 0b10,
}

impl InstructionAccess {
    /// What a single borrower's retrieve request names for a transaction of type `tx`, in the
    /// order to try (FF-A v1.2 sec. 10.10.3, Table 10.15, as Hafnium v2.15 enforces it in
    /// `ffa_memory_retrieve_is_memory_access_valid`): a share must leave it unspecified
    /// (INVALID_PARAMETERS otherwise); a lend or donate to one borrower must specify it, and
    /// never-executable is the only choice for normal-world memory. A borrower that does not
    /// know the type tries the share form first, then the lend/donate form: a wrong form is
    /// refused before the SPMC changes any state.
    pub const fn for_retrieve(tx: TransactionType) -> &'static [InstructionAccess] {
        match tx {
            TransactionType::Share => &[Self::NotSpecified],
            TransactionType::Lend | TransactionType::Donate => &[Self::NotExecutable],
            TransactionType::Unspecified => &[Self::NotSpecified, Self::NotExecutable],
        }
    }
}

/// Endpoint memory access permissions descriptor (the first 4 bytes of an EMAD, without
/// the composite offset, which the builder computes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemAccessPerm {
    pub endpoint_id: PartitionId,
    pub data_access: DataAccess,
    pub instruction_access: InstructionAccess,
    /// Flags byte bit 0: non-retrieval borrower (send only). Other bits MBZ.
    pub non_retrieval_borrower: bool,
}

impl MemAccessPerm {
    pub const fn perm_byte(&self) -> u8 {
        (self.instruction_access as u8) << 2 | self.data_access as u8
    }

    fn from_bytes(index: u32, id: u16, perm: u8, flags: u8) -> Result<Self, MemError> {
        let bad_perm = MemError::BadPermissions { index, perms: perm };
        if perm & 0xF0 != 0 {
            return Err(bad_perm);
        }
        let data_access = match perm & 3 {
            0 => DataAccess::NotSpecified,
            1 => DataAccess::ReadOnly,
            2 => DataAccess::ReadWrite,
            _ => return Err(bad_perm),
        };
        let instruction_access = match (perm >> 2) & 3 {
            0 => InstructionAccess::NotSpecified,
            1 => InstructionAccess::NotExecutable,
            2 => InstructionAccess::Executable,
            _ => return Err(bad_perm),
        };
        if flags & !1 != 0 {
            return Err(MemError::BadEmadFlags { index, flags });
        }
        Ok(Self {
            endpoint_id: id,
            data_access,
            instruction_access,
            non_retrieval_borrower: flags & 1 != 0,
        })
    }
}

/// One endpoint memory access descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emad {
    pub perm: MemAccessPerm,
    /// v1.2 implementation-defined bytes 8..24 (as two u64). Must be zero in the 16-byte
    /// form, where they do not exist.
    pub impdef: [u64; 2],
}

impl Emad {
    pub const fn new(perm: MemAccessPerm) -> Self {
        Self {
            perm,
            impdef: [0; 2],
        }
    }
}

/// A constituent memory region: `page_count` 4 KiB pages at `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemRange {
    pub address: u64,
    pub page_count: u32,
}

impl MemRange {
    /// Byte length (cannot overflow: u32 pages * 4 KiB < 2^44).
    pub const fn len(&self) -> u64 {
        self.page_count as u64 * PAGE_SIZE as u64
    }

    pub const fn is_empty(&self) -> bool {
        self.page_count == 0
    }

    /// One past the last byte, or `None` if it wraps.
    pub const fn end(&self) -> Option<u64> {
        self.address.checked_add(self.len())
    }
}

/// Memory transaction type, flags \[4:3\].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionType {
    /// 0b00: not specified (retrieve request: the relayer uses the handle's type).
    Unspecified = 0,
    Share = 1,
    Lend = 2,
    Donate = 3,
}

/// Memory transaction flags (u32 at transaction offset 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemFlags(pub u32);

impl MemFlags {
    /// Bit 0: zero memory (before retrieval / after lend or donate).
    pub const ZERO_MEMORY: u32 = 1 << 0;
    /// Bit 1: the operation may be time-sliced.
    pub const TIME_SLICING: u32 = 1 << 1;
    /// Bit 2 (retrieve): zero memory after relinquish.
    pub const ZERO_AFTER_RELINQUISH: u32 = 1 << 2;
    /// Bits \[4:3\] (retrieve): transaction type.
    pub const TYPE_SHIFT: u32 = 3;
    pub const TYPE_MASK: u32 = 3 << 3;
    /// Bits \[8:5\] (retrieve request): address range alignment hint; bit 9: hint valid.
    pub const ALIGNMENT_HINT_MASK: u32 = 0xF << 5;
    pub const ALIGNMENT_HINT_VALID: u32 = 1 << 9;
    /// Bit 10 (retrieve request, v1.2): bypass the multiple-borrower check.
    pub const BYPASS_BORROWERS_CHECK: u32 = 1 << 10;

    pub const fn with_type(self, t: TransactionType) -> Self {
        Self((self.0 & !Self::TYPE_MASK) | (t as u32) << Self::TYPE_SHIFT)
    }

    pub const fn transaction_type(self) -> TransactionType {
        match (self.0 & Self::TYPE_MASK) >> Self::TYPE_SHIFT {
            0 => TransactionType::Unspecified,
            1 => TransactionType::Share,
            2 => TransactionType::Lend,
            _ => TransactionType::Donate,
        }
    }

    pub const fn contains(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

/// Which descriptor is being built or parsed; the rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescKind {
    /// FFA_MEM_SHARE / LEND / DONATE from the owner.
    Send(SendKind),
    /// FFA_MEM_RETRIEVE_REQ from a borrower: composite offsets 0, no ranges, exact length,
    /// at least one EMAD (Hafnium's hypervisor retrieve request with zero EMADs is not
    /// supported).
    RetrieveReq,
    /// FFA_MEM_RETRIEVE_RESP from the SPMC.
    RetrieveResp,
}

/// The send ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    Share,
    Lend,
    Donate,
}

/// Why a descriptor was rejected (or could not be built).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// The buffer ends before `needed` bytes.
    Truncated { needed: u64, available: usize },
    /// A reserved (MBZ) field at byte `offset` is non-zero.
    ReservedNotZero { offset: u64 },
    /// EMAD size other than 16 or 32, or not the size the caller required.
    BadEmadSize(u32),
    /// No receivers.
    NoReceivers,
    /// EMAD array offset below 48 or not 16-byte aligned.
    BadEmadOffset(u32),
    /// Receivers' composite offsets differ.
    CompositeOffsetMismatch { index: u32, offset: u32, first: u32 },
    /// Composite offset inside the header/EMAD array, or not 8-byte aligned (send and
    /// retrieve response), or non-zero (retrieve request).
    BadCompositeOffset(u32),
    /// Memory region attributes with reserved bits or encodings.
    BadAttributes(u16),
    /// Attributes not allowed for this transaction (e.g. NS set by a sender, unspecified
    /// type in a share).
    AttributesNotAllowed(u16),
    /// Permission byte with reserved bits or encodings.
    BadPermissions { index: u32, perms: u8 },
    /// Permissions not allowed for this transaction (e.g. instruction access in a share).
    PermissionsNotAllowed { index: u32, perms: u8 },
    /// EMAD flags byte with reserved bits, or the non-retrieval-borrower bit outside a send.
    BadEmadFlags { index: u32, flags: u8 },
    /// Non-zero implementation-defined EMAD bytes in a 16-byte EMAD (builder only).
    ImpdefInV11Emad { index: u32 },
    /// Transaction flags with bits this transaction does not allow.
    BadFlags(u32),
    /// Non-zero handle in a send, zero handle in a retrieve.
    BadHandle(u64),
    /// The descriptor's sender is not the caller.
    WrongSender {
        expected: PartitionId,
        found: PartitionId,
    },
    /// Two EMADs name the same endpoint.
    DuplicateReceiver(PartitionId),
    /// A send or response with no constituent range.
    NoRanges,
    /// A range with zero pages.
    ZeroLengthRange { index: u32 },
    /// A range address not 4 KiB aligned.
    MisalignedRange { index: u32, address: u64 },
    /// A range whose end wraps past 2^64.
    RangeWraps { index: u32 },
    /// Two ranges overlap.
    OverlappingRanges { first: u32, second: u32 },
    /// Composite total page count differs from the sum of the ranges.
    PageCountMismatch { declared: u32, actual: u64 },
    /// A count or size does not fit the wire format (builder), or a descriptor is larger
    /// than allowed (fragment assembly).
    TooLarge,
    /// Relinquish descriptor with no endpoints.
    NoEndpoints,
    /// A retrieve request longer than its header and EMADs (Hafnium requires the exact
    /// length).
    LengthMismatch { expected: u64, actual: usize },
    /// A fragment after the first that is empty, longer than what remains, or not whole
    /// 16-byte constituent ranges.
    BadFragment { len: usize, remaining: usize },
}

impl MemError {
    /// The FF-A status an SPMC returns for this defect (Hafnium: wrong sender is DENIED;
    /// every other malformed descriptor INVALID_PARAMETERS; oversize NO_MEMORY).
    pub const fn to_ffa_error(self) -> FfaError {
        match self {
            Self::WrongSender { .. } => FfaError::Denied,
            Self::TooLarge => FfaError::NoMemory,
            _ => FfaError::InvalidParameters,
        }
    }
}

impl From<MemError> for FfaError {
    fn from(e: MemError) -> Self {
        e.to_ffa_error()
    }
}

impl core::fmt::Display for MemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for MemError {}

/// Bounds-checked little-endian reads from the private copy.
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn bytes<const N: usize>(&self, off: u64) -> Result<[u8; N], MemError> {
        let trunc = MemError::Truncated {
            needed: off.saturating_add(N as u64),
            available: self.0.len(),
        };
        let start = usize::try_from(off).map_err(|_| trunc)?;
        let end = start.checked_add(N).ok_or(trunc)?;
        let s = self.0.get(start..end).ok_or(trunc)?;
        let mut b = [0u8; N];
        b.copy_from_slice(s);
        Ok(b)
    }

    fn u8(&self, off: u64) -> Result<u8, MemError> {
        Ok(self.bytes::<1>(off)?[0])
    }

    fn u16(&self, off: u64) -> Result<u16, MemError> {
        self.bytes(off).map(u16::from_le_bytes)
    }

    fn u32(&self, off: u64) -> Result<u32, MemError> {
        self.bytes(off).map(u32::from_le_bytes)
    }

    fn u64(&self, off: u64) -> Result<u64, MemError> {
        self.bytes(off).map(u64::from_le_bytes)
    }

    fn need(&self, end: u64) -> Result<(), MemError> {
        if end > self.0.len() as u64 {
            Err(MemError::Truncated {
                needed: end,
                available: self.0.len(),
            })
        } else {
            Ok(())
        }
    }

    fn mbz(&self, off: u64, len: u64) -> Result<(), MemError> {
        for o in off..off + len {
            if self.u8(o)? != 0 {
                return Err(MemError::ReservedNotZero { offset: o });
            }
        }
        Ok(())
    }
}

/// Options for [`MemTransaction::parse`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Reject unless the sender field equals this ID (an SPMC passes the caller's ID for a
    /// send; a receiver may pass the expected owner).
    pub expected_sender: Option<PartitionId>,
    /// Reject unless the EMAD size is this one (an SPMC passes the size for the caller's
    /// declared version). `None` accepts 16 and 32.
    pub emad_size: Option<EmadSize>,
}

/// A memory transaction descriptor, parsed (owning every field) or to be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemTransaction {
    pub sender_id: PartitionId,
    pub attributes: MemRegionAttributes,
    pub flags: MemFlags,
    pub handle: Handle,
    pub tag: u64,
    pub emad_size: EmadSize,
    pub receivers: Vec<Emad>,
    /// Constituent ranges; empty in a retrieve request.
    pub ranges: Vec<MemRange>,
}

impl MemTransaction {
    /// The retrieve request a borrower sends for `handle` (Hafnium's expected form: one
    /// EMAD for `receiver`, composite offset 0, no ranges). `tx_type` must match the send
    /// (or be `Unspecified`); for a single-borrower lend/donate Hafnium requires an
    /// instruction access (e.g. `NotExecutable`). Attributes are left unspecified so the
    /// SPMC supplies them. Use `EmadSize::for_version(declared)`.
    pub fn retrieve_request(
        handle: Handle,
        sender_id: PartitionId,
        receiver: MemAccessPerm,
        tx_type: TransactionType,
        tag: u64,
        emad_size: EmadSize,
    ) -> Self {
        Self {
            sender_id,
            attributes: MemRegionAttributes {
                mem_type: MemType::Unspecified,
                ns: false,
            },
            flags: MemFlags(0).with_type(tx_type),
            handle,
            tag,
            emad_size,
            receivers: alloc::vec![Emad::new(receiver)],
            ranges: Vec::new(),
        }
    }

    /// The retrieve response an SPMC returns for the stored send descriptor `sent`: the
    /// sender's attributes (plus NS if the memory stays non-secure for the borrower), the
    /// sender's flags with the transaction type, one EMAD with the granted permissions,
    /// and all ranges, in the borrower's EMAD size.
    pub fn retrieve_response(
        sent: &MemTransaction,
        handle: Handle,
        tx_type: TransactionType,
        granted: MemAccessPerm,
        ns: bool,
        emad_size: EmadSize,
    ) -> Self {
        let impdef = sent
            .receivers
            .iter()
            .find(|e| e.perm.endpoint_id == granted.endpoint_id)
            .map_or([0; 2], |e| e.impdef);
        Self {
            sender_id: sent.sender_id,
            attributes: MemRegionAttributes {
                mem_type: sent.attributes.mem_type,
                ns,
            },
            flags: MemFlags(sent.flags.0 & allowed_flags(DescKind::RetrieveResp))
                .with_type(tx_type),
            handle,
            tag: sent.tag,
            emad_size,
            receivers: alloc::vec![Emad {
                perm: granted,
                impdef: if emad_size == EmadSize::V1_2 {
                    impdef
                } else {
                    [0; 2]
                },
            }],
            ranges: sent.ranges.clone(),
        }
    }

    /// Total pages over all ranges.
    pub fn total_pages(&self) -> u64 {
        self.ranges.iter().map(|r| u64::from(r.page_count)).sum()
    }

    fn layout(&self, kind: DescKind) -> Result<Layout, MemError> {
        let n = self.receivers.len();
        let emad_end = n
            .checked_mul(self.emad_size.bytes())
            .and_then(|v| v.checked_add(TRANSACTION_HEADER_SIZE))
            .ok_or(MemError::TooLarge)?;
        let (composite, end) = if kind == DescKind::RetrieveReq && self.ranges.is_empty() {
            (0, emad_end)
        } else {
            let end = self
                .ranges
                .len()
                .checked_mul(RANGE_SIZE)
                .and_then(|v| v.checked_add(emad_end + COMPOSITE_HEADER_SIZE))
                .ok_or(MemError::TooLarge)?;
            (emad_end, end)
        };
        if u32::try_from(end).is_err()
            || u32::try_from(n).is_err()
            || u32::try_from(self.ranges.len()).is_err()
        {
            return Err(MemError::TooLarge);
        }
        Ok(Layout { composite, end })
    }

    /// Bytes [`Self::encode`] writes.
    pub fn encoded_len(&self, kind: DescKind) -> Result<usize, MemError> {
        Ok(self.layout(kind)?.end)
    }

    /// Write the descriptor into `buf`: header, EMADs at offset 48, then (unless this is a
    /// retrieve request without ranges, whose composite offsets are 0) the composite and
    /// its ranges right after the EMADs. Returns the length written. The composite's page
    /// count saturates at u32::MAX; the parser rejects such a descriptor, as it should.
    pub fn encode(&self, kind: DescKind, buf: &mut [u8]) -> Result<usize, MemError> {
        let l = self.layout(kind)?;
        let available = buf.len();
        let out = buf.get_mut(..l.end).ok_or(MemError::Truncated {
            needed: l.end as u64,
            available,
        })?;
        out.fill(0);
        put(out, 0, &self.sender_id.to_le_bytes());
        put(out, 2, &self.attributes.to_u16().to_le_bytes());
        put(out, 4, &self.flags.0.to_le_bytes());
        put(out, 8, &self.handle.0.to_le_bytes());
        put(out, 16, &self.tag.to_le_bytes());
        put(out, 24, &(self.emad_size.bytes() as u32).to_le_bytes());
        put(out, 28, &(self.receivers.len() as u32).to_le_bytes());
        put(out, 32, &(TRANSACTION_HEADER_SIZE as u32).to_le_bytes());
        for (i, e) in self.receivers.iter().enumerate() {
            if self.emad_size == EmadSize::V1_1 && e.impdef != [0; 2] {
                return Err(MemError::ImpdefInV11Emad { index: i as u32 });
            }
            let o = TRANSACTION_HEADER_SIZE + i * self.emad_size.bytes();
            put(out, o, &e.perm.endpoint_id.to_le_bytes());
            out[o + 2] = e.perm.perm_byte();
            out[o + 3] = e.perm.non_retrieval_borrower.into();
            put(out, o + 4, &(l.composite as u32).to_le_bytes());
            if self.emad_size == EmadSize::V1_2 {
                put(out, o + 8, &e.impdef[0].to_le_bytes());
                put(out, o + 16, &e.impdef[1].to_le_bytes());
            }
        }
        if l.composite != 0 {
            let c = l.composite;
            let pages = u32::try_from(self.total_pages()).unwrap_or(u32::MAX);
            put(out, c, &pages.to_le_bytes());
            put(out, c + 4, &(self.ranges.len() as u32).to_le_bytes());
            for (i, r) in self.ranges.iter().enumerate() {
                let o = c + COMPOSITE_HEADER_SIZE + i * RANGE_SIZE;
                put(out, o, &r.address.to_le_bytes());
                put(out, o + 8, &r.page_count.to_le_bytes());
            }
        }
        Ok(l.end)
    }

    /// Build into a new vector.
    pub fn to_vec(&self, kind: DescKind) -> Result<Vec<u8>, MemError> {
        let mut v = alloc::vec![0u8; self.encoded_len(kind)?];
        self.encode(kind, &mut v)?;
        Ok(v)
    }

    /// Parse and validate a complete descriptor (all fragments reassembled) of `kind`.
    /// `buf` must be a private copy; see the module doc.
    pub fn parse(buf: &[u8], kind: DescKind, opts: ParseOptions) -> Result<Self, MemError> {
        let r = Rd(buf);
        r.need(TRANSACTION_HEADER_SIZE as u64)?;
        let sender_id = r.u16(0)?;
        let attr_raw = r.u16(2)?;
        let flags = MemFlags(r.u32(4)?);
        let handle = Handle(r.u64(8)?);
        let tag = r.u64(16)?;
        let size_raw = r.u32(24)?;
        let count = r.u32(28)?;
        let emad_off = r.u32(32)?;
        r.mbz(36, 12)?;

        // Header fields, cheapest and most specific first.
        if let Some(expected) = opts.expected_sender
            && expected != sender_id
        {
            return Err(MemError::WrongSender {
                expected,
                found: sender_id,
            });
        }
        let emad_size = EmadSize::from_u32(size_raw)
            .filter(|s| opts.emad_size.is_none_or(|want| want == *s))
            .ok_or(MemError::BadEmadSize(size_raw))?;
        if count == 0 {
            return Err(MemError::NoReceivers);
        }
        if (emad_off as usize) < TRANSACTION_HEADER_SIZE || !emad_off.is_multiple_of(16) {
            return Err(MemError::BadEmadOffset(emad_off));
        }
        let esz = emad_size.bytes() as u64;
        let emad_end = u64::from(emad_off) + u64::from(count) * esz;
        r.need(emad_end)?;
        let attributes = MemRegionAttributes::from_u16(attr_raw)?;
        check_attributes(kind, attributes, attr_raw, flags)?;
        check_flags(kind, flags)?;
        match kind {
            DescKind::Send(_) if handle.0 != 0 => return Err(MemError::BadHandle(handle.0)),
            DescKind::RetrieveReq | DescKind::RetrieveResp if handle == Handle::INVALID => {
                return Err(MemError::BadHandle(handle.0));
            }
            _ => {}
        }

        // EMADs. `count` is bounded by the buffer (checked above), so this allocation is
        // at most buf.len() / 16 entries.
        let mut receivers = Vec::with_capacity(count as usize);
        let mut composite = 0u32;
        for i in 0..count {
            let o = u64::from(emad_off) + u64::from(i) * esz;
            let flags_byte = r.u8(o + 3)?;
            let perm = MemAccessPerm::from_bytes(i, r.u16(o)?, r.u8(o + 2)?, flags_byte)?;
            check_perm(kind, i, &perm)?;
            let c = r.u32(o + 4)?;
            if i == 0 {
                composite = c;
            } else if c != composite {
                return Err(MemError::CompositeOffsetMismatch {
                    index: i,
                    offset: c,
                    first: composite,
                });
            }
            let impdef = match emad_size {
                EmadSize::V1_1 => {
                    r.mbz(o + 8, 8)?;
                    [0; 2]
                }
                EmadSize::V1_2 => {
                    r.mbz(o + 24, 8)?;
                    [r.u64(o + 8)?, r.u64(o + 16)?]
                }
            };
            if receivers
                .iter()
                .any(|e: &Emad| e.perm.endpoint_id == perm.endpoint_id)
            {
                return Err(MemError::DuplicateReceiver(perm.endpoint_id));
            }
            receivers.push(Emad { perm, impdef });
        }

        // Composite and ranges.
        let ranges = if kind == DescKind::RetrieveReq {
            if composite != 0 {
                return Err(MemError::BadCompositeOffset(composite));
            }
            if buf.len() as u64 != emad_end {
                return Err(MemError::LengthMismatch {
                    expected: emad_end,
                    actual: buf.len(),
                });
            }
            Vec::new()
        } else {
            if u64::from(composite) < emad_end || !composite.is_multiple_of(8) {
                return Err(MemError::BadCompositeOffset(composite));
            }
            let c = u64::from(composite);
            r.need(c + COMPOSITE_HEADER_SIZE as u64)?;
            let declared = r.u32(c)?;
            let n = r.u32(c + 4)?;
            r.mbz(c + 8, 8)?;
            if n == 0 {
                return Err(MemError::NoRanges);
            }
            let first = c + COMPOSITE_HEADER_SIZE as u64;
            r.need(first + u64::from(n) * RANGE_SIZE as u64)?;
            let mut ranges = Vec::with_capacity(n as usize);
            let mut total = 0u64;
            for i in 0..n {
                let o = first + u64::from(i) * RANGE_SIZE as u64;
                let range = MemRange {
                    address: r.u64(o)?,
                    page_count: r.u32(o + 8)?,
                };
                r.mbz(o + 12, 4)?;
                if range.page_count == 0 {
                    return Err(MemError::ZeroLengthRange { index: i });
                }
                if !range.address.is_multiple_of(PAGE_SIZE as u64) {
                    return Err(MemError::MisalignedRange {
                        index: i,
                        address: range.address,
                    });
                }
                if range.end().is_none() {
                    return Err(MemError::RangeWraps { index: i });
                }
                total += u64::from(range.page_count);
                ranges.push(range);
            }
            if u64::from(declared) != total {
                return Err(MemError::PageCountMismatch {
                    declared,
                    actual: total,
                });
            }
            check_overlap(&ranges)?;
            ranges
        };

        Ok(Self {
            sender_id,
            attributes,
            flags,
            handle,
            tag,
            emad_size,
            receivers,
            ranges,
        })
    }
}

struct Layout {
    composite: usize,
    end: usize,
}

fn put(out: &mut [u8], off: usize, b: &[u8]) {
    if let Some(d) = out.get_mut(off..off + b.len()) {
        d.copy_from_slice(b);
    }
}

fn check_attributes(
    kind: DescKind,
    a: MemRegionAttributes,
    raw: u16,
    flags: MemFlags,
) -> Result<(), MemError> {
    let ok = match kind {
        // Only the SPMC states the security state (v1.1 sec. 10.10.4.1.1). A share names the
        // type; whether a lend or donate may is a rule of the receiver count, checked by the
        // SPMC (Hafnium: a single-borrower lend/donate must leave it unspecified).
        DescKind::Send(s) => !a.ns && (s != SendKind::Share || a.mem_type != MemType::Unspecified),
        DescKind::RetrieveReq => !a.ns,
        // The SPMC copies the sender's attributes (plus NS): a share's type is always named; a
        // lend/donate's may be unspecified (Hafnium, and TF-A's EL3 SPMC for Linux's lends).
        // The transaction type may be left out of a response's flags, so only a response that
        // says it answers a share must carry a type.
        DescKind::RetrieveResp => {
            a.mem_type != MemType::Unspecified || flags.transaction_type() != TransactionType::Share
        }
    };
    if ok {
        Ok(())
    } else {
        Err(MemError::AttributesNotAllowed(raw))
    }
}

/// Flag bits a descriptor of `kind` may set.
const fn allowed_flags(kind: DescKind) -> u32 {
    match kind {
        // Zeroing shared memory makes no sense: the owner keeps access.
        DescKind::Send(SendKind::Share) => MemFlags::TIME_SLICING,
        DescKind::Send(_) => MemFlags::ZERO_MEMORY | MemFlags::TIME_SLICING,
        DescKind::RetrieveReq => 0x7FF,
        // Hafnium copies the sender's flags (plus the transaction type) into the response.
        DescKind::RetrieveResp => {
            MemFlags::ZERO_MEMORY
                | MemFlags::TIME_SLICING
                | MemFlags::ZERO_AFTER_RELINQUISH
                | MemFlags::TYPE_MASK
        }
    }
}

fn check_flags(kind: DescKind, f: MemFlags) -> Result<(), MemError> {
    if f.0 & !allowed_flags(kind) != 0 {
        Err(MemError::BadFlags(f.0))
    } else {
        Ok(())
    }
}

fn check_perm(kind: DescKind, index: u32, p: &MemAccessPerm) -> Result<(), MemError> {
    let ok = match kind {
        // Sender states data access; the borrower picks instruction access at retrieve.
        DescKind::Send(SendKind::Share | SendKind::Lend) => {
            p.data_access != DataAccess::NotSpecified
                && p.instruction_access == InstructionAccess::NotSpecified
        }
        // A donor gives up the memory and says nothing about the new owner's access.
        DescKind::Send(SendKind::Donate) => {
            p.data_access == DataAccess::NotSpecified
                && p.instruction_access == InstructionAccess::NotSpecified
        }
        DescKind::RetrieveReq | DescKind::RetrieveResp => true,
    };
    if !ok {
        return Err(MemError::PermissionsNotAllowed {
            index,
            perms: p.perm_byte(),
        });
    }
    // The response echoes the sender's EMAD, so only the request must leave it clear.
    if p.non_retrieval_borrower && kind == DescKind::RetrieveReq {
        return Err(MemError::BadEmadFlags { index, flags: 1 });
    }
    Ok(())
}

/// Rejects overlapping ranges in O(n log n) on a sorted index copy.
fn check_overlap(ranges: &[MemRange]) -> Result<(), MemError> {
    let mut idx: Vec<u32> = (0..ranges.len() as u32).collect();
    idx.sort_unstable_by_key(|&i| ranges.get(i as usize).map(|r| r.address));
    for w in idx.windows(2) {
        let (Some(a), Some(b)) = (ranges.get(w[0] as usize), ranges.get(w[1] as usize)) else {
            continue;
        };
        // a.address <= b.address; ends checked not to wrap.
        if a.end().is_none_or(|end| end > b.address) {
            let (first, second) = (w[0].min(w[1]), w[0].max(w[1]));
            return Err(MemError::OverlappingRanges { first, second });
        }
    }
    Ok(())
}

/// FFA_MEM_RELINQUISH descriptor (in the caller's TX buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemRelinquishDesc {
    pub handle: Handle,
    /// Bit 0: zero memory after relinquish; bit 1: time slicing. Others MBZ.
    pub flags: u32,
    pub endpoints: Vec<PartitionId>,
}

impl MemRelinquishDesc {
    pub const FLAG_ZERO: u32 = 1;
    pub const FLAG_TIME_SLICING: u32 = 2;

    pub fn encoded_len(&self) -> Result<usize, MemError> {
        self.endpoints
            .len()
            .checked_mul(2)
            .and_then(|n| n.checked_add(RELINQUISH_HEADER_SIZE))
            .filter(|_| u32::try_from(self.endpoints.len()).is_ok())
            .ok_or(MemError::TooLarge)
    }

    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, MemError> {
        let n = self.encoded_len()?;
        let available = buf.len();
        let out = buf.get_mut(..n).ok_or(MemError::Truncated {
            needed: n as u64,
            available,
        })?;
        out.fill(0);
        put(out, 0, &self.handle.0.to_le_bytes());
        put(out, 8, &self.flags.to_le_bytes());
        put(out, 12, &(self.endpoints.len() as u32).to_le_bytes());
        for (i, id) in self.endpoints.iter().enumerate() {
            put(out, RELINQUISH_HEADER_SIZE + 2 * i, &id.to_le_bytes());
        }
        Ok(n)
    }

    /// Parse a relinquish descriptor (hostile input, private copy).
    pub fn parse(buf: &[u8]) -> Result<Self, MemError> {
        let r = Rd(buf);
        r.need(RELINQUISH_HEADER_SIZE as u64)?;
        let handle = Handle(r.u64(0)?);
        let flags = r.u32(8)?;
        let n = r.u32(12)?;
        if flags & !3 != 0 {
            return Err(MemError::BadFlags(flags));
        }
        if handle == Handle::INVALID {
            return Err(MemError::BadHandle(handle.0));
        }
        if n == 0 {
            return Err(MemError::NoEndpoints);
        }
        r.need(RELINQUISH_HEADER_SIZE as u64 + 2 * u64::from(n))?;
        let mut endpoints = Vec::with_capacity(n as usize);
        for i in 0..u64::from(n) {
            let id = r.u16(RELINQUISH_HEADER_SIZE as u64 + 2 * i)?;
            if endpoints.contains(&id) {
                return Err(MemError::DuplicateReceiver(id));
            }
            endpoints.push(id);
        }
        Ok(Self {
            handle,
            flags,
            endpoints,
        })
    }
}

/// Collects the fragments of a descriptor larger than one buffer (FFA_MEM_FRAG_TX from a
/// sender, or FFA_MEM_FRAG_RX answers to a retriever) into one private copy.
#[derive(Clone, Debug)]
pub struct FragmentAssembler {
    total: usize,
    buf: Vec<u8>,
}

impl FragmentAssembler {
    /// Start with the first fragment (which holds the header, EMADs and composite header).
    /// `max_total` bounds the allocation an untrusted `total_len` can cause.
    pub fn new(total_len: u32, first: &[u8], max_total: usize) -> Result<Self, MemError> {
        let total = total_len as usize;
        if total > max_total {
            return Err(MemError::TooLarge);
        }
        if first.is_empty() || first.len() > total {
            return Err(MemError::Truncated {
                needed: total as u64,
                available: first.len(),
            });
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(total)
            .map_err(|_| MemError::TooLarge)?;
        buf.extend_from_slice(first);
        Ok(Self { total, buf })
    }

    /// Bytes received so far (the offset for the next FFA_MEM_FRAG_RX).
    pub fn received(&self) -> usize {
        self.buf.len()
    }

    pub fn is_complete(&self) -> bool {
        self.buf.len() == self.total
    }

    /// Add the next fragment. Later fragments hold whole constituent ranges only, so their
    /// length must be a non-zero multiple of 16 and not exceed what remains.
    pub fn push(&mut self, frag: &[u8]) -> Result<bool, MemError> {
        let remaining = self.total - self.buf.len();
        if frag.is_empty() || frag.len() > remaining || !frag.len().is_multiple_of(RANGE_SIZE) {
            return Err(MemError::BadFragment {
                len: frag.len(),
                remaining,
            });
        }
        self.buf.extend_from_slice(frag);
        Ok(self.is_complete())
    }

    /// The whole descriptor, once complete.
    pub fn finish(self) -> Result<Vec<u8>, MemError> {
        if self.is_complete() {
            Ok(self.buf)
        } else {
            Err(MemError::Truncated {
                needed: self.total as u64,
                available: self.buf.len(),
            })
        }
    }
}

/// Split an encoded transaction descriptor of `total` bytes whose ranges start at
/// `ranges_start` (= composite offset + 16) into fragments of at most `max` bytes: the
/// first holds everything up to the ranges and as many whole ranges as fit, later ones
/// whole ranges only. Returns (offset, length) pairs, or `TooLarge` if the head does not
/// fit in `max`.
pub fn plan_fragments(
    total: usize,
    ranges_start: usize,
    max: usize,
) -> Result<impl Iterator<Item = (usize, usize)>, MemError> {
    if ranges_start > total
        || ranges_start > max
        || !(total - ranges_start).is_multiple_of(RANGE_SIZE)
        || max < RANGE_SIZE
    {
        return Err(MemError::TooLarge);
    }
    let whole = |room: usize| room - room % RANGE_SIZE;
    let first = ranges_start + whole((max - ranges_start).min(total - ranges_start));
    let step = whole(max);
    let mut off = 0usize;
    let mut next = first;
    Ok(core::iter::from_fn(move || {
        if off >= total {
            return None;
        }
        let len = next.min(total - off);
        let item = (off, len);
        off += len;
        next = step;
        Some(item)
    }))
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
