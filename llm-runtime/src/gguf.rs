//! GGUF v3 reader over a byte slice, zero-copy.
//!
//! Layout (llm-facts.md sec. 1.4; ggml `docs/gguf.md`), all little-endian: magic `GGUF`, `u32`
//! version, `u64` tensor count, `u64` KV count, the KV pairs, the tensor infos, zero padding to
//! the alignment (`general.alignment`, default 32), then the tensor data blob. Tensor offsets are
//! relative to the blob and multiples of the alignment; `ne[0]` is the row length.
//!
//! The file is untrusted (it may come from the normal world): every count, length, offset and
//! type is checked with overflow-safe arithmetic before use, and each way a file can be wrong has
//! its own [`GgufError`] variant. Nothing here panics on any input.

use alloc::vec::Vec;
use core::fmt;

use crate::kernels::quants::{BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K};
use crate::kernels::{BlockQ8_0, QK8_0};

/// `"GGUF"` as it appears in the first four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The only version this reader accepts.
pub const VERSION: u32 = 3;
/// Alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// The metadata key that overrides [`DEFAULT_ALIGNMENT`].
pub const KEY_ALIGNMENT: &str = "general.alignment";
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// ggml's `GGML_MAX_NAME` (tensor names longer than this are rejected, as llama.cpp does).
pub const MAX_TENSOR_NAME: usize = 64;
/// Nesting limit for array values (arrays of arrays ...), to bound recursion.
pub const MAX_ARRAY_DEPTH: u32 = 4;
/// Largest alignment accepted; a hostile value cannot make padding arithmetic absurd.
pub const MAX_ALIGNMENT: u32 = 1 << 16;

// Tensor data views reinterpret little-endian bytes in place.
const _: () = assert!(cfg!(target_endian = "little"));

