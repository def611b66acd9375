//! Building the bare-metal images: the SP and its package per platform, the testbed firmware,
//! the normal-world client, and the testbed's flash image that holds them.

use crate::{Result, root, run_status, target_dir};
use object::{Object, ObjectSegment};
use std::path::{Path, PathBuf};
use std::process::Command;
use testbed_layout::{flash, spkg};

pub const BARE_TARGET: &str = "aarch64-unknown-none";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Qemu,
    FvpBase,
    Rk3588,
    /// QEMU virt under TF-A's EL3 SPMC (the RK3588 mode on QEMU).
    QemuEl3,
}

/// How a platform's SPMC takes the SP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loading {
    /// An SP package (SPKG: boot info, manifest DTB at +0x1000, image at +0x4000) from
    /// `sp_layout.json`: Hafnium (TF-A's sptool) and the testbed.
    Package,
    /// The raw image as BL32, entered at its first byte, and the manifest DTB as TOS_FW_CONFIG
    /// (one page at most): TF-A's EL3 SPMC.
    Bl32,
}

/// TF-A's TOS_FW_CONFIG slot is one page (plat/qemu `TOS_FW_CONFIG_LIMIT`), and the EL3 SPMC
/// copies the manifest into a two-page boot-info area behind the blob header.
const TOS_FW_CONFIG_MAX: usize = 0x1000;

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::Qemu,
        Platform::FvpBase,
        Platform::Rk3588,
        Platform::QemuEl3,
    ];

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "qemu" => Ok(Platform::Qemu),
            "fvp-base" | "fvp" => Ok(Platform::FvpBase),
            "rk3588" => Ok(Platform::Rk3588),
            "qemu-el3" => Ok(Platform::QemuEl3),
            _ => Err(format!(
                "unknown platform `{s}` (qemu, fvp-base, rk3588, qemu-el3)"
            )),
        }
    }

    /// The cargo feature of `flexserve-sp` and the directory under `fvp/`.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Qemu => "qemu",
            Platform::FvpBase => "fvp-base",
            Platform::Rk3588 => "rk3588",
            Platform::QemuEl3 => "qemu-el3",
        }
    }

    pub fn loading(self) -> Loading {
        match self {
            Platform::Qemu | Platform::FvpBase => Loading::Package,
            Platform::Rk3588 | Platform::QemuEl3 => Loading::Bl32,
        }
    }
}

/// Where this platform's build outputs go.
pub fn out_dir(what: &str) -> PathBuf {
    target_dir().join("flexserve").join(what)
}

/// `cargo build --release` of one bare-metal crate; returns the ELF path.
fn cargo_build_bare(package: &str, bin: &str, features: Option<&str>) -> Result<PathBuf> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root()).args([
        "build",
        "--release",
        "--package",
        package,
        "--target",
        BARE_TARGET,
    ]);
    if let Some(f) = features {
        cmd.args(["--no-default-features", "--features", f]);
    }
    run_status(&mut cmd)?;
    Ok(target_dir().join(BARE_TARGET).join("release").join(bin))
}

/// A DTS fragment setting the SP manifest's `flexserve,test-device-root` to the testbed's test
/// secret (`testbed_layout::TEST_DEVICE_ROOT`).
fn test_device_root_fragment() -> String {
    let bytes: Vec<String> = testbed_layout::TEST_DEVICE_ROOT
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "\n/* TEST secret: the testbed's device root (README). */\n/ {{\n\tflexserve,test-device-root = [{}];\n}};\n",
        bytes.join(" ")
    )
}

