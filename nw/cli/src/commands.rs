//! The commands. Progress and timings go to stderr, results to stdout.

use crate::args::Command;
use crate::keys::{self, ATTEST_PUB_PREFIX, KeyFileError, PUB_PREFIX, SECRET_PREFIX};
use flexserve_sealed::attest::{self, AttestError};
use flexserve_sealed::{DeviceKeys, Error as PkgError, Package, SealError, SealParams, TAG_LEN};
use llm_runtime::gguf::Gguf;
use rand_core::{OsRng, RngCore};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug)]
pub enum CliError {
    Read(PathBuf, std::io::Error),
    Write(PathBuf, std::io::Error),
    KeyFile(PathBuf, KeyFileError, &'static str),
    NotGguf(PathBuf, llm_runtime::gguf::GgufError),
    Seal(PathBuf, SealError),
    Package(PathBuf, PkgError),
    /// `verify --model`: the package does not hold this model.
    Mismatch(PathBuf, String),
    /// The attestation report does not verify.
    Attest(PathBuf, AttestError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            CliError::Write(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            CliError::KeyFile(p, KeyFileError::WrongKind, want) => write!(
                f,
                "{}: wrong kind of key file (expected a {want} key)",
                p.display()
            ),
            CliError::KeyFile(p, KeyFileError::Malformed, want) => write!(
                f,
                "{}: not a flexserve {want} key file (`flexserve keygen` writes them)",
                p.display()
            ),
            CliError::NotGguf(p, e) => write!(f, "{}: not a valid GGUF model: {e:?}", p.display()),
            CliError::Seal(p, e) => write!(f, "cannot seal {}: {e:?}", p.display()),
            CliError::Package(p, e) => write!(f, "{}: {}", p.display(), describe(e)),
            CliError::Attest(p, e) => write!(
                f,
                "{}: attestation refused: {}",
                p.display(),
                match e {
                    AttestError::Length(n) => format!("{n} bytes, not a report"),
                    AttestError::BadMagic
                    | AttestError::UnsupportedVersion(_)
                    | AttestError::Reserved =>
                        format!("not a flexserve attestation report ({e:?})"),
                    AttestError::WrongDevice => "it is from another device".into(),
                    AttestError::WrongNonce => "it answers another nonce (a replay?)".into(),
                    AttestError::BadSignature =>
                        "the signature does not verify (forged or modified)".into(),
                }
            ),
            CliError::Mismatch(p, what) => {
                write!(
                    f,
                    "{}: package does not match the model: {what}",
                    p.display()
                )
            }
        }
    }
}

/// A sentence for each package error.
fn describe(e: &PkgError) -> String {
    match e {
        PkgError::BadMagic => "not a sealed model package (bad magic)".into(),
        PkgError::Truncated { offset, need } => {
            format!("truncated or corrupted package (needs {need} more bytes at offset {offset})")
        }
        PkgError::TrailingBytes { expected, actual } => {
            format!("corrupted package: {actual} bytes, the header says {expected}")
        }
        PkgError::NoRecipientForDevice => "package is not sealed for this device".into(),
        PkgError::KeyUnwrap => {
            "wrapped content key does not authenticate (corrupted, or wrong device key)".into()
        }
        PkgError::HeaderAuth => "header authentication failed: the header was modified".into(),
        PkgError::ChunkAuth { index } => format!(
            "chunk {index} failed authentication (modified, moved, or from another model or version)"
        ),
        e => format!("corrupted package: {e:?}"),
    }
}

fn read(p: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(p).map_err(|e| CliError::Read(p.into(), e))
}

fn write(p: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(p, bytes).map_err(|e| CliError::Write(p.into(), e))
}

fn read_key(p: &Path, prefix: &str, kind: &'static str) -> Result<[u8; 32], CliError> {
    let bytes = read(p)?;
    let text = String::from_utf8_lossy(&bytes);
    keys::parse(&text, prefix).map_err(|e| CliError::KeyFile(p.into(), e, kind))
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(ext);
    s.into()
}

fn mb_per_s(bytes: usize, t: Instant) -> f64 {
    bytes as f64 / 1e6 / t.elapsed().as_secs_f64().max(1e-9)
}

fn fingerprint(key: &[u8; 32]) -> String {
    keys::to_hex(&Package::fingerprint(key)[..8])
}

pub fn run(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Keygen { out } => keygen(&out),
        Command::Seal {
            model,
            to,
            out,
            model_id,
            version,
            max_chunk,
        } => seal(&model, &to, &out, model_id, version, max_chunk),
        Command::Inspect { package } => inspect(&package),
        Command::Verify {
            package,
            key,
            model,
        } => verify(&package, &key, model.as_deref()),
        Command::AttestVerify {
            report,
            device,
            nonce,
            package,
        } => attest_verify(&report, &device, &nonce, package.as_deref()),
    }
}

