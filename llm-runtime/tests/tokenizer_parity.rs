//! Token ids identical to the reference tokenizers on the committed fixtures.
//!
//! `fixtures/tokenizer/*.gguf` are vocab-only GGUF files and `*.cases` the reference ids
//! (`sentencepiece` for `spm`, HF `tokenizers` for the byte-level BPEs), both made by
//! `scripts/tokenizer_fixtures.py`; `fortunes` is the default model's vocabulary, read from
//! `models/fortunes-q8_0.gguf`. Each vocabulary is loaded through the crate's GGUF reader.

use llm_runtime::gguf::Gguf;
use llm_runtime::tokenizer::{Tokenizer, Vocab};

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/tokenizer/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn vocab(name: &str) -> Vocab {
    let bytes = if name == "fortunes" {
        // The default model's own vocabulary, read from the model file itself.
        let path = format!("{}/models/fortunes-q8_0.gguf", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    } else {
        read(&format!("{name}.gguf"))
    };
    let g = Gguf::parse(&bytes).expect("fixture GGUF parses");
    Vocab::from_gguf(&g).expect("fixture has tokenizer metadata")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let text = String::from_utf8(read(&format!("{name}.cases"))).expect("utf-8");
    text.lines()
        .map(|line| {
            let (h, ids) = line.split_once('\t').expect("tab");
            let s = String::from_utf8(hex(h)).expect("utf-8 case");
            let ids = ids
                .split_whitespace()
                .map(|x| x.parse().expect("id"))
                .collect();
            (s, ids)
        })
        .collect()
}

/// Strings whose ids differ from the reference.
fn mismatches(t: &Tokenizer, cases: &[(String, Vec<u32>)], parse_special: bool) -> Vec<String> {
    cases
        .iter()
        .filter_map(|(s, want)| {
            let got = t.encode(s, false, parse_special);
            (&got != want).then(|| format!("{s:?}\n   want {want:?}\n   got  {got:?}"))
        })
        .collect()
}

fn assert_parity(name: &str, parse_special: bool) -> (Tokenizer, Vec<(String, Vec<u32>)>) {
    let t = Tokenizer::new(vocab(name)).expect("tokenizer builds");
    let cases = cases(name);
    assert!(cases.len() >= 1000, "{name}: only {} cases", cases.len());
    let bad = mismatches(&t, &cases, parse_special);
    assert!(
        bad.is_empty(),
        "{name}: {} of {} strings differ, first:\n{}",
        bad.len(),
        cases.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    println!("{name}: {}/{} strings identical", cases.len(), cases.len());
    (t, cases)
}

fn has_special_text(s: &str) -> bool {
    [
        "<s>",
        "</s>",
        "<unk>",
        "<|begin_of_text|>",
        "<|end_of_text|>",
    ]
    .iter()
    .any(|x| s.contains(x))
}

#[test]
fn spm_matches_sentencepiece() {
    // SentencePiece never reads control tokens from text: parse_special = false.
    let (t, cases) = assert_parity("spm", false);
    for (s, ids) in &cases {
        // BOS comes first when asked for; decoding restores the text exactly.
        let with_bos = t.encode(s, true, false);
        assert_eq!(with_bos[0], t.bos().unwrap());
        assert_eq!(&with_bos[1..], &ids[..]);
        if !s.contains('\u{2581}') {
            assert_eq!(&t.decode(ids), s);
        }
    }
}

/// The default model's vocabulary; its ids were also checked against llama.cpp's tokenizer
/// (llama-cpp-python) when the fixture was made: 1246/1246 identical.
#[test]
fn default_model_vocab_matches_sentencepiece() {
    let (t, cases) = assert_parity("fortunes", false);
    for (s, ids) in &cases {
        if !s.contains('\u{2581}') {
            assert_eq!(&t.decode(ids), s);
        }
    }
}

#[test]
fn bpe_llama3_matches_hf_tokenizers() {
    // HF splits added tokens out of the text: parse_special = true.
    let (t, cases) = assert_parity("bpe-llama3", true);
    for (s, ids) in &cases {
        if !has_special_text(s) {
            assert_eq!(&t.decode(ids), s);
        }
    }
}

#[test]
fn bpe_gpt2_matches_hf_tokenizers() {
    assert_parity("bpe-gpt2", true);
}

/// The parity tests catch the classic mistakes: each broken variant must disagree often.
#[test]
fn classic_mistakes_break_parity() {
    let count = |v: Vocab, name: &str, parse_special: bool| {
        let t = Tokenizer::new(v).expect("builds");
        let n = mismatches(&t, &cases(name), parse_special).len();
        println!("{name}: {n} of the strings differ");
        n
    };
    // The GPT-2 split applied to a llama 3 vocabulary.
    let mut v = vocab("bpe-llama3");
    v.pre = Some("gpt-2".into());
    assert!(count(v, "bpe-llama3", true) > 100);
    // No space prefix on a SentencePiece vocabulary.
    let mut v = vocab("spm");
    v.add_space_prefix = Some(false);
    assert!(count(v, "spm", false) > 1000);
    // Scores ignored (every merge equal): merges then happen left to right.
    let mut v = vocab("spm");
    v.scores.iter_mut().for_each(|s| *s = 0.0);
    assert!(count(v, "spm", false) > 200);
    // Merge ranks reversed.
    let mut v = vocab("bpe-gpt2");
    v.merges.reverse();
    assert!(count(v, "bpe-gpt2", true) > 500);
}

/// Hostile vocabularies: whatever a model file holds, building either fails with an error or
/// gives a tokenizer that encodes and decodes anything without panicking.
#[test]
fn corrupted_vocabularies_never_panic() {
    use llm_runtime::sampler::Pcg32;
    let mut rng = Pcg32::new(99);
    let texts: Vec<String> = cases("spm").into_iter().take(200).map(|(s, _)| s).collect();
    let pieces = [
        "", " ", "▁", "<0x41>", "<0xZZ>", "<s>", "a b", "ab", "\u{fffd}", "Ġ", "<|x|>",
    ];
    let mut built = 0;
    for round in 0..200 {
        let base = ["spm", "bpe-llama3", "bpe-gpt2"][round % 3];
        let mut v = vocab(base);
        let n = v.tokens.len() as u32;
        for _ in 0..1 + rng.next_u32() % 20 {
            let i = (rng.next_u32() % n) as usize;
            match rng.next_u32() % 7 {
                0 => v.tokens[i] = pieces[rng.next_u32() as usize % pieces.len()].into(),
                1 if !v.token_types.is_empty() => v.token_types[i] = rng.next_u32() as i32 % 8,
                2 if !v.scores.is_empty() => {
                    v.scores[i] = [f32::NAN, f32::INFINITY, -1e30, 0.0][rng.next_u32() as usize % 4]
                }
                3 if !v.merges.is_empty() => {
                    let j = rng.next_u32() as usize % v.merges.len();
                    v.merges[j] = pieces[rng.next_u32() as usize % pieces.len()].into();
                }
                4 => v.bos_id = Some(rng.next_u32() % (n + 5)),
                5 => v.tokens[i] = v.tokens[(i + 1) % n as usize].clone(),
                _ => v.unk_id = Some(rng.next_u32() % (n + 5)),
            }
        }
        let Ok(t) = Tokenizer::new(v) else { continue };
        built += 1;
        for s in texts.iter().skip(round % 7).step_by(7) {
            let ids = t.encode(s, true, round % 2 == 0);
            assert!(ids.iter().all(|&id| (id as usize) < t.n_tokens()));
            let _ = t.decode(&ids);
        }
        let junk: Vec<u32> = (0..50).map(|_| rng.next_u32() % (n + 10)).collect();
        let _ = t.decode(&junk);
    }
    assert!(built > 20, "only {built} corrupted vocabularies built");
}
