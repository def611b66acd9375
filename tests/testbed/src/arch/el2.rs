//! The S-EL2 SPMC runtime: loads the SP package, builds the SP's stage-2, runs the SP's vCPU and
//! moves FF-A calls between the SP, the normal world (through the monitor) and `spmc::Spmc`.

use testbed_layout::{control, flash, ns_ram, secure_ram, virt};

use super::asm;
use super::{Ctx, Global, exit, reg};
use ffa::{FuncId, Regs};

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

static TABLES: Global<[Table; SEC_TABLES + NS_TABLES]> =
    Global::new([const { Table::EMPTY }; SEC_TABLES + NS_TABLES]);
static VCPU: Global<Ctx> = Global::new(Ctx::ZERO);

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

/// The firewall state (set up in `spmc_main` before anything uses it).
///
/// # Safety
/// No other reference to `FIREWALL` may be live: the SPMC runs alone (one core) and EL3 takes
/// it only while the SPMC is stopped.
unsafe fn firewall() -> Option<&'static mut Firewall> {
    // SAFETY: the caller's duty.
    unsafe { super::FIREWALL.get() }.as_mut()
}

impl PhysMem {
    /// Applies what the model changed (after the SP wrote a TZC register) to every stage-2,
    /// and invalidates the TLBs that went stale. A stage-2 out of tables stops the run: the
    /// pools are sized for the whole window, so that is a testbed error.
    fn apply_firewall(&mut self, fw: &mut Firewall) {
        let ch = fw.take_changes();
        if ch.is_empty() {
            return;
        }
        // SAFETY: EL3 does not run while the SPMC does (one core); the only reference.
        let nw = unsafe { super::NW_S2.get() };
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
        // SAFETY: single-threaded; a plain flag EL3 reads before resuming the NW.
        unsafe { *super::NW_TLB_STALE.get() = true };
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
        // SAFETY: the SPMC runs alone; no other reference to FIREWALL is live.
        let fw = unsafe { firewall() }.ok_or(HwError::NoTables)?;
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
        // SAFETY: EL3 built NW_S2 before the normal world could make a call; EL3 only reads it
        // while handling a NW fault, never while the SPMC runs (one core). Likewise FIREWALL.
        let (nw, fw) = unsafe { (super::NW_S2.get(), firewall()) };
        let (Some(nw), Some(fw)) = (nw.as_mut(), fw) else {
            return Err(HwError::NoTables);
        };
        fw.nw_revoke(nw, r, why)?;
        // SAFETY: as above; a plain flag.
        unsafe { *super::NW_TLB_STALE.get() = true };
        Ok(())
    }

    fn nw_restore(&mut self, r: &MemRange) {
        // SAFETY: as in `nw_revoke`.
        let (nw, fw) = unsafe { (super::NW_S2.get(), firewall()) };
        if let (Some(nw), Some(fw)) = (nw.as_mut(), fw) {
            fw.nw_restore(nw, r);
            // SAFETY: as above.
            unsafe { *super::NW_TLB_STALE.get() = true };
        }
    }

