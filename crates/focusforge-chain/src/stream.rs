//! Blocks out of a breakdown's JSON as the model writes it.

use crate::chains::Block;

/// Feed it the text as it arrives; it returns each block as soon as the
/// block's object is complete.
#[derive(Debug, Default)]
pub struct BlockStream {
    text: String,
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    start: Option<usize>,
}

impl BlockStream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, piece: &str) -> Vec<Block> {
        self.text.push_str(piece);
        let mut found = Vec::new();
        let bytes = self.text.as_bytes();
        while self.scanned < bytes.len() {
            let i = self.scanned;
            let c = bytes[i];
            self.scanned += 1;
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    // {"blocks": [ {  <- the third level is a block
                    if c == b'{' && self.depth == 3 {
                        self.start = Some(i);
                    }
                }
                b'}' | b']' => {
                    if c == b'}'
                        && self.depth == 3
                        && let Some(start) = self.start.take()
                        && let Ok(block) = serde_json::from_str::<Block>(&self.text[start..=i])
                    {
                        found.push(block);
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                _ => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_out_as_soon_as_they_close() {
        let text = r#"{"blocks": [{"title": "Draft {the} intro", "minutes": 25, "done_when": "a \"first\" draft"}, {"title": "Edit", "minutes": 10, "done_when": "no typos"}]}"#;
        let mut stream = BlockStream::new();
        let mut got = Vec::new();
        let mut after = Vec::new();
        for (i, ch) in text.char_indices() {
            let blocks = stream.push(&ch.to_string());
            if !blocks.is_empty() {
                after.push(i);
            }
            got.extend(blocks);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].title, "Draft {the} intro");
        assert_eq!(got[0].done_when, "a \"first\" draft");
        assert_eq!(got[1].minutes, 10);
        assert!(
            after[0] < text.find("Edit").expect("edit"),
            "the first block before the second starts"
        );
    }
}
