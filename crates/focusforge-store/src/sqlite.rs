//! The embedded backend: one SQLite database in WAL mode with `synchronous =
//! FULL`, so a committed write survives a process kill and a power cut, and a
//! crash mid-write leaves the previous state intact. Bodies are JSON text and
//! filters use SQLite's JSON functions; every statement binds its values.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::{Clock, UserId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use crate::query::{check_filters, check_scan};
use crate::{
    Document, DocumentStore, Filter, NewDocument, Page, Precondition, Query, Scan, SortKey,
    StoreError, check_collection, check_object,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    body       TEXT NOT NULL,
    PRIMARY KEY (collection, user_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS documents_by_created ON documents (collection, user_id, created_at, id);
CREATE INDEX IF NOT EXISTS documents_by_updated ON documents (collection, user_id, updated_at, id);
CREATE INDEX IF NOT EXISTS documents_by_expiry ON documents (expires_at) WHERE expires_at IS NOT NULL;
";

const LIVE: &str = "(expires_at IS NULL OR expires_at > ?)";
const COLUMNS: &str = "id, user_id, version, created_at, updated_at, expires_at, body";

/// The embedded document store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        }
        let conn = Connection::open(path).map_err(StoreError::backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(StoreError::backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(StoreError::backend)?;
        conn.pragma_update(None, "busy_timeout", 5000)
            .map_err(StoreError::backend)?;
        conn.execute_batch(SCHEMA).map_err(StoreError::backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            clock,
        })
    }

    /// Runs `f` on the connection off the async runtime's worker threads.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, i64) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let now = self.clock.now().timestamp_millis();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn, now)
        })
        .await
        .map_err(StoreError::backend)?
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn read_document(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Document, String)> {
    let user: String = row.get(1)?;
    let body: String = row.get(6)?;
    let doc = Document {
        id: row.get(0)?,
        // Only ids that passed `UserId::parse` are ever written.
        user_id: UserId::parse(&user).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        version: row.get(2)?,
        created_at: from_millis(row.get(3)?),
        updated_at: from_millis(row.get(4)?),
        expires_at: row.get::<_, Option<i64>>(5)?.map(from_millis),
        body: Value::Null,
    };
    Ok((doc, body))
}

fn parse_body((mut doc, body): (Document, String)) -> Result<Document, StoreError> {
    doc.body = serde_json::from_str(&body).map_err(StoreError::backend)?;
    Ok(doc)
}

fn check_body(body: &Value) -> Result<String, StoreError> {
    check_object(body)?;
    serde_json::to_string(body).map_err(StoreError::backend)
}

fn get_live(
    conn: &Connection,
    collection: &str,
    user: &str,
    id: &str,
    now: i64,
) -> Result<Option<Document>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM documents WHERE collection = ? AND user_id = ? AND id = ? AND {LIVE}"
    );
    conn.query_row(&sql, params![collection, user, id, now], read_document)
        .optional()
        .map_err(StoreError::backend)?
        .map(parse_body)
        .transpose()
}

fn check_precondition(found: &Document, pre: Precondition) -> Result<(), StoreError> {
    match pre {
        Precondition::Version(expected) if expected != found.version => {
            Err(StoreError::VersionMismatch {
                expected,
                actual: found.version,
            })
        }
        _ => Ok(()),
    }
}

fn scalar(value: &Value) -> Result<SqlValue, StoreError> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err(StoreError::InvalidQuery(
                "filters compare scalars only".into(),
            ));
        }
    })
}

