//! Reading the architecture fixtures (`fixtures/arch`, `scripts/arch_fixtures.py`) and
//! running a model over the oracle prompts, shared by `oracle_arch.rs` and
//! `oracle_gemma_phi3.rs`.

#![allow(dead_code)]

use llm_runtime::gguf::{AlignedBuf, Gguf, Value};
use llm_runtime::gguf_write::GgufWriter;
use llm_runtime::kernels::Kernels;
use llm_runtime::model::{Config, Model, ModelError, ModelOptions, Quirks, Weights};

pub fn read(name: &str) -> Vec<u8> {
    let p = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e} (run scripts/arch_fixtures.py)"))
}

pub fn f32s(name: &str) -> Vec<f32> {
    read(name)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn prompts() -> Vec<Vec<u32>> {
    let b = read("oracle/tokens.bin");
    let u = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    let mut at = 1;
    (0..u(0))
        .map(|_| {
            let n = u(at) as usize;
            let ids = (0..n).map(|j| u(at + 1 + j)).collect();
            at += 1 + n;
            ids
        })
        .collect()
}

/// Logits of every prompt position, prompts concatenated; prefill or one token at a time.
pub fn run(file: &[u8], quirks: Quirks, k: &Kernels, decode: bool) -> Result<Vec<f32>, ModelError> {
    let buf = AlignedBuf::from_slice(file);
    let g = Gguf::parse(buf.as_bytes()).expect("parse");
    let mut cfg = Config::from_gguf(&g)?;
    cfg.quirks = quirks;
    let w = Weights::from_gguf(&g, &cfg)?;
    let ps = prompts();
    let opts = ModelOptions {
        seq_len: cfg.context_length,
        max_batch: ps.iter().map(Vec::len).max().unwrap(),
        all_logits: true,
    };
    let mut m = Model::new(cfg, opts, k.clone())?;
    let mut out = Vec::new();
    for ids in &ps {
        m.reset();
        if decode {
            for (pos, &t) in ids.iter().enumerate() {
                out.extend_from_slice(m.forward(&w, t, pos)?);
            }
        } else {
            out.extend_from_slice(m.prefill(&w, ids, 0)?);
        }
    }
    Ok(out)
}

pub fn kernel_paths() -> [(&'static str, Kernels); 3] {
    [
        ("scalar", Kernels::scalar()),
        ("detected", Kernels::detect()),
        ("detected, 2 threads", Kernels::detect().with_threads(2)),
    ]
}

/// Writes one metadata value (the types the fixtures use; arrays are dropped).
fn put(wr: &mut GgufWriter, k: &str, v: Value<'_>) {
    match v {
        Value::U32(x) => {
            wr.kv_u32(k, x);
        }
        Value::F32(x) => {
            wr.kv_f32(k, x);
        }
        Value::String(s) => {
            wr.kv_str(k, s);
        }
        Value::Bool(b) => {
            wr.kv_bool(k, b);
        }
        _ => {}
    }
}

/// A copy of `file` with metadata `key` replaced (or removed, for `None`) and tensors
/// satisfying `drop` left out.
pub fn rewrite(
    file: &[u8],
    key: &str,
    val: Option<Value<'_>>,
    drop: &dyn Fn(&str) -> bool,
) -> Vec<u8> {
    let buf = AlignedBuf::from_slice(file);
    let g = Gguf::parse(buf.as_bytes()).unwrap();
    let mut wr = GgufWriter::new();
    for &(k, v) in g.metadata() {
        if k != key {
            put(&mut wr, k, v);
        }
    }
    if let Some(v) = val {
        put(&mut wr, key, v);
    }
    for t in g.tensors().iter().filter(|t| !drop(t.name)) {
        wr.tensor(t.name, &t.ne[..t.n_dims as usize], t.ty.code(), t.data);
    }
    wr.finish()
}

/// A copy of `file` with one more tensor (`name`, F32, `ne`, the bytes of `data`).
pub fn with_tensor(file: &[u8], name: &str, ne: &[u64], data: &[f32]) -> Vec<u8> {
    let buf = AlignedBuf::from_slice(file);
    let g = Gguf::parse(buf.as_bytes()).unwrap();
    let mut wr = GgufWriter::new();
    for &(k, v) in g.metadata() {
        put(&mut wr, k, v);
    }
    for t in g.tensors() {
        wr.tensor(t.name, &t.ne[..t.n_dims as usize], t.ty.code(), t.data);
    }
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    wr.tensor(name, ne, 0, &bytes);
    wr.finish()
}

/// Config and weights of a file, or the first error.
pub fn config_of(file: &[u8]) -> Result<Config, ModelError> {
    let buf = AlignedBuf::from_slice(file);
    let g = Gguf::parse(buf.as_bytes()).unwrap();
    let cfg = Config::from_gguf(&g)?;
    Weights::from_gguf(&g, &cfg)?;
    Ok(cfg)
}

/// A copy of `file` with metadata `key` (replaced if present) of GGUF type `ty` and raw value
/// bytes `value` (for arrays, which [`rewrite`] does not write).
pub fn with_kv_raw(file: &[u8], key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
    let buf = AlignedBuf::from_slice(file);
    let g = Gguf::parse(buf.as_bytes()).unwrap();
    let mut wr = GgufWriter::new();
    for &(k, v) in g.metadata() {
        if k != key {
            put(&mut wr, k, v);
        }
    }
    wr.kv_raw(key, ty, value);
    for t in g.tensors() {
        wr.tensor(t.name, &t.ne[..t.n_dims as usize], t.ty.code(), t.data);
    }
    wr.finish()
}

/// llama.cpp's token ids for the texts of `bin` (`scripts/arch_fixtures.py`'s format: count,
/// then per text its UTF-8 bytes and one id list per model, in `models` order), checked
/// against this runtime's tokenizer of each `arch/{model}-f32.gguf`. Returns each text's id
/// lists, for the caller to check that the models tell texts apart.
pub fn token_parity(bin: &str, models: &[&str]) -> Vec<Vec<Vec<u32>>> {
    use llm_runtime::tokenizer::Tokenizer;
    let b = read(bin);
    let u = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let toks: Vec<(&str, Tokenizer)> = models
        .iter()
        .map(|n| {
            let buf = AlignedBuf::from_slice(&read(&format!("arch/{n}-f32.gguf")));
            let g = Gguf::parse(buf.as_bytes()).unwrap();
            (*n, Tokenizer::from_gguf(&g).unwrap())
        })
        .collect();
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..u(0) {
        let len = u(at);
        let text = std::str::from_utf8(&b[at + 4..at + 4 + len]).unwrap();
        at += 4 + len;
        let mut per = Vec::new();
        for (name, tok) in &toks {
            let n = u(at);
            let want: Vec<u32> = (0..n).map(|j| u(at + 4 + 4 * j) as u32).collect();
            at += 4 + 4 * n;
            assert_eq!(tok.encode(text, false, false), want, "{name}: {text:?}");
            per.push(want);
        }
        out.push(per);
    }
    out
}
