use crate::{Error, FieldViolation};

/// Collects every field violation of a request so the client learns about all
/// of them at once, not one per round trip.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Records a violation when `ok` is false.
    pub fn check(&mut self, ok: bool, field: impl Into<String>, description: impl Into<String>) {
        if !ok {
            self.add(field, description);
        }
    }

    /// Checks a required text field: trimmed, non-empty, at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "must not be empty");
        } else {
            self.optional_text(field, value, max);
        }
    }

    /// Checks an optional text field: at most `max` characters.
    pub fn optional_text(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    /// Checks that an integer lies in `min..=max`.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            self.add(field, format!("must be between {min} and {max}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else `Error::InvalidArgument`.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_violation() {
        let mut v = Violations::new();
        v.text("title", "   ", 10);
        v.text("name", "ok", 10);
        v.optional_text("description", "abcdef", 5);
        v.range("minutes", -1, 0, 480);
        v.range("order", 3, 0, 10);
        match v.finish() {
            Err(Error::InvalidArgument(found)) => {
                let fields: Vec<_> = found.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(fields, ["title", "description", "minutes"]);
            }
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut v = Violations::new();
        v.text("title", &"é".repeat(500), 500);
        assert!(v.finish().is_ok());
    }
}