/// Everything that can be wrong with a GGUF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufError {
    /// The file ends before a field starting at `offset` that needs `needed` bytes.
    Truncated { offset: usize, needed: usize },
    /// The first four bytes are not `GGUF`.
    BadMagic([u8; 4]),
    /// A version other than 3 (v1/v2 used 32-bit counts or are obsolete).
    UnsupportedVersion(u32),
    /// A count (tensors, KVs, array elements) cannot fit in the remaining bytes.
    CountTooLarge {
        what: &'static str,
        offset: usize,
        count: u64,
    },
    /// A string at `offset` is not UTF-8.
    InvalidUtf8 { offset: usize },
    /// An unknown metadata value type code.
    UnknownValueType { offset: usize, code: u32 },
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`].
    ArrayTooDeep { offset: usize },
    /// Two metadata entries with the same key (KV index of the second).
    DuplicateKey { index: usize },
    /// `general.alignment` is not a `u32`.
    AlignmentWrongType,
    /// `general.alignment` is zero, not a power of two, or above [`MAX_ALIGNMENT`].
    BadAlignment(u32),
    /// A tensor name is empty or longer than [`MAX_TENSOR_NAME`].
    BadTensorName { tensor: usize, len: u64 },
    /// Two tensors with the same name (index of the second).
    DuplicateTensor { tensor: usize },
    /// `n_dims` is 0 or above [`MAX_DIMS`].
    BadDims { tensor: usize, n_dims: u32 },
    /// The element count of a tensor overflows, or a dimension is zero.
    BadShape { tensor: usize },
    /// A ggml type code this reader cannot size.
    UnknownTensorType { tensor: usize, code: u32 },
    /// A block-quantized tensor whose row length is not a multiple of the block size.
    RowNotBlockMultiple { tensor: usize, ne0: u64, block: u64 },
    /// A tensor offset that is not a multiple of the alignment.
    MisalignedOffset { tensor: usize, offset: u64 },
    /// A tensor's bytes reach past the end of the file.
    TensorOutOfBounds {
        tensor: usize,
        offset: u64,
        size: u64,
        data_len: usize,
    },
    /// Two tensors' byte ranges overlap.
    TensorsOverlap { first: usize, second: usize },
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgufError::*;
        match *self {
            Truncated { offset, needed } => {
                write!(
                    f,
                    "file truncated: {needed} bytes needed at offset {offset}"
                )
            }
            BadMagic(m) => write!(f, "not a GGUF file (magic {m:02x?})"),
            UnsupportedVersion(v) => write!(f, "GGUF version {v} unsupported (need 3)"),
            CountTooLarge {
                what,
                offset,
                count,
            } => write!(
                f,
                "{what} count {count} at offset {offset} exceeds the file"
            ),
            InvalidUtf8 { offset } => write!(f, "string at offset {offset} is not UTF-8"),
            UnknownValueType { offset, code } => {
                write!(f, "unknown metadata value type {code} at offset {offset}")
            }
            ArrayTooDeep { offset } => write!(f, "arrays nested too deep at offset {offset}"),
            DuplicateKey { index } => write!(f, "metadata key #{index} is a duplicate"),
            AlignmentWrongType => write!(f, "general.alignment is not a u32"),
            BadAlignment(a) => write!(f, "general.alignment {a} is not a power of two <= 65536"),
            BadTensorName { tensor, len } => {
                write!(f, "tensor #{tensor}: name length {len} not in 1..=64")
            }
            DuplicateTensor { tensor } => write!(f, "tensor #{tensor}: duplicate name"),
            BadDims { tensor, n_dims } => {
                write!(f, "tensor #{tensor}: n_dims {n_dims} not in 1..=4")
            }
            BadShape { tensor } => write!(f, "tensor #{tensor}: zero or overflowing shape"),
            UnknownTensorType { tensor, code } => {
                write!(f, "tensor #{tensor}: unknown ggml type {code}")
            }
            RowNotBlockMultiple { tensor, ne0, block } => write!(
                f,
                "tensor #{tensor}: row length {ne0} not a multiple of block size {block}"
            ),
            MisalignedOffset { tensor, offset } => {
                write!(f, "tensor #{tensor}: offset {offset} not aligned")
            }
            TensorOutOfBounds {
                tensor,
                offset,
                size,
                data_len,
            } => write!(
                f,
                "tensor #{tensor}: {size} bytes at data offset {offset} exceed the {data_len}-byte data section"
            ),
            TensorsOverlap { first, second } => {
                write!(f, "tensors #{first} and #{second} overlap")
            }
        }
    }
}

/// Metadata value type codes (`gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    fn from_code(code: u32) -> Option<Self> {
        use ValueType::*;
        Some(match code {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size of a fixed-size value; `None` for strings and arrays.
    fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// A metadata value. Strings and arrays borrow from the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(&'a str),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value as an unsigned integer if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as f32 if it is a float (f64 is narrowed).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<Array<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }
}

/// An array value: its element type, count and the (already validated) encoded elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Array<'a> {
    elem: ValueType,
    len: usize,
    /// Encoded elements, exactly `len` of them (validated at parse time).
    raw: &'a [u8],
    /// File offset of `raw`, for error messages.
    base: usize,
}

impl<'a> Array<'a> {
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in order. Each was validated when the file was parsed, so the iterator
    /// yields exactly `len()` values.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cur: Cursor {
                buf: self.raw,
                pos: 0,
                base: self.base,
            },
            elem: self.elem,
            left: self.len,
        }
    }

    /// Element `i` of a fixed-size array in O(1); `None` if out of range or variable-size.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        let size = self.elem.fixed_size()?;
        if i >= self.len {
            return None;
        }
        let start = i.checked_mul(size)?;
        let mut cur = Cursor {
            buf: self.raw.get(start..start.checked_add(size)?)?,
            pos: 0,
            base: self.base + start,
        };
        read_value(&mut cur, self.elem, 0).ok()
    }
}

/// Iterator over an [`Array`].
pub struct ArrayIter<'a> {
    cur: Cursor<'a>,
    elem: ValueType,
    left: usize,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        read_value(&mut self.cur, self.elem, 0).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// ggml tensor types: codes and block geometry (`ggml_type_traits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q8_0,
    /// Any other type ggml defines, sized so the file parses. Q4_0 (2), Q4_K (12), Q5_K (13)
    /// and Q6_K (14) have block views ([`TensorInfo::as_q4_0`] ...) the model uses; the rest it
    /// rejects.
    Other {
        code: u32,
        block: u32,
        block_bytes: u32,
    },
}

