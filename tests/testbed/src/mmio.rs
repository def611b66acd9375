//! Stage-2 data aborts as MMIO accesses: the decoding the SPMC needs to emulate a device (the
//! later TZC-400, SMMUv3 and NPU models) behind an unmapped IPA range, or to report a blocked
//! access with its address, size and direction.
//!
//! ESR_ELx ISS for a data abort (Arm ARM D24.2.40, EC 0x24): ISV[24], SAS[23:22], SSE[21],
//! SRT[20:16], SF[15], AR[14], WnR[6], DFSC[5:0]. The faulting IPA is HPFAR_EL2.FIPA (IPA[51:12]
//! in bits [43:4]) plus FAR_EL2[11:0].

/// EC of a data abort from a lower exception level.
pub const EC_DABT_LOWER: u64 = 0x24;

/// One decoded access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub ipa: u64,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    pub write: bool,
    /// The general register transferred (31 = XZR/WZR).
    pub reg: u8,
    /// Sign-extend a load (SSE).
    pub sign_extend: bool,
    /// The register is 64-bit (SF); else a load writes a zero-extended W register.
    pub sixty_four: bool,
}

/// Why an abort cannot be emulated (it is then an SP failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotEmulable {
    /// Not a data abort from a lower EL.
    NotDataAbort(u64),
    /// ISV = 0: the syndrome does not describe the access (load/store pair, writeback, SIMD).
    NoSyndrome,
    /// Not a translation fault (permission, access flag, external abort: DFSC).
    Fault(u8),
}

/// Decodes a stage-2 data abort taken to EL2 (a translation fault: an unmapped device).
pub fn decode(esr: u64, hpfar: u64, far: u64) -> Result<Access, NotEmulable> {
    decode_fault(esr, hpfar, far, false)
}

/// Whether the abort is a permission fault (DFSC 0b0011xx, level 0-3).
pub fn is_permission_fault(esr: u64) -> bool {
    esr & 0b11_1100 == 0b00_1100
}

/// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA plus FAR\[11:0\].
pub fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    ((hpfar >> 4) & 0xff_ffff_ffff) << 12 | (far & 0xfff)
}

/// HPFAR_EL2.NS (bit 63, FEAT_SEL2): the faulting IPA is in the NS IPA space.
pub fn fault_ipa_ns(hpfar: u64) -> bool {
    hpfar >> 63 != 0
}

/// As [`decode`]; with `permission` a permission fault is accepted too (an access the
/// stage-2 allows only partly, e.g. a store to a page the firewall makes read-only).
pub fn decode_fault(
    esr: u64,
    hpfar: u64,
    far: u64,
    permission: bool,
) -> Result<Access, NotEmulable> {
    if esr >> 26 != EC_DABT_LOWER {
        return Err(NotEmulable::NotDataAbort(esr >> 26));
    }
    if esr & (1 << 24) == 0 {
        return Err(NotEmulable::NoSyndrome);
    }
    let dfsc = (esr & 0x3f) as u8;
    // Translation fault, level 0-3 (or permission fault if accepted).
    let translation = dfsc & 0b11_1100 == 0b00_0100;
    if !(translation || permission && is_permission_fault(esr)) {
        return Err(NotEmulable::Fault(dfsc));
    }
    Ok(Access {
        ipa: fault_ipa(hpfar, far),
        size: 1 << ((esr >> 22) & 0b11),
        write: esr & (1 << 6) != 0,
        reg: ((esr >> 16) & 0x1f) as u8,
        sign_extend: esr & (1 << 21) != 0,
        sixty_four: esr & (1 << 15) != 0,
    })
}

/// An emulated MMIO device at a fixed IPA range (the SPMC leaves the range out of stage 2).
pub trait Device {
    /// Base IPA and size of the register block.
    fn range(&self) -> (u64, u64);
    /// A read of `size` bytes at `offset` into the block.
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// A write of `size` bytes (`value` truncated to them) at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
}

