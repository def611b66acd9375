//! Bare-metal runtime of the SP: entry, exception vectors, MMU switch, heap, logging, panic, and
//! the FF-A start-up and message loop.
//!
//! Entry contract (Hafnium and the testbed alike; platform-facts.md sec. 3.3, 4.4): S-EL1,
//! MMU and caches off, PC = load-address + 0x4000 = the first byte of this image (aarch64-rt's
//! `entry`, placed first by image.ld), x0 = FF-A boot-info blob, DAIF masked. aarch64-rt's entry
//! enables the initial identity map below (so no Rust code runs with the MMU off), enables FP/SIMD
//! (CPACR_EL1.FPEN), zeroes BSS, sets the boot stack and VBAR_EL1, and passes x0-x3 to `main`.

use aarch64_paging::descriptor::El1Attributes as A;
use aarch64_paging::{idmap::IdMap, paging::El1And0};
use aarch64_rt::{
    ExceptionHandlers, InitialPagetable, RegisterStateRef, entry, exception_handlers,
    initial_pagetable,
};
use alloc::{boxed::Box, vec, vec::Vec};
use arm_pl011_uart::{PL011Registers, Uart, UniqueMmioPointer};
use buddy_system_allocator::LockedHeap;
use core::ops::Range;
use core::{
    fmt::{self, Write},
    panic::PanicInfo,
    ptr::NonNull,
};
use ffa::{
    Conduit, ConsoleLogChars, Endpoint, FfaError, FuncId, Handle, Interface, PartitionId,
    RxTxPageCount, Smc, Version,
    boot_info::{self, BootInfo, BootInfoHeader},
    endpoint::RxTxBuffers,
    memory::{MemRelinquishDesc, MemTransaction},
};
use flexserve_sp::{
    BUILD_ID,
    manifest::SpManifest,
    memmap::{self, ImageLayout},
    messaging::{self, Messaging, Next},
    serve::Hooks,
    service::Service,
    shmem::{self, Access, MapFail, MemPlatform, SharedMemory},
};
use spin::mutex::SpinMutex;

entry!(main, 16);
exception_handlers!(Exceptions);

// Until the runtime map is built: the first GiB as normal cacheable memory, which holds the SP's
// package, heap and (unused until the runtime map) devices on every platform.
initial_pagetable!({
    let mut idmap = [0; 512];
    idmap[0] = A::VALID
        .union(A::ATTRIBUTE_INDEX_1)
        .union(A::INNER_SHAREABLE)
        .union(A::ACCESSED)
        .bits();
    InitialPagetable(idmap)
});

/// What the initial map covers: the heap must lie below, since it holds the runtime page table.
const INITIAL_MAP_END: u64 = 1 << 30;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// The FF-A version this SP implements and asks for.
const FFA_VERSION: Version = Version::V1_2;

// ---------------------------------------------------------------------------------------------
// Logging.

/// Log lines go to FFA_CONSOLE_LOG once FFA_VERSION has succeeded; the secure UART (if the
/// manifest grants one) takes over when the partition manager refuses CONSOLE_LOG, so a line is
/// never printed twice.
struct Console {
    ffa: bool,
    uart: Option<Uart<'static>>,
    line: [u8; ConsoleLogChars::MAX_32],
    len: usize,
}

impl Console {
    fn flush(&mut self) {
        let chunk = &self.line[..self.len];
        if self.ffa
            && let Some(chars) = ConsoleLogChars::new32(chunk)
            && ep().call(&Interface::ConsoleLog { chars }).is_err()
        {
            self.ffa = false;
        }
        if !self.ffa
            && let Some(u) = self.uart.as_mut()
        {
            for &b in chunk {
                if b == b'\n' {
                    while u.is_tx_fifo_full() {}
                    u.write_word(b'\r');
                }
                while u.is_tx_fifo_full() {}
                u.write_word(b);
            }
        }
        self.len = 0;
    }

