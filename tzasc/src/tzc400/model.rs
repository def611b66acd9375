//! A register-exact TZC-400 model that also performs the hardware's access check.
//!
//! Used by the host tests and by the QEMU testbed as its emulated device state (one definition of
//! TZC-400 semantics), so it is `no_std`, allocation-free and `Copy`-sized (a few hundred bytes).
//!
//! Register behaviour (TZC-400 TRM; TF-A v2.15.0 `tzc400.h` for the layout):
//! - reserved bits and registers are RAZ/WI; regions and filters beyond BUILD_CONFIG are RAZ/WI;
//! - region base bits \[11:0\] read as 0 and top bits \[11:0\] as 0xfff, both ignore writes (4 KiB
//!   granule, inclusive top); high words keep only the bits below the address width;
//! - region 0: base/top are read-only (base reads 0, top reads the highest decoded address),
//!   REGION_ATTRIBUTES.filter_en reads as all implemented filters and ignores writes (region 0
//!   applies on every filter);
//! - GATE_KEEPER.open_status follows open_request at once (the model has no transactions in
//!   flight to drain);
//! - INT_CLEAR is write-only, write 1 to bit f clears filter f's status, overrun and overlap;
//! - PID/CID read as a TZC-400: peripheral ID 0x04_002B_B460 (part 0x460; the value the `arm-tzc`
//!   crate documents), component ID 0xB105F00D.
//!
//! Permission map and the gate keeper: the map a filter enforces is the register state at the
//! moment its gate was last open, so a reprogramming sequence behind a closed gate takes effect
//! as a whole when the gate reopens (TRM: transactions stall while the gate is closed; the model
//! cannot stall, so it evaluates them against the map in force before the gate closed and says so
//! in [`Verdict::gate_closed`]). A write made while the gate is open takes effect at once.
//! [`Model::generation`] increments each time any filter's map changes.
//!
//! Access check ([`Model::check`]): the regions 1.. enabled on the filter that contain the address
//! are found; none -> region 0; exactly one -> that region; two or more -> denied and
//! INT_STATUS.overlap set (UNDEFINED in the TRM; denying is the safe choice). Secure accesses need
//! s_rd_en / s_wr_en, non-secure ones nsaid_rd_en / nsaid_wr_en of their NSAID. A denial latches
//! FAIL_ADDRESS/FAIL_CONTROL/FAIL_ID and INT_STATUS.status of the filter if its status was clear,
//! else sets INT_STATUS.overrun and keeps the first failure. The model records the failure
//! whatever ACTION says; ACTION selects the response (DECERR vs. OKAY with RAZ/WI) and whether the
//! interrupt line ([`Model::interrupt`]) is raised.

//!
//! # As an emulated device
//!
//! ```
//! use tzasc::tzc400::{Config, Model, Request};
//! use tzasc::RegisterAccess;
//!
//! let mut dev = Model::new(Config::TESTBED);
//! // A trapped 32-bit MMIO store / load from the SP goes to the register interface...
//! dev.write(0x110 + 0x20, 0x4000_0001); // REGION_ATTRIBUTES_1: s_rd_en, filter 0
//! dev.write(0x008, 1); // GATE_KEEPER: open filter 0
//! assert_eq!(dev.read(0x008), 0x0001_0001);
//! // ...and every initiator's access is decided by `check` (latching FAIL_* on a denial).
//! let v = dev.check(0x0, true, 0, false);
//! assert!(v.allowed && v.region == Some(1)); // region 1 is 0..=0xfff (base/top reset to 0)
//! assert!(!dev.check(0x1000, false, 9, false).allowed); // region 0: no access
//! // Rebuild stage-2 maps when the generation moves, one uniform span at a time.
//! let (g0, mut addr) = (dev.generation(), 0u64);
//! while addr < 0x4000 {
//!     let end = dev.uniform_until(0, addr);
//!     let ok = dev.permission(&Request { filter: 0, addr, secure: false, nsaid: 9, write: false, privileged: false, id: 9 }).allowed;
//!     assert!(!ok);
//!     addr = end.saturating_add(1);
//! }
//! assert_eq!(dev.generation(), g0);
//! ```

