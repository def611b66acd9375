//! GGUF reader: round trips, the committed gguf-py fixtures, every specific rejection, and
//! fuzz-style truncation/corruption sweeps (which must return errors, never panic).

use llm_runtime::gguf::{
    AlignedBuf, Gguf, GgufError, ParseOptions, TensorType, Value, ValueType, ViewError,
};
use llm_runtime::gguf_write::GgufWriter;
use llm_runtime::kernels::BlockQ8_0;

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/fixtures/oracle/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Copies bytes into an 8-byte-aligned buffer (a `Vec<u8>` promises only 1-byte alignment),
/// so typed tensor views work.
fn aligned(bytes: &[u8]) -> AlignedBuf {
    AlignedBuf::from_slice(bytes)
}

fn as_bytes(v: &AlignedBuf, len: usize) -> &[u8] {
    &v.as_bytes()[..len]
}

fn q8_bytes(blocks: &[BlockQ8_0]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks {
        out.extend_from_slice(&b.d.to_le_bytes());
        out.extend(b.qs.iter().map(|&q| q as u8));
    }
    out
}

/// A small file with every value type, a nested array and three tensor types.
fn sample(alignment: Option<u32>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    if let Some(a) = alignment {
        w.alignment(a);
    }
    w.kv_str("general.architecture", "llama")
        .kv_raw("u8", 0, &[7])
        .kv_raw("i8", 1, &[0xfe])
        .kv_raw("u16", 2, &513u16.to_le_bytes())
        .kv_raw("i16", 3, &(-2i16).to_le_bytes())
        .kv_u32("u32", 70000)
        .kv_i32("i32", -70000)
        .kv_f32("f32", 1.5)
        .kv_bool("bool", true)
        .kv_str("str", "héllo")
        .kv_u64("u64", 1 << 40)
        .kv_raw("i64", 11, &(-(1i64 << 40)).to_le_bytes())
        .kv_raw("f64", 12, &2.25f64.to_le_bytes())
        .kv_str_array("strs", &["a", "bc", ""])
        .kv_f32_array("f32s", &[1.0, -2.0])
        .kv_i32_array("i32s", &[3, -4, 5]);
    // Array of arrays of u8: [[1, 2], []].
    let mut nested = Vec::new();
    nested.extend_from_slice(&9u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    nested.extend_from_slice(&0u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    nested.extend_from_slice(&[1, 2]);
    nested.extend_from_slice(&0u32.to_le_bytes());
    nested.extend_from_slice(&0u64.to_le_bytes());
    w.kv_raw("nested", 9, &nested);

    let f32s: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 3.0).collect();
    w.tensor_f32("a.f32", &[16, 4], &f32s);
    let f16: Vec<u8> = (0..48u16)
        .flat_map(|i| half::f16::from_f32(i as f32).to_bits().to_le_bytes())
        .collect();
    w.tensor("b.f16", &[48], 1, &f16);
    let mut blocks = [BlockQ8_0::ZERO; 4];
    for (i, b) in blocks.iter_mut().enumerate() {
        b.d = half::f16::from_f32(0.5 + i as f32).to_bits();
        for (j, q) in b.qs.iter_mut().enumerate() {
            *q = (j as i8).wrapping_mul(7).wrapping_sub(i as i8);
        }
    }
    w.tensor("c.q8_0", &[64, 2], 8, &q8_bytes(&blocks));
    w.finish()
}

#[test]
fn round_trip_every_value_and_tensor_type() {
    for alignment in [None, Some(8), Some(64), Some(4096)] {
        let bytes = sample(alignment);
        let buf = aligned(&bytes);
        let g = Gguf::parse(as_bytes(&buf, bytes.len())).expect("parse");
        assert_eq!(g.version, 3);
        assert_eq!(g.alignment, alignment.unwrap_or(32));
        assert_eq!(g.data_offset % g.alignment as usize, 0);
        assert_eq!(g.get("u8"), Some(Value::U8(7)));
        assert_eq!(g.get("i8"), Some(Value::I8(-2)));
        assert_eq!(g.get("u16"), Some(Value::U16(513)));
        assert_eq!(g.get("i16"), Some(Value::I16(-2)));
        assert_eq!(g.get("u32"), Some(Value::U32(70000)));
        assert_eq!(g.get("i32"), Some(Value::I32(-70000)));
        assert_eq!(g.get("f32"), Some(Value::F32(1.5)));
        assert_eq!(g.get("bool"), Some(Value::Bool(true)));
        assert_eq!(g.get("str"), Some(Value::String("héllo")));
        assert_eq!(g.get("u64"), Some(Value::U64(1 << 40)));
        assert_eq!(g.get("i64"), Some(Value::I64(-(1 << 40))));
        assert_eq!(g.get("f64"), Some(Value::F64(2.25)));
        assert_eq!(g.get("missing"), None);
        let strs = g.get("strs").and_then(|v| v.as_array()).expect("strs");
        assert_eq!(strs.elem_type(), ValueType::String);
        let s: Vec<_> = strs.iter().map(|v| v.as_str().expect("str")).collect();
        assert_eq!(s, ["a", "bc", ""]);
        let f = g.get("f32s").and_then(|v| v.as_array()).expect("f32s");
        assert_eq!(f.get(1), Some(Value::F32(-2.0)));
        assert_eq!(f.get(2), None);
        let i: Vec<_> = g.get("i32s").unwrap().as_array().unwrap().iter().collect();
        assert_eq!(i, [Value::I32(3), Value::I32(-4), Value::I32(5)]);
        let nested = g.get("nested").and_then(|v| v.as_array()).expect("nested");
        let inner: Vec<_> = nested
            .iter()
            .map(|v| v.as_array().expect("inner"))
            .collect();
        assert_eq!(inner.len(), 2);
        assert_eq!(
            inner[0].iter().collect::<Vec<_>>(),
            [Value::U8(1), Value::U8(2)]
        );
        assert!(inner[1].is_empty());

        let a = g.tensor("a.f32").expect("a");
        assert_eq!((a.ne, a.n_dims, a.ty), ([16, 4, 1, 1], 2, TensorType::F32));
        let av = a.as_f32().expect("f32 view");
        assert_eq!(av.len(), 64);
        assert_eq!(av[5], 5.0 * 0.25 - 3.0);
        assert_eq!(
            a.as_q8_0(),
            Err(ViewError::WrongType {
                expected: 8,
                found: 0
            })
        );
        let b = g
            .tensor("b.f16")
            .expect("b")
            .as_f16_bits()
            .expect("f16 view");
        assert_eq!(half::f16::from_bits(b[47]).to_f32(), 47.0);
        let c = g.tensor("c.q8_0").expect("c");
        assert_eq!(c.data.len(), 4 * 34);
        let cv = c.as_q8_0().expect("q8 view");
        assert_eq!(half::f16::from_bits(cv[3].d).to_f32(), 3.5);
        assert_eq!(cv[2].qs[5], 5i8.wrapping_mul(7).wrapping_sub(2));
        for t in g.tensors() {
            assert_eq!(t.offset % u64::from(g.alignment), 0, "{}", t.name);
        }
    }
}

#[test]
fn reads_gguf_py_fixtures() {
    for (name, ty, align) in [
        ("mha-f32.gguf", TensorType::F32, 32),
        ("gqa-q8_0.gguf", TensorType::Q8_0, 32),
        ("tied-q8_0.gguf", TensorType::Q8_0, 256),
    ] {
        let bytes = fixture(name);
        let buf = aligned(&bytes);
        let g = Gguf::parse(as_bytes(&buf, bytes.len())).expect(name);
        assert_eq!(g.alignment, align, "{name}");
        assert_eq!(g.get("general.architecture"), Some(Value::String("llama")));
        assert_eq!(
            g.get("llama.embedding_length").and_then(|v| v.as_u64()),
            Some(64)
        );
        let toks = g
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .expect("tokens");
        assert_eq!(toks.iter().count(), toks.len());
        let q = g.tensor("blk.0.attn_q.weight").expect("attn_q");
        assert_eq!((q.ne, q.ty), ([64, 64, 1, 1], ty));
        let norm = g.tensor("blk.1.ffn_norm.weight").expect("norm");
        assert_eq!(norm.ty, TensorType::F32, "norms stay F32");
        // Last tensor ends within the file; data offset is aligned.
        assert_eq!(g.data_offset % align as usize, 0);
        let end = g
            .tensors()
            .iter()
            .map(|t| g.data_offset + t.offset as usize + t.data.len());
        assert!(end.max().unwrap() <= bytes.len());
    }
}

/// Header bytes of a file with given counts; KVs/tensors appended by the caller.
fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s);
}

