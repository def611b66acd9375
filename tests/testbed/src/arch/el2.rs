//! The S-EL2 SPMC runtime: loads the SP package, builds the SP's stage-2, runs the SP's vCPU and
//! moves FF-A calls between the SP, the normal world (through the monitor) and `spmc::Spmc`.
//!
//! Every CPU has an SPMC context (its own stack, the same S-EL2 set-up); they share the SPMC's
//! state behind [`SPMC`]. The SP has one execution context, which runs on whichever CPU's
//! request reached it (as Hafnium migrates a UP partition's vCPU): the CPU whose request moved
//! the SP to `Running` (under the lock) owns [`VCPU`] until the SP answers; a request from
//! another CPU meanwhile gets BUSY from `Spmc`. The lock is not held while the SP runs, so the
//! other CPUs' FF-A calls (memory transactions, RX/TX, discovery) go on beside it.

use core::sync::atomic::{AtomicU64, Ordering};

use testbed_layout::{control, flash, ns_ram, secure_ram, virt};

use super::asm;
use super::{Ctx, Global, MACHINE, Machine, exit, reg};
use ffa::{FuncId, Regs};

use crate::devices::{SMMU_SID_BITS, SmmuDevice};
use crate::firewall::enforce::{self, Spaces, Stale};
use crate::firewall::{Firewall, Gated, TzcDevice};
use crate::loader::{self, LoadError, PKG_MEM};
use crate::log;
use crate::manifest::ATTR_NS;
use crate::memshare::{HwError, MemHw, Revoked};
use crate::mmio;
use crate::nwfault::Syndrome;
use crate::spmc::{self, AbortReason, GuestMem, NwAction, SpAction, SpInfo, SpState, Spmc};
use crate::stage2::{self, Attrs, Stage2, Table};
use ffa::memory::MemRange;

/// The SP's secure IPA space: its package, heap and devices, and page by page the gated
/// regions (the 128 MiB Flex-Mem window and the 64 MiB carve-out: one L3 table per 2 MiB).
const SEC_TABLES: usize = 128;
/// The SP's NS IPA space: manifest regions plus retrieved memory (one L3 table per 2 MiB
/// touched; a table stays once allocated, so repeated cycles reuse it).
const NS_TABLES: usize = 96;

/// The SP's stage-2 tables (given to its two `Stage2`s by CPU 0's init, owned by them after).
static TABLES: Global<[Table; SEC_TABLES + NS_TABLES]> =
    Global::new([const { Table::EMPTY }; SEC_TABLES + NS_TABLES]);

/// The SP's execution context: its registers, and its EL1/EL0 system registers as they were
/// when it last left `last_cpu` (the hardware holds them while it runs; see `run_sp`).
struct Vcpu {
    ctx: Ctx,
    el1: [u64; asm::EL1_COUNT],
    last_cpu: usize,
}

/// Owned by CPU 0 during init, then by the CPU whose request moved the SP to `Running`.
static VCPU: Global<Vcpu> = Global::new(Vcpu {
    ctx: Ctx::ZERO,
    el1: [0; asm::EL1_COUNT],
    last_cpu: 0,
});

/// The SPMC's state: the FF-A state machine and the SP's IPA spaces (`None` until CPU 0 has
/// loaded the SP).
struct SpmcState {
    spmc: Spmc,
    hw: PhysMem,
}

static SPMC: spin::Mutex<Option<SpmcState>> = spin::Mutex::new(None);

/// The SP's EL2 configuration, which every CPU's SPMC context loads (VSTTBR_EL2, VSTCR_EL2,
/// VTTBR_EL2, VTCR_EL2); written by CPU 0 before any other CPU can enter the secure world.
static SP_EL2: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

// HCR_EL2 for the SP: stage 2 on (VM), set/way invalidate as clean (SWIO), physical FIQ/IRQ/
// SError to EL2 (FMO/IMO/AMO), SMC trapped (TSC: the FF-A conduit), AArch64 EL1 (RW),
// pointer authentication not trapped (APK/API). HVC stays enabled (HCD = 0).
const HCR_SP: u64 =
    1 | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 19) | (1 << 31) | (1 << 40) | (1 << 41);
