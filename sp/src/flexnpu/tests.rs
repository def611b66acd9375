//! Flex-NPU against host models of every device: npu-driver's testbed NPU (its DMA through the
//! SMMU model's secure stream when the TZPC model says secure), the smmu crate's SMMUv3 model
//! and a BP147-like TZPC.

extern crate std;

use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use super::*;
use npu_driver::testbed::{Dma, DmaFault, DmaFaultKind, NpuBus, TestbedNpu, TestbedNpuModel};
use smmu::model::{Memory, Smmuv3Model, VecMemory};
use tzasc::tzpc::{DECPROT0_CLR, DECPROT0_SET, DECPROT0_STAT, PART_NUMBER, PERIPH_ID0};

const TABLES: u64 = 0x0e40_0000;
const TABLES_LEN: usize = 0x10_0000;
const REGION: u64 = 0x5000_0000;
const REGION_PAGES: usize = 64;
const SID: u32 = 0x10;

/// Memory both the SMMU model (walks) and the SP's table allocator (writes) see.
#[derive(Clone)]
struct SharedMem(Rc<RefCell<VecMemory>>);

impl Memory for SharedMem {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        self.0.borrow().read_u64(pa)
    }
    fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        self.0.borrow_mut().write_u64(pa, v)
    }
}

type Smmu = Rc<RefCell<Smmuv3Model<SharedMem>>>;

/// The SMMU model as the driver's bus.
struct SmmuBus(Smmu);

impl Bus for SmmuBus {
    fn read32(&mut self, o: usize) -> u32 {
        self.0.borrow_mut().read32(o)
    }
    fn write32(&mut self, o: usize, v: u32) {
        self.0.borrow_mut().write32(o, v)
    }
    fn write64(&mut self, o: usize, v: u64) {
        self.0.borrow_mut().write64(o, v)
    }
    fn mem_write_u64(&mut self, pa: u64, v: u64) -> bool {
        self.0.borrow_mut().mem_write_u64(pa, v)
    }
    fn mem_read_u64(&mut self, pa: u64) -> Option<u64> {
        self.0.borrow().mem_read_u64(pa)
    }
}

/// Table pages from the shared memory, above the stream table and queue.
struct Pages {
    mem: SharedMem,
    next: u64,
}

impl TableMemory for Pages {
    fn alloc_page(&mut self) -> Option<u64> {
        self.next += 0x1000;
        Some(self.next - 0x1000)
    }
    fn read_u64(&mut self, pa: u64) -> Option<u64> {
        self.mem.read_u64(pa)
    }
    fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        self.mem.write_u64(pa, v)
    }
}

/// DECPROT0 as BP147 keeps it.
#[derive(Clone)]
struct TzpcRegs(Rc<RefCell<u32>>);

impl RegisterAccess for TzpcRegs {
    fn read(&mut self, o: usize) -> u32 {
        match o {
            DECPROT0_STAT => *self.0.borrow(),
            PERIPH_ID0 => PART_NUMBER,
            _ => 0,
        }
    }
    fn write(&mut self, o: usize, v: u32) {
        let v = v & decprot::IMPLEMENTED;
        match o {
            DECPROT0_SET => *self.0.borrow_mut() |= v,
            DECPROT0_CLR => *self.0.borrow_mut() &= !v,
            _ => {}
        }
    }
}

/// The NPU's memory: the secured region (physical), reached through the secure stream's STE
/// when the TZPC makes the NPU a secure master, else directly.
struct NpuDma {
    smmu: Smmu,
    tzpc: Rc<RefCell<u32>>,
    region: Rc<RefCell<Vec<u8>>>,
    /// The SP's own memory the NPU may reach too (staging pages live there).
    tables: SharedMem,
}

/// Where a DMA byte lands.
enum At {
    Region(usize),
    Tables(u64),
}

impl NpuDma {
    fn pa(&self, iova: u64, write: bool) -> Result<At, DmaFault> {
        let pa = if *self.tzpc.borrow() & decprot::NPU_DMA_NS == 0 {
            self.smmu
                .borrow_mut()
                .translate(SID, iova, write)
                .map_err(|_| DmaFault {
                    kind: DmaFaultKind::SmmuTranslation,
                    iova,
                })?
        } else {
            iova
        };
        if (TABLES..TABLES + TABLES_LEN as u64).contains(&pa) {
            return Ok(At::Tables(pa));
        }
        pa.checked_sub(REGION)
            .map(|o| o as usize)
            .filter(|&o| o < REGION_PAGES * 0x1000)
            .map(At::Region)
            .ok_or(DmaFault {
                kind: DmaFaultKind::Bus,
                iova,
            })
    }

