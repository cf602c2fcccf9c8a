//! The MongoDB backend, for production deployments (replica sets, sharding).
//!
//! One MongoDB collection per store collection. A document is stored as
//! `{_id: {u, i}, user_id, doc_id, version, created_at, updated_at,
//! expires_at, body}`: the compound `_id` makes `(user, id)` the identity, so
//! two users can never collide; `expires_at` is a BSON date under a TTL index
//! (`expireAfterSeconds: 0`) and every read also checks it, because the TTL
//! monitor runs only once a minute. Writes use the configured write concern
//! (`majority` by default). A write reads the live document first and then
//! writes with its version in the filter (`findOneAndUpdate` / `deleteOne`),
//! so it never touches an expired document and a conditional write loses
//! cleanly to a concurrent one.
//!
//! Queries are plain field documents an index can serve on any
//! MongoDB-wire server: one by id goes through the `(user_id, doc_id,
//! version)` index rather than the subdocument `_id` (a collection scan on
//! some servers), conditions sit side by side rather than under a top-level
//! `$and`, and expiry is checked on what comes back rather than with an
//! `$or` in the query (either hid every index from SecantusDB).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bson::{Bson, Document as BsonDoc, doc};
use chrono::{DateTime, Utc};
use focusforge_core::{Clock, UserId};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde_json::Value;

use crate::Collection as Declared;
use crate::query::{check_filters, check_scan};
use crate::{
    Document, DocumentStore, Filter, NewDocument, Page, Precondition, Query, Scan, SortKey,
    StoreError, check_collection, check_object,
};

/// Connection settings; the URI may carry more driver options.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    pub uri: String,
    pub database: String,
    /// `majority`, or a number of nodes.
    pub write_concern: String,
    pub retry_writes: bool,
    pub max_pool_size: u32,
    /// Bounds server selection and connecting, so a request never waits
    /// long on an unreachable server.
    pub timeout: Duration,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            uri: "mongodb://127.0.0.1:27017".into(),
            database: "focusforge".into(),
            write_concern: "majority".into(),
            retry_writes: true,
            max_pool_size: 32,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The MongoDB document store. Cheap to clone.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    clock: Arc<dyn Clock>,
    indexed: Arc<Mutex<HashSet<String>>>,
    collections: Arc<Vec<Declared>>,
}