const SPSR_EL1H_MASKED: u64 = 0x3c5;
const VMID: u64 = 1;

/// Physical memory the SPMC touches on behalf of a caller: NS DRAM and the partitions' secure
/// RAM only (never the firmware's own RAM, flash or devices); and the stage-2s memory sharing
/// and the firewall change: the SP's two IPA spaces and the normal world's (`super::NW_S2`).
struct PhysMem {
    sp_ns: Option<Stage2<'static>>,
    sp_sec: Option<Stage2<'static>>,
}

impl PhysMem {
    /// Applies what the model changed (after the SP wrote a TZC register) to every stage-2,
    /// and invalidates the TLBs that went stale. A stage-2 out of tables stops the run: the
    /// pools are sized for the whole window, so that is a testbed error.
    fn apply_firewall(&mut self, fw: &mut Firewall, nw: &mut Option<Stage2<'static>>) {
        let ch = fw.take_changes();
        if ch.is_empty() {
            return;
        }
        let mut spaces = Spaces {
            nw: nw.as_mut(),
            sp_ns: self.sp_ns.as_mut(),
            sp_sec: self.sp_sec.as_mut(),
        };
        match fw.apply(&ch, &mut spaces) {
            Ok(stale) => invalidate(stale),
            Err(e) => {
                log!("testbed: firewall map cannot be applied: {e:?}");
                exit(control::EXIT_TESTBED_ERROR)
            }
        }
    }
}

/// Invalidates what a firewall apply made stale: the SP's stage 1+2 entries (both IPA
/// spaces: one VMID), and the NW's at its next entry (EL3).
fn invalidate(stale: Stale) {
    if stale.sp {
        // SAFETY: TLB maintenance only.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vmalls12e1is",
                "dsb ish",
                "isb",
                options(nostack)
            )
        };
    }
    if stale.nw {
        ns_tlbi();
    }
}

/// Has EL3 invalidate every CPU's NS EL1&0 TLB entries (`control::TESTBED_NS_TLBI`): the
/// normal world's stage-2 changed, and another CPU may be running it right now.
fn ns_tlbi() {
    // SAFETY: the monitor handles this call itself and returns to this context with only x0
    // changed (declared, with the rest of SMCCC's caller-saved registers as clobbered).
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") u64::from(control::TESTBED_NS_TLBI) => _,
            out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
            out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack),
        );
    }
}

fn accessible(pa: u64, len: usize) -> bool {
    let Some(end) = pa.checked_add(len as u64) else {
        return false;
    };
    let within = |b: u64, s: u64| pa >= b && end <= b + s;
    within(virt::NS_RAM_BASE, virt::NS_RAM_SIZE)
        || within(
            secure_ram::PARTITIONS_BASE,
            secure_ram::PARTITIONS_END - secure_ram::PARTITIONS_BASE,
        )
}

impl MemHw for PhysMem {
    fn sp_map(&mut self, r: &MemRange, write: bool, exec: bool) -> Result<(), HwError> {
        let s2 = self.sp_ns.as_mut().ok_or(HwError::NoTables)?;
        let attrs = Attrs {
            read: true,
            write,
            exec,
            device: false,
        };
        let mut m = MACHINE.lock();
        let fw = m.firewall.as_mut().ok_or(HwError::NoTables)?;
        // Page by page with what the firewall lets NS accesses do; undone on failure.
        fw.sp_map(s2, r, attrs)?;
        Ok(())
    }

    fn sp_unmap(&mut self, r: &MemRange) {
        if let Some(s2) = self.sp_ns.as_mut() {
            enforce::sp_unmap(s2, r);
            tlbi_sp_ns(r.address, u64::from(r.page_count));
        }
    }

