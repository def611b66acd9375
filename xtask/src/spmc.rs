//! `--spmc hafnium|el3`: the scenarios under real firmware on QEMU virt instead of the testbed.
//!
//! - `hafnium`: TF-A v2.15.0 (BL1, BL2, BL31 with the SPMD) and Hafnium v2.15.0 as the S-EL2
//!   SPMC (`secure_qemu_aarch64`); the SP package (`fvp/qemu/sp_layout.json`) sits in the FIP
//!   and BL2 loads it where `fvp/qemu/tb-fw-config.dts` says; Hafnium reads
//!   `fvp/qemu/spmc-manifest-hafnium.dts`.
//! - `el3`: TF-A v2.15.0 with its EL3 SPMC (the RK3588 mode); the raw SP image of the
//!   `qemu-el3` build is BL32 and its manifest is TOS_FW_CONFIG.
//!
//! Both put the normal-world client in the FIP as BL33 (BL31 enters it at NS-EL2); QEMU loads
//! its boot configuration at `ns_ram::BOOT_CONFIG` and the model at `ns_ram::MODEL_BASE`.
//! CI cannot fetch these sources, so the user names the trees (`--tfa DIR`, `--hafnium DIR`, or
//! FLEXSERVE_TFA_DIR / FLEXSERVE_HAFNIUM_DIR); without them the command prints what to check out
//! ([`howto`]). Everything built goes under `target/flexserve/spmc/`: TF-A builds with
//! `BUILD_BASE=`, Hafnium with `gn gen OUT` and `ninja -C OUT`, so the trees stay untouched.

use crate::images::{self, Platform};
use crate::qemu::{self, Outcome};
use crate::{Result, deps, flag, root, which};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use testbed_layout::Spmc;

/// `--spmc NAME` of `args`, the testbed without one.
pub fn spmc_from_args(args: &[String]) -> Result<Spmc> {
    match flag(args, "--spmc") {
        None => Ok(Spmc::Testbed),
        Some(o) => {
            Spmc::parse(o).ok_or_else(|| format!("unknown --spmc `{o}` (testbed, hafnium, el3)"))
        }
    }
}

/// Cores QEMU starts with: the client sends requests from two. Hafnium's manifest lists exactly
/// these (checked in [`check_hafnium_configs`]); the EL3 SPMC wants one SP context per
/// PLATFORM_CORE_COUNT (32 on TF-A's QEMU port), whatever QEMU runs.
const SMP: usize = 2;

/// Appended to `fvp/qemu/sp-manifest.dts` for Hafnium: the testbed's firewall nodes removed.
pub const HAFNIUM_OVERLAY: &str = "hafnium-overlay.dtsi";

/// Where TF-A's QEMU port loads and enters BL32 (`plat/qemu/qemu/include/platform_def.h`
/// BL32_BASE = SEC_DRAM_BASE): the EL3 SPMC enters the SP image there.
const EL3_BL32_BASE: u64 = 0x0e10_0000;

/// TF-A options for either stack (TF-A docs/plat/qemu.rst; research/platform-facts.md 4.9).
const TFA_COMMON: &[&str] = &[
    "PLAT=qemu",
    "CROSS_COMPILE=aarch64-linux-gnu-",
    "SPD=spmd",
    // Hafnium and the testbed use GICv3; with the default GICv2 driver BL31 asserts.
    "QEMU_USE_GIC_DRIVER=QEMU_GICV3",
    // Armv8.3: later baselines make TF-A touch FEAT_TRF, which `-cpu max` lacks.
    "ARM_ARCH_MAJOR=8",
    "ARM_ARCH_MINOR=3",
    "BRANCH_PROTECTION=1",
    "CTX_INCLUDE_PAUTH_REGS=1",
    "NEED_FDT=yes",
];

