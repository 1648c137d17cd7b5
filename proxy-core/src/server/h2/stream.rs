//! One stream of a downstream HTTP/2 connection: the request handed to the listener's
//! stack, the answer written back through `h2` with flow control, trailers and the
//! access log line.
//!
//! A stream is one future polled by its connection's task (no task, no channel and
//! no box of its own): the request's future lives inline in it.

use std::{
    future::Future,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use h2::{server::SendResponse, Reason, RecvStream, SendStream};
use http::{header, HeaderMap, Request};
use tower::ServiceExt;

use super::{date, Shared};
use crate::{
    h2_body::{content_length, padded, pump, RecvBody, CONNECTION_FIELDS},
    informational::InterimAnswers,
    server::conn::LogStart,
    server::listen::ListenerSettings,
    stall::Stall,
    Body, HttpResponse,
};

/// Tracks one stream: in flight until dropped; dropped before `answered` means the
/// client reset it (or the connection went away) before the answer.
struct StreamGuard {
    shared: Arc<Shared>,
    answered: bool,
}

impl StreamGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.state.in_flight.fetch_add(1, Ordering::Relaxed);
        shared.state.active.store(true, Ordering::Relaxed);
        Self {
            shared,
            answered: false,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let state = &self.shared.state;
        state.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.answered {
            state.answered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Past the limit, and more streams reset than answered: a client that
        // cancels now and then (a browser, a gRPC deadline) is not taken for an
        // attacker however long its connection lives.
        let resets = state.resets.fetch_add(1, Ordering::Relaxed) + 1;
        if resets > self.shared.reset_limit
            && u64::from(resets) > state.answered.load(Ordering::Relaxed)
        {
            state.abuse.notify_one();
        }
    }
}

/// Serves one stream to its end: the stack's answer, then its body.
pub(super) async fn serve(
    shared: Arc<Shared>,
    stack: Arc<ListenerSettings>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let mut guard = StreamGuard::new(shared);
    let shared = &*guard.shared;
    let stall = shared.ctx.limits.stream_idle_timeout;
    let Some(mut req) = request(req, stall) else {
        // A CONNECT announcing a body: not served (as hyper's server did).
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    };
    let mut interims = InterimAnswers::new();
    let informational = interims.next_request();
    if stack.direct.is_none() {
        let ext = req.extensions_mut();
        if let Some(conn_ext) = &shared.ctx.conn_extensions {
            ext.extend(conn_ext.extensions.clone());
        }
        ext.insert(shared.info.clone());
        ext.insert(informational.clone());
    }
    let log = shared.ctx.log_request(&req);
    // The request's future is pinned in place in this one and polled from there: a
    // future handed by value to another async fn would be copied, and stored twice.
    let resp = if let Some(refusal) = refusal(&mut req, shared) {
        refusal
    } else {
        match &stack.direct {
            Some(proxy) => {
                let fut =
                    std::pin::pin!(proxy.forward_direct(req, &shared.info, Some(&informational)));
                // A stream the client resets before its answer ends here, dropping
                // the request.
                match until_reset(fut, &mut respond, &mut interims).await {
                    Some(resp) => resp,
                    None => return,
                }
            }
            None => {
                let fut = std::pin::pin!(stack.service.clone().oneshot(req));
                match until_reset(fut, &mut respond, &mut interims).await {
                    Some(Ok(resp)) => resp,
                    Some(Err(e)) => crate::server::error_response(&e),
                    None => return,
                }
            }
        }
    };
    guard.answered = true;
    drop(guard);
    let mut log = log.map(|mut log| {
        log.response(&resp);
        LogOnDrop {
            log: Some(log),
            sent: 0,
        }
    });
    let Some((body, mut tx)) = send_head(resp, &mut respond) else {
        return;
    };
    let mut body = std::pin::pin!(body);
    let mut pending = None;
    // Counted where the log line is written from, so that a stream dropped during
    // its answer (the connection gone) logs the bytes it did send.
    let mut unlogged = 0;
    let sent = log.as_mut().map_or(&mut unlogged, |log| &mut log.sent);
    let mut stall = Stall::new(stall);
    std::future::poll_fn(|cx| pump(cx, body.as_mut(), &mut tx, &mut pending, sent, &mut stall))
        .await;
}

/// The request with the proxy's body; `None` for a CONNECT with a body.
fn request(req: Request<RecvStream>, stall: Duration) -> Option<crate::HttpRequest> {
    let (parts, recv) = req.into_parts();
    let content_length = || content_length(&parts.headers);
    // The usual request (HEADERS with END_STREAM) looks up no header here.
    let body = if parts.method == http::Method::CONNECT {
        if content_length().is_some_and(|n| n != 0) {
            return None;
        }
        Body::empty()
    } else if recv.is_end_stream() {
        Body::empty()
    } else {
        Body::from_h2(RecvBody::new(recv, content_length(), stall))
    };
    Some(Request::from_parts(parts, body))
}

/// Polls `fut` until it is done, or `None` once the client reset the stream; the
/// interim answers that come meanwhile go out as they come, before the answer.
fn until_reset<'a, F: Future>(
    mut fut: Pin<&'a mut F>,
    respond: &'a mut SendResponse<Bytes>,
    interims: &'a mut InterimAnswers,
) -> impl Future<Output = Option<F::Output>> + 'a {
    std::future::poll_fn(move |cx| {
        let answer = fut.as_mut().poll(cx);
        while let Poll::Ready(interim) = interims.poll_next(cx) {
            if let Err(e) = respond.send_informational(interim) {
                tracing::debug!(error = %e, "an interim answer not sent");
            }
        }
        if let Poll::Ready(out) = answer {
            return Poll::Ready(Some(out));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(reason) => {
                tracing::debug!(?reason, "stream reset before its answer");
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Sends the response head (ending the stream when there is no body); hands back the
/// body and the stream to send it on, when there is one.
fn send_head(
    resp: HttpResponse,
    respond: &mut SendResponse<Bytes>,
) -> Option<(Body, SendStream<Bytes>)> {
    let (mut parts, body) = resp.into_parts();
    // One pass over the (few) names finds what the answer lacks and what HTTP/2
    // forbids, where a lookup of each would hash its name.
    let mut connection = false;
    let mut date = false;
    let mut length = false;
    for name in parts.headers.keys() {
        if name == header::DATE {
            date = true;
        } else if name == header::CONTENT_LENGTH {
            length = true;
        } else if CONNECTION_FIELDS.contains(name) || name == header::TE {
            connection = true;
        }
    }
    if connection {
        strip_connection_headers(&mut parts.headers);
    }
    if !date {
        parts.headers.insert(header::DATE, date::now());
    }
    let end = http_body::Body::is_end_stream(&body);
    if !end && !length {
        if let Some(len) = http_body::Body::size_hint(&body).exact() {
            parts.headers.insert(header::CONTENT_LENGTH, len.into());
        }
    }
    match respond.send_response(http::Response::from_parts(parts, ()), end) {
        Ok(tx) => (!end).then_some((body, tx)),
        Err(e) => {
            tracing::debug!(error = %e, "sending an h2 response head failed");
            respond.send_reset(Reason::INTERNAL_ERROR);
            None
        }
    }
}

/// Removes the connection headers (`te` too: an answer has no use for it), and the
/// fields every `connection` value names (the same reading as the HTTP/1.1 path's).
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in crate::proxy::connection_listed(headers) {
        headers.remove(name);
    }
    crate::h2_body::strip_connection_fields(headers);
    headers.remove(header::TE);
}

/// Writes the access log line when the answer ends or is dropped, with the body bytes
/// sent.
struct LogOnDrop {
    log: Option<Box<LogStart>>,
    sent: u64,
}

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.end(self.sent);
        }
    }
}

