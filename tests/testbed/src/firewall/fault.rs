//! Blocked accesses the firewall explains: why a normal-world stage-2 fault happened, and the
//! SP's stage-2 faults on pages the firewall keeps from it (a secure access to a gated page no
//! region secures, an NS access to a retrieved page a region secured). An access the TZC
//! would have seen is checked against the model, which latches the failure (FAIL_ADDRESS,
//! FAIL_CONTROL, FAIL_ID, INT_STATUS) as the hardware does; cache maintenance only asks
//! (no data moves: the SP cleaned the lines before securing).

use testbed_layout::{control, firewall as fw};

use super::Firewall;
use super::enforce::{SP_HIDDEN, SW_LIMITED, in_dram};
use crate::memshare::Revoked;
use crate::mmio;
use crate::nwfault::{self, Blocked, Syndrome};
use crate::stage2::{Entry, Stage2};
use tzasc::tzc400::Verdict;

/// x3 bits \[31:16\] for a firewall verdict.
pub fn region_code(v: Verdict) -> u16 {
    if v.overlap {
        control::FIREWALL_OVERLAP as u16
    } else {
        u16::from(v.region.unwrap_or(0))
    }
}

impl Firewall {
    fn verdict(&mut self, addr: u64, secure: bool, kind: u64) -> Verdict {
        match kind {
            control::KIND_CACHE_MAINT => self.permits(addr, secure, false),
            k => self
                .model
                .check(addr, secure, fw::CPU_NSAID, k == control::KIND_WRITE),
        }
    }

    /// Why the normal world's access of `kind` to `addr` faulted (`OWNER_*`, endpoint or
    /// region). A lent page is stopped by the NW stage-2 before the TZC sees the access, so
    /// the model is asked only about pages the NW still owns.
    pub fn classify_nw(&mut self, nw: Option<&Stage2>, addr: u64, kind: u64) -> (u64, u16) {
        let tag = nw.and_then(|t| t.revoked_tag(addr));
        if tag.and_then(Revoked::from_tag).is_none() && in_dram(addr) {
            let v = self.verdict(addr, false, kind);
            if !v.allowed {
                return (control::OWNER_FIREWALL, region_code(v));
            }
        }
        nwfault::owner_of_tag(addr, tag)
    }

    /// An SP stage-2 fault: if the firewall is why, the report and where to resume (the load
    /// poisoned, the store dropped, as for the normal world); `None` if it is something else
    /// (an SP failure).
    ///
    /// Which IPA space faulted is read from the stage-2s: a gated page missing from (or
    /// limited in) the secure space, or a retrieved page the firewall hid in the NS space.
    /// HPFAR_EL2.NS (FEAT_SEL2: 1 = NS IPA space) only breaks a tie (both candidates: a page
    /// no region grants to anyone, where either report is true): QEMU 10 sets it for faults in
    /// the *secure* IPA space (`fault_s1ns` in target/arm/ptw.c; seen with the bring-up SP's
    /// secure accesses), so it cannot be trusted to say which space faulted.
    pub fn sp_fault(
        &mut self,
        sp_ns: Option<&Stage2>,
        sp_sec: Option<&Stage2>,
        s: &Syndrome,
        x: &mut [u64; 31],
    ) -> Option<(Blocked, u64)> {
        let kind = s.kind()?;
        let addr = s.addr();
        if !in_dram(addr) {
            return None;
        }
        let permission = mmio::is_permission_fault(s.esr);
        let ns_candidate = match sp_ns.map(|t| t.entry(addr)) {
            Some(Entry::Revoked(t)) => t & SP_HIDDEN != 0 && Revoked::from_tag(t).is_none(),
            Some(Entry::Page { sw, .. }) => sw & SW_LIMITED != 0 && permission,
            _ => false,
        };
        let sec_candidate = self.gated_at(addr).is_some()
            && match sp_sec.map(|t| t.entry(addr)) {
                Some(Entry::Page { .. }) => permission,
                _ => true,
            };
        let ns = match (ns_candidate, sec_candidate) {
            (false, false) => return None,
            (true, true) => mmio::fault_ipa_ns(s.hpfar),
            (ns, _) => ns,
        };
        let v = self.verdict(addr, !ns, kind);
        if v.allowed && kind != control::KIND_CACHE_MAINT {
            // The stage-2 refused what the firewall allows: the manifest's permissions (e.g.
            // executing from the window), not the firewall's doing.
            return None;
        }
        let mut b = Blocked {
            addr,
            kind,
            owner: control::OWNER_FIREWALL,
            to: region_code(v),
            unemulated: None,
            by_sp: true,
            secure: !ns,
        };
        let pc = nwfault::emulate(s, kind, x, &mut b.unemulated);
        Some((b, pc))
    }
}
