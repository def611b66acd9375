//! Bare-metal runtime of the SP: entry, exception vectors, MMU switch, heap, logging, panic, and
//! the FF-A start-up and message loop.
//!
//! Entry contract (Hafnium, TF-A's EL3 SPMC and the testbed alike; platform-facts.md sec. 3.3,
//! 4.4, 4.9): S-EL1, MMU and caches off, PC = the first byte of this image (load-address +
//! entrypoint-offset for an SP package; the BL32 base for the EL3 SPMC; aarch64-rt's `entry`,
//! placed first by image.ld), x0 = FF-A boot-info blob, DAIF masked. aarch64-rt's entry enables
//! the initial identity map below (so no Rust code runs with the MMU off), enables FP/SIMD
//! (CPACR_EL1.FPEN), zeroes BSS, sets the boot stack and VBAR_EL1, and passes x0-x3 to `main`.
//!
//! Several execution contexts (`flexserve_sp::ec`): the primary EC initialises everything; an MP
//! SP's other ECs enter at [`secondary_entry`] on their core's first CPU_ON, switch to the
//! primary's page table, take their own stacks and run the same message loop. All ECs share one
//! [`Service`] behind a spin lock (held for one request), one console lock, and the global heap
//! (a spin-locked buddy allocator); nothing else is shared.

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
    sync::atomic::{AtomicU64, Ordering},
};
use ffa::{
    Conduit, ConsoleLogChars, Endpoint, FfaError, FuncId, Handle, Interface, PartitionId,
    PartitionInfo, RxTxPageCount, Smc, Uuid, Version,
    boot_info::{self, BootInfo, BootInfoHeader},
    endpoint::RxTxBuffers,
    memory::{MemRelinquishDesc, MemTransaction},
};
use flexserve_sp::{
    BUILD_ID,
    ec::{self, BootTable, Contexts, Slots},
    flexmem::Clock,
    manifest::SpManifest,
    memmap::{self, ImageLayout},
    messaging::{self, Messaging, Next, ServiceAccess},
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

/// Which EC holds the console lock (see [`context_id`]), or [`NO_OWNER`].
static CONSOLE_OWNER: AtomicU64 = AtomicU64::new(NO_OWNER);
const NO_OWNER: u64 = u64::MAX;

/// This EC's identity for the console: 0 on the primary EC, 1 + the EC index on a secondary
/// (TPIDR_EL1, set at entry; nothing else uses it).
fn context_id() -> u64 {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let me = context_id();
        // A fault while this EC logs must not deadlock its fault report: skip instead. Another
        // EC's line is waited for.
        if CONSOLE_OWNER.load(Ordering::Relaxed) == me {
            return;
        }
        let mut c = CONSOLE.lock();
        CONSOLE_OWNER.store(me, Ordering::Relaxed);
        let _ = match me {
            0 => writeln!(c, "[{}] {}", record.level(), record.args()),
            n => writeln!(c, "[{} ec{}] {}", record.level(), n - 1, record.args()),
        };
        CONSOLE_OWNER.store(NO_OWNER, Ordering::Relaxed);
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
    Contexts(ec::EcError),
    /// The secondary ECs' stacks do not fit the heap.
    NoRoomForStacks(u64),
    SecondaryEp(ffa::Error),
}

/// Reports a failed start-up to the SPMC (FFA_ERROR instead of FFA_MSG_WAIT) and stops.
fn boot_failed(e: BootError) -> ! {
    log::error!("start-up failed: {e:?}");
    abort(FfaError::Aborted)
}

/// Ends the SP in a way the partition manager sees: FFA_ABORT (v1.3 partitions; Hafnium and the
/// testbed answer a v1.2 SP NOT_SUPPORTED), then FFA_ERROR if that returns, then WFI forever.
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

    fn read_u64(&self, pa: u64) -> u64 {
        let v: u64;
        // SAFETY: Flex-Mem passes only an 8-byte aligned address of a page it mapped (its
        // probe) or holds mapped; a plain LDR (no writeback) so that the testbed can emulate a
        // blocked load (it poisons the destination register).
        unsafe {
            core::arch::asm!("ldr {v}, [{a}]", v = out(reg) v, a = in(reg) pa,
                options(nostack, readonly, preserves_flags));
        }
        v
    }

    fn zero(&mut self, pa: u64, len: u64) {
        // SAFETY: Flex-Mem zeroes only the ranges of a region it secured, which this layer
        // mapped writable (identity) and nobody else can reach any more.
        unsafe { core::ptr::write_bytes(pa as usize as *mut u8, 0, len as usize) };
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
pub(crate) fn counter_now() -> u64 {
    let v: u64;
    // SAFETY: reading the physical counter has no side effects; EL1 may read it.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v,
            options(nomem, nostack, preserves_flags));
    }
    v
}