/// TF-A options for Hafnium at S-EL2.
const TFA_HAFNIUM: &[&str] = &[
    "DEBUG=1",
    // NOTICE and WARNING, not the 32 per-core INFO lines of a debug build.
    "LOG_LEVEL=30",
    "SPMD_SPM_AT_SEL2=1",
    "ENABLE_FEAT_SEL2=1",
    // Hafnium's QEMU target is built with MTE (QEMU `mte=on`).
    "ENABLE_FEAT_MTE2=2",
    // Without SVE/SME for both worlds Hafnium panics reading SVCR at the SP's first MSG_WAIT.
    "ENABLE_SVE_FOR_NS=2",
    "ENABLE_SVE_FOR_SWD=1",
    "ENABLE_SME_FOR_NS=2",
    "ENABLE_SME_FOR_SWD=1",
];

/// TF-A options for the EL3 SPMC.
const TFA_EL3: &[&str] = &[
    // BL31 with 32 cores' SPMC and FP contexts fits the port's 0x70000 bytes only as a release
    // build printing ERROR and NOTICE (a debug one overflows by 12 KiB, WARNING adds 4 KiB).
    "DEBUG=0",
    "LOG_LEVEL=20",
    "SPMD_SPM_AT_SEL2=0",
    "SPMC_AT_EL3=1",
    // The EL3 SPMC saves FP/SIMD around the SP only with this (else the SP corrupts the normal
    // world's vector registers); TF-A refuses it with SVE/SME for the normal world, so QEMU
    // runs without them.
    "CTX_INCLUDE_FPREGS=1",
    "ENABLE_SVE_FOR_NS=0",
    "ENABLE_SME_FOR_NS=0",
];

/// What the scenario boots: QEMU's firmware image and the client's inputs.
pub struct Boot {
    pub spmc: Spmc,
    /// BL1 followed by the FIP (`qemu_fw.bios`).
    pub bios: PathBuf,
    pub boot_config: PathBuf,
    pub model: Option<PathBuf>,
    pub sealed: Option<PathBuf>,
}

/// The user's source trees.
struct Trees {
    tfa: PathBuf,
    hafnium: Option<PathBuf>,
}

fn out_dir(what: &str) -> PathBuf {
    images::out_dir("spmc").join(what)
}

/// Builds the firmware for `spmc`, the SP (with `sp_features`) and the BL33 client for one
/// scenario, from the trees `args` (or the environment) name.
pub fn build(
    spmc: Spmc,
    args: &[String],
    scenario: &str,
    sp_features: &[&str],
    inputs: &images::NwInputs,
) -> Result<Boot> {
    let trees = locate(spmc, args)?;
    deps::ensure_spmc(spmc == Spmc::Hafnium)?;
    let t = Instant::now();
    let client = images::build_client_bl33()?;
    let boot_config = images::write_boot_config(scenario, spmc.name(), inputs)?;
    let python = sptool_python()?;
    let bios = match spmc {
        Spmc::Hafnium => {
            let hafnium = trees.hafnium.as_deref().ok_or("no Hafnium tree")?;
            check_hafnium_configs()?;
            // build_sp stages sp_layout.json with the image and manifest DTS it names; the
            // overlay drops the testbed's emulated firewall (QEMU has none).
            let sp = images::build_sp_with(Platform::Qemu, sp_features, Some(HAFNIUM_OVERLAY))?;
            let layout = sp.pkg.parent().ok_or("SP package without a directory")?;
            let bl32 = build_hafnium(hafnium)?;
            let cfg = root().join("fvp/qemu");
            let mut opts = vec![
                format!(
                    "QEMU_TOS_FW_CONFIG_DTS={}",
                    cfg.join("spmc-manifest-hafnium.dts").display()
                ),
                format!(
                    "QEMU_TB_FW_CONFIG_DTS={}",
                    cfg.join("tb-fw-config.dts").display()
                ),
                format!("SP_LAYOUT_FILE={}", layout.join("sp_layout.json").display()),
                format!("BL32={}", bl32.display()),
            ];
            opts.extend(TFA_HAFNIUM.iter().map(|s| s.to_string()));
            build_tfa(&trees.tfa, "hafnium", &opts, &client, &python)?
        }
        Spmc::El3 => {
            // The raw image (sp.pkg for a BL32 platform), checked to fit TOS_FW_CONFIG.
            let sp = images::build_sp(Platform::QemuEl3, sp_features)?;
            check_el3_image()?;
            let manifest = sp.pkg.with_file_name("sp-manifest.dts");
            let mut opts = vec![
                format!("QEMU_TOS_FW_CONFIG_DTS={}", manifest.display()),
                format!("BL32={}", sp.pkg.display()),
            ];
            opts.extend(TFA_EL3.iter().map(|s| s.to_string()));
            build_tfa(&trees.tfa, "el3", &opts, &client, &python)?
        }
        Spmc::Testbed => return Err("the testbed is built by images::build_flash".into()),
    };
    eprintln!(
        "xtask: {} firmware in {:.1} s: {}",
        spmc.name(),
        t.elapsed().as_secs_f64(),
        bios.display()
    );
    Ok(Boot {
        spmc,
        bios,
        boot_config,
        model: inputs.model().map(Path::to_path_buf),
        sealed: inputs.sealed_file().map(Path::to_path_buf),
    })
}

