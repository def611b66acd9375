//! Check results as lines: `PASS name`, `FAIL name: reason`, `SKIP name: reason`, then
//! `N passed, N failed, N skipped`.

use crate::Spmc;
use core::fmt::{self, Write};

/// A failure reason, formatted into a fixed buffer (the client has no heap). Longer reasons are
/// cut.
#[derive(Clone)]
pub struct Fail {
    buf: [u8; 160],
    len: usize,
}

impl Fail {
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut f = Fail {
            buf: [0; 160],
            len: 0,
        };
        let _ = f.write_fmt(args);
        f
    }

    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever appended.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Fail {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut b = [0u8; 4];
            let e = c.encode_utf8(&mut b).as_bytes();
            if self.len + e.len() > self.buf.len() {
                break;
            }
            self.buf[self.len..self.len + e.len()].copy_from_slice(e);
            self.len += e.len();
        }
        Ok(())
    }
}

impl fmt::Debug for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `return Err(Fail)` with a formatted reason.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::report::Fail::new(format_args!($($arg)*)))
    };
}

pub type CheckResult = Result<(), Fail>;

/// What a testbed-only check relies on that TF-A + Hafnium and TF-A's EL3 SPMC do not offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Lent/donated pages taken from the normal world's stage-2, and the blocked accesses
    /// reported by `control::TESTBED_BLOCKED_ACCESSES` (no NS-EL2 hypervisor runs under TF-A).
    Stage2Enforcement,
    /// The NS memory the testbed keeps from the normal world (`ns_ram::TESTBED_NS_BASE`).
    TestbedReservedMemory,
    /// The testbed's handling of an SP that fails (it marks the SP dead and answers ABORTED).
    SpFailureHandling,
    /// A memory firewall the SP drives (the testbed's TZC-400 model; QEMU has none).
    MemoryFirewall,
    /// An NPU the SP can take over (the testbed's NPU, SMMU and TZPC; QEMU has none).
    Npu,
}

impl Needs {
    pub fn reason(self) -> &'static str {
        match self {
            Needs::Stage2Enforcement => "needs the testbed's NW stage-2 enforcement and reports",
            Needs::TestbedReservedMemory => "needs the testbed's reserved NS memory",
            Needs::SpFailureHandling => "needs the testbed's SP failure handling",
            Needs::MemoryFirewall => {
                "needs a memory firewall (QEMU has no TZC-400; the testbed emulates one)"
            }
            Needs::Npu => {
                "needs an NPU with an SMMU and a TZPC (QEMU has none; the testbed emulates them)"
            }
        }
    }
}

/// Counts and prints check results.
pub struct Report<W: Write> {
    out: W,
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

impl<W: Write> Report<W> {
    pub fn new(out: W) -> Self {
        Report {
            out,
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Runs `check` on the testbed; under a real SPMC it is not run and prints
    /// `SKIP name: reason`. Returns false only for a failure.
    pub fn testbed_only(
        &mut self,
        spmc: Spmc,
        name: &str,
        needs: Needs,
        check: impl FnOnce() -> CheckResult,
    ) -> bool {
        if spmc == Spmc::Testbed {
            return self.check(name, check());
        }
        self.skipped += 1;
        let _ = writeln!(
            self.out,
            "SKIP {name}: {} (running under {})",
            needs.reason(),
            spmc.name()
        );
        true
    }

    /// `SKIP name: reason` for a check the SPMC cannot run because it lacks an optional
    /// feature it reports as absent (e.g. FFA_MEM_DONATE). On the testbed, which has all of
    /// them, the summary makes any SKIP a failure.
    pub fn skip(&mut self, name: &str, reason: &str) {
        self.skipped += 1;
        let _ = writeln!(self.out, "SKIP {name}: {reason}");
    }

    /// Runs `check` if `supported`, else [`Report::skip`]s it with `reason`.
    pub fn skip_unless(
        &mut self,
        supported: bool,
        name: &str,
        reason: &str,
        check: impl FnOnce() -> CheckResult,
    ) -> bool {
        if supported {
            return self.check(name, check());
        }
        self.skip(name, reason);
        true
    }

    pub fn check(&mut self, name: &str, result: CheckResult) -> bool {
        match result {
            Ok(()) => {
                self.passed += 1;
                let _ = writeln!(self.out, "PASS {name}");
                true
            }
            Err(f) => {
                self.failed += 1;
                let _ = writeln!(self.out, "FAIL {name}: {}", f.as_str());
                false
            }
        }
    }

    /// Free text (demo output); never starts with PASS/FAIL/SKIP.
    pub fn note(&mut self, args: fmt::Arguments<'_>) {
        let _ = writeln!(self.out, "  {args}");
    }

    /// Prints the closing `N passed, N failed, N skipped` line.
    pub fn finish(&mut self) {
        let _ = writeln!(
            self.out,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
    }

    pub fn out(&mut self) -> &mut W {
        &mut self.out
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "the checks' own result type, as in the scenarios"
)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let mut r = Report::new(String::new());
        r.check("a", Ok(()));
        r.check("b", Err(Fail::new(format_args!("got {}", 3))));
        r.finish();
        assert_eq!(
            r.out(),
            "PASS a\nFAIL b: got 3\n1 passed, 1 failed, 0 skipped\n"
        );
    }

    #[test]
    fn testbed_only_checks_run_on_the_testbed_and_skip_elsewhere() {
        let mut r = Report::new(String::new());
        assert!(
            !r.testbed_only(Spmc::Testbed, "t", Needs::Stage2Enforcement, || {
                Err(Fail::new(format_args!("no")))
            })
        );
        let mut ran = false;
        assert!(
            r.testbed_only(Spmc::Hafnium, "h", Needs::Stage2Enforcement, || {
                ran = true;
                Ok(())
            })
        );
        r.testbed_only(Spmc::El3, "e", Needs::SpFailureHandling, || Ok(()));
        r.finish();
        assert!(!ran, "a skipped check must not run");
        assert_eq!(
            r.out(),
            "FAIL t: no\n\
             SKIP h: needs the testbed's NW stage-2 enforcement and reports (running under hafnium)\n\
             SKIP e: needs the testbed's SP failure handling (running under el3)\n\
             0 passed, 1 failed, 2 skipped\n"
        );
    }

    #[test]
    fn long_reasons_are_cut() {
        let s = "x".repeat(500);
        assert_eq!(Fail::new(format_args!("{s}")).as_str().len(), 160);
    }
}
