//! Redis with the embedded queue behind it: while Redis is unreachable,
//! new jobs go to the embedded file and workers drain both, so no job is
//! dropped because Redis went away.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::UserId;

use crate::embedded::EmbeddedQueue;
use crate::model::{
    Enqueued, Job, JobCursor, JobFilter, JobSpec, JobState, Lease, QueueError, Settle, Stats,
};
use crate::queue::Queue;
use crate::redis::RedisQueue;

/// How many reserves in a row prefer Redis before one looks at the
/// embedded file first, so jobs spilled there are not starved by a busy
/// Redis.
const FALLBACK_EVERY: u64 = 8;

pub struct ResilientQueue {
    primary: RedisQueue,
    fallback: EmbeddedQueue,
    /// While Redis is down, new work skips it until this instant, so each
    /// enqueue does not wait on a dead connection first.
    retry_at: std::sync::Mutex<Option<std::time::Instant>>,
    spilled: AtomicU64,
    reserves: AtomicU64,
}

/// How long new work skips Redis after it failed.
const RETRY_REDIS_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

const PRIMARY: u8 = 0;
const FALLBACK: u8 = 1;

impl ResilientQueue {
    pub fn new(primary: RedisQueue, fallback: EmbeddedQueue) -> Self {
        Self {
            primary,
            fallback,
            retry_at: std::sync::Mutex::new(None),
            spilled: AtomicU64::new(0),
            reserves: AtomicU64::new(0),
        }
    }

    /// Jobs enqueued in the embedded file because Redis was unavailable.
    pub fn spilled(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    /// Whether new work should skip Redis for now.
    fn skip_primary(&self) -> bool {
        let retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        retry_at.is_some_and(|t| std::time::Instant::now() < t)
    }

    fn note<T>(&self, r: &Result<T, QueueError>) {
        let down = matches!(r, Err(QueueError::Unavailable(_)));
        let was_down = {
            let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
            let was_down = retry_at.is_some();
            *retry_at = down.then(|| std::time::Instant::now() + RETRY_REDIS_AFTER);
            was_down
        };
        if was_down != down {
            if down {
                tracing::warn!("job queue: redis unavailable, using the embedded queue");
            } else {
                tracing::info!("job queue: redis is back");
            }
        }
    }

    /// Runs a call on Redis, unless Redis failed moments ago, and notes
    /// how it went.
    async fn on_primary<'a, T, Fut>(
        &'a self,
        call: impl FnOnce(&'a RedisQueue) -> Fut,
    ) -> Result<T, QueueError>
    where
        Fut: std::future::Future<Output = Result<T, QueueError>> + 'a,
    {
        if self.skip_primary() {
            return Err(QueueError::Unavailable("redis is down".into()));
        }
        let r = call(&self.primary).await;
        self.note(&r);
        r
    }

    fn by_origin(&self, lease: &Lease) -> &dyn Queue {
        if lease.origin == FALLBACK {
            &self.fallback
        } else {
            &self.primary
        }
    }

    async fn reserve_from(
        &self,
        origin: u8,
        worker: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        skip: &[String],
    ) -> Result<Option<Lease>, QueueError> {
        let found = if origin == FALLBACK {
            self.fallback.reserve(worker, now, until, skip).await
        } else {
            self.on_primary(|q| q.reserve(worker, now, until, skip))
                .await
        };
        Ok(found?.map(|mut lease| {
            lease.origin = origin;
            lease
        }))
    }
}

#[async_trait]
impl Queue for ResilientQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, spec: JobSpec, now: DateTime<Utc>) -> Result<Enqueued, QueueError> {
        // A key first used while Redis was down lives in the file.
        if let Some(key) = &spec.idempotency_key
            && let Some(id) = self.fallback.id_for_key(&spec.user, key).await?
        {
            return Ok(Enqueued { id, created: false });
        }
        match self.on_primary(|q| q.enqueue(spec.clone(), now)).await {
            Err(QueueError::Unavailable(e)) => {
                tracing::warn!(error = %e, kind = %spec.kind, "job queue: enqueued in the embedded queue");
                self.spilled.fetch_add(1, Ordering::Relaxed);
                self.fallback.enqueue(spec, now).await
            }
            other => other,
        }
    }

    async fn reserve(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        skip: &[String],
    ) -> Result<Option<Lease>, QueueError> {
        let turn = self.reserves.fetch_add(1, Ordering::Relaxed);
        let order = if turn % FALLBACK_EVERY == FALLBACK_EVERY - 1 {
            [FALLBACK, PRIMARY]
        } else {
            [PRIMARY, FALLBACK]
        };
        let mut down = None;
        for origin in order {
            match self.reserve_from(origin, worker, now, until, skip).await {
                Ok(Some(lease)) => return Ok(Some(lease)),
                Ok(None) => {}
                Err(e @ QueueError::Unavailable(_)) if origin == PRIMARY => down = Some(e),
                Err(e) => return Err(e),
            }
        }
        match down {
            // Nothing in the file either: report Redis being down so the
            // worker backs off instead of spinning.
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    async fn extend(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool, QueueError> {
        self.by_origin(lease).extend(lease, until).await
    }

    async fn settle(
        &self,
        lease: &Lease,
        how: Settle,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<JobState, QueueError> {
        self.by_origin(lease).settle(lease, how, error, now).await
    }

    async fn cancel(&self, user: &UserId, id: &str, now: DateTime<Utc>) -> Result<Job, QueueError> {
        match self.fallback.cancel(user, id, now).await {
            Err(QueueError::NotFound) => {}
            other => return other,
        }
        self.on_primary(|q| q.cancel(user, id, now)).await
    }

    async fn get(&self, user: &UserId, id: &str) -> Result<Option<Job>, QueueError> {
        if let Some(job) = self.fallback.get(user, id).await? {
            return Ok(Some(job));
        }
        self.on_primary(|q| q.get(user, id)).await
    }

    async fn list(
        &self,
        user: &UserId,
        filter: &JobFilter,
        limit: usize,
        after: Option<&JobCursor>,
    ) -> Result<(Vec<Job>, Option<JobCursor>), QueueError> {
        let (mut jobs, more_primary) = self
            .on_primary(|q| q.list(user, filter, limit, after))
            .await?;
        let (spilled, more_fallback) = self.fallback.list(user, filter, limit, after).await?;
        jobs.extend(spilled);
        jobs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let more = more_primary.is_some() || more_fallback.is_some() || jobs.len() > limit;
        jobs.truncate(limit);
        let next = if more {
            jobs.last().map(JobCursor::after)
        } else {
            None
        };
        Ok((jobs, next))
    }

    async fn stats(&self, user: &UserId) -> Result<Stats, QueueError> {
        let mut stats = self.on_primary(|q| q.stats(user)).await?;
        stats.merge(&self.fallback.stats(user).await?);
        Ok(stats)
    }

    async fn recover(
        &self,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        let local = self.fallback.recover(now, forget_before).await?;
        let remote = self.on_primary(|q| q.recover(now, forget_before)).await?;
        Ok(local + remote)
    }
}
