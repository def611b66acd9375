//! `cargo xtask`: build, run, test and benchmark FlexServe-RS.
//!
//! - `cargo xtask run [--model M.gguf]`: build the SP, the testbed and the client, boot QEMU and
//!   run the demo scenario.
//! - `run` and `scenario` take `--spmc hafnium|el3` (with `--tfa DIR`, `--hafnium DIR` or
//!   FLEXSERVE_TFA_DIR / FLEXSERVE_HAFNIUM_DIR) to run on real TF-A + Hafnium or TF-A's EL3
//!   SPMC instead of the testbed (`spmc.rs`).
//! - `cargo xtask test [--only lint|host|aarch64|packages|scenarios]`: every test.
//! - `cargo xtask scenario NAME`: one QEMU scenario.
//! - `cargo xtask build [--platform qemu|fvp-base|rk3588|qemu-el3|all]`: SP packages (+ the QEMU flash image).
//! - `cargo xtask bench [runtime|sealed|npu]`: benchmarks, side by side with their peers (sealed: the
//!   model cipher with and without the ARMv8 crypto extensions).
//! - `cargo xtask deps`: install what the commands need.

mod bench_npu;
mod bench_runtime;
mod bench_sealed;
mod deps;
mod images;
mod qemu;
mod sealing;
mod spmc;

use spmc::Spmc;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testbed_layout::SealedKind;

pub type Result<T> = std::result::Result<T, String>;

/// A QEMU scenario `cargo xtask test` runs.
#[derive(Clone, Copy)]
struct Scenario<'a> {
    name: &'a str,
    /// Extra `flexserve-sp` features the scenario needs.
    sp_features: &'static [&'static str],
    /// The scenario makes the SP fail on purpose.
    expect_sp_failure: bool,
    /// QEMU loads the default model for the client (boot config `model_base`/`model_size`).
    with_model: bool,
    /// QEMU loads the default model sealed, as every `SealedKind` (boot config `sealed_*`).
    with_sealed: bool,
    timeout_s: u64,
    /// Extra boot-configuration lines (`key=value`).
    boot_extra: &'static [&'static str],
}

impl<'a> Scenario<'a> {
    const fn new(name: &'a str) -> Self {
        Scenario {
            name,
            sp_features: &[],
            expect_sp_failure: false,
            with_model: false,
            with_sealed: false,
            timeout_s: 300,
            boot_extra: &[],
        }
    }

    /// Flex-Mem: only the firewall protects lent pages (no NS hypervisor, as on FVP/RK3588).
    const fn flexmem(name: &'a str) -> Self {
        Scenario {
            boot_extra: &["lend-enforcement=off"],
            ..Scenario::new(name)
        }
    }

    /// A scenario that serves the default model as a plaintext GGUF (its hostile files need
    /// the test-only plaintext loader).
    const fn serving(name: &'a str) -> Self {
        Scenario {
            name,
            sp_features: &["plaintext-models"],
            expect_sp_failure: false,
            with_model: true,
            with_sealed: false,
            timeout_s: 600,
            boot_extra: &[],
        }
    }

    /// The sealed-model scenario: the release SP (no plaintext loader); the plaintext model is
    /// there for the client's own reference run only.
    const fn sealed(name: &'a str) -> Self {
        Scenario {
            name,
            sp_features: &[],
            expect_sp_failure: false,
            with_model: true,
            with_sealed: true,
            timeout_s: 900,
            boot_extra: &[],
        }
    }

    /// A scenario that makes the SP fail (panic, fault) and checks the testbed and client see it.
    const fn sp_fault(name: &'a str) -> Self {
        Scenario {
            name,
            sp_features: &["fault-injection"],
            expect_sp_failure: true,
            with_model: false,
            with_sealed: false,
            timeout_s: 120,
            boot_extra: &[],
        }
    }
}

const SCENARIOS: &[Scenario<'static>] = &[
    Scenario::new("messaging"),
    Scenario::new("demo"),
    Scenario::new("memory"),
    Scenario::serving("serve"),
    Scenario::sealed("sealed"),
    Scenario::flexmem("flexmem"),
    Scenario::flexmem("flexnpu"),
    Scenario::sp_fault("sp-panic"),
    Scenario::sp_fault("sp-data-abort"),
    Scenario::sp_fault("sp-stack-overflow"),
];