/// The QEMU command line for `boot` (research/platform-facts.md 4.1, 4.9).
pub fn qemu_command(boot: &Boot) -> Result<Command> {
    let run = out_dir("run");
    // TF-A's QEMU port falls back to semihosting file loads (bl2.bin, ...) from QEMU's working
    // directory for anything missing in the FIP: keep that directory empty.
    std::fs::create_dir_all(&run).map_err(|e| format!("{}: {e}", run.display()))?;
    let (machine, cpu) = match boot.spmc {
        Spmc::El3 => (
            "virt,secure=on,virtualization=on,gic-version=3",
            "max,sve=off,sme=off",
        ),
        _ => (
            "virt,secure=on,virtualization=on,gic-version=3,mte=on",
            "max",
        ),
    };
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.current_dir(&run)
        .args(["-M", machine, "-cpu", cpu, "-m", "1024", "-smp"])
        .arg(SMP.to_string())
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-semihosting-config",
            "enable=on,target=native",
            // The NS UART (TF-A, Hafnium, the client) and the secure one (the SP) on one stream.
            "-chardev",
            "stdio,id=con,mux=on,signal=off",
            "-serial",
            "chardev:con",
            "-serial",
            "chardev:con",
            "-bios",
        ])
        .arg(&boot.bios)
        .args(qemu::nw_loader_args(
            Some(&boot.boot_config),
            boot.model.as_deref(),
            boot.sealed.as_deref(),
        ));
    Ok(cmd)
}

/// Boots `boot` and collects the client's checks.
pub fn run(boot: &Boot, timeout: Duration) -> Result<Outcome> {
    qemu::run_command(qemu_command(boot)?, timeout, true)
}

/// The trees named by `--tfa` / `--hafnium` or FLEXSERVE_TFA_DIR / FLEXSERVE_HAFNIUM_DIR,
/// checked to look like the sources this path is written for.
fn locate(spmc: Spmc, args: &[String]) -> Result<Trees> {
    let named = |flag_name: &str, var: &str| {
        flag(args, flag_name)
            .map(PathBuf::from)
            .or_else(|| std::env::var_os(var).map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
    };
    let tfa = named("--tfa", "FLEXSERVE_TFA_DIR");
    let hafnium = match spmc {
        Spmc::Hafnium => named("--hafnium", "FLEXSERVE_HAFNIUM_DIR"),
        _ => None,
    };
    let (Some(tfa), true) = (tfa, spmc != Spmc::Hafnium || hafnium.is_some()) else {
        return Err(howto(spmc));
    };
    let tfa = absolute(&tfa)?;
    if !tfa.join("plat/qemu/qemu/platform.mk").is_file() {
        return Err(format!(
            "{} is not a TF-A tree (no plat/qemu/qemu/platform.mk)\n\n{}",
            tfa.display(),
            howto(spmc)
        ));
    }
    match tfa_version(&tfa) {
        Some((2, 15)) => {}
        v => eprintln!(
            "xtask: warning: {} is TF-A {}, this path is written for v2.15.0",
            tfa.display(),
            v.map_or("of unknown version".into(), |(a, b)| format!("v{a}.{b}"))
        ),
    }
    let hafnium = match hafnium {
        None => None,
        Some(h) => {
            let h = absolute(&h)?;
            check_hafnium_tree(&h)?;
            Some(h)
        }
    };
    Ok(Trees { tfa, hafnium })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// (major, minor) from TF-A's top-level Makefile.
fn tfa_version(tfa: &Path) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(tfa.join("Makefile")).ok()?;
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(":=")?;
            (k.trim() == key).then(|| v.trim().parse().ok())?
        })
    };
    Some((get("VERSION_MAJOR")?, get("VERSION_MINOR")?))
}

