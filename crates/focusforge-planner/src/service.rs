//! The planner service: plans persisted through the document store port
//! (collection `plans`, one document per plan), advanced by background
//! jobs (`planner.advance`) so a restart resumes where it stopped, and by
//! callers asking to run ready actions now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::{Clock, Error, UserId, Violations, check_id};
use focusforge_jobs::{Handler, JobContext, JobError, JobSpec, Jobs};
use focusforge_store::{
    Cursor, Document, Filter, NewDocument, Order, Query, SharedStore, SortKey, StoreError, modify,
    page_token,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::executor::Executor;
use crate::plan::{
    Action, ActionSpec, ActionType, Limits, Outcome, Plan, PlanError, Running, Status,
};

/// The store collection of plans.
pub const PLANS: &str = "plans";
/// The job kind that advances a plan.
pub const ADVANCE_JOB: &str = "planner.advance";

const TITLE_MAX: usize = 200;
const PAGE_SIZE_DEFAULT: usize = 50;
const PAGE_SIZE_MAX: i64 = 200;

#[derive(Debug, Clone)]
pub struct PlannerSettings {
    /// Caps on actions running at once in this process.
    pub limits: Limits,
    /// An action running longer than this fails as `unavailable` (and is
    /// retried by its policy).
    pub action_timeout: Duration,
}

impl Default for PlannerSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            action_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    title: String,
    done: bool,
    plan: Plan,
}

/// A plan as stored.
#[derive(Debug, Clone)]
pub struct PlanView {
    pub id: String,
    pub title: String,
    pub plan: Plan,
    pub done: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One action and the plan it belongs to.
#[derive(Debug, Clone)]
pub struct ActionView {
    pub plan_id: String,
    pub action: Action,
}

/// Which of a user's actions to list; every set filter must match.
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    pub plan_id: Option<String>,
    pub statuses: Vec<Status>,
    pub types: Vec<ActionType>,
}

impl ActionFilter {
    fn matches(&self, a: &Action) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&a.status))
            && (self.types.is_empty() || self.types.contains(&a.spec.action_type))
    }
}

/// Actions this process runs now, for the limits.
#[derive(Default)]
struct Counts {
    global: usize,
    users: HashMap<UserId, usize>,
    types: HashMap<ActionType, usize>,
}

impl Counts {
    fn running(&self, user: &UserId) -> Running {
        Running {
            global: self.global,
            user: self.users.get(user).copied().unwrap_or(0),
            per_type: self.types.clone(),
        }
    }

    fn add(&mut self, user: &UserId, t: ActionType, n: isize) {
        let apply = |v: &mut usize| *v = v.saturating_add_signed(n);
        apply(&mut self.global);
        apply(self.types.entry(t).or_default());
        let of_user = self.users.entry(user.clone()).or_default();
        apply(of_user);
        if *of_user == 0 {
            self.users.remove(user);
        }
    }
}

struct Inner {
    store: SharedStore,
    jobs: Jobs,
    executor: Arc<dyn Executor>,
    clock: Arc<dyn Clock>,
    settings: PlannerSettings,
    /// Held while claiming, so claims in this process see each other's counts.
    claiming: tokio::sync::Mutex<()>,
    counts: Mutex<Counts>,
    /// (plan, action) pairs this process is running, with how many runs.
    in_flight: Mutex<HashMap<(String, String), usize>>,
    /// (plan, action) pairs a background job of this process finished
    /// running lately, and when: an `ExecuteReady` racing the job reports them.
    worker_finished: Mutex<HashMap<(String, String), tokio::time::Instant>>,
    observer: std::sync::OnceLock<Arc<dyn ActionObserver>>,
}

/// Told of every action that ends for good (succeeded, dead, cancelled by
/// the user, a cascade or a time that never came, or cut short by a crash
/// and out of retries), after it is recorded: the user's event stream.
#[async_trait]
pub trait ActionObserver: Send + Sync + 'static {
    async fn finished(&self, user: &UserId, plan_id: &str, key: &str, status: Status);
}

tokio::task_local! {
    /// Set while a background job advances a plan.
    static BY_WORKER: ();
}

