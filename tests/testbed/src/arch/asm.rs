//! Reset entry, exception vectors and the two context switches, in assembly because they run
//! before any Rust code may touch a register (Rust uses the SIMD registers too).
//!
//! Both switches work the same way: `*_run(ctx)` saves the caller's callee-saved registers on
//! its own stack, stores `ctx` in TPIDR_ELx, restores the lower EL's state from `ctx` and ERETs;
//! the lower-EL vector saves everything back into `ctx` and returns from `*_run` to the caller.
//! So the monitor and the SPMC are plain loops around a call.

use core::arch::global_asm;

/// EL1/EL0 system registers: the SP's vCPU state that lives in the hardware while it runs, saved
/// and restored by the SPMC when the vCPU moves between CPUs (`el1_save` / `el1_restore`).
/// Calls `$next!($cb; list)`.
macro_rules! el1_regs {
    ($next:ident, $cb:ident) => {
        $next! { $cb;
            sctlr_el1, cpacr_el1, ttbr0_el1, ttbr1_el1, tcr_el1, mair_el1, amair_el1, vbar_el1,
            elr_el1, spsr_el1, esr_el1, far_el1, afsr0_el1, afsr1_el1, par_el1, contextidr_el1,
            tpidr_el1, tpidr_el0, tpidrro_el0, cntkctl_el1, sp_el0, sp_el1, csselr_el1, mdscr_el1,
            cntv_ctl_el0, cntv_cval_el0
        }
    };
}

/// EL1/EL2/EL0 system registers the monitor switches between the worlds (EL2 registers are
/// shared by Secure and Non-secure EL2 with FEAT_SEL2): the EL1 ones, then EL2's. Order =
/// layout of `Ctx::sys`.
macro_rules! sysreg_list {
    ($cb:ident) => {
        el1_regs! { with_el2, $cb }
    };
}
macro_rules! with_el2 {
    ($cb:ident; $($r:ident),*) => {
        $cb! {
            $($r,)* hcr_el2, vbar_el2, sctlr_el2, vtcr_el2, vttbr_el2,
            tcr_el2, ttbr0_el2, mair_el2, amair_el2, cptr_el2, cnthctl_el2, cntvoff_el2,
            vmpidr_el2, vpidr_el2, sp_el2, elr_el2, spsr_el2, esr_el2, far_el2, hpfar_el2,
            tpidr_el2, mdcr_el2, hstr_el2, afsr0_el2, afsr1_el2
        }
    };
}
macro_rules! el1_only {
    ($cb:ident; $($r:ident),*) => {
        $cb! { $($r),* }
    };
}

macro_rules! sys_enum {
    ($($r:ident),*) => {
        /// Index of each switched system register in `Ctx::sys`.
        #[allow(non_camel_case_types, dead_code, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy)]
        #[repr(usize)]
        pub enum Sys { $($r),* }
        pub const SYS_COUNT: usize = [$(Sys::$r),*].len();
    };
}
sysreg_list!(sys_enum);

macro_rules! el1_count {
    ($($r:ident),*) => {
        /// How many registers `el1_save` / `el1_restore` move (the first ones of `Sys`).
        pub const EL1_COUNT: usize = [$(Sys::$r),*].len();
    };
}
el1_regs!(el1_only, el1_count);

macro_rules! irp_list {
    ($($r:ident),*) => { concat!($(", ", stringify!($r)),*) };
}

