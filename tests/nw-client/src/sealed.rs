//! Sealed models (`sealed/FORMAT.md`): the `sealed` scenario and the sealed part of the demo.
//!
//! The client holds the packages `xtask` sealed to the testbed device (boot configuration
//! `sealed_*`), plans the load from the readable header (how many pages the plaintext needs),
//! shares the package and lends zeroed-or-not pages for the plaintext, and checks:
//! - the SP serves the sealed model with exactly the tokens of the client's own run of the
//!   plaintext (which only the test has);
//! - each tampered package is refused with its own error, the lent pages come back scrubbed,
//!   nothing stays held, and the SP keeps serving;
//! - the attestation report verifies (`flexserve_sealed::attest::verify`, the one verifier the
//!   CLI uses too), and a wrong nonce or a forged signature does not.
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its reason inline; checks are not hot"
)]

use crate::{
    Env, fail,
    report::{CheckResult, Fail, Report},
    scenarios::Ctx,
    serve::{
        DEMO_PROMPTS, DEMO_TOKENS, IO_PAGE, IO_PAGES, Reply, ms, negotiate_v1_2, reference,
        same_output, start,
    },
};
use alloc::{vec, vec::Vec};
use core::fmt::Write;
use ffa::{Handle, memory::SendKind};
use flexserve_proto::{
    Command, DeviceKey, ModelInfo, Request, Sampling, SealedFault, Status, caps,
};
use flexserve_sealed::{
    FIXED_HEADER_LEN, Package,
    attest::{self, AttestError},
};
use testbed_layout::SealedKind;

const PAGE: u64 = 4096;
/// Window page of the plaintext destination: the start of the model window (inside the
/// Flex-Mem window, so the SP can secure it).
const DEST_PAGE: u64 = 0x8000;
/// Window page of the tampered package copies.
const COPY_PAGE: u64 = 200;

fn f(args: core::fmt::Arguments<'_>) -> Fail {
    Fail::new(args)
}

/// A package as the client reads it: its bytes and what the header says.
struct Sealed {
    base: u64,
    bytes: Vec<u8>,
    model_id: [u8; 32],
    version: u64,
    header_hash: [u8; 32],
    /// Bytes of the plaintext GGUF.
    plain_len: u64,
    chunks_offset: usize,
    /// (cipher offset in the package, plaintext length) of each chunk.
    chunks: Vec<(usize, usize)>,
    recipient: [u8; 32],
}

impl Sealed {
    fn dest_pages(&self) -> u32 {
        self.plain_len.div_ceil(PAGE) as u32
    }

    fn chunk_range(&self, i: usize) -> core::ops::Range<usize> {
        let (at, n) = self.chunks[i];
        at..at + n + flexserve_sealed::TAG_LEN
    }
}

fn read_package<E: Env>(c: &mut Ctx<'_, E>, kind: SealedKind) -> Result<Sealed, Fail> {
    let Some((base, size)) = c.env.sealed_package(kind) else {
        fail!("no {} package in the boot configuration", kind.name());
    };
    let mut bytes = vec![0u8; size as usize];
    c.env.mem_read(base, &mut bytes);
    let p = Package::parse(&bytes).map_err(|e| f(format_args!("{}: {e:?}", kind.name())))?;
    let h = &p.header;
    let chunks = (0..h.chunk_count)
        .map(|i| {
            let at = p.chunks_offset + h.chunk_cipher_offset(i).unwrap_or(0) as usize;
            let n = h.chunk(i).map_or(0, |c| c.plain_len as usize);
            (at, n)
        })
        .collect();
    let s = Sealed {
        base,
        model_id: h.model_id,
        version: h.package_version,
        header_hash: h.hash,
        plain_len: h.gguf_prefix.len() as u64 + h.data_len,
        chunks_offset: p.chunks_offset,
        chunks,
        recipient: p.recipient(0).map_or([0; 32], |r| r.device_key),
        bytes: Vec::new(),
    };
    Ok(Sealed { bytes, ..s })
}

