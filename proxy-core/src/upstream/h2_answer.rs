//! The wait for an HTTP/2 upstream's answer head, bounded by the cluster's stream
//! idle timeout. The clock runs while it is the upstream's turn: once the request's
//! last byte was handed to the stream, and while the request body waits for the
//! upstream to open its flow-control window. A request body waiting for its client's
//! next bytes is the client's turn (bounded by the listener's own stream idle
//! timeout) and does not count against the upstream.

use std::{
    future::Future,
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

use crate::{Body, BoxError};

/// Sends `req` on `sender` and waits for the answer's head: `None` when the upstream
/// let a whole `limit` pass on its turn.
pub(super) async fn send_within(
    sender: &mut hyper::client::conn::http2::SendRequest<Body>,
    req: Request<Body>,
    limit: Duration,
) -> Option<hyper::Result<Response<Incoming>>> {
    let (req, progress) = if req.body().is_end_stream() {
        (req, None)
    } else {
        let progress = Arc::new(Progress::default());
        let req = req.map(|inner| {
            Body::new(Watched {
                inner,
                progress: progress.clone(),
            })
        });
        (req, Some(progress))
    };
    let mut answer = pin!(sender.send_request(req));
    // In this future, not an allocation of its own; registered on the first wait.
    let mut timer = pin!(tokio::time::sleep(limit));
    let mut frames_seen = 0;
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(answer) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // A whole limit has passed: give up unless the body moved meanwhile or waits
        // for its client, in which case the upstream's wait starts again.
        let Some(progress) = &progress else {
            return Poll::Ready(None);
        };
        let frames = progress.frames.load(Ordering::Acquire);
        if frames == frames_seen && !progress.clients_turn.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        frames_seen = frames;
        timer.as_mut().reset(tokio::time::Instant::now() + limit);
    })
    .await
}

/// What a request body being sent has done, as the waiter for the answer sees it.
#[derive(Debug, Default)]
struct Progress {
    /// Frames handed to the stream so far.
    frames: AtomicU32,
    /// The body waits for its client's next bytes.
    clients_turn: AtomicBool,
}

/// A request body that records its progress.
struct Watched {
    inner: Body,
    progress: Arc<Progress>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let progress = &self.progress;
        match &polled {
            Poll::Pending => progress.clients_turn.store(true, Ordering::Release),
            Poll::Ready(frame) => {
                if frame.is_some() {
                    progress.frames.fetch_add(1, Ordering::AcqRel);
                }
                progress.clients_turn.store(false, Ordering::Release);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
