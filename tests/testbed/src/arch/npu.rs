//! The emulated NPU on a CPU of its own (`testbed_layout::cpus::npu_cpu`): its registers
//! (`npu_driver::testbed::TestbedNpuModel`) answer the trapped MMIO accesses of the SP and of
//! the normal world (the latter only while the TZPC lets non-secure accesses in); a doorbell
//! wakes the NPU's CPU (SGI), which runs the job while the SP and the normal world go on, its
//! DMA through [`crate::npudma::resolve`] page by page.
//!
//! While a job runs the NPU's CPU holds the model: an access meanwhile reads STATUS as BUSY and
//! 0 elsewhere, and its writes are dropped (a doorbell too), as the device accepts nothing while
//! busy. Lock order: NPU, then MACHINE (the DMA path); nobody takes the NPU holding MACHINE.
//! On a machine without a CPU for the NPU (`-smp` 1 or 2) the window reads 0: no NPU.

use core::sync::atomic::{AtomicUsize, Ordering};

use npu_driver::testbed::{Dma, DmaFault, TestbedNpuModel, regs};
use testbed_layout::{control, npu, virt};

use super::{MACHINE, gic, reg};
use crate::log;
use crate::mmio::{self, Access, Device};
use crate::npudma::{self, Denied};
use crate::nwfault::Blocked;

static NPU: spin::Mutex<TestbedNpuModel> = spin::Mutex::new(TestbedNpuModel::new(npu::STREAM_ID));
/// The NPU's CPU (`usize::MAX`: none, the machine has too few CPUs).
static NPU_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);
/// A denied DMA of the last job, reported by the next CPU that reads the NPU's registers (it
/// is the one waiting for the job): the NPU's CPU does not print, so that its lines never cut
/// into the normal world's output on the shared console.
static DENIED: spin::Mutex<Option<(u64, Denied, bool, u64)>> = spin::Mutex::new(None);

/// The model's registers as an MMIO device (32-bit accesses only; others read 0, write
/// nothing).
struct Regs<'a>(&'a mut TestbedNpuModel);

impl Device for Regs<'_> {
    fn range(&self) -> (u64, u64) {
        (virt::NPU_BASE, virt::NPU_SIZE)
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if size == 4 {
            u64::from(self.0.read32(offset as usize))
        } else {
            0
        }
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if size == 4 {
            self.0.write32(offset as usize, value as u32);
        }
    }
}

/// The device as seen while a job runs.
struct Busy;

impl Device for Busy {
    fn range(&self) -> (u64, u64) {
        (virt::NPU_BASE, virt::NPU_SIZE)
    }
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if size == 4 && offset as usize == regs::STATUS {
            u64::from(regs::status::BUSY)
        } else {
            0
        }
    }
    fn write(&mut self, _: u64, _: u8, _: u64) {}
}

/// Whether `ipa` is in the NPU's register window.
pub fn covers(ipa: u64) -> bool {
    (virt::NPU_BASE..virt::NPU_BASE + virt::NPU_SIZE).contains(&ipa)
}

/// Performs a trapped access `a` to the NPU's window on the model (the caller has checked the
/// world may); wakes the NPU's CPU if it rang the doorbell. False if `a` is not the NPU's.
pub fn access(a: &Access, x: &mut [u64; 31]) -> bool {
    if !covers(a.ipa) {
        return false;
    }
    if npu_cpu().is_none() {
        // Too few CPUs for the NPU to have its own: there is no NPU (reads 0, writes ignored).
        if !a.write && a.reg != 31 {
            x[usize::from(a.reg)] = 0;
        }
        return true;
    }
    let rang = match NPU.try_lock() {
        Some(mut m) => {
            mmio::emulate(a, &mut [&mut Regs(&mut m)], x);
            // The interrupt line follows IRQ_STATUS & IRQ_MASK (a clear, a reset).
            gic::spi_set_pending(npu::INTID, m.irq_line());
            m.has_pending()
        }
        None => {
            mmio::emulate(a, &mut [&mut Busy], x);
            false
        }
    };
    if rang && let Some(cpu) = npu_cpu() {
        gic::wake(cpu);
    }
    if let Some((iova, d, secure, us)) = DENIED.lock().take() {
        log!(
            "testbed: blocked NPU {} DMA at IOVA {iova:#x}: {d:?} (the job ended with a fault \
             after {us} us)",
            if secure { "secure" } else { "non-secure" }
        );
    }
    true
}

