//! The EL3 monitor: brings up S-EL2 (the SPMC), then the normal world once the SPMC reports
//! ready, and switches worlds on SMC (the SPMD role: FF-A calls from the normal world go to the
//! SPMC, the SPMC's SMCs go back to the normal world); PSCI for the normal world's CPUs.
//!
//! Every CPU runs the same world-switch loop on its own pair of contexts. CPU 0 boots; the
//! others wait in WFI (`asm.rs`) until CPU 0 has set up memory, then park until a CPU_ON
//! names them. A CPU's first CPU_ON starts its SPMC context (per-CPU S-EL2 set-up, then
//! FFA_MSG_WAIT back here) before its normal-world entry; later ones reuse it.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use testbed_layout::{control, cpus, flash, ns_ram, virt};

use super::asm::{self, Sys};
use super::{Ctx, Global, MACHINE, exit, gic, reg};
use crate::firewall::enforce::Spaces;
use crate::log;
use crate::nwfault::{self, Outcome, Syndrome};
use crate::psci::{self, Psci};
use crate::spmc::{SMCCC_NOT_SUPPORTED, is_ffa_fid};
use crate::stage2::{self, Attrs, Stage2, Table};

const SECURE: usize = 0;
const NS: usize = 1;

/// Each CPU's two world contexts; slot `i` belongs to CPU `i`.
static CTX: Global<[[Ctx; 2]; cpus::MAX]> = Global::new([[Ctx::ZERO; 2]; cpus::MAX]);
/// CPU `i`'s SPMC context has finished its per-CPU set-up (its first MSG_WAIT came back).
static SPMC_READY: [AtomicBool; cpus::MAX] = [const { AtomicBool::new(false) }; cpus::MAX];
/// CNTPCT_EL0 at reset, for the SPMC's timing line (written by CPU 0 before anyone reads it).
pub static RESET_COUNTER: Global<u64> = Global::new(0);
/// The secondaries' release flag (`asm::RELEASE_MAGIC` once CPU 0 has set up memory).
#[unsafe(no_mangle)]
static SECONDARIES_RELEASED: AtomicU32 = AtomicU32::new(0);
/// The normal world's CPUs: CPU_ON entry points must lie in its own RAM (the client's area up to
/// the testbed's reserved NS region).
pub static PSCI: Psci = Psci::new((virt::NS_RAM_BASE, ns_ram::TESTBED_NS_BASE));

// SCR_EL3 bits.
const SCR_NS: u64 = 1 << 0;
const SCR_RES1: u64 = (1 << 4) | (1 << 5);
const SCR_HCE: u64 = 1 << 8;
const SCR_RW: u64 = 1 << 10;
const SCR_APK: u64 = 1 << 16;
const SCR_API: u64 = 1 << 17;
const SCR_EEL2: u64 = 1 << 18;
/// Both worlds: AArch64 below EL3, HVC enabled, SMC enabled (SMD = 0), S-EL2 enabled, pointer
/// authentication not trapped; IRQ/FIQ/EA stay at their own ELs (all masked anyway).
const SCR_COMMON: u64 = SCR_RES1 | SCR_HCE | SCR_RW | SCR_APK | SCR_API | SCR_EEL2;

/// SPSR for ELxh with D, A, I, F masked.
const SPSR_EL2H: u64 = 0x3c9;
const SPSR_EL1H: u64 = 0x3c5;
/// SCTLR_ELx RES1 bits (MMU and caches off).
const SCTLR_EL2_RES1: u64 = 0x30c5_0830;
const SCTLR_EL1_RES1: u64 = 0x30d0_0800;
/// CPTR_EL2 (E2H = 0) RES1 bits, TZ (SVE) and TSM (SME) set, TFP clear.
const CPTR_EL2_DEFAULT: u64 = 0x33ff;
/// HCR_EL2.RW: EL1 is AArch64. APK/API: pointer authentication not trapped. TPCP: data-cache
/// maintenance by VA to the PoC traps to NS-EL2 (the stub, then EL3), so that one on a page the
/// NW lost is reported (QEMU runs them as untranslated no-ops).
const HCR_NS_EL1: u64 = (1 << 31) | (1 << 40) | (1 << 41) | (1 << 23);

/// How a CPU's normal world begins once its SPMC context is ready.
#[derive(Clone, Copy)]
enum NwStart {
    /// CPU 0: the client image from flash, x0 = its boot configuration.
    Boot,
    /// A CPU_ON: `entry` with x0 = the caller's context id.
    CpuOn { entry: u64, context: u64 },
}