/// The SP decrypts sealed models with the ARMv8 crypto extensions (`.cargo/config.toml` enables
/// them for `aarch64-unknown-none`); a build that lost the flags would silently fall back to
/// software AES, so the image must contain AESE and 64-bit PMULL instructions.
fn check_crypto_extensions(elf: &Path) -> Result<()> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
    let (mut aese, mut pmull) = (0usize, 0usize);
    for sec in file
        .sections()
        .filter(|s| s.kind() == object::SectionKind::Text)
    {
        let bytes = sec.data().map_err(|e| e.to_string())?;
        for w in bytes.chunks_exact(4) {
            let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            // AESE Vd.16B, Vn.16B; PMULL{2} Vd.1Q, Vn.1D/2D, Vm.1D/2D.
            aese += usize::from(w & 0xffff_fc00 == 0x4e28_4800);
            pmull += usize::from(w & 0xbfe0_fc00 == 0x0ee0_e000);
        }
    }
    if aese == 0 || pmull == 0 {
        return Err(format!(
            "{}: no ARMv8 AES/PMULL instructions ({aese} AESE, {pmull} PMULL): sealed models \
             would decrypt in software; check the aarch64-unknown-none rustflags",
            elf.display()
        ));
    }
    Ok(())
}

/// Flattens an ELF's loadable segments into a binary starting at the lowest physical (load)
/// address, so that `.data` lands where the image's start-up code copies it from.
/// Returns the image and its load address.
pub fn elf_to_bin(elf: &Path) -> Result<(Vec<u8>, u64)> {
    let data = std::fs::read(elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
    let mut segs = Vec::new();
    if let object::File::Elf64(ref f) = file {
        use object::read::elf::ProgramHeader;
        let endian = f.endian();
        for ph in f.elf_program_headers() {
            if ph.p_type(endian) == object::elf::PT_LOAD && ph.p_filesz(endian) > 0 {
                let off = ph.p_offset(endian) as usize;
                let len = ph.p_filesz(endian) as usize;
                let bytes = data.get(off..off + len).ok_or("segment past end of ELF")?;
                segs.push((ph.p_paddr(endian), bytes.to_vec()));
            }
        }
    } else {
        for s in file.segments() {
            let bytes = s.data().map_err(|e| e.to_string())?;
            if !bytes.is_empty() {
                segs.push((s.address(), bytes.to_vec()));
            }
        }
    }
    let base = segs
        .iter()
        .map(|(a, _)| *a)
        .min()
        .ok_or_else(|| format!("{}: no loadable segments", elf.display()))?;
    let end = segs
        .iter()
        .map(|(a, b)| a + b.len() as u64)
        .max()
        .unwrap_or(base);
    if end - base > 64 << 20 {
        return Err(format!(
            "{}: loadable segments span {} bytes",
            elf.display(),
            end - base
        ));
    }
    let mut out = vec![0u8; (end - base) as usize];
    for (addr, bytes) in segs {
        let at = (addr - base) as usize;
        out[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    Ok((out, base))
}

fn entry_of(elf: &Path) -> Result<u64> {
    let data = std::fs::read(elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
    Ok(file.entry())
}

/// Compiles a DTS with `dtc`.
fn dtc(dts: &Path, dtb: &Path) -> Result<()> {
    run_status(
        // FF-A manifests' `interrupts` are (id, attributes) pairs of their own binding, with no
        // `interrupt-parent`: not dtc's interrupt-specifier check.
        Command::new("dtc")
            .args([
                "-W",
                "no-interrupts_property",
                "-I",
                "dts",
                "-O",
                "dtb",
                "-o",
            ])
            .arg(dtb)
            .arg(dts),
    )
}

/// Reads a `<0x..>` u32 or u64 cell property from DTS text (a build-time consistency check only;
/// the SPMC parses the DTB).
fn dts_u64(dts: &str, prop: &str) -> Option<u64> {
    let line = dts
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{prop} =")))?;
    let cells: Vec<u64> = line
        .split(['<', '>'])
        .nth(1)?
        .split_whitespace()
        .filter_map(|c| match c.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => c.parse().ok(),
        })
        .collect();
    match cells.as_slice() {
        [v] => Some(*v),
        [hi, lo] => Some(hi << 32 | lo),
        _ => None,
    }
}

pub struct SpPackage {
    /// What the SPMC is given: the SPKG ([`Loading::Package`]) or the raw BL32 image
    /// ([`Loading::Bl32`]).
    pub pkg: PathBuf,
    /// The manifest DTB (inside the SPKG, or TOS_FW_CONFIG for the EL3 SPMC).
    pub manifest_dtb: PathBuf,
    pub image_size: usize,
}

/// Builds the SP for `platform` (with `extra_features`, e.g. the test-only `fault-injection`),
/// compiles its manifest and writes, in `target/flexserve/<platform>[+features]/`:
/// `flexserve-sp.bin` (the image), `sp-manifest.dts` and `.dtb`, and for a package platform
/// `flexserve-sp.pkg` plus `sp_layout.json`, whose files are all beside it (TF-A builds from the
/// layout in place).
pub fn build_sp(platform: Platform, extra_features: &[&str]) -> Result<SpPackage> {
    build_sp_with(platform, extra_features, None)
}

/// [`build_sp`] with `overlay`, a DTS fragment from `fvp/<platform>/` appended to the
/// platform's manifest (e.g. `hafnium-overlay.dtsi`: the QEMU manifest for real Hafnium, which
/// has no emulated firewall), written to its own output directory named after it.
pub fn build_sp_with(
    platform: Platform,
    extra_features: &[&str],
    overlay: Option<&str>,
) -> Result<SpPackage> {
    let features = core::iter::once(platform.name())
        .chain(extra_features.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let elf = cargo_build_bare("flexserve-sp", "flexserve-sp", Some(&features))?;
    let (image, load) = elf_to_bin(&elf)?;
    let variant = if extra_features.is_empty() {
        platform.name().to_string()
    } else {
        format!("{}+{}", platform.name(), extra_features.join("+"))
    };
    let variant = match overlay {
        Some(o) => format!("{variant}@{}", o.trim_end_matches(".dtsi")),
        None => variant,
    };
    check_crypto_extensions(&elf)?;
    let dir = out_dir(&variant);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = root().join("fvp").join(platform.name());
    let dts_path = src.join("sp-manifest.dts");
    let mut dts =
        std::fs::read_to_string(&dts_path).map_err(|e| format!("{}: {e}", dts_path.display()))?;
    if let Some(o) = overlay {
        let p = src.join(o);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        dts.push('\n');
        dts.push_str(&text);
    }
    // Real Hafnium (the overlay build) and the EL3 SPMC on QEMU hand the SP no device root;
    // it reads the testbed's test secret from its manifest instead.
    if overlay.is_some() || platform == Platform::QemuEl3 {
        dts.push_str(&test_device_root_fragment());
    }
    // The manifest and the linker script must agree on where the image runs.
    let (la, eo) = (
        dts_u64(&dts, "load-address"),
        dts_u64(&dts, "entrypoint-offset"),
    );
    let entry = entry_of(&elf)?;
    let offset_ok = match platform.loading() {
        Loading::Package => eo == Some(u64::from(spkg::IMG_OFFSET)),
        // Entered at the BL32 base, the image's first byte.
        Loading::Bl32 => eo == Some(0),
    };
    match (la, eo) {
        (Some(la), Some(eo)) if offset_ok && la + eo == load && entry == load => {}
        _ => {
            return Err(format!(
                "{}: load-address {la:x?} + entrypoint-offset {eo:x?} does not match the SP image \
                 (linked at {load:#x}, entry {entry:#x}, {:?} loading)",
                dts_path.display(),
                platform.loading()
            ));
        }
    }
    // Beside the layout (TF-A's sptool reads the DTS), and the source of the DTB for the rest.
    let staged = dir.join("sp-manifest.dts");
    std::fs::write(&staged, &dts).map_err(|e| e.to_string())?;
    let dtb = dir.join("sp-manifest.dtb");
    dtc(&staged, &dtb)?;
    let pm = std::fs::read(&dtb).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("flexserve-sp.bin"), &image).map_err(|e| e.to_string())?;
    let pkg_path = match platform.loading() {
        Loading::Package => {
            if pm.len() > (spkg::IMG_OFFSET - spkg::PM_OFFSET) as usize {
                return Err(format!(
                    "manifest DTB is {} bytes; it must fit below the image",
                    pm.len()
                ));
            }
            let header = spkg::Header::new(pm.len() as u32, image.len() as u32);
            let mut pkg = vec![0u8; spkg::IMG_OFFSET as usize + image.len()];
            pkg[..spkg::HEADER_SIZE].copy_from_slice(&header.encode());
            pkg[spkg::PM_OFFSET as usize..][..pm.len()].copy_from_slice(&pm);
            pkg[spkg::IMG_OFFSET as usize..].copy_from_slice(&image);
            let pkg_path = dir.join("flexserve-sp.pkg");
            std::fs::write(&pkg_path, &pkg).map_err(|e| e.to_string())?;
            stage_layout(&src, &dir)?;
            pkg_path
        }
        Loading::Bl32 => {
            if pm.len() > TOS_FW_CONFIG_MAX {
                return Err(format!(
                    "manifest DTB is {} bytes; TOS_FW_CONFIG holds {TOS_FW_CONFIG_MAX}",
                    pm.len()
                ));
            }
            dir.join("flexserve-sp.bin")
        }
    };
    Ok(SpPackage {
        pkg: pkg_path,
        manifest_dtb: dtb,
        image_size: image.len(),
    })
}

/// Copies the platform's `sp_layout.json` into `out` (where the image and manifest DTS are) and
/// checks that every file it names is there.
fn stage_layout(src: &Path, out: &Path) -> Result<()> {
    let from = src.join("sp_layout.json");
    let to = out.join("sp_layout.json");
    std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
    check_layout(&to)
}

/// Every `"file"` an `sp_layout.json` names must exist beside it: sptool resolves them relative
/// to the layout's directory.
fn check_layout(layout: &Path) -> Result<()> {
    let text = std::fs::read_to_string(layout).map_err(|e| format!("{}: {e}", layout.display()))?;
    let dir = layout.parent().unwrap_or(Path::new("."));
    let files = layout_files(&text);
    if files.is_empty() {
        return Err(format!("{}: names no files", layout.display()));
    }
    match files.iter().find(|f| !dir.join(f).is_file()) {
        Some(missing) => Err(format!(
            "{} names `{missing}`, which is not beside it",
            layout.display()
        )),
        None => Ok(()),
    }
}

/// The values of the `"file"` keys of an `sp_layout.json` (our layouts are flat objects of
/// strings; no JSON library needed to find them).
fn layout_files(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = json;
    while let Some(i) = rest.find("\"file\"") {
        rest = &rest[i + "\"file\"".len()..];
        let value = rest
            .trim_start()
            .strip_prefix(':')
            .map(str::trim_start)
            .and_then(|v| v.strip_prefix('"'))
            .and_then(|v| v.split_once('"'));
        if let Some((name, tail)) = value {
            out.push(name.to_string());
            rest = tail;
        }
    }
    out
}

/// Builds everything the QEMU testbed boots and writes a flash image for one scenario.
/// What QEMU puts in NS RAM for the client besides its image: a plaintext model file (at
/// `ns_ram::MODEL_BASE`) and sealed packages (at `ns_ram::SEALED_BASE`).
#[derive(Default)]
pub struct NwInputs {
    pub model: Option<PathBuf>,
    pub sealed: Option<crate::sealing::Bundle>,
}

impl NwInputs {
    pub fn model(&self) -> Option<&Path> {
        self.model.as_deref()
    }

    pub fn sealed_file(&self) -> Option<&Path> {
        self.sealed.as_ref().map(|b| b.path.as_path())
    }
}

pub fn build_flash(scenario: &str, sp_features: &[&str], inputs: &NwInputs) -> Result<PathBuf> {
    let sp = build_sp(Platform::Qemu, sp_features)?;
    let testbed = cargo_build_bare("testbed", "testbed", None)?;
    let client = cargo_build_bare("nw-client", "nw-client", None)?;
    let (testbed_bin, testbed_base) = elf_to_bin(&testbed)?;
    let (client_bin, client_base) = elf_to_bin(&client)?;
    if testbed_base != testbed_layout::virt::SECURE_FLASH_BASE {
        return Err(format!(
            "testbed image starts at {testbed_base:#x}, not at the flash base"
        ));
    }
    if client_base != testbed_layout::ns_ram::CLIENT_BASE {
        return Err(format!(
            "client image starts at {client_base:#x}, not at CLIENT_BASE"
        ));
    }
    let pkg = std::fs::read(&sp.pkg).map_err(|e| e.to_string())?;
    let config = boot_config(scenario, "testbed", inputs)?;
    let mut image = Vec::new();
    place(
        &mut image,
        flash::TESTBED_OFFSET,
        flash::TESTBED_MAX,
        &testbed_bin,
        false,
        "testbed",
    )?;
    place(
        &mut image,
        flash::SP_PKG_OFFSET,
        flash::SP_PKG_MAX,
        &pkg,
        true,
        "SP package",
    )?;
    place(
        &mut image,
        flash::NW_IMAGE_OFFSET,
        flash::NW_IMAGE_MAX,
        &client_bin,
        true,
        "client",
    )?;
    place(
        &mut image,
        flash::BOOT_CONFIG_OFFSET,
        flash::BOOT_CONFIG_MAX,
        config.as_bytes(),
        true,
        "boot config",
    )?;
    image.resize(testbed_layout::virt::SECURE_FLASH_SIZE as usize, 0);
    let path = out_dir("testbed").join(format!("flash-{scenario}.bin"));
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
    std::fs::write(&path, &image).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: SP image {} bytes, package {} bytes; flash image {}",
        sp.image_size,
        pkg.len(),
        path.display()
    );
    Ok(path)
}

/// The client's boot configuration payload: `scenario=`, `spmc=` (testbed, hafnium or el3) and,
/// with a model (which QEMU's loader puts at `ns_ram::MODEL_BASE`, see
/// `qemu::nw_loader_args`), `model_base=` and `model_size=`.
pub fn boot_config(scenario: &str, spmc: &str, inputs: &NwInputs) -> Result<String> {
    if !matches!(spmc, "testbed" | "hafnium" | "el3") {
        return Err(format!("unknown SPMC `{spmc}` (testbed, hafnium, el3)"));
    }
    let mut config = format!("scenario={scenario}\nspmc={spmc}\n");
    for line in crate::scenario_boot_extra(scenario) {
        config.push_str(line);
        config.push('\n');
    }
    if let Some(m) = inputs.model() {
        let len = std::fs::metadata(m)
            .map_err(|e| format!("{}: {e}", m.display()))?
            .len();
        if len > testbed_layout::ns_ram::MODEL_MAX {
            return Err(format!(
                "{}: {len} bytes; the model window holds {}",
                m.display(),
                testbed_layout::ns_ram::MODEL_MAX
            ));
        }
        config.push_str(&format!(
            "model_base={:#x}\nmodel_size={len}\n",
            testbed_layout::ns_ram::MODEL_BASE
        ));
    }
    if let Some(b) = &inputs.sealed {
        config.push_str(&b.boot_lines());
    }
    Ok(config)
}

/// Where TF-A's QEMU port loads and enters BL33 (`plat/qemu/qemu/include/platform_def.h`:
/// NS_IMAGE_OFFSET = NS_DRAM0_BASE + 0x20000000); the `bl33` client is linked there
/// (tests/nw-client/build.rs).
pub const BL33_BASE: u64 = 0x6000_0000;

/// Builds the normal-world client as TF-A's BL33 (`nw-client` feature `bl33`: linked at
/// [`BL33_BASE`], entered at NS-EL2 with the MMU off, boot configuration read at
/// `ns_ram::BOOT_CONFIG`). Returns the flat binary for the FIP's BL33 slot.
pub fn build_client_bl33() -> Result<PathBuf> {
    let elf = cargo_build_bare("nw-client", "nw-client", Some("bl33"))?;
    let (bin, base) = elf_to_bin(&elf)?;
    if base != BL33_BASE || entry_of(&elf)? != BL33_BASE {
        return Err(format!(
            "BL33 client linked at {base:#x}, not at TF-A's NS_IMAGE_OFFSET {BL33_BASE:#x}"
        ));
    }
    let dir = out_dir("bl33");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("nw-client-bl33.bin");
    std::fs::write(&path, &bin).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Writes the boot configuration block (slot header + payload, as in the testbed's flash) that
/// the BL33 client reads at `ns_ram::BOOT_CONFIG`; QEMU loads it there
/// (`qemu::nw_loader_args`). Returns its path.
pub fn write_boot_config(scenario: &str, spmc: &str, inputs: &NwInputs) -> Result<PathBuf> {
    let config = boot_config(scenario, spmc, inputs)?;
    let mut block = Vec::new();
    place(
        &mut block,
        0,
        flash::BOOT_CONFIG_MAX,
        config.as_bytes(),
        true,
        "boot config",
    )?;
    let dir = out_dir("bl33");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("boot-config-{scenario}-{spmc}.bin"));
    std::fs::write(&path, &block).map_err(|e| e.to_string())?;
    Ok(path)
}

fn place(
    image: &mut Vec<u8>,
    offset: u64,
    max: u64,
    payload: &[u8],
    header: bool,
    what: &str,
) -> Result<()> {
    let hdr = if header { flash::SLOT_HEADER_SIZE } else { 0 };
    if payload.len() as u64 + hdr > max {
        return Err(format!(
            "{what} is {} bytes; its flash slot holds {}",
            payload.len(),
            max - hdr
        ));
    }
    let start = offset as usize;
    let end = start + hdr as usize + payload.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    if header {
        let h = flash::SlotHeader {
            len: payload.len() as u32,
        };
        image[start..start + hdr as usize].copy_from_slice(&h.encode());
    }
    image[start + hdr as usize..end].copy_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_config_names_scenario_spmc_and_model() {
        assert_eq!(
            boot_config("memory", "hafnium", &NwInputs::default()).unwrap(),
            "scenario=memory\nspmc=hafnium\n"
        );
        let model = root().join("llm-runtime/models/fortunes-q8_0.gguf");
        let len = std::fs::metadata(&model).unwrap().len();
        assert_eq!(
            boot_config(
                "serve",
                "el3",
                &NwInputs {
                    model: Some(model.clone()),
                    sealed: None
                }
            )
            .unwrap(),
            format!("scenario=serve\nspmc=el3\nmodel_base=0x50000000\nmodel_size={len}\n")
        );
        assert!(boot_config("messaging", "optee", &NwInputs::default()).is_err());
        assert_eq!(
            boot_config("flexmem", "testbed", &NwInputs::default()).unwrap(),
            "scenario=flexmem\nspmc=testbed\nlend-enforcement=off\n"
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn dts_cells() {
        let dts = "a = <0x0 0x0e100000>;\n\tb = <32>;\n c = <0x4000>; /* x */\n";
        assert_eq!(dts_u64(dts, "a"), Some(0x0e10_0000));
        assert_eq!(dts_u64(dts, "b"), Some(32));
        assert_eq!(dts_u64(dts, "c"), Some(0x4000));
        assert_eq!(dts_u64(dts, "d"), None);
    }

    #[test]
    fn layout_file_names() {
        let json = r#"{ "sp": { "image": { "file": "a.bin", "offset": "0x4000" },
            "pm": {"file" :  "m.dts"}, "package": "p" } }"#;
        assert_eq!(layout_files(json), ["a.bin", "m.dts"]);
        assert!(layout_files("{}").is_empty());
    }

    /// What `build_sp` writes for a package platform is enough for TF-A to build from the
    /// layout in place; a layout copied without its manifest DTS (the old output) is refused.
    #[test]
    fn staged_layouts_name_only_files_beside_them() {
        for p in Platform::ALL
            .into_iter()
            .filter(|p| p.loading() == Loading::Package)
        {
            let src = root().join("fvp").join(p.name());
            let out = scratch(p.name());
            std::fs::copy(src.join("sp_layout.json"), out.join("sp_layout.json")).unwrap();
            let e = check_layout(&out.join("sp_layout.json")).unwrap_err();
            assert!(e.contains("not beside it"), "{e}");
            std::fs::write(out.join("flexserve-sp.bin"), [0u8; 16]).unwrap();
            std::fs::copy(src.join("sp-manifest.dts"), out.join("sp-manifest.dts")).unwrap();
            stage_layout(&src, &out).unwrap();
            let text = std::fs::read_to_string(out.join("sp_layout.json")).unwrap();
            assert_eq!(layout_files(&text), ["flexserve-sp.bin", "sp-manifest.dts"]);
            std::fs::remove_dir_all(&out).unwrap();
        }
    }

    #[test]
    fn every_platform_has_a_manifest_and_el3_platforms_no_layout() {
        for p in Platform::ALL {
            let dir = root().join("fvp").join(p.name());
            assert!(dir.join("sp-manifest.dts").is_file(), "{}", p.name());
            let dts = std::fs::read_to_string(dir.join("sp-manifest.dts")).unwrap();
            let eo = dts_u64(&dts, "entrypoint-offset");
            match p.loading() {
                Loading::Package => {
                    assert!(dir.join("sp_layout.json").is_file(), "{}", p.name());
                    assert_eq!(eo, Some(u64::from(spkg::IMG_OFFSET)), "{}", p.name());
                }
                Loading::Bl32 => {
                    // The EL3 SPMC takes no SP layout; it enters the image at its first byte.
                    assert!(!dir.join("sp_layout.json").exists(), "{}", p.name());
                    assert_eq!(eo, Some(0), "{}", p.name());
                }
            }
            assert_eq!(Platform::parse(p.name()), Ok(p));
        }
        // QEMU under the EL3 SPMC: linked at TF-A's QEMU BL32 base.
        let dts = std::fs::read_to_string(root().join("fvp/qemu-el3/sp-manifest.dts")).unwrap();
        assert_eq!(dts_u64(&dts, "load-address"), Some(0x0e10_0000));
        assert_eq!(dts_u64(&dts, "execution-ctx-count"), Some(32));
    }

    /// The test device root fragment compiles onto the QEMU manifest and puts the 32 bytes in.
    #[test]
    fn test_device_root_fragment_compiles_into_the_manifest() {
        let src = root().join("fvp/qemu/sp-manifest.dts");
        let mut dts = std::fs::read_to_string(src).unwrap();
        dts.push_str(&test_device_root_fragment());
        let out = std::process::Command::new("dtc")
            .args(["-I", "dts", "-O", "dtb", "-o", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(dts.as_bytes())?;
                c.wait_with_output()
            })
            .expect("dtc");
        assert!(out.status.success());
        let root_bytes = testbed_layout::TEST_DEVICE_ROOT;
        assert!(out.stdout.windows(32).any(|w| w == root_bytes));
    }

    /// The Hafnium overlay removes exactly the testbed's firewall nodes: what dtc makes of the
    /// QEMU manifest with it appended has the UART and heap but no tzc400, window or carve-out.
    #[test]
    fn hafnium_overlay_drops_the_emulated_firewall() {
        let src = root().join("fvp/qemu");
        let base = std::fs::read_to_string(src.join("sp-manifest.dts")).unwrap();
        let overlay = std::fs::read_to_string(src.join(crate::spmc::HAFNIUM_OVERLAY)).unwrap();
        let tmp = std::env::temp_dir().join(format!("xtask-overlay-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let decompiled = |text: &str| {
            let (dts, out) = (tmp.join("m.dts"), tmp.join("out.dts"));
            std::fs::write(&dts, text).unwrap();
            let st = Command::new("dtc")
                .args(["-I", "dts", "-O", "dts", "-o"])
                .arg(&out)
                .arg(&dts)
                .status()
                .expect("dtc (device-tree-compiler; `cargo xtask deps` installs it)");
            assert!(st.success());
            std::fs::read_to_string(&out).unwrap()
        };
        let plain = decompiled(&base);
        let hafnium = decompiled(&format!("{base}\n{overlay}"));
        for node in [
            "tzc400 {",
            "npu {",
            "smmu {",
            "tzpc {",
            "flexmem-window {",
            "carveout {",
        ] {
            assert!(plain.contains(node), "{node} in the testbed manifest");
            assert!(!hafnium.contains(node), "{node} left for Hafnium");
        }
        for node in ["uart {", "heap {"] {
            assert!(hafnium.contains(node), "{node} kept");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
