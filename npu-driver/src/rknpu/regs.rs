//! RKNPU register offsets and fields, per core (offsets from the core's 64 KiB MMIO base).
//!
//! Sources (facts, re-expressed here; no text copied):
//! - PC block, interrupt bits, `S_POINTER` bits, `TASK_CON` fields: Linux
//!   `drivers/accel/rocket/rocket_registers.h` (generated from Mesa
//!   `src/gallium/drivers/rocket/registers.xml`).
//! - CNA / CORE / DPU register offsets used by the int8 matmul: mtx512/rk3588-npu
//!   `include/npu_hw.h` (from RK3588 TRM V1.0), cross-checked for `DPU_DST_BASE_ADDR` 0x4020,
//!   `CNA_S_POINTER` 0x1004 and the PC block against `rocket_registers.h`.
//! - Core bases and interrupts: mainline `rk3588-base.dtsi` (platform-facts.md sec. 8).

/// MMIO base of each core (each 64 KiB: PC at +0, CNA +0x1000, CORE +0x3000, DPU +0x4000).
pub const CORE_BASES: [u64; 3] = [0xfdab_0000, 0xfdac_0000, 0xfdad_0000];
/// GIC SPI of each core's interrupt.
pub const CORE_SPIS: [u32; 3] = [110, 111, 112];
/// Number of NPU cores on RK3588.
pub const CORES: usize = 3;

/// Block bases inside a core.
pub const PC_BASE: usize = 0x0000;
pub const CNA_BASE: usize = 0x1000;
pub const CORE_BASE: usize = 0x3000;
pub const DPU_BASE: usize = 0x4000;

/// PC ("program counter" frontend: fetches regcmd lists by DMA).
pub mod pc {
    pub const VERSION: usize = 0x0000;
    pub const VERSION_NUM: usize = 0x0004;
    /// Bit 0 OP_EN: start fetching / executing.
    pub const OPERATION_ENABLE: usize = 0x0008;
    /// Bits 31:4: regcmd address (16-byte aligned); bit 0 PC_SEL.
    pub const BASE_ADDRESS: usize = 0x0010;
    /// Bits 15:0 PC_DATA_AMOUNT: regcmd entries to fetch, in pairs, minus one.
    pub const REGISTER_AMOUNTS: usize = 0x0014;
    pub const INTERRUPT_MASK: usize = 0x0020;
    /// Write 1s to clear.
    pub const INTERRUPT_CLEAR: usize = 0x0024;
    pub const INTERRUPT_STATUS: usize = 0x0028;
    pub const INTERRUPT_RAW_STATUS: usize = 0x002c;
    pub const TASK_CON: usize = 0x0030;
    pub const TASK_DMA_BASE_ADDR: usize = 0x0034;
    pub const TASK_STATUS: usize = 0x003c;

    /// `TASK_CON` fields.
    pub const TASK_CON_TASK_NUMBER_MASK: u32 = 0xfff;
    pub const TASK_CON_TASK_PP_EN: u32 = 1 << 12;
    pub const TASK_CON_TASK_COUNT_CLEAR: u32 = 1 << 13;
    /// Bit 14, "reserved" in the register file; rocket sets it.
    pub const TASK_CON_RESERVED_14: u32 = 1 << 14;
}

/// Interrupt bits of `INTERRUPT_MASK` / `_CLEAR` / `_STATUS` / `_RAW_STATUS`.
pub mod int {
    pub const CNA_FEATURE_0: u32 = 1 << 0;
    pub const CNA_FEATURE_1: u32 = 1 << 1;
    pub const CNA_WEIGHT_0: u32 = 1 << 2;
    pub const CNA_WEIGHT_1: u32 = 1 << 3;
    pub const CNA_CSC_0: u32 = 1 << 4;
    pub const CNA_CSC_1: u32 = 1 << 5;
    pub const CORE_0: u32 = 1 << 6;
    pub const CORE_1: u32 = 1 << 7;
    /// DPU finished writing the output of the (ping / pong) register group: the task is done.
    pub const DPU_0: u32 = 1 << 8;
    pub const DPU_1: u32 = 1 << 9;
    pub const PPU_0: u32 = 1 << 10;
    pub const PPU_1: u32 = 1 << 11;
    pub const DMA_READ_ERROR: u32 = 1 << 12;
    pub const DMA_WRITE_ERROR: u32 = 1 << 13;
    /// What rocket writes to `INTERRUPT_CLEAR` after a task: every bit up to 16.
    pub const CLEAR_ALL: u32 = 0x1ffff;
    pub const DPU_DONE: u32 = DPU_0 | DPU_1;
    pub const DMA_ERROR: u32 = DMA_READ_ERROR | DMA_WRITE_ERROR;
}

/// `S_POINTER` bits (CNA, CORE, DPU): register-group ping-pong control.
pub mod s_pointer {
    pub const POINTER: u32 = 1 << 0;
    pub const POINTER_PP_EN: u32 = 1 << 1;
    pub const EXECUTER_PP_EN: u32 = 1 << 2;
    pub const POINTER_PP_MODE: u32 = 1 << 3;
    /// PP_EN | EXECUTER_PP_EN | PP_MODE (0xE), as rocket and mtx512 set it.
    pub const PING_PONG: u32 = POINTER_PP_EN | EXECUTER_PP_EN | POINTER_PP_MODE;
    /// Per-core "reserved" bits rocket adds (from the vendor driver): `0x1000_0000 * core`.
    pub const CORE_BIT: u32 = 0x1000_0000;
}

