//! Background jobs. A [`Queue`] holds jobs with at-least-once delivery:
//! a worker leases a job, heartbeats while it runs and settles it; a job
//! whose worker dies is delivered again when its lease runs out. Jobs can
//! be delayed, carry priorities and idempotency keys, are retried with
//! backoff under their [`RetryPolicy`](focusforge_core::RetryPolicy) and
//! end in the dead-letter set when attempts run out. Cancellation removes
//! a queued job and asks a running one's handler to stop.
//!
//! Backends: [`RedisQueue`] (production), [`EmbeddedQueue`] (one SQLite
//! file, the embedded default) and [`ResilientQueue`] (Redis, spilling to
//! the embedded file while Redis is down). [`Worker`] runs handlers under
//! global and per-kind caps; [`Scheduler`] fires cron [`Schedule`]s.

mod cron;
mod embedded;
mod model;
mod queue;
mod redis;
mod resilient;
mod worker;

pub use cron::{Firing, Overlap, Schedule, Scheduler};
pub use embedded::EmbeddedQueue;
pub use model::{
    Enqueued, InvalidSpec, Job, JobCursor, JobFilter, JobSpec, JobState, Lease, MAX_PAYLOAD_BYTES,
    QueueError, Settle, Stats,
};
pub use queue::Queue;
pub use redis::{RedisQueue, RedisQueueSettings};
pub use resilient::ResilientQueue;
pub use worker::{
    Handler, Handlers, JobContext, JobError, JobObserver, Jobs, Worker, WorkerSettings,
};
