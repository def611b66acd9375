//! QEMU testbed firmware: an EL3 monitor and an S-EL2 SPMC for
//! `qemu-system-aarch64 -M virt,secure=on,virtualization=on,gic-version=3 -cpu max`
//! (DESIGN.md sec. 9). Runs from secure flash at 0x0; see `arch` for the bare-metal parts.
//!
//! Memory sharing (`memshare`: FF-A SHARE/LEND/DONATE/RETRIEVE/RELINQUISH/RECLAIM; `nwfault`:
//! the normal world's blocked accesses after LEND/DONATE) is described in README.md.
//!
//! The SPMC's logic (`spmc`, `memshare`, `nwfault`, `loader`, `manifest`, `stage2`, `mmio`; FF-A encoding is the `ffa` crate's) is plain Rust and
//! tested on the host with `cargo test -p testbed`; the bare-metal entry exists only for
//! `target_os = "none"`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
// Host builds only test the logic; the firmware build leaves unused the parts kept for the
// memory-sharing issue (unmap, guest reads, all FF-A codes).
#![allow(dead_code)]

mod devices;
mod firewall;
mod loader;
mod manifest;
mod memshare;
mod mmio;
mod npudma;
mod nwfault;
mod psci;
mod spmc;
mod stage2;
mod tzpc;

#[cfg(target_os = "none")]
mod arch;

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "testbed: the firmware runs on QEMU (aarch64-unknown-none); on the host, run its tests"
    );
}
