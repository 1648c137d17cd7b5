//! A request body too long to read ahead streams to its upstream while it arrives, so
//! a client that trickles it would hold that upstream connection for as long as it
//! likes (R.U.D.Y., with a `content-length` or chunked). Such a body must therefore
//! keep arriving: the time spent waiting on the client may be at most a grace period
//! plus one second per `rate` bytes received. Time spent while the upstream is not
//! reading (the proxy is not asking for bytes) does not count against the client.
//! A stream that may be quiet by design and has no announced length (gRPC, a
//! `CONNECT` tunnel) is exempt: its silences are its protocol's, not a slow client's.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// Whether `req` is a stream whose client may be silent for long by design: gRPC
/// (client streaming and bidirectional calls send messages when they have them) and
/// `CONNECT` (a tunnel, as for WebSocket over HTTP/2). Its body is not held to the
/// minimum rate unless its length is announced.
pub(crate) fn quiet_by_design<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::CONNECT || crate::rpc::is_grpc(req.headers())
}

/// A request body that arrived slower than the listener's minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("request body arrived slower than the minimum rate")]
pub(crate) struct BodyTooSlow;

/// `inner`, failing with [`BodyTooSlow`] once the client has been waited on for longer
/// than `grace` plus one second per `rate` bytes it sent.
#[derive(Debug)]
pub(crate) struct MinRateBody<B> {
    inner: B,
    /// Bytes per second, not 0.
    rate: u64,
    grace: Duration,
    received: u64,
    /// The waits on the client that have ended, summed.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    /// The current wait's deadline; made on the first wait.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> MinRateBody<B> {
    pub(crate) fn new(inner: B, rate: u64, grace: Duration) -> Self {
        Self {
            inner,
            rate: rate.max(1),
            grace,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            deadline: None,
        }
    }

    /// How long the client may have been waited on in all, given what it sent.
    fn allowance(&self) -> Duration {
        let earned_ms = self.received.saturating_mul(1000) / self.rate;
        self.grace.saturating_add(Duration::from_millis(earned_ms))
    }

    /// A wait on the client begins (or goes on): ready when it outlasts the allowance.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.waiting_since.is_none() {
            let now = Instant::now();
            self.waiting_since = Some(now);
            let at = now + self.allowance().saturating_sub(self.waited);
            match &mut self.deadline {
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        match &mut self.deadline {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<B> http_body::Body for MinRateBody<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(data)) = &frame {
                    this.received += data.data_ref().map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(frame)
            }
            Poll::Pending => match this.poll_wait(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTooSlow.into()))),
                Poll::Pending => Poll::Pending,
            },
        }
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
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    #[test]
    fn grpc_and_connect_are_quiet_by_design_and_uploads_are_not() {
        let req = |method: &str, content_type: Option<&str>| {
            let mut b = http::Request::builder().method(method).uri("/");
            if let Some(t) = content_type {
                b = b.header(http::header::CONTENT_TYPE, t);
            }
            b.body(()).unwrap()
        };
        assert!(quiet_by_design(&req("POST", Some("application/grpc"))));
        assert!(quiet_by_design(&req(
            "POST",
            Some("application/grpc+proto")
        )));
        assert!(quiet_by_design(&req("POST", Some("Application/GRPC-Web"))));
        assert!(quiet_by_design(&req("CONNECT", None)));
        assert!(!quiet_by_design(&req("POST", None)));
        assert!(!quiet_by_design(&req(
            "PUT",
            Some("application/octet-stream")
        )));
        assert!(!quiet_by_design(&req("POST", Some("application/json"))));
        assert!(!quiet_by_design(&req("POST", Some("application/grp"))));
    }

    /// A body fed by the test, one chunk at a time.
    fn fed() -> (
        mpsc::Sender<Bytes>,
        impl http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
    ) {
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
        });
        (tx, http_body_util::StreamBody::new(Box::pin(stream)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_pace_arrives_whole() {
        let (tx, inner) = fed();
        let body = MinRateBody::new(inner, 100, Duration::from_secs(2));
        let sender = tokio::spawn(async move {
            // 100 bytes each second: the rate exactly, for ten seconds.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tx.send(Bytes::from(vec![b'a'; 100])).await.unwrap();
            }
        });
        let whole = body.collect().await.unwrap().to_bytes();
        assert_eq!(whole.len(), 1000);
        sender.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_rate_fails_once_past_its_allowance() {
        let (tx, inner) = fed();
        let mut body = MinRateBody::new(inner, 100, Duration::from_secs(2));
        let started = Instant::now();
        let _sender = tokio::spawn(async move {
            // One byte a second: far below 100 bytes per second.
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(Bytes::from_static(b"a")).await.is_err() {
                    break;
                }
            }
        });
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the body ended"),
            }
        };
        assert!(err.is::<BodyTooSlow>(), "{err}");
        // The grace and the few bytes' earned milliseconds: not the minutes a trickle
        // could otherwise last.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_body_is_not_asked_for_does_not_count() {
        let (tx, inner) = fed();
        let mut body = MinRateBody::new(inner, 100, Duration::from_secs(1));
        // All of it sent at once, then read a minute later (a slow upstream): the
        // client was never waited on.
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(tx);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "abc"
        );
        assert!(body.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_fails_after_the_grace() {
        let (_tx, inner) = fed();
        let mut body = MinRateBody::new(inner, 100, Duration::from_secs(3));
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTooSlow>());
        assert_eq!(started.elapsed().as_secs(), 3);
    }
}
