//! One exchange on an HTTP/2 upstream connection, on the `h2` crate's client: the
//! request's stream opened with its head, its body sent under the upstream's flow
//! control, and the wait for the answer's head, bounded by the cluster's stream idle
//! timeout. The clock runs while it is the upstream's turn: once the request's last
//! byte was handed to the stream, and while the request body waits for the upstream
//! to open its flow-control window. A request body waiting for its client's next
//! bytes is the client's turn (bounded by the listener's own stream idle timeout)
//! and does not count against the upstream.
//!
//! The stream is opened in the calling task, so that a failure says whether the
//! request went out: the connection refusing to open one (it is going away, or gone)
//! sent nothing of it; an opened stream fails with the upstream's own verdict
//! (a GOAWAY naming a lower last stream, REFUSED_STREAM).

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
use h2::{client::SendRequest, RecvStream, SendStream};
use http::{header, request, Method, Request, Response};
use http_body::{Body as _, Frame, SizeHint};

use crate::{informational::Informational, stall::Stall, Body, BoxError};

/// Why an HTTP/2 exchange failed.
#[derive(Debug)]
pub(super) enum H2Failure {
    /// The connection opened no stream for the request: none of it was sent.
    NotOpened(h2::Error),
    /// The request's stream (of this id) failed.
    Stream(h2::Error, u32),
}

impl H2Failure {
    pub(super) fn into_error(self) -> h2::Error {
        match self {
            Self::NotOpened(e) | Self::Stream(e, _) => e,
        }
    }
}

