//! SMMUv3 secure register page: offsets from the SMMU base, and the fields the driver uses.
//!
//! Source: Arm IHI 0070 (SMMUv3), sec. 6.3 "Register formats" (the `SMMU_S_*` registers live in
//! page 0 at 0x8000 + the non-secure offset; unlike the non-secure event queue, `S_EVENTQ_PROD` and
//! `_CONS` are in page 0 too). Cross-checked against QEMU's `hw/arm/smmuv3-internal.h` secure
//! register additions.

/// `SMMU_IDR1` (non-secure page 0, readable by secure software): queue size limits.
pub const IDR1: usize = 0x0004;
/// Secure ID registers 0..4.
pub const S_IDR0: usize = 0x8000;
pub const S_IDR1: usize = 0x8004;
pub const S_IDR2: usize = 0x8008;
pub const S_IDR3: usize = 0x800c;
pub const S_IDR4: usize = 0x8010;
pub const S_CR0: usize = 0x8020;
pub const S_CR0ACK: usize = 0x8024;
pub const S_CR1: usize = 0x8028;
pub const S_CR2: usize = 0x802c;
pub const S_INIT: usize = 0x803c;
pub const S_GBPA: usize = 0x8044;
pub const S_IRQ_CTRL: usize = 0x8050;
pub const S_IRQ_CTRLACK: usize = 0x8054;
pub const S_GERROR: usize = 0x8060;
pub const S_GERRORN: usize = 0x8064;
pub const S_STRTAB_BASE: usize = 0x8080;
pub const S_STRTAB_BASE_CFG: usize = 0x8088;
pub const S_CMDQ_BASE: usize = 0x8090;
pub const S_CMDQ_PROD: usize = 0x8098;
pub const S_CMDQ_CONS: usize = 0x809c;
pub const S_EVENTQ_BASE: usize = 0x80a0;
pub const S_EVENTQ_PROD: usize = 0x80a8;
pub const S_EVENTQ_CONS: usize = 0x80ac;

/// `S_IDR1.SECURE_IMPL`: the SMMU has a secure programming interface.
pub const S_IDR1_SECURE_IMPL: u32 = 1 << 31;
/// `S_IDR1.SEL2`: secure stage 2 is supported.
pub const S_IDR1_SEL2: u32 = 1 << 29;
/// `S_IDR1.S_SIDSIZE` [5:0]: secure stream-id width.
pub const S_IDR1_SIDSIZE_MASK: u32 = 0x3f;

/// `SMMU_IDR1.EVENTQS` [20:16] and `CMDQS` [25:21]: the largest queue `LOG2SIZE` the SMMU
/// uses (a larger programmed value is capped to it), shared by both security states.
pub const IDR1_EVENTQS_SHIFT: u32 = 16;
pub const IDR1_CMDQS_SHIFT: u32 = 21;
pub const IDR1_QS_MASK: u32 = 0x1f;

/// `S_CR0` / `S_CR0ACK` enables.
pub const CR0_SMMUEN: u32 = 1 << 0;
pub const CR0_EVENTQEN: u32 = 1 << 2;
pub const CR0_CMDQEN: u32 = 1 << 3;

/// `S_CR2.RECINVSID`: record `C_BAD_STREAMID` for secure stream ids outside the stream table
/// (IHI 0070 sec. 6.3.60; without it such transactions abort silently).
pub const CR2_RECINVSID: u32 = 1 << 1;