fn backend(e: mongodb::error::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

fn date(ms: i64) -> bson::DateTime {
    bson::DateTime::from_millis(ms)
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn key(user: &UserId, id: &str) -> BsonDoc {
    doc! { "u": user.as_str(), "i": id }
}

/// One document by its owner and id, expired or not.
fn by_id(user: &UserId, id: &str) -> BsonDoc {
    doc! { "user_id": user.as_str(), "doc_id": id }
}

/// One version of one document: what a compare-and-set write selects.
fn at_version(user: &UserId, id: &str, version: i64) -> BsonDoc {
    doc! { "user_id": user.as_str(), "doc_id": id, "version": version }
}

fn live(now: i64) -> BsonDoc {
    doc! { "$or": [ { "expires_at": Bson::Null }, { "expires_at": { "$gt": date(now) } } ] }
}

fn is_live(doc: &Document, now: i64) -> bool {
    doc.expires_at.is_none_or(|at| at.timestamp_millis() > now)
}

/// The conjunction of `parts` as one filter document: fields side by side
/// where they do not collide, so a planner sees them, and an `$and` only
/// for the parts that would.
fn all_of(parts: Vec<BsonDoc>) -> BsonDoc {
    let mut flat = BsonDoc::new();
    let mut rest = Vec::new();
    for part in parts {
        if part.keys().any(|k| k == "$and" || flat.contains_key(k)) {
            rest.push(part);
        } else {
            flat.extend(part);
        }
    }
    if !rest.is_empty() {
        flat.insert("$and", rest);
    }
    flat
}

/// How often a write reads again after a concurrent write changed the
/// document between its read and its compare-and-set.
const WRITE_ATTEMPTS: usize = 16;

fn to_bson(value: &Value) -> Result<Bson, StoreError> {
    Bson::try_from(value.clone()).map_err(|e| StoreError::InvalidQuery(e.to_string()))
}

fn to_document(raw: BsonDoc) -> Result<Document, StoreError> {
    let bad = |what: &str| StoreError::Backend(format!("stored document has a bad {what}"));
    let user = raw.get_str("user_id").map_err(|_| bad("user_id"))?;
    let body = match raw.get("body") {
        Some(b @ Bson::Document(_)) => b.clone().into_relaxed_extjson(),
        _ => return Err(bad("body")),
    };
    Ok(Document {
        id: raw.get_str("doc_id").map_err(|_| bad("doc_id"))?.to_owned(),
        user_id: UserId::parse(user).map_err(|_| bad("user_id"))?,
        version: raw.get_i64("version").map_err(|_| bad("version"))?,
        created_at: from_millis(raw.get_i64("created_at").map_err(|_| bad("created_at"))?),
        updated_at: from_millis(raw.get_i64("updated_at").map_err(|_| bad("updated_at"))?),
        expires_at: match raw.get("expires_at") {
            Some(Bson::DateTime(d)) => Some(from_millis(d.timestamp_millis())),
            _ => None,
        },
        body,
    })
}

fn filter_doc(filter: &Filter) -> Result<BsonDoc, StoreError> {
    let path = |f: &str| format!("body.{f}");
    Ok(match filter {
        Filter::Eq(f, Value::Null) => doc! { path(f): Bson::Null },
        Filter::Eq(f, v) | Filter::Contains(f, v) => {
            if v.is_array() || v.is_object() {
                return Err(StoreError::InvalidQuery(
                    "filters compare scalars only".into(),
                ));
            }
            doc! { path(f): to_bson(v)? }
        }
        Filter::In(f, values) => {
            let values = values.iter().map(to_bson).collect::<Result<Vec<_>, _>>()?;
            doc! { path(f): { "$in": values } }
        }
        Filter::Range { field, gte, lt } => {
            let mut range = BsonDoc::new();
            if let Some(gte) = gte {
                range.insert("$gte", *gte);
            }
            if let Some(lt) = lt {
                range.insert("$lt", *lt);
            }
            if range.is_empty() {
                doc! {}
            } else {
                doc! { path(field): range }
            }
        }
        Filter::CreatedBetween { gte, lt } | Filter::UpdatedBetween { gte, lt } => {
            let field = if matches!(filter, Filter::CreatedBetween { .. }) {
                "created_at"
            } else {
                "updated_at"
            };
            let mut range = BsonDoc::new();
            // `$gt` one millisecond earlier selects the same whole
            // milliseconds as `$gte`, and SecantusDB's range over the middle
            // field of the `(user_id, time, doc_id)` index leaves out the
            // documents equal to a `$gte` bound.
            if let Some(gte) = gte {
                range.insert("$gt", gte.timestamp_millis().saturating_sub(1));
            }
            if let Some(lt) = lt {
                range.insert("$lt", lt.timestamp_millis());
            }
            if range.is_empty() {
                doc! {}
            } else {
                doc! { field: range }
            }
        }
    })
}

/// The caller's documents that match `filters`, expired or not.
fn scoped(user: &UserId, filters: &[Filter]) -> Result<Vec<BsonDoc>, StoreError> {
    check_filters(filters)?;
    let mut parts = vec![doc! { "user_id": user.as_str() }];
    for f in filters {
        parts.push(filter_doc(f)?);
    }
    Ok(parts)
}

impl MongoStore {
    /// Connects (lazily: no round trip happens here) and returns the store.
    /// A malformed URI or setting is an error at once.
    pub async fn connect(
        settings: &MongoSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(&settings.uri)
            .await
            .map_err(|e| StoreError::InvalidQuery(format!("mongodb uri: {e}")))?;
        options.app_name.get_or_insert_with(|| "focusforge".into());
        options.retry_writes = Some(settings.retry_writes);
        options.max_pool_size = Some(settings.max_pool_size);
        options.server_selection_timeout = Some(settings.timeout);
        options.connect_timeout = Some(settings.timeout);
        let w = match settings.write_concern.as_str() {
            "majority" => Acknowledgment::Majority,
            n => Acknowledgment::Nodes(n.parse().map_err(|_| {
                StoreError::InvalidQuery(format!(
                    "write concern must be majority or a number, got {n:?}"
                ))
            })?),
        };
        options.write_concern = Some(WriteConcern::builder().w(w).journal(true).build());
        let client = Client::with_options(options).map_err(backend)?;
        Ok(Self {
            db: client.database(&settings.database),
            clock,
            indexed: Arc::default(),
            collections: Arc::default(),
        })
    }

    /// The collections the services own: created with their indexes by
    /// [`MongoStore::ensure_indexes`]; any other collection gets the common
    /// indexes on first use.
    pub fn with_collections(mut self, collections: Vec<Declared>) -> Self {
        self.collections = Arc::new(collections);
        self
    }

    /// Creates every declared collection with its indexes. Idempotent.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        for c in self.collections.iter() {
            self.ensure(c.name).await?;
        }
        Ok(())
    }

    /// Round-trips a ping: whether the server is reachable now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn ensure(&self, name: &str) -> Result<(), StoreError> {
        if self
            .indexed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
        {
            return Ok(());
        }
        let coll = self.db.collection::<BsonDoc>(name);
        let mut models = vec![
            IndexModel::builder()
                .keys(doc! { "user_id": 1, "created_at": -1, "doc_id": -1 })
                .build(),
            IndexModel::builder()
                .keys(doc! { "user_id": 1, "updated_at": -1, "doc_id": -1 })
                .build(),
            IndexModel::builder()
                .keys(doc! { "user_id": 1, "doc_id": 1, "version": 1 })
                .build(),
            IndexModel::builder()
                .keys(doc! { "expires_at": 1 })
                .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                .build(),
        ];
        let extra = self
            .collections
            .iter()
            .filter(|c| c.name == name)
            .flat_map(|c| c.indexes.iter());
        for field in extra {
            models.push(
                IndexModel::builder()
                    .keys(doc! { "user_id": 1, *field: 1 })
                    .build(),
            );
        }
        coll.create_indexes(models).await.map_err(backend)?;
        self.indexed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
        Ok(())
    }

    async fn coll(&self, name: &str) -> Result<Collection<BsonDoc>, StoreError> {
        check_collection(name)?;
        self.ensure(name).await?;
        Ok(self.db.collection(name))
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    async fn get_live(
        &self,
        coll: &Collection<BsonDoc>,
        user: &UserId,
        id: &str,
        now: i64,
    ) -> Result<Option<Document>, StoreError> {
        let found = coll
            .find_one(by_id(user, id))
            .await
            .map_err(backend)?
            .map(to_document)
            .transpose()?;
        Ok(found.filter(|d| is_live(d, now)))
    }

    /// The live document a write may change: absent is `NotFound`, another
    /// version than the precondition's is `VersionMismatch`.
    async fn writable(
        &self,
        coll: &Collection<BsonDoc>,
        user: &UserId,
        id: &str,
        now: i64,
        pre: Precondition,
    ) -> Result<Document, StoreError> {
        let current = self
            .get_live(coll, user, id, now)
            .await?
            .ok_or(StoreError::NotFound)?;
        match pre {
            Precondition::Version(expected) if expected != current.version => {
                Err(StoreError::VersionMismatch {
                    expected,
                    actual: current.version,
                })
            }
            _ => Ok(current),
        }
    }

    /// Up to `want` live documents matching `filter`, in `sort` order when
    /// given: expired ones the sweeper has not removed yet are dropped and
    /// more are read in their place, so the count is what it would be
    /// without them.
    async fn read_live(
        &self,
        coll: &Collection<BsonDoc>,
        filter: BsonDoc,
        sort: Option<BsonDoc>,
        want: usize,
    ) -> Result<Vec<Document>, StoreError> {
        let now = self.now();
        let mut fetch = want;
        loop {
            let mut find = coll.find(filter.clone()).limit(fetch as i64);
            if let Some(sort) = &sort {
                find = find.sort(sort.clone());
            }
            let raws: Vec<BsonDoc> = find
                .await
                .map_err(backend)?
                .try_collect()
                .await
                .map_err(backend)?;
            let seen = raws.len();
            let mut documents = Vec::with_capacity(seen);
            for raw in raws {
                let d = to_document(raw)?;
                if is_live(&d, now) {
                    documents.push(d);
                }
            }
            if seen < fetch || documents.len() >= want {
                documents.truncate(want);
                return Ok(documents);
            }
            fetch += seen - documents.len();
        }
    }
}