/// The scenarios that need the NPU's own CPU (3 or more); `cargo xtask test` runs every other
/// one on a one-CPU testbed too.
const NEEDS_NPU_CPU: &[&str] = &["flexnpu"];

/// The extra boot-configuration lines of scenario `name` (none for an unknown one).
pub fn scenario_boot_extra(name: &str) -> &'static [&'static str] {
    SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .map_or(&[], |s| s.boot_extra)
}

/// The model `cargo xtask run` serves unless `--model` names another GGUF.
const DEFAULT_MODEL: &str = "llm-runtime/models/fortunes-q8_0.gguf";

/// The aarch64 CPU models the NEON kernels are tested on, and the kernel paths each must select.
const AARCH64_CPUS: &[(&str, &str)] = &[
    ("max", "sdot,smmla"),
    ("cortex-a76", "sdot"),
    ("cortex-a53", "neon"),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    let result = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("test") => cmd_test(&args[1..]),
        Some("scenario") => cmd_scenario(&args[1..]),
        Some("build") => cmd_build(&args[1..]),
        Some("bench") => cmd_bench(&args[1..]),
        Some("deps") => deps::ensure(),
        _ => Err(usage()),
    };
    match result {
        Ok(()) => eprintln!("xtask: done in {:.1} s", started.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            std::process::exit(1);
        }
    }
}

fn usage() -> String {
    "usage: cargo xtask <run [--model M] [--plaintext] [SPMC] | test [--only STEP] | scenario NAME [SPMC] \
     | build [--platform P] | bench [runtime|sealed|npu] | deps>\n  \
     SPMC: --spmc testbed|hafnium|el3 [--tfa DIR] [--hafnium DIR] (default: the testbed)\n  \
     testbed: --smp N (CPUs, 1-4; default 3: two for the normal world, one for the NPU)"
        .into()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The testbed's CPU count: `--smp N` (1 to `cpus::MAX`), else `cpus::DEFAULT`.
fn smp_from_args(args: &[String]) -> Result<usize> {
    use testbed_layout::cpus;
    match flag(args, "--smp") {
        None => Ok(cpus::DEFAULT),
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=cpus::MAX).contains(n))
            .ok_or_else(|| format!("--smp {n}: the testbed runs 1 to {} CPUs", cpus::MAX)),
    }
}

fn cmd_run(args: &[String]) -> Result<()> {
    let spmc = spmc::spmc_from_args(args)?;
    deps::ensure()?;
    let model = flag(args, "--model")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(DEFAULT_MODEL));
    let timeout = Duration::from_secs(600);
    // The release SP serves sealed models only: the model goes to the partition sealed to the
    // testbed device, and the client never holds its plaintext. `--plaintext` is the test
    // build's path (feature `plaintext-models`): the client lends the GGUF itself and checks
    // the SP's tokens against its own run.
    let plaintext = args.iter().any(|a| a == "--plaintext");
    let (inputs, features): (_, &[&str]) = if plaintext {
        let i = images::NwInputs {
            model: Some(model.clone()),
            sealed: None,
        };
        (i, &["plaintext-models"])
    } else {
        let i = images::NwInputs {
            model: None,
            sealed: Some(sealing::bundle(&model, &[SealedKind::Main])?),
        };
        (i, &[])
    };
    let out = if spmc == Spmc::Testbed {
        let flash = images::build_flash("demo", features, &inputs)?;
        eprintln!(
            "xtask: booting QEMU (testbed EL3 + S-EL2 SPMC, FlexServe SP at S-EL1, client at \
             NS-EL1)"
        );
        qemu::run(&flash, &inputs, smp_from_args(args)?, timeout, true)?
    } else {
        let boot = spmc::build(spmc, args, "demo", features, &inputs)?;
        eprintln!(
            "xtask: booting QEMU ({}, FlexServe SP, client as BL33)",
            stack(spmc)
        );
        spmc::run(&boot, timeout)?
    };
    out.verdict(false, spmc == Spmc::Testbed)
        .map_err(|e| format!("demo: {e}"))
}

