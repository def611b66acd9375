//! Round trip on the bundled model and every tampering the format must refuse.

use flexserve_sealed::{
    ContentKey, DeviceSecret, Error, Header, Layer, Package, SealParams, TAG_LEN, open_chunk,
    plan_chunks, seal,
};
use llm_runtime::gguf::Gguf;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// Deterministic test RNG: SHA-256 in counter mode over a seed.
struct TestRng {
    seed: u64,
    counter: u64,
}

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let mut h = Sha256::new();
            h.update(self.seed.to_le_bytes());
            h.update(self.counter.to_le_bytes());
            self.counter += 1;
            chunk.copy_from_slice(&h.finalize()[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for TestRng {}

fn rng(seed: u64) -> TestRng {
    TestRng { seed, counter: 0 }
}

fn model() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../llm-runtime/models/fortunes-q8_0.gguf"
    ))
    .expect("bundled model")
}

fn device(seed: u8) -> DeviceSecret {
    DeviceSecret::from_bytes([seed; 32])
}

/// Small chunks so layers are split into parts.
const MAX_CHUNK: u32 = 48 * 1024;

fn seal_model(gguf: &[u8], id: u8, version: u64, to: &[[u8; 32]], seed: u64) -> Vec<u8> {
    seal(
        gguf,
        &SealParams {
            model_id: [id; 32],
            package_version: version,
            max_chunk_len: MAX_CHUNK,
            recipients: to,
            owner: None,
        },
        &mut rng(seed),
    )
    .expect("seal")
}

/// Opens every chunk; returns the plaintext data section or the first error.
fn unseal(pkg_bytes: &[u8], dev: &DeviceSecret) -> Result<Vec<u8>, Error> {
    let pkg = Package::parse(pkg_bytes)?;
    let key: ContentKey = pkg.unwrap_key(dev)?;
    let mut out = Vec::new();
    for i in 0..pkg.header.chunk_count {
        let mut buf = pkg.chunk_bytes(i)?.to_vec();
        open_chunk(&key, &pkg.header, i, &mut buf)?;
        out.extend_from_slice(&buf[..buf.len() - TAG_LEN]);
    }
    Ok(out)
}

#[test]
fn round_trip_gives_the_original_tensor_bytes() {
    let gguf = model();
    let dev = device(7);
    let other = device(9);
    let bytes = seal_model(&gguf, 1, 1, &[other.public_key(), dev.public_key()], 1);
    let g = Gguf::parse(&gguf).unwrap();
    let plain = unseal(&bytes, &dev).unwrap();
    assert_eq!(plain, &gguf[g.data_offset..]);
    // The second recipient opens it too.
    assert_eq!(unseal(&bytes, &other).unwrap(), plain);
    // The metadata stays readable and is the original's.
    let pkg = Package::parse(&bytes).unwrap();
    assert_eq!(pkg.header.gguf_prefix, &gguf[..g.data_offset]);
    // No tensor's plaintext appears in the package.
    let biggest = g.tensors().iter().max_by_key(|t| t.data.len()).unwrap();
    assert!(!bytes.windows(64).any(|w| w == &biggest.data[..64]));
}

#[test]
fn chunks_follow_layers_and_the_bound() {
    let gguf = model();
    let g = Gguf::parse(&gguf).unwrap();
    let (_, chunks) = plan_chunks(&gguf, MAX_CHUNK).unwrap();
    assert!(chunks.iter().all(|c| c.plain_len <= MAX_CHUNK));
    assert!(chunks.iter().any(|c| c.part > 0), "a layer was split");
    // Every tensor lies in chunks of its own layer.
    for t in g.tensors() {
        let layer = Layer::of_tensor(t.name);
        let (s, e) = (t.offset, t.offset + t.data.len() as u64);
        for c in &chunks {
            let (cs, ce) = (c.plain_offset, c.plain_offset + c.plain_len as u64);
            if cs < e && s < ce {
                assert_eq!(c.layer, layer, "{}", t.name);
            }
        }
    }
    for want in [Layer::Embeddings, Layer::OutputNorm, Layer::Block(0)] {
        assert!(chunks.iter().any(|c| c.layer == want), "{want:?}");
    }
}

#[test]
fn flipped_bit_in_a_chunk_is_refused() {
    let gguf = model();
    let dev = device(7);
    let mut bytes = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    let pkg = Package::parse(&bytes).unwrap();
    let r = pkg.chunk_range(3).unwrap();
    bytes[r.start + 10] ^= 0x04;
    assert_eq!(unseal(&bytes, &dev), Err(Error::ChunkAuth { index: 3 }));
}

