//! How an FF-A call reaches the partition manager: SMC or HVC, x0-x17 in and out
//! (SMCCC v1.2). Hafnium accepts both from an S-EL1 SP; its paravirtual HF_* calls use HVC.

use crate::Regs;

/// Issues one FF-A call and returns the reply registers.
pub trait Conduit {
    fn call(&mut self, regs: Regs) -> Regs;
}

impl<T: Conduit + ?Sized> Conduit for &mut T {
    fn call(&mut self, regs: Regs) -> Regs {
        (**self).call(regs)
    }
}

/// `smc #0`.
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Smc;

/// `hvc #0`.
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Hvc;

#[cfg(target_arch = "aarch64")]
macro_rules! smccc_call {
    ($insn:literal, $r:ident) => {
        // SAFETY: the SMCCC v1.2 call ABI: x0-x17 are arguments and results, x18 and up
        // are preserved by the callee. The partition manager only reads and writes
        // memory the caller shared with it through FF-A (RX/TX buffers, memory
        // transactions); the caller owns the meaning of each call, so issuing it cannot
        // break Rust's memory model on its own.
        unsafe {
            core::arch::asm!(
                $insn,
                inout("x0") $r[0], inout("x1") $r[1], inout("x2") $r[2], inout("x3") $r[3],
                inout("x4") $r[4], inout("x5") $r[5], inout("x6") $r[6], inout("x7") $r[7],
                inout("x8") $r[8], inout("x9") $r[9], inout("x10") $r[10],
                inout("x11") $r[11], inout("x12") $r[12], inout("x13") $r[13],
                inout("x14") $r[14], inout("x15") $r[15], inout("x16") $r[16],
                inout("x17") $r[17],
                options(nostack),
            );
        }
    };
}

#[cfg(target_arch = "aarch64")]
impl Conduit for Smc {
    fn call(&mut self, mut regs: Regs) -> Regs {
        smccc_call!("smc #0", regs);
        regs
    }
}

#[cfg(target_arch = "aarch64")]
impl Conduit for Hvc {
    fn call(&mut self, mut regs: Regs) -> Regs {
        smccc_call!("hvc #0", regs);
        regs
    }
}
