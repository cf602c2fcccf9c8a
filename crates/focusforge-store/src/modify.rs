//! Read-modify-write on one document under optimistic concurrency.

use focusforge_core::{Error, UserId};
use serde_json::Value;

use crate::{Document, DocumentStore, Precondition, StoreError};

/// How often a write is tried before giving up under contention. Each lost
/// race means another writer won, so n concurrent writers need at most n
/// tries; the jittered pause spreads writers that keep colliding.
const ATTEMPTS: u32 = 32;

/// Reads the user's document, lets `change` compute a new body from it and
/// writes that back on condition that nobody changed the document since it
/// was read; on a lost race it reads again and retries. With
/// `expected_version`, the caller pins the version instead, and a mismatch is
/// reported rather than retried.
///
/// `change` returns `Ok(None)` when there is nothing to write; the current
/// document is returned as it is. `what` names the document in `NotFound`.
pub async fn modify<F>(
    store: &dyn DocumentStore,
    collection: &str,
    user: &UserId,
    id: &str,
    what: &str,
    expected_version: Option<i64>,
    mut change: F,
) -> Result<Document, Error>
where
    F: FnMut(&Document) -> Result<Option<Value>, Error>,
{
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let cap_ms = 1u64 << attempt.min(5);
            let pause = rand::random_range(0..=cap_ms * 1000);
            tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
        }
        let doc = store
            .get(collection, user, id)
            .await
            .map_err(|e| e.into_domain(what))?
            .ok_or_else(|| Error::NotFound(what.to_owned()))?;
        if let Some(expected) = expected_version
            && expected != doc.version
        {
            return Err(Error::VersionMismatch {
                expected,
                actual: doc.version,
            });
        }
        let Some(body) = change(&doc)? else {
            return Ok(doc);
        };
        let written = store
            .replace(
                collection,
                user,
                id,
                body,
                doc.expires_at,
                Precondition::Version(doc.version),
            )
            .await;
        match written {
            Ok(doc) => return Ok(doc),
            Err(StoreError::VersionMismatch { .. }) if expected_version.is_none() => continue,
            Err(e) => return Err(e.into_domain(what)),
        }
    }
    Err(Error::Unavailable(format!(
        "{what} is being changed concurrently, try again"
    )))
}
