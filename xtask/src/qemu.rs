//! Booting the testbed under `qemu-system-aarch64` and judging a scenario's output.
//!
//! The normal-world client prints one line per check (`PASS name` / `FAIL name: reason`) and a
//! closing `N passed, N failed`, then asks EL3 to power off with a status (semihosting exit).
//! A run fails on any FAIL line, a missing or inconsistent summary, a non-zero exit status, an SP
//! failure reported by the testbed, or a timeout.

use crate::Result;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: usize,
    pub failed: usize,
    pub summary: Option<(usize, usize)>,
    pub fails: Vec<String>,
    pub sp_failures: Vec<String>,
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub lines: Vec<String>,
}

impl Outcome {
    fn take(&mut self, line: &str) {
        let l = line.trim_end();
        if l.starts_with("PASS ") {
            self.passed += 1;
        } else if l.starts_with("FAIL ") {
            self.failed += 1;
            self.fails.push(l.to_string());
        } else if let Some(s) = parse_summary(l) {
            self.summary = Some(s);
        } else if l.contains("testbed: SP") && l.contains("failed") {
            self.sp_failures.push(l.to_string());
        }
        self.lines.push(l.to_string());
    }

    /// Why the run failed, if it did.
    pub fn verdict(&self, expect_sp_failure: bool) -> std::result::Result<(), String> {
        if self.timed_out {
            return Err("timed out".into());
        }
        let Some((p, f)) = self.summary else {
            return Err("no `N passed, N failed` summary line".into());
        };
        if (p, f) != (self.passed, self.failed) {
            return Err(format!(
                "summary says {p} passed, {f} failed but {} PASS and {} FAIL lines were printed",
                self.passed, self.failed
            ));
        }
        if f > 0 || !self.fails.is_empty() {
            return Err(format!("{} check(s) failed", self.fails.len()));
        }
        if p == 0 {
            return Err("no checks ran".into());
        }
        if !expect_sp_failure && !self.sp_failures.is_empty() {
            return Err(format!("the SP failed: {}", self.sp_failures[0]));
        }
        match self.exit {
            Some(0) => Ok(()),
            other => Err(format!("QEMU exit status {other:?}")),
        }
    }
}

/// `N passed, N failed` alone on a line (an optional `word:` may precede it).
fn parse_summary(line: &str) -> Option<(usize, usize)> {
    let l = line.trim();
    let l = match l.split_once(": ") {
        Some((w, rest)) if !w.contains(' ') => rest,
        _ => l,
    };
    let (a, b) = l.split_once(", ")?;
    let p = a.strip_suffix(" passed")?.parse().ok()?;
    let f = b.split(',').next()?.strip_suffix(" failed")?.parse().ok()?;
    Some((p, f))
}

/// The QEMU command line; `model` is loaded into NS RAM at `ns_ram::MODEL_BASE`.
pub fn qemu_command(flash: &Path, model: Option<&Path>) -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args([
        "-M",
        "virt,secure=on,virtualization=on,gic-version=3",
        "-cpu",
        "max",
        "-m",
        "1024",
        "-smp",
        "1",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-semihosting-config",
        "enable=on,target=native",
        "-chardev",
        "stdio,id=con,mux=on,signal=off",
        "-serial",
        "chardev:con",
        "-serial",
        "chardev:con",
        "-bios",
    ])
    .arg(flash);
    if let Some(m) = model {
        cmd.arg("-device").arg(format!(
            "loader,file={},addr={:#x},force-raw=on",
            m.display(),
            testbed_layout::ns_ram::MODEL_BASE
        ));
    }
    cmd
}

/// Boots `flash`, echoing each output line (with `echo`), until QEMU exits or `timeout`.
pub fn run(flash: &Path, model: Option<&Path>, timeout: Duration, echo: bool) -> Result<Outcome> {
    let mut child = qemu_command(flash, model)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting qemu-system-aarch64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(bytes) = line else { break };
            let text = String::from_utf8_lossy(&bytes).replace('\r', "");
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let mut out = Outcome::default();
    let start = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if echo {
                    println!("{line}");
                }
                out.take(&line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            // Drain what is left.
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if echo {
                    println!("{line}");
                }
                out.take(&line);
            }
            out.exit = status.code();
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            out.timed_out = true;
            break;
        }
    }
    let _ = reader.join();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        assert_eq!(parse_summary("12 passed, 0 failed"), Some((12, 0)));
        assert_eq!(parse_summary("messaging: 3 passed, 1 failed"), Some((3, 1)));
        assert_eq!(parse_summary("3 passed, 1 failed, 2 skipped"), Some((3, 1)));
        assert_eq!(parse_summary("PASS x"), None);
        assert_eq!(parse_summary("so 3 passed, 1 failed here"), None);
    }

    fn outcome(lines: &[&str], exit: i32) -> Outcome {
        let mut o = Outcome::default();
        for l in lines {
            o.take(l);
        }
        o.exit = Some(exit);
        o
    }

    #[test]
    fn verdicts() {
        assert!(
            outcome(&["PASS a", "PASS b", "2 passed, 0 failed"], 0)
                .verdict(false)
                .is_ok()
        );
        assert!(
            outcome(&["PASS a", "FAIL b: x", "1 passed, 1 failed"], 1)
                .verdict(false)
                .is_err()
        );
        assert!(outcome(&["PASS a"], 0).verdict(false).is_err());
        assert!(
            outcome(&["PASS a", "3 passed, 0 failed"], 0)
                .verdict(false)
                .is_err()
        );
        assert!(
            outcome(&["PASS a", "1 passed, 0 failed"], 1)
                .verdict(false)
                .is_err()
        );
        assert!(outcome(&["0 passed, 0 failed"], 0).verdict(false).is_err());
        let sp = [
            "testbed: SP 8001 failed: panic",
            "PASS a",
            "1 passed, 0 failed",
        ];
        assert!(outcome(&sp, 0).verdict(false).is_err());
        assert!(outcome(&sp, 0).verdict(true).is_ok());
    }
}
