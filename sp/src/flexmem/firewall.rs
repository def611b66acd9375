//! [`Extents`] over the `tzasc` crate: the extent planner decides which regions to program, the
//! [`MemoryFirewall`] driver writes them behind its gate keeper, all or nothing
//! (`ExtentPlanner::secure_on` / `release_on`: plan checked first; a refused write reprograms
//! the committed state).
//!
//! The planner starts from what firmware left programmed (`ExtentPlanner::from_firewall`): on
//! TZC-400, TF-A's NS DRAM regions are split around secure extents and count in the budget,
//! its secure regions (and the background region 0) are never touched.

use super::{ExtentError, Extents};
use core::ops::Range;
use tzasc::{
    MemoryFirewall, RegisterAccess,
    planner::{ApplyError, Config, ExtentPlanner, Owner, PlanError},
    tzc400::Tzc400,
};

/// A firewall driven through the extent planner.
pub struct Planned<F> {
    fw: F,
    planner: ExtentPlanner,
    reprograms: u64,
}

/// Why the firewall could not be taken over at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The driver refused the device (wrong part number, ...).
    Device(tzasc::Error),
    /// Firmware's programming is not something the planner can work around.
    Plan(PlanError),
}

impl<F: MemoryFirewall> Planned<F> {
    /// Reads back firmware's regions from `fw` and plans from there.
    pub fn new(mut fw: F, config: Config) -> Result<Self, SetupError> {
        let planner = ExtentPlanner::from_firewall(config, &mut fw).map_err(SetupError::Plan)?;
        Ok(Planned {
            fw,
            planner,
            reprograms: 0,
        })
    }

    pub fn planner(&self) -> &ExtentPlanner {
        &self.planner
    }

    pub fn firewall(&mut self) -> &mut F {
        &mut self.fw
    }
}

/// The TZC-400 at `regs` with its extents on every filter the instance has.
pub fn tzc400<R: RegisterAccess>(regs: R) -> Result<Planned<Tzc400<R>>, SetupError> {
    let tzc = Tzc400::new(regs).map_err(SetupError::Device)?;
    let filters = tzc.build_config().filter_mask();
    Planned::new(tzc, Config::tzc400(filters))
}

fn extent_error(e: ApplyError) -> ExtentError {
    match e {
        ApplyError::Plan(p) => match p {
            PlanError::BudgetExhausted { .. } | PlanError::TooManyExtents => {
                ExtentError::BudgetExhausted
            }
            PlanError::NotGranuleAligned { .. } | PlanError::EmptyRange => {
                ExtentError::NotGranuleAligned
            }
            PlanError::NotNsMemory { .. } | PlanError::FirmwareRegion { .. } => {
                ExtentError::Forbidden
            }
            PlanError::AlreadySecured { .. } | PlanError::NotSecured { .. } => {
                ExtentError::NotOwned
            }
            PlanError::Stale | PlanError::BadFirmware { .. } | PlanError::Firewall(_) => {
                ExtentError::Hardware
            }
        },
        ApplyError::Firewall { error, restored } => {
            log::error!("firewall refused an update: {error:?} (restored: {restored})");
            ExtentError::Hardware
        }
    }
}

impl<F: MemoryFirewall> Extents for Planned<F> {
    fn granule(&self) -> u64 {
        self.planner.config().granule.size()
    }

    fn secure(&mut self, owner: u32, range: Range<u64>) -> Result<(), ExtentError> {
        let size = range.end.saturating_sub(range.start);
        let plan = self
            .planner
            .secure_on(&mut self.fw, Owner(owner), range.start, size)
            .map_err(extent_error)?;
        if !plan.is_empty() {
            self.reprograms += 1;
        }
        Ok(())
    }

    fn release(&mut self, owner: u32, range: Range<u64>) -> Result<(), ExtentError> {
        let size = range.end.saturating_sub(range.start);
        let plan = self
            .planner
            .release_on(&mut self.fw, Owner(owner), range.start, size)
            .map_err(extent_error)?;
        if !plan.is_empty() {
            self.reprograms += 1;
        }
        Ok(())
    }

    fn owner_extents(&self, owner: u32) -> u32 {
        self.planner.extents_of(Owner(owner)).count() as u32
    }

    fn regions_used(&self) -> u32 {
        u32::from(self.planner.regions_used())
    }

