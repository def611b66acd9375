//! Sealed models in the partition (`sealed/FORMAT.md`, DESIGN.md sec. 2, 8): the device keys,
//! loading a sealed package into secure memory, and attestation of what was loaded.
//!
//! Loading (`ModelLoadSealed`), in order; any failure scrubs and gives back everything:
//!
//! 1. retrieve the package (SHARE or LEND: ciphertext, never trusted to stay put) and the
//!    destination (a LEND of at least the plaintext GGUF's size);
//! 2. copy the package head (header, tag, recipients, signature) into the heap and parse the
//!    copy; unwrap the content key with the device's X25519 key, check the header tag;
//! 3. make the destination secure: Flex-Mem (firewall extent, NS=0 mapping) where the platform
//!    has a firewall; otherwise it is only the lent pages' own protection (the partition
//!    manager's stage-2);
//! 4. write the authenticated GGUF prefix, then per chunk copy ciphertext and tag into a heap
//!    buffer, decrypt and verify there, and only then write the plaintext to its place in the
//!    destination; the buffer is zeroed after each chunk;
//! 5. give the package back, pin the destination and build the model from it as a plaintext
//!    `ModelLoad` would.
//!
//! The SP's root secret comes from the platform (the testbed: a test secret in the FF-A boot
//! information); its keys are derived once at boot and the root copy is zeroed.

use crate::flexmem::FlexMem;
use crate::serve::{Origin, Serving};
use crate::service::Memory;
use crate::shmem::PinError;
use alloc::{vec, vec::Vec};
use ffa::{PartitionId, memory::TransactionType};
use flexserve_proto::{
    DeviceKey, IoFault, ModelFault, ModelInfo, NONCE_LEN, ProtoError, ScrubKind, SealedFault,
};
use flexserve_sealed::{
    DeviceKeys, DevicePublic, Error as PkgError, Package, TAG_LEN, attest, head_len,
    open_chunk_detached,
};
use zeroize::{Zeroize, Zeroizing};

/// Largest package head the SP copies (GGUF metadata and tables, chunk table, recipients).
pub const MAX_HEAD: usize = 4 << 20;
/// The Flex-Mem owner id of decrypted model weights.
pub const FLEXMEM_OWNER_MODEL: u32 = 0x4d4f_444c;

/// The device's keys, derived from the platform's root secret.
pub struct Device {
    keys: DeviceKeys,
    public: DevicePublic,
}

impl Device {
    /// Derives the keys and zeroes the caller's copy of the root.
    pub fn from_root(root: &mut [u8; 32]) -> Self {
        let keys = DeviceKeys::from_root(root);
        root.zeroize();
        let public = keys.public();
        Device { keys, public }
    }

    pub fn public(&self) -> DevicePublic {
        self.public
    }

    pub fn key_reply(&self) -> DeviceKey {
        DeviceKey {
            kem: self.public.kem,
            sign: self.public.sign,
        }
    }
}

/// The protocol error for a package error.
pub fn fault_of(e: PkgError) -> ProtoError {
    let (fault, chunk) = match e {
        PkgError::Truncated { .. } => (SealedFault::Truncated, 0),
        PkgError::TrailingBytes { .. } => (SealedFault::TrailingBytes, 0),
        PkgError::BadMagic => (SealedFault::BadMagic, 0),
        PkgError::UnsupportedVersion(_) => (SealedFault::UnsupportedVersion, 0),
        PkgError::NoRecipientForDevice => (SealedFault::NoRecipientForDevice, 0),
        PkgError::KeyUnwrap => (SealedFault::KeyUnwrap, 0),
        PkgError::WeakEphemeralKey => (SealedFault::WeakEphemeralKey, 0),
        PkgError::HeaderAuth => (SealedFault::HeaderAuth, 0),
        PkgError::ChunkAuth { index } => (SealedFault::ChunkAuth, index),
        PkgError::BadChunk { index } => (SealedFault::Malformed, index),
        PkgError::UnknownFlags(_)
        | PkgError::HeaderLength { .. }
        | PkgError::BadMaxChunkLen(_)
        | PkgError::BadChunkCount(_)
        | PkgError::ChunksDoNotCoverData
        | PkgError::Reserved { .. }
        | PkgError::BadRecipientCount(_)
        | PkgError::Unsigned
        | PkgError::WrongOwner
        | PkgError::BadSignature
        | PkgError::NoSuchChunk(_)
        | PkgError::ChunkBufferLength { .. } => (SealedFault::Malformed, 0),
    };
    log::warn!("sealed package refused: {e:?}");
    ProtoError::Sealed { fault, chunk }
}

fn sealed(fault: SealedFault) -> ProtoError {
    ProtoError::Sealed { fault, chunk: 0 }
}

