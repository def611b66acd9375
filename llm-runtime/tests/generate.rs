//! The shared generation loop (`llm_runtime::generate`): its tokens equal a plain
//! prefill/forward/sample loop's, each stop reason ends it where it should, bad inputs are
//! errors, the clock is read around prefill and decode, and a run allocates nothing.
//!
//! The model is the random-weight `gqa` oracle fixture (vocabulary 512); the tokenizer is built
//! by hand so each test can choose the end-of-generation token.

use std::cell::Cell;
use std::ops::ControlFlow;

use llm_runtime::generate::{
    Clock, GenerateError, Generated, Generator, NoClock, StopReason, TextOutput,
};
use llm_runtime::gguf::Gguf;
use llm_runtime::kernels::Kernels;
use llm_runtime::model::{Config, Model, ModelError, ModelOptions, Weights};
use llm_runtime::sampler::{Sampler, SamplerConfig, SamplerError};
use llm_runtime::tokenizer::{Tokenizer, Vocab};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// The fixture file in 8-byte-aligned storage (tensor views need their element alignment).
fn fixture() -> (Vec<u64>, usize) {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/oracle/gqa-q8_0.gguf"
    ))
    .expect("fixture");
    let mut buf = vec![0u64; raw.len().div_ceil(8)];
    for (w, c) in buf.iter_mut().zip(raw.chunks(8)) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        *w = u64::from_ne_bytes(b);
    }
    (buf, raw.len())
}

