//! Arm's BP147 TrustZone Protection Controller: decode-protection words that make peripherals
//! secure-only (a set DECPROT bit lets non-secure accesses through). Register layout from the
//! BP147 TRM (DDI 0431): DECPROT*n* status at 0x800 + 12n, set at +4, clear at +8; peripheral
//! id 0 at 0xFE0 (part number 0x70).
//!
//! [`testbed`] says what the QEMU testbed wires to DECPROT0: its emulated NPU's register window
//! and the security of the NPU's DMA (the testbed's stand-in for a platform's master-security
//! control; RK3588 has FIREWALL_DDR master bits instead).

use crate::RegisterAccess;

pub const DECPROT0_STAT: usize = 0x800;
pub const DECPROT0_SET: usize = 0x804;
pub const DECPROT0_CLR: usize = 0x808;
pub const PERIPH_ID0: usize = 0xfe0;
pub const PART_NUMBER: u32 = 0x70;

/// The testbed's DECPROT0 bits.
pub mod testbed {
    /// Set: the NPU's MMIO answers non-secure accesses.
    pub const NPU_MMIO_NS: u32 = 1 << 0;
    /// Set: the NPU's DMA is a non-secure master; clear: a secure one (the SMMU's secure
    /// stream for it).
    pub const NPU_DMA_NS: u32 = 1 << 1;
    /// At reset the NPU is the normal world's.
    pub const RESET: u32 = NPU_MMIO_NS | NPU_DMA_NS;
    /// The bits the testbed implements.
    pub const IMPLEMENTED: u32 = NPU_MMIO_NS | NPU_DMA_NS;
}

/// Why the driver refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TzpcError {
    /// Peripheral id 0 is not BP147's.
    NotBp147(u32),
    /// A set or clear did not show in the status register.
    NotTaken { want: u32, got: u32 },
}

/// A BP147 TZPC's DECPROT0.
pub struct Tzpc<R> {
    regs: R,
}

impl<R: RegisterAccess> Tzpc<R> {
    pub fn new(mut regs: R) -> Result<Self, TzpcError> {
        match regs.read(PERIPH_ID0) & 0xff {
            PART_NUMBER => Ok(Self { regs }),
            other => Err(TzpcError::NotBp147(other)),
        }
    }

    pub fn decprot0(&mut self) -> u32 {
        self.regs.read(DECPROT0_STAT)
    }

    /// Lets non-secure accesses through for `bits`, and checks they did.
    pub fn allow_ns(&mut self, bits: u32) -> Result<(), TzpcError> {
        self.regs.write(DECPROT0_SET, bits);
        self.check(bits, bits)
    }

    /// Makes `bits` secure-only, and checks they are.
    pub fn secure(&mut self, bits: u32) -> Result<(), TzpcError> {
        self.regs.write(DECPROT0_CLR, bits);
        self.check(bits, 0)
    }

    fn check(&mut self, bits: u32, want: u32) -> Result<(), TzpcError> {
        let got = self.decprot0() & bits;
        if got == want {
            Ok(())
        } else {
            Err(TzpcError::NotTaken { want, got })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Regs {
        stat: u32,
        stuck: u32,
    }

    impl RegisterAccess for Regs {
        fn read(&mut self, offset: usize) -> u32 {
            match offset {
                DECPROT0_STAT => self.stat,
                PERIPH_ID0 => PART_NUMBER,
                _ => 0,
            }
        }
        fn write(&mut self, offset: usize, value: u32) {
            let v = value & !self.stuck;
            match offset {
                DECPROT0_SET => self.stat |= v,
                DECPROT0_CLR => self.stat &= !v,
                _ => {}
            }
        }
    }

    #[test]
    fn secures_and_opens_and_checks() {
        let mut t = Tzpc::new(Regs {
            stat: testbed::RESET,
            stuck: 0,
        })
        .unwrap();
        t.secure(testbed::NPU_MMIO_NS).unwrap();
        assert_eq!(t.decprot0(), testbed::NPU_DMA_NS);
        t.secure(testbed::NPU_DMA_NS).unwrap();
        t.allow_ns(testbed::RESET).unwrap();
        assert_eq!(t.decprot0(), testbed::RESET);
        let mut stuck = Tzpc::new(Regs {
            stat: testbed::RESET,
            stuck: testbed::NPU_DMA_NS,
        })
        .unwrap();
        assert_eq!(
            stuck.secure(testbed::RESET),
            Err(TzpcError::NotTaken {
                want: 0,
                got: testbed::NPU_DMA_NS
            })
        );
    }
}