    fn put(&mut self, b: u8) {
        self.line[self.len] = b;
        self.len += 1;
        if b == b'\n' || self.len == self.line.len() {
            self.flush();
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(|b| self.put(b));
        Ok(())
    }
}

static CONSOLE: SpinMutex<Console> = SpinMutex::new(Console {
    ffa: false,
    uart: None,
    line: [0; ConsoleLogChars::MAX_32],
    len: 0,
});

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        // A fault while logging must not deadlock the fault report: skip instead.
        if let Some(mut c) = CONSOLE.try_lock() {
            let _ = writeln!(c, "[{}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

// ---------------------------------------------------------------------------------------------
// FF-A calls.

fn ep() -> Endpoint<Smc> {
    Endpoint::new(Smc)
}

/// Why start-up failed (printed with `Debug`).
#[derive(Debug)]
#[allow(dead_code, reason = "fields are read through Debug in the log")]
enum BootError {
    Version(ffa::Error),
    IncompatibleVersion(Version),
    BootInfo(boot_info::BootInfoError),
    NoManifest,
    Manifest(flexserve_sp::manifest::ManifestError),
    Plan(memmap::PlanError),
    /// The heap must be below INITIAL_MAP_END (the runtime page table is built in it).
    HeapAboveInitialMap(u64),
    IdGet(ffa::Error),
    RxTxMap(ffa::Error),
}

/// Reports a failed start-up to the SPMC (FFA_ERROR instead of FFA_MSG_WAIT) and stops.
fn boot_failed(e: BootError) -> ! {
    log::error!("start-up failed: {e:?}");
    abort(FfaError::Aborted)
}

/// Ends the SP in a way the partition manager sees: FFA_ABORT (Hafnium, testbed), then FFA_ERROR
/// if that returns, then WFI forever.
fn abort(code: FfaError) -> ! {
    let _ = ep().abort(code.to_u32());
    let _ = ep().call(&Interface::Error {
        target_info: 0,
        code,
    });
    loop {
        // SAFETY: WFI only waits; it touches no memory.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

// ---------------------------------------------------------------------------------------------
// Image layout (symbols from aarch64-rt's image.ld).

unsafe extern "C" {
    static text_begin: u8;
    static rodata_begin: u8;
    static data_begin: u8;
    static boot_stack_begin: u8;
    static boot_stack_end: u8;
}

fn image_layout() -> ImageLayout {
    let a = |s: *const u8| s as u64;
    // Only the addresses of the linker symbols are taken, never their contents.
    let (t, r, d, s, e) = (
        a(&raw const text_begin),
        a(&raw const rodata_begin),
        a(&raw const data_begin),
        a(&raw const boot_stack_begin),
        a(&raw const boot_stack_end),
    );
    ImageLayout {
        text: t..r,
        rodata: r..d,
        // .bss ends below the page-aligned stack; the gap is padding.
        data: d..s,
        stack: s..e,
    }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The stack exception handlers run on (SP_EL1); `main` runs on the boot stack through SP_EL0,
/// so a fault on the boot stack (e.g. hitting its guard page) can still be reported.
static mut EXCEPTION_STACK: [Page; 4] = [const { Page([0; 4096]) }; 4];

/// Moves the running code from SP_EL1 to SP_EL0 (same stack, same value) and points SP_EL1 at
/// the exception stack.
fn split_stacks() {
    let top = (&raw mut EXCEPTION_STACK) as u64 + size_of::<[Page; 4]>() as u64;
    // SAFETY: no memory is accessed between the moves; afterwards `sp` has the same value as
    // before (now held in SP_EL0), so the compiler's view of the stack is unchanged. SP_EL1 gets
    // a stack nothing else uses; exceptions taken at EL1 switch to it.
    unsafe {
        core::arch::asm!(
            "mov {cur}, sp",
            "mov sp, {top}",
            "msr spsel, #0",
            "mov sp, {cur}",
            cur = out(reg) _,
            top = in(reg) top,
            options(nomem, preserves_flags),
        );
    }
}

/// RX and TX buffers (one page each) handed to the SPMC by FFA_RXTX_MAP.
static mut RX_BUFFER: Page = Page([0; 4096]);
static mut TX_BUFFER: Page = Page([0; 4096]);

const BUFFER_SIZE: usize = 4096;

/// The RX/TX pages as the `ffa` memory flows see them: copied with volatile accesses, since the
/// SPMC writes RX and reads TX between calls.
struct Buffers;

impl RxTxBuffers for Buffers {
    fn size(&self) -> usize {
        BUFFER_SIZE
    }

    fn write_tx(&mut self, data: &[u8]) {
        let tx = (&raw mut TX_BUFFER).cast::<u8>();
        for (i, &b) in data.iter().take(BUFFER_SIZE).enumerate() {
            // SAFETY: TX_BUFFER is a static page of BUFFER_SIZE bytes; i < BUFFER_SIZE. Only
            // this loop and the SPMC (between calls) touch it.
            unsafe { tx.add(i).write_volatile(b) };
        }
    }

    fn read_rx(&mut self, out: &mut [u8]) {
        let rx = (&raw const RX_BUFFER).cast::<u8>();
        for (i, o) in out.iter_mut().take(BUFFER_SIZE).enumerate() {
            // SAFETY: RX_BUFFER is a static page of BUFFER_SIZE bytes; i < BUFFER_SIZE.
            *o = unsafe { rx.add(i).read_volatile() };
        }
    }
}

/// The memory service's machine side: FF-A calls over SMC, the runtime page table, and copies
/// to and from mapped shared memory.
struct SpMemory {
    id: PartitionId,
    idmap: &'static mut IdMap<El1And0>,
    /// Pages the runtime map had before any region was mapped.
    own_pages: u64,
}

impl MemPlatform for SpMemory {
    fn retrieve(&mut self, req: &MemTransaction) -> Result<MemTransaction, ffa::RetrieveError> {
        ep().mem_retrieve(req, &mut Buffers, shmem::MAX_RESPONSE)
    }

    fn relinquish(&mut self, handle: Handle) -> Result<(), ffa::Error> {
        let desc = MemRelinquishDesc {
            handle,
            flags: 0,
            endpoints: vec![self.id],
        };
        let mut bytes = [0u8; 32];
        let n = desc.encode(&mut bytes)?;
        Buffers.write_tx(&bytes[..n]);
        ep().mem_relinquish()
    }

    fn map(&mut self, range: Range<u64>, access: Access) -> Result<(), MapFail> {
        memmap::map_shared(self.idmap, range.clone(), access).map_err(|e| {
            log::warn!("map {:#x}..{:#x}: {e}", range.start, range.end);
            MapFail::Refused
        })
    }

    fn unmap(&mut self, range: Range<u64>) -> Result<(), MapFail> {
        memmap::unmap_shared(self.idmap, range.clone()).map_err(|e| {
            log::error!("unmap {:#x}..{:#x}: {e}", range.start, range.end);
            MapFail::Refused
        })
    }

    /// Walks the live page table: what it maps beyond the SP's own memory.
    fn mapped_pages(&self) -> u64 {
        memmap::mapped_pages(self.idmap).saturating_sub(self.own_pages)
    }

    fn read(&self, pa: u64, out: &mut [u8]) {
        let src = pa as usize as *const u8;
        for (i, o) in out.iter_mut().enumerate() {
            // SAFETY: `SharedMemory` passes only addresses inside a checked span of a region it
            // holds, and holds only regions whose ranges it mapped here; the owner may change
            // the bytes at any time, hence volatile reads.
            *o = unsafe { src.add(i).read_volatile() };
        }
    }

    fn write(&mut self, pa: u64, data: &[u8]) {
        let dst = pa as usize as *mut u8;
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: as in `read`, and `SharedMemory` writes only regions mapped writable.
            unsafe { dst.add(i).write_volatile(b) };
        }
    }

    unsafe fn view(&self, pa: u64, len: usize) -> Option<&'static [u8]> {
        // SAFETY: the runtime map is an identity map, so the mapped range `pa..pa + len` is
        // addressable at `pa`; the caller guarantees it stays mapped and unchanged while the
        // slice is used.
        Some(unsafe { core::slice::from_raw_parts(pa as usize as *const u8, len) })
    }
}

// ---------------------------------------------------------------------------------------------
// Serving hooks: the counter, heap statistics, FP/SIMD.

/// CNTPCT_EL0, ordered after earlier instructions.
fn counter_now() -> u64 {
    let v: u64;
    // SAFETY: reading the physical counter has no side effects; EL1 may read it.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v,
            options(nomem, nostack, preserves_flags));
    }
    v
}

/// CNTFRQ_EL0.
fn counter_hz() -> u64 {
    let v: u64;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v
}

fn heap_free() -> usize {
    let h = HEAP.lock();
    h.stats_total_bytes().saturating_sub(h.stats_alloc_actual())
}

/// Makes sure FP/SIMD does not trap at EL1/EL0 (CPACR_EL1.FPEN = 0b11): the kernels and the
/// compiler's code use the vector registers. aarch64-rt's entry normally did it already.
fn enable_fp() {
    let cpacr: u64;
    // SAFETY: reading CPACR_EL1 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cpacr_el1", out(reg) cpacr, options(nomem, nostack, preserves_flags));
    }
    const FPEN: u64 = 0b11 << 20;
    if cpacr & FPEN != FPEN {
        // SAFETY: only enables FP/SIMD access; the ISB makes it take effect before any FP use.
        unsafe {
            core::arch::asm!("msr cpacr_el1, {}", "isb", in(reg) cpacr | FPEN,
                options(nomem, nostack, preserves_flags));
        }
        log::info!("FP/SIMD enabled (CPACR_EL1 was {cpacr:#x})");
    }
}

/// Switches TTBR0_EL1 to `root` (same MAIR/TCR as the initial map): MMU off around the switch so
/// that no stale TLB entry of the initial 1 GiB block is mixed with the new page entries.
///
/// # Safety
///
/// `root` must be a complete identity map of everything the program uses from here on, with the
/// attributes aarch64-rt's MAIR expects, and must outlive its use.
unsafe fn switch_page_table(root: u64) {
    // SAFETY: the caller guarantees the new table maps all code, data, stack and heap as before
    // (identity, same memory types). No load or store happens while the MMU is off.
    unsafe {
        core::arch::asm!(
            "dsb ish",
            "mrs {sctlr}, sctlr_el1",
            "bic {tmp}, {sctlr}, #1",
            "msr sctlr_el1, {tmp}",
            "isb",
            "msr ttbr0_el1, {root}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            sctlr = out(reg) _,
            tmp = out(reg) _,
            root = in(reg) root,
            options(nostack),
        );
    }
}

fn main(boot_info: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    split_stacks();
    // FFA_VERSION first: the version locks after any other FF-A call (CONSOLE_LOG included).
    let spmc_version = match ep().version(FFA_VERSION) {
        Ok(v) if FFA_VERSION.is_compatible_with(v) => v,
        Ok(v) => boot_failed(BootError::IncompatibleVersion(v)),
        Err(e) => boot_failed(BootError::Version(e)),
    };
    CONSOLE.lock().ffa = true;
    // Only fails if a logger is already set, which nothing else does.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    log::info!(
        "FlexServe SP {} (build {:08x}), FF-A {}.{} (SPMC {}.{})",
        env!("CARGO_PKG_VERSION"),
        BUILD_ID,
        FFA_VERSION.major(),
        FFA_VERSION.minor(),
        spmc_version.major(),
        spmc_version.minor()
    );

