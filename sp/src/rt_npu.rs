//! Flex-NPU's wiring on the target: the manifest's `npu`, `smmu` and `tzpc` device regions
//! (mapped as device memory by the runtime map) behind the drivers, and heap pages for the
//! SMMU's stream table, command queue, secure event queue and the NPU's stage-2 tables (the
//! SP's map is the identity, so a heap address is the physical address the SMMU walks).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use flexserve_sp::flexmem::Clock;
use flexserve_sp::flexnpu::{FlexNpu, IrqSwitch, NpuControl};
use flexserve_sp::manifest::FlexNpuRegions;
use npu_driver::testbed::{MmioBus, TestbedNpu};
use smmu::{Bus, Layout as SmmuLayout, SecureSmmu};
use tzasc::tzpc::Tzpc;

const PAGE: usize = 0x1000;
/// A 256-entry linear stream table (16 KiB), a 4-entry command queue and a 128-record event
/// queue (one page, so aligned to its size).
const STRTAB_LOG2: u32 = 8;
const CMDQ_LOG2: u32 = 2;
const EVENTQ_LOG2: u32 = 7;

/// Zeroed, page-aligned heap memory that lives as long as the SP (the SMMU may read it at any
/// time after it is handed over).
fn pages(n: usize) -> Option<u64> {
    let layout = Layout::from_size_align(n * PAGE, PAGE).ok()?;
    // SAFETY: `layout` has a non-zero size; the block is never freed (the SMMU keeps reading
    // it), so no reference to it is ever invalidated.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    (!p.is_null()).then_some(p as u64)
}

/// The SMMU's register page and the table memory the driver writes.
struct SmmuMmio {
    base: NonNull<u8>,
    len: usize,
    /// `[start, end)` of the stream table and of the command queue (the driver writes them).
    tables: [(u64, u64); 2],
    /// `[start, end)` of the event queue (the SMMU writes it, the driver reads it).
    eventq: (u64, u64),
}

impl SmmuMmio {
    fn reg(&self, offset: usize, width: usize) -> Option<*mut u8> {
        (offset.is_multiple_of(width) && offset + width <= self.len).then(|| {
            // SAFETY: inside the register block (checked above).
            unsafe { self.base.as_ptr().add(offset) }
        })
    }
}

impl Bus for SmmuMmio {
    fn read32(&mut self, offset: usize) -> u32 {
        // SAFETY: an aligned register of the manifest's `smmu` device region, mapped as device
        // memory for the SP alone.
        self.reg(offset, 4)
            .map_or(0, |p| unsafe { p.cast::<u32>().read_volatile() })
    }
    fn write32(&mut self, offset: usize, value: u32) {
        if let Some(p) = self.reg(offset, 4) {
            // SAFETY: as in `read32`.
            unsafe { p.cast::<u32>().write_volatile(value) }
        }
    }
    fn write64(&mut self, offset: usize, value: u64) {
        if let Some(p) = self.reg(offset, 8) {
            // SAFETY: as in `read32`, a 64-bit register.
            unsafe { p.cast::<u64>().write_volatile(value) }
        }
    }
    fn mem_write_u64(&mut self, pa: u64, value: u64) -> bool {
        let ok = pa.is_multiple_of(8) && self.tables.iter().any(|&(s, e)| pa >= s && pa + 8 <= e);
        if ok {
            // SAFETY: an aligned word of the stream table or command queue this SP allocated
            // for the SMMU (identity map: VA = PA); nothing else references it.
            unsafe { (pa as *mut u64).write_volatile(value) };
        }
        ok
    }
    fn mem_read_u64(&mut self, pa: u64) -> Option<u64> {
        let (s, e) = self.eventq;
        // SAFETY: an aligned word of the event queue this SP allocated for the SMMU (identity
        // map: VA = PA); no Rust reference covers it, and the SMMU writes it only before
        // moving S_EVENTQ_PROD past it.
        (pa.is_multiple_of(8) && pa >= s && pa + 8 <= e)
            .then(|| unsafe { (pa as *const u64).read_volatile() })
    }
}

/// Heap pages for the NPU's stage-2 tables.
struct TablePages {
    pages: Vec<u64>,
}

impl TablePages {
    fn holds(&self, pa: u64) -> bool {
        pa.is_multiple_of(8) && self.pages.iter().any(|&p| pa >= p && pa < p + PAGE as u64)
    }
}

impl smmu::s2::TableMemory for TablePages {
    fn alloc_page(&mut self) -> Option<u64> {
        let p = pages(1)?;
        self.pages.push(p);
        Some(p)
    }
    fn read_u64(&mut self, pa: u64) -> Option<u64> {
        // SAFETY: an aligned word of a table page this allocator handed out (VA = PA).
        self.holds(pa)
            .then(|| unsafe { (pa as *const u64).read_volatile() })
    }
    fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        let ok = self.holds(pa);
        if ok {
            // SAFETY: as in `read_u64`.
            unsafe { (pa as *mut u64).write_volatile(v) };
        }
        ok
    }
}

