//! Idempotent workflows: the answer of a call made with an idempotency key
//! is kept for a day, so a retry gets it back instead of running the
//! workflow again. The writes inside a workflow are idempotent on their own
//! (the task and the plan are created with request ids derived from the
//! key), so two calls racing with one key, or a retry after a crash, still
//! make one task.

use std::sync::Arc;

use base64::Engine;
use focusforge_core::{Clock, Error, UserId};
use focusforge_store::page_token::fingerprint;
use focusforge_store::{NewDocument, SharedStore, StoreError};
use prost::Message;
use serde_json::{Value, json};
use tonic::Status;

use focusforge_grpc::into_status;

/// The collection of kept answers.
pub const COLLECTION: &str = "orchestrator_replays";

pub struct Replays {
    store: SharedStore,
    clock: Arc<dyn Clock>,
}

fn id(scope: &str, key: &str) -> String {
    format!("{scope}-{:016x}", fingerprint(key))
}

fn request_print<R: Message>(request: &R) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.encode(request.encode_to_vec());
    format!("{:016x}", fingerprint(&bytes))
}

fn store_error(e: StoreError) -> Status {
    into_status(e.into_domain("kept answer"))
}

impl Replays {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The kept answer of `key`; INVALID_ARGUMENT when the key was used for
    /// another request.
    pub async fn find<M: Message + Default, R: Message>(
        &self,
        user: &UserId,
        scope: &str,
        key: &str,
        request: &R,
    ) -> Result<Option<M>, Status> {
        let Some(doc) = self
            .store
            .get(COLLECTION, user, &id(scope, key))
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        decode(&doc.body, key, &request_print(request)).map(Some)
    }

    /// Keeps `answer` for `key` and returns it, or the answer a concurrent
    /// call with the same key kept first.
    pub async fn keep<M: Message + Default, R: Message>(
        &self,
        user: &UserId,
        scope: &str,
        key: &str,
        request: &R,
        answer: M,
    ) -> Result<M, Status> {
        let print = request_print(request);
        let doc = NewDocument {
            id: id(scope, key),
            user_id: user.clone(),
            body: json!({
                "key": key,
                "request": print,
                "answer": base64::engine::general_purpose::STANDARD.encode(answer.encode_to_vec()),
            }),
            expires_at: Some(self.clock.now() + focusforge_store::requests::RETENTION),
        };
        match self.store.insert(COLLECTION, doc.clone()).await {
            Ok(_) => Ok(answer),
            Err(StoreError::AlreadyExists) => {
                match self
                    .store
                    .get(COLLECTION, user, &doc.id)
                    .await
                    .map_err(store_error)?
                {
                    Some(found) => decode(&found.body, key, &print),
                    None => Ok(answer),
                }
            }
            Err(e) => Err(store_error(e)),
        }
    }
}

fn decode<M: Message + Default>(body: &Value, key: &str, print: &str) -> Result<M, Status> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    if text("key") != key || text("request") != print {
        return Err(into_status(Error::invalid(
            "idempotency_key",
            "was used for a different request",
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text("answer"))
        .map_err(|e| Status::internal(format!("a kept answer is damaged: {e}")))?;
    M::decode(bytes.as_slice())
        .map_err(|e| Status::internal(format!("a kept answer is damaged: {e}")))
}
