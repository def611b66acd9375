//! Sealed packages for the QEMU runs: the model sealed to the testbed device (whose keys derive
//! from `testbed_layout::TEST_DEVICE_ROOT`, the test secret the testbed hands the SP), and for
//! the `sealed` scenario the packages its hostile cases splice from. Written with the same
//! `flexserve-sealed` code the `flexserve seal` CLI uses, into one file QEMU loads at
//! `ns_ram::SEALED_BASE`.

use crate::Result;
use flexserve_sealed::{DeviceKeys, SealParams};
use rand_core::OsRng;
use std::path::{Path, PathBuf};
use testbed_layout::{SealedKind, ns_ram};

/// Chunk bound for the packages: 1 MiB (the SP decrypts a chunk at a time in its heap).
pub const MAX_CHUNK: u32 = 1 << 20;
/// Package version of the main package (the older one is 1).
pub const VERSION: u64 = 2;
/// The root of a device that is not the testbed's.
const OTHER_DEVICE_ROOT: [u8; 32] = *b"flexserve: some other device....";

/// A file of sealed packages and where each lies in it.
pub struct Bundle {
    pub path: PathBuf,
    pub entries: Vec<(SealedKind, u64, u64)>,
}

impl Bundle {
    /// The boot-configuration lines naming each package's address and size.
    pub fn boot_lines(&self) -> String {
        self.entries
            .iter()
            .map(|&(k, off, len)| {
                format!(
                    "{}={:#x}\n{}={len}\n",
                    k.base_key(),
                    ns_ram::SEALED_BASE + off,
                    k.size_key()
                )
            })
            .collect()
    }
}

/// Seals `model` as each of `kinds` and writes them, page aligned, to
/// `target/flexserve/sealed/<model stem>.<kinds>.bundle`.
pub fn bundle(model: &Path, kinds: &[SealedKind]) -> Result<Bundle> {
    let gguf = std::fs::read(model).map_err(|e| format!("{}: {e}", model.display()))?;
    let g = llm_runtime::gguf::Gguf::parse(&gguf)
        .map_err(|e| format!("{}: not a GGUF file: {e}", model.display()))?;
    let model_id = flexserve_sealed::default_model_id(&gguf, g.data_offset);
    let testbed = DeviceKeys::from_root(&testbed_layout::TEST_DEVICE_ROOT).public();
    let other = DeviceKeys::from_root(&OTHER_DEVICE_ROOT).public();
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for &k in kinds {
        let (id, version, to) = match k {
            SealedKind::Main => (model_id, VERSION, testbed.kem),
            SealedKind::OlderVersion => (model_id, VERSION - 1, testbed.kem),
            SealedKind::OtherModel => {
                let mut id = model_id;
                id[0] ^= 0xff;
                (id, VERSION, testbed.kem)
            }
            SealedKind::OtherDevice => (model_id, VERSION, other.kem),
        };
        let pkg = flexserve_sealed::seal(
            &gguf,
            &SealParams {
                model_id: id,
                package_version: version,
                max_chunk_len: MAX_CHUNK,
                recipients: &[to],
                owner: None,
            },
            &mut OsRng,
        )
        .map_err(|e| format!("sealing {}: {e:?}", model.display()))?;
        let off = out.len() as u64;
        entries.push((k, off, pkg.len() as u64));
        out.extend_from_slice(&pkg);
        out.resize(out.len().next_multiple_of(4096), 0);
    }
    if out.len() as u64 > ns_ram::SEALED_MAX {
        return Err(format!(
            "sealed packages of {}: {} bytes; the window holds {}",
            model.display(),
            out.len(),
            ns_ram::SEALED_MAX
        ));
    }
    let stem = model
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let dir = crate::images::out_dir("sealed");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{stem}.{}.bundle", names.join("+")));
    std::fs::write(&path, &out).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: sealed {} for the testbed device (fingerprint {}): {}",
        model.display(),
        hex(&testbed.fingerprint()[..8]),
        path.display()
    );
    Ok(Bundle { path, entries })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
