//! The JSON shapes chains ask for: a small schema language that both
//! constrains decoding and validates any backend's output, and that renders
//! as standard JSON Schema for backends that take one.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// An object with exactly these properties, all required, in this order.
    Object(Vec<(String, Schema)>),
    /// A string of `1..=max_chars` characters, no control characters.
    String { max_chars: usize },
    /// One of these strings.
    Enum(Vec<String>),
    /// A phrase of `1..=max_chars` characters without digits, markup or
    /// links ([`is_plain`]); when `first_words` has any, it starts with one
    /// of them and a space; when `one_clause`, it has no `.`, `;`, `!` or
    /// `?`, and no ", but".
    Phrase {
        max_chars: usize,
        first_words: Vec<String>,
        one_clause: bool,
    },
    /// An integer in `min..=max` (`min >= 0`).
    Integer { min: u64, max: u64 },
    /// `min..=max` items of one schema.
    Array {
        items: Box<Schema>,
        min: usize,
        max: usize,
    },
}

/// Where a value breaks its schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SchemaError {
    pub path: String,
    pub reason: String,
}

fn fail(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError {
        path: path.into(),
        reason: reason.into(),
    }
}

impl Schema {
    pub fn object(fields: impl IntoIterator<Item = (&'static str, Schema)>) -> Self {
        Schema::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn string(max_chars: usize) -> Self {
        Schema::String { max_chars }
    }

    /// A plain phrase; one clause when it has first words.
    pub fn phrase(max_chars: usize, first_words: &[&str]) -> Self {
        Schema::Phrase {
            max_chars,
            first_words: first_words.iter().map(|s| (*s).to_owned()).collect(),
            one_clause: !first_words.is_empty(),
        }
    }

    /// One plain clause.
    pub fn clause(max_chars: usize) -> Self {
        Schema::Phrase {
            max_chars,
            first_words: Vec::new(),
            one_clause: true,
        }
    }

    pub fn one_of(options: &[&str]) -> Self {
        Schema::Enum(options.iter().map(|s| (*s).to_owned()).collect())
    }

    pub fn integer(min: u64, max: u64) -> Self {
        Schema::Integer { min, max }
    }

    pub fn array(items: Schema, min: usize, max: usize) -> Self {
        Schema::Array {
            items: Box::new(items),
            min,
            max,
        }
    }

    /// Checks `value` against the schema; extra properties are errors.
    pub fn validate(&self, value: &Value) -> Result<(), SchemaError> {
        self.check(value, "$")
    }

    fn check(&self, value: &Value, path: &str) -> Result<(), SchemaError> {
        match self {
            Schema::Object(fields) => {
                let Value::Object(map) = value else {
                    return Err(fail(path, "must be an object"));
                };
                for (key, schema) in fields {
                    let child = format!("{path}.{key}");
                    let v = map.get(key).ok_or_else(|| fail(&child, "is missing"))?;
                    schema.check(v, &child)?;
                }
                if let Some(extra) = map.keys().find(|k| !fields.iter().any(|(f, _)| f == *k)) {
                    return Err(fail(&format!("{path}.{extra}"), "is not expected"));
                }
                Ok(())
            }
            Schema::String { max_chars } => {
                let Value::String(s) = value else {
                    return Err(fail(path, "must be a string"));
                };
                let n = s.chars().count();
                if s.trim().is_empty() || n > *max_chars {
                    return Err(fail(path, format!("must have 1-{max_chars} characters")));
                }
                if s.chars().any(char::is_control) {
                    return Err(fail(path, "must not hold control characters"));
                }
                Ok(())
            }
            Schema::Phrase {
                max_chars,
                first_words,
                one_clause,
            } => {
                Schema::String {
                    max_chars: *max_chars,
                }
                .check(value, path)?;
                let s = value.as_str().unwrap_or_default();
                if !is_plain(s) {
                    return Err(fail(path, "must not hold digits, markup or links"));
                }
                if *one_clause
                    && (s.contains(|c| CLAUSE_ENDS.contains(c))
                        || s.to_lowercase().contains(", but "))
                {
                    return Err(fail(path, "must be one clause, without . ; ! or ?"));
                }
                if !first_words.is_empty()
                    && !first_words.iter().any(|w| {
                        s.strip_prefix(w.as_str())
                            .is_some_and(|r| r.starts_with(' '))
                    })
                {
                    return Err(fail(path, "must start with one of the allowed words"));
                }
                Ok(())
            }
            Schema::Enum(options) => match value {
                Value::String(s) if options.contains(s) => Ok(()),
                _ => Err(fail(path, format!("must be one of {}", options.join(", ")))),
            },
            Schema::Integer { min, max } => match value.as_u64() {
                Some(n) if (*min..=*max).contains(&n) => Ok(()),
                _ => Err(fail(path, format!("must be an integer in {min}-{max}"))),
            },
            Schema::Array { items, min, max } => {
                let Value::Array(values) = value else {
                    return Err(fail(path, "must be an array"));
                };
                if !(*min..=*max).contains(&values.len()) {
                    return Err(fail(path, format!("must have {min}-{max} items")));
                }
                values
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, v)| items.check(v, &format!("{path}[{i}]")))
            }
        }
    }

