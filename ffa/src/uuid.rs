//! UUIDs as FF-A carries them.
//!
//! One byte order everywhere: the UUID's 16 bytes in RFC 4122 order
//! (`b4b5671e-4a90-...` starts with byte 0xb4). The other forms are views of those bytes:
//! - manifest cells / PARTITION_INFO_GET w1-w4: four little-endian u32s of bytes 0-3, 4-7,
//!   8-11, 12-15 (`<0x1e67b5b4 ...>`; research/platform-facts.md sec. 3.1);
//! - DIRECT_REQ2 x2/x3 and PARTITION_INFO_GET_REGS: two little-endian u64s of bytes 0-7 (lo)
//!   and 8-15 (hi), i.e. `lo = cell0 | cell1 << 32` (Hafnium `ffa_uuid_to_u64x2`);
//! - partition info descriptor: the 16 bytes as they are.

use core::fmt;

/// A 16-byte UUID.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The nil UUID (all partitions, in PARTITION_INFO_GET).
    pub const NIL: Uuid = Uuid([0; 16]);

    pub const fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub const fn is_nil(&self) -> bool {
        let mut i = 0;
        while i < 16 {
            if self.0[i] != 0 {
                return false;
            }
            i += 1;
        }
        true
    }

    /// From the manifest's `uuid = <c0 c1 c2 c3>` cells (= PARTITION_INFO_GET w1-w4).
    pub const fn from_cells(c: [u32; 4]) -> Self {
        let mut b = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let le = c[i].to_le_bytes();
            b[4 * i] = le[0];
            b[4 * i + 1] = le[1];
            b[4 * i + 2] = le[2];
            b[4 * i + 3] = le[3];
            i += 1;
        }
        Self(b)
    }

    pub const fn to_cells(&self) -> [u32; 4] {
        let b = &self.0;
        let mut c = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            c[i] = u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
            i += 1;
        }
        c
    }

    /// From the (lo, hi) register pair of DIRECT_REQ2 / PARTITION_INFO_GET_REGS.
    pub const fn from_u64_pair(lo: u64, hi: u64) -> Self {
        let l = lo.to_le_bytes();
        let h = hi.to_le_bytes();
        Self([
            l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], h[0], h[1], h[2], h[3], h[4], h[5],
            h[6], h[7],
        ])
    }

    /// (lo, hi) for DIRECT_REQ2 x2/x3 and PARTITION_INFO_GET_REGS x1/x2.
    pub const fn to_u64_pair(&self) -> (u64, u64) {
        let b = &self.0;
        (
            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        )
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn manifest_cells_match_platform_facts() {
        // research/platform-facts.md sec. 3.1 (ff-a-acs sp1.dts).
        let u = Uuid::from_cells([0x1e67b5b4, 0xe14f904a, 0x13fb1fb8, 0xcbdae1da]);
        assert_eq!(u.to_string(), "b4b5671e-4a90-4fe1-b81f-fb13dae1dacb");
        let u = Uuid::from_cells([0x12345678, 0x9abcdef0, 0x11223344, 0x55667788]);
        assert_eq!(u.to_string(), "78563412-f0de-bc9a-4433-221188776655");
        assert_eq!(
            u.to_cells(),
            [0x12345678, 0x9abcdef0, 0x11223344, 0x55667788]
        );
    }

    #[test]
    fn u64_pair_is_hafnium_order() {
        let c = [0x12345678, 0x9abcdef0, 0x11223344, 0x55667788];
        let u = Uuid::from_cells(c);
        let (lo, hi) = u.to_u64_pair();
        assert_eq!(lo, 0x9abcdef0_12345678);
        assert_eq!(hi, 0x55667788_11223344);
        assert_eq!(Uuid::from_u64_pair(lo, hi), u);
        assert!(!u.is_nil());
        assert!(Uuid::NIL.is_nil());
    }
}