    fn nw_revoke(&mut self, r: &MemRange, why: Revoked) -> Result<(), HwError> {
        {
            let mut m = MACHINE.lock();
            let Machine {
                nw_s2, firewall, ..
            } = &mut *m;
            let (Some(nw), Some(fw)) = (nw_s2.as_mut(), firewall.as_mut()) else {
                return Err(HwError::NoTables);
            };
            fw.nw_revoke(nw, r, why)?;
        }
        // Before the lender hears of the handle: no CPU may still write through an old entry.
        ns_tlbi();
        Ok(())
    }

    fn nw_restore(&mut self, r: &MemRange) {
        let mut m = MACHINE.lock();
        let Machine {
            nw_s2, firewall, ..
        } = &mut *m;
        if let (Some(nw), Some(fw)) = (nw_s2.as_mut(), firewall.as_mut()) {
            fw.nw_restore(nw, r);
            drop(m);
            ns_tlbi();
        }
    }

    fn zero(&mut self, r: &MemRange) {
        if accessible(r.address, r.len() as usize) {
            // SAFETY: NS DRAM (checked), page aligned; no Rust reference covers guest memory.
            // The range is one the SPMC holds for a transaction (lent, being reclaimed), so
            // no guest CPU can reach it meanwhile.
            unsafe { super::zero_phys(r.address, r.len()) };
        }
    }
}

/// Invalidates `pages` pages of the SP's NS IPA space from `ipa` (TLBI IPAS2E1IS with NS = 1,
/// then VMALLE1IS for the combined stage-1+2 entries, as the architecture requires).
fn tlbi_sp_ns(ipa: u64, pages: u64) {
    for i in 0..pages {
        let arg = 1 << 63 | ((ipa >> 12) + i) & 0xf_ffff_ffff;
        // SAFETY: TLB maintenance only; it cannot fault or change memory.
        unsafe { core::arch::asm!("tlbi ipas2e1is, {}", in(reg) arg, options(nostack)) };
    }
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "dsb ish",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
}

impl GuestMem for PhysMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        if !accessible(pa, buf.len()) {
            return false;
        }
        // SAFETY: checked to be guest RAM (NS DRAM or partition RAM), which no Rust reference
        // covers. A guest on another CPU may write it meanwhile (its own buffer, e.g. a TX
        // buffer it is refilling): the copy is then torn, which is the guest's own doing, and
        // the SPMC validates what it copied, never the guest memory in place.
        unsafe { super::read_phys(pa, buf) };
        true
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> bool {
        if !accessible(pa, data.len()) {
            return false;
        }
        // SAFETY: as for `read`.
        unsafe { super::write_phys(pa, data) };
        true
    }
}