fn check_hafnium_tree(h: &Path) -> Result<()> {
    let reference = h.join("project/reference/BUILD.gn");
    let text = std::fs::read_to_string(&reference).unwrap_or_default();
    if !h.join("BUILD.gn").is_file() || !text.contains("secure_qemu_aarch64") {
        return Err(format!(
            "{} is not a Hafnium tree with its project/reference submodule (no \
             secure_qemu_aarch64 in {})\n\n{}",
            h.display(),
            reference.display(),
            howto(Spmc::Hafnium)
        ));
    }
    for sub in ["third_party/dtc", "third_party/googletest"] {
        if !h.join(sub).join("BUILD.gn").is_file() {
            return Err(format!(
                "{}: submodule {sub} is not checked out (gn loads its BUILD.gn); run\n  \
                 git -C {} submodule update --init {sub}",
                h.display(),
                h.display()
            ));
        }
    }
    Ok(())
}

/// What to check out, printed when a tree is not named.
pub fn howto(spmc: Spmc) -> String {
    let hafnium = spmc == Spmc::Hafnium;
    let mut s = format!(
        "--spmc {} builds TF-A v2.15.0{} for QEMU from source trees you check out once, anywhere \
         outside this repository (CI runs the testbed instead):\n\n  \
         git clone --depth 1 --branch v2.15.0 \
         https://github.com/ARM-software/arm-trusted-firmware.git tf-a\n",
        spmc.name(),
        if hafnium { " and Hafnium v2.15.0" } else { "" }
    );
    if hafnium {
        s.push_str(
            "  git clone --depth 1 --branch v2.15.0 https://github.com/TF-Hafnium/hafnium.git \
             hafnium\n  \
             git -C hafnium submodule update --init project/reference third_party/dtc \
             third_party/googletest\n\n  \
             # v2.15.0 pins a third_party/dtc commit whose BUILD.gn gn refuses; take the next \
             commit\n  \
             # of Hafnium's dtc fork, \"fix visibility list for libfdt config\":\n  \
             git -C hafnium/third_party/dtc fetch origin\n  \
             git -C hafnium/third_party/dtc log --oneline --reverse HEAD..origin/HEAD | head -1\n  \
             git -C hafnium/third_party/dtc checkout COMMIT_SHOWN_ABOVE\n",
        );
    }
    s.push_str(&format!(
        "\nthen name them with flags or the environment:\n\n  \
         cargo xtask scenario messaging --spmc {} --tfa $PWD/tf-a{}\n  \
         export FLEXSERVE_TFA_DIR=$PWD/tf-a{}\n\n",
        spmc.name(),
        if hafnium {
            " --hafnium $PWD/hafnium"
        } else {
            ""
        },
        if hafnium {
            " FLEXSERVE_HAFNIUM_DIR=$PWD/hafnium"
        } else {
            ""
        },
    ));
    s.push_str(
        "Debian packages (installed by xtask when run as root): make gcc-aarch64-linux-gnu \
         device-tree-compiler libssl-dev python3-venv qemu-system-arm (>= 8)",
    );
    if hafnium {
        s.push_str(" clang-19 lld-19 generate-ninja ninja-build");
    }
    s.push_str(
        "; TF-A's sptool also needs the Python module `fdt`, which xtask installs with pip into \
         a venv under target/flexserve/spmc/.",
    );
    s
}

/// A command's output goes to `log`; on failure its tail is printed.
fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    let file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("running {what} ({cmd:?}): {e}"))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(30)..] {
        eprintln!("  | {l}");
    }
    Err(format!(
        "{what} failed with {status}; full log: {}",
        log.display()
    ))
}

fn jobs() -> String {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string()
}

