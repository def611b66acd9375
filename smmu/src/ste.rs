//! Stream table entries (IHI 0070 sec. 5.2): 64 bytes, eight little-endian words.
//!
//! The driver needs three configurations: abort (the NPU's non-secure stream while the NPU is
//! secure), bypass, and stage-2 translation (the NPU's secure stream, confined to its IOVA space).

/// `STE.Config` (word 0, bits [3:1]).
const CONFIG_ABORT: u64 = 0b000;
const CONFIG_BYPASS: u64 = 0b100;
const CONFIG_S2: u64 = 0b110;

/// Stage-2 translation parameters (word 2 and 3 fields; 4 KiB granule, AArch64 tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2 {
    pub vmid: u16,
    /// Table base, 16-byte aligned at least (`S2TTB` [51:4]).
    pub ttb: u64,
    /// `S2T0SZ`: input size is 64 - t0sz bits (16..=39 with 4 KiB pages and SL0 0..=2).
    pub t0sz: u8,
    /// `S2SL0`: starting level (4 KiB granule: 0 = level 2, 1 = level 1, 2 = level 0).
    pub sl0: u8,
    /// `S2PS`: output size encoding, as ID_AA64MMFR0.PARange (0 = 32 bits ... 5 = 48 bits).
    pub ps: u8,
}

/// A stream's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ste {
    /// V=0: every transaction of the stream aborts (and records C_BAD_STE).
    Invalid,
    Abort,
    Bypass,
    Stage2(Stage2),
}

/// Why eight words are not an STE the model accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteError {
    /// A `Config` this driver and model do not implement (stage 1).
    UnsupportedConfig(u8),
    /// Stage-2 fields out of range (`C_BAD_STE` on hardware).
    BadStage2,
}

const V: u64 = 1;
const S2AA64: u64 = 1 << 51;
/// `S2R`: record faults instead of terminating silently.
const S2R: u64 = 1 << 58;
const TTB_MASK: u64 = ((1 << 52) - 1) & !0xf;

impl Stage2 {
    fn valid(&self) -> bool {
        (16..=39).contains(&self.t0sz) && self.sl0 <= 2 && self.ps <= 5 && self.ttb & !TTB_MASK == 0
    }
}

impl Ste {
    pub fn encode(self) -> [u64; 8] {
        let mut w = [0u64; 8];
        match self {
            Ste::Invalid => {}
            Ste::Abort => w[0] = V | (CONFIG_ABORT << 1),
            Ste::Bypass => w[0] = V | (CONFIG_BYPASS << 1),
            Ste::Stage2(s2) => {
                w[0] = V | (CONFIG_S2 << 1);
                // Inner/outer write-back cacheable, inner shareable table walks.
                w[2] = u64::from(s2.vmid)
                    | (u64::from(s2.t0sz) << 32)
                    | (u64::from(s2.sl0) << 38)
                    | (0b01 << 40)
                    | (0b01 << 42)
                    | (0b11 << 44)
                    | (u64::from(s2.ps) << 48)
                    | S2AA64
                    | S2R;
                w[3] = s2.ttb & TTB_MASK;
            }
        }
        w
    }

    pub fn decode(w: [u64; 8]) -> Result<Self, SteError> {
        if w[0] & V == 0 {
            return Ok(Ste::Invalid);
        }
        match (w[0] >> 1) & 0b111 {
            CONFIG_ABORT => Ok(Ste::Abort),
            CONFIG_BYPASS => Ok(Ste::Bypass),
            CONFIG_S2 => {
                if w[2] & S2AA64 == 0 || (w[2] >> 46) & 0b11 != 0 {
                    return Err(SteError::BadStage2); // AArch32 tables or a non-4 KiB granule
                }
                let s2 = Stage2 {
                    vmid: w[2] as u16,
                    t0sz: ((w[2] >> 32) & 0x3f) as u8,
                    sl0: ((w[2] >> 38) & 0b11) as u8,
                    ps: ((w[2] >> 48) & 0b111) as u8,
                    ttb: w[3] & TTB_MASK,
                };
                if s2.valid() {
                    Ok(Ste::Stage2(s2))
                } else {
                    Err(SteError::BadStage2)
                }
            }
            other => Err(SteError::UnsupportedConfig(other as u8)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bits() {
        let s2 = Stage2 {
            vmid: 3,
            ttb: 0x8000_1000,
            t0sz: 32,
            sl0: 1,
            ps: 2,
        };
        for ste in [Ste::Invalid, Ste::Abort, Ste::Bypass, Ste::Stage2(s2)] {
            assert_eq!(Ste::decode(ste.encode()), Ok(ste));
        }
        assert_eq!(Ste::Abort.encode()[0], 0b0001);
        assert_eq!(Ste::Bypass.encode()[0], 0b1001);
        assert_eq!(Ste::Stage2(s2).encode()[0], 0b1101);
        assert_eq!(Ste::Stage2(s2).encode()[3], 0x8000_1000);
    }

    #[test]
    fn rejects_what_hardware_calls_bad_ste() {
        let mut w = Ste::Stage2(Stage2 {
            vmid: 0,
            ttb: 0x1000,
            t0sz: 32,
            sl0: 1,
            ps: 2,
        })
        .encode();
        w[2] &= !S2AA64;
        assert_eq!(Ste::decode(w), Err(SteError::BadStage2));
        let bad_t0sz = Stage2 {
            vmid: 0,
            ttb: 0x1000,
            t0sz: 8,
            sl0: 1,
            ps: 2,
        };
        assert_eq!(
            Ste::decode(Ste::Stage2(bad_t0sz).encode()),
            Err(SteError::BadStage2)
        );
        assert_eq!(
            Ste::decode([V | (0b101 << 1), 0, 0, 0, 0, 0, 0, 0]),
            Err(SteError::UnsupportedConfig(0b101))
        );
    }
}
