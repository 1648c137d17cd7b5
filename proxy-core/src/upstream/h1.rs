//! HTTP/1.1 upstream connections: send one request, parse the response, hand the
//! connection back to the endpoint's pool when the response body ends.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::BytesMut;
use http::{Response, Version};

use crate::net::Stream;

use super::pool::H1Pool;
use crate::{
    http1::{
        decode::Decoder,
        head::{self, Framing},
        send::{flush, send_body, SendBodyError},
        RecvBody,
    },
    informational::Informational,
    Body, BoxError,
};

const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Interim (1xx) answers an upstream may send before its final one; more make the
/// answer a bad one (an upstream could otherwise hold the request with them forever).
const MAX_INTERIM_ANSWERS: u32 = 32;

/// A checked-out upstream HTTP/1.1 connection.
#[derive(Debug)]
pub(crate) struct H1Conn {
    pub(crate) stream: Stream,
    pub(crate) buf: BytesMut,
    wbuf: BytesMut,
    keep_alive: bool,
    /// Taken from the idle pool rather than freshly connected.
    pub(crate) reused: bool,
    /// The pool sweep this connection went idle in.
    pub(crate) idle_epoch: u32,
    /// Requests sent on the connection.
    requests: u32,
    pool: Arc<H1Pool>,
    _open: super::pool::OpenGuard,
}

/// An upstream connection switched to another protocol (101), for tunnelling.
#[derive(Debug, Clone)]
pub struct UpgradedUpstream(pub(crate) Arc<Mutex<Option<(Stream, BytesMut)>>>);

impl UpgradedUpstream {
    pub(crate) fn take(&self) -> Option<(Stream, BytesMut)> {
        self.0.lock().ok()?.take()
    }
}