    fn byte(&self, at: At) -> u8 {
        match at {
            At::Region(o) => self.region.borrow()[o],
            At::Tables(pa) => {
                let w = self.tables.read_u64(pa & !7).unwrap_or(0);
                (w >> ((pa & 7) * 8)) as u8
            }
        }
    }

    fn set(&mut self, at: At, b: u8) {
        match at {
            At::Region(o) => self.region.borrow_mut()[o] = b,
            At::Tables(pa) => {
                let w = self.tables.read_u64(pa & !7).unwrap_or(0);
                let sh = (pa & 7) * 8;
                let w = (w & !(0xff << sh)) | u64::from(b) << sh;
                self.tables.write_u64(pa & !7, w);
            }
        }
    }
}

impl Dma for NpuDma {
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = self.pa(iova + i as u64, false)?;
            *b = self.byte(at);
        }
        Ok(())
    }
    fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        for (i, &b) in data.iter().enumerate() {
            let at = self.pa(iova + i as u64, true)?;
            self.set(at, b);
        }
        Ok(())
    }
}

/// The NPU model behind the driver; a doorbell runs the job at once unless `hold` is set
/// (a job still running on the device).
struct NpuRig {
    model: Rc<RefCell<TestbedNpuModel>>,
    dma: NpuDma,
    hold: Rc<RefCell<bool>>,
}

impl NpuBus for NpuRig {
    fn read32(&mut self, o: usize) -> u32 {
        self.model.borrow().read32(o)
    }
    fn write32(&mut self, o: usize, v: u32) {
        self.model.borrow_mut().write32(o, v);
        if !*self.hold.borrow() {
            self.model.borrow_mut().run_pending(&mut self.dma);
        }
    }
}

struct Region {
    bytes: Rc<RefCell<Vec<u8>>>,
    pages: Vec<u64>,
}

