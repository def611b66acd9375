//! Normal-world stage-2 faults: what EL3 does when the client touches a page it lent or donated
//! (or the testbed's reserved NS memory). The NS-EL2 vector stub hands the exception to EL3;
//! this module decides, from the NS-EL2 syndrome registers, what the access was, how to report
//! it and how to resume the client: a load gets [`control::POISON`] (ISV/SRT/SAS/SSE/SF from
//! ESR_EL2), a store is dropped, and the client continues after the instruction. What cannot be
//! emulated (ISV = 0, an instruction fetch) is reported, flagged ([`control::UNEMULATED`]) and
//! skipped; a fetch resumes at x30 as if the function called in the page had returned.
//!
//! Pure logic, host-tested; `arch::el3` reads the registers and prints the line.

use core::fmt;

use testbed_layout::{control, ns_ram};

use crate::memshare::Revoked;
use crate::mmio;

/// EC of an instruction abort from a lower EL.
const EC_IABT_LOWER: u64 = 0x20;

/// One blocked access, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub addr: u64,
    /// `control::KIND_*`.
    pub kind: u64,
    /// `control::OWNER_*`.
    pub owner: u64,
    /// The endpoint the page went to (0: none); for `OWNER_FIREWALL` the region that decided
    /// (`control::FIREWALL_OVERLAP`: two matched).
    pub to: u16,
    /// Why it could not be emulated, if it could not.
    pub unemulated: Option<&'static str>,
    /// The secure partition made the access (else the normal world).
    pub by_sp: bool,
    /// A secure (NS = 0) access.
    pub secure: bool,
}

impl Blocked {
    /// x3 of `control::TESTBED_BLOCKED_ACCESSES`.
    pub fn info(&self) -> u64 {
        let flag = |b: bool, f: u64| if b { f } else { 0 };
        self.kind
            | self.owner << 8
            | u64::from(self.to) << 16
            | flag(self.unemulated.is_some(), control::UNEMULATED)
            | flag(self.by_sp, control::BLOCKED_BY_SP)
            | flag(self.secure, control::BLOCKED_SECURE)
    }
}

impl fmt::Display for Blocked {
    /// `blocked NW read of 0x48000000 (lent to 8001)`, the testbed's report line (see
    /// `control::OWNER_FIREWALL` for the firewall's forms).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            control::KIND_WRITE => "write",
            control::KIND_FETCH => "instruction fetch",
            control::KIND_CACHE_MAINT => "cache maintenance",
            _ => "read",
        };
        let who = match (self.by_sp, self.secure) {
            (false, _) => "NW",
            (true, true) => "SP secure",
            (true, false) => "SP NS",
        };
        write!(f, "blocked {who} {kind} of {:#x} (", self.addr)?;
        let overlap = u64::from(self.to) == control::FIREWALL_OVERLAP;
        match self.owner {
            control::OWNER_LENT => write!(f, "lent to {:x})", self.to)?,
            control::OWNER_DONATED => write!(f, "donated to {:x})", self.to)?,
            control::OWNER_RESERVED => write!(f, "testbed reserved)")?,
            control::OWNER_SECURE_DEVICE => write!(f, "secure device)")?,
            control::OWNER_FIREWALL if overlap => write!(f, "firewall overlap)")?,
            control::OWNER_FIREWALL if self.secure => {
                write!(f, "firewall: not secured, region {})", self.to)?
            }
            control::OWNER_FIREWALL => write!(f, "firewall region {})", self.to)?,
            _ => write!(f, "not mapped)")?,
        }
        if let Some(why) = self.unemulated {
            write!(f, ", not emulated: {why}")?;
        }
        Ok(())
    }
}

/// The NS-EL2 (or, for the SP, S-EL2) state at the fault.
#[derive(Clone, Copy, Debug)]
pub struct Syndrome {
    pub esr: u64,
    pub far: u64,
    pub hpfar: u64,
    /// ELR_EL2: the faulting instruction.
    pub elr: u64,
}

impl Syndrome {
    /// The faulting IPA.
    pub fn addr(&self) -> u64 {
        mmio::fault_ipa(self.hpfar, self.far)
    }

