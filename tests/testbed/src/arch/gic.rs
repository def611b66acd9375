//! The GICv3 as the monitor uses it: one Group 0 SGI that wakes a CPU from WFI (a parked
//! secondary, a CPU_ON target, the NPU's CPU). Nothing takes it as an exception: every EL runs
//! with interrupts masked, and WFI completes on a pending interrupt regardless of PSTATE, so the
//! woken CPU acknowledges it and looks at its mailbox. QEMU's WFE does not sleep (it only
//! yields), which is why parked CPUs wait in WFI: on a two-core host, a spinning vCPU halves
//! everybody else's speed.

use core::ptr::NonNull;

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, Group, SecureIntGroup, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, UniqueMmioPointer};
use testbed_layout::{cpus, virt};

/// The wake-up SGI.
const WAKE: IntId = IntId::sgi(0);
/// GICv3 redistributor stride: RD_base and SGI_base frames, 64 KiB each.
const GICR_STRIDE: u64 = 0x2_0000;
const GICR_TYPER: u64 = 0x8;
const GICR_TYPER_LAST: u64 = 1 << 4;

/// The CPUs the machine has: its redistributors, up to the one marked Last (QEMU `virt` has
/// one per CPU), at most `cpus::MAX`.
pub fn cpu_count() -> usize {
    let mut n = 0;
    while n < cpus::MAX {
        let typer = virt::GICR_BASE + n as u64 * GICR_STRIDE + GICR_TYPER;
        // SAFETY: GICR_TYPER of redistributor `n`, which exists because the previous one was
        // not the last (or `n` = 0: there is always one); reading it has no side effect.
        let v = unsafe { core::ptr::read_volatile(typer as *const u64) };
        n += 1;
        if v & GICR_TYPER_LAST != 0 {
            break;
        }
    }
    n
}

/// Boot CPU, once: system-register access for EL3 and below, every redistributor awake with the
/// wake SGI in Group 0 and enabled, affinity routing and Group 0 on in the distributor, this
/// CPU's interface open for Group 0 (the secondaries open their own at reset).
pub fn init(count: usize) {
    GicCpuInterface::enable_system_register_el3(true);
    // SAFETY: the GIC's distributor and redistributor frames at their `virt` addresses, which
    // only this driver instance touches (it lives for this function only; afterwards the
    // monitor uses the CPU interface alone).
    let gic = unsafe {
        GicV3::new(
            UniqueMmioPointer::new(NonNull::new_unchecked(virt::GICD_BASE as *mut Gicd)),
            NonNull::new_unchecked(virt::GICR_BASE as *mut GicrSgi),
            count,
        )
    };
    let mut gic = match gic {
        Ok(g) => g,
        Err(e) => {
            crate::log!("testbed: GICv3 not usable: {e:?}");
            super::exit(testbed_layout::control::EXIT_TESTBED_ERROR)
        }
    };
    for cpu in 0..count {
        let r = gic
            .redistributor_mark_core_awake(cpu)
            .and_then(|()| gic.set_group(WAKE, Some(cpu), Group::Secure(SecureIntGroup::Group0)))
            .and_then(|()| gic.set_interrupt_priority(WAKE, Some(cpu), 0x80))
            .and_then(|()| gic.enable_interrupt(WAKE, Some(cpu), true));
        if let Err(e) = r {
            crate::log!("testbed: GICv3 redistributor {cpu}: {e:?}");
            super::exit(testbed_layout::control::EXIT_TESTBED_ERROR)
        }
    }
    let d = gic.distributor();
    d.enable_affinity_routing_secure(true);
    d.enable_affinity_routing_non_secure(true);
    d.enable_group0(true);
    gic.gicd_barrier();
    GicCpuInterface::set_priority_mask(0xff);
    GicCpuInterface::enable_group0(true);
}

/// Makes `cpu` leave WFI.
pub fn wake(cpu: usize) {
    let target = SgiTarget::List {
        affinity3: 0,
        affinity2: 0,
        affinity1: 0,
        target_list: 1 << cpu,
    };
    // WAKE is an SGI, so this cannot fail.
    let _ = GicCpuInterface::send_sgi(WAKE, target, SgiTargetGroup::Group0);
}

