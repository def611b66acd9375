//! The committed default model: its size and shape, its tokenizer against SentencePiece's ids,
//! and its greedy continuations through the serving loop (`generate`) against the torch model it
//! was exported from and against llama.cpp on the same Q8_0 file (`models/fortunes-reference.tsv`, written
//! by `scripts/train_default_model.py`).

use std::ops::ControlFlow;

use llm_runtime::generate::{Generator, NoClock};
use llm_runtime::gguf::Gguf;
use llm_runtime::kernels::Kernels;
use llm_runtime::model::{self, Model, ModelOptions, Weights};
use llm_runtime::sampler::{Sampler, SamplerConfig};
use llm_runtime::tokenizer::Tokenizer;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fortunes-q8_0.gguf");
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fortunes-reference.tsv");
const LICENSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/LICENSE.md");

/// Leading tokens of each 48-token reference continuation that must match exactly. Not all 48:
/// after a near-tie, f32 vs Q8_0 (and one f32 summation order vs another) may pick different
/// tokens; llama.cpp's own Q8_0 continuation leaves torch's after 18 tokens on one prompt.
const MATCH_TOKENS: usize = 16;
/// Leading tokens that must match at least one of the two references.
const FOLLOW_TOKENS: usize = 40;

struct Reference {
    prompt: String,
    ids: Vec<u32>,
    torch: Vec<u32>,
    llamacpp: Option<Vec<u32>>,
}

fn references() -> Vec<Reference> {
    let text = std::fs::read_to_string(REFERENCE).expect("reference file");
    let ids = |s: &str| -> Option<Vec<u32>> {
        (s != "-").then(|| {
            s.split_whitespace()
                .map(|x| x.parse().expect("id"))
                .collect()
        })
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "reference line {l:?}");
            let bytes: Vec<u8> = (0..f[0].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[0][i..i + 2], 16).expect("hex"))
                .collect();
            Reference {
                prompt: String::from_utf8(bytes).expect("utf-8"),
                ids: ids(f[1]).expect("prompt ids"),
                torch: ids(f[2]).expect("torch ids"),
                llamacpp: ids(f[3]),
            }
        })
        .collect()
}

fn with_model(f: impl FnOnce(&Gguf<'_>)) {
    let file =
        llm_runtime::gguf::AlignedBuf::read(MODEL).unwrap_or_else(|e| panic!("{MODEL}: {e}"));
    let g = Gguf::parse(file.as_bytes()).expect("default model parses");
    f(&g);
}

/// Greedy continuation of `prompt` through the serving loop ([`Generator::generate`]): at
/// most `n` tokens, fewer if the model ends the text.
fn greedy(m: &mut Model, w: &Weights<'_>, tok: &Tokenizer, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut sampler = Sampler::new(SamplerConfig::default(), m.config().vocab_size).unwrap();
    let mut out = Vec::new();
    let done = Generator {
        model: m,
        weights: w,
        tokenizer: tok,
    }
    .generate(&mut sampler, prompt, n, &NoClock, |id| {
        out.push(id);
        ControlFlow::Continue(())
    })
    .expect("generate");
    assert_eq!(done.generated, out.len());
    out
}

/// `reference` up to its first end-of-generation token: where the serving loop stops.
fn until_end(tok: &Tokenizer, reference: &[u32]) -> Vec<u32> {
    reference
        .iter()
        .copied()
        .take_while(|&id| !tok.is_end_of_generation(id))
        .collect()
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[test]
fn default_model_is_small_and_licensed() {
    let size = std::fs::metadata(MODEL).expect("model file").len();
    assert!(size <= 8 << 20, "{size} bytes");
    let license = std::fs::read_to_string(LICENSE).expect("LICENSE.md");
    assert!(license.contains("fortunes") && license.contains("Regents of the University"));
    with_model(|g| {
        let (cfg, w) = model::load(g).expect("loads");
        let n = cfg.n_params();
        assert!((1_000_000..=5_000_000).contains(&n), "{n} parameters");
        assert!(w.layers.len() == cfg.n_layers);
    });
}

#[test]
fn prompts_tokenize_like_sentencepiece() {
    with_model(|g| {
        let tok = Tokenizer::from_gguf(g).expect("tokenizer");
        for r in references() {
            assert_eq!(tok.encode(&r.prompt, true, false), r.ids, "{:?}", r.prompt);
        }
    });
}

#[test]
fn greedy_continuations_match_torch_and_llamacpp() {
    with_model(|g| {
        let (cfg, w) = model::load(g).expect("loads");
        let tok = Tokenizer::from_gguf(g).expect("tokenizer");
        for kernels in [Kernels::scalar(), Kernels::detect()] {
            let name = kernels.describe();
            let mut m = Model::new(cfg, ModelOptions::for_config(&cfg), kernels).expect("model");
            for r in references() {
                let got = greedy(&mut m, &w, &tok, &r.ids, r.torch.len());
                // A short run stopped where a reference ends its text (the references went on).
                let ended = |reference: &[u32]| got == until_end(&tok, reference);
                assert!(
                    got.len() == r.torch.len()
                        || ended(&r.torch)
                        || r.llamacpp.as_deref().is_some_and(ended),
                    "{name} {:?}: stopped after {} tokens: {got:?}",
                    r.prompt,
                    got.len()
                );
                let vs_torch = common_prefix(&got, &r.torch);
                println!(
                    "{name} {:?}: {vs_torch}/{} tokens as torch f32{}\n  -> {:?}",
                    r.prompt,
                    got.len(),
                    r.llamacpp.as_ref().map_or(String::new(), |l| format!(
                        ", {}/{} as llama.cpp Q8_0",
                        common_prefix(&got, l),
                        l.len()
                    )),
                    tok.decode(&got)
                );
                assert!(
                    vs_torch >= MATCH_TOKENS,
                    "{name} {:?}: torch {vs_torch}",
                    r.prompt
                );
                if let Some(l) = &r.llamacpp {
                    let n = common_prefix(&got, l);
                    assert!(n >= MATCH_TOKENS, "{name} {:?}: llama.cpp {n}", r.prompt);
                    // After a near-tie the run follows one of the two references, not noise.
                    assert!(
                        n.max(vs_torch) >= FOLLOW_TOKENS,
                        "{name} {:?}: torch {vs_torch}, llama.cpp {n}",
                        r.prompt
                    );
                }
            }
        }
    });
}

#[test]
fn output_is_text_like() {
    with_model(|g| {
        let (cfg, w) = model::load(g).expect("loads");
        let tok = Tokenizer::from_gguf(g).expect("tokenizer");
        let mut m = Model::new(cfg, ModelOptions::for_config(&cfg), Kernels::detect()).unwrap();
        let mut all = String::new();
        for r in references() {
            let out = greedy(&mut m, &w, &tok, &r.ids, 48);
            all.push_str(&tok.decode(&out));
        }
        let chars = all.chars().count();
        let wordish = all
            .chars()
            .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
            .count();
        let words: Vec<&str> = all.split_whitespace().collect();
        let distinct: std::collections::BTreeSet<&str> = words.iter().copied().collect();
        println!("{all:?}");
        // Mostly letters and spaces, several words, not one token repeated.
        assert!(
            wordish * 10 >= chars * 8,
            "{wordish}/{chars} letters or spaces"
        );
        assert!(words.len() >= 15 && distinct.len() >= 10, "{words:?}");
    });
}
