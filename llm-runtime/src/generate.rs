//! The generation loop every caller shares: prefill the prompt, sample, decode until an
//! end-of-generation token, `max_tokens`, a full context, or the caller says stop.
//!
//! The secure partition, the normal-world client's reference run and the host tools all call
//! [`Generator::generate`], so two runs of the same model, prompt and sampler produce the same
//! token ids by construction. Nothing is allocated: the model's and sampler's buffers are
//! sized when they are made; what the caller keeps per token is up to its callback.
//!
//! Timing is read from a [`Clock`] the caller supplies (the SP's physical counter, the host's
//! `Instant`), so the loop itself stays `no_std`.

use core::fmt;
use core::ops::ControlFlow;

use crate::model::{Model, ModelError, Weights};
use crate::sampler::{Sampler, SamplerError};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use alloc::string::String;

/// A monotonic tick source; only differences of two readings are used (wrapping).
pub trait Clock {
    fn now(&self) -> u64;
}

impl<F: Fn() -> u64> Clock for F {
    fn now(&self) -> u64 {
        self()
    }
}

/// A clock for callers that do not time the run: always 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClock;

impl Clock for NoClock {
    fn now(&self) -> u64 {
        0
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (EOS or another control token); it is
    /// not passed to the callback.
    EndOfGeneration,
    /// `max_tokens` tokens were passed to the callback.
    MaxTokens,
    /// The last token was passed on, but decoding it would need a position past the model's
    /// context (`ModelOptions::seq_len`).
    ContextFull,
    /// The callback returned `ControlFlow::Break` (the token it was given counts as generated).
    Caller,
}

/// What a finished generation reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generated {
    pub prompt_tokens: usize,
    /// Tokens passed to the callback.
    pub generated: usize,
    pub stop: StopReason,
    /// Clock ticks from just before the prefill to just after the first token was sampled
    /// (time to first token).
    pub prefill_ticks: u64,
    /// Clock ticks from then until the loop ended (the remaining tokens, callbacks included).
    pub decode_ticks: u64,
}

/// Why a generation could not run to a stop.
#[derive(Clone, Debug, PartialEq)]
pub enum GenerateError {
    /// The prompt has no tokens.
    EmptyPrompt,
    /// The prompt alone needs more positions than the model's context holds.
    PromptTooLong { tokens: usize, context: usize },
    /// The forward pass failed (a token outside the vocabulary, weights of another model, ...).
    Model(ModelError),
    /// The sampler refused the logits (its vocabulary differs from the model's).
    Sampler(SamplerError),
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::EmptyPrompt => write!(f, "empty prompt"),
            GenerateError::PromptTooLong { tokens, context } => {
                write!(
                    f,
                    "prompt of {tokens} tokens exceeds the context of {context}"
                )
            }
            GenerateError::Model(e) => write!(f, "model: {e}"),
            GenerateError::Sampler(e) => write!(f, "sampler: {e:?}"),
        }
    }
}

impl From<ModelError> for GenerateError {
    fn from(e: ModelError) -> Self {
        GenerateError::Model(e)
    }
}

impl From<SamplerError> for GenerateError {
    fn from(e: SamplerError) -> Self {
        GenerateError::Sampler(e)
    }
}

/// A loaded model borrowed for one generation: run state, weights and tokenizer (whose
/// end-of-generation rule stops the loop).
pub struct Generator<'a, 'w> {
    pub model: &'a mut Model,
    pub weights: &'a Weights<'w>,
    pub tokenizer: &'a Tokenizer,
}

impl fmt::Debug for Generator<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Generator<'_, '_> {
    /// Starts a new sequence (the KV cache is reset), prefills `prompt` in batches, then
    /// samples and decodes, passing each generated token to `on_token`, until one of the
    /// [`StopReason`]s. `max_tokens == 0` prefills and samples but passes nothing on.
    pub fn generate(
        &mut self,
        sampler: &mut Sampler,
        prompt: &[u32],
        max_tokens: usize,
        clock: &impl Clock,
        mut on_token: impl FnMut(u32) -> ControlFlow<()>,
    ) -> Result<Generated, GenerateError> {
        let context = self.model.options().seq_len;
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if prompt.len() > context {
            return Err(GenerateError::PromptTooLong {
                tokens: prompt.len(),
                context,
            });
        }
        let vocab = self.model.config().vocab_size;
        self.model.reset();
        let t0 = clock.now();
        let logits = self.model.prefill(self.weights, prompt, 0)?;
        // Only the last prompt token's logits matter (the last rows when all are kept).
        let last = logits
            .get(logits.len().saturating_sub(vocab)..)
            .unwrap_or(&[]);
        let mut next = sampler.sample(last)?;
        let t1 = clock.now();

        let mut generated = 0;
        let mut pos = prompt.len();
        let stop = loop {
            if max_tokens == 0 {
                break StopReason::MaxTokens;
            }
            if self.tokenizer.is_end_of_generation(next) {
                break StopReason::EndOfGeneration;
            }
            generated += 1;
            if on_token(next).is_break() {
                break StopReason::Caller;
            }
            if generated == max_tokens {
                break StopReason::MaxTokens;
            }
            if pos >= context {
                break StopReason::ContextFull;
            }
            let logits = self.model.forward(self.weights, next, pos)?;
            pos += 1;
            next = sampler.sample(logits)?;
        };
        let t2 = clock.now();
        Ok(Generated {
            prompt_tokens: prompt.len(),
            generated,
            stop,
            prefill_ticks: t1.wrapping_sub(t0),
            decode_ticks: t2.wrapping_sub(t1),
        })
    }
}

/// The text of generated tokens that continue a prompt, kept up to a byte cap: a prefix of the
/// full text, cut before the first piece that would pass the cap (a vocabulary of long tokens
/// cannot grow it further).
#[derive(Debug)]
pub struct TextOutput {
    dec: StreamDecoder,
    piece: String,
    text: String,
    cap: usize,
    full: bool,
}

impl TextOutput {
    /// Output that continues a prompt (every space of the first token is kept).
    pub fn continuing(cap: usize) -> TextOutput {
        TextOutput {
            dec: StreamDecoder::continuing(),
            piece: String::new(),
            text: String::new(),
            cap,
            full: false,
        }
    }

    /// Appends the text `id` completes.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) {
        self.piece.clear();
        self.dec.push(tok, id, &mut self.piece);
        self.append();
    }

    /// Flushes held-back bytes and returns the text.
    pub fn finish(mut self) -> String {
        self.piece.clear();
        self.dec.finish(&mut self.piece);
        self.append();
        self.text
    }

    fn append(&mut self) {
        if self.full {
            return;
        }
        if self.text.len().saturating_add(self.piece.len()) <= self.cap {
            self.text.push_str(&self.piece);
        } else {
            self.full = true;
        }
    }
}