/// What runs below the client, for messages.
fn stack(spmc: Spmc) -> &'static str {
    match spmc {
        Spmc::Testbed => "testbed EL3 + S-EL2 SPMC",
        Spmc::Hafnium => "TF-A v2.15 BL31 + Hafnium at S-EL2",
        Spmc::El3 => "TF-A v2.15 BL31 with the EL3 SPMC",
    }
}

fn cmd_scenario(args: &[String]) -> Result<()> {
    let name = args.first().filter(|a| !a.starts_with("--")).ok_or(
        "usage: cargo xtask scenario NAME [--spmc testbed|hafnium|el3 --tfa DIR --hafnium DIR]",
    )?;
    let spmc = spmc::spmc_from_args(args)?;
    deps::ensure()?;
    let unknown = Scenario::new("");
    let sc = SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or(&unknown);
    run_scenario(&Scenario { name, ..*sc }, spmc, args)
}

/// Runs one scenario on the testbed or, with `spmc`, on the real firmware `args` names.
fn run_scenario(sc: &Scenario, spmc: Spmc, args: &[String]) -> Result<()> {
    let Scenario {
        name,
        sp_features,
        expect_sp_failure,
        with_model,
        with_sealed,
        timeout_s,
        ..
    } = *sc;
    let default_model = root().join(DEFAULT_MODEL);
    let inputs = images::NwInputs {
        model: with_model.then(|| default_model.clone()),
        sealed: if with_sealed {
            Some(sealing::bundle(&default_model, &SealedKind::ALL)?)
        } else {
            None
        },
    };
    let timeout = Duration::from_secs(timeout_s);
    let (out, t) = if spmc == Spmc::Testbed {
        let flash = images::build_flash(name, sp_features, &inputs)?;
        let smp = smp_from_args(args)?;
        eprintln!("xtask: scenario {name} ({smp} CPUs)");
        let t = Instant::now();
        (qemu::run(&flash, &inputs, smp, timeout, true)?, t)
    } else {
        let boot = spmc::build(spmc, args, name, sp_features, &inputs)?;
        eprintln!("xtask: scenario {name} under {}", stack(spmc));
        let t = Instant::now();
        (spmc::run(&boot, timeout)?, t)
    };
    let verdict = out.verdict(expect_sp_failure, spmc == Spmc::Testbed);
    eprintln!(
        "xtask: scenario {name} ({}): {} passed, {} failed, {} skipped, {:.1} s wall{}",
        spmc.name(),
        out.passed,
        out.failed,
        out.skipped,
        t.elapsed().as_secs_f64(),
        verdict
            .as_ref()
            .err()
            .map(|e| format!(" -- FAILED: {e}"))
            .unwrap_or_default()
    );
    verdict.map_err(|e| format!("scenario {name}: {e}"))
}

fn cmd_build(args: &[String]) -> Result<()> {
    deps::ensure()?;
    let platforms = match flag(args, "--platform") {
        None | Some("all") => images::Platform::ALL.to_vec(),
        Some(p) => vec![images::Platform::parse(p)?],
    };
    for p in platforms {
        let sp = images::build_sp(p, &[])?;
        eprintln!(
            "xtask: {}: SP image {} bytes -> {} (manifest {})",
            p.name(),
            sp.image_size,
            sp.pkg.display(),
            sp.manifest_dtb.display()
        );
    }
    Ok(())
}

fn cmd_bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None | Some("runtime") => {
            deps::ensure_bench()?;
            if std::env::var_os("FLEXSERVE_PYTHON").is_none() {
                let py = bench_python()?;
                // SAFETY: xtask is single-threaded here; nothing reads the environment concurrently.
                unsafe { std::env::set_var("FLEXSERVE_PYTHON", py) };
            }
            let rest = if args.is_empty() { args } else { &args[1..] };
            bench_runtime::run(rest)
        }
        Some("sealed") => bench_sealed::run_bench(&args[1..]),
        Some("npu") => {
            deps::ensure()?;
            bench_npu::run()
        }
        Some(other) => Err(format!(
            "unknown benchmark `{other}` (runtime, sealed, npu)"
        )),
    }
}

