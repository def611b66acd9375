//! FF-A boot information protocol (FF-A v1.1+ sec. 5.4): the blob an SPMC passes in x0
//! (here x[gp-register-num]) at an SP's first entry.
//!
//! Layout (little-endian):
//! - header, 32 bytes: signature u32 = 0x0FFA @0, version u32 @4, blob size u32 @8,
//!   descriptor size u32 @12 (32), descriptor count u32 @16, array offset u32 @20,
//!   reserved u64 @24;
//! - descriptors, 32 bytes each: name [u8; 16] @0, type u8 @16 (bit 7 = impdef, \[6:0\] ID:
//!   0 = FDT, 1 = HOB), reserved u8 @17, flags u16 @18 (\[1:0\] name format: 0 = string,
//!   1 = UUID; \[3:2\] content format: 0 = address, 1 = value), size u32 @20, contents u64 @24.
//!
//! Hafnium (research/platform-facts.md sec. 4.4) writes version 0x10002, desc size 0x20,
//! count 1, array offset 0x20, and a blob size that runs to the end of the manifest
//! (0x1286 for a manifest at +0x1000 of 0x286 bytes); the one descriptor is the manifest
//! FDT by address.
//!
//! [`BootInfo::parse`] treats the blob as hostile: every size, count and offset is checked
//! against the buffer with checked arithmetic, and nothing panics.

use crate::{BufferTooSmall, Version};

pub const SIGNATURE: u32 = 0x0FFA;
pub const HEADER_SIZE: usize = 32;
pub const DESC_SIZE: usize = 32;

/// Why a boot-info blob was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// Buffer shorter than the header or than the blob size the header claims.
    Truncated {
        needed: u64,
        available: usize,
    },
    BadSignature(u32),
    /// Version word with bit 31 set or a major version other than 1.
    BadVersion(u32),
    /// Blob size smaller than the header.
    BadBlobSize(u32),
    /// Descriptor size below 32 bytes.
    BadDescriptorSize(u32),
    /// Array offset inside the header or not 8-byte aligned.
    BadArrayOffset(u32),
    /// The descriptor array runs past the blob.
    ArrayOutOfBounds {
        offset: u32,
        count: u32,
        desc_size: u32,
        blob_size: u32,
    },
    /// A descriptor's flags use reserved encodings or bits.
    BadFlags {
        index: u32,
        flags: u16,
    },
}

/// The validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfoHeader {
    pub version: Version,
    pub blob_size: u32,
    pub desc_size: u32,
    pub desc_count: u32,
    pub array_offset: u32,
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn rd_u64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

impl BootInfoHeader {
    /// Validate the header alone (the first 32 bytes), e.g. to learn the blob size before
    /// building a slice over the whole blob.
    pub fn parse(buf: &[u8]) -> Result<Self, BootInfoError> {
        if buf.len() < HEADER_SIZE {
            return Err(BootInfoError::Truncated {
                needed: HEADER_SIZE as u64,
                available: buf.len(),
            });
        }
        let sig = rd_u32(buf, 0);
        if sig != SIGNATURE {
            return Err(BootInfoError::BadSignature(sig));
        }
        let vw = rd_u32(buf, 4);
        let version = Version::from_u32(vw).map_err(|_| BootInfoError::BadVersion(vw))?;
        if version.major() != 1 {
            return Err(BootInfoError::BadVersion(vw));
        }
        let blob_size = rd_u32(buf, 8);
        let desc_size = rd_u32(buf, 12);
        let desc_count = rd_u32(buf, 16);
        let array_offset = rd_u32(buf, 20);
        if (blob_size as usize) < HEADER_SIZE {
            return Err(BootInfoError::BadBlobSize(blob_size));
        }
        if (desc_size as usize) < DESC_SIZE {
            return Err(BootInfoError::BadDescriptorSize(desc_size));
        }
        if (array_offset as usize) < HEADER_SIZE || !array_offset.is_multiple_of(8) {
            return Err(BootInfoError::BadArrayOffset(array_offset));
        }
        let end = u64::from(desc_count) * u64::from(desc_size) + u64::from(array_offset);
        if end > u64::from(blob_size) {
            return Err(BootInfoError::ArrayOutOfBounds {
                offset: array_offset,
                count: desc_count,
                desc_size,
                blob_size,
            });
        }
        Ok(Self {
            version,
            blob_size,
            desc_size,
            desc_count,
            array_offset,
        })
    }
}

