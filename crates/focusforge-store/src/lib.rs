//! The document store port: collections of JSON documents keyed by id and
//! scoped by user, with secondary filters, keyset pagination, optimistic
//! concurrency and per-document expiry.
//!
//! Every operation takes the owning [`UserId`]: there is no call that reads or
//! writes across users, so isolation does not depend on each caller
//! remembering a filter. Backends: [`SqliteStore`] (the embedded default)
//! and [`MongoStore`] (production).
//! [`conformance`] holds the suite every backend must pass.

mod changes;
mod error;
mod modify;
mod mongo;
pub mod page_token;
mod query;
pub mod requests;
mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use focusforge_core::UserId;
use serde_json::Value;

pub use changes::{Changes, changes};
pub use error::StoreError;
pub use modify::modify;
pub use mongo::{MongoSettings, MongoStore};
pub use query::{Cursor, Filter, MAX_SCAN, Order, Page, Query, Scan, SortKey};
pub use sqlite::SqliteStore;

/// A collection a service owns, declared in its kit module: the body
/// fields it is queried by (MongoDB indexes each after `user_id`). Every
/// collection also has the common indexes: user + creation time, user +
/// update time, and expiry (a document's `expires_at` hides and then
/// removes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    pub name: &'static str,
    /// Body field paths, e.g. `body.status`.
    pub indexes: &'static [&'static str],
}

/// A stored document. `body` is always a JSON object; the metadata lives
/// beside it so no backend has to trust the body for identity or expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub user_id: UserId,
    /// Starts at 1 and increases by one on every replace.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// After this instant the document is never returned, swept or not.
    pub expires_at: Option<DateTime<Utc>>,
    pub body: Value,
}

/// A document to insert.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub id: String,
    pub user_id: UserId,
    pub body: Value,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A write's condition on the stored version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    /// Write whatever the stored version is.
    #[default]
    None,
    /// Write only if the stored version equals this one.
    Version(i64),
}

/// The port. Implementations must pass the [`conformance`] suite.
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Inserts a new document; `AlreadyExists` if a live one has that id.
    async fn insert(&self, collection: &str, doc: NewDocument) -> Result<Document, StoreError>;

    /// Returns the user's live document with that id.
    async fn get(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
    ) -> Result<Option<Document>, StoreError>;

    /// Replaces the body (and expiry) of the user's live document, bumping
    /// its version. `NotFound` if absent, `VersionMismatch` if the
    /// precondition fails.
    async fn replace(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
        body: Value,
        expires_at: Option<DateTime<Utc>>,
        precondition: Precondition,
    ) -> Result<Document, StoreError>;

    /// Deletes the user's live document. `NotFound` if absent.
    async fn delete(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError>;

    /// Deletes all of the user's documents in a collection that match every
    /// filter; returns how many live ones were deleted.
    async fn delete_many(
        &self,
        collection: &str,
        user: &UserId,
        filters: &[Filter],
    ) -> Result<u64, StoreError>;

    /// One page of the user's live documents matching the query.
    async fn find(
        &self,
        collection: &str,
        user: &UserId,
        query: &Query,
    ) -> Result<Page, StoreError>;

    /// Up to `limit` (1..=[`MAX_SCAN`]) of the user's live documents matching
    /// every filter, in no particular order: a range read without the cost
    /// of ordering, for readers that take every match (see [`changes`]).
    async fn scan(
        &self,
        collection: &str,
        user: &UserId,
        filters: &[Filter],
        limit: usize,
    ) -> Result<Scan, StoreError>;

    /// Physically removes expired documents of every collection; returns how many.
    async fn purge_expired(&self) -> Result<u64, StoreError>;
}

/// A shared handle on some backend.
pub type SharedStore = Arc<dyn DocumentStore>;

/// Every document body is a JSON object.
pub(crate) fn check_object(body: &Value) -> Result<(), StoreError> {
    if body.is_object() {
        Ok(())
    } else {
        Err(StoreError::InvalidQuery(
            "document body must be a JSON object".into(),
        ))
    }
}

/// Checks a collection name: `[a-z][a-z0-9_]*`, at most 64 bytes.
pub(crate) fn check_collection(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidQuery(format!(
            "bad collection name {name:?}"
        )))
    }
}
