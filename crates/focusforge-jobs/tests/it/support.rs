use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use focusforge_cache::testing::RedisServer;
use focusforge_core::{RetryPolicy, UserId};
use focusforge_jobs::{EmbeddedQueue, JobSpec, Queue, RedisQueue, RedisQueueSettings};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0)
        .single()
        .expect("time")
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

pub fn spec(kind: &str, who: &str) -> JobSpec {
    JobSpec::new(kind, user(who), serde_json::json!({"n": 1, "list": []}))
}

pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Duration::from_millis(10),
        multiplier: 2.0,
        max_delay: Duration::from_millis(100),
        jitter: 0.0,
        non_retryable: vec!["invalid_argument".into()],
    }
}

/// A queue on one backend, with whatever keeps the backend alive.
pub struct Backend {
    pub queue: Arc<dyn Queue>,
    pub _redis: Option<RedisServer>,
    pub _dir: tempfile::TempDir,
}

pub fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = EmbeddedQueue::open(&dir.path().join("jobs.db")).expect("open");
    Backend {
        queue: Arc::new(queue),
        _redis: None,
        _dir: dir,
    }
}

pub fn redis_queue(server: &RedisServer, prefix: &str) -> RedisQueue {
    RedisQueue::new(&RedisQueueSettings {
        url: server.url(),
        pool_size: 16,
        // Generous, so a slow fsync under load is not mistaken for an outage.
        timeout: Duration::from_secs(5),
        prefix: prefix.into(),
    })
    .expect("redis queue")
}

pub fn redis() -> Backend {
    let server = RedisServer::start();
    let queue = redis_queue(&server, "test:jobs");
    Backend {
        queue: Arc::new(queue),
        _redis: Some(server),
        _dir: tempfile::tempdir().expect("tempdir"),
    }
}

/// Polls `check` until it holds or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