/// Sends `req` on a stream of `send`'s connection and waits for the answer's head,
/// handing the interim (1xx) answers before it to `informational`: `None` when the
/// upstream let a whole `limit` pass on its turn.
pub(super) async fn send_within(
    send: &mut SendRequest<Bytes>,
    req: Request<Body>,
    limit: Duration,
    informational: Option<&Informational>,
) -> Option<Result<Response<RecvStream>, H2Failure>> {
    let (mut parts, mut body) = req.into_parts();
    let is_connect = parts.method == Method::CONNECT;
    prepare_head(&mut parts, &body);
    let buffered = body.take_buffered();
    let ends_at_head = !is_connect && buffered.as_ref().is_some_and(Bytes::is_empty);
    let (answer, mut tx) = match send.send_request(Request::from_parts(parts, ()), ends_at_head) {
        Ok(opened) => opened,
        Err(e) => return Some(Err(H2Failure::NotOpened(e))),
    };
    let progress = match buffered {
        Some(_) if ends_at_head => None,
        // One buffer (the usual body): handed to the stream whole, sent as the
        // upstream's window allows; from here it is the upstream's turn.
        Some(data) if !data.is_empty() => {
            let _ = tx.send_data(data, true);
            None
        }
        _ => {
            let progress = Arc::new(Progress::default());
            let watched = Body::new(Watched {
                inner: body,
                progress: progress.clone(),
            });
            // Its own task: the body may go on after the answer's head (a gRPC
            // stream both ways), while the caller moves on to the answer's body.
            tokio::spawn(send_body(watched, tx, limit));
            Some(progress)
        }
    };
    let stream_id = u32::from(answer.stream_id());
    let mut answer = pin!(answer);
    // In this future, not an allocation of its own; registered on the first wait.
    let mut timer = pin!(tokio::time::sleep(limit));
    let mut frames_seen = 0;
    std::future::poll_fn(|cx| loop {
        if let Some(to_client) = informational {
            // Each comes once: `h2` hands the final answer only after them.
            while let Poll::Ready(Some(Ok(head))) = answer.as_mut().poll_informational(cx) {
                to_client.forward_upstreams(head);
            }
        }
        if let Poll::Ready(answer) = answer.as_mut().poll(cx) {
            if let (Err(e), Some(progress)) = (&answer, &progress) {
                if window_ran_out(e, progress) {
                    return Poll::Ready(None);
                }
            }
            return Poll::Ready(Some(answer.map_err(|e| H2Failure::Stream(e, stream_id))));
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

/// Whether the stream failed because the body's sender cancelled it, the upstream
/// having opened no window for a whole stall period: the upstream's turn ran out.
fn window_ran_out(e: &h2::Error, progress: &Progress) -> bool {
    e.is_reset()
        && !e.is_remote()
        && e.reason() == Some(h2::Reason::CANCEL)
        && !progress.body_failed.load(Ordering::Acquire)
}

/// Moves a streaming request body into its stream; an upstream that opens no window
/// for `stall` gets the stream cancelled.
async fn send_body(body: Body, mut tx: SendStream<Bytes>, stall: Duration) {
    let mut body = pin!(body);
    let mut pending = None;
    let mut sent = 0;
    let mut stall = Stall::new(stall);
    std::future::poll_fn(|cx| {
        crate::h2_body::pump(
            cx,
            body.as_mut(),
            &mut tx,
            &mut pending,
            &mut sent,
            &mut stall,
        )
    })
    .await;
}

/// The fields HTTP/2 forbids (RFC 9113 8.2.2) left out, and `content-length` set
/// from a body of known size, as HTTP/1.1 would have framed it.
fn prepare_head(parts: &mut request::Parts, body: &Body) {
    crate::h2_body::strip_connection_fields(&mut parts.headers);
    if let Some(len) = body.size_hint().exact() {
        let has_payload_semantics = !matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
        );
        if (len != 0 || has_payload_semantics)
            && !parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            parts.headers.insert(header::CONTENT_LENGTH, len.into());
        }
    }
    // An extended CONNECT's protocol (RFC 8441), named the way the server side of
    // `hyper` names it.
    if let Some(protocol) = parts.extensions.remove::<hyper::ext::Protocol>() {
        parts
            .extensions
            .insert(h2::ext::Protocol::from(protocol.as_str()));
    }
}

/// What a request body being sent has done, as the waiter for the answer sees it.
#[derive(Debug, Default)]
struct Progress {
    /// Frames handed to the stream so far.
    frames: AtomicU32,
    /// The body waits for its client's next bytes.
    clients_turn: AtomicBool,
    /// The body failed (its client's fault): the stream was reset for it.
    body_failed: AtomicBool,
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
                match frame {
                    Some(Ok(_)) => {
                        progress.frames.fetch_add(1, Ordering::AcqRel);
                    }
                    Some(Err(_)) => progress.body_failed.store(true, Ordering::Release),
                    None => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_fields_are_left_out_and_te_trailers_kept() {
        let req = Request::post("http://up/")
            .header("connection", "keep-alive")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("transfer-encoding", "chunked")
            .header("upgrade", "h2c")
            .header("te", "trailers")
            .header("x-kept", "1")
            .body(Body::from("abc"))
            .unwrap();
        let (mut parts, body) = req.into_parts();
        prepare_head(&mut parts, &body);
        let mut names: Vec<_> = parts.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "te", "x-kept"]);
        assert_eq!(parts.headers["content-length"], "3");
    }

    #[test]
    fn content_length_is_set_only_where_a_body_means_something() {
        let head = |method: Method, body: Body| {
            let (mut parts, body) = Request::builder()
                .method(method)
                .uri("http://up/")
                .body(body)
                .unwrap()
                .into_parts();
            prepare_head(&mut parts, &body);
            parts.headers.get(header::CONTENT_LENGTH).cloned()
        };
        assert_eq!(head(Method::GET, Body::empty()), None);
        assert_eq!(head(Method::POST, Body::empty()).unwrap(), "0");
        assert_eq!(head(Method::PUT, Body::from("hello")).unwrap(), "5");
        // A TE other than `trailers` is not allowed either.
        let (mut parts, body) = Request::get("http://up/")
            .header("te", "gzip")
            .body(Body::empty())
            .unwrap()
            .into_parts();
        prepare_head(&mut parts, &body);
        assert!(parts.headers.is_empty());
    }
}