/// Performs `a` on whichever of `devices` covers it, reading and writing the trapped vCPU's
/// general registers `x` (x0-x30). Returns false if no device covers the access; the caller
/// then treats the abort as a failure. On success the caller steps ELR over the instruction.
pub fn emulate(a: &Access, devices: &mut [&mut dyn Device], x: &mut [u64; 31]) -> bool {
    let Some(dev) = devices.iter_mut().find(|d| {
        let (base, len) = d.range();
        a.ipa >= base && a.ipa.saturating_add(u64::from(a.size)) <= base.saturating_add(len)
    }) else {
        return false;
    };
    let offset = a.ipa - dev.range().0;
    let bits = u32::from(a.size) * 8;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let reg = usize::from(a.reg);
    if a.write {
        let v = if reg == 31 { 0 } else { x[reg] };
        dev.write(offset, a.size, v & mask);
    } else {
        let mut v = dev.read(offset, a.size) & mask;
        if a.sign_extend && bits < 64 && v >> (bits - 1) & 1 == 1 {
            v |= !mask;
        }
        if !a.sixty_four {
            v &= 0xffff_ffff;
        }
        if reg != 31 {
            x[reg] = v;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ESR of a data abort with a valid syndrome.
    fn esr(sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool, dfsc: u64) -> u64 {
        EC_DABT_LOWER << 26
            | 1 << 25
            | 1 << 24
            | sas << 22
            | u64::from(sse) << 21
            | srt << 16
            | u64::from(sf) << 15
            | u64::from(wnr) << 6
            | dfsc
    }

    #[test]
    fn decodes_a_translation_fault() {
        // `str w3, [x1, #0x10]` to 0x2a4a_0010, level-3 translation fault.
        let a = decode(
            esr(2, false, 3, false, true, 0b000111),
            0x2a4a0 << 4,
            0x2a4a_0010,
        )
        .unwrap();
        assert_eq!(
            a,
            Access {
                ipa: 0x2a4a_0010,
                size: 4,
                write: true,
                reg: 3,
                sign_extend: false,
                sixty_four: false
            }
        );
        // The QEMU-observed stage-2 fault of the bring-up SP (ESR 0x93c08007).
        let a = decode(0x93c0_8007, 0xe500 << 4, 0x0e50_0000).unwrap();
        assert_eq!((a.ipa, a.size, a.write, a.reg), (0x0e50_0000, 8, false, 0));
    }

    #[test]
    fn refuses_what_it_cannot_emulate() {
        assert_eq!(
            decode(0x5e00_0000, 0, 0),
            Err(NotEmulable::NotDataAbort(0x17))
        );
        let no_isv = esr(2, false, 3, false, true, 0b000111) & !(1 << 24);
        assert_eq!(decode(no_isv, 0, 0), Err(NotEmulable::NoSyndrome));
        let permission = esr(2, false, 3, false, true, 0b001111);
        assert_eq!(decode(permission, 0, 0), Err(NotEmulable::Fault(0b001111)));
    }

    struct Regs32 {
        base: u64,
        regs: [u32; 4],
        writes: usize,
    }
    impl Device for Regs32 {
        fn range(&self) -> (u64, u64) {
            (self.base, 16)
        }
        fn read(&mut self, offset: u64, _size: u8) -> u64 {
            u64::from(self.regs[(offset / 4) as usize])
        }
        fn write(&mut self, offset: u64, _size: u8, value: u64) {
            self.regs[(offset / 4) as usize] = value as u32;
            self.writes += 1;
        }
    }

    #[test]
    fn emulates_loads_and_stores() {
        let mut d = Regs32 {
            base: 0x1000,
            regs: [0, 0x8000_0001, 0, 0],
            writes: 0,
        };
        let mut x = [0u64; 31];
        x[5] = 0xdead_beef_1234_5678;
        let store = decode(esr(2, false, 5, false, true, 7), 0x1 << 4, 0x1008).unwrap();
        assert!(emulate(&store, &mut [&mut d], &mut x));
        assert_eq!(d.regs[2], 0x1234_5678, "32-bit store truncates");
        // ldrsw x7, [..4]: sign-extended into a 64-bit register.
        let ldrsw = decode(esr(2, true, 7, true, false, 7), 0x1 << 4, 0x1004).unwrap();
        assert!(emulate(&ldrsw, &mut [&mut d], &mut x));
        assert_eq!(x[7], 0xffff_ffff_8000_0001);
        // ldr w8: zero-extended.
        let ldr = decode(esr(2, false, 8, false, false, 7), 0x1 << 4, 0x1004).unwrap();
        assert!(emulate(&ldr, &mut [&mut d], &mut x));
        assert_eq!(x[8], 0x8000_0001);
        // str wzr writes zero; outside the block nothing happens.
        let zr = decode(esr(2, false, 31, false, true, 7), 0x1 << 4, 0x1004).unwrap();
        assert!(emulate(&zr, &mut [&mut d], &mut x));
        assert_eq!(d.regs[1], 0);
        let outside = decode(esr(2, false, 5, false, true, 7), 0x1 << 4, 0x1010).unwrap();
        assert!(!emulate(&outside, &mut [&mut d], &mut x));
        let straddles = decode(esr(3, false, 5, true, true, 7), 0x1 << 4, 0x100c).unwrap();
        assert!(!emulate(&straddles, &mut [&mut d], &mut x));
        assert_eq!(d.writes, 2);
    }
}