use super::{
    ATTR_FILTER_EN_MASK, ATTR_S_RD_EN, ATTR_S_WR_EN, Action, BuildConfig, FAIL_CONTROL_NS,
    FAIL_CONTROL_PRIV, FAIL_CONTROL_WRITE, GATE_KEEPER_OS_SHIFT, IntStatus, MAX_FILTERS,
    MAX_REGIONS, offset,
};
use crate::{Access, IdMask, NsAccess, Region, RegionIndex, RegisterAccess};

/// The instance the model emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// What BUILD_CONFIG reports (filters 1..=4, regions 1..=9, address width 32..=64).
    pub build: BuildConfig,
    /// Gates open at reset (open_request reset value; the TRM's reset value is 0).
    pub gates_open_at_reset: u8,
}

impl Config {
    /// The QEMU testbed's instance: 9 regions, 1 filter, 48-bit addresses, 4-bit NSAIDs (16
    /// NSAIDs: all 16 nsaid_rd_en/nsaid_wr_en bits implemented), gates closed at reset.
    pub const TESTBED: Config = Config {
        build: BuildConfig {
            filters: 1,
            address_width: 48,
            regions: 9,
        },
        gates_open_at_reset: 0,
    };

    /// FVP Base RevC: 9 regions, 4 filters (TF-A uses filters 0 and 2), 4-bit NSAIDs. The address
    /// width 36 is TF-A's `PLAT_PHY_ADDR_SPACE_SIZE` for FVP (1 << 36, which its DRAM2 top
    /// 0xf_ffff_ffff fills); what the FVP's BUILD_CONFIG really reports is not verified (TF-A
    /// reads it but never prints it).
    pub const FVP_BASE_REVC: Config = Config {
        build: BuildConfig {
            filters: 4,
            address_width: 36,
            regions: 9,
        },
        gates_open_at_reset: 0,
    };
}

/// One access presented to a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The filter (port) the access arrives on.
    pub filter: u8,
    /// Physical address.
    pub addr: u64,
    /// NS=0.
    pub secure: bool,
    /// The NSAID the port presents (4 bits on the FVP and the testbed).
    pub nsaid: u8,
    /// Write (else read).
    pub write: bool,
    /// Privileged access (recorded in FAIL_CONTROL only).
    pub privileged: bool,
    /// Master ID recorded in FAIL_ID \[23:0\] (the testbed has no AXI IDs and passes the NSAID).
    pub id: u32,
}

/// What the response to a denied access looks like (from ACTION).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// The access was permitted.
    Okay,
    /// Denied with an OKAY response: reads return zero, writes are dropped.
    RazWi,
    /// Denied with a DECERR response (a synchronous external abort on a CPU).
    Error,
}

/// The outcome of an access check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The access was permitted.
    pub allowed: bool,
    /// The region that decided (0 = background); `None` when regions overlapped.
    pub region: Option<u8>,
    /// Two or more enabled regions matched on the filter (access denied).
    pub overlap: bool,
    /// The response the master gets.
    pub response: Response,
    /// The filter's gate was closed: hardware would stall the access until it reopens; the model
    /// decided it against the map in force before the gate closed.
    pub gate_closed: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RegionRegs {
    base_low: u32,
    base_high: u32,
    top_low: u32,
    top_high: u32,
    attributes: u32,
    id_access: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FailRegs {
    address_low: u32,
    address_high: u32,
    control: u32,
    id: u32,
}

/// The TZC-400 model. Implements [`RegisterAccess`] for the driver and [`Model::check`] for the
/// bus side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    config: Config,
    action: u32,
    gate_request: u8,
    speculation: u32,
    int: IntStatus,
    fail: [FailRegs; MAX_FILTERS],
    regs: [RegionRegs; MAX_REGIONS],
    active: [[RegionRegs; MAX_REGIONS]; MAX_FILTERS],
    generation: u64,
}

const PID: [u32; 8] = [0x04, 0x00, 0x00, 0x00, 0x60, 0xb4, 0x2b, 0x00];
const CID: [u32; 4] = [0x0d, 0xf0, 0x05, 0xb1];

