//! The Redis log: one stream per user, so every replica reads the same
//! events in the same order and a client resumes on any of them. An id is
//! the stream entry's (`<ms>-<seq>`, from Redis's clock). Each append trims
//! the user's stream to the newest `per_user` and to the retention, and
//! moves the stream's expiry to the retention, so a user who stops writing
//! leaves nothing behind. Beside the stream, for twice as long, are the
//! newest id trimmed and the last id appended: a read after an id older
//! than the first, or than the second once the stream has expired, is a
//! gap (an id older than twice the retention with nothing known is one
//! too). Appends are also noted, by user, in one capped stream that
//! every replica's watcher reads to wake its subscribers.
//!
//! Keys, under a configurable prefix `p`: `p:u:<len(user)>:<user>` (the
//! user's events: fields `t`, the time in ms, and `b`, the body),
//! `p:m:<len(user)>:<user>` (a hash: `cut`, the newest id trimmed, and
//! `last`, the last appended) and `p:all`
//! (field `u`: whose event was appended).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::Pool;
use deadpool_redis::redis::{self, Script, Value};
use focusforge_core::UserId;

use crate::{EventError, EventLog, Read, Record};

/// Shared by the scripts: ids as numbers, and their order.
const IDS: &str = r"
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function older(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  return am < bm or (am == bm and as < bs)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

const APPEND: &str = r"
local cap, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local id = redis.call('XADD', KEYS[1], '*', 't', ARGV[1], 'b', ARGV[2])
local cut = false
local len = redis.call('XLEN', KEYS[1])
if len > cap then
  local over = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - cap)
  cut = over[#over][1]
end
local aged = redis.call('XREVRANGE', KEYS[1], '(' .. (now_ms() - retention) .. '-0', '-', 'COUNT', 1)
if #aged > 0 and (not cut or older(cut, aged[1][1])) then cut = aged[1][1] end
if cut then
  local ms, seq = parts(cut)
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', ms, seq + 1))
  local before = redis.call('HGET', KEYS[3], 'cut')
  if not before or older(before, cut) then redis.call('HSET', KEYS[3], 'cut', cut) end
end
redis.call('HSET', KEYS[3], 'last', id)
redis.call('PEXPIRE', KEYS[1], retention)
redis.call('PEXPIRE', KEYS[3], 2 * retention)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'u', ARGV[5])
return id
";

const READ: &str = r"
local after = ARGV[1]
if after ~= '' and after ~= '0-0' then
  local cut = redis.call('HGET', KEYS[2], 'cut')
  if cut and older(after, cut) then return {'gap', cut} end
  if redis.call('EXISTS', KEYS[1]) == 0 then
    -- The stream expired: what it held after `after` is gone.
    local last = redis.call('HGET', KEYS[2], 'last')
    if last then
      if older(after, last) then return {'gap', last} end
    elseif parts(after) < now_ms() - 2 * tonumber(ARGV[3]) then
      return {'gap', '0-0'}
    end
  end
end
if tonumber(ARGV[2]) == 0 then return {'ok', {}} end
local start = '-'
if after ~= '' then start = '(' .. after end
return {'ok', redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[2])}
";

const HEAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return info[i + 1] end
end
return false
";

/// How many appends one [`EventLog::appended_since`] call looks at.
const WATCH_ENTRIES: usize = 10_000;

/// Settings of the Redis log.
#[derive(Debug, Clone)]
pub struct RedisLogSettings {
    pub url: String,
    pub pool_size: usize,
    /// Bounds every command, connecting included.
    pub timeout: Duration,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
    /// How long events are kept.
    pub retention: Duration,
    /// Events kept per user at most.
    pub per_user: usize,
}

/// The Redis backend.
#[derive(Clone)]
pub struct RedisLog {
    pool: Pool,
    settings: RedisLogSettings,
    append: std::sync::Arc<Script>,
    read: std::sync::Arc<Script>,
    head: std::sync::Arc<Script>,
}

fn unavailable(e: impl std::fmt::Display) -> EventError {
    EventError::Backend(e.to_string())
}

fn bad_reply(what: &str) -> EventError {
    EventError::Backend(format!("redis answered an unexpected {what}"))
}

