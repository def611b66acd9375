//! Tokenizers built from GGUF tokenizer metadata (`tokenizer.ggml.*`).
//!
//! Two vocabulary kinds, as llama.cpp names them in `tokenizer.ggml.model`:
//! - `"llama"`: SentencePiece BPE (llama / llama 2). Pieces are merged greedily by score
//!   (`tokenizer.ggml.scores`, which for BPE-trained models is `-(merge rank)`), whitespace is
//!   `▁`, an optional space prefix is added, runs of spaces are kept, and chars outside the
//!   vocabulary fall back to `<0xXX>` byte tokens.
//! - `"gpt2"`: byte-level BPE (llama 3 style). The text is pre-split with a hand-written
//!   equivalent of the GPT-2 or llama 3 regex ([`pretok`]), bytes are mapped to printable chars
//!   and merged by rank (`tokenizer.ggml.merges`).
//!
//! Control and unknown tokens are recognised in the text only when the caller asks
//! (`parse_special`); user-defined tokens always are. Where SentencePiece and llama.cpp differ
//! (llama.cpp adds a space prefix after a user-defined piece in SPM text), this follows
//! SentencePiece; the byte-level BPE agrees with both HF `tokenizers` and llama.cpp. Encoding never fails and never panics:
//! every vocabulary inconsistency is rejected when the [`Tokenizer`] is built.

mod bpe;
mod gguf_vocab;
pub mod pretok;
mod spm;

use alloc::string::String;
use alloc::vec::Vec;

pub use pretok::PreTokenizer;