/// An LLVM bin directory with `clang` (18 or later: Hafnium v2.15 is C23) and `ld.lld`, whose
/// unversioned tool names Hafnium's toolchain calls; Debian's clang-19/lld-19 if there is none.
fn llvm_bin() -> Result<PathBuf> {
    let find = || {
        let usable = |dir: &Path| dir.join("clang").is_file() && dir.join("ld.lld").is_file();
        let versioned = (18..=22)
            .rev()
            .map(|v| PathBuf::from(format!("/usr/lib/llvm-{v}/bin")))
            .find(|d| usable(d));
        versioned.or_else(|| {
            let dir = which("clang")?.parent()?.to_path_buf();
            (usable(&dir) && clang_major(&dir.join("clang")).is_some_and(|v| v >= 18))
                .then_some(dir)
        })
    };
    if let Some(d) = find() {
        return Ok(d);
    }
    deps::ensure_llvm()?;
    find().ok_or_else(|| "no LLVM 18+ with clang and ld.lld found after installing clang-19".into())
}

fn clang_major(clang: &Path) -> Option<u32> {
    let out = Command::new(clang).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}

/// The Hafnium tree's own prebuilt tool (`prebuilts/linux-x64/NAME/NAME`, what its Makefile
/// uses) if that submodule is checked out, else the one on PATH.
fn hafnium_tool(hafnium: &Path, name: &str) -> PathBuf {
    let pre = hafnium.join("prebuilts/linux-x64").join(name).join(name);
    if pre.is_file() {
        pre
    } else {
        PathBuf::from(name)
    }
}