impl<E: Env> Ctx<'_, E> {
    fn device_key(&mut self) -> Result<DeviceKey, Fail> {
        match self.serve_call(Request::DeviceKey, true)? {
            Reply::DeviceKey(k) => Ok(k),
            other => fail!("device key: {other:x?}"),
        }
    }

    /// Shares `pkg_pages` at `pkg_at` (the first `len` bytes a package), lends the destination
    /// and asks the SP to load; reclaims what the SP gave back on a refusal.
    fn load_sealed(
        &mut self,
        pkg_at: u64,
        len: u64,
        dest_pages: u32,
        dest_kind: SendKind,
    ) -> Result<(Reply, Handle, Handle), Fail> {
        let pkg_pages = len.div_ceil(PAGE) as u32;
        let pkg = self.give(SendKind::Share, &[(pkg_at, pkg_pages)])?;
        let dest = match self.give(dest_kind, &[(self.window_page(DEST_PAGE), dest_pages)]) {
            Ok(d) => d,
            Err(e) => {
                let _ = self.take_back(pkg);
                return Err(e);
            }
        };
        let r = self.serve_call(
            Request::ModelLoadSealed {
                package: pkg.0,
                dest: dest.0,
                len,
            },
            true,
        );
        Ok((r?, pkg, dest))
    }

    /// Loads a package that must be refused with `fault` at `chunk`; then both regions come
    /// back, the destination reads zero, nothing stays held and the SP still serves.
    fn sealed_refused(
        &mut self,
        pkg_at: u64,
        len: u64,
        dest_pages: u32,
        want: (SealedFault, u32),
    ) -> CheckResult {
        let before = self.mem_stats()?;
        let (r, pkg, dest) = self.load_sealed(pkg_at, len, dest_pages, SendKind::Lend)?;
        let back = (self.take_back(pkg), self.take_back(dest));
        match r {
            Reply::Error(Status::Sealed, d) if SealedFault::from_detail(d) == Some(want) => {}
            other => fail!("{other:x?}, expected {want:?}"),
        }
        back.0?;
        back.1?;
        self.dest_zero(dest_pages)?;
        let after = self.mem_stats()?;
        if after.live_regions != before.live_regions || after.mapped_pages != before.mapped_pages {
            fail!("the SP still holds memory: {before:?} -> {after:?}");
        }
        self.still_serving()
    }

    /// The destination pages read zero (decrypted bytes were scrubbed before they came back).
    fn dest_zero(&mut self, pages: u32) -> CheckResult {
        let at = self.window_page(DEST_PAGE);
        let mut buf = vec![0u8; pages as usize * PAGE as usize];
        self.env.mem_read(at, &mut buf);
        if let Some(i) = buf.iter().position(|&b| b != 0) {
            fail!(
                "destination byte {i:#x} is {:#x} after it came back",
                buf[i]
            );
        }
        Ok(())
    }

    /// `Attest` with `nonce` into the shared I/O buffer `io`; returns the report bytes.
    fn attest(&mut self, io: Handle, nonce: &[u8; 32]) -> Result<Vec<u8>, Fail> {
        let r = self.serve_call(
            Request::Attest {
                io_handle: io.0,
                nonce: *nonce,
            },
            true,
        );
        let n = match r? {
            Reply::Attested(n) if n as usize == attest::REPORT_LEN => n as usize,
            other => fail!("attest: {other:x?}"),
        };
        let mut report = vec![0u8; n];
        self.env.mem_read(self.window_page(IO_PAGE), &mut report);
        Ok(report)
    }

    /// A fresh nonce: the counter and the request count through SHA-256. (A real verifier
    /// draws it from a random source; the client has none.)
    fn nonce(&self, salt: u8) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.env.counter().map_or(0, |c| c.0).to_le_bytes());
        h.update([salt]);
        h.finalize().into()
    }
}