    /// The schema as standard JSON Schema.
    pub fn to_json_schema(&self) -> Value {
        match self {
            Schema::Object(fields) => json!({
                "type": "object",
                "properties": fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json_schema()))
                    .collect::<serde_json::Map<_, _>>(),
                "required": fields.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
                "additionalProperties": false,
            }),
            Schema::String { max_chars } => {
                json!({"type": "string", "minLength": 1, "maxLength": max_chars})
            }
            Schema::Phrase {
                max_chars,
                first_words,
                one_clause,
            } => {
                let ends = if *one_clause { CLAUSE_ENDS } else { "" };
                let rest = format!("[^0-9{}{}]*", regex_class(FORBIDDEN), regex_class(ends));
                let pattern = if first_words.is_empty() {
                    format!("^{rest}$")
                } else {
                    format!("^(?:{}) {rest}$", first_words.join("|"))
                };
                json!({"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": pattern})
            }
            Schema::Enum(options) => json!({"type": "string", "enum": options}),
            Schema::Integer { min, max } => {
                json!({"type": "integer", "minimum": min, "maximum": max})
            }
            Schema::Array { items, min, max } => json!({
                "type": "array",
                "items": items.to_json_schema(),
                "minItems": min,
                "maxItems": max,
            }),
        }
    }
}

/// Characters that end a clause, which a one-clause [`Schema::Phrase`]
/// may not hold.
pub const CLAUSE_ENDS: &str = ".;!?";

/// Characters a [`Schema::Phrase`] may not hold, besides digits.
pub const FORBIDDEN: &str = "<>[]{}*#`|\\~^_=@$&/";

/// Whether `text` has no digit or other numeral ("¾"), no character of
/// [`FORBIDDEN`] and no control character.
pub fn is_plain(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_numeric() || c.is_control() || FORBIDDEN.contains(c))
}

fn regex_class(chars: &str) -> String {
    chars
        .chars()
        .map(|c| {
            if "[]\\^-".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakdown() -> Schema {
        Schema::object([(
            "blocks",
            Schema::array(
                Schema::object([
                    ("title", Schema::string(80)),
                    ("minutes", Schema::integer(5, 120)),
                    ("kind", Schema::one_of(&["work", "break"])),
                ]),
                1,
                3,
            ),
        )])
    }

    #[test]
    fn valid_values_pass_and_each_violation_names_its_path() {
        let s = breakdown();
        let ok = json!({"blocks": [{"title": "Draft", "minutes": 25, "kind": "work"}]});
        assert_eq!(s.validate(&ok), Ok(()));
        for (bad, path) in [
            (json!({"blocks": []}), "$.blocks"),
            (
                json!({"blocks": [{"title": "", "minutes": 25, "kind": "work"}]}),
                "$.blocks[0].title",
            ),
            (
                json!({"blocks": [{"title": "x", "minutes": 4, "kind": "work"}]}),
                "$.blocks[0].minutes",
            ),
            (
                json!({"blocks": [{"title": "x", "minutes": 5, "kind": "nap"}]}),
                "$.blocks[0].kind",
            ),
            (
                json!({"blocks": [{"title": "x", "minutes": 5}]}),
                "$.blocks[0].kind",
            ),
            (json!({"blocks": [], "extra": 1}), "$.blocks"),
            (json!([1]), "$"),
        ] {
            let err = s.validate(&bad).expect_err("invalid");
            assert_eq!(err.path, path, "{bad}");
        }
    }

    #[test]
    fn phrases_start_with_an_allowed_word_and_hold_no_digits_or_markup() {
        let s = Schema::phrase(40, &["Book", "Draft"]);
        assert_eq!(s.validate(&json!("Book the venue")), Ok(()));
        for bad in [
            "Booking the venue",
            "The venue",
            "Book the 3 rooms",
            "Book ¾ of it",
            "Draft </br>",
            "Book",
        ] {
            assert!(s.validate(&json!(bad)).is_err(), "{bad}");
        }
        let js = s.to_json_schema();
        assert_eq!(
            js["pattern"],
            "^(?:Book|Draft) [^0-9<>\\[\\]{}*#`|\\\\~\\^_=@$&/.;!?]*$"
        );
        assert!(s.validate(&json!("Book the venue. Then")).is_err());
        assert_eq!(Schema::phrase(9, &[]).validate(&json!("any words")), Ok(()));
        assert!(Schema::clause(20).validate(&json!("One. Two")).is_err());
        assert!(
            Schema::clause(30)
                .validate(&json!("It runs, but slowly"))
                .is_err()
        );
    }

    #[test]
    fn renders_standard_json_schema() {
        let js = breakdown().to_json_schema();
        assert_eq!(js["properties"]["blocks"]["maxItems"], 3);
        assert_eq!(js["properties"]["blocks"]["items"]["required"][2], "kind");
        assert_eq!(js["additionalProperties"], false);
    }
}
