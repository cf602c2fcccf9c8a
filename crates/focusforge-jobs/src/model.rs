//! Jobs as the queue keeps them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use focusforge_core::{AfterFailure, Error, Priority, RetryPolicy, UserId, Violations};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest encoded payload a job may carry.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// What to run: a handler kind, the user it runs for, its input, and how
/// it is scheduled and retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// `[a-z0-9_.-]`, 1-64 characters; picks the handler.
    pub kind: String,
    pub user: UserId,
    pub payload: Value,
    pub priority: Priority,
    /// Not before this instant (a delayed job); `None` runs it now.
    pub run_at: Option<DateTime<Utc>>,
    pub retry: RetryPolicy,
    /// Enqueueing a second job with the same key (for the same user)
    /// returns the first job instead; handlers may use it to make their
    /// effects idempotent.
    pub idempotency_key: Option<String>,
}

impl JobSpec {
    pub fn new(kind: impl Into<String>, user: UserId, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            user,
            payload,
            priority: Priority::default(),
            run_at: None,
            retry: RetryPolicy::default(),
            idempotency_key: None,
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        let mut v = Violations::new();
        check_kind(&mut v, "kind", &self.kind);
        if let Some(key) = &self.idempotency_key {
            v.check(
                !key.is_empty() && key.len() <= 200,
                "idempotency_key",
                "must be 1-200 bytes",
            );
        }
        let size = serde_json::to_vec(&self.payload).map_or(usize::MAX, |b| b.len());
        v.check(
            size <= MAX_PAYLOAD_BYTES,
            "payload",
            "must encode to at most 256 KiB",
        );
        if let Err(e) = self.retry.validate() {
            v.add(format!("retry.{}", e.field), e.reason);
        }
        v.finish()
    }
}

pub(crate) fn check_kind(v: &mut Violations, field: &str, kind: &str) {
    v.check(
        !kind.is_empty()
            && kind.len() <= 64
            && kind.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
            }),
        field,
        "must be 1-64 characters of [a-z0-9_.-]",
    );
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its time or for a worker.
    Queued,
    /// Leased by a worker.
    Running,
    Succeeded,
    /// Failed with an error that is not retried.
    Failed,
    /// Ran out of attempts: in the dead-letter set.
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// A job and its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub spec: JobSpec,
    pub state: JobState,
    /// Deliveries so far (a delivery to a worker that died counts).
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When it is (or was last) due.
    pub run_at: DateTime<Utc>,
    /// When a worker last took it.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Cancellation was asked for while it ran.
    pub cancel_requested: bool,
    /// The worker that last took it.
    pub worker: Option<String>,
}

/// A job taken by a worker. Only the holder of the lease can settle the
/// job, and only while the lease is the job's current one.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job: Job,
    pub token: String,
    /// Which backend of a [`crate::ResilientQueue`] it came from.
    pub(crate) origin: u8,
}

/// The result of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// False when the idempotency key named an existing job.
    pub created: bool,
}

/// How a failed delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Succeeded,
    /// Tried again at this instant.
    Retry(DateTime<Utc>),
    Failed,
    Dead,
    /// The handler stopped because cancellation was asked for.
    Cancelled,
}

impl Settle {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Settle::Succeeded => "succeeded",
            Settle::Retry(_) => "retry",
            Settle::Failed => "failed",
            Settle::Dead => "dead",
            Settle::Cancelled => "cancelled",
        }
    }

    /// What a failure of `kind` on this delivery comes to under the job's
    /// retry policy; `sample` (0-1) draws the jitter.
    pub fn after_failure(job: &Job, kind: &str, now: DateTime<Utc>, sample: f64) -> Self {
        match job.spec.retry.after_failure(job.attempts, kind, sample) {
            AfterFailure::Retry(delay) => {
                Settle::Retry(now + chrono::Duration::from_std(delay).unwrap_or_default())
            }
            AfterFailure::Failed => Settle::Failed,
            AfterFailure::Dead => Settle::Dead,
        }
    }
}

/// Which of a user's jobs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Any of these states; empty means any.
    pub states: Vec<JobState>,
    pub kind: Option<String>,
}

impl JobFilter {
    pub fn matches(&self, job: &Job) -> bool {
        (self.states.is_empty() || self.states.contains(&job.state))
            && self.kind.as_ref().is_none_or(|k| *k == job.spec.kind)
    }
}

/// Where a listing page ended: newest first, by creation time then id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCursor {
    pub created_ms: i64,
    pub id: String,
}

impl JobCursor {
    pub fn after(job: &Job) -> Self {
        Self {
            created_ms: job.created_at.timestamp_millis(),
            id: job.id.clone(),
        }
    }

    /// Whether `job` comes after this cursor in newest-first order.
    pub(crate) fn precedes(&self, job: &Job) -> bool {
        let ms = job.created_at.timestamp_millis();
        ms < self.created_ms || (ms == self.created_ms && job.id < self.id)
    }
}

/// How many of a user's jobs are in each state, in all and per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub by_state: BTreeMap<JobState, u64>,
    pub by_kind: BTreeMap<String, BTreeMap<JobState, u64>>,
}

impl Stats {
    pub fn count(&self, state: JobState) -> u64 {
        self.by_state.get(&state).copied().unwrap_or(0)
    }

    pub(crate) fn add(&mut self, kind: &str, state: JobState, n: u64) {
        if n == 0 {
            return;
        }
        *self.by_state.entry(state).or_default() += n;
        *self
            .by_kind
            .entry(kind.to_owned())
            .or_default()
            .entry(state)
            .or_default() += n;
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        for (kind, states) in &other.by_kind {
            for (state, n) in states {
                self.add(kind, *state, *n);
            }
        }
    }
}

/// Why a queue operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue is unavailable: {0}")]
    Unavailable(String),
    #[error("job not found")]
    NotFound,
    /// The lease expired and the job went to another worker, or it was
    /// settled already.
    #[error("the lease on this job is no longer held")]
    LeaseLost,
    #[error(transparent)]
    Invalid(#[from] InvalidSpec),
    #[error("job queue: {0}")]
    Internal(String),
}

/// A job spec that failed validation, with the offending fields.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String, pub Vec<focusforge_core::FieldViolation>);

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(m) => Error::Unavailable(m),
            QueueError::NotFound => Error::NotFound("job".into()),
            QueueError::LeaseLost => Error::FailedPrecondition(e.to_string()),
            QueueError::Invalid(InvalidSpec(_, v)) => Error::InvalidArgument(v),
            QueueError::Internal(m) => Error::Internal(m),
        }
    }
}

pub(crate) fn validated(spec: &JobSpec) -> Result<(), QueueError> {
    match spec.validate() {
        Ok(()) => Ok(()),
        Err(Error::InvalidArgument(v)) => Err(QueueError::Invalid(InvalidSpec(
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            v,
        ))),
        Err(e) => Err(QueueError::Internal(e.to_string())),
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A fresh lease token.
pub(crate) fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}
