//! The MongoDB backend, for production deployments (replica sets, sharding).
//!
//! One MongoDB collection per store collection. A document is stored as
//! `{_id: {u, i}, user_id, doc_id, version, created_at, updated_at,
//! expires_at, body}`: the compound `_id` makes `(user, id)` the identity, so
//! two users can never collide; `expires_at` is a BSON date under a TTL index
//! (`expireAfterSeconds: 0`) and every read also filters it, because the TTL
//! monitor runs only once a minute. Writes use the configured write concern
//! (`majority` by default); conditional writes are single atomic
//! `findOneAndUpdate` / `deleteOne` calls with the version in the filter.

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

fn live(now: i64) -> BsonDoc {
    doc! { "$or": [ { "expires_at": Bson::Null }, { "expires_at": { "$gt": date(now) } } ] }
}

fn and(parts: Vec<BsonDoc>) -> BsonDoc {
    doc! { "$and": parts }
}

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
            if let Some(gte) = gte {
                range.insert("$gte", gte.timestamp_millis());
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

fn scoped(user: &UserId, now: i64, filters: &[Filter]) -> Result<Vec<BsonDoc>, StoreError> {
    check_filters(filters)?;
    let mut parts = vec![doc! { "user_id": user.as_str() }, live(now)];
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
        let filter = and(vec![doc! { "_id": key(user, id) }, live(now)]);
        coll.find_one(filter)
            .await
            .map_err(backend)?
            .map(to_document)
            .transpose()
    }

    /// Why a conditional write matched nothing: absent, or another version.
    async fn explain_miss(
        &self,
        coll: &Collection<BsonDoc>,
        user: &UserId,
        id: &str,
        now: i64,
        pre: Precondition,
    ) -> StoreError {
        match (self.get_live(coll, user, id, now).await, pre) {
            (Ok(None), _) => StoreError::NotFound,
            (Ok(Some(found)), Precondition::Version(expected)) => StoreError::VersionMismatch {
                expected,
                actual: found.version,
            },
            (Ok(Some(_)), Precondition::None) => StoreError::NotFound,
            (Err(e), _) => e,
        }
    }
}

fn version_filter(pre: Precondition) -> BsonDoc {
    match pre {
        Precondition::None => doc! {},
        Precondition::Version(v) => doc! { "version": v },
    }
}

#[async_trait]
impl DocumentStore for MongoStore {
    async fn insert(&self, collection: &str, doc: NewDocument) -> Result<Document, StoreError> {
        check_object(&doc.body)?;
        let coll = self.coll(collection).await?;
        let now = self.now();
        // An expired document the TTL monitor has not reached must not block
        // reuse of its id.
        coll.delete_one(
            doc! { "_id": key(&doc.user_id, &doc.id), "expires_at": { "$lte": date(now) } },
        )
        .await
        .map_err(backend)?;
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
        match coll.insert_one(raw).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Err(StoreError::AlreadyExists),
            Err(e) => return Err(backend(e)),
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
        let filter = and(vec![
            doc! { "_id": key(user, id) },
            live(now),
            version_filter(precondition),
        ]);
        let update = doc! {
            "$set": {
                "body": to_bson(&body)?,
                "updated_at": now,
                "expires_at": expires_at.map_or(Bson::Null, |at| Bson::DateTime(date(at.timestamp_millis()))),
            },
            "$inc": { "version": 1_i64 },
        };
        let updated = coll
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend)?;
        match updated {
            Some(raw) => to_document(raw),
            None => Err(self.explain_miss(&coll, user, id, now, precondition).await),
        }
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
        let filter = and(vec![
            doc! { "_id": key(user, id) },
            live(now),
            version_filter(precondition),
        ]);
        let deleted = coll.delete_one(filter).await.map_err(backend)?;
        if deleted.deleted_count == 1 {
            Ok(())
        } else {
            Err(self.explain_miss(&coll, user, id, now, precondition).await)
        }
    }

    async fn delete_many(
        &self,
        collection: &str,
        user: &UserId,
        filters: &[Filter],
    ) -> Result<u64, StoreError> {
        let coll = self.coll(collection).await?;
        let filter = and(scoped(user, self.now(), filters)?);
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
        let mut parts = scoped(user, self.now(), &query.filters)?;
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
        let cursor = coll
            .find(and(parts))
            .sort(doc! { key: dir, "doc_id": dir })
            .limit(query.limit as i64 + 1)
            .await
            .map_err(backend)?;
        let raws: Vec<BsonDoc> = cursor.try_collect().await.map_err(backend)?;
        let documents = raws
            .into_iter()
            .map(to_document)
            .collect::<Result<Vec<_>, _>>()?;
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
        let now = self.now();
        // Expiry is checked here rather than in the query: a filter holding
        // the live condition's `$or` keeps some MongoDB-wire servers from
        // the user + time index (SecantusDB scanned the whole collection:
        // 253 ms instead of 7 ms). Expired documents are rare (the sweeper
        // removes them), so reading a few more until the count is certain
        // costs little.
        let mut parts = vec![doc! { "user_id": user.as_str() }];
        check_filters(filters)?;
        for f in filters {
            parts.push(filter_doc(f)?);
        }
        let query = and(parts);
        let mut fetch = limit + 1;
        loop {
            let cursor = coll
                .find(query.clone())
                .limit(fetch as i64)
                .await
                .map_err(backend)?;
            let raws: Vec<BsonDoc> = cursor.try_collect().await.map_err(backend)?;
            let seen = raws.len();
            let documents = raws
                .into_iter()
                .map(to_document)
                .filter(|d| {
                    d.as_ref().map_or(true, |d| {
                        d.expires_at.is_none_or(|at| at.timestamp_millis() > now)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if seen < fetch || documents.len() > limit {
                return Ok(Scan::from_overfetch(documents, limit));
            }
            fetch += seen - documents.len();
        }
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
