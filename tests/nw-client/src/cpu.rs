//! CPU bring-up beyond aarch64-rt's EL1 entry: leaving NS-EL2 (the `bl33` build, where TF-A's
//! BL31 enters the client at NS-EL2 with the MMU off), PSCI, and core 1 for the cross-core
//! checks (`nw_client::cores`).
//!
//! Without TF-A the EL2 entry, the boot configuration, CPU_ON/CPU_OFF/AFFINITY_INFO and
//! SYSTEM_OFF can be checked on QEMU's own PSCI (the FF-A calls then get SMCCC's -1):
//! `qemu-system-aarch64 -M virt,secure=off,virtualization=on,gic-version=3 -cpu max -m 1G
//! -smp 2 -device loader,file=nw-client-bl33.bin,addr=0x60000000,force-raw=on
//! -device loader,addr=0x60000000,cpu-num=0 -device loader,file=CFG,addr=0x7fff0000,force-raw=on`
//! (CFG from `xtask`'s `images::write_boot_config`).

use core::{
    arch::naked_asm,
    cell::UnsafeCell,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};
use ffa::{Conduit, Endpoint, REG_COUNT, Smc};
use nw_client::cores::{self, CoreJob, CoreReport, CoreRun, CpuOnError};

use smccc::psci::{
    PSCI_AFFINITY_INFO_64 as PSCI_AFFINITY_INFO, PSCI_CPU_OFF, PSCI_CPU_ON_64 as PSCI_CPU_ON,
};
/// AFFINITY_INFO: the core is off.
const AFFINITY_OFF: i64 = 1;
/// The core started for the cross-core checks (QEMU virt: MPIDR Aff0 = CPU index).
const CORE1_MPIDR: u64 = 1;

/// Continues at EL1 (at x30) if running at EL2; returns normally otherwise. Clobbers x9.
///
/// EL2 is left so that nothing traps to it: HCR_EL2 = RW only (EL1 is AArch64; no stage 2,
/// SMC goes to EL3, no interrupt routing), the counter and FP/SIMD/SVE/SME untrapped, EL1 sees
/// the real MIDR/MPIDR, and SCTLR_EL1 holds only its RES1 bits (MMU and caches off, for the
/// EL1 entry to turn on). EL1h with DAIF masked.
#[unsafe(naked)]
unsafe extern "C" fn el2_to_el1() {
    naked_asm!(
        "mrs x9, CurrentEL",
        "cmp x9, #(2 << 2)",
        "b.eq 1f",
        "ret",
        "1:",
        "mov x9, #(1 << 31)",
        "msr hcr_el2, x9",
        "isb",
        // CNTHCTL_EL2 (E2H = 0 layout): EL1PCTEN | EL1PCEN.
        "mrs x9, cnthctl_el2",
        "orr x9, x9, #3",
        "msr cnthctl_el2, x9",
        "msr cntvoff_el2, xzr",
        // CPTR_EL2 (E2H = 0 layout): RES1 bits 13, 9, 7:0; TFP, TZ, TSM, TCPAC clear.
        "mov x9, #0x22ff",
        "msr cptr_el2, x9",
        "msr hstr_el2, xzr",
        "msr vttbr_el2, xzr",
        "mrs x9, midr_el1",
        "msr vpidr_el2, x9",
        "mrs x9, mpidr_el1",
        "msr vmpidr_el2, x9",
        // SCTLR_EL1 RES1: bits 29, 28, 23, 22, 20, 11.
        "movz x9, #0x0800",
        "movk x9, #0x30d0, lsl #16",
        "msr sctlr_el1, x9",
        "mov x9, #0x3c5",
        "msr spsr_el2, x9",
        "msr elr_el2, x30",
        "isb",
        "eret",
    )
}

/// The `bl33` image's first instruction (`bl33.ld` puts this section first): drop to EL1, then
/// aarch64-rt's entry (MMU, BSS, stack, `main`) with x0-x3 as BL31 left them.
#[cfg(feature = "bl33")]
#[unsafe(naked)]
#[unsafe(link_section = ".bl33.entry")]
#[unsafe(no_mangle)]
unsafe extern "C" fn bl33_entry() -> ! {
    naked_asm!("bl {drop}", "b entry", drop = sym el2_to_el1)
}

