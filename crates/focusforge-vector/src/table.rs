use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use lance::Dataset;
use lance::dataset::optimize::{CompactionOptions, compact_files};
use lance::dataset::{WriteMode, WriteParams};
use lance::deps::arrow_array::types::Float32Type;
use lance::deps::arrow_array::{
    Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, RecordBatchIterator,
    StringArray,
};
use lance::deps::arrow_schema::{DataType, Field, Schema, SchemaRef};
use tokio::sync::RwLock;

use crate::VectorError;
use crate::ivf::{Ivf, IvfParams, dot, unit};
use crate::keyword::KeywordIndex;

/// One row: an embedded text of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    pub id: String,
    pub user_id: String,
    pub text: String,
    pub vector: Vec<f32>,
    pub created_at_ms: i64,
}

/// A search result: the row, the score it was ranked by, and how that score
/// was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub text: String,
    /// Cosine similarity for a vector search, BM25 for a keyword search, the
    /// reciprocal-rank-fusion score for a hybrid one.
    pub score: f32,
    pub parts: ScoreParts,
}

/// The parts of a hit's score. A hybrid hit has both parts when it ranked in
/// both lists, and its `fused` score is the sum of `1 / (60 + rank)` over them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreParts {
    pub vector: Option<VectorPart>,
    pub keyword: Option<KeywordPart>,
    pub fused: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorPart {
    /// 1-based rank among the user's rows by similarity.
    pub rank: usize,
    pub cosine: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeywordPart {
    /// 1-based rank among the user's rows holding a query term.
    pub rank: usize,
    pub bm25: f32,
    /// The query's terms the row holds (lowercased, plurals folded).
    pub matched_terms: Vec<String>,
}

/// The constant of reciprocal rank fusion: a list's rank `r` adds
/// `1 / (RRF_K + r)`.
pub const RRF_K: f32 = 60.0;
/// How deep into each list hybrid search fuses.
const FUSION_DEPTH: usize = 100;

/// When a user's rows get an approximate index, and how it is shaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TableOptions {
    /// A user with at least this many rows is searched through an IVF index
    /// built in the background (exact search answers until it is ready, and
    /// for rows added since). It is rebuilt once the rows grew by a quarter.
    pub ann_min_rows: usize,
    pub ivf: IvfParams,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            ann_min_rows: 20_000,
            ivf: IvfParams::default(),
        }
    }
}

/// One user's rows in memory: ids, texts, unit vectors row after row, and
/// the keyword index of the texts.
#[derive(Default, Clone)]
struct UserRows {
    ids: Vec<String>,
    texts: Vec<String>,
    vectors: Vec<f32>,
    keyword: KeywordIndex,
}