/// CNTFRQ_EL0.
pub(crate) fn counter_hz() -> u64 {
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
    set_context_id(0);
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

    // Boot info and manifest. The SPMC wrote both before entry (into the package, or into its
    // own memory under the EL3 SPMC); they stay mapped read-only.
    // SAFETY: x0 points at the boot-info blob (entry contract); the header is 32 bytes and the
    // SPMC reserves at least a page for it.
    let head =
        unsafe { core::slice::from_raw_parts(boot_info as *const u8, boot_info::HEADER_SIZE) };
    let header =
        BootInfoHeader::parse(head).unwrap_or_else(|e| boot_failed(BootError::BootInfo(e)));
    // SAFETY: the header was validated; the SPMC sized the blob.
    let blob =
        unsafe { core::slice::from_raw_parts(boot_info as *const u8, header.blob_size as usize) };
    let info = BootInfo::parse(blob).unwrap_or_else(|e| boot_failed(BootError::BootInfo(e)));
    let (dtb_addr, dtb_size) = info
        .manifest_fdt()
        .unwrap_or_else(|| boot_failed(BootError::NoManifest));
    // SAFETY: the boot info names the manifest DTB the SPMC placed for this SP.
    let dtb = unsafe { core::slice::from_raw_parts(dtb_addr as *const u8, dtb_size as usize) };
    let manifest = SpManifest::parse(dtb).unwrap_or_else(|e| boot_failed(BootError::Manifest(e)));
    let from_manifest = manifest.test_device_root.inspect(|_| {
        log::warn!("device root from the manifest: a TEST secret (no firmware key source)");
    });
    let device = device_root(&info, boot_info, header.blob_size)
        .or(from_manifest)
        .map(|mut root| {
            let d = flexserve_sp::sealed::Device::from_root(&mut root);
            let p = d.public();
            let fp = p.fingerprint();
            log::info!(
                "device key: x25519 {}, ed25519 {}, fingerprint {}",
                Hex(&p.kem),
                Hex(&p.sign),
                Hex(&fp[..8])
            );
            d
        });

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

    // Identity, RX/TX and how many ECs the SPMC runs: all before the runtime map, which must
    // leave the secondary ECs' guard pages out.
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
    let spmc_ecs = spmc_context_count(id);
    let contexts = ec::plan(manifest.execution_ctx_count, spmc_ecs)
        .unwrap_or_else(|e| boot_failed(BootError::Contexts(e)));
    let slots = match contexts {
        Contexts::Up => None,
        Contexts::Mp(n) => Some(allocate_slots(n)),
    };
    log::info!(
        "execution contexts: manifest {}, SPMC {spmc_ecs:?}: {contexts:?}",
        manifest.execution_ctx_count
    );

    // The initial 1 GiB block goes away.
    let guards = slots.iter().flat_map(|s| s.guards().collect::<Vec<_>>());
    let idmap = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        memmap::build_with_guards(&maps, guards)
            .unwrap_or_else(|e| boot_failed(BootError::Plan(e))),
    ));
    idmap.mark_active();
    // SAFETY: `maps` covers the image (code, rodata, data and bss, the stack above its guard
    // page), the boot info, the manifest and the heap with the same memory types as the initial
    // map; the guard pages left out hold nothing; the table is leaked, so it lives forever.
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
        if let Some(f) = crate::rt_flexmem::flexmem_from(&manifest.flexmem) {
            service = service.with_flexmem(f);
            let clock = Clock {
                now: counter_now,
                hz: counter_hz,
            };
            if let Some(n) = crate::rt_npu::flexnpu_from(&manifest.flexnpu, clock) {
                service = service.with_flexnpu(n);
            }
        }
        match device {
            Some(d) => service = service.with_device(d),
            None => log::warn!("no device root in the boot information: sealed models off"),
        }
    }
    #[cfg(feature = "fault-injection")]
    let service = service.with_fault_injection(inject_fault);
    let shared = SHARED.call_once(|| Shared {
        service: spin::Mutex::new(service),
        id,
    });
    if let Some(slots) = slots {
        start_secondaries(&slots);
    }
    serve_forever(Messaging::new(&shared.service, id))
}