fn with_weights(f: impl FnOnce(Config, &Weights<'_>)) {
    let (buf, len) = fixture();
    // SAFETY: `buf` holds `len.div_ceil(8)` initialised u64s, so its first `len` bytes are
    // initialised and in bounds; the view borrows `buf` and ends before it is dropped.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    let g = Gguf::parse(bytes).expect("fixture parses");
    let cfg = Config::from_gguf(&g).expect("config");
    let w = Weights::from_gguf(&g, &cfg).expect("weights");
    f(cfg, &w);
}

/// An SPM vocabulary of `n` plain tokens ("t0", "t1", ...), BOS 1, EOS `eos`.
fn tokenizer(n: usize, eos: u32) -> Tokenizer {
    Tokenizer::new(Vocab {
        model: "llama".into(),
        tokens: (0..n).map(|i| format!("t{i}")).collect(),
        bos_id: Some(1),
        eos_id: Some(eos),
        ..Vocab::default()
    })
    .expect("tokenizer")
}

fn model(cfg: Config, seq_len: usize) -> Model {
    let opts = ModelOptions {
        seq_len,
        max_batch: 16,
        all_logits: false,
    };
    Model::new(cfg, opts, Kernels::detect()).expect("model")
}

const GREEDY: SamplerConfig = SamplerConfig {
    temperature: 0.0,
    top_k: 0,
    top_p: 1.0,
    seed: 0,
};
const SAMPLED: SamplerConfig = SamplerConfig {
    temperature: 1.0,
    top_k: 40,
    top_p: 0.95,
    seed: 11,
};

/// The prompt: BOS and 20 more ids.
fn prompt() -> Vec<u32> {
    core::iter::once(1).chain(100..120).collect()
}

/// `n` tokens from a plain loop: prefill, sample, then decode and sample, no stop rule, up to
/// the context.
fn plain(m: &mut Model, w: &Weights<'_>, s: SamplerConfig, prompt: &[u32], n: usize) -> Vec<u32> {
    let vocab = m.config().vocab_size;
    let mut sampler = Sampler::new(s, vocab).unwrap();
    m.reset();
    let logits = m.prefill(w, prompt, 0).unwrap();
    let mut next = sampler.sample(&logits[logits.len() - vocab..]).unwrap();
    let mut out = vec![next];
    let mut pos = prompt.len();
    while out.len() < n && pos < m.options().seq_len {
        next = sampler.sample(m.forward(w, next, pos).unwrap()).unwrap();
        pos += 1;
        out.push(next);
    }
    out
}

/// One `generate` run collecting the ids.
fn run(
    m: &mut Model,
    w: &Weights<'_>,
    tok: &Tokenizer,
    s: SamplerConfig,
    prompt: &[u32],
    max_tokens: usize,
) -> Result<(Generated, Vec<u32>), GenerateError> {
    let mut sampler = Sampler::new(s, m.config().vocab_size).unwrap();
    let mut ids = Vec::new();
    let done = Generator {
        model: m,
        weights: w,
        tokenizer: tok,
    }
    .generate(&mut sampler, prompt, max_tokens, &NoClock, |id| {
        ids.push(id);
        ControlFlow::Continue(())
    })?;
    assert_eq!(done.generated, ids.len());
    assert_eq!(done.prompt_tokens, prompt.len());
    Ok((done, ids))
}

/// An id that `ids` does not contain, to be an EOS that never comes.
fn absent(ids: &[u32], vocab: usize) -> u32 {
    (2..vocab as u32).find(|i| !ids.contains(i)).unwrap()
}

#[test]
fn tokens_equal_a_plain_loop_up_to_max_tokens() {
    with_weights(|cfg, w| {
        let mut m = model(cfg, 256);
        for s in [GREEDY, SAMPLED] {
            let want = plain(&mut m, w, s, &prompt(), 30);
            let tok = tokenizer(cfg.vocab_size, absent(&want, cfg.vocab_size));
            for n in [1, 7, 30] {
                let (done, ids) = run(&mut m, w, &tok, s, &prompt(), n).unwrap();
                assert_eq!(ids, want[..n], "{s:?}, max {n}");
                assert_eq!(done.stop, StopReason::MaxTokens);
            }
        }
    });
}

#[test]
fn stops_before_an_end_of_generation_token() {
    with_weights(|cfg, w| {
        let mut m = model(cfg, 256);
        let want = plain(&mut m, w, SAMPLED, &prompt(), 40);
        // The first token seen for the first time after a few others: it becomes EOS.
        let at = (3..want.len())
            .find(|&j| !want[..j].contains(&want[j]) && want[j] != 1)
            .expect("a new token in 40 sampled ones");
        let tok = tokenizer(cfg.vocab_size, want[at]);
        let (done, ids) = run(&mut m, w, &tok, SAMPLED, &prompt(), 40).unwrap();
        assert_eq!(done.stop, StopReason::EndOfGeneration);
        assert_eq!(ids, want[..at]);

        // An EOS as the very first token: nothing is generated.
        let tok = tokenizer(cfg.vocab_size, want[0]);
        let (done, ids) = run(&mut m, w, &tok, SAMPLED, &prompt(), 40).unwrap();
        assert_eq!((done.stop, ids.len()), (StopReason::EndOfGeneration, 0));

        // max_tokens wins when it is reached at the same token.
        let tok = tokenizer(cfg.vocab_size, want[at]);
        let (done, ids) = run(&mut m, w, &tok, SAMPLED, &prompt(), at).unwrap();
        assert_eq!((done.stop, ids.len()), (StopReason::MaxTokens, at));
    });
}

#[test]
fn stops_when_the_context_is_full() {
    with_weights(|cfg, w| {
        let ctx = 32;
        let mut m = model(cfg, ctx);
        let p = prompt();
        let want = plain(&mut m, w, GREEDY, &p, usize::MAX);
        // The prompt takes p.len() positions; each token but the last needs one more.
        assert_eq!(want.len(), ctx - p.len() + 1);
        let tok = tokenizer(cfg.vocab_size, absent(&want, cfg.vocab_size));
        let (done, ids) = run(&mut m, w, &tok, GREEDY, &p, 100).unwrap();
        assert_eq!((done.stop, &ids), (StopReason::ContextFull, &want));
        // Exactly as many as fit: max_tokens is reached first.
        let (done, ids) = run(&mut m, w, &tok, GREEDY, &p, want.len()).unwrap();
        assert_eq!((done.stop, ids.len()), (StopReason::MaxTokens, want.len()));

        // A prompt that fills the context still gives its one token.
        let full: Vec<u32> = (0..ctx as u32).map(|i| 3 + i % 100).collect();
        let (done, ids) = run(&mut m, w, &tok, GREEDY, &full, 10).unwrap();
        assert_eq!((done.stop, ids.len()), (StopReason::ContextFull, 1));
        let longer: Vec<u32> = (0..ctx as u32 + 1).collect();
        assert_eq!(
            run(&mut m, w, &tok, GREEDY, &longer, 10).unwrap_err(),
            GenerateError::PromptTooLong {
                tokens: ctx + 1,
                context: ctx
            }
        );
    });
}

#[test]
fn the_callback_can_stop_the_run() {
    with_weights(|cfg, w| {
        let mut m = model(cfg, 256);
        let want = plain(&mut m, w, GREEDY, &prompt(), 10);
        let tok = tokenizer(cfg.vocab_size, absent(&want, cfg.vocab_size));
        let mut sampler = Sampler::new(GREEDY, cfg.vocab_size).unwrap();
        let mut ids = Vec::new();
        let done = Generator {
            model: &mut m,
            weights: w,
            tokenizer: &tok,
        }
        .generate(&mut sampler, &prompt(), 10, &NoClock, |id| {
            ids.push(id);
            if ids.len() == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!((done.stop, done.generated), (StopReason::Caller, 4));
        assert_eq!(ids, want[..4]);

        // max_tokens 0: prefilled, nothing passed on.
        let (done, ids) = run(&mut m, w, &tok, GREEDY, &prompt(), 0).unwrap();
        assert_eq!((done.stop, ids.len()), (StopReason::MaxTokens, 0));
    });
}

#[test]
fn bad_inputs_are_errors() {
    with_weights(|cfg, w| {
        let mut m = model(cfg, 64);
        let tok = tokenizer(cfg.vocab_size, 2);
        assert_eq!(
            run(&mut m, w, &tok, GREEDY, &[], 4).unwrap_err(),
            GenerateError::EmptyPrompt
        );
        let vocab = cfg.vocab_size as u32;
        assert_eq!(
            run(&mut m, w, &tok, GREEDY, &[1, vocab], 4).unwrap_err(),
            GenerateError::Model(ModelError::TokenOutOfRange {
                token: vocab,
                vocab: cfg.vocab_size
            })
        );
        // A sampler for another vocabulary.
        let mut sampler = Sampler::new(GREEDY, cfg.vocab_size + 1).unwrap();
        let r = Generator {
            model: &mut m,
            weights: w,
            tokenizer: &tok,
        }
        .generate(&mut sampler, &[1, 5], 4, &NoClock, |_| {
            ControlFlow::Continue(())
        });
        assert_eq!(
            r.unwrap_err(),
            GenerateError::Sampler(SamplerError::LogitsLength {
                expected: cfg.vocab_size + 1,
                got: cfg.vocab_size
            })
        );
        // The model still runs after the errors.
        let (_, ids) = run(&mut m, w, &tok, GREEDY, &prompt(), 3).unwrap();
        assert!(!ids.is_empty());
    });
}

/// A clock that advances by 1 per reading and by 100 per token (the callback moves it).
struct Ticks(Cell<u64>);

impl Clock for Ticks {
    fn now(&self) -> u64 {
        let t = self.0.get();
        self.0.set(t.wrapping_add(1));
        t
    }
}

#[test]
fn clock_is_read_around_prefill_and_decode() {
    with_weights(|cfg, w| {
        let mut m = model(cfg, 256);
        let want = plain(&mut m, w, GREEDY, &prompt(), 12);
        let tok = tokenizer(cfg.vocab_size, absent(&want, cfg.vocab_size));
        let mut sampler = Sampler::new(GREEDY, cfg.vocab_size).unwrap();
        // Wrapping differences: a counter that wraps in between still gives the elapsed ticks.
        let clock = Ticks(Cell::new(u64::MAX));
        let done = Generator {
            model: &mut m,
            weights: w,
            tokenizer: &tok,
        }
        .generate(&mut sampler, &prompt(), 12, &clock, |_| {
            clock.0.set(clock.0.get().wrapping_add(100));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(done.prefill_ticks, 1);
        assert_eq!(done.decode_ticks, 1 + 100 * 12);
    });
}

#[test]
fn a_run_allocates_nothing() {
    with_weights(|cfg, w| {
        let mut m = model(cfg, 256);
        let want = plain(&mut m, w, SAMPLED, &prompt(), 60);
        let tok = tokenizer(cfg.vocab_size, absent(&want, cfg.vocab_size));
        // The counter works.
        assert!(allocations(|| drop(std::hint::black_box(vec![0u8; 64]))) > 0);
        for (s, n) in [(GREEDY, 60), (SAMPLED, 60), (SAMPLED, 5)] {
            let mut sampler = Sampler::new(s, cfg.vocab_size).unwrap();
            let mut ids = [0u32; 60];
            let mut got = 0;
            let mut result = None;
            let p = prompt();
            let a = allocations(|| {
                result = Some(
                    Generator {
                        model: &mut m,
                        weights: w,
                        tokenizer: &tok,
                    }
                    .generate(&mut sampler, &p, n, &NoClock, |id| {
                        ids[got] = id;
                        got += 1;
                        ControlFlow::Continue(())
                    }),
                );
            });
            assert_eq!(result.unwrap().unwrap().generated, n);
            assert_eq!(a, 0, "{s:?}: {n} tokens allocated {a} times");
        }
    });
}

#[test]
fn text_output_is_a_capped_prefix() {
    // Tokens "ab", "ab", "ab", "c": 2 + 2 + 2 + 1 bytes.
    let mut v = Vocab {
        model: "llama".into(),
        tokens: ["<unk>", "<s>", "</s>", "ab", "c", "▁x"]
            .map(String::from)
            .to_vec(),
        ..Vocab::default()
    };
    v.add_space_prefix = Some(true);
    let tok = Tokenizer::new(v).unwrap();
    let text = |cap: usize, ids: &[u32]| {
        let mut t = TextOutput::continuing(cap);
        for &id in ids {
            t.push(&tok, id);
        }
        t.finish()
    };
    assert_eq!(text(usize::MAX, &[3, 3, 3, 4]), "abababc");
    // The third "ab" does not fit 5 bytes; the "c" after it would, but the text stays a prefix.
    assert_eq!(text(5, &[3, 3, 3, 4]), "abab");
    assert_eq!(text(0, &[3]), "");
    // Continuing a prompt: the first token's leading space is kept.
    assert_eq!(text(64, &[5, 4]), " xc");
}

/// The generation loop runs the new architectures' fixture files with their own tokenizers
/// (what `examples/generate.rs --model fixtures/arch/gemma3-q8_0.gguf` does), token for
/// token as a plain loop.
#[test]
fn runs_the_gemma_and_phi3_fixtures_with_their_vocabularies() {
    for name in ["gemma2-q8_0", "gemma3-q8_0", "phi3-q4_0"] {
        let path = format!("{}/fixtures/arch/{name}.gguf", env!("CARGO_MANIFEST_DIR"));
        let raw = std::fs::read(&path).expect("fixture");
        let buf = llm_runtime::gguf::AlignedBuf::from_slice(&raw);
        let g = Gguf::parse(buf.as_bytes()).expect("parses");
        let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
        let (cfg, w) = llm_runtime::model::load(&g).expect("model");
        let mut m = model(cfg, 64);
        let prompt = tok.encode("def main():\n    return 42", true, false);
        assert_eq!(prompt.first().copied(), tok.bos(), "{name}: BOS first");
        assert!(prompt.len() > 4, "{name}: {prompt:?}");
        let want = plain(&mut m, &w, GREEDY, &prompt, 12);
        let (done, ids) = run(&mut m, &w, &tok, GREEDY, &prompt, 12).unwrap();
        match want.iter().position(|&t| tok.is_end_of_generation(t)) {
            None => {
                assert_eq!(ids, want, "{name}");
                assert_eq!(done.stop, StopReason::MaxTokens, "{name}");
            }
            Some(end) => {
                assert_eq!(ids[..], want[..end], "{name}");
                assert_eq!(done.stop, StopReason::EndOfGeneration, "{name}");
            }
        }
    }
}