impl TensorType {
    /// Type for a ggml code, or `None` if it is unknown.
    pub fn from_code(code: u32) -> Option<Self> {
        let (block, block_bytes) = match code {
            0 => return Some(TensorType::F32),
            1 => return Some(TensorType::F16),
            8 => return Some(TensorType::Q8_0),
            2 => (32, 18),    // Q4_0
            3 => (32, 20),    // Q4_1
            6 => (32, 22),    // Q5_0
            7 => (32, 24),    // Q5_1
            9 => (32, 36),    // Q8_1
            10 => (256, 84),  // Q2_K
            11 => (256, 110), // Q3_K
            12 => (256, 144), // Q4_K
            13 => (256, 176), // Q5_K
            14 => (256, 210), // Q6_K
            15 => (256, 292), // Q8_K
            24 => (1, 1),     // I8
            25 => (1, 2),     // I16
            26 => (1, 4),     // I32
            27 => (1, 8),     // I64
            28 => (1, 8),     // F64
            30 => (1, 2),     // BF16
            _ => return None,
        };
        Some(TensorType::Other {
            code,
            block,
            block_bytes,
        })
    }

    pub fn code(&self) -> u32 {
        match *self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q8_0 => 8,
            TensorType::Other { code, .. } => code,
        }
    }

    /// Elements per block.
    pub fn block(&self) -> u64 {
        match *self {
            TensorType::F32 | TensorType::F16 => 1,
            TensorType::Q8_0 => QK8_0 as u64,
            TensorType::Other { block, .. } => block.into(),
        }
    }

    /// Bytes per block.
    pub fn block_bytes(&self) -> u64 {
        match *self {
            TensorType::F32 => 4,
            TensorType::F16 => 2,
            TensorType::Q8_0 => core::mem::size_of::<BlockQ8_0>() as u64,
            TensorType::Other { block_bytes, .. } => block_bytes.into(),
        }
    }
}

/// One tensor: name, shape (`ne[0]` = row length), type, and its bytes inside the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorInfo<'a> {
    pub name: &'a str,
    /// Dimensions, `ne[0]` fastest; unused trailing entries are 1.
    pub ne: [u64; MAX_DIMS as usize],
    pub n_dims: u32,
    pub ty: TensorType,
    /// Offset relative to the data section, as stored.
    pub offset: u64,
    /// The tensor's bytes (bounds already checked).
    pub data: &'a [u8],
}

impl<'a> TensorInfo<'a> {
    /// Total element count (validated not to overflow at parse time).
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Row length and number of rows, treating dims 1.. as rows.
    pub fn rows_cols(&self) -> (u64, u64) {
        (self.ne[1] * self.ne[2] * self.ne[3], self.ne[0])
    }

    /// The data as f32s, if this is an F32 tensor.
    pub fn as_f32(&self) -> Result<&'a [f32], ViewError> {
        self.expect(TensorType::F32)?;
        cast_slice(self.data)
    }

    /// The data as raw fp16 bits, if this is an F16 tensor.
    pub fn as_f16_bits(&self) -> Result<&'a [u16], ViewError> {
        self.expect(TensorType::F16)?;
        cast_slice(self.data)
    }

    /// The data as Q8_0 blocks, if this is a Q8_0 tensor.
    pub fn as_q8_0(&self) -> Result<&'a [BlockQ8_0], ViewError> {
        self.expect(TensorType::Q8_0)?;
        cast_slice(self.data)
    }

    /// The data as Q4_0 blocks (in place), if this is a Q4_0 tensor.
    pub fn as_q4_0(&self) -> Result<&'a [BlockQ4_0], ViewError> {
        self.expect_code(2)?;
        cast_slice(self.data)
    }

    /// The data as Q4_K blocks (in place), if this is a Q4_K tensor.
    pub fn as_q4_k(&self) -> Result<&'a [BlockQ4K], ViewError> {
        self.expect_code(12)?;
        cast_slice(self.data)
    }

    /// The data as Q5_K blocks (in place), if this is a Q5_K tensor.
    pub fn as_q5_k(&self) -> Result<&'a [BlockQ5K], ViewError> {
        self.expect_code(13)?;
        cast_slice(self.data)
    }

    /// The data as Q6_K blocks (in place), if this is a Q6_K tensor.
    pub fn as_q6_k(&self) -> Result<&'a [BlockQ6K], ViewError> {
        self.expect_code(14)?;
        cast_slice(self.data)
    }

    fn expect_code(&self, code: u32) -> Result<(), ViewError> {
        if self.ty.code() == code {
            Ok(())
        } else {
            Err(ViewError::WrongType {
                expected: code,
                found: self.ty.code(),
            })
        }
    }

    fn expect(&self, ty: TensorType) -> Result<(), ViewError> {
        if self.ty == ty {
            Ok(())
        } else {
            Err(ViewError::WrongType {
                expected: ty.code(),
                found: self.ty.code(),
            })
        }
    }
}