/// Descriptor type (byte @16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoType {
    /// Standard, ID 0: flattened device tree (the partition manifest).
    Fdt,
    /// Standard, ID 1: UEFI HOB list.
    Hob,
    /// Another standard ID (reserved by the spec).
    OtherStd(u8),
    /// Implementation-defined, ID in \[6:0\].
    ImpDef(u8),
}

impl BootInfoType {
    pub const fn from_u8(v: u8) -> Self {
        if v & 0x80 != 0 {
            Self::ImpDef(v & 0x7F)
        } else {
            match v {
                0 => Self::Fdt,
                1 => Self::Hob,
                x => Self::OtherStd(x),
            }
        }
    }

    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Fdt => 0,
            Self::Hob => 1,
            Self::OtherStd(x) => x & 0x7F,
            Self::ImpDef(x) => 0x80 | (x & 0x7F),
        }
    }
}

/// Descriptor name (flags \[1:0\]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoName {
    /// NUL-padded string of up to 16 bytes.
    String([u8; 16]),
    /// A UUID (16 bytes).
    Uuid(crate::Uuid),
}

/// Descriptor contents (flags \[3:2\]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoContents {
    /// Address of `size` bytes of data.
    Address(u64),
    /// The data itself (`size` <= 8).
    Value(u64),
}

/// One boot-information descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfoDesc {
    pub name: BootInfoName,
    pub kind: BootInfoType,
    pub size: u32,
    pub contents: BootInfoContents,
}

impl BootInfoDesc {
    fn parse(index: u32, b: &[u8]) -> Result<Self, BootInfoError> {
        let mut name = [0u8; 16];
        if let Some(s) = b.get(..16) {
            name.copy_from_slice(s);
        }
        let kind = BootInfoType::from_u8(b.get(16).copied().unwrap_or(0));
        let flags = u16::from_le_bytes([
            b.get(18).copied().unwrap_or(0),
            b.get(19).copied().unwrap_or(0),
        ]);
        let bad = BootInfoError::BadFlags { index, flags };
        if flags & !0xF != 0 {
            return Err(bad);
        }
        let name = match flags & 3 {
            0 => BootInfoName::String(name),
            1 => BootInfoName::Uuid(crate::Uuid(name)),
            _ => return Err(bad),
        };
        let raw = rd_u64(b, 24);
        let contents = match (flags >> 2) & 3 {
            0 => BootInfoContents::Address(raw),
            1 => BootInfoContents::Value(raw),
            _ => return Err(bad),
        };
        Ok(Self {
            name,
            kind,
            size: rd_u32(b, 20),
            contents,
        })
    }

    fn write(&self, b: &mut [u8; DESC_SIZE]) {
        let (name, nf) = match self.name {
            BootInfoName::String(n) => (n, 0u16),
            BootInfoName::Uuid(u) => (u.0, 1),
        };
        let (raw, cf) = match self.contents {
            BootInfoContents::Address(a) => (a, 0u16),
            BootInfoContents::Value(v) => (v, 1),
        };
        b[..16].copy_from_slice(&name);
        b[16] = self.kind.to_u8();
        b[17] = 0;
        b[18..20].copy_from_slice(&(nf | cf << 2).to_le_bytes());
        b[20..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..32].copy_from_slice(&raw.to_le_bytes());
    }

    /// A descriptor for the partition manifest FDT at `addr`, `size` bytes (Hafnium's form).
    pub const fn manifest_fdt(addr: u64, size: u32) -> Self {
        let mut name = [0u8; 16];
        let s = b"ffa_manifest";
        let mut i = 0;
        while i < s.len() {
            name[i] = s[i];
            i += 1;
        }
        Self {
            name: BootInfoName::String(name),
            kind: BootInfoType::Fdt,
            size,
            contents: BootInfoContents::Address(addr),
        }
    }
}

/// A validated boot-info blob.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    pub header: BootInfoHeader,
    blob: &'a [u8],
}

impl<'a> BootInfo<'a> {
    /// Validate `buf` (which must hold at least the blob size the header claims) and every
    /// descriptor in it.
    pub fn parse(buf: &'a [u8]) -> Result<Self, BootInfoError> {
        let header = BootInfoHeader::parse(buf)?;
        let blob = buf
            .get(..header.blob_size as usize)
            .ok_or(BootInfoError::Truncated {
                needed: header.blob_size.into(),
                available: buf.len(),
            })?;
        let bi = Self { header, blob };
        for (i, d) in bi.raw_descs().enumerate() {
            BootInfoDesc::parse(i as u32, d)?;
        }
        Ok(bi)
    }