/// A PSCI call through SMC; returns x0 as a signed status.
fn psci(fid: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut regs = [0u64; REG_COUNT];
    regs[0] = u64::from(fid);
    regs[1] = a1;
    regs[2] = a2;
    regs[3] = a3;
    Smc.call(regs)[0] as i64
}

fn now() -> (u64, u64) {
    let (count, freq): (u64, u64);
    // SAFETY: reading the virtual counter and its frequency has no side effects; EL1 may.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntvct_el0", "mrs {}, cntfrq_el0",
            out(reg) count, out(reg) freq, options(nomem, nostack, preserves_flags));
    }
    (count, freq.max(1))
}

/// Spins until `done()` or `secs` seconds of counter time; returns whether `done()` held.
fn wait(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let (start, hz) = now();
    loop {
        if done() {
            return true;
        }
        if now().0.wrapping_sub(start) > secs * hz {
            return false;
        }
        core::hint::spin_loop();
    }
}

const IDLE: u32 = 0;
const JOB: u32 = 1;
const DONE: u32 = 2;

/// The primary and core 1 share this: the primary writes `job` and publishes it (JOB, Release)
/// before CPU_ON; core 1 reads it after an Acquire load of JOB, writes `report` and publishes
/// it (DONE, Release); the primary reads it after an Acquire load of DONE. Both cores run with
/// the MMU on and the same inner-shareable write-back mapping, so the atomics order them.
struct Mailbox {
    state: AtomicU32,
    job: UnsafeCell<Option<CoreJob>>,
    report: UnsafeCell<Option<CoreReport>>,
}

// SAFETY: `job` and `report` are only accessed in the hand-over order `state` enforces (see the
// type's doc): each has one writer, which finishes before the Release store that lets the
// reader in.
unsafe impl Sync for Mailbox {}

static MAILBOX: Mailbox = Mailbox {
    state: AtomicU32::new(IDLE),
    job: UnsafeCell::new(None),
    report: UnsafeCell::new(None),
};

const CORE1_STACK_SIZE: usize = 16 * 4096;

#[repr(C, align(4096))]
struct Stack([u8; CORE1_STACK_SIZE]);

/// Core 1's stack; only core 1 touches it, from CPU_ON to CPU_OFF.
static mut CORE1_STACK: Stack = Stack([0; CORE1_STACK_SIZE]);

/// PSCI CPU_ON of core 1 at [`core1_entry`] on its own stack; the PSCI status.
fn cpu_on_core1() -> i64 {
    let stack_top = (&raw mut CORE1_STACK) as u64 + CORE1_STACK_SIZE as u64;
    psci(
        PSCI_CPU_ON,
        CORE1_MPIDR,
        core1_entry as *const () as u64,
        stack_top,
    )
}

fn core1_off() -> bool {
    psci(PSCI_AFFINITY_INFO, CORE1_MPIDR, 0, 0) == AFFINITY_OFF
}

/// Core 1's entry (PSCI CPU_ON, at EL2 under TF-A or EL1, MMU off, x0 = context id = its stack
/// top): to EL1, the same initial page tables as the primary, FP/SIMD on, stack, Rust.
#[unsafe(naked)]
unsafe extern "C" fn core1_entry() -> ! {
    naked_asm!(
        "bl {drop}",
        "bl enable_mmu",
        "mrs x9, cpacr_el1",
        "orr x9, x9, #(0x3 << 20)",
        "msr cpacr_el1, x9",
        "isb",
        "mov sp, x0",
        "b {main}",
        drop = sym el2_to_el1,
        main = sym core1_main,
    )
}

/// Core 1 as a second writer of one page (`writer_*`): the primary publishes a value and bumps
/// `asked` (Release); core 1 stores the value to `pa`, then sets `done` = `asked` (Release).
/// `asked` = [`WRITER_STOP`] sends core 1 to CPU_OFF.
struct Writer {
    running: AtomicU32,
    pa: AtomicU64,
    value: AtomicU64,
    asked: AtomicU64,
    done: AtomicU64,
}

const WRITER_STOP: u64 = u64::MAX;

static WRITER: Writer = Writer {
    running: AtomicU32::new(0),
    pa: AtomicU64::new(0),
    value: AtomicU64::new(0),
    asked: AtomicU64::new(0),
    done: AtomicU64::new(0),
};

