//! Register-command (regcmd) lists: what the PC fetches by DMA and writes into the core's
//! registers, one 64-bit entry per register write.
//!
//! Entry format (Mesa `rkt_regcmd.c` `emit_raw`; mtx512 `npu_hw.h` `NPUOP`):
//! `target << 48 | value << 16 | register offset`, where `target` is the block's id plus 1
//! for a plain write (PC 0x0101, CNA 0x0201, CORE 0x0801, DPU 0x1001).
//!
//! A task ends with four PC entries (Mesa `fill_first_regcmd`, tail; mtx512
//! `gen_matmul_task`, entries 104..107):
//! 1. `PC_BASE_ADDRESS` <- the next task's regcmd address when tasks are chained, else an
//!    all-zero entry;
//! 2. `PC_REGISTER_AMOUNTS` <- the next task's amount (chained) or 0;
//! 3. `0x0041 << 48`: per the TRM (as quoted in Mesa) required before the enable;
//! 4. target 0x0081, `PC_OPERATION_ENABLE` <- the blocks to enable. mtx512's int8 matmul
//!    enables PC | CNA | DPU (0x0d); Mesa's convolutions add PPU (0x1d). This builder follows
//!    mtx512, whose int8 matmul was run on a board by its author.
//!
//! [`MatmulTask::encode`] lays out the 104 register writes of mtx512's `gen_matmul_task` with
//! the values `gen_matmul_int8` computes, in that order (the goldens in
//! `tests/rknpu_regcmd.rs` are derived from those two functions by hand).

use super::regs::{self, cna, core, dpu, pc, precision};
use crate::JobError;

/// Block ids (the high half of an entry's target).
pub const BLOCK_PC: u16 = 0x0100;
pub const BLOCK_CNA: u16 = 0x0200;
pub const BLOCK_CORE: u16 = 0x0800;
pub const BLOCK_DPU: u16 = 0x1000;
pub const BLOCK_DPU_RDMA: u16 = 0x2000;
pub const BLOCK_PPU: u16 = 0x4000;
pub const BLOCK_PPU_RDMA: u16 = 0x8000;
/// Low bits of a target: a register write.
pub const OP_WRITE: u16 = 0x0001;
/// The entry the TRM wants before the enable (target only).
pub const OP_PRE_ENABLE: u16 = 0x0041;
/// The enable entry's target.
pub const OP_ENABLE: u16 = 0x0081;
/// `PC_OPERATION_ENABLE` bits in the final entry: the PC itself, CNA, DPU, PPU.
pub const ENABLE_PC: u32 = 0x01;
pub const ENABLE_CNA: u32 = 0x04;
pub const ENABLE_DPU: u32 = 0x08;
pub const ENABLE_PPU: u32 = 0x10;

/// Entries of one matmul task: 104 register writes + the 4-entry tail.
pub const TASK_ENTRIES: usize = 108;
/// Bytes between task lists in the command buffer (Mesa aligns each task's list to 64).
pub const TASK_STRIDE: usize = (TASK_ENTRIES * 8).next_multiple_of(64);

/// One regcmd entry.
pub const fn entry(target: u16, reg: usize, value: u32) -> u64 {
    (target as u64) << 48 | (value as u64) << 16 | (reg as u64 & 0xffff)
}

/// `(target, value, register offset)` of an entry.
pub const fn decode(e: u64) -> (u16, u32, usize) {
    ((e >> 48) as u16, (e >> 16) as u32, (e & 0xffff) as usize)
}

/// `PC_REGISTER_AMOUNTS` for a kick of `count` entries, as rocket computes it
/// (`rocket_job_hw_submit`: `(regcmd_count + 1) / 2 - 1`).
pub const fn kick_amount(count: usize) -> u32 {
    (count.div_ceil(2) - 1) as u32
}

/// The amount Mesa patches into a chained task's tail for the next task of `next_count`
/// entries (`compile_operation`: `ALIGN((next_count - 4) / 2, 2)`).
pub const fn chained_amount(next_count: usize) -> u32 {
    ((next_count - 4) / 2).next_multiple_of(2) as u32
}

/// CBUF split of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Banks {
    pub data: u32,
    pub weight: u32,
}

/// One int8 matmul task on one core: `Y (M x N, int32) = X (M x K) * W (N x K)^T`, operands in
/// the native layouts of [`super::layout`], addresses as the core's DMA sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulTask {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub input: u32,
    pub weights: u32,
    pub output: u32,
}