#[test]
fn failed_chunk_leaves_no_plaintext_in_the_buffer() {
    let gguf = model();
    let dev = device(7);
    let bytes = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    let pkg = Package::parse(&bytes).unwrap();
    let key = pkg.unwrap_key(&dev).unwrap();
    let mut buf = pkg.chunk_bytes(2).unwrap().to_vec();
    let last = buf.len() - 1;
    buf[last] ^= 1; // the tag
    assert_eq!(
        open_chunk(&key, &pkg.header, 2, &mut buf),
        Err(Error::ChunkAuth { index: 2 })
    );
    assert!(buf.iter().all(|&b| b == 0));
    let mut short = vec![0u8; 3];
    assert!(matches!(
        open_chunk(&key, &pkg.header, 2, &mut short),
        Err(Error::ChunkBufferLength { index: 2, .. })
    ));
    assert_eq!(
        open_chunk(&key, &pkg.header, pkg.header.chunk_count, &mut short),
        Err(Error::NoSuchChunk(pkg.header.chunk_count))
    );
}

#[test]
fn flipped_bit_in_the_header_is_refused() {
    let gguf = model();
    let dev = device(7);
    let bytes = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    let pkg = Package::parse(&bytes).unwrap();
    // In the GGUF metadata, in the model id and in the version: all parse, none unwraps.
    for at in [pkg.header.len - 5, 20, 50] {
        let mut b = bytes.clone();
        b[at] ^= 0x10;
        assert_eq!(unseal(&b, &dev).err(), Some(Error::HeaderAuth), "byte {at}");
    }
}

#[test]
fn flipped_bit_in_the_wrapped_key_is_refused() {
    let gguf = model();
    let dev = device(7);
    let mut bytes = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    let pkg = Package::parse(&bytes).unwrap();
    // Header, header tag (32), count + reserved (4), device key, ephemeral key, wrapped key.
    let wrapped = pkg.header.len + 32 + 4 + 64;
    bytes[wrapped + 5] ^= 0x80;
    assert_eq!(unseal(&bytes, &dev).err(), Some(Error::KeyUnwrap));
}

#[test]
fn swapped_chunks_are_refused() {
    let gguf = model();
    let dev = device(7);
    let bytes = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    let pkg = Package::parse(&bytes).unwrap();
    // Two full-size parts of one split layer have the same length: swap them byte for byte.
    let (a, b) = (0..pkg.header.chunk_count - 1)
        .map(|i| (i, i + 1))
        .find(|&(i, j)| {
            pkg.header.chunk(i).unwrap().plain_len == pkg.header.chunk(j).unwrap().plain_len
        })
        .expect("two equal-length neighbours");
    let (ra, rb) = (pkg.chunk_range(a).unwrap(), pkg.chunk_range(b).unwrap());
    let mut swapped = bytes.clone();
    swapped[ra.clone()].copy_from_slice(&bytes[rb.clone()]);
    swapped[rb].copy_from_slice(&bytes[ra]);
    assert_eq!(unseal(&swapped, &dev), Err(Error::ChunkAuth { index: a }));
}

/// Replaces chunk 4 of `target` with chunk 4 of `donor` (same model layout, same length).
fn splice(target: &[u8], donor: &[u8]) -> Vec<u8> {
    let (t, d) = (
        Package::parse(target).unwrap(),
        Package::parse(donor).unwrap(),
    );
    let mut out = target.to_vec();
    out[t.chunk_range(4).unwrap()].copy_from_slice(d.chunk_bytes(4).unwrap());
    out
}

#[test]
fn chunk_from_another_model_is_refused() {
    let gguf = model();
    let dev = device(7);
    let mine = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    let theirs = seal_model(&gguf, 2, 1, &[dev.public_key()], 2);
    assert_eq!(
        unseal(&splice(&mine, &theirs), &dev),
        Err(Error::ChunkAuth { index: 4 })
    );
}

#[test]
fn chunk_from_an_older_version_is_refused() {
    let gguf = model();
    let dev = device(7);
    let v2 = seal_model(&gguf, 1, 2, &[dev.public_key()], 3);
    let v1 = seal_model(&gguf, 1, 1, &[dev.public_key()], 4);
    assert_eq!(
        unseal(&splice(&v2, &v1), &dev),
        Err(Error::ChunkAuth { index: 4 })
    );
    // An old recipient record grafted on the new header does not pass the header check either.
    let (p2, p1) = (Package::parse(&v2).unwrap(), Package::parse(&v1).unwrap());
    let mut graft = v2.clone();
    let h = p2.header.len;
    graft[h..p2.chunks_offset].copy_from_slice(&v1[p1.header.len..p1.chunks_offset]);
    assert_eq!(unseal(&graft, &dev).err(), Some(Error::HeaderAuth));
}

