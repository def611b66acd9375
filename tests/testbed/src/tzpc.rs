//! The testbed's TrustZone protection controller: the register layout of Arm's BP147 TZPC
//! (one decode-protection word: DECPROT0 status +0x800, set +0x804, clear +0x808; a set bit
//! lets non-secure accesses through), with the bits of `tzasc::tzpc::testbed`: the NPU's MMIO
//! and the security of its DMA. Only the secure world reaches it (it is in no normal-world
//! stage-2); the SP flips the NPU between the worlds here (DESIGN.md sec. 7).

use testbed_layout::virt;
use tzasc::tzpc::{self as bp147, testbed as npu};

use crate::mmio::Device;

pub const DECPROT0_STAT: u64 = bp147::DECPROT0_STAT as u64;
pub const DECPROT0_SET: u64 = bp147::DECPROT0_SET as u64;
pub const DECPROT0_CLR: u64 = bp147::DECPROT0_CLR as u64;
const PERIPH_ID0: u64 = bp147::PERIPH_ID0 as u64;
const IMPLEMENTED: u32 = npu::IMPLEMENTED;

/// DECPROT0 and how often it changed (for the testbed's log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tzpc {
    decprot0: u32,
    pub changes: u64,
}

impl Default for Tzpc {
    fn default() -> Self {
        Self::new()
    }
}

impl Tzpc {
    pub const fn new() -> Self {
        Tzpc {
            decprot0: npu::RESET,
            changes: 0,
        }
    }

    /// The NPU's MMIO answers non-secure accesses.
    pub fn npu_mmio_ns(&self) -> bool {
        self.decprot0 & npu::NPU_MMIO_NS != 0
    }

    /// The NPU's DMA is a non-secure master.
    pub fn npu_dma_ns(&self) -> bool {
        self.decprot0 & npu::NPU_DMA_NS != 0
    }

    fn update(&mut self, v: u32) {
        if v != self.decprot0 {
            self.decprot0 = v;
            self.changes += 1;
        }
    }
}

impl Device for Tzpc {
    fn range(&self) -> (u64, u64) {
        (virt::TZPC_BASE, virt::TZPC_SIZE)
    }

    fn read(&mut self, offset: u64, size: u8) -> u64 {
        match (offset, size) {
            (DECPROT0_STAT, 4) => u64::from(self.decprot0),
            (PERIPH_ID0, 4) => u64::from(bp147::PART_NUMBER),
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let bits = value as u32 & IMPLEMENTED;
        match (offset, size) {
            (DECPROT0_SET, 4) => self.update(self.decprot0 | bits),
            (DECPROT0_CLR, 4) => self.update(self.decprot0 & !bits),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_clear() {
        let mut t = Tzpc::new();
        assert!(t.npu_mmio_ns() && t.npu_dma_ns());
        t.write(DECPROT0_CLR, 4, u64::from(npu::NPU_MMIO_NS));
        assert!(!t.npu_mmio_ns() && t.npu_dma_ns());
        t.write(DECPROT0_CLR, 4, 0xffff_ffff);
        assert!(!t.npu_dma_ns());
        assert_eq!(t.read(DECPROT0_STAT, 4), 0);
        // Unimplemented bits stay clear; the status register ignores writes.
        t.write(DECPROT0_SET, 4, 0xffff_fffc);
        t.write(DECPROT0_STAT, 4, 0xffff_ffff);
        assert_eq!(t.read(DECPROT0_STAT, 4), 0);
        t.write(DECPROT0_SET, 4, u64::from(npu::RESET));
        assert_eq!(
            t,
            Tzpc {
                changes: 3,
                ..Tzpc::new()
            }
        );
        assert_eq!(t.read(PERIPH_ID0, 4), 0x70);
        // Only 32-bit accesses count.
        t.write(DECPROT0_CLR, 1, 0xff);
        assert!(t.npu_mmio_ns());
    }
}
