//! Bare-metal parts: reset entry, the EL3 monitor, the S-EL2 SPMC runtime, and the small unsafe
//! wrappers they stand on (system registers, GIC, UART, semihosting, physical memory).
//!
//! Runs on up to `testbed_layout::cpus::MAX` CPUs with every exception masked and the MMU off
//! at EL3 and EL2 (accesses are Device-nGnRnE; `aarch64-unknown-none` is strict-align, so that
//! is fine; QEMU implements exclusives and barriers on them, which the spin locks rely on).
//! What several CPUs share sits behind a lock, as Hafnium's `vm_locked`: [`MACHINE`] (the normal
//! world's stage-2, the firewall model, the blocked-access record) and the SPMC's state
//! (`el2`); lock order SPMC, then MACHINE, then the UART. A [`Global`] is owned by one CPU at a
//! time, and each says which.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};

use testbed_layout::{control, virt};

mod asm;
mod el2;
mod el3;
mod gic;
mod npu;

/// A global whose owner (one CPU at a time: its doc says which) accesses it without a lock.
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: every `Global` is accessed by one CPU at a time (the boot CPU during init, a per-CPU
// slot by its own CPU, the SP's vCPU by the CPU that claimed it under the SPMC lock), with
// interrupts masked and no reentrancy.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(v: T) -> Self {
        Global(UnsafeCell::new(v))
    }

    /// # Safety
    /// The caller must own the global (see its doc) and hold no other reference from it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusive access is the caller's duty (see above).
        unsafe { &mut *self.0.get() }
    }
}

/// A CPU context: general registers, exception return state, SIMD, and (for EL3 world switches)
/// the EL1/EL2 system registers listed in `asm::sysreg_list!`. Layout shared with `asm.rs`.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct Ctx {
    pub x: [u64; 31],
    /// Which vector the last exit came through: 0 sync, 1 IRQ, 2 FIQ, 3 SError.
    pub exit_kind: u64,
    pub elr: u64,
    pub spsr: u64,
    /// SCR_EL3 (EL3 contexts only).
    pub scr: u64,
    pub fpcr: u64,
    pub fpsr: u64,
    _pad: u64,
    pub q: [u128; 32],
    pub sys: [u64; asm::SYS_COUNT],
}

const _: () = {
    assert!(core::mem::offset_of!(Ctx, exit_kind) == 248);
    assert!(core::mem::offset_of!(Ctx, elr) == 256);
    assert!(core::mem::offset_of!(Ctx, scr) == 272);
    assert!(core::mem::offset_of!(Ctx, fpcr) == 280);
    assert!(core::mem::offset_of!(Ctx, q) == 304);
    assert!(core::mem::offset_of!(Ctx, sys) == 816);
};

impl Ctx {
    pub const ZERO: Ctx = Ctx {
        x: [0; 31],
        exit_kind: 0,
        elr: 0,
        spsr: 0,
        scr: 0,
        fpcr: 0,
        fpsr: 0,
        _pad: 0,
        q: [0; 32],
        sys: [0; asm::SYS_COUNT],
    };

    pub fn set(&mut self, r: asm::Sys, v: u64) {
        self.sys[r as usize] = v;
    }

    pub fn regs18(&self) -> [u64; 18] {
        let mut r = [0u64; 18];
        r.copy_from_slice(&self.x[..18]);
        r
    }
}

/// The firmware heap: memory descriptors (up to `memshare::MAX_DESC_LEN` each) and the
/// transaction table, which holds at most `memshare::MAX_HELD_BYTES` of it. Shared by every
/// CPU's SPMC and monitor, so behind a lock.
struct FwHeap(spin::Mutex<buddy_system_allocator::Heap<32>>);

const HEAP_SIZE: usize = 0x10_0000;
#[repr(C, align(4096))]
struct HeapMem([u8; HEAP_SIZE]);
static HEAP_MEM: Global<HeapMem> = Global::new(HeapMem([0; HEAP_SIZE]));

#[global_allocator]
static HEAP: FwHeap = FwHeap(spin::Mutex::new(buddy_system_allocator::Heap::empty()));

// SAFETY: the buddy heap hands out disjoint, suitably aligned blocks of its own memory; the
// lock makes each allocation exclusive (no allocation happens in an exception handler).
unsafe impl core::alloc::GlobalAlloc for FwHeap {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        let mut heap = self.0.lock();
        if let Some(p) = core::ptr::NonNull::new(ptr) {
            // SAFETY: `ptr` came from this heap's `alloc` with `layout` (GlobalAlloc contract).
            unsafe { heap.dealloc(p, layout) };
        }
    }
}

