//! Bare-metal side of the client: entry, UART, FF-A conduit with the SIMD probe, exit.

use aarch64_paging::descriptor::El1Attributes as A;
use aarch64_rt::{
    ExceptionHandlers, InitialPagetable, RegisterStateRef, entry, exception_handlers,
    initial_pagetable,
};
use arm_pl011_uart::{PL011Registers, Uart, UniqueMmioPointer};
use buddy_system_allocator::LockedHeap;
use core::{
    fmt::Write,
    panic::PanicInfo,
    ptr::NonNull,
    sync::atomic::{AtomicBool, Ordering},
};
use ffa::{Conduit, Endpoint, REG_COUNT, Regs, RxTxBuffers, Smc};
use nw_client::{
    Env, Probe, Spmc,
    cores::{CoreJob, CoreRun, CpuOnError},
    scenarios,
};
use testbed_layout::{SealedKind, control, flash, ns_ram, virt};

entry!(main, 8);
exception_handlers!(Exceptions);

// First GiB: devices (the NS UART); second GiB: NS DRAM (image, stack, boot config).
initial_pagetable!({
    let mut idmap = [0; 512];
    idmap[0] = A::VALID
        .union(A::ATTRIBUTE_INDEX_0)
        .union(A::ACCESSED)
        .union(A::UXN)
        .union(A::PXN)
        .bits();
    idmap[1] = A::VALID
        .union(A::ATTRIBUTE_INDEX_1)
        .union(A::INNER_SHAREABLE)
        .union(A::ACCESSED)
        .bits()
        | 0x4000_0000;
    InitialPagetable(idmap)
});

const _: () = assert!(virt::NS_UART_BASE < 0x4000_0000);
const _: () = assert!(ns_ram::CLIENT_BASE >= 0x4000_0000 && ns_ram::BOOT_CONFIG < 0x8000_0000);

fn uart() -> Uart<'static> {
    // SAFETY: the NS PL011 is mapped as device memory by the initial map; the client is single
    // threaded and each writer finishes its line before the next is made.
    Uart::new(unsafe {
        UniqueMmioPointer::new(NonNull::new_unchecked(
            virt::NS_UART_BASE as usize as *mut PL011Registers,
        ))
    })
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut TX: Page = Page([0; 4096]);
static mut RX: Page = Page([0; 4096]);

/// The heap the memory descriptors are built in (`ffa::memory` uses `alloc`).
#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();
/// 16 MiB: memory descriptors, and the client's own copy of the model's run state and
/// tokenizer (the reference run).
const HEAP_SIZE: usize = 32 << 20;
static mut HEAP_MEM: [Page; HEAP_SIZE / 4096] = [const { Page([0; 4096]) }; HEAP_SIZE / 4096];

/// The client's RX/TX pages as the `ffa` memory flows see them (volatile copies: the partition
/// manager reads TX and writes RX between calls).
struct Buffers;

impl RxTxBuffers for Buffers {
    fn size(&self) -> usize {
        4096
    }

    fn write_tx(&mut self, data: &[u8]) {
        let tx = (&raw mut TX).cast::<u8>();
        for (i, &b) in data.iter().take(4096).enumerate() {
            // SAFETY: TX is a static 4096-byte page; i < 4096.
            unsafe { tx.add(i).write_volatile(b) };
        }
    }

    fn read_rx(&mut self, out: &mut [u8]) {
        let rx = (&raw const RX).cast::<u8>();
        for (i, o) in out.iter_mut().take(4096).enumerate() {
            // SAFETY: RX is a static 4096-byte page; i < 4096.
            *o = unsafe { rx.add(i).read_volatile() };
        }
    }
}

struct Machine {
    ep: Endpoint<Smc>,
    bufs: Buffers,
    /// The model file QEMU loaded, from the boot configuration (checked to lie in the window).
    model: Option<(u64, u64)>,
    /// `spmc=` of the boot configuration.
    spmc: Spmc,
    /// The sealed packages QEMU loaded (checked to lie in the sealed window), by `SealedKind`.
    sealed: [Option<(u64, u64)>; 4],
}

