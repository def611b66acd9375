//! Hand-written equivalents of the byte-level BPE pre-tokenizer regexes.
//!
//! Each splitter returns the length (in chars) of the piece that starts at `i`, reproducing
//! the leftmost-first, greedy-with-backtracking semantics of the regex it stands for, so no
//! regex engine is needed in `no_std`. `\p{L}`/`\p{N}` are Unicode general-category groups and
//! `\s` is the Unicode `White_Space` property (what Oniguruma, used by HF `tokenizers`, means).

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Which pre-tokenizer regex a vocabulary was trained with (`tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// Qwen2: Llama 3's with `\p{N}` (one digit per piece) for `\p{N}{1,3}`.
    Qwen2,
}

fn is_letter(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Letter
}

fn is_number(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Number
}

fn is_space(c: char) -> bool {
    c.is_whitespace()
}

fn is_crlf(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// `[^\s\p{L}\p{N}]`
fn is_other(c: char) -> bool {
    !is_space(c) && !is_letter(c) && !is_number(c)
}

/// End of the run of chars satisfying `f` starting at `j`.
fn run(cs: &[char], mut j: usize, f: fn(char) -> bool) -> usize {
    while j < cs.len() && f(cs[j]) {
        j += 1;
    }
    j
}

/// Contractions `'s 't 're 've 'm 'll 'd`; `ascii_ci` makes the letters ASCII case-insensitive.
fn contraction(cs: &[char], i: usize, ascii_ci: bool) -> Option<usize> {
    if cs.get(i) != Some(&'\'') {
        return None;
    }
    let lower = |c: Option<&char>| c.map(|&c| if ascii_ci { c.to_ascii_lowercase() } else { c });
    match lower(cs.get(i + 1)) {
        Some('s' | 't' | 'm' | 'd') => return Some(i + 2),
        Some(c1) => {
            let c2 = lower(cs.get(i + 2));
            if matches!(
                (c1, c2),
                ('r', Some('e')) | ('v', Some('e')) | ('l', Some('l'))
            ) {
                return Some(i + 3);
            }
        }
        None => {}
    }
    None
}

/// `\s+(?!\S)|\s+` at `i`, where `cs[i]` is whitespace.
fn trailing_space(cs: &[char], i: usize) -> usize {
    let j = run(cs, i, is_space);
    if j == cs.len() || j - 1 == i {
        j
    } else {
        // Leave the last space to prefix the following word.
        j - 1
    }
}

impl PreTokenizer {
    /// End (exclusive, in chars) of the piece starting at `i < cs.len()`; always `> i`.
    pub fn piece_end(self, cs: &[char], i: usize) -> usize {
        let end = match self {
            PreTokenizer::Gpt2 => gpt2(cs, i),
            PreTokenizer::Llama3 => llama3(cs, i, 3),
            PreTokenizer::Qwen2 => llama3(cs, i, 1),
        };
        // Every char is matched by some alternative; this only guards the loop's progress.
        if end > i { end } else { i + 1 }
    }

    /// Splits `text` into pre-tokens, calling `f` with each piece.
    pub fn split<'a>(
        self,
        text: &'a str,
        cs: &mut alloc::vec::Vec<char>,
        mut f: impl FnMut(&'a str),
    ) {
        cs.clear();
        cs.extend(text.chars());
        let mut i = 0;
        let mut byte = 0;
        while i < cs.len() {
            let end = self.piece_end(cs, i);
            let len: usize = cs[i..end].iter().map(|c| c.len_utf8()).sum();
            f(&text[byte..byte + len]);
            byte += len;
            i = end;
        }
    }
}

fn gpt2(cs: &[char], i: usize) -> usize {
    if let Some(j) = contraction(cs, i, false) {
        return j;
    }
    let k = if cs[i] == ' ' && i + 1 < cs.len() {
        i + 1
    } else {
        i
    };
    let c = cs[k];
    if is_letter(c) {
        return run(cs, k + 1, is_letter);
    }
    if is_number(c) {
        return run(cs, k + 1, is_number);
    }
    if is_other(c) {
        return run(cs, k + 1, is_other);
    }
    trailing_space(cs, i)
}

/// Llama 3's regex, with at most `digits` numbers per piece.
fn llama3(cs: &[char], i: usize, digits: usize) -> usize {
    let n = cs.len();
    if let Some(j) = contraction(cs, i, true) {
        return j;
    }
    let c = cs[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if !is_crlf(c) && !is_letter(c) && !is_number(c) && i + 1 < n && is_letter(cs[i + 1]) {
        return run(cs, i + 2, is_letter);
    }
    if is_letter(c) {
        return run(cs, i + 1, is_letter);
    }
    // \p{N}{1,digits}
    if is_number(c) {
        let mut j = i + 1;
        while j < n && j < i + digits && is_number(cs[j]) {
            j += 1;
        }
        return j;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let k = if c == ' ' && i + 1 < n && is_other(cs[i + 1]) {
        i + 1
    } else {
        i
    };
    if is_other(cs[k]) {
        let j = run(cs, k + 1, is_other);
        return run(cs, j, is_crlf);
    }
    // \s*[\r\n]+ : the whitespace run up to and including its last line break.
    let j = run(cs, i, is_space);
    if let Some(last_nl) = (i..j).rev().find(|&p| is_crlf(cs[p])) {
        return last_nl + 1;
    }
    trailing_space(cs, i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn pieces(p: PreTokenizer, s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut cs = Vec::new();
        p.split(s, &mut cs, |x| out.push(x));
        out
    }

    #[test]
    fn llama3_examples() {
        let p = PreTokenizer::Llama3;
        assert_eq!(pieces(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(
            pieces(p, "I'M  12345 ok"),
            ["I", "'M", " ", " ", "123", "45", " ok"]
        );
        assert_eq!(pieces(p, "a  \n\n  b"), ["a", "  \n\n", " ", " b"]);
        assert_eq!(
            pieces(p, "(x) += 1;\n"),
            ["(x", ")", " +=", " ", "1", ";\n"]
        );
        assert_eq!(pieces(p, "   "), ["   "]);
    }

    #[test]
    fn qwen2_splits_digits_one_by_one() {
        let p = PreTokenizer::Qwen2;
        assert_eq!(
            pieces(p, "I'M  12345 ok"),
            ["I", "'M", " ", " ", "1", "2", "3", "4", "5", " ok"]
        );
        assert_eq!(pieces(p, "a  \n\n  b"), ["a", "  \n\n", " ", " b"]);
    }

    #[test]
    fn gpt2_examples() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(
            pieces(p, "Hello  world's 42!"),
            ["Hello", " ", " world", "'s", " 42", "!"]
        );
        assert_eq!(pieces(p, "x\n\ny"), ["x", "\n", "\n", "y"]);
        assert_eq!(pieces(p, "a \u{3000}b"), ["a", " ", "\u{3000}", "b"]);
    }
}
