//! Memory firewalls (TZASC) behind one trait.
//!
//! Will contain: a `Firewall` trait (program/clear a region over a page-aligned range, query
//! regions, report faults), the TZC-400 driver (FVP Base RevC @0x2a4a0000, 9 regions, 4 KiB
//! granularity; the QEMU testbed emulates the same register map) and the RK3588 FIREWALL_DDR
//! driver (16 regions, 1 MiB granularity, per-master bits), plus the extent allocator that keeps
//! each model's secure memory in as few regions as possible (DESIGN.md sec. 6).
#![no_std]
