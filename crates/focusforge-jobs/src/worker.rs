//! Workers: take jobs from the queue under concurrency caps, run their
//! handlers, keep the lease alive while they run, pass cancellation on,
//! and settle the outcome under the job's retry policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::{Clock, UserId};
use focusforge_store::{Cursor, page_token};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::{
    Enqueued, Job, JobCursor, JobFilter, JobSpec, JobState, Lease, QueueError, Settle, Stats,
};
use crate::queue::Queue;

/// The queue with a clock: what services use to enqueue and inspect jobs.
#[derive(Clone)]
pub struct Jobs {
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl Jobs {
    pub fn new(queue: Arc<dyn Queue>, clock: Arc<dyn Clock>) -> Self {
        Self {
            queue,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Enqueues and wakes this process's idle workers.
    pub async fn enqueue(&self, spec: JobSpec) -> Result<Enqueued, QueueError> {
        let out = self.queue.enqueue(spec, self.clock.now()).await?;
        self.wake.notify_waiters();
        Ok(out)
    }

    pub async fn get(&self, user: &UserId, id: &str) -> Result<Option<Job>, QueueError> {
        self.queue.get(user, id).await
    }

    pub async fn cancel(&self, user: &UserId, id: &str) -> Result<Job, QueueError> {
        self.queue.cancel(user, id, self.clock.now()).await
    }

    pub async fn list(
        &self,
        user: &UserId,
        filter: &JobFilter,
        limit: usize,
        after: Option<&JobCursor>,
    ) -> Result<(Vec<Job>, Option<JobCursor>), QueueError> {
        self.queue.list(user, filter, limit, after).await
    }

    pub async fn stats(&self, user: &UserId) -> Result<Stats, QueueError> {
        self.queue.stats(user).await
    }

    /// One page of the user's jobs for an API: `page_size` 0-200 (0 means
    /// 50) and an opaque token that is only valid with the same filter.
    pub async fn list_page(
        &self,
        user: &UserId,
        filter: &JobFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Job>, String), focusforge_core::Error> {
        use focusforge_core::Violations;
        let mut v = Violations::new();
        v.range("page_size", i64::from(page_size), 0, 200);
        if let Some(kind) = &filter.kind {
            crate::model::check_kind(&mut v, "kind", kind);
        }
        v.finish()?;
        let limit = if page_size == 0 {
            50
        } else {
            page_size as usize
        };
        let fingerprint = page_token::fingerprint(&format!("{filter:?}"));
        let after = page_token::decode_request(page_token, fingerprint)?.map(|c| JobCursor {
            created_ms: c.key,
            id: c.id,
        });
        let (jobs, next) = self.queue.list(user, filter, limit, after.as_ref()).await?;
        let token = next
            .map(|c| {
                let cursor = Cursor {
                    key: c.created_ms,
                    id: c.id,
                };
                page_token::encode(&cursor, fingerprint)
            })
            .unwrap_or_default();
        Ok((jobs, token))
    }
}

/// Why a handler failed. `kind` is matched against the retry policy's
/// non-retryable kinds (`invalid_argument`, `not_found`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct JobError {
    pub kind: String,
    pub message: String,
}

impl JobError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The handler noticed cancellation and stopped.
    pub fn cancelled() -> Self {
        Self::new("cancelled", "cancelled")
    }
}

impl From<focusforge_core::Error> for JobError {
    fn from(e: focusforge_core::Error) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

/// What a handler gets: the job and its cancellation signal.
pub struct JobContext {
    pub job: Job,
    cancel: CancellationToken,
}

impl JobContext {
    /// Whether cancellation was asked for; long handlers check it between
    /// steps and return [`JobError::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when cancellation is asked for.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// Runs jobs of one kind.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError>;
}

/// Told of every job a worker ran that ended for good (succeeded, failed,
/// dead or cancelled), once the queue has recorded it.
#[async_trait]
pub trait JobObserver: Send + Sync + 'static {
    async fn finished(&self, job: &Job, state: JobState);
}

/// Handlers by job kind, and who hears of the jobs that end.
#[derive(Clone, Default)]
pub struct Handlers {
    by_kind: HashMap<String, Arc<dyn Handler>>,
    observer: Option<Arc<dyn JobObserver>>,
}

impl Handlers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, kind: &str, handler: Arc<dyn Handler>) -> &mut Self {
        self.by_kind.insert(kind.to_owned(), handler);
        self
    }

    pub fn observe(&mut self, observer: Arc<dyn JobObserver>) -> &mut Self {
        self.observer = Some(observer);
        self
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Names this worker in leases (host and process, say).
    pub name: String,
    /// Jobs running at once in this worker.
    pub concurrency: usize,
    /// Caps per job kind, within the global one.
    pub per_kind: HashMap<String, usize>,
    /// Kinds other processes handle: never reserved here, so a mesh of
    /// processes sharing one queue hands each job to a process that runs it.
    pub skip_kinds: Vec<String>,
    /// How long a lease lasts without a heartbeat; a job whose worker died
    /// is delivered again this long after its last heartbeat.
    pub visibility: Duration,
    /// How often an idle worker looks for due jobs.
    pub poll: Duration,
    /// How often expired leases are recovered.
    pub recover_every: Duration,
    /// How long finished jobs are kept.
    pub retention: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            name: format!("worker-{}", std::process::id()),
            concurrency: 4,
            per_kind: HashMap::new(),
            skip_kinds: Vec::new(),
            visibility: Duration::from_secs(30),
            poll: Duration::from_millis(250),
            recover_every: Duration::from_secs(5),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A running worker.
pub struct Worker {
    stop: CancellationToken,
    dispatcher: JoinHandle<()>,
    recoverer: JoinHandle<()>,
    slots: Arc<Semaphore>,
    concurrency: u32,
}

impl Worker {
    /// Starts taking jobs.
    pub fn spawn(jobs: Jobs, handlers: Handlers, settings: WorkerSettings) -> Self {
        let stop = CancellationToken::new();
        let concurrency = settings.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let per_kind: HashMap<String, Arc<Semaphore>> = settings
            .per_kind
            .iter()
            .map(|(k, n)| (k.clone(), Arc::new(Semaphore::new((*n).max(1)))))
            .collect();
        let settings = Arc::new(settings);
        let handlers = Arc::new(handlers);
        let recoverer = tokio::spawn(recover_loop(jobs.clone(), settings.clone(), stop.clone()));
        let dispatcher = tokio::spawn(dispatch(
            jobs,
            handlers,
            settings,
            slots.clone(),
            per_kind,
            stop.clone(),
        ));
        Self {
            stop,
            dispatcher,
            recoverer,
            slots,
            concurrency: u32::try_from(concurrency).unwrap_or(u32::MAX),
        }
    }

    /// Stops taking jobs and waits up to `grace` for running ones; jobs
    /// still running after that are delivered again once their lease runs
    /// out.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let _ = self.dispatcher.await;
        self.recoverer.abort();
        let _ = tokio::time::timeout(grace, self.slots.acquire_many(self.concurrency)).await;
    }
}

