//! `cargo xtask bench sealed`: AES-256-GCM (the sealed-model cipher) on the host, and under
//! `qemu-aarch64 -cpu max` with the ARMv8 crypto extensions (AESE/AESMC, PMULL: the RustCrypto
//! `armv8` backends, enabled by `.cargo/config.toml`) side by side with the constant-time
//! software fallback (`--cfg aes_force_soft --cfg polyval_force_soft`), as guest instructions
//! per byte of decrypt+verify. Speed under emulation means nothing; instruction counts compare
//! the work. The program is `sealed/examples/gcm.rs`.

use crate::bench_runtime::qemu_count;
use crate::{Result, root, target_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

const LINUX: &str = "aarch64-unknown-linux-gnu";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// Bytes per decryption, and the two repetition counts whose difference is counted.
const BYTES: usize = 16 << 10;
const REPS: (usize, usize) = (1, 5);

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Cross-builds the example; `soft` forces the software backends (own target dir, so the two
/// flag sets do not rebuild each other).
fn build(soft: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "flexserve-sealed",
        "--example",
        "gcm",
        "--target",
        LINUX,
    ]);
    let dir = if soft {
        c.env("RUSTFLAGS", "--cfg aes_force_soft --cfg polyval_force_soft");
        let d = target_dir().join("bench-gcm-soft");
        c.env("CARGO_TARGET_DIR", &d);
        d
    } else {
        target_dir()
    };
    eprintln!(
        "xtask: building the GCM bench for {LINUX} ({})",
        if soft { "software" } else { "armv8" }
    );
    run(&mut c)?;
    Ok(dir.join(LINUX).join("release").join("examples").join("gcm"))
}

/// Guest instructions per byte of one decrypt+verify.
fn per_byte(bin: &Path) -> Result<f64> {
    let (n, (a, b)) = (BYTES.to_string(), REPS);
    let lo = qemu_count(bin, &["decrypt", &n, &a.to_string()], SYSROOT)?;
    let hi = qemu_count(bin, &["decrypt", &n, &b.to_string()], SYSROOT)?;
    Ok(hi.saturating_sub(lo) as f64 / ((b - a) * BYTES) as f64)
}

pub fn run_bench(_args: &[String]) -> Result<()> {
    crate::deps::ensure()?;
    eprintln!("xtask: host AES-256-GCM");
    let host = run(cargo().args([
        "run",
        "--release",
        "-q",
        "-p",
        "flexserve-sealed",
        "--example",
        "gcm",
        "--",
        "host",
    ]))?;
    let val = |k: &str| {
        host.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hw = per_byte(&build(false)?)?;
    let soft = per_byte(&build(true)?)?;
    println!("## Sealed-model cipher: AES-256-GCM, one tag per chunk\n");
    println!(
        "Host (`gcm host`, 64 MiB in 4 MiB chunks, best of 3; AES-NI/PCLMULQDQ detected at run time):\n"
    );
    println!("| encrypt | decrypt + verify |\n|---|---|");
    println!(
        "| {:.2} GB/s | {:.2} GB/s |\n",
        val("gcm_encrypt_gbs"),
        val("gcm_decrypt_gbs")
    );
    println!(
        "aarch64 under `qemu-aarch64 -cpu max`: guest instructions per byte of decrypt + verify \
         ({} KiB, difference of {} and {} repetitions):\n",
        BYTES >> 10,
        REPS.0,
        REPS.1
    );
    println!("| ARMv8 crypto (AESE/AESMC + PMULL) | software fallback | ratio |\n|---|---|---|");
    println!(
        "| {hw:.2} | {soft:.2} | {:.1}x fewer |",
        soft / hw.max(f64::MIN_POSITIVE)
    );
    Ok(())
}
