//! Serving a model to the normal world (DESIGN.md sec. 8): `ModelLoad`, `Generate`,
//! `ModelUnload`.
//!
//! - Load: the SP retrieves the memory transaction that holds the GGUF file. It must be a LEND
//!   or DONATE (the owner loses access, so the bytes are stable and no longer readable by the
//!   normal world); a SHARE is refused. The region is pinned and the file parsed in place by
//!   `llm-runtime`'s hostile-safe reader; the run state (KV cache for the file's context
//!   length, activations) and the tokenizer go on the SP heap, after an estimate has shown
//!   they fit. Any failure gives the memory back at once (unpin, unmap, relinquish).
//! - Generate: the SP retrieves the SHARE'd I/O buffer, copies the prompt *in* before looking
//!   at it (UTF-8, length), tokenizes, runs `llm_runtime::generate` (the loop the client's
//!   reference run uses too), writes token ids and text *out*, and relinquishes the buffer.
//!   Timing uses the physical counter.
//! - Unload: drops every view of the file, unpins and relinquishes it.
//!
//! Every normal-world input ends in a protocol error, never a panic.

use crate::flexmem::FlexMem;
use crate::service::Memory;
use alloc::{vec, vec::Vec};
use core::ops::ControlFlow;
use ffa::{PartitionId, memory::TransactionType};
use flexserve_proto::{
    GenerateArgs, GenerateResult, IoFault, ModelFault, ModelInfo, PromptFault, ProtoError,
    StopReason, io, kernel_path,
};
use llm_runtime::{
    generate::{Generator, StopReason as GenStop, TextOutput},
    gguf::{Gguf, Value},
    kernels::{Kernels, Path, QK8_0},
    model::{Config, Model, ModelError, ModelOptions, Weights},
    sampler::{Sampler, SamplerConfig},
    tokenizer::Tokenizer,
};

use crate::shmem::PinError;

/// Most tensors and metadata entries the SP indexes (bounds the parser's tables on the heap).
pub const MAX_TENSORS: u64 = 4096;
pub const MAX_METADATA: u64 = 1024;
/// Heap kept free beyond the model's estimate (prompt copies, output, page tables).
pub const HEAP_RESERVE: usize = 512 * 1024;
/// Output text the SP keeps at most (a hostile vocabulary's long tokens cannot grow it further).
pub const MAX_OUTPUT_TEXT: usize = 256 * 1024;

/// What serving needs from the machine.
#[derive(Clone, Copy, Debug)]
pub struct Hooks {
    /// The physical counter (CNTPCT_EL0) and its frequency (CNTFRQ_EL0).
    pub now: fn() -> u64,
    pub counter_hz: fn() -> u64,
    /// Free heap bytes.
    pub heap_free: fn() -> usize,
}

/// A loaded model. Field order matters: the views into the pinned file (`weights`) are dropped
/// before the struct is gone, and `Serving::unload` unpins only after dropping it.
pub(crate) struct Loaded {
    weights: Weights<'static>,
    tok: Tokenizer,
    model: Model,
    pub(crate) region: u32,
    pub(crate) info: ModelInfo,
    pub(crate) origin: Origin,
}

/// Where a loaded model's bytes came from, and so how they go back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A plaintext GGUF the normal world lent (test builds): given back as it was.
    Plain,
    /// Decrypted from a sealed package into lent pages: scrubbed before they go back
    /// (by Flex-Mem if `secured`).
    Sealed {
        model_id: [u8; 32],
        package_version: u64,
        header_hash: [u8; 32],
        secured: bool,
    },
}

/// The serving engine's state: at most one model.
pub struct Serving {
    pub(crate) hooks: Hooks,
    pub(crate) loaded: Option<Loaded>,
    pub(crate) device: Option<crate::sealed::Device>,
}

impl core::fmt::Debug for Serving {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Serving")
            .field("loaded", &self.loaded.as_ref().map(|l| l.info))
            .finish()
    }
}

fn path_code(p: Path) -> u8 {
    match p {
        Path::Scalar => kernel_path::SCALAR,
        Path::Neon => kernel_path::NEON,
        Path::Sdot => kernel_path::SDOT,
        Path::Smmla => kernel_path::SMMLA,
        Path::Avx2 => kernel_path::AVX2,
        Path::Avx512Vnni => kernel_path::AVX512VNNI,
    }
}

