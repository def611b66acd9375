//! Q8_0 x Q8_0 kernels.
//!
//! The layout is ggml's: a [`BlockQ8_0`] is an fp16 scale `d` followed by 32 int8 values, 34
//! bytes, so GGUF Q8_0 tensor data is used in place. Activations are quantized per 32-block
//! before every product, as llama.cpp does (llm-facts.md sec. 1.2), and each block's int32 dot
//! product is scaled once by `d_w * d_x` and accumulated in f32.
//!
//! # Layouts
//! - Weights: `rows x kb` blocks, row-major, exactly as in a GGUF Q8_0 tensor with
//!   `ne = [kb * 32, rows]` (row `r` is blocks `r*kb .. (r+1)*kb`). No repacking: the weights are
//!   used where they lie, so a layer streamed in by the secure pipeline needs no copy.
//! - Activations: `n x kb` blocks, token-major (token `t` is blocks `t*kb .. (t+1)*kb`), as made by
//!   [`Kernels::quantize`] from `n` contiguous f32 rows of length `kb * 32`.
//! - Outputs: f32, token-major, `y[t * rows + r]`.
//!
//! # Paths
//! [`Kernels::detect`] picks the fastest path the CPU supports for matrix-vector products
//! (decode) and matrix-matrix products (prefill). Every path computes the same int32 dot product
//! for each block pair, bit for bit (tested); they differ only in the order the scaled f32
//! partial sums are added, so f32 outputs agree to within rounding: the tests allow `1e-5` times
//! the sum of the absolute scaled int8 products of an output.
//!
//! | [`Path`] | ISA | where |
//! |---|---|---|
//! | `Scalar` | none | everywhere; the definition |
//! | `Neon` | ARMv8.0 NEON, `smull`/`sadalp` | aarch64 without dotprod |
//! | `Sdot` | ARMv8.2 dotprod, `sdot` via `asm!` | aarch64 with dotprod |
//! | `Smmla` | ARMv8.6 i8mm, `smmla` via `asm!` (prefill only) | aarch64 with i8mm |
//! | `Avx2` | AVX2 + FMA + F16C, `vpmaddwd` on sign-extended int16 | x86-64 |
//! | `Avx512Vnni` | AVX-512 F/BW/VL + VNNI, `vpdpbusd` | x86-64 |
//!
//! On a hosted target (`std`), selection uses the standard library's run-time feature detection.
//! On bare-metal aarch64 (`target_os = "none"`) it reads `ID_AA64ISAR0_EL1` / `ID_AA64ISAR1_EL1`
//! (the secure partition runs at S-EL1, where those reads are allowed).
//!
//! Kernels never panic on bad shapes: every entry point checks its slice lengths and returns a
//! [`KernelError`].

pub mod detect;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_q;
pub mod offload;
#[cfg(feature = "std")]
mod pool;
pub mod qdot;
mod qmat;
pub mod quants;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_q;

use core::fmt;

pub use detect::CpuFeatures;
pub use offload::{MIN_OFFLOAD_TOKENS, MatmulOffload, OffloadError};
pub use qmat::{QActBlock, QActs, QBlock, QWeights, block_sums};

/// Values per Q8_0 block.
pub const QK8_0: usize = 32;

/// ggml's `block_q8_0`: fp16 scale (IEEE half bits) + 32 int8.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// Scale as IEEE fp16 bits.
    pub d: u16,
    pub qs: [i8; QK8_0],
}

const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(core::mem::align_of::<BlockQ8_0>() == 2);

impl BlockQ8_0 {
    pub const ZERO: BlockQ8_0 = BlockQ8_0 {
        d: 0,
        qs: [0; QK8_0],
    };

    /// Size of one block in bytes (ggml's `sizeof(block_q8_0)`).
    pub const BYTES: usize = 34;
}

/// Blocks as the bytes GGUF stores them (fp16 scale, then 32 int8; little-endian targets, as
/// the runtime assumes everywhere), without copying: the inverse of [`blocks_from_bytes`].
pub fn blocks_as_bytes(blocks: &[BlockQ8_0]) -> &[u8] {
    // SAFETY: `BlockQ8_0` is `repr(C)`, 34 bytes without padding (asserted above), so the
    // slice's memory is `len * 34` initialised bytes, borrowed for the same lifetime; u8 has
    // alignment 1.
    unsafe {
        core::slice::from_raw_parts(
            blocks.as_ptr().cast::<u8>(),
            blocks.len() * BlockQ8_0::BYTES,
        )
    }
}