    // Boot info and manifest. The SPMC wrote both into the package before entry; they stay
    // mapped read-only.
    // SAFETY: x0 points at the boot-info blob in this SP's package (entry contract); the header
    // is 32 bytes and the package is at least a page.
    let head =
        unsafe { core::slice::from_raw_parts(boot_info as *const u8, boot_info::HEADER_SIZE) };
    let header =
        BootInfoHeader::parse(head).unwrap_or_else(|e| boot_failed(BootError::BootInfo(e)));
    // SAFETY: the header was validated; the SPMC sized the blob inside the package.
    let blob =
        unsafe { core::slice::from_raw_parts(boot_info as *const u8, header.blob_size as usize) };
    let info = BootInfo::parse(blob).unwrap_or_else(|e| boot_failed(BootError::BootInfo(e)));
    let (dtb_addr, dtb_size) = info
        .manifest_fdt()
        .unwrap_or_else(|| boot_failed(BootError::NoManifest));
    // SAFETY: the boot info names the manifest DTB the SPMC placed in this SP's package.
    let dtb = unsafe { core::slice::from_raw_parts(dtb_addr as *const u8, dtb_size as usize) };
    let manifest = SpManifest::parse(dtb).unwrap_or_else(|e| boot_failed(BootError::Manifest(e)));