fn bad_model(what: &str, e: &dyn core::fmt::Display, fault: ModelFault) -> ProtoError {
    log::warn!("model refused: {what}: {e}");
    ProtoError::BadModel(fault)
}

/// Heap bytes `Model::new` allocates for `cfg` and `opts`, each buffer rounded up to a power of
/// two (the buddy allocator's block sizes). Saturates instead of overflowing.
pub fn run_state_bytes(cfg: &Config, opts: &ModelOptions) -> usize {
    let b = opts.max_batch;
    let (kv, qd) = (cfg.kv_dim(), cfg.q_dim());
    let half = cfg.rope_dim / 2;
    let tables = cfg.rope_tables();
    let f = |n: usize| {
        n.saturating_mul(4)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
    };
    let logit_rows = if opts.all_logits { b } else { 1 };
    let cache = cfg.n_layers.saturating_mul(opts.seq_len).saturating_mul(kv);
    let widest = cfg.dim.max(cfg.hidden_dim).max(qd);
    let xq_blocks = b.saturating_mul(widest.div_ceil(QK8_0));
    [
        // x, xb: [B, dim]; q, xb2: [B, n_heads * head_dim].
        f(b.saturating_mul(cfg.dim)).saturating_mul(2),
        f(b.saturating_mul(qd)).saturating_mul(2),
        f(b.saturating_mul(kv)).saturating_mul(2),
        f(b.saturating_mul(cfg.hidden_dim)).saturating_mul(2),
        f(opts.seq_len),
        xq_blocks
            .saturating_mul(34)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX),
        f(logit_rows.saturating_mul(cfg.vocab_size)),
        f(cache).saturating_mul(2),
        f(tables.saturating_mul(half)),
        f(tables.saturating_mul(b).saturating_mul(half)).saturating_mul(2),
    ]
    .iter()
    .fold(0usize, |a, &x| a.saturating_add(x))
}

/// A generous estimate of the tokenizer's heap use: per token its record, its text (twice:
/// table and index) and lookup entries; per merge rule its map entry; plus the decoder's
/// transient copy of the longest token.
pub fn tokenizer_bytes(g: &Gguf<'_>) -> usize {
    let strings = |key: &str| match g.get(key).and_then(|v| v.as_array()) {
        Some(a) => {
            let (mut total, mut longest) = (0usize, 0usize);
            for v in a.iter() {
                if let Value::String(s) = v {
                    total = total.saturating_add(s.len());
                    longest = longest.max(s.len());
                }
            }
            (a.len(), total, longest)
        }
        None => (0, 0, 0),
    };
    let (n_tokens, token_text, longest) = strings("tokenizer.ggml.tokens");
    let (n_merges, merge_text, _) = strings("tokenizer.ggml.merges");
    n_tokens
        .saturating_mul(96)
        .saturating_add(token_text.saturating_mul(2))
        .saturating_add(n_merges.saturating_mul(96))
        .saturating_add(merge_text)
        .saturating_add(longest.saturating_mul(4))
        .saturating_add(64 * 1024)
}

/// Heap the parser's tables, the weight views and one generation's sampler take.
fn tables_bytes(g: &Gguf<'_>, cfg: &Config) -> usize {
    let pow2 = |n: usize| n.checked_next_power_of_two().unwrap_or(usize::MAX);
    pow2(g.tensors().len().saturating_mul(128))
        .saturating_add(pow2(g.metadata().len().saturating_mul(64)))
        .saturating_add(pow2(cfg.n_layers.saturating_mul(512)))
        // Sampler candidates: (f32, u32) per vocabulary entry.
        .saturating_add(pow2(cfg.vocab_size.saturating_mul(8)))
}

/// The header's counts, checked before the parser builds tables from them.
fn check_header_counts(bytes: &[u8]) -> Result<(), ProtoError> {
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if let (Some(tensors), Some(kvs)) = (word(8), word(16))
        && (tensors > MAX_TENSORS || kvs > MAX_METADATA)
    {
        log::warn!("model refused: {tensors} tensors, {kvs} metadata entries");
        return Err(ProtoError::BadModel(ModelFault::TooManyEntries));
    }
    Ok(())
}

