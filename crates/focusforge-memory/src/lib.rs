//! The memory domain: what FocusForge remembers about a user. Short-term
//! memories last an hour, working memories a day (both configurable, and
//! overridable per memory within limits), long-term ones until forgotten.
//! Each tier is its own collection of the document store, so expiry is the
//! store's per-document expiry: an expired memory is never returned, swept or
//! not. Every call takes the caller's `UserId`; there is no other way in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use focusforge_core::{Clock, Error, Result, UserId, Violations, check_id, new_id};
use focusforge_embed::{EmbedError, Embedder};
use focusforge_store::page_token;
use focusforge_store::{
    Document, Filter, NewDocument, Order, Precondition, Query, SharedStore, SortKey, StoreError,
};
use focusforge_tasks::Tasks;
use focusforge_users::Users;
use focusforge_vector::{ScoreParts, VectorError, VectorRecord, VectorTable};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    ShortTerm,
    Working,
    LongTerm,
    Semantic,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::ShortTerm,
        Tier::Working,
        Tier::LongTerm,
        Tier::Semantic,
    ];

    /// The collection of the design that holds the tier.
    pub fn collection(self) -> &'static str {
        match self {
            Tier::ShortTerm => "memory_short_term",
            Tier::Working => "memory_working",
            Tier::LongTerm => "memory_long_term",
            Tier::Semantic => "memory_semantic",
        }
    }
}

/// A tier's time to live: the default, and the range a memory may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub default: Duration,
    pub min: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPolicy {
    pub short_term: Ttl,
    pub working: Ttl,
    /// Most characters of content.
    pub max_content_chars: usize,
    /// A new semantic memory at least this similar (cosine) to one the user
    /// already has is merged into it instead of being stored again.
    pub duplicate_similarity: f32,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        Self {
            short_term: Ttl {
                default: Duration::from_secs(HOUR),
                min: Duration::from_secs(MINUTE),
                max: Duration::from_secs(24 * HOUR),
            },
            working: Ttl {
                default: Duration::from_secs(24 * HOUR),
                min: Duration::from_secs(MINUTE),
                max: Duration::from_secs(7 * 24 * HOUR),
            },
            max_content_chars: 8000,
            duplicate_similarity: 0.95,
        }
    }
}

impl MemoryPolicy {
    fn ttl(&self, tier: Tier) -> Option<Ttl> {
        match tier {
            Tier::ShortTerm => Some(self.short_term),
            Tier::Working => Some(self.working),
            Tier::LongTerm | Tier::Semantic => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub id: String,
    pub user_id: UserId,
    pub tier: Tier,
    pub kind: String,
    pub content: String,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    /// When it was last remembered again (or first remembered).
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// How often it was remembered: near-duplicate semantic memories are
    /// merged into the first one instead of being stored again.
    pub times_remembered: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewMemory {
    pub kind: String,
    pub content: String,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Overrides the tier's default time to live, within its range.
    pub ttl: Option<Duration>,
}

/// Which memories of a tier to list; every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryFilter {
    pub kind: Option<String>,
    pub tag: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPage {
    pub memories: Vec<Memory>,
    pub next_page_token: String,
}

#[derive(Serialize, Deserialize)]
struct Body {
    kind: String,
    content: String,
    tags: Vec<String>,
    metadata: BTreeMap<String, String>,
    /// How often the same thing was remembered (near-duplicates merged in).
    #[serde(default = "one")]
    times_remembered: u32,
}

fn one() -> u32 {
    1
}

const PAGE_SIZE_DEFAULT: usize = 50;
const PAGE_SIZE_MAX: i64 = 200;

fn to_memory(tier: Tier, doc: Document) -> Result<Memory> {
    let body: Body = serde_json::from_value(doc.body)
        .map_err(|e| Error::internal(format!("memory {} is unreadable: {e}", doc.id)))?;
    Ok(Memory {
        id: doc.id,
        user_id: doc.user_id,
        tier,
        kind: body.kind,
        content: body.content,
        tags: body.tags,
        metadata: body.metadata,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        expires_at: doc.expires_at,
        times_remembered: body.times_remembered,
    })
}

fn store_err(e: StoreError) -> Error {
    e.into_domain("memory")
}

fn check_kind(v: &mut Violations, field: &str, kind: &str) {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    v.check(ok, field, "must be 1-64 characters of a-z, 0-9, _ . -");
}

fn semantic_not_yet() -> Error {
    Error::Unimplemented(
        "the semantic tier needs the vector store, which is not available yet".into(),
    )
}

/// What the semantic tier needs: an embedder, the table of semantic
/// memories' vectors, and the table of task embeddings (for similar tasks).
#[derive(Clone)]
pub struct Semantic {
    pub embedder: Arc<dyn Embedder>,
    pub table: Arc<VectorTable>,
    pub task_table: Arc<VectorTable>,
}

/// How a search ranks memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// By cosine similarity of the embeddings.
    #[default]
    Semantic,
    /// By BM25 over the words.
    Keyword,
    /// Both, fused by reciprocal rank fusion.
    Hybrid,
}

/// A semantic memory found by a search, the score it was ranked by, and how
/// that score was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub memory: Memory,
    pub score: f32,
    pub parts: ScoreParts,
}

fn vector_err(e: VectorError) -> Error {
    match e {
        VectorError::Invalid { field, reason } => Error::invalid(field, reason),
        VectorError::Storage(m) => Error::Unavailable(format!("vector store: {m}")),
    }
}

fn embed_err(e: EmbedError) -> Error {
    Error::Unavailable(format!("embedding: {e}"))
}

#[derive(Clone)]
pub struct Memories {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    policy: MemoryPolicy,
    semantic: Option<Semantic>,
    /// Read for the user context: profiles and tasks in the same store.
    users: Users,
    tasks: Tasks,
}

impl Memories {
    /// Without `semantic`, the semantic tier answers `Unimplemented`.
    pub fn new(
        store: SharedStore,
        clock: Arc<dyn Clock>,
        policy: MemoryPolicy,
        semantic: Option<Semantic>,
    ) -> Self {
        Self {
            users: Users::new(store.clone(), None),
            tasks: Tasks::new(store.clone(), clock.clone()),
            store,
            clock,
            policy,
            semantic,
        }
    }

