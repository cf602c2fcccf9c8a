use std::sync::Arc;

use chrono::{DateTime, Utc};
use focusforge_core::{Clock, Error, Result, UserId, Violations, check_id, new_id};
use focusforge_store::page_token;
use focusforge_store::{
    Document, Filter, NewDocument, Order, Precondition, Query, SharedStore, SortKey, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{assign_block_ids, normalize_blocks, normalize_tags};
use crate::{
    COLLECTION, NewTask, Priority, Status, Task, TaskFilter, TaskPatch, WorkBlock, limits,
};

/// The stored body of a task. Timestamps are epoch milliseconds so every
/// store backend filters them as numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    title: String,
    description: String,
    status: Status,
    priority: Priority,
    estimated_minutes: i32,
    due_at: Option<i64>,
    tags: Vec<String>,
    blocks: Vec<WorkBlock>,
    completion_proof: String,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    #[serde(default)]
    estimated_pomodoros: i32,
    #[serde(default)]
    focus_minutes: i32,
    /// The focus sessions counted, oldest first, at most
    /// `limits::SESSIONS_REMEMBERED`; their number is kept apart.
    #[serde(default)]
    focus_sessions: Vec<String>,
    #[serde(default)]
    completed_pomodoros: i32,
    #[serde(default)]
    earliest_start_at: Option<i64>,
    #[serde(default)]
    min_chunk_minutes: i32,
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn to_task(doc: Document) -> Result<Task> {
    let mut body: Body = serde_json::from_value(doc.body)
        .map_err(|e| Error::internal(format!("task {} is unreadable: {e}", doc.id)))?;
    // Blocks stored before blocks had ids: named by their order, which is
    // unique within the task, until the next write stores the id.
    for b in body.blocks.iter_mut().filter(|b| b.id.is_empty()) {
        b.id = format!("o{}", b.order);
    }
    Ok(Task {
        id: doc.id,
        user_id: doc.user_id,
        title: body.title,
        description: body.description,
        status: body.status,
        priority: body.priority,
        estimated_minutes: body.estimated_minutes,
        due_at: body.due_at.map(from_ms),
        tags: body.tags,
        blocks: body.blocks,
        completion_proof: body.completion_proof,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        started_at: body.started_at.map(from_ms),
        completed_at: body.completed_at.map(from_ms),
        version: doc.version,
        estimated_pomodoros: body.estimated_pomodoros,
        completed_pomodoros: body.completed_pomodoros,
        focus_minutes: body.focus_minutes,
        earliest_start_at: body.earliest_start_at.map(from_ms),
        min_chunk_minutes: body.min_chunk_minutes,
    })
}

fn to_json(body: &Body) -> Result<Value> {
    serde_json::to_value(body).map_err(Error::internal)
}

pub(crate) fn not_found(e: StoreError) -> Error {
    e.into_domain("task")
}

/// A page of tasks and the token of the next one (empty on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next_page_token: String,
}

/// Told of every completion: the points of a completed task are another
/// service's business. Called after the completion is stored, and again for
/// a repeated completion of a completed task, so a call lost on the way is
/// made good by the retry; the hook must be idempotent per task.
#[async_trait::async_trait]
pub trait CompletionHook: Send + Sync + 'static {
    async fn completed(&self, user: &UserId, task: &Task);
}