fn attest_verify(
    report: &Path,
    device: &Path,
    nonce: &[u8; 32],
    package: Option<&Path>,
) -> Result<(), CliError> {
    let sign = read_key(device, ATTEST_PUB_PREFIX, "attestation public")?;
    let bytes = read(report)?;
    let r = attest::verify(&bytes, &sign, nonce).map_err(|e| CliError::Attest(report.into(), e))?;
    if let Some(p) = package {
        let pkg_bytes = read(p)?;
        let pkg = Package::parse(&pkg_bytes).map_err(|e| CliError::Package(p.into(), e))?;
        let h = &pkg.header;
        if (h.model_id, h.package_version, h.hash) != (r.model_id, r.package_version, r.header_hash)
        {
            return Err(CliError::Mismatch(
                p.into(),
                "the partition runs another model or version".into(),
            ));
        }
    }
    println!(
        "OK: device {} runs model {} version {} (header {})",
        keys::to_hex(&r.device.fingerprint()[..8]),
        keys::to_hex(&r.model_id),
        r.package_version,
        keys::to_hex(&r.header_hash)
    );
    Ok(())
}

fn keygen(out: &Path) -> Result<(), CliError> {
    let mut root = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(root.as_mut());
    let public = DeviceKeys::from_root(&root).public();
    let (key_path, pub_path, attest_path) = (
        with_ext(out, ".key"),
        with_ext(out, ".pub"),
        with_ext(out, ".attest.pub"),
    );
    write(&key_path, keys::format(&root, SECRET_PREFIX).as_bytes())?;
    write(&pub_path, keys::format(&public.kem, PUB_PREFIX).as_bytes())?;
    write(
        &attest_path,
        keys::format(&public.sign, ATTEST_PUB_PREFIX).as_bytes(),
    )?;
    eprintln!(
        "flexserve: wrote {}, {} and {} (device fingerprint {})",
        key_path.display(),
        pub_path.display(),
        attest_path.display(),
        keys::to_hex(&public.fingerprint()[..8])
    );
    Ok(())
}

fn seal(
    model: &Path,
    to: &[PathBuf],
    out: &Path,
    model_id: Option<[u8; 32]>,
    version: u64,
    max_chunk: u32,
) -> Result<(), CliError> {
    let recipients = to
        .iter()
        .map(|p| read_key(p, PUB_PREFIX, "public"))
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!("flexserve: reading {}", model.display());
    let gguf = read(model)?;
    let g = Gguf::parse(&gguf).map_err(|e| CliError::NotGguf(model.into(), e))?;
    let model_id =
        model_id.unwrap_or_else(|| flexserve_sealed::default_model_id(&gguf, g.data_offset));
    let data_len = gguf.len() - g.data_offset;
    eprintln!(
        "flexserve: sealing {} tensors, {:.1} MB of tensor data, for {} device(s)",
        g.tensors().len(),
        data_len as f64 / 1e6,
        recipients.len()
    );
    let t = Instant::now();
    let pkg = flexserve_sealed::seal(
        &gguf,
        &SealParams {
            model_id,
            package_version: version,
            max_chunk_len: max_chunk,
            recipients: &recipients,
            owner: None,
        },
        &mut OsRng,
    )
    .map_err(|e| CliError::Seal(model.into(), e))?;
    let secs = t.elapsed().as_secs_f64();
    let rate = mb_per_s(data_len, t);
    write(out, &pkg)?;
    let parsed = Package::parse(&pkg).map_err(|e| CliError::Package(out.into(), e))?;
    eprintln!(
        "flexserve: sealed in {secs:.3} s ({rate:.0} MB/s): {} chunks, wrote {} ({} bytes)",
        parsed.header.chunk_count,
        out.display(),
        pkg.len()
    );
    Ok(())
}

