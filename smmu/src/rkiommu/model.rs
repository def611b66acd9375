//! A register and walk model of one Rockchip IOMMU v2, as the Linux driver expects the hardware
//! to behave: stall and paging state in `STATUS`, `FORCE_RESET` clearing `DTE_ADDR`, a
//! translation cache that only `ZAP_CACHE` / `ZAP_ONE_LINE` drop, and page faults latched in
//! `PAGE_FAULT_ADDR` / `INT_RAWSTAT`. The tables are read from a [`PageTables`] standing in for
//! memory at the directory address the driver programmed.

use super::{Fault, PageTables, RkBus, cmd, dte_addr_decode, irq, reg, status};
use alloc::collections::BTreeMap;

#[derive(Default)]
pub struct RkIommuModel {
    dte_addr: u32,
    paging: bool,
    stall: bool,
    int_mask: u32,
    int_raw: u32,
    fault_addr: u32,
    fault_write: bool,
    /// Cached translations: IOVA page -> PA page.
    cache: BTreeMap<u32, u64>,
    /// Commands that arrived while the model would have ignored them (e.g. paging with no
    /// directory): a driver bug the tests look for.
    pub ignored: u32,
}

impl RkIommuModel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn paging(&self) -> bool {
        self.paging
    }

    pub fn directory(&self) -> u64 {
        dte_addr_decode(self.dte_addr)
    }

    /// An NPU DMA access through this IOMMU. `tables` is the memory at the programmed
    /// directory (`dir_pa` says where the caller put it; a different address walks nothing).
    pub fn access(
        &mut self,
        tables: &PageTables,
        dir_pa: u64,
        iova: u32,
        write: bool,
    ) -> Result<u64, Fault> {
        let page = iova & !0xfff;
        let r = if !self.paging || self.directory() != dir_pa {
            Err(Fault::Unmapped(iova))
        } else if let Some(&pa) = self.cache.get(&page) {
            Ok(pa | u64::from(iova & 0xfff))
        } else {
            let r = tables.translate(iova, write);
            if let Ok(pa) = r {
                self.cache.insert(page, pa & !0xfff);
            }
            r
        };
        if r.is_err() {
            self.fault_addr = iova;
            self.fault_write = write;
            self.int_raw |= irq::PAGE_FAULT;
        }
        r
    }

    /// A pending, unmasked interrupt.
    pub fn irq_pending(&self) -> bool {
        self.int_raw & self.int_mask != 0
    }
}

impl RkBus for RkIommuModel {
    fn read32(&mut self, offset: usize) -> u32 {
        match offset {
            reg::DTE_ADDR => self.dte_addr,
            reg::STATUS => {
                let mut s = status::IDLE;
                if self.paging {
                    s |= status::PAGING_ENABLED;
                }
                if self.stall {
                    s |= status::STALL_ACTIVE;
                }
                if self.int_raw & irq::PAGE_FAULT != 0 {
                    s |= status::PAGE_FAULT_ACTIVE;
                    if self.fault_write {
                        s |= status::PAGE_FAULT_IS_WRITE;
                    }
                }
                s
            }
            reg::PAGE_FAULT_ADDR => self.fault_addr,
            reg::INT_RAWSTAT => self.int_raw,
            reg::INT_MASK => self.int_mask,
            reg::INT_STATUS => self.int_raw & self.int_mask,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        match offset {
            // The low 4 bits of DTE_ADDR do not exist.
            reg::DTE_ADDR => self.dte_addr = value & !0xf,
            reg::INT_MASK => self.int_mask = value,
            reg::INT_CLEAR => self.int_raw &= !value,
            reg::ZAP_ONE_LINE => {
                self.cache.remove(&(value & !0xfff));
            }
            reg::COMMAND => match value {
                cmd::ENABLE_STALL => self.stall = true,
                cmd::DISABLE_STALL => self.stall = false,
                cmd::ENABLE_PAGING if self.dte_addr != 0 => self.paging = true,
                cmd::DISABLE_PAGING => self.paging = false,
                cmd::ZAP_CACHE => self.cache.clear(),
                cmd::PAGE_FAULT_DONE => self.int_raw &= !irq::PAGE_FAULT,
                // Reset only while stalled, as the driver does it.
                cmd::FORCE_RESET if self.stall => {
                    self.dte_addr = 0;
                    self.paging = false;
                    self.cache.clear();
                    self.int_raw = 0;
                    self.fault_addr = 0;
                }
                _ => self.ignored += 1,
            },
            _ => {}
        }
    }
}
