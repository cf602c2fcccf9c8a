//! Every document of a user's changed in a time range, read as a series of
//! unordered range scans over windows of the last-write time, so no single
//! read is large and none has to be sorted (a sorted, paged read of a large
//! range costs a backend a sort per page).

use std::ops::Deref;

use chrono::{DateTime, Utc};
use focusforge_core::UserId;
use futures::Stream;

use crate::{Document, DocumentStore, Filter, Order, Query, SortKey, StoreError};

/// The span of the first window; a window that comes back empty doubles
/// the next one (up to [`MAX_WINDOW_MS`]), one that comes back truncated
/// is halved and so is the next, so sparse years cost few reads and dense
/// weeks none too large.
const WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
const MAX_WINDOW_MS: i64 = 64 * WINDOW_MS;
/// The most documents one scan returns; a window holding more is halved.
pub const BATCH: usize = 2_000;

/// Reads, through any handle on a store (`&dyn DocumentStore`, a
/// [`crate::SharedStore`]), the user's documents of `collection` whose last
/// write lies in `[since, until)`, in batches of at most [`BATCH`] (a window
/// in which more than that were written in one millisecond comes as one
/// larger batch). Batches come oldest window first; within a batch there is
/// no order.
pub fn changes<S: Deref<Target = dyn DocumentStore>>(
    store: S,
    collection: &str,
    user: &UserId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Changes<S> {
    Changes {
        store,
        collection: collection.to_owned(),
        user: user.clone(),
        next: since.timestamp_millis(),
        end: until.timestamp_millis(),
        width: WINDOW_MS,
        split: Vec::new(),
        batch: BATCH,
    }
}

/// See [`changes`].
pub struct Changes<S> {
    store: S,
    collection: String,
    user: UserId,
    /// Where the windows not cut yet start, and where they end.
    next: i64,
    end: i64,
    width: i64,
    /// Halves of truncated windows still to read, as epoch-millisecond
    /// `[start, end)`; the next one is last.
    split: Vec<(i64, i64)>,
    batch: usize,
}

fn between(start: i64, end: i64) -> Filter {
    Filter::UpdatedBetween {
        gte: DateTime::from_timestamp_millis(start),
        lt: DateTime::from_timestamp_millis(end),
    }
}

impl<S: Deref<Target = dyn DocumentStore>> Changes<S> {
    /// Scans at most `batch` (1..=[`crate::MAX_SCAN`]) documents at a time
    /// instead of [`BATCH`].
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// The batches as a stream that owns the reader.
    pub fn into_stream(self) -> impl Stream<Item = Result<Vec<Document>, StoreError>> + Send
    where
        S: Send + Sync,
    {
        futures::stream::try_unfold(self, |mut reader| async move {
            Ok(reader.next_batch().await?.map(|batch| (batch, reader)))
        })
    }

    /// The next non-empty batch, or `None` once every window has been read.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Document>>, StoreError> {
        loop {
            let (start, end) = match self.split.pop() {
                Some(w) => w,
                None if self.next < self.end => {
                    let end = self.next.saturating_add(self.width).min(self.end);
                    let w = (self.next, end);
                    self.next = end;
                    w
                }
                None => return Ok(None),
            };
            let scan = self
                .store
                .scan(
                    &self.collection,
                    &self.user,
                    &[between(start, end)],
                    self.batch,
                )
                .await?;
            if !scan.truncated {
                if scan.documents.is_empty() {
                    self.width = (self.width * 2).min(MAX_WINDOW_MS);
                    continue;
                }
                return Ok(Some(scan.documents));
            }
            if end - start > 1 {
                let mid = start + (end - start) / 2;
                self.width = (mid - start).max(1);
                self.split.push((mid, end));
                self.split.push((start, mid));
                continue;
            }
            return self.one_millisecond(start).await.map(Some);
        }
    }

    /// Every document written in one millisecond, paged in order.
    async fn one_millisecond(&self, at: i64) -> Result<Vec<Document>, StoreError> {
        let mut out = Vec::new();
        let mut query = Query {
            filters: vec![between(at, at + 1)],
            order: Order {
                key: SortKey::UpdatedAt,
                descending: false,
            },
            limit: Query::MAX_LIMIT,
            after: None,
        };
        loop {
            let page = self
                .store
                .find(&self.collection, &self.user, &query)
                .await?;
            out.extend(page.documents);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(out),
            }
        }
    }
}
