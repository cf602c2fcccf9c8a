//! Token-by-token decoding, free or held to a [`Schema`]: the schema's
//! structure (braces, keys, quotes, commas) is forced, and every sampled
//! token is masked to what the schema allows at that point (string
//! characters without quotes or escapes, digits that keep an integer in
//! range, prefixes of an enum's options, "one more item" or "end of list").
//! The result always parses and validates, whatever the model prefers.

use std::time::Instant;

use tokenizers::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use crate::llama::{Llama, ModelError};
use crate::{Finish, LlmError, Sampling, Schema};

/// What each token of the vocabulary can stand for, computed once.
pub struct Tables {
    pub bytes: Vec<Option<Vec<u8>>>,
    /// Usable inside a JSON string: valid UTF-8, no quote, backslash or
    /// control character.
    string_ok: Vec<bool>,
    /// Usable inside a [`Schema::Phrase`]: also no digit, markup or link.
    plain: Vec<bool>,
    /// Usable inside one clause of a [`Schema::Phrase`]: plain, and no
    /// `.`, `;`, `!` or `?`.
    clause: Vec<bool>,
    chars: Vec<u16>,
    leading_space: Vec<bool>,
    /// Tokens made of ASCII digits only, with their text.
    digits: Vec<(u32, String)>,
    quote: Option<u32>,
    comma: Option<u32>,
    close_brace: Option<u32>,
    close_bracket: Option<u32>,
    pub stop: Vec<u32>,
}

impl Tables {
    pub fn new(bytes: Vec<Option<Vec<u8>>>, stop: Vec<u32>) -> Self {
        let n = bytes.len();
        let mut string_ok = vec![false; n];
        let mut plain = vec![false; n];
        let mut clause = vec![false; n];
        let mut chars = vec![0u16; n];
        let mut leading_space = vec![false; n];
        let mut digits = Vec::new();
        let find = |want: &[u8]| {
            bytes
                .iter()
                .position(|b| b.as_deref() == Some(want))
                .map(|i| i as u32)
        };
        let (quote, comma, close_brace, close_bracket) =
            (find(b"\""), find(b","), find(b"}"), find(b"]"));
        for (i, b) in bytes.iter().enumerate() {
            let Some(b) = b else { continue };
            let Ok(text) = std::str::from_utf8(b) else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            string_ok[i] = !text
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control());
            plain[i] = string_ok[i] && crate::schema::is_plain(text);
            clause[i] = plain[i] && !text.contains(|c| crate::schema::CLAUSE_ENDS.contains(c));
            chars[i] = text.chars().count().min(u16::MAX as usize) as u16;
            leading_space[i] = text.starts_with(char::is_whitespace);
            if text.bytes().all(|c| c.is_ascii_digit()) {
                digits.push((i as u32, text.to_owned()));
            }
        }
        Self {
            bytes,
            string_ok,
            plain,
            clause,
            chars,
            leading_space,
            digits,
            quote,
            comma,
            close_brace,
            close_bracket,
            stop,
        }
    }

    fn token_text(&self, t: u32) -> &str {
        self.bytes[t as usize]
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// Why decoding stopped early.
pub enum Stop {
    Budget,
    Failed(LlmError),
}

impl From<ModelError> for Stop {
    fn from(e: ModelError) -> Self {
        Stop::Failed(LlmError::Generation(e.to_string()))
    }
}

/// Whether some integer in `min..=max` has the decimal prefix `v` (> 0).
fn reachable(v: u64, min: u64, max: u64) -> bool {
    let (mut lo, mut hi) = (v, v);
    loop {
        if hi >= min && lo <= max {
            return true;
        }
        if lo > max {
            return false;
        }
        lo = lo.saturating_mul(10);
        hi = hi.saturating_mul(10).saturating_add(9);
    }
}

pub struct Decoder<'a> {
    pub model: &'a mut Llama,
    pub tables: &'a Tables,
    pub tokenizer: &'a Tokenizer,
    pub sampling: Sampling,
    pub budget: usize,
    pub deadline: Option<Instant>,
    pub stream: Option<UnboundedSender<String>>,
    logits: Vec<f32>,
    pending: String,
    pub out: Vec<u8>,
    streamed: usize,
    pub used: usize,
    /// Of `used`, the tokens the model sampled (the rest were forced).
    pub sampled: usize,
    rng: u64,
    recent: Vec<u32>,
}

