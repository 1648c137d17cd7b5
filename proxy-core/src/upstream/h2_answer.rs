//! The wait for an HTTP/2 upstream's answer head, bounded by the cluster's stream
//! idle timeout counted from when the request's last byte was handed to the stream.
//! A request body still going out (paced by the upstream's flow control) does not
//! count against the wait; an upstream that takes the whole request and then says
//! nothing does.

use std::{
    future::Future,
    pin::{pin, Pin},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::{stall::Stall, Body, BoxError};

/// Sends `req` on `sender` and waits for the answer's head: `None` when none came
/// within `limit` of the request's end.
pub(super) async fn send_within(
    sender: &mut hyper::client::conn::http2::SendRequest<Body>,
    req: Request<Body>,
    limit: Duration,
) -> Option<hyper::Result<Response<Incoming>>> {
    let (req, ended) = if req.body().is_end_stream() {
        (req, None)
    } else {
        let ended = Arc::new(Notify::new());
        let req = req.map(|inner| {
            Body::new(SignalsEnd {
                inner,
                ended: ended.clone(),
            })
        });
        (req, Some(ended))
    };
    let mut answer = pin!(sender.send_request(req));
    let mut body_out = pin!(async {
        if let Some(ended) = &ended {
            ended.notified().await;
        }
    });
    let mut waited = false;
    let mut stall = Stall::new(limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(answer) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        if !waited {
            if body_out.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            waited = true;
        }
        stall.poll_expired(cx).map(|()| None)
    })
    .await
}

/// A request body that tells when its end has been read.
struct SignalsEnd {
    inner: Body,
    ended: Arc<Notify>,
}

impl http_body::Body for SignalsEnd {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.notify_one();
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