/// What happened to one of a user's tasks.
#[derive(Debug, Clone, Copy)]
pub enum TaskChange<'a> {
    Created(&'a Task),
    Updated(&'a Task),
    Started(&'a Task),
    Completed(&'a Task),
    /// The id of the task deleted.
    Deleted(&'a str),
}

/// Told of every stored change, after it is stored (the event log).
#[async_trait::async_trait]
pub trait TaskObserver: Send + Sync + 'static {
    async fn changed(&self, user: &UserId, change: TaskChange<'_>);
}

/// The task service. Every method acts on the given user's tasks only.
#[derive(Clone)]
pub struct Tasks {
    pub(crate) store: SharedStore,
    clock: Arc<dyn Clock>,
    hook: Option<Arc<dyn CompletionHook>>,
    observer: Option<Arc<dyn TaskObserver>>,
}

impl Tasks {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            hook: None,
            observer: None,
        }
    }

    /// Tells `observer` of every change.
    pub fn with_observer(mut self, observer: Arc<dyn TaskObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    async fn tell(&self, user: &UserId, change: TaskChange<'_>) {
        if let Some(o) = &self.observer {
            o.changed(user, change).await;
        }
    }

    /// Tells `hook` of completions.
    pub fn with_hook(mut self, hook: Arc<dyn CompletionHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    pub async fn create(&self, user: &UserId, new: NewTask) -> Result<Task> {
        let mut v = Violations::new();
        new.check(&mut v);
        v.finish()?;
        let mut v = Violations::new();
        let title = new.title.trim().to_owned();
        let tags = normalize_tags(&mut v, new.tags);
        let mut blocks = normalize_blocks(&mut v, new.blocks);
        assign_block_ids(&mut blocks);

        let estimated_minutes = if new.estimated_minutes == 0 {
            // Bounded: at most 100 blocks of at most 480 minutes.
            blocks.iter().map(|b| b.minutes).sum()
        } else {
            new.estimated_minutes
        };
        let body = Body {
            title,
            description: new.description,
            status: Status::Pending,
            priority: new.priority.unwrap_or_default(),
            estimated_minutes,
            due_at: new.due_at.map(ms),
            tags,
            blocks,
            completion_proof: String::new(),
            started_at: None,
            completed_at: None,
            estimated_pomodoros: new.estimated_pomodoros,
            focus_minutes: 0,
            focus_sessions: Vec::new(),
            completed_pomodoros: 0,
            earliest_start_at: new.earliest_start_at.map(ms),
            min_chunk_minutes: new.min_chunk_minutes,
        };
        let id = match &new.request_id {
            None => new_id(),
            Some(request) => {
                let claim = focusforge_store::requests::claim(
                    self.store.as_ref(),
                    user,
                    COLLECTION,
                    request,
                    new_id(),
                    self.clock.now(),
                )
                .await
                .map_err(|e| match e {
                    StoreError::AlreadyExists => {
                        Error::invalid("request_id", "is claimed by another request")
                    }
                    e => not_found(e),
                })?;
                if !claim.first
                    && let Some(doc) = self
                        .store
                        .get(COLLECTION, user, &claim.id)
                        .await
                        .map_err(not_found)?
                {
                    return to_task(doc);
                }
                claim.id
            }
        };
        let doc = NewDocument {
            id,
            user_id: user.clone(),
            body: to_json(&body)?,
            expires_at: None,
        };
        let doc = match self.store.insert(COLLECTION, doc.clone()).await {
            Ok(doc) => doc,
            // A concurrent retry of the same request inserted it first.
            Err(StoreError::AlreadyExists) if new.request_id.is_some() => {
                return match self.store.get(COLLECTION, user, &doc.id).await {
                    Ok(Some(doc)) => to_task(doc),
                    Ok(None) => Err(Error::NotFound("task".into())),
                    Err(e) => Err(not_found(e)),
                };
            }
            Err(e) => return Err(not_found(e)),
        };
        tracing::info!(task_id = %doc.id, "task created");
        let task = to_task(doc)?;
        self.tell(user, TaskChange::Created(&task)).await;
        Ok(task)
    }

    pub async fn get(&self, user: &UserId, id: &str) -> Result<Task> {
        check_id(id)?;
        let doc = self
            .store
            .get(COLLECTION, user, id)
            .await
            .map_err(not_found)?;
        to_task(doc.ok_or_else(|| Error::NotFound("task".into()))?)
    }

    pub async fn list(
        &self,
        user: &UserId,
        filter: TaskFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<TaskPage> {
        let mut v = Violations::new();
        v.range("page_size", i64::from(page_size), 0, limits::PAGE_SIZE_MAX);
        if let (Some(after), Some(before)) = (filter.due_after, filter.due_before) {
            v.check(after < before, "due_before", "must be later than due_after");
        }
        if let Some(tag) = &filter.tag {
            v.optional_text("tag", tag, limits::TAG);
        }
        v.finish()?;

        let filters = store_filters(&filter);
        let fingerprint = page_token::fingerprint(&format!("{filters:?}"));
        let after = page_token::decode_request(page_token, fingerprint)?;
        let limit = if page_size == 0 {
            limits::PAGE_SIZE_DEFAULT
        } else {
            page_size as usize
        };
        let query = Query {
            filters,
            order: Order {
                key: SortKey::CreatedAt,
                descending: true,
            },
            limit,
            after,
        };
        let page = self
            .store
            .find(COLLECTION, user, &query)
            .await
            .map_err(not_found)?;
        Ok(TaskPage {
            tasks: page
                .documents
                .into_iter()
                .map(to_task)
                .collect::<Result<_>>()?,
            next_page_token: page
                .next
                .map(|c| page_token::encode(&c, fingerprint))
                .unwrap_or_default(),
        })
    }

    /// The user's tasks written at or after `since`, in batches in no
    /// particular order (see [`focusforge_store::changes`]).
    pub fn changes(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> impl futures::Stream<Item = Result<Vec<Task>>> + Send + 'static {
        use futures::StreamExt;
        let until = self.clock.now() + chrono::Duration::minutes(1);
        focusforge_store::changes(self.store.clone(), COLLECTION, user, since, until)
            .into_stream()
            .map(|batch| batch.map_err(not_found)?.into_iter().map(to_task).collect())
    }

    pub async fn update(
        &self,
        user: &UserId,
        id: &str,
        patch: TaskPatch,
        expected_version: Option<i64>,
    ) -> Result<Task> {
        check_id(id)?;
        let mut v = Violations::new();
        v.check(
            !patch.is_empty(),
            "update_mask",
            "must name at least one field",
        );
        patch.check(&mut v);
        v.finish()?;
        let mut v = Violations::new();
        let title = patch.title.map(|t| t.trim().to_owned());
        let tags = patch.tags.map(|t| normalize_tags(&mut v, t));
        let blocks = patch.blocks.map(|b| {
            let mut b = normalize_blocks(&mut v, b);
            assign_block_ids(&mut b);
            b
        });

        let task = self
            .modify(user, id, expected_version, |body, _now| {
                if let Some(t) = &title {
                    body.title.clone_from(t);
                }
                if let Some(d) = &patch.description {
                    body.description.clone_from(d);
                }
                if let Some(p) = patch.priority {
                    body.priority = p;
                }
                if let Some(m) = patch.estimated_minutes {
                    body.estimated_minutes = m;
                }
                if let Some(due) = patch.due_at {
                    body.due_at = due.map(ms);
                }
                if let Some(t) = &tags {
                    body.tags.clone_from(t);
                }
                if let Some(b) = &blocks {
                    body.blocks.clone_from(b);
                }
                if let Some(p) = patch.estimated_pomodoros {
                    body.estimated_pomodoros = p;
                }
                if let Some(at) = patch.earliest_start_at {
                    body.earliest_start_at = at.map(ms);
                }
                if let Some(m) = patch.min_chunk_minutes {
                    body.min_chunk_minutes = m;
                }
                Ok(true)
            })
            .await?;
        self.tell(user, TaskChange::Updated(&task)).await;
        Ok(task)
    }

    /// Pending -> in progress. Starting a started task changes nothing.
    pub async fn start(&self, user: &UserId, id: &str) -> Result<Task> {
        check_id(id)?;
        let started = std::sync::atomic::AtomicBool::new(false);
        let task = self
            .modify(user, id, None, |body, now| {
                // Set on every attempt: a retried write may find it started.
                started.store(
                    body.status == Status::Pending,
                    std::sync::atomic::Ordering::Relaxed,
                );
                match body.status {
                    Status::Pending => {
                        body.status = Status::InProgress;
                        body.started_at = Some(ms(now));
                        Ok(true)
                    }
                    Status::InProgress => Ok(false),
                    Status::Completed => Err(Error::FailedPrecondition(
                        "task is already completed".into(),
                    )),
                }
            })
            .await?;
        if started.into_inner() {
            self.tell(user, TaskChange::Started(&task)).await;
        }
        Ok(task)
    }

    /// Pending or in progress -> completed, with optional proof text.
    /// Completing a completed task is `FailedPrecondition`; the hook hears of
    /// it again all the same.
    pub async fn complete(&self, user: &UserId, id: &str, proof: String) -> Result<Task> {
        check_id(id)?;
        let mut v = Violations::new();
        v.optional_text("proof_text", &proof, limits::PROOF);
        v.finish()?;
        let done = self
            .modify(user, id, None, |body, now| {
                if body.status == Status::Completed {
                    return Err(Error::FailedPrecondition(
                        "task is already completed".into(),
                    ));
                }
                body.status = Status::Completed;
                body.started_at.get_or_insert(ms(now));
                body.completed_at = Some(ms(now));
                body.completion_proof.clone_from(&proof);
                for block in &mut body.blocks {
                    block.done = true;
                }
                Ok(true)
            })
            .await;
        if let Ok(task) = &done {
            self.tell(user, TaskChange::Completed(task)).await;
        }
        if let Some(hook) = &self.hook {
            match &done {
                Ok(task) => hook.completed(user, task).await,
                Err(Error::FailedPrecondition(_)) => {
                    if let Ok(task) = self.get(user, id).await {
                        hook.completed(user, &task).await;
                    }
                }
                Err(_) => {}
            }
        }
        done
    }

    /// Adds a completed focus session's minutes to the task, once per
    /// session id.
    pub async fn record_focus(
        &self,
        user: &UserId,
        id: &str,
        session_id: &str,
        minutes: i32,
    ) -> Result<Task> {
        check_id(id)?;
        let mut v = Violations::new();
        v.text("session_id", session_id, 100);
        v.range("minutes", minutes.into(), 1, limits::SESSION_MINUTES);
        v.finish()?;
        self.modify(user, id, None, |body, _now| {
            if body.focus_sessions.iter().any(|s| s == session_id) {
                return Ok(false);
            }
            if body.focus_sessions.len() >= limits::SESSIONS_REMEMBERED {
                body.focus_sessions.remove(0);
            }
            body.focus_sessions.push(session_id.to_owned());
            body.completed_pomodoros += 1;
            body.focus_minutes = body.focus_minutes.saturating_add(minutes);
            Ok(true)
        })
        .await
    }

    pub async fn delete(&self, user: &UserId, id: &str) -> Result<()> {
        check_id(id)?;
        self.store
            .delete(COLLECTION, user, id, Precondition::None)
            .await
            .map_err(not_found)?;
        tracing::info!(task_id = %id, "task deleted");
        self.tell(user, TaskChange::Deleted(id)).await;
        Ok(())
    }

    /// Applies `change` to the stored body under optimistic concurrency;
    /// `change` returns whether anything changed.
    async fn modify(
        &self,
        user: &UserId,
        id: &str,
        expected_version: Option<i64>,
        change: impl Fn(&mut Body, DateTime<Utc>) -> Result<bool>,
    ) -> Result<Task> {
        let now = self.clock.now();
        let doc = focusforge_store::modify(
            self.store.as_ref(),
            COLLECTION,
            user,
            id,
            "task",
            expected_version,
            |doc| {
                let mut body: Body = serde_json::from_value(doc.body.clone())
                    .map_err(|e| Error::internal(format!("task {id} is unreadable: {e}")))?;
                if change(&mut body, now)? {
                    to_json(&body).map(Some)
                } else {
                    Ok(None)
                }
            },
        )
        .await?;
        to_task(doc)
    }
}

fn store_filters(filter: &TaskFilter) -> Vec<Filter> {
    let mut out = Vec::new();
    if !filter.statuses.is_empty() {
        let mut statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        out.push(Filter::In(
            "status".into(),
            statuses.into_iter().map(|s| json!(s)).collect(),
        ));
    }
    if let Some(p) = filter.priority {
        out.push(Filter::eq("priority", p.as_str()));
    }
    if let Some(tag) = &filter.tag {
        out.push(Filter::Contains("tags".into(), json!(tag)));
    }
    if filter.due_after.is_some() || filter.due_before.is_some() {
        out.push(Filter::Range {
            field: "due_at".into(),
            gte: filter.due_after.map(ms),
            lt: filter.due_before.map(ms),
        });
    }
    out
}

#[cfg(test)]
mod tests;
