//! Sealed-model messages (`sealed/FORMAT.md`): the device's public keys, loading a sealed
//! package into lent pages, and attestation. The commands are [`crate::Command::DeviceKey`],
//! [`crate::Command::ModelLoadSealed`] and [`crate::Command::Attest`].

/// Why the SP refused a sealed package or an attestation (`Status::Sealed`; the detail is the
/// fault in bits [31:0] and, for chunk faults, the chunk index in bits [63:32]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SealedFault {
    /// The package is shorter than its header says.
    Truncated = 1,
    /// The package is longer than its header says.
    TrailingBytes = 2,
    /// Not a sealed package.
    BadMagic = 3,
    /// A format version this SP does not read.
    UnsupportedVersion = 4,
    /// A header field, the chunk table or the recipient section is inconsistent.
    Malformed = 5,
    /// The package is not addressed to this device.
    NoRecipientForDevice = 6,
    /// The wrapped content key does not authenticate.
    KeyUnwrap = 7,
    /// A recipient record carries a low-order ephemeral key.
    WeakEphemeralKey = 8,
    /// The authenticated header was modified.
    HeaderAuth = 9,
    /// A chunk does not authenticate (modified, moved, or from another model or version);
    /// the detail's high half is its index.
    ChunkAuth = 10,
    /// The lent destination is smaller than the plaintext model.
    DestinationTooSmall = 11,
    /// The package head (metadata, tables, recipients) is larger than the SP copies.
    HeadTooLarge = 12,
    /// `Attest` while the loaded model came from a plaintext file.
    NotSealed = 13,
    /// The platform gave the SP no device secret: it cannot open packages or attest.
    NoDeviceKey = 14,
}

impl SealedFault {
    pub fn from_u64(v: u64) -> Option<Self> {
        use SealedFault::*;
        Some(match v {
            1 => Truncated,
            2 => TrailingBytes,
            3 => BadMagic,
            4 => UnsupportedVersion,
            5 => Malformed,
            6 => NoRecipientForDevice,
            7 => KeyUnwrap,
            8 => WeakEphemeralKey,
            9 => HeaderAuth,
            10 => ChunkAuth,
            11 => DestinationTooSmall,
            12 => HeadTooLarge,
            13 => NotSealed,
            14 => NoDeviceKey,
            _ => return None,
        })
    }

    /// The `Status::Sealed` detail word.
    pub fn detail(self, chunk: u32) -> u64 {
        u64::from(chunk) << 32 | self as u64
    }

    /// Splits a `Status::Sealed` detail word into fault and chunk index.
    pub fn from_detail(detail: u64) -> Option<(Self, u32)> {
        Some((Self::from_u64(detail & 0xffff_ffff)?, (detail >> 32) as u32))
    }
}

/// The device's public keys (`DeviceKey` reply): X25519 for sealing to, Ed25519 for checking
/// attestation reports. Each travels as four little-endian registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    pub kem: [u8; 32],
    pub sign: [u8; 32],
}

impl DeviceKey {
    /// Registers after the status word.
    pub const REGS: usize = 8;

    pub fn to_regs(&self) -> [u64; Self::REGS] {
        let mut r = [0u64; Self::REGS];
        for (i, c) in self.kem.chunks(8).chain(self.sign.chunks(8)).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            r[i] = u64::from_le_bytes(w);
        }
        r
    }

    pub fn from_regs(r: &[u64; Self::REGS]) -> Self {
        let mut k = DeviceKey {
            kem: [0; 32],
            sign: [0; 32],
        };
        for (i, w) in r.iter().enumerate() {
            let dst = if i < 4 {
                &mut k.kem[i * 8..i * 8 + 8]
            } else {
                &mut k.sign[(i - 4) * 8..(i - 4) * 8 + 8]
            };
            dst.copy_from_slice(&w.to_le_bytes());
        }
        k
    }
}

/// How firmware hands the SP its device root secret: an FF-A boot-information descriptor of
/// implementation-defined type [`DEVICE_ROOT_TYPE`], named [`DEVICE_ROOT_NAME`], whose contents
/// are the address of [`DEVICE_ROOT_LEN`] bytes inside the boot-information blob (memory only
/// the SP is given). The SP derives its X25519 and Ed25519 keys from it (`flexserve-sealed`'s
/// `DeviceKeys`).
pub mod device_root {
    pub const DEVICE_ROOT_NAME: [u8; 16] = *b"flexserve-devkey";
    /// The descriptor type byte: implementation-defined (bit 7), ID 0x46.
    pub const DEVICE_ROOT_TYPE: u8 = 0x80 | 0x46;
    pub const DEVICE_ROOT_LEN: usize = 32;
}

/// Bytes of a verifier's nonce (`Attest` carries it in four registers).
pub const NONCE_LEN: usize = 32;

/// The nonce as four little-endian registers, and back.
pub fn nonce_to_regs(n: &[u8; NONCE_LEN]) -> [u64; 4] {
    let mut r = [0u64; 4];
    for (o, c) in r.iter_mut().zip(n.chunks(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        *o = u64::from_le_bytes(w);
    }
    r
}

pub fn nonce_from_regs(r: &[u64; 4]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    for (c, w) in n.chunks_mut(8).zip(r) {
        c.copy_from_slice(&w.to_le_bytes());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nonces_and_details_round_trip() {
        let k = DeviceKey {
            kem: core::array::from_fn(|i| i as u8),
            sign: core::array::from_fn(|i| 0x80 + i as u8),
        };
        assert_eq!(DeviceKey::from_regs(&k.to_regs()), k);
        let n = core::array::from_fn(|i| 3 * i as u8);
        assert_eq!(nonce_from_regs(&nonce_to_regs(&n)), n);
        for v in 1..=14 {
            let f = SealedFault::from_u64(v).unwrap();
            assert_eq!(f as u64, v);
            assert_eq!(SealedFault::from_detail(f.detail(77)), Some((f, 77)));
        }
        assert_eq!(SealedFault::from_u64(0), None);
        assert_eq!(SealedFault::from_u64(15), None);
    }
}
