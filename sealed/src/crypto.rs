//! Key wrap, header tag, chunk encryption: the format's cryptography in one place.

use crate::Error;
use crate::format::{ChunkEntry, Header, Package, Recipient, TAG_LEN};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const WRAP_INFO: &[u8] = b"flexserve-sealed v1 wrap";
const CHUNK_INFO: &[u8] = b"flexserve-sealed v1 chunk key";
const HEADER_INFO: &[u8] = b"flexserve-sealed v1 header key";
const CHUNK_AAD_LABEL: &[u8; 8] = b"FSCHUNK1";
const SIG_LABEL: &[u8] = b"flexserve-sealed v1 signature";
/// Bytes of a chunk's associated data.
pub const CHUNK_AAD_LEN: usize = 8 + 32 + 8 + 4 + 4 + 4 + 8 + 32;

/// A device's X25519 secret. Zeroed on drop.
#[derive(Clone, ZeroizeOnDrop)]
pub struct DeviceSecret(StaticSecret);

impl DeviceSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    pub fn public_key(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }

    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }
}

/// A package's content key with its derived subkeys. Zeroed on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ContentKey {
    chunk_key: [u8; 32],
    header_key: [u8; 32],
}

impl ContentKey {
    /// Derives the subkeys from the 32-byte content key.
    pub(crate) fn derive(content: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(None, content);
        let mut k = ContentKey {
            chunk_key: [0; 32],
            header_key: [0; 32],
        };
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
        let _ = hk.expand(CHUNK_INFO, &mut k.chunk_key);
        let _ = hk.expand(HEADER_INFO, &mut k.header_key);
        k
    }

    /// HMAC-SHA256 over the header hash under the header subkey.
    /// `None` never happens (HMAC accepts any key length) but is not worth a panic.
    fn header_mac(&self, header_hash: &[u8; 32]) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.header_key).ok()?;
        mac.update(header_hash);
        Some(mac)
    }

    pub(crate) fn header_tag(&self, header_hash: &[u8; 32]) -> Option<[u8; 32]> {
        Some(self.header_mac(header_hash)?.finalize().into_bytes().into())
    }

    fn verify_header_tag(&self, header_hash: &[u8; 32], tag: &[u8; 32]) -> Result<(), Error> {
        let mac = self.header_mac(header_hash).ok_or(Error::HeaderAuth)?;
        mac.verify_slice(tag).map_err(|_| Error::HeaderAuth)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.chunk_key).into())
    }
}

/// Unique per chunk under one content key: the index, which is unique within a package, and every
/// content key seals exactly one package.
fn chunk_nonce(index: u32) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&index.to_le_bytes());
    n.into()
}

