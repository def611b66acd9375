//! The emulated NPU's path to memory (DESIGN.md sec. 7, 9): which physical page a DMA access
//! reaches, or who denies it. Pure logic over the TZPC, the SMMU model, the firewall model and
//! the normal world's stage-2; `arch` takes the locks and copies the bytes.
//!
//! - A **secure master** (TZPC DECPROT0.DMA_NS clear): the SMMU's secure STE for the NPU's
//!   stream translates the IOVA (abort, bypass, or the stage-2 tables the SP built); then the
//!   TZC-400 must grant a secure access to the page. What the SP's STE does not map is
//!   unreachable, and only pages the firewall has made secure are usable.
//! - A **non-secure master**: the normal world's own SMMU is not emulated (bypass: IOVA = PA);
//!   the TZC-400 must grant NSAID `npu::NSAID` an NS access, and the page must still be the
//!   normal world's (its stage-2 maps it: a page lent or donated away is gone for its devices
//!   too, as an NS hypervisor's IOMMU tables would make it).
//!
//! Either way the page must be memory (NS DRAM or the partitions' secure RAM): anything else is
//! a bus error.

use smmu::model::{Fault as SmmuFault, Memory, Smmuv3Model};
use smmu::s2::WalkFault;
use testbed_layout::{npu, secure_ram, virt};

use crate::firewall::Firewall;
use crate::stage2::Stage2;
use crate::tzpc::Tzpc;

/// Why a DMA access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The SMMU refused the secure stream (its STE, or its stage-2 walk).
    Smmu(SmmuFault),
    /// The TZC-400 refused the access (`region` decided; `None` if the model named none).
    Firewall { region: Option<u8>, secure: bool },
    /// The page is not the normal world's any more (lent, donated, testbed-reserved).
    NotOwned,
    /// Not memory.
    Bus,
}

impl Denied {
    /// The NPU's fault kind for it.
    pub fn kind(self) -> npu_driver::testbed::DmaFaultKind {
        use npu_driver::testbed::DmaFaultKind as K;
        match self {
            Denied::Smmu(SmmuFault::Walk(WalkFault::Permission { .. })) => K::SmmuPermission,
            Denied::Smmu(_) => K::SmmuTranslation,
            Denied::Firewall { .. } | Denied::NotOwned => K::Firewall,
            Denied::Bus => K::Bus,
        }
    }
}