impl<E: Env> Ctx<'_, E> {
    /// Loads package `s` into the model window; with the time it took (ms), where there is a
    /// counter.
    fn load_package(&mut self, s: &Sealed) -> (Result<Loaded, Fail>, Option<f64>) {
        let t0 = self.env.counter();
        let r = model_of(self.load_sealed(
            s.base,
            s.bytes.len() as u64,
            s.dest_pages(),
            SendKind::Lend,
        ));
        let took = t0
            .zip(self.env.counter())
            .map(|((a, hz), (b, _))| ms(b.wrapping_sub(a), hz));
        (r, took)
    }
}

/// A loaded sealed model: what the SP said, the package handle and the destination handle.
type Loaded = (ModelInfo, Handle, Handle);

/// The SP's recipient key is the one the package was sealed to.
fn is_recipient(key: &Result<DeviceKey, Fail>, s: &Sealed) -> CheckResult {
    match key {
        Ok(k) if k.kem == s.recipient => Ok(()),
        Ok(_) => Err(f(format_args!("SP key is not the package's recipient"))),
        Err(e) => Err(e.clone()),
    }
}

fn model_of(r: Result<(Reply, Handle, Handle), Fail>) -> Result<Loaded, Fail> {
    match r? {
        (Reply::Model(i), p, d) => Ok((i, p, d)),
        (other, _, _) => fail!("sealed load: {other:x?}"),
    }
}

/// Checks a report against the device key and nonce, and that it names `s`.
fn attested(report: &[u8], key: &DeviceKey, nonce: &[u8; 32], s: &Sealed) -> CheckResult {
    let r = attest::verify(report, &key.sign, nonce)
        .map_err(|e| f(format_args!("report refused: {e:?}")))?;
    if (r.model_id, r.package_version, r.header_hash) != (s.model_id, s.version, s.header_hash) {
        fail!("the report names another package: {r:x?}");
    }
    if r.device.kem != key.kem {
        fail!("the report names another recipient key");
    }
    Ok(())
}