fn inspect(path: &Path) -> Result<(), CliError> {
    let bytes = read(path)?;
    let pkg = Package::parse(&bytes).map_err(|e| CliError::Package(path.into(), e))?;
    let h = &pkg.header;
    println!("package         {} ({} bytes)", path.display(), bytes.len());
    println!("format version  {}", flexserve_sealed::FORMAT_VERSION);
    println!("model id        {}", keys::to_hex(&h.model_id));
    println!("package version {}", h.package_version);
    println!(
        "header          {} bytes, sha256 {}",
        h.len,
        keys::to_hex(&h.hash)
    );
    println!("gguf metadata   {} bytes (readable)", h.gguf_prefix.len());
    println!(
        "tensor data     {} bytes in {} chunks (max {} bytes each)",
        h.data_len, h.chunk_count, h.max_chunk_len
    );
    match pkg.signature {
        Some(_) => println!(
            "owner signature ed25519, key {}",
            keys::to_hex(&h.owner_key)
        ),
        None => println!("owner signature none"),
    }
    println!("recipients      {}", pkg.recipient_count());
    for r in (0..pkg.recipient_count()).filter_map(|i| pkg.recipient(i)) {
        println!(
            "  device {} (fingerprint {})",
            keys::to_hex(&r.device_key),
            fingerprint(&r.device_key)
        );
    }
    println!("chunks          index  layer          part  offset      length");
    for (i, c) in h.chunks().enumerate() {
        println!(
            "                {i:5}  {:<13}  {:4}  {:10}  {:8}",
            format!("{:?}", c.layer),
            c.part,
            c.plain_offset,
            c.plain_len
        );
    }
    Ok(())
}

fn verify(path: &Path, key: &Path, model: Option<&Path>) -> Result<(), CliError> {
    let root = zeroize::Zeroizing::new(read_key(key, SECRET_PREFIX, "device root")?);
    let dev = DeviceKeys::from_root(&root).kem;
    let bytes = read(path)?;
    let perr = |e| CliError::Package(path.into(), e);
    let pkg = Package::parse(&bytes).map_err(perr)?;
    let plain = match model {
        Some(m) => {
            let gguf = read(m)?;
            Gguf::parse(&gguf).map_err(|e| CliError::NotGguf(m.into(), e))?;
            if gguf.get(..pkg.header.gguf_prefix.len()) != Some(pkg.header.gguf_prefix)
                || gguf.len() as u64 != pkg.header.gguf_prefix.len() as u64 + pkg.header.data_len
            {
                return Err(CliError::Mismatch(
                    path.into(),
                    "metadata or size differ".into(),
                ));
            }
            Some(gguf)
        }
        None => None,
    };
    let content = pkg.unwrap_key(&dev).map_err(perr)?;
    let n = pkg.header.chunk_count;
    let t = Instant::now();
    let mut buf = Vec::new();
    let mut last_pct = 0;
    for i in 0..n {
        buf.clear();
        buf.extend_from_slice(pkg.chunk_bytes(i).map_err(perr)?);
        flexserve_sealed::open_chunk(&content, &pkg.header, i, &mut buf).map_err(perr)?;
        if let Some(g) = &plain {
            let c = pkg.header.chunk(i).map_err(perr)?;
            let at = pkg.header.gguf_prefix.len() + c.plain_offset as usize;
            if g.get(at..at + c.plain_len as usize) != Some(&buf[..buf.len() - TAG_LEN]) {
                return Err(CliError::Mismatch(
                    path.into(),
                    format!("chunk {i} differs"),
                ));
            }
        }
        let pct = (i + 1) * 100 / n.max(1);
        if pct >= last_pct + 10 {
            eprintln!("flexserve: verified {}/{n} chunks ({pct}%)", i + 1);
            last_pct = pct;
        }
    }
    eprintln!(
        "flexserve: decrypted {} bytes in {:.3} s ({:.0} MB/s)",
        pkg.header.data_len,
        t.elapsed().as_secs_f64(),
        mb_per_s(pkg.header.data_len as usize, t)
    );
    println!(
        "OK: {n} chunks authentic{}",
        if plain.is_some() {
            ", identical to the model"
        } else {
            ""
        }
    );
    Ok(())
}
