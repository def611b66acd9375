//! Attestation reports: which sealed model a partition runs, signed by its device key over a
//! verifier's nonce. Layout in `sealed/FORMAT.md` ("Attestation report"); the partition builds
//! them with [`Report::sign`], every verifier (client library, CLI) checks them with
//! [`verify`].

use crate::device::DevicePublic;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

pub const REPORT_MAGIC: [u8; 8] = *b"FSATTEST";
pub const REPORT_VERSION: u16 = 1;
/// Bytes of the signed body.
pub const REPORT_BODY_LEN: usize = 184;
/// Bytes of a whole report: body and Ed25519 signature.
pub const REPORT_LEN: usize = REPORT_BODY_LEN + 64;
const REPORT_SIG_LABEL: &[u8] = b"flexserve-sealed v1 attestation";

/// What a report says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub device: DevicePublic,
    pub model_id: [u8; 32],
    pub package_version: u64,
    /// SHA-256 of the loaded package's authenticated header.
    pub header_hash: [u8; 32],
    pub nonce: [u8; 32],
}

/// Why a report is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestError {
    /// Not `REPORT_LEN` bytes.
    Length(usize),
    BadMagic,
    UnsupportedVersion(u16),
    /// A reserved field or flag is not zero.
    Reserved,
    /// The report names another device's signing key than the one the verifier trusts.
    WrongDevice,
    /// The report answers another nonce (a replay, or someone else's question).
    WrongNonce,
    /// The signature does not verify under the device key.
    BadSignature,
}

impl Report {
    fn body(&self) -> [u8; REPORT_BODY_LEN] {
        let mut b = [0u8; REPORT_BODY_LEN];
        b[0..8].copy_from_slice(&REPORT_MAGIC);
        b[8..10].copy_from_slice(&REPORT_VERSION.to_le_bytes());
        // 10..16: flags and reserved, zero.
        b[16..48].copy_from_slice(&self.device.sign);
        b[48..80].copy_from_slice(&self.device.kem);
        b[80..112].copy_from_slice(&self.model_id);
        b[112..120].copy_from_slice(&self.package_version.to_le_bytes());
        b[120..152].copy_from_slice(&self.header_hash);
        b[152..184].copy_from_slice(&self.nonce);
        b
    }

    /// The report signed with the device's attestation key (`self.device.sign` must be its
    /// public half).
    pub fn sign(&self, key: &SigningKey) -> [u8; REPORT_LEN] {
        let body = self.body();
        let sig = key.sign(&signed_message(&body));
        let mut out = [0u8; REPORT_LEN];
        out[..REPORT_BODY_LEN].copy_from_slice(&body);
        out[REPORT_BODY_LEN..].copy_from_slice(&sig.to_bytes());
        out
    }

    /// Parses a report without checking its signature (for display; [`verify`] to trust it).
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() != REPORT_LEN {
            return Err(AttestError::Length(bytes.len()));
        }
        if bytes[0..8] != REPORT_MAGIC {
            return Err(AttestError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != REPORT_VERSION {
            return Err(AttestError::UnsupportedVersion(version));
        }
        if bytes[10..16].iter().any(|&b| b != 0) {
            return Err(AttestError::Reserved);
        }
        let a = |r: core::ops::Range<usize>| -> [u8; 32] {
            let mut x = [0u8; 32];
            x.copy_from_slice(&bytes[r]);
            x
        };
        let mut v = [0u8; 8];
        v.copy_from_slice(&bytes[112..120]);
        Ok(Report {
            device: DevicePublic {
                sign: a(16..48),
                kem: a(48..80),
            },
            model_id: a(80..112),
            package_version: u64::from_le_bytes(v),
            header_hash: a(120..152),
            nonce: a(152..184),
        })
    }
}

fn signed_message(body: &[u8; REPORT_BODY_LEN]) -> [u8; REPORT_SIG_LABEL.len() + REPORT_BODY_LEN] {
    let mut m = [0u8; REPORT_SIG_LABEL.len() + REPORT_BODY_LEN];
    m[..REPORT_SIG_LABEL.len()].copy_from_slice(REPORT_SIG_LABEL);
    m[REPORT_SIG_LABEL.len()..].copy_from_slice(body);
    m
}

/// Checks a report against the device signing key the verifier trusts and the nonce it sent;
/// returns what the report attests. The caller then compares `model_id`, `package_version`
/// and `header_hash` with the package it expects.
pub fn verify(
    bytes: &[u8],
    device_sign: &[u8; 32],
    nonce: &[u8; 32],
) -> Result<Report, AttestError> {
    let report = Report::parse(bytes)?;
    if &report.device.sign != device_sign {
        return Err(AttestError::WrongDevice);
    }
    let vk = VerifyingKey::from_bytes(device_sign).map_err(|_| AttestError::WrongDevice)?;
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&bytes[REPORT_BODY_LEN..]);
    vk.verify_strict(
        &signed_message(&report.body()),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| AttestError::BadSignature)?;
    // Checked after the signature so that a forged report never says "wrong nonce".
    if &report.nonce != nonce {
        return Err(AttestError::WrongNonce);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceKeys;

    fn report(keys: &DeviceKeys) -> Report {
        Report {
            device: keys.public(),
            model_id: [7; 32],
            package_version: 3,
            header_hash: [9; 32],
            nonce: [5; 32],
        }
    }

    #[test]
    fn a_signed_report_verifies_and_tampering_does_not() {
        let keys = DeviceKeys::from_root(&[1; 32]);
        let r = report(&keys);
        let bytes = r.sign(&keys.sign);
        let sign = keys.public().sign;
        assert_eq!(verify(&bytes, &sign, &[5; 32]), Ok(r));
        assert_eq!(
            verify(&bytes, &sign, &[6; 32]),
            Err(AttestError::WrongNonce)
        );
        for at in [0, 9, 12, 20, 60, 90, 115, 130, 160, 200, 247] {
            let mut b = bytes;
            b[at] ^= 0x10;
            assert!(verify(&b, &sign, &[5; 32]).is_err(), "flip at {at}");
        }
        // Another device's key signing a report that names ours.
        let other = DeviceKeys::from_root(&[2; 32]);
        let forged = r.sign(&other.sign);
        assert_eq!(
            verify(&forged, &sign, &[5; 32]),
            Err(AttestError::BadSignature)
        );
        // A report of another device, honestly signed, is not ours.
        let theirs = report(&other).sign(&other.sign);
        assert_eq!(
            verify(&theirs, &sign, &[5; 32]),
            Err(AttestError::WrongDevice)
        );
        assert_eq!(
            verify(&bytes[..100], &sign, &[5; 32]),
            Err(AttestError::Length(100))
        );
    }
}