/// Validates the package in flash, copies it to its load address, writes the boot info and
/// builds the SP's two stage-2 IPA spaces. Returns the SP description and the entry registers.
fn load_sp(
    tables: &'static mut [Table],
) -> Result<(SpInfo, u64, Regs, Stage2<'static>, Stage2<'static>), LoadError> {
    let hdr = super::flash(flash::SP_PKG_OFFSET, flash::SLOT_HEADER_SIZE);
    let slot = flash::SlotHeader::decode(hdr, flash::SP_PKG_MAX).ok_or(LoadError::NoSlot)?;
    let pkg = super::flash(
        flash::SP_PKG_OFFSET + flash::SLOT_HEADER_SIZE,
        u64::from(slot.len),
    );
    let p = loader::validate(pkg)?;
    let m = p.manifest;

    let (sec_pool, ns_pool) = tables.split_at_mut(SEC_TABLES);
    let pa_of = |t: &[Table]| t.as_ptr() as u64;
    let (sec_pa, ns_pa) = (pa_of(sec_pool), pa_of(ns_pool));
    let mut sec = Stage2::new(sec_pool, sec_pa).map_err(LoadError::Stage2)?;
    let mut ns = Stage2::new(ns_pool, ns_pa).map_err(LoadError::Stage2)?;
    loader::build_stage2(&m, &mut sec, &mut ns)?;
    let blob = loader::boot_info(&p)?;

    // Copy the package and clear the rest of its memory and the secure memory regions.
    // SAFETY: `validate` put [load_address, +1 MiB) and every secure memory region inside the
    // partitions' secure RAM, which nothing else uses; the package is at most 1 MiB; the
    // boot-info blob ends before pm_offset, so it overwrites only the package header, as in
    // Hafnium.
    unsafe {
        super::zero_phys(m.load_address, PKG_MEM);
        super::write_phys(m.load_address, pkg);
        for r in m.regions() {
            if !r.device && r.attributes & ATTR_NS == 0 && !loader::is_gated(r) {
                super::zero_phys(r.base, r.pages * stage2::PAGE);
            }
        }
        if let Some(b) = blob {
            super::write_phys(m.load_address, &b);
        }
    }
    let el2 = [
        sec.root_pa(),
        stage2::vtcr(false) & 0xff,
        ns.root_pa() | VMID << 48,
        stage2::vtcr(true),
    ];
    for (slot, v) in SP_EL2.iter().zip(el2) {
        slot.store(v, Ordering::Release);
    }
    load_sp_el2();
    log!(
        "testbed: SP {:#x} loaded at {:#x} (image +{:#x}, {} bytes; {} regions; stage-2 {}+{} tables)",
        p.id,
        m.load_address,
        p.header.img_offset,
        p.header.img_size,
        m.region_count,
        sec.tables_used(),
        ns.tables_used()
    );
    let info = SpInfo {
        id: p.id,
        manifest: m,
        pkg_base: m.load_address,
        pkg_size: PKG_MEM,
    };
    let (pc, regs) = loader::entry(&p);
    Ok((info, pc, regs, ns, sec))
}

/// Hafnium's paravirtualised `HF_INTERRUPT_RECONFIGURE(intid, command, value)`: an SP changes
/// an interrupt its manifest declares (Hafnium `plat_ffa_interrupt_reconfigure`).
const HF_INTERRUPT_RECONFIGURE: u64 = 0xff09;
const INT_RECONFIGURE_TARGET_PE: u64 = 0;
const INT_RECONFIGURE_SEC_STATE: u64 = 1;
const INT_RECONFIGURE_STATUS: u64 = 2;

/// Performs an `HF_INTERRUPT_RECONFIGURE`; 0 on success, -1 (as Hafnium) for an interrupt the
/// SP does not own, an unknown command or value. The SP has one vCPU: its only target PE is 0.
fn interrupt_reconfigure(declared: bool, intid: u64, command: u64, value: u64) -> u64 {
    let Ok(id) = u32::try_from(intid) else {
        return u64::MAX;
    };
    if !declared || !super::gic::is_spi(id) {
        return u64::MAX;
    }
    match (command, value) {
        (INT_RECONFIGURE_SEC_STATE, 0 | 1) => {
            super::gic::spi_set_secure(id, value == 1);
            0
        }
        (INT_RECONFIGURE_STATUS, 0 | 1) => {
            super::gic::spi_enable(id, value == 1);
            0
        }
        (INT_RECONFIGURE_TARGET_PE, 0) => 0,
        _ => u64::MAX,
    }
}

/// Loads this CPU's EL2 registers for running the SP (both stage-2 IPA spaces, traps, timer,
/// the MIDR/MPIDR it sees) and drops whatever the TLBs hold for its VMID.
fn load_sp_el2() {
    let [vsttbr, vstcr, vttbr, vtcr] = SP_EL2.each_ref().map(|v| v.load(Ordering::Acquire));
    // SAFETY: the SP does not run on this CPU while its EL2 registers change; the tables are
    // complete (CPU 0 built them before publishing SP_EL2).
    unsafe {
        reg::set_vsttbr_el2(vsttbr);
        reg::set_vstcr_el2(vstcr);
        reg::set_vttbr_el2(vttbr);
        reg::set_vtcr_el2(vtcr);
        reg::set_hcr_el2(HCR_SP);
        reg::set_cnthctl_el2(0b11);
        reg::set_cntvoff_el2(0);
        reg::set_vpidr_el2(reg::midr());
        reg::set_vmpidr_el2(1 << 31);
        core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack));
    }
}