/// The physical address one DMA access of the NPU at `iova` reaches (the access stays within
/// `iova`'s 4 KiB page), and whether it is a secure access.
pub fn resolve<M: Memory>(
    tzpc: &Tzpc,
    fw: &Firewall,
    nw: Option<&Stage2<'_>>,
    smmu: &mut Smmuv3Model<M>,
    iova: u64,
    write: bool,
) -> Result<(u64, bool), Denied> {
    let secure = !tzpc.npu_dma_ns();
    let pa = if secure {
        smmu.translate(npu::STREAM_ID, iova, write)
            .map_err(Denied::Smmu)?
    } else {
        iova
    };
    let in_dram = (virt::NS_RAM_BASE..virt::NS_RAM_BASE + virt::NS_RAM_SIZE).contains(&pa);
    let in_secure_ram = (secure_ram::PARTITIONS_BASE..secure_ram::PARTITIONS_END).contains(&pa);
    if !in_dram && !in_secure_ram {
        return Err(Denied::Bus);
    }
    if in_secure_ram {
        // Secure RAM is outside the filter: secure-only.
        return if secure {
            Ok((pa, true))
        } else {
            Err(Denied::Firewall {
                region: None,
                secure,
            })
        };
    }
    let v = fw.permits_master(pa, secure, write, npu::NSAID);
    if !v.allowed {
        return Err(Denied::Firewall {
            region: v.region,
            secure,
        });
    }
    if !secure {
        let owned = nw
            .and_then(|s| s.lookup(pa))
            .is_some_and(|(_, a)| a.read && (a.write || !write));
        if !owned {
            return Err(Denied::NotOwned);
        }
    }
    Ok((pa, secure))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;
    use crate::mmio::Device;
    use crate::stage2::{Attrs, Table};
    use smmu::model::VecMemory;
    use testbed_layout::ns_ram;

    fn smmu() -> Smmuv3Model<VecMemory> {
        Smmuv3Model::new(crate::devices::SMMU_SID_BITS, 0x0e40_0000, 0x8000)
    }

    #[test]
    fn non_secure_dma_needs_the_firewall_and_the_page() {
        let tzpc = Tzpc::new();
        let fw = Firewall::new(true);
        let mut pool = vec![Table::EMPTY; 16];
        let mut nw = Stage2::new(&mut pool, 0x1000_0000).unwrap();
        nw.map_identity(virt::NS_RAM_BASE, 0x20_0000, Attrs::RWX)
            .unwrap();
        let mut s = smmu();
        let a = virt::NS_RAM_BASE + 0x1000;
        assert_eq!(
            resolve(&tzpc, &fw, Some(&nw), &mut s, a, true),
            Ok((a, false))
        );
        // Not the NW's page (not in its stage-2): gone for its devices too.
        let b = virt::NS_RAM_BASE + 0x40_0000;
        assert_eq!(
            resolve(&tzpc, &fw, Some(&nw), &mut s, b, false),
            Err(Denied::NotOwned)
        );
        // The carve-out is secure at boot: the firewall refuses NS DMA there.
        let c = ns_ram::CARVEOUT_BASE;
        assert!(matches!(
            resolve(&tzpc, &fw, Some(&nw), &mut s, c, false),
            Err(Denied::Firewall { secure: false, .. })
        ));
        assert!(matches!(
            resolve(
                &tzpc,
                &fw,
                Some(&nw),
                &mut s,
                virt::SECURE_RAM_BASE + 0x30_0000,
                false
            ),
            Err(Denied::Firewall { .. })
        ));
        assert_eq!(
            resolve(&tzpc, &fw, Some(&nw), &mut s, 0x0900_0000, false),
            Err(Denied::Bus)
        );
    }

    /// Table pages from the model's memory above its stream table and queue.
    struct Tables<'a> {
        smmu: &'a mut Smmuv3Model<VecMemory>,
        next: u64,
    }

    impl smmu::s2::TableMemory for Tables<'_> {
        fn alloc_page(&mut self) -> Option<u64> {
            self.next += 0x1000;
            Some(self.next - 0x1000)
        }
        fn read_u64(&mut self, pa: u64) -> Option<u64> {
            self.smmu.mem_read_u64(pa)
        }
        fn write_u64(&mut self, pa: u64, v: u64) -> bool {
            smmu::Bus::mem_write_u64(self.smmu, pa, v)
        }
    }

    #[test]
    fn secure_dma_goes_through_the_secure_ste_and_the_firewall() {
        const MEM: u64 = 0x0e40_0000;
        let mut tzpc = Tzpc::new();
        tzpc.write(
            crate::tzpc::DECPROT0_CLR,
            4,
            u64::from(tzasc::tzpc::testbed::NPU_DMA_NS),
        );
        let fw = Firewall::new(true);
        let layout = smmu::Layout {
            strtab_pa: MEM,
            strtab_log2: 8,
            cmdq_pa: MEM + 0x4000,
            cmdq_log2: 2,
            eventq_pa: MEM + 0x5000,
            eventq_log2: 4,
        };
        let model = Smmuv3Model::new(crate::devices::SMMU_SID_BITS, MEM, 0x10000);
        // Before the SP enables the SMMU, the secure stream aborts (S_GBPA).
        let mut idle = Smmuv3Model::new(crate::devices::SMMU_SID_BITS, MEM, 0x10000);
        assert!(matches!(
            resolve(&tzpc, &fw, None, &mut idle, ns_ram::CARVEOUT_BASE, false),
            Err(Denied::Smmu(SmmuFault::Abort))
        ));
        let mut drv = smmu::SecureSmmu::init(model, layout).unwrap();
        let mut mem = Tables {
            smmu: drv.bus(),
            next: MEM + 0x8000,
        };
        let mut t = smmu::s2::S2Tables::new(&mut mem).unwrap();
        let rw = smmu::s2::Access {
            read: true,
            write: true,
        };
        let ro = smmu::s2::Access {
            read: true,
            write: false,
        };
        // IOVA 0x1000_0000 -> a carve-out page (secure at boot); 0x1000_1000 -> an NS page
        // (the firewall refuses a secure access there); 0x1000_2000 read-only.
        let c = ns_ram::CARVEOUT_BASE + 0x3000;
        t.map(&mut mem, 0x1000_0000, c, rw).unwrap();
        t.map(&mut mem, 0x1000_1000, virt::NS_RAM_BASE, rw).unwrap();
        t.map(&mut mem, 0x1000_2000, c + 0x1000, ro).unwrap();
        drv.set_ste(npu::STREAM_ID, smmu::ste::Ste::Stage2(t.stage2(1)))
            .unwrap();
        let s = drv.bus();
        assert_eq!(
            resolve(&tzpc, &fw, None, s, 0x1000_0010, true),
            Ok((c + 0x10, true))
        );
        assert!(matches!(
            resolve(&tzpc, &fw, None, s, 0x1000_1000, false),
            Err(Denied::Firewall { secure: true, .. })
        ));
        let perm = resolve(&tzpc, &fw, None, s, 0x1000_2000, true).unwrap_err();
        assert_eq!(
            perm.kind(),
            npu_driver::testbed::DmaFaultKind::SmmuPermission
        );
        let unmapped = resolve(&tzpc, &fw, None, s, 0x1000_3000, false).unwrap_err();
        assert_eq!(
            unmapped.kind(),
            npu_driver::testbed::DmaFaultKind::SmmuTranslation
        );
        // Back to a non-secure master: the same IOVA is a physical address again, and the
        // NW's stage-2 (none here) decides.
        tzpc.write(
            crate::tzpc::DECPROT0_SET,
            4,
            u64::from(tzasc::tzpc::testbed::NPU_DMA_NS),
        );
        assert_eq!(
            resolve(&tzpc, &fw, None, s, virt::NS_RAM_BASE, false),
            Err(Denied::NotOwned)
        );
    }
}