/// Views GGUF Q8_0 tensor bytes as blocks, without copying.
///
/// Fails if the length is not a whole number of 34-byte blocks or the start is not 2-byte
/// aligned (GGUF tensor data is aligned to at least 8 bytes inside the file, so this only fails
/// if the file itself was loaded at an odd address).
pub fn blocks_from_bytes(bytes: &[u8]) -> Result<&[BlockQ8_0], KernelError> {
    if bytes.is_empty() {
        return Ok(&[]);
    }
    if !bytes.len().is_multiple_of(BlockQ8_0::BYTES) {
        return Err(KernelError::BytesNotWholeBlocks { len: bytes.len() });
    }
    if bytes
        .as_ptr()
        .align_offset(core::mem::align_of::<BlockQ8_0>())
        != 0
    {
        return Err(KernelError::BytesMisaligned);
    }
    let n = bytes.len() / BlockQ8_0::BYTES;
    // SAFETY: `BlockQ8_0` is `repr(C)` with a u16 and 32 i8 (no padding: size 34 asserted above),
    // so every byte pattern is a valid value; the pointer is aligned for it (checked above); the
    // slice covers exactly `n * 34` bytes borrowed for the same lifetime.
    Ok(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<BlockQ8_0>(), n) })
}

/// What was wrong with the arguments of a kernel call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// `quantize`: `values` f32 do not fill `blocks` blocks of 32 exactly.
    QuantizeShape { values: usize, blocks: usize },
    /// `matvec`/`matmul`: the block counts do not describe a `rows x kb` weight, an `n x kb`
    /// activation and an `n x rows` output. `kb` is zero when the activation is empty.
    Shape {
        weight_blocks: usize,
        act_blocks: usize,
        out_len: usize,
        tokens: usize,
    },
    /// `blocks_from_bytes` / `quants::blocks_*`: the length is not a multiple of the block size.
    BytesNotWholeBlocks { len: usize },
    /// `blocks_from_bytes`: the data does not start on a 2-byte boundary.
    BytesMisaligned,
    /// `Kernels::with_paths`: this CPU cannot run the requested path.
    Unsupported(Path),
    /// A quantized product was given activations of the wrong format for its weights (Q4_0
    /// takes Q8_0, the K-quants Q8_K).
    ActivationType,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::QuantizeShape { values, blocks } => {
                write!(
                    f,
                    "quantize: {values} values do not fill {blocks} Q8_0 blocks"
                )
            }
            KernelError::Shape {
                weight_blocks,
                act_blocks,
                out_len,
                tokens,
            } => write!(
                f,
                "Q8_0 product shape mismatch: {weight_blocks} weight blocks, {act_blocks} \
                 activation blocks, {out_len} outputs, {tokens} tokens"
            ),
            KernelError::BytesNotWholeBlocks { len } => {
                write!(f, "{len} bytes is not a whole number of blocks")
            }
            KernelError::BytesMisaligned => write!(f, "block data is not 2-byte aligned"),
            KernelError::Unsupported(p) => write!(f, "this CPU cannot run the {p} kernels"),
            KernelError::ActivationType => {
                write!(f, "activation format does not match the weight format")
            }
        }
    }
}

/// One kernel implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    Scalar,
    Neon,
    Sdot,
    Smmla,
    Avx2,
    Avx512Vnni,
}

impl Path {
    pub const ALL: [Path; 6] = [
        Path::Scalar,
        Path::Neon,
        Path::Sdot,
        Path::Smmla,
        Path::Avx2,
        Path::Avx512Vnni,
    ];

