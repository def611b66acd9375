//! FF-A function IDs, error codes and register helpers the testbed's SPMC needs (FF-A v1.2,
//! DEN0077A; values as in platform-facts.md sec. 5).
//!
//! Kept local until the shared `ffa` crate lands; then these move to it.

/// The eighteen argument/result registers x0-x17 of an SMCCC v1.2 call.
pub type Regs = [u64; 18];

pub const ERROR: u32 = 0x8400_0060;
pub const SUCCESS_32: u32 = 0x8400_0061;
pub const SUCCESS_64: u32 = 0xC400_0061;
pub const INTERRUPT: u32 = 0x8400_0062;
pub const VERSION: u32 = 0x8400_0063;
pub const FEATURES: u32 = 0x8400_0064;
pub const RX_RELEASE: u32 = 0x8400_0065;
pub const RXTX_MAP_32: u32 = 0x8400_0066;
pub const RXTX_MAP_64: u32 = 0xC400_0066;
pub const RXTX_UNMAP: u32 = 0x8400_0067;
pub const PARTITION_INFO_GET: u32 = 0x8400_0068;
pub const ID_GET: u32 = 0x8400_0069;
pub const MSG_WAIT: u32 = 0x8400_006B;
pub const YIELD: u32 = 0x8400_006C;
pub const RUN: u32 = 0x8400_006D;
pub const DIRECT_REQ_32: u32 = 0x8400_006F;
pub const DIRECT_REQ_64: u32 = 0xC400_006F;
pub const DIRECT_RESP_32: u32 = 0x8400_0070;
pub const DIRECT_RESP_64: u32 = 0xC400_0070;
pub const MEM_RETRIEVE_REQ_32: u32 = 0x8400_0074;
pub const MEM_RETRIEVE_REQ_64: u32 = 0xC400_0074;
pub const SPM_ID_GET: u32 = 0x8400_0085;
pub const CONSOLE_LOG_32: u32 = 0x8400_008A;
pub const CONSOLE_LOG_64: u32 = 0xC400_008A;
pub const PARTITION_INFO_GET_REGS: u32 = 0xC400_008B;
pub const DIRECT_REQ2: u32 = 0xC400_008D;
pub const DIRECT_RESP2: u32 = 0xC400_008E;
/// Hafnium's FFA_ABORT (FF-A v1.3): the SP gives up; the SPMC marks it aborted.
pub const ABORT_32: u32 = 0x8400_0090;
pub const ABORT_64: u32 = 0xC400_0090;

/// Whether a function ID is in the FF-A range (SMC32 or SMC64 standard secure service calls
/// 0x60-0xFF), i.e. one EL3 forwards to the SPMC.
pub fn is_ffa(fid: u64) -> bool {
    let f = fid as u32;
    fid >> 32 == 0 && (f & 0xBFFF_FF00) == 0x8400_0000 && (f & 0xFF) >= 0x60
}

/// FF-A status codes returned in w2 of FFA_ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// FF-A version implemented by the testbed SPMC: 1.2.
pub const SPMC_VERSION: u32 = 0x0001_0002;
pub const fn version(major: u32, minor: u32) -> u32 {
    (major << 16) | minor
}

/// Endpoint IDs (Hafnium `vm_ids.h`).
pub const NW_ID: u16 = 0;
pub const SPMC_ID: u16 = 0x8000;
pub const FIRST_SP_ID: u16 = 0x8001;

/// FFA_ERROR(code) with x1 = 0 (no target information).
pub fn error(e: FfaError) -> Regs {
    let mut r = [0u64; 18];
    r[0] = u64::from(ERROR);
    r[2] = u64::from(e as i32 as u32);
    r
}

/// FFA_SUCCESS_32 with w2 = `arg2`.
pub fn success32(arg2: u32) -> Regs {
    let mut r = [0u64; 18];
    r[0] = u64::from(SUCCESS_32);
    r[2] = u64::from(arg2);
    r
}

/// Decodes an FFA_ERROR return into its code, if `r` is one.
pub fn error_code(r: &Regs) -> Option<i32> {
    (r[0] as u32 == ERROR).then_some(r[2] as u32 as i32)
}

/// A partition UUID in the manifest's cell form: four u32 words, each the little-endian reading of
/// four UUID bytes (platform-facts.md sec. 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Uuid(pub [u32; 4]);

impl Uuid {
    pub const NIL: Uuid = Uuid([0; 4]);

    /// From PARTITION_INFO_GET's w1-w4.
    pub fn from_w1_w4(r: &Regs) -> Self {
        Uuid([r[1] as u32, r[2] as u32, r[3] as u32, r[4] as u32])
    }

    /// From two 64-bit registers, low then high half (DIRECT_REQ2 x2/x3, PARTITION_INFO_GET_REGS
    /// x1/x2).
    pub fn from_u64_pair(lo: u64, hi: u64) -> Self {
        Uuid([lo as u32, (lo >> 32) as u32, hi as u32, (hi >> 32) as u32])
    }

    pub fn to_u64_pair(self) -> (u64, u64) {
        let w = self.0;
        (
            u64::from(w[0]) | u64::from(w[1]) << 32,
            u64::from(w[2]) | u64::from(w[3]) << 32,
        )
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        for (c, w) in b.chunks_exact_mut(4).zip(self.0) {
            c.copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    pub fn is_nil(self) -> bool {
        self == Self::NIL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffa_range() {
        assert!(is_ffa(u64::from(VERSION)));
        assert!(is_ffa(u64::from(DIRECT_REQ2)));
        assert!(is_ffa(0x8400_00FF));
        assert!(!is_ffa(0x8400_0008)); // PSCI SYSTEM_OFF
        assert!(!is_ffa(0xC200_FF00)); // testbed exit
        assert!(!is_ffa(0x1_8400_0063)); // upper bits set
        assert!(!is_ffa(0x8400_0100));
    }

    #[test]
    fn uuid_forms_agree() {
        let u = Uuid([0x1234_5678, 0x9abc_def0, 0x1122_3344, 0x5566_7788]);
        let (lo, hi) = u.to_u64_pair();
        assert_eq!(lo, 0x9abc_def0_1234_5678);
        assert_eq!(Uuid::from_u64_pair(lo, hi), u);
        assert_eq!(&u.to_bytes()[..4], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(error_code(&error(FfaError::Aborted)), Some(-8));
    }
}