// Offsets into `Ctx` (checked by the const assertions in `arch/mod.rs`).
global_asm!(
    ".set CTX_KIND, 248",
    ".set CTX_ELR, 256",
    ".set CTX_SCR, 272",
    ".set CTX_FPCR, 280",
    ".set CTX_Q, 304",
    ".set CTX_SYS, 816",
    // Saves x2-x30 into [x0]; then x0/x1 from the stack, the exit kind from x1.
    ".macro SAVE_GPRS",
    "  stp x2, x3, [x0, #16]",
    "  stp x4, x5, [x0, #32]",
    "  stp x6, x7, [x0, #48]",
    "  stp x8, x9, [x0, #64]",
    "  stp x10, x11, [x0, #80]",
    "  stp x12, x13, [x0, #96]",
    "  stp x14, x15, [x0, #112]",
    "  stp x16, x17, [x0, #128]",
    "  stp x18, x19, [x0, #144]",
    "  stp x20, x21, [x0, #160]",
    "  stp x22, x23, [x0, #176]",
    "  stp x24, x25, [x0, #192]",
    "  stp x26, x27, [x0, #208]",
    "  stp x28, x29, [x0, #224]",
    "  str x30, [x0, #240]",
    "  ldp x2, x3, [sp], #16",
    "  stp x2, x3, [x0]",
    "  str x1, [x0, #CTX_KIND]",
    ".endm",
    ".macro RESTORE_GPRS_AND_ERET",
    "  ldp x2, x3, [x0, #16]",
    "  ldp x4, x5, [x0, #32]",
    "  ldp x6, x7, [x0, #48]",
    "  ldp x8, x9, [x0, #64]",
    "  ldp x10, x11, [x0, #80]",
    "  ldp x12, x13, [x0, #96]",
    "  ldp x14, x15, [x0, #112]",
    "  ldp x16, x17, [x0, #128]",
    "  ldp x18, x19, [x0, #144]",
    "  ldp x20, x21, [x0, #160]",
    "  ldp x22, x23, [x0, #176]",
    "  ldp x24, x25, [x0, #192]",
    "  ldp x26, x27, [x0, #208]",
    "  ldp x28, x29, [x0, #224]",
    "  ldr x30, [x0, #240]",
    "  ldp x0, x1, [x0]",
    "  eret",
    ".endm",
    ".macro SAVE_FP",
    "  mrs x9, fpcr",
    "  mrs x10, fpsr",
    "  stp x9, x10, [x0, #CTX_FPCR]",
    "  add x1, x0, #CTX_Q",
    "  stp q0, q1, [x1], #32",
    "  stp q2, q3, [x1], #32",
    "  stp q4, q5, [x1], #32",
    "  stp q6, q7, [x1], #32",
    "  stp q8, q9, [x1], #32",
    "  stp q10, q11, [x1], #32",
    "  stp q12, q13, [x1], #32",
    "  stp q14, q15, [x1], #32",
    "  stp q16, q17, [x1], #32",
    "  stp q18, q19, [x1], #32",
    "  stp q20, q21, [x1], #32",
    "  stp q22, q23, [x1], #32",
    "  stp q24, q25, [x1], #32",
    "  stp q26, q27, [x1], #32",
    "  stp q28, q29, [x1], #32",
    "  stp q30, q31, [x1], #32",
    ".endm",
    ".macro RESTORE_FP",
    "  ldp x9, x10, [x0, #CTX_FPCR]",
    "  msr fpcr, x9",
    "  msr fpsr, x10",
    "  add x1, x0, #CTX_Q",
    "  ldp q0, q1, [x1], #32",
    "  ldp q2, q3, [x1], #32",
    "  ldp q4, q5, [x1], #32",
    "  ldp q6, q7, [x1], #32",
    "  ldp q8, q9, [x1], #32",
    "  ldp q10, q11, [x1], #32",
    "  ldp q12, q13, [x1], #32",
    "  ldp q14, q15, [x1], #32",
    "  ldp q16, q17, [x1], #32",
    "  ldp q18, q19, [x1], #32",
    "  ldp q20, q21, [x1], #32",
    "  ldp q22, q23, [x1], #32",
    "  ldp q24, q25, [x1], #32",
    "  ldp q26, q27, [x1], #32",
    "  ldp q28, q29, [x1], #32",
    "  ldp q30, q31, [x1], #32",
    ".endm",
    // Callee-saved registers of the caller of *_run (AAPCS64: x19-x30, d8-d15).
    ".macro PUSH_CALLEE",
    "  stp x29, x30, [sp, #-16]!",
    "  stp x27, x28, [sp, #-16]!",
    "  stp x25, x26, [sp, #-16]!",
    "  stp x23, x24, [sp, #-16]!",
    "  stp x21, x22, [sp, #-16]!",
    "  stp x19, x20, [sp, #-16]!",
    "  stp d14, d15, [sp, #-16]!",
    "  stp d12, d13, [sp, #-16]!",
    "  stp d10, d11, [sp, #-16]!",
    "  stp d8, d9, [sp, #-16]!",
    ".endm",
    ".macro POP_CALLEE_AND_RET",
    "  ldp d8, d9, [sp], #16",
    "  ldp d10, d11, [sp], #16",
    "  ldp d12, d13, [sp], #16",
    "  ldp d14, d15, [sp], #16",
    "  ldp x19, x20, [sp], #16",
    "  ldp x21, x22, [sp], #16",
    "  ldp x23, x24, [sp], #16",
    "  ldp x25, x26, [sp], #16",
    "  ldp x27, x28, [sp], #16",
    "  ldp x29, x30, [sp], #16",
    "  ret",
    ".endm",
    // One vector entry that switches back to the *_run caller with exit kind \kind.
    ".macro LOWER_ENTRY kind, common",
    "  .balign 0x80",
    "  stp x0, x1, [sp, #-16]!",
    "  mov x1, #\\kind",
    "  b \\common",
    ".endm",
    // One vector entry for an exception from the firmware's own EL: fatal.
    ".macro FATAL_ENTRY el, kind",
    "  .balign 0x80",
    "  mov x0, #\\el",
    "  mov x1, #\\kind",
    "  b fatal_\\el",
    ".endm",
);