/// The device root secret from the boot information (`flexserve_proto::device_root`), if the
/// firmware gave one inside the blob it mapped for the SP.
fn device_root(info: &BootInfo<'_>, blob: u64, blob_size: u32) -> Option<[u8; 32]> {
    use ffa::boot_info::{BootInfoContents, BootInfoName};
    use flexserve_proto::device_root::{DEVICE_ROOT_LEN, DEVICE_ROOT_NAME, DEVICE_ROOT_TYPE};
    let d = info.descriptors().find(|d| {
        d.kind.to_u8() == DEVICE_ROOT_TYPE && d.name == BootInfoName::String(DEVICE_ROOT_NAME)
    })?;
    let BootInfoContents::Address(at) = d.contents else {
        log::warn!("device root descriptor is not by address");
        return None;
    };
    let end = at.checked_add(DEVICE_ROOT_LEN as u64)?;
    if d.size as usize != DEVICE_ROOT_LEN || at < blob || end > blob + u64::from(blob_size) {
        log::warn!(
            "device root descriptor at {at:#x}+{} is outside the boot info",
            d.size
        );
        return None;
    }
    let mut root = [0u8; 32];
    // SAFETY: the range was checked to lie inside the boot-info blob, which is mapped.
    let src = unsafe { core::slice::from_raw_parts(at as usize as *const u8, DEVICE_ROOT_LEN) };
    root.copy_from_slice(src);
    Some(root)
}

/// Bytes as lowercase hex, for the log.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Every EC's loop: FFA_MSG_WAIT, then answer each request with the next call.
fn serve_forever<S: ServiceAccess>(mut msg: Messaging<S>) -> ! {
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
// Secondary execution contexts.

/// What every EC shares: the service (one request at a time) and the partition ID.
struct Shared {
    service: spin::Mutex<Service>,
    id: PartitionId,
}

// SAFETY: the ECs are cores running this one image in one address space, with no thread-local
// state. The service's contents that are not `Send` are raw pointers and references into
// identity-mapped memory (the runtime page table, retrieved regions, the RX/TX pages) that are
// valid on every core; the mutex serialises every use of them. `id` is never written.
unsafe impl Send for Shared {}
// SAFETY: as above; all shared mutation goes through the mutex.
unsafe impl Sync for Shared {}

static SHARED: spin::Once<Shared> = spin::Once::new();

/// How many ECs the SPMC runs this partition with (its FFA_PARTITION_INFO_GET descriptor for
/// this ID), or `None` if it does not say.
fn spmc_context_count(id: PartitionId) -> Option<u16> {
    let count = match ep().partition_info_get(Uuid(flexserve_proto::SERVICE_UUID), false) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("FFA_PARTITION_INFO_GET: {e}; trusting the manifest's EC count");
            return None;
        }
    };
    let mut rx = [0u8; BUFFER_SIZE];
    Buffers.read_rx(&mut rx);
    if let Err(e) = ep().rx_release() {
        log::warn!("FFA_RX_RELEASE: {e}");
    }
    let found = PartitionInfo::iter(&rx, count.count, count.desc_size)
        .ok()?
        .find(|p| p.id == id)
        .map(|p| p.exec_ctx_count);
    if found.is_none() {
        log::warn!("partition info does not list {id:#06x}; trusting the manifest's EC count");
    }
    found
}

