//! Byte layout of a package (see `sealed/FORMAT.md`) and its hostile-input parser.

use crate::Error;
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 8] = *b"FSEALED\0";
pub const FORMAT_VERSION: u16 = 1;
/// Flag bit 0: an Ed25519 owner signature follows the recipient records.
pub const FLAG_SIGNED: u16 = 1;
/// Bytes of the fixed part of the header, before the chunk table.
pub const FIXED_HEADER_LEN: usize = 112;
pub const CHUNK_ENTRY_LEN: usize = 24;
pub const RECIPIENT_LEN: usize = 112;
pub const TAG_LEN: usize = 16;
pub const SIG_LEN: usize = 64;
/// Bytes between the header and the recipient records: header tag, count, reserved.
pub const HEADER_TAG_LEN: usize = 32;
/// Recipient count and reserved field.
pub const RECIPIENTS_PREFIX_LEN: usize = 4;
/// Upper bound on a chunk's plaintext (the pipeline's largest decrypt unit).
pub const MAX_CHUNK_LEN: u32 = 64 << 20;
pub const MAX_CHUNK_COUNT: u32 = 1 << 20;
pub const MAX_RECIPIENTS: u16 = 64;

/// Which part of the model a chunk belongs to (its `layer` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The tensors `blk.N.*`.
    Block(u32),
    /// `token_embd.*`.
    Embeddings,
    /// `output_norm.*`.
    OutputNorm,
    /// `output.*` (the head).
    Head,
    /// Any other tensor (e.g. rope factors).
    Other,
}

const LAYER_EMBEDDINGS: u32 = 0xFFFF_FF00;
const LAYER_OUTPUT_NORM: u32 = 0xFFFF_FF01;
const LAYER_HEAD: u32 = 0xFFFF_FF02;
const LAYER_OTHER: u32 = 0xFFFF_FF03;
/// Block numbers are below this; the codes above are the named parts.
const LAYER_BLOCK_LIMIT: u32 = 0xFFFF_FF00;

impl Layer {
    pub fn code(self) -> u32 {
        match self {
            Layer::Block(n) => n,
            Layer::Embeddings => LAYER_EMBEDDINGS,
            Layer::OutputNorm => LAYER_OUTPUT_NORM,
            Layer::Head => LAYER_HEAD,
            Layer::Other => LAYER_OTHER,
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            n if n < LAYER_BLOCK_LIMIT => Layer::Block(n),
            LAYER_EMBEDDINGS => Layer::Embeddings,
            LAYER_OUTPUT_NORM => Layer::OutputNorm,
            LAYER_HEAD => Layer::Head,
            LAYER_OTHER => Layer::Other,
            _ => return None,
        })
    }

    /// The part a tensor belongs to, by its GGUF name.
    pub fn of_tensor(name: &str) -> Self {
        if let Some(rest) = name.strip_prefix("blk.")
            && let Some((n, _)) = rest.split_once('.')
            && let Ok(n) = n.parse::<u32>()
            && n < LAYER_BLOCK_LIMIT
        {
            return Layer::Block(n);
        }
        match name.split_once('.').map_or(name, |(p, _)| p) {
            "token_embd" => Layer::Embeddings,
            "output_norm" => Layer::OutputNorm,
            "output" => Layer::Head,
            _ => Layer::Other,
        }
    }
}

/// One chunk-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset of the plaintext inside the GGUF data section.
    pub plain_offset: u64,
    pub plain_len: u32,
    pub layer: Layer,
    /// Sub-chunk number when a layer is larger than `max_chunk_len` (0 otherwise).
    pub part: u32,
}

/// The authenticated header, parsed; borrows the package bytes.
#[derive(Clone, Debug)]
pub struct Header<'a> {
    pub flags: u16,
    pub model_id: [u8; 32],
    pub package_version: u64,
    pub max_chunk_len: u32,
    pub chunk_count: u32,
    pub data_len: u64,
    /// Ed25519 owner key (all zero when unsigned).
    pub owner_key: [u8; 32],
    /// The GGUF file up to its data section: metadata and tensor table, readable.
    pub gguf_prefix: &'a [u8],
    /// SHA-256 of the header bytes.
    pub hash: [u8; 32],
    /// Length of the header in the package.
    pub len: usize,
    table: &'a [u8],
}

/// One device recipient record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub device_key: [u8; 32],
    pub ephemeral_key: [u8; 32],
    pub wrapped_key: [u8; 32 + TAG_LEN],
}

/// A whole package, parsed and length-checked.
#[derive(Clone, Debug)]
pub struct Package<'a> {
    pub header: Header<'a>,
    pub header_tag: [u8; 32],
    recipients: &'a [u8],
    pub signature: Option<[u8; SIG_LEN]>,
    /// Offset of chunk 0's ciphertext in the package.
    pub chunks_offset: usize,
    bytes: &'a [u8],
}

