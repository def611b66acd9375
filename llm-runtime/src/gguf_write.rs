//! A minimal GGUF v3 writer, for tests and tools that build files in memory (the reader's
//! round-trip and corruption tests, synthetic models). It writes the same layout as gguf-py's
//! `GGUFWriter`: header, KVs, tensor infos, padding, tensors each padded to the alignment.

use alloc::string::String;
use alloc::vec::Vec;

use crate::gguf::{DEFAULT_ALIGNMENT, KEY_ALIGNMENT, MAGIC, VERSION, ValueType};

/// Builds a GGUF file in memory.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    kv_bytes: Vec<u8>,
    n_kv: u64,
    tensors: Vec<PendingTensor>,
    alignment: u32,
}

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    ne: Vec<u64>,
    code: u32,
    data: Vec<u8>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            kv_bytes: Vec::new(),
            n_kv: 0,
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Sets a non-default alignment and records it as `general.alignment`. `a` must be a
    /// power of two (the reader rejects anything else).
    pub fn alignment(&mut self, a: u32) -> &mut Self {
        self.alignment = a.max(1);
        self.kv_u32(KEY_ALIGNMENT, a)
    }

    /// A KV whose value bytes (after the type code) are given raw.
    pub fn kv_raw(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
        put_str(&mut self.kv_bytes, key);
        self.kv_bytes.extend_from_slice(&ty.to_le_bytes());
        self.kv_bytes.extend_from_slice(value);
        self.n_kv += 1;
        self
    }

    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.kv_raw(key, ValueType::U32 as u32, &v.to_le_bytes())
    }

    pub fn kv_u64(&mut self, key: &str, v: u64) -> &mut Self {
        self.kv_raw(key, ValueType::U64 as u32, &v.to_le_bytes())
    }

    pub fn kv_i32(&mut self, key: &str, v: i32) -> &mut Self {
        self.kv_raw(key, ValueType::I32 as u32, &v.to_le_bytes())
    }

    pub fn kv_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.kv_raw(key, ValueType::F32 as u32, &v.to_le_bytes())
    }

    pub fn kv_bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.kv_raw(key, ValueType::Bool as u32, &[u8::from(v)])
    }

    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        let mut b = Vec::new();
        put_str(&mut b, v);
        self.kv_raw(key, ValueType::String as u32, &b)
    }

    pub fn kv_str_array(&mut self, key: &str, v: &[&str]) -> &mut Self {
        let mut b = array_header(ValueType::String, v.len());
        for s in v {
            put_str(&mut b, s);
        }
        self.kv_raw(key, ValueType::Array as u32, &b)
    }

    pub fn kv_f32_array(&mut self, key: &str, v: &[f32]) -> &mut Self {
        let mut b = array_header(ValueType::F32, v.len());
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
        self.kv_raw(key, ValueType::Array as u32, &b)
    }

    pub fn kv_i32_array(&mut self, key: &str, v: &[i32]) -> &mut Self {
        let mut b = array_header(ValueType::I32, v.len());
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
        self.kv_raw(key, ValueType::Array as u32, &b)
    }

    /// A tensor with dims `ne` (`ne[0]` = row length), ggml type `code` and its encoded bytes.
    pub fn tensor(&mut self, name: &str, ne: &[u64], code: u32, data: &[u8]) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            ne: ne.to_vec(),
            code,
            data: data.to_vec(),
        });
        self
    }

    /// An F32 tensor.
    pub fn tensor_f32(&mut self, name: &str, ne: &[u64], data: &[f32]) -> &mut Self {
        let mut b = Vec::with_capacity(data.len() * 4);
        for x in data {
            b.extend_from_slice(&x.to_le_bytes());
        }
        self.tensor(name, ne, 0, &b)
    }

    /// The finished file.
    pub fn finish(&self) -> Vec<u8> {
        let a = self.alignment as usize;
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.kv_bytes);
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.code.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += pad_to(t.data.len(), a) as u64;
        }
        out.resize(pad_to(out.len(), a), 0);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(pad_to(out.len(), a), 0);
        }
        out
    }
}

fn pad_to(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn array_header(elem: ValueType, n: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(elem as u32).to_le_bytes());
    b.extend_from_slice(&(n as u64).to_le_bytes());
    b
}