/// Scrubs the decrypted model's region and gives it back: through Flex-Mem if it secured it
/// (which zeroes, cleans the caches and opens the firewall), else zeroed here, then released.
pub(crate) fn scrub_and_release(
    mem: &mut Memory,
    flexmem: Option<&mut FlexMem>,
    region: u32,
    secured: bool,
) -> Result<(), ProtoError> {
    match (secured, flexmem) {
        (true, Some(f)) => f.release(mem, region).map(|_| ()),
        (true, None) => {
            log::error!("region {region} secured without Flex-Mem");
            Err(ProtoError::Internal)
        }
        (false, _) => {
            mem.zero_region(region)?;
            mem.release(region)?;
            Ok(())
        }
    }
}

/// Copies the package head out of region `pkg` (bounded by [`MAX_HEAD`] and the free heap).
fn copy_head(
    mem: &Memory,
    pkg: u32,
    total: usize,
    heap_free: fn() -> usize,
) -> Result<Vec<u8>, ProtoError> {
    let mut want = 64usize.min(total);
    loop {
        if want.saturating_add(crate::serve::HEAP_RESERVE) > heap_free() {
            return Err(ProtoError::NoMemory(want as u64));
        }
        let mut head = vec![0u8; want];
        mem.read_at(pkg, 0, &mut head)?;
        match head_len(&head) {
            Ok(n) if n <= head.len() => {
                head.truncate(n);
                return Ok(head);
            }
            Ok(n) => want = n,
            Err(PkgError::Truncated { offset, need }) => want = offset.saturating_add(need),
            Err(e) => return Err(fault_of(e)),
        }
        if want > MAX_HEAD {
            log::warn!("sealed package refused: head of {want} bytes");
            return Err(sealed(SealedFault::HeadTooLarge));
        }
        if want > total {
            return Err(sealed(SealedFault::Truncated));
        }
    }
}

impl Serving {
    pub fn device(&self) -> Option<&Device> {
        self.device.as_ref()
    }

    /// Gives the serving engine its device keys (sealed loading and attestation need them).
    pub fn set_device(&mut self, device: Device) {
        self.device = Some(device);
    }

    /// `ModelLoadSealed`.
    pub fn load_sealed(
        &mut self,
        mem: &mut Memory,
        mut flexmem: Option<&mut FlexMem>,
        sender: PartitionId,
        package: u64,
        dest: u64,
        len: u64,
    ) -> Result<ModelInfo, ProtoError> {
        if self.loaded.is_some() {
            return Err(ProtoError::ModelLoaded);
        }
        if self.device.is_none() {
            return Err(sealed(SealedFault::NoDeviceKey));
        }
        let pkg = mem
            .retrieve(sender, package, TransactionType::Unspecified)?
            .region;
        let dst = match mem.retrieve(sender, dest, TransactionType::Unspecified) {
            Ok(r) => r.region,
            Err(e) => {
                give_back(mem, pkg);
                return Err(e.into());
            }
        };
        let t0 = (self.hooks.now)();
        let mut secured = false;
        let mut written = false;
        let r = self.decrypt_into(
            mem,
            flexmem.as_deref_mut(),
            (pkg, len),
            dst,
            (&mut secured, &mut written),
        );
        give_back(mem, pkg);
        let origin = match r {
            Ok(o) => o,
            // Refused before a byte was written: the pages go back as they came.
            Err(e) if !secured && !written => {
                give_back(mem, dst);
                return Err(e);
            }
            Err(e) => {
                if let Err(r) = scrub_and_release(mem, flexmem, dst, secured) {
                    log::error!("cannot scrub and give back region {dst}: {r:?}");
                }
                return Err(e);
            }
        };
        let decrypted = (self.hooks.now)().wrapping_sub(t0);
        let built = match mem.pin(dst) {
            Ok(bytes) => {
                let r = self.build(bytes, dst);
                if r.is_err() {
                    // SAFETY: `build` failed and dropped everything it made from `bytes`.
                    unsafe { mem.unpin(dst) };
                }
                r
            }
            Err(PinError::NotContiguous) => Err(ProtoError::BadModel(ModelFault::NotContiguous)),
            Err(e) => {
                log::error!("pin of decrypted region {dst}: {e:?}");
                Err(ProtoError::Internal)
            }
        };
        match built {
            Ok(mut l) => {
                l.origin = origin;
                let info = l.info;
                log::info!(
                    "sealed model decrypted and verified in {} us{}",
                    decrypted.saturating_mul(1_000_000) / (self.hooks.counter_hz)().max(1),
                    if secured { ", Flex-Mem secured" } else { "" }
                );
                self.loaded = Some(l);
                Ok(info)
            }
            Err(e) => {
                if let Err(r) = scrub_and_release(mem, flexmem, dst, secured) {
                    log::error!("cannot scrub and give back region {dst}: {r:?}");
                }
                Err(e)
            }
        }
    }

