//! A request body that fails once it carries more than the limit.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use proxy_core::{Body, BoxError};

/// The error a body limited by [`super::RequestSizeLimit`] yields in place of the
/// frame that took it past the limit; the upstream request carrying the body is
/// aborted with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    /// The limit, in bytes.
    pub limit: u64,
}

pin_project_lite::pin_project! {
    /// A body passed through until it carries more than `limit` bytes, then failing
    /// with [`BodyTooLarge`] (and telling the filter, through `tripped`).
    #[derive(Debug)]
    pub(crate) struct LimitedBody {
        #[pin]
        inner: Body,
        limit: u64,
        seen: u64,
        tripped: Arc<AtomicBool>,
    }
}

impl LimitedBody {
    pub(crate) fn new(inner: Body, limit: u64, tripped: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limit,
            seen: 0,
            tripped,
        }
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.seen > *this.limit {
            // Failed already: stay failed.
            return Poll::Ready(Some(Err(BodyTooLarge { limit: *this.limit }.into())));
        }
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            *this.seen = this.seen.saturating_add(data.len() as u64);
            if *this.seen > *this.limit {
                this.tripped.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(BodyTooLarge { limit: *this.limit }.into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// `n` data frames of `size` bytes.
    struct Chunks {
        n: usize,
        size: usize,
    }

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.n == 0 {
                return Poll::Ready(None);
            }
            self.n -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
        }
    }

    #[tokio::test]
    async fn passes_up_to_the_limit_and_fails_past_it() {
        let tripped = Arc::new(AtomicBool::new(false));
        let ok = LimitedBody::new(Body::new(Chunks { n: 4, size: 10 }), 40, tripped.clone());
        assert_eq!(ok.collect().await.unwrap().to_bytes().len(), 40);
        assert!(!tripped.load(Ordering::Acquire));
        let cut = LimitedBody::new(Body::new(Chunks { n: 5, size: 10 }), 40, tripped.clone());
        let err = cut.collect().await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<BodyTooLarge>(),
            Some(&BodyTooLarge { limit: 40 })
        );
        assert!(tripped.load(Ordering::Acquire));
    }
}