async fn recover_loop(jobs: Jobs, settings: Arc<WorkerSettings>, stop: CancellationToken) {
    loop {
        let now = jobs.now();
        let retention = chrono::Duration::from_std(settings.retention).unwrap_or_default();
        match jobs.queue.recover(now, now - retention).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(jobs = n, "job queue: recovered jobs whose worker stopped");
                jobs.wake.notify_waiters();
            }
            Err(e) => tracing::debug!(error = %e, "job queue: recovery failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(settings.recover_every) => {}
        }
    }
}

async fn dispatch(
    jobs: Jobs,
    handlers: Arc<Handlers>,
    settings: Arc<WorkerSettings>,
    slots: Arc<Semaphore>,
    per_kind: HashMap<String, Arc<Semaphore>>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => return,
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
        };
        let full: Vec<String> = per_kind
            .iter()
            .filter(|(_, s)| s.available_permits() == 0)
            .map(|(k, _)| k.clone())
            .chain(settings.skip_kinds.iter().cloned())
            .collect();
        // Register for a wake-up before looking, so an enqueue between the
        // look and the wait is not missed.
        let wake = jobs.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let now = jobs.now();
        let until = now + chrono::Duration::from_std(settings.visibility).unwrap_or_default();
        match jobs.queue.reserve(&settings.name, now, until, &full).await {
            Ok(Some(lease)) => {
                failures = 0;
                let kind_slot = match per_kind.get(&lease.job.spec.kind) {
                    Some(s) => match s.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            // Only this loop takes kind slots, and it skipped
                            // full kinds; wait for one rather than exceed the cap.
                            s.clone().acquire_owned().await.ok()
                        }
                    },
                    None => None,
                };
                let jobs = jobs.clone();
                let handlers = handlers.clone();
                let settings = settings.clone();
                tokio::spawn(async move {
                    run(&jobs, &handlers, &settings, lease).await;
                    drop(kind_slot);
                    drop(slot);
                });
            }
            Ok(None) => {
                failures = 0;
                drop(slot);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = &mut wake => {}
                    () = tokio::time::sleep(settings.poll) => {}
                }
            }
            Err(e) => {
                drop(slot);
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(error = %e, "job queue: cannot take jobs");
                }
                let pause = settings.poll * failures.min(8);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

