//! The embedded queue: one SQLite file (table `background_jobs`) in WAL
//! mode. Every transition is one immediate transaction, so several
//! processes (the server and `focusforge worker`) can share the file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::UserId;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::model::{
    Enqueued, Job, JobCursor, JobFilter, JobSpec, JobState, Lease, QueueError, Settle, Stats,
    from_ms, ms, token, validated,
};
use crate::queue::Queue;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS background_jobs (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    lease TEXT,
    lease_until INTEGER,
    worker TEXT,
    last_error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS background_jobs_idempotency
    ON background_jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS background_jobs_due
    ON background_jobs (priority, run_at, id) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS background_jobs_leases
    ON background_jobs (lease_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS background_jobs_finished
    ON background_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS background_jobs_user
    ON background_jobs (user_id, created_at DESC, id DESC);
";

const COLUMNS: &str = "id, spec, state, attempts, created_at, run_at, started_at, finished_at, \
                       last_error, cancel_requested, worker";

/// The embedded backend.
#[derive(Clone)]
pub struct EmbeddedQueue {
    conn: Arc<Mutex<Connection>>,
}

fn internal(e: impl std::fmt::Display) -> QueueError {
    QueueError::Internal(e.to_string())
}

fn job(row: &Row<'_>) -> rusqlite::Result<Job> {
    let spec: String = row.get(1)?;
    let state: String = row.get(2)?;
    let bad = |what: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
    };
    Ok(Job {
        id: row.get(0)?,
        spec: serde_json::from_str(&spec).map_err(|e| bad(e.to_string()))?,
        state: JobState::parse(&state).ok_or_else(|| bad(format!("state {state:?}")))?,
        attempts: row.get(3)?,
        created_at: from_ms(row.get(4)?),
        run_at: from_ms(row.get(5)?),
        started_at: row.get::<_, Option<i64>>(6)?.map(from_ms),
        finished_at: row.get::<_, Option<i64>>(7)?.map(from_ms),
        last_error: row.get(8)?,
        cancel_requested: row.get::<_, i64>(9)? != 0,
        worker: row.get(10)?,
    })
}

impl EmbeddedQueue {
    /// Opens (or creates) the queue file.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(internal)?;
        }
        let conn = Connection::open(path).map_err(internal)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(internal)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(internal)?;
        conn.pragma_update(None, "synchronous", "normal")
            .map_err(internal)?;
        conn.execute_batch(SCHEMA).map_err(internal)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(internal)?
    }
}

impl EmbeddedQueue {
    /// The id of the user's job with this idempotency key, if any.
    pub(crate) async fn id_for_key(
        &self,
        user: &UserId,
        key: &str,
    ) -> Result<Option<String>, QueueError> {
        let (user, key) = (user.clone(), key.to_owned());
        self.with(move |conn| key_owner(conn, &user, &key)).await
    }
}

fn key_owner(conn: &Connection, user: &UserId, key: &str) -> Result<Option<String>, QueueError> {
    conn.query_row(
        "SELECT id FROM background_jobs WHERE user_id = ?1 AND idempotency_key = ?2",
        params![user.as_str(), key],
        |r| r.get(0),
    )
    .optional()
    .map_err(internal)
}

fn select_job(conn: &Connection, id: &str) -> Result<Option<Job>, QueueError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM background_jobs WHERE id = ?1"),
        [id],
        job,
    )
    .optional()
    .map_err(internal)
}