    fn regions_free(&self) -> u32 {
        u32::from(
            self.planner
                .budget()
                .saturating_sub(self.planner.regions_used()),
        )
    }

    fn reprograms(&self) -> u64 {
        self.reprograms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tzasc::{
        Access, IdMask, NsAccess, Region, RegionIndex,
        tzc400::{self as model, Action},
    };

    const MIB: u64 = 1 << 20;
    const NW: u8 = 9;
    const WINDOW: u64 = 0x5000_0000;

    /// The testbed's boot programming (TF-A `arm_tzc400_setup` on the QEMU memory map):
    /// region 0 no access, 1 secure RAM, 2 and 4 NS DRAM, 3 the static carve-out.
    fn booted() -> Planned<Tzc400<model::Model>> {
        let mut tzc = Tzc400::new(model::Model::new(model::Config::TESTBED)).unwrap();
        let ns_ids = IdMask(1 << 0 | 1 << 1 | 1 << 8 | 1 << 9 | 1 << 15);
        tzc.configure_region0(Access::NONE, NsAccess::NONE).unwrap();
        let regions = [
            Region::secure_rw(0x0e00_0000, 0x100_0000, 1).unwrap(),
            Region::ns_rw(0x4000_0000, 0x2000_0000, ns_ids, 1).unwrap(),
            Region::secure_rw(0x6000_0000, 0x400_0000, 1).unwrap(),
            Region::ns_rw(0x6400_0000, 0x1c00_0000, ns_ids, 1).unwrap(),
        ];
        for (i, r) in regions.iter().enumerate() {
            tzc.program(RegionIndex(i as u8 + 1), r).unwrap();
        }
        tzc.set_action(Action::from_bits(2));
        tzc.set_gates(1).unwrap();
        tzc400(tzc.into_inner()).unwrap()
    }

    fn check(p: &mut Planned<Tzc400<model::Model>>, addr: u64, secure: bool) -> bool {
        p.firewall()
            .registers()
            .check(addr, secure, NW, false)
            .allowed
    }

    #[test]
    fn secures_on_the_tzc400_model_and_gives_back() {
        let mut p = booted();
        assert_eq!(p.granule(), 4096);
        // Regions 2, 4 (NS, splittable) and 5-8 free.
        assert_eq!((p.regions_used(), p.regions_free()), (2, 4));
        assert!(check(&mut p, WINDOW, false) && !check(&mut p, WINDOW, true));
        p.secure(1, WINDOW..WINDOW + 2 * MIB).unwrap();
        // The NW (NSAID 9) lost the pages, secure accesses reach them; the neighbours as before.
        assert!(!check(&mut p, WINDOW, false) && check(&mut p, WINDOW, true));
        assert!(!check(&mut p, WINDOW + 2 * MIB - 8, false));
        assert!(check(&mut p, WINDOW + 2 * MIB, false));
        assert!(check(&mut p, WINDOW - 8, false) && !check(&mut p, WINDOW - 8, true));
        // Region 2 split around the extent: low NS, secure, high NS, plus region 4.
        assert_eq!(
            (p.regions_used(), p.owner_extents(1), p.reprograms()),
            (4, 1, 1)
        );
        p.release(1, WINDOW..WINDOW + 2 * MIB).unwrap();
        assert!(check(&mut p, WINDOW, false) && !check(&mut p, WINDOW, true));
        assert_eq!(
            (p.regions_used(), p.owner_extents(1), p.reprograms()),
            (2, 0, 2)
        );
        // What is not NS memory, or not whole pages, is refused.
        assert_eq!(
            p.secure(1, 0x6000_0000..0x6000_1000),
            Err(ExtentError::Forbidden)
        );
        assert_eq!(
            p.secure(1, WINDOW + 8..WINDOW + 4096),
            Err(ExtentError::NotGranuleAligned)
        );
        assert_eq!(
            p.release(1, WINDOW..WINDOW + 4096),
            Err(ExtentError::NotOwned)
        );
    }

    /// The question: firewall regions a 64-layer model takes when its layers arrive one
    /// by one, each lent right above the last.
    #[test]
    fn a_64_layer_model_grown_layer_by_layer_keeps_one_extent() {
        let mut p = booted();
        let layer = MIB;
        for l in 0..64 {
            let base = WINDOW + l * layer;
            p.secure(42, base..base + layer).unwrap();
            assert_eq!(p.owner_extents(42), 1, "layer {l}");
            assert_eq!(p.planner().secure_regions(), 1, "layer {l}");
            assert_eq!(p.regions_used(), 4, "layer {l}");
        }
        assert!(!check(&mut p, WINDOW + 64 * MIB - 8, false));
        assert!(check(&mut p, WINDOW + 64 * MIB, false));
    }

    #[test]
    fn the_budget_runs_out_with_a_defined_error_and_no_change() {
        let mut p = booted();
        // Each extent for another owner with a gap below it: one secure region + one NS piece.
        let mut owners = 0;
        let err = loop {
            let base = WINDOW + owners * 4 * MIB;
            match p.secure(owners as u32, base..base + MIB) {
                Ok(()) => owners += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, ExtentError::BudgetExhausted);
        assert_eq!(owners, 2);
        let before = p.planner().clone();
        let reprograms = p.reprograms();
        assert_eq!(
            p.secure(9, WINDOW + 20 * MIB..WINDOW + 21 * MIB),
            Err(ExtentError::BudgetExhausted)
        );
        assert_eq!(*p.planner(), before);
        assert_eq!(p.reprograms(), reprograms);
        // The refused range is still NS memory for the NW.
        assert!(check(&mut p, WINDOW + 20 * MIB, false));
    }

    /// FVP Base RevC as TF-A v2.15 (no RME) leaves it: `fvp_security.c` programs region 1
    /// secure DRAM, 2 NS DRAM1, 3 DRAM2 and 4-7 DRAM3-6 on filter 0, so one region (8) is
    /// free. An extent at the top of NS DRAM1 (the FVP window) costs one region; a second,
    /// separate extent does not fit. (64-bit address width: what FVP's BUILD_CONFIG says is
    /// not verified.)
    #[test]
    fn fvp_leaves_one_region_for_an_extent_at_the_top_of_ns_dram1() {
        let cfg = model::Config {
            build: tzasc::tzc400::BuildConfig {
                filters: 4,
                address_width: 64,
                regions: 9,
            },
            gates_open_at_reset: 0,
        };
        let boot = || {
            let mut tzc = Tzc400::new(model::Model::new(cfg)).unwrap();
            let ns = IdMask(1 << 0 | 1 << 1 | 1 << 8 | 1 << 9 | 1 << 15);
            let gib = 1u64 << 30;
            let regions = [
                Region::secure_rw(0xff00_0000, 0x100_0000, 1).unwrap(),
                Region::ns_rw(0x8000_0000, 0x7f00_0000, ns, 1).unwrap(),
                Region::ns_rw(0x8_8000_0000, 30 * gib, ns, 1).unwrap(),
                Region::ns_rw(0x88_0000_0000, 480 * gib, ns, 1).unwrap(),
                Region::ns_rw(0x880_0000_0000, 7680 * gib, ns, 1).unwrap(),
                Region::ns_rw(0x8800_0000_0000, 120 * 1024 * gib, ns, 1).unwrap(),
                Region::ns_rw(0x8_8000_0000_0000, 1920 * 1024 * gib, ns, 1).unwrap(),
            ];
            tzc.configure_region0(Access::NONE, NsAccess::NONE).unwrap();
            for (i, r) in regions.iter().enumerate() {
                tzc.program(RegionIndex(i as u8 + 1), r).unwrap();
            }
            tzc.set_action(Action::from_bits(2));
            tzc.set_gates(0xf).unwrap();
            tzc400(tzc.into_inner()).unwrap()
        };
        let mut p = boot();
        assert_eq!((p.regions_used(), p.regions_free()), (6, 1));
        let top = 0xff00_0000;
        // Layers lent from the top of the window downwards: one secure region throughout.
        for l in 1..=8 {
            p.secure(1, top - l * MIB..top - (l - 1) * MIB).unwrap();
            assert_eq!((p.regions_used(), p.owner_extents(1)), (7, 1), "layer {l}");
        }
        assert_eq!(
            p.secure(2, 0xf700_0000..0xf710_0000),
            Err(ExtentError::BudgetExhausted)
        );
        // An extent in the middle of NS DRAM1 needs region 2 split in two: no room at all.
        let mut p = boot();
        assert_eq!(
            p.secure(1, 0xf700_0000..0xf710_0000),
            Err(ExtentError::BudgetExhausted)
        );
    }
}
