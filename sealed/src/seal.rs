//! Building a package from a GGUF file.

use crate::SealError;
use crate::crypto::{self, ContentKey};
use crate::format::{
    CHUNK_ENTRY_LEN, ChunkEntry, FIXED_HEADER_LEN, FLAG_SIGNED, FORMAT_VERSION, HEADER_TAG_LEN,
    Header, Layer, MAGIC, MAX_CHUNK_COUNT, MAX_CHUNK_LEN, MAX_RECIPIENTS, RECIPIENT_LEN,
    RECIPIENTS_PREFIX_LEN, SIG_LEN, TAG_LEN,
};
use alloc::vec::Vec;
use llm_runtime::gguf::Gguf;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

/// What to seal a model as.
pub struct SealParams<'a> {
    /// Stable identity of the model across versions (chosen by the owner).
    pub model_id: [u8; 32],
    /// The package version; a newer package of the same model has a higher one.
    pub package_version: u64,
    /// Largest chunk plaintext; layers above it are split into parts.
    pub max_chunk_len: u32,
    /// X25519 public keys of the devices that may open the package.
    pub recipients: &'a [[u8; 32]],
    /// The owner's Ed25519 key, to sign the header.
    pub owner: Option<&'a ed25519_dalek::SigningKey>,
}

/// The model id `flexserve seal` and xtask use when the owner names none: SHA-256 of the GGUF
/// file's metadata and tensor table (its bytes up to the data section, `data_offset`).
pub fn default_model_id(gguf: &[u8], data_offset: usize) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(gguf.get(..data_offset).unwrap_or(gguf)).into()
}

/// The chunk table for a GGUF file: tensors in data order grouped into runs of one layer, each
/// run covering from its first tensor to the next run (padding included), split at
/// `max_chunk_len`. Returns the data section's offset and the chunks.
pub fn plan_chunks(gguf: &[u8], max_chunk_len: u32) -> Result<(usize, Vec<ChunkEntry>), SealError> {
    if max_chunk_len == 0 || max_chunk_len > MAX_CHUNK_LEN {
        return Err(SealError::BadMaxChunkLen(max_chunk_len));
    }
    let g = Gguf::parse(gguf).map_err(SealError::Gguf)?;
    let data_len = gguf.len().saturating_sub(g.data_offset) as u64;
    let mut tensors: Vec<(u64, Layer)> = g
        .tensors()
        .iter()
        .map(|t| (t.offset, Layer::of_tensor(t.name)))
        .collect();
    tensors.sort_by_key(|t| t.0);
    // Runs: (start, layer). The first run starts at 0 so leading bytes are covered too.
    let mut runs: Vec<(u64, Layer)> = Vec::new();
    for (off, layer) in tensors {
        match runs.last() {
            Some(&(_, l)) if l == layer => {}
            None => runs.push((0, layer)),
            Some(_) => runs.push((off, layer)),
        }
    }
    if runs.is_empty() {
        // No tensors: whatever follows the table is one chunk of its own.
        runs.push((0, Layer::Other));
    }
    let mut chunks = Vec::new();
    for (i, &(start, layer)) in runs.iter().enumerate() {
        let end = runs.get(i + 1).map_or(data_len, |r| r.0);
        let mut at = start;
        let mut part = 0u32;
        while at < end {
            let len = (end - at).min(max_chunk_len as u64) as u32;
            chunks.push(ChunkEntry {
                plain_offset: at,
                plain_len: len,
                layer,
                part,
            });
            if chunks.len() > MAX_CHUNK_COUNT as usize {
                return Err(SealError::TooManyChunks);
            }
            at += len as u64;
            part += 1;
        }
    }
    Ok((g.data_offset, chunks))
}

/// Seals `gguf` for the given recipients. Draws the content key and one ephemeral key per
/// recipient from `rng`.
pub fn seal(
    gguf: &[u8],
    params: &SealParams<'_>,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>, SealError> {
    let n = params.recipients.len();
    if n == 0 || n > MAX_RECIPIENTS as usize {
        return Err(SealError::BadRecipientCount(n));
    }
    let (data_offset, chunks) = plan_chunks(gguf, params.max_chunk_len)?;
    let data = gguf.get(data_offset..).unwrap_or_default();
    let header_len = FIXED_HEADER_LEN + chunks.len() * CHUNK_ENTRY_LEN + data_offset;
    let header_len32 = u32::try_from(header_len).map_err(|_| SealError::HeaderTooLarge)?;
    let flags = if params.owner.is_some() {
        FLAG_SIGNED
    } else {
        0
    };
    let owner_key = params
        .owner
        .map_or([0; 32], |k| k.verifying_key().to_bytes());

    let total = header_len
        + HEADER_TAG_LEN
        + RECIPIENTS_PREFIX_LEN
        + n * RECIPIENT_LEN
        + if params.owner.is_some() { SIG_LEN } else { 0 }
        + data.len()
        + chunks.len() * TAG_LEN;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&header_len32.to_le_bytes());
    out.extend_from_slice(&params.model_id);
    out.extend_from_slice(&params.package_version.to_le_bytes());
    out.extend_from_slice(&params.max_chunk_len.to_le_bytes());
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data_offset as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&owner_key);
    for c in &chunks {
        out.extend_from_slice(&c.plain_offset.to_le_bytes());
        out.extend_from_slice(&c.plain_len.to_le_bytes());
        out.extend_from_slice(&c.layer.code().to_le_bytes());
        out.extend_from_slice(&c.part.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    out.extend_from_slice(gguf.get(..data_offset).unwrap_or_default());

    let mut content = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(content.as_mut());
    let key = ContentKey::derive(&content);
    // Re-read what was written so sealing and opening share one view of the header.
    let header_hash = Header::parse(&out).map_err(SealError::Inconsistent)?.hash;
    out.extend_from_slice(
        &key.header_tag(&header_hash)
            .ok_or(SealError::Inconsistent(crate::Error::HeaderAuth))?,
    );
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    for (i, device) in params.recipients.iter().enumerate() {
        let mut eph = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(eph.as_mut());
        let r = crypto::wrap_for(&content, *eph, device).ok_or(SealError::WeakRecipientKey(i))?;
        out.extend_from_slice(&r.device_key);
        out.extend_from_slice(&r.ephemeral_key);
        out.extend_from_slice(&r.wrapped_key);
    }
    if let Some(owner) = params.owner {
        use ed25519_dalek::Signer;
        let sig = owner.sign(&crypto::signed_message(&header_hash));
        out.extend_from_slice(&sig.to_bytes());
    }
    let chunks_at = out.len();
    out.extend_from_slice(data);
    out.resize(total, 0);
    // Move plaintext to its ciphertext places (back to front: each moves right by its tag
    // count) and encrypt each chunk in place.
    for (i, c) in chunks.iter().enumerate().rev() {
        let src = chunks_at + c.plain_offset as usize;
        let dst = src + i * TAG_LEN;
        out.copy_within(src..src + c.plain_len as usize, dst);
    }
    let (head, body) = out.split_at_mut(chunks_at);
    let header = Header::parse(head).map_err(SealError::Inconsistent)?;
    for (i, c) in chunks.iter().enumerate() {
        let at = c.plain_offset as usize + i * TAG_LEN;
        crypto::seal_chunk(
            &key,
            &header,
            i as u32,
            &mut body[at..at + c.plain_len as usize + TAG_LEN],
        )
        .map_err(SealError::Inconsistent)?;
    }
    Ok(out)
}