/// Per-CPU stack sizes (EL3 monitor, S-EL2 SPMC), `cpus::MAX` of each.
pub const EL3_STACK: usize = 0x8000;
pub const EL2_STACK: usize = 0x10000;
/// What CPU 0 stores in `SECONDARIES_RELEASED` once .data and .bss are set up: the secondaries
/// wait for it (in WFI, woken by an SGI) before they touch memory of their own.
pub const RELEASE_MAGIC: u32 = 0x5ec0_0d05;

// `STACK_TOP reg, tmp, base, size`: \reg = \base + (MPIDR.Aff0 + 1) * \size.
global_asm!(
    ".macro STACK_TOP reg, tmp, base, size",
    "  mrs \\reg, mpidr_el1",
    "  and \\reg, \\reg, #0xff",
    "  add \\reg, \\reg, #1",
    "  ldr \\tmp, =\\size",
    "  mul \\reg, \\reg, \\tmp",
    "  ldr \\tmp, =\\base",
    "  add \\reg, \\reg, \\tmp",
    ".endm",
);

// Reset: EL3, MMU off, caches off. CPU 0 sets up the monitor's stack and vectors, copies .data,
// zeroes .bss, records the counter and calls `el3_main(reset_counter)`. The others enable their
// GIC CPU interface (so an SGI wakes them from WFI), wait for CPU 0's release and call
// `el3_secondary_main(cpu)`.
global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "  mrs x20, cntpct_el0",
    "  mrs x0, mpidr_el1",
    "  and x0, x0, #0xffffff",
    "  cbnz x0, secondary_reset",
    // SCTLR_EL3: RES1 bits only (MMU, caches, alignment checks off).
    "  ldr x0, =0x30c50830",
    "  msr sctlr_el3, x0",
    // CPTR_EL3 = 0: FP/SIMD not trapped; SVE (EZ=0) and SME (ESM=0) stay trapped.
    "  msr cptr_el3, xzr",
    "  adr x0, el3_vectors",
    "  msr vbar_el3, x0",
    "  isb",
    "  STACK_TOP x0, x1, __el3_stacks, {el3_stack}",
    "  mov sp, x0",
    "  ldr x0, =__data_start",
    "  ldr x1, =__data_end",
    "  ldr x2, =__data_load",
    "1: cmp x0, x1",
    "  b.hs 2f",
    "  ldr x3, [x2], #8",
    "  str x3, [x0], #8",
    "  b 1b",
    "2: ldr x0, =__bss_start",
    "  ldr x1, =__bss_end",
    "3: cmp x0, x1",
    "  b.hs 4f",
    "  str xzr, [x0], #8",
    "  b 3b",
    "4: mov x0, x20",
    "  bl el3_main",
    "9: wfi",
    "  b 9b",
    "secondary_reset:",
    "  ldr x1, =0x30c50830",
    "  msr sctlr_el3, x1",
    "  msr cptr_el3, xzr",
    "  adr x1, el3_vectors",
    "  msr vbar_el3, x1",
    // ICC_SRE_EL3: SRE, DFB, DIB, Enable; priority mask open; group 0 on (SGIs are group 0).
    "  mov x1, #0xf",
    "  msr icc_sre_el3, x1",
    "  isb",
    "  mov x1, #0xff",
    "  msr icc_pmr_el1, x1",
    "  mov x1, #1",
    "  msr icc_igrpen0_el1, x1",
    "  isb",
    "  and x19, x0, #0xff",
    "  cmp x0, #{max}",
    "  b.hs 9b",
    "1: wfi",
    "  ldr x1, =SECONDARIES_RELEASED",
    "  ldar w2, [x1]",
    "  ldr w3, ={magic}",
    "  cmp w2, w3",
    "  b.ne 1b",
    "  STACK_TOP x1, x2, __el3_stacks, {el3_stack}",
    "  mov sp, x1",
    "  mov x0, x19",
    "  bl el3_secondary_main",
    "  b 9b",
    ".ltorg",
    ".section .bss.stacks, \"aw\", @nobits",
    ".balign 16",
    ".global __el3_stacks",
    "__el3_stacks:",
    "  .space {el3_stack} * {max}",
    ".global __el2_stacks",
    "__el2_stacks:",
    "  .space {el2_stack} * {max}",
    max = const testbed_layout::cpus::MAX,
    magic = const RELEASE_MAGIC,
    el3_stack = const EL3_STACK,
    el2_stack = const EL2_STACK,
);

