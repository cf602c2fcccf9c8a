use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use lance::Dataset;
use lance::dataset::{WriteMode, WriteParams};
use lance::deps::arrow_array::types::Float32Type;
use lance::deps::arrow_array::{
    Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, RecordBatchIterator,
    StringArray,
};
use lance::deps::arrow_schema::{DataType, Field, Schema, SchemaRef};
use tokio::sync::RwLock;

use crate::VectorError;

/// One row: an embedded text of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    pub id: String,
    pub user_id: String,
    pub text: String,
    pub vector: Vec<f32>,
    pub created_at_ms: i64,
}

/// A search result: the row and its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub text: String,
    pub score: f32,
}

/// One user's rows in memory: ids, texts, and unit vectors row after row.
#[derive(Default, Clone)]
struct UserRows {
    ids: Vec<String>,
    texts: Vec<String>,
    vectors: Vec<f32>,
}

/// A Lance-backed table of vectors with per-user exact search.
pub struct VectorTable {
    uri: String,
    dims: usize,
    schema: SchemaRef,
    /// `None` until the first write creates the dataset.
    dataset: RwLock<Option<Dataset>>,
    users: Mutex<HashMap<String, Arc<UserRows>>>,
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

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / norm).collect()
    }
}

impl VectorTable {
    /// Opens the table at `uri`, or prepares to create it on the first write.
    pub async fn open(uri: &str, dims: usize) -> Result<Self, VectorError> {
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
        let dataset = match Dataset::open(uri).await {
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
        };
        Ok(Self {
            uri: uri.to_owned(),
            dims,
            schema,
            dataset: RwLock::new(dataset),
            users: Mutex::new(HashMap::new()),
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
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
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        for (row, vector) in rows.into_iter().zip(vectors) {
            if let Some(cached) = users.get_mut(&row.user_id) {
                let rows = Arc::make_mut(cached);
                rows.ids.push(row.id);
                rows.texts.push(row.text);
                rows.vectors.extend(vector);
            }
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
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user_id);
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
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user_id);
        Ok(before)
    }

    async fn user_rows(&self, user_id: &str) -> Result<Arc<UserRows>, VectorError> {
        if let Some(rows) = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_id)
        {
            return Ok(rows.clone());
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
                for i in 0..batch.num_rows() {
                    rows.ids.push(ids.value(i).to_owned());
                    rows.texts.push(texts.value(i).to_owned());
                }
                rows.vectors.extend_from_slice(values.values());
            }
        }
        let rows = Arc::new(rows);
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user_id.to_owned(), rows.clone());
        Ok(rows)
    }

    /// The `k` rows of `user_id` most similar to `query`, best first.
    pub async fn search(
        &self,
        user_id: &str,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Hit>, VectorError> {
        self.check_vector("query", query)?;
        if !(1..=100).contains(&k) {
            return Err(invalid("top_k", "must be between 1 and 100"));
        }
        let rows = self.user_rows(user_id).await?;
        let q = unit(query);
        let mut scored: Vec<(f32, usize)> = rows
            .vectors
            .chunks_exact(self.dims)
            .enumerate()
            .map(|(i, v)| (v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(k);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(scored
            .into_iter()
            .map(|(score, i)| Hit {
                id: rows.ids[i].clone(),
                text: rows.texts[i].clone(),
                score,
            })
            .collect())
    }
}

fn bad_column(name: &str) -> VectorError {
    VectorError::Storage(format!("column {name} has an unexpected type"))
}