    /// Short lower-case name (`scalar`, `neon`, `sdot`, `smmla`, `avx2`, `avx512vnni`).
    pub fn name(self) -> &'static str {
        match self {
            Path::Scalar => "scalar",
            Path::Neon => "neon",
            Path::Sdot => "sdot",
            Path::Smmla => "smmla",
            Path::Avx2 => "avx2",
            Path::Avx512Vnni => "avx512vnni",
        }
    }

    /// Whether this build and CPU can run the path for matvec (`for_matmul == false`) or
    /// matmul.
    pub fn supported(self, cpu: CpuFeatures, for_matmul: bool) -> bool {
        match self {
            Path::Scalar => true,
            Path::Neon => cfg!(target_arch = "aarch64") && cpu.neon,
            Path::Sdot => cfg!(target_arch = "aarch64") && cpu.neon && cpu.dotprod,
            // SMMLA works on 2x2 tiles (prefill only); odd edges use SDOT, hence dotprod.
            Path::Smmla => {
                cfg!(target_arch = "aarch64") && cpu.neon && cpu.dotprod && cpu.i8mm && for_matmul
            }
            Path::Avx2 => cfg!(target_arch = "x86_64") && cpu.avx2,
            Path::Avx512Vnni => cfg!(target_arch = "x86_64") && cpu.avx512vnni,
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel dispatcher: which path runs matvec and matmul, and (with `std`) how many threads.
///
/// Cheap to clone (the thread pool is shared).
#[derive(Clone)]
pub struct Kernels {
    matvec: Path,
    matmul: Path,
    #[cfg(feature = "std")]
    pool: Option<alloc::sync::Arc<pool::Pool>>,
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels")
            .field("matvec", &self.matvec)
            .field("matmul", &self.matmul)
            .field("threads", &self.threads())
            .finish()
    }
}

impl Kernels {
    /// The best paths for this CPU, single-threaded.
    pub fn detect() -> Kernels {
        Kernels::for_cpu(CpuFeatures::detect())
    }

    /// The best paths using only features that are both in `cpu` and on the running CPU (so a
    /// caller can restrict the choice, e.g. to benchmark a lower ISA level, but never enable an
    /// instruction the CPU lacks).
    pub fn for_cpu(cpu: CpuFeatures) -> Kernels {
        let cpu = cpu.intersect(CpuFeatures::detect());
        let pick = |prefs: &[Path], mm: bool| {
            prefs
                .iter()
                .copied()
                .find(|p| p.supported(cpu, mm))
                .unwrap_or(Path::Scalar)
        };
        let mv = [Path::Avx512Vnni, Path::Avx2, Path::Sdot, Path::Neon];
        let mm = [
            Path::Avx512Vnni,
            Path::Avx2,
            Path::Smmla,
            Path::Sdot,
            Path::Neon,
        ];
        Kernels {
            matvec: pick(&mv, false),
            matmul: pick(&mm, true),
            #[cfg(feature = "std")]
            pool: None,
        }
    }

    /// The scalar reference paths.
    pub fn scalar() -> Kernels {
        Kernels {
            matvec: Path::Scalar,
            matmul: Path::Scalar,
            #[cfg(feature = "std")]
            pool: None,
        }
    }

    /// Explicit paths; fails if this CPU (as detected) cannot run one of them.
    pub fn with_paths(matvec: Path, matmul: Path) -> Result<Kernels, KernelError> {
        let cpu = CpuFeatures::detect();
        if !matvec.supported(cpu, false) {
            return Err(KernelError::Unsupported(matvec));
        }
        if !matmul.supported(cpu, true) {
            return Err(KernelError::Unsupported(matmul));
        }
        Ok(Kernels {
            matvec,
            matmul,
            #[cfg(feature = "std")]
            pool: None,
        })
    }

    /// Every path this CPU can run, for matvec (`for_matmul == false`) or matmul.
    pub fn available(for_matmul: bool) -> impl Iterator<Item = Path> {
        let cpu = CpuFeatures::detect();
        Path::ALL
            .into_iter()
            .filter(move |p| p.supported(cpu, for_matmul))
    }

    /// Runs products on `n` threads (the caller's plus `n - 1` workers); `n <= 1` means
    /// single-threaded.
    #[cfg(feature = "std")]
    pub fn with_threads(mut self, n: usize) -> Kernels {
        self.pool = if n > 1 {
            Some(alloc::sync::Arc::new(pool::Pool::new(n)))
        } else {
            None
        };
        self
    }

    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(p) = &self.pool {
            return p.threads();
        }
        1
    }

    pub fn matvec_path(&self) -> Path {
        self.matvec
    }

    pub fn matmul_path(&self) -> Path {
        self.matmul
    }

    /// The distinct paths in use, sorted, comma-separated (e.g. `sdot,smmla`, `neon`,
    /// `avx512vnni`).
    pub fn describe(&self) -> alloc::string::String {
        let mut v = alloc::vec![self.matvec, self.matmul];
        v.sort();
        v.dedup();
        let names: alloc::vec::Vec<&str> = v.into_iter().map(Path::name).collect();
        names.join(",")
    }

    /// Quantizes f32 values to Q8_0, byte-exact with ggml's `quantize_row_q8_0_ref` and gguf-py
    /// (round half away from zero). `x.len()` must be `out.len() * 32`; several token rows may be
    /// quantized in one call since each row is a whole number of blocks.
    pub fn quantize(&self, x: &[f32], out: &mut [BlockQ8_0]) -> Result<(), KernelError> {
        if out.len().checked_mul(QK8_0) != Some(x.len()) {
            return Err(KernelError::QuantizeShape {
                values: x.len(),
                blocks: out.len(),
            });
        }
        scalar::quantize_row_q8_0(x, out);
        Ok(())
    }

    /// Matrix-vector product (decode): `y[r] = sum_b dot(w[r*kb + b], x[b]) * d_w * d_x` with
    /// `kb = x.len()` and `rows = y.len()`; needs `w.len() == rows * kb`.
    pub fn matvec(
        &self,
        w: &[BlockQ8_0],
        x: &[BlockQ8_0],
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        check_shape(w, x, y, 1)?;
        let kb = x.len();
        if kb == 0 {
            y.fill(0.0);
            return Ok(());
        }
        let path = self.matvec;
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            let rows = y.len();
            let chunks = RowChunks::new(rows, pool.threads());
            let shared = SharedOut(OutMat::new(y, rows));
            pool.run(&|_| {
                while let Some(r) = chunks.next() {
                    // SAFETY: `RowChunks::next` hands out each (disjoint) range only once.
                    let mut part = unsafe { shared.claim(r) };
                    let r = part.cols();
                    matvec_rows(path, &w[r.start * kb..r.end * kb], x, part.row_mut(0));
                }
            });
            return Ok(());
        }
        matvec_rows(path, w, x, y);
        Ok(())
    }

    /// Matrix-matrix product (prefill) over `n` tokens: `y[t*rows + r] = sum_b dot(w[r*kb + b],
    /// x[t*kb + b]) * d_w * d_x`, with `x.len() == n * kb`, `y.len() == n * rows`,
    /// `w.len() == rows * kb`.
    pub fn matmul(
        &self,
        w: &[BlockQ8_0],
        x: &[BlockQ8_0],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        check_shape(w, x, y, n)?;
        if n == 0 {
            return Ok(());
        }
        let kb = x.len() / n;
        let rows = y.len() / n;
        if kb == 0 {
            y.fill(0.0);
            return Ok(());
        }
        let path = self.matmul;
        let out = OutMat::new(y, rows);
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            let chunks = RowChunks::new(rows, pool.threads());
            let shared = SharedOut(out);
            pool.run(&|_| {
                while let Some(r) = chunks.next() {
                    // SAFETY: `RowChunks::next` hands out each (disjoint) range only once.
                    let mut part = unsafe { shared.claim(r) };
                    let r = part.cols();
                    matmul_rows(path, &w[r.start * kb..r.end * kb], kb, x, n, &mut part);
                }
            });
            return Ok(());
        }
        let mut out = out;
        matmul_rows(path, w, kb, x, n, &mut out);
        Ok(())
    }
}

