//! The downstream HTTP/1.1 connection loop: parse a request head, call the request
//! stack, write the response, repeat. Its read and write buffers are lent by the
//! worker only while bytes move (`crate::bufs`), so an idle keep-alive connection
//! holds none and a keep-alive request costs no allocation for I/O; the socket and
//! unread bytes are in hand at every request boundary.

use bytes::{BufMut, BytesMut};
use http::{header, Method, Request, StatusCode, Version};
use http_body::Body as _;
use std::{future::Future, pin::Pin};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::{Instant, Sleep},
};
use tower::{Service, ServiceExt};

use super::{
    conn::ConnCtx,
    drain_signal::DrainSignal,
    h1_wait::{Interims, UnlessClientGone},
};
use crate::{
    http1::{
        decode::{DecodeError, Decoder},
        head::{self, Framing, HeadError},
        send::{flush, send_body, SendBodyError},
        RecvBody,
    },
    informational::InterimAnswers,
    net::{ReadHalf, Stream, WriteHalf},
    proxy::ConnInfo,
    upstream::UpgradedUpstream,
    Body, HttpResponse,
};

// Returned once per request and matched at once: boxing the head would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum ReadHead {
    Head(head::RequestHead),
    /// The peer closed, the connection idled out, or the proxy is draining.
    Closed,
    /// The proxy hands the connection over to a new process (hot upgrade): no
    /// request is in flight and `buf` holds at most part of a head.
    HandOff,
    Error(HeadError),
    Timeout,
}

/// What the connection loop keeps between requests for its timers and the drain.
struct Idle {
    /// Whether a request was served since the idle timer last fired.
    active: bool,
    /// Whether the drain signal fired (its future is done then, never polled again).
    drained: bool,
    /// Whether the connection is a plain socket that a hot upgrade may hand over.
    can_hand_off: bool,
    /// Whether a hot upgrade's hand-off is under way: the connection goes once the
    /// timer, set to its moment then, has fired.
    handing_off: bool,
}

impl Idle {
    /// Whether the connection goes over to a new process at a request boundary rather
    /// than close (read only while draining).
    fn goes_over(&self, ctx: &ConnCtx) -> bool {
        self.can_hand_off
            && (self.handing_off || (!self.drained && super::handoff::handing_off(ctx)))
    }
}

/// Waits for and parses the next request head.
///
/// One timer and one drain subscription live for the whole connection, so a busy
/// keep-alive connection touches neither per request. The idle timer fires every
/// `idle_timeout`; a connection that served no request since the last firing (`active`
/// is false) is closed, so an idle connection lives between one and two idle timeouts.
///
/// The drain signal also starts a hot upgrade's hand-off: a plain socket then gets a
/// moment (the timer fires at it) from which it goes over whenever it waits here,
/// even with part of a head read; until then it is served as usual.
async fn read_head(
    read: &mut ReadHalf,
    buf: &mut BytesMut,
    ctx: &ConnCtx,
    mut drain: Pin<&mut impl Future<Output = ()>>,
    mut timer: Pin<&mut Sleep>,
    idle_state: &mut Idle,
) -> ReadHead {
    let limits = &ctx.limits;
    let max_headers = limits.max_headers as usize;
    let max_bytes = limits.max_header_bytes.as_usize();
    let mut head_deadline: Option<Instant> = None;
    loop {
        if idle_state.handing_off && timer.deadline() <= Instant::now() {
            if ctx
                .current_handoff()
                .is_some_and(|h| buf.len() <= h.max_unread())
            {
                return ReadHead::HandOff;
            }
            // Too much to carry over: finish this request here, then close.
            idle_state.handing_off = false;
            head_deadline = None;
            timer.as_mut().reset(Instant::now() + limits.idle_timeout);
        }
        if !buf.is_empty() {
            match head::parse_request(buf, max_headers, max_bytes) {
                Ok(Some(h)) => return ReadHead::Head(h),
                Ok(None) => {}
                Err(e) => return ReadHead::Error(e),
            }
            // The whole head must arrive within the header timeout of its first byte.
            if head_deadline.is_none() {
                let d = Instant::now() + limits.header_read_timeout;
                head_deadline = Some(d);
                if timer.deadline() > d {
                    timer.as_mut().reset(d);
                }
            }
        }
        let idle = head_deadline.is_none();
        tokio::select! {
            biased;
            r = read.read_lent(buf) => match r {
                Ok(0) | Err(_) => return ReadHead::Closed,
                Ok(n) => {
                    ctx.stats.count_rx(n);
                }
            },
            () = timer.as_mut() => {
                if idle_state.handing_off {
                    continue;
                }
                let now = Instant::now();
                match head_deadline {
                    Some(d) if now >= d => return ReadHead::Timeout,
                    Some(d) => timer.as_mut().reset(d),
                    None if !std::mem::take(&mut idle_state.active) => return ReadHead::Closed,
                    None => timer.as_mut().reset(now + limits.idle_timeout),
                }
            }
            () = drain.as_mut(), if !idle_state.drained && (idle || idle_state.can_hand_off) => {
                idle_state.drained = true;
                let handoff = ctx.current_handoff();
                match handoff.filter(|_| idle_state.can_hand_off) {
                    Some(h) => {
                        idle_state.handing_off = true;
                        timer.as_mut().reset(h.slot());
                    }
                    None if idle => return ReadHead::Closed,
                    // Part of a head read: answered, then closed.
                    None => {}
                }
            }
        };
    }
}

