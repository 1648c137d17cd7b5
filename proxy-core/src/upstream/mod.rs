//! Upstream connections: TCP connect with a timeout, pooled HTTP/1.1 connections and
//! multiplexed HTTP/2 connections per endpoint.
//!
//! Connections are kept per worker ([`crate::worker`]): each endpoint has an idle
//! HTTP/1.1 pool and HTTP/2 connections (as many as the upstream's stream limit asks
//! for) for every worker, chosen by the calling
//! thread's worker index, so a request runs on the connection its own worker's
//! runtime opened and drives. A connection returns to the pool of the worker that
//! opened it. The endpoint's `max_connections` counts the connections of all workers
//! together; `max_idle` is shared out between the workers' pools. The cluster's
//! `circuit_breakers.max_connections` (the `limit` module) caps the connections of all its
//! endpoints and workers: at the cap, a request waits for an idle connection or a
//! freed slot instead of connecting.

mod connector;
pub(crate) mod h1;
mod h2;
mod h2_answer;
mod h2_conn;
pub(crate) mod h2_frames;
pub(crate) mod limit;
pub(crate) mod pool;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};

pub use connector::{Connector, TransportError, UpstreamTransport};
pub use h1::UpgradedUpstream;
pub(crate) use h2::H2Stream;

use crate::{
    bufs::Slab,
    config::{ClusterConfig, PoolConfig, RuntimeConfig, UpstreamProtocol},
    http1::head::Framing,
    informational::Informational,
    Body, ProxyError,
};

/// How requests reach one endpoint.
#[derive(Debug)]
pub(crate) struct Upstream {
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    stream_idle_timeout: Duration,
    /// The pool settings it was built with, to tell whether a new config keeps them.
    pool: PoolConfig,
    pub(crate) open: Arc<pool::OpenCount>,
    pub(crate) connector: Connector,
    /// One idle pool per worker.
    h1: Box<[Arc<pool::H1Pool>]>,
    h2: h2::H2Client,
    custom: Option<Arc<dyn crate::protocol::ProtocolClient>>,
    /// The cluster-wide connection cap (`circuit_breakers.max_connections`), if any.
    limit: Option<Arc<limit::ConnectionLimit>>,
    /// The cluster's name, for the errors of the cap.
    cluster: Arc<str>,
}

