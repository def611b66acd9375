//! Check results as lines: `PASS name`, `FAIL name: reason`, then `N passed, N failed`.

use core::fmt::{self, Write};

/// A failure reason, formatted into a fixed buffer (the client has no heap). Longer reasons are
/// cut.
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

/// Counts and prints check results.
pub struct Report<W: Write> {
    out: W,
    pub passed: u32,
    pub failed: u32,
}

impl<W: Write> Report<W> {
    pub fn new(out: W) -> Self {
        Report {
            out,
            passed: 0,
            failed: 0,
        }
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

    /// Free text (demo output); never starts with PASS/FAIL.
    pub fn note(&mut self, args: fmt::Arguments<'_>) {
        let _ = writeln!(self.out, "  {args}");
    }

    /// Prints the closing `N passed, N failed` line.
    pub fn finish(&mut self) {
        let _ = writeln!(self.out, "{} passed, {} failed", self.passed, self.failed);
    }

    pub fn out(&mut self) -> &mut W {
        &mut self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let mut r = Report::new(String::new());
        r.check("a", Ok(()));
        r.check("b", Err(Fail::new(format_args!("got {}", 3))));
        r.finish();
        assert_eq!(r.out(), "PASS a\nFAIL b: got 3\n1 passed, 1 failed\n");
    }

    #[test]
    fn long_reasons_are_cut() {
        let s = "x".repeat(500);
        assert_eq!(Fail::new(format_args!("{s}")).as_str().len(), 160);
    }
}