impl Model {
    /// A model in its reset state: every region disabled and region 0 denying everything, ACTION
    /// 0, gates as `config.gates_open_at_reset`. Out-of-range config values are clamped.
    pub const fn new(config: Config) -> Model {
        let mut config = config;
        config.build.filters = clamp(config.build.filters, 1, MAX_FILTERS as u8);
        config.build.regions = clamp(config.build.regions, 1, MAX_REGIONS as u8);
        config.build.address_width = clamp(config.build.address_width, 32, 64);
        config.gates_open_at_reset &= config.build.filter_mask();
        let zero = RegionRegs {
            base_low: 0,
            base_high: 0,
            top_low: 0,
            top_high: 0,
            attributes: 0,
            id_access: 0,
        };
        let fail = FailRegs {
            address_low: 0,
            address_high: 0,
            control: 0,
            id: 0,
        };
        Model {
            config,
            action: 0,
            gate_request: config.gates_open_at_reset,
            speculation: 0,
            int: IntStatus {
                status: 0,
                overrun: 0,
                overlap: 0,
            },
            fail: [fail; MAX_FILTERS],
            regs: [zero; MAX_REGIONS],
            active: [[zero; MAX_REGIONS]; MAX_FILTERS],
            generation: 0,
        }
    }

    /// The instance emulated.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Counts permission-map changes: increments whenever a region write takes effect on an open
    /// filter or a reopened gate brings in changed regions. Rebuild derived maps when it moves.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// ACTION as programmed.
    pub fn action(&self) -> Action {
        Action::from_bits(self.action)
    }

    /// INT_STATUS as latched.
    pub fn int_status(&self) -> IntStatus {
        self.int
    }

    /// Whether the interrupt output is asserted (ACTION raises it and a failure or overlap is
    /// latched).
    pub fn interrupt(&self) -> bool {
        self.action().interrupt() && (self.int.status | self.int.overlap) != 0
    }

    /// Checks a non-privileged access on filter 0, recording a denial as the hardware does
    /// (FAIL_ID = `nsaid`).
    pub fn check(&mut self, addr: u64, secure: bool, nsaid: u8, write: bool) -> Verdict {
        self.check_request(&Request {
            filter: 0,
            addr,
            secure,
            nsaid,
            write,
            privileged: false,
            id: u32::from(nsaid),
        })
    }

    /// Checks an access, recording a denial in FAIL_* / INT_STATUS.
    pub fn check_request(&mut self, req: &Request) -> Verdict {
        let v = self.permission(req);
        if !v.allowed && req.filter < self.config.build.filters {
            let f = usize::from(req.filter);
            let bit = 1u8 << req.filter;
            if v.overlap {
                self.int.overlap |= bit;
            }
            if self.int.status & bit != 0 {
                self.int.overrun |= bit;
            } else {
                self.int.status |= bit;
                let mut control = 0;
                if req.write {
                    control |= FAIL_CONTROL_WRITE;
                }
                if !req.secure {
                    control |= FAIL_CONTROL_NS;
                }
                if req.privileged {
                    control |= FAIL_CONTROL_PRIV;
                }
                self.fail[f] = FailRegs {
                    address_low: req.addr as u32,
                    address_high: (req.addr >> 32) as u32,
                    control,
                    id: req.id & 0x00ff_ffff,
                };
            }
        }
        v
    }

    /// Evaluates an access without recording anything (for building derived maps).
    pub fn permission(&self, req: &Request) -> Verdict {
        let f = req.filter;
        let gate_closed = self.gate_request & (1 << f) == 0;
        if f >= self.config.build.filters {
            return Verdict {
                allowed: false,
                region: None,
                overlap: false,
                response: self.denied_response(),
                gate_closed,
            };
        }
        let map = &self.active[usize::from(f)];
        let mut matched = None;
        let mut overlap = false;
        for n in 1..usize::from(self.config.build.regions) {
            if let Some(r) = self.decode(map, n, f)
                && r.contains(req.addr)
            {
                overlap |= matched.is_some();
                matched = Some(n);
            }
        }
        let n = if overlap {
            None
        } else {
            Some(matched.unwrap_or(0))
        };
        let allowed = match n {
            None => false,
            Some(n) => {
                let attr = map[n].attributes;
                if req.secure {
                    let bit = if req.write {
                        ATTR_S_WR_EN
                    } else {
                        ATTR_S_RD_EN
                    };
                    attr & bit != 0
                } else {
                    let shift = if req.write { 16 } else { 0 };
                    req.nsaid < 16 && map[n].id_access & (1 << (shift + u32::from(req.nsaid))) != 0
                }
            }
        };
        Verdict {
            allowed,
            region: n.map(|n| n as u8),
            overlap,
            response: if allowed {
                Response::Okay
            } else {
                self.denied_response()
            },
            gate_closed,
        }
    }