#[async_trait]
impl Queue for EmbeddedQueue {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn enqueue(&self, spec: JobSpec, now: DateTime<Utc>) -> Result<Enqueued, QueueError> {
        validated(&spec)?;
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            if let Some(key) = &spec.idempotency_key
                && let Some(id) = key_owner(&tx, &spec.user, key)?
            {
                return Ok(Enqueued { id, created: false });
            }
            let id = focusforge_core::new_id();
            let run_at = spec.run_at.unwrap_or(now);
            tx.execute(
                "INSERT INTO background_jobs (id, user_id, kind, spec, priority, state, created_at, run_at, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8)",
                params![
                    id,
                    spec.user.as_str(),
                    spec.kind,
                    serde_json::to_string(&spec).map_err(internal)?,
                    spec.priority.rank(),
                    ms(now),
                    ms(run_at),
                    spec.idempotency_key,
                ],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(Enqueued { id, created: true })
        })
        .await
    }

    async fn reserve(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        skip: &[String],
    ) -> Result<Option<Lease>, QueueError> {
        let worker = worker.to_owned();
        let skip = skip.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let mut sql = String::from(
                "SELECT id FROM background_jobs WHERE state = 'queued' AND run_at <= ?1",
            );
            if !skip.is_empty() {
                let marks: Vec<String> = (0..skip.len()).map(|i| format!("?{}", i + 2)).collect();
                sql.push_str(&format!(" AND kind NOT IN ({})", marks.join(", ")));
            }
            sql.push_str(" ORDER BY priority, run_at, id LIMIT 1");
            let mut args: Vec<rusqlite::types::Value> = vec![ms(now).into()];
            args.extend(skip.iter().map(|k| k.clone().into()));
            let id: Option<String> = tx
                .query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))
                .optional()
                .map_err(internal)?;
            let Some(id) = id else {
                return Ok(None);
            };
            let token = token();
            tx.execute(
                "UPDATE background_jobs SET state = 'running', attempts = attempts + 1,
                     started_at = ?2, lease = ?3, lease_until = ?4, worker = ?5
                 WHERE id = ?1",
                params![id, ms(now), token, ms(until), worker],
            )
            .map_err(internal)?;
            let job = select_job(&tx, &id)?.ok_or(QueueError::NotFound)?;
            tx.commit().map_err(internal)?;
            Ok(Some(Lease {
                job,
                token,
                origin: 0,
            }))
        })
        .await
    }

    async fn extend(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool, QueueError> {
        let (id, token) = (lease.job.id.clone(), lease.token.clone());
        self.with(move |conn| {
            let cancel: Option<i64> = conn
                .query_row(
                    "UPDATE background_jobs SET lease_until = ?3
                     WHERE id = ?1 AND lease = ?2 AND state = 'running'
                     RETURNING cancel_requested",
                    params![id, token, ms(until)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            cancel.map(|c| c != 0).ok_or(QueueError::LeaseLost)
        })
        .await
    }

    async fn settle(
        &self,
        lease: &Lease,
        how: Settle,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<JobState, QueueError> {
        let (id, token) = (lease.job.id.clone(), lease.token.clone());
        let error = error.map(str::to_owned);
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let held: Option<i64> = tx
                .query_row(
                    "SELECT cancel_requested FROM background_jobs
                     WHERE id = ?1 AND lease = ?2 AND state = 'running'",
                    params![id, token],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            let Some(cancel) = held else {
                return Err(QueueError::LeaseLost);
            };
            let how = if cancel != 0 && how != Settle::Succeeded {
                Settle::Cancelled
            } else {
                how
            };
            let state = match how {
                Settle::Retry(at) => {
                    tx.execute(
                        "UPDATE background_jobs SET state = 'queued', run_at = ?2, lease = NULL,
                             lease_until = NULL, last_error = COALESCE(?3, last_error)
                         WHERE id = ?1",
                        params![id, ms(at), error],
                    )
                    .map_err(internal)?;
                    JobState::Queued
                }
                other => {
                    let state = match other {
                        Settle::Succeeded => JobState::Succeeded,
                        Settle::Failed => JobState::Failed,
                        Settle::Dead => JobState::Dead,
                        _ => JobState::Cancelled,
                    };
                    tx.execute(
                        "UPDATE background_jobs SET state = ?2, finished_at = ?3, lease = NULL,
                             lease_until = NULL, last_error = COALESCE(?4, last_error)
                         WHERE id = ?1",
                        params![id, state.as_str(), ms(now), error],
                    )
                    .map_err(internal)?;
                    state
                }
            };
            tx.commit().map_err(internal)?;
            Ok(state)
        })
        .await
    }

    async fn cancel(&self, user: &UserId, id: &str, now: DateTime<Utc>) -> Result<Job, QueueError> {
        let (user, id) = (user.clone(), id.to_owned());
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            tx.execute(
                "UPDATE background_jobs SET state = 'cancelled', finished_at = ?3
                 WHERE id = ?1 AND user_id = ?2 AND state = 'queued'",
                params![id, user.as_str(), ms(now)],
            )
            .map_err(internal)?;
            tx.execute(
                "UPDATE background_jobs SET cancel_requested = 1
                 WHERE id = ?1 AND user_id = ?2 AND state = 'running'",
                params![id, user.as_str()],
            )
            .map_err(internal)?;
            let job = select_job(&tx, &id)?
                .filter(|j| j.spec.user == user)
                .ok_or(QueueError::NotFound)?;
            tx.commit().map_err(internal)?;
            Ok(job)
        })
        .await
    }

    async fn get(&self, user: &UserId, id: &str) -> Result<Option<Job>, QueueError> {
        let (user, id) = (user.clone(), id.to_owned());
        self.with(move |conn| Ok(select_job(conn, &id)?.filter(|j| j.spec.user == user)))
            .await
    }

    async fn list(
        &self,
        user: &UserId,
        filter: &JobFilter,
        limit: usize,
        after: Option<&JobCursor>,
    ) -> Result<(Vec<Job>, Option<JobCursor>), QueueError> {
        let user = user.clone();
        let filter = filter.clone();
        let after = after.cloned();
        self.with(move |conn| {
            let mut sql = format!(
                "SELECT {COLUMNS} FROM background_jobs WHERE user_id = ?1
                 AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
                 AND (?4 IS NULL OR kind = ?4)"
            );
            if !filter.states.is_empty() {
                let states: Vec<String> = filter
                    .states
                    .iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect();
                sql.push_str(&format!(" AND state IN ({})", states.join(", ")));
            }
            sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?5");
            let mut stmt = conn.prepare(&sql).map_err(internal)?;
            let rows = stmt
                .query_map(
                    params![
                        user.as_str(),
                        after.as_ref().map(|c| c.created_ms),
                        after.as_ref().map(|c| c.id.clone()),
                        filter.kind,
                        i64::try_from(limit + 1).unwrap_or(i64::MAX),
                    ],
                    job,
                )
                .map_err(internal)?;
            let mut jobs = rows.collect::<Result<Vec<_>, _>>().map_err(internal)?;
            let next = if jobs.len() > limit {
                jobs.truncate(limit);
                jobs.last().map(JobCursor::after)
            } else {
                None
            };
            Ok((jobs, next))
        })
        .await
    }

    async fn stats(&self, user: &UserId) -> Result<Stats, QueueError> {
        let user = user.clone();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT kind, state, COUNT(*) FROM background_jobs WHERE user_id = ?1
                     GROUP BY kind, state",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map([user.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(internal)?;
            let mut stats = Stats::default();
            for row in rows {
                let (kind, state, n) = row.map_err(internal)?;
                if let Some(state) = JobState::parse(&state) {
                    stats.add(&kind, state, u64::try_from(n).unwrap_or(0));
                }
            }
            Ok(stats)
        })
        .await
    }

    async fn recover(
        &self,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let expired = "state = 'running' AND lease_until <= ?1";
            tx.execute(
                &format!(
                    "UPDATE background_jobs SET state = 'cancelled', finished_at = ?1, lease = NULL,
                         lease_until = NULL
                     WHERE {expired} AND cancel_requested = 1"
                ),
                [ms(now)],
            )
            .map_err(internal)?;
            let dead = tx
                .execute(
                    &format!(
                        "UPDATE background_jobs SET state = 'dead', finished_at = ?1, lease = NULL,
                             lease_until = NULL,
                             last_error = 'the worker running it stopped answering'
                         WHERE {expired}
                           AND attempts >= json_extract(spec, '$.retry.max_attempts')"
                    ),
                    [ms(now)],
                )
                .map_err(internal)?;
            let requeued = tx
                .execute(
                    &format!(
                        "UPDATE background_jobs SET state = 'queued', run_at = ?1, lease = NULL,
                             lease_until = NULL
                         WHERE {expired}"
                    ),
                    [ms(now)],
                )
                .map_err(internal)?;
            tx.execute(
                "DELETE FROM background_jobs WHERE finished_at IS NOT NULL AND finished_at < ?1",
                [ms(forget_before)],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok((dead + requeued) as u64)
        })
        .await
    }
}
