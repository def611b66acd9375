//! What the commands need from the machine, and installing it.
//!
//! Each tool is looked up on PATH; a missing one is installed when we are root on Debian
//! (`apt-get`), otherwise the exact command to run is printed and the command fails.
//! `qemu-system-arm` comes from bookworm-backports on bookworm (bookworm's own 7.2 cannot run real
//! Hafnium on `-cpu max`); the backports entry is derived from the machine's existing Debian source
//! entry, so no mirror is named here.

use crate::{Result, run_status, which};
use std::path::Path;
use std::process::Command;

struct Tool {
    bin: &'static str,
    package: &'static str,
    /// Prefer bookworm-backports for this package.
    backports: bool,
}

const TOOLS: &[Tool] = &[
    Tool {
        bin: "qemu-system-aarch64",
        package: "qemu-system-arm",
        backports: true,
    },
    Tool {
        bin: "qemu-aarch64",
        package: "qemu-user",
        backports: false,
    },
    Tool {
        bin: "aarch64-linux-gnu-gcc",
        package: "gcc-aarch64-linux-gnu",
        backports: false,
    },
    Tool {
        bin: "dtc",
        package: "device-tree-compiler",
        backports: false,
    },
];

/// A package without a binary of its own: a file it installs.
struct Lib {
    file: &'static str,
    package: &'static str,
    /// Only bookworm-backports has it (its entry must be there).
    backports: bool,
}

/// Extra packages without a binary of their own to look for.
const LIBS: &[Lib] = &[Lib {
    file: "/usr/aarch64-linux-gnu/lib/libc.so.6",
    package: "libc6-dev-arm64-cross",
    backports: false,
}];

const TARGETS: &[&str] = &["aarch64-unknown-none", "aarch64-unknown-linux-gnu"];

/// What `cargo xtask bench` needs on top: the aarch64 C++ cross compiler for llama.cpp.
const BENCH_TOOLS: &[Tool] = &[Tool {
    bin: "aarch64-linux-gnu-g++",
    package: "g++-aarch64-linux-gnu",
    backports: false,
}];

/// What building TF-A for `--spmc` needs on top (`crate::spmc`): its make, fiptool's OpenSSL
/// headers, and `venv` for sptool's Python module.
const TFA_TOOLS: &[Tool] = &[Tool {
    bin: "make",
    package: "make",
    backports: false,
}];
const TFA_LIBS: &[Lib] = &[Lib {
    file: "/usr/include/openssl/evp.h",
    package: "libssl-dev",
    backports: false,
}];

/// What building the Linux module needs (`crate::linux_module`): the cross compiler, make,
/// modinfo, and the host-architecture half of Debian's kernel headers (kbuild's host programs,
/// the architecture-independent tree), which apt installs without touching anything else.
/// The arm64 half (`linux-headers-*-arm64:arm64`) is not installed: it depends on
/// `gcc-12:arm64` and the arm64 kernel image, and apt would remove the host's gcc for them;
/// `crate::linux_module` downloads and unpacks it under target/ instead.
const LINUX_TOOLS: &[Tool] = &[
    Tool {
        bin: "aarch64-linux-gnu-gcc",
        package: "gcc-aarch64-linux-gnu",
        backports: false,
    },
    Tool {
        bin: "make",
        package: "make",
        backports: false,
    },
    Tool {
        bin: "modinfo",
        package: "kmod",
        backports: false,
    },
];

/// What building Hafnium needs besides LLVM (found or installed by `crate::spmc`).
const HAFNIUM_TOOLS: &[Tool] = &[
    Tool {
        bin: "gn",
        package: "generate-ninja",
        backports: false,
    },
    Tool {
        bin: "ninja",
        package: "ninja-build",
        backports: false,
    },
];

