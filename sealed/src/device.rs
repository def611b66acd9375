//! A device's keys, all derived from one 32-byte root secret the platform holds (the testbed:
//! a test secret its firmware hands the partition; FVP/RK3588: the platform's key source).
//!
//! - the X25519 recipient key packages are wrapped for ([`DeviceSecret`]);
//! - the Ed25519 attestation key that signs [`crate::attest`] reports.
//!
//! One root, two HKDF-SHA256 labels: a key is never used for both jobs, and the normal-world
//! tools (`flexserve keygen`) and the partition derive the same keys from the same root.

use crate::crypto::DeviceSecret;
use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const KEM_INFO: &[u8] = b"flexserve-sealed v1 device x25519";
const SIGN_INFO: &[u8] = b"flexserve-sealed v1 device ed25519";

/// A device's public identity: what a model owner seals to and a client checks reports with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevicePublic {
    /// X25519: packages name it as a recipient.
    pub kem: [u8; 32],
    /// Ed25519: attestation reports verify under it.
    pub sign: [u8; 32],
}

impl DevicePublic {
    /// SHA-256 over both public keys: the device's fingerprint (the first 8 bytes are shown).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"flexserve device");
        h.update(self.kem);
        h.update(self.sign);
        h.finalize().into()
    }
}

/// A device's secret keys. Both are zeroed on drop.
pub struct DeviceKeys {
    pub kem: DeviceSecret,
    pub sign: SigningKey,
}

impl DeviceKeys {
    /// Derives both keys from the platform's root secret.
    pub fn from_root(root: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(None, root);
        let mut kem = Zeroizing::new([0u8; 32]);
        let mut sign = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
        let _ = hk.expand(KEM_INFO, kem.as_mut());
        let _ = hk.expand(SIGN_INFO, sign.as_mut());
        DeviceKeys {
            kem: DeviceSecret::from_bytes(*kem),
            sign: SigningKey::from_bytes(&sign),
        }
    }

    pub fn public(&self) -> DevicePublic {
        DevicePublic {
            kem: self.kem.public_key(),
            sign: self.sign.verifying_key().to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct_per_root() {
        let a = DeviceKeys::from_root(&[1; 32]).public();
        assert_eq!(a, DeviceKeys::from_root(&[1; 32]).public());
        let b = DeviceKeys::from_root(&[2; 32]).public();
        assert_ne!(a.kem, b.kem);
        assert_ne!(a.sign, b.sign);
        assert_ne!(a.fingerprint(), b.fingerprint());
        // The two keys of one device are unrelated byte strings.
        assert_ne!(a.kem, a.sign);
    }
}