// EL3: vectors, world switch.
global_asm!(
    ".section .text.el3_vectors, \"ax\"",
    ".balign 0x800",
    ".global el3_vectors",
    "el3_vectors:",
    "  FATAL_ENTRY 3, 0",
    "  FATAL_ENTRY 3, 1",
    "  FATAL_ENTRY 3, 2",
    "  FATAL_ENTRY 3, 3",
    "  FATAL_ENTRY 3, 0",
    "  FATAL_ENTRY 3, 1",
    "  FATAL_ENTRY 3, 2",
    "  FATAL_ENTRY 3, 3",
    "  LOWER_ENTRY 0, el3_exit",
    "  LOWER_ENTRY 1, el3_exit",
    "  LOWER_ENTRY 2, el3_exit",
    "  LOWER_ENTRY 3, el3_exit",
    "  FATAL_ENTRY 3, 4",
    "  FATAL_ENTRY 3, 4",
    "  FATAL_ENTRY 3, 4",
    "  FATAL_ENTRY 3, 4",
    ".text",
    "fatal_3:",
    "  mrs x2, esr_el3",
    "  mrs x3, elr_el3",
    "  mrs x4, far_el3",
    "  STACK_TOP x5, x6, __el3_stacks, {el3_stack}",
    "  mov sp, x5",
    "  bl fatal_exception",
    // el3_run(ctx: *mut Ctx): enter the world in `ctx`; returns when it traps to EL3.
    ".global el3_run",
    "el3_run:",
    "  PUSH_CALLEE",
    "  msr tpidr_el3, x0",
    "  add x1, x0, #CTX_SYS",
    // Write only registers that differ: under QEMU TCG many of these writes flush the TLB.
    concat!("  .irp r", sysreg_list!(irp_list)),
    "    ldr x9, [x1], #8",
    "    mrs x10, \\r",
    "    cmp x9, x10",
    "    b.eq 1f",
    "    msr \\r, x9",
    "1:",
    "  .endr",
    "  ldp x9, x10, [x0, #CTX_ELR]",
    "  msr elr_el3, x9",
    "  msr spsr_el3, x10",
    "  ldr x9, [x0, #CTX_SCR]",
    "  msr scr_el3, x9",
    "  RESTORE_FP",
    "  isb",
    "  RESTORE_GPRS_AND_ERET",
    "el3_exit:",
    "  mrs x0, tpidr_el3",
    "  SAVE_GPRS",
    "  mrs x9, elr_el3",
    "  mrs x10, spsr_el3",
    "  stp x9, x10, [x0, #CTX_ELR]",
    "  mrs x9, scr_el3",
    "  str x9, [x0, #CTX_SCR]",
    "  SAVE_FP",
    "  add x1, x0, #CTX_SYS",
    concat!("  .irp r", sysreg_list!(irp_list)),
    "    mrs x9, \\r",
    "    str x9, [x1], #8",
    "  .endr",
    "  POP_CALLEE_AND_RET",
    ".ltorg",
    el3_stack = const EL3_STACK,
);

