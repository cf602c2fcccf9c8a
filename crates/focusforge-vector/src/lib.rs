//! Vector tables in Lance datasets, searched per user.
//!
//! A table is one Lance dataset (a directory under the data directory, or an
//! object-store URI) with the columns `id`, `user_id`, `text`, `vector`
//! (fixed-size list of f32) and `created_at`. Lance is the durable store:
//! every write is a committed version, so a crash mid-write leaves the table
//! readable at its last committed version.
//!
//! Search is always for one user, and one user's rows are few next to the
//! table, so the table answers with an exact scan of that user's vectors,
//! kept in memory once read (each user's rows are read through a filter on
//! `user_id` the first time they are searched). Exact search has recall 1 by
//! construction.

mod table;

pub use table::{Hit, VectorRecord, VectorTable};

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The caller sent something unusable (a wrong dimension, a NaN, ...).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Lance failed: I/O, a corrupt dataset, an unreachable object store.
    #[error("vector store: {0}")]
    Storage(String),
}

impl From<lance::Error> for VectorError {
    fn from(e: lance::Error) -> Self {
        VectorError::Storage(e.to_string())
    }
}

impl From<lance::deps::arrow_schema::ArrowError> for VectorError {
    fn from(e: lance::deps::arrow_schema::ArrowError) -> Self {
        VectorError::Storage(e.to_string())
    }
}