/// The work of [`Kernels::for_each_chunk`]: `(chunk index, chunk, this thread's scratch)`.
pub type ChunkFn<'a> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 'a;

impl Kernels {
    /// Calls `f(i, chunk, scratch)` for every `chunk` of `data.chunks_mut(chunk_len)` (`i` is
    /// its index), spread over the threads when `parallel` is set and there is a pool. Each
    /// running thread gets its own `scratch`: part `p` of `scratch` cut into [`Kernels::threads`]
    /// equal parts. Model code uses it for the per-token and per-head work around the products
    /// (attention, activations).
    pub fn for_each_chunk(
        &self,
        parallel: bool,
        data: &mut [f32],
        chunk_len: usize,
        scratch: &mut [f32],
        f: &ChunkFn<'_>,
    ) {
        let chunk_len = chunk_len.max(1);
        let per = scratch.len() / self.threads();
        #[cfg(feature = "std")]
        if let (Some(pool), true) = (&self.pool, parallel) {
            let count = data.len().div_ceil(chunk_len);
            let next = core::sync::atomic::AtomicUsize::new(0);
            let items = SharedOut(OutMat::new(data, data.len()));
            let scratches = SharedOut(OutMat::new(scratch, scratch.len()));
            pool.run(&|p| {
                // SAFETY: the pool never runs the same participant index `p` twice at once, so
                // the scratch parts (disjoint for distinct `p`) are never shared.
                let mut sc = unsafe { scratches.claim(p * per..(p + 1) * per) };
                loop {
                    let i = next.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let r = i * chunk_len..((i + 1) * chunk_len).min(items.0.len);
                    // SAFETY: each chunk index is claimed exactly once, and chunks are disjoint.
                    let mut part = unsafe { items.claim(r) };
                    f(i, part.row_mut(0), sc.row_mut(0));
                }
            });
            return;
        }
        let _ = parallel;
        let sc = &mut scratch[..per];
        for (i, chunk) in data.chunks_mut(chunk_len).enumerate() {
            f(i, chunk, sc);
        }
    }
}