/// Whether `[pa, pa + len)` lies in the share window (the only memory `mem_*` touch).
fn in_window(pa: u64, len: usize) -> bool {
    pa >= ns_ram::CLIENT_SHARE_BASE
        && pa
            .checked_add(len as u64)
            .is_some_and(|end| end <= ns_ram::CLIENT_SHARE_BASE + ns_ram::CLIENT_SHARE_SIZE)
}

/// Whether the boot configuration said the testbed (`spmc=testbed` or no key; never in the
/// `bl33` build): only there may the client make testbed control calls. Written once in `main`
/// before any check runs.
static ON_TESTBED: AtomicBool = AtomicBool::new(!cfg!(feature = "bl33"));

fn on_testbed() -> bool {
    ON_TESTBED.load(Ordering::Relaxed)
}

/// The testbed's count of blocked accesses, the last address and its details.
fn blocked_accesses() -> (u64, u64, u64) {
    let mut regs = [0u64; REG_COUNT];
    regs[0] = u64::from(control::TESTBED_BLOCKED_ACCESSES);
    let r = Smc.call(regs);
    (r[1], r[2], r[3])
}

/// Runs `access` and says whether the testbed blocked it at `pa` (and its details); `None` off
/// the testbed.
fn probed(pa: u64, access: impl FnOnce()) -> (Option<bool>, u64) {
    if !on_testbed() {
        access();
        return (None, 0);
    }
    let (before, _, _) = blocked_accesses();
    access();
    let (after, last, detail) = blocked_accesses();
    let blocked = after == before.wrapping_add(1) && last & !63 == pa & !63;
    (Some(blocked), if blocked { detail } else { 0 })
}

impl Env for Machine {
    type C = Smc;
    type B = Buffers;

    fn ep(&mut self) -> &mut Endpoint<Smc> {
        &mut self.ep
    }

    fn ep_bufs(&mut self) -> (&mut Endpoint<Smc>, &mut Buffers) {
        (&mut self.ep, &mut self.bufs)
    }

    fn share_window(&self) -> (u64, u64) {
        (ns_ram::CLIENT_SHARE_BASE, ns_ram::CLIENT_SHARE_SIZE)
    }