async fn run(jobs: &Jobs, handlers: &Handlers, settings: &WorkerSettings, lease: Lease) {
    let cancel = CancellationToken::new();
    if lease.job.cancel_requested {
        cancel.cancel();
    }
    let heartbeat = tokio::spawn(heartbeat(
        jobs.clone(),
        lease.clone(),
        settings.visibility,
        cancel.clone(),
    ));
    let kind = lease.job.spec.kind.clone();
    let outcome = match handlers.by_kind.get(&kind) {
        Some(handler) => {
            let handler = handler.clone();
            let ctx = JobContext {
                job: lease.job.clone(),
                cancel: cancel.clone(),
            };
            // A panicking handler fails its job instead of the worker.
            match tokio::spawn(async move { handler.run(&ctx).await }).await {
                Ok(r) => r,
                Err(e) => Err(JobError::new("panic", e.to_string())),
            }
        }
        None => Err(JobError::new(
            "no_handler",
            format!(
                "no handler for job kind {kind:?} in worker {}",
                settings.name
            ),
        )),
    };
    heartbeat.abort();
    let now = jobs.now();
    let (how, error) = match &outcome {
        Ok(()) => (Settle::Succeeded, None),
        // A job whose cancellation was asked for ends cancelled however it
        // fails: the queue applies that when it settles.
        Err(e) => (
            Settle::after_failure(&lease.job, &e.kind, now, rand::random()),
            Some(e.to_string()),
        ),
    };
    if let Some(e) = &error {
        tracing::info!(job = %lease.job.id, kind = %kind, attempt = lease.job.attempts, error = %e, "job failed");
    }
    let settled = settle(jobs, settings, &lease, how, error.as_deref()).await;
    if let (Some(state), Some(o)) = (settled, &handlers.observer)
        && state.is_terminal()
    {
        o.finished(&lease.job, state).await;
    }
}

/// Settles a delivery, retrying while the queue is unreachable for up to
/// four visibility timeouts; after that the job is delivered again.
async fn settle(
    jobs: &Jobs,
    settings: &WorkerSettings,
    lease: &Lease,
    how: Settle,
    error: Option<&str>,
) -> Option<JobState> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match jobs.queue.settle(lease, how, error, jobs.now()).await {
            Ok(state) => {
                if state == JobState::Queued {
                    jobs.wake.notify_waiters();
                }
                return Some(state);
            }
            Err(QueueError::Unavailable(e)) if started.elapsed() < settings.visibility * 4 => {
                tracing::debug!(error = %e, job = %lease.job.id, "job queue: cannot settle yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::warn!(error = %e, job = %lease.job.id, "job queue: could not settle the job");
                return None;
            }
        }
    }
}

async fn heartbeat(jobs: Jobs, lease: Lease, visibility: Duration, cancel: CancellationToken) {
    let every = (visibility / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        let until = jobs.now() + chrono::Duration::from_std(visibility).unwrap_or_default();
        match jobs.queue.extend(&lease, until).await {
            Ok(true) => cancel.cancel(),
            Ok(false) => {}
            Err(QueueError::LeaseLost) => {
                tracing::warn!(job = %lease.job.id, "job lease lost; stopping the handler");
                cancel.cancel();
                return;
            }
            Err(e) => tracing::debug!(error = %e, "job queue: heartbeat failed"),
        }
    }
}
