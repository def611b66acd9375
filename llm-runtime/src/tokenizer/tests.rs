use super::*;
use alloc::string::ToString;
use alloc::vec;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A tiny SPM vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces scored by rank.
fn spm_vocab(pieces: &[&str]) -> Vocab {
    let mut tokens = s(&["<unk>", "<s>", "</s>"]);
    let mut types = vec![2, 3, 3];
    for b in 0..256 {
        tokens.push(alloc::format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut scores = vec![0.0; tokens.len()];
    for (rank, p) in pieces.iter().enumerate() {
        tokens.push(p.to_string());
        types.push(if p.starts_with("<u") { 4 } else { 1 });
        scores.push(-(rank as f32));
    }
    Vocab {
        model: "llama".into(),
        tokens,
        scores,
        token_types: types,
        ..Vocab::default()
    }
}

fn ids_to_texts(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| t.token_text(i).unwrap().to_string())
        .collect()
}

#[test]
fn spm_merges_by_score_and_keeps_space_runs() {
    let t = Tokenizer::new(spm_vocab(&[
        "▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "llo", "▁▁",
    ]))
    .unwrap();
    let ids = t.encode("hello", true, false);
    assert_eq!(ids[0], 1);
    assert_eq!(ids_to_texts(&t, &ids[1..]), ["▁he", "llo"]);
    // Two spaces plus the prefix: "▁▁" merges first (leftmost), then the lone "▁".
    let ids = t.encode("  hello", false, false);
    assert_eq!(ids_to_texts(&t, &ids), ["▁▁", "▁he", "llo"]);
    assert_eq!(t.decode(&ids), "  hello");
}

#[test]
fn spm_byte_fallback_and_decode() {
    let t = Tokenizer::new(spm_vocab(&["▁", "a"])).unwrap();
    let ids = t.encode("aé", false, false);
    assert_eq!(ids_to_texts(&t, &ids), ["▁", "a", "<0xC3>", "<0xA9>"]);
    assert_eq!(t.decode(&ids), "aé");
    let mut d = StreamDecoder::new();
    let mut out = String::new();
    for &id in &ids {
        d.push(&t, id, &mut out);
    }
    assert_eq!(out, "aé");

    // A char cut short by another start byte: the lone byte is one U+FFFD and the char that
    // follows still completes, as in a whole decode (found by the `tokenizer` fuzz target).
    let b = |x: &str| t.token_id(x).unwrap();
    let ids = [b("<0xC3>"), b("<0xC3>"), b("<0xA9>")];
    let mut d = StreamDecoder::continuing();
    let mut out = String::new();
    for &id in &ids {
        d.push(&t, id, &mut out);
    }
    d.finish(&mut out);
    assert_eq!(out, "\u{FFFD}é");
    assert_eq!(out, t.decode(&ids));
}

#[test]
fn spm_specials_only_when_asked_and_user_defined_atomic() {
    let t = Tokenizer::new(spm_vocab(&["▁", "a", "<", "s", ">", "<s", "<ud>", "a<"])).unwrap();
    assert_eq!(t.encode("a<s>", false, true).last(), Some(&1));
    assert!(!t.encode("a<s>", false, false).contains(&1));
    // "<ud>" is user-defined: one symbol that never merges into "a<".
    let ids = t.encode("a<ud>", false, false);
    assert_eq!(ids_to_texts(&t, &ids), ["▁", "a", "<ud>"]);
}

#[test]
fn bpe_bytes_map_round_trips() {
    for b in 0..=255u8 {
        assert_eq!(bpe::char_to_byte(bpe::byte_to_char(b)), Some(b));
    }
    assert_eq!(bpe::byte_to_char(b' '), 'Ġ');
    assert_eq!(bpe::byte_to_char(b'\n'), 'Ċ');
}

fn bpe_vocab(merges: &[&str], pre: &str) -> Vocab {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| bpe::byte_to_char(b).to_string())
        .collect();
    for m in merges {
        let joined: String = m.split(' ').collect();
        tokens.push(joined);
    }
    tokens.push("<|end|>".into());
    let mut types = vec![1; tokens.len()];
    *types.last_mut().unwrap() = 3;
    Vocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: types,
        merges: s(merges),
        eos_id: Some(256 + merges.len() as u32),
        ..Vocab::default()
    }
}

#[test]
fn bpe_merges_by_rank() {
    let t = Tokenizer::new(bpe_vocab(&["l l", "h e", "ll o", "he llo", "Ġ w"], "gpt-2")).unwrap();
    let ids = t.encode("hello wx<|end|>", false, true);
    assert_eq!(ids_to_texts(&t, &ids), ["hello", "Ġw", "x", "<|end|>"]);
    assert_eq!(t.decode(&ids), "hello wx");
    assert!(t.is_end_of_generation(*ids.last().unwrap()));
    // Without parse_special the control text is ordinary text.
    assert!(
        !t.encode("<|end|>", false, false)
            .contains(ids.last().unwrap())
    );
}

#[test]
fn rejects_bad_vocabularies() {
    let mut v = spm_vocab(&["a"]);
    v.scores.pop();
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::ScoresLength { .. })
    ));
    let mut v = spm_vocab(&["a"]);
    v.token_types[5] = 9;
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::BadTokenType { index: 5, value: 9 })
    ));
    let mut v = spm_vocab(&["a"]);
    v.bos_id = Some(100_000);
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::SpecialIdOutOfRange { .. })
    ));
    let mut v = spm_vocab(&["a"]);
    v.tokens[3] = "<0xZZ>".into();
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::MalformedByteToken { index: 3 })
    ));
    let mut v = bpe_vocab(&["h e"], "gpt-2");
    v.merges[0] = "he".into();
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::MalformedMerge { index: 0 })
    ));
    let v = bpe_vocab(&["h e"], "falcon");
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::UnsupportedPreTokenizer(_))
    ));
    assert!(matches!(
        Tokenizer::new(Vocab {
            model: "llama".into(),
            ..Vocab::default()
        }),
        Err(TokenizerError::BadTokenCount(0))
    ));
}

#[test]
fn end_of_turn_texts_end_generation_whatever_their_type() {
    // `<end_of_turn>` typed user-defined (4) and `<|end|>` normal: both end a turn, as in
    // llama.cpp; a look-alike does not, and neither does BOS.
    let mut v = spm_vocab(&["a", "b"]);
    for (t, ty) in [("<end_of_turn>", 4), ("<|end|>", 1), ("<end_of_turns>", 4)] {
        v.tokens.push(t.into());
        v.token_types.push(ty);
        v.scores.push(0.0);
    }
    let t = Tokenizer::new(v).unwrap();
    let id = |s: &str| t.token_id(s).unwrap();
    assert!(t.is_end_of_generation(id("<end_of_turn>")));
    assert!(t.is_end_of_generation(id("<|end|>")));
    assert!(t.is_end_of_generation(id("</s>")));
    assert!(!t.is_end_of_generation(id("<end_of_turns>")));
    assert!(!t.is_end_of_generation(id("<s>")));
    assert!(!t.is_end_of_generation(id("a")));
}