pub(crate) fn chunk_aad(header: &Header<'_>, index: u32, c: &ChunkEntry) -> [u8; CHUNK_AAD_LEN] {
    let mut a = [0u8; CHUNK_AAD_LEN];
    let parts: [&[u8]; 8] = [
        CHUNK_AAD_LABEL,
        &header.model_id,
        &header.package_version.to_le_bytes(),
        &index.to_le_bytes(),
        &c.layer.code().to_le_bytes(),
        &c.part.to_le_bytes(),
        &c.plain_offset.to_le_bytes(),
        &header.hash,
    ];
    let mut at = 0;
    for p in parts {
        a[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    a
}

/// Key-wrapping key for one recipient: HKDF-SHA256 of the X25519 shared secret, bound to both
/// public keys.
fn wrap_key(shared: &[u8; 32], ephemeral: &[u8; 32], device: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(None, shared);
    let mut k = Zeroizing::new([0u8; 32]);
    let _ = hk.expand_multi_info(&[WRAP_INFO, ephemeral, device], k.as_mut());
    k
}

fn wrap_aad(ephemeral: &[u8; 32], device: &[u8; 32]) -> [u8; 64] {
    let mut a = [0u8; 64];
    a[..32].copy_from_slice(ephemeral);
    a[32..].copy_from_slice(device);
    a
}

/// Wraps `content` for `device` with the ephemeral secret `eph`.
pub(crate) fn wrap_for(content: &[u8; 32], eph: [u8; 32], device: &[u8; 32]) -> Option<Recipient> {
    let eph = StaticSecret::from(eph);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = Zeroizing::new(eph.diffie_hellman(&PublicKey::from(*device)).to_bytes());
    if shared.iter().all(|&b| b == 0) {
        return None;
    }
    let kek = wrap_key(&shared, &eph_pub, device);
    let mut wrapped = [0u8; 32 + TAG_LEN];
    wrapped[..32].copy_from_slice(content);
    // The KEK is used once (fresh ephemeral key per recipient), so the fixed nonce is unique.
    let tag = Aes256Gcm::new(kek.as_ref().into())
        .encrypt_in_place_detached(
            &[0u8; 12].into(),
            &wrap_aad(&eph_pub, device),
            &mut wrapped[..32],
        )
        .ok()?;
    wrapped[32..].copy_from_slice(&tag);
    Some(Recipient {
        device_key: *device,
        ephemeral_key: eph_pub,
        wrapped_key: wrapped,
    })
}

pub(crate) fn seal_chunk(
    key: &ContentKey,
    header: &Header<'_>,
    index: u32,
    buf: &mut [u8],
) -> Result<(), Error> {
    let c = header.chunk(index)?;
    let plain = c.plain_len as usize;
    if buf.len() != plain + TAG_LEN {
        return Err(Error::ChunkBufferLength {
            index,
            expected: plain + TAG_LEN,
            actual: buf.len(),
        });
    }
    let (data, tag) = buf.split_at_mut(plain);
    let t = key
        .cipher()
        .encrypt_in_place_detached(&chunk_nonce(index), &chunk_aad(header, index, &c), data)
        .map_err(|_| Error::ChunkAuth { index })?;
    tag.copy_from_slice(&t);
    Ok(())
}

/// Decrypts and verifies chunk `index` in place. `buf` holds the chunk's ciphertext and tag
/// (`plain_len + TAG_LEN` bytes, see [`Package::chunk_range`]); on success its first `plain_len`
/// bytes are the plaintext. On failure the whole buffer is zeroed, so no unverified byte is left.
pub fn open_chunk(
    key: &ContentKey,
    header: &Header<'_>,
    index: u32,
    buf: &mut [u8],
) -> Result<(), Error> {
    let c = header.chunk(index)?;
    let plain = c.plain_len as usize;
    if buf.len() != plain + TAG_LEN {
        return Err(Error::ChunkBufferLength {
            index,
            expected: plain + TAG_LEN,
            actual: buf.len(),
        });
    }
    let (data, tag) = buf.split_at_mut(plain);
    let tag = *Tag::from_slice(tag);
    let r = key.cipher().decrypt_in_place_detached(
        &chunk_nonce(index),
        &chunk_aad(header, index, &c),
        data,
        &tag,
    );
    if r.is_err() {
        buf.zeroize();
        return Err(Error::ChunkAuth { index });
    }
    Ok(())
}

/// Decrypts and verifies chunk `index` in place, with its ciphertext in `data` (exactly
/// `plain_len` bytes) and its tag passed apart: the form a reader uses that copies ciphertext
/// from untrusted memory straight to where the plaintext must end up (secure memory laid out as
/// the GGUF file), the tag into a local. On failure `data` is zeroed.
pub fn open_chunk_detached(
    key: &ContentKey,
    header: &Header<'_>,
    index: u32,
    data: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    let c = header.chunk(index)?;
    if data.len() != c.plain_len as usize {
        return Err(Error::ChunkBufferLength {
            index,
            expected: c.plain_len as usize,
            actual: data.len(),
        });
    }
    let r = key.cipher().decrypt_in_place_detached(
        &chunk_nonce(index),
        &chunk_aad(header, index, &c),
        data,
        Tag::from_slice(tag),
    );
    if r.is_err() {
        data.zeroize();
        return Err(Error::ChunkAuth { index });
    }
    Ok(())
}

/// The message the owner signs: a label and the header hash.
pub(crate) fn signed_message(header_hash: &[u8; 32]) -> [u8; SIG_MSG_LEN] {
    let mut m = [0u8; SIG_MSG_LEN];
    m[..SIG_LABEL.len()].copy_from_slice(SIG_LABEL);
    m[SIG_LABEL.len()..].copy_from_slice(header_hash);
    m
}
pub(crate) const SIG_MSG_LEN: usize = SIG_LABEL.len() + 32;

impl Package<'_> {
    /// Finds this device's recipient record, unwraps the content key and checks the header tag.
    pub fn unwrap_key(&self, device: &DeviceSecret) -> Result<ContentKey, Error> {
        let me = device.public_key();
        let rec = (0..self.recipient_count())
            .filter_map(|i| self.recipient(i))
            .find(|r| r.device_key == me)
            .ok_or(Error::NoRecipientForDevice)?;
        let shared = Zeroizing::new(
            device
                .0
                .diffie_hellman(&PublicKey::from(rec.ephemeral_key))
                .to_bytes(),
        );
        if shared.iter().all(|&b| b == 0) {
            return Err(Error::WeakEphemeralKey);
        }
        let kek = wrap_key(&shared, &rec.ephemeral_key, &me);
        let mut content = Zeroizing::new([0u8; 32]);
        content.copy_from_slice(&rec.wrapped_key[..32]);
        Aes256Gcm::new(kek.as_ref().into())
            .decrypt_in_place_detached(
                &[0u8; 12].into(),
                &wrap_aad(&rec.ephemeral_key, &me),
                content.as_mut(),
                Tag::from_slice(&rec.wrapped_key[32..]),
            )
            .map_err(|_| Error::KeyUnwrap)?;
        let key = ContentKey::derive(&content);
        key.verify_header_tag(&self.header.hash, &self.header_tag)?;
        Ok(key)
    }

    /// Checks the owner signature against the key the caller trusts.
    pub fn verify_owner(&self, owner: &[u8; 32]) -> Result<(), Error> {
        let sig = self.signature.ok_or(Error::Unsigned)?;
        if &self.header.owner_key != owner {
            return Err(Error::WrongOwner);
        }
        let vk = ed25519_dalek::VerifyingKey::from_bytes(owner).map_err(|_| Error::WrongOwner)?;
        vk.verify_strict(
            &signed_message(&self.header.hash),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| Error::BadSignature)
    }

    /// SHA-256 fingerprint of a device public key, for display.
    pub fn fingerprint(key: &[u8; 32]) -> [u8; 32] {
        Sha256::digest(key).into()
    }
}
