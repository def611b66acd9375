//! Host rig for the testbed NPU: the driver talks to the device model through an in-memory bus;
//! the model's DMA goes to a flat memory with denied IOVA ranges and a log of every access.
#![allow(dead_code)]

use npu_driver::testbed::{Dma, DmaFault, DmaFaultKind, NpuBus, TestbedNpu, TestbedNpuModel};
use std::ops::Range;

/// A deterministic xorshift64* generator (no external crates).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn i8(&mut self) -> i8 {
        (self.next_u64() >> 56) as i8
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub iova: u64,
    pub len: usize,
    pub fault: Option<DmaFault>,
}

/// Memory at IOVA `base..base + bytes.len()`; anything outside is a bus error.
pub struct Mem {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub denied: Vec<(Range<u64>, DmaFaultKind)>,
    pub log: Vec<Access>,
}

impl Mem {
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
            denied: Vec::new(),
            log: Vec::new(),
        }
    }

    pub fn deny(&mut self, r: Range<u64>, kind: DmaFaultKind) {
        self.denied.push((r, kind));
    }

    /// The first denied byte of `iova..iova + len`, if any.
    fn check(&self, iova: u64, len: usize) -> Option<DmaFault> {
        let end = iova + len as u64;
        let mut first: Option<DmaFault> = None;
        let mut consider = |at: u64, kind| {
            if first.is_none_or(|f| at < f.iova) {
                first = Some(DmaFault { kind, iova: at });
            }
        };
        if iova < self.base {
            consider(iova, DmaFaultKind::Bus);
        }
        let top = self.base + self.bytes.len() as u64;
        if end > top {
            consider(iova.max(top), DmaFaultKind::Bus);
        }
        for (r, kind) in &self.denied {
            if r.start < end && iova < r.end {
                consider(r.start.max(iova), *kind);
            }
        }
        first
    }

    pub fn slice(&self, iova: u64, len: usize) -> &[u8] {
        let o = (iova - self.base) as usize;
        &self.bytes[o..o + len]
    }

    pub fn put(&mut self, iova: u64, data: &[u8]) {
        let o = (iova - self.base) as usize;
        self.bytes[o..o + data.len()].copy_from_slice(data);
    }
}

impl Dma for Mem {
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let fault = self.check(iova, buf.len());
        self.log.push(Access {
            write: false,
            iova,
            len: buf.len(),
            fault,
        });
        match fault {
            Some(f) => Err(f),
            None => {
                buf.copy_from_slice(self.slice(iova, buf.len()));
                Ok(())
            }
        }
    }

    fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        let fault = self.check(iova, data.len());
        self.log.push(Access {
            write: true,
            iova,
            len: data.len(),
            fault,
        });
        match fault {
            Some(f) => {
                // Write the allowed prefix, as the contract permits: the tests check that
                // nothing at or beyond the fault changes.
                let ok = (f.iova.saturating_sub(iova) as usize).min(data.len());
                if iova >= self.base && ok > 0 {
                    self.put(iova, &data[..ok]);
                }
                Err(f)
            }
            None => {
                self.put(iova, data);
                Ok(())
            }
        }
    }
}

/// The bus: register accesses go to the model; with `auto_run`, the device (on "its own CPU")
/// runs a doorbelled job before the next register read, so the driver sees it finish.
pub struct Rig {
    pub model: Box<TestbedNpuModel>,
    pub mem: Mem,
    pub auto_run: bool,
    pub reads: usize,
    pub writes: Vec<(usize, u32)>,
}

impl Rig {
    pub fn new(mem: Mem) -> Self {
        Self {
            model: Box::new(TestbedNpuModel::new(7)),
            mem,
            auto_run: true,
            reads: 0,
            writes: Vec::new(),
        }
    }

    pub fn run(&mut self) -> bool {
        self.model.run_pending(&mut self.mem)
    }
}

impl NpuBus for Rig {
    fn read32(&mut self, offset: usize) -> u32 {
        if self.auto_run {
            self.model.run_pending(&mut self.mem);
        }
        self.reads += 1;
        self.model.read32(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.writes.push((offset, value));
        self.model.write32(offset, value);
    }
}

pub const MEM_BASE: u64 = 0x8000_0000;

pub fn npu(mem_len: usize) -> TestbedNpu<Rig> {
    TestbedNpu::new(Rig::new(Mem::new(MEM_BASE, mem_len))).expect("probe")
}