/// A bounds-checked little-endian reader.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated {
            offset: self.pos,
            need: n,
        })?;
        let s = self.buf.get(self.pos..end).ok_or(Error::Truncated {
            offset: self.pos,
            need: n,
        })?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// Magic, version, flags and `header_len`: the first 16 bytes, checked.
fn read_preamble(r: &mut Reader<'_>) -> Result<(u16, u32), Error> {
    if r.array::<8>()? != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = r.u16()?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let flags = r.u16()?;
    if flags & !FLAG_SIGNED != 0 {
        return Err(Error::UnknownFlags(flags));
    }
    Ok((flags, r.u32()?))
}

impl<'a> Header<'a> {
    /// Parses and checks the header at the start of `bytes` (the rest may be absent).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, 0);
        let (flags, header_len) = read_preamble(&mut r)?;
        let model_id = r.array()?;
        let package_version = r.u64()?;
        let max_chunk_len = r.u32()?;
        if max_chunk_len == 0 || max_chunk_len > MAX_CHUNK_LEN {
            return Err(Error::BadMaxChunkLen(max_chunk_len));
        }
        let chunk_count = r.u32()?;
        if chunk_count > MAX_CHUNK_COUNT {
            return Err(Error::BadChunkCount(chunk_count));
        }
        let prefix_len = r.u64()?;
        let data_len = r.u64()?;
        let owner_key = r.array()?;
        debug_assert_eq!(r.pos, FIXED_HEADER_LEN);
        // All operands are bounded (count <= 2^20, prefix_len < 2^64): u128 cannot overflow.
        let computed = FIXED_HEADER_LEN as u128
            + chunk_count as u128 * CHUNK_ENTRY_LEN as u128
            + prefix_len as u128;
        if computed != header_len as u128 {
            return Err(Error::HeaderLength {
                declared: header_len,
                computed: u64::try_from(computed).unwrap_or(u64::MAX),
            });
        }
        let table = r.take(chunk_count as usize * CHUNK_ENTRY_LEN)?;
        // prefix_len fits: header_len (a u32) bounds it.
        let gguf_prefix = r.take(prefix_len as usize)?;
        let len = header_len as usize;
        let hash: [u8; 32] = Sha256::digest(&bytes[..len]).into();
        let header = Header {
            flags,
            model_id,
            package_version,
            max_chunk_len,
            chunk_count,
            data_len,
            owner_key,
            gguf_prefix,
            hash,
            len,
            table,
        };
        header.check_chunks()?;
        Ok(header)
    }

    /// Chunks are non-empty, bounded, contiguous from 0 and cover `data_len` exactly; parts count
    /// up within one layer's run.
    fn check_chunks(&self) -> Result<(), Error> {
        let mut next: u64 = 0;
        let mut prev: Option<ChunkEntry> = None;
        for index in 0..self.chunk_count {
            let c = self.read_chunk(index)?;
            let ok_part = c.part == 0
                || prev
                    .is_some_and(|p| p.layer == c.layer && p.part.checked_add(1) == Some(c.part));
            if c.plain_len == 0
                || c.plain_len > self.max_chunk_len
                || c.plain_offset != next
                || !ok_part
            {
                return Err(Error::BadChunk { index });
            }
            next = next
                .checked_add(c.plain_len as u64)
                .filter(|&n| n <= self.data_len)
                .ok_or(Error::BadChunk { index })?;
            prev = Some(c);
        }
        if next != self.data_len {
            return Err(Error::ChunksDoNotCoverData);
        }
        Ok(())
    }

    fn read_chunk(&self, index: u32) -> Result<ChunkEntry, Error> {
        let at = index as usize * CHUNK_ENTRY_LEN;
        let mut r = Reader::new(self.table, at);
        let plain_offset = r.u64()?;
        let plain_len = r.u32()?;
        let layer = Layer::from_code(r.u32()?).ok_or(Error::BadChunk { index })?;
        let part = r.u32()?;
        if r.u32()? != 0 {
            return Err(Error::Reserved {
                offset: FIXED_HEADER_LEN + at + 20,
            });
        }
        Ok(ChunkEntry {
            plain_offset,
            plain_len,
            layer,
            part,
        })
    }

    /// Chunk-table entry `index` (already validated at parse time).
    pub fn chunk(&self, index: u32) -> Result<ChunkEntry, Error> {
        if index >= self.chunk_count {
            return Err(Error::NoSuchChunk(index));
        }
        self.read_chunk(index)
    }

    pub fn chunks(&self) -> impl Iterator<Item = ChunkEntry> + '_ {
        (0..self.chunk_count).filter_map(|i| self.read_chunk(i).ok())
    }

    pub fn is_signed(&self) -> bool {
        self.flags & FLAG_SIGNED != 0
    }

    /// Offset of chunk `index`'s ciphertext relative to the first chunk: the plaintext offset
    /// plus one tag per preceding chunk.
    pub fn chunk_cipher_offset(&self, index: u32) -> Result<u64, Error> {
        let c = self.chunk(index)?;
        Ok(c.plain_offset + index as u64 * TAG_LEN as u64)
    }

    /// Total bytes of all chunks with their tags.
    pub fn chunks_len(&self) -> u64 {
        self.data_len + self.chunk_count as u64 * TAG_LEN as u64
    }
}