#[unsafe(no_mangle)]
extern "C" fn el3_main(reset_counter: u64) -> ! {
    // SAFETY: CPU 0 before any other CPU runs Rust code: the only reference.
    unsafe { *RESET_COUNTER.get() = reset_counter };
    super::uart_init();
    super::heap_init();
    let count = gic::cpu_count();
    gic::init(count);
    PSCI.set_count(count);
    log!(
        "testbed: EL3 monitor up (MIDR {:#x}, CNTFRQ {} Hz, counter at reset {}, {count} CPUs, \
         NPU CPU {:?})",
        reg::midr(),
        reg::cntfrq(),
        reset_counter,
        PSCI.npu_cpu()
    );
    SECONDARIES_RELEASED.store(asm::RELEASE_MAGIC, Ordering::Release);
    gic::wake_all_others();
    // SAFETY: CPU 0's own slot.
    let ctx = unsafe { &mut CTX.get()[0] };
    secure_entry(&mut ctx[SECURE]);
    world_loop(0, ctx, NwStart::Boot);
    log!("testbed: CPU 0 left the normal world");
    exit(control::EXIT_TESTBED_ERROR)
}

/// A secondary CPU after its release (`asm.rs`): parks until CPU_ON, runs the normal world
/// until CPU_OFF, parks again. The NPU's CPU stays here for good.
#[unsafe(no_mangle)]
extern "C" fn el3_secondary_main(cpu: usize) -> ! {
    gic::ack();
    loop {
        if PSCI.npu_cpu() == Some(cpu) {
            super::npu::run(cpu);
        }
        let Some((entry, context)) = PSCI.take_start(cpu) else {
            gic::wait();
            continue;
        };
        // SAFETY: CPU `cpu`'s own slot (cpu < cpus::MAX: asm.rs parks the others).
        let ctx = unsafe { &mut CTX.get()[cpu] };
        if !SPMC_READY[cpu].load(Ordering::Acquire) {
            secure_entry(&mut ctx[SECURE]);
        }
        world_loop(cpu, ctx, NwStart::CpuOn { entry, context });
        PSCI.parked(cpu);
    }
}

/// A secure context that enters the SPMC at `spmc_start` (S-EL2, MMU off).
fn secure_entry(s: &mut Ctx) {
    *s = Ctx::ZERO;
    s.elr = asm::spmc_start as *const () as u64;
    s.spsr = SPSR_EL2H;
    s.scr = SCR_COMMON;
    s.set(Sys::sctlr_el2, SCTLR_EL2_RES1);
    s.set(Sys::sctlr_el1, SCTLR_EL1_RES1);
    s.set(Sys::cptr_el2, CPTR_EL2_DEFAULT);
    // SAFETY: taking the address of a linker-placed symbol; it is not read.
    s.set(Sys::vbar_el2, unsafe { &asm::el2_vectors } as *const u8
        as u64);
    s.set(Sys::vpidr_el2, reg::midr());
    s.set(Sys::vmpidr_el2, reg::mpidr());
}

