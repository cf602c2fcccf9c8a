//! The Redis queue. Each job is a hash; due and delayed jobs wait in one
//! sorted set per priority scored by due time, leased jobs in a sorted set
//! scored by lease expiry (the reliable-queue pattern: a job is never
//! only in a worker's memory). Every transition is one Lua script, so it
//! is atomic, and the state counters behind the statistics move with it.
//!
//! Keys, under a configurable prefix `p`:
//! `p:job:<id>` (hash), `p:queue:<0-4>` (due time), `p:leased` (lease
//! expiry), `p:finished` (finish time, for retention), `p:dead` (the
//! dead-letter set), `p:user:<user>` (creation time, for listing),
//! `p:stats:<user>` (counters per kind and state), `p:idem:<len(user)>:<user>:<key>`
//! (idempotency keys).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::Pool;
use deadpool_redis::redis::{self, Script};
use focusforge_core::UserId;

use crate::model::{
    Enqueued, Job, JobCursor, JobFilter, JobSpec, JobState, Lease, QueueError, Settle, Stats,
    from_ms, ms, token, validated,
};
use crate::queue::Queue;

/// Shared by every script: moves a job between states and its counters.
const MOVE: &str = r"
local function move(p, key, user, kind, from, to)
  redis.call('HSET', key, 'state', to)
  local s = p .. ':stats:' .. user
  redis.call('HINCRBY', s, kind .. '|' .. from, -1)
  redis.call('HINCRBY', s, kind .. '|' .. to, 1)
end
local function finish(p, key, id, user, kind, from, to, now)
  move(p, key, user, kind, from, to)
  redis.call('HSET', key, 'finished', now)
  redis.call('HDEL', key, 'lease', 'until')
  redis.call('ZADD', p .. ':finished', now, id)
  redis.call('ZREM', p .. ':leased', id)
  if to == 'dead' then redis.call('ZADD', p .. ':dead', now, id) end
end
";

const ENQUEUE: &str = r"
local p, id, user, kind, prio = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local idem = ARGV[9]
if idem ~= '' then
  local k = p .. ':idem:' .. string.len(user) .. ':' .. user .. ':' .. idem
  local existing = redis.call('GET', k)
  if existing then return {existing, 0} end
  redis.call('SET', k, id)
end
local key = p .. ':job:' .. id
redis.call('HSET', key, 'id', id, 'spec', ARGV[8], 'user', user, 'kind', kind, 'prio', prio,
  'state', 'queued', 'attempts', 0, 'max', ARGV[10], 'created', ARGV[6], 'run_at', ARGV[7],
  'cancel', 0, 'idem', idem)
redis.call('ZADD', p .. ':queue:' .. prio, ARGV[7], id)
redis.call('ZADD', p .. ':user:' .. user, ARGV[6], id)
redis.call('HINCRBY', p .. ':stats:' .. user, kind .. '|queued', 1)
return {id, 1}
";

const RESERVE: &str = r"
local p, now = ARGV[1], tonumber(ARGV[2])
local skip = {}
for i = 6, #ARGV do skip[ARGV[i]] = true end
for prio = 0, 4 do
  local q = p .. ':queue:' .. prio
  local ids = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, 32)
  for _, id in ipairs(ids) do
    local key = p .. ':job:' .. id
    local kind = redis.call('HGET', key, 'kind')
    if not kind then
      redis.call('ZREM', q, id)
    elseif not skip[kind] then
      redis.call('ZREM', q, id)
      local user = redis.call('HGET', key, 'user')
      move(p, key, user, kind, 'queued', 'running')
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSET', key, 'lease', ARGV[5], 'until', ARGV[3], 'worker', ARGV[4], 'started', now)
      redis.call('ZADD', p .. ':leased', ARGV[3], id)
      return redis.call('HGETALL', key)
    end
  end
end
return false
";

const EXTEND: &str = r"
local p, id = ARGV[1], ARGV[2]
local key = p .. ':job:' .. id
if redis.call('HGET', key, 'state') ~= 'running' or redis.call('HGET', key, 'lease') ~= ARGV[3] then
  return -1
end
redis.call('HSET', key, 'until', ARGV[4])
redis.call('ZADD', p .. ':leased', ARGV[4], id)
return tonumber(redis.call('HGET', key, 'cancel'))
";

const SETTLE: &str = r"
local p, id, now, to = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local key = p .. ':job:' .. id
if redis.call('HGET', key, 'state') ~= 'running' or redis.call('HGET', key, 'lease') ~= ARGV[3] then
  return false
