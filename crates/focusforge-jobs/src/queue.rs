//! The queue port: what every backend does, with the same semantics.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::UserId;

use crate::model::{
    Enqueued, Job, JobCursor, JobFilter, JobSpec, Lease, QueueError, Settle, Stats,
};

/// A persistent job queue with at-least-once delivery.
///
/// Time is always passed in, never read from the backend's clock, so every
/// backend behaves the same under a test clock. Implementations must pass
/// the shared conformance tests (`tests/it/conformance.rs`).
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// `redis` or `embedded`.
    fn backend(&self) -> &'static str;

    /// Adds a job, due at `spec.run_at` or `now`. With an idempotency key
    /// that the user already used, returns the existing job's id.
    async fn enqueue(&self, spec: JobSpec, now: DateTime<Utc>) -> Result<Enqueued, QueueError>;

    /// Leases the best due job: highest priority, then earliest due, then
    /// oldest. The lease lasts until `until` unless extended; a job whose
    /// lease runs out is delivered again by [`Queue::recover`]. Jobs of the
    /// `skip` kinds are left for later.
    async fn reserve(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        skip: &[String],
    ) -> Result<Option<Lease>, QueueError>;

    /// Extends a held lease; returns whether cancellation was asked for.
    async fn extend(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool, QueueError>;

    /// Settles a delivery. Returns the state the job ended in: `Cancelled`
    /// instead of a retry or failure when cancellation was asked for.
    async fn settle(
        &self,
        lease: &Lease,
        how: Settle,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<crate::JobState, QueueError>;

    /// Cancels one of the user's jobs: a queued job at once, a running one
    /// by asking its worker (cooperative). Finished jobs stay as they are.
    async fn cancel(&self, user: &UserId, id: &str, now: DateTime<Utc>) -> Result<Job, QueueError>;

    async fn get(&self, user: &UserId, id: &str) -> Result<Option<Job>, QueueError>;

    /// A page of the user's jobs, newest first.
    async fn list(
        &self,
        user: &UserId,
        filter: &JobFilter,
        limit: usize,
        after: Option<&JobCursor>,
    ) -> Result<(Vec<Job>, Option<JobCursor>), QueueError>;

    async fn stats(&self, user: &UserId) -> Result<Stats, QueueError>;

    /// Puts jobs whose lease ran out back in the queue (or in the
    /// dead-letter set once they used all their attempts) and drops
    /// finished jobs older than `forget_before`. Returns how many jobs were
    /// recovered.
    async fn recover(
        &self,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<u64, QueueError>;
}
