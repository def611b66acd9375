//! Key files: one line, a type prefix and 64 hex digits, so a secret is never taken for a
//! public key or the other way round.

use std::fmt::Write as _;

/// A device's X25519 recipient key (`DEVICE.pub`: what packages are sealed to).
pub const PUB_PREFIX: &str = "flexserve-x25519-public:";
/// A device's root secret (`DEVICE.key`: both of its keys derive from it, as in the partition).
pub const SECRET_PREFIX: &str = "flexserve-device-root:";
/// A device's Ed25519 attestation key (`DEVICE.attest.pub`: what reports verify under).
pub const ATTEST_PUB_PREFIX: &str = "flexserve-ed25519-public:";
const ALL: [&str; 3] = [PUB_PREFIX, SECRET_PREFIX, ATTEST_PUB_PREFIX];

pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[derive(Debug, PartialEq)]
pub enum KeyFileError {
    /// The file holds the other kind of key.
    WrongKind,
    Malformed,
}

/// Parses a key file's text with the expected prefix.
pub fn parse(text: &str, prefix: &str) -> Result<[u8; 32], KeyFileError> {
    let t = text.trim();
    if ALL.iter().any(|&o| o != prefix && t.starts_with(o)) {
        return Err(KeyFileError::WrongKind);
    }
    t.strip_prefix(prefix)
        .and_then(from_hex)
        .ok_or(KeyFileError::Malformed)
}

pub fn format(bytes: &[u8; 32], prefix: &str) -> String {
    format!("{prefix}{}\n", to_hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_kind_check() {
        let k = [0xa5; 32];
        assert_eq!(parse(&format(&k, PUB_PREFIX), PUB_PREFIX), Ok(k));
        assert_eq!(
            parse(&format(&k, SECRET_PREFIX), PUB_PREFIX),
            Err(KeyFileError::WrongKind)
        );
        assert_eq!(parse("hello", PUB_PREFIX), Err(KeyFileError::Malformed));
        assert_eq!(from_hex(&"zz".repeat(32)), None);
    }
}
