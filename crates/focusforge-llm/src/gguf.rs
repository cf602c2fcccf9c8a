//! What a GGUF file carries besides weights: the BPE vocabulary and merges
//! (GPT-2 style, byte-level), the special tokens, and the chat template.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::LlmError;

fn invalid(reason: impl Into<String>) -> LlmError {
    LlmError::ModelInvalid(reason.into())
}

fn strings(content: &Content, key: &str) -> Result<Vec<String>, LlmError> {
    match content.metadata.get(key) {
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(invalid(format!("{key} holds a non-string"))),
            })
            .collect(),
        _ => Err(invalid(format!("the GGUF metadata lacks {key}"))),
    }
}

pub fn string(content: &Content, key: &str) -> Option<String> {
    match content.metadata.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

pub fn u32_value(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

/// GPT-2's map from bytes to the printable characters byte-level BPE
/// tokens are spelled with.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('?')
        };
    }
    table
}

/// The tokenizer, and each token's bytes (`None` for special tokens).
pub struct Vocabulary {
    pub tokenizer: Tokenizer,
    pub token_bytes: Vec<Option<Vec<u8>>>,
}

pub fn vocabulary(content: &Content) -> Result<Vocabulary, LlmError> {
    let model = string(content, "tokenizer.ggml.model").unwrap_or_default();
    if model != "gpt2" {
        return Err(invalid(format!(
            "tokenizer model {model:?} is not supported (only gpt2-style BPE)"
        )));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?;
    let types: Vec<u32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.to_i32().unwrap_or(1) as u32)
            .collect(),
        _ => vec![1; tokens.len()],
    };
    let vocab: ahash::AHashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| invalid(format!("BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre: PreTokenizerWrapper =
        if string(content, "tokenizer.ggml.pre").as_deref() == Some("smollm") {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        } else {
            byte_level.into()
        };
    tokenizer.with_pre_tokenizer(Some(pre));
    tokenizer.with_decoder(Some(byte_level));
    // Control tokens (type 3) are matched whole in text: the chat markers.
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == 3)
        .map(|(tok, _)| AddedToken::from(tok.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&special);

    let chars = byte_chars();
    let inverse: HashMap<char, u8> = chars
        .iter()
        .enumerate()
        .map(|(b, c)| (*c, b as u8))
        .collect();
    let token_bytes = tokens
        .iter()
        .zip(&types)
        .map(|(tok, kind)| {
            if *kind != 1 {
                return None;
            }
            tok.chars().map(|c| inverse.get(&c).copied()).collect()
        })
        .collect();
    Ok(Vocabulary {
        tokenizer,
        token_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_is_a_bijection_onto_printable_characters() {
        let chars = byte_chars();
        let unique: std::collections::HashSet<char> = chars.iter().copied().collect();
        assert_eq!(unique.len(), 256);
        assert_eq!(chars[b' ' as usize], 'Ġ');
        assert_eq!(chars[b'\n' as usize], 'Ċ');
        assert_eq!(chars[b'a' as usize], 'a');
    }
}
