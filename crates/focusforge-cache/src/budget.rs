//! Rate-limit budgets in Redis, one per key across every process that
//! points at the same Redis: GCRA in one script, on Redis's own clock, so
//! the replicas' clocks need not agree.

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::Pool;
use redis::Script;

use crate::CacheError;

/// Theoretical arrival time in microseconds on Redis's clock. A call may go
/// while the time after it is at most `tolerance` ahead of now; the key
/// expires when the budget is full again. Answers 0 (go) or the wait in
/// microseconds. Times are written with `%.0f`: Lua's default number
/// format would round them.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
local wait = nxt - now - tolerance
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return 0
";

/// Budgets under `prefix` in one Redis.
#[derive(Clone)]
pub struct RedisBudget {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    script: Arc<Script>,
}

impl RedisBudget {
    pub fn new(pool: Pool, prefix: &str, timeout: Duration) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
            timeout,
            script: Arc::new(Script::new(GCRA)),
        }
    }

    /// Takes one call from `key`'s budget (`interval_us` between calls,
    /// `burst` at once): `None` when it may go, else how long to wait.
    pub async fn take(
        &self,
        key: &str,
        interval_us: u64,
        burst: u32,
    ) -> Result<Option<Duration>, CacheError> {
        let tolerance = interval_us.saturating_mul(u64::from(burst.max(1)));
        let key = format!("{}{key}", self.prefix);
        let work = async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| CacheError::Unavailable(e.to_string()))?;
            self.script
                .key(key)
                .arg(interval_us)
                .arg(tolerance)
                .invoke_async::<u64>(&mut conn)
                .await
                .map_err(|e| CacheError::Unavailable(e.to_string()))
        };
        let wait = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| CacheError::Unavailable("redis timed out".into()))??;
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }
}