/// Serves HTTP/1.x on `stream`; `buf` holds bytes already read (by sniffing).
pub(crate) async fn serve(stream: Stream, mut buf: BytesMut, ctx: ConnCtx) {
    let (read, mut write) = stream.into_split();
    let mut read = Some(read);
    // Both buffers are lent only while bytes move (see `crate::bufs`).
    let mut wbuf = BytesMut::new();
    // The listener's stack (filters) as of the current request: re-read per request
    // so that a reload applies to the next request of this connection.
    let mut stack = ctx.listener.settings.load_full();
    let mut svc = stack.service.clone();
    let drain = ctx.drain.clone();
    let mut drain_rx = ctx.drain.clone();
    let drain_signal = DrainSignal::new(ctx.drain.clone(), async move {
        let _ = drain_rx.wait_for(|d| *d).await;
    });
    tokio::pin!(drain_signal);
    let timer = tokio::time::sleep(ctx.limits.idle_timeout);
    tokio::pin!(timer);
    let conn_info = ConnInfo::new(ctx.peer, ctx.secure);
    // Made at the first HTTP/1.1 request: where its interim answers come from.
    let mut interims: Option<InterimAnswers> = None;
    let mut idle = Idle {
        active: true,
        drained: false,
        can_hand_off: (!ctx.secure && read.as_ref().is_some_and(ReadHalf::is_socket))
            || super::handoff::layer_hand_over(&ctx).is_some(),
        handing_off: false,
    };
    loop {
        let Some(r) = read.as_mut() else { return };
        let head = match read_head(
            r,
            &mut buf,
            &ctx,
            drain_signal.as_mut(),
            timer.as_mut(),
            &mut idle,
        )
        .await
        {
            ReadHead::Head(h) => h,
            ReadHead::Closed => return,
            ReadHead::HandOff => {
                let Some(r) = read.take() else { return };
                // Boxed: rare, and the connection's future stays small.
                Box::pin(super::handoff::hand_off(r, write, buf, &ctx)).await;
                return;
            }
            ReadHead::Timeout => {
                answer_error_and_close(
                    write,
                    &mut wbuf,
                    read.take(),
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    &ctx,
                )
                .await;
                return;
            }
            ReadHead::Error(e) => {
                let status = match e {
                    HeadError::TooLarge | HeadError::TooManyHeaders => {
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                    }
                    HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
                    HeadError::BadVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    HeadError::Unsupported | HeadError::UnknownTransferCoding => {
                        StatusCode::NOT_IMPLEMENTED
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                tracing::debug!(peer = ?ctx.peer, error = %e, "bad request head");
                answer_error_and_close(write, &mut wbuf, read.take(), status, "bad_request", &ctx)
                    .await;
                return;
            }
        };
        idle.active = true;
        let mut head = head;
        // Only a head with a name with `_` has names to screen.
        let screened = if head.underscore_names {
            crate::http1::names::screen(
                &mut head.parts.headers,
                ctx.limits.headers_with_underscores,
            )
        } else {
            Ok(())
        };
        if let Err(e) = screened {
            tracing::debug!(peer = ?ctx.peer, error = %e, "bad request head");
            answer_error_and_close(
                write,
                &mut wbuf,
                read.take(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                &ctx,
            )
            .await;
            return;
        }
        let head::RequestHead {
            parts,
            underscore_names: _,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        let is_head = parts.method == Method::HEAD;
        let version = parts.version;
        let mut pending_read = None;
        let body = match framing {
            Framing::Empty => Body::empty(),
            Framing::Length(n) if n <= buf.len() as u64 => Body::from(crate::bufs::take_front(
                &mut buf,
                n as usize,
                crate::bufs::Slab::Requests,
            )),
            framing => {
                if expect_continue
                    && write
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await
                        .is_err()
                {
                    return;
                }
                let Some(r) = read.take() else { return };
                let (b, rx) = RecvBody::downstream(
                    r,
                    std::mem::take(&mut buf),
                    Decoder::new(framing),
                    ctx.limits.stream_idle_timeout,
                    ctx.stats.clone(),
                );
                pending_read = Some(rx);
                Body::from_h1(b)
            }
        };
        // Nothing left to parse: the read buffer goes back while the request is served.
        crate::bufs::give_back(&mut buf);
        let mut req = Request::from_parts(parts, body);
        {
            let now = ctx.listener.settings.load();
            if !std::sync::Arc::ptr_eq(&now, &stack) {
                stack = arc_swap::Guard::into_inner(now);
                svc = stack.service.clone();
            }
        }
        // Interim answers go to HTTP/1.1 clients only (RFC 9110 15.2).
        let takes_interims = version == Version::HTTP_11;
        let informational = takes_interims.then(|| {
            interims
                .get_or_insert_with(InterimAnswers::new)
                .next_request()
        });
        if stack.direct.is_none() {
            let ext = req.extensions_mut();
            if let Some(conn_ext) = &ctx.conn_extensions {
                ext.extend(conn_ext.extensions.clone());
            }
            ext.insert(conn_info.clone());
            if let Some(informational) = &informational {
                ext.insert(informational.clone());
            }
        }
        // The access log's record, kept only when there is a log.
        let log = ctx.log_request(&req);
        // A keep-alive client that closes its connection while it waits has given up
        // (its own timeout): the request is dropped, which lets the upstream go. A
        // client that asked for `close` may have only half-closed, and is answered.
        let watch = read.as_mut().filter(|_| keep_alive);
        let answered = match &stack.direct {
            // On the heap while in flight (in a box the worker recycles): a
            // connection between requests keeps only the loop's own state.
            Some(proxy) => {
                let answer = proxy.forward_pooled(req, &conn_info, informational);
                let to_client = interims_to_write(&mut interims, takes_interims, &mut write);
                UnlessClientGone::new(watch, &mut buf, &ctx, to_client, answer)
                    .await
                    .map(Ok)
            }
            None => match svc.ready().await {
                Ok(s) => {
                    let answer = s.call(req);
                    let to_client = interims_to_write(&mut interims, takes_interims, &mut write);
                    UnlessClientGone::new(watch, &mut buf, &ctx, to_client, answer).await
                }
                Err(e) => Some(Err(e)),
            },
        };
        // `answered` is moved whole (a match taking it apart would leave the
        // connection's future keeping room for it across the writes below).
        let mut resp = match answered.map(|r| r.unwrap_or_else(|e| super::error_response(&e))) {
            Some(resp) => resp,
            None => {
                tracing::debug!(peer = ?ctx.peer, "client closed before its answer");
                return;
            }
        };

        if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let (Some(up), Some(r)) = (
                resp.extensions_mut().remove::<UpgradedUpstream>(),
                read.take(),
            ) {
                if let Some((upstream, upbuf)) = up.take() {
                    head::encode_response(
                        &mut wbuf,
                        resp.status(),
                        resp.headers(),
                        Framing::Empty,
                        false,
                    );
                    if write.write_all(&wbuf).await.is_err() {
                        return;
                    }
                    wbuf.clear();
                    if let Some(log) = log {
                        log.finish(&resp, 0);
                    }
                    // The head has gone out: its memory is not kept for the tunnel's life.
                    drop(resp);
                    Box::pin(super::h1_tunnel::tunnel(r, write, buf, upstream, upbuf)).await;
                    return;
                }
            }
        }

        // During a hot upgrade's hand-off, a connection that can go stays open: it
        // goes at its next request boundary instead of closing.
        let draining = *drain.borrow() && !idle.goes_over(&ctx);
        let mut close = !keep_alive || draining;
        let status = resp.status();
        let framing = response_framing(&mut resp, is_head, version);
        if framing == Framing::Close {
            close = true;
        }
        let headers = resp.headers_mut();
        if version == Version::HTTP_10 && !close {
            // An HTTP/1.0 client keeps its connection only when the answer says so
            // (RFC 9112 9.3 and appendix C.2.2, RFC 2068 19.7.1).
            headers.insert(
                header::CONNECTION,
                http::HeaderValue::from_static("keep-alive"),
            );
        }
        // The head is written without the upstream's framing fields; they are removed
        // from the map only for the access log, which reads the head as sent.
        if log.is_some() {
            if !is_head {
                headers.remove(header::CONTENT_LENGTH);
            }
            headers.remove(header::TRANSFER_ENCODING);
        }
        crate::bufs::ready_for_write(&mut wbuf);
        head::encode_response_reframed(
            &mut wbuf,
            status,
            headers,
            if is_head { Framing::Close } else { framing },
            close,
            is_head,
        );
        let head_len = wbuf.len() as u64;
        let mut body = std::mem::take(resp.body_mut());
        let sent = match body.take_buffered() {
            // The usual case: the whole body came with the upstream's head, so the
            // response goes out in one write.
            Some(data) => {
                let n = if let Framing::Length(_) = framing {
                    wbuf.extend_from_slice(&data);
                    data.len() as u64
                } else {
                    0
                };
                flush(&mut write, &mut wbuf, ctx.limits.stream_idle_timeout)
                    .await
                    .map(|()| n)
            }
            None => {
                // A streaming body may last long: without a log to read it at the end,
                // the head's map (and the copy of the upstream's head its values are
                // slices of) goes now rather than with the body.
                if log.is_none() {
                    crate::http1::header_maps::give_back(resp.headers_mut());
                }
                Box::pin(send_body(
                    &mut write,
                    &mut wbuf,
                    &mut body,
                    framing,
                    ctx.limits.stream_idle_timeout,
                ))
                .await
            }
        };
        drop(body);
        crate::bufs::give_back(&mut wbuf);
        let body_bytes = match sent {
            Ok(n) => n,
            // The upstream's body was bad from its first byte (a malformed chunk
            // size): nothing went out, so the client gets a 502 rather than a
            // connection closed without an answer.
            Err(SendBodyError::SourceBeforeAnyWrite(e)) => {
                tracing::debug!(peer = ?ctx.peer, error = %e, "response body failed before its head went out");
                answer_error_and_close(
                    write,
                    &mut wbuf,
                    read.take(),
                    StatusCode::BAD_GATEWAY,
                    body_failure_reason(&*e),
                    &ctx,
                )
                .await;
                return;
            }
            Err(e) => {
                tracing::debug!(peer = ?ctx.peer, error = %e, "response body failed");
                return;
            }
        };
        ctx.stats
            .count_tx(usize::try_from(head_len + body_bytes).unwrap_or(usize::MAX));
        if let Some(log) = log {
            log.finish(&resp, body_bytes);
        }
        // The response head has gone out: its map is kept for the next head parsed.
        crate::http1::header_maps::give_back(resp.headers_mut());
        if let Some(rx) = pending_read {
            match rx.await {
                Ok(ret) if ret.complete => {
                    read = Some(ret.read);
                    buf = ret.buf;
                }
                // The request body was not read to its end: the next request's start is
                // unknown, so the connection cannot be reused.
                _ => close = true,
            }
        }
        if close {
            let _ = write.shutdown().await;
            linger(read.take());
            return;
        }
    }
}

/// The connection's interim answers and where they are written, when the current
/// request's client takes them.
fn interims_to_write<'a>(
    interims: &'a mut Option<InterimAnswers>,
    takes_interims: bool,
    write: &'a mut WriteHalf,
) -> Option<Interims<'a>> {
    let from = interims.as_mut().filter(|_| takes_interims)?;
    Some(Interims {
        from,
        to: Some(write),
    })
}

fn response_framing(resp: &mut HttpResponse, is_head: bool, version: Version) -> Framing {
    if is_head {
        return Framing::Empty;
    }
    let body = resp.body();
    if body.is_end_stream() {
        return Framing::Empty;
    }
    match body.size_hint().exact() {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None if version == Version::HTTP_11 => Framing::Chunked,
        None => Framing::Close,
    }
}

/// The reason a response body that failed before its first byte is answered with:
/// a body the HTTP/1.1 decoder found malformed is the upstream breaking the
/// protocol; anything else (the connection cut, a layer's body failing) a reset.
fn body_failure_reason(e: &(dyn std::error::Error + 'static)) -> &'static str {
    match crate::error::find_cause::<DecodeError>(e) {
        Some(DecodeError::UnexpectedEof) | None => "upstream_reset",
        Some(_) => "upstream_protocol_error",
    }
}

/// How long a closed connection's read side keeps draining what the peer still sends.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Closes a connection without a reset. The write side is shut already (FIN, after
/// the last answer); what the peer still sends (pipelined requests, the rest of a
/// body) is read and dropped until it closes too, for at most [`LINGER`] and 1 MiB.
/// Closing a socket with unread input makes the kernel send a reset, and a reset can
/// make the peer's kernel discard the answers it has not read yet. Runs on a task of
/// its own so that the connection loop's future stays small.
pub(super) fn linger(read: Option<ReadHalf>) {
    let Some(mut read) = read else { return };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut scratch = vec![0u8; 8192];
        let mut total = 0usize;
        while total < 1 << 20 {
            match tokio::time::timeout_at(deadline, read.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => total += n,
                _ => return,
            }
        }
    });
}

/// Answers `status` with a short text body naming `reason` (counted and logged as
/// a local reply), then closes the connection, letting the client's unread bytes
/// drain so that it reads the answer rather than a reset.
async fn answer_error_and_close(
    mut write: WriteHalf,
    wbuf: &mut BytesMut,
    read: Option<ReadHalf>,
    status: StatusCode,
    reason: &'static str,
    ctx: &ConnCtx,
) {
    let _ = write_error(&mut write, wbuf, status, reason, ctx).await;
    linger(read);
}

async fn write_error(
    write: &mut WriteHalf,
    wbuf: &mut BytesMut,
    status: StatusCode,
    reason: &'static str,
    ctx: &ConnCtx,
) -> std::io::Result<()> {
    ctx.routing_stats_local_error(reason, status);
    let body = format!("{}\n", status.canonical_reason().unwrap_or("error"));
    ctx.log_local(status, reason, body.len() as u64);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        crate::proxy::PROXY_ERROR_HEADER,
        http::HeaderValue::from_static(reason),
    );
    head::encode_response(
        wbuf,
        status,
        &headers,
        Framing::Length(body.len() as u64),
        true,
    );
    wbuf.put_slice(body.as_bytes());
    write.write_all(wbuf).await?;
    wbuf.clear();
    write.shutdown().await
}
