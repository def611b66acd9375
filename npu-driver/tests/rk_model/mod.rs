//! A tiny RKNPU register model for the host tests, written from the same public reading as the
//! driver (rocket's submit sequence, mtx512's matmul registers and layouts): per-core register
//! files, the PC fetching a regcmd list from memory when OPERATION_ENABLE is set, the matmul it
//! describes executed on flat memory, and the DPU / DMA-error interrupt bits. It knows nothing
//! about real hardware timing or any behaviour the sources do not describe.
#![allow(dead_code)]

use npu_driver::rknpu::RkBus;
use npu_driver::rknpu::regs::{cna, dpu, int, pc};
use std::collections::HashMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    pub core: usize,
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub x: u32,
    pub w: u32,
    pub y: u32,
}

#[derive(Default)]
pub struct CoreModel {
    pub regs: HashMap<usize, u32>,
    pub raw: u32,
    pub writes: Vec<(usize, u32)>,
    pub tasks_run: u32,
}

pub struct RkModel {
    pub cores: [CoreModel; 3],
    pub mem_base: u32,
    pub mem: Vec<u8>,
    pub cmd_iova: u32,
    pub executed: Vec<Executed>,
    /// Protocol violations the model noticed (a test asserts none).
    pub errors: Vec<String>,
}