    // Runtime map by intent, checked (heap clear of the image) before the heap is touched.
    let maps = memmap::plan(
        &image_layout(),
        boot_info..boot_info + u64::from(header.blob_size),
        dtb_addr..dtb_addr + u64::from(dtb_size),
        &manifest,
    )
    .unwrap_or_else(|e| boot_failed(BootError::Plan(e)));

    // Heap: the manifest's region, mapped by the initial map until the runtime map takes over.
    if manifest.heap.end() > INITIAL_MAP_END {
        boot_failed(BootError::HeapAboveInitialMap(manifest.heap.end()));
    }
    // SAFETY: the manifest grants this range to the SP alone, and the plan checked that it is
    // clear of the image, boot info and manifest; nothing else uses it.
    unsafe {
        HEAP.lock()
            .init(manifest.heap.base as usize, manifest.heap.size as usize);
    }

    // The initial 1 GiB block goes away.
    let idmap = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        memmap::build(&maps).unwrap_or_else(|e| boot_failed(BootError::Plan(e))),
    ));
    idmap.mark_active();
    // SAFETY: `maps` covers the image (code, rodata, data and bss, the stack above its guard
    // page), the boot info, the manifest and the heap with the same memory types as the initial
    // map; the table is leaked, so it lives forever.
    unsafe { switch_page_table(idmap.root_address().0 as u64) };
    for m in maps.iter() {
        log::info!(
            "map {:<9} {:#010x}..{:#010x} {:?}",
            m.name,
            m.range.start,
            m.range.end,
            m.intent
        );
    }

    if let Some(u) = manifest.uart {
        // SAFETY: the manifest grants this device region; it is mapped as device memory above
        // and nothing else in the SP drives it.
        let regs = unsafe {
            UniqueMmioPointer::new(NonNull::new_unchecked(
                u.base as usize as *mut PL011Registers,
            ))
        };
        CONSOLE.lock().uart = Some(Uart::new(regs));
        log::info!(
            "secure UART at {:#x} (if FFA_CONSOLE_LOG is refused)",
            u.base
        );
    }

    let id = ep()
        .id_get()
        .unwrap_or_else(|e| boot_failed(BootError::IdGet(e)));
    let (tx, rx) = (&raw const TX_BUFFER as u64, &raw const RX_BUFFER as u64);
    const ONE_PAGE: Option<RxTxPageCount> = RxTxPageCount::new(1);
    if let Some(pages) = ONE_PAGE
        && let Err(e) = ep().rxtx_map(tx, rx, pages)
    {
        boot_failed(BootError::RxTxMap(e));
    }
    // Hafnium answers NOT_SUPPORTED unless a v1.1+ caller sets input bit 1 (NS-bit support).
    let memory = match ep().features(FuncId::MemRetrieveReq32 as u32, 1 << 1) {
        Ok(_) => {
            log::info!("memory service on: the SPMC retrieves with the NS bit");
            let reserved: Vec<Range<u64>> = maps.iter().map(|m| m.range.clone()).collect();
            let own_pages = memmap::mapped_pages(idmap);
            let platform = SpMemory {
                id,
                idmap,
                own_pages,
            };
            Some(SharedMemory::new(
                Box::new(platform) as Box<dyn MemPlatform>,
                id,
                reserved,
            ))
        }
        Err(e) => {
            log::warn!("FFA_FEATURES(MEM_RETRIEVE_REQ): {e}; no memory service");
            None
        }
    };
    let req2 = manifest.receives_direct_req2();
    log::info!(
        "partition {id:#06x}: heap {:#x}+{:#x}, RX/TX {rx:#x}/{tx:#x}, REQ2 {req2}; waiting",
        manifest.heap.base,
        manifest.heap.size
    );

    let mut service = Service::new(BUILD_ID, req2, true);
    if let Some(m) = memory {
        enable_fp();
        let kernels = llm_runtime::kernels::Kernels::detect();
        log::info!(
            "serving: kernels {} (decode {}, prefill {}), counter {} Hz",
            kernels.describe(),
            kernels.matvec_path(),
            kernels.matmul_path(),
            counter_hz()
        );
        service = service.with_memory(m).with_serving(Hooks {
            now: counter_now,
            counter_hz,
            heap_free,
        });
    }
    #[cfg(feature = "fault-injection")]
    let service = service.with_fault_injection(inject_fault);
    let mut msg = Messaging::new(service, id);
    let mut call = messaging::msg_wait();
    loop {
        let regs = Smc.call(call.to_regs());
        call = match msg.step(&regs) {
            Next::Call(c) => c,
            Next::GiveUp => {
                log::error!("the SPMC keeps refusing; giving up");
                abort(FfaError::Aborted)
            }
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Exceptions and panics.

fn sysregs() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading ESR_EL1 and FAR_EL1 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far,
            options(nomem, nostack, preserves_flags));
    }
    (esr, far)
}