#[test]
fn truncated_package_is_refused() {
    let gguf = model();
    let dev = device(7);
    let bytes = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    for len in [bytes.len() - 1, bytes.len() - 1000, 300, 100, 7, 0] {
        assert!(
            matches!(Package::parse(&bytes[..len]), Err(Error::Truncated { .. })),
            "len {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Package::parse(&longer),
        Err(Error::TrailingBytes { .. })
    ));
}

#[test]
fn package_for_another_device_is_refused() {
    let gguf = model();
    let bytes = seal_model(&gguf, 1, 1, &[device(7).public_key()], 1);
    assert_eq!(
        unseal(&bytes, &device(8)).err(),
        Some(Error::NoRecipientForDevice)
    );
    // A record relabelled with another device's key does not unwrap with that device's secret.
    let pkg = Package::parse(&bytes).unwrap();
    let mut relabelled = bytes.clone();
    let at = pkg.header.len + 36;
    relabelled[at..at + 32].copy_from_slice(&device(8).public_key());
    assert_eq!(
        unseal(&relabelled, &device(8)).err(),
        Some(Error::KeyUnwrap)
    );
}

#[test]
fn owner_signature_verifies_and_forgeries_do_not() {
    let gguf = model();
    let dev = device(7);
    let owner = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let bytes = seal(
        &gguf,
        &SealParams {
            model_id: [1; 32],
            package_version: 1,
            max_chunk_len: 1 << 20,
            recipients: &[dev.public_key()],
            owner: Some(&owner),
        },
        &mut rng(5),
    )
    .unwrap();
    let pkg = Package::parse(&bytes).unwrap();
    let owner_pub = owner.verifying_key().to_bytes();
    pkg.verify_owner(&owner_pub).unwrap();
    assert_eq!(
        pkg.verify_owner(&stranger.verifying_key().to_bytes()),
        Err(Error::WrongOwner)
    );
    let mut forged = bytes.clone();
    forged[pkg.chunks_offset - 1] ^= 1; // last signature byte
    assert_eq!(
        Package::parse(&forged).unwrap().verify_owner(&owner_pub),
        Err(Error::BadSignature)
    );
    assert!(unseal(&bytes, &dev).is_ok());
    let unsigned = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    assert_eq!(
        Package::parse(&unsigned).unwrap().verify_owner(&owner_pub),
        Err(Error::Unsigned)
    );
}

#[test]
fn header_parser_checks_its_fields() {
    let gguf = model();
    let bytes = seal_model(&gguf, 1, 1, &[device(7).public_key()], 1);
    let edit = |at: usize, v: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + v.len()].copy_from_slice(v);
        Header::parse(&b).err()
    };
    assert_eq!(edit(0, b"X"), Some(Error::BadMagic));
    assert_eq!(
        edit(8, &2u16.to_le_bytes()),
        Some(Error::UnsupportedVersion(2))
    );
    assert_eq!(edit(10, &4u16.to_le_bytes()), Some(Error::UnknownFlags(4)));
    assert!(matches!(
        edit(12, &1u32.to_le_bytes()),
        Some(Error::HeaderLength { .. })
    ));
    assert_eq!(
        edit(56, &0u32.to_le_bytes()),
        Some(Error::BadMaxChunkLen(0))
    );
    // A smaller bound than the chunks use.
    assert!(matches!(
        edit(56, &100u32.to_le_bytes()),
        Some(Error::BadChunk { index: 0 })
    ));
    assert!(matches!(
        edit(72, &1u64.to_le_bytes()),
        Some(Error::BadChunk { .. })
    ));
    // Chunk 1's offset off by one.
    assert_eq!(edit(112 + 24, &[1]), Some(Error::BadChunk { index: 1 }));
    assert!(matches!(edit(112 + 20, &[1]), Some(Error::Reserved { .. })));
}

#[test]
fn sealing_rejects_bad_inputs() {
    use flexserve_sealed::SealError;
    let gguf = model();
    let params = |to: &'static [[u8; 32]], max| SealParams {
        model_id: [0; 32],
        package_version: 0,
        max_chunk_len: max,
        recipients: to,
        owner: None,
    };
    let mut r = rng(0);
    assert_eq!(
        seal(&gguf, &params(&[], 4096), &mut r).err(),
        Some(SealError::BadRecipientCount(0))
    );
    // The identity point is low order: no shared secret.
    assert_eq!(
        seal(&gguf, &params(&[[0; 32]], 4096), &mut r).err(),
        Some(SealError::WeakRecipientKey(0))
    );
    assert_eq!(
        seal(&gguf, &params(&[[9; 32]], 0), &mut r).err(),
        Some(SealError::BadMaxChunkLen(0))
    );
    assert!(matches!(
        seal(b"not a gguf file at all", &params(&[[9; 32]], 4096), &mut r),
        Err(SealError::Gguf(_))
    ));
}