impl Serving {
    /// Gives the loaded model a device for its offloadable products (`None`: CPU only).
    pub fn set_offload(
        &mut self,
        d: Option<alloc::boxed::Box<dyn llm_runtime::kernels::MatmulOffload + Send>>,
    ) {
        if let Some(l) = self.loaded.as_mut() {
            l.model.set_offload(d);
        }
    }

    pub fn new(hooks: Hooks) -> Self {
        Serving {
            hooks,
            loaded: None,
            device: None,
        }
    }

    pub fn loaded(&self) -> Option<ModelInfo> {
        self.loaded.as_ref().map(|l| l.info)
    }

    /// `ModelLoad`: retrieve `handle` from `sender`, check, parse and build.
    pub fn load(
        &mut self,
        mem: &mut Memory,
        sender: PartitionId,
        handle: u64,
    ) -> Result<ModelInfo, ProtoError> {
        if self.loaded.is_some() {
            return Err(ProtoError::ModelLoaded);
        }
        let region = mem
            .retrieve(sender, handle, TransactionType::Unspecified)?
            .region;
        let pinned = match mem.pin(region) {
            Ok(bytes) => Ok(bytes),
            Err(PinError::NotLent) => Err(ProtoError::BadModel(ModelFault::NotLent)),
            Err(PinError::NotContiguous) => Err(ProtoError::BadModel(ModelFault::NotContiguous)),
            Err(e) => {
                log::error!("pin of fresh region {region}: {e:?}");
                Err(ProtoError::Internal)
            }
        };
        let built = pinned.and_then(|bytes| {
            let r = self.build(bytes, region);
            if r.is_err() {
                // SAFETY: `build` failed, and everything it made from `bytes` was dropped
                // when it returned (the error holds no borrow); `bytes` is not used again.
                unsafe { mem.unpin(region) };
            }
            r
        });
        match built {
            Ok(l) => {
                let info = l.info;
                self.loaded = Some(l);
                Ok(info)
            }
            Err(e) => {
                if let Err(r) = mem.release(region) {
                    log::error!("cannot give back refused model region {region}: {r:?}");
                }
                Err(e)
            }
        }
    }

    pub(crate) fn build(&self, bytes: &'static [u8], region: u32) -> Result<Loaded, ProtoError> {
        check_header_counts(bytes)?;
        let g = Gguf::parse(bytes).map_err(|e| bad_model("GGUF", &e, ModelFault::Gguf))?;
        let cfg = Config::from_gguf(&g).map_err(|e| bad_model("config", &e, ModelFault::Model))?;
        let opts = ModelOptions::for_config(&cfg);
        let need = run_state_bytes(&cfg, &opts)
            .saturating_add(tokenizer_bytes(&g))
            .saturating_add(tables_bytes(&g, &cfg))
            .saturating_add(HEAP_RESERVE);
        let free = (self.hooks.heap_free)();
        if need > free {
            log::warn!(
                "model refused: needs ~{need} heap bytes (context {}), {free} free",
                cfg.context_length
            );
            return Err(ProtoError::NoMemory(need as u64));
        }
        let before = free;
        let tok = Tokenizer::from_gguf(&g)
            .map_err(|e| bad_model("tokenizer", &e, ModelFault::Tokenizer))?;
        if tok.n_tokens() > cfg.vocab_size {
            log::warn!(
                "model refused: {} tokens, embedding has {} rows",
                tok.n_tokens(),
                cfg.vocab_size
            );
            return Err(ProtoError::BadModel(ModelFault::Tokenizer));
        }
        let weights = Weights::from_gguf(&g, &cfg)
            .map_err(|e| bad_model("weights", &e, ModelFault::Model))?;
        let kernels = Kernels::detect();
        let model = Model::new(cfg, opts, kernels.clone()).map_err(|e| match e {
            ModelError::OutOfMemory { bytes } => ProtoError::NoMemory(bytes as u64),
            e => bad_model("run state", &e, ModelFault::Model),
        })?;
        let heap_bytes = before.saturating_sub((self.hooks.heap_free)()) as u64;
        let info = ModelInfo {
            n_layers: cfg.n_layers as u32,
            dim: cfg.dim as u32,
            vocab: cfg.vocab_size as u32,
            context: opts.seq_len as u32,
            matvec_path: path_code(kernels.matvec_path()),
            matmul_path: path_code(kernels.matmul_path()),
            region,
            heap_bytes,
        };
        let mem = model.memory_report(weights.bytes());
        log::info!(
            "model loaded from region {region}: {} layers, dim {}, vocab {}, context {}, {} params; \
             kernels {} (decode {}, prefill {}); weights {} KiB in place, KV cache {} KiB, heap {} KiB",
            cfg.n_layers,
            cfg.dim,
            cfg.vocab_size,
            opts.seq_len,
            cfg.n_params(),
            kernels.describe(),
            kernels.matvec_path(),
            kernels.matmul_path(),
            mem.weights / 1024,
            mem.kv_cache / 1024,
            heap_bytes / 1024
        );
        Ok(Loaded {
            weights,
            tok,
            model,
            region,
            info,
            origin: Origin::Plain,
        })
    }