fn tensor_info(b: &mut Vec<u8>, name: &str, ne: &[u64], ty: u32, offset: u64) {
    put_str(b, name.as_bytes());
    b.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
}

fn pad(b: &mut Vec<u8>, a: usize, extra: usize) {
    b.resize(b.len().div_ceil(a) * a + extra, 0);
}

fn err(b: &[u8]) -> GgufError {
    Gguf::parse(b).expect_err("must be rejected")
}

#[test]
fn rejects_each_malformation_with_its_own_error() {
    assert_eq!(
        err(b"GGU"),
        GgufError::Truncated {
            offset: 0,
            needed: 4
        }
    );
    assert_eq!(err(b"GGML\x03\0\0\0"), GgufError::BadMagic(*b"GGML"));
    let mut v2 = header(0, 0);
    v2[4] = 2;
    assert_eq!(err(&v2), GgufError::UnsupportedVersion(2));

    // Counts that cannot fit in the file.
    assert!(matches!(
        err(&header(0, u64::MAX)),
        GgufError::CountTooLarge {
            what: "metadata",
            ..
        }
    ));
    assert!(matches!(
        err(&header(1 << 40, 0)),
        GgufError::CountTooLarge { what: "tensor", .. }
    ));

    // A string longer than the file.
    let mut b = header(0, 1);
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    assert_eq!(
        err(&b),
        GgufError::Truncated {
            offset: 32,
            needed: usize::MAX
        }
    );

    // Unknown value type.
    let mut b = header(0, 1);
    put_str(&mut b, b"k");
    b.extend_from_slice(&13u32.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    assert_eq!(
        err(&b),
        GgufError::UnknownValueType {
            offset: b.len() - 12,
            code: 13
        }
    );

    // Invalid UTF-8 key.
    let mut b = header(0, 1);
    put_str(&mut b, b"\xff\xfe");
    b.extend_from_slice(&0u32.to_le_bytes());
    b.push(0);
    assert_eq!(err(&b), GgufError::InvalidUtf8 { offset: 32 });

    // Array count beyond the file, and arrays nested too deep.
    let mut b = header(0, 1);
    put_str(&mut b, b"arr");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(
        err(&b),
        GgufError::CountTooLarge {
            what: "array element",
            ..
        }
    ));
    let mut b = header(0, 1);
    put_str(&mut b, b"deep");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..8 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    b.extend_from_slice(&[0; 64]);
    assert!(matches!(err(&b), GgufError::ArrayTooDeep { .. }));

    // Duplicate key.
    let b = GgufWriter::new().kv_u32("a", 1).kv_u32("a", 2).finish();
    assert_eq!(err(&b), GgufError::DuplicateKey { index: 1 });

    // Alignment: zero, not a power of two, wrong type.
    for a in [0u32, 3, 48, 1 << 20] {
        let b = GgufWriter::new().kv_u32("general.alignment", a).finish();
        assert_eq!(err(&b), GgufError::BadAlignment(a));
    }
    let b = GgufWriter::new().kv_u64("general.alignment", 32).finish();
    assert_eq!(err(&b), GgufError::AlignmentWrongType);

    // Tensor infos.
    let one = |name: &str, ne: &[u64], ty: u32, offset: u64, data: usize| {
        let mut b = header(1, 0);
        tensor_info(&mut b, name, ne, ty, offset);
        pad(&mut b, 32, data);
        b
    };
    assert_eq!(
        err(&one("", &[4], 0, 0, 16)),
        GgufError::BadTensorName { tensor: 0, len: 0 }
    );
    assert_eq!(
        err(&one(&"x".repeat(65), &[4], 0, 0, 16)),
        GgufError::BadTensorName { tensor: 0, len: 65 }
    );
    assert_eq!(
        err(&one("t", &[1, 1, 1, 1, 1], 0, 0, 16)),
        GgufError::BadDims {
            tensor: 0,
            n_dims: 5
        }
    );
    assert_eq!(
        err(&one("t", &[], 0, 0, 16)),
        GgufError::BadDims {
            tensor: 0,
            n_dims: 0
        }
    );
    assert_eq!(
        err(&one("t", &[4, 0], 0, 0, 16)),
        GgufError::BadShape { tensor: 0 }
    );
    assert_eq!(
        err(&one("t", &[1 << 32, 1 << 32], 0, 0, 16)),
        GgufError::BadShape { tensor: 0 }
    );
    assert_eq!(
        err(&one("t", &[1 << 62, 2], 0, 0, 16)),
        GgufError::BadShape { tensor: 0 },
        "element count past i64"
    );
    assert_eq!(
        err(&one("t", &[1 << 62], 0, 0, 16)),
        GgufError::BadShape { tensor: 0 },
        "byte size overflows u64"
    );
    assert_eq!(
        err(&one("t", &[4], 99, 0, 16)),
        GgufError::UnknownTensorType {
            tensor: 0,
            code: 99
        }
    );
    assert_eq!(
        err(&one("t", &[48], 8, 0, 64)),
        GgufError::RowNotBlockMultiple {
            tensor: 0,
            ne0: 48,
            block: 32
        }
    );
    assert_eq!(
        err(&one("t", &[4], 0, 8, 64)),
        GgufError::MisalignedOffset {
            tensor: 0,
            offset: 8
        }
    );
    assert_eq!(
        err(&one("t", &[4], 0, 32, 40)),
        GgufError::TensorOutOfBounds {
            tensor: 0,
            offset: 32,
            size: 16,
            data_len: 40
        }
    );
    assert_eq!(
        err(&one("t", &[8], 0, 1 << 63, 40)),
        GgufError::TensorOutOfBounds {
            tensor: 0,
            offset: 1 << 63,
            size: 32,
            data_len: 40
        }
    );
    // Tensor infos end but the data section is missing entirely.
    let mut b = header(1, 0);
    tensor_info(&mut b, "t", &[4], 0, 0);
    assert!(matches!(
        err(&b),
        GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }
    ));

    // Two tensors: duplicate name, overlap.
    let two = |n2: &str, off2: u64| {
        let mut b = header(2, 0);
        tensor_info(&mut b, "a", &[16], 0, 0);
        tensor_info(&mut b, n2, &[16], 0, off2);
        pad(&mut b, 32, 128);
        b
    };
    assert_eq!(err(&two("a", 64)), GgufError::DuplicateTensor { tensor: 1 });
    assert_eq!(
        err(&two("b", 32)),
        GgufError::TensorsOverlap {
            first: 0,
            second: 1
        }
    );
    assert!(Gguf::parse(&two("b", 64)).is_ok());
}