/// Why an exchange on an upstream connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The connection failed before any byte of a response arrived.
    #[error("upstream connection closed before responding")]
    NoResponse {
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("reading the request body failed")]
    RequestBody(#[source] BoxError),
    /// The connection failed in the middle of the response head.
    #[error("upstream connection closed in the middle of the response head")]
    HeadCutShort {
        #[source]
        source: Option<std::io::Error>,
    },
    /// The response head breaks HTTP/1.1.
    #[error("invalid response from upstream")]
    BadResponse(#[source] BoxError),
    /// No byte of the answer's head came within the stream idle timeout after the
    /// request went out.
    #[error("no answer from upstream within the stream idle timeout")]
    HeadTimeout,
}

impl H1Conn {
    pub(crate) fn new(stream: Stream, pool: Arc<H1Pool>, open: super::pool::OpenGuard) -> Self {
        Self {
            stream,
            // Lent only while bytes move (`crate::bufs`): a pooled connection holds none.
            buf: BytesMut::new(),
            wbuf: BytesMut::new(),
            keep_alive: true,
            reused: false,
            idle_epoch: 0,
            requests: 0,
            pool,
            _open: open,
        }
    }

    /// Counts `n` bytes received on this connection in its endpoint's stats.
    pub(crate) fn count_rx(&self, n: usize) {
        self._open.count_rx(n);
    }

    /// Marks a connection taken from the idle pool.
    pub(crate) fn reuse(mut self: Box<Self>) -> Box<Self> {
        self.reused = true;
        self.keep_alive = true;
        self
    }

    /// Gives the connection back to its pool, or closes it when it cannot be reused.
    // Connections live boxed (in the pool, in a response body) and are released boxed.
    #[allow(clippy::boxed_local)]
    pub(crate) fn release(self: Box<Self>, complete: bool) {
        if complete && self.keep_alive && self.buf.is_empty() {
            let mut conn = self;
            crate::bufs::give_back(&mut conn.buf);
            crate::bufs::give_back(&mut conn.wbuf);
            let pool = conn.pool.clone();
            pool.put(conn);
        }
    }

    /// Sends one request and reads the response head, copied to `head_slab`. The
    /// response body streams from this connection, which returns to the pool when the
    /// body is done.
    pub(crate) async fn exchange(
        mut self: Box<Self>,
        parts: &http::request::Parts,
        mut body: Body,
        framing: Framing,
        stall: Duration,
        head_slab: crate::bufs::Slab,
        informational: Option<&Informational>,
    ) -> Result<Response<Body>, ExchangeError> {
        self.requests = self.requests.saturating_add(1);
        if self
            .pool
            .max_requests
            .is_some_and(|max| self.requests >= max.get())
        {
            // Its last request: closed after the answer.
            self.keep_alive = false;
        }
        crate::bufs::ready_for_write(&mut self.wbuf);
        // The target is the URI's path and query (the head is prepared for this).
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        head::encode_request(
            &mut self.wbuf,
            &parts.method,
            target,
            &parts.headers,
            framing,
        );
        let conn = &mut *self;
        let head_len = conn.wbuf.len();
        let sent = match body.take_buffered() {
            // The common case, a request without a body or with one already in memory:
            // head and body in one write.
            Some(data) => {
                conn.wbuf.extend_from_slice(&data);
                let n = conn.wbuf.len();
                flush(&mut conn.stream, &mut conn.wbuf, stall)
                    .await
                    .map(|()| conn._open.count_tx(n))
            }
            // Streaming bodies take the general path, boxed so that its state does not
            // weigh on every request's future.
            None => Box::pin(send_body(
                &mut conn.stream,
                &mut conn.wbuf,
                &mut body,
                framing,
                stall,
            ))
            .await
            .map(|body_bytes| {
                let n = head_len + usize::try_from(body_bytes).unwrap_or(usize::MAX);
                conn._open.count_tx(n);
            }),
        };
        drop(body);
        crate::bufs::give_back(&mut self.wbuf);
        match sent {
            Ok(_) => {}
            Err(SendBodyError::Source(e) | SendBodyError::SourceBeforeAnyWrite(e)) => {
                return Err(ExchangeError::RequestBody(e))
            }
            Err(SendBodyError::LengthMismatch) => {
                return Err(ExchangeError::RequestBody(
                    "request body length mismatch".into(),
                ))
            }
            // The upstream may have answered early and closed; try to read that answer.
            Err(SendBodyError::Sink(_)) => self.keep_alive = false,
        }
        let mut interims = 0;
        loop {
            // A pooled connection's buffer is empty when the request goes out: read
            // before parsing nothing.
            let parsed = if self.buf.is_empty() {
                None
            } else {
                head::parse_response(&mut self.buf, &parts.method, MAX_RESPONSE_HEAD, head_slab)
                    .map_err(|e| ExchangeError::BadResponse(e.into()))?
            };
            let Some(resp) = parsed else {
                // After an interim answer the request is known to have been read.
                let got_bytes = interims > 0 || !self.buf.is_empty();
                // Each wait for bytes of the head lasts at most `stall`. The timer lives
                // in this request's future (no allocation of its own) and is
                // registered only if the bytes are not there at once.
                let read = self.stream.read_lent(&mut self.buf);
                let Ok(read) = tokio::time::timeout(stall, read).await else {
                    return Err(ExchangeError::HeadTimeout);
                };
                match read {
                    Ok(0) if !got_bytes => return Err(ExchangeError::NoResponse { source: None }),
                    Err(e) if !got_bytes => {
                        return Err(ExchangeError::NoResponse { source: Some(e) })
                    }
                    Ok(0) => return Err(ExchangeError::HeadCutShort { source: None }),
                    Err(e) => return Err(ExchangeError::HeadCutShort { source: Some(e) }),
                    Ok(n) => {
                        self._open.count_rx(n);
                        continue;
                    }
                }
            };
            let status = resp.parts.status;
            if status == http::StatusCode::SWITCHING_PROTOCOLS {
                // A switch the request did not ask for (RFC 9110 15.2.2): what follows
                // is not HTTP, and no final answer will come.
                if !parts.headers.contains_key(http::header::UPGRADE) {
                    return Err(ExchangeError::BadResponse(
                        "101 Switching Protocols to a request that asked for no upgrade".into(),
                    ));
                }
                let mut response = Response::from_parts(resp.parts, Body::empty());
                let this = *self;
                let upgraded =
                    UpgradedUpstream(Arc::new(Mutex::new(Some((this.stream, this.buf)))));
                response.extensions_mut().insert(upgraded);
                return Ok(response);
            }
            if status.is_informational() {
                // 103 Early Hints and the like go on to the client; the final
                // answer is still to come.
                interims += 1;
                if interims > MAX_INTERIM_ANSWERS {
                    return Err(ExchangeError::BadResponse(
                        format!("more than {MAX_INTERIM_ANSWERS} interim answers").into(),
                    ));
                }
                if let Some(to_client) =
                    Informational::given_or_in(informational, &parts.extensions)
                {
                    let mut interim = Response::from_parts(resp.parts, ());
                    // Not a slice of the connection's buffer while it waits.
                    crate::bufs::own_header_values(interim.headers_mut());
                    to_client.forward_upstreams(interim);
                }
                continue;
            }
            self.keep_alive &= resp.keep_alive;
            let mut response = Response::from_parts(resp.parts, Body::empty());
            *response.version_mut() = Version::HTTP_11;
            let body = match resp.framing {
                Framing::Empty => {
                    self.release(true);
                    Body::empty()
                }
                Framing::Length(n) if n <= self.buf.len() as u64 => {
                    let data = crate::bufs::take_front(
                        &mut self.buf,
                        n as usize,
                        crate::bufs::Slab::Responses,
                    );
                    self.release(true);
                    Body::from(data)
                }
                framing => Body::from_h1(RecvBody::upstream(self, Decoder::new(framing), stall)),
            };
            *response.body_mut() = body;
            return Ok(response);
        }
    }
}