impl RegionIo for Region {
    fn pages(&self) -> &[u64] {
        &self.pages
    }
    fn write(&mut self, off: u64, data: &[u8]) -> bool {
        let o = off as usize;
        let mut b = self.bytes.borrow_mut();
        match b.get_mut(o..o + data.len()) {
            Some(d) => {
                d.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
    fn read(&mut self, off: u64, out: &mut [u8]) -> bool {
        let o = off as usize;
        match self.bytes.borrow().get(o..o + out.len()) {
            Some(d) => {
                out.copy_from_slice(d);
                true
            }
            None => false,
        }
    }
}

struct Rig {
    flex: FlexNpu<TestbedNpu<NpuRig>, SmmuBus, TzpcRegs, Pages>,
    smmu: Smmu,
    decprot: Rc<RefCell<u32>>,
    npu: Rc<RefCell<TestbedNpuModel>>,
    hold: Rc<RefCell<bool>>,
    region: Region,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn rig() -> Rig {
    let mem = SharedMem(Rc::new(RefCell::new(VecMemory::new(TABLES, TABLES_LEN))));
    let smmu: Smmu = Rc::new(RefCell::new(Smmuv3Model::with_memory(8, mem.clone())));
    let layout = smmu::Layout {
        strtab_pa: TABLES,
        strtab_log2: 8,
        cmdq_pa: TABLES + 0x4000,
        cmdq_log2: 2,
        eventq_pa: TABLES + 0x5000,
        eventq_log2: 4,
    };
    let drv = SecureSmmu::init(SmmuBus(smmu.clone()), layout).unwrap();
    let decprot = Rc::new(RefCell::new(decprot::RESET));
    let tzpc = Tzpc::new(TzpcRegs(decprot.clone())).unwrap();
    let bytes = Rc::new(RefCell::new(vec![0u8; REGION_PAGES * 0x1000]));
    let model = Rc::new(RefCell::new(TestbedNpuModel::new(SID)));
    let hold = Rc::new(RefCell::new(false));
    let bus = NpuRig {
        model: model.clone(),
        dma: NpuDma {
            smmu: smmu.clone(),
            tzpc: decprot.clone(),
            region: bytes.clone(),
            tables: mem.clone(),
        },
        hold: hold.clone(),
    };
    let npu = TestbedNpu::new(bus).unwrap();
    let tables = Pages {
        mem,
        next: TABLES + 0x8000,
    };
    let clock = Clock {
        now,
        hz: || 1_000_000_000,
    };
    Rig {
        flex: FlexNpu::new(npu, drv, tzpc, tables, SID, clock).with_irq(IrqSwitch {
            intid: 142,
            set_secure: record_irq,
        }),
        smmu,
        decprot,
        npu: model,
        hold,
        region: Region {
            bytes,
            pages: (0..REGION_PAGES as u64)
                .map(|i| REGION + i * 0x1000)
                .collect(),
        },
    }
}

std::thread_local! {
    /// The NPU interrupt's group as the fake partition manager last set it (per test thread).
    static IRQ_SECURE: core::cell::Cell<Option<bool>> = const { core::cell::Cell::new(None) };
}

fn record_irq(intid: u32, secure: bool) -> bool {
    assert_eq!(intid, 142);
    IRQ_SECURE.with(|c| c.set(Some(secure)));
    true
}

fn irq_secure() -> Option<bool> {
    IRQ_SECURE.with(|c| c.get())
}

fn args(m: u32, n: u32, k: u32, flags: u32) -> NpuGemmArgs {
    NpuGemmArgs {
        region: 1,
        m,
        n,
        k,
        seed: 5,
        flags,
    }
}

#[test]
fn acquire_and_release_switch_every_step() {
    let mut r = rig();
    assert_eq!(r.smmu.borrow_mut().ste(SID), Ok(Ste::Abort));
    let s = r.flex.acquire().unwrap();
    assert_eq!(s.switches, 1);
    assert_eq!(*r.decprot.borrow(), 0, "MMIO and DMA secure");
    assert_eq!(irq_secure(), Some(true), "interrupt in the secure group");
    assert!(matches!(r.smmu.borrow_mut().ste(SID), Ok(Ste::Stage2(_))));
    // Nothing is mapped for the NPU until a job maps its buffers.
    assert!(
        r.smmu
            .borrow_mut()
            .translate(SID, IOVA_BASE, false)
            .is_err()
    );
    assert_eq!(r.flex.acquire(), Err(NpuFault::AlreadySecure));
    let s = r.flex.release().unwrap();
    assert_eq!(s.switches, 2);
    assert_eq!(*r.decprot.borrow(), decprot::RESET);
    assert_eq!(
        irq_secure(),
        Some(false),
        "interrupt back to the normal world"
    );
    assert_eq!(r.smmu.borrow_mut().ste(SID), Ok(Ste::Abort));
    assert_eq!(r.flex.release(), Err(NpuFault::NotSecure));
}

#[test]
fn a_busy_npu_stays_the_normal_worlds() {
    let mut r = rig();
    // A normal-world job still running: doorbell rung behind the SP's driver.
    *r.hold.borrow_mut() = true;
    {
        use npu_driver::testbed::regs;
        let mut m = r.npu.borrow_mut();
        m.write32(regs::CTRL, regs::ctrl::ENABLE);
        m.write32(regs::JOB_MODE, regs::mode::I32);
        for (reg, v) in [(regs::JOB_M, 1), (regs::JOB_N, 1), (regs::JOB_K, 1)] {
            m.write32(reg, v);
        }
        m.write32(regs::DOORBELL, regs::DOORBELL_RING);
    }
    assert_eq!(r.flex.acquire(), Err(NpuFault::NotIdle));
    assert_eq!(*r.decprot.borrow(), decprot::RESET);
    assert_ne!(
        irq_secure(),
        Some(true),
        "the interrupt stays the normal world's"
    );
    assert_eq!(r.smmu.borrow_mut().ste(SID), Ok(Ste::Abort));
    assert!(!r.flex.is_secure());
}

#[test]
fn secure_gemm_through_the_secure_stream_matches_the_reference() {
    let mut r = rig();
    assert_eq!(
        r.flex.gemm(&args(2, 32, 64, 0), &mut r.region),
        Err(NpuFault::NotSecure)
    );
    r.flex.acquire().unwrap();
    let g = r.flex.gemm(&args(4, 96, 128, 0), &mut r.region).unwrap();
    assert_eq!((g.mismatches, g.fault_kind), (0, 0), "{g:?}");
    assert!(g.cycles > 0 && g.npu_end >= g.npu_start && g.cpu_end >= g.cpu_start);
    // The job's pages are unmapped again.
    assert!(
        r.smmu
            .borrow_mut()
            .translate(SID, IOVA_BASE, false)
            .is_err()
    );
    // Output aimed past the tables: an SMMU fault at that IOVA, nothing written there.
    let g = r
        .flex
        .gemm(&args(1, 32, 64, gemm_flags::OUTSIDE_STE), &mut r.region)
        .unwrap();
    assert_eq!(
        (g.fault_kind, g.fault_iova),
        (
            npu_driver::testbed::fault_code(npu_driver::FaultKind::SmmuTranslation),
            IOVA_BASE + (REGION_PAGES as u64) * 0x1000
        )
    );
    // The SMMU recorded the fault in its secure event queue and Flex-NPU drained it: the
    // NPU's stream, the IOVA the job aimed at, a stage-2 translation fault on a write.
    match r.flex.last_smmu_event() {
        Some(Ok(smmu::event::Event::Translation(f))) => {
            assert_eq!(
                (f.stream.sid, f.input_addr, f.stage2, f.attrs.read),
                (SID, g.fault_iova, true, false),
                "{f:?}"
            );
        }
        other => panic!("no F_TRANSLATION drained: {other:?}"),
    }
    let (prod, cons) = {
        let mut m = r.smmu.borrow_mut();
        (
            m.read32(smmu::regs::S_EVENTQ_PROD),
            m.read32(smmu::regs::S_EVENTQ_CONS),
        )
    };
    assert_eq!((prod, cons), (2, 2)); // the probe above and the job's fault
    // Shapes the NPU or the region cannot take.
    for bad in [
        args(1, 1, 33, 0),
        args(0, 1, 32, 0),
        args(64, 4096, 4096, 0),
    ] {
        assert_eq!(r.flex.gemm(&bad, &mut r.region), Err(NpuFault::BadShape));
    }
    r.flex.release().unwrap();
}

/// Where the region's bytes lie on the host, for `phys` (a plain `fn`: a static).
static REGION_HOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn region_phys(p: *const u8) -> u64 {
    REGION + (p as u64 - REGION_HOST.load(std::sync::atomic::Ordering::Relaxed))
}

#[test]
fn the_runtime_hook_runs_products_on_the_npu_with_weights_in_place() {
    let mut r = rig();
    let (n, rows, kb) = (3usize, 64usize, 2usize);
    let mut rng = Lcg(9);
    let w = q8_blocks(&mut rng, rows * kb).unwrap();
    let x = q8_blocks(&mut rng, n * kb).unwrap();
    r.region.write(0x100, blocks_as_bytes(&w));
    let host = r.region.bytes.borrow().as_ptr() as u64;
    REGION_HOST.store(host, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: `rows * kb` blocks (34 bytes each, 2-byte aligned at +0x100) were written at
    // +0x100 of the region's buffer, which outlives this test's use and does not move.
    let w_in_place: &[BlockQ8_0] =
        unsafe { std::slice::from_raw_parts((host + 0x100) as *const BlockQ8_0, rows * kb) };
    r.flex = std::mem::replace(&mut r.flex, rig().flex).with_phys(region_phys);
    // Not the SP's NPU yet: declined.
    assert!(!r.flex.offload_start(w_in_place, &x, n, rows));
    r.flex.acquire().unwrap();
    assert!(r.flex.offload_start(w_in_place, &x, n, rows));
    // One product at a time.
    assert!(!r.flex.offload_start(w_in_place, &x, n, rows));
    let mut y = vec![0f32; n * rows];
    r.flex.offload_finish(&mut y).unwrap();
    let mut want = vec![0f32; n * rows];
    Kernels::scalar().matmul(&w, &x, n, &mut want).unwrap();
    assert_eq!(
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(
        r.flex.offload_finish(&mut y),
        Err(OffloadError::NothingStarted)
    );
    // Everything it mapped is gone again.
    for iova in [OFFLOAD_IOVA_W, OFFLOAD_IOVA_X, OFFLOAD_IOVA_Y] {
        assert!(r.smmu.borrow_mut().translate(SID, iova, false).is_err());
    }
    r.flex.release().unwrap();
}