#[test]
fn typed_views_check_memory_alignment() {
    let bytes = sample(None);
    let buf = aligned(&[&[0u8][..], &bytes].concat());
    // The file starts at an odd address: parsing works, typed views refuse.
    let g = Gguf::parse(&as_bytes(&buf, bytes.len() + 1)[1..]).expect("parse");
    assert!(matches!(
        g.tensor("a.f32").unwrap().as_f32(),
        Err(ViewError::Misaligned { align: 4, .. })
    ));
    assert!(matches!(
        g.tensor("c.q8_0").unwrap().as_q8_0(),
        Err(ViewError::Misaligned { align: 2, .. })
    ));
}

#[test]
fn ignoring_general_alignment_reads_the_wrong_bytes() {
    // A file whose header ends where padding to 256 and to 32 differ.
    let bytes = fixture("tied-f32.gguf");
    let buf = aligned(&bytes);
    let bytes = as_bytes(&buf, bytes.len());
    let good = Gguf::parse(bytes).expect("parse");
    assert_eq!(good.alignment, 256);
    let bad = Gguf::parse_with(
        bytes,
        ParseOptions {
            ignore_alignment_key: true,
        },
    );
    match bad {
        Err(_) => {}
        Ok(bad) => {
            assert_ne!(
                bad.data_offset, good.data_offset,
                "fixture must tell the two apart"
            );
            let (a, b) = (
                good.tensor("token_embd.weight").unwrap().data,
                bad.tensor("token_embd.weight").unwrap().data,
            );
            assert_ne!(a, b);
        }
    }
}