/// Sets up EL1 for the SP's first entry (Hafnium's entry state: S-EL1, EL1h, MMU off, caches
/// off, DAIF masked).
fn prepare_vcpu(vcpu: &mut Vcpu, entry: u64, regs: &Regs) {
    // SAFETY: the SP has not run yet; these registers only affect EL1.
    unsafe {
        reg::set_sctlr_el1(0);
        reg::set_cpacr_el1(0);
        reg::set_vbar_el1(0);
    }
    vcpu.ctx = Ctx::ZERO;
    vcpu.ctx.x[..18].copy_from_slice(regs);
    vcpu.ctx.elr = entry;
    vcpu.ctx.spsr = SPSR_EL1H_MASKED;
    vcpu.last_cpu = super::cpu_index();
}

/// The outcome of running the SP until it needs someone else.
enum Ran {
    InitDone,
    ToNw(Regs),
    Aborted(Option<Regs>),
}

fn fail_reason(ec: u64) -> &'static str {
    match ec {
        0x20 => "instruction abort (stage-2 fault)",
        0x24 => "data abort (stage-2 fault)",
        0x01 => "trapped WFI/WFE",
        0x00 => "unknown/undefined exception",
        _ => "unexpected exception",
    }
}

fn report_abort(id: u16, reason: AbortReason) {
    match reason {
        AbortReason::FfaAbort(code) => {
            log!("testbed: SP {id:x} failed: FFA_ABORT (code {code:#x})")
        }
        AbortReason::FfaError(code) => {
            log!("testbed: SP {id:x} failed: FFA_ERROR({code}) from the SP")
        }
        AbortReason::Exception { esr, far, elr } => log!(
            "testbed: SP {id:x} failed: {} (ESR={esr:#x} FAR={far:#x} ELR={elr:#x})",
            fail_reason(esr >> 26)
        ),
    }
}

/// Runs the SP on this CPU until it finishes init, answers, or fails. The caller owns `vcpu`
/// (init, or its request moved the SP to `Running`); ownership ends with the SPMC call that
/// ends the run, so the SP's EL1 state is saved into `vcpu` under the same lock hold.
fn run_sp(vcpu: &mut Vcpu) -> Ran {
    let cpu = super::cpu_index();
    if vcpu.last_cpu != cpu {
        // The vCPU comes from another CPU: its EL1 state, and nothing this CPU's TLBs still
        // hold for the SP (its own TLB maintenance may have been local to the other CPU).
        // SAFETY: `el1` holds what `el1_save` stored when the SP last left a CPU; the SP does
        // not run here meanwhile; TLB maintenance only.
        unsafe {
            asm::el1_restore(&vcpu.el1);
            core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack));
        }
        vcpu.last_cpu = cpu;
    }
    run_sp_here(&mut vcpu.ctx, &mut vcpu.el1)
}

/// Saves the SP's EL1 state (the run is ending; the caller still holds the SPMC lock).
fn save_el1(el1: &mut [u64; asm::EL1_COUNT]) {
    // SAFETY: stores the current EL1 registers into `el1`, which the caller owns.
    unsafe { asm::el1_save(el1) };
}

