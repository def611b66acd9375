//! The EL3 monitor: brings up S-EL2 (the SPMC), then the normal world once the SPMC reports
//! ready, and switches worlds on SMC (the SPMD role: FF-A calls from the normal world go to the
//! SPMC, the SPMC's SMCs go back to the normal world).

use testbed_layout::{control, flash, ns_ram};

use super::asm::{self, Sys};
use super::{Ctx, Global, exit, reg};
use crate::log;
use crate::spmc::{SMCCC_NOT_SUPPORTED, is_ffa_fid};

const SECURE: usize = 0;
const NS: usize = 1;

static CTX: Global<[Ctx; 2]> = Global::new([Ctx::ZERO; 2]);
/// CNTPCT_EL0 at reset, for the SPMC's timing line.
pub static RESET_COUNTER: Global<u64> = Global::new(0);

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
/// HCR_EL2.RW: EL1 is AArch64. APK/API: pointer authentication not trapped.
const HCR_NS_EL1: u64 = (1 << 31) | (1 << 40) | (1 << 41);

#[unsafe(no_mangle)]
extern "C" fn el3_main(reset_counter: u64) -> ! {
    // SAFETY: single-threaded firmware; these are the only references while el3_main runs and
    // the SPMC (the only other user) runs only inside el3_run below.
    let (ctx, reset) = unsafe { (CTX.get(), RESET_COUNTER.get()) };
    *reset = reset_counter;
    super::uart_init();
    log!(
        "testbed: EL3 monitor up (MIDR {:#x}, CNTFRQ {} Hz, counter at reset {})",
        reg::midr(),
        reg::cntfrq(),
        reset_counter
    );

    let s = &mut ctx[SECURE];
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

    let mut cur = SECURE;
    let mut nw_started = false;
    loop {
        // SAFETY: `ctx[cur]` is a complete context for the world it describes: set up above or
        // in `start_nw`, or saved by the previous exit.
        unsafe { asm::el3_run(&mut ctx[cur]) };
        let esr = reg::esr_el3();
        let c = &mut ctx[cur];
        if c.exit_kind != 0 || esr >> 26 != 0x17 {
            log!(
                "testbed: unexpected exception from the {} world at EL3: kind {} ESR={esr:#x} \
                 ELR={:#x} FAR={:#x}",
                if cur == NS { "normal" } else { "secure" },
                c.exit_kind,
                c.elr,
                reg::far_el3()
            );
            exit(control::EXIT_TESTBED_ERROR);
        }
        if cur == NS {
            // SMCCC: the function ID is w0.
            let fid = c.x[0] & 0xffff_ffff;
            match fid {
                f if f == u64::from(control::PSCI_SYSTEM_OFF) => {
                    log!("testbed: PSCI SYSTEM_OFF from the normal world");
                    exit(control::EXIT_PASS)
                }
                f if f == u64::from(control::TESTBED_EXIT) => {
                    log!("testbed: normal world exits with status {}", c.x[1]);
                    exit(c.x[1])
                }
                f if is_ffa_fid(f as u32) => {
                    let args = c.regs18();
                    ctx[SECURE].x[..18].copy_from_slice(&args);
                    cur = SECURE;
                }
                _ => c.x[0] = SMCCC_NOT_SUPPORTED,
            }
        } else if !nw_started {
            // The SPMC's first SMC: initialisation done (FFA_MSG_WAIT to the SPMD).
            nw_started = true;
            start_nw(&mut ctx[NS]);
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

fn start_nw(ns: &mut Ctx) {
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
        "testbed: entering the normal world at {:#x} (NS-EL1, image {len} bytes, boot config {cfg} bytes)",
        ns_ram::CLIENT_BASE
    );
    // x0: the boot configuration block (slot header, then `key=value` lines).
    ns.x[0] = ns_ram::BOOT_CONFIG;
    ns.elr = ns_ram::CLIENT_BASE;
    ns.spsr = SPSR_EL1H;
    ns.scr = SCR_COMMON | SCR_NS;
    ns.set(Sys::sctlr_el1, SCTLR_EL1_RES1);
    ns.set(Sys::hcr_el2, HCR_NS_EL1);
    ns.set(Sys::sctlr_el2, SCTLR_EL2_RES1);
    ns.set(Sys::cptr_el2, CPTR_EL2_DEFAULT);
    // EL1 may read the physical counter and use the physical timer.
    ns.set(Sys::cnthctl_el2, 0b11);
    ns.set(Sys::vpidr_el2, reg::midr());
    ns.set(Sys::vmpidr_el2, reg::mpidr());
}