/// Makes every other CPU leave WFI.
pub fn wake_all_others() {
    let _ = GicCpuInterface::send_sgi(WAKE, SgiTarget::All, SgiTargetGroup::Group0);
}

/// Acknowledges and ends every pending Group 0 interrupt of this CPU (so the next WFI sleeps).
pub fn ack() {
    // Bounded: only the wake SGI is ever configured, so a few rounds cover any burst.
    for _ in 0..8 {
        match GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group0) {
            Some(id) if id.is_sgi() => GicCpuInterface::end_interrupt(id, InterruptGroup::Group0),
            _ => break,
        }
    }
}

/// Sleeps until an interrupt is pending for this CPU, then acknowledges it.
pub fn wait() {
    // SAFETY: WFI only waits; every exception is masked, so nothing is taken when it wakes.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    ack();
}

/// Distributor registers for one SPI (GICv3, Arm IHI 0069 sec. 12.9), reached directly: the
/// monitor's GicV3 instance lives only through `init`, and these single-register updates need
/// no more (read-modify-writes are serialised by [`SPI_LOCK`]).
mod gicd {
    pub const ISENABLER: u64 = 0x100;
    pub const ICENABLER: u64 = 0x180;
    pub const ISPENDR: u64 = 0x200;
    pub const ICPENDR: u64 = 0x280;
    pub const IGROUPR: u64 = 0x080;
    pub const IGRPMODR: u64 = 0xd00;
    pub const IPRIORITYR: u64 = 0x400;
    pub const ICFGR: u64 = 0xc00;
}

static SPI_LOCK: spin::Mutex<()> = spin::Mutex::new(());

fn gicd_reg(bank: u64, intid: u32, bits_per: u32) -> (*mut u32, u32) {
    let per_word = 32 / bits_per;
    let addr = virt::GICD_BASE + bank + 4 * u64::from(intid / per_word);
    (addr as *mut u32, (intid % per_word) * bits_per)
}

fn rmw(bank: u64, intid: u32, bits_per: u32, value: u32) {
    let (r, shift) = gicd_reg(bank, intid, bits_per);
    let mask = ((1u64 << bits_per) - 1) as u32;
    let _g = SPI_LOCK.lock();
    // SAFETY: a distributor register of an SPI (`intid` < 1020, checked by the callers), which
    // the monitor accesses as secure; the read-modify-write is under SPI_LOCK.
    unsafe { r.write_volatile((r.read_volatile() & !(mask << shift)) | (value & mask) << shift) };
}

fn set_bit(bank: u64, intid: u32) {
    let (r, shift) = gicd_reg(bank, intid, 1);
    // SAFETY: a write-1-to-set/clear register of an SPI; writing zeros elsewhere changes nothing.
    unsafe { r.write_volatile(1 << shift) };
}

/// Whether `intid` is an SPI.
pub fn is_spi(intid: u32) -> bool {
    (32..1020).contains(&intid)
}

/// Sets an SPI up as a manifest declares it: group (Group 1 Secure or Non-secure), level or
/// edge, priority, enabled.
pub fn spi_configure(intid: u32, secure: bool, level: bool, priority: u8) {
    if !is_spi(intid) {
        return;
    }
    spi_set_secure(intid, secure);
    rmw(gicd::ICFGR, intid, 2, if level { 0 } else { 2 });
    rmw(gicd::IPRIORITYR, intid, 8, u32::from(priority));
    spi_enable(intid, true);
}

/// Group 1 Secure (`secure`) or Group 1 Non-secure: who may see and handle it.
pub fn spi_set_secure(intid: u32, secure: bool) {
    if !is_spi(intid) {
        return;
    }
    rmw(gicd::IGROUPR, intid, 1, u32::from(!secure));
    rmw(gicd::IGRPMODR, intid, 1, u32::from(secure));
}

pub fn spi_enable(intid: u32, on: bool) {
    if is_spi(intid) {
        set_bit(if on { gicd::ISENABLER } else { gicd::ICENABLER }, intid);
    }
}

/// A level interrupt's line, as the pending bit (nobody acknowledges it: everything runs masked).
pub fn spi_set_pending(intid: u32, high: bool) {
    if is_spi(intid) {
        set_bit(if high { gicd::ISPENDR } else { gicd::ICPENDR }, intid);
    }
}
