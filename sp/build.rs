//! Picks the platform's linker memory file and records the build id.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let commit = Command::new("git")
        .args(["rev-parse", "--short=8", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo::rustc-env=FLEXSERVE_BUILD_ID={commit}");
    println!("cargo::rerun-if-changed=../.git/HEAD");
    // HEAD names a branch: its ref file is what a commit changes.
    if let Some(r) = std::fs::read_to_string(root.join("../.git/HEAD"))
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        println!("cargo::rerun-if-changed=../.git/{r}");
    }
    println!("cargo::rerun-if-changed=build.rs");

    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let platforms = [
        ("CARGO_FEATURE_QEMU", "qemu"),
        ("CARGO_FEATURE_FVP_BASE", "fvp-base"),
        ("CARGO_FEATURE_RK3588", "rk3588"),
        ("CARGO_FEATURE_QEMU_EL3", "qemu-el3"),
    ];
    let chosen: Vec<&str> = platforms
        .iter()
        .filter(|(f, _)| env::var_os(f).is_some())
        .map(|(_, p)| *p)
        .collect();
    let platform = match chosen.as_slice() {
        [p] => *p,
        _ => panic!(
            "enable exactly one platform feature (qemu, fvp-base, rk3588, qemu-el3), got {chosen:?}"
        ),
    };
    let linker = root.join("../linker");
    // The platform file gives the MEMORY region `image`; aarch64-rt's image.ld lays out the
    // sections (entry first, then text, rodata, data, bss, boot stack).
    println!("cargo::rustc-link-search={}", linker.display());
    println!("cargo::rustc-link-arg-bins=-T{platform}.ld");
    println!("cargo::rustc-link-arg-bins=-Timage.ld");
    // No ELF/program headers in a loadable segment: the first loaded byte must be the entry (at
    // load-address + entrypoint-offset), not headers placed in the gap below it.
    println!("cargo::rustc-link-arg-bins=--nmagic");
    println!(
        "cargo::rerun-if-changed={}",
        linker.join(format!("{platform}.ld")).display()
    );
}