/// Builds Hafnium's `secure_qemu_aarch64` target out of tree; returns `hafnium.bin`.
fn build_hafnium(hafnium: &Path) -> Result<PathBuf> {
    let llvm = llvm_bin()?;
    let out = out_dir("hafnium");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let resource = Command::new(llvm.join("clang"))
        .arg("--print-resource-dir")
        .output()
        .map_err(|e| format!("clang --print-resource-dir: {e}"))?;
    let toolchain_lib = String::from_utf8_lossy(&resource.stdout).trim().to_string();
    let path = format!(
        "{}:{}",
        llvm.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let gn_args =
        format!("project=\"reference\" toolchain_lib=\"{toolchain_lib}\" enable_assertions=\"1\"");
    eprintln!(
        "xtask: building Hafnium secure_qemu_aarch64 from {} (LLVM {})",
        hafnium.display(),
        llvm.display()
    );
    let t = Instant::now();
    let gn_log = out.join("gn.log");
    run_logged(
        Command::new(hafnium_tool(hafnium, "gn"))
            .env("PATH", &path)
            .arg("gen")
            .arg(format!("--root={}", hafnium.display()))
            .arg(format!("--args={gn_args}"))
            .arg(&out),
        &gn_log,
        "gn gen (Hafnium)",
    )
    .map_err(|e| {
        let log = std::fs::read_to_string(&gn_log).unwrap_or_default();
        if log.contains("visibility") || log.contains("not in the visibility list") {
            format!(
                "{e}\n  Hafnium v2.15.0's third_party/dtc pin has a BUILD.gn visibility list that \
                 gn refuses; its fork's next commit (\"fix visibility list for libfdt config\") \
                 fixes it, and Debian's gn may refuse one more line (see README.md, \"Running on \
                 the real SPMCs\")"
            )
        } else {
            e
        }
    })?;
    run_logged(
        Command::new(hafnium_tool(hafnium, "ninja"))
            .env("PATH", &path)
            .arg("-C")
            .arg(&out)
            .arg("project/reference:secure_qemu_aarch64"),
        &out.join("ninja.log"),
        "ninja (Hafnium)",
    )?;
    let bin = out.join("secure_qemu_aarch64_clang/hafnium.bin");
    if !bin.is_file() {
        return Err(format!("Hafnium built, but {} is missing", bin.display()));
    }
    eprintln!("xtask: Hafnium in {:.1} s", t.elapsed().as_secs_f64());
    Ok(bin)
}

/// Builds TF-A (`all fip`) with `opts` and the client as BL33 into
/// `target/flexserve/spmc/tfa-NAME`; returns `qemu_fw.bios`.
fn build_tfa(
    tfa: &Path,
    name: &str,
    opts: &[String],
    bl33: &Path,
    python: &Path,
) -> Result<PathBuf> {
    let base = out_dir(&format!("tfa-{name}"));
    let mut args: Vec<String> = TFA_COMMON.iter().map(|s| s.to_string()).collect();
    args.extend_from_slice(opts);
    args.push(format!("BL33={}", bl33.display()));
    // TF-A's make does not rebuild objects when options change: start afresh when they do.
    let stamp = base.join("xtask-options.txt");
    let options = format!("{}\n{}\n", tfa.display(), args.join("\n"));
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(options.as_str()) && base.exists() {
        std::fs::remove_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    }
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    eprintln!("xtask: building TF-A ({name}) from {}", tfa.display());
    let t = Instant::now();
    let mut cmd = Command::new("make");
    cmd.current_dir(tfa)
        .arg(format!("-j{}", jobs()))
        .arg(format!("BUILD_BASE={}", base.display()))
        .arg(format!("PYTHON={}", python.display()))
        .arg(format!("POETRY={}", poetry_shim()?.display()))
        .args(&args)
        .args(["all", "fip"]);
    run_logged(&mut cmd, &base.join("make.log"), "TF-A make")?;
    std::fs::write(&stamp, options).map_err(|e| format!("{}: {e}", stamp.display()))?;
    let debug = opts.iter().any(|o| o == "DEBUG=1");
    let bios = base
        .join("qemu")
        .join(if debug { "debug" } else { "release" })
        .join("qemu_fw.bios");
    if !bios.is_file() {
        return Err(format!("TF-A built, but {} is missing", bios.display()));
    }
    eprintln!("xtask: TF-A in {:.1} s", t.elapsed().as_secs_f64());
    Ok(bios)
}

/// TF-A v2.15 wraps sptool in `poetry install` / `poetry run` and falls back to a `poetry` on
/// PATH even when there is none; this stand-in runs the command with the venv's Python instead.
fn poetry_shim() -> Result<PathBuf> {
    let path = out_dir("tools").join("poetry");
    let script = "#!/bin/sh\n\
                  # Stand-in for TF-A's `poetry -q install --no-root` / `poetry run CMD...`.\n\
                  [ \"$1\" = \"-q\" ] && shift\n\
                  case \"$1\" in\n\
                  install) exit 0 ;;\n\
                  run) shift; exec \"$@\" ;;\n\
                  *) echo \"xtask poetry stand-in: unsupported: $*\" >&2; exit 1 ;;\n\
                  esac\n";
    if std::fs::read_to_string(&path).ok().as_deref() != Some(script) {
        std::fs::create_dir_all(out_dir("tools")).map_err(|e| e.to_string())?;
        std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    Ok(path)
}

/// A Python with the `fdt` module sptool imports (TF-A's pyproject: fdt ^0.3): `python3` if it
/// has it, else a venv under target/flexserve/spmc/ with it from pip.
fn sptool_python() -> Result<PathBuf> {
    let has_fdt = |py: &Path| {
        Command::new(py)
            .args(["-c", "import fdt"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(py) = which("python3").filter(|p| has_fdt(p)) {
        return Ok(py);
    }
    let venv = out_dir("venv");
    let py = venv.join("bin/python");
    if !has_fdt(&py) {
        eprintln!(
            "xtask: creating {} (fdt, for TF-A's sptool)",
            venv.display()
        );
        crate::run_status(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .map_err(|e| format!("{e} (Debian: apt-get install python3-venv)"))?;
        crate::run_status(Command::new(&py).args(["-m", "pip", "install", "-q", "fdt>=0.3,<0.4"]))?;
    }
    Ok(py)
}

/// The Hafnium-side configuration files agree with the SP's layout and with [`SMP`].
fn check_hafnium_configs() -> Result<()> {
    let cfg = root().join("fvp/qemu");
    let read =
        |f: &str| std::fs::read_to_string(cfg.join(f)).map_err(|e| format!("fvp/qemu/{f}: {e}"));
    let layout = read("sp_layout.json")?;
    let tb = read("tb-fw-config.dts")?;
    let spmc = read("spmc-manifest-hafnium.dts")?;
    let uuid = json_str(&layout, "uuid").ok_or("fvp/qemu/sp_layout.json: no uuid")?;
    let load = json_str(&layout, "physical-load-address")
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .ok_or("fvp/qemu/sp_layout.json: no physical-load-address")?;
    if !tb.contains(&format!("uuid = \"{uuid}\"")) {
        return Err(format!(
            "fvp/qemu/tb-fw-config.dts does not name the SP's uuid {uuid} (sp_layout.json)"
        ));
    }
    let load_cell = format!("load-address = <{load:#010x}>");
    let vm_load = format!("load_address = <{load:#010x}>");
    if !tb.contains(&load_cell) || !spmc.contains(&vm_load) {
        return Err(format!(
            "fvp/qemu/tb-fw-config.dts (`{load_cell}`) and spmc-manifest-hafnium.dts \
             (`{vm_load}`) must both name the SP package's load address {load:#x}"
        ));
    }
    let cpus = spmc.matches("device_type = \"cpu\"").count();
    if cpus != SMP {
        return Err(format!(
            "fvp/qemu/spmc-manifest-hafnium.dts lists {cpus} cpus; QEMU runs -smp {SMP}"
        ));
    }
    Ok(())
}

/// `"key": "value"` in a JSON text (sp_layout.json is flat enough for this).
fn json_str<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let rest = json.split(&format!("\"{key}\"")).nth(1)?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    rest.strip_prefix('"')?.split('"').next()
}

/// The `qemu-el3` SP image just built must start at the BL32 base: TF-A's QEMU port loads and
/// enters BL32 there, not where the image is linked.
fn check_el3_image() -> Result<()> {
    let elf = crate::target_dir()
        .join(images::BARE_TARGET)
        .join("release/flexserve-sp");
    let (_, base) = images::elf_to_bin(&elf)?;
    if base != EL3_BL32_BASE {
        return Err(format!(
            "the qemu-el3 SP image starts at {base:#x}; TF-A's QEMU port loads and enters BL32 \
             at {EL3_BL32_BASE:#x}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spmc_flag() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(spmc_from_args(&args(&[])), Ok(Spmc::Testbed));
        assert_eq!(
            spmc_from_args(&args(&["--spmc", "hafnium"])),
            Ok(Spmc::Hafnium)
        );
        assert_eq!(
            spmc_from_args(&args(&["x", "--spmc", "el3"])),
            Ok(Spmc::El3)
        );
        assert!(spmc_from_args(&args(&["--spmc", "optee"])).is_err());
    }

    #[test]
    fn howto_names_repositories_tags_and_packages() {
        let h = howto(Spmc::Hafnium);
        assert!(h.contains("arm-trusted-firmware.git tf-a"));
        assert!(h.contains("hafnium.git hafnium"));
        assert!(h.contains("--branch v2.15.0"));
        assert!(h.contains("third_party/dtc"));
        assert!(h.contains("clang-19 lld-19 generate-ninja ninja-build"));
        let e = howto(Spmc::El3);
        assert!(e.contains("arm-trusted-firmware.git"));
        assert!(!e.contains("hafnium.git"));
        assert!(!e.contains("clang-19"));
    }

    #[test]
    fn layout_fields() {
        let j = "{\n\t\"sp\": {\n\t\t\"uuid\": \"9dfe76d4-50b3\",\n\t\t\"physical-load-address\" : \
                 \"0xe300000\"\n\t}\n}";
        assert_eq!(json_str(j, "uuid"), Some("9dfe76d4-50b3"));
        assert_eq!(json_str(j, "physical-load-address"), Some("0xe300000"));
        assert_eq!(json_str(j, "owner"), None);
    }

    #[test]
    fn tfa_version_from_makefile() {
        let dir = std::env::temp_dir().join(format!("xtask-tfa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Makefile"),
            "VERSION_MAJOR\t\t\t:= 2\nVERSION_MINOR\t\t\t:= 15\nVERSION_PATCH := 0\n",
        )
        .unwrap();
        assert_eq!(tfa_version(&dir), Some((2, 15)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The checked-in Hafnium configuration files agree with each other and with SMP.
    #[test]
    fn hafnium_configs_agree() {
        check_hafnium_configs().unwrap();
    }
}
