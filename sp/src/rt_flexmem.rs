//! Flex-Mem's wiring on the target: the memory firewall the manifest names (TZC-400, or the
//! RK3588 firewall pair) and cache maintenance by VA.

use alloc::boxed::Box;
use core::ops::Range;
use core::ptr::NonNull;

use flexserve_sp::flexmem::{self, Clock, Extents, FlexMem, SecureAlias};
use flexserve_sp::manifest::FlexMemRegions;

use crate::rt::{counter_hz, counter_now};

/// DC CIVAC by VA over a range, then DSB SY.
struct DcCivac;

impl flexmem::Cache for DcCivac {
    fn clean_invalidate(&mut self, range: Range<u64>) {
        let line = dcache_line();
        let mut a = range.start & !(line - 1);
        while a < range.end {
            // SAFETY: clean+invalidate by VA writes dirty lines back and drops them; it changes
            // no data. Flex-Mem passes only ranges it has mapped (the region's current alias).
            unsafe {
                core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags))
            };
            a += line;
        }
        // SAFETY: a barrier only orders the maintenance before what follows (the firewall
        // update, the remap).
        unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
    }
}

/// The smallest data cache line (CTR_EL0.DminLine, in words).
fn dcache_line() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags));
    }
    4u64 << ((ctr >> 16) & 0xf)
}

/// A register block of a device region the manifest grants, for the `tzasc` drivers.
///
/// # Safety
///
/// `r` must be a device region of this SP's manifest, mapped as device memory by the runtime
/// map, and driven by nothing else.
pub(crate) unsafe fn device_mmio(r: flexserve_sp::manifest::Region) -> Option<tzasc::Mmio> {
    let base = NonNull::new(r.base as usize as *mut u32)?;
    // SAFETY: the caller's guarantee.
    Some(unsafe { tzasc::Mmio::new(base, r.size as usize) })
}

/// The TZC-400 of the manifest's `tzc400` device region (FVP Base, the testbed).
#[cfg(not(feature = "rk3588"))]
fn firewall(f: &FlexMemRegions) -> Option<Box<dyn Extents + Send>> {
    let r = f.tzc400?;
    // SAFETY: a device region the manifest grants, mapped as device memory by the runtime map
    // (memmap::plan maps every firewall device region); only Flex-Mem drives it.
    let regs = unsafe { device_mmio(r) }?;
    match flexmem::firewall::tzc400(regs) {
        Ok(p) => Some(Box::new(p)),
        Err(e) => {
            log::warn!("TZC-400 at {:#x}: {e:?}; Flex-Mem off", r.base);
            None
        }
    }
}

/// FIREWALL_DDR + FIREWALL_DSU of the manifest's `firewall-ddr` / `firewall-dsu` regions.
#[cfg(feature = "rk3588")]
fn firewall(f: &FlexMemRegions) -> Option<Box<dyn Extents + Send>> {
    let (ddr, dsu) = (f.firewall_ddr?, f.firewall_dsu?);
    // SAFETY: device regions the manifest grants, mapped as device memory by the runtime map;
    // only Flex-Mem drives them.
    let (ddr, dsu) = unsafe { (device_mmio(ddr)?, device_mmio(dsu)?) };
    let fw = tzasc::rk3588::Rk3588Firewall::new(ddr, dsu, tzasc::rk3588::TFA_SECURE_DDR_SLOTS);
    match flexmem::firewall::Planned::new(fw, tzasc::planner::Config::rk3588()) {
        Ok(p) => Some(Box::new(p)),
        Err(e) => {
            log::warn!("RK3588 firewall: {e:?}; Flex-Mem off");
            None
        }
    }
}

/// Flex-Mem if the manifest grants a firewall and the platform gives the SP a secure alias.
pub(crate) fn flexmem_from(f: &FlexMemRegions) -> Option<FlexMem> {
    let alias = match f.window {
        Some(w) => SecureAlias::Window(w.base..w.end()),
        // No stage-2 under the EL3 SPMC: the SP's stage-1 maps secured pages NS=0 itself.
        None if cfg!(any(feature = "qemu-el3", feature = "rk3588")) => SecureAlias::Direct,
        None => {
            if f.devices().next().is_some() {
                log::warn!("firewall but no flexmem-window under an S-EL2 SPMC: Flex-Mem off");
            }
            return None;
        }
    };
    let Some(extents) = firewall(f) else {
        log::info!("no memory firewall in the manifest: Flex-Mem off");
        return None;
    };
    log::info!(
        "Flex-Mem: {} regions free, granule {:#x}, secure alias {alias:x?}",
        extents.regions_free(),
        extents.granule()
    );
    Some(FlexMem::new(
        extents,
        Box::new(DcCivac),
        alias,
        Clock {
            now: counter_now,
            hz: counter_hz,
        },
    ))
}