/// Takes the secondary ECs' stacks from the heap (never freed: an EC can be entered again
/// after its core was powered off).
fn allocate_slots(count: u16) -> Slots {
    let bytes = Slots::bytes(count);
    let layout = core::alloc::Layout::from_size_align(bytes as usize, ec::PAGE_SIZE as usize)
        .unwrap_or_else(|_| boot_failed(BootError::NoRoomForStacks(bytes)));
    // SAFETY: the layout has a non-zero size (count > 1 for an MP SP).
    let base = unsafe { alloc::alloc::alloc(layout) };
    if base.is_null() {
        boot_failed(BootError::NoRoomForStacks(bytes));
    }
    Slots::new(base as u64, count).unwrap_or_else(|e| boot_failed(BootError::Contexts(e)))
}

#[repr(C, align(64))]
struct AlignedTable(BootTable);

/// Read by [`secondary_entry`] with the MMU off; written once by the primary EC, then cleaned
/// to the point of coherency.
static mut BOOT_TABLE: AlignedTable = AlignedTable(BootTable {
    mair: 0,
    tcr: 0,
    sctlr: 0,
    ttbr0: 0,
    slots_base: 0,
    slot_count: 0,
});

/// Publishes the primary's translation setup and the slots, then registers the secondary entry
/// point. The SPMC starts the other ECs on CPU_ON, which the normal world can only issue after
/// this EC's FFA_MSG_WAIT; the table is complete before the entry point is known to anyone.
fn start_secondaries(slots: &Slots) {
    let regs = translation_regs();
    let table = BootTable::new(regs, slots);
    // SAFETY: only the primary EC writes the table, once, before any secondary EC can run.
    unsafe { (&raw mut BOOT_TABLE).write_volatile(AlignedTable(table)) };
    clean_to_poc(
        (&raw const BOOT_TABLE) as u64,
        size_of::<AlignedTable>() as u64,
    );
    let entry = secondary_entry as *const () as u64;
    if let Err(e) = ep().secondary_ep_register(entry) {
        boot_failed(BootError::SecondaryEp(e));
    }
    let r = slots.range();
    log::info!(
        "{} execution contexts: secondary entry {entry:#x}, stacks {:#x}..{:#x}",
        slots.count(),
        r.start,
        r.end
    );
}

/// MAIR_EL1, TCR_EL1, SCTLR_EL1 and TTBR0_EL1 as the primary EC runs with them.
fn translation_regs() -> [u64; 4] {
    let (mair, tcr, sctlr, ttbr0): (u64, u64, u64, u64);
    // SAFETY: reading these registers has no side effects.
    unsafe {
        core::arch::asm!(
            "mrs {}, mair_el1",
            "mrs {}, tcr_el1",
            "mrs {}, sctlr_el1",
            "mrs {}, ttbr0_el1",
            out(reg) mair, out(reg) tcr, out(reg) sctlr, out(reg) ttbr0,
            options(nomem, nostack, preserves_flags),
        );
    }
    [mair, tcr, sctlr, ttbr0]
}

