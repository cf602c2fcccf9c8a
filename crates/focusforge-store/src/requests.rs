//! Idempotent creates. A caller that may retry a create sends a request id;
//! the first create with it claims the id its document gets, and every
//! retry within the retention is handed that same id, so a document is
//! never made twice: a retry either finds it, or (when the first attempt
//! was cut short between the claim and the insert) makes it under the
//! claimed id, where a second concurrent insert fails `AlreadyExists`.

use chrono::{DateTime, Duration, Utc};
use focusforge_core::UserId;
use serde_json::{Value, json};

use crate::page_token::fingerprint;
use crate::{DocumentStore, NewDocument, StoreError};

/// The collection of claims, shared by every service's creates.
pub const COLLECTION: &str = "request_ids";

/// How long a claim is kept: a retry later than this creates anew.
pub const RETENTION: Duration = Duration::hours(24);

/// Most bytes of a request id.
pub const MAX_BYTES: usize = 128;

/// The claimed id and whether this call made the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub id: String,
    pub first: bool,
}

fn claim_key(scope: &str, request_id: &str) -> String {
    format!("{scope}-{:016x}", fingerprint(request_id))
}

/// Whether `request_id` was claimed in `scope` within the retention: for
/// effects that cannot be undone (a message sent), checked before the
/// effect and claimed after it, so a failure in between repeats the effect
/// rather than losing it.
pub async fn is_claimed(
    store: &dyn DocumentStore,
    user: &UserId,
    scope: &str,
    request_id: &str,
) -> Result<bool, StoreError> {
    Ok(store
        .get(COLLECTION, user, &claim_key(scope, request_id))
        .await?
        .is_some_and(|found| {
            found.body.get("request_id").and_then(Value::as_str) == Some(request_id)
                && found.body.get("scope").and_then(Value::as_str) == Some(scope)
        }))
}

/// Claims `fresh` as the id of the document `request_id` creates in
/// `scope` (e.g. `tasks`), or returns the id claimed before.
pub async fn claim(
    store: &dyn DocumentStore,
    user: &UserId,
    scope: &str,
    request_id: &str,
    fresh: String,
    now: DateTime<Utc>,
) -> Result<Claim, StoreError> {
    let key = claim_key(scope, request_id);
    let body = json!({ "id": fresh, "scope": scope, "request_id": request_id });
    // A claim that expires between a failed insert and the read is claimed
    // again; a few rounds settle it.
    for _ in 0..3 {
        let doc = NewDocument {
            id: key.clone(),
            user_id: user.clone(),
            body: body.clone(),
            expires_at: Some(now + RETENTION),
        };
        match store.insert(COLLECTION, doc).await {
            Ok(_) => {
                return Ok(Claim {
                    id: fresh,
                    first: true,
                });
            }
            Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
        let Some(found) = store.get(COLLECTION, user, &key).await? else {
            continue;
        };
        let same = found.body.get("request_id").and_then(Value::as_str) == Some(request_id)
            && found.body.get("scope").and_then(Value::as_str) == Some(scope);
        let id = found.body.get("id").and_then(Value::as_str);
        return match (same, id) {
            (true, Some(id)) => Ok(Claim {
                id: id.to_owned(),
                first: false,
            }),
            // Two request ids with one fingerprint: refused rather than
            // answered with another request's document.
            _ => Err(StoreError::AlreadyExists),
        };
    }
    Err(StoreError::Backend(
        "the request id's claim keeps expiring".into(),
    ))
}
