//! SentencePiece BPE encoding (llama / llama 2 vocabularies).
//!
//! Follows SentencePiece's `bpe_model.cc`: the text (spaces escaped as `▁`) starts as one
//! symbol per char, or per user-defined piece (those never merge); the adjacent pair whose
//! concatenation is the highest-scoring piece merges first, leftmost on ties; pieces typed
//! unused are split back into the pieces they were merged from; what is left outside the
//! vocabulary falls back to `<0xXX>` byte tokens, else to the unknown token.

use super::{TokenType, Tokenizer};
use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;

const NONE: usize = usize::MAX;
const SPACE: char = '\u{2581}';

/// A run of the escaped text; merged-away symbols have `start == end`.
struct Sym {
    start: usize,
    end: usize,
    prev: usize,
    next: usize,
    /// User-defined pieces are atomic.
    freeze: bool,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the pair when it was queued, to detect stale entries.
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: highest score first, then the leftmost pair.
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl Tokenizer {
    /// A piece symbols may merge into (SentencePiece's `pieces_`: normal, user-defined, unused).
    fn spm_piece(&self, s: &str) -> Option<u32> {
        let id = self.token_id(s)?;
        match self.tokens[id as usize].ty {
            TokenType::Normal | TokenType::UserDefined | TokenType::Unused => Some(id),
            _ => None,
        }
    }

    pub(super) fn spm_encode(&self, raw: &str, space_prefix: bool, out: &mut Vec<u32>) {
        let mut text = String::with_capacity(raw.len() + 3);
        if space_prefix {
            text.push(SPACE);
        }
        for c in raw.chars() {
            text.push(if c == ' ' { SPACE } else { c });
        }

        let mut syms: Vec<Sym> = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            // Longest user-defined piece first (the list is sorted by length).
            let user = self
                .user_defined
                .iter()
                .map(|&id| self.tokens[id as usize].text.as_str())
                .find(|t| rest.starts_with(t))
                .map(str::len);
            let (len, freeze) = match user {
                Some(len) => (len, true),
                None => (rest.chars().next().map_or(1, char::len_utf8), false),
            };
            let i = syms.len();
            syms.push(Sym {
                start: pos,
                end: pos + len,
                prev: if i == 0 { NONE } else { i - 1 },
                next: NONE,
                freeze,
            });
            if i > 0 {
                syms[i - 1].next = i;
            }
            pos += len;
        }

        let mut heap = BinaryHeap::new();
        let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: usize, r: usize| {
            if l == NONE || r == NONE || syms[l].freeze || syms[r].freeze {
                return;
            }
            let s = &text[syms[l].start..syms[r].end];
            if let Some(id) = self.spm_piece(s) {
                heap.push(Bigram {
                    score: self.tokens[id as usize].score,
                    left: l,
                    right: r,
                    size: s.len(),
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, i - 1, i);
        }

        // Only needed to split unused pieces back up.
        let mut rev_merge: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        while let Some(b) = heap.pop() {
            let (l, r) = (b.left, b.right);
            let ll = syms[l].end - syms[l].start;
            let rl = syms[r].end - syms[r].start;
            if ll == 0 || rl == 0 || ll + rl != b.size {
                continue;
            }
            let merged = &text[syms[l].start..syms[r].end];
            if self.spm_piece(merged).map(|id| self.tokens[id as usize].ty)
                == Some(TokenType::Unused)
            {
                rev_merge.insert(
                    merged,
                    (
                        &text[syms[l].start..syms[l].end],
                        &text[syms[r].start..syms[r].end],
                    ),
                );
            }
            syms[l].end = syms[r].end;
            syms[r].end = syms[r].start;
            let next = syms[r].next;
            syms[l].next = next;
            if next != NONE {
                syms[next].prev = l;
            }
            try_add(&mut heap, &syms, syms[l].prev, l);
            try_add(&mut heap, &syms, l, next);
        }

        let mut stack: Vec<&str> = Vec::new();
        let mut i = if syms.is_empty() { NONE } else { 0 };
        while i != NONE {
            stack.push(&text[syms[i].start..syms[i].end]);
            while let Some(w) = stack.pop() {
                match self.spm_piece(w) {
                    Some(id) if self.tokens[id as usize].ty != TokenType::Unused => out.push(id),
                    Some(id) => match rev_merge.get(w) {
                        Some(&(a, b)) => {
                            stack.push(b);
                            stack.push(a);
                        }
                        None => out.push(id),
                    },
                    None => self.byte_fallback(w, out),
                }
            }
            i = syms[i].next;
        }
    }

    fn byte_fallback(&self, w: &str, out: &mut Vec<u32>) {
        if w.bytes().all(|b| self.byte_tokens[b as usize].is_some()) {
            out.extend(w.bytes().filter_map(|b| self.byte_tokens[b as usize]));
        } else {
            // Without byte pieces the whole symbol is one unknown token.
            out.extend(self.unk);
        }
    }
}