/// Cleans `len` bytes from `addr` out of the data caches to the point of coherency, for a
/// reader with the MMU (and so its caches) off.
fn clean_to_poc(addr: u64, len: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags));
    }
    // DminLine: log2 of the smallest data cache line in words.
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut a = addr & !(line - 1);
    while a < addr + len {
        // SAFETY: a cache clean by address changes no data; `a` lies in mapped memory (the
        // line of a static).
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier only orders the cleans before what follows.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

fn set_context_id(id: u64) {
    // SAFETY: TPIDR_EL1 is software's; only `context_id` reads it.
    unsafe {
        core::arch::asm!("msr tpidr_el1, {}", in(reg) id, options(nomem, nostack, preserves_flags));
    }
}

/// The secondary entry point (see `flexserve_sp::ec` for the SPMCs' contract): MMU off, no stack,
/// x4 = EC index. Checks the index against the published slots (none: report FFA_ERROR(ABORTED)
/// for this EC's initialisation), turns the MMU on with the primary's page table and settings,
/// enables FP/SIMD, sets SP_EL1 to the slot's exception stack and SP_EL0 to its stack (as
/// `split_stacks` does for the primary), TPIDR_EL1 = index + 1, VBAR_EL1, then calls
/// [`secondary_main`].
///
/// # Safety
///
/// Only the SPMC enters it, as a secondary EC's first instruction.
#[unsafe(naked)]
unsafe extern "C" fn secondary_entry() -> ! {
    core::arch::naked_asm!(
        "mov x19, x4",
        "adrp x20, {table}",
        "add x20, x20, :lo12:{table}",
        "ldr x21, [x20, #{count}]",
        "cmp x19, x21",
        "b.hs 2f",
        "ldr x8, [x20, #{mair}]",
        "msr mair_el1, x8",
        "ldr x8, [x20, #{tcr}]",
        "msr tcr_el1, x8",
        "ldr x8, [x20, #{ttbr0}]",
        "msr ttbr0_el1, x8",
        "isb",
        "tlbi vmalle1",
        "ic iallu",
        "dsb nsh",
        "isb",
        "ldr x8, [x20, #{sctlr}]",
        "msr sctlr_el1, x8",
        "isb",
        "mrs x8, cpacr_el1",
        "orr x8, x8, #(0x3 << 20)",
        "msr cpacr_el1, x8",
        "isb",
        // slot = base + index * SLOT_SIZE
        "ldr x8, [x20, #{base}]",
        "movz x9, #{size_lo}",
        "movk x9, #{size_hi}, lsl #16",
        "madd x10, x19, x9, x8",
        "add x11, x10, #{exc_top}",
        "mov sp, x11",
        "msr spsel, #0",
        "add x11, x10, x9",
        "mov sp, x11",
        "add x8, x19, #1",
        "msr tpidr_el1, x8",
        "bl {vectors}",
        "mov x0, x19",
        "b {main}",
        // No slot: this EC failed to initialise.
        "2:",
        "movz w0, #0x0060",
        "movk w0, #0x8400, lsl #16",
        "mov x1, xzr",
        "mov w2, #-8",
        "smc #0",
        "3:",
        "wfi",
        "b 3b",
        table = sym BOOT_TABLE,
        count = const ec::table::SLOT_COUNT,
        mair = const ec::table::MAIR,
        tcr = const ec::table::TCR,
        ttbr0 = const ec::table::TTBR0,
        sctlr = const ec::table::SCTLR,
        base = const ec::table::SLOTS_BASE,
        size_lo = const ec::SLOT_SIZE & 0xffff,
        size_hi = const ec::SLOT_SIZE >> 16,
        exc_top = const ec::EXCEPTION_TOP_OFFSET,
        vectors = sym aarch64_rt::set_exception_vector,
        main = sym secondary_main,
    )
}

/// A secondary EC, on its own stacks with the primary's page table: straight into the message
/// loop (the primary set up everything else).
extern "C" fn secondary_main(index: u64) -> ! {
    // Published before the boot table named any slot.
    let Some(shared) = SHARED.get() else {
        abort(FfaError::Aborted)
    };
    log::info!("execution context {index} up; waiting");
    serve_forever(Messaging::new(&shared.service, shared.id))
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
