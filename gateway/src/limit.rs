//! Refuses gRPC messages over the size limit by reading only the 5-byte frame
//! headers of the request stream; message bytes pass through untouched.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;

/// Set when a message over the limit was seen, with the client-facing reason.
pub type Tripped = Arc<OnceLock<String>>;

/// Wraps a request body of gRPC frames. Needs no pin projection: the inner
/// body is `Unpin` (tonic's `Body` is).
pub struct LimitBody<B> {
    inner: B,
    limit: usize,
    /// Bytes of the current frame header seen so far (up to 5).
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: u64,
    tripped: Tripped,
}

impl<B> LimitBody<B> {
    pub fn new(inner: B, limit: usize, tripped: Tripped) -> Self {
        Self {
            inner,
            limit,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            tripped,
        }
    }

    /// Advances the frame parser over a data chunk; `Err` when a frame
    /// declares a length over the limit.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = data.len().min(self.remaining as usize);
                data.advance(skip);
                self.remaining -= skip as u64;
                continue;
            }
            let take = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data.advance(take);
            if self.header_len == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                if len as usize > self.limit {
                    return Err(format!(
                        "request message is {len} bytes, the limit is {} bytes",
                        self.limit
                    ));
                }
                self.remaining = u64::from(len);
                self.header_len = 0;
            }
        }
        Ok(())
    }
}

impl<B> Body for LimitBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(reason) = this.scan(data)
                {
                    let _ = this.tripped.set(reason.clone());
                    return Poll::Ready(Some(Err(Status::invalid_argument(reason))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Status::from_error(e.into())))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    /// Unknown: the inner hint may describe the bytes before gRPC-web
    /// decoding (base64 text is longer), and an exact hint would make the
    /// HTTP/2 client send a wrong content-length.
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, len as usize));
        out
    }

    fn body(limit: usize) -> LimitBody<()> {
        LimitBody::new((), limit, Tripped::default())
    }

    #[test]
    fn passes_frames_within_the_limit_in_any_chunking() {
        let stream: Vec<u8> = [frame(10), frame(0), frame(100)].concat();
        for chunk in [1, 2, 3, 5, 7, 64, 1000] {
            let mut b = body(100);
            for piece in stream.chunks(chunk) {
                assert!(b.scan(piece).is_ok(), "chunk size {chunk}");
            }
            assert_eq!(b.remaining, 0);
            assert_eq!(b.header_len, 0);
        }
    }

    #[test]
    fn refuses_a_frame_over_the_limit_even_split_across_chunks() {
        let stream: Vec<u8> = [frame(10), frame(101)].concat();
        for chunk in [1, 3, 16] {
            let mut b = body(100);
            let refused = stream.chunks(chunk).any(|piece| b.scan(piece).is_err());
            assert!(refused, "chunk size {chunk}");
        }
    }

    proptest::proptest! {
        #[test]
        fn trips_exactly_when_a_frame_is_over_the_limit_in_any_chunking(
            lens in proptest::collection::vec(0u32..300, 0..8),
            chunk in 1usize..64,
            limit in 0usize..300,
        ) {
            let stream: Vec<u8> = lens.iter().flat_map(|l| frame(*l)).collect();
            let mut b = body(limit);
            let refused = stream.chunks(chunk).any(|piece| b.scan(piece).is_err());
            let over = lens.iter().any(|l| *l as usize > limit);
            proptest::prop_assert_eq!(refused, over);
        }

        #[test]
        fn any_bytes_scan_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            chunk in 1usize..32,
        ) {
            let mut b = body(4096);
            for piece in bytes.chunks(chunk) {
                if b.scan(piece).is_err() {
                    break;
                }
            }
        }
    }
}
