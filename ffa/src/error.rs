//! FF-A status codes and register-decoding errors.

use core::fmt;

use crate::FuncId;

/// FF-A error status codes (FF-A v1.2 Table 12.2, plus `NotReady` from Hafnium / v1.3).
/// Carried in w2 of `FFA_ERROR` as a signed 32-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum FfaError {
    NotSupported = -1,
    InvalidParameters = -2,
    NoMemory = -3,
    Busy = -4,
    Interrupted = -5,
    Denied = -6,
    Retry = -7,
    Aborted = -8,
    NoData = -9,
    NotReady = -10,
}

impl FfaError {
    /// All codes, in spec order.
    pub const ALL: [FfaError; 10] = [
        Self::NotSupported,
        Self::InvalidParameters,
        Self::NoMemory,
        Self::Busy,
        Self::Interrupted,
        Self::Denied,
        Self::Retry,
        Self::Aborted,
        Self::NoData,
        Self::NotReady,
    ];

    /// The code for a raw (signed) value, or `None` for a value the spec does not define.
    pub const fn from_i32(v: i32) -> Option<Self> {
        if v <= -1 && v >= -10 {
            Some(Self::ALL[(-v - 1) as usize])
        } else {
            None
        }
    }

    /// The value as written into w2 (sign-extended 32-bit; upper half of x2 zero).
    pub const fn to_u32(self) -> u32 {
        self as i32 as u32
    }
}

impl fmt::Display for FfaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::NotSupported => "NOT_SUPPORTED",
            Self::InvalidParameters => "INVALID_PARAMETERS",
            Self::NoMemory => "NO_MEMORY",
            Self::Busy => "BUSY",
            Self::Interrupted => "INTERRUPTED",
            Self::Denied => "DENIED",
            Self::Retry => "RETRY",
            Self::Aborted => "ABORTED",
            Self::NoData => "NO_DATA",
            Self::NotReady => "NOT_READY",
        };
        write!(f, "{s} ({})", *self as i32)
    }
}

/// Why a register set is not a valid FF-A call or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// w0 is not a function ID this crate implements.
    UnknownFunction(u32),
    /// A register (or bits of it) that the spec says MBZ is non-zero.
    ReservedNotZero { func: FuncId, reg: u8, value: u64 },
    /// `FFA_ERROR` w2 is not a defined error code.
    UnknownErrorCode(i32),
    /// A version word with bit 31 set (MBZ), in the call or the reply.
    InvalidVersion(u32),
    /// `FFA_RXTX_MAP` page count outside 1..=63 (w3\[5:0\]).
    InvalidPageCount(u32),
    /// `FFA_CONSOLE_LOG` character count larger than the registers hold (24 / 128).
    InvalidCharCount(u64),
    /// Direct-message flags use bits other than 31 (framework) and \[7:0\] (type), or a
    /// message type without the framework bit.
    InvalidDirectMsgFlags(u32),
    /// A flags word has bits set that this version of FF-A does not define.
    InvalidFlags { func: FuncId, flags: u32 },
}

impl DecodeError {
    /// The FF-A error an SPMC or endpoint returns for this malformed call: an unknown
    /// function, or an FFA_VERSION input with bit 31 set (FF-A v1.2 sec. 13.2), is
    /// `NOT_SUPPORTED`; every other defect `INVALID_PARAMETERS`.
    pub const fn to_ffa_error(self) -> FfaError {
        match self {
            Self::UnknownFunction(_) | Self::InvalidVersion(_) => FfaError::NotSupported,
            _ => FfaError::InvalidParameters,
        }
    }
}

impl From<DecodeError> for FfaError {
    fn from(e: DecodeError) -> Self {
        e.to_ffa_error()
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownFunction(w0) => write!(f, "unknown FF-A function ID {w0:#x}"),
            Self::ReservedNotZero { func, reg, value } => {
                write!(f, "{func:?}: MBZ bits set in x{reg} ({value:#x})")
            }
            Self::UnknownErrorCode(c) => write!(f, "undefined FF-A error code {c}"),
            Self::InvalidVersion(v) => write!(f, "invalid FF-A version word {v:#x}"),
            Self::InvalidPageCount(n) => write!(f, "invalid RX/TX page count {n}"),
            Self::InvalidCharCount(n) => write!(f, "invalid console-log character count {n}"),
            Self::InvalidDirectMsgFlags(v) => write!(f, "invalid direct-message flags {v:#x}"),
            Self::InvalidFlags { func, flags } => write!(f, "{func:?}: invalid flags {flags:#x}"),
        }
    }
}

impl core::error::Error for DecodeError {}
impl core::error::Error for FfaError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_spec() {
        for (i, e) in FfaError::ALL.iter().enumerate() {
            assert_eq!(*e as i32, -(i as i32) - 1);
            assert_eq!(FfaError::from_i32(*e as i32), Some(*e));
        }
        assert_eq!(FfaError::NotReady as i32, -10);
        assert_eq!(FfaError::from_i32(0), None);
        assert_eq!(FfaError::from_i32(-11), None);
        assert_eq!(FfaError::from_i32(i32::MIN), None);
        assert_eq!(FfaError::NotSupported.to_u32(), 0xFFFF_FFFF);
    }
}