end
local user, kind, prio = redis.call('HGET', key, 'user'), redis.call('HGET', key, 'kind'), redis.call('HGET', key, 'prio')
if redis.call('HGET', key, 'cancel') == '1' and to ~= 'succeeded' then to = 'cancelled' end
if ARGV[7] ~= '' then redis.call('HSET', key, 'err', ARGV[7]) end
if to == 'retry' then
  move(p, key, user, kind, 'running', 'queued')
  redis.call('HDEL', key, 'lease', 'until')
  redis.call('ZREM', p .. ':leased', id)
  redis.call('HSET', key, 'run_at', ARGV[6])
  redis.call('ZADD', p .. ':queue:' .. prio, ARGV[6], id)
  return 'queued'
end
finish(p, key, id, user, kind, 'running', to, now)
return to
";

const CANCEL: &str = r"
local p, user, id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. ':job:' .. id
if redis.call('HGET', key, 'user') ~= user then return 0 end
local state = redis.call('HGET', key, 'state')
if state == 'queued' then
  redis.call('ZREM', p .. ':queue:' .. redis.call('HGET', key, 'prio'), id)
  finish(p, key, id, user, redis.call('HGET', key, 'kind'), 'queued', 'cancelled', now)
elseif state == 'running' then
  redis.call('HSET', key, 'cancel', 1)
end
return 1
";

const RECOVER: &str = r"
local p, now, cutoff = ARGV[1], ARGV[2], ARGV[3]
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':leased', '-inf', now, 'LIMIT', 0, 1000)) do
  local key = p .. ':job:' .. id
  if redis.call('HGET', key, 'state') ~= 'running' then
    redis.call('ZREM', p .. ':leased', id)
  else
    local user, kind, prio = redis.call('HGET', key, 'user'), redis.call('HGET', key, 'kind'), redis.call('HGET', key, 'prio')
    if redis.call('HGET', key, 'cancel') == '1' then
      finish(p, key, id, user, kind, 'running', 'cancelled', now)
    elseif tonumber(redis.call('HGET', key, 'attempts')) >= tonumber(redis.call('HGET', key, 'max')) then
      redis.call('HSET', key, 'err', 'the worker running it stopped answering')
      finish(p, key, id, user, kind, 'running', 'dead', now)
      n = n + 1
    else
      move(p, key, user, kind, 'running', 'queued')
      redis.call('HDEL', key, 'lease', 'until')
      redis.call('ZREM', p .. ':leased', id)
      redis.call('HSET', key, 'run_at', now)
      redis.call('ZADD', p .. ':queue:' .. prio, now, id)
      n = n + 1
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':finished', '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)) do
  local key = p .. ':job:' .. id
  local user, kind, state, idem = unpack(redis.call('HMGET', key, 'user', 'kind', 'state', 'idem'))
  if user then
    redis.call('HINCRBY', p .. ':stats:' .. user, kind .. '|' .. state, -1)
    redis.call('ZREM', p .. ':user:' .. user, id)
    if idem and idem ~= '' then redis.call('DEL', p .. ':idem:' .. string.len(user) .. ':' .. user .. ':' .. idem) end
  end
  redis.call('ZREM', p .. ':finished', id)
  redis.call('ZREM', p .. ':dead', id)
  redis.call('DEL', key)
end
return n
";

#[derive(Debug, Clone)]
pub struct RedisQueueSettings {
    pub url: String,
    pub pool_size: usize,
    /// Bounds every command, connecting included.
    pub timeout: Duration,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
}

impl Default for RedisQueueSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 16,
            timeout: Duration::from_secs(2),
            prefix: "focusforge:jobs".into(),
        }
    }
}

struct Scripts {
    enqueue: Script,
    reserve: Script,
    extend: Script,
    settle: Script,
    cancel: Script,
    recover: Script,
}