/// Scenario `sealed`.
pub(crate) fn sealed<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    negotiate_v1_2(c, r);
    if !start(c, r) {
        return;
    }
    let caps = c.capabilities();
    if !r.check("sealed.capability", {
        if caps & caps::SEALED == 0 {
            Err(f(format_args!("no SEALED capability ({caps:#x})")))
        } else {
            Ok(())
        }
    }) {
        return;
    }
    let pkgs: Result<Vec<Sealed>, Fail> = SealedKind::ALL
        .iter()
        .map(|&k| read_package(c, k))
        .collect();
    let Ok(pkgs) = pkgs.inspect_err(|e| {
        r.check("sealed.packages_in_boot_config", Err(e.clone()));
    }) else {
        return;
    };
    let [main, old, other_model, other_device] = &pkgs[..] else {
        return;
    };
    let key = c.device_key();
    if let Ok(k) = &key {
        let fp = flexserve_sealed::DevicePublic {
            kem: k.kem,
            sign: k.sign,
        }
        .fingerprint();
        r.note(format_args!(
            "device key: fingerprint {:02x?}; package {} bytes, {} chunks, plaintext {} bytes",
            &fp[..8],
            main.bytes.len(),
            main.chunks.len(),
            main.plain_len
        ));
    }
    let key_ok = r.check(
        "sealed.device_key_is_the_recipient",
        is_recipient(&key, main),
    );
    let Ok(key) = key else { return };
    if !key_ok {
        return;
    }

    // The client's own run of the plaintext (the test's oracle), before the plaintext pages
    // become the destination.
    let runs: Vec<(&str, u32, Sampling)> = DEMO_PROMPTS
        .iter()
        .map(|p| (*p, DEMO_TOKENS, Sampling::GREEDY))
        .collect();
    let reference = reference(c, &runs);
    if !r.check(
        "sealed.client_reference_run",
        reference.as_ref().map(|_| ()).map_err(Clone::clone),
    ) {
        return;
    }
    let Ok(reference) = reference else { return };

    // Release builds take no plaintext.
    r.check("sealed.plaintext_model_load_refused", {
        if caps & caps::PLAINTEXT_MODELS != 0 {
            Err(f(format_args!("this SP build loads plaintext models")))
        } else {
            match c.model_pages() {
                Ok(pages) => c.load_refused(
                    SendKind::Lend,
                    pages,
                    Status::Unsupported,
                    Some(Command::ModelLoad as u64),
                ),
                Err(e) => Err(e),
            }
        }
    });

    let io = match c.give(SendKind::Share, &[(c.window_page(IO_PAGE), IO_PAGES)]) {
        Ok(h) => h,
        Err(e) => {
            r.check("sealed.share_io", Err(e));
            return;
        }
    };
    let (loaded, took) = c.load_package(main);
    if let (Ok((i, _, _)), Some(t)) = (&loaded, took) {
        r.note(format_args!(
            "SP loaded the sealed model in {:.1} ms (unwrap, decrypt and verify {} chunks, build): {} layers, {} KiB heap",
            t,
            main.chunks.len(),
            i.n_layers,
            i.heap_bytes / 1024
        ));
    }
    let ok = r.check(
        "sealed.load",
        loaded.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    if ok && let Ok((_, pkg, dest)) = loaded {
        r.check("sealed.package_given_back_after_load", c.take_back(pkg));
        c.demo_generations(
            r,
            io,
            [
                "sealed.generate1_matches_plaintext",
                "sealed.generate2_matches_plaintext",
                "sealed.generate3_matches_plaintext",
            ],
            |i, out| same_output(out, &reference.outputs[i]),
        );
        if c.capabilities() & flexserve_proto::caps::FLEX_NPU != 0 {
            let jobs = npu_generation(c, io, &reference);
            if let Ok(n) = &jobs {
                r.note(format_args!(
                    "with the NPU the SP's: {n} products ran on it (the V projection of each \
                     layer of the prefill), text as the plaintext run's"
                ));
            }
            r.check("sealed.generate_with_the_npu", jobs.map(|_| ()));
        }
        let nonce = c.nonce(1);
        let report = c.attest(io, &nonce);
        r.check(
            "sealed.attestation_verifies",
            report
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|rep| attested(rep, &key, &nonce, main)),
        );
        if let Ok(rep) = &report {
            r.check(
                "sealed.attestation_wrong_nonce_rejected",
                match attest::verify(rep, &key.sign, &c.nonce(2)) {
                    Err(AttestError::WrongNonce) => Ok(()),
                    other => Err(f(format_args!("{other:?}"))),
                },
            );
            let mut forged = rep.clone();
            forged[attest::REPORT_BODY_LEN + 5] ^= 0x01;
            r.check(
                "sealed.attestation_forged_signature_rejected",
                match attest::verify(&forged, &key.sign, &nonce) {
                    Err(AttestError::BadSignature) => Ok(()),
                    other => Err(f(format_args!("{other:?}"))),
                },
            );
            let mut swapped = rep.clone();
            swapped[80] ^= 0x01;
            r.check(
                "sealed.attestation_of_another_model_rejected",
                match attest::verify(&swapped, &key.sign, &nonce) {
                    Err(AttestError::BadSignature) => Ok(()),
                    other => Err(f(format_args!("{other:?}"))),
                },
            );
        }
        r.check("sealed.unload", {
            match c.serve_call(Request::ModelUnload, true) {
                Ok(Reply::Done) => c
                    .take_back(dest)
                    .and_then(|()| c.dest_zero(main.dest_pages())),
                Ok(other) => Err(f(format_args!("{other:x?}"))),
                Err(e) => Err(e),
            }
        });
    }

    // Hostile packages, each built in the copy area from the packages xtask made.
    let copy_at = c.window_page(COPY_PAGE);
    let dest_pages = main.dest_pages();
    let hostile = |c: &mut Ctx<'_, E>, bytes: &[u8], want: (SealedFault, u32), len: Option<u64>| {
        c.env.mem_write(copy_at, bytes);
        let len = len.unwrap_or(bytes.len() as u64);
        c.sealed_refused(copy_at, len, dest_pages, want)
    };
    let n = main.chunks.len();
    let k = n / 2;
    let mut b = main.bytes.clone();
    b[main.chunk_range(k).start + 7] ^= 0x20;
    r.check(
        "sealed.flipped_chunk_bit_refused",
        hostile(c, &b, (SealedFault::ChunkAuth, k as u32), None),
    );
    let mut b = main.bytes.clone();
    // A byte of the GGUF metadata, inside the authenticated header.
    b[FIXED_HEADER_LEN + 24 * n + 40] ^= 0x01;
    r.check(
        "sealed.flipped_header_bit_refused",
        hostile(c, &b, (SealedFault::HeaderAuth, 0), None),
    );
    let mut b = main.bytes.clone();
    // The wrapped key of the only recipient (after its device and ephemeral keys).
    let wrapped = main.chunks_offset - 112 + 64;
    b[wrapped + 3] ^= 0x80;
    r.check(
        "sealed.flipped_wrapped_key_bit_refused",
        hostile(c, &b, (SealedFault::KeyUnwrap, 0), None),
    );
    let pair = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .find(|&(i, j)| main.chunks[i].1 == main.chunks[j].1);
    r.check("sealed.swapped_chunks_refused", {
        match pair {
            Some((i, j)) => {
                let mut b = main.bytes.clone();
                let (ri, rj) = (main.chunk_range(i), main.chunk_range(j));
                b[ri.clone()].copy_from_slice(&main.bytes[rj.clone()]);
                b[rj].copy_from_slice(&main.bytes[ri]);
                hostile(c, &b, (SealedFault::ChunkAuth, i as u32), None)
            }
            None => Err(f(format_args!("no two chunks of one size to swap"))),
        }
    });
    for (name, donor) in [
        ("sealed.chunk_from_another_model_refused", other_model),
        ("sealed.chunk_from_an_older_version_refused", old),
    ] {
        let rk = main.chunk_range(k);
        r.check(name, {
            if donor.chunk_range(k) != rk {
                Err(f(format_args!("donor chunk {k} is laid out differently")))
            } else {
                let mut b = main.bytes.clone();
                b[rk.clone()].copy_from_slice(&donor.bytes[rk]);
                hostile(c, &b, (SealedFault::ChunkAuth, k as u32), None)
            }
        });
    }
    r.check(
        "sealed.truncated_package_refused",
        hostile(
            c,
            &main.bytes,
            (SealedFault::Truncated, 0),
            Some(main.bytes.len() as u64 - 1000),
        ),
    );
    r.check(
        "sealed.package_for_another_device_refused",
        c.sealed_refused(
            other_device.base,
            other_device.bytes.len() as u64,
            dest_pages,
            (SealedFault::NoRecipientForDevice, 0),
        ),
    );
    r.check(
        "sealed.destination_too_small_refused",
        c.sealed_refused(
            main.base,
            main.bytes.len() as u64,
            main.dest_pages() - 1,
            (SealedFault::DestinationTooSmall, 0),
        ),
    );
    // After all that, the real package still loads and serves.
    r.check("sealed.still_loads_and_serves_after_refusals", {
        c.load_package(main).0.and_then(|(_, pkg, dest)| {
            c.take_back(pkg)?;
            let out = c.generate_ok(io, DEMO_PROMPTS[0], DEMO_TOKENS, Sampling::GREEDY);
            let unloaded = c.serve_call(Request::ModelUnload, true);
            let back = c.take_back(dest);
            same_output(&out?.1, &reference.outputs[0])?;
            match unloaded? {
                Reply::Done => back,
                other => Err(f(format_args!("unload: {other:x?}"))),
            }
        })
    });
    r.check("sealed.io_buffer_reclaimed", c.take_back(io));
}