    fn zero(&mut self, r: &MemRange) {
        if accessible(r.address, r.len() as usize) {
            // SAFETY: NS DRAM (checked), page aligned; no Rust reference covers guest memory
            // and no guest runs while the SPMC does.
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
        // covers; the guest is not running while the SPMC runs.
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
    // SAFETY: the tables are complete; the SP is not running; VMID 1 is the SP's.
    unsafe {
        reg::set_vsttbr_el2(sec.root_pa());
        reg::set_vstcr_el2(stage2::vtcr(false) & 0xff);
        reg::set_vttbr_el2(ns.root_pa() | VMID << 48);
        reg::set_vtcr_el2(stage2::vtcr(true));
        core::arch::asm!("tlbi vmalls12e1", "dsb sy", "isb", options(nostack));
    }
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

/// Sets up EL2 and EL1 for the SP's first entry (Hafnium's entry state: S-EL1, EL1h, MMU off,
/// caches off, DAIF masked).
fn prepare_vcpu(vcpu: &mut Ctx, entry: u64, regs: &Regs) {
    // SAFETY: the SP has not run yet; these registers only affect EL1 and the SP's traps.
    unsafe {
        reg::set_hcr_el2(HCR_SP);
        reg::set_sctlr_el1(0);
        reg::set_cpacr_el1(0);
        reg::set_vbar_el1(0);
        reg::set_cnthctl_el2(0b11);
        reg::set_cntvoff_el2(0);
        reg::set_vpidr_el2(reg::midr());
        reg::set_vmpidr_el2(1 << 31);
    }
    *vcpu = Ctx::ZERO;
    vcpu.x[..18].copy_from_slice(regs);
    vcpu.elr = entry;
    vcpu.spsr = SPSR_EL1H_MASKED;
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

/// Runs the SP until it finishes init, answers, or fails.
fn run_sp(spmc: &mut Spmc, vcpu: &mut Ctx, hw: &mut PhysMem) -> Ran {
    let id = spmc.sp_ep.id;
    loop {
        // SAFETY: `vcpu` holds the SP's complete state (prepared or saved by the last exit);
        // stage 2 and HCR_EL2 are set up for it.
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
        if !call && vcpu.exit_kind == 0 {
            let (hpfar, far) = (reg::hpfar_el2(), reg::far_el2());
            // SAFETY: the SPMC runs alone; no other reference to FIREWALL is live.
            let fw = unsafe { firewall() };
            // An access to the emulated TZC-400 (mapped in neither IPA space): performed on the
            // model; a new map (gate reopened, region changed while open) is applied to every
            // stage-2 before the SP resumes.
            if let (Ok(a), Some(fw)) = (mmio::decode(esr, hpfar, far), fw)
                && mmio::emulate(&a, &mut [&mut TzcDevice(fw)], &mut vcpu.x)
            {
                if a.write {
                    hw.apply_firewall(fw);
                }
                vcpu.elr += 4;
                continue;
            }
            // A stage-2 fault the firewall explains: reported, emulated as failed, resumed.
            let s = Syndrome {
                esr,
                far,
                hpfar,
                elr: vcpu.elr,
            };
            // SAFETY: as above (the previous reference is no longer used).
            if let Some(fw) = unsafe { firewall() }
                && let Some((b, pc)) =
                    fw.sp_fault(hw.sp_ns.as_ref(), hw.sp_sec.as_ref(), &s, &mut vcpu.x)
            {
                super::record_blocked(&b);
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
            let reply = match spmc.abort(reason) {
                SpAction::Aborted { reply, .. } => reply,
                _ => None,
            };
            return Ran::Aborted(reply);
        }
        let args = vcpu.regs18();
        match spmc.sp_call(&args, hw, &mut super::Uart) {
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
    // SAFETY: the SPMC runs alone; no other reference to FIREWALL is live.
    let Some(fw) = (unsafe { firewall() }) else {
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
    match fw.apply_all(&mut spaces) {
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
    // SAFETY: single-threaded; the only references to these globals are taken here.
    let (tables, vcpu, reset) =
        unsafe { (TABLES.get(), VCPU.get(), *super::el3::RESET_COUNTER.get()) };
    log!(
        "testbed: SPMC up at S-EL2 (FF-A v1.2), {} us after reset",
        super::counter_us(reset, reg::cntpct())
    );
    let lend = lend_enforcement();
    // SAFETY: single-threaded; nothing else has used FIREWALL yet.
    unsafe { *super::FIREWALL.get() = Some(Firewall::new(lend)) };
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
    let mut spmc = match load_sp(tables) {
        Ok((info, entry, regs, ns, sec)) => {
            hw.sp_ns = Some(ns);
            hw.sp_sec = Some(sec);
            gate_regions(&info, &mut hw);
            prepare_vcpu(vcpu, entry, &regs);
            log!(
                "testbed: entering SP {:#x} at {entry:#x} (S-EL1, x0={:#x})",
                info.id,
                regs[0]
            );
            let mut s = Spmc::new(Some(info));
            s.seed(super::entropy);
            match run_sp(&mut s, vcpu, &mut hw) {
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
                    debug_assert_eq!(s.sp_state, SpState::Aborted);
                }
            }
            s
        }
        Err(e) => {
            log!("testbed: SP package rejected: {e}");
            Spmc::new(None)
        }
    };

    // Initialisation done: FFA_MSG_WAIT to the SPMD; the normal world's calls come back.
    let mut ready = [0u64; 18];
    ready[0] = u64::from(FuncId::MsgWait as u32);
    let mut req = smc_to_nw(&ready);
    loop {
        let reply = match spmc.nw_call(&req, &mut hw) {
            NwAction::Reply(r) => r,
            NwAction::RunSp(r) => {
                vcpu.x[..18].copy_from_slice(&r);
                match run_sp(&mut spmc, vcpu, &mut hw) {
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