/// Appends `AND <condition>` for each filter to `sql`, binding into `args`.
fn push_filters(
    filters: &[Filter],
    sql: &mut String,
    args: &mut Vec<SqlValue>,
) -> Result<(), StoreError> {
    check_filters(filters)?;
    for filter in filters {
        let path = filter.field().map(|f| SqlValue::Text(format!("$.{f}")));
        match filter {
            Filter::Eq(_, Value::Null) => sql.push_str(" AND json_extract(body, ?) IS NULL"),
            Filter::Eq(_, v) => {
                sql.push_str(" AND json_extract(body, ?) = ?");
                args.extend(path);
                args.push(scalar(v)?);
                continue;
            }
            Filter::In(_, values) if values.is_empty() => {
                sql.push_str(" AND 0");
                continue;
            }
            Filter::In(_, values) => {
                let marks = vec!["?"; values.len()].join(", ");
                sql.push_str(&format!(" AND json_extract(body, ?) IN ({marks})"));
                args.extend(path);
                for v in values {
                    args.push(scalar(v)?);
                }
                continue;
            }
            Filter::Contains(_, v) => {
                sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(body, ?) WHERE value = ?)");
                args.extend(path);
                args.push(scalar(v)?);
                continue;
            }
            Filter::Range { gte, lt, .. } => {
                if let Some(gte) = gte {
                    sql.push_str(" AND json_extract(body, ?) >= ?");
                    args.extend(path.clone());
                    args.push(SqlValue::Integer(*gte));
                }
                if let Some(lt) = lt {
                    sql.push_str(" AND json_extract(body, ?) < ?");
                    args.extend(path);
                    args.push(SqlValue::Integer(*lt));
                }
                continue;
            }
            Filter::CreatedBetween { gte, lt } | Filter::UpdatedBetween { gte, lt } => {
                let column = if matches!(filter, Filter::CreatedBetween { .. }) {
                    "created_at"
                } else {
                    "updated_at"
                };
                if let Some(gte) = gte {
                    sql.push_str(&format!(" AND {column} >= ?"));
                    args.push(SqlValue::Integer(millis(*gte)));
                }
                if let Some(lt) = lt {
                    sql.push_str(&format!(" AND {column} < ?"));
                    args.push(SqlValue::Integer(millis(*lt)));
                }
                continue;
            }
        }
        args.extend(path);
    }
    Ok(())
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn insert(&self, collection: &str, doc: NewDocument) -> Result<Document, StoreError> {
        check_collection(collection)?;
        let body = check_body(&doc.body)?;
        let collection = collection.to_owned();
        self.run(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::backend)?;
            // An expired document that the sweeper has not reached yet must not
            // block reuse of its id.
            tx.execute(
                "DELETE FROM documents WHERE collection = ? AND user_id = ? AND id = ? \
                 AND expires_at IS NOT NULL AND expires_at <= ?",
                params![collection, doc.user_id.as_str(), doc.id, now],
            )
            .map_err(StoreError::backend)?;
            let inserted = tx.execute(
                "INSERT INTO documents (collection, user_id, id, version, created_at, updated_at, \
                 expires_at, body) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
                params![
                    collection,
                    doc.user_id.as_str(),
                    doc.id,
                    now,
                    now,
                    doc.expires_at.map(millis),
                    body
                ],
            );
            match inserted {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == ErrorCode::ConstraintViolation =>
                {
                    return Err(StoreError::AlreadyExists);
                }
                other => other.map_err(StoreError::backend)?,
            };
            tx.commit().map_err(StoreError::backend)?;
            Ok(Document {
                id: doc.id,
                user_id: doc.user_id,
                version: 1,
                created_at: from_millis(now),
                updated_at: from_millis(now),
                expires_at: doc.expires_at.map(|at| from_millis(millis(at))),
                body: doc.body,
            })
        })
        .await
    }

    async fn get(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        check_collection(collection)?;
        let (collection, user, id) = (collection.to_owned(), user.clone(), id.to_owned());
        self.run(move |conn, now| get_live(conn, &collection, user.as_str(), &id, now))
            .await
    }

    async fn replace(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
        body: Value,
        expires_at: Option<DateTime<Utc>>,
        precondition: Precondition,
    ) -> Result<Document, StoreError> {
        check_collection(collection)?;
        let text = check_body(&body)?;
        let (collection, user, id) = (collection.to_owned(), user.clone(), id.to_owned());
        self.run(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::backend)?;
            let found =
                get_live(&tx, &collection, user.as_str(), &id, now)?.ok_or(StoreError::NotFound)?;
            check_precondition(&found, precondition)?;
            tx.execute(
                "UPDATE documents SET version = version + 1, updated_at = ?, expires_at = ?, \
                 body = ? WHERE collection = ? AND user_id = ? AND id = ?",
                params![
                    now,
                    expires_at.map(millis),
                    text,
                    collection,
                    user.as_str(),
                    id
                ],
            )
            .map_err(StoreError::backend)?;
            tx.commit().map_err(StoreError::backend)?;
            Ok(Document {
                version: found.version + 1,
                updated_at: from_millis(now),
                expires_at: expires_at.map(|at| from_millis(millis(at))),
                body,
                ..found
            })
        })
        .await
    }

    async fn delete(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError> {
        check_collection(collection)?;
        let (collection, user, id) = (collection.to_owned(), user.clone(), id.to_owned());
        self.run(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::backend)?;
            let found =
                get_live(&tx, &collection, user.as_str(), &id, now)?.ok_or(StoreError::NotFound)?;
            check_precondition(&found, precondition)?;
            tx.execute(
                "DELETE FROM documents WHERE collection = ? AND user_id = ? AND id = ?",
                params![collection, user.as_str(), id],
            )
            .map_err(StoreError::backend)?;
            tx.commit().map_err(StoreError::backend)
        })
        .await
    }

    async fn delete_many(
        &self,
        collection: &str,
        user: &UserId,
        filters: &[Filter],
    ) -> Result<u64, StoreError> {
        check_collection(collection)?;
        let (collection, user, filters) = (collection.to_owned(), user.clone(), filters.to_vec());
        self.run(move |conn, now| {
            let mut sql =
                format!("DELETE FROM documents WHERE collection = ? AND user_id = ? AND {LIVE}");
            let mut args = vec![
                SqlValue::Text(collection),
                SqlValue::Text(user.as_str().to_owned()),
                SqlValue::Integer(now),
            ];
            push_filters(&filters, &mut sql, &mut args)?;
            let n = conn
                .execute(&sql, rusqlite::params_from_iter(args))
                .map_err(StoreError::backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn find(
        &self,
        collection: &str,
        user: &UserId,
        query: &Query,
    ) -> Result<Page, StoreError> {
        check_collection(collection)?;
        query.check()?;
        let (collection, user, query) = (collection.to_owned(), user.clone(), query.clone());
        self.run(move |conn, now| {
            let mut sql = format!(
                "SELECT {COLUMNS} FROM documents WHERE collection = ? AND user_id = ? AND {LIVE}"
            );
            let mut args = vec![
                SqlValue::Text(collection),
                SqlValue::Text(user.as_str().to_owned()),
                SqlValue::Integer(now),
            ];
            push_filters(&query.filters, &mut sql, &mut args)?;
            let key = match query.order.key {
                SortKey::CreatedAt => "created_at",
                SortKey::UpdatedAt => "updated_at",
            };
            let (cmp, dir) = if query.order.descending {
                ("<", "DESC")
            } else {
                (">", "ASC")
            };
            if let Some(after) = &query.after {
                sql.push_str(&format!(
                    " AND ({key} {cmp} ? OR ({key} = ? AND id {cmp} ?))"
                ));
                args.push(SqlValue::Integer(after.key));
                args.push(SqlValue::Integer(after.key));
                args.push(SqlValue::Text(after.id.clone()));
            }
            sql.push_str(&format!(" ORDER BY {key} {dir}, id {dir} LIMIT ?"));
            args.push(SqlValue::Integer(query.limit as i64 + 1));

            let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::backend)?;
            let documents = stmt
                .query_map(rusqlite::params_from_iter(args), read_document)
                .map_err(StoreError::backend)?
                .map(|row| row.map_err(StoreError::backend).and_then(parse_body))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(documents, &query))
        })
        .await
    }

    async fn scan(
        &self,
        collection: &str,
        user: &UserId,
        filters: &[Filter],
        limit: usize,
    ) -> Result<Scan, StoreError> {
        check_collection(collection)?;
        check_scan(filters, limit)?;
        let (collection, user, filters) = (collection.to_owned(), user.clone(), filters.to_vec());
        self.run(move |conn, now| {
            let mut sql = format!(
                "SELECT {COLUMNS} FROM documents WHERE collection = ? AND user_id = ? AND {LIVE}"
            );
            let mut args = vec![
                SqlValue::Text(collection),
                SqlValue::Text(user.as_str().to_owned()),
                SqlValue::Integer(now),
            ];
            push_filters(&filters, &mut sql, &mut args)?;
            sql.push_str(" LIMIT ?");
            args.push(SqlValue::Integer(limit as i64 + 1));
            let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::backend)?;
            let documents = stmt
                .query_map(rusqlite::params_from_iter(args), read_document)
                .map_err(StoreError::backend)?
                .map(|row| row.map_err(StoreError::backend).and_then(parse_body))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Scan::from_overfetch(documents, limit))
        })
        .await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.run(|conn, now| {
            let n = conn
                .execute(
                    "DELETE FROM documents WHERE expires_at IS NOT NULL AND expires_at <= ?",
                    params![now],
                )
                .map_err(StoreError::backend)?;
            Ok(n as u64)
        })
        .await
    }
}
