//! FF-A function IDs (FF-A v1.2 sec. 13; research/platform-facts.md sec. 5).
//!
//! SMC32 IDs are `0x84..`, SMC64 IDs `0xC4..` (SMCCC: bit 30 selects the 64-bit calling
//! convention). `FFA_ABORT` is Hafnium's (v1.3 ALP), absent from arm-ffa 0.5.

macro_rules! func_ids {
    ($($(#[$m:meta])* $name:ident = $val:expr,)*) => {
        /// An FF-A function ID, as it appears in w0.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum FuncId {
            $($(#[$m])* $name = $val,)*
        }

        impl FuncId {
            /// All known IDs (for tests and tables).
            pub const ALL: &'static [FuncId] = &[$(FuncId::$name,)*];

            /// The ID for a raw w0 value, or `None` if it is not one this crate knows.
            pub const fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($val => Some(FuncId::$name),)*
                    _ => None,
                }
            }
        }
    };
}

func_ids! {
    Error = 0x8400_0060,
    Success32 = 0x8400_0061,
    Success64 = 0xC400_0061,
    Interrupt = 0x8400_0062,
    Version = 0x8400_0063,
    Features = 0x8400_0064,
    RxRelease = 0x8400_0065,
    RxTxMap32 = 0x8400_0066,
    RxTxMap64 = 0xC400_0066,
    RxTxUnmap = 0x8400_0067,
    PartitionInfoGet = 0x8400_0068,
    IdGet = 0x8400_0069,
    MsgWait = 0x8400_006B,
    Yield = 0x8400_006C,
    Run = 0x8400_006D,
    MsgSendDirectReq32 = 0x8400_006F,
    MsgSendDirectReq64 = 0xC400_006F,
    MsgSendDirectResp32 = 0x8400_0070,
    MsgSendDirectResp64 = 0xC400_0070,
    MemDonate32 = 0x8400_0071,
    MemDonate64 = 0xC400_0071,
    MemLend32 = 0x8400_0072,
    MemLend64 = 0xC400_0072,
    MemShare32 = 0x8400_0073,
    MemShare64 = 0xC400_0073,
    MemRetrieveReq32 = 0x8400_0074,
    MemRetrieveReq64 = 0xC400_0074,
    MemRetrieveResp = 0x8400_0075,
    MemRelinquish = 0x8400_0076,
    MemReclaim = 0x8400_0077,
    MemOpPause = 0x8400_0078,
    MemOpResume = 0x8400_0079,
    MemFragRx = 0x8400_007A,
    MemFragTx = 0x8400_007B,
    NormalWorldResume = 0x8400_007C,
    RxAcquire = 0x8400_0084,
    SpmIdGet = 0x8400_0085,
    MsgSend2 = 0x8400_0086,
    SecondaryEpRegister32 = 0x8400_0087,
    SecondaryEpRegister64 = 0xC400_0087,
    ConsoleLog32 = 0x8400_008A,
    ConsoleLog64 = 0xC400_008A,
    PartitionInfoGetRegs = 0xC400_008B,
    El3IntrHandle = 0x8400_008C,
    MsgSendDirectReq2 = 0xC400_008D,
    MsgSendDirectResp2 = 0xC400_008E,
    /// Hafnium only (FF-A v1.3 ALP): an SP gives up; it is never resumed.
    Abort32 = 0x8400_0090,
    /// Hafnium only.
    Abort64 = 0xC400_0090,
}

impl FuncId {
    /// True for the SMC64 calling convention (x registers); SMC32 calls use only the low
    /// 32 bits of w1-w7 and ignore the upper halves (SMCCC).
    pub const fn is_64bit(self) -> bool {
        (self as u32) & 0x4000_0000 != 0
    }
}

impl From<FuncId> for u32 {
    fn from(f: FuncId) -> u32 {
        f as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_width_bit() {
        for &f in FuncId::ALL {
            assert_eq!(FuncId::from_u32(f as u32), Some(f));
            let hi = (f as u32) >> 24;
            assert!(hi == 0x84 || hi == 0xC4, "{f:?}");
            assert_eq!(f.is_64bit(), hi == 0xC4);
        }
        assert_eq!(FuncId::from_u32(0x8400_0090), Some(FuncId::Abort32));
        assert_eq!(FuncId::from_u32(0x8400_006A), None);
    }
}