/// Bytes from the start of a package to its first chunk (header, tag, recipients, signature),
/// read from a prefix of it: `Err(Truncated)` says how much more the prefix must hold before
/// the length is known. Lets a reader copy exactly the head out of memory it does not trust.
pub fn head_len(prefix: &[u8]) -> Result<usize, Error> {
    let mut r = Reader::new(prefix, 0);
    let (flags, header_len) = read_preamble(&mut r)?;
    let header_len = header_len as usize;
    let mut r = Reader::new(prefix, header_len + HEADER_TAG_LEN);
    let count = r.u16()?;
    if count == 0 || count > MAX_RECIPIENTS {
        return Err(Error::BadRecipientCount(count));
    }
    let sig = if flags & FLAG_SIGNED != 0 { SIG_LEN } else { 0 };
    Ok(header_len + HEADER_TAG_LEN + RECIPIENTS_PREFIX_LEN + count as usize * RECIPIENT_LEN + sig)
}

impl<'a> Package<'a> {
    /// Parses a whole package. Its length must match the header exactly.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::parse_head(bytes, bytes.len())
    }

    /// Parses a package of `total_len` bytes from `head`, which holds at least its first
    /// [`head_len`] bytes (a private copy; the chunks may stay where they are and be opened
    /// with [`crate::open_chunk_detached`]). [`Package::chunk_bytes`] only finds chunks inside
    /// `head`.
    pub fn parse_head(head: &'a [u8], total_len: usize) -> Result<Self, Error> {
        let bytes = head;
        let header = Header::parse(bytes)?;
        let mut r = Reader::new(bytes, header.len);
        let header_tag = r.array()?;
        let count = r.u16()?;
        if count == 0 || count > MAX_RECIPIENTS {
            return Err(Error::BadRecipientCount(count));
        }
        let reserved_at = r.pos;
        if r.u16()? != 0 {
            return Err(Error::Reserved {
                offset: reserved_at,
            });
        }
        let recipients = r.take(count as usize * RECIPIENT_LEN)?;
        let signature = if header.is_signed() {
            Some(r.array()?)
        } else {
            None
        };
        let chunks_offset = r.pos;
        let expected = (chunks_offset as u64)
            .checked_add(header.chunks_len())
            .and_then(|e| usize::try_from(e).ok())
            .ok_or(Error::Truncated {
                offset: chunks_offset,
                need: usize::MAX,
            })?;
        if total_len < expected {
            return Err(Error::Truncated {
                offset: total_len,
                need: expected - total_len,
            });
        }
        if total_len > expected {
            return Err(Error::TrailingBytes {
                expected,
                actual: total_len,
            });
        }
        Ok(Package {
            header,
            header_tag,
            recipients,
            signature,
            chunks_offset,
            bytes,
        })
    }

    pub fn recipient_count(&self) -> usize {
        self.recipients.len() / RECIPIENT_LEN
    }

    pub fn recipient(&self, i: usize) -> Option<Recipient> {
        let rec = self
            .recipients
            .get(i.checked_mul(RECIPIENT_LEN)?..)?
            .get(..RECIPIENT_LEN)?;
        let mut r = Reader::new(rec, 0);
        Some(Recipient {
            device_key: r.array().ok()?,
            ephemeral_key: r.array().ok()?,
            wrapped_key: r.array().ok()?,
        })
    }

    /// Range of chunk `index` (ciphertext and tag) in the package bytes.
    pub fn chunk_range(&self, index: u32) -> Result<core::ops::Range<usize>, Error> {
        let c = self.header.chunk(index)?;
        // In bounds: parse checked the package length covers every chunk.
        let start = self.chunks_offset + self.header.chunk_cipher_offset(index)? as usize;
        Ok(start..start + c.plain_len as usize + TAG_LEN)
    }

    /// Chunk `index`'s ciphertext and tag.
    pub fn chunk_bytes(&self, index: u32) -> Result<&'a [u8], Error> {
        let range = self.chunk_range(index)?;
        self.bytes.get(range).ok_or(Error::NoSuchChunk(index))
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}