#[test]
fn interleaved_layers_and_odd_tensors_get_their_own_chunks() {
    use llm_runtime::gguf_write::GgufWriter;
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama");
    w.tensor_f32("token_embd.weight", &[8, 4], &[0.5; 32]);
    w.tensor_f32("blk.0.attn_q.weight", &[8, 8], &[0.25; 64]);
    w.tensor_f32("rope_freqs.weight", &[4], &[1.0; 4]);
    w.tensor_f32("blk.0.ffn_up.weight", &[8, 8], &[0.75; 64]);
    w.tensor_f32("blk.1.ffn_up.weight", &[8, 8], &[0.125; 64]);
    w.tensor_f32("output.weight", &[8, 4], &[2.0; 32]);
    let gguf = w.finish();
    let (_, chunks) = plan_chunks(&gguf, 4096).unwrap();
    let layers: Vec<(Layer, u32)> = chunks.iter().map(|c| (c.layer, c.part)).collect();
    assert_eq!(
        layers,
        [
            (Layer::Embeddings, 0),
            (Layer::Block(0), 0),
            (Layer::Other, 0),
            (Layer::Block(0), 0),
            (Layer::Block(1), 0),
            (Layer::Head, 0),
        ]
    );
    let dev = device(1);
    let g = Gguf::parse(&gguf).unwrap();
    let bytes = seal_model(&gguf, 3, 1, &[dev.public_key()], 9);
    assert_eq!(unseal(&bytes, &dev).unwrap(), &gguf[g.data_offset..]);

    // No tensors at all: no chunks, still a valid package.
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama");
    let empty = w.finish();
    let bytes = seal_model(&empty, 3, 1, &[dev.public_key()], 9);
    assert_eq!(Package::parse(&bytes).unwrap().header.chunk_count, 0);
    assert_eq!(unseal(&bytes, &dev).unwrap(), b"");
}

/// The reader the partition uses: a private copy of the head only, each chunk copied to its
/// place in a GGUF-shaped buffer and opened there with its tag apart.
#[test]
fn head_only_reader_rebuilds_the_gguf_in_place() {
    let gguf = model();
    let dev = device(1);
    let bytes = seal_model(&gguf, 1, 1, &[dev.public_key()], 1);
    // The length is known only once enough of the head is there.
    let mut have = 16;
    let head = loop {
        match flexserve_sealed::head_len(&bytes[..have]) {
            Ok(n) => break n,
            Err(Error::Truncated { offset, need }) => {
                assert!(offset + need > have, "asks for more");
                have = offset + need;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    let pkg = Package::parse_head(&bytes[..head], bytes.len()).unwrap();
    assert_eq!(pkg.chunks_offset, head);
    assert_eq!(
        Package::parse_head(&bytes[..head], bytes.len() - 1).err(),
        Some(Error::Truncated {
            offset: bytes.len() - 1,
            need: 1
        })
    );
    let key = pkg.unwrap_key(&dev).unwrap();
    let prefix = pkg.header.gguf_prefix.len();
    let mut plain = vec![0u8; prefix + pkg.header.data_len as usize];
    plain[..prefix].copy_from_slice(pkg.header.gguf_prefix);
    for i in 0..pkg.header.chunk_count {
        let c = pkg.header.chunk(i).unwrap();
        let at = head + pkg.header.chunk_cipher_offset(i).unwrap() as usize;
        let n = c.plain_len as usize;
        let dst = &mut plain[prefix + c.plain_offset as usize..][..n];
        dst.copy_from_slice(&bytes[at..at + n]);
        let tag: [u8; TAG_LEN] = bytes[at + n..at + n + TAG_LEN].try_into().unwrap();
        flexserve_sealed::open_chunk_detached(&key, &pkg.header, i, dst, &tag).unwrap();
    }
    assert!(plain == gguf, "rebuilt file differs");
    // A bad tag zeroes the destination.
    let c = pkg.header.chunk(1).unwrap();
    let dst = &mut plain[prefix + c.plain_offset as usize..][..c.plain_len as usize];
    assert_eq!(
        flexserve_sealed::open_chunk_detached(&key, &pkg.header, 1, dst, &[0; TAG_LEN]),
        Err(Error::ChunkAuth { index: 1 })
    );
    assert!(dst.iter().all(|&b| b == 0));
    // Garbage heads are errors.
    assert_eq!(
        flexserve_sealed::head_len(b"GGUF\0\0\0\0\0\0\0\0\0\0\0\0"),
        Err(Error::BadMagic)
    );
}
