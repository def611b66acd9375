//! CPU features the kernels care about, and how to find them.
//!
//! - Hosted (`std`): the standard library's `is_*_feature_detected!`.
//! - Bare-metal aarch64 (`target_os = "none"`): `ID_AA64ISAR0_EL1.DP` (bits [47:44]) and
//!   `ID_AA64ISAR1_EL1.I8MM` (bits [55:52]), readable at EL1 and above (Arm ARM D19.2.61/62).
//! - Otherwise: what the compile-time target features promise.

/// Instruction-set extensions relevant to the Q8_0 kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// aarch64 Advanced SIMD.
    pub neon: bool,
    /// aarch64 FEAT_DotProd (`sdot`).
    pub dotprod: bool,
    /// aarch64 FEAT_I8MM (`smmla`).
    pub i8mm: bool,
    /// x86-64 AVX2 with FMA and F16C.
    pub avx2: bool,
    /// x86-64 AVX-512 F/BW/VL with VNNI (plus the AVX2 set).
    pub avx512vnni: bool,
}

impl CpuFeatures {
    /// No extensions: only the scalar kernels.
    pub const NONE: CpuFeatures = CpuFeatures {
        neon: false,
        dotprod: false,
        i8mm: false,
        avx2: false,
        avx512vnni: false,
    };

    /// The features of the running CPU.
    pub fn detect() -> CpuFeatures {
        detect_impl()
    }

    /// Features present in both.
    pub fn intersect(self, o: CpuFeatures) -> CpuFeatures {
        CpuFeatures {
            neon: self.neon && o.neon,
            dotprod: self.dotprod && o.dotprod,
            i8mm: self.i8mm && o.i8mm,
            avx2: self.avx2 && o.avx2,
            avx512vnni: self.avx512vnni && o.avx512vnni,
        }
    }

    /// Decodes aarch64 `ID_AA64ISAR0_EL1` and `ID_AA64ISAR1_EL1` values (NEON is assumed: it is
    /// mandatory in ARMv8-A with FP enabled, and these kernels need it).
    pub fn from_aarch64_id_regs(isar0: u64, isar1: u64) -> CpuFeatures {
        let dp = (isar0 >> 44) & 0xf;
        let i8mm = (isar1 >> 52) & 0xf;
        CpuFeatures {
            neon: true,
            dotprod: dp >= 1,
            i8mm: i8mm >= 1,
            ..CpuFeatures::NONE
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
fn detect_impl() -> CpuFeatures {
    let avx2 = std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c");
    let avx512vnni = avx2
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512vnni");
    CpuFeatures {
        avx2,
        avx512vnni,
        ..CpuFeatures::NONE
    }
}

#[cfg(all(feature = "std", target_arch = "aarch64"))]
fn detect_impl() -> CpuFeatures {
    CpuFeatures {
        neon: std::arch::is_aarch64_feature_detected!("neon"),
        dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
        i8mm: std::arch::is_aarch64_feature_detected!("i8mm"),
        ..CpuFeatures::NONE
    }
}

#[cfg(all(not(feature = "std"), target_arch = "aarch64", target_os = "none"))]
fn detect_impl() -> CpuFeatures {
    let (isar0, isar1) = id_regs::read();
    CpuFeatures::from_aarch64_id_regs(isar0, isar1)
}

/// Compile-time features only (no run-time detection available).
#[cfg(not(any(
    all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")),
    all(target_arch = "aarch64", target_os = "none")
)))]
fn detect_impl() -> CpuFeatures {
    CpuFeatures {
        neon: cfg!(all(target_arch = "aarch64", target_feature = "neon")),
        dotprod: cfg!(all(target_arch = "aarch64", target_feature = "dotprod")),
        i8mm: cfg!(all(target_arch = "aarch64", target_feature = "i8mm")),
        avx2: cfg!(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        )),
        avx512vnni: cfg!(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512vnni"
        )),
    }
}

#[cfg(all(not(feature = "std"), target_arch = "aarch64", target_os = "none"))]
mod id_regs {
    /// Reads `(ID_AA64ISAR0_EL1, ID_AA64ISAR1_EL1)`.
    pub(super) fn read() -> (u64, u64) {
        let isar0: u64;
        let isar1: u64;
        // SAFETY: reading the ID registers has no side effects and is permitted at EL1 and
        // above, where a bare-metal (`target_os = "none"`) build of this crate runs (the secure
        // partition at S-EL1).
        unsafe {
            core::arch::asm!(
                "mrs {0}, ID_AA64ISAR0_EL1",
                "mrs {1}, ID_AA64ISAR1_EL1",
                out(reg) isar0,
                out(reg) isar1,
                options(nomem, nostack, preserves_flags)
            );
        }
        (isar0, isar1)
    }
}
