//! The normal-world test client image (aarch64-unknown-none). On the host this binary is empty;
//! the scenarios are host-tested through the library.
//!
//! Entry contract (testbed): NS-EL1, MMU off, PC = `testbed_layout::ns_ram::CLIENT_BASE` = the
//! first byte of this flat image, x0 = the boot configuration block (`flash::SlotHeader`, then
//! `key=value` lines; `scenario=NAME`, `spmc=testbed|hafnium|el3`, `model_base=`/`model_size=`).
//! aarch64-rt's entry turns on the initial identity map, enables FP/SIMD, zeroes BSS and sets
//! the stack before `main`.
//!
//! Entry contract (`bl33` feature, TF-A's BL33 on QEMU virt): NS-EL2 (or NS-EL1), MMU off,
//! PC = 0x60000000 = the first byte of the image, x0 = a DTB pointer or 0 (ignored); the boot
//! configuration block is at `ns_ram::BOOT_CONFIG` (QEMU's `-device loader` puts it there) and
//! must say `spmc=hafnium` or `spmc=el3`. The client drops to EL1 (`cpu.rs`) first.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod rt;

#[cfg(not(target_os = "none"))]
fn main() {}
