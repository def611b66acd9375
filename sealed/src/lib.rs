//! Sealed model packages (`.fsm`): the format both the host CLI and the secure partition use.
//!
//! A package keeps the GGUF metadata and tensor table readable but authenticated, and encrypts
//! the tensor data with AES-256-GCM in layer-aligned chunks under a fresh per-package content key
//! that is wrapped (X25519 + HKDF-SHA256 + AES-256-GCM) for one or more devices. The byte layout
//! is specified in `sealed/FORMAT.md`; this crate is its only implementation.
//!
//! - [`Package::parse`] reads a package as hostile input: every length and offset is checked and
//!   every failure is an [`Error`] variant, never a panic.
//! - [`seal`] builds a package from a GGUF file.
//! - [`Package::unwrap_key`] recovers the content key with a device secret and checks the header
//!   tag; [`open_chunk`] then decrypts and verifies one chunk in place in a caller-given buffer, so
//!   the partition can decrypt straight into secure memory; [`head_len`], [`Package::parse_head`]
//!   and [`open_chunk_detached`] do the same when only a private copy of the head is parsed and
//!   each chunk is copied from untrusted memory to its place in the plaintext.
//! - [`DeviceKeys`] derives a device's recipient and attestation keys from its root secret;
//!   [`attest`] builds and verifies the reports that say which model a partition runs.
#![no_std]

extern crate alloc;

pub mod attest;
mod crypto;
pub mod device;
mod format;
mod seal;

pub use crypto::{ContentKey, DeviceSecret, open_chunk, open_chunk_detached};
pub use device::{DeviceKeys, DevicePublic};
pub use format::{
    CHUNK_ENTRY_LEN, ChunkEntry, FIXED_HEADER_LEN, FORMAT_VERSION, Header, Layer, MAGIC,
    MAX_CHUNK_COUNT, MAX_CHUNK_LEN, MAX_RECIPIENTS, Package, RECIPIENT_LEN, Recipient, SIG_LEN,
    TAG_LEN, head_len,
};
pub use seal::{SealParams, default_model_id, plan_chunks, seal};

/// Every way reading, unwrapping or opening a package can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The package ends before the structure at `offset` (`need` bytes) is complete.
    Truncated {
        offset: usize,
        need: usize,
    },
    /// Bytes follow the last chunk: the length does not match the header.
    TrailingBytes {
        expected: usize,
        actual: usize,
    },
    BadMagic,
    UnsupportedVersion(u16),
    /// Flag bits this version does not define are set.
    UnknownFlags(u16),
    /// `header_len` disagrees with the sizes the header declares.
    HeaderLength {
        declared: u32,
        computed: u64,
    },
    BadMaxChunkLen(u32),
    BadChunkCount(u32),
    /// Chunk `index` is empty, too long, not contiguous with the previous one, or ends past the
    /// data section.
    BadChunk {
        index: u32,
    },
    /// The chunks do not cover the data section exactly.
    ChunksDoNotCoverData,
    /// A reserved field is not zero.
    Reserved {
        offset: usize,
    },
    BadRecipientCount(u16),
    /// No recipient record names this device's public key.
    NoRecipientForDevice,
    /// The wrapped content key failed authentication (corrupt record or wrong device secret).
    KeyUnwrap,
    /// The X25519 shared secret is all zero (a low-order ephemeral key).
    WeakEphemeralKey,
    /// The header tag does not match: the authenticated header was modified.
    HeaderAuth,
    /// The package carries no owner signature.
    Unsigned,
    /// The owner key in the header is not the expected one.
    WrongOwner,
    /// The owner signature does not verify.
    BadSignature,
    /// `index` is not a chunk of this package.
    NoSuchChunk(u32),
    /// The buffer for chunk `index` is not `plain_len + TAG_LEN` bytes.
    ChunkBufferLength {
        index: u32,
        expected: usize,
        actual: usize,
    },
    /// Chunk `index` failed authentication: modified, moved, or from another model or version.
    ChunkAuth {
        index: u32,
    },
}

/// Failures when sealing a GGUF file.
#[derive(Clone, Debug, PartialEq)]
pub enum SealError {
    /// The input is not a valid GGUF file.
    Gguf(llm_runtime::gguf::GgufError),
    /// `max_chunk_len` is 0 or above [`MAX_CHUNK_LEN`].
    BadMaxChunkLen(u32),
    /// The model would need more than [`MAX_CHUNK_COUNT`] chunks.
    TooManyChunks,
    /// Zero or more than [`MAX_RECIPIENTS`] recipients.
    BadRecipientCount(usize),
    /// A recipient public key is a low-order point.
    WeakRecipientKey(usize),
    /// The GGUF metadata is too large for the 32-bit header length.
    HeaderTooLarge,
    /// The package built does not read back (a sealer bug; never expected).
    Inconsistent(Error),
}

/// The owner's Ed25519 signing key type, for [`SealParams::owner`].
pub type OwnerKey = ed25519_dalek::SigningKey;