    /// What the access was (`control::KIND_*`); `None` if not a stage-2 abort.
    pub fn kind(&self) -> Option<u64> {
        match self.esr >> 26 {
            EC_IABT_LOWER => Some(control::KIND_FETCH),
            mmio::EC_DABT_LOWER if self.esr & ESR_CM != 0 => Some(control::KIND_CACHE_MAINT),
            mmio::EC_DABT_LOWER if self.esr & (1 << 6) != 0 => Some(control::KIND_WRITE),
            mmio::EC_DABT_LOWER => Some(control::KIND_READ),
            _ => None,
        }
    }
}

/// ESR ISS.CM: the abort came from a cache maintenance instruction.
const ESR_CM: u64 = 1 << 8;

/// What to do with the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Report `Blocked`, resume NS-EL1 at `pc` (registers already updated).
    Resume { blocked: Blocked, pc: u64 },
    /// Not a stage-2 abort (the caller reports the EC and stops the run).
    Unexpected { ec: u64 },
}

/// Why the NW stage-2 lacks the page at `addr`, from its revoked tag alone (`OWNER_*`, to).
pub fn owner_of_tag(addr: u64, tag: Option<u32>) -> (u64, u16) {
    match tag.and_then(Revoked::from_tag) {
        Some(Revoked { donated: false, to }) => (control::OWNER_LENT, to),
        Some(Revoked { donated: true, to }) => (control::OWNER_DONATED, to),
        None if (ns_ram::TESTBED_NS_BASE..ns_ram::TESTBED_NS_BASE + ns_ram::TESTBED_NS_SIZE)
            .contains(&addr) =>
        {
            (control::OWNER_RESERVED, 0)
        }
        None => (control::OWNER_UNMAPPED, 0),
    }
}

/// Classifies and emulates a stage-2 abort of the normal world. `classify(addr, kind)` says
/// why the page is blocked (`OWNER_*`, endpoint or region); `x` are the client's x0-x30 (x0
/// already restored).
pub fn handle(
    s: &Syndrome,
    x: &mut [u64; 31],
    classify: impl FnOnce(u64, u64) -> (u64, u16),
) -> Outcome {
    let Some(kind) = s.kind() else {
        return Outcome::Unexpected { ec: s.esr >> 26 };
    };
    let addr = s.addr();
    let (owner, to) = classify(addr, kind);
    let mut b = Blocked {
        addr,
        kind,
        owner,
        to,
        unemulated: None,
        by_sp: false,
        secure: false,
    };
    let pc = emulate(s, kind, x, &mut b.unemulated);
    Outcome::Resume { blocked: b, pc }
}

/// EC of a trapped MSR/MRS/system instruction.
const EC_SYS: u64 = 0x18;

/// A data-cache maintenance by VA to the point of coherency or persistence that the NW's
/// HCR_EL2.TPCP trapped (DC IVAC, CVAC, CVAP, CVADP, CIVAC): its Rt. QEMU runs these as
/// no-ops without translating the VA, so without the trap a CMO on a page the NW lost would go
/// unnoticed.
pub fn dc_by_va(esr: u64) -> Option<u8> {
    if esr >> 26 != EC_SYS {
        return None;
    }
    let f = |shift: u32, bits: u32| (esr >> shift) & ((1 << bits) - 1);
    let (op0, op2, op1, crn, rt, crm, read) = (
        f(20, 2),
        f(17, 3),
        f(14, 3),
        f(10, 4),
        f(5, 5),
        f(1, 4),
        f(0, 1),
    );
    let dc = op0 == 1
        && crn == 7
        && op2 == 1
        && read == 0
        && matches!((op1, crm), (0, 6) | (3, 10) | (3, 12) | (3, 13) | (3, 14));
    dc.then_some(rt as u8)
}

/// A trapped DC by VA, once EL3 translated the VA (`ipa`: `None` if stage 1 does not map it):
/// if the NW's stage-2 lacks the page, `blocked_at(ipa)` says why (`OWNER_*`, endpoint or
/// region) and the operation is reported; either way it is completed as the no-op it is on
/// QEMU (no cache model) and the NW resumes after it.
pub fn handle_dc(
    s: &Syndrome,
    ipa: Option<u64>,
    blocked_at: impl FnOnce(u64) -> Option<(u64, u16)>,
) -> (Option<Blocked>, u64) {
    let b = ipa.and_then(|a| {
        blocked_at(a).map(|(owner, to)| Blocked {
            addr: a,
            kind: control::KIND_CACHE_MAINT,
            owner,
            to,
            unemulated: None,
            by_sp: false,
            secure: false,
        })
    });
    (b, s.elr + 4)
}