impl RkModel {
    pub fn new(mem_base: u32, mem_len: usize, cmd_iova: u32) -> Self {
        Self {
            cores: Default::default(),
            mem_base,
            mem: vec![0; mem_len],
            cmd_iova,
            executed: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn in_mem(&self, iova: u64, len: u64) -> Option<usize> {
        let o = iova.checked_sub(u64::from(self.mem_base))?;
        (o + len <= self.mem.len() as u64).then_some(o as usize)
    }

    pub fn slice(&self, iova: u32, len: usize) -> &[u8] {
        let o = self.in_mem(iova.into(), len as u64).expect("in memory");
        &self.mem[o..o + len]
    }

    pub fn put(&mut self, iova: u32, data: &[u8]) {
        let o = self
            .in_mem(iova.into(), data.len() as u64)
            .expect("in memory");
        self.mem[o..o + data.len()].copy_from_slice(data);
    }

    fn reg(&self, c: usize, r: usize) -> u32 {
        self.cores[c].regs.get(&r).copied().unwrap_or(0)
    }

    /// The PC: fetch `(amount + 1) * 2` entries at BASE_ADDRESS, apply them, then run.
    fn operation_enable(&mut self, c: usize) {
        let base = self.reg(c, pc::BASE_ADDRESS);
        let count = (self.reg(c, pc::REGISTER_AMOUNTS) as usize + 1) * 2;
        if base == 1 || !base.is_multiple_of(16) {
            self.errors
                .push(format!("core {c}: enable with base {base:#x}"));
        }
        if self.reg(c, pc::TASK_CON) & 0xfff != 1 {
            self.errors.push(format!("core {c}: TASK_NUMBER != 1"));
        }
        let Some(o) = self.in_mem(base.into(), 8 * count as u64) else {
            self.cores[c].raw |= int::DMA_READ_ERROR;
            return;
        };
        let mut pre_enable = false;
        let mut enabled = 0;
        for i in 0..count {
            let e = u64::from_le_bytes(self.mem[o + 8 * i..o + 8 * i + 8].try_into().unwrap());
            let (target, value, reg) = ((e >> 48) as u16, (e >> 16) as u32, (e & 0xffff) as usize);
            match target {
                0 => {}
                0x0041 => pre_enable = true,
                0x0081 => {
                    enabled = value;
                    break;
                }
                t if t & 0xff == 1 => {
                    // PC writes in the tail (chain address, amount) are not applied: one task
                    // per kick, as rocket runs it.
                    if t != 0x0101 {
                        self.cores[c].regs.insert(reg, value);
                    }
                }
                t => self.errors.push(format!("core {c}: unknown target {t:#x}")),
            }
        }
        if !pre_enable || enabled & 0x0d != 0x0d {
            self.errors.push(format!(
                "core {c}: tail pre {pre_enable} enable {enabled:#x}"
            ));
            return;
        }
        self.run_matmul(c);
    }

    fn run_matmul(&mut self, c: usize) {
        let m = self.reg(c, cna::DATA_SIZE0) & 0x7ff;
        let k = self.reg(c, cna::DATA_SIZE1) & 0xffff;
        let n = self.reg(c, cna::WEIGHT_SIZE2) & 0x3fff;
        let x = self.reg(c, cna::FEATURE_DATA_ADDR);
        let w = self.reg(c, cna::DCOMP_ADDR0);
        let y = self.reg(c, dpu::DST_BASE_ADDR);
        let plane = (self.reg(c, dpu::DST_SURF_STRIDE) >> 4) as usize; // atoms per plane = M
        self.executed.push(Executed {
            core: c,
            m,
            k,
            n,
            x,
            w,
            y,
        });
        let (mu, ku, nu) = (m as usize, k as usize, n as usize);
        let (Some(xo), Some(wo)) = (
            self.in_mem(x.into(), (mu * ku) as u64),
            self.in_mem(w.into(), (nu * ku) as u64),
        ) else {
            self.cores[c].raw |= int::DMA_READ_ERROR;
            return;
        };
        let Some(yo) = self.in_mem(y.into(), (mu * nu * 4) as u64) else {
            self.cores[c].raw |= int::DMA_WRITE_ERROR;
            return;
        };
        for mi in 0..mu {
            for ni in 0..nu {
                let mut s = 0i32;
                for ki in 0..ku {
                    // Features: 16-channel planes; weights: 32-kernel groups of 32x32 slices.
                    let xb = xo + (ki / 16) * mu * 16 + mi * 16 + ki % 16;
                    let wb = wo + (ni / 32) * 32 * ku + (ki / 32) * 1024 + (ni % 32) * 32 + ki % 32;
                    s += i32::from(self.mem[xb] as i8) * i32::from(self.mem[wb] as i8);
                }
                let at = yo + 4 * ((ni / 4) * plane * 4 + mi * 4 + ni % 4);
                self.mem[at..at + 4].copy_from_slice(&s.to_le_bytes());
            }
        }
        // Ping-pong: alternate register groups, so both DPU bits are seen.
        let t = self.cores[c].tasks_run;
        self.cores[c].raw |= if t.is_multiple_of(2) {
            int::DPU_0
        } else {
            int::DPU_1
        };
        self.cores[c].tasks_run += 1;
    }
}

impl RkBus for RkModel {
    fn read32(&mut self, core: usize, offset: usize) -> u32 {
        let cm = &self.cores[core];
        match offset {
            pc::INTERRUPT_RAW_STATUS => cm.raw,
            pc::INTERRUPT_STATUS => cm.raw & self.reg(core, pc::INTERRUPT_MASK),
            o => self.reg(core, o),
        }
    }

    fn write32(&mut self, core: usize, offset: usize, value: u32) {
        self.cores[core].writes.push((offset, value));
        match offset {
            pc::INTERRUPT_CLEAR => self.cores[core].raw &= !value,
            pc::OPERATION_ENABLE => {
                self.cores[core].regs.insert(offset, value);
                if value & 1 != 0 {
                    self.operation_enable(core);
                }
            }
            o => {
                self.cores[core].regs.insert(o, value);
            }
        }
    }

    fn write_cmd(&mut self, offset: usize, entries: &[u64]) -> bool {
        let at = u64::from(self.cmd_iova) + offset as u64;
        let Some(o) = self.in_mem(at, 8 * entries.len() as u64) else {
            return false;
        };
        for (i, e) in entries.iter().enumerate() {
            self.mem[o + 8 * i..o + 8 * i + 8].copy_from_slice(&e.to_le_bytes());
        }
        true
    }
}