fn run_sp_here(vcpu: &mut Ctx, el1: &mut [u64; asm::EL1_COUNT]) -> Ran {
    loop {
        // SAFETY: `vcpu` holds the SP's complete state (prepared or saved by the last exit);
        // stage 2 and HCR_EL2 are set up for it on this CPU.
        unsafe { asm::el2_run(vcpu) };
        let esr = reg::esr_el2();
        let ec = esr >> 26;
        let call = match (vcpu.exit_kind, ec) {
            (0, 0x17) => {
                // A trapped SMC returns to the SMC itself: step over it.
                vcpu.elr += 4;
                true
            }
            (0, 0x16) => true,
            _ => false,
        };
        let mut guard = SPMC.lock();
        let Some(st) = guard.as_mut() else {
            log!("testbed: SPMC state missing while the SP runs");
            exit(control::EXIT_TESTBED_ERROR)
        };
        let id = st.spmc.sp_ep.id;
        if !call && vcpu.exit_kind == 0 {
            let (hpfar, far) = (reg::hpfar_el2(), reg::far_el2());
            // The emulated NPU: the SP (a secure access) always reaches its registers.
            if let Ok(a) = mmio::decode(esr, hpfar, far)
                && super::npu::access(&a, &mut vcpu.x)
            {
                vcpu.elr += 4;
                continue;
            }
            let mut m = MACHINE.lock();
            let Machine {
                nw_s2,
                firewall,
                tzpc,
                smmu,
                ..
            } = &mut *m;
            // An access to an emulated device (mapped in neither IPA space): performed on its
            // model. After a TZC-400 write, a new map (gate reopened, region changed while
            // open) is applied to every stage-2 before the SP resumes.
            if let (Ok(a), Some(fw), Some(smmu)) = (
                mmio::decode(esr, hpfar, far),
                firewall.as_mut(),
                smmu.as_mut(),
            ) {
                let was = *tzpc;
                let done = mmio::emulate(
                    &a,
                    &mut [&mut TzcDevice(fw), tzpc, &mut SmmuDevice(smmu)],
                    &mut vcpu.x,
                );
                if done {
                    if a.write && virt::TZC400_BASE == a.ipa & !0xfff {
                        st.hw.apply_firewall(fw, nw_s2);
                    }
                    // The first switches in full, then one line in 64 (a scenario makes
                    // hundreds).
                    if *tzpc != was && (tzpc.changes <= 8 || tzpc.changes.is_multiple_of(64)) {
                        log!(
                            "testbed: TZPC change {}: NPU MMIO {}, NPU DMA {}",
                            tzpc.changes,
                            if tzpc.npu_mmio_ns() {
                                "non-secure"
                            } else {
                                "secure-only"
                            },
                            if tzpc.npu_dma_ns() {
                                "non-secure"
                            } else {
                                "secure"
                            }
                        );
                    }
                    vcpu.elr += 4;
                    continue;
                }
            }
            // A stage-2 fault the firewall explains: reported, emulated as failed, resumed.
            let s = Syndrome {
                esr,
                far,
                hpfar,
                elr: vcpu.elr,
            };
            let blocked = firewall.as_mut().and_then(|fw| {
                fw.sp_fault(st.hw.sp_ns.as_ref(), st.hw.sp_sec.as_ref(), &s, &mut vcpu.x)
            });
            if let Some((b, pc)) = blocked {
                m.record_blocked(&b);
                vcpu.elr = pc;
                continue;
            }
        }
        if !call {
            if let Ok(a) = mmio::decode(esr, reg::hpfar_el2(), reg::far_el2()) {
                log!(
                    "testbed: SP {id:x} {} {} bytes at IPA {:#x} (x{}): not mapped",
                    if a.write { "wrote" } else { "read" },
                    a.size,
                    a.ipa,
                    a.reg
                );
            }
            let reason = AbortReason::Exception {
                esr,
                far: reg::far_el2(),
                elr: vcpu.elr,
            };
            report_abort(id, reason);
            save_el1(el1);
            let reply = match st.spmc.abort(reason) {
                SpAction::Aborted { reply, .. } => reply,
                _ => None,
            };
            return Ran::Aborted(reply);
        }
        let args = vcpu.regs18();
        if args[0] & 0xffff_ffff == HF_INTERRUPT_RECONFIGURE {
            let declared = st.spmc.sp.as_ref().is_some_and(|sp| {
                sp.manifest
                    .regions()
                    .iter()
                    .any(|r| r.interrupt.is_some_and(|(id, _)| u64::from(id) == args[1]))
            });
            vcpu.x[0] = interrupt_reconfigure(declared, args[1], args[2], args[3]);
            continue;
        }
        let act = st.spmc.sp_call(&args, &mut st.hw, &mut super::Uart);
        if !matches!(act, SpAction::Resume { .. }) {
            save_el1(el1);
        }
        match act {
            SpAction::Resume { regs, ext } => {
                let n = if ext { 18 } else { 8 };
                vcpu.x[..n].copy_from_slice(&regs[..n]);
            }
            SpAction::InitDone => return Ran::InitDone,
            SpAction::ToNw(r) => return Ran::ToNw(r),
            SpAction::Aborted { reason, reply } => {
                report_abort(id, reason);
                return Ran::Aborted(reply);
            }
        }
    }
}