/// The answer to a request the proxy does not forward, held to the same rules as an
/// HTTP/1.1 request's head; `None` for one that goes on. Screening may drop header
/// names the listener's underscore policy drops.
fn refusal(req: &mut crate::HttpRequest, shared: &Shared) -> Option<HttpResponse> {
    let bad = |why| {
        Some(crate::proxy::local_reply(&crate::ProxyError::BadRequest(
            why,
        )))
    };
    // `:authority`, else the one `Host`, becomes the Host sent on: held to Host's
    // grammar, without a userinfo (RFC 9113 8.3.1), as an HTTP/1.1 request's is.
    if let Err(e) = crate::proxy::check_authority(req.uri(), req.headers()) {
        return bad(e.as_str());
    }
    if req.uri().authority().is_some() {
        // `:authority` is routed on and sent on; a `Host` beside it, the same or not,
        // would show filters another authority (RFC 9113 8.3.1: it is replaced).
        req.headers_mut().remove(header::HOST);
    }
    if req.headers().len() > shared.ctx.limits.max_headers as usize {
        // As over HTTP/1.1: the count is the listener's, not only the bytes (which
        // `h2` bounds by SETTINGS_MAX_HEADER_LIST_SIZE).
        return Some(too_many_headers());
    }
    if req.headers().values().any(padded) {
        // A malformed request (RFC 9113 8.2.1): never forwarded. HTTP/1.1 strips
        // this white space as it parses, so an HTTP/1.1 upstream would read another
        // value than the one the client sent.
        return bad("header value with leading or trailing white space");
    }
    if let Err(e) = crate::http1::names::screen(req.headers_mut(), shared.underscores) {
        tracing::debug!(error = %e, "bad request header names");
        return bad("header name could be read as another field");
    }
    None
}

/// The answer to a request with more fields than the listener's `max_headers`.
fn too_many_headers() -> HttpResponse {
    let mut resp = HttpResponse::new(Body::from("too many request header fields\n"));
    *resp.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}
