//! The normal-world test client image (aarch64-unknown-none). On the host this binary is empty;
//! the scenarios are host-tested through the library.
//!
//! Entry contract (testbed): NS-EL1, MMU off, PC = `testbed_layout::ns_ram::CLIENT_BASE` = the
//! first byte of this flat image, x0 = the boot configuration block (`flash::SlotHeader`, then
//! `key=value` lines; `scenario=NAME`). aarch64-rt's entry turns on the initial identity map
//! below, enables FP/SIMD, zeroes BSS and sets the stack before `main`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod rt;

#[cfg(not(target_os = "none"))]
fn main() {}