/// Emulates a blocked access as failed and returns where to resume: a load gets
/// [`control::POISON`], a store or cache maintenance is dropped, and execution continues
/// after the instruction; a fetch resumes at x30; an access without a syndrome is skipped
/// untouched (`unemulated` says why).
pub fn emulate(
    s: &Syndrome,
    kind: u64,
    x: &mut [u64; 31],
    unemulated: &mut Option<&'static str>,
) -> u64 {
    match kind {
        control::KIND_FETCH => {
            *unemulated = Some("instruction fetch, resumed at x30");
            return x[30];
        }
        control::KIND_CACHE_MAINT => return s.elr + 4,
        _ => {}
    }
    match mmio::decode_fault(s.esr, s.hpfar, s.far, true) {
        Ok(a) => {
            if !a.write && a.reg != 31 {
                let bits = u32::from(a.size) * 8;
                let mut v = if bits == 64 {
                    control::POISON
                } else {
                    control::POISON & ((1 << bits) - 1)
                };
                if a.sign_extend && bits < 64 {
                    let shift = 64 - bits;
                    v = (((v << shift) as i64) >> shift) as u64;
                }
                if !a.sixty_four {
                    v &= 0xffff_ffff;
                }
                x[usize::from(a.reg)] = v;
            }
        }
        Err(mmio::NotEmulable::NoSyndrome) => *unemulated = Some("no syndrome (ISV=0)"),
        Err(_) => *unemulated = Some("not a translation or permission fault"),
    }
    s.elr + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    const DABT: u64 = mmio::EC_DABT_LOWER << 26;
    const ISV: u64 = 1 << 24;
    const TRANSLATION_L3: u64 = 0b000111;

    fn syn(esr: u64, addr: u64) -> Syndrome {
        Syndrome {
            esr,
            far: 0xffff_0000_0000_0000 | (addr & 0xfff),
            hpfar: (addr >> 12) << 4,
            elr: 0x4000_1000,
        }
    }

    /// The classifier EL3 uses without a firewall: the tag alone.
    fn nw(tag_of: impl Fn(u64) -> Option<u32>) -> impl FnOnce(u64, u64) -> (u64, u16) {
        move |a, _| owner_of_tag(a, tag_of(a))
    }

    fn lent(a: u64) -> Option<u32> {
        (a & !0xfff == 0x4800_0000).then_some(
            Revoked {
                donated: false,
                to: 0x8001,
            }
            .tag(),
        )
    }

    #[test]
    fn blocked_load_gets_poison_and_skips() {
        let mut x = [7u64; 31];
        // LDR x5, 64-bit.
        let esr = DABT | ISV | 3 << 22 | 5 << 16 | 1 << 15 | TRANSLATION_L3;
        let Outcome::Resume { blocked, pc } = handle(&syn(esr, 0x4800_0010), &mut x, nw(lent))
        else {
            panic!()
        };
        assert_eq!(x[5], control::POISON);
        assert_eq!(x[4], 7);
        assert_eq!(pc, 0x4000_1004);
        assert_eq!(blocked.addr, 0x4800_0010);
        assert_eq!(
            std::format!("{blocked}"),
            "blocked NW read of 0x48000010 (lent to 8001)"
        );
        assert_eq!(blocked.info(), 1 | 1 << 8 | 0x8001 << 16);
        // LDRB w2 (zero-extended), LDRSH x3 (sign-extended 0xbeef).
        let esr = DABT | ISV | 2 << 16 | TRANSLATION_L3;
        handle(&syn(esr, 0x4800_0000), &mut x, nw(lent));
        assert_eq!(x[2], 0xef);
        let esr = DABT | ISV | 1 << 22 | 1 << 21 | 3 << 16 | 1 << 15 | TRANSLATION_L3;
        handle(&syn(esr, 0x4800_0000), &mut x, nw(lent));
        assert_eq!(x[3], 0xffff_ffff_ffff_beef);
        // LDRSW into a W register... (32-bit, SF = 0): upper half clear.
        let esr = DABT | ISV | 2 << 22 | 1 << 21 | 4 << 16 | TRANSLATION_L3;
        handle(&syn(esr, 0x4800_0000), &mut x, nw(lent));
        assert_eq!(x[4], 0xdead_beef);
    }

    #[test]
    fn blocked_store_is_dropped_and_donated_reported() {
        let mut x = [7u64; 31];
        let donated = |_| {
            Some(
                Revoked {
                    donated: true,
                    to: 0x8001,
                }
                .tag(),
            )
        };
        let esr = DABT | ISV | 3 << 22 | 5 << 16 | 1 << 15 | 1 << 6 | TRANSLATION_L3;
        let Outcome::Resume { blocked, pc } = handle(&syn(esr, 0x4900_0000), &mut x, nw(donated))
        else {
            panic!()
        };
        assert_eq!(x, [7u64; 31], "registers untouched");
        assert_eq!(pc, 0x4000_1004);
        assert_eq!(
            std::format!("{blocked}"),
            "blocked NW write of 0x49000000 (donated to 8001)"
        );
    }

    #[test]
    fn unemulable_accesses_are_flagged_and_skipped() {
        let mut x = [7u64; 31];
        x[30] = 0x4000_2000;
        let esr = DABT | TRANSLATION_L3; // ISV = 0 (LDP)
        let Outcome::Resume { blocked, pc } = handle(&syn(esr, 0x4800_0000), &mut x, nw(lent))
        else {
            panic!()
        };
        assert_eq!(pc, 0x4000_1004);
        assert_ne!(blocked.info() & control::UNEMULATED, 0);
        assert_eq!(x[..30], [7u64; 30]);
        let iabt = EC_IABT_LOWER << 26 | TRANSLATION_L3;
        let Outcome::Resume { blocked, pc } = handle(&syn(iabt, 0x4800_0000), &mut x, nw(lent))
        else {
            panic!()
        };
        assert_eq!((blocked.kind, pc), (control::KIND_FETCH, 0x4000_2000));
        assert!(std::format!("{blocked}").contains("not emulated"));
        let reserved = handle(
            &syn(DABT | ISV, ns_ram::TESTBED_NS_BASE),
            &mut x,
            nw(|_| None),
        );
        let Outcome::Resume { blocked, .. } = reserved else {
            panic!()
        };
        assert_eq!(blocked.owner, control::OWNER_RESERVED);
        // DC CIVAC (CM = 1, WnR = 1, ISV = 0) on a lent page: reported and skipped.
        let civac = DABT | 1 << 8 | 1 << 6 | TRANSLATION_L3;
        let Outcome::Resume { blocked, pc } = handle(&syn(civac, 0x4800_0040), &mut x, nw(lent))
        else {
            panic!()
        };
        assert_eq!(
            (blocked.kind, blocked.unemulated, pc),
            (control::KIND_CACHE_MAINT, None, 0x4000_1004)
        );
        assert_eq!(
            std::format!("{blocked}"),
            "blocked NW cache maintenance of 0x48000040 (lent to 8001)"
        );
        // DC CIVAC x7 trapped by TPCP (EC 0x18): op0 1, op1 3, CRn 7, CRm 14, op2 1.
        let civac_trap =
            0x18 << 26 | 1 << 25 | 1 << 20 | 1 << 17 | 3 << 14 | 7 << 10 | 7 << 5 | 14 << 1;
        assert_eq!(dc_by_va(civac_trap), Some(7));
        assert_eq!(dc_by_va(civac_trap | 1), None, "an MRS is not a DC");
        let dc_zva = 0x18 << 26 | 1 << 20 | 1 << 17 | 3 << 14 | 7 << 10 | 4 << 1;
        assert_eq!(dc_by_va(dc_zva), None);
        let s = syn(civac_trap, 0);
        let (b, pc) = handle_dc(&s, Some(0x4800_0040), |a| Some(owner_of_tag(a, lent(a))));
        assert_eq!(pc, 0x4000_1004);
        assert_eq!(
            std::format!("{}", b.unwrap()),
            "blocked NW cache maintenance of 0x48000040 (lent to 8001)"
        );
        assert_eq!(
            handle_dc(&s, Some(0x4900_0000), |_| None),
            (None, 0x4000_1004)
        );
        assert_eq!(
            handle_dc(&s, None, |_| Some((1, 1))).0,
            None,
            "stage 1 unmapped"
        );
        let hvc = handle(&syn(0x16 << 26, 0), &mut x, nw(lent));
        assert_eq!(hvc, Outcome::Unexpected { ec: 0x16 });
    }
}