/// Runs CPU `cpu`'s two worlds until its normal world calls CPU_OFF.
fn world_loop(cpu: usize, ctx: &mut [Ctx; 2], start: NwStart) {
    let mut cur = if SPMC_READY[cpu].load(Ordering::Acquire) {
        nw_entry(&mut ctx[NS], start);
        NS
    } else {
        SECURE
    };
    loop {
        // SAFETY: `ctx[cur]` is a complete context for the world it describes: set up above or
        // in `nw_entry`, or saved by the previous exit.
        unsafe { asm::el3_run(&mut ctx[cur]) };
        let esr = reg::esr_el3();
        let c = &mut ctx[cur];
        if c.exit_kind != 0 || esr >> 26 != 0x17 {
            log!(
                "testbed: unexpected exception from the {} world at EL3 on CPU {cpu}: kind {} \
                 ESR={esr:#x} ELR={:#x} FAR={:#x}",
                if cur == NS { "normal" } else { "secure" },
                c.exit_kind,
                c.elr,
                reg::far_el3()
            );
            exit(control::EXIT_TESTBED_ERROR);
        }
        // SMCCC: the function ID is w0.
        let fid = (c.x[0] & 0xffff_ffff) as u32;
        if cur == NS {
            match fid {
                f if psci::is_psci(f) => {
                    let x = [c.x[0], c.x[1], c.x[2], c.x[3]];
                    match PSCI.call(cpu, x) {
                        psci::Outcome::Return(v) => c.x[0] = v as u64,
                        psci::Outcome::Wake(t) => {
                            gic::wake(t);
                            c.x[0] = 0;
                        }
                        psci::Outcome::CpuOff => return,
                        psci::Outcome::SystemOff => {
                            log!("testbed: PSCI SYSTEM_OFF from the normal world");
                            exit(control::EXIT_PASS)
                        }
                        psci::Outcome::SystemReset => {
                            log!("testbed: PSCI SYSTEM_RESET from the normal world (powering off)");
                            exit(control::EXIT_SYSTEM_RESET)
                        }
                    }
                }
                control::TESTBED_EXIT => {
                    log!("testbed: normal world exits with status {}", c.x[1]);
                    exit(c.x[1])
                }
                f if is_ffa_fid(f) => {
                    let args = c.regs18();
                    ctx[SECURE].x[..18].copy_from_slice(&args);
                    cur = SECURE;
                }
                control::TESTBED_BLOCKED_ACCESSES => {
                    let (n, addr, info) = MACHINE.lock().blocked;
                    c.x[..4].copy_from_slice(&[0, n, addr, info]);
                }
                f if f & !0xf == control::NS_EL2_TRAP => nw_stage2_fault(c),
                _ => c.x[0] = SMCCC_NOT_SUPPORTED,
            }
        } else if fid == control::TESTBED_NS_TLBI {
            super::ns_tlbi_all(ctx[NS].scr | SCR_NS);
            ctx[SECURE].x[0] = 0;
        } else if !SPMC_READY[cpu].load(Ordering::Acquire) {
            // This CPU's SPMC context is set up (FFA_MSG_WAIT to the SPMD).
            SPMC_READY[cpu].store(true, Ordering::Release);
            nw_entry(&mut ctx[NS], start);
            cur = NS;
        } else {
            let out = c.regs18();
            ctx[NS].x[..18].copy_from_slice(&out);
            cur = NS;
        }
    }
}

/// Copies a flash slot to `dst`: its payload, or with `with_header` the whole block (header then
/// payload). Returns the payload length.
fn load_slot(offset: u64, max: u64, dst: u64, with_header: bool, what: &str) -> u64 {
    let hdr = super::flash(offset, flash::SLOT_HEADER_SIZE);
    let Some(h) = flash::SlotHeader::decode(hdr, max) else {
        log!("testbed: no valid {what} slot in flash at {offset:#x}");
        exit(control::EXIT_TESTBED_ERROR)
    };
    let skip = if with_header {
        0
    } else {
        flash::SLOT_HEADER_SIZE
    };
    let block = super::flash(
        offset + skip,
        flash::SLOT_HEADER_SIZE + u64::from(h.len) - skip,
    );
    // SAFETY: `dst` is NS DRAM reserved for this block by testbed-layout (client image area or
    // boot-config block), and `decode` checked the block fits in `max`; nothing references it.
    unsafe { super::write_phys(dst, block) };
    u64::from(h.len)
}