// S-EL2: vectors, vCPU switch (EL1 system registers stay live in hardware: one SP, and the
// monitor switches them with the secure world).
global_asm!(
    ".section .text.el2_vectors, \"ax\"",
    ".balign 0x800",
    ".global el2_vectors",
    "el2_vectors:",
    "  FATAL_ENTRY 2, 0",
    "  FATAL_ENTRY 2, 1",
    "  FATAL_ENTRY 2, 2",
    "  FATAL_ENTRY 2, 3",
    "  FATAL_ENTRY 2, 0",
    "  FATAL_ENTRY 2, 1",
    "  FATAL_ENTRY 2, 2",
    "  FATAL_ENTRY 2, 3",
    "  LOWER_ENTRY 0, el2_exit",
    "  LOWER_ENTRY 1, el2_exit",
    "  LOWER_ENTRY 2, el2_exit",
    "  LOWER_ENTRY 3, el2_exit",
    "  FATAL_ENTRY 2, 4",
    "  FATAL_ENTRY 2, 4",
    "  FATAL_ENTRY 2, 4",
    "  FATAL_ENTRY 2, 4",
    ".text",
    "fatal_2:",
    "  mrs x2, esr_el2",
    "  mrs x3, elr_el2",
    "  mrs x4, far_el2",
    "  STACK_TOP x5, x6, __el2_stacks, {el2_stack}",
    "  mov sp, x5",
    "  bl fatal_exception",
    // el2_run(ctx: *mut Ctx): run the SP's vCPU; returns when it traps to S-EL2.
    ".global el2_run",
    "el2_run:",
    "  PUSH_CALLEE",
    "  msr tpidr_el2, x0",
    "  ldp x9, x10, [x0, #CTX_ELR]",
    "  msr elr_el2, x9",
    "  msr spsr_el2, x10",
    "  RESTORE_FP",
    "  RESTORE_GPRS_AND_ERET",
    "el2_exit:",
    "  mrs x0, tpidr_el2",
    "  SAVE_GPRS",
    "  mrs x9, elr_el2",
    "  mrs x10, spsr_el2",
    "  stp x9, x10, [x0, #CTX_ELR]",
    "  SAVE_FP",
    "  POP_CALLEE_AND_RET",
    // spmc_start: first S-EL2 code; SP_EL2 and VBAR_EL2 come from the monitor's context.
    ".global spmc_start",
    "spmc_start:",
    "  STACK_TOP x1, x2, __el2_stacks, {el2_stack}",
    "  mov sp, x1",
    "  bl spmc_main",
    "  b .",
    // el1_save(buf: *mut [u64; EL1_COUNT]) / el1_restore(buf): the EL1/EL0 registers of
    // `el1_regs!`, in that order.
    ".global el1_save",
    "el1_save:",
    concat!("  .irp r", el1_regs!(el1_only, irp_list)),
    "    mrs x9, \\r",
    "    str x9, [x0], #8",
    "  .endr",
    "  ret",
    ".global el1_restore",
    "el1_restore:",
    concat!("  .irp r", el1_regs!(el1_only, irp_list)),
    "    ldr x9, [x0], #8",
    "    msr \\r, x9",
    "  .endr",
    "  isb",
    "  ret",
    ".ltorg",
    el2_stack = const EL2_STACK,
);

// The normal world's NS-EL2 vectors, copied by EL3 to `ns_ram::NS_EL2_VECTORS` (position
// independent): every entry stashes x0 in TPIDR_EL2 and SMCs NS_EL2_TRAP + its index to EL3,
// which emulates the access and ERETs to NS-EL1 itself.
global_asm!(
    ".section .text.ns_el2_stub, \"ax\"",
    ".balign 0x800",
    ".global ns_el2_stub_start",
    "ns_el2_stub_start:",
    ".irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15",
    "  .balign 0x80",
    "  msr tpidr_el2, x0",
    "  movz x0, #(0xff10 + \\i)",
    "  movk x0, #0xc200, lsl #16",
    "  smc #0",
    "  b .",
    ".endr",
    ".global ns_el2_stub_end",
    "ns_el2_stub_end:",
);
const _: () = assert!(testbed_layout::control::NS_EL2_TRAP == 0xC200_FF10);

unsafe extern "C" {
    pub static ns_el2_stub_start: u8;
    pub static ns_el2_stub_end: u8;
    /// Enters the lower EL described by `ctx` and returns once it traps to EL3.
    pub fn el3_run(ctx: *mut super::Ctx);
    /// Runs the SP vCPU in `ctx` and returns once it traps to S-EL2.
    pub fn el2_run(ctx: *mut super::Ctx);
    pub static el2_vectors: u8;
    pub static el3_vectors: u8;
    pub fn spmc_start();
    /// Stores the current EL1/EL0 registers of `el1_regs!` into `buf`.
    pub fn el1_save(buf: *mut [u64; EL1_COUNT]);
    /// Loads the EL1/EL0 registers of `el1_regs!` from `buf`.
    pub fn el1_restore(buf: *const [u64; EL1_COUNT]);
}