/// A Python with numpy and gguf for the benchmark model generator: the fixture venv if it is
/// there, otherwise a venv under target/ made with pip from PyPI.
fn bench_python() -> Result<String> {
    let shared = Path::new("/opt/fs-venv/bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import numpy, gguf"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(shared) {
        return Ok(shared.display().to_string());
    }
    let venv = target_dir().join("bench-venv");
    let py = venv.join("bin/python");
    if !ok(&py) {
        eprintln!("xtask: creating {} (numpy, gguf)", venv.display());
        run_status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_status(Command::new(&py).args(["-m", "pip", "install", "-q", "numpy", "gguf"]))?;
    }
    Ok(py.display().to_string())
}

fn cmd_test(args: &[String]) -> Result<()> {
    let only = flag(args, "--only");
    let want = |step: &str| only.is_none_or(|o| o == step);
    deps::ensure()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut steps: Vec<(String, f64)> = Vec::new();
    let mut timed = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        eprintln!("xtask: == {name}");
        let t = Instant::now();
        let r = f();
        steps.push((name.to_string(), t.elapsed().as_secs_f64()));
        r.map_err(|e| format!("{name}: {e}"))
    };
    if want("lint") {
        timed("format", &mut || {
            run_status(
                Command::new(&cargo)
                    .current_dir(root())
                    .args(["fmt", "--all", "--", "--check"]),
            )
        })?;
        timed("clippy (host)", &mut || {
            run_status(Command::new(&cargo).current_dir(root()).args([
                "clippy",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
        // One image at a time: building them together unifies features across crates that do
        // not share a runtime (only some have a global allocator).
        // The client twice: for the testbed and as TF-A's BL33 (feature `bl33`).
        for (image, features) in [
            ("flexserve-sp", ""),
            ("testbed", ""),
            ("nw-client", ""),
            ("nw-client", "bl33"),
        ] {
            timed(
                &format!("clippy ({image} {features}, {})", images::BARE_TARGET),
                &mut || {
                    run_status(Command::new(&cargo).current_dir(root()).args([
                        "clippy",
                        "--release",
                        "--target",
                        images::BARE_TARGET,
                        "-p",
                        image,
                        "--features",
                        features,
                        "--",
                        "-D",
                        "warnings",
                    ]))
                },
            )?;
        }
    }
    if want("host") {
        timed("host tests", &mut || {
            run_status(
                Command::new(&cargo)
                    .current_dir(root())
                    .args(["test", "--release"]),
            )
        })?;
    }
    if want("aarch64") {
        for (cpu, kernels) in AARCH64_CPUS {
            timed(
                &format!("llm-runtime under qemu-aarch64 -cpu {cpu}"),
                &mut || {
                    let runner = format!("qemu-aarch64 -cpu {cpu} -L /usr/aarch64-linux-gnu");
                    run_status(
                        Command::new(&cargo)
                            .current_dir(root())
                            .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", runner)
                            .env("FLEXSERVE_EXPECT_KERNELS", kernels)
                            .args([
                                "test",
                                "--release",
                                "-p",
                                "llm-runtime",
                                "--target",
                                "aarch64-unknown-linux-gnu",
                            ]),
                    )
                },
            )?;
        }
    }
    if want("packages") {
        for p in images::Platform::ALL {
            timed(&format!("SP package ({})", p.name()), &mut || {
                images::build_sp(p, &[]).map(|_| ())
            })?;
        }
        timed("nw-client as BL33", &mut || {
            images::build_client_bl33().map(|_| ())
        })?;
    }
    if want("scenarios") {
        // Every scenario on the default machine (several CPUs), and on one CPU those that can.
        for s in SCENARIOS {
            timed(&format!("scenario {}", s.name), &mut || {
                run_scenario(s, Spmc::Testbed, &[])
            })?;
        }
        let one = ["--smp".to_string(), "1".to_string()];
        for s in SCENARIOS
            .iter()
            .filter(|s| !NEEDS_NPU_CPU.contains(&s.name))
        {
            timed(&format!("scenario {} (1 CPU)", s.name), &mut || {
                run_scenario(s, Spmc::Testbed, &one)
            })?;
        }
    }
    eprintln!("xtask: test steps:");
    for (name, secs) in &steps {
        eprintln!("  {secs:7.1} s  {name}");
    }
    Ok(())
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() { p } else { root().join(p) }
        }
        None => root().join("target"),
    }
}

pub fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

pub fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}