/// `S_GERROR` / `S_GERRORN` bits (IHI 0070 sec. 6.3.67-68, 7.5). An error is active while
/// `GERROR[x] != GERRORN[x]`; the SMMU toggles `GERROR[x]` only for an inactive error, and
/// software acknowledges by toggling `GERRORN[x]` to match.
///
/// The command queue stopped on an error (see `CONS.ERR`); no commands run while active.
pub const GERROR_CMDQ_ERR: u32 = 1 << 0;
/// A write of the secure event queue aborted; no records are delivered while active.
pub const GERROR_EVENTQ_ABT_ERR: u32 = 1 << 2;
/// A CMD_SYNC MSI write aborted.
pub const GERROR_MSI_CMDQ_ABT_ERR: u32 = 1 << 4;
/// An event queue MSI write aborted.
pub const GERROR_MSI_EVENTQ_ABT_ERR: u32 = 1 << 5;
/// A GERROR MSI write aborted.
pub const GERROR_MSI_GERROR_ABT_ERR: u32 = 1 << 7;
/// The SMMU entered service failure mode (acknowledging does not leave it).
pub const GERROR_SFM_ERR: u32 = 1 << 8;
/// An error on a secure ECMDQ control page.
pub const GERROR_CMDQP_ERR: u32 = 1 << 9;
/// Every bit `S_GERROR` defines (bits 1, 3, 6 and [31:10] are RES0 on the secure side).
pub const S_GERROR_MASK: u32 = GERROR_CMDQ_ERR
    | GERROR_EVENTQ_ABT_ERR
    | GERROR_MSI_CMDQ_ABT_ERR
    | GERROR_MSI_EVENTQ_ABT_ERR
    | GERROR_MSI_GERROR_ABT_ERR
    | GERROR_SFM_ERR
    | GERROR_CMDQP_ERR;

/// `S_EVENTQ_PROD.OVFLG` / `S_EVENTQ_CONS.OVACKFLG` (bit 31; IHI 0070 sec. 6.3.78-79, 7.4):
/// the SMMU toggles OVFLG when it drops a record for a full queue, unless an overflow is
/// already unacknowledged (OVFLG != OVACKFLG); software acknowledges by writing CONS with
/// OVACKFLG = the OVFLG it read.
pub const EVENTQ_OVFLG: u32 = 1 << 31;
/// `S_EVENTQ_PROD.WR` / `CONS.RD` [19:0]: index plus wrap bit.
pub const EVENTQ_PTR_MASK: u32 = (1 << 20) - 1;
/// Bytes per event queue entry.
pub const EVENTQ_ENTRY_BYTES: u64 = 32;

/// `S_GBPA.ABORT`: transactions of streams with no configuration abort while SMMUEN=0.
pub const GBPA_ABORT: u32 = 1 << 20;
/// `S_GBPA.UPDATE`: write 1 with a new value; the SMMU clears it once applied.
pub const GBPA_UPDATE: u32 = 1 << 31;

/// `*_BASE` register: queue / table address bits [51:5] (the stream table uses [51:6]).
pub const BASE_ADDR_MASK: u64 = ((1 << 52) - 1) & !0x1f;
/// `*Q_BASE.LOG2SIZE` [4:0].
pub const QBASE_LOG2SIZE_MASK: u64 = 0x1f;
/// `S_STRTAB_BASE_CFG.LOG2SIZE` [5:0]; `FMT` [17:16] (0 = linear).
pub const STRTAB_CFG_LOG2SIZE_MASK: u32 = 0x3f;
pub const STRTAB_CFG_FMT_SHIFT: u32 = 16;

/// `CMDQ_CONS.ERR` [30:24]: why the command queue stopped.
pub const CONS_ERR_SHIFT: u32 = 24;
pub const CONS_ERR_MASK: u32 = 0x7f << CONS_ERR_SHIFT;

/// `CMDQ_CONS.ERR` values (IHI 0070 sec. 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CmdqError {
    None = 0,
    /// Illegal command: unknown opcode or reserved field set.
    Illegal = 1,
    /// Abort on the command fetch.
    Abort = 2,
    /// ATC invalidation timeout during a CMD_SYNC.
    AtcInvSync = 3,
}

impl CmdqError {
    /// The error field of a `CONS` value; unknown codes are reported as `Illegal`, the
    /// conservative reading.
    pub fn from_cons(cons: u32) -> Self {
        match (cons & CONS_ERR_MASK) >> CONS_ERR_SHIFT {
            0 => Self::None,
            2 => Self::Abort,
            3 => Self::AtcInvSync,
            _ => Self::Illegal,
        }
    }
}