/// A normal-world access to the NPU's window: performed while the TZPC leaves the NPU
/// non-secure; otherwise blocked (RAZ/WI) and returned for the report.
pub fn nw_access(a: &Access, x: &mut [u64; 31]) -> Option<Blocked> {
    let ns_ok = MACHINE.lock().tzpc.npu_mmio_ns();
    if ns_ok {
        access(a, x);
        return None;
    }
    if !a.write && a.reg != 31 {
        x[usize::from(a.reg)] = 0;
    }
    Some(Blocked {
        addr: a.ipa,
        kind: if a.write {
            control::KIND_WRITE
        } else {
            control::KIND_READ
        },
        owner: control::OWNER_SECURE_DEVICE,
        to: 0,
        unemulated: None,
        by_sp: false,
        secure: false,
    })
}

fn npu_cpu() -> Option<usize> {
    let c = NPU_CPU.load(Ordering::Acquire);
    (c != usize::MAX).then_some(c)
}

/// The NPU's DMA: each access split at 4 KiB pages, each page resolved under MACHINE, the bytes
/// copied without it.
struct Path {
    denied: Option<(u64, Denied)>,
}

impl Path {
    fn pages(
        &mut self,
        iova: u64,
        len: usize,
        write: bool,
        mut copy: impl FnMut(u64, core::ops::Range<usize>),
    ) -> Result<(), DmaFault> {
        let mut done = 0usize;
        while done < len {
            let at = iova.checked_add(done as u64).ok_or(DmaFault {
                kind: npu_driver::testbed::DmaFaultKind::Bus,
                iova,
            })?;
            let chunk = ((0x1000 - (at & 0xfff)) as usize).min(len - done);
            let r = {
                let mut m = MACHINE.lock();
                let super::Machine {
                    nw_s2,
                    firewall,
                    tzpc,
                    smmu,
                    ..
                } = &mut *m;
                match (firewall.as_ref(), smmu.as_mut()) {
                    (Some(fw), Some(s)) => npudma::resolve(tzpc, fw, nw_s2.as_ref(), s, at, write),
                    _ => Err(Denied::Bus),
                }
            };
            match r {
                Ok((pa, _)) => copy(pa, done..done + chunk),
                Err(d) => {
                    self.denied = Some((at, d));
                    return Err(DmaFault {
                        kind: d.kind(),
                        iova: at,
                    });
                }
            }
            done += chunk;
        }
        Ok(())
    }
}

impl Dma for Path {
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let len = buf.len();
        self.pages(iova, len, false, |pa, r| {
            // SAFETY: `resolve` returned memory (NS DRAM or partition RAM) within one page,
            // which no Rust reference covers; a CPU may be writing it meanwhile, as with any
            // DMA.
            unsafe { super::read_phys(pa, &mut buf[r]) }
        })
    }

    fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        self.pages(iova, data.len(), true, |pa, r| {
            // SAFETY: as for `read`; the page is one the NPU's master may write.
            unsafe { super::write_phys(pa, &data[r]) }
        })
    }
}

/// The NPU's CPU, for good: sleep until a doorbell, run the job, repeat.
pub fn run(cpu: usize) -> ! {
    NPU_CPU.store(cpu, Ordering::Release);
    log!("testbed: CPU {cpu} runs the emulated NPU");
    loop {
        gic::wait();
        let mut m = NPU.lock();
        if !m.has_pending() {
            continue;
        }
        let t0 = reg::cntpct();
        let mut path = Path { denied: None };
        m.run_pending(&mut path);
        let t1 = reg::cntpct();
        gic::spi_set_pending(npu::INTID, m.irq_line());
        drop(m);
        if let Some((iova, d)) = path.denied {
            let secure = !MACHINE.lock().tzpc.npu_dma_ns();
            *DENIED.lock() = Some((iova, d, secure, super::counter_us(t0, t1)));
        }
    }
}