/// A stage-2 fault of the normal world, handed over by the NS-EL2 stub (x0 in TPIDR_EL2, the
/// syndrome in the NS-EL2 registers saved in `c.sys`): report, emulate, resume at NS-EL1.
fn nw_stage2_fault(c: &mut Ctx) {
    c.x[0] = c.sys[Sys::tpidr_el2 as usize];
    let s = Syndrome {
        esr: c.sys[Sys::esr_el2 as usize],
        far: c.sys[Sys::far_el2 as usize],
        hpfar: c.sys[Sys::hpfar_el2 as usize],
        elr: c.sys[Sys::elr_el2 as usize],
    };
    let mut x = c.x;
    // The emulated NPU's registers: the normal world's while the TZPC says so.
    if let Ok(a) = crate::mmio::decode(s.esr, s.hpfar, s.far)
        && super::npu::covers(a.ipa)
    {
        if let Some(b) = super::npu::nw_access(&a, &mut x) {
            MACHINE.lock().record_blocked(&b);
        }
        c.x = x;
        c.elr = s.elr + 4;
        c.spsr = c.sys[Sys::spsr_el2 as usize];
        return;
    }
    let mut m = MACHINE.lock();
    let super::Machine {
        nw_s2: nw,
        firewall: fw,
        ..
    } = &mut *m;
    if let Some(rt) = nwfault::dc_by_va(s.esr) {
        let va = x.get(usize::from(rt)).copied().unwrap_or(0);
        let ipa = nw_va_to_ipa(va, c.scr);
        let (blocked, pc) = nwfault::handle_dc(&s, ipa, |a| {
            let gone = nw.as_ref().is_some_and(|t| t.lookup(a).is_none());
            gone.then(|| match fw.as_mut() {
                Some(f) => f.classify_nw(nw.as_ref(), a, control::KIND_CACHE_MAINT),
                None => nwfault::owner_of_tag(a, nw.as_ref().and_then(|t| t.revoked_tag(a))),
            })
        });
        if let Some(b) = blocked {
            m.record_blocked(&b);
        }
        c.elr = pc;
        c.spsr = c.sys[Sys::spsr_el2 as usize];
        return;
    }
    let out = nwfault::handle(&s, &mut x, |a, kind| match fw.as_mut() {
        Some(f) => f.classify_nw(nw.as_ref(), a, kind),
        None => nwfault::owner_of_tag(a, nw.as_ref().and_then(|t| t.revoked_tag(a))),
    });
    match out {
        Outcome::Resume { blocked, pc } => {
            m.record_blocked(&blocked);
            c.x = x;
            c.elr = pc;
            // Back to NS-EL1 as it was when it faulted.
            c.spsr = c.sys[Sys::spsr_el2 as usize];
        }
        Outcome::Unexpected { ec } => {
            log!(
                "testbed: unexpected exception from the normal world at NS-EL2: EC={ec:#x} \
                 ESR={:#x} ELR={:#x} FAR={:#x}",
                s.esr,
                s.elr,
                s.far
            );
            exit(control::EXIT_TESTBED_ERROR)
        }
    }
}

/// The IPA the normal world's stage 1 maps `va` to (AT S1E1R in the NS EL1&0 regime, its
/// registers still live: EL3 has not switched worlds yet); `None` on a stage-1 fault. PAR_EL1
/// is clobbered; the context switch restores the NW's from its saved context.
fn nw_va_to_ipa(va: u64, ns_scr: u64) -> Option<u64> {
    let par: u64;
    // SAFETY: address translation only; SCR_EL3 is put back before anything else runs (and
    // rewritten from the context by el3_run anyway).
    unsafe {
        core::arch::asm!(
            "mrs {old}, scr_el3", "msr scr_el3, {ns}", "isb",
            "at s1e1r, {va}", "isb", "mrs {par}, par_el1",
            "msr scr_el3, {old}", "isb",
            old = out(reg) _, ns = in(reg) ns_scr, va = in(reg) va, par = out(reg) par,
            options(nostack)
        );
    }
    (par & 1 == 0).then_some(par & 0x0000_ffff_ffff_f000 | va & 0xfff)
}