    fn raw_descs(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let h = self.header;
        let blob = self.blob;
        (0..h.desc_count).filter_map(move |i| {
            // In range: parse() checked offset + count * size <= blob_size <= blob.len().
            let start = h.array_offset as usize + i as usize * h.desc_size as usize;
            blob.get(start..start + DESC_SIZE)
        })
    }

    /// The descriptors (all validated by `parse`).
    pub fn descriptors(&self) -> impl Iterator<Item = BootInfoDesc> + 'a {
        self.raw_descs()
            .enumerate()
            .filter_map(|(i, d)| BootInfoDesc::parse(i as u32, d).ok())
    }

    /// Address and size of the first FDT given by address (the partition manifest).
    pub fn manifest_fdt(&self) -> Option<(u64, u32)> {
        self.descriptors().find_map(|d| match (d.kind, d.contents) {
            (BootInfoType::Fdt, BootInfoContents::Address(a)) => Some((a, d.size)),
            _ => None,
        })
    }
}

/// Write a boot-info blob (header + descriptors back to back at offset 32) into `buf`.
/// `blob_size` is the size recorded in the header: at least the bytes written; Hafnium
/// records the span up to the end of the manifest. Returns the bytes written.
pub fn build(
    buf: &mut [u8],
    version: Version,
    descs: &[BootInfoDesc],
    blob_size: Option<u32>,
) -> Result<usize, BufferTooSmall> {
    let written = descs
        .len()
        .checked_mul(DESC_SIZE)
        .and_then(|n| n.checked_add(HEADER_SIZE))
        .filter(|&n| u32::try_from(n).is_ok())
        .ok_or(BufferTooSmall {
            needed: usize::MAX,
            available: buf.len(),
        })?;
    let available = buf.len();
    let out = buf.get_mut(..written).ok_or(BufferTooSmall {
        needed: written,
        available,
    })?;
    let size = blob_size.unwrap_or(0).max(written as u32);
    out.fill(0);
    out[0..4].copy_from_slice(&SIGNATURE.to_le_bytes());
    out[4..8].copy_from_slice(&version.to_u32().to_le_bytes());
    out[8..12].copy_from_slice(&size.to_le_bytes());
    out[12..16].copy_from_slice(&(DESC_SIZE as u32).to_le_bytes());
    out[16..20].copy_from_slice(&(descs.len() as u32).to_le_bytes());
    out[20..24].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    for (chunk, d) in out[HEADER_SIZE..].chunks_exact_mut(DESC_SIZE).zip(descs) {
        let mut b = [0u8; DESC_SIZE];
        d.write(&mut b);
        chunk.copy_from_slice(&b);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hafnium_blob() -> [u8; 0x1286] {
        let mut b = [0u8; 0x1286];
        let d = BootInfoDesc::manifest_fdt(0xe301000, 0x286);
        assert_eq!(build(&mut b, Version::V1_2, &[d], Some(0x1286)), Ok(64));
        b
    }

    #[test]
    fn build_matches_observed_hafnium_words() {
        let b = hafnium_blob();
        let words: [u32; 6] = core::array::from_fn(|i| rd_u32(&b, 4 * i));
        assert_eq!(words, [0x0ffa, 0x10002, 0x1286, 0x20, 1, 0x20]);
        let bi = BootInfo::parse(&b).unwrap();
        assert_eq!(bi.manifest_fdt(), Some((0xe301000, 0x286)));
        let d = bi.descriptors().next().unwrap();
        assert_eq!(d, BootInfoDesc::manifest_fdt(0xe301000, 0x286));
    }

    #[test]
    fn round_trip_all_forms() {
        let descs = [
            BootInfoDesc {
                name: BootInfoName::Uuid(crate::Uuid([7; 16])),
                kind: BootInfoType::Hob,
                size: 8,
                contents: BootInfoContents::Value(0x1122_3344_5566_7788),
            },
            BootInfoDesc {
                name: BootInfoName::String(*b"impdef-thing\0\0\0\0"),
                kind: BootInfoType::ImpDef(0x15),
                size: 0x1000,
                contents: BootInfoContents::Address(0x4000_0000),
            },
        ];
        let mut b = [0u8; 96];
        assert_eq!(build(&mut b, Version::V1_1, &descs, None), Ok(96));
        let bi = BootInfo::parse(&b).unwrap();
        assert_eq!(bi.header.blob_size, 96);
        let mut it = bi.descriptors();
        assert_eq!(it.next(), Some(descs[0]));
        assert_eq!(it.next(), Some(descs[1]));
        assert_eq!(it.next(), None);
        assert_eq!(bi.manifest_fdt(), None);
        drop(it);
        let mut small = [0u8; 95];
        assert_eq!(
            build(&mut small, Version::V1_1, &descs, None)
                .err()
                .unwrap()
                .needed,
            96
        );
    }

    fn set(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn rejects_malformed_blobs() {
        let good = hafnium_blob();
        type Mutate<'a> = &'a dyn Fn(&mut [u8]);
        let cases: &[(Mutate, BootInfoError)] = &[
            (&|b| set(b, 0, 0x0FFB), BootInfoError::BadSignature(0x0FFB)),
            (
                &|b| set(b, 4, 0x8001_0002),
                BootInfoError::BadVersion(0x8001_0002),
            ),
            (&|b| set(b, 4, 0x20000), BootInfoError::BadVersion(0x20000)),
            (&|b| set(b, 8, 31), BootInfoError::BadBlobSize(31)),
            (&|b| set(b, 12, 16), BootInfoError::BadDescriptorSize(16)),
            (&|b| set(b, 20, 16), BootInfoError::BadArrayOffset(16)),
            (&|b| set(b, 20, 0x21), BootInfoError::BadArrayOffset(0x21)),
            (
                &|b| set(b, 16, u32::MAX),
                BootInfoError::ArrayOutOfBounds {
                    offset: 0x20,
                    count: u32::MAX,
                    desc_size: 0x20,
                    blob_size: 0x1286,
                },
            ),
            (
                &|b| set(b, 12, u32::MAX),
                BootInfoError::ArrayOutOfBounds {
                    offset: 0x20,
                    count: 1,
                    desc_size: u32::MAX,
                    blob_size: 0x1286,
                },
            ),
            (
                &|b| set(b, 20, 0xFFFF_FFF8),
                BootInfoError::ArrayOutOfBounds {
                    offset: 0xFFFF_FFF8,
                    count: 1,
                    desc_size: 0x20,
                    blob_size: 0x1286,
                },
            ),
            (
                &|b| set(b, 8, 0x2000),
                BootInfoError::Truncated {
                    needed: 0x2000,
                    available: 0x1286,
                },
            ),
            (
                &|b| b[32 + 18] = 2,
                BootInfoError::BadFlags { index: 0, flags: 2 },
            ),
            (
                &|b| b[32 + 18] = 8,
                BootInfoError::BadFlags { index: 0, flags: 8 },
            ),
            (
                &|b| b[32 + 19] = 1,
                BootInfoError::BadFlags {
                    index: 0,
                    flags: 0x100,
                },
            ),
        ];
        for (i, (mutate, want)) in cases.iter().enumerate() {
            let mut b = good;
            mutate(&mut b);
            assert_eq!(BootInfo::parse(&b).err(), Some(*want), "case {i}");
        }
        for n in 0..HEADER_SIZE {
            assert!(matches!(
                BootInfo::parse(&good[..n]),
                Err(BootInfoError::Truncated { .. })
            ));
        }
        // Cut anywhere inside the blob.
        assert!(BootInfo::parse(&good[..0x1285]).is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Random edits of a valid blob never panic the parser, and an accepted blob's
        /// descriptors are all readable.
        #[test]
        fn parse_never_panics(
            edits in proptest::collection::vec((0usize..96, any::<u8>()), 0..6),
            cut in 0usize..=96,
        ) {
            let mut b = [0u8; 96];
            let d = BootInfoDesc::manifest_fdt(0x1000, 0x20);
            build(&mut b, Version::V1_2, &[d, d], None).unwrap();
            for (i, v) in edits {
                b[i] = v;
            }
            if let Ok(bi) = BootInfo::parse(&b[..cut]) {
                prop_assert_eq!(bi.descriptors().count() as u32, bi.header.desc_count);
            }
        }
    }
}