fn fatal_exception(kind: &str, state: &RegisterStateRef) -> ! {
    let (esr, far) = sysregs();
    log::error!(
        "unexpected {kind}: ESR {esr:#x} (EC {:#x}) FAR {far:#x} ELR {:#x} SPSR {:#x}",
        esr >> 26,
        state.elr,
        state.spsr
    );
    for (i, pair) in state.registers.chunks(4).enumerate() {
        log::error!("x{:<2} {:016x?}", i * 4, pair);
    }
    log::error!("fp {:#x} lr {:#x}", state.fp, state.sp);
    abort(FfaError::Aborted)
}

struct Exceptions;

impl ExceptionHandlers for Exceptions {
    extern "C" fn sync_current(state: RegisterStateRef) {
        fatal_exception("synchronous exception", &state)
    }

    extern "C" fn irq_current(state: RegisterStateRef) {
        fatal_exception("IRQ", &state)
    }

    extern "C" fn fiq_current(state: RegisterStateRef) {
        fatal_exception("FIQ", &state)
    }

    extern "C" fn serror_current(state: RegisterStateRef) {
        fatal_exception("SError", &state)
    }

    extern "C" fn sync_lower(state: RegisterStateRef) {
        fatal_exception("synchronous exception from a lower EL", &state)
    }

