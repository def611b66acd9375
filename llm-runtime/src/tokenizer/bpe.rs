//! Byte-level BPE (GPT-2 / llama 3 vocabularies).
//!
//! Each pre-token's bytes are mapped to printable chars (GPT-2's `bytes_to_unicode`), then
//! adjacent symbols merge by rank, lowest rank first, leftmost on ties (HF `tokenizers`
//! `Word::merge_all`). With `ignore_merges` (llama 3) a pre-token that is itself a token is
//! emitted whole.

use super::{PreTokenizer, Tokenizer, TokenizerError};
use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Reverse;

const fn printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Code point of each byte: printable Latin-1 bytes stand for themselves, the other 68 take
/// U+0100.. in byte order.
const BYTE_CHAR: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut n = 0;
    let mut b = 0;
    while b < 256 {
        if printable(b as u8) {
            t[b] = b as u32;
        } else {
            t[b] = 256 + n;
            n += 1;
        }
        b += 1;
    }
    t
};

/// The bytes that are not printable, in order: `NON_PRINTABLE[c - 256]` is the byte of `c`.
const NON_PRINTABLE: [u8; 68] = {
    let mut t = [0u8; 68];
    let mut n = 0;
    let mut b = 0;
    while b < 256 {
        if !printable(b as u8) {
            t[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    t
};

pub(super) fn byte_to_char(b: u8) -> char {
    // Every table entry is below U+0144, a valid scalar value.
    char::from_u32(BYTE_CHAR[b as usize]).unwrap_or('\u{FFFD}')
}

/// The byte a byte-level char stands for, if it is one.
pub(super) fn char_to_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if u < 256 && printable(u as u8) {
        Some(u as u8)
    } else {
        u.checked_sub(256)
            .and_then(|i| NON_PRINTABLE.get(i as usize))
            .copied()
    }
}

/// Reusable buffers for one `encode` call.
#[derive(Default)]
pub(super) struct Scratch {
    chars: Vec<char>,
    mapped: String,
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<(u32, usize, u32, u32)>>,
}

struct Sym {
    id: Option<u32>,
    prev: usize,
    next: usize,
    alive: bool,
}

const NONE: usize = usize::MAX;

/// (left id, right id) -> (rank, merged id).
pub(super) type MergeMap = BTreeMap<(u32, u32), (u32, u32)>;

/// Parses `"left right"` merge rules into (left id, right id) -> (rank, merged id). Rules whose
/// parts or result are not tokens can never fire and are dropped; a repeated pair keeps its
/// first (lowest) rank.
pub(super) fn build_merges(tok: &Tokenizer, merges: &[String]) -> Result<MergeMap, TokenizerError> {
    let mut map = BTreeMap::new();
    let mut joined = String::new();
    for (index, m) in merges.iter().enumerate() {
        // The separator is the first space after the first char (llama.cpp's rule).
        let first_len = m.chars().next().map_or(0, char::len_utf8);
        let split = m[first_len..].find(' ').map(|p| p + first_len);
        let (Some(split), Ok(rank)) = (split, u32::try_from(index)) else {
            return Err(TokenizerError::MalformedMerge { index });
        };
        let (left, right) = (&m[..split], &m[split + 1..]);
        if right.is_empty() {
            return Err(TokenizerError::MalformedMerge { index });
        }
        joined.clear();
        joined.push_str(left);
        joined.push_str(right);
        if let (Some(a), Some(b), Some(c)) = (
            tok.token_id(left),
            tok.token_id(right),
            tok.token_id(&joined),
        ) {
            map.entry((a, b)).or_insert((rank, c));
        }
    }
    Ok(map)
}

impl Tokenizer {
    pub(super) fn bpe_encode(
        &self,
        text: &str,
        pre: PreTokenizer,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        let Scratch {
            chars,
            mapped,
            syms,
            heap,
        } = scratch;
        pre.split(text, chars, |word| {
            mapped.clear();
            mapped.extend(word.bytes().map(byte_to_char));
            if let Some(id) = self.token_id(mapped).filter(|_| self.ignore_merges) {
                out.push(id);
                return;
            }
            syms.clear();
            let mut buf = [0u8; 4];
            for (i, c) in mapped.chars().enumerate() {
                syms.push(Sym {
                    id: self.token_id(c.encode_utf8(&mut buf)),
                    prev: if i == 0 { NONE } else { i - 1 },
                    next: NONE,
                    alive: true,
                });
                if i > 0 {
                    syms[i - 1].next = i;
                }
            }
            heap.clear();
            let add = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize, r: usize| {
                if l == NONE || r == NONE {
                    return;
                }
                if let (Some(a), Some(b)) = (syms[l].id, syms[r].id)
                    && let Some(&(rank, _)) = self.merges.get(&(a, b))
                {
                    heap.push(Reverse((rank, l, a, b)));
                }
            };
            for i in 1..syms.len() {
                add(heap, syms, i - 1, i);
            }
            while let Some(Reverse((_, l, a, b))) = heap.pop() {
                let r = syms[l].next;
                if !syms[l].alive || r == NONE || syms[l].id != Some(a) || syms[r].id != Some(b) {
                    continue;
                }
                let Some(&(_, merged)) = self.merges.get(&(a, b)) else {
                    continue;
                };
                syms[l].id = Some(merged);
                syms[r].alive = false;
                let next = syms[r].next;
                syms[l].next = next;
                if next != NONE {
                    syms[next].prev = l;
                }
                add(heap, syms, syms[l].prev, l);
                add(heap, syms, l, next);
            }
            for s in syms.iter().filter(|s| s.alive) {
                // A byte char missing from the vocabulary becomes the unknown token, if any.
                out.extend(s.id.or(self.unk));
            }
        });
    }
}