/// Gives the heap its memory; called once by EL3 before anything allocates.
pub fn heap_init() {
    // SAFETY: called once at boot, before any allocation; HEAP_MEM is used by nothing else.
    unsafe {
        let mem = HEAP_MEM.get();
        let start = mem.0.as_mut_ptr() as usize;
        HEAP.0.lock().init(start, HEAP_SIZE);
    }
}

/// Entropy for memory handles: RNDR (FEAT_RNG, present on `-cpu max`) mixed with the counter;
/// the counter alone without FEAT_RNG.
pub fn entropy() -> u64 {
    let mut v = reg::cntpct().rotate_left(17);
    if (reg::id_aa64isar0() >> 60) & 0xf != 0 {
        let r: u64;
        // SAFETY: RNDR (s3_3_c2_c4_0) exists (ID_AA64ISAR0_EL1.RNDR != 0); reading it only
        // sets NZCV, which is declared clobbered (no `preserves_flags`).
        unsafe { core::arch::asm!("mrs {}, s3_3_c2_c4_0", out(reg) r, options(nomem, nostack)) };
        v ^= r;
    }
    v
}

/// What the monitor and the SPMC share across CPUs.
pub struct Machine {
    /// The normal world's stage-2 (NS-EL2, built by EL3 in the reserved NS region before the
    /// client starts; changed by the SPMC on LEND/DONATE/RECLAIM and by firewall changes; read
    /// by EL3 to report a blocked access). Whoever changes it invalidates every CPU's NS TLB
    /// before the change can matter ([`ns_tlbi_all`] at EL3, `TESTBED_NS_TLBI` from S-EL2).
    pub nw_s2: Option<crate::stage2::Stage2<'static>>,
    /// The emulated TZC-400 and its enforcement state (set up by the SPMC before the SP runs).
    pub firewall: Option<crate::firewall::Firewall>,
    /// Blocked accesses (NW and SP) for `control::TESTBED_BLOCKED_ACCESSES`: count, last
    /// address, last `nwfault::Blocked::info`.
    pub blocked: (u64, u64, u64),
    /// The TZPC: whether the NPU is the normal world's (its MMIO, its DMA's security).
    pub tzpc: crate::tzpc::Tzpc,
    /// The emulated SMMUv3 (secure side; set up with the SPMC), which the NPU's secure DMA
    /// goes through.
    pub smmu: Option<smmu::model::Smmuv3Model<PartitionRam>>,
}

/// Memory the emulated SMMU reads its stream table, queues and stage-2 tables from: the
/// partitions' secure RAM (the SP's own), nothing else. It writes only the secure event queue
/// the SP programmed (`S_EVENTQ_BASE`, while enabled), and only if that lies wholly inside the
/// partitions' secure RAM; any other write is refused (the model sees an external abort and
/// raises `S_GERROR.EVENTQ_ABT_ERR`).
#[derive(Default)]
pub struct PartitionRam {
    /// What the SMMU may write: the enabled event queue, if inside partition RAM.
    eventq: crate::devices::WriteWindow,
}

impl PartitionRam {
    pub const fn new() -> Self {
        Self {
            eventq: crate::devices::WriteWindow::NONE,
        }
    }

    fn in_partitions(pa: u64) -> bool {
        use testbed_layout::secure_ram::{PARTITIONS_BASE, PARTITIONS_END};
        pa.is_multiple_of(8) && (PARTITIONS_BASE..PARTITIONS_END - 7).contains(&pa)
    }
}

impl smmu::model::Memory for PartitionRam {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        if !Self::in_partitions(pa) {
            return None;
        }
        let mut b = [0u8; 8];
        // SAFETY: an aligned word of the partitions' secure RAM, which no Rust reference
        // covers; the SP may be writing it meanwhile (a torn table entry is its own doing,
        // as on hardware without the CFGI it must issue).
        unsafe { read_phys(pa, &mut b) };
        Some(u64::from_le_bytes(b))
    }

    fn write_u64(&mut self, pa: u64, value: u64) -> bool {
        if !self.eventq.permits(pa) || !Self::in_partitions(pa) {
            return false;
        }
        // SAFETY: an aligned word of the secure event queue the SP handed the SMMU, inside
        // the partitions' secure RAM, which no Rust reference covers (the SP reads it with
        // volatile loads, only below S_EVENTQ_PROD, which the model moves after this write).
        unsafe { write_phys(pa, &value.to_le_bytes()) };
        true
    }

    fn set_write_window(&mut self, window: Option<core::ops::Range<u64>>) {
        use testbed_layout::secure_ram::{PARTITIONS_BASE, PARTITIONS_END};
        self.eventq = crate::devices::WriteWindow::new(window, PARTITIONS_BASE..PARTITIONS_END);
    }
}