impl MatmulTask {
    /// The CBUF banks the task needs, mtx512's `gen_matmul_int8` rule: feature data in
    /// `ceil(M*K / 32 KiB)` banks (at most 11), one kernel within a bank, the weights in the
    /// rest. Stricter than mtx512 (which does not check it): all `N` kernels must fit in the
    /// weight banks, so nothing depends on unknown weight-refetch behaviour.
    pub fn banks(&self) -> Result<Banks, JobError> {
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(JobError::ZeroDimension);
        }
        let fd = u64::from(self.m) * u64::from(self.k);
        let data = fd.div_ceil(u64::from(regs::CBUF_BANK_BYTES));
        if data > u64::from(regs::CBUF_BANKS - 1) || self.k > regs::CBUF_BANK_BYTES {
            return Err(JobError::TooLarge);
        }
        let weight = regs::CBUF_BANKS - data as u32;
        let wbytes = u64::from(self.n) * u64::from(self.k);
        if wbytes > u64::from(weight) * u64::from(regs::CBUF_BANK_BYTES) {
            return Err(JobError::TooLarge);
        }
        Ok(Banks {
            data: data as u32,
            weight,
        })
    }

    /// The task's regcmd list, unchained (tail entry 0 all-zero, next amount 0).
    pub fn encode(&self) -> Result<[u64; TASK_ENTRIES], JobError> {
        let banks = self.banks()?;
        let (m, k, n) = (self.m, self.k, self.n);
        let mut out = [0u64; TASK_ENTRIES];
        let mut i = 0;
        let mut put = |target: u16, reg: usize, value: u32| {
            out[i] = entry(target | OP_WRITE, reg, value);
            i += 1;
        };
        let (c, co, d) = (BLOCK_CNA, BLOCK_CORE, BLOCK_DPU);
        put(d, dpu::S_POINTER, regs::s_pointer::PING_PONG);
        // CNA. Direct convolution (mode 0) of an M x 1 "image" with K channels by N 1x1
        // kernels; int8 in, int8 processing.
        put(
            c,
            cna::CONV_CON1,
            precision::INT8 << 7 | precision::INT8 << 4,
        );
        put(c, cna::CONV_CON2, ((m + 1) & 0x3ff) << 4); // feature grains, kernel groups 0
        put(c, cna::CONV_CON3, 1 << 3 | 1); // y / x stride 1
        put(c, cna::DATA_SIZE0, 1 << 16 | (m & 0x7ff)); // width 1, height M
        put(c, cna::DATA_SIZE1, ((k - 1) & 0xffff) << 16 | (k & 0xffff));
        put(c, cna::DATA_SIZE2, 1); // output width
        put(c, cna::DATA_SIZE3, m & 0x3ffff); // output atomics = width * height
        put(c, cna::WEIGHT_SIZE0, k.wrapping_mul(n)); // weight bytes
        put(c, cna::WEIGHT_SIZE1, k & 0x7ffff); // bytes per kernel
        put(c, cna::WEIGHT_SIZE2, 1 << 24 | 1 << 16 | (n & 0x3fff)); // 1x1 kernels, N
        put(
            c,
            cna::CBUF_CON0,
            (banks.weight & 0xf) << 4 | (banks.data & 0xf),
        );
        put(c, cna::CBUF_CON1, k.div_ceil(64) & 0x1fff); // data entries
        put(c, cna::CVT_CON0, 1 << 3 | 1 << 1 | 1); // data sign, cvt type, cvt bypass
        for reg in [cna::CVT_CON1, cna::CVT_CON2, cna::CVT_CON3, cna::CVT_CON4] {
            put(c, reg, 1 << 16); // scale 1
        }
        put(c, cna::FC_CON0, 0);
        put(c, cna::FC_CON1, 0);
        put(c, cna::PAD_CON0, 0);
        put(c, cna::FEATURE_DATA_ADDR, self.input);
        put(c, cna::FC_CON2, 0);
        put(c, cna::DMA_CON0, 0xf << 16 | 0xf); // weight / data burst length
        put(c, cna::DMA_CON1, 4); // line stride = width * 4
        put(c, cna::DMA_CON2, surf_stride(m));
        put(c, cna::FC_DATA_SIZE0, 1 << 16 | (m & 0x7ff));
        put(c, cna::FC_DATA_SIZE1, k & 0xffff);
        put(c, cna::DCOMP_CTRL, 0);
        put(c, cna::DCOMP_REGNUM, 0);
        put(c, cna::DCOMP_ADDR0, self.weights);
        for a in 0..16 {
            put(c, cna::DCOMP_AMOUNT0 + 4 * a, 0);
        }
        put(c, cna::CVT_CON5, 0);
        put(c, cna::PAD_CON1, 0);
        // CORE: int8, no dequantisation; output cube (width 1) x M x N.
        put(co, core::MISC_CFG, precision::INT8 << 8);
        put(co, core::DATAOUT_SIZE_0, ((m - 1) & 0xffff) << 16);
        put(co, core::DATAOUT_SIZE_1, (n - 1) & 0xffff);
        put(co, core::CLIP_TRUNCATE, 0);
        put(co, core::UNDOCUMENTED_3030, 0);
        // DPU: every stage bypassed, int32 written to memory (output mode 2).
        put(d, dpu::FEATURE_MODE_CFG, 0xf << 5 | 2 << 1);
        put(
            d,
            dpu::DATA_FORMAT,
            precision::INT32 << 29 | precision::INT8 << 26,
        );
        put(d, dpu::OFFSET_PEND, 0);
        put(d, dpu::DST_BASE_ADDR, self.output);
        put(d, dpu::DST_SURF_STRIDE, (m & 0x0fff_ffff) << 4);
        put(d, dpu::DATA_CUBE_WIDTH, 0);
        put(d, dpu::DATA_CUBE_HEIGHT, (m - 1) & 0x1fff);
        put(d, dpu::DATA_CUBE_NOTCH_ADDR, 0);
        put(
            d,
            dpu::DATA_CUBE_CHANNEL,
            ((n - 1) & 0x1fff) << 16 | ((n - 1) & 0x1fff),
        );
        const BYPASS: u32 = 1 << 6 | 1 << 4 | 1 << 1 | 1; // relu, mul, alu, stage
        put(d, dpu::BS_CFG, BYPASS);
        put(d, dpu::BS_ALU_CFG, 0);
        put(d, dpu::BS_MUL_CFG, 0);
        put(d, dpu::BS_RELUX_CMP_VALUE, 0);
        put(d, dpu::BS_OW_CFG, 7 << 8 | 7 << 5 | 7 << 2 | 1 << 1); // size_e 7 x3, od bypass
        put(d, dpu::BS_OW_OP, 0);
        put(d, dpu::WDMA_SIZE_0, (n - 1) & 0x1fff);
        put(d, dpu::WDMA_SIZE_1, ((m - 1) & 0x1fff) << 16);
        put(d, dpu::BN_CFG, BYPASS);
        put(d, dpu::BN_ALU_CFG, 0);
        put(d, dpu::BN_MUL_CFG, 0);
        put(d, dpu::BN_RELUX_CMP_VALUE, 0);
        put(d, dpu::EW_CFG, 1 << 9 | 1 << 8 | 1 << 7 | 1 << 1 | 1); // all EW bypassed
        put(d, dpu::EW_CVT_OFFSET_VALUE, 0);
        put(d, dpu::EW_CVT_SCALE_VALUE, 1);
        put(d, dpu::EW_RELUX_CMP_VALUE, 0);
        put(d, dpu::OUT_CVT_OFFSET, 0);
        put(d, dpu::OUT_CVT_SCALE, 1); // no fp32 -> fp16
        put(d, dpu::OUT_CVT_SHIFT, 0);
        for e in 0..8 {
            put(d, dpu::EW_OP_VALUE_0 + 4 * e, 0);
        }
        put(d, dpu::SURFACE_ADD, ((m * 8) & 0x0fff_ffff) << 4);
        put(d, dpu::UNDOCUMENTED_40C4, 0);
        for l in 0..dpu::LUT_REGS {
            put(d, dpu::LUT_ACCESS_CFG + 4 * l, 0);
        }
        debug_assert_eq!(i, TASK_ENTRIES - 4);
        out[TASK_ENTRIES - 4] = 0;
        out[TASK_ENTRIES - 3] = entry(BLOCK_PC | OP_WRITE, pc::REGISTER_AMOUNTS, 0);
        out[TASK_ENTRIES - 2] = (OP_PRE_ENABLE as u64) << 48;
        out[TASK_ENTRIES - 1] = entry(
            OP_ENABLE,
            pc::OPERATION_ENABLE,
            ENABLE_DPU | ENABLE_CNA | ENABLE_PC,
        );
        Ok(out)
    }
}

/// `CNA_DMA_CON2` surface stride as mtx512 computes it: `line_stride * (M / 4 - 1)` with line
/// stride 4, plus one if that is negative (M < 4), kept to 28 bits. For M = 1 this is
/// 0x0fff_fffd: odd, but it is what ran on the board.
fn surf_stride(m: u32) -> u32 {
    let s = 4 * (i64::from(m / 4) - 1);
    let s = if s < 0 { s + 1 } else { s };
    (s as u32) & 0x0fff_ffff
}

/// Chains `list` to a next task (Mesa `compile_operation`): its tail's first entry becomes a
/// `PC_BASE_ADDRESS` write of `next_addr` and the second carries the next task's amount.
pub fn chain(list: &mut [u64; TASK_ENTRIES], next_addr: u32, next_count: usize) {
    list[TASK_ENTRIES - 4] = entry(BLOCK_PC | OP_WRITE, pc::BASE_ADDRESS, next_addr);
    list[TASK_ENTRIES - 3] = entry(
        BLOCK_PC | OP_WRITE,
        pc::REGISTER_AMOUNTS,
        chained_amount(next_count),
    );
}
