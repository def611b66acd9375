//! Reading a [`Vocab`] from GGUF metadata (`tokenizer.ggml.*`, names as in gguf-py
//! `constants.py` `Keys.Tokenizer`).

use super::{Tokenizer, TokenizerError, Vocab};
use crate::gguf::{Gguf, Value};
use alloc::string::String;
use alloc::vec::Vec;

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const SCORES: &str = "tokenizer.ggml.scores";
const TYPES: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";

fn opt_u32(g: &Gguf<'_>, key: &'static str) -> Result<Option<u32>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(Some)
            .ok_or(TokenizerError::BadMetadata { key }),
    }
}

fn opt_bool(g: &Gguf<'_>, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or(TokenizerError::BadMetadata { key }),
    }
}

/// The elements of array `key`, each converted by `f`; an absent key gives an empty vector.
fn array<T>(
    g: &Gguf<'_>,
    key: &'static str,
    f: impl Fn(&Value<'_>) -> Option<T>,
) -> Result<Vec<T>, TokenizerError> {
    let Some(v) = g.get(key) else {
        return Ok(Vec::new());
    };
    let arr = v.as_array().ok_or(TokenizerError::BadMetadata { key })?;
    let mut out = Vec::with_capacity(arr.len());
    for (index, e) in arr.iter().enumerate() {
        out.push(f(&e).ok_or(TokenizerError::BadArrayElement { key, index })?);
    }
    Ok(out)
}

impl Vocab {
    /// Collects the tokenizer metadata of a GGUF file.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Vocab, TokenizerError> {
        let model = g
            .get(MODEL)
            .ok_or(TokenizerError::MissingMetadata(MODEL))?
            .as_str()
            .ok_or(TokenizerError::BadMetadata { key: MODEL })?;
        let pre = match g.get(PRE) {
            None => None,
            Some(v) => Some(v.as_str().ok_or(TokenizerError::BadMetadata { key: PRE })?),
        };
        if g.get(TOKENS).is_none() {
            return Err(TokenizerError::MissingMetadata(TOKENS));
        }
        let text = |v: &Value<'_>| v.as_str().map(String::from);
        Ok(Vocab {
            model: model.into(),
            pre: pre.map(String::from),
            tokens: array(g, TOKENS, text)?,
            scores: array(g, SCORES, |v| v.as_f32())?,
            token_types: array(g, TYPES, |v| match *v {
                Value::I32(x) => Some(x),
                ref other => other.as_u64().and_then(|x| i32::try_from(x).ok()),
            })?,
            merges: array(g, MERGES, text)?,
            bos_id: opt_u32(g, "tokenizer.ggml.bos_token_id")?,
            eos_id: opt_u32(g, "tokenizer.ggml.eos_token_id")?,
            unk_id: opt_u32(g, "tokenizer.ggml.unknown_token_id")?,
            add_bos: opt_bool(g, "tokenizer.ggml.add_bos_token")?,
            add_eos: opt_bool(g, "tokenizer.ggml.add_eos_token")?,
            add_space_prefix: opt_bool(g, "tokenizer.ggml.add_space_prefix")?,
        })
    }
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::new(Vocab::from_gguf(g)?)
    }
}