    /// Steps 2-4 of loading: on success region `dst` holds the GGUF file, verified.
    fn decrypt_into(
        &self,
        mem: &mut Memory,
        flexmem: Option<&mut FlexMem>,
        (pkg, len): (u32, u64),
        dst: u32,
        (secured, written): (&mut bool, &mut bool),
    ) -> Result<Origin, ProtoError> {
        let device = self
            .device
            .as_ref()
            .ok_or(sealed(SealedFault::NoDeviceKey))?;
        // Bytes past the region cannot be read: the package is cut short.
        if len > mem.region(pkg)?.len() || len > u64::from(u32::MAX) {
            return Err(sealed(SealedFault::Truncated));
        }
        let total = len as usize;
        let head = copy_head(mem, pkg, total, self.hooks.heap_free)?;
        let p = Package::parse_head(&head, total).map_err(fault_of)?;
        let key = p.unwrap_key(&device.keys.kem).map_err(fault_of)?;
        let h = &p.header;
        let prefix = h.gguf_prefix.len();
        let plain_len = (prefix as u64).saturating_add(h.data_len);
        let d = mem.region(dst)?;
        if !matches!(d.tx_type, TransactionType::Lend | TransactionType::Donate) {
            return Err(ProtoError::BadModel(ModelFault::NotLent));
        }
        if !d.access.writable {
            return Err(ProtoError::BadIoBuffer(IoFault::ReadOnly));
        }
        if d.len() < plain_len || plain_len > u64::from(u32::MAX) {
            return Err(sealed(SealedFault::DestinationTooSmall));
        }
        let largest = h.chunks().map(|c| c.plain_len as usize).max().unwrap_or(0);
        let free = (self.hooks.heap_free)();
        if largest.saturating_add(crate::serve::HEAP_RESERVE) > free {
            return Err(ProtoError::NoMemory(largest as u64));
        }
        if let Some(f) = flexmem {
            f.secure(mem, dst, FLEXMEM_OWNER_MODEL, ScrubKind::Zero)?;
            *secured = true;
        }
        *written = true;
        mem.write_at(dst, 0, h.gguf_prefix)?;
        let mut buf = Zeroizing::new(vec![0u8; largest]);
        for i in 0..h.chunk_count {
            let c = h.chunk(i).map_err(fault_of)?;
            let n = c.plain_len as usize;
            let at = p.chunks_offset as u64 + h.chunk_cipher_offset(i).map_err(fault_of)?;
            let at = u32::try_from(at).map_err(|_| sealed(SealedFault::Truncated))?;
            let data = &mut buf[..n];
            mem.read_at(pkg, at, data)?;
            let mut tag = [0u8; TAG_LEN];
            let tag_at = at
                .checked_add(n as u32)
                .ok_or(sealed(SealedFault::Truncated))?;
            mem.read_at(pkg, tag_at, &mut tag)?;
            open_chunk_detached(&key, h, i, data, &tag).map_err(fault_of)?;
            // In bounds: prefix + data_len fits the region and u32 (checked above).
            let r = mem.write_at(dst, (prefix as u64 + c.plain_offset) as u32, data);
            data.zeroize();
            r?;
        }
        Ok(Origin::Sealed {
            model_id: h.model_id,
            package_version: h.package_version,
            header_hash: h.hash,
            secured: *secured,
        })
    }

    /// `Attest`: writes the signed report for the loaded sealed model into the SHARE'd buffer
    /// `io`; returns its length.
    pub fn attest(
        &mut self,
        mem: &mut Memory,
        sender: PartitionId,
        io: u64,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<u32, ProtoError> {
        let device = self
            .device
            .as_ref()
            .ok_or(sealed(SealedFault::NoDeviceKey))?;
        let l = self.loaded.as_ref().ok_or(ProtoError::NoModel)?;
        let Origin::Sealed {
            model_id,
            package_version,
            header_hash,
            ..
        } = l.origin
        else {
            return Err(sealed(SealedFault::NotSealed));
        };
        let report = attest::Report {
            device: device.public,
            model_id,
            package_version,
            header_hash,
            nonce: *nonce,
        }
        .sign(&device.keys.sign);
        let region = mem
            .retrieve(sender, io, TransactionType::Unspecified)?
            .region;
        let r = (|| {
            let reg = mem.region(region)?;
            if reg.tx_type != TransactionType::Share {
                return Err(ProtoError::BadIoBuffer(IoFault::NotShared));
            }
            if !reg.access.writable {
                return Err(ProtoError::BadIoBuffer(IoFault::ReadOnly));
            }
            if reg.len() < report.len() as u64 {
                return Err(ProtoError::BadIoBuffer(IoFault::TooSmall));
            }
            mem.write_at(region, 0, &report)?;
            Ok(report.len() as u32)
        })();
        let released = mem.release(region);
        let n = r?;
        released?;
        Ok(n)
    }
}

/// Releases region `id`, logging a refusal (nothing else can be done about it here).
fn give_back(mem: &mut Memory, id: u32) {
    if let Err(e) = mem.release(id) {
        log::error!("cannot give back region {id}: {e:?}");
    }
}