impl Machine {
    /// Logs a blocked access and records it for the control call.
    pub fn record_blocked(&mut self, b: &crate::nwfault::Blocked) {
        crate::log!("testbed: {b}");
        let r = &mut self.blocked;
        *r = (r.0 + 1, b.addr, b.info());
    }
}

pub static MACHINE: spin::Mutex<Machine> = spin::Mutex::new(Machine {
    nw_s2: None,
    firewall: None,
    blocked: (0, 0, 0),
    tzpc: crate::tzpc::Tzpc::new(),
    smmu: None,
});

/// Invalidates every CPU's TLB entries of the normal world's EL1&0 regime (both stages, every
/// VMID) and waits for it: TLBI ALLE1IS with SCR_EL3.NS = 1. EL3 only.
pub fn ns_tlbi_all(ns_scr: u64) {
    // SAFETY: TLB maintenance; SCR_EL3 is put back before anything else runs (and rewritten
    // from the context by el3_run anyway).
    unsafe {
        core::arch::asm!(
            "mrs {old}, scr_el3", "msr scr_el3, {ns}", "isb",
            "dsb ishst", "tlbi alle1is", "dsb ish", "isb",
            "msr scr_el3, {old}", "isb",
            old = out(reg) _, ns = in(reg) ns_scr, options(nostack)
        );
    }
}

/// This CPU's index (MPIDR_EL1.Aff0 on QEMU `virt`).
pub fn cpu_index() -> usize {
    (reg::mpidr() & 0xff) as usize
}

/// System-register access, one tiny wrapper per register used outside the context switch.
macro_rules! sysreg_read {
    ($read:ident, $name:literal) => {
        pub fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading this register has no side effects at the EL that calls it.
            unsafe {
                core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack))
            };
            v
        }
    };
}
macro_rules! sysreg_write {
    ($write:ident, $name:literal) => {
        /// # Safety
        /// The caller must know the value is valid for the current state of the machine.
        pub unsafe fn $write(v: u64) {
            // SAFETY: the caller's duty (see above).
            unsafe {
                core::arch::asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nostack))
            };
        }
    };
}
pub mod reg {
    sysreg_read!(cntpct, "cntpct_el0");
    sysreg_read!(cntfrq, "cntfrq_el0");
    sysreg_read!(midr, "midr_el1");
    sysreg_read!(mpidr, "mpidr_el1");
    sysreg_read!(esr_el3, "esr_el3");
    sysreg_read!(far_el3, "far_el3");
    sysreg_read!(esr_el2, "esr_el2");
    sysreg_read!(far_el2, "far_el2");
    sysreg_read!(hpfar_el2, "hpfar_el2");
    sysreg_read!(id_aa64isar0, "id_aa64isar0_el1");
    sysreg_write!(set_hcr_el2, "hcr_el2");
    sysreg_write!(set_vtcr_el2, "vtcr_el2");
    sysreg_write!(set_vttbr_el2, "vttbr_el2");
    // VSTCR_EL2 / VSTTBR_EL2 (FEAT_SEL2) by encoding: the assembler may not know their names.
    sysreg_write!(set_vstcr_el2, "S3_4_C2_C6_2");
    sysreg_write!(set_vsttbr_el2, "S3_4_C2_C6_0");
    sysreg_write!(set_sctlr_el1, "sctlr_el1");
    sysreg_write!(set_cpacr_el1, "cpacr_el1");
    sysreg_write!(set_vbar_el1, "vbar_el1");
    sysreg_write!(set_cnthctl_el2, "cnthctl_el2");
    sysreg_write!(set_cntvoff_el2, "cntvoff_el2");
    sysreg_write!(set_vpidr_el2, "vpidr_el2");
    sysreg_write!(set_vmpidr_el2, "vmpidr_el2");
}

/// The secure PL011, written by polling (QEMU needs no setup). One `write_str` at a time (a
/// lock), so the CPUs' lines do not mix.
pub struct Uart;

static UART_LOCK: spin::Mutex<()> = spin::Mutex::new(());

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let _g = UART_LOCK.lock();
        for b in s.bytes() {
            if b == b'\n' {
                putc(b'\r');
            }
            putc(b);
        }
        Ok(())
    }
}

/// Enables the secure PL011 (UARTCR: UARTEN, TXE, RXE); QEMU ignores baud settings.
pub fn uart_init() {
    let base = virt::SECURE_UART_BASE as usize;
    // SAFETY: UARTCR (+0x30) of the secure PL011, which only this firmware drives.
    unsafe { core::ptr::write_volatile((base + 0x30) as *mut u32, 0x301) };
}

