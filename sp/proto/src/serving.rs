//! Serving messages: model load faults and info, prompts, sampling, `Generate`'s arguments and
//! results.

/// Why the SP refused a model (`BadModel` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ModelFault {
    /// The memory was SHARE'd: its owner could still read and change it.
    NotLent = 1,
    /// The region's ranges are not one contiguous run of pages.
    NotContiguous = 2,
    /// The GGUF container does not parse.
    Gguf = 3,
    /// Hyperparameters or tensors are missing, inconsistent or unsupported.
    Model = 4,
    /// The vocabulary does not make a tokenizer.
    Tokenizer = 5,
    /// More tensors or metadata entries than the SP indexes.
    TooManyEntries = 6,
}

/// Why the SP refused a prompt (`BadPrompt` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PromptFault {
    Empty = 1,
    /// Longer than the I/O buffer or than [`io::MAX_PROMPT_BYTES`].
    TooLong = 2,
    NotUtf8 = 3,
}

/// Why the SP refused an I/O buffer (`BadIoBuffer` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum IoFault {
    /// Not a SHARE (a lent or donated buffer would hide the output from its owner).
    NotShared = 1,
    /// The SP may not write it.
    ReadOnly = 2,
    /// The token ids of `max_tokens` would not fit.
    TooSmall = 3,
}

/// `ModelLoad` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub n_layers: u32,
    pub dim: u32,
    pub vocab: u32,
    /// Context length (KV-cache positions).
    pub context: u32,
    /// [`kernel_path`] codes for decode (matrix-vector) and prefill (matrix-matrix).
    pub matvec_path: u8,
    pub matmul_path: u8,
    /// The SP's region id of the model's memory (refused by `MemRelease`/`MemFill` while
    /// loaded).
    pub region: u32,
    /// Heap bytes the run state (KV cache, activations) and tokenizer took.
    pub heap_bytes: u64,
}

/// Sampling settings of `Generate`. `temperature == 0` is greedy.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub temperature: f32,
    /// 0 = no limit.
    pub top_k: u32,
    /// In (0, 1]; 1 = no limit.
    pub top_p: f32,
    pub seed: u64,
}

impl Sampling {
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
    };
}

// Compared by bits, so equality is reflexive (decoded values are never NaN anyway).
impl PartialEq for Sampling {
    fn eq(&self, o: &Self) -> bool {
        self.temperature.to_bits() == o.temperature.to_bits()
            && self.top_k == o.top_k
            && self.top_p.to_bits() == o.top_p.to_bits()
            && self.seed == o.seed
    }
}

impl Eq for Sampling {}

/// `Generate` request: `[GENERATE, io handle lo, io handle hi, prompt_len, max_tokens,
/// temperature (f32 bits), top_k, top_p (f32 bits), seed lo, seed hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateArgs {
    pub io_handle: u64,
    pub prompt_len: u32,
    /// New tokens at most (>= 1).
    pub max_tokens: u32,
    pub sampling: Sampling,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StopReason {
    /// `max_tokens` were generated.
    MaxTokens = 1,
    /// The model produced an end-of-generation token (not included in the output).
    EndOfText = 2,
}

/// `Generate` reply: `[OK, prompt tokens, generated, text_len, stop, prefill ticks, decode
/// ticks, counter Hz]`. Ticks are of the SP's physical counter (CNTPCT_EL0) at `counter_hz`
/// (CNTFRQ_EL0); prefill includes sampling the first token (time to first token inside the SP),
/// decode covers the remaining tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateResult {
    pub prompt_tokens: u32,
    pub generated: u32,
    pub text_len: u32,
    pub stop: StopReason,
    pub prefill_ticks: u64,
    pub decode_ticks: u64,
    pub counter_hz: u64,
}