    /// `ModelUnload`. Decrypted weights are scrubbed before their pages go back.
    pub fn unload(
        &mut self,
        mem: &mut Memory,
        flexmem: Option<&mut FlexMem>,
    ) -> Result<(), ProtoError> {
        let l = self.loaded.take().ok_or(ProtoError::NoModel)?;
        let (region, origin) = (l.region, l.origin);
        drop(l);
        // SAFETY: the only views of the pinned bytes lived in `l` (weights), dropped above.
        unsafe { mem.unpin(region) };
        match origin {
            Origin::Plain => mem.release(region)?,
            Origin::Sealed { secured, .. } => {
                crate::sealed::scrub_and_release(mem, flexmem, region, secured)?
            }
        }
        log::info!("model unloaded, region {region} relinquished");
        Ok(())
    }

    /// `Generate`.
    pub fn generate(
        &mut self,
        mem: &mut Memory,
        sender: PartitionId,
        args: &GenerateArgs,
    ) -> Result<GenerateResult, ProtoError> {
        let l = self.loaded.as_mut().ok_or(ProtoError::NoModel)?;
        if args.prompt_len == 0 {
            return Err(ProtoError::BadPrompt(PromptFault::Empty));
        }
        if args.prompt_len > io::MAX_PROMPT_BYTES {
            return Err(ProtoError::BadPrompt(PromptFault::TooLong));
        }
        // The prompt takes at least one position.
        if args.max_tokens >= l.info.context {
            return Err(ProtoError::ContextFull(l.info.context));
        }
        let io_region = mem
            .retrieve(sender, args.io_handle, TransactionType::Unspecified)?
            .region;
        let r = run(l, &self.hooks, mem, io_region, args);
        let released = mem.release(io_region);
        let out = r?;
        released?;
        Ok(out)
    }
}

fn internal(what: &str, e: &dyn core::fmt::Debug) -> ProtoError {
    log::error!("generate: {what}: {e:?}");
    ProtoError::Internal
}