/// How recent "at the same moment" is for `ExecuteReady`.
const SAME_MOMENT: std::time::Duration = std::time::Duration::from_secs(1);

impl Inner {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker_finished(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), tokio::time::Instant>> {
        self.worker_finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// An action this process runs: its place in the counts and its in-flight
/// mark, given back when dropped, however the run ends.
struct Slot {
    inner: Arc<Inner>,
    user: UserId,
    plan_id: String,
    key: String,
    action_type: ActionType,
    by_worker: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.counts().add(&self.user, self.action_type, -1);
        let mut in_flight = self.inner.in_flight();
        let id = (
            std::mem::take(&mut self.plan_id),
            std::mem::take(&mut self.key),
        );
        if self.by_worker {
            let now = tokio::time::Instant::now();
            let mut done = self.inner.worker_finished();
            done.retain(|_, at| now.duration_since(*at) <= SAME_MOMENT);
            done.insert(id.clone(), now);
        }
        if let Some(n) = in_flight.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&id);
            }
        }
    }
}

/// The runs an advance started. Dropped before they end (the caller gave
/// up), they finish on their own, and a job advances the plan after them.
struct Runs {
    planner: Planner,
    user: UserId,
    plan_id: String,
    handles: FuturesUnordered<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl Drop for Runs {
    fn drop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        let handles = std::mem::take(&mut self.handles);
        let (planner, user, plan_id) = (
            self.planner.clone(),
            self.user.clone(),
            std::mem::take(&mut self.plan_id),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                handles.for_each(|_| async {}).await;
                if let Ok(view) = planner.get(&user, &plan_id).await
                    && !view.plan.is_done()
                {
                    let now = planner.inner.clock.now();
                    planner.schedule(&user, &plan_id, &view.plan, now).await;
                }
            });
        }
    }
}

/// Plans: create, inspect, cancel and run.
#[derive(Clone)]
pub struct Planner {
    inner: Arc<Inner>,
}

/// Maps a plan validation error to a field violation naming the actions.
pub fn plan_error(e: PlanError) -> Error {
    match e {
        PlanError::Empty => Error::invalid("actions", "must not be empty"),
        PlanError::Duplicate(key) => Error::invalid(
            format!("actions[{key}].key"),
            format!("action {key:?} appears more than once"),
        ),
        PlanError::UnknownDependency { action, missing } => Error::invalid(
            format!("actions[{action}].depends_on"),
            format!("unknown actions: {}", missing.join(", ")),
        ),
        PlanError::Cycle(keys) => Error::invalid(
            "actions",
            format!(
                "the dependencies form a cycle among actions: {}",
                keys.join(", ")
            ),
        ),
        PlanError::Invalid {
            action,
            field,
            reason,
        } => {
            if action.is_empty() {
                Error::invalid(field, reason)
            } else {
                Error::invalid(format!("actions[{action}].{field}"), reason)
            }
        }
        PlanError::NotFound(key) => Error::NotFound(format!("action {key:?}")),
        PlanError::NotRunning(key) => {
            Error::FailedPrecondition(format!("action {key:?} is not running"))
        }
    }
}

fn body(doc: &Document) -> Result<Body, Error> {
    serde_json::from_value(doc.body.clone())
        .map_err(|e| Error::internal(format!("stored plan {}: {e}", doc.id)))
}

fn view(doc: &Document) -> Result<PlanView, Error> {
    let b = body(doc)?;
    Ok(PlanView {
        id: doc.id.clone(),
        title: b.title,
        plan: b.plan,
        done: b.done,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
    })
}

fn encode(b: &Body) -> Result<Value, Error> {
    serde_json::to_value(b).map_err(Error::internal)
}

