//! The normal-world Linux kernel module (`nw/linux`), built out of tree against Debian's arm64
//! kernel headers and checked.
//!
//! The headers are pinned to one kernel ABI, [`KERNEL_RELEASE`] (bookworm-backports), whose image
//! and headers packages exist with matching versions. Its host-architecture half (kbuild's
//! programs, the common tree) is installed by apt (`crate::deps::ensure_linux_module`); its arm64
//! half is downloaded with `apt-get download` and unpacked under `target/linux-module/headers`
//! once (installing it would pull `gcc-12:arm64`, which apt can only get by removing the host's
//! gcc). The module's sources are copied into `target/linux-module/build` (Linux 6.12's Kbuild
//! writes its objects beside them) and built with `make -C <headers> M=<build> ARCH=arm64
//! CROSS_COMPILE=aarch64-linux-gnu-`.
//!
//! Checks: `modinfo` reports license GPL and vermagic [`KERNEL_RELEASE`], and the `.ko` is an
//! ELF64 little-endian relocatable object for AArch64.
//!
//! [`boot_test`] also boots Debian's arm64 kernel of that release in QEMU (`-M virt`, no secure
//! world) with an initramfs whose `/init` is `nw/linux/tests/flexserve_test.c`: it loads
//! `flexserve_fake.ko` (the module over a pretend SPMC, `nw/linux/flexserve_fake.h`) and runs
//! the ioctl, mmap, lend and reclaim checks against it.

