use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The authenticated user: the `sub` of a verified token. Only the auth layer
/// constructs one from a request; domain code takes it as proof of identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    /// ASCII punctuation a subject may hold besides letters, marks and digits.
    pub const PUNCTUATION: &'static str = "-_.@|:+=~/";

    /// Accepts the subjects identity providers issue (`auth0|5f3a`, UUIDs,
    /// e-mail addresses, `repo:org/app:ref:refs/heads/main`): 1-128 bytes
    /// of Unicode letters, marks and digits and the ASCII characters of
    /// [`UserId::PUNCTUATION`], in Unicode NFC, without a `.` or `..` path
    /// segment. Everything else is refused, not normalised: two subjects
    /// that differ only invisibly (a zero-width space, a decomposed accent)
    /// would otherwise be two users that look like one, and normalising
    /// would merge subjects the identity provider keeps apart.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        use unicode_general_category::{GeneralCategory as G, get_general_category};
        let bad = |why: String| Err(Error::invalid("sub", why));
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return bad("must be 1-128 bytes".into());
        }
        for c in raw.chars() {
            let allowed = if c.is_ascii() {
                c.is_ascii_alphanumeric() || Self::PUNCTUATION.contains(c)
            } else {
                matches!(
                    get_general_category(c),
                    G::UppercaseLetter
                        | G::LowercaseLetter
                        | G::TitlecaseLetter
                        | G::ModifierLetter
                        | G::OtherLetter
                        | G::NonspacingMark
                        | G::SpacingMark
                        | G::EnclosingMark
                        | G::DecimalNumber
                        | G::LetterNumber
                        | G::OtherNumber
                )
            };
            if !allowed {
                let what = if c.is_whitespace() {
                    "whitespace"
                } else if c.is_control() {
                    "control characters"
                } else if get_general_category(c) == G::Format {
                    "invisible format characters"
                } else {
                    "this character"
                };
                return bad(format!("must not contain {what} (U+{:04X})", c as u32));
            }
        }
        if !unicode_normalization::is_nfc(raw) {
            return bad("must be in Unicode normalization form C (NFC)".into());
        }
        if raw.split('/').any(|seg| seg == "." || seg == "..") {
            return bad("must not have a . or .. path segment".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a resource id sent by a client: 1-128 bytes.
pub fn check_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > 128 {
        return Err(Error::invalid("id", "must be 1-128 bytes"));
    }
    Ok(())
}

/// A new resource id: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_that_differ_invisibly_are_refused() {
        for ok in [
            "alice",
            "auth0|5f3a9c",
            "google-oauth2|1234567890",
            "a.b+tag@example.com",
            "0190c3a2-7b4e-7c1d-9f00-1a2b3c4d5e6f",
            "repo:org/app:ref:refs/heads/main",
            "spiffe://prod/ns/app",
            "José",
            "山田",
        ] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("alice\u{200b}", "format"),
            ("\u{feff}alice", "format"),
            ("ali\u{200d}ce", "format"),
            ("alice\u{202e}", "format"),
            ("*", "character"),
            ("../bob", "segment"),
            ("a/./b", "segment"),
            ("bob/..", "segment"),
            ("Jose\u{301}", "NFC"),
            ("a b", "whitespace"),
            ("a\u{7}", "control"),
            ("emoji\u{1F600}", "character"),
        ] {
            match UserId::parse(bad) {
                Err(Error::InvalidArgument(v)) => {
                    assert!(v[0].description.contains(why), "{bad:?}: {v:?}")
                }
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(a < b, "{a} should sort before {b}");
    }
}