impl Planner {
    pub fn new(
        store: SharedStore,
        jobs: Jobs,
        executor: Arc<dyn Executor>,
        clock: Arc<dyn Clock>,
        settings: PlannerSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                jobs,
                executor,
                clock,
                settings,
                claiming: tokio::sync::Mutex::new(()),
                counts: Mutex::new(Counts::default()),
                in_flight: Mutex::new(HashMap::new()),
                worker_finished: Mutex::new(HashMap::new()),
                observer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The job handler that advances plans; register it with the workers
    /// under [`ADVANCE_JOB`].
    pub fn advance_handler(&self) -> Arc<dyn Handler> {
        Arc::new(AdvanceHandler(self.clone()))
    }

    /// Validates and stores a plan, then schedules its first run.
    pub async fn create(
        &self,
        user: &UserId,
        title: &str,
        actions: Vec<ActionSpec>,
    ) -> Result<PlanView, Error> {
        self.create_once(user, title, actions, None).await
    }

    /// [`Planner::create`]; with a request id, a retry (within a day)
    /// returns the plan the first call made instead of making a second.
    pub async fn create_once(
        &self,
        user: &UserId,
        title: &str,
        actions: Vec<ActionSpec>,
        request_id: Option<&str>,
    ) -> Result<PlanView, Error> {
        let mut v = Violations::new();
        v.optional_text("title", title, TITLE_MAX);
        if let Some(id) = request_id {
            v.check(
                !id.is_empty() && id.len() <= focusforge_store::requests::MAX_BYTES,
                "request_id",
                "must be 1-128 bytes",
            );
        }
        for a in &actions {
            if let Some(key) = &a.idempotency_key {
                v.check(
                    !key.is_empty() && key.len() <= 128,
                    format!("actions[{}].idempotency_key", a.key),
                    "must be 1-128 bytes",
                );
            }
        }
        v.finish()?;
        let now = self.inner.clock.now();
        let plan = Plan::new(actions, now).map_err(plan_error)?;
        let b = Body {
            title: title.trim().to_owned(),
            done: plan.is_done(),
            plan,
        };
        let mut id = focusforge_core::new_id();
        if let Some(request) = request_id {
            let claim = focusforge_store::requests::claim(
                self.inner.store.as_ref(),
                user,
                PLANS,
                request,
                id,
                now,
            )
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => {
                    Error::invalid("request_id", "is claimed by another request")
                }
                e => e.into_domain("plan"),
            })?;
            if !claim.first
                && let Some(doc) = self
                    .inner
                    .store
                    .get(PLANS, user, &claim.id)
                    .await
                    .map_err(|e| e.into_domain("plan"))?
            {
                return self.resumed(user, &doc, now).await;
            }
            id = claim.id;
        }
        let inserted = self
            .inner
            .store
            .insert(
                PLANS,
                NewDocument {
                    id: id.clone(),
                    user_id: user.clone(),
                    body: encode(&b)?,
                    expires_at: None,
                },
            )
            .await;
        let doc = match inserted {
            Ok(doc) => doc,
            // A concurrent retry of the same request inserted it first.
            Err(StoreError::AlreadyExists) if request_id.is_some() => {
                let doc = self
                    .inner
                    .store
                    .get(PLANS, user, &id)
                    .await
                    .map_err(|e| e.into_domain("plan"))?
                    .ok_or_else(|| Error::NotFound("plan".into()))?;
                return self.resumed(user, &doc, now).await;
            }
            Err(e) => return Err(e.into_domain("plan")),
        };
        self.schedule(user, &doc.id, &b.plan, now).await;
        view(&doc)
    }

    /// The plan a retried create found. One never advanced may have lost
    /// its first run with the call that made it (a crash between the insert
    /// and the enqueue): it is scheduled again. A second run of a plan that
    /// did start finds nothing to do.
    async fn resumed(
        &self,
        user: &UserId,
        doc: &Document,
        now: DateTime<Utc>,
    ) -> Result<PlanView, Error> {
        let found = view(doc)?;
        if doc.version == 1 && !found.done {
            self.schedule(user, &doc.id, &found.plan, now).await;
        }
        Ok(found)
    }

    /// Enqueues the next advance of a plan at `at`. A plan whose job could
    /// not be queued still runs on the next `execute_ready`.
    async fn schedule(&self, user: &UserId, plan_id: &str, plan: &Plan, at: DateTime<Utc>) {
        let priority = plan
            .actions()
            .iter()
            .filter(|a| !a.status.is_terminal())
            .map(|a| a.spec.priority)
            .min()
            .unwrap_or_default();
        let mut spec = JobSpec::new(ADVANCE_JOB, user.clone(), json!({ "plan_id": plan_id }));
        spec.priority = priority;
        spec.run_at = Some(at);
        spec.idempotency_key = Some(format!("plan:{plan_id}:{}", at.timestamp_millis()));
        if let Err(e) = self.inner.jobs.enqueue(spec).await {
            tracing::warn!(plan = %plan_id, error = %e, "could not schedule the plan's next run");
        }
    }

    pub async fn get(&self, user: &UserId, plan_id: &str) -> Result<PlanView, Error> {
        check_id(plan_id).map_err(|_| Error::invalid("plan_id", "must be 1-128 bytes"))?;
        let doc = self
            .inner
            .store
            .get(PLANS, user, plan_id)
            .await
            .map_err(|e| e.into_domain("plan"))?
            .ok_or_else(|| Error::NotFound("plan".into()))?;
        view(&doc)
    }

    pub async fn get_action(
        &self,
        user: &UserId,
        plan_id: &str,
        key: &str,
    ) -> Result<ActionView, Error> {
        let plan = self.get(user, plan_id).await?;
        let action = plan
            .plan
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("action {key:?}")))?;
        Ok(ActionView {
            plan_id: plan.id,
            action,
        })
    }

    /// The user's actions, newest plan first and in plan order within a
    /// plan, one page at a time.
    pub async fn list_actions(
        &self,
        user: &UserId,
        filter: &ActionFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ActionView>, String), Error> {
        let mut v = Violations::new();
        v.range("page_size", i64::from(page_size), 0, PAGE_SIZE_MAX);
        v.finish()?;
        let limit = if page_size == 0 {
            PAGE_SIZE_DEFAULT
        } else {
            page_size as usize
        };
        let fingerprint = page_token::fingerprint(&format!("{filter:?}"));
        // The token holds the cursor of the plan before the one the page
        // stopped in (or none) and how many matching actions of that plan
        // were already listed.
        let (mut after, mut skip) = match page_token::decode(page_token, fingerprint)
            .map_err(|e| Error::invalid("page_token", e.to_string()))?
        {
            None => (None, 0usize),
            Some(c) => {
                let (id, skip) =
                    c.id.split_once('/')
                        .and_then(|(id, n)| Some((id.to_owned(), n.parse::<usize>().ok()?)))
                        .ok_or_else(|| Error::invalid("page_token", "is not a valid page token"))?;
                let after = (!id.is_empty()).then_some(Cursor { key: c.key, id });
                (after, skip)
            }
        };
        let token = |after: &Option<Cursor>, skip: usize| {
            let (key, id) = after
                .as_ref()
                .map_or((0, String::new()), |c| (c.key, c.id.clone()));
            page_token::encode(
                &Cursor {
                    key,
                    id: format!("{id}/{skip}"),
                },
                fingerprint,
            )
        };
        let mut out = Vec::new();
        if let Some(id) = &filter.plan_id {
            // One plan is a page sequence of its own.
            if after.is_some() {
                return Ok((Vec::new(), String::new()));
            }
            let plan = self.get(user, id).await?;
            let rest: Vec<Action> = plan
                .plan
                .actions()
                .iter()
                .filter(|a| filter.matches(a))
                .skip(skip)
                .cloned()
                .collect();
            let more = rest.len() > limit;
            out.extend(rest.into_iter().take(limit).map(|action| ActionView {
                plan_id: plan.id.clone(),
                action,
            }));
            let next = if more {
                token(&None, skip + limit)
            } else {
                String::new()
            };
            return Ok((out, next));
        }
        loop {
            let query = Query {
                filters: Vec::new(),
                order: Order {
                    key: SortKey::CreatedAt,
                    descending: true,
                },
                limit: 20,
                after: after.clone(),
            };
            let page = self
                .inner
                .store
                .find(PLANS, user, &query)
                .await
                .map_err(|e| e.into_domain("plan"))?;
            let count = page.documents.len();
            for (i, doc) in page.documents.iter().enumerate() {
                let matching: Vec<Action> = body(doc)?
                    .plan
                    .actions()
                    .iter()
                    .filter(|a| filter.matches(a))
                    .skip(skip)
                    .cloned()
                    .collect();
                let room = limit - out.len();
                if matching.len() > room {
                    out.extend(matching.into_iter().take(room).map(|action| ActionView {
                        plan_id: doc.id.clone(),
                        action,
                    }));
                    return Ok((out, token(&after, skip + room)));
                }
                out.extend(matching.into_iter().map(|action| ActionView {
                    plan_id: doc.id.clone(),
                    action,
                }));
                skip = 0;
                after = Some(Cursor::after(doc, SortKey::CreatedAt));
                let more = i + 1 < count || page.next.is_some();
                if out.len() == limit {
                    let next = if more {
                        token(&after, 0)
                    } else {
                        String::new()
                    };
                    return Ok((out, next));
                }
            }
            if page.next.is_none() {
                return Ok((out, String::new()));
            }
        }
    }

    /// Cancels an action and everything that depends on it; with no key,
    /// every unfinished action of the plan. Returns the keys cancelled.
    pub async fn cancel(
        &self,
        user: &UserId,
        plan_id: &str,
        key: Option<&str>,
        reason: &str,
    ) -> Result<(PlanView, Vec<String>), Error> {
        check_id(plan_id).map_err(|_| Error::invalid("plan_id", "must be 1-128 bytes"))?;
        let reason = if reason.trim().is_empty() {
            "cancelled by the user"
        } else {
            reason
        };
        let mut cancelled = Vec::new();
        let now = self.inner.clock.now();
        let doc = self
            .modify_plan(user, plan_id, |b| {
                cancelled = match key {
                    Some(k) => b.plan.cancel(k, reason, now).map_err(plan_error)?,
                    None => {
                        let keys: Vec<String> = b
                            .plan
                            .actions()
                            .iter()
                            .filter(|a| !a.status.is_terminal())
                            .map(|a| a.spec.key.clone())
                            .collect();
                        let mut all = Vec::new();
                        for k in keys {
                            all.extend(b.plan.cancel(&k, reason, now).map_err(plan_error)?);
                        }
                        all
                    }
                };
                Ok(())
            })
            .await?;
        Ok((view(&doc)?, cancelled))
    }

    /// Runs the user's ready actions now: of one plan, or of every
    /// unfinished plan (up to 100). Returns the actions that ran, in their
    /// final state.
    pub async fn execute_ready(
        &self,
        user: &UserId,
        plan_id: Option<&str>,
    ) -> Result<Vec<ActionView>, Error> {
        let plans: Vec<String> = match plan_id {
            Some(id) => {
                check_id(id).map_err(|_| Error::invalid("plan_id", "must be 1-128 bytes"))?;
                vec![id.to_owned()]
            }
            None => {
                let query = Query {
                    filters: vec![Filter::eq("done", false)],
                    order: Order {
                        key: SortKey::CreatedAt,
                        descending: false,
                    },
                    limit: 100,
                    after: None,
                };
                self.inner
                    .store
                    .find(PLANS, user, &query)
                    .await
                    .map_err(|e| e.into_domain("plan"))?
                    .documents
                    .into_iter()
                    .map(|d| d.id)
                    .collect()
            }
        };
        let mut ran = Vec::new();
        for id in plans {
            // What this call is for: the actions ready now, and those a
            // worker of this process took up a moment ago. A worker may
            // claim some of them before this call can; they ran because
            // they were ready now, so they are reported too, once run.
            let wanted = {
                // Between claims, so the stored plan and this process's
                // running marks agree.
                let _claiming = self.inner.claiming.lock().await;
                match self.get(user, &id).await {
                    Ok(view) => self.ready_or_just_started(&id, view.plan),
                    Err(Error::NotFound(_)) if plan_id.is_none() => continue,
                    Err(e) => return Err(e),
                }
            };
            let (mut keys, mut plan) = match self.advance(user, &id).await {
                Ok(done) => done,
                // Deleted since it was listed: nothing of it to run.
                Err(Error::NotFound(_)) if plan_id.is_none() => continue,
                Err(e) => return Err(e),
            };
            let others: Vec<String> = wanted.into_iter().filter(|k| !keys.contains(k)).collect();
            if !others.is_empty() {
                plan = self.settled(user, &id, &others, plan).await?;
                // Those that ran (a ready one may also still wait for a
                // slot under the limits).
                keys.extend(others.into_iter().filter(|k| {
                    plan.get(k).is_some_and(|a| {
                        matches!(
                            a.status,
                            Status::Running | Status::Succeeded | Status::Failed | Status::Dead
                        )
                    })
                }));
            }
            for k in keys {
                if let Some(a) = plan.get(&k) {
                    ran.push(ActionView {
                        plan_id: id.clone(),
                        action: a.clone(),
                    });
                }
            }
        }
        Ok(ran)
    }

    /// The keys of actions that are ready to start, or that a background
    /// job of this process started or finished a moment ago.
    fn ready_or_just_started(&self, plan_id: &str, mut plan: Plan) -> Vec<String> {
        let now = self.inner.clock.now();
        plan.refresh(now);
        let in_flight = self.inner.in_flight();
        let finished = self.inner.worker_finished();
        let moment = chrono::Duration::from_std(SAME_MOMENT).unwrap_or_default();
        plan.actions()
            .iter()
            .filter(|a| {
                let id = (plan_id.to_owned(), a.spec.key.clone());
                match a.status {
                    Status::Ready => true,
                    Status::Running => {
                        in_flight.contains_key(&id)
                            && a.started_at.is_some_and(|t| now - t <= moment)
                    }
                    Status::Succeeded | Status::Failed | Status::Dead => finished
                        .get(&id)
                        .is_some_and(|at| at.elapsed() <= SAME_MOMENT),
                    _ => false,
                }
            })
            .map(|a| a.spec.key.clone())
            .collect()
    }

    /// The plan once `keys` no longer run (or after a bounded wait, as it
    /// is then).
    async fn settled(
        &self,
        user: &UserId,
        plan_id: &str,
        keys: &[String],
        mut plan: Plan,
    ) -> Result<Plan, Error> {
        const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            let running = keys
                .iter()
                .any(|k| plan.get(k).is_some_and(|a| a.status == Status::Running));
            if !running || tokio::time::Instant::now() >= until {
                return Ok(plan);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            plan = match self.get(user, plan_id).await {
                Ok(view) => view.plan,
                Err(Error::NotFound(_)) => return Ok(plan),
                Err(e) => return Err(e),
            };
        }
    }

    /// Starts the plan's ready actions under the limits and runs them; each
    /// outcome is recorded as it comes, and what it made ready starts at
    /// once, until nothing runs or is ready. Then schedules the next run
    /// for when a waiting action comes due. Returns the keys started, in
    /// order, and the plan as it was left.
    pub async fn advance(
        &self,
        user: &UserId,
        plan_id: &str,
    ) -> Result<(Vec<String>, Plan), Error> {
        let grace = chrono::Duration::from_std(self.inner.settings.action_timeout)
            .unwrap_or_default()
            + chrono::Duration::seconds(30);
        let mut ran = Vec::new();
        let mut runs = Runs {
            planner: self.clone(),
            user: user.clone(),
            plan_id: plan_id.to_owned(),
            handles: FuturesUnordered::new(),
        };
        // A plan deleted meanwhile stops new starts; what runs is awaited.
        let mut gone = None;
        loop {
            if gone.is_none() {
                match self.claim(user, plan_id, grace).await {
                    Ok((plan, slots)) => {
                        if slots.is_empty() && runs.handles.is_empty() {
                            if !plan.is_done() {
                                self.schedule_next(user, plan_id, &plan, grace).await;
                            }
                            return Ok((ran, plan));
                        }
                        for slot in slots {
                            ran.push(slot.key.clone());
                            runs.handles.push(self.spawn_run(&plan, slot));
                        }
                    }
                    Err(e @ Error::NotFound(_)) => gone = Some(e),
                    Err(e) if runs.handles.is_empty() => return Err(e),
                    Err(e) => tracing::warn!(
                        plan = %plan_id,
                        error = %e,
                        "claiming ready actions failed; trying again when a run ends"
                    ),
                }
            }
            match runs.handles.next().await {
                // Nothing runs and claims stopped: the plan is gone.
                None => {
                    return Err(gone.unwrap_or_else(|| Error::NotFound("plan".into())));
                }
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e @ Error::NotFound(_)))) => gone = Some(e),
                Some(Ok(Err(e))) => {
                    tracing::warn!(plan = %plan_id, error = %e, "recording an outcome failed");
                }
                Some(Err(e)) => {
                    tracing::error!(plan = %plan_id, error = %e, "an action's run ended abnormally")
                }
            }
        }
    }

    /// Fails runs a crash cut short, starts the ready actions under the
    /// limits and counts them as running here. Returns the plan as stored
    /// and a slot for each action started, in order.
    async fn claim(
        &self,
        user: &UserId,
        plan_id: &str,
        grace: chrono::Duration,
    ) -> Result<(Plan, Vec<Slot>), Error> {
        let inner = &self.inner;
        let _claiming = inner.claiming.lock().await;
        let mut started = Vec::new();
        let doc = self
            .modify_plan(user, plan_id, |b| {
                let now = inner.clock.now();
                // Runs that started long ago and are not running here were
                // cut short by a crash or restart: fail them so the retry
                // policy decides.
                let in_flight = inner.in_flight();
                for key in b.plan.started_before(now - grace) {
                    if in_flight.contains_key(&(plan_id.to_owned(), key.clone())) {
                        continue;
                    }
                    let _ = b.plan.finish(
                        &key,
                        Outcome::Failed {
                            kind: "interrupted".into(),
                            message: "the run stopped before it finished".into(),
                        },
                        now,
                        rand::random(),
                    );
                }
                drop(in_flight);
                let mut running = inner.counts().running(user);
                started = b.plan.start(now, &inner.settings.limits, &mut running);
                Ok(())
            })
            .await?;
        let plan = body(&doc)?.plan;
        let mut slots = Vec::new();
        for key in started {
            let Some(a) = plan.get(&key) else { continue };
            inner.counts().add(user, a.spec.action_type, 1);
            *inner
                .in_flight()
                .entry((plan_id.to_owned(), key.clone()))
                .or_default() += 1;
            slots.push(Slot {
                inner: inner.clone(),
                user: user.clone(),
                plan_id: plan_id.to_owned(),
                key,
                action_type: a.spec.action_type,
                by_worker: BY_WORKER.try_with(|()| ()).is_ok(),
            });
        }
        Ok((plan, slots))
    }

    /// Runs one started action on its own task, with the plan's outputs so
    /// far and within the action timeout, records the outcome, then gives
    /// its slot back. The task goes on if whoever started it stops waiting.
    fn spawn_run(&self, plan: &Plan, slot: Slot) -> tokio::task::JoinHandle<Result<(), Error>> {
        let planner = self.clone();
        let spec = plan.get(&slot.key).map(|a| a.spec.clone());
        let params = plan.resolve_params(&slot.key);
        tokio::spawn(async move {
            let inner = &planner.inner;
            let result = match (spec, params) {
                (Some(spec), Ok(params)) => tokio::time::timeout(
                    inner.settings.action_timeout,
                    inner.executor.execute(&slot.user, &spec, params),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Unavailable(format!(
                        "the action ran longer than {:?}",
                        inner.settings.action_timeout
                    )))
                }),
                (_, Err(e)) => Err(plan_error(e)),
                (None, _) => Err(Error::NotFound(format!("action {:?}", slot.key))),
            };
            if let Err(e) = &result {
                tracing::info!(plan = %slot.plan_id, action = %slot.key, error = %e, "action failed");
            }
            planner
                .record(&slot.user, &slot.plan_id, &slot.key, result)
                .await
        })
    }

    /// Records one action's outcome: its output, or its failure for the
    /// retry policy.
    async fn record(
        &self,
        user: &UserId,
        plan_id: &str,
        key: &str,
        result: Result<Value, Error>,
    ) -> Result<(), Error> {
        self.modify_plan(user, plan_id, |b| {
            let now = self.inner.clock.now();
            let outcome = match &result {
                Ok(output) => {
                    let _ = b.plan.set_output(key, output.clone());
                    Outcome::Succeeded
                }
                Err(e) => Outcome::Failed {
                    kind: e.kind().into(),
                    message: e.to_string(),
                },
            };
            match b.plan.finish(key, outcome, now, rand::random()) {
                Ok(_) | Err(PlanError::NotRunning(_)) => Ok(()),
                Err(e) => Err(plan_error(e)),
            }
        })
        .await?;
        Ok(())
    }

    /// Tells `observer` of every action that finishes for good; later
    /// calls are ignored.
    pub fn observe(&self, observer: Arc<dyn ActionObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Reads one of the user's plans, lets `change` alter it and writes it
    /// back with `done` brought up to date, if anything changed; a write
    /// that loses a race reads and changes again. Returns the plan as
    /// stored.
    async fn modify_plan<F>(
        &self,
        user: &UserId,
        plan_id: &str,
        mut change: F,
    ) -> Result<Document, Error>
    where
        F: FnMut(&mut Body) -> Result<(), Error>,
    {
        // Every action this change ends for good (finished, died, or
        // cancelled by a cascade or a time that never came), reported once
        // the change is stored.
        let mut ended = Vec::new();
        let doc = modify(
            self.inner.store.as_ref(),
            PLANS,
            user,
            plan_id,
            "plan",
            None,
            |doc| {
                let mut b = body(doc)?;
                let before: Vec<bool> = b
                    .plan
                    .actions()
                    .iter()
                    .map(|a| a.status.is_terminal())
                    .collect();
                change(&mut b)?;
                ended = b
                    .plan
                    .actions()
                    .iter()
                    .zip(before)
                    .filter(|(a, was)| a.status.is_terminal() && !was)
                    .map(|(a, _)| (a.spec.key.clone(), a.status))
                    .collect();
                b.done = b.plan.is_done();
                let new = encode(&b)?;
                Ok((new != doc.body).then_some(new))
            },
        )
        .await?;
        if let Some(o) = self.inner.observer.get() {
            for (key, status) in ended {
                o.finished(user, plan_id, &key, status).await;
            }
        }
        Ok(doc)
    }

    /// Schedules the next advance: when a waiting action comes due, or
    /// soon if ready actions wait for a free slot, or when a run that may
    /// have been cut short can be declared interrupted.
    async fn schedule_next(
        &self,
        user: &UserId,
        plan_id: &str,
        plan: &Plan,
        grace: chrono::Duration,
    ) {
        let now = self.inner.clock.now();
        let waiting_for_slot = plan.actions().iter().any(|a| a.status == Status::Ready);
        let stale = plan
            .actions()
            .iter()
            .filter(|a| a.status == Status::Running)
            .filter_map(|a| a.started_at)
            .map(|t| t + grace)
            .min();
        let next = [
            plan.next_due(),
            waiting_for_slot.then(|| now + chrono::Duration::seconds(1)),
            stale,
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = next {
            // Rounded to the second so repeated advances share one job.
            let at = DateTime::from_timestamp(
                at.timestamp() + i64::from(at.timestamp_subsec_millis() > 0),
                0,
            )
            .unwrap_or(at)
            .max(now);
            self.schedule(user, plan_id, plan, at).await;
        }
    }
}

/// Advances the plan named in the job's payload.
struct AdvanceHandler(Planner);

#[async_trait]
impl Handler for AdvanceHandler {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let plan_id = ctx
            .job
            .spec
            .payload
            .get("plan_id")
            .and_then(Value::as_str)
            .ok_or_else(|| JobError::new("invalid_argument", "payload.plan_id is missing"))?;
        match BY_WORKER
            .scope((), self.0.advance(&ctx.job.spec.user, plan_id))
            .await
        {
            // A plan deleted meanwhile has nothing left to run.
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
