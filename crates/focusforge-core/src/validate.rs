use crate::{Error, FieldViolation};

/// Collects the field violations of a request so the client learns about
/// them at once, not one per round trip. At most [`Violations::MAX_REPORTED`]
/// are kept; the rest are counted, and reported as one more violation
/// saying how many, so an error stays small however bad the request.
#[derive(Debug, Default)]
pub struct Violations {
    found: Vec<FieldViolation>,
    more: usize,
}

impl Violations {
    /// Violations reported one by one.
    pub const MAX_REPORTED: usize = 20;
    /// The field of the violation that counts the ones not reported.
    pub const MORE_FIELD: &'static str = "request";

    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.found.len() >= Self::MAX_REPORTED {
            self.more += 1;
            return;
        }
        self.found.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Checks a list's length before its items: a list over `max` is one
    /// violation, and its items are not worth checking (false).
    pub fn list<T>(&mut self, field: &str, items: &[T], max: usize) -> bool {
        if items.len() > max {
            self.add(
                field,
                format!("must have at most {max} entries, got {}", items.len()),
            );
            return false;
        }
        true
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
        self.found.is_empty()
    }

    /// Adds the violations of an error (a domain's checks after the
    /// adapter's own); other errors are returned as they are.
    pub fn absorb(&mut self, err: Error) -> Result<(), Error> {
        match err {
            Error::InvalidArgument(found) => {
                for f in found {
                    if let Some(n) = f.not_shown() {
                        self.more += n;
                    } else {
                        self.add(f.field, f.description);
                    }
                }
                Ok(())
            }
            other => Err(other),
        }
    }

    /// `Ok(())` when nothing was recorded, else `Error::InvalidArgument`.
    pub fn finish(mut self) -> Result<(), Error> {
        if self.found.is_empty() {
            return Ok(());
        }
        if self.more > 0 {
            self.found.push(FieldViolation::not_shown_count(self.more));
        }
        Err(Error::InvalidArgument(self.found))
    }
}

impl FieldViolation {
    /// The violation that stands for `n` others left out of a report.
    pub fn not_shown_count(n: usize) -> Self {
        Self {
            field: Violations::MORE_FIELD.into(),
            description: format!("{n} more violations not shown"),
        }
    }

    /// For the violation standing for others, how many.
    pub fn not_shown(&self) -> Option<usize> {
        if self.field != Violations::MORE_FIELD {
            return None;
        }
        let n = self
            .description
            .strip_suffix(" more violations not shown")?;
        n.parse().ok()
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
    fn reports_the_first_twenty_and_counts_the_rest() {
        let mut v = Violations::new();
        for i in 0..500 {
            v.add(format!("blocks[{i}].title"), "must not be empty");
        }
        match v.finish() {
            Err(Error::InvalidArgument(found)) => {
                assert_eq!(found.len(), Violations::MAX_REPORTED + 1);
                assert_eq!(found[19].field, "blocks[19].title");
                assert_eq!(found[20].field, "request");
                assert_eq!(found[20].description, "480 more violations not shown");
            }
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn absorbs_another_errors_violations_and_their_count() {
        let mut inner = Violations::new();
        for i in 0..25 {
            inner.add(format!("f{i}"), "bad");
        }
        let mut v = Violations::new();
        v.add("priority", "unknown value 99");
        v.absorb(inner.finish().expect_err("invalid"))
            .expect("absorbed");
        match v.finish() {
            Err(Error::InvalidArgument(found)) => {
                assert_eq!(found[0].field, "priority");
                assert_eq!(found.len(), 21);
                // 25 inner: 20 reported there, 5 counted; here 19 fit.
                assert_eq!(found[20].description, "6 more violations not shown");
            }
            other => panic!("expected invalid argument, got {other:?}"),
        }
        assert!(
            Violations::new()
                .absorb(Error::NotFound("x".into()))
                .is_err()
        );
    }

    #[test]
    fn a_list_over_its_maximum_is_one_violation() {
        let mut v = Violations::new();
        assert!(!v.list("blocks", &[0; 101], 100));
        assert!(v.list("tags", &[0; 3], 3));
        match v.finish() {
            Err(Error::InvalidArgument(found)) => {
                assert_eq!(found.len(), 1);
                assert_eq!(
                    found[0].description,
                    "must have at most 100 entries, got 101"
                );
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
