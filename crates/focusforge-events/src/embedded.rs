//! The embedded log: one SQLite file (`events`, in WAL mode). An event's id
//! is its row number, which SQLite's `AUTOINCREMENT` never hands out twice,
//! so ids order every user's events across the processes sharing the file.
//! `event_trims` remembers, per user, the newest id dropped: a read after
//! an older id has a gap.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::UserId;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{EventError, EventLog, Read, Record};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS event_trims (
    user_id TEXT PRIMARY KEY,
    upto INTEGER NOT NULL
);
";

/// How many users one [`EventLog::appended_since`] call reports at most;
/// the cursor moves only past the rows it looked at.
const WATCH_ROWS: i64 = 10_000;

fn backend(e: impl std::fmt::Display) -> EventError {
    EventError::Backend(e.to_string())
}

fn parse(id: &str) -> Result<i64, EventError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0 && id.len() <= 19)
        .ok_or_else(|| EventError::BadId(id.chars().take(40).collect()))
}

/// The embedded backend.
#[derive(Clone)]
pub struct EmbeddedLog {
    conn: Arc<Mutex<Connection>>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log file.
    pub fn open(path: &Path) -> Result<Self, EventError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(backend)?;
        // `full`: an id a client saw is never handed out again after a
        // power loss.
        conn.pragma_update(None, "synchronous", "full")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, EventError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, EventError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(backend)?
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn append(
        &self,
        user: &UserId,
        at: DateTime<Utc>,
        body: Vec<u8>,
    ) -> Result<String, EventError> {
        let user = user.as_str().to_owned();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO events (user_id, at, body) VALUES (?1, ?2, ?3)",
                params![user, at.timestamp_millis(), body],
            )
            .map_err(backend)?;
            Ok(conn.last_insert_rowid().to_string())
        })
        .await
    }

    async fn read(
        &self,
        user: &UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Read, EventError> {
        let after = after.map(parse).transpose()?;
        let user = user.as_str().to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let trimmed: Option<i64> = tx
                .query_row(
                    "SELECT upto FROM event_trims WHERE user_id = ?1",
                    params![user],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if let (Some(after), Some(upto)) = (after, trimmed)
                && after < upto
            {
                return Ok(Read {
                    events: Vec::new(),
                    gap: Some(upto.to_string()),
                });
            }
            // An id past every one handed out (the file was replaced since):
            // new events would come below it, so resume from the newest.
            if let Some(after) = after {
                let issued: i64 = tx
                    .query_row(
                        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                if after > issued {
                    return Ok(Read {
                        events: Vec::new(),
                        gap: Some(issued.to_string()),
                    });
                }
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, at, body FROM events WHERE user_id = ?1 AND seq > ?2 \
                     ORDER BY seq LIMIT ?3",
                )
                .map_err(backend)?;
            let events = stmt
                .query_map(params![user, after.unwrap_or(0), limit], |r| {
                    Ok(Record {
                        id: r.get::<_, i64>(0)?.to_string(),
                        at: DateTime::from_timestamp_millis(r.get(1)?).unwrap_or_default(),
                        body: r.get(2)?,
                    })
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(Read { events, gap: None })
        })
        .await
    }

    async fn head(&self, user: &UserId) -> Result<String, EventError> {
        let user = user.as_str().to_owned();
        self.with(move |conn| {
            let newest: Option<i64> = conn
                .query_row(
                    "SELECT max(seq) FROM events WHERE user_id = ?1",
                    params![user],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let trimmed: Option<i64> = conn
                .query_row(
                    "SELECT upto FROM event_trims WHERE user_id = ?1",
                    params![user],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            Ok(newest.or(trimmed).unwrap_or(0).to_string())
        })
        .await
    }

    async fn trim(&self, before: DateTime<Utc>, per_user: usize) -> Result<u64, EventError> {
        let before = before.timestamp_millis();
        let per_user = i64::try_from(per_user).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            // Per user, the newest id to drop: past the retention, or past
            // the newest `per_user`.
            let mut cuts: Vec<(String, i64)> = Vec::new();
            {
                let mut old = tx
                    .prepare("SELECT user_id, max(seq) FROM events WHERE at < ?1 GROUP BY user_id")
                    .map_err(backend)?;
                let rows = old
                    .query_map(params![before], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(backend)?;
                for row in rows {
                    cuts.push(row.map_err(backend)?);
                }
                let mut crowded = tx
                    .prepare("SELECT user_id FROM events GROUP BY user_id HAVING count(*) > ?1")
                    .map_err(backend)?;
                let users: Vec<String> = crowded
                    .query_map(params![per_user], |r| r.get(0))
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)?;
                for user in users {
                    let cut: i64 = tx
                        .query_row(
                            "SELECT seq FROM events WHERE user_id = ?1 \
                             ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                            params![user, per_user],
                            |r| r.get(0),
                        )
                        .map_err(backend)?;
                    cuts.push((user, cut));
                }
            }
            let mut dropped = 0;
            for (user, cut) in cuts {
                tx.execute(
                    "INSERT INTO event_trims (user_id, upto) VALUES (?1, ?2) \
                     ON CONFLICT (user_id) DO UPDATE SET upto = max(upto, excluded.upto)",
                    params![user, cut],
                )
                .map_err(backend)?;
                dropped += tx
                    .execute(
                        "DELETE FROM events WHERE user_id = ?1 AND seq <= ?2",
                        params![user, cut],
                    )
                    .map_err(backend)? as u64;
            }
            tx.commit().map_err(backend)?;
            Ok(dropped)
        })
        .await
    }

    async fn appended_since(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<UserId>, Option<String>), EventError> {
        let cursor = cursor.map(parse).transpose()?;
        self.with(move |conn| {
            let Some(after) = cursor else {
                let end: Option<i64> = conn
                    .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
                    .map_err(backend)?;
                return Ok((Vec::new(), Some(end.unwrap_or(0).to_string())));
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, user_id FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            let rows: Vec<(i64, String)> = stmt
                .query_map(params![after, WATCH_ROWS], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            let next = rows.last().map_or(after, |(seq, _)| *seq);
            let mut users: Vec<UserId> = rows
                .into_iter()
                .filter_map(|(_, u)| UserId::parse(&u).ok())
                .collect();
            users.sort();
            users.dedup();
            Ok((users, Some(next.to_string())))
        })
        .await
    }
}
