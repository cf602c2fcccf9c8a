//! The document store's integration tests: the shared conformance suite
//! against the embedded SQLite backend on disk, plus what only that backend
//! promises (durability across reopen).

mod sqlite;