impl<'a> Decoder<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &'a mut Llama,
        tables: &'a Tables,
        tokenizer: &'a Tokenizer,
        sampling: Sampling,
        budget: usize,
        deadline: Option<Instant>,
        stream: Option<UnboundedSender<String>>,
    ) -> Self {
        Self {
            model,
            tables,
            tokenizer,
            rng: sampling.seed | 1,
            sampling,
            budget,
            deadline,
            stream,
            logits: Vec::new(),
            pending: String::new(),
            out: Vec::new(),
            streamed: 0,
            used: 0,
            sampled: 0,
            recent: Vec::new(),
        }
    }

    /// Runs the prompt through the model, in chunks so a deadline that
    /// passes meanwhile stops it.
    pub fn prompt(&mut self, ids: &[u32]) -> Result<(), Stop> {
        self.model.clear();
        for chunk in ids.chunks(64) {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Stop::Failed(LlmError::DeadlineExceeded));
            }
            self.feed(chunk)?;
        }
        Ok(())
    }

    fn feed(&mut self, ids: &[u32]) -> Result<(), Stop> {
        if ids.is_empty() {
            return Ok(());
        }
        let logits = self.model.forward(ids)?;
        self.logits.clear();
        self.logits.extend_from_slice(logits);
        Ok(())
    }

    fn emit(&mut self) {
        let Some(stream) = &self.stream else { return };
        let fresh = &self.out[self.streamed..];
        // Send only whole characters: a character cut at the end waits for
        // its next bytes; bytes that can never form one are sent as U+FFFD,
        // so the stream goes on past them.
        let (valid, invalid) = match std::str::from_utf8(fresh) {
            Ok(s) => (s.len(), 0),
            Err(e) => (e.valid_up_to(), e.error_len().unwrap_or(0)),
        };
        if valid + invalid > 0 {
            let text = String::from_utf8_lossy(&fresh[..valid + invalid]).into_owned();
            let _ = stream.send(text);
            self.streamed += valid + invalid;
            if invalid > 0 {
                self.emit();
            }
        }
    }

    /// Appends structure the schema dictates; fed to the model lazily.
    fn force(&mut self, text: &str) {
        self.pending.push_str(text);
        self.out.extend_from_slice(text.as_bytes());
        self.emit();
    }

    fn flush(&mut self) -> Result<(), Stop> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.pending);
        let ids = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Stop::Failed(LlmError::Generation(e.to_string())))?
            .get_ids()
            .to_vec();
        self.used += ids.len();
        self.feed(&ids)
    }

    /// Raises a token's logit for the next choice.
    fn boost(&mut self, token: u32, by: f32) -> Result<(), Stop> {
        self.flush()?;
        if let Some(l) = self.logits.get_mut(token as usize) {
            *l += by;
        }
        Ok(())
    }

    /// Samples one of the allowed tokens (not yet fed).
    fn choose(&mut self, allowed: impl Fn(u32) -> bool) -> Result<u32, Stop> {
        self.flush()?;
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stop::Failed(LlmError::DeadlineExceeded));
        }
        if self.used >= self.budget {
            return Err(Stop::Budget);
        }
        let penalty = self.sampling.repeat_penalty;
        if penalty != 1.0 {
            let mut seen = self.recent.clone();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = self.logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                }
            }
        }
        if self.sampling.temperature <= 0.0 {
            // Greedy: the best allowed token, without collecting candidates.
            let mut best: Option<(u32, f32)> = None;
            for (i, &l) in self.logits.iter().enumerate() {
                let i = i as u32;
                if best.is_none_or(|b| l > b.1) && allowed(i) {
                    best = Some((i, l));
                }
            }
            return best.map(|b| b.0).ok_or_else(|| {
                Stop::Failed(LlmError::Generation("no token fits the schema here".into()))
            });
        }
        let mut candidates: Vec<(u32, f32)> = self
            .logits
            .iter()
            .enumerate()
            .filter(|(i, _)| allowed(*i as u32))
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if candidates.is_empty() {
            return Err(Stop::Failed(LlmError::Generation(
                "no token fits the schema here".into(),
            )));
        }
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        let t = self.sampling.temperature;
        let top = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|c| ((c.1 - top) / t).exp()).collect();
        let sum: f32 = probs.iter().sum();
        let mut kept = 0;
        let mut acc = 0.0;
        for p in &mut probs {
            *p /= sum;
            acc += *p;
            kept += 1;
            if acc >= self.sampling.top_p {
                break;
            }
        }
        let r = self.next_random() * acc;
        let mut run = 0.0;
        for (c, p) in candidates.iter().zip(&probs).take(kept) {
            run += p;
            if r < run {
                return Ok(c.0);
            }
        }
        Ok(candidates[kept - 1].0)
    }

    fn next_random(&mut self) -> f32 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Feeds a sampled token and appends its bytes.
    fn accept(&mut self, token: u32) -> Result<(), Stop> {
        self.used += 1;
        self.sampled += 1;
        self.recent.push(token);
        if self.recent.len() > 64 {
            self.recent.remove(0);
        }
        if let Some(bytes) = &self.tables.bytes[token as usize] {
            self.out.extend_from_slice(bytes);
            self.emit();
        }
        self.feed(&[token])
    }

    /// Free text until the model stops or the budget runs out.
    pub fn free(&mut self) -> Result<Finish, Stop> {
        loop {
            let token = match self.choose(|_| true) {
                Ok(t) => t,
                Err(Stop::Budget) => return Ok(Finish::Length),
                Err(e) => return Err(e),
            };
            if self.tables.stop.contains(&token) {
                return Ok(Finish::Stop);
            }
            self.accept(token)?;
        }
    }

    /// A value of `schema`.
    pub fn value(&mut self, schema: &Schema) -> Result<(), Stop> {
        let tables = self.tables;
        match schema {
            Schema::Object(fields) => {
                self.force("{");
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.force(", ");
                    }
                    self.force(&format!("\"{key}\": "));
                    self.value(value)?;
                }
                self.force("}");
            }
            Schema::String { max_chars } => {
                self.force("\"");
                let mut n = 0usize;
                let mut blank = true;
                loop {
                    if n >= *max_chars {
                        self.force("\"");
                        break;
                    }
                    let quote = tables.quote;
                    let room = max_chars - n;
                    let t = self.choose(|t| {
                        let i = t as usize;
                        (Some(t) == quote && !blank)
                            || (tables.string_ok[i]
                                && usize::from(tables.chars[i]) <= room
                                && !(n == 0 && tables.leading_space[i]))
                    })?;
                    self.accept(t)?;
                    if Some(t) == quote {
                        break;
                    }
                    n += usize::from(tables.chars[t as usize]);
                    blank &= tables.token_text(t).trim().is_empty();
                }
            }
            Schema::Phrase {
                max_chars,
                first_words,
                one_clause,
            } => {
                self.force("\"");
                let mut n = 0usize;
                let mut blank = true;
                // The first word, while one of `first_words` is being chosen.
                let mut word: Option<String> = (!first_words.is_empty()).then(String::new);
                let ok = if *one_clause {
                    &tables.clause
                } else {
                    &tables.plain
                };
                // Past half the limit, ending the phrase grows likelier with
                // every character, so a small model ends it instead of
                // rambling to the limit.
                let soft = max_chars / 2;
                loop {
                    if n >= *max_chars {
                        self.force("\"");
                        break;
                    }
                    let quote = tables.quote;
                    let room = max_chars - n;
                    let t = match &word {
                        Some(current) => {
                            let open: Vec<&str> = first_words
                                .iter()
                                .filter_map(|w| w.strip_prefix(current.as_str()))
                                .collect();
                            let complete = open.contains(&"");
                            self.choose(|t| {
                                let i = t as usize;
                                if !ok[i] || usize::from(tables.chars[i]) > room {
                                    return false;
                                }
                                if tables.leading_space[i] {
                                    return complete;
                                }
                                let text = tables.token_text(t);
                                open.iter()
                                    .any(|rest| rest.len() >= text.len() && rest.starts_with(text))
                            })?
                        }
                        None => {
                            if let Some(q) = quote
                                && n > soft
                                && !blank
                            {
                                self.boost(q, (n - soft) as f32 * 0.4)?;
                            }
                            // One clause: ", but" would start a second.
                            let after_comma = *one_clause && self.out.ends_with(b",");
                            self.choose(|t| {
                                let i = t as usize;
                                (Some(t) == quote && !blank)
                                    || (ok[i]
                                        && usize::from(tables.chars[i]) <= room
                                        && !(n == 0 && tables.leading_space[i])
                                        && !(after_comma
                                            && tables
                                                .token_text(t)
                                                .trim()
                                                .eq_ignore_ascii_case("but")))
                            })?
                        }
                    };
                    self.accept(t)?;
                    if Some(t) == quote {
                        break;
                    }
                    let text = tables.token_text(t);
                    if let Some(current) = &mut word {
                        if tables.leading_space[t as usize] {
                            word = None;
                        } else {
                            current.push_str(text);
                        }
                    }
                    n += usize::from(tables.chars[t as usize]);
                    blank &= text.trim().is_empty();
                }
            }
            Schema::Enum(options) => {
                self.force("\"");
                let mut current = String::new();
                loop {
                    let open: Vec<&String> =
                        options.iter().filter(|o| o.starts_with(&current)).collect();
                    if open.len() == 1 {
                        let rest = open[0][current.len()..].to_owned();
                        self.force(&rest);
                        self.force("\"");
                        break;
                    }
                    let complete = options.contains(&current);
                    let quote = tables.quote;
                    let t = self.choose(|t| {
                        if Some(t) == quote {
                            return complete;
                        }
                        tables.string_ok[t as usize] && {
                            let next = format!("{current}{}", tables.token_text(t));
                            open.iter().any(|o| o.starts_with(&next))
                        }
                    })?;
                    self.accept(t)?;
                    if Some(t) == quote {
                        break;
                    }
                    current.push_str(tables.token_text(t));
                }
            }
            Schema::Integer { min, max } => {
                let (min, max) = (*min, *max);
                let mut text = String::new();
                let ends = [tables.comma, tables.close_brace, tables.close_bracket];
                loop {
                    let value: u64 = text.parse().unwrap_or(0);
                    // A digit is allowed when some value in range still
                    // starts with the digits so far.
                    let fits = |digits: &str| {
                        let next = format!("{text}{digits}");
                        if next.len() > 1 && next.starts_with('0') {
                            return false;
                        }
                        let Ok(v) = next.parse::<u64>() else {
                            return false;
                        };
                        if v == 0 {
                            return min == 0;
                        }
                        reachable(v, min, max)
                    };
                    let can_end = !text.is_empty() && (min..=max).contains(&value);
                    let allowed: Vec<u32> = tables
                        .digits
                        .iter()
                        .filter(|(_, d)| fits(d))
                        .map(|(t, _)| *t)
                        .collect();
                    if allowed.is_empty() {
                        break;
                    }
                    let t = self
                        .choose(|t| allowed.contains(&t) || (can_end && ends.contains(&Some(t))))?;
                    if ends.contains(&Some(t)) {
                        break;
                    }
                    self.accept(t)?;
                    text.push_str(tables.token_text(t));
                }
            }
            Schema::Array { items, min, max } => {
                self.force("[");
                let mut count = 0;
                while count < *max {
                    if count > 0 {
                        if count >= *min {
                            let (comma, end) = (tables.comma, tables.close_bracket);
                            let t = self.choose(|t| Some(t) == comma || Some(t) == end)?;
                            if Some(t) == end {
                                break;
                            }
                        }
                        self.force(", ");
                    }
                    self.value(items)?;
                    count += 1;
                }
                self.force("]");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn prefixes_reach_the_range_or_not() {
        assert!(reachable(1, 5, 120)); // 10..19
        assert!(reachable(5, 5, 120));
        assert!(!reachable(121, 5, 120));
        assert!(!reachable(13, 200, 300)); // 130-139 < 200, 1300.. > 300
        assert!(reachable(12, 5, 120)); // 12, 120
        assert!(!reachable(2, 5, 9));
        assert!(reachable(7, 5, 9));
    }
}