fn check_shape(w: &[BlockQ8_0], x: &[BlockQ8_0], y: &[f32], n: usize) -> Result<(), KernelError> {
    shape_of(w.len(), x.len(), y.len(), n).map(|_| ())
}

/// The matmul shape rule for every weight type, in blocks: `x` is `n` tokens of `kb` blocks,
/// `y` is `n` tokens of `rows` outputs, `w` is `rows * kb` blocks. Returns `(kb, rows)`
/// (`(0, 0)` for `n == 0` with empty `x` and `y`).
pub(crate) fn shape_of(
    w_blocks: usize,
    x_blocks: usize,
    y_len: usize,
    n: usize,
) -> Result<(usize, usize), KernelError> {
    let err = KernelError::Shape {
        weight_blocks: w_blocks,
        act_blocks: x_blocks,
        out_len: y_len,
        tokens: n,
    };
    if n == 0 {
        return if x_blocks == 0 && y_len == 0 {
            Ok((0, 0))
        } else {
            Err(err)
        };
    }
    if !x_blocks.is_multiple_of(n) || !y_len.is_multiple_of(n) {
        return Err(err);
    }
    let (kb, rows) = (x_blocks / n, y_len / n);
    if rows.checked_mul(kb) != Some(w_blocks) {
        return Err(err);
    }
    Ok((kb, rows))
}

/// `rows` cut into contiguous ranges that threads claim one at a time, so a thread that falls
/// behind (or is not scheduled) leaves its share to the others. Every range but the last is a
/// multiple of 8 rows (the SIMD tiles are 4 or 8 rows; edge rows then fall where they would
/// single-threaded, so results do not depend on the split). About 8 ranges per thread, each at
/// most 256 rows, balance the load at one atomic add per range.
#[cfg(feature = "std")]
struct RowChunks {
    rows: usize,
    len: usize,
    next: core::sync::atomic::AtomicUsize,
}