/// Why a typed view of tensor bytes could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewError {
    /// The tensor has another ggml type.
    WrongType { expected: u32, found: u32 },
    /// The bytes are not aligned for the element type in memory (the file's base address or
    /// its alignment is too small).
    Misaligned { addr: usize, align: usize },
    /// The byte length is not a multiple of the element size.
    BadLength { len: usize, elem: usize },
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ViewError::WrongType { expected, found } => {
                write!(f, "tensor has ggml type {found}, expected {expected}")
            }
            ViewError::Misaligned { addr, align } => {
                write!(
                    f,
                    "tensor data at {addr:#x} not {align}-byte aligned in memory"
                )
            }
            ViewError::BadLength { len, elem } => {
                write!(f, "tensor data length {len} not a multiple of {elem}")
            }
        }
    }
}

/// Plain-old-data element types a tensor view may have.
///
/// # Safety
/// Implementors must have no padding and no invalid bit patterns, so any initialized bytes of
/// the right length and alignment are a valid value.
unsafe trait Plain: Sized {}
// SAFETY: f32 and u16 accept every bit pattern and have no padding.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: BlockQ8_0 is repr(C) { u16, [i8; 32] }: 34 bytes, no padding (size asserted in
// kernels), and every bit pattern of its fields is valid.
unsafe impl Plain for BlockQ8_0 {}
// SAFETY: the sub-8-bit weight blocks are repr(C) structs of u16 and byte arrays with no padding
// (sizes 18, 144, 176, 210 asserted in `kernels::quants`); every bit pattern is valid.
unsafe impl Plain for BlockQ4_0 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ4K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ5K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ6K {}

/// Reinterprets bytes as a slice of `T` after checking alignment and length.
fn cast_slice<T: Plain>(bytes: &[u8]) -> Result<&[T], ViewError> {
    let size = core::mem::size_of::<T>();
    let align = core::mem::align_of::<T>();
    let addr = bytes.as_ptr() as usize;
    if !addr.is_multiple_of(align) {
        return Err(ViewError::Misaligned { addr, align });
    }
    if !bytes.len().is_multiple_of(size) {
        return Err(ViewError::BadLength {
            len: bytes.len(),
            elem: size,
        });
    }
    // SAFETY: the pointer is aligned for T (checked), the region holds exactly
    // `len / size` whole T values within `bytes` (checked), T accepts any bit pattern
    // (`Plain`), and the returned slice borrows `bytes` so the memory outlives it and is not
    // mutated meanwhile.
    Ok(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Parse options. The defaults follow the spec; the switches exist so tests can show that a
/// reader which gets these wrong fails the oracle.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseOptions {
    /// Test-only: ignore `general.alignment` and always use 32 (a classic reader bug).
    pub ignore_alignment_key: bool,
}

/// A parsed GGUF file borrowing the bytes it was read from.
#[derive(Clone, Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub alignment: u32,
    /// File offset of the tensor data section.
    pub data_offset: usize,
    kvs: Vec<(&'a str, Value<'a>)>,
    tensors: Vec<TensorInfo<'a>>,
}

