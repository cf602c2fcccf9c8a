//! Idempotent workflows: a call with an idempotency key first binds the key
//! to its request, then keeps its answer for a day once every write of it
//! went through, so a retry gets the answer back instead of running the
//! workflow again. The writes inside a workflow are idempotent on their own
//! (the task and the plan are created with request ids derived from the
//! key), so two calls racing with one key, or a retry after a crash or a
//! failed write, still make one task.

use std::sync::Arc;

use base64::Engine;
use focusforge_core::{Clock, Error, UserId};
use focusforge_store::page_token::fingerprint;
use focusforge_store::{NewDocument, Precondition, SharedStore, StoreError};
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

/// What a call with an idempotency key does.
pub enum Begun<M> {
    /// The first call with this request finished: its answer.
    Done(M),
    /// Run the workflow: this is the first call, or the first has not kept
    /// an answer (it is still running, or died, or a write of it failed).
    /// The workflow's writes are idempotent, so running again makes
    /// nothing twice.
    Run,
}

impl Replays {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Binds `key` to this request before anything is written, so a
    /// different request with the same key is INVALID_ARGUMENT even while
    /// the first is running; the kept answer, if there is one.
    pub async fn begin<M: Message + Default, R: Message>(
        &self,
        user: &UserId,
        scope: &str,
        key: &str,
        request: &R,
    ) -> Result<Begun<M>, Status> {
        let print = request_print(request);
        let doc = NewDocument {
            id: id(scope, key),
            user_id: user.clone(),
            body: json!({ "key": key, "request": print }),
            expires_at: Some(self.clock.now() + focusforge_store::requests::RETENTION),
        };
        match self.store.insert(COLLECTION, doc.clone()).await {
            Ok(_) => Ok(Begun::Run),
            Err(StoreError::AlreadyExists) => {
                match self
                    .store
                    .get(COLLECTION, user, &doc.id)
                    .await
                    .map_err(store_error)?
                {
                    Some(found) => Ok(match decode(&found.body, key, &print)? {
                        Some(answer) => Begun::Done(answer),
                        None => Begun::Run,
                    }),
                    // Expired between the two reads: a fresh start.
                    None => Ok(Begun::Run),
                }
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Keeps `answer` for `key` and returns it, or the answer a concurrent
    /// call with the same request kept first.
    pub async fn keep<M: Message + Default, R: Message>(
        &self,
        user: &UserId,
        scope: &str,
        key: &str,
        request: &R,
        answer: M,
    ) -> Result<M, Status> {
        let print = request_print(request);
        let doc_id = id(scope, key);
        let body = json!({
            "key": key,
            "request": print,
            "answer": base64::engine::general_purpose::STANDARD.encode(answer.encode_to_vec()),
        });
        let expires = Some(self.clock.now() + focusforge_store::requests::RETENTION);
        let Some(found) = self
            .store
            .get(COLLECTION, user, &doc_id)
            .await
            .map_err(store_error)?
        else {
            // The claim expired under a day-long call: kept afresh.
            let doc = NewDocument {
                id: doc_id,
                user_id: user.clone(),
                body,
                expires_at: expires,
            };
            return match self.store.insert(COLLECTION, doc).await {
                Ok(_) | Err(StoreError::AlreadyExists) => Ok(answer),
                Err(e) => Err(store_error(e)),
            };
        };
        if let Some(first) = decode(&found.body, key, &print)? {
            return Ok(first);
        }
        match self
            .store
            .replace(
                COLLECTION,
                user,
                &doc_id,
                body,
                expires,
                Precondition::Version(found.version),
            )
            .await
        {
            Ok(_) => Ok(answer),
            // A concurrent call kept its answer first: that one stands.
            Err(StoreError::VersionMismatch { .. }) => {
                let first = self
                    .store
                    .get(COLLECTION, user, &doc_id)
                    .await
                    .map_err(store_error)?
                    .map(|d| decode(&d.body, key, &print))
                    .transpose()?
                    .flatten();
                Ok(first.unwrap_or(answer))
            }
            Err(e) => Err(store_error(e)),
        }
    }
}

/// The answer kept in `body`, `None` while there is none; INVALID_ARGUMENT
/// when the key was bound to another request.
fn decode<M: Message + Default>(body: &Value, key: &str, print: &str) -> Result<Option<M>, Status> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    if text("key") != key || text("request") != print {
        return Err(into_status(Error::invalid(
            "idempotency_key",
            "was used for a different request",
        )));
    }
    let Some(answer) = body.get("answer").and_then(Value::as_str) else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer)
        .map_err(|e| Status::internal(format!("a kept answer is damaged: {e}")))?;
    M::decode(bytes.as_slice())
        .map(Some)
        .map_err(|e| Status::internal(format!("a kept answer is damaged: {e}")))
}