    fn mem_write(&mut self, pa: u64, data: &[u8]) {
        if !in_window(pa, data.len()) {
            return;
        }
        let p = pa as usize as *mut u8;
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: inside the share window, which the initial map covers (second GiB) and
            // nothing in the image uses; volatile because the SP may read it concurrently.
            unsafe { p.add(i).write_volatile(b) };
        }
    }

    fn mem_read(&mut self, pa: u64, out: &mut [u8]) {
        if !in_window(pa, out.len()) {
            return;
        }
        let p = pa as usize as *const u8;
        for (i, o) in out.iter_mut().enumerate() {
            // SAFETY: as in `mem_write`.
            *o = unsafe { p.add(i).read_volatile() };
        }
    }

    fn probe_read(&mut self, pa: u64) -> Probe {
        if !in_window(pa, 8) || !pa.is_multiple_of(8) {
            return Probe {
                value: 0,
                blocked: None,
                detail: 0,
            };
        }
        let (before, _, _) = if on_testbed() {
            blocked_accesses()
        } else {
            (0, 0, 0)
        };
        let value: u64;
        // SAFETY: an aligned 8-byte load from the share window (mapped by the initial map). If
        // the page was lent away the testbed emulates the load (POISON) and skips it; a plain
        // LDR has the syndrome (ISV) it needs for that.
        unsafe {
            core::arch::asm!("ldr {v}, [{a}]", v = out(reg) value, a = in(reg) pa,
                options(nostack, readonly, preserves_flags));
        }
        if !on_testbed() {
            // No testbed to ask: the load just happened.
            return Probe {
                value,
                blocked: None,
                detail: 0,
            };
        }
        let (after, last, detail) = blocked_accesses();
        let blocked = after == before.wrapping_add(1) && last == pa;
        Probe {
            value,
            blocked: Some(blocked),
            detail: if blocked { detail } else { 0 },
        }
    }

    fn probe_write(&mut self, pa: u64, value: u64) -> Probe {
        if !in_window(pa, 8) || !pa.is_multiple_of(8) {
            return Probe {
                value: 0,
                blocked: None,
                detail: 0,
            };
        }
        let (before, _, _) = if on_testbed() {
            blocked_accesses()
        } else {
            (0, 0, 0)
        };
        // SAFETY: an aligned 8-byte store into the share window (mapped by the initial map),
        // which only the client's scenarios use; if the page was lent away the testbed drops
        // the store and skips it (a plain STR has the syndrome it needs).
        unsafe {
            core::arch::asm!("str {v}, [{a}]", v = in(reg) value, a = in(reg) pa,
                options(nostack, preserves_flags));
        }
        if !on_testbed() {
            return Probe {
                value: 0,
                blocked: None,
                detail: 0,
            };
        }
        let (after, last, detail) = blocked_accesses();
        let blocked = after == before.wrapping_add(1) && last == pa;
        Probe {
            value: 0,
            blocked: Some(blocked),
            detail: if blocked { detail } else { 0 },
        }
    }

    fn probe_pair(&mut self, pa: u64, write: bool, value: u64) -> Probe {
        if !in_window(pa, 16) || !pa.is_multiple_of(16) {
            return Probe {
                value: 0,
                blocked: None,
                detail: 0,
            };
        }
        let mut first = 0u64;
        let (blocked, detail) = probed(pa, || {
            if write {
                // SAFETY: an aligned 16-byte store pair into the share window (mapped by the
                // initial map), used only by the scenarios; a secured page's stores are
                // dropped and skipped by the testbed.
                unsafe {
                    core::arch::asm!("stp {v}, {v}, [{a}]", v = in(reg) value, a = in(reg) pa,
                        options(nostack, preserves_flags));
                }
            } else {
                let second: u64;
                // SAFETY: as above, a load pair; a blocked one is skipped (registers as they
                // were: both are zeroed first).
                unsafe {
                    core::arch::asm!("mov {f}, xzr", "mov {s}, xzr", "ldp {f}, {s}, [{a}]",
                        f = out(reg) first, s = out(reg) second, a = in(reg) pa,
                        options(nostack, readonly, preserves_flags));
                }
                let _ = second;
            }
        });
        Probe {
            value: first,
            blocked,
            detail,
        }
    }

    fn probe_clean(&mut self, pa: u64) -> Probe {
        if !in_window(pa, 1) {
            return Probe {
                value: 0,
                blocked: None,
                detail: 0,
            };
        }
        let (blocked, detail) = probed(pa & !63, || {
            // SAFETY: clean+invalidate by VA of a share-window line (mapped by the initial
            // map): no data changes; a blocked one is skipped by the testbed.
            unsafe {
                core::arch::asm!("dc civac, {}", in(reg) pa, options(nostack, preserves_flags))
            };
        });
        Probe {
            value: 0,
            blocked,
            detail,
        }
    }

    fn blocked_accesses(&mut self) -> Option<(u64, u64, u64)> {
        on_testbed().then(blocked_accesses)
    }

    fn rxtx(&self) -> (u64, u64) {
        (&raw const TX as u64, &raw const RX as u64)
    }

    fn read_rx(&self, out: &mut [u8]) {
        let rx = &raw const RX as *const u8;
        for (i, o) in out.iter_mut().take(4096).enumerate() {
            // SAFETY: RX is a static page; the partition manager writes it between calls, so
            // it is read volatile, within its 4096 bytes.
            *o = unsafe { rx.add(i).read_volatile() };
        }
    }

    fn call_with_simd(&mut self, regs: Regs, pattern: &[u8; 512]) -> Option<(Regs, [u8; 512])> {
        let mut r = regs;
        let mut after = [0u8; 512];
        // SAFETY: loads v0-v31 from `pattern`, makes one SMC (SMCCC v1.2: x0-x17 in/out), and
        // stores v0-v31 into `after`; both buffers are 512 bytes. Every vector register is
        // declared clobbered, the pointers live in registers outside x0-x17.
        unsafe {
            core::arch::asm!(
                "ld1 {{v0.16b-v3.16b}}, [{p}], #64",
                "ld1 {{v4.16b-v7.16b}}, [{p}], #64",
                "ld1 {{v8.16b-v11.16b}}, [{p}], #64",
                "ld1 {{v12.16b-v15.16b}}, [{p}], #64",
                "ld1 {{v16.16b-v19.16b}}, [{p}], #64",
                "ld1 {{v20.16b-v23.16b}}, [{p}], #64",
                "ld1 {{v24.16b-v27.16b}}, [{p}], #64",
                "ld1 {{v28.16b-v31.16b}}, [{p}], #64",
                "smc #0",
                "st1 {{v0.16b-v3.16b}}, [{q}], #64",
                "st1 {{v4.16b-v7.16b}}, [{q}], #64",
                "st1 {{v8.16b-v11.16b}}, [{q}], #64",
                "st1 {{v12.16b-v15.16b}}, [{q}], #64",
                "st1 {{v16.16b-v19.16b}}, [{q}], #64",
                "st1 {{v20.16b-v23.16b}}, [{q}], #64",
                "st1 {{v24.16b-v27.16b}}, [{q}], #64",
                "st1 {{v28.16b-v31.16b}}, [{q}], #64",
                p = inout(reg) pattern.as_ptr() => _,
                q = inout(reg) after.as_mut_ptr() => _,
                inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
                inout("x12") r[12], inout("x13") r[13], inout("x14") r[14], inout("x15") r[15],
                inout("x16") r[16], inout("x17") r[17],
                out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
                out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _,
                out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _,
                out("v22") _, out("v23") _, out("v24") _, out("v25") _, out("v26") _,
                out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
                options(nostack),
            );
        }
        Some((r, after))
    }

    fn model(&self) -> Option<(u64, u64)> {
        self.model
    }

    fn sealed_package(&self, kind: SealedKind) -> Option<(u64, u64)> {
        SealedKind::ALL
            .iter()
            .position(|&k| k == kind)
            .and_then(|i| self.sealed[i])
    }

    fn spmc(&self) -> Spmc {
        self.spmc
    }

    fn has_second_core(&mut self) -> bool {
        crate::cpu::second_core_present()
    }

    fn on_second_core(&mut self, job: &CoreJob) -> Result<CoreRun, CpuOnError> {
        crate::cpu::run_on_core1(job)
    }

    fn second_core_writer(&mut self, pa: u64) -> Result<(), CpuOnError> {
        let (base, size) = self.share_window();
        if !pa.is_multiple_of(8) || pa < base || pa + 8 > base + size {
            return Err(CpuOnError::Psci(-2));
        }
        crate::cpu::writer_start(pa)
    }

    fn second_core_prober(
        &mut self,
        own: ffa::PartitionId,
        sp: ffa::PartitionId,
    ) -> Result<(), CpuOnError> {
        crate::cpu::prober_start(own, sp)
    }

    fn second_core_probes(&mut self) -> nw_client::cores::ProbeCounts {
        crate::cpu::prober_counts()
    }

    fn second_core_prober_stop(&mut self) -> (nw_client::cores::ProbeCounts, bool) {
        crate::cpu::prober_stop()
    }

    fn gicd_read32(&mut self, offset: usize) -> Option<u32> {
        // GICD: 64 KiB at virt::GICD_BASE.
        if !on_testbed() || !offset.is_multiple_of(4) || offset >= 0x1_0000 {
            return None;
        }
        let v: u32;
        // SAFETY: a 32-bit load from the GIC distributor (first GiB: device mapped, in the NW's
        // stage-2); reading its enable/pending registers has no side effect.
        unsafe {
            core::arch::asm!("ldr {v:w}, [{a}]", v = out(reg) v,
                a = in(reg) virt::GICD_BASE + offset as u64, options(nostack, preserves_flags));
        }
        Some(v)
    }

    fn npu_read32(&mut self, offset: usize) -> Option<u32> {
        if !on_testbed() || !offset.is_multiple_of(4) || offset >= virt::NPU_SIZE as usize {
            return None;
        }
        let v: u32;
        // SAFETY: a 32-bit load from the testbed NPU's register window (first GiB: device
        // mapped); the testbed emulates it (or blocks it, reading 0) and skips it.
        unsafe {
            core::arch::asm!("ldr {v:w}, [{a}]", v = out(reg) v,
                a = in(reg) virt::NPU_BASE + offset as u64, options(nostack, preserves_flags));
        }
        Some(v)
    }

    fn npu_write32(&mut self, offset: usize, value: u32) -> bool {
        if !on_testbed() || !offset.is_multiple_of(4) || offset >= virt::NPU_SIZE as usize {
            return false;
        }
        // SAFETY: as in `npu_read32`, a store.
        unsafe {
            core::arch::asm!("str {v:w}, [{a}]", v = in(reg) value,
                a = in(reg) virt::NPU_BASE + offset as u64, options(nostack, preserves_flags));
        }
        true
    }

    fn second_core_store(&mut self, value: u64) -> bool {
        crate::cpu::writer_store(value)
    }

    fn second_core_writer_stop(&mut self) -> bool {
        crate::cpu::writer_stop()
    }

    fn with_model_bytes<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (base, size) = self.model?;
        // SAFETY: `model` was checked to lie in the share window (mapped by the initial map);
        // QEMU's loader put the file there before reset. The slice lives only for this call,
        // during which the client does not lend the pages or write them.
        let bytes =
            unsafe { core::slice::from_raw_parts(base as usize as *const u8, size as usize) };
        Some(f(bytes))
    }

    fn counter(&self) -> Option<(u64, u64)> {
        let (count, freq): (u64, u64);
        // SAFETY: reading the virtual counter and its frequency has no side effects; both are
        // accessible at EL1.
        unsafe {
            core::arch::asm!("isb", "mrs {}, cntvct_el0", "mrs {}, cntfrq_el0",
                out(reg) count, out(reg) freq, options(nomem, nostack, preserves_flags));
        }
        Some((count, freq))
    }
}