/// Debian's LLVM 19 (Hafnium v2.15 builds as C23, which needs clang 18 or later).
const LLVM_TOOLS: &[Tool] = &[
    Tool {
        bin: "clang-19",
        package: "clang-19",
        backports: false,
    },
    Tool {
        bin: "ld.lld-19",
        package: "lld-19",
        backports: false,
    },
];

/// Makes sure every tool and rustup target the tests and images need is present.
pub fn ensure() -> Result<()> {
    ensure_tools(TOOLS, LIBS)
}

/// [`ensure`], plus what the benchmarks need.
pub fn ensure_bench() -> Result<()> {
    ensure_tools(TOOLS, LIBS)?;
    ensure_tools(BENCH_TOOLS, &[])
}

/// [`ensure`], plus what building TF-A (and, with `hafnium`, Hafnium but for LLVM) needs.
pub fn ensure_spmc(hafnium: bool) -> Result<()> {
    ensure_tools(TOOLS, LIBS)?;
    ensure_tools(TFA_TOOLS, TFA_LIBS)?;
    if hafnium {
        ensure_tools(HAFNIUM_TOOLS, &[])?;
    }
    Ok(())
}

/// Installs [`LLVM_TOOLS`] (for a machine without a recent enough LLVM).
pub fn ensure_llvm() -> Result<()> {
    ensure_tools(LLVM_TOOLS, &[])
}

/// [`LINUX_TOOLS`], the host-architecture headers packages `kbuild` and `common` (each
/// `(file, package)`, from bookworm-backports), and dpkg's arm64 architecture (so apt can fetch
/// the arm64 headers package).
pub fn ensure_linux_module(
    kbuild: (&'static str, &'static str),
    common: (&'static str, &'static str),
) -> Result<()> {
    ensure_foreign_arch("arm64")?;
    let libs = [kbuild, common].map(|(file, package)| Lib {
        file,
        package,
        backports: true,
    });
    ensure_tools(LINUX_TOOLS, &libs)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Adds `arch` to dpkg's foreign architectures (and refreshes apt's lists) if it is not there.
fn ensure_foreign_arch(arch: &str) -> Result<()> {
    let out = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .map_err(|e| format!("running dpkg: {e} (building the Linux module needs Debian)"))?;
    if String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|a| a == arch)
    {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "dpkg does not know the {arch} architecture; as root run:\n  \
             sudo dpkg --add-architecture {arch} && sudo apt-get update"
        ));
    }
    eprintln!("xtask: dpkg --add-architecture {arch}");
    run_status(Command::new("dpkg").args(["--add-architecture", arch]))?;
    run_status(Command::new("apt-get").args(["update", "-qq"]))
}

fn ensure_tools(tools: &[Tool], libs: &[Lib]) -> Result<()> {
    ensure_targets()?;
    let mut missing: Vec<&Tool> = tools.iter().filter(|t| which(t.bin).is_none()).collect();
    let libs: Vec<&Lib> = libs
        .iter()
        .filter(|l| !Path::new(l.file).exists())
        .collect();
    // An old qemu-system-aarch64 (< 8) mis-handles S-EL2: treat it as missing.
    if tools.iter().any(|t| t.bin == "qemu-system-aarch64")
        && which("qemu-system-aarch64").is_some()
        && qemu_system_major().is_some_and(|m| m < 8)
    {
        eprintln!("xtask: qemu-system-aarch64 is older than 8.0; upgrading");
        missing.push(&TOOLS[0]);
    }
    if missing.is_empty() && libs.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing
        .iter()
        .map(|t| t.package)
        .chain(libs.iter().map(|l| l.package))
        .collect();
    if !is_root() || which("apt-get").is_none() {
        return Err(format!(
            "missing packages: {}\n  install them as root with: sudo apt-get install {}  \
             (qemu-system-arm >= 8 and the linux-* packages from bookworm-backports)",
            names.join(" "),
            names.join(" ")
        ));
    }
    eprintln!("xtask: installing {}", names.join(" "));
    let backports = (missing.iter().any(|t| t.backports) || libs.iter().any(|l| l.backports))
        && enable_backports()?;
    run_status(Command::new("apt-get").args(["update", "-qq"]))?;
    for t in &missing {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq"]);
        if t.backports && backports {
            cmd.args(["-t", "bookworm-backports"]);
        }
        run_status(cmd.arg(t.package))?;
    }
    // Packages only bookworm-backports has are its sole candidates: no `-t` needed, so their
    // dependencies still come from the stable suite.
    if !libs.is_empty() {
        run_status(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq"])
                .args(libs.iter().map(|l| l.package)),
        )?;
    }
    for t in tools {
        if which(t.bin).is_none() {
            return Err(format!(
                "{} still missing after installing {}",
                t.bin, t.package
            ));
        }
    }
    Ok(())
}