fn writer_loop() {
    let pa = WRITER.pa.load(Ordering::Acquire);
    let mut seen = WRITER.done.load(Ordering::Acquire);
    loop {
        let asked = WRITER.asked.load(Ordering::Acquire);
        if asked == WRITER_STOP {
            return;
        }
        if asked == seen {
            core::hint::spin_loop();
            continue;
        }
        let v = WRITER.value.load(Ordering::Acquire);
        // SAFETY: `pa` is an 8-byte aligned address of the share window (checked by the
        // caller of `writer_start`), identity-mapped read-write for the client; the primary
        // does not hold a Rust reference to it. If the page was lent away the partition
        // manager drops the store (that is what the check looks for).
        unsafe { core::ptr::write_volatile(pa as *mut u64, v) };
        seen = asked;
        WRITER.done.store(asked, Ordering::Release);
    }
}

/// Starts core 1 as the writer of `pa` (8-byte aligned, in the share window).
pub fn writer_start(pa: u64) -> Result<(), CpuOnError> {
    // Core 1 must be off: no pings job, no writer.
    if !core1_off() || WRITER.running.swap(1, Ordering::AcqRel) != 0 {
        return Err(CpuOnError::Psci(-4));
    }
    WRITER.pa.store(pa, Ordering::Release);
    WRITER.asked.store(0, Ordering::Release);
    WRITER.done.store(0, Ordering::Release);
    let ret = cpu_on_core1();
    if ret != 0 {
        WRITER.running.store(0, Ordering::Release);
        return Err(CpuOnError::Psci(ret));
    }
    Ok(())
}

/// Has the writer store `value`; waits (5 s) for it.
pub fn writer_store(value: u64) -> bool {
    if WRITER.running.load(Ordering::Acquire) == 0 {
        return false;
    }
    let n = WRITER.asked.load(Ordering::Acquire) + 1;
    WRITER.value.store(value, Ordering::Release);
    WRITER.asked.store(n, Ordering::Release);
    wait(5, || WRITER.done.load(Ordering::Acquire) == n)
}

/// Stops the writer; waits (5 s) for core 1 to be off.
pub fn writer_stop() -> bool {
    if WRITER.running.load(Ordering::Acquire) == 0 {
        return false;
    }
    WRITER.asked.store(WRITER_STOP, Ordering::Release);
    let off = wait(5, core1_off);
    WRITER.running.store(0, Ordering::Release);
    off
}

/// Core 1 as a prober (`prober_*`): `cores::probe_round` until `stop`, outcomes counted.
struct Prober {
    running: AtomicU32,
    stop: AtomicU32,
    ids: AtomicU32,
    answered: AtomicU32,
    busy: AtomicU32,
    other: AtomicU32,
    id_failed: AtomicU32,
}

static PROBER: Prober = Prober {
    running: AtomicU32::new(0),
    stop: AtomicU32::new(0),
    ids: AtomicU32::new(0),
    answered: AtomicU32::new(0),
    busy: AtomicU32::new(0),
    other: AtomicU32::new(0),
    id_failed: AtomicU32::new(0),
};

fn prober_loop() {
    let ids = PROBER.ids.load(Ordering::Acquire);
    let (own, sp) = ((ids >> 16) as u16, ids as u16);
    let mut ep = Endpoint::new(Smc);
    let mut i = 0u64;
    while PROBER.stop.load(Ordering::Acquire) == 0 {
        let slot = match cores::probe_round(&mut ep, own, sp, i) {
            cores::Probe::Answered => &PROBER.answered,
            cores::Probe::Busy => &PROBER.busy,
            cores::Probe::IdGetFailed => &PROBER.id_failed,
            cores::Probe::Other => &PROBER.other,
        };
        slot.fetch_add(1, Ordering::AcqRel);
        i += 1;
    }
}

