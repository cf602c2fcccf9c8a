//! A per-user BM25 index over the rows' texts.
//!
//! Term statistics (document frequencies, average length) are the user's
//! own: another user's texts never shape the caller's scores.

use std::collections::HashMap;

/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation.
const B: f32 = 0.75;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "i",
    "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "so", "that",
    "the", "their", "then", "there", "these", "they", "this", "to", "was", "we", "were", "will",
    "with", "you", "your",
];

/// Splits text into index terms: lowercase runs of letters and digits,
/// stopwords dropped, plurals folded ("stores" and "store" are one term).
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(fold_plural)
        .collect()
}

fn fold_plural(word: String) -> String {
    let n = word.chars().count();
    if n > 4 && word.ends_with("ies") {
        format!("{}y", &word[..word.len() - 3])
    } else if n > 4
        && ["xes", "ches", "shes", "sses"]
            .iter()
            .any(|e| word.ends_with(e))
    {
        word[..word.len() - 2].to_owned()
    } else if n > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        word[..word.len() - 1].to_owned()
    } else {
        word
    }
}

/// Postings and lengths of one user's rows, row positions as document ids.
#[derive(Debug, Default, Clone)]
pub struct KeywordIndex {
    postings: HashMap<String, Vec<(u32, u16)>>,
    lengths: Vec<u32>,
    total_length: u64,
}

/// A row's BM25 score and the query terms it contains.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordScore {
    pub row: usize,
    pub score: f32,
    pub matched_terms: Vec<String>,
}

impl KeywordIndex {
    /// Indexes the next row (its position is the number of rows so far).
    pub fn push(&mut self, text: &str) {
        let row = self.lengths.len() as u32;
        let terms = terms(text);
        let mut counts: HashMap<String, u16> = HashMap::new();
        for t in &terms {
            let c = counts.entry(t.clone()).or_default();
            *c = c.saturating_add(1);
        }
        for (term, tf) in counts {
            self.postings.entry(term).or_default().push((row, tf));
        }
        self.lengths.push(terms.len() as u32);
        self.total_length += terms.len() as u64;
    }

    /// Every row holding at least one query term, scored with BM25, best
    /// first (ties by row position, so the order is stable).
    pub fn search(&self, query: &str) -> Vec<KeywordScore> {
        let n = self.lengths.len();
        if n == 0 {
            return Vec::new();
        }
        let avg = (self.total_length as f32 / n as f32).max(1.0);
        let mut query_terms = terms(query);
        query_terms.sort();
        query_terms.dedup();
        let mut scores: HashMap<u32, (f32, Vec<String>)> = HashMap::new();
        for term in query_terms {
            let Some(postings) = self.postings.get(&term) else {
                continue;
            };
            let df = postings.len() as f32;
            let idf = (1.0 + (n as f32 - df + 0.5) / (df + 0.5)).ln();
            for &(row, tf) in postings {
                let tf = f32::from(tf);
                let len = self.lengths[row as usize] as f32;
                let part = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg));
                let entry = scores.entry(row).or_default();
                entry.0 += part;
                entry.1.push(term.clone());
            }
        }
        let mut hits: Vec<KeywordScore> = scores
            .into_iter()
            .map(|(row, (score, matched_terms))| KeywordScore {
                row: row as usize,
                score,
                matched_terms,
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lowercased_without_stopwords_and_plurals() {
        assert_eq!(
            terms("Buy the Groceries, 2 boxes of Oat-milk!"),
            ["buy", "grocery", "2", "box", "oat", "milk"]
        );
        assert_eq!(terms("classes status class"), ["class", "status", "class"]);
        assert!(terms("  ,.; ").is_empty());
    }

    #[test]
    fn rarer_terms_and_shorter_rows_score_higher() {
        let mut index = KeywordIndex::default();
        index.push("tax report due");
        index.push("report the bug");
        index.push("write the weekly report");
        index.push("tax forms");
        let hits = index.search("tax report");
        let rows: Vec<usize> = hits.iter().map(|h| h.row).collect();
        // Row 0 holds both terms; row 3 only the rarer "tax"; rows 1 and 2
        // only the common "report", the shorter row first.
        assert_eq!(rows, [0, 3, 1, 2]);
        assert_eq!(hits[0].matched_terms, ["report", "tax"]);
        assert!(hits[1].score > hits[2].score);
        assert!(index.search("unrelated words").is_empty());
    }
}