impl UserRows {
    fn push(&mut self, id: String, text: String, vector: &[f32]) {
        self.keyword.push(&text);
        self.ids.push(id);
        self.texts.push(text);
        self.vectors.extend_from_slice(vector);
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A loaded user: rows, and the approximate index once built.
struct UserEntry {
    rows: Arc<UserRows>,
    ann: Option<Arc<Ivf>>,
    building: bool,
    /// Tells a finished build whether the rows it indexed are still these.
    generation: u64,
}

type Users = Arc<Mutex<HashMap<String, UserEntry>>>;

fn lock(users: &Users) -> std::sync::MutexGuard<'_, HashMap<String, UserEntry>> {
    users.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`VectorTable::optimize`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Optimized {
    pub fragments_before: usize,
    pub fragments_after: usize,
    /// Versions older than the kept span, removed with their files.
    pub versions_removed: u64,
    pub bytes_removed: u64,
}

/// A Lance-backed table of vectors with per-user search.
pub struct VectorTable {
    uri: String,
    dims: usize,
    schema: SchemaRef,
    options: TableOptions,
    /// `None` until the first write creates the dataset.
    dataset: RwLock<Option<Dataset>>,
    users: Users,
    generations: AtomicU64,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> VectorError {
    VectorError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A SQL string literal: quotes doubled, so no value can end the literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl VectorTable {
    /// Opens the table at `uri`, or prepares to create it on the first write.
    pub async fn open(uri: &str, dims: usize) -> Result<Self, VectorError> {
        Self::open_with(uri, dims, TableOptions::default()).await
    }

    pub async fn open_with(
        uri: &str,
        dims: usize,
        options: TableOptions,
    ) -> Result<Self, VectorError> {
        if dims == 0 {
            return Err(invalid("dims", "must be positive"));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
            Field::new(
                "vector",
                DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::Float32, true)),
                    i32::try_from(dims).map_err(|_| invalid("dims", "too large"))?,
                ),
                false,
            ),
            Field::new("created_at", DataType::Int64, false),
        ]));
        // A table not written yet is not an error: on a local path, look
        // before opening (an open that fails is logged as an error).
        let absent = !uri.contains("://") && !std::path::Path::new(uri).exists();
        let dataset = if absent {
            None
        } else {
            match Dataset::open(uri).await {
                Ok(ds) => {
                    let found = lance::deps::arrow_schema::Schema::from(ds.schema());
                    if found.fields().len() != schema.fields().len()
                        || found
                            .field_with_name("vector")
                            .map(|f| f.data_type().clone())
                            .ok()
                            != Some(schema.field(3).data_type().clone())
                    {
                        return Err(VectorError::Storage(format!(
                            "{uri} holds a table of another shape than {dims}-d vectors"
                        )));
                    }
                    Some(ds)
                }
                Err(lance::Error::DatasetNotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Self {
            uri: uri.to_owned(),
            dims,
            schema,
            options,
            dataset: RwLock::new(dataset),
            users: Arc::new(Mutex::new(HashMap::new())),
            generations: AtomicU64::new(0),
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Where the table lives.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn check_vector(&self, field: &'static str, v: &[f32]) -> Result<(), VectorError> {
        if v.len() != self.dims {
            return Err(invalid(
                field,
                format!("has {} dimensions, expected {}", v.len(), self.dims),
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(invalid(field, "must hold finite numbers only"));
        }
        Ok(())
    }

    /// Appends rows in one committed version.
    pub async fn add(&self, rows: Vec<VectorRecord>) -> Result<(), VectorError> {
        if rows.is_empty() {
            return Ok(());
        }
        for r in &rows {
            self.check_vector("vector", &r.vector)?;
            if r.id.is_empty() || r.user_id.is_empty() {
                return Err(invalid("id", "id and user_id must not be empty"));
            }
        }
        let vectors: Vec<Vec<f32>> = rows.iter().map(|r| unit(&r.vector)).collect();
        let values = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            vectors
                .iter()
                .map(|v| Some(v.iter().copied().map(Some).collect::<Vec<_>>())),
            i32::try_from(self.dims).map_err(|_| invalid("dims", "too large"))?,
        );
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.id.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.user_id.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.text.as_str()),
                )),
                Arc::new(values),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| r.created_at_ms),
                )),
            ],
        )?;
        let reader = RecordBatchIterator::new(vec![Ok(batch)], self.schema.clone());
        let mut slot = self.dataset.write().await;
        match slot.as_mut() {
            Some(ds) => ds.append(reader, None).await?,
            None => {
                let params = WriteParams {
                    mode: WriteMode::Create,
                    ..WriteParams::default()
                };
                *slot = Some(Dataset::write(reader, self.uri.as_str(), Some(params)).await?);
            }
        }
        // Keep the loaded users' rows in step with the commit.
        let mut touched = Vec::new();
        {
            let mut users = lock(&self.users);
            for (row, vector) in rows.into_iter().zip(vectors) {
                if let Some(entry) = users.get_mut(&row.user_id) {
                    Arc::make_mut(&mut entry.rows).push(row.id, row.text, &vector);
                    touched.push(row.user_id);
                }
            }
        }
        touched.dedup();
        for user in touched {
            self.index_in_background(&user);
        }
        Ok(())
    }

    /// Removes one of a user's rows; returns whether it existed.
    pub async fn delete(&self, user_id: &str, id: &str) -> Result<bool, VectorError> {
        let mut slot = self.dataset.write().await;
        let Some(ds) = slot.as_mut() else {
            return Ok(false);
        };
        let predicate = format!("user_id = {} AND id = {}", literal(user_id), literal(id));
        let before = ds.count_rows(Some(predicate.clone())).await?;
        if before == 0 {
            return Ok(false);
        }
        ds.delete(&predicate).await?;
        lock(&self.users).remove(user_id);
        Ok(true)
    }

    /// Removes all of a user's rows; returns how many there were.
    pub async fn delete_user(&self, user_id: &str) -> Result<usize, VectorError> {
        let mut slot = self.dataset.write().await;
        let Some(ds) = slot.as_mut() else {
            return Ok(0);
        };
        let predicate = format!("user_id = {}", literal(user_id));
        let before = ds.count_rows(Some(predicate.clone())).await?;
        if before > 0 {
            ds.delete(&predicate).await?;
        }
        lock(&self.users).remove(user_id);
        Ok(before)
    }

    /// The user's rows and approximate index, read from Lance the first time.
    async fn user_rows(
        &self,
        user_id: &str,
    ) -> Result<(Arc<UserRows>, Option<Arc<Ivf>>), VectorError> {
        if let Some(entry) = lock(&self.users).get(user_id) {
            return Ok((entry.rows.clone(), entry.ann.clone()));
        }
        let slot = self.dataset.read().await;
        let mut rows = UserRows::default();
        if let Some(ds) = slot.as_ref() {
            let mut scan = ds.scan();
            scan.project(&["id", "text", "vector"])?;
            scan.filter(&format!("user_id = {}", literal(user_id)))?;
            let batches: Vec<RecordBatch> = scan.try_into_stream().await?.try_collect().await?;
            for batch in batches {
                let col = |i: usize| batch.column(i).clone();
                let ids = col(0);
                let ids = ids
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| bad_column("id"))?;
                let texts = col(1);
                let texts = texts
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| bad_column("text"))?;
                let vectors = col(2);
                let vectors = vectors
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()
                    .ok_or_else(|| bad_column("vector"))?;
                let values = vectors.values();
                let values = values
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .ok_or_else(|| bad_column("vector"))?;
                let values = values.values();
                for i in 0..batch.num_rows() {
                    rows.push(
                        ids.value(i).to_owned(),
                        texts.value(i).to_owned(),
                        &values[i * self.dims..(i + 1) * self.dims],
                    );
                }
            }
        }
        drop(slot);
        let rows = {
            let mut users = lock(&self.users);
            // A concurrent search may have loaded the user meanwhile.
            let entry = users
                .entry(user_id.to_owned())
                .or_insert_with(|| UserEntry {
                    rows: Arc::new(rows),
                    ann: None,
                    building: false,
                    generation: self.generations.fetch_add(1, Ordering::Relaxed),
                });
            (entry.rows.clone(), entry.ann.clone())
        };
        self.index_in_background(user_id);
        Ok(rows)
    }

    /// Starts building (or refreshing) the user's IVF index on a blocking
    /// thread when the rows call for one and no build is running.
    fn index_in_background(&self, user_id: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (rows, generation) = {
            let mut users = lock(&self.users);
            let Some(entry) = users.get_mut(user_id) else {
                return;
            };
            let n = entry.rows.len();
            let stale = match &entry.ann {
                None => true,
                Some(ann) => n >= ann.rows() + ann.rows() / 4,
            };
            if entry.building || n < self.options.ann_min_rows.max(1) || !stale {
                return;
            }
            entry.building = true;
            (entry.rows.clone(), entry.generation)
        };
        let users = self.users.clone();
        let user = user_id.to_owned();
        let (dims, params) = (self.dims, self.options.ivf);
        runtime.spawn_blocking(move || {
            let started = std::time::Instant::now();
            let ivf = Ivf::build(&rows.vectors, dims, params);
            tracing::debug!(
                rows = ivf.rows(),
                partitions = ivf.partitions(),
                took_ms = started.elapsed().as_millis() as u64,
                "ivf index built"
            );
            install(&users, &user, generation, ivf);
        });
    }

    /// Builds the user's IVF index now, whatever the row count, and waits for
    /// it. Returns how many rows it covers.
    pub async fn build_index(&self, user_id: &str) -> Result<usize, VectorError> {
        let (rows, _) = self.user_rows(user_id).await?;
        if rows.len() == 0 {
            return Ok(0);
        }
        let generation = match lock(&self.users).get_mut(user_id) {
            Some(entry) => {
                entry.building = true;
                entry.generation
            }
            None => return Ok(0),
        };
        let (dims, params) = (self.dims, self.options.ivf);
        let ivf = tokio::task::spawn_blocking(move || Ivf::build(&rows.vectors, dims, params))
            .await
            .map_err(|e| VectorError::Storage(format!("index build failed: {e}")))?;
        let n = ivf.rows();
        install(&self.users, user_id, generation, ivf);
        Ok(n)
    }

    /// Rewrites the small fragments that single writes leave into large
    /// ones, dropping deleted rows, then removes versions older than `keep`
    /// and the files only they used. Writes wait meanwhile; searches of
    /// loaded users do not.
    pub async fn optimize(&self, keep: std::time::Duration) -> Result<Optimized, VectorError> {
        let keep = chrono::Duration::from_std(keep).map_err(|_| invalid("keep", "too long"))?;
        let mut slot = self.dataset.write().await;
        let Some(ds) = slot.as_mut() else {
            return Ok(Optimized::default());
        };
        let fragments_before = ds.count_fragments();
        compact_files(ds, CompactionOptions::default(), None).await?;
        let removed = ds.cleanup_old_versions(keep, None, None).await?;
        Ok(Optimized {
            fragments_before,
            fragments_after: ds.count_fragments(),
            versions_removed: removed.old_versions,
            bytes_removed: removed.bytes_removed,
        })
    }

    /// How many fragments (data files with their deletions) the table has.
    pub async fn fragments(&self) -> usize {
        self.dataset
            .read()
            .await
            .as_ref()
            .map_or(0, Dataset::count_fragments)
    }

    /// How many rows the table holds, over all users, as committed.
    pub async fn count_rows(&self) -> Result<usize, VectorError> {
        match self.dataset.read().await.as_ref() {
            Some(ds) => Ok(ds.count_rows(None).await?),
            None => Ok(0),
        }
    }

    /// The text stored with one of the user's rows, if the row exists.
    pub async fn text_of(&self, user_id: &str, id: &str) -> Result<Option<String>, VectorError> {
        let (rows, _) = self.user_rows(user_id).await?;
        Ok(rows
            .ids
            .iter()
            .position(|r| r == id)
            .map(|i| rows.texts[i].clone()))
    }

    /// How many of the user's rows the IVF index covers, if it has one.
    pub fn indexed_rows(&self, user_id: &str) -> Option<usize> {
        lock(&self.users)
            .get(user_id)
            .and_then(|e| e.ann.as_ref().map(|a| a.rows()))
    }

    fn check_k(k: usize) -> Result<(), VectorError> {
        if !(1..=100).contains(&k) {
            return Err(invalid("top_k", "must be between 1 and 100"));
        }
        Ok(())
    }

    /// The `k` rows of `user_id` most similar to `query`, best first; through
    /// the user's IVF index when there is one.
    pub async fn search(
        &self,
        user_id: &str,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Hit>, VectorError> {
        self.vector_search(user_id, query, k, true).await
    }

    /// Like `search`, always scoring every one of the user's rows.
    pub async fn search_exact(
        &self,
        user_id: &str,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Hit>, VectorError> {
        self.vector_search(user_id, query, k, false).await
    }

    async fn vector_search(
        &self,
        user_id: &str,
        query: &[f32],
        k: usize,
        use_index: bool,
    ) -> Result<Vec<Hit>, VectorError> {
        self.check_vector("query", query)?;
        Self::check_k(k)?;
        let (rows, ann) = self.user_rows(user_id).await?;
        let q = unit(query);
        let ranked = rank_by_vector(
            &rows,
            self.dims,
            &q,
            ann.filter(|_| use_index).as_deref(),
            k,
        );
        Ok(ranked
            .into_iter()
            .enumerate()
            .map(|(i, (cosine, row))| Hit {
                id: rows.ids[row].clone(),
                text: rows.texts[row].clone(),
                score: cosine,
                parts: ScoreParts {
                    vector: Some(VectorPart {
                        rank: i + 1,
                        cosine,
                    }),
                    ..ScoreParts::default()
                },
            })
            .collect())
    }

    /// The `k` rows of `user_id` whose texts best match `text` by BM25, best
    /// first; rows without any query term are not returned.
    pub async fn keyword_search(
        &self,
        user_id: &str,
        text: &str,
        k: usize,
    ) -> Result<Vec<Hit>, VectorError> {
        Self::check_k(k)?;
        let (rows, _) = self.user_rows(user_id).await?;
        Ok(rows
            .keyword
            .search(text)
            .into_iter()
            .take(k)
            .enumerate()
            .map(|(i, m)| Hit {
                id: rows.ids[m.row].clone(),
                text: rows.texts[m.row].clone(),
                score: m.score,
                parts: ScoreParts {
                    keyword: Some(KeywordPart {
                        rank: i + 1,
                        bm25: m.score,
                        matched_terms: m.matched_terms,
                    }),
                    ..ScoreParts::default()
                },
            })
            .collect())
    }

    /// Vector and keyword search fused with reciprocal rank fusion: each
    /// list's top 100 contribute `1 / (60 + rank)`; the parts of every hit
    /// are reported.
    pub async fn hybrid_search(
        &self,
        user_id: &str,
        query: &[f32],
        text: &str,
        k: usize,
    ) -> Result<Vec<Hit>, VectorError> {
        self.check_vector("query", query)?;
        Self::check_k(k)?;
        let (rows, ann) = self.user_rows(user_id).await?;
        let q = unit(query);
        let mut parts: HashMap<usize, ScoreParts> = HashMap::new();
        for (i, (cosine, row)) in rank_by_vector(&rows, self.dims, &q, ann.as_deref(), FUSION_DEPTH)
            .into_iter()
            .enumerate()
        {
            parts.entry(row).or_default().vector = Some(VectorPart {
                rank: i + 1,
                cosine,
            });
        }
        for (i, m) in rows
            .keyword
            .search(text)
            .into_iter()
            .take(FUSION_DEPTH)
            .enumerate()
        {
            parts.entry(m.row).or_default().keyword = Some(KeywordPart {
                rank: i + 1,
                bm25: m.score,
                matched_terms: m.matched_terms,
            });
        }
        let mut fused: Vec<(f32, usize, ScoreParts)> = parts
            .into_iter()
            .map(|(row, mut p)| {
                let score = p
                    .vector
                    .as_ref()
                    .map_or(0.0, |v| 1.0 / (RRF_K + v.rank as f32))
                    + p.keyword
                        .as_ref()
                        .map_or(0.0, |w| 1.0 / (RRF_K + w.rank as f32));
                p.fused = Some(score);
                (score, row, p)
            })
            .collect();
        fused.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        fused.truncate(k);
        Ok(fused
            .into_iter()
            .map(|(score, row, parts)| Hit {
                id: rows.ids[row].clone(),
                text: rows.texts[row].clone(),
                score,
                parts,
            })
            .collect())
    }
}

fn install(users: &Users, user: &str, generation: u64, ivf: Ivf) {
    let mut users = lock(users);
    if let Some(entry) = users.get_mut(user)
        && entry.generation == generation
    {
        entry.ann = Some(Arc::new(ivf));
        entry.building = false;
    }
}

/// The `k` best (cosine, row) pairs of `rows` for the unit vector `q`, best
/// first. With an index, only its candidates and the rows added after it
/// was built are scored.
fn rank_by_vector(
    rows: &UserRows,
    dims: usize,
    q: &[f32],
    ann: Option<&Ivf>,
    k: usize,
) -> Vec<(f32, usize)> {
    let score = |row: usize| (dot(&rows.vectors[row * dims..(row + 1) * dims], q), row);
    let mut scored: Vec<(f32, usize)> = match ann {
        Some(ann) => ann
            .candidates(q)
            .chain(ann.rows()..rows.len())
            .map(score)
            .collect(),
        None => (0..rows.len()).map(score).collect(),
    };
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
}

fn bad_column(name: &str) -> VectorError {
    VectorError::Storage(format!("column {name} has an unexpected type"))
}
