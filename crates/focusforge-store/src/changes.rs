//! Every document of a user's changed in a time range, read as a series of
//! unordered range scans over windows of the last-write time, so no single
//! read is large and none has to be sorted (a sorted, paged read of a large
//! range costs a backend a sort per page).

use chrono::{DateTime, Utc};
use focusforge_core::UserId;

use futures::Stream;

use std::ops::Deref;

use crate::{Document, DocumentStore, Filter, Order, Query, SortKey, StoreError};

/// The span of the windows a range is first cut into.
const WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
/// The most documents one scan returns; a window holding more is halved.
pub const BATCH: usize = 2_000;

/// Reads, through any handle on a store (`&dyn DocumentStore`, a
/// [`crate::SharedStore`]), the user's documents of `collection` whose last write lies in
/// `[since, until)`, in batches of at most [`BATCH`] (a window in which more
/// than that were written in one millisecond comes as one larger batch).
/// Batches come oldest window first; within a batch there is no order.
pub fn changes<S: Deref<Target = dyn DocumentStore>>(
    store: S,
    collection: &str,
    user: &UserId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Changes<S> {
    let (from, to) = (since.timestamp_millis(), until.timestamp_millis());
    let mut windows = Vec::new();
    let mut start = from;
    while start < to {
        let end = start.saturating_add(WINDOW_MS).min(to);
        windows.push((start, end));
        start = end;
    }
    windows.reverse();
    Changes {
        store,
        collection: collection.to_owned(),
        user: user.clone(),
        windows,
        batch: BATCH,
    }
}

/// See [`changes`].
pub struct Changes<S> {
    store: S,
    collection: String,
    user: UserId,
    /// Windows still to read, as epoch-millisecond `[start, end)`; the next
    /// one is last.
    windows: Vec<(i64, i64)>,
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
        while let Some((start, end)) = self.windows.pop() {
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
                    continue;
                }
                return Ok(Some(scan.documents));
            }
            if end - start > 1 {
                let mid = start + (end - start) / 2;
                self.windows.push((mid, end));
                self.windows.push((start, mid));
                continue;
            }
            return self.one_millisecond(start).await.map(Some);
        }
        Ok(None)
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