fn putc(b: u8) {
    let base = virt::SECURE_UART_BASE as usize;
    // SAFETY: the secure PL011's FR (+0x18) and DR (+0x0) registers are always mapped (MMU off)
    // and only this firmware drives the secure UART while it runs.
    unsafe {
        while core::ptr::read_volatile((base + 0x18) as *const u32) & (1 << 5) != 0 {}
        core::ptr::write_volatile(base as *mut u32, u32::from(b));
    }
}

/// Formats a line and writes it in one piece (a line of up to 256 bytes; longer ones go out in
/// pieces).
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => {{
        use core::fmt::Write as _;
        let mut line = $crate::arch::Line::new();
        let _ = writeln!(line, $($t)*);
        line.flush();
    }};
}

/// A line being formatted for [`log!`].
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    pub fn new() -> Line {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    pub fn flush(&mut self) {
        // Only whole UTF-8 strings were appended.
        let s = core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?\n");
        let _ = Uart.write_str(s);
        self.len = 0;
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > self.buf.len() {
            self.flush();
            if s.len() > self.buf.len() {
                return Uart.write_str(s);
            }
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Powers QEMU off with `status` via semihosting SYS_EXIT_EXTENDED (QEMU runs with
/// `-semihosting-config enable=on,target=native`).
pub fn exit(status: u64) -> ! {
    // ADP_Stopped_ApplicationExit, then the exit status.
    let block = [0x2_0026u64, status];
    // SAFETY: the semihosting trap only reads `block`; if semihosting is off it is an UNDEF
    // that ends in the fatal-exception path, which loops.
    unsafe {
        core::arch::asm!("hlt #0xf000", in("w0") 0x20u32, in("x1") block.as_ptr(), options(nostack));
    }
    loop {
        core::hint::spin_loop();
    }
}

/// Microseconds between two counter readings.
pub fn counter_us(from: u64, to: u64) -> u64 {
    let f = reg::cntfrq().max(1);
    (to.wrapping_sub(from) as u128 * 1_000_000 / u128::from(f)) as u64
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    log!("testbed: panic on CPU {}: {info}", cpu_index());
    exit(control::EXIT_TESTBED_ERROR)
}

/// Called by the vectors for an exception taken from the firmware's own EL.
#[unsafe(no_mangle)]
extern "C" fn fatal_exception(el: u64, kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    log!(
        "testbed: fatal exception at EL{el} on CPU {} (kind {kind}): ESR={esr:#x} ELR={elr:#x} \
         FAR={far:#x}",
        cpu_index()
    );
    exit(control::EXIT_TESTBED_ERROR)
}

/// Copies from a physical address the firmware may read (flash, RAM) into `buf`.
///
/// # Safety
/// `[pa, pa + buf.len())` must be readable memory that nothing else writes meanwhile.
pub unsafe fn read_phys(pa: u64, buf: &mut [u8]) {
    // SAFETY: the caller's duty; MMU off, so PA == address.
    unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, buf.as_mut_ptr(), buf.len()) }
}

/// # Safety
/// `[pa, pa + data.len())` must be writable memory no live Rust reference covers.
pub unsafe fn write_phys(pa: u64, data: &[u8]) {
    // SAFETY: the caller's duty; MMU off, so PA == address.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), pa as *mut u8, data.len()) }
}

/// Zeroes `[pa, pa + len)` with 64-bit stores (`pa` and `len` 8-byte aligned). A plain
/// `write_bytes` becomes a byte-wise memset under strict alignment, 8x slower under TCG.
///
/// # Safety
/// As for [`write_phys`]; `pa` must be 8-byte aligned.
pub unsafe fn zero_phys(pa: u64, len: u64) {
    let p = pa as *mut u64;
    for i in 0..(len / 8) as usize {
        // SAFETY: the caller's duty; `p + i` stays inside the range.
        unsafe { p.add(i).write_volatile(0) };
    }
}

/// A byte slice of secure flash (XIP, read-only, never written while the firmware runs).
pub fn flash(offset: u64, len: u64) -> &'static [u8] {
    let len = len.min(virt::SECURE_FLASH_SIZE.saturating_sub(offset));
    // SAFETY: secure flash is mapped at 0 (MMU off), read-only and immutable during the run;
    // `len` is clipped to the flash size. Address 0 is never dereferenced as a null reference
    // because callers only read slots at non-zero offsets.
    unsafe { core::slice::from_raw_parts(offset as *const u8, len as usize) }
}