impl<'a> Gguf<'a> {
    /// Parses and validates `bytes` with the default options.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        Self::parse_with(bytes, ParseOptions::default())
    }

    pub fn parse_with(bytes: &'a [u8], opts: ParseOptions) -> Result<Self, GgufError> {
        let mut cur = Cursor {
            buf: bytes,
            pos: 0,
            base: 0,
        };
        let magic: [u8; 4] = cur.array()?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = cur.u32()?;
        if version != VERSION {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors_at = cur.pos;
        let n_tensors = cur.u64()?;
        let n_kv_at = cur.pos;
        let n_kv = cur.u64()?;

        // Smallest KV: key length u64 + type u32 + 1-byte value = 13 bytes.
        let n_kv = cur.count_fits("metadata", n_kv_at, n_kv, 13)?;
        let mut kvs: Vec<(&'a str, Value<'a>)> = Vec::with_capacity(n_kv);
        for index in 0..n_kv {
            let key = cur.string()?;
            let ty_at = cur.pos;
            let code = cur.u32()?;
            let ty = ValueType::from_code(code).ok_or(GgufError::UnknownValueType {
                offset: ty_at,
                code,
            })?;
            let value = read_value(&mut cur, ty, 0)?;
            if kvs.iter().any(|(k, _)| *k == key) {
                return Err(GgufError::DuplicateKey { index });
            }
            kvs.push((key, value));
        }

        let alignment = match kvs.iter().find(|(k, _)| *k == KEY_ALIGNMENT) {
            _ if opts.ignore_alignment_key => DEFAULT_ALIGNMENT,
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) => {
                if *a == 0 || !a.is_power_of_two() || *a > MAX_ALIGNMENT {
                    return Err(GgufError::BadAlignment(*a));
                }
                *a
            }
            Some(_) => return Err(GgufError::AlignmentWrongType),
        };

        // Smallest tensor info: name u64 + n_dims u32 + one ne u64 + type u32 + offset u64.
        let n_tensors = cur.count_fits("tensor", n_tensors_at, n_tensors, 32)?;
        struct Raw<'a> {
            name: &'a str,
            ne: [u64; MAX_DIMS as usize],
            n_dims: u32,
            ty: TensorType,
            offset: u64,
            size: u64,
        }
        let mut raws: Vec<Raw<'a>> = Vec::with_capacity(n_tensors);
        for tensor in 0..n_tensors {
            let name = cur.string()?;
            if name.is_empty() || name.len() > MAX_TENSOR_NAME {
                return Err(GgufError::BadTensorName {
                    tensor,
                    len: name.len() as u64,
                });
            }
            let n_dims = cur.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::BadDims { tensor, n_dims });
            }
            let mut ne = [1u64; MAX_DIMS as usize];
            for d in ne.iter_mut().take(n_dims as usize) {
                *d = cur.u64()?;
            }
            let code = cur.u32()?;
            let ty =
                TensorType::from_code(code).ok_or(GgufError::UnknownTensorType { tensor, code })?;
            let offset = cur.u64()?;

            let n_el = ne
                .iter()
                .try_fold(
                    1u64,
                    |acc, &d| if d == 0 { None } else { acc.checked_mul(d) },
                )
                .ok_or(GgufError::BadShape { tensor })?;
            // Also keep the element count within i64, as ggml does.
            if n_el > i64::MAX as u64 {
                return Err(GgufError::BadShape { tensor });
            }
            if ne[0] % ty.block() != 0 {
                return Err(GgufError::RowNotBlockMultiple {
                    tensor,
                    ne0: ne[0],
                    block: ty.block(),
                });
            }
            let size = (n_el / ty.block())
                .checked_mul(ty.block_bytes())
                .ok_or(GgufError::BadShape { tensor })?;
            if offset % u64::from(alignment) != 0 {
                return Err(GgufError::MisalignedOffset { tensor, offset });
            }
            if raws.iter().any(|r| r.name == name) {
                return Err(GgufError::DuplicateTensor { tensor });
            }
            raws.push(Raw {
                name,
                ne,
                n_dims,
                ty,
                offset,
                size,
            });
        }

        // Padding to the alignment, then the data section.
        let data_offset = align_up(cur.pos, alignment as usize).ok_or(GgufError::Truncated {
            offset: cur.pos,
            needed: alignment as usize,
        })?;
        let data: &'a [u8] = if raws.is_empty() {
            bytes.get(data_offset..).unwrap_or(&[])
        } else {
            bytes.get(data_offset..).ok_or(GgufError::Truncated {
                offset: cur.pos,
                needed: data_offset - cur.pos,
            })?
        };

        let mut tensors = Vec::with_capacity(raws.len());
        for (tensor, r) in raws.iter().enumerate() {
            let oob = GgufError::TensorOutOfBounds {
                tensor,
                offset: r.offset,
                size: r.size,
                data_len: data.len(),
            };
            let start = usize::try_from(r.offset).map_err(|_| oob)?;
            let len = usize::try_from(r.size).map_err(|_| oob)?;
            let end = start.checked_add(len).ok_or(oob)?;
            let slice = data.get(start..end).ok_or(oob)?;
            tensors.push(TensorInfo {
                name: r.name,
                ne: r.ne,
                n_dims: r.n_dims,
                ty: r.ty,
                offset: r.offset,
                data: slice,
            });
        }

        // Overlap check over tensors sorted by offset.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_unstable_by_key(|&i| tensors[i].offset);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            // Both ranges are in bounds, so the end cannot overflow.
            if a.offset + a.data.len() as u64 > b.offset {
                let (first, second) = (w[0].min(w[1]), w[0].max(w[1]));
                return Err(GgufError::TensorsOverlap { first, second });
            }
        }

        Ok(Gguf {
            version,
            alignment,
            data_offset,
            kvs,
            tensors,
        })
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> &[(&'a str, Value<'a>)] {
        &self.kvs
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.kvs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

fn align_up(x: usize, a: usize) -> Option<usize> {
    // `a` is a nonzero power of two.
    Some(x.checked_add(a - 1)? & !(a - 1))
}

/// A bounds-checked little-endian reader. `base` is the file offset of `buf[0]`.
#[derive(Clone, Copy, Debug)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let err = GgufError::Truncated {
            offset: self.base + self.pos,
            needed: n,
        };
        let end = self.pos.checked_add(n).ok_or(err)?;
        let s = self.buf.get(self.pos..end).ok_or(err)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what is left, so
    /// a hostile count cannot drive a huge allocation or a long loop.
    fn count_fits(
        &self,
        what: &'static str,
        offset: usize,
        count: u64,
        min_size: usize,
    ) -> Result<usize, GgufError> {
        let err = GgufError::CountTooLarge {
            what,
            offset: self.base + offset,
            count,
        };
        let n = usize::try_from(count).map_err(|_| err)?;
        if n > self.remaining() / min_size.max(1) {
            return Err(err);
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<&'a str, GgufError> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| GgufError::Truncated {
            offset: self.base + self.pos,
            needed: usize::MAX,
        })?;
        let at = self.base + self.pos;
        let s = self.take(len)?;
        core::str::from_utf8(s).map_err(|_| GgufError::InvalidUtf8 { offset: at })
    }
}

