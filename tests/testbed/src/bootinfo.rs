//! The FF-A boot information blob (FF-A v1.1+ "Boot information protocol") the SPMC writes at
//! the start of the SP package, as Hafnium does (platform-facts.md sec. 3.3 and 4.4): one
//! descriptor, an FDT, pointing at the manifest.

pub const SIGNATURE: u32 = 0x0FFA;
pub const HEADER_SIZE: usize = 32;
pub const DESC_SIZE: usize = 32;
pub const BLOB_SIZE: usize = HEADER_SIZE + DESC_SIZE;

/// Builds the blob. `version` is the FF-A version the SP declared; `blob_size` mirrors Hafnium,
/// which reports the size up to the end of the manifest (pm_offset + pm_size).
pub fn build(version: u32, manifest_addr: u64, pm_offset: u32, pm_size: u32) -> [u8; BLOB_SIZE] {
    let mut b = [0u8; BLOB_SIZE];
    let w = |b: &mut [u8; BLOB_SIZE], off: usize, v: u32| {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    };
    w(&mut b, 0, SIGNATURE);
    w(&mut b, 4, version);
    w(&mut b, 8, pm_offset.saturating_add(pm_size));
    w(&mut b, 12, DESC_SIZE as u32);
    w(&mut b, 16, 1);
    w(&mut b, 20, HEADER_SIZE as u32);
    // Descriptor: name[16] (NUL-terminated string), type (standard, FDT = 0), reserved,
    // flags (name is a string, content is an address), size, content.
    let d = HEADER_SIZE;
    b[d..d + 12].copy_from_slice(b"ffa_manifest");
    w(&mut b, d + 20, pm_size);
    b[d + 24..d + 32].copy_from_slice(&manifest_addr.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hafnium_observed_blob() {
        // Observed under Hafnium: 0x0ffa, 0x10002, 0x1286, 0x20, 1, 0x20; manifest at 0xe301000.
        let b = build(0x10002, 0x0e30_1000, 0x1000, 0x286);
        let word = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(
            [word(0), word(1), word(2), word(3), word(4), word(5)],
            [0x0ffa, 0x10002, 0x1286, 0x20, 1, 0x20]
        );
        assert_eq!(&b[32..44], b"ffa_manifest");
        assert_eq!(b[44], 0, "NUL-terminated, type FDT");
        assert_eq!(word(13), 0x286);
        assert_eq!(
            u64::from_le_bytes(b[56..64].try_into().unwrap()),
            0x0e30_1000
        );
    }
}