/// The boot configuration's `key=value` payload at `addr` (testbed: x0; `bl33`: x0 is BL31's and
/// the block is at `ns_ram::BOOT_CONFIG` anyway).
fn read_boot_config(addr: u64) -> Result<&'static [u8], &'static str> {
    let addr = if cfg!(feature = "bl33") {
        ns_ram::BOOT_CONFIG
    } else {
        addr
    };
    if addr != ns_ram::BOOT_CONFIG {
        return Err("x0 is not the boot configuration block");
    }
    // SAFETY: the testbed (or QEMU's loader, for BL33) puts the block (header + payload, at
    // most BOOT_CONFIG_MAX bytes) at BOOT_CONFIG in NS DRAM, which the initial map covers;
    // nothing writes it afterwards. Bytes that are not a valid block are refused below.
    let block =
        unsafe { core::slice::from_raw_parts(addr as *const u8, flash::BOOT_CONFIG_MAX as usize) };
    let header = flash::SlotHeader::decode(block, flash::BOOT_CONFIG_MAX)
        .ok_or("no valid slot header in the boot configuration")?;
    let start = flash::SLOT_HEADER_SIZE as usize;
    block
        .get(start..start + header.len as usize)
        .ok_or("boot configuration longer than its slot")
}

/// `model_base=` and `model_size=` of the boot configuration, if both are there and name a
/// range inside the model window.
fn model_of(config: &[u8]) -> Result<Option<(u64, u64)>, &'static str> {
    let num = |s: &str| match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    };
    let (Some(base), Some(size)) = (
        flash::BootConfig::get(config, "model_base"),
        flash::BootConfig::get(config, "model_size"),
    ) else {
        return Ok(None);
    };
    let (Some(base), Some(size)) = (num(base), num(size)) else {
        return Err("model_base/model_size are not numbers");
    };
    let window = ns_ram::MODEL_BASE..ns_ram::MODEL_BASE + ns_ram::MODEL_MAX;
    if base != ns_ram::MODEL_BASE || size == 0 || size > window.end - window.start {
        return Err("the model lies outside the model window");
    }
    Ok(Some((base, size)))
}