    fn semantic(&self) -> Result<&Semantic> {
        self.semantic.as_ref().ok_or_else(semantic_not_yet)
    }

    async fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let semantic = self.semantic()?;
        let mut vectors = semantic
            .embedder
            .embed(vec![text.to_owned()])
            .await
            .map_err(embed_err)?;
        vectors
            .pop()
            .ok_or_else(|| Error::internal("the embedder returned no vector"))
    }

    /// Folds a new semantic memory into the user's closest one when they are
    /// near-duplicates: its count goes up, its tags and metadata gain the new
    /// ones, its update time moves; the first wording is kept.
    async fn merge_duplicate(
        &self,
        user: &UserId,
        vector: &[f32],
        tags: &[String],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Option<Memory>> {
        let table = &self.semantic()?.table;
        let Some(best) = table
            .search(user.as_str(), vector, 1)
            .await
            .map_err(vector_err)?
            .pop()
        else {
            return Ok(None);
        };
        if best.score < self.policy.duplicate_similarity {
            return Ok(None);
        }
        let collection = Tier::Semantic.collection();
        let merged = focusforge_store::modify(
            self.store.as_ref(),
            collection,
            user,
            &best.id,
            "memory",
            None,
            |doc| {
                let mut body: Body = serde_json::from_value(doc.body.clone())
                    .map_err(|e| Error::internal(format!("memory is unreadable: {e}")))?;
                body.times_remembered = body.times_remembered.saturating_add(1);
                for tag in tags {
                    if !body.tags.contains(tag) && body.tags.len() < 32 {
                        body.tags.push(tag.clone());
                    }
                }
                for (k, v) in metadata {
                    if body.metadata.len() < 32 || body.metadata.contains_key(k) {
                        body.metadata.insert(k.clone(), v.clone());
                    }
                }
                serde_json::to_value(&body)
                    .map(Some)
                    .map_err(Error::internal)
            },
        )
        .await;
        match merged {
            Ok(doc) => to_memory(Tier::Semantic, doc).map(Some),
            // The vector outlived its document: store the new one afresh.
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The caller's semantic memories that best match `query`, best first.
    pub async fn search(
        &self,
        user: &UserId,
        query: &str,
        top_k: i32,
        mode: SearchMode,
    ) -> Result<Vec<Found>> {
        let mut v = Violations::new();
        v.text("query", query, self.policy.max_content_chars);
        v.range("top_k", top_k.into(), 0, 100);
        v.finish()?;
        let k = if top_k == 0 { 10 } else { top_k as usize };
        let vector = match mode {
            SearchMode::Keyword => None,
            SearchMode::Semantic | SearchMode::Hybrid => Some(self.embed_one(query).await?),
        };
        self.search_embedded(user, query, vector.as_deref(), k, mode)
            .await
    }

    /// A checked search whose query is already embedded (`vector` is set
    /// unless the mode is keyword).
    async fn search_embedded(
        &self,
        user: &UserId,
        query: &str,
        vector: Option<&[f32]>,
        k: usize,
        mode: SearchMode,
    ) -> Result<Vec<Found>> {
        let table = &self.semantic()?.table;
        let owner = user.as_str();
        let hits = match (mode, vector) {
            (SearchMode::Keyword, _) => table.keyword_search(owner, query, k).await,
            (SearchMode::Semantic, Some(q)) => table.search(owner, q, k).await,
            (SearchMode::Hybrid, Some(q)) => table.hybrid_search(owner, q, query, k).await,
            (_, None) => return Err(Error::internal("a meaning search needs the query's vector")),
        }
        .map_err(vector_err)?;
        let mut found = Vec::with_capacity(hits.len());
        for hit in hits {
            // The document is the source of truth; a vector whose memory is
            // gone (a crash between the two deletes) is skipped.
            let doc = self
                .store
                .get(Tier::Semantic.collection(), user, &hit.id)
                .await
                .map_err(store_err)?;
            if let Some(doc) = doc {
                found.push(Found {
                    memory: to_memory(Tier::Semantic, doc)?,
                    score: hit.score,
                    parts: hit.parts,
                });
            }
        }
        Ok(found)
    }

    /// Records what `remember` would refuse in `new` whatever its tier, so a
    /// caller that could not read the tier still reports the rest; returns
    /// the tags trimmed and without repeats.
    pub fn check_new(&self, v: &mut Violations, new: &NewMemory) -> Vec<String> {
        check_kind(v, "kind", &new.kind);
        v.text("content", &new.content, self.policy.max_content_chars);
        let tags_ok = v.list("tags", &new.tags, 32);
        let mut tags: Vec<String> = Vec::new();
        for (i, tag) in new.tags.iter().enumerate().filter(|_| tags_ok) {
            let tag = tag.trim();
            v.text(&format!("tags[{i}]"), tag, 64);
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_owned());
            }
        }
        let metadata_ok = new.metadata.len() <= 32;
        v.check(metadata_ok, "metadata", "must have at most 32 entries");
        for (key, value) in new.metadata.iter().filter(|_| metadata_ok) {
            v.text(&format!("metadata[{key}]"), key, 64);
            v.optional_text(&format!("metadata[{key}]"), value, 1000);
        }
        tags
    }

    pub async fn remember(&self, user: &UserId, tier: Tier, new: NewMemory) -> Result<Memory> {
        let mut v = Violations::new();
        let tags = self.check_new(&mut v, &new);
        let ttl = match (self.policy.ttl(tier), new.ttl) {
            (Some(policy), Some(ttl)) => {
                v.check(
                    (policy.min..=policy.max).contains(&ttl),
                    "ttl_seconds",
                    format!(
                        "must be between {} and {} for this tier",
                        policy.min.as_secs(),
                        policy.max.as_secs()
                    ),
                );
                Some(ttl)
            }
            (Some(policy), None) => Some(policy.default),
            (None, Some(_)) => {
                v.add(
                    "ttl_seconds",
                    "must be 0: this tier keeps memories until forgotten",
                );
                None
            }
            (None, None) => None,
        };
        v.finish()?;
        let vector = if tier == Tier::Semantic {
            Some(self.embed_one(&new.content).await?)
        } else {
            None
        };
        let expires_at = match ttl {
            Some(ttl) => Some(
                self.clock.now()
                    + chrono::Duration::from_std(ttl)
                        .map_err(|e| Error::internal(e.to_string()))?,
            ),
            None => None,
        };
        if let Some(vector) = &vector
            && let Some(merged) = self
                .merge_duplicate(user, vector, &tags, &new.metadata)
                .await?
        {
            return Ok(merged);
        }
        let body = Body {
            kind: new.kind,
            content: new.content,
            tags,
            metadata: new.metadata,
            times_remembered: 1,
        };
        let doc = NewDocument {
            id: new_id(),
            user_id: user.clone(),
            body: serde_json::to_value(&body).map_err(Error::internal)?,
            expires_at,
        };
        let doc = self
            .store
            .insert(tier.collection(), doc)
            .await
            .map_err(store_err)?;
        let memory = to_memory(tier, doc)?;
        if let Some(vector) = vector {
            let row = VectorRecord {
                id: memory.id.clone(),
                user_id: user.as_str().to_owned(),
                text: memory.content.clone(),
                vector,
                created_at_ms: memory.created_at.timestamp_millis(),
            };
            if let Err(e) = self.semantic()?.table.add(vec![row]).await {
                // Without its vector the memory could never be found: undo.
                let _ = self
                    .store
                    .delete(tier.collection(), user, &memory.id, Precondition::None)
                    .await;
                return Err(vector_err(e));
            }
        }
        Ok(memory)
    }

    /// Finds a memory by id in whichever tier holds it.
    pub async fn recall(&self, user: &UserId, id: &str) -> Result<Memory> {
        check_id(id)?;
        for tier in Tier::ALL {
            if let Some(doc) = self
                .store
                .get(tier.collection(), user, id)
                .await
                .map_err(store_err)?
            {
                return to_memory(tier, doc);
            }
        }
        Err(Error::NotFound("memory".into()))
    }

    pub async fn forget(&self, user: &UserId, id: &str) -> Result<()> {
        check_id(id)?;
        for tier in Tier::ALL {
            match self
                .store
                .delete(tier.collection(), user, id, Precondition::None)
                .await
            {
                Ok(()) if tier == Tier::Semantic => {
                    let table = &self.semantic()?.table;
                    table.delete(user.as_str(), id).await.map_err(vector_err)?;
                    return Ok(());
                }
                Ok(()) => return Ok(()),
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(Error::NotFound("memory".into()))
    }

    pub async fn forget_tier(&self, user: &UserId, tier: Tier) -> Result<u64> {
        let n = self
            .store
            .delete_many(tier.collection(), user, &[])
            .await
            .map_err(store_err)?;
        if tier == Tier::Semantic
            && let Some(semantic) = &self.semantic
        {
            semantic
                .table
                .delete_user(user.as_str())
                .await
                .map_err(vector_err)?;
        }
        tracing::info!(tier = tier.collection(), forgotten = n, "tier forgotten");
        Ok(n)
    }

    pub async fn list(
        &self,
        user: &UserId,
        tier: Tier,
        filter: MemoryFilter,
        page_size: i32,
        token: &str,
    ) -> Result<MemoryPage> {
        let mut v = Violations::new();
        v.range("page_size", page_size.into(), 0, PAGE_SIZE_MAX);
        if let Some(kind) = &filter.kind {
            check_kind(&mut v, "kind", kind);
        }
        if let (Some(a), Some(b)) = (filter.created_after, filter.created_before) {
            v.check(a < b, "end_time", "must be later than start_time");
        }
        v.finish()?;
        let mut filters = Vec::new();
        if let Some(kind) = &filter.kind {
            filters.push(Filter::eq("kind", kind.as_str()));
        }
        if let Some(tag) = &filter.tag {
            filters.push(Filter::Contains("tags".into(), json!(tag)));
        }
        if filter.created_after.is_some() || filter.created_before.is_some() {
            filters.push(Filter::CreatedBetween {
                gte: filter.created_after,
                lt: filter.created_before,
            });
        }
        let fingerprint = page_token::fingerprint(&format!("{tier:?}{filters:?}"));
        let after = page_token::decode_request(token, fingerprint)?;
        let query = Query {
            filters,
            order: Order {
                key: SortKey::CreatedAt,
                descending: true,
            },
            limit: if page_size == 0 {
                PAGE_SIZE_DEFAULT
            } else {
                page_size as usize
            },
            after,
        };
        let page = self
            .store
            .find(tier.collection(), user, &query)
            .await
            .map_err(store_err)?;
        Ok(MemoryPage {
            memories: page
                .documents
                .into_iter()
                .map(|d| to_memory(tier, d))
                .collect::<Result<_>>()?,
            next_page_token: page
                .next
                .map(|c| page_token::encode(&c, fingerprint))
                .unwrap_or_default(),
        })
    }
}

mod context;

pub use context::{TASK_INSIGHT_KIND, UserContext, task_tag};

#[cfg(test)]
mod tests;
