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
    fn renders_standard_json_schema() {
        let js = breakdown().to_json_schema();
        assert_eq!(js["properties"]["blocks"]["maxItems"], 3);
        assert_eq!(js["properties"]["blocks"]["items"]["required"][2], "kind");
        assert_eq!(js["additionalProperties"], false);
    }
}
