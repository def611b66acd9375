//! The emulated SMMUv3's MMIO face: the `smmu` crate's model (one definition of SMMUv3
//! secure-side behaviour, shared with the driver's tests) behind [`mmio::Device`], at
//! `virt::SMMU_BASE`. Only the secure programming interface exists (page 0, `SMMU_S_*` at
//! +0x8000); the normal world's SMMU is not emulated, so its stream of the NPU is in bypass.

use smmu::Bus;
use smmu::model::{Memory, Smmuv3Model};
use testbed_layout::virt;

use crate::mmio::Device;

/// The SMMU's secure stream-id width: a 256-entry linear table covers the NPU's stream.
pub const SMMU_SID_BITS: u32 = 8;

/// The memory the SMMU model may write: the secure event queue the SP programmed, while it is
/// enabled, and only if it lies wholly inside `ram` (the partitions' secure RAM); nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteWindow(Option<(u64, u64)>);

impl WriteWindow {
    /// Nowhere.
    pub const NONE: Self = Self(None);

    /// The window for the model's `Memory::set_write_window(window)`.
    pub fn new(window: Option<core::ops::Range<u64>>, ram: core::ops::Range<u64>) -> Self {
        Self(
            window
                .filter(|w| w.start < w.end && w.start >= ram.start && w.end <= ram.end)
                .map(|w| (w.start, w.end)),
        )
    }

    /// Whether the aligned word at `pa` is inside the window.
    pub fn permits(&self, pa: u64) -> bool {
        pa.is_multiple_of(8)
            && self
                .0
                .is_some_and(|(s, e)| pa >= s && pa.checked_add(8).is_some_and(|end| end <= e))
    }
}

/// The SMMU model as an MMIO device.
pub struct SmmuDevice<'a, M: Memory>(pub &'a mut Smmuv3Model<M>);

impl<M: Memory> Device for SmmuDevice<'_, M> {
    fn range(&self) -> (u64, u64) {
        (virt::SMMU_BASE, virt::SMMU_SIZE)
    }

    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let off = offset as usize;
        match size {
            4 => u64::from(self.0.read32(off)),
            8 => u64::from(self.0.read32(off)) | u64::from(self.0.read32(off + 4)) << 32,
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let off = offset as usize;
        match size {
            4 => self.0.write32(off, value as u32),
            8 => self.0.write64(off, value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::{Access, emulate};
    use smmu::regs;

    fn access(off: usize, size: u8, write: bool, reg: u8) -> Access {
        Access {
            ipa: virt::SMMU_BASE + off as u64,
            size,
            write,
            reg,
            sign_extend: false,
            sixty_four: size == 8,
        }
    }

    #[test]
    fn the_smmu_writes_only_its_enabled_event_queue_inside_ram() {
        let ram = 0x0e40_0000..0x0e80_0000;
        let q = WriteWindow::new(Some(0x0e41_0000..0x0e41_1000), ram.clone());
        assert!(q.permits(0x0e41_0000) && q.permits(0x0e41_0ff8));
        assert!(!q.permits(0x0e41_1000) && !q.permits(0x0e40_fff8) && !q.permits(0x0e41_0004));
        // Disabled, straddling the end of RAM, or outside it: nowhere.
        assert!(!WriteWindow::new(None, ram.clone()).permits(0x0e41_0000));
        let straddle = WriteWindow::new(Some(0x0e7f_f000..0x0e80_1000), ram.clone());
        assert!(!straddle.permits(0x0e7f_f000));
        assert!(!WriteWindow::new(Some(0x4000_0000..0x4000_1000), ram).permits(0x4000_0000));
        // Through the model: the window follows S_EVENTQ_BASE and EVENTQEN.
        let mut m = Smmuv3Model::new(SMMU_SID_BITS, 0x0e40_0000, 0x4000);
        assert_eq!(m.eventq_window(), None);
        m.write64(regs::S_EVENTQ_BASE, 0x0e40_2000 | 7);
        m.write32(regs::S_CR0, regs::CR0_EVENTQEN);
        assert_eq!(m.eventq_window(), Some(0x0e40_2000..0x0e40_3000));
    }

    #[test]
    fn secure_registers_through_traps() {
        let mut m = Smmuv3Model::new(SMMU_SID_BITS, 0x0e40_0000, 0x4000);
        let mut x = [0u64; 31];
        assert!(emulate(
            &access(regs::S_IDR1, 4, false, 1),
            &mut [&mut SmmuDevice(&mut m)],
            &mut x
        ));
        assert_ne!(x[1] as u32 & regs::S_IDR1_SECURE_IMPL, 0);
        assert_eq!(x[1] as u32 & regs::S_IDR1_SIDSIZE_MASK, SMMU_SID_BITS);
        x[2] = 0x0e40_0000 | 8;
        assert!(emulate(
            &access(regs::S_CMDQ_BASE, 8, true, 2),
            &mut [&mut SmmuDevice(&mut m)],
            &mut x
        ));
        x[3] = u64::from(regs::CR0_SMMUEN);
        assert!(emulate(
            &access(regs::S_CR0, 4, true, 3),
            &mut [&mut SmmuDevice(&mut m)],
            &mut x
        ));
        assert!(emulate(
            &access(regs::S_CR0ACK, 4, false, 4),
            &mut [&mut SmmuDevice(&mut m)],
            &mut x
        ));
        assert_eq!(x[4] as u32, regs::CR0_SMMUEN);
        // Outside the block: not this device's.
        let mut out = access(0, 4, false, 5);
        out.ipa = virt::SMMU_BASE + virt::SMMU_SIZE;
        assert!(!emulate(&out, &mut [&mut SmmuDevice(&mut m)], &mut x));
    }
}