    extern "C" fn irq_lower(state: RegisterStateRef) {
        fatal_exception("IRQ from a lower EL", &state)
    }

    extern "C" fn fiq_lower(state: RegisterStateRef) {
        fatal_exception("FIQ from a lower EL", &state)
    }

    extern "C" fn serror_lower(state: RegisterStateRef) {
        fatal_exception("SError from a lower EL", &state)
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    match info.location() {
        Some(l) => log::error!("panic at {}:{}: {}", l.file(), l.line(), info.message()),
        None => log::error!("panic: {}", info.message()),
    }
    abort(FfaError::Aborted)
}

/// Fails on purpose (feature `fault-injection`, test builds only).
#[cfg(feature = "fault-injection")]
fn inject_fault(kind: flexserve_proto::FaultKind) -> ! {
    match kind {
        flexserve_proto::FaultKind::Panic => panic!("fault injection: panic requested"),
        flexserve_proto::FaultKind::StackOverflow => {
            fn recurse(depth: u64) -> u64 {
                // Never true within any stack; keeps the recursion formally bounded.
                if depth == u64::MAX {
                    return 0;
                }
                let frame = core::hint::black_box([depth; 64]);
                recurse(depth + 1).wrapping_add(frame[(depth % 64) as usize])
            }
            let v = recurse(0);
            panic!("unbounded recursion returned {v}")
        }
        flexserve_proto::FaultKind::DataAbort => {
            // The first pages are never mapped by the runtime map (see memmap::plan).
            // SAFETY: not memory-safe on purpose: the load faults before it reads anything, and
            // the exception handler ends the SP.
            let v =
                unsafe { core::ptr::read_volatile(core::ptr::without_provenance::<u64>(0x1000)) };
            panic!("load from an unmapped address returned {v:#x}")
        }
    }
}