/// Token types as stored in `tokenizer.ggml.token_type` (llama.cpp `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// Maps a GGUF token type; 0 (undefined) counts as normal, as in llama.cpp.
    pub fn from_gguf(v: i32) -> Option<TokenType> {
        Some(match v {
            0 | 1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// The tokenizer part of a model's metadata, in GGUF's terms. Optional fields are `None` when
/// the key is absent; the llama.cpp defaults then apply.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `"llama"` or `"gpt2"`.
    pub model: String,
    /// `tokenizer.ggml.pre` (gpt2 only): `"gpt-2"`, `"llama-bpe"`/`"llama3"`/`"llama-v3"`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (empty = all 0)
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type` (empty = all normal)
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: `"left right"`, rank = index (gpt2 only)
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
}

/// Why a vocabulary cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` is neither `"llama"` nor `"gpt2"`.
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    UnsupportedPreTokenizer(String),
    /// No tokens, or more than fit a `u32` id.
    BadTokenCount(usize),
    /// `tokenizer.ggml.scores` length differs from the token count.
    ScoresLength { tokens: usize, scores: usize },
    /// `tokenizer.ggml.token_type` length differs from the token count.
    TypesLength { tokens: usize, types: usize },
    /// A token type value outside 0..=6.
    BadTokenType { index: usize, value: i32 },
    /// A BOS/EOS/UNK id that is not a token.
    SpecialIdOutOfRange { which: &'static str, id: u32 },
    /// A merge rule that is not two space-separated tokens.
    MalformedMerge { index: usize },
    /// A byte-typed token whose text is not `<0xXX>`.
    MalformedByteToken { index: usize },
    /// A gpt2 vocabulary without merges.
    NoMerges,
    /// A required GGUF key is absent.
    MissingMetadata(&'static str),
    /// A GGUF key has the wrong type or an out-of-range value.
    BadMetadata { key: &'static str },
    /// An element of a GGUF array has the wrong type.
    BadArrayElement { key: &'static str, index: usize },
}

impl core::fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spm,
    Bpe(PreTokenizer),
}

#[derive(Clone, Debug)]
struct TokenData {
    text: String,
    score: f32,
    ty: TokenType,
}

/// A tokenizer ready to encode and decode. Built once from a [`Vocab`].
#[derive(Clone, Debug)]
pub struct Tokenizer {
    kind: Kind,
    tokens: Vec<TokenData>,
    /// Token ids sorted by text; for equal texts only the last id is kept (llama.cpp's rule).
    by_text: Vec<u32>,
    /// Tokens matched in raw text before tokenization, longest text first.
    specials: Vec<u32>,
    /// SPM: user-defined pieces, matched as unmergeable symbols (SentencePiece's rule).
    user_defined: Vec<u32>,
    /// SPM: the `<0xXX>` token of each byte.
    byte_tokens: [Option<u32>; 256],
    /// BPE: (left, right) -> (rank, merged).
    merges: bpe::MergeMap,
    ignore_merges: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// Tokens that end a turn by their text (llama.cpp's end-of-generation list), whatever
    /// their type: Gemma's `<end_of_turn>`, Phi-3's `<|end|>`, Llama 3's `<|eot_id|>`, ...
    end_of_turn: Vec<u32>,
}

/// Texts llama.cpp's vocabulary loader marks end-of-generation (`llama-vocab.cpp`, the EOG
/// list), for the families this crate runs.
const END_OF_TURN_TEXTS: [&str; 8] = [
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
];

/// A piece of the input after special tokens were split out.
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

fn parse_byte_token(s: &str) -> Option<u8> {
    let hex = s.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Checks `vocab` and builds the lookup tables.
    pub fn new(vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
        let n = vocab.tokens.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(TokenizerError::BadTokenCount(n));
        }
        let kind = match vocab.model.as_str() {
            "llama" => Kind::Spm,
            "gpt2" => Kind::Bpe(match vocab.pre.as_deref() {
                None | Some("gpt-2") | Some("gpt2") | Some("default") => PreTokenizer::Gpt2,
                Some("llama-bpe") | Some("llama3") | Some("llama-v3") => PreTokenizer::Llama3,
                Some("qwen2") => PreTokenizer::Qwen2,
                Some(other) => return Err(TokenizerError::UnsupportedPreTokenizer(other.into())),
            }),
            other => return Err(TokenizerError::UnsupportedModel(other.into())),
        };
        if !vocab.scores.is_empty() && vocab.scores.len() != n {
            return Err(TokenizerError::ScoresLength {
                tokens: n,
                scores: vocab.scores.len(),
            });
        }
        if !vocab.token_types.is_empty() && vocab.token_types.len() != n {
            return Err(TokenizerError::TypesLength {
                tokens: n,
                types: vocab.token_types.len(),
            });
        }
        let mut tokens = Vec::with_capacity(n);
        for (index, text) in vocab.tokens.into_iter().enumerate() {
            let ty = match vocab.token_types.get(index) {
                None => TokenType::Normal,
                Some(&value) => TokenType::from_gguf(value)
                    .ok_or(TokenizerError::BadTokenType { index, value })?,
            };
            let score = vocab.scores.get(index).copied().unwrap_or(0.0);
            tokens.push(TokenData { text, score, ty });
        }

        let mut by_text: Vec<u32> = (0..n as u32).collect();
        // Stable sort keeps ids ascending within equal texts; keep the last one of each run.
        by_text.sort_by(|&a, &b| tokens[a as usize].text.cmp(&tokens[b as usize].text));
        let mut dedup: Vec<u32> = Vec::with_capacity(n);
        for id in by_text {
            match dedup.last_mut() {
                Some(last) if tokens[*last as usize].text == tokens[id as usize].text => *last = id,
                _ => dedup.push(id),
            }
        }

        let mut byte_tokens = [None; 256];
        let mut specials = Vec::new();
        let mut user_defined = Vec::new();
        for (index, t) in tokens.iter().enumerate() {
            let id = index as u32;
            match t.ty {
                TokenType::Byte if kind == Kind::Spm => {
                    let b = parse_byte_token(&t.text)
                        .ok_or(TokenizerError::MalformedByteToken { index })?;
                    byte_tokens[b as usize] = Some(id);
                }
                TokenType::UserDefined if kind == Kind::Spm && !t.text.is_empty() => {
                    user_defined.push(id)
                }
                TokenType::Control | TokenType::Unknown | TokenType::UserDefined
                    if !t.text.is_empty() =>
                {
                    specials.push(id)
                }
                _ => {}
            }
        }
        let by_len_desc = |ids: &mut Vec<u32>| {
            ids.sort_by(|&a, &b| {
                tokens[b as usize]
                    .text
                    .len()
                    .cmp(&tokens[a as usize].text.len())
            })
        };
        by_len_desc(&mut specials);
        by_len_desc(&mut user_defined);

        let spm = kind == Kind::Spm;
        let check = |which: &'static str, id: Option<u32>, default: Option<u32>| match id
            .or(if spm { default } else { None })
        {
            Some(id) if id as usize >= n => Err(TokenizerError::SpecialIdOutOfRange { which, id }),
            // A defaulted id that does not exist is just absent.
            other => Ok(other),
        };
        let bos = check("bos", vocab.bos_id, Some(1))?;
        let eos = check("eos", vocab.eos_id, Some(2))?;
        let unk = check("unk", vocab.unk_id, Some(0))?;

        let mut tok = Tokenizer {
            kind,
            tokens,
            by_text: dedup,
            specials,
            user_defined,
            byte_tokens,
            merges: bpe::MergeMap::new(),
            ignore_merges: matches!(kind, Kind::Bpe(PreTokenizer::Llama3)),
            bos,
            eos,
            unk,
            add_bos: vocab.add_bos.unwrap_or(spm) && bos.is_some(),
            add_eos: vocab.add_eos.unwrap_or(false) && eos.is_some(),
            add_space_prefix: vocab.add_space_prefix.unwrap_or(spm),
            end_of_turn: Vec::new(),
        };
        tok.end_of_turn = END_OF_TURN_TEXTS
            .iter()
            .filter_map(|t| tok.token_id(t))
            .collect();
        if let Kind::Bpe(_) = kind {
            if vocab.merges.is_empty() {
                return Err(TokenizerError::NoMerges);
            }
            tok.merges = bpe::build_merges(&tok, &vocab.merges)?;
        }
        Ok(tok)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether [`encode`](Self::encode) with `add_special` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether generation should stop at `id`: EOS, any control token other than BOS, or a
    /// token whose text llama.cpp treats as end-of-generation (`<end_of_turn>`, `<|end|>`,
    /// `<|endoftext|>`, ... even when the file types it user-defined).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        Some(id) == self.eos
            || (Some(id) != self.bos && self.token_type(id) == Some(TokenType::Control))
            || self.end_of_turn.contains(&id)
    }

    /// The id of the token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_text
            .binary_search_by(|&id| self.tokens[id as usize].text.as_str().cmp(text))
            .ok()
            .map(|i| self.by_text[i])
    }

    /// The stored text of token `id` (`▁`-escaped for SPM, byte-mapped for gpt2).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|t| t.text.as_str())
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.tokens.get(id as usize).map(|t| t.ty)
    }

    /// Encodes `text`. `add_special` adds BOS/EOS as the vocabulary asks; `parse_special`
    /// turns control-token texts such as `<s>` into their ids instead of encoding them as text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, add_special, parse_special, &mut out);
        out
    }

    /// [`encode`](Self::encode), appending to `out`.
    pub fn encode_into(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        out: &mut Vec<u32>,
    ) {
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let fragments = self.partition(text, parse_special);
        let mut prev_special = true;
        let mut scratch = bpe::Scratch::default();
        for f in fragments {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    match self.kind {
                        Kind::Spm => self.spm_encode(t, self.add_space_prefix && prev_special, out),
                        Kind::Bpe(pre) => self.bpe_encode(t, pre, &mut scratch, out),
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
    }

    /// Splits out special tokens, longest first (llama.cpp `tokenizer_st_partition`).
    fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(text));
        for &id in &self.specials {
            let t = &self.tokens[id as usize];
            if !parse_special && matches!(t.ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            let pat = t.text.as_str();
            if !frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(s) if s.contains(pat)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(mut s) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(pos) = s.find(pat) {
                    if pos > 0 {
                        next.push(Fragment::Text(&s[..pos]));
                    }
                    next.push(Fragment::Token(id));
                    s = &s[pos + pat.len()..];
                }
                if !s.is_empty() {
                    next.push(Fragment::Text(s));
                }
            }
            frags = next;
        }
        frags
    }

    /// Appends the bytes token `id` stands for. Control tokens (BOS, EOS, ...) add nothing;
    /// unknown ids add nothing.
    pub fn token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let Some(t) = self.tokens.get(id as usize) else {
            return;
        };
        match (self.kind, t.ty) {
            (_, TokenType::Control) => {}
            (_, TokenType::Unknown) => out.extend_from_slice(" \u{2047} ".as_bytes()),
            (Kind::Spm, TokenType::Byte) => {
                if let Some(b) = parse_byte_token(&t.text) {
                    out.push(b);
                }
            }
            (Kind::Spm, _) => {
                for part in t.text.split_inclusive('\u{2581}') {
                    match part.strip_suffix('\u{2581}') {
                        Some(head) => {
                            out.extend_from_slice(head.as_bytes());
                            out.push(b' ');
                        }
                        None => out.extend_from_slice(part.as_bytes()),
                    }
                }
            }
            (Kind::Bpe(_), TokenType::UserDefined) => out.extend_from_slice(t.text.as_bytes()),
            (Kind::Bpe(_), _) => {
                for c in t.text.chars() {
                    match bpe::char_to_byte(c) {
                        Some(b) => out.push(b),
                        None => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
            }
        }
    }

    /// Decodes `ids` to text: byte tokens are reassembled, invalid UTF-8 becomes U+FFFD, and
    /// for SPM the space prefix the encoder added is removed.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.token_bytes(id, &mut bytes);
        }
        let start = usize::from(
            self.kind == Kind::Spm && self.add_space_prefix && bytes.first() == Some(&b' '),
        );
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes of an unfinished UTF-8
/// char until it completes (a byte-fallback char spans several tokens).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    started: bool,
}

impl StreamDecoder {
    /// A decoder for a whole text: SPM's leading space prefix is dropped.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// A decoder for text that continues a prompt: every space is kept.
    pub fn continuing() -> StreamDecoder {
        StreamDecoder {
            pending: Vec::new(),
            started: true,
        }
    }

    /// Feeds `id`; appends whatever text is complete to `out`.
    pub fn push(&mut self, tok: &Tokenizer, id: u32, out: &mut String) {
        tok.token_bytes(id, &mut self.pending);
        if !self.started && !self.pending.is_empty() {
            self.started = true;
            if tok.kind == Kind::Spm && tok.add_space_prefix && self.pending[0] == b' ' {
                self.pending.remove(0);
            }
        }
        loop {
            let e = match core::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => e,
            };
            let valid = e.valid_up_to();
            out.push_str(core::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
            match e.error_len() {
                // An unfinished char at the end: hold it back for the next token.
                None => {
                    self.pending.drain(..valid);
                    return;
                }
                // An invalid sequence never completes: one U+FFFD for it, as a whole decode
                // gives, and the bytes after it are looked at again (they may start a char).
                Some(n) => {
                    out.push(char::REPLACEMENT_CHARACTER);
                    self.pending.drain(..valid + n);
                }
            }
        }
    }

    /// Flushes held-back bytes (lossily).
    pub fn finish(&mut self, out: &mut String) {
        out.push_str(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests;
