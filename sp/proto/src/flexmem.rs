//! Flex-Mem messages: switching lent normal-world pages to secure memory and back
//! (DESIGN.md sec. 6), the manager's counters, and the testbed probe of the SP's own secure
//! access. The commands are [`crate::Command::FlexSecure`], [`crate::Command::FlexRelease`],
//! [`crate::Command::FlexStats`] and [`crate::Command::FlexProbe`].

/// Why the SP refused a Flex-Mem command (`Status::FlexMem` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FlexFault {
    /// This platform has no memory firewall the SP drives (its manifest grants no `tzc400` or
    /// RK3588 firewall device): Flex-Mem is off. Real Hafnium on QEMU answers this.
    NoFirewall = 1,
    /// The region was shared, not lent (its owner keeps access by contract) or donated.
    NotLent = 2,
    /// A page lies outside the `flexmem-window` the partition manager maps secure for the SP.
    NotInWindow = 3,
    /// The firewall's region budget cannot hold another extent; nothing changed.
    BudgetExhausted = 4,
    /// A range does not start and end on the firewall's granule.
    NotGranuleAligned = 5,
    /// The region is already secured.
    AlreadySecured = 6,
    /// `FlexRelease` of a region that is not secured.
    NotSecured = 7,
    /// The firewall hardware did not take the programming (read back differs, gate stuck).
    Firewall = 8,
    /// The SP's stage-1 refused the remap; everything was undone.
    MapFailed = 9,
    /// The region is read-only to the SP (it could not scrub it).
    ReadOnly = 10,
    /// `ScrubKind::EncryptOut` without an encrypt-out hook installed.
    NoEncryptHook = 11,
    /// A probe of a page the SP holds mapped non-secure (it would alias a live mapping).
    Held = 12,
    /// The region is pinned (a loaded model lives in it).
    Pinned = 13,
    /// The manager's table of secured regions is full.
    NoRoom = 14,
}

impl FlexFault {
    pub fn from_u64(v: u64) -> Option<Self> {
        use FlexFault::*;
        Some(match v {
            1 => NoFirewall,
            2 => NotLent,
            3 => NotInWindow,
            4 => BudgetExhausted,
            5 => NotGranuleAligned,
            6 => AlreadySecured,
            7 => NotSecured,
            8 => Firewall,
            9 => MapFailed,
            10 => ReadOnly,
            11 => NoEncryptHook,
            12 => Held,
            13 => Pinned,
            14 => NoRoom,
            _ => return None,
        })
    }
}

/// What happens to a secured region's bytes before its pages go back to the normal world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ScrubKind {
    /// Zeroed (model weights: the owner has the file anyway).
    Zero = 0,
    /// Handed to the encrypt-out hook first (KV caches the owner wants back sealed), then
    /// zeroed. Refused with [`FlexFault::NoEncryptHook`] until the serving engine installs one.
    EncryptOut = 1,
}

impl ScrubKind {
    pub fn from_u64(v: u64) -> Option<Self> {
        match v {
            0 => Some(ScrubKind::Zero),
            1 => Some(ScrubKind::EncryptOut),
            _ => None,
        }
    }
}

/// The `FlexSecure` / `FlexRelease` reply: `[OK, pages, owner extents, regions used, ticks]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlexSwitch {
    /// Pages of the region switched.
    pub pages: u32,
    /// Firewall extents the owner's secured pages take after the switch.
    pub owner_extents: u32,
    /// Firewall regions all Flex-Mem extents take after the switch.
    pub regions_used: u32,
    /// Counter ticks the switch took inside the SP (CNTPCT_EL0; Hz in [`FlexStats`]).
    pub ticks: u64,
}

/// The `FlexStats` reply (DIRECT_REQ2 only: 12 registers): `[OK, pages secured, pages released,
/// bytes cleaned, firewall reprograms, TLB invalidations, regions used, regions free, secured
/// pages, last switch ticks, last switch pages, counter Hz]`. Counters count since start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlexStats {
    /// Pages switched normal -> secure.
    pub pages_secured: u64,
    /// Pages switched secure -> normal (scrubbed).
    pub pages_released: u64,
    /// Bytes cleaned and invalidated from the data caches by VA.
    pub bytes_cleaned: u64,
    /// Atomic firewall updates (gate closed, regions programmed, gate opened).
    pub firewall_reprograms: u64,
    /// Stage-1 TLB invalidations (one per page unmapped).
    pub tlb_invalidations: u64,
    /// Firewall regions Flex-Mem extents take now.
    pub regions_used: u32,
    /// Firewall regions still free for Flex-Mem (firmware's own regions excluded).
    pub regions_free: u32,
    /// Pages secured now.
    pub secured_pages: u64,
    /// The last switch (either way): its ticks and pages.
    pub last_switch_ticks: u64,
    pub last_switch_pages: u64,
    pub counter_hz: u64,
}

impl FlexStats {
    pub(crate) const REGS: usize = 12;

    pub(crate) fn to_regs(self) -> [u64; Self::REGS - 1] {
        [
            self.pages_secured,
            self.pages_released,
            self.bytes_cleaned,
            self.firewall_reprograms,
            self.tlb_invalidations,
            u64::from(self.regions_used),
            u64::from(self.regions_free),
            self.secured_pages,
            self.last_switch_ticks,
            self.last_switch_pages,
            self.counter_hz,
        ]
    }

    pub(crate) fn from_regs(r: &[u64; Self::REGS - 1]) -> Self {
        FlexStats {
            pages_secured: r[0],
            pages_released: r[1],
            bytes_cleaned: r[2],
            firewall_reprograms: r[3],
            tlb_invalidations: r[4],
            regions_used: r[5] as u32,
            regions_free: r[6] as u32,
            secured_pages: r[7],
            last_switch_ticks: r[8],
            last_switch_pages: r[9],
            counter_hz: r[10],
        }
    }
}