/// The Redis backend.
#[derive(Clone)]
pub struct RedisQueue {
    pool: Pool,
    timeout: Duration,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn with_move(body: &str) -> Script {
    Script::new(&format!("{MOVE}{body}"))
}

impl RedisQueue {
    /// Builds the pool; no connection is made until the first command.
    pub fn new(settings: &RedisQueueSettings) -> Result<Self, QueueError> {
        let pool =
            focusforge_cache::redis_pool(&settings.url, settings.pool_size, settings.timeout)
                .map_err(QueueError::Internal)?;
        Ok(Self {
            pool,
            timeout: settings.timeout,
            prefix: settings.prefix.clone(),
            scripts: std::sync::Arc::new(Scripts {
                enqueue: with_move(ENQUEUE),
                reserve: with_move(RESERVE),
                extend: with_move(EXTEND),
                settle: with_move(SETTLE),
                cancel: with_move(CANCEL),
                recover: with_move(RECOVER),
            }),
        })
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, QueueError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Bounds a Redis exchange, taking a connection included, by the
    /// configured timeout.
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, QueueError>>,
    ) -> Result<T, QueueError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| QueueError::Unavailable("redis timed out".into()))?
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        args: Vec<String>,
    ) -> Result<T, QueueError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let mut call = script.prepare_invoke();
            for a in &args {
                call.arg(a);
            }
            call.invoke_async::<T>(&mut conn).await.map_err(unavailable)
        })
        .await
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, QueueError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            cmd.query_async::<T>(&mut conn).await.map_err(unavailable)
        })
        .await
    }

    async fn fetch(&self, ids: &[String]) -> Result<Vec<Option<Job>>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(format!("{}:job:{id}", self.prefix));
        }
        let maps = self
            .bounded(async {
                let mut conn = self.conn().await?;
                pipe.query_async::<Vec<HashMap<String, String>>>(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        maps.into_iter()
            .map(|m| {
                if m.is_empty() {
                    Ok(None)
                } else {
                    parse(&m).map(Some)
                }
            })
            .collect()
    }

    async fn get_any(&self, id: &str) -> Result<Option<Job>, QueueError> {
        Ok(self.fetch(&[id.to_owned()]).await?.pop().flatten())
    }
}

fn parse(m: &HashMap<String, String>) -> Result<Job, QueueError> {
    let field = |k: &str| {
        m.get(k)
            .ok_or_else(|| QueueError::Internal(format!("job hash without {k}")))
    };
    let num = |k: &str| -> Result<i64, QueueError> {
        field(k)?
            .parse::<i64>()
            .map_err(|e| QueueError::Internal(format!("job hash {k}: {e}")))
    };
    let opt = |k: &str| m.get(k).and_then(|v| v.parse::<i64>().ok()).map(from_ms);
    let spec: JobSpec =
        serde_json::from_str(field("spec")?).map_err(|e| QueueError::Internal(e.to_string()))?;
    let state = JobState::parse(field("state")?)
        .ok_or_else(|| QueueError::Internal("job hash with an unknown state".into()))?;
    Ok(Job {
        id: field("id")?.clone(),
        spec,
        state,
        attempts: u32::try_from(num("attempts")?).unwrap_or(0),
        created_at: from_ms(num("created")?),
        run_at: from_ms(num("run_at")?),
        started_at: opt("started"),
        finished_at: opt("finished"),
        last_error: m.get("err").cloned(),
        cancel_requested: m.get("cancel").is_some_and(|c| c == "1"),
        worker: m.get("worker").cloned(),
    })
}

#[async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, spec: JobSpec, now: DateTime<Utc>) -> Result<Enqueued, QueueError> {
        validated(&spec)?;
        let run_at = spec.run_at.unwrap_or(now);
        let args = vec![
            self.prefix.clone(),
            focusforge_core::new_id(),
            spec.user.to_string(),
            spec.kind.clone(),
            spec.priority.rank().to_string(),
            ms(now).to_string(),
            ms(run_at).to_string(),
            serde_json::to_string(&spec).map_err(|e| QueueError::Internal(e.to_string()))?,
            spec.idempotency_key.clone().unwrap_or_default(),
            spec.retry.max_attempts.to_string(),
        ];
        let (id, created): (String, i64) = self.run(&self.scripts.enqueue, args).await?;
        Ok(Enqueued {
            id,
            created: created == 1,
        })
    }

    async fn reserve(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        skip: &[String],
    ) -> Result<Option<Lease>, QueueError> {
        let token = token();
        let mut args = vec![
            self.prefix.clone(),
            ms(now).to_string(),
            ms(until).to_string(),
            worker.to_owned(),
            token.clone(),
        ];
        args.extend(skip.iter().cloned());
        let found: Option<HashMap<String, String>> = self.run(&self.scripts.reserve, args).await?;
        match found {
            Some(m) => Ok(Some(Lease {
                job: parse(&m)?,
                token,
                origin: 0,
            })),
            None => Ok(None),
        }
    }

    async fn extend(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool, QueueError> {
        let args = vec![
            self.prefix.clone(),
            lease.job.id.clone(),
            lease.token.clone(),
            ms(until).to_string(),
        ];
        match self.run::<i64>(&self.scripts.extend, args).await? {
            -1 => Err(QueueError::LeaseLost),
            cancel => Ok(cancel == 1),
        }
    }

    async fn settle(
        &self,
        lease: &Lease,
        how: Settle,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<JobState, QueueError> {
        let run_at = match how {
            Settle::Retry(at) => ms(at),
            _ => 0,
        };
        let args = vec![
            self.prefix.clone(),
            lease.job.id.clone(),
            lease.token.clone(),
            ms(now).to_string(),
            how.as_str().to_owned(),
            run_at.to_string(),
            error.unwrap_or_default().to_owned(),
        ];
        let state: Option<String> = self.run(&self.scripts.settle, args).await?;
        let state = state.ok_or(QueueError::LeaseLost)?;
        JobState::parse(&state).ok_or_else(|| QueueError::Internal(format!("state {state:?}")))
    }

    async fn cancel(&self, user: &UserId, id: &str, now: DateTime<Utc>) -> Result<Job, QueueError> {
        let args = vec![
            self.prefix.clone(),
            user.to_string(),
            id.to_owned(),
            ms(now).to_string(),
        ];
        let found: i64 = self.run(&self.scripts.cancel, args).await?;
        if found == 0 {
            return Err(QueueError::NotFound);
        }
        self.get(user, id).await?.ok_or(QueueError::NotFound)
    }

    async fn get(&self, user: &UserId, id: &str) -> Result<Option<Job>, QueueError> {
        Ok(self.get_any(id).await?.filter(|j| j.spec.user == *user))
    }

    async fn list(
        &self,
        user: &UserId,
        filter: &JobFilter,
        limit: usize,
        after: Option<&JobCursor>,
    ) -> Result<(Vec<Job>, Option<JobCursor>), QueueError> {
        let index = format!("{}:user:{user}", self.prefix);
        let mut out = Vec::new();
        let mut max = after.map_or("+inf".to_owned(), |c| c.created_ms.to_string());
        // Members already read at the `max` score: a read resumes after
        // them, however many jobs share that millisecond.
        let mut offset = 0usize;
        let mut cursor = after.cloned();
        // Newest first, in batches, until the page is full or the index ends.
        // Within a millisecond Redis orders members (ids) from the highest,
        // as the cursor does.
        loop {
            let batch = (limit + 1).max(64);
            let rows: Vec<(String, i64)> = self
                .query(
                    redis::cmd("ZREVRANGEBYSCORE")
                        .arg(&index)
                        .arg(&max)
                        .arg("-inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(batch),
                )
                .await?;
            let done = rows.len() < batch;
            let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
            for job in self.fetch(&ids).await?.into_iter().flatten() {
                // A job seen already, when the index changed between reads.
                if cursor.as_ref().is_some_and(|c| !c.precedes(&job)) {
                    continue;
                }
                cursor = Some(JobCursor::after(&job));
                if filter.matches(&job) {
                    out.push(job);
                    if out.len() > limit {
                        out.truncate(limit);
                        let next = out.last().map(JobCursor::after);
                        return Ok((out, next));
                    }
                }
            }
            let Some(&(_, last)) = rows.last() else {
                return Ok((out, None));
            };
            if done {
                return Ok((out, None));
            }
            let at_last = rows.iter().rev().take_while(|(_, s)| *s == last).count();
            if max == last.to_string() {
                offset += at_last;
            } else {
                max = last.to_string();
                offset = at_last;
            }
        }
    }

    async fn stats(&self, user: &UserId) -> Result<Stats, QueueError> {
        let key = format!("{}:stats:{user}", self.prefix);
        let counters: HashMap<String, i64> = self.query(redis::cmd("HGETALL").arg(&key)).await?;
        let mut stats = Stats::default();
        for (field, n) in counters {
            if let Some((kind, state)) = field.split_once('|')
                && let Some(state) = JobState::parse(state)
            {
                stats.add(kind, state, u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(stats)
    }

    async fn recover(
        &self,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        let args = vec![
            self.prefix.clone(),
            ms(now).to_string(),
            ms(forget_before).to_string(),
        ];
        let n: i64 = self.run(&self.scripts.recover, args).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