#[async_trait]
impl DocumentStore for MongoStore {
    async fn insert(&self, collection: &str, doc: NewDocument) -> Result<Document, StoreError> {
        check_object(&doc.body)?;
        let coll = self.coll(collection).await?;
        let now = self.now();
        let raw = doc! {
            "_id": key(&doc.user_id, &doc.id),
            "user_id": doc.user_id.as_str(),
            "doc_id": &doc.id,
            "version": 1_i64,
            "created_at": now,
            "updated_at": now,
            "expires_at": doc.expires_at.map_or(Bson::Null, |at| Bson::DateTime(date(at.timestamp_millis()))),
            "body": to_bson(&doc.body)?,
        };
        let mut inserted = false;
        for _ in 0..WRITE_ATTEMPTS {
            match coll.insert_one(&raw).await {
                Ok(_) => {
                    inserted = true;
                    break;
                }
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(backend(e)),
            }
            // An expired document the TTL monitor has not reached must not
            // block reuse of its id; one that is gone by now (deleted, or
            // swept) blocks nothing either: try again.
            let existing = coll
                .find_one(by_id(&doc.user_id, &doc.id))
                .await
                .map_err(backend)?
                .map(to_document)
                .transpose()?;
            match existing {
                Some(d) if is_live(&d, now) => return Err(StoreError::AlreadyExists),
                Some(d) => {
                    // Still expired in the filter, so a document inserted
                    // meanwhile in its place (version 1 as well) is never
                    // the one removed.
                    let mut stale = at_version(&doc.user_id, &doc.id, d.version);
                    stale.insert("expires_at", doc! { "$lte": date(now) });
                    coll.delete_one(stale).await.map_err(backend)?;
                }
                None => {}
            }
        }
        if !inserted {
            return Err(contended());
        }
        Ok(Document {
            id: doc.id,
            user_id: doc.user_id,
            version: 1,
            created_at: from_millis(now),
            updated_at: from_millis(now),
            expires_at: doc.expires_at.map(|at| from_millis(at.timestamp_millis())),
            body: doc.body,
        })
    }