/// The demo with a sealed model (what `cargo xtask run` serves): the client never holds the
/// plaintext, so it prints what the SP generates and checks the attestation.
pub(crate) fn demo_sealed<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    let main = match read_package(c, SealedKind::Main) {
        Ok(p) => p,
        Err(e) => {
            r.check("demo.sealed_package", Err(e));
            return;
        }
    };
    let key = c.device_key();
    if !r.check(
        "demo.sealed.device_key_is_the_recipient",
        is_recipient(&key, &main),
    ) {
        return;
    }
    let Ok(key) = key else { return };
    let fp = flexserve_sealed::DevicePublic {
        kem: key.kem,
        sign: key.sign,
    }
    .fingerprint();
    r.note(format_args!(
        "sealed model: {} bytes, {} chunks, for device {:02x?}; the client lends {} pages for the plaintext",
        main.bytes.len(),
        main.chunks.len(),
        &fp[..8],
        main.dest_pages()
    ));
    let io = match c.give(SendKind::Share, &[(c.window_page(IO_PAGE), IO_PAGES)]) {
        Ok(h) => h,
        Err(e) => {
            r.check("demo.share_io", Err(e));
            return;
        }
    };
    let (loaded, took) = c.load_package(&main);
    if let (Ok((i, _, _)), Some(t)) = (&loaded, took) {
        r.note(format_args!(
            "SP unsealed and loaded it in {:.1} ms: {} layers, dim {}, vocab {}, context {}, {} KiB heap",
            t,
            i.n_layers,
            i.dim,
            i.vocab,
            i.context,
            i.heap_bytes / 1024
        ));
    }
    if !r.check(
        "demo.sealed.load",
        loaded.as_ref().map(|_| ()).map_err(Clone::clone),
    ) {
        let _ = c.take_back(io);
        return;
    }
    let Ok((_, pkg, dest)) = loaded else { return };
    r.check("demo.sealed.package_given_back", c.take_back(pkg));
    let nonce = c.nonce(7);
    r.check(
        "demo.sealed.attestation_verifies",
        c.attest(io, &nonce)
            .and_then(|rep| attested(&rep, &key, &nonce, &main)),
    );
    c.demo_generations(
        r,
        io,
        [
            "demo.sealed.generate1",
            "demo.sealed.generate2",
            "demo.sealed.generate3",
        ],
        |_, out| match out.ids.is_empty() {
            true => Err(f(format_args!("no tokens"))),
            false => Ok(()),
        },
    );
    r.check("demo.sealed.unload_scrubs", {
        match c.serve_call(Request::ModelUnload, true) {
            Ok(Reply::Done) => c
                .take_back(dest)
                .and_then(|()| c.dest_zero(main.dest_pages())),
            Ok(other) => Err(f(format_args!("{other:x?}"))),
            Err(e) => Err(e),
        }
    });
    r.check("demo.io_reclaimed", c.take_back(io));
}

/// With the NPU handed to the SP, the model's offloadable products (the V projections of
/// prefill) run on it, the weights read in place from the secured model; the text is the same
/// as the plaintext run's, and the NPU's job count grows by one per layer of the prefill.
fn npu_generation<E: Env>(
    c: &mut Ctx<'_, E>,
    io: Handle,
    reference: &crate::serve::Reference,
) -> Result<u64, Fail> {
    use crate::flexmem::Reply as NpuReply;
    let jobs = |r: NpuReply| match r {
        NpuReply::NpuSwitched(s) => Ok(s.jobs),
        other => Err(f(format_args!("NPU switch: {other:x?}"))),
    };
    let before = jobs(c.flex_call(Request::NpuAcquire)?)?;
    let out = c.generate_ok(
        io,
        crate::serve::DEMO_PROMPTS[0],
        crate::serve::DEMO_TOKENS,
        Sampling::GREEDY,
    );
    let after = jobs(c.flex_call(Request::NpuRelease)?)?;
    let (_, out) = out?;
    same_output(&out, &reference.outputs[0])?;
    if after <= before {
        fail!("no product ran on the NPU ({before} jobs before, {after} after)");
    }
    Ok(after - before)
}