/// Flex-NPU over drivers whose MMIO pointers are device addresses.
struct Wired(FlexNpu<TestbedNpu<MmioBus>, SmmuMmio, tzasc::Mmio, TablePages>);

// SAFETY: the pointers inside are device-register and table addresses, valid from every CPU;
// the service that owns this is behind the SP's service lock, so one context uses it at a time.
unsafe impl Send for Wired {}

impl NpuControl for Wired {
    fn acquire(&mut self) -> Result<flexserve_proto::NpuSwitch, flexserve_proto::NpuFault> {
        self.0.acquire()
    }
    fn release(&mut self) -> Result<flexserve_proto::NpuSwitch, flexserve_proto::NpuFault> {
        self.0.release()
    }
    fn gemm(
        &mut self,
        a: &flexserve_proto::NpuGemmArgs,
        region: &mut dyn flexserve_sp::flexnpu::RegionIo,
    ) -> Result<flexserve_proto::NpuGemmResult, flexserve_proto::NpuFault> {
        self.0.gemm(a, region)
    }
    fn offload_start(
        &mut self,
        w: &[llm_runtime::kernels::BlockQ8_0],
        x: &[llm_runtime::kernels::BlockQ8_0],
        n: usize,
        rows: usize,
    ) -> bool {
        self.0.offload_start(w, x, n, rows)
    }
    fn offload_finish(&mut self, y: &mut [f32]) -> Result<(), llm_runtime::kernels::OffloadError> {
        self.0.offload_finish(y)
    }
}

/// Flex-NPU from the manifest's regions, if it grants all three devices and they answer.
pub fn flexnpu_from(r: &FlexNpuRegions, clock: Clock) -> Option<Box<dyn NpuControl + Send>> {
    let (npu_r, smmu_r, tzpc_r) = (r.npu?, r.smmu?, r.tzpc?);
    // SAFETY: the `npu` device region of the manifest, mapped as device memory by the runtime
    // map (memmap::plan maps every Flex-NPU region); only Flex-NPU drives it.
    let bus = unsafe { MmioBus::new(NonNull::new(npu_r.base as *mut _)?) };
    let npu = match TestbedNpu::new(bus) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("NPU at {:#x}: {e}; Flex-NPU off", npu_r.base);
            return None;
        }
    };
    let sid = npu.stream_id();
    // SAFETY: as above, the `tzpc` region.
    let tzpc = match unsafe { super::rt_flexmem::device_mmio(tzpc_r) }.map(Tzpc::new) {
        Some(Ok(t)) => t,
        other => {
            log::warn!(
                "TZPC at {:#x}: {:?}; Flex-NPU off",
                tzpc_r.base,
                other.map(|r| r.err())
            );
            return None;
        }
    };
    let strtab = pages((1usize << STRTAB_LOG2) * 64 / PAGE)?;
    let cmdq = pages(1)?;
    let eventq = pages(1)?;
    let layout = SmmuLayout {
        strtab_pa: strtab,
        strtab_log2: STRTAB_LOG2,
        cmdq_pa: cmdq,
        cmdq_log2: CMDQ_LOG2,
        eventq_pa: eventq,
        eventq_log2: EVENTQ_LOG2,
    };
    let mmio = SmmuMmio {
        base: NonNull::new(smmu_r.base as *mut u8)?,
        len: smmu_r.size as usize,
        tables: [
            (strtab, strtab + (64u64 << STRTAB_LOG2)),
            (cmdq, cmdq + (16u64 << CMDQ_LOG2)),
        ],
        eventq: (eventq, eventq + (32u64 << EVENTQ_LOG2)),
    };
    let smmu = match SecureSmmu::init(mmio, layout) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("SMMU at {:#x}: {e:?}; Flex-NPU off", smmu_r.base);
            return None;
        }
    };
    log::info!(
        "Flex-NPU: NPU at {:#x} (stream {sid:#x}), SMMU at {:#x}, TZPC at {:#x}; the NPU is the \
         normal world's",
        npu_r.base,
        smmu_r.base,
        tzpc_r.base
    );
    let tables = TablePages { pages: Vec::new() };
    let mut flex = FlexNpu::new(npu, smmu, tzpc, tables, sid, clock);
    if let Some(intid) = r.npu_irq {
        flex = flex.with_irq(IrqSwitch {
            intid,
            set_secure: interrupt_set_secure,
        });
    }
    Some(Box::new(Wired(flex)))
}

/// Hafnium's `HF_INTERRUPT_RECONFIGURE(intid, INT_RECONFIGURE_SEC_STATE, secure)` (HVC).
fn interrupt_set_secure(intid: u32, secure: bool) -> bool {
    let r: u64;
    // SAFETY: a paravirtualised call to the partition manager; it changes the interrupt's
    // group and returns a status in x0 (x1-x3 are its arguments; the rest is preserved).
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") 0xff09u64 => r,
            inout("x1") u64::from(intid) => _,
            inout("x2") 1u64 => _,
            inout("x3") u64::from(secure) => _,
            options(nostack),
        );
    }
    r == 0
}
