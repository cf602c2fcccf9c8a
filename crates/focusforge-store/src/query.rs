use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Document, StoreError};

/// A condition on a body field, named by a dotted path (`status`,
/// `schedule.day`). Timestamps in bodies are stored as epoch milliseconds so
/// every backend compares them as numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// The field equals the value.
    Eq(String, Value),
    /// The field equals one of the values.
    In(String, Vec<Value>),
    /// The field is an array that contains the value.
    Contains(String, Value),
    /// The field is a number in `[gte, lt)`; either bound may be open.
    Range {
        field: String,
        gte: Option<i64>,
        lt: Option<i64>,
    },
    /// The document's own `created_at` lies in `[gte, lt)`.
    CreatedBetween {
        gte: Option<DateTime<Utc>>,
        lt: Option<DateTime<Utc>>,
    },
    /// The document's own `updated_at` (its last write) lies in `[gte, lt)`.
    UpdatedBetween {
        gte: Option<DateTime<Utc>>,
        lt: Option<DateTime<Utc>>,
    },
}

impl Filter {
    pub fn eq(field: &str, value: impl Into<Value>) -> Self {
        Filter::Eq(field.to_owned(), value.into())
    }

    pub(crate) fn field(&self) -> Option<&str> {
        match self {
            Filter::Eq(f, _) | Filter::In(f, _) | Filter::Contains(f, _) => Some(f),
            Filter::Range { field, .. } => Some(field),
            Filter::CreatedBetween { .. } | Filter::UpdatedBetween { .. } => None,
        }
    }
}

/// Which metadata timestamp orders a listing; ties break on id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortKey {
    #[default]
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    pub key: SortKey,
    pub descending: bool,
}

/// Where a page ended: the sort key (epoch ms) and id of its last document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub key: i64,
    pub id: String,
}

impl Cursor {
    pub fn after(doc: &Document, key: SortKey) -> Self {
        let at = match key {
            SortKey::CreatedAt => doc.created_at,
            SortKey::UpdatedAt => doc.updated_at,
        };
        Cursor {
            key: at.timestamp_millis(),
            id: doc.id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub filters: Vec<Filter>,
    pub order: Order,
    /// 1..=1000
    pub limit: usize,
    pub after: Option<Cursor>,
}

impl Query {
    pub const MAX_LIMIT: usize = 1000;

    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.limit == 0 || self.limit > Self::MAX_LIMIT {
            return Err(StoreError::InvalidQuery(format!(
                "limit must be 1-{}, got {}",
                Self::MAX_LIMIT,
                self.limit
            )));
        }
        check_filters(&self.filters)
    }
}

pub(crate) fn check_filters(filters: &[Filter]) -> Result<(), StoreError> {
    for f in filters {
        if let Some(field) = f.field() {
            check_field(field)?;
        }
    }
    Ok(())
}

/// Field paths are `seg(.seg)*` with `seg = [a-z_][a-z0-9_]*`, so a path can
/// never smuggle syntax into a backend's query language.
fn check_field(path: &str) -> Result<(), StoreError> {
    let ok = path.len() <= 128
        && path.split('.').all(|seg| {
            seg.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidQuery(format!("bad field path {path:?}")))
    }
}

/// The most documents one [`crate::DocumentStore::scan`] returns.
pub const MAX_SCAN: usize = 10_000;

pub(crate) fn check_scan(filters: &[Filter], limit: usize) -> Result<(), StoreError> {
    if limit == 0 || limit > MAX_SCAN {
        return Err(StoreError::InvalidQuery(format!(
            "scan limit must be 1-{MAX_SCAN}, got {limit}"
        )));
    }
    check_filters(filters)
}

/// What a scan found: up to its limit of documents, in no particular order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scan {
    pub documents: Vec<Document>,
    /// More documents matched than the limit let through.
    pub truncated: bool,
}

impl Scan {
    pub(crate) fn from_overfetch(mut documents: Vec<Document>, limit: usize) -> Self {
        let truncated = documents.len() > limit;
        documents.truncate(limit);
        Scan {
            documents,
            truncated,
        }
    }
}

/// A page of documents and the cursor of the next page, if there is one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub documents: Vec<Document>,
    pub next: Option<Cursor>,
}

impl Page {
    /// Builds a page from up to `limit + 1` documents fetched in order: the
    /// extra one only says that there is a next page.
    pub(crate) fn from_overfetch(mut documents: Vec<Document>, query: &Query) -> Self {
        let next = if documents.len() > query.limit {
            documents.truncate(query.limit);
            documents.last().map(|d| Cursor::after(d, query.order.key))
        } else {
            None
        };
        Page { documents, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_reject_syntax() {
        assert!(check_field("status").is_ok());
        assert!(check_field("a.b_c.d2").is_ok());
        for bad in ["", "A", "a..b", "a'", "a) OR 1=1 --", "$.x", "a[0]", "1a"] {
            assert!(check_field(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