/// The number of workers the server runs for `runtime`: `worker_threads`, or one per
/// available core when it is 0.
pub(crate) fn worker_count(runtime: &RuntimeConfig) -> usize {
    match runtime.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Upstream {
    /// The upstream of the endpoint at `addr`, with connections kept for `workers`
    /// workers (at least one).
    pub(crate) fn new(
        addr: SocketAddr,
        cluster: &ClusterConfig,
        transport: Option<Arc<dyn UpstreamTransport>>,
        protocol: Option<&Arc<dyn crate::protocol::ProtocolUpstream>>,
        workers: usize,
    ) -> Self {
        let pool = &cluster.pool;
        let workers = workers.max(1);
        // The endpoint's idle allowance, shared out between the workers.
        let max_idle_each = pool
            .max_idle
            .div_ceil(u32::try_from(workers).unwrap_or(u32::MAX));
        let connector = Connector::new(addr, cluster.connect_timeout, transport);
        let open: Arc<pool::OpenCount> = Arc::default();
        Self {
            addr,
            protocol: cluster.protocol.clone(),
            // Protocol plug-ins open their own connections: they count in this
            // endpoint's connection and byte stats through the connector.
            custom: protocol.map(|p| p.client(connector.clone().counting(open.clone()))),
            connector,
            connect_timeout: cluster.connect_timeout,
            stream_idle_timeout: cluster.stream_idle_timeout,
            pool: pool.clone(),
            open,
            h1: (0..workers)
                .map(|_| {
                    let h1 = pool::H1Pool::new(max_idle_each, pool.idle_timeout);
                    Arc::new(h1.with_max_requests(pool.max_requests_per_connection))
                })
                .collect(),
            h2: h2::H2Client::new(
                workers,
                pool.max_connections,
                cluster.connect_timeout,
                pool.idle_timeout,
                pool.max_requests_per_connection,
            ),
            limit: None,
            cluster: cluster.name.as_str().into(),
        }
    }

    /// The same upstream, its new HTTP/1.1 and HTTP/2 connections capped by the
    /// cluster-wide `limit` (shared by all the cluster's endpoints).
    pub(crate) fn with_connection_limit(
        mut self,
        limit: Option<Arc<limit::ConnectionLimit>>,
    ) -> Self {
        if let Some(l) = &limit {
            // Fresh pools (nothing pooled yet) that know the cap.
            self.h1 = self
                .h1
                .iter()
                .map(|p| Arc::new(p.capped(l.clone())))
                .collect();
            l.register_pools(&self.h1);
        }
        self.limit = limit;
        self
    }

    /// Whether this upstream's connections are capped by `limit` (the same instance).
    pub(crate) fn same_connection_limit(
        &self,
        limit: Option<&Arc<limit::ConnectionLimit>>,
    ) -> bool {
        match (&self.limit, limit) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether this upstream (with its pooled connections) can be kept across a config
    /// swap to `cluster`.
    pub(crate) fn same_settings(&self, cluster: &ClusterConfig) -> bool {
        self.protocol == cluster.protocol
            && self.connect_timeout == cluster.connect_timeout
            && self.stream_idle_timeout == cluster.stream_idle_timeout
            && self.pool == cluster.pool
    }

    pub(crate) fn protocol(&self) -> &UpstreamProtocol {
        &self.protocol
    }

    /// Idle pooled connections, of all workers.
    pub(crate) fn idle_connections(&self) -> usize {
        self.h1.iter().map(|p| p.idle_len()).sum()
    }

    /// Closes expired idle connections, of all workers.
    pub(crate) fn evict_expired(&self) {
        for pool in self.h1.iter() {
            pool.evict_expired();
        }
    }

    /// The calling worker's idle pool.
    fn h1_pool(&self) -> &Arc<pool::H1Pool> {
        &self.h1[crate::worker::slot(self.h1.len())]
    }

    /// A connection from the calling worker's pool, or a new one. Connecting is the
    /// rare path, so its (large) future is boxed to keep every request's future small.
    async fn checkout_h1(&self, fresh: bool) -> Result<Box<h1::H1Conn>, ProxyError> {
        if !fresh {
            if let Some(conn) = self.h1_pool().take() {
                return Ok(conn.reuse());
            }
        }
        Box::pin(self.connect_h1()).await
    }

    async fn connect_h1(&self) -> Result<Box<h1::H1Conn>, ProxyError> {
        let slot = match &self.limit {
            None => None,
            Some(limit) => match limit.try_slot() {
                Some(slot) => Some(slot),
                None => match self.wait_h1(limit).await? {
                    Waited::Idle(conn) => return Ok(conn.reuse()),
                    Waited::Slot(slot) => Some(slot),
                },
            },
        };
        let guard = self
            .open
            .try_open(self.pool.max_connections, slot)
            .ok_or(ProxyError::Overflow { addr: self.addr })?;
        let stream = self.connector.connect().await?;
        // It returns to the pool of the worker that opened it.
        let pool = self.h1_pool().clone();
        Ok(Box::new(h1::H1Conn::new(stream, pool, guard)))
    }

    /// Waits, at the cluster's connection cap, for an idle connection of the calling
    /// worker's pool or a freed slot, within `max_pending_requests` and the connect
    /// timeout. Idle connections of the cluster's other pools are closed meanwhile,
    /// so that their slots come back.
    async fn wait_h1(&self, limit: &limit::ConnectionLimit) -> Result<Waited, ProxyError> {
        let _pending = self.start_waiting(limit)?;
        let pool = self.h1_pool();
        let _registered = pool.wait_for_idle();
        let wait = async {
            loop {
                let returned = pool.idle_ready();
                let elsewhere = limit.idle_elsewhere();
                tokio::pin!(returned, elsewhere);
                // Enabled before looking, so a return in between is not missed.
                returned.as_mut().enable();
                elsewhere.as_mut().enable();
                if let Some(conn) = pool.take() {
                    return Some(Waited::Idle(conn));
                }
                if let Some(slot) = limit.try_slot() {
                    return Some(Waited::Slot(slot));
                }
                if limit.close_idle_elsewhere(pool) {
                    continue;
                }
                tokio::select! {
                    () = &mut returned => {}
                    () = &mut elsewhere => {}
                    slot = limit.freed_slot() => return slot.map(Waited::Slot),
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, wait).await {
            Ok(Some(waited)) => Ok(waited),
            Ok(None) | Err(_) => Err(self.at_cap()),
        }
    }

    /// Takes a place among the requests waiting under the cluster's connection cap.
    fn start_waiting<'a>(
        &self,
        limit: &'a limit::ConnectionLimit,
    ) -> Result<limit::Pending<'a>, ProxyError> {
        limit
            .start_waiting()
            .map_err(
                |limit::WaitRefused::TooManyPending| ProxyError::ClusterOverflow {
                    cluster: self.cluster.clone(),
                    limit: crate::cluster::BreakerLimit::MaxPendingRequests.name(),
                },
            )
    }

    /// The error of a request that waited the connect timeout for a connection.
    fn at_cap(&self) -> ProxyError {
        ProxyError::ClusterOverflow {
            cluster: self.cluster.clone(),
            limit: crate::cluster::BreakerLimit::MaxConnections.name(),
        }
    }

    /// Sends a request whose head is already prepared for the upstream (hop-by-hop
    /// headers removed, Host set, the URI's path and query as the target). The answer's
    /// head goes to `head_slab` ([`Slab::for_answer_head`] of the client's request).
    ///
    /// An upstream that needs the head as its own (HTTP/2, a protocol's client)
    /// copies it while `retry_may_follow`, else takes it, leaving `parts` empty.
    ///
    /// The interim (1xx) answers that come before the final one go to
    /// `informational`, else to the one in the request's extensions, if any.
    pub(crate) async fn send(
        &self,
        parts: &mut http::request::Parts,
        retry_may_follow: bool,
        body: Body,
        head_slab: Slab,
        informational: Option<&Informational>,
    ) -> Result<Response<Body>, ProxyError> {
        if self.custom.is_some() || self.protocol == UpstreamProtocol::Http2 {
            // Read before the head may be taken (a protocol's client takes none).
            let informational = match self.custom {
                Some(_) => None,
                None => Informational::given_or_in(informational, &parts.extensions).cloned(),
            };
            let head = if retry_may_follow {
                clone_parts(parts)
            } else {
                std::mem::replace(parts, Request::new(()).into_parts().0)
            };
            let resp = match &self.custom {
                Some(client) => client.send(Request::from_parts(head, body)).await,
                None => Box::pin(self.send_h2(head, body, informational)).await,
            };
            return resp.map(|r| owned_if(head_slab, r));
        }
        let parts = &*parts;
        let framing = request_framing(parts, &body);
        let mut replay = body.try_clone();
        let mut body = Some(body);
        let mut fresh = false;
        loop {
            let conn = self.checkout_h1(fresh).await?;
            let reused = conn.reused;
            let this_body = body.take().or_else(|| replay.take()).unwrap_or_default();
            match conn
                .exchange(
                    parts,
                    this_body,
                    framing,
                    self.stream_idle_timeout,
                    head_slab,
                    informational,
                )
                .await
            {
                Ok(resp) => return Ok(resp),
                // A pooled connection the upstream had already closed: the request never
                // reached the application, so send it once more on a fresh connection.
                Err(h1::ExchangeError::NoResponse { .. }) if reused && replay.is_some() => {
                    fresh = true;
                }
                Err(e) => return Err(exchange_error(e)),
            }
        }
    }

    /// Sends on the worker's HTTP/2 connection. A request the upstream turned away
    /// unprocessed (it was going away, or refused the stream) goes again, on a new
    /// connection when the old one is going away, when its body can be sent again:
    /// freely as long as the connections that turned it away answer other requests
    /// (an upstream that closes each connection after so many, as nginx does, or
    /// refuses the streams above its limit before its settings arrive), else at most
    /// [`H2_FRUITLESS_RESENDS`] times; [`H2_RESENDS_AT_MOST`] in all.
    async fn send_h2(
        &self,
        mut parts: http::request::Parts,
        body: Body,
        informational: Option<Informational>,
    ) -> Result<Response<Body>, ProxyError> {
        // The head's values go into the connection's HPACK table.
        crate::bufs::own_header_values(&mut parts.headers);
        let mut attempt = (parts, body);
        let mut resends = 0;
        // The connections that turned the request away before answering anything;
        // those that answered since count no more.
        let mut silent: Vec<(Arc<h2::H2Sender>, Unprocessed)> = Vec::new();
        loop {
            let stream = self.h2_stream().await?;
            let conn = stream.conn();
            let (parts, body) = attempt;
            let again = if resends < H2_RESENDS_AT_MOST {
                body.try_clone().map(|b| (resend_head(&parts), b))
            } else {
                None
            };
            let stall = self.stream_idle_timeout;
            let answer = h2_answer::send_within(
                &mut conn.sender(),
                Request::from_parts(parts, body),
                stall,
                informational.as_ref(),
            )
            .await
            .ok_or(ProxyError::Timeout)?;
            let e = match answer {
                Ok(resp) => {
                    conn.answered();
                    let length = crate::h2_body::content_length(resp.headers());
                    return Ok(resp.map(|b| Body::from_upstream_h2(b, length, stall, stream)));
                }
                Err(e) => e,
            };
            let Some(turned_away) = h2_unprocessed(&e, conn) else {
                return Err(h2_exchange_error(e));
            };
            if turned_away == Unprocessed::GoingAway {
                conn.retire();
                if let h2_answer::H2Failure::Stream(e, id) = &e {
                    // A GOAWAY without error is an upstream's bound on requests per
                    // connection; one with an error says nothing of it. Client
                    // streams are numbered 1, 3, 5...: those below this one, at most,
                    // were processed.
                    if e.reason() == Some(::h2::Reason::NO_ERROR) {
                        self.h2
                            .learn_streams_per_connection(id.saturating_sub(1) / 2);
                    }
                }
            }
            if !conn.has_answered() {
                silent.push((conn.clone(), turned_away));
                // The answers that came on the connection with the refusal are taken
                // by their requests' tasks, woken with this one, before it is looked at.
                tokio::task::yield_now().await;
            }
            silent.retain(|(c, _)| !c.has_answered());
            // A connection going away answers the streams below its GOAWAY's last
            // one after it turned away those above (nginx after `keepalive_requests`):
            // it answered nothing only if it closed without an answer.
            let fruitless = silent
                .iter()
                .filter(|(c, why)| *why == Unprocessed::Refused || c.is_closed())
                .count();
            let again = again.filter(|_| fruitless <= H2_FRUITLESS_RESENDS);
            let Some(again) = again else {
                return Err(ProxyError::Upstream {
                    request_sent: false,
                    source: e.into_error().into(),
                });
            };
            attempt = again;
            resends += 1;
            tracing::debug!(
                endpoint = %self.connector.address(),
                ?turned_away,
                "upstream h2 request sent again"
            );
        }
    }

    /// A stream on one of the worker's HTTP/2 connections to the endpoint, under the
    /// connection cap.
    async fn h2_stream(&self) -> Result<h2::H2Stream, ProxyError> {
        match &self.limit {
            None => self.h2.stream(&self.connector, &self.open, None).await,
            Some(limit) => {
                let cap = h2::Cap {
                    limit,
                    wait: self.connect_timeout,
                    cluster: &self.cluster,
                };
                self.h2.stream(&self.connector, &self.open, Some(cap)).await
            }
        }
    }
}

/// How many connections that answer nothing may turn an HTTP/2 request away before
/// it is given up (an upstream refusing every stream, or going away at once): a
/// handful of tries, not a loop.
const H2_FRUITLESS_RESENDS: usize = 4;

/// How many times an HTTP/2 request is sent again in all. A connection that goes away
/// after answering others turns away the requests in flight above its last stream
/// and those waiting for a stream under its limit; when each connection takes fewer
/// requests than are in flight (nginx's `keepalive_requests` at 50 with 100 in
/// flight, four streams at a time), a request may lose that race tens of times in a
/// row before it finds room. Each free resend needs a new connection that answered
/// something, so this bound is a backstop, not the usual limit.
const H2_RESENDS_AT_MOST: u32 = 256;

/// Why an HTTP/2 upstream did not process a request (RFC 9113 8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unprocessed {
    /// The connection is going away: it opened no stream for the request (a GOAWAY
    /// came, or it closed), or a GOAWAY, with an error or without, named a last
    /// stream below the request's (section 6.8).
    GoingAway,
    /// The upstream reset the stream with REFUSED_STREAM before processing it.
    Refused,
}

/// Whether an HTTP/2 exchange on `conn` failed before the upstream processed the
/// request, so that sending it again cannot repeat its effect.
fn h2_unprocessed(e: &h2_answer::H2Failure, conn: &h2::H2Sender) -> Option<Unprocessed> {
    match e {
        // Nothing of the request was sent; a head `h2` refuses (a user error) would
        // be refused again.
        h2_answer::H2Failure::NotOpened(e) => {
            (e.is_go_away() || e.is_io()).then_some(Unprocessed::GoingAway)
        }
        h2_answer::H2Failure::Stream(e, id) => {
            if !e.is_remote() {
                None
            } else if e.is_go_away() {
                // After a GOAWAY with an error `h2` fails every open stream with it,
                // those the upstream processed too: the last stream the frame named
                // tells them apart.
                conn.turned_away(*id).then_some(Unprocessed::GoingAway)
            } else if e.is_reset() && e.reason() == Some(::h2::Reason::REFUSED_STREAM) {
                Some(Unprocessed::Refused)
            } else {
                None
            }
        }
    }
}

/// The answer, with its head's values given memory of their own when it goes to
/// `Slab::Own` (they may be slices of a client library's read buffer).
fn owned_if(head_slab: Slab, mut resp: Response<Body>) -> Response<Body> {
    if head_slab == Slab::Own {
        crate::bufs::own_header_values(resp.headers_mut());
    }
    resp
}

/// What a request waiting at the connection cap got.
enum Waited {
    /// A connection its worker's pool got back.
    Idle(Box<h1::H1Conn>),
    /// A slot to open a connection with.
    Slot(limit::ConnectionSlot),
}

fn exchange_error(e: h1::ExchangeError) -> ProxyError {
    // The client's body failed (cut short, too slow): the client's fault, not the
    // upstream's.
    if let h1::ExchangeError::RequestBody(cause) = &e {
        return crate::proxy::client_body_error(&**cause);
    }
    match e {
        h1::ExchangeError::BadResponse(_) => ProxyError::UpstreamProtocol { source: e.into() },
        h1::ExchangeError::HeadTimeout => ProxyError::Timeout,
        e => ProxyError::Upstream {
            request_sent: !matches!(e, h1::ExchangeError::NoResponse { .. }),
            source: e.into(),
        },
    }
}

/// An HTTP/2 exchange's failure: a protocol error when this side's `h2` found the
/// upstream's frames invalid, a reset otherwise.
fn h2_exchange_error(e: h2_answer::H2Failure) -> ProxyError {
    let request_sent = matches!(e, h2_answer::H2Failure::Stream(..));
    let e = e.into_error();
    let broken = e.is_library()
        && matches!(
            e.reason(),
            Some(
                ::h2::Reason::PROTOCOL_ERROR
                    | ::h2::Reason::COMPRESSION_ERROR
                    | ::h2::Reason::FRAME_SIZE_ERROR
            )
        );
    if broken {
        return ProxyError::UpstreamProtocol { source: e.into() };
    }
    ProxyError::Upstream {
        request_sent,
        source: e.into(),
    }
}

fn request_framing(parts: &http::request::Parts, body: &Body) -> Framing {
    use http_body::Body as _;
    if body.is_end_stream() {
        return if parts.method == http::Method::CONNECT {
            Framing::Close
        } else {
            Framing::Empty
        };
    }
    match body.size_hint().exact() {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// The head of a request to send again on an HTTP/2 connection: what is sent of it.
/// Of the extensions only an extended CONNECT's protocol is read.
fn resend_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut p = copy_head(parts);
    if let Some(protocol) = parts.extensions.get::<hyper::ext::Protocol>() {
        p.extensions.insert(protocol.clone());
    }
    if let Some(protocol) = parts.extensions.get::<::h2::ext::Protocol>() {
        p.extensions.insert(protocol.clone());
    }
    p
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut p = copy_head(parts);
    p.extensions = parts.extensions.clone();
    p
}

/// The method, target, version and fields of a request head, without extensions.
fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut p = Request::new(()).into_parts().0;
    p.method = parts.method.clone();
    p.uri = parts.uri.clone();
    p.version = parts.version;
    p.headers = parts.headers.clone();
    p
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for pool in self.h1.iter() {
            pool.close();
        }
    }
}

#[cfg(test)]
mod tests;