    async fn get(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        let coll = self.coll(collection).await?;
        self.get_live(&coll, user, id, self.now()).await
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
        check_object(&body)?;
        let coll = self.coll(collection).await?;
        let now = self.now();
        let update = doc! {
            "$set": {
                "body": to_bson(&body)?,
                "updated_at": now,
                "expires_at": expires_at.map_or(Bson::Null, |at| Bson::DateTime(date(at.timestamp_millis()))),
            },
            "$inc": { "version": 1_i64 },
        };
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.writable(&coll, user, id, now, precondition).await?;
            let updated = coll
                .find_one_and_update(at_version(user, id, current.version), update.clone())
                .return_document(ReturnDocument::After)
                .await
                .map_err(backend)?;
            if let Some(raw) = updated {
                return to_document(raw);
            }
        }
        Err(contended())
    }

    async fn delete(
        &self,
        collection: &str,
        user: &UserId,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StoreError> {
        let coll = self.coll(collection).await?;
        let now = self.now();
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.writable(&coll, user, id, now, precondition).await?;
            let deleted = coll
                .delete_one(at_version(user, id, current.version))
                .await
                .map_err(backend)?;
            if deleted.deleted_count == 1 {
                return Ok(());
            }
        }
        Err(contended())
    }

    async fn delete_many(
        &self,
        collection: &str,
        user: &UserId,
        filters: &[Filter],
    ) -> Result<u64, StoreError> {
        let coll = self.coll(collection).await?;
        let mut parts = scoped(user, filters)?;
        parts.push(live(self.now()));
        let filter = all_of(parts);
        Ok(coll
            .delete_many(filter)
            .await
            .map_err(backend)?
            .deleted_count)
    }

    async fn find(
        &self,
        collection: &str,
        user: &UserId,
        query: &Query,
    ) -> Result<Page, StoreError> {
        query.check()?;
        let coll = self.coll(collection).await?;
        let mut parts = scoped(user, &query.filters)?;
        let key = match query.order.key {
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
        };
        let (cmp, dir) = if query.order.descending {
            ("$lt", -1)
        } else {
            ("$gt", 1)
        };
        if let Some(after) = &query.after {
            parts.push(doc! { "$or": [
                { key: { cmp: after.key } },
                { key: after.key, "doc_id": { cmp: &after.id } },
            ] });
        }
        let sort = doc! { key: dir, "doc_id": dir };
        let documents = self
            .read_live(&coll, all_of(parts), Some(sort), query.limit + 1)
            .await?;
        Ok(Page::from_overfetch(documents, query))
    }

    async fn scan(
        &self,
        collection: &str,
        user: &UserId,
        filters: &[Filter],
        limit: usize,
    ) -> Result<Scan, StoreError> {
        check_scan(filters, limit)?;
        let coll = self.coll(collection).await?;
        let documents = self
            .read_live(&coll, all_of(scoped(user, filters)?), None, limit + 1)
            .await?;
        Ok(Scan::from_overfetch(documents, limit))
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let mut removed = 0;
        for name in self.db.list_collection_names().await.map_err(backend)? {
            if check_collection(&name).is_err() {
                continue;
            }
            let coll = self.db.collection::<BsonDoc>(&name);
            let deleted = coll
                .delete_many(doc! { "expires_at": { "$lte": date(now) } })
                .await
                .map_err(backend)?;
            removed += deleted.deleted_count;
        }
        Ok(removed)
    }
}

fn contended() -> StoreError {
    StoreError::Backend(format!(
        "the document changed under {WRITE_ATTEMPTS} writes in a row; try again"
    ))
}