fn read_value<'a>(cur: &mut Cursor<'a>, ty: ValueType, depth: u32) -> Result<Value<'a>, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(cur.array()?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array()?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array()?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array()?)),
        ValueType::U32 => Value::U32(cur.u32()?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array()?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array()?)),
        // Any nonzero byte is true, as gguf-py and llama.cpp read it.
        ValueType::Bool => Value::Bool(cur.array::<1>()?[0] != 0),
        ValueType::String => Value::String(cur.string()?),
        ValueType::U64 => Value::U64(cur.u64()?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array()?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array()?)),
        ValueType::Array => {
            let at = cur.base + cur.pos;
            if depth >= MAX_ARRAY_DEPTH {
                return Err(GgufError::ArrayTooDeep { offset: at });
            }
            let code = cur.u32()?;
            let elem = ValueType::from_code(code)
                .ok_or(GgufError::UnknownValueType { offset: at, code })?;
            let count_at = cur.pos;
            let count = cur.u64()?;
            // Every element takes at least one byte (strings and arrays take more).
            let min = elem.fixed_size().unwrap_or(8);
            let len = cur.count_fits("array element", count_at, count, min)?;
            let start = cur.pos;
            match elem.fixed_size() {
                Some(size) => {
                    // `count_fits` guarantees len * size <= remaining.
                    cur.take(len * size)?;
                }
                None => {
                    for _ in 0..len {
                        read_value(cur, elem, depth + 1)?;
                    }
                }
            }
            Value::Array(Array {
                elem,
                len,
                raw: cur.buf.get(start..cur.pos).unwrap_or(&[]),
                base: cur.base + start,
            })
        }
    })
}

/// Owned file bytes at 8-byte alignment, so typed tensor views ([`TensorInfo::as_f32`],
/// [`TensorInfo::as_q8_0`]) always work. A `Vec<u8>` only promises 1-byte alignment.
#[derive(Clone, Debug, Default)]
pub struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf {
            words: alloc::vec![0u64; len.div_ceil(8)],
            len,
        }
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.as_bytes_mut().copy_from_slice(bytes);
        b
    }

    /// Reads a whole file.
    #[cfg(feature = "std")]
    pub fn read(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let len = usize::try_from(f.metadata()?.len()).map_err(std::io::Error::other)?;
        let mut b = Self::zeroed(len);
        f.read_exact(b.as_bytes_mut())?;
        Ok(b)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `words` holds `len.div_ceil(8) * 8 >= len` initialized bytes; u8 has
        // alignment 1 and accepts any value; the slice borrows `self`.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_bytes`, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}
