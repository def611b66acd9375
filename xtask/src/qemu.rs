//! Booting the testbed under `qemu-system-aarch64` and judging a scenario's output.
//!
//! The normal-world client prints one line per check (`PASS name`, `FAIL name: reason` or
//! `SKIP name: reason`) and a closing `N passed, N failed, N skipped`, then asks EL3 to power off
//! with a status (semihosting exit). A run fails on any FAIL line, a missing summary or one that
//! disagrees with the lines printed, a non-zero exit status, an SP failure reported by the
//! testbed, or a timeout; a testbed run also fails on any SKIP (nothing is skipped there).

use crate::Result;
use crate::images::NwInputs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// The client's closing line: (passed, failed, skipped).
    pub summary: Option<(usize, usize, usize)>,
    pub fails: Vec<String>,
    pub skips: Vec<String>,
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
        } else if l.starts_with("SKIP ") {
            self.skipped += 1;
            self.skips.push(l.to_string());
        } else if let Some(s) = parse_summary(l) {
            self.summary = Some(s);
        } else if l.contains("testbed: SP") && l.contains("failed") {
            self.sp_failures.push(l.to_string());
        }
        self.lines.push(l.to_string());
    }

    /// Why the run failed, if it did. `on_testbed`: the run was on the testbed, where every
    /// check runs, so any SKIP is a failure.
    pub fn verdict(
        &self,
        expect_sp_failure: bool,
        on_testbed: bool,
    ) -> std::result::Result<(), String> {
        if self.timed_out {
            return Err("timed out".into());
        }
        let Some((p, f, s)) = self.summary else {
            return Err("no `N passed, N failed, N skipped` summary line".into());
        };
        if (p, f, s) != (self.passed, self.failed, self.skipped) {
            return Err(format!(
                "summary says {p} passed, {f} failed, {s} skipped but {} PASS, {} FAIL and {} \
                 SKIP lines were printed",
                self.passed, self.failed, self.skipped
            ));
        }
        if on_testbed && s > 0 {
            return Err(format!(
                "{s} check(s) skipped on the testbed, first: {}",
                self.skips.first().map_or("?", String::as_str)
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

/// `N passed, N failed, N skipped` alone on a line (an optional `word:` may precede it).
fn parse_summary(line: &str) -> Option<(usize, usize, usize)> {
    let l = line.trim();
    let l = match l.split_once(": ") {
        Some((w, rest)) if !w.contains(' ') => rest,
        _ => l,
    };
    let mut parts = l.split(", ");
    let p = parts.next()?.strip_suffix(" passed")?.parse().ok()?;
    let f = parts.next()?.strip_suffix(" failed")?.parse().ok()?;
    let s = parts.next()?.strip_suffix(" skipped")?.parse().ok()?;
    parts.next().is_none().then_some((p, f, s))
}

/// The QEMU command line for `smp` CPUs; the client's `inputs` are loaded into NS RAM.
pub fn qemu_command(flash: &Path, inputs: &NwInputs, smp: usize) -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args([
        "-M",
        "virt,secure=on,virtualization=on,gic-version=3",
        "-cpu",
        "max",
        "-m",
        "1024",
        "-smp",
        &smp.to_string(),
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
    cmd.args(nw_loader_args(None, inputs.model(), inputs.sealed_file()));
    cmd
}

/// QEMU `-device loader` arguments that put the client's inputs in NS RAM before reset: the
/// boot configuration block (`images::write_boot_config`; the BL33 client reads it at
/// `ns_ram::BOOT_CONFIG`, the testbed copies its own from flash) and the model file at
/// `ns_ram::MODEL_BASE`.
pub fn nw_loader_args(
    boot_config: Option<&Path>,
    model: Option<&Path>,
    sealed: Option<&Path>,
) -> Vec<String> {
    let loads = [
        (boot_config, testbed_layout::ns_ram::BOOT_CONFIG),
        (model, testbed_layout::ns_ram::MODEL_BASE),
        (sealed, testbed_layout::ns_ram::SEALED_BASE),
    ];
    loads
        .into_iter()
        .filter_map(|(file, addr)| {
            file.map(|f| {
                [
                    "-device".to_string(),
                    format!("loader,file={},addr={addr:#x},force-raw=on", f.display()),
                ]
            })
        })
        .flatten()
        .collect()
}

/// Boots `flash` on `smp` CPUs, echoing each output line (with `echo`), until QEMU exits or
/// `timeout`.
pub fn run(
    flash: &Path,
    inputs: &NwInputs,
    smp: usize,
    timeout: Duration,
    echo: bool,
) -> Result<Outcome> {
    run_command(qemu_command(flash, inputs, smp), timeout, echo)
}

/// Runs a QEMU command line (the testbed's, or one that boots TF-A), collecting the client's
/// output from its stdout, echoing each line (with `echo`), until QEMU exits or `timeout`.
pub fn run_command(mut cmd: Command, timeout: Duration, echo: bool) -> Result<Outcome> {
    let mut child = cmd
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
        assert_eq!(
            parse_summary("12 passed, 0 failed, 0 skipped"),
            Some((12, 0, 0))
        );
        assert_eq!(
            parse_summary("messaging: 3 passed, 1 failed, 2 skipped"),
            Some((3, 1, 2))
        );
        // The old two-count line is no longer a summary.
        assert_eq!(parse_summary("3 passed, 1 failed"), None);
        assert_eq!(parse_summary("3 passed, 1 failed, 2 skipped, 4 more"), None);
        assert_eq!(parse_summary("PASS x"), None);
        assert_eq!(parse_summary("so 3 passed, 1 failed, 0 skipped here"), None);
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
        let good = ["PASS a", "PASS b", "2 passed, 0 failed, 0 skipped"];
        assert!(outcome(&good, 0).verdict(false, true).is_ok());
        assert!(
            outcome(&["PASS a", "FAIL b: x", "1 passed, 1 failed, 0 skipped"], 1)
                .verdict(false, true)
                .is_err()
        );
        assert!(outcome(&["PASS a"], 0).verdict(false, true).is_err());
        assert!(
            outcome(&["PASS a", "3 passed, 0 failed, 0 skipped"], 0)
                .verdict(false, true)
                .is_err()
        );
        assert!(
            outcome(&["PASS a", "1 passed, 0 failed, 0 skipped"], 1)
                .verdict(false, true)
                .is_err()
        );
        assert!(
            outcome(&["0 passed, 0 failed, 0 skipped"], 0)
                .verdict(false, true)
                .is_err()
        );
        let sp = [
            "testbed: SP 8001 failed: panic",
            "PASS a",
            "1 passed, 0 failed, 0 skipped",
        ];
        assert!(outcome(&sp, 0).verdict(false, true).is_err());
        assert!(outcome(&sp, 0).verdict(true, true).is_ok());
    }

    #[test]
    fn loader_args_put_the_inputs_at_their_addresses() {
        let args = nw_loader_args(
            Some(Path::new("/b/cfg.bin")),
            Some(Path::new("/m.gguf")),
            Some(Path::new("/s.bundle")),
        );
        assert_eq!(
            args,
            [
                "-device",
                "loader,file=/b/cfg.bin,addr=0x7fff0000,force-raw=on",
                "-device",
                "loader,file=/m.gguf,addr=0x50000000,force-raw=on",
                "-device",
                "loader,file=/s.bundle,addr=0x54000000,force-raw=on"
            ]
        );
        assert!(nw_loader_args(None, None, None).is_empty());
    }

    #[test]
    fn skips() {
        let skipped = [
            "PASS a",
            "SKIP b: needs the testbed",
            "1 passed, 0 failed, 1 skipped",
        ];
        // Under a real SPMC a skip is allowed; on the testbed it fails the run.
        assert!(outcome(&skipped, 0).verdict(false, false).is_ok());
        let e = outcome(&skipped, 0).verdict(false, true).unwrap_err();
        assert!(e.contains("SKIP b"), "{e}");
        // The summary must count the SKIP lines.
        assert!(
            outcome(&["PASS a", "SKIP b: x", "1 passed, 0 failed, 0 skipped"], 0)
                .verdict(false, false)
                .is_err()
        );
        assert!(
            outcome(&["PASS a", "1 passed, 0 failed, 1 skipped"], 0)
                .verdict(false, false)
                .is_err()
        );
    }
}