    fn denied_response(&self) -> Response {
        if self.action().error_response() {
            Response::Error
        } else {
            Response::RazWi
        }
    }

    /// The last address at or above `addr` up to which every address matches the same regions
    /// on `filter` (so gets the same verdict for any master): lets the testbed build its stage-2
    /// maps range by range instead of page by page.
    pub fn uniform_until(&self, filter: u8, addr: u64) -> u64 {
        let mut end = u64::MAX;
        if filter >= self.config.build.filters {
            return end;
        }
        let map = &self.active[usize::from(filter)];
        for n in 1..usize::from(self.config.build.regions) {
            if let Some(r) = self.decode(map, n, filter) {
                if r.contains(addr) {
                    end = end.min(r.top);
                } else if r.base > addr {
                    end = end.min(r.base - 1);
                }
            }
        }
        end
    }

    /// The regions in force on `filter`: region 0 first (its whole range), then each enabled
    /// region 1.. in index order.
    pub fn effective_regions(&self, filter: u8) -> EffectiveRegions<'_> {
        EffectiveRegions {
            model: self,
            filter,
            next: 0,
        }
    }

    fn decode(&self, map: &[RegionRegs; MAX_REGIONS], n: usize, filter: u8) -> Option<Region> {
        let r = &map[n];
        let filters = if n == 0 {
            self.config.build.filter_mask()
        } else {
            (r.attributes & ATTR_FILTER_EN_MASK) as u8
        };
        if filters & (1 << filter) == 0 {
            return None;
        }
        let (base, top) = if n == 0 {
            (0, self.config.build.max_address())
        } else {
            (
                u64::from(r.base_high) << 32 | u64::from(r.base_low),
                u64::from(r.top_high) << 32 | u64::from(r.top_low) | 0xfff,
            )
        };
        Some(Region {
            base,
            top,
            secure: Access {
                read: r.attributes & ATTR_S_RD_EN != 0,
                write: r.attributes & ATTR_S_WR_EN != 0,
            },
            ns: NsAccess {
                read: IdMask(u128::from(r.id_access & 0xffff)),
                write: IdMask(u128::from(r.id_access >> 16)),
            },
            filters,
        })
    }

    fn high_mask(&self) -> u32 {
        (self.config.build.max_address() >> 32) as u32
    }

    /// Brings the registers of region `n` (or all, `None`) into the map of every open filter.
    fn propagate(&mut self, only: Option<usize>) {
        let mut changed = false;
        for f in 0..usize::from(self.config.build.filters) {
            if self.gate_request & (1 << f) == 0 {
                continue;
            }
            match only {
                Some(n) => {
                    if self.active[f][n] != self.regs[n] {
                        self.active[f][n] = self.regs[n];
                        changed = true;
                    }
                }
                None => {
                    if self.active[f] != self.regs {
                        self.active[f] = self.regs;
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.generation += 1;
        }
    }

    fn region_read(&self, n: usize, reg: usize) -> u32 {
        if n >= usize::from(self.config.build.regions) {
            return 0;
        }
        let r = &self.regs[n];
        match (n, reg) {
            (0, 0) | (0, 1) => 0,
            (0, 2) => self.config.build.max_address() as u32 | 0xfff,
            (0, 3) => self.high_mask(),
            (0, 4) => r.attributes | u32::from(self.config.build.filter_mask()),
            (_, 0) => r.base_low,
            (_, 1) => r.base_high,
            (_, 2) => r.top_low | 0xfff,
            (_, 3) => r.top_high,
            (_, 4) => r.attributes,
            (_, 5) => r.id_access,
            _ => 0,
        }
    }

    fn region_write(&mut self, n: usize, reg: usize, value: u32) {
        if n >= usize::from(self.config.build.regions) {
            return;
        }
        let high = self.high_mask();
        let filters = u32::from(self.config.build.filter_mask());
        let r = &mut self.regs[n];
        match (n, reg) {
            (0, 0..=3) => return,
            (_, 0) => r.base_low = value & !0xfff,
            (_, 1) => r.base_high = value & high,
            (_, 2) => r.top_low = value & !0xfff,
            (_, 3) => r.top_high = value & high,
            (0, 4) => r.attributes = value & (ATTR_S_RD_EN | ATTR_S_WR_EN),
            (_, 4) => r.attributes = value & (ATTR_S_RD_EN | ATTR_S_WR_EN | filters),
            (_, 5) => r.id_access = value,
            _ => return,
        }
        self.propagate(Some(n));
    }
}

const fn clamp(v: u8, lo: u8, hi: u8) -> u8 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

impl RegisterAccess for Model {
    fn read(&mut self, off: usize) -> u32 {
        let filters = usize::from(self.config.build.filters);
        match off {
            offset::BUILD_CONFIG => self.config.build.to_bits(),
            offset::ACTION => self.action,
            offset::GATE_KEEPER => {
                u32::from(self.gate_request) | u32::from(self.gate_request) << GATE_KEEPER_OS_SHIFT
            }
            offset::SPECULATION_CTRL => self.speculation,
            offset::INT_STATUS => self.int.to_bits(),
            0x020..=0x05f => {
                let f = (off - 0x020) / 0x10;
                if f >= filters || !off.is_multiple_of(4) {
                    return 0;
                }
                let r = &self.fail[f];
                match (off - 0x020) % 0x10 {
                    0x0 => r.address_low,
                    0x4 => r.address_high,
                    0x8 => r.control,
                    _ => r.id,
                }
            }
            0x100..=0x21f if off.is_multiple_of(4) => {
                let n = (off - 0x100) / 0x20;
                self.region_read(n, ((off - 0x100) % 0x20) / 4)
            }
            0xfd0..=0xfef if off.is_multiple_of(4) => PID[(off - 0xfd0) / 4],
            0xff0..=0xfff if off.is_multiple_of(4) => CID[(off - 0xff0) / 4],
            _ => 0,
        }
    }

    fn write(&mut self, off: usize, value: u32) {
        match off {
            offset::ACTION => self.action = value & 3,
            offset::GATE_KEEPER => {
                let opening = (value as u8 & 0xf) & !self.gate_request;
                self.gate_request = value as u8 & self.config.build.filter_mask();
                if opening != 0 {
                    self.propagate(None);
                }
            }
            offset::SPECULATION_CTRL => self.speculation = value & 3,
            offset::INT_CLEAR => {
                let bits = value as u8 & self.config.build.filter_mask();
                self.int.status &= !bits;
                self.int.overrun &= !bits;
                self.int.overlap &= !bits;
            }
            0x100..=0x21f if off.is_multiple_of(4) => {
                let n = (off - 0x100) / 0x20;
                self.region_write(n, ((off - 0x100) % 0x20) / 4, value);
            }
            _ => {}
        }
    }
}

/// Iterator over the regions in force on one filter (see [`Model::effective_regions`]).
pub struct EffectiveRegions<'a> {
    model: &'a Model,
    filter: u8,
    next: usize,
}

impl Iterator for EffectiveRegions<'_> {
    type Item = (RegionIndex, Region);

    fn next(&mut self) -> Option<Self::Item> {
        let m = self.model;
        if self.filter >= m.config.build.filters {
            return None;
        }
        while self.next < usize::from(m.config.build.regions) {
            let n = self.next;
            self.next += 1;
            if let Some(r) = m.decode(&m.active[usize::from(self.filter)], n, self.filter) {
                return Some((RegionIndex(n as u8), r));
            }
        }
        None
    }
}
