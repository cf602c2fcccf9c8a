//! Vector tables in Lance datasets, searched per user.
//!
//! A table is one Lance dataset (a directory under the data directory, or an
//! object-store URI) with the columns `id`, `user_id`, `text`, `vector`
//! (fixed-size list of f32) and `created_at`. Lance is the durable store:
//! every write is a committed version, so a crash mid-write leaves the table
//! readable at its last committed version.
//!
//! Search is always for one user, and one user's rows are few next to the
//! table, so the layout is per user: each user's rows are read once through
//! a filter on `user_id`, kept in memory in step with writes, and searched
//! there.
//!
//! - Vector search scores every one of the user's rows exactly (recall 1),
//!   until the user has `ann_min_rows` rows; from then on an IVF-Flat index
//!   of that user's rows, built and refreshed on a background thread, picks
//!   the partitions to score (rows added since the build are always scored).
//! - Keyword search ranks the user's rows by BM25 over a per-user inverted
//!   index, so term statistics are the user's own.
//! - Hybrid search fuses both rankings with reciprocal rank fusion, and every
//!   hit carries its score parts (ranks, cosine, BM25, matched terms).

mod ivf;
mod keyword;
pub mod synthetic;
mod table;

pub use ivf::IvfParams;
pub use keyword::terms;
pub use table::{
    Hit, KeywordPart, Optimized, RRF_K, ScoreParts, TableOptions, VectorPart, VectorRecord,
    VectorTable,
};

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