/// The boot configuration's `lend-enforcement` (on unless it says `off`).
fn lend_enforcement() -> bool {
    let hdr = super::flash(flash::BOOT_CONFIG_OFFSET, flash::SLOT_HEADER_SIZE);
    flash::SlotHeader::decode(hdr, flash::BOOT_CONFIG_MAX).is_none_or(|h| {
        let payload = super::flash(
            flash::BOOT_CONFIG_OFFSET + flash::SLOT_HEADER_SIZE,
            u64::from(h.len),
        );
        flash::BootConfig::lend_enforcement(payload)
    })
}

/// Hands the SP's gated regions (secure memory regions over NS DRAM) to the firewall and maps
/// what it already secures there (the carve-out).
fn gate_regions(info: &SpInfo, hw: &mut PhysMem) {
    let mut m = MACHINE.lock();
    let Some(fw) = m.firewall.as_mut() else {
        return;
    };
    for r in info
        .manifest
        .regions()
        .iter()
        .filter(|r| loader::is_gated(r))
    {
        let a = Attrs::from_manifest(r.attributes, false);
        let g = Gated {
            base: r.base,
            end: r.base + r.pages * stage2::PAGE,
            read: a.read,
            write: a.write,
            exec: a.exec,
        };
        if !fw.add_gated(g) {
            log!(
                "testbed: too many secure regions over NS DRAM; {:#x} stays unmapped",
                r.base
            );
        }
    }
    let mut spaces = Spaces {
        nw: None,
        sp_ns: hw.sp_ns.as_mut(),
        sp_sec: hw.sp_sec.as_mut(),
    };
    let applied = fw.apply_all(&mut spaces);
    drop(m);
    match applied {
        Ok(stale) => invalidate(stale),
        Err(e) => {
            log!("testbed: firewall map cannot be applied to the SP: {e:?}");
            exit(control::EXIT_TESTBED_ERROR)
        }
    }
}

/// Hands `regs` to the normal world through the monitor; returns the normal world's next
/// FF-A call.
fn smc_to_nw(regs: &Regs) -> Regs {
    let mut r = *regs;
    // SAFETY: the monitor saves and restores this world's complete state around the SMC; only
    // x0-x17 change, as declared.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
            inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
            inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
            inout("x12") r[12], inout("x13") r[13], inout("x14") r[14], inout("x15") r[15],
            inout("x16") r[16], inout("x17") r[17],
            options(nostack),
        );
    }
    r
}