/// One generation with the I/O buffer `io` retrieved.
fn run(
    l: &mut Loaded,
    hooks: &Hooks,
    mem: &mut Memory,
    io: u32,
    args: &GenerateArgs,
) -> Result<GenerateResult, ProtoError> {
    let r = mem.region(io)?;
    if r.tx_type != TransactionType::Share {
        return Err(ProtoError::BadIoBuffer(IoFault::NotShared));
    }
    if !r.access.writable {
        return Err(ProtoError::BadIoBuffer(IoFault::ReadOnly));
    }
    let io_len = r.len();
    if u64::from(args.prompt_len) > io_len {
        return Err(ProtoError::BadPrompt(PromptFault::TooLong));
    }
    if io::text_offset(args.max_tokens) as u64 > io_len {
        return Err(ProtoError::BadIoBuffer(IoFault::TooSmall));
    }
    // Copy in, then validate the copy: the owner can change the shared buffer at any time.
    let mut prompt = vec![0u8; args.prompt_len as usize];
    mem.read_at(io, 0, &mut prompt)?;
    let text =
        core::str::from_utf8(&prompt).map_err(|_| ProtoError::BadPrompt(PromptFault::NotUtf8))?;
    let ids = l.tok.encode(text, true, false);
    let ctx = l.info.context;
    if ids.is_empty() {
        return Err(ProtoError::BadPrompt(PromptFault::Empty));
    }
    if ids.len() as u64 + u64::from(args.max_tokens) > u64::from(ctx) {
        return Err(ProtoError::ContextFull(ctx));
    }
    let vocab = l.info.vocab as usize;
    let s = args.sampling;
    let mut sampler = Sampler::new(
        SamplerConfig {
            temperature: s.temperature,
            top_k: s.top_k as usize,
            top_p: s.top_p,
            seed: s.seed,
        },
        vocab,
    )
    .map_err(|e| internal("sampler", &e))?;

    let mut generated: Vec<u32> = Vec::with_capacity(args.max_tokens as usize);
    let mut text = TextOutput::continuing(MAX_OUTPUT_TEXT);
    let tok = &l.tok;
    let done = Generator {
        model: &mut l.model,
        weights: &l.weights,
        tokenizer: tok,
    }
    .generate(
        &mut sampler,
        &ids,
        args.max_tokens as usize,
        &hooks.now,
        |id| {
            generated.push(id);
            text.push(tok, id);
            ControlFlow::Continue(())
        },
    )
    .map_err(|e| internal("generation", &e))?;
    let stop = match done.stop {
        GenStop::EndOfGeneration => StopReason::EndOfText,
        GenStop::MaxTokens => StopReason::MaxTokens,
        // Prompt + max_tokens fit the context (checked above) and the callback never stops.
        other => return Err(internal("unexpected stop", &other)),
    };
    let out_text = text.finish();

    // Write out: ids, then as much text as fits, cut at a character boundary.
    let ids_bytes: Vec<u8> = generated.iter().flat_map(|t| t.to_le_bytes()).collect();
    mem.write_at(io, io::IDS_OFFSET as u32, &ids_bytes)?;
    let text_at = io::text_offset(generated.len() as u32);
    let room = (io_len as usize).saturating_sub(text_at);
    let mut cut = out_text.len().min(room);
    while !out_text.is_char_boundary(cut) {
        cut -= 1;
    }
    mem.write_at(io, text_at as u32, &out_text.as_bytes()[..cut])?;
    Ok(GenerateResult {
        prompt_tokens: done.prompt_tokens as u32,
        generated: done.generated as u32,
        text_len: cut as u32,
        stop,
        prefill_ticks: done.prefill_ticks,
        decode_ticks: done.decode_ticks,
        counter_hz: (hooks.counter_hz)(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_runtime::generate::NoClock;
    use llm_runtime::model::ModelOptions;

    fn model_file() -> &'static [u8] {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../llm-runtime/models/fortunes-q8_0.gguf"
        ))
        .unwrap();
        // Leaked: the loaded model's weights borrow it for the rest of the test.
        let buf: &'static llm_runtime::gguf::AlignedBuf = alloc::boxed::Box::leak(
            alloc::boxed::Box::new(llm_runtime::gguf::AlignedBuf::from_slice(&bytes)),
        );
        buf.as_bytes()
    }

    #[test]
    fn run_state_estimate_covers_the_model_buffers() {
        let g = Gguf::parse(model_file()).unwrap();
        let cfg = Config::from_gguf(&g).unwrap();
        for seq_len in [1, 17, 256] {
            let opts = ModelOptions {
                seq_len,
                ..ModelOptions::for_config(&cfg)
            };
            let m = Model::new(cfg, opts, Kernels::scalar()).unwrap();
            let r = m.memory_report(0);
            let est = run_state_bytes(&cfg, &opts);
            assert!(est >= r.kv_cache + r.activations, "{est} < {r:?}");
            // Not absurdly generous either: powers of two at most double each buffer.
            assert!(
                est <= 2 * (r.kv_cache + r.activations) + 4096,
                "{est} vs {r:?}"
            );
        }
        // A hostile context length saturates instead of overflowing.
        let huge = Config {
            context_length: usize::MAX,
            n_layers: usize::MAX,
            ..cfg
        };
        let opts = ModelOptions {
            seq_len: usize::MAX,
            ..ModelOptions::for_config(&cfg)
        };
        assert_eq!(run_state_bytes(&huge, &opts), usize::MAX);
        let t = tokenizer_bytes(&g);
        assert!(t > 1024 * 96 && t < 1 << 20, "{t}");
    }

    #[test]
    fn header_counts_are_bounded() {
        let mut h = [0u8; 24];
        h[..4].copy_from_slice(b"GGUF");
        h[8..16].copy_from_slice(&MAX_TENSORS.to_le_bytes());
        h[16..24].copy_from_slice(&MAX_METADATA.to_le_bytes());
        assert_eq!(check_header_counts(&h), Ok(()));
        h[8..16].copy_from_slice(&(MAX_TENSORS + 1).to_le_bytes());
        assert_eq!(
            check_header_counts(&h),
            Err(ProtoError::BadModel(ModelFault::TooManyEntries))
        );
        h[8..16].copy_from_slice(&1u64.to_le_bytes());
        h[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            check_header_counts(&h),
            Err(ProtoError::BadModel(ModelFault::TooManyEntries))
        );
        // Too short to say: the parser reports it.
        assert_eq!(check_header_counts(&h[..20]), Ok(()));
    }

    #[test]
    fn every_kernel_path_has_a_protocol_code() {
        let codes: Vec<u8> = Path::ALL.iter().map(|&p| path_code(p)).collect();
        for (p, c) in Path::ALL.iter().zip(&codes) {
            assert_eq!(kernel_path::name(*c), p.name());
        }
    }

    /// xorshift64*: fixed seed, so a failure reproduces.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn leak_aligned(bytes: &[u8]) -> &'static [u8] {
        let words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w)
            })
            .collect();
        let words: &'static [u64] = Vec::leak(words);
        // SAFETY: as in `model_file`.
        unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), bytes.len()) }
    }

    /// Corrupted model files (bytes flipped in the header, metadata, tensor table and data;
    /// truncations) are refused with an error or load and run; nothing panics.
    #[test]
    fn corrupted_models_never_panic() {
        let good = model_file();
        let hooks = Hooks {
            now: || 0,
            counter_hz: || 1,
            heap_free: || 8 << 20,
        };
        let serving = Serving::new(hooks);
        let data_start = Gguf::parse(good).unwrap().data_offset;
        let mut st = 0x5eed_0000_0000_0001u64;
        let (mut loaded, mut refused) = (0, 0);
        for i in 0..300 {
            let mut b = good.to_vec();
            let flips = 1 + rng(&mut st) % 8;
            for _ in 0..flips {
                // Mostly the header and tables, where a flip changes structure.
                let span = if i % 4 == 0 { b.len() } else { data_start };
                let at = (rng(&mut st) % span as u64) as usize;
                b[at] = rng(&mut st) as u8;
            }
            if i % 10 == 0 {
                b.truncate((rng(&mut st) % b.len() as u64) as usize);
            }
            match serving.build(leak_aligned(&b), 1) {
                Ok(mut l) => {
                    loaded += 1;
                    let ids = l.tok.encode("A computer", true, false);
                    let vocab = l.info.vocab as usize;
                    let mut sampler = Sampler::new(
                        SamplerConfig {
                            temperature: 0.7,
                            top_k: 10,
                            top_p: 0.9,
                            seed: i,
                        },
                        vocab,
                    )
                    .unwrap();
                    // Errors are fine (a corrupted file may name tokens outside the
                    // embedding); a panic is not.
                    let _ = Generator {
                        model: &mut l.model,
                        weights: &l.weights,
                        tokenizer: &l.tok,
                    }
                    .generate(&mut sampler, &ids, 4, &NoClock, |_| {
                        ControlFlow::Continue(())
                    });
                }
                Err(e) => {
                    refused += 1;
                    assert!(
                        matches!(e, ProtoError::BadModel(_) | ProtoError::NoMemory(_)),
                        "{e:?}"
                    );
                }
            }
        }
        // Both outcomes occur, so the test exercises both paths.
        assert!(
            loaded > 0 && refused > 0,
            "{loaded} loaded, {refused} refused"
        );
    }
}