/// xorshift64*, so the sweeps are reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Touches everything a parsed file exposes, so lazily decoded parts are exercised too.
fn walk(g: &Gguf<'_>) -> usize {
    let mut n = 0;
    for (_, v) in g.metadata() {
        if let Some(a) = v.as_array() {
            n += a.iter().count();
            for sub in a.iter() {
                if let Some(s) = sub.as_array() {
                    n += s.iter().count();
                }
            }
            let _ = a.get(a.len().saturating_sub(1));
        }
    }
    for t in g.tensors() {
        n += t.data.len();
        let _ = (t.as_f32(), t.as_f16_bits(), t.as_q8_0());
    }
    n
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample(Some(64));
    assert!(Gguf::parse(&bytes).is_ok());
    // Only the zero padding after the last tensor may be cut.
    let last_end = {
        let g = Gguf::parse(&bytes).unwrap();
        g.tensors()
            .iter()
            .map(|t| g.data_offset + t.offset as usize + t.data.len())
            .max()
            .unwrap()
    };
    for len in 0..bytes.len() {
        let r = Gguf::parse(&bytes[..len]);
        if len < last_end {
            assert!(r.is_err(), "prefix of {len} bytes accepted");
        }
    }
    // The real fixture, at a spread of cut points.
    let big = fixture("mha-q8_0.gguf");
    let mut rng = Rng(7);
    for _ in 0..300 {
        let len = (rng.next() % big.len() as u64) as usize;
        assert!(
            Gguf::parse(&big[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn corrupted_files_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = [sample(None), sample(Some(128)), fixture("gqa-q8_0.gguf")];
    let mut accepted = 0usize;
    let mut total = 0usize;
    for seed in &seeds {
        // The interesting bytes are in the header; corrupt mostly there.
        let head = Gguf::parse(seed).unwrap().data_offset;
        for i in 0..3000 {
            let mut b = seed.clone();
            let flips = 1 + (rng.next() % 4) as usize;
            for _ in 0..flips {
                let at = if i % 4 == 0 {
                    (rng.next() % b.len() as u64) as usize
                } else {
                    (rng.next() % head as u64) as usize
                };
                b[at] = match rng.next() % 4 {
                    0 => rng.next() as u8,
                    1 => b[at] ^ (1 << (rng.next() % 8)),
                    2 => 0xff,
                    _ => 0,
                };
            }
            let buf = aligned(&b);
            if let Ok(g) = Gguf::parse(as_bytes(&buf, b.len())) {
                accepted += 1;
                walk(&g);
            }
            total += 1;
        }
    }
    // Many mutations land in string contents or values and stay valid; many do not.
    assert!(accepted > 0 && accepted < total, "{accepted}/{total}");
}

#[test]
fn aligned_buf_keeps_views_working() {
    let bytes = sample(Some(64));
    let b = AlignedBuf::from_slice(&bytes);
    assert_eq!(b.as_bytes(), bytes.as_slice());
    assert_eq!(b.as_bytes().as_ptr() as usize % 8, 0);
    let g = Gguf::parse(b.as_bytes()).unwrap();
    assert!(g.tensor("a.f32").unwrap().as_f32().is_ok());
    let path = std::env::temp_dir().join("oracle-gguf-aligned-buf.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let r = AlignedBuf::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(r.as_bytes(), bytes.as_slice());
    assert!(AlignedBuf::zeroed(0).is_empty());
}