#[cfg(feature = "std")]
impl RowChunks {
    fn new(rows: usize, threads: usize) -> RowChunks {
        let len = (rows.div_ceil(threads.max(1) * 8).next_multiple_of(8)).clamp(8, 256);
        RowChunks {
            rows,
            len,
            next: core::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The next unclaimed range, each exactly once across all threads.
    fn next(&self) -> Option<core::ops::Range<usize>> {
        let i = self
            .next
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let s = i.checked_mul(self.len).filter(|&s| s < self.rows)?;
        Some(s..(s + self.len).min(self.rows))
    }
}

/// Dispatches one contiguous block of rows (`y.len()` of them) to a matvec path.
fn matvec_rows(path: Path, w: &[BlockQ8_0], x: &[BlockQ8_0], y: &mut [f32]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => drive_matvec::<x86::Avx2>(w, x, y),
        #[cfg(target_arch = "x86_64")]
        Path::Avx512Vnni => drive_matvec::<x86::Vnni>(w, x, y),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => drive_matvec::<neon::Neon>(w, x, y),
        #[cfg(target_arch = "aarch64")]
        Path::Sdot | Path::Smmla => drive_matvec::<neon::Sdot>(w, x, y),
        _ => scalar::matvec_q8_0(w, x, y),
    }
}

/// [`drive`] for one token, writing straight into `y` (4-row tiles, then single rows).
fn drive_matvec<K: Tiles>(w: &[BlockQ8_0], x: &[BlockQ8_0], y: &mut [f32]) {
    let kb = x.len();
    if kb == 0 || w.len() != y.len() * kb {
        return;
    }
    let mut ys = y.chunks_exact_mut(4);
    let mut ws = w.chunks_exact(4 * kb);
    for (yt, wt) in (&mut ys).zip(&mut ws) {
        let o = K::tile::<4, 1>(wt, kb, x);
        for (yv, ov) in yt.iter_mut().zip(o) {
            *yv = ov[0];
        }
    }
    for (yv, wr) in ys
        .into_remainder()
        .iter_mut()
        .zip(ws.remainder().chunks_exact(kb))
    {
        *yv = K::tile::<1, 1>(wr, kb, x)[0][0];
    }
}

/// Dispatches one contiguous block of rows (`out.cols()`) of a matmul to a path.
fn matmul_rows(
    path: Path,
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
    n: usize,
    out: &mut OutMat<'_>,
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => drive::<x86::Avx2, 4, 2>(w, kb, x, n, out),
        #[cfg(target_arch = "x86_64")]
        Path::Avx512Vnni => drive::<x86::Vnni, 8, 4>(w, kb, x, n, out),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => drive::<neon::Neon, 4, 2>(w, kb, x, n, out),
        #[cfg(target_arch = "aarch64")]
        Path::Sdot => drive::<neon::Sdot, 4, 2>(w, kb, x, n, out),
        #[cfg(target_arch = "aarch64")]
        Path::Smmla => drive::<neon::Smmla, 4, 2>(w, kb, x, n, out),
        _ => scalar::matmul_rows(w, kb, x, n, out),
    }
}

/// A kernel family that computes `R x T` output tiles.
pub(crate) trait Tiles {
    /// `o[r][t] = sum_b dot(w[r*kb + b], x[t*kb + b]) * d_w * d_x` for `R` weight rows
    /// (`w.len() >= R*kb`) and `T` tokens (`x.len() >= T*kb`). Implementations check the
    /// lengths and return zeros if they are short.
    fn tile<const R: usize, const T: usize>(
        w: &[BlockQ8_0],
        kb: usize,
        x: &[BlockQ8_0],
    ) -> [[f32; T]; R];
}

/// Walks `n` tokens x `out.cols().len()` rows in `R x T` tiles, with `4 x T`, `1 x T`, `R x 1`,
/// `4 x 1` and `1 x 1` tiles for the edges.
///
/// Rows are the outer loop: one tile of weight rows (a few KiB) stays in L1 while every token
/// passes over it, so each weight is read from memory once per product; the activations
/// (`n * kb` blocks) are the part that is re-read, and they fit in L2.
fn drive<K: Tiles, const R: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
    n: usize,
    out: &mut OutMat<'_>,
) {
    let rows = out.cols().len();
    if kb == 0 || w.len() < rows * kb || x.len() < n * kb {
        return;
    }
    let mut r0 = 0;
    while r0 + R <= rows {
        drive_rows::<K, R, T>(&w[r0 * kb..(r0 + R) * kb], kb, x, n, out, r0);
        r0 += R;
    }
    // 4-row tiles compute each row exactly as the wider tiles do, so results do not depend on
    // how rows were split between threads (split points are multiples of 4).
    while R > 4 && r0 + 4 <= rows {
        drive_rows::<K, 4, T>(&w[r0 * kb..(r0 + 4) * kb], kb, x, n, out, r0);
        r0 += 4;
    }
    while r0 < rows {
        drive_rows::<K, 1, T>(&w[r0 * kb..(r0 + 1) * kb], kb, x, n, out, r0);
        r0 += 1;
    }
}