/// `sealed_<name>_base=`/`_size=` of the boot configuration for each `SealedKind`, each checked
/// to lie in the sealed window.
fn sealed_of(config: &[u8]) -> Result<[Option<(u64, u64)>; 4], &'static str> {
    let num = |s: &str| match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    };
    let mut out = [None; 4];
    for (o, k) in out.iter_mut().zip(SealedKind::ALL) {
        let (Some(base), Some(size)) = (
            flash::BootConfig::get(config, k.base_key()),
            flash::BootConfig::get(config, k.size_key()),
        ) else {
            continue;
        };
        let (Some(base), Some(size)) = (num(base), num(size)) else {
            return Err("sealed_*_base/size are not numbers");
        };
        let window = ns_ram::SEALED_BASE..ns_ram::SEALED_BASE + ns_ram::SEALED_MAX;
        if base < window.start || size == 0 || base.saturating_add(size) > window.end {
            return Err("a sealed package lies outside the sealed window");
        }
        *o = Some((base, size));
    }
    Ok(out)
}

fn exit(status: u64) -> ! {
    let mut regs = [0u64; REG_COUNT];
    if on_testbed() {
        regs[0] = u64::from(control::TESTBED_EXIT);
        regs[1] = status;
        Smc.call(regs);
    }
    // Elsewhere (TF-A), or if the testbed did not power off: PSCI SYSTEM_OFF, then wait.
    regs = [0; REG_COUNT];
    regs[0] = u64::from(control::PSCI_SYSTEM_OFF);
    Smc.call(regs);
    loop {
        // SAFETY: WFI only waits.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

fn main(boot_config: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    let mut out = uart();
    let parsed = read_boot_config(boot_config).and_then(|c| {
        let name = flash::BootConfig::get(c, "scenario")
            .ok_or("no `scenario=` in the boot configuration")?;
        let spmc = match flash::BootConfig::get(c, "spmc") {
            None => Spmc::Testbed,
            Some(v) => Spmc::parse(v).ok_or("`spmc=` is not testbed, hafnium or el3")?,
        };
        if cfg!(feature = "bl33") && spmc == Spmc::Testbed {
            return Err(
                "this BL33 build runs under TF-A: the boot configuration must say \
                        spmc=hafnium or spmc=el3",
            );
        }
        Ok((name, (model_of(c)?, sealed_of(c)?), spmc))
    });
    let (name, (model, sealed), spmc) = match parsed {
        Ok(n) => n,
        Err(e) => {
            let _ = writeln!(out, "FAIL boot_config: {e}\n0 passed, 1 failed, 0 skipped");
            exit(control::EXIT_FAIL)
        }
    };
    ON_TESTBED.store(spmc == Spmc::Testbed, Ordering::Relaxed);
    let _ = writeln!(out, "nw-client: scenario {name} under {}", spmc.name());
    // SAFETY: HEAP_MEM is a static used only as the heap, handed over once, before any
    // allocation.
    unsafe {
        HEAP.lock().init((&raw mut HEAP_MEM) as usize, HEAP_SIZE);
    }
    let mut m = Machine {
        ep: Endpoint::new(Smc),
        bufs: Buffers,
        model,
        spmc,
        sealed,
    };
    let (_, failed) = scenarios::run(name, &mut m, &mut out);
    exit(if failed == 0 {
        control::EXIT_PASS
    } else {
        control::EXIT_FAIL
    })
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let _ = writeln!(
        uart(),
        "FAIL client_panic: {info}\n0 passed, 1 failed, 0 skipped"
    );
    exit(control::EXIT_FAIL)
}

/// Any exception in the client is a failed run: report it and power off.
fn fatal(kind: &str, state: &RegisterStateRef) -> ! {
    let (esr, far): (u64, u64);
    // SAFETY: reading ESR_EL1/FAR_EL1 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far,
            options(nomem, nostack, preserves_flags));
    }
    let _ = writeln!(
        uart(),
        "FAIL client_exception: {kind}: ESR {esr:#x} FAR {far:#x} ELR {:#x}\n0 passed, 1 failed, 0 skipped",
        state.elr
    );
    exit(control::EXIT_FAIL)
}

struct Exceptions;

impl ExceptionHandlers for Exceptions {
    extern "C" fn sync_current(state: RegisterStateRef) {
        fatal("synchronous exception", &state)
    }

    extern "C" fn irq_current(state: RegisterStateRef) {
        fatal("IRQ", &state)
    }

    extern "C" fn fiq_current(state: RegisterStateRef) {
        fatal("FIQ", &state)
    }

    extern "C" fn serror_current(state: RegisterStateRef) {
        fatal("SError", &state)
    }
}
