//! The `Sync*` server streams: a domain's batches of changed records, cut
//! into messages of a bounded size and stopped past a bounded count.

use std::collections::VecDeque;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::Status;

use crate::into_status;

/// The most records one sync sends.
pub const SYNC_MAX: usize = 50_000;
/// A message holds records up to about this many encoded bytes.
const MESSAGE_BYTES: usize = 1 << 20;

pub type SyncStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

struct State<S, P> {
    batches: Pin<Box<S>>,
    queue: VecDeque<Result<Vec<P>, Status>>,
    sent: usize,
    ended: bool,
}

/// Streams `batches` (already converted to wire records) as messages made
/// by `wrap`, each at most about a mebibyte; more than [`SYNC_MAX`] records
/// end the stream with `OUT_OF_RANGE` naming `what`.
pub fn sync_stream<S, P, R>(what: &'static str, batches: S, wrap: fn(Vec<P>) -> R) -> SyncStream<R>
where
    S: Stream<Item = focusforge_core::Result<Vec<P>>> + Send + 'static,
    P: prost::Message + Send + 'static,
    R: Send + 'static,
{
    let state = State {
        batches: Box::pin(batches),
        queue: VecDeque::new(),
        sent: 0,
        ended: false,
    };
    Box::pin(futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item.map(wrap), st));
            }
            if st.ended {
                return None;
            }
            match st.batches.next().await {
                None => return None,
                Some(Err(e)) => {
                    st.ended = true;
                    st.queue.push_back(Err(into_status(e)));
                }
                Some(Ok(records)) => {
                    st.sent += records.len();
                    if st.sent > SYNC_MAX {
                        st.ended = true;
                        st.queue.push_back(Err(Status::out_of_range(format!(
                            "more than {SYNC_MAX} {what} changed since changed_since; sync from a later time"
                        ))));
                        continue;
                    }
                    let mut message = Vec::new();
                    let mut bytes = 0;
                    for record in records {
                        let len = record.encoded_len();
                        if !message.is_empty() && bytes + len > MESSAGE_BYTES {
                            st.queue.push_back(Ok(std::mem::take(&mut message)));
                            bytes = 0;
                        }
                        bytes += len;
                        message.push(record);
                    }
                    if !message.is_empty() {
                        st.queue.push_back(Ok(message));
                    }
                }
            }
        }
    }))
}