/// All `n` tokens against the `R` weight rows `w` (local output columns `r0..r0 + R`): `R x T`
/// tiles, then `R x 1` for the last `n % T` tokens.
#[inline]
fn drive_rows<K: Tiles, const R: usize, const T: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[BlockQ8_0],
    n: usize,
    out: &mut OutMat<'_>,
    r0: usize,
) {
    let mut t0 = 0;
    while t0 + T <= n {
        let o = K::tile::<R, T>(w, kb, &x[t0 * kb..(t0 + T) * kb]);
        for (r, or) in o.iter().enumerate() {
            for (t, &v) in or.iter().enumerate() {
                out.put(t0 + t, r0 + r, v);
            }
        }
        t0 += T;
    }
    while t0 < n {
        let o = K::tile::<R, 1>(w, kb, &x[t0 * kb..(t0 + 1) * kb]);
        for (r, or) in o.iter().enumerate() {
            out.put(t0, r0 + r, or[0]);
        }
        t0 += 1;
    }
}

/// Write access to a range of columns (weight rows) of a token-major `n x ld` f32 output,
/// `y[t * ld + c]`. Threads each own a disjoint column range of the same output, which slices
/// cannot express; this wrapper keeps the one raw pointer write behind a bounds check.
pub(crate) struct OutMat<'a> {
    ptr: *mut f32,
    len: usize,
    ld: usize,
    cols: core::ops::Range<usize>,
    _borrow: core::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: an `OutMat` is a unique borrow of its column range of `y` (constructed from `&mut` or
// claimed as disjoint ranges), so sending it to another thread is like sending `&mut [f32]`.
unsafe impl Send for OutMat<'_> {}

impl<'a> OutMat<'a> {
    pub(crate) fn new(y: &'a mut [f32], ld: usize) -> OutMat<'a> {
        OutMat {
            ptr: y.as_mut_ptr(),
            len: y.len(),
            ld,
            cols: 0..ld,
            _borrow: core::marker::PhantomData,
        }
    }

    /// The global column range this part may write.
    pub(crate) fn cols(&self) -> core::ops::Range<usize> {
        self.cols.clone()
    }

    /// Writes `v` at token `t`, local column `c` (relative to `cols().start`). Out-of-range
    /// writes are dropped (kernels only write inside their tile; this keeps a bug from becoming
    /// memory corruption).
    #[inline(always)]
    pub(crate) fn put(&mut self, t: usize, c: usize, v: f32) {
        let col = self.cols.start + c;
        if col >= self.cols.end {
            debug_assert!(false, "OutMat column {col} outside {:?}", self.cols);
            return;
        }
        let idx = t * self.ld + col;
        if idx < self.len {
            // SAFETY: `idx < len` keeps the write inside the borrowed slice, and `col` lies in
            // this part's column range, which no other live part shares (see `SharedOut::claim`).
            unsafe { *self.ptr.add(idx) = v };
        } else {
            debug_assert!(false, "OutMat index {idx} outside {}", self.len);
        }
    }

    /// The local columns of token `t` as a slice (used for matvec, where `n == 1`).
    #[cfg(feature = "std")]
    fn row_mut(&mut self, t: usize) -> &mut [f32] {
        let start = t * self.ld + self.cols.start;
        let end = t * self.ld + self.cols.end;
        if end > self.len || start > end {
            return &mut [];
        }
        // SAFETY: `start..end` is inside the borrowed slice (checked) and inside this part's
        // column range, which no other live part shares; `&mut self` keeps it unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), end - start) }
    }
}

/// An output shared by the threads of one product; each thread claims its own column range.
#[cfg(feature = "std")]
struct SharedOut<'a>(OutMat<'a>);

// SAFETY: threads only reach the data through `claim`, whose contract keeps their column ranges
// disjoint, so sharing the wrapper is like handing out disjoint `&mut` sub-slices.
#[cfg(feature = "std")]
unsafe impl Sync for SharedOut<'_> {}

#[cfg(feature = "std")]
impl<'a> SharedOut<'a> {
    /// # Safety
    /// No two `OutMat`s claimed from this `SharedOut` and alive at the same time may have
    /// overlapping column ranges.
    unsafe fn claim(&self, cols: core::ops::Range<usize>) -> OutMat<'_> {
        let end = cols.end.min(self.0.cols.end);
        let start = cols.start.clamp(self.0.cols.start, end);
        OutMat {
            ptr: self.0.ptr,
            len: self.0.len,
            ld: self.0.ld,
            cols: start..end,
            _borrow: core::marker::PhantomData,
        }
    }
}