#[unsafe(no_mangle)]
extern "C" fn spmc_main() -> ! {
    if super::cpu_index() != 0 {
        // A secondary CPU's SPMC context: CPU 0 has loaded the SP and published its EL2 set-up.
        load_sp_el2();
        serve()
    }
    // SAFETY: CPU 0 during init, before any other CPU can enter the secure world: the only
    // references to these globals.
    let (tables, vcpu, reset) =
        unsafe { (TABLES.get(), VCPU.get(), *super::el3::RESET_COUNTER.get()) };
    log!(
        "testbed: SPMC up at S-EL2 (FF-A v1.2), {} us after reset",
        super::counter_us(reset, reg::cntpct())
    );
    let lend = lend_enforcement();
    {
        let mut m = MACHINE.lock();
        m.firewall = Some(Firewall::new(lend));
        m.smmu = Some(smmu::model::Smmuv3Model::with_memory(
            SMMU_SID_BITS,
            super::PartitionRam::new(),
        ));
    }
    log!(
        "testbed: TZC-400 model at {:#x}: firmware regions 1-4 (secure RAM, NS DRAM, carve-out \
         {:#x}-{:#x}, NS DRAM), 5-8 free; lend enforcement {}",
        virt::TZC400_BASE,
        ns_ram::CARVEOUT_BASE,
        ns_ram::CARVEOUT_BASE + ns_ram::CARVEOUT_SIZE - 1,
        if lend { "on" } else { "off (firewall only)" }
    );
    let mut hw = PhysMem {
        sp_ns: None,
        sp_sec: None,
    };
    let spmc = match load_sp(tables) {
        Ok((info, entry, regs, ns, sec)) => {
            hw.sp_ns = Some(ns);
            hw.sp_sec = Some(sec);
            gate_regions(&info, &mut hw);
            // The SP's device interrupts as its manifest declares them (Hafnium configures
            // them at boot the same way).
            for (id, attr) in info.manifest.regions().iter().filter_map(|r| r.interrupt) {
                super::gic::spi_configure(id, attr & 1 << 8 != 0, attr & 1 << 9 != 0, attr as u8);
            }
            prepare_vcpu(vcpu, entry, &regs);
            log!(
                "testbed: entering SP {:#x} at {entry:#x} (S-EL1, x0={:#x})",
                info.id,
                regs[0]
            );
            let mut s = Spmc::new(Some(info));
            s.seed(super::entropy);
            *SPMC.lock() = Some(SpmcState { spmc: s, hw });
            match run_sp(vcpu) {
                Ran::InitDone => {
                    let t = reg::cntpct();
                    log!(
                        "testbed: SP {:x} ready (first MSG_WAIT) at {} us after reset",
                        info.id,
                        super::counter_us(reset, t)
                    );
                }
                Ran::ToNw(_) | Ran::Aborted(_) => {
                    // The SP failed during init (reported); requests get ABORTED.
                    debug_assert!(
                        SPMC.lock()
                            .as_ref()
                            .is_some_and(|s| s.spmc.sp_state == SpState::Aborted)
                    );
                }
            }
            None
        }
        Err(e) => {
            log!("testbed: SP package rejected: {e}");
            Some(SpmcState {
                spmc: Spmc::new(None),
                hw,
            })
        }
    };
    if let Some(st) = spmc {
        *SPMC.lock() = Some(st);
    }
    serve()
}

/// This CPU's SPMC loop: FFA_MSG_WAIT to the SPMD (initialisation done), then each normal-world
/// FF-A call of this CPU, answered by `Spmc` or by running the SP here.
fn serve() -> ! {
    let mut ready = [0u64; 18];
    ready[0] = u64::from(FuncId::MsgWait as u32);
    let mut req = smc_to_nw(&ready);
    loop {
        let action = {
            let mut g = SPMC.lock();
            let Some(st) = g.as_mut() else {
                log!("testbed: SPMC state missing");
                exit(control::EXIT_TESTBED_ERROR)
            };
            st.spmc.nw_call(&req, &mut st.hw)
        };
        let reply = match action {
            NwAction::Reply(r) => r,
            NwAction::RunSp(r) => {
                // SAFETY: `nw_call` moved the SP to `Running` for this CPU's request (under the
                // lock): this CPU owns the vCPU until the SP answers.
                let vcpu = unsafe { VCPU.get() };
                vcpu.ctx.x[..18].copy_from_slice(&r);
                match run_sp(vcpu) {
                    Ran::ToNw(r) => r,
                    Ran::Aborted(Some(r)) => r,
                    Ran::Aborted(None) | Ran::InitDone => {
                        log!("testbed: SPMC state machine error: SP left a request unanswered");
                        exit(control::EXIT_TESTBED_ERROR)
                    }
                }
            }
        };
        req = smc_to_nw(&reply);
    }
}

const _: () = assert!(spmc::MAILBOX_PAGES == 1);