/// Builds the normal world's stage-2 in the reserved NS region: devices (first GiB) and NS DRAM
/// identity-mapped with blocks, minus the testbed's reserved region; and copies the NS-EL2
/// vector stub there. Stores it in [`MACHINE`] (the SPMC has set up the firewall model there).
fn build_nw_stage2(m: &mut super::Machine) {
    let count = ns_ram::NW_S2_TABLE_COUNT as usize;
    // SAFETY: the table pool lies in the reserved NS region (testbed-layout), which no Rust
    // reference covers and which the normal world's stage-2 never maps; built once, before
    // the normal world runs.
    let pool: &'static mut [Table] =
        unsafe { core::slice::from_raw_parts_mut(ns_ram::NW_S2_TABLES as *mut Table, count) };
    let ns_end = virt::NS_RAM_BASE + virt::NS_RAM_SIZE;
    let built = Stage2::new(pool, ns_ram::NW_S2_TABLES).and_then(|mut s2| {
        // Devices, but the emulated ones (TZC-400, NPU, SMMU, TZPC): every access traps, so
        // the NPU's can be emulated and the secure-only ones blocked.
        let (lo, hi) = virt::EMULATED_SPAN;
        s2.map_identity(0, lo, Attrs::DEVICE_RW)?;
        s2.map_identity(hi, virt::NS_RAM_BASE - hi, Attrs::DEVICE_RW)?;
        s2.map_identity(
            virt::NS_RAM_BASE,
            ns_ram::TESTBED_NS_BASE - virt::NS_RAM_BASE,
            Attrs::RWX,
        )?;
        s2.map_identity(
            ns_ram::BOOT_CONFIG,
            ns_end - ns_ram::BOOT_CONFIG,
            Attrs::RWX,
        )?;
        Ok(s2)
    });
    let mut s2 = match built {
        Ok(s2) => s2,
        Err(e) => {
            log!("testbed: cannot build the normal world's stage-2: {e:?}");
            exit(control::EXIT_TESTBED_ERROR)
        }
    };
    // What the firewall denies the NW's CPU (the carve-out, anything the SP secured during
    // its init) goes too.
    if let Some(fw) = m.firewall.as_mut() {
        let spaces = &mut Spaces {
            nw: Some(&mut s2),
            sp_ns: None,
            sp_sec: None,
        };
        if let Err(e) = fw.apply_all(spaces) {
            log!("testbed: cannot apply the firewall to the normal world's stage-2: {e:?}");
            exit(control::EXIT_TESTBED_ERROR)
        }
    }
    let root = s2.root_pa();
    log!(
        "testbed: NW stage-2 at {root:#x} ({} tables), reserved NS {:#x}..{:#x}",
        s2.tables_used(),
        ns_ram::TESTBED_NS_BASE,
        ns_ram::TESTBED_NS_BASE + ns_ram::TESTBED_NS_SIZE
    );
    m.nw_s2 = Some(s2);
    // SAFETY: the stub is a linker-placed 2 KiB block in flash; the destination is the
    // reserved NS page for it (testbed-layout), referenced by nothing else.
    unsafe {
        let start = &asm::ns_el2_stub_start as *const u8 as u64;
        let end = &asm::ns_el2_stub_end as *const u8 as u64;
        let stub = super::flash(start, end - start);
        super::write_phys(ns_ram::NS_EL2_VECTORS, stub);
    }
}

/// Sets `ns` up to enter the normal world at NS-EL1 as `start` says, over the normal world's
/// stage-2 (built on the first entry: CPU 0's boot).
fn nw_entry(ns: &mut Ctx, start: NwStart) {
    *ns = Ctx::ZERO;
    let (entry, x0) = match start {
        NwStart::Boot => {
            let len = load_slot(
                flash::NW_IMAGE_OFFSET,
                flash::NW_IMAGE_MAX,
                ns_ram::CLIENT_BASE,
                false,
                "normal-world image",
            );
            let cfg = load_slot(
                flash::BOOT_CONFIG_OFFSET,
                flash::BOOT_CONFIG_MAX,
                ns_ram::BOOT_CONFIG,
                true,
                "boot-config",
            );
            log!(
                "testbed: entering the normal world at {:#x} (NS-EL1, image {len} bytes, boot \
                 config {cfg} bytes)",
                ns_ram::CLIENT_BASE
            );
            // x0: the boot configuration block (slot header, then `key=value` lines).
            (ns_ram::CLIENT_BASE, ns_ram::BOOT_CONFIG)
        }
        NwStart::CpuOn { entry, context } => {
            log!(
                "testbed: CPU {} enters the normal world at {entry:#x} (PSCI CPU_ON)",
                super::cpu_index()
            );
            (entry, context)
        }
    };
    ns.x[0] = x0;
    ns.elr = entry;
    ns.spsr = SPSR_EL1H;
    ns.scr = SCR_COMMON | SCR_NS;
    ns.set(Sys::sctlr_el1, SCTLR_EL1_RES1);
    // Stage 2 on (HCR_EL2.VM) over the normal world's tables; NS-EL2 vectors = the stub.
    let root = {
        let mut m = MACHINE.lock();
        if m.nw_s2.is_none() {
            build_nw_stage2(&mut m);
        }
        m.nw_s2.as_ref().map_or(0, |s| s.root_pa())
    };
    ns.set(Sys::hcr_el2, HCR_NS_EL1 | 1);
    ns.set(Sys::vttbr_el2, root);
    ns.set(Sys::vtcr_el2, stage2::vtcr(false));
    ns.set(Sys::vbar_el2, ns_ram::NS_EL2_VECTORS);
    ns.set(Sys::sctlr_el2, SCTLR_EL2_RES1);
    ns.set(Sys::cptr_el2, CPTR_EL2_DEFAULT);
    // EL1 may read the physical counter and use the physical timer.
    ns.set(Sys::cnthctl_el2, 0b11);
    ns.set(Sys::vpidr_el2, reg::midr());
    ns.set(Sys::vmpidr_el2, reg::mpidr());
}