/// Starts core 1 probing `sp` from `own`.
pub fn prober_start(own: u16, sp: u16) -> Result<(), CpuOnError> {
    if !core1_off() || PROBER.running.swap(1, Ordering::AcqRel) != 0 {
        return Err(CpuOnError::Psci(-4));
    }
    PROBER
        .ids
        .store(u32::from(own) << 16 | u32::from(sp), Ordering::Release);
    for c in [
        &PROBER.stop,
        &PROBER.answered,
        &PROBER.busy,
        &PROBER.other,
        &PROBER.id_failed,
    ] {
        c.store(0, Ordering::Release);
    }
    let ret = cpu_on_core1();
    if ret != 0 {
        PROBER.running.store(0, Ordering::Release);
        return Err(CpuOnError::Psci(ret));
    }
    Ok(())
}

pub fn prober_counts() -> cores::ProbeCounts {
    cores::ProbeCounts {
        answered: PROBER.answered.load(Ordering::Acquire),
        busy: PROBER.busy.load(Ordering::Acquire),
        other: PROBER.other.load(Ordering::Acquire),
        id_failed: PROBER.id_failed.load(Ordering::Acquire),
    }
}

/// Stops the prober; waits (5 s) for core 1 to be off.
pub fn prober_stop() -> (cores::ProbeCounts, bool) {
    if PROBER.running.load(Ordering::Acquire) == 0 {
        return (cores::ProbeCounts::default(), false);
    }
    PROBER.stop.store(1, Ordering::Release);
    let off = wait(5, core1_off);
    PROBER.running.store(0, Ordering::Release);
    (prober_counts(), off)
}

extern "C" fn core1_main() -> ! {
    aarch64_rt::set_exception_vector();
    if WRITER.running.load(Ordering::Acquire) != 0 {
        writer_loop();
    } else if PROBER.running.load(Ordering::Acquire) != 0 {
        prober_loop();
    } else if MAILBOX.state.load(Ordering::Acquire) == JOB {
        // SAFETY: JOB was published with Release after the primary wrote `job`; the primary
        // does not touch it again.
        let job = unsafe { *MAILBOX.job.get() };
        if let Some(job) = job {
            let mut report = cores::run_job(&mut Endpoint::new(Smc), &job);
            let mpidr: u64;
            // SAFETY: reading MPIDR_EL1 has no side effect.
            unsafe {
                core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack))
            };
            report.mpidr = Some(mpidr);
            // SAFETY: the primary reads `report` only after seeing DONE, stored below.
            unsafe { *MAILBOX.report.get() = Some(report) };
        }
        MAILBOX.state.store(DONE, Ordering::Release);
    }
    psci(PSCI_CPU_OFF, 0, 0, 0);
    loop {
        // SAFETY: WFI only waits (CPU_OFF returned: nothing left to do on this core).
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// Whether PSCI knows core 1 (AFFINITY_INFO does not answer INVALID_PARAMETERS).
pub fn second_core_present() -> bool {
    psci(PSCI_AFFINITY_INFO, CORE1_MPIDR, 0, 0) != i64::from(smccc::psci::error::INVALID_PARAMETERS)
}

/// Starts core 1 on `job` and waits for its report (30 s) and for it to be off (5 s).
pub fn run_on_core1(job: &CoreJob) -> Result<CoreRun, CpuOnError> {
    if MAILBOX.state.load(Ordering::Acquire) != IDLE {
        // Only one run per boot: a late core 1 may still be writing the mailbox.
        return Err(CpuOnError::Psci(-4));
    }
    // SAFETY: IDLE: core 1 is not running (it only starts below), so nothing else accesses the
    // mailbox.
    unsafe { *MAILBOX.job.get() = Some(*job) };
    MAILBOX.state.store(JOB, Ordering::Release);
    let ret = cpu_on_core1();
    if ret != 0 {
        MAILBOX.state.store(IDLE, Ordering::Release);
        return Err(CpuOnError::Psci(ret));
    }
    let done = wait(30, || MAILBOX.state.load(Ordering::Acquire) == DONE);
    let report = if done {
        // SAFETY: DONE was stored with Release after core 1's last write of `report`.
        unsafe { (*MAILBOX.report.get()).take() }
    } else {
        None
    };
    let mut state = 0;
    let off = wait(5, || {
        state = psci(PSCI_AFFINITY_INFO, CORE1_MPIDR, 0, 0);
        state == AFFINITY_OFF
    });
    Ok(CoreRun {
        report,
        off: if off { Ok(()) } else { Err(state) },
    })
}