/// CNA (convolution / matrix input: feature and weight fetch into the CBUF).
pub mod cna {
    pub const S_STATUS: usize = 0x1000;
    pub const S_POINTER: usize = 0x1004;
    pub const CONV_CON1: usize = 0x100c;
    pub const CONV_CON2: usize = 0x1010;
    pub const CONV_CON3: usize = 0x1014;
    pub const DATA_SIZE0: usize = 0x1020;
    pub const DATA_SIZE1: usize = 0x1024;
    pub const DATA_SIZE2: usize = 0x1028;
    pub const DATA_SIZE3: usize = 0x102c;
    pub const WEIGHT_SIZE0: usize = 0x1030;
    pub const WEIGHT_SIZE1: usize = 0x1034;
    pub const WEIGHT_SIZE2: usize = 0x1038;
    pub const CBUF_CON0: usize = 0x1040;
    pub const CBUF_CON1: usize = 0x1044;
    pub const CVT_CON0: usize = 0x104c;
    pub const CVT_CON1: usize = 0x1050;
    pub const CVT_CON2: usize = 0x1054;
    pub const CVT_CON3: usize = 0x1058;
    pub const CVT_CON4: usize = 0x105c;
    pub const FC_CON0: usize = 0x1060;
    pub const FC_CON1: usize = 0x1064;
    pub const PAD_CON0: usize = 0x1068;
    pub const FEATURE_DATA_ADDR: usize = 0x1070;
    pub const FC_CON2: usize = 0x1074;
    pub const DMA_CON0: usize = 0x1078;
    pub const DMA_CON1: usize = 0x107c;
    pub const DMA_CON2: usize = 0x1080;
    pub const FC_DATA_SIZE0: usize = 0x1084;
    pub const FC_DATA_SIZE1: usize = 0x1088;
    pub const DCOMP_CTRL: usize = 0x1100;
    pub const DCOMP_REGNUM: usize = 0x1104;
    /// Weight base address.
    pub const DCOMP_ADDR0: usize = 0x1110;
    /// DCOMP_AMOUNT0..15 at 0x1140 + 4 i.
    pub const DCOMP_AMOUNT0: usize = 0x1140;
    pub const CVT_CON5: usize = 0x1180;
    pub const PAD_CON1: usize = 0x1184;
}

/// CORE (the MAC array).
pub mod core {
    pub const S_STATUS: usize = 0x3000;
    pub const S_POINTER: usize = 0x3004;
    pub const MISC_CFG: usize = 0x3010;
    pub const DATAOUT_SIZE_0: usize = 0x3014;
    pub const DATAOUT_SIZE_1: usize = 0x3018;
    pub const CLIP_TRUNCATE: usize = 0x301c;
    /// Undocumented; both mtx512 and Mesa write 0 to it.
    pub const UNDOCUMENTED_3030: usize = 0x3030;
}

/// DPU (output post-processing and write-back).
pub mod dpu {
    pub const S_STATUS: usize = 0x4000;
    pub const S_POINTER: usize = 0x4004;
    pub const FEATURE_MODE_CFG: usize = 0x400c;
    pub const DATA_FORMAT: usize = 0x4010;
    pub const OFFSET_PEND: usize = 0x4014;
    pub const DST_BASE_ADDR: usize = 0x4020;
    pub const DST_SURF_STRIDE: usize = 0x4024;
    pub const DATA_CUBE_WIDTH: usize = 0x4030;
    pub const DATA_CUBE_HEIGHT: usize = 0x4034;
    pub const DATA_CUBE_NOTCH_ADDR: usize = 0x4038;
    pub const DATA_CUBE_CHANNEL: usize = 0x403c;
    pub const BS_CFG: usize = 0x4040;
    pub const BS_ALU_CFG: usize = 0x4044;
    pub const BS_MUL_CFG: usize = 0x4048;
    pub const BS_RELUX_CMP_VALUE: usize = 0x404c;
    pub const BS_OW_CFG: usize = 0x4050;
    pub const BS_OW_OP: usize = 0x4054;
    pub const WDMA_SIZE_0: usize = 0x4058;
    pub const WDMA_SIZE_1: usize = 0x405c;
    pub const BN_CFG: usize = 0x4060;
    pub const BN_ALU_CFG: usize = 0x4064;
    pub const BN_MUL_CFG: usize = 0x4068;
    pub const BN_RELUX_CMP_VALUE: usize = 0x406c;
    pub const EW_CFG: usize = 0x4070;
    pub const EW_CVT_OFFSET_VALUE: usize = 0x4074;
    pub const EW_CVT_SCALE_VALUE: usize = 0x4078;
    pub const EW_RELUX_CMP_VALUE: usize = 0x407c;
    pub const OUT_CVT_OFFSET: usize = 0x4080;
    pub const OUT_CVT_SCALE: usize = 0x4084;
    pub const OUT_CVT_SHIFT: usize = 0x4088;
    /// EW_OP_VALUE_0..7 at 0x4090 + 4 i.
    pub const EW_OP_VALUE_0: usize = 0x4090;
    pub const SURFACE_ADD: usize = 0x40c0;
    /// Undocumented; both mtx512 and Mesa write 0 to it.
    pub const UNDOCUMENTED_40C4: usize = 0x40c4;
    /// LUT_ACCESS_CFG .. LUT_LO_SLOPE_SHIFT: twelve registers from 0x4100.
    pub const LUT_ACCESS_CFG: usize = 0x4100;
    pub const LUT_REGS: usize = 12;
}

/// Precision codes of the `*_PRECISION` fields.
pub mod precision {
    pub const INT8: u32 = 0;
    pub const FLOAT16: u32 = 2;
    pub const INT32: u32 = 4;
    pub const FLOAT32: u32 = 5;
}

/// CBUF: 12 banks of 32 KiB per core, shared between feature data and weights.
pub const CBUF_BANKS: u32 = 12;
pub const CBUF_BANK_BYTES: u32 = 32 * 1024;
