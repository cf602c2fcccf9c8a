//! The document store's integration tests: the shared conformance suite
//! against every backend (SQLite on disk, MongoDB over the wire), plus what
//! only one backend promises.

mod mongo;
mod sqlite;