fn ensure_targets() -> Result<()> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| e.to_string())?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !Path::new(&sysroot).join("lib/rustlib").join(t).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if which("rustup").is_none() {
        return Err(format!(
            "missing Rust targets {missing:?}; install them for this toolchain"
        ));
    }
    eprintln!("xtask: rustup target add {}", missing.join(" "));
    run_status(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )
}

fn qemu_system_major() -> Option<u32> {
    let out = Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}

/// Adds a bookworm-backports source derived from the machine's Debian entry. Returns false (and
/// leaves apt alone) when the machine is not bookworm.
fn enable_backports() -> Result<bool> {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !release.contains("VERSION_CODENAME=bookworm") {
        return Ok(false);
    }
    let out = Path::new("/etc/apt/sources.list.d/flexserve-backports.sources");
    if out.exists() {
        return Ok(true);
    }
    let deb822 =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    let Some(text) = backports_entry(&deb822, &list) else {
        eprintln!("xtask: no Debian bookworm source entry found; using the default suite");
        return Ok(false);
    };
    std::fs::write(out, text).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(true)
}

/// A deb822 bookworm-backports entry with the mirror (and key) of the machine's own bookworm
/// entry, from either the deb822 `debian.sources` or a one-line `sources.list`.
fn backports_entry(deb822: &str, list: &str) -> Option<String> {
    let field = |stanza: &str, key: &str| {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let stanza = deb822.split("\n\n").find(|s| {
        field(s, "Suites:").is_some_and(|v| v.split_whitespace().any(|x| x == "bookworm"))
    });
    let (uri, signed) = match stanza {
        Some(s) => (field(s, "URIs:")?, field(s, "Signed-By:")),
        None => {
            let uri = list.lines().find_map(|l| {
                let words: Vec<&str> = l
                    .split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .collect();
                match words.as_slice() {
                    ["deb", uri, "bookworm", ..] => Some(uri.to_string()),
                    _ => None,
                }
            })?;
            (uri, None)
        }
    };
    let mut text =
        format!("Types: deb\nURIs: {uri}\nSuites: bookworm-backports\nComponents: main\n");
    if let Some(s) = signed {
        text.push_str(&format!("Signed-By: {s}\n"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::backports_entry;

    #[test]
    fn backports_entry_from_deb822() {
        let src = "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\
                   Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n\
                   Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n";
        let e = backports_entry(src, "").expect("entry");
        assert!(e.contains("URIs: http://mirror.invalid/debian\n"));
        assert!(e.contains("Suites: bookworm-backports\n"));
        assert!(e.contains("Signed-By: /usr/share/keyrings/k.gpg\n"));
    }

    #[test]
    fn backports_entry_from_one_line_list() {
        let list = "# comment\ndeb [arch=amd64] http://mirror.invalid/debian bookworm main\n";
        let e = backports_entry("", list).expect("entry");
        assert!(e.contains("URIs: http://mirror.invalid/debian\n"));
        assert_eq!(
            backports_entry("", "deb http://x.invalid/debian trixie main\n"),
            None
        );
    }
}
