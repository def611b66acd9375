//! FF-A version word: bit 31 MBZ, major \[30:16\], minor \[15:0\] (FF-A v1.2 sec. 13.2).

use core::fmt;

use crate::DecodeError;

/// An FF-A version. Construct with [`Version::new`] (validates) or the constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    major: u16,
    minor: u16,
}

impl Version {
    pub const V1_0: Version = Version { major: 1, minor: 0 };
    pub const V1_1: Version = Version { major: 1, minor: 1 };
    pub const V1_2: Version = Version { major: 1, minor: 2 };
    pub const V1_3: Version = Version { major: 1, minor: 3 };
    /// The version this project declares (manifest `ffa-version`, FFA_VERSION input).
    pub const CURRENT: Version = Self::V1_2;

    /// `None` if `major` does not fit in 15 bits.
    pub const fn new(major: u16, minor: u16) -> Option<Self> {
        if major & 0x8000 != 0 {
            None
        } else {
            Some(Self { major, minor })
        }
    }

    pub const fn major(self) -> u16 {
        self.major
    }

    pub const fn minor(self) -> u16 {
        self.minor
    }

    /// Decode a version word; bit 31 must be 0.
    pub const fn from_u32(v: u32) -> Result<Self, DecodeError> {
        if v & 0x8000_0000 != 0 {
            Err(DecodeError::InvalidVersion(v))
        } else {
            Ok(Self {
                major: (v >> 16) as u16,
                minor: v as u16,
            })
        }
    }

    pub const fn to_u32(self) -> u32 {
        ((self.major as u32) << 16) | self.minor as u32
    }

    /// FF-A compatibility rule (v1.2 sec. 13.2.1): a caller built for `self` can talk to an
    /// implementation of `other` iff the majors are equal and `other.minor >= self.minor`.
    pub const fn is_compatible_with(self, other: Version) -> bool {
        self.major == other.major && other.minor >= self.minor
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode() {
        assert_eq!(Version::V1_2.to_u32(), 0x10002);
        assert_eq!(Version::from_u32(0x10003), Ok(Version::V1_3));
        assert_eq!(
            Version::from_u32(0x8001_0000),
            Err(DecodeError::InvalidVersion(0x8001_0000))
        );
        assert_eq!(Version::new(0x8000, 0), None);
        let v = Version::new(0x7fff, 0xffff).unwrap();
        assert_eq!(Version::from_u32(v.to_u32()), Ok(v));
    }

    #[test]
    fn compatibility() {
        assert!(Version::V1_2.is_compatible_with(Version::V1_3));
        assert!(Version::V1_2.is_compatible_with(Version::V1_2));
        assert!(!Version::V1_3.is_compatible_with(Version::V1_2));
        assert!(!Version::V1_2.is_compatible_with(Version::new(2, 5).unwrap()));
    }
}