use crate::{Result, root, run_status, target_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The ABI name shared by the kernel's packages.
macro_rules! abi {
    () => {
        "6.12.95+deb12"
    };
}
const ABI: &str = abi!();
/// The kernel the module is built for (`uname -r` of Debian's arm64 image).
pub const KERNEL_RELEASE: &str = concat!(abi!(), "-arm64");
/// kbuild's host programs and scripts (package `linux-kbuild-*`, host architecture).
const KBUILD_DIR: &str = concat!("/usr/lib/linux-kbuild-", abi!());
/// The module's sources in `nw/linux`.
const SOURCES: &[&str] = &[
    "Kbuild",
    "flexserve.c",
    "flexserve_uapi.h",
    "flexserve_desc.h",
];
/// The module file Kbuild writes.
const MODULE: &str = "flexserve.ko";
/// The same module over a pretend SPMC (`make ... FLEXSERVE_FAKE=m`), for [`boot_test`].
const FAKE_MODULE: &str = "flexserve_fake.ko";
/// The boot test's program and the module sources it needs besides [`SOURCES`].
const FAKE_SOURCES: &[&str] = &["flexserve_fake.c", "flexserve_fake.h"];
const TEST_PROGRAM: &str = "nw/linux/tests/flexserve_test.c";

/// The built module.
pub struct Built {
    pub ko: PathBuf,
    pub size: u64,
    /// Lines of C (module source and uapi header).
    pub lines: usize,
}

/// Installs what is missing, builds the module and checks it.
pub fn build() -> Result<Built> {
    crate::deps::ensure_linux_module(
        (
            concat!("/usr/lib/linux-kbuild-", abi!(), "/scripts/Makefile.build"),
            concat!("linux-kbuild-", abi!()),
        ),
        (
            concat!("/usr/src/linux-headers-", abi!(), "-common/Makefile"),
            concat!("linux-headers-", abi!(), "-common"),
        ),
    )?;
    let out = target_dir().join("linux-module");
    let kdir = arm64_headers(&out, KBUILD_DIR)?;
    let build = out.join("build");
    std::fs::create_dir_all(&build).map_err(|e| format!("{}: {e}", build.display()))?;
    let src = root().join("nw/linux");
    let mut lines = 0;
    for f in SOURCES.iter().chain(FAKE_SOURCES) {
        let text = std::fs::read(src.join(f)).map_err(|e| format!("nw/linux/{f}: {e}"))?;
        if SOURCES.contains(f) && (f.ends_with(".c") || f.ends_with(".h")) {
            lines += text.iter().filter(|&&b| b == b'\n').count();
        }
        // Copy only what changed, so make rebuilds only then.
        let dst = build.join(f);
        if std::fs::read(&dst).ok().as_deref() != Some(&text[..]) {
            std::fs::write(&dst, &text).map_err(|e| format!("{}: {e}", dst.display()))?;
        }
    }
    eprintln!("xtask: building nw/linux against {}", kdir.display());
    run_status(
        Command::new("make")
            .arg("-C")
            .arg(&kdir)
            .arg(format!("M={}", build.display()))
            .args([
                "ARCH=arm64",
                "CROSS_COMPILE=aarch64-linux-gnu-",
                "FLEXSERVE_FAKE=m",
                "modules",
            ]),
    )?;
    let ko = build.join(MODULE);
    check(&ko)?;
    check(&build.join(FAKE_MODULE))?;
    let size = std::fs::metadata(&ko)
        .map_err(|e| format!("{}: {e}", ko.display()))?
        .len();
    Ok(Built { ko, size, lines })
}

/// The arm64 headers tree under `out/headers`, fetched and unpacked if it is not there yet.
/// Its `scripts` and `tools` are relative links into `usr/lib/linux-kbuild-*`, which is made a
/// link to the installed kbuild; its Makefile includes the installed common tree, whose version
/// must be the same.
fn arm64_headers(out: &Path, kbuild_dir: &str) -> Result<PathBuf> {
    let pkg = format!("linux-headers-{KERNEL_RELEASE}");
    let unpacked = out.join("headers");
    let kdir = unpacked.join("usr/src").join(&pkg);
    let stamp = unpacked.join(".unpacked");
    if !stamp.exists() {
        let debs = out.join("debs");
        std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
        let deb = arm64_deb(&debs, &pkg)?;
        let want = deb_field(&deb, "Version")?;
        let have = installed_version(&format!("linux-headers-{ABI}-common"))?;
        if want != have {
            return Err(format!(
                "{} is version {want} but linux-headers-{ABI}-common is {have}; \
                 upgrade one of them (apt-get install linux-headers-{ABI}-common), \
                 then remove {}",
                deb.display(),
                out.join("debs").display()
            ));
        }
        if unpacked.exists() {
            std::fs::remove_dir_all(&unpacked)
                .map_err(|e| format!("{}: {e}", unpacked.display()))?;
        }
        run_status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        let lib = unpacked.join("usr/lib");
        std::fs::create_dir_all(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
        std::os::unix::fs::symlink(kbuild_dir, lib.join(format!("linux-kbuild-{ABI}")))
            .map_err(|e| format!("linking {kbuild_dir}: {e}"))?;
        std::fs::write(&stamp, want).map_err(|e| format!("{}: {e}", stamp.display()))?;
    }
    if !kdir.join("Makefile").exists() {
        return Err(format!(
            "{} has no Makefile; remove {} to unpack it again",
            kdir.display(),
            unpacked.display()
        ));
    }
    Ok(kdir)
}

/// Boots Debian's arm64 kernel with `flexserve_fake.ko` and `nw/linux/tests/flexserve_test.c`
/// as `/init` (after [`build`]); returns how many checks passed.
pub fn boot_test(built: &Built) -> Result<u32> {
    let out = target_dir().join("linux-module");
    let boot = out.join("boot");
    std::fs::create_dir_all(&boot).map_err(|e| format!("{}: {e}", boot.display()))?;
    let kernel = boot.join(format!("vmlinuz-{KERNEL_RELEASE}"));
    if !kernel.exists() {
        let pkg = format!("linux-image-{KERNEL_RELEASE}");
        let debs = out.join("debs");
        let deb = arm64_deb(&debs, &pkg)?;
        // Only the kernel image out of the package.
        let mut unpack = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("dpkg-deb: {e}"))?;
        let tar = unpack.stdout.take().ok_or("dpkg-deb: no stdout")?;
        let member = format!("./boot/vmlinuz-{KERNEL_RELEASE}");
        let status = Command::new("tar")
            .args(["-x", "--strip-components=2", "-C"])
            .arg(&boot)
            .arg(&member)
            .stdin(tar)
            .status()
            .map_err(|e| format!("tar: {e}"))?;
        unpack.wait().map_err(|e| format!("dpkg-deb: {e}"))?;
        if !status.success() || !kernel.exists() {
            return Err(format!("no {member} in {}", deb.display()));
        }
    }
    let init = boot.join("init");
    run_status(
        Command::new("aarch64-linux-gnu-gcc")
            .args(["-static", "-O2", "-Wall", "-Werror", "-I"])
            .arg(root().join("nw/linux"))
            .arg(root().join(TEST_PROGRAM))
            .arg("-o")
            .arg(&init),
    )?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let fake = built.ko.with_file_name(FAKE_MODULE);
    let initrd = boot.join("initrd.cpio");
    let cpio = newc(&[
        ("dev", 0o040755, Vec::new()),
        ("init", 0o100755, read(&init)?),
        (FAKE_MODULE, 0o100644, read(&fake)?),
    ]);
    std::fs::write(&initrd, cpio).map_err(|e| format!("{}: {e}", initrd.display()))?;
    let log = boot.join("console.log");
    let console = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    eprintln!("xtask: booting {KERNEL_RELEASE} in QEMU with {FAKE_MODULE}");
    let mut qemu = Command::new("qemu-system-aarch64")
        .args(["-M", "virt", "-cpu", "max", "-m", "1024", "-smp", "2"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=7",
        ])
        .stdin(Stdio::null())
        .stdout(console)
        .spawn()
        .map_err(|e| format!("starting qemu-system-aarch64: {e}"))?;
    let start = Instant::now();
    while qemu.try_wait().map_err(|e| e.to_string())?.is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            let _ = qemu.kill();
            let _ = qemu.wait();
            return Err(format!("boot test timed out; console in {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    verdict(&text).map_err(|e| format!("boot test: {e}; console in {}", log.display()))
}

/// The boot test's result from its console: the summary line with no failure, and no kernel
/// warning or oops on the way.
fn verdict(console: &str) -> Result<u32> {
    let bad = [
        "FAIL",
        "BUG:",
        "Oops",
        "WARNING:",
        "Call trace:",
        "Kernel panic",
    ];
    if let Some(l) = console.lines().find(|l| bad.iter().any(|b| l.contains(b))) {
        return Err(format!("`{}`", l.trim()));
    }
    let summary = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("TESTS passed="))
        .ok_or("no summary line")?;
    match summary.split_once(" failed=") {
        Some((p, "0")) => p.parse().map_err(|_| format!("summary `{summary}`")),
        _ => Err(format!("summary `{summary}`")),
    }
}

/// An uncompressed initramfs (cpio "newc") of `(name, mode, contents)`.
fn newc(files: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer = ("TRAILER!!!", 0, Vec::new());
    for (ino, (name, mode, data)) in files.iter().chain([&trailer]).enumerate() {
        let fields = [
            ino as u32 + 1,
            *mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
        ];
        out.extend_from_slice(b"070701");
        for v in fields.iter().chain(&[name.len() as u32 + 1, 0]) {
            out.extend_from_slice(format!("{v:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// The arm64 `.deb` of `pkg` in `debs`, downloaded there first (not installed) if missing.
fn arm64_deb(debs: &Path, pkg: &str) -> Result<PathBuf> {
    if let Some(d) = find_deb(debs, pkg) {
        return Ok(d);
    }
    eprintln!("xtask: apt-get download {pkg}:arm64");
    run_status(
        Command::new("apt-get")
            .current_dir(debs)
            .args(["download", "-qq"])
            .arg(format!("{pkg}:arm64")),
    )?;
    find_deb(debs, pkg).ok_or(format!("apt-get download {pkg} left no .deb"))
}

fn find_deb(dir: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with("_arm64.deb"))
        })
}

fn deb_field(deb: &Path, field: &str) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .map_err(|e| format!("dpkg-deb: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn installed_version(pkg: &str) -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", pkg])
        .output()
        .map_err(|e| format!("dpkg-query: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `modinfo` and the ELF header say the module is GPL, for [`KERNEL_RELEASE`], AArch64.
fn check(ko: &Path) -> Result<()> {
    let field = |f: &str| -> Result<String> {
        let out = Command::new("modinfo")
            .args(["-F", f])
            .arg(ko)
            .output()
            .map_err(|e| format!("modinfo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "modinfo {}: {}",
                ko.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let license = field("license")?;
    if license != "GPL" {
        return Err(format!(
            "{}: license {license:?}, want \"GPL\"",
            ko.display()
        ));
    }
    let vermagic = field("vermagic")?;
    if vermagic.split_whitespace().next() != Some(KERNEL_RELEASE) {
        return Err(format!(
            "{}: vermagic {vermagic:?}, want {KERNEL_RELEASE}",
            ko.display()
        ));
    }
    let head = std::fs::read(ko).map_err(|e| format!("{}: {e}", ko.display()))?;
    elf_aarch64_rel(&head).map_err(|e| format!("{}: {e}", ko.display()))
}

/// An ELF64, little-endian, ET_REL object for EM_AARCH64.
fn elf_aarch64_rel(b: &[u8]) -> Result<()> {
    const EM_AARCH64: u16 = 183;
    const ET_REL: u16 = 1;
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    if b.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if b.get(4..6) != Some(&[2, 1]) {
        return Err("not ELF64 little-endian".into());
    }
    match (u16_at(16), u16_at(18)) {
        (Some(ET_REL), Some(EM_AARCH64)) => Ok(()),
        (t, m) => Err(format!(
            "ELF type {t:?} machine {m:?}, want ET_REL (1) EM_AARCH64 (183)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{elf_aarch64_rel, newc, verdict};

    #[test]
    fn boot_test_verdict() {
        assert_eq!(verdict("x\nTEST a: ok\nTESTS passed=65 failed=0\n"), Ok(65));
        assert!(verdict("TEST a: FAIL\nTESTS passed=64 failed=1\n").is_err());
        assert!(verdict("TESTS passed=3 failed=2\n").is_err());
        assert!(verdict("[ 1.0] WARNING: CPU: 0 at mm/x.c\nTESTS passed=1 failed=0\n").is_err());
        assert!(verdict("TEST a: ok\n").is_err());
    }

    #[test]
    fn newc_layout() {
        let c = newc(&[("init", 0o100755, b"abc".to_vec())]);
        assert!(c.starts_with(b"070701"));
        // Header 110 bytes + "init\0" padded to 116, data padded to 120, then the trailer.
        assert_eq!(&c[110..115], b"init\0");
        assert_eq!(&c[116..119], b"abc");
        assert_eq!(&c[120..126], b"070701");
        assert_eq!(c.len() % 4, 0);
    }

    #[test]
    fn elf_header_check() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16] = 1;
        h[18] = 183;
        assert!(elf_aarch64_rel(&h).is_ok());
        h[18] = 62; // x86-64
        assert!(elf_aarch64_rel(&h).is_err());
        h[18] = 183;
        h[4] = 1; // ELF32
        assert!(elf_aarch64_rel(&h).is_err());
        assert!(elf_aarch64_rel(b"\x7fEL").is_err());
    }
}