/// A stream id as Redis gives them out: `<ms>-<seq>`.
fn check_id(id: &str) -> Result<(), EventError> {
    let ok = id.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if ok {
        Ok(())
    } else {
        Err(EventError::BadId(id.chars().take(40).collect()))
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A stream entry's fields, by name.
type Fields = Vec<(String, Vec<u8>)>;

/// Stream entries (`[[id, [field, value, ...]], ...]`) as id and fields.
fn entries(v: &Value) -> Result<Vec<(String, Fields)>, EventError> {
    let Value::Array(items) = v else {
        return Err(bad_reply("entry list"));
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(pair) = item else {
                return Err(bad_reply("entry"));
            };
            let (Some(id), Some(Value::Array(fields))) = (pair.first().and_then(text), pair.get(1))
            else {
                return Err(bad_reply("entry"));
            };
            let fields = fields
                .chunks(2)
                .filter_map(|kv| match kv {
                    [k, Value::BulkString(v)] => Some((text(k)?, v.clone())),
                    _ => None,
                })
                .collect();
            Ok((id, fields))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

impl RedisLog {
    pub fn new(settings: RedisLogSettings) -> Result<Self, EventError> {
        let pool =
            focusforge_cache::redis_pool(&settings.url, settings.pool_size, settings.timeout)
                .map_err(EventError::Backend)?;
        Ok(Self {
            pool,
            settings,
            append: std::sync::Arc::new(Script::new(&format!("{IDS}{APPEND}"))),
            read: std::sync::Arc::new(Script::new(&format!("{IDS}{READ}"))),
            head: std::sync::Arc::new(Script::new(HEAD)),
        })
    }

    fn stream(&self, user: &UserId) -> String {
        let u = user.as_str();
        format!("{}:u:{}:{u}", self.settings.prefix, u.len())
    }

    /// What is known of the user's stream beyond it: the newest id
    /// trimmed (`cut`) and the last appended (`last`).
    fn trimmed(&self, user: &UserId) -> String {
        let u = user.as_str();
        format!("{}:m:{}:{u}", self.settings.prefix, u.len())
    }

    fn all(&self) -> String {
        format!("{}:all", self.settings.prefix)
    }

    fn retention_ms(&self) -> String {
        self.settings.retention.as_millis().max(1).to_string()
    }

    /// Runs one exchange within the configured timeout.
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, EventError>>,
    ) -> Result<T, EventError> {
        tokio::time::timeout(self.settings.timeout, work)
            .await
            .map_err(|_| EventError::Backend("redis timed out".into()))?
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[&[u8]],
    ) -> Result<T, EventError> {
        self.bounded(async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            let mut call = script.prepare_invoke();
            for k in keys {
                call.key(k);
            }
            for a in args {
                call.arg(*a);
            }
            call.invoke_async::<T>(&mut conn).await.map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl EventLog for RedisLog {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn append(
        &self,
        user: &UserId,
        at: DateTime<Utc>,
        body: Vec<u8>,
    ) -> Result<String, EventError> {
        let at = at.timestamp_millis().to_string();
        let cap = self.settings.per_user.max(1).to_string();
        let retention = self.retention_ms();
        self.invoke(
            &self.append,
            &[self.stream(user), self.all(), self.trimmed(user)],
            &[
                at.as_bytes(),
                &body,
                cap.as_bytes(),
                retention.as_bytes(),
                user.as_str().as_bytes(),
            ],
        )
        .await
    }

    async fn read(
        &self,
        user: &UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Read, EventError> {
        if let Some(id) = after {
            check_id(id)?;
        }
        let limit = limit.to_string();
        let retention = self.retention_ms();
        let reply: Value = self
            .invoke(
                &self.read,
                &[self.stream(user), self.trimmed(user)],
                &[
                    after.unwrap_or_default().as_bytes(),
                    limit.as_bytes(),
                    retention.as_bytes(),
                ],
            )
            .await?;
        let Value::Array(parts) = &reply else {
            return Err(bad_reply("read"));
        };
        match (parts.first().and_then(text).as_deref(), parts.get(1)) {
            (Some("gap"), Some(resume)) => Ok(Read {
                events: Vec::new(),
                gap: Some(text(resume).ok_or_else(|| bad_reply("gap"))?),
            }),
            (Some("ok"), Some(list)) => {
                let events = entries(list)?
                    .into_iter()
                    .map(|(id, fields)| {
                        let at = field(&fields, "t")
                            .and_then(|t| std::str::from_utf8(t).ok())
                            .and_then(|t| t.parse::<i64>().ok())
                            .and_then(DateTime::from_timestamp_millis)
                            .unwrap_or_default();
                        Record {
                            id,
                            at,
                            body: field(&fields, "b").unwrap_or_default().to_vec(),
                        }
                    })
                    .collect();
                Ok(Read { events, gap: None })
            }
            _ => Err(bad_reply("read")),
        }
    }

    async fn head(&self, user: &UserId) -> Result<String, EventError> {
        let head: Option<String> = self.invoke(&self.head, &[self.stream(user)], &[]).await?;
        Ok(head.unwrap_or_else(|| "0-0".into()))
    }

    /// Appends trim as they go, and a quiet user's stream expires.
    async fn trim(&self, _before: DateTime<Utc>, _per_user: usize) -> Result<u64, EventError> {
        Ok(0)
    }

    async fn appended_since(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<UserId>, Option<String>), EventError> {
        let Some(cursor) = cursor else {
            let head: Option<String> = self.invoke(&self.head, &[self.all()], &[]).await?;
            return Ok((Vec::new(), Some(head.unwrap_or_else(|| "0-0".into()))));
        };
        check_id(cursor)?;
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.all())
            .arg(format!("({cursor}"))
            .arg("+")
            .arg("COUNT")
            .arg(WATCH_ENTRIES);
        let reply: Value = self
            .bounded(async {
                let mut conn = self.pool.get().await.map_err(unavailable)?;
                cmd.query_async(&mut conn).await.map_err(unavailable)
            })
            .await?;
        let found = entries(&reply)?;
        let next = found
            .last()
            .map_or_else(|| cursor.to_owned(), |(id, _)| id.clone());
        let mut users: Vec<UserId> = found
            .iter()
            .filter_map(|(_, fields)| {
                let u = std::str::from_utf8(field(fields, "u")?).ok()?;
                UserId::parse(u).ok()
            })
            .collect();
        users.sort();
        users.dedup();
        Ok((users, Some(next)))
    }
}
