//! Per-connection context and protocol dispatch.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use http::StatusCode;
use tokio::sync::watch;

use super::listen::ListenerRuntime;
use crate::{
    access_log::{AccessLog, Record},
    config::{ConnectionLimits, ListenerProtocol},
    connection::{Connection, Retire},
    metrics::ConnStats,
    net::Stream,
    protocol::{Drain, ProtocolServer, ServeContext, Sniff},
    proxy::ConnInfo,
    BoxHttp, HttpRequest, HttpResponse,
};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection task needs.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub(crate) listener: Arc<ListenerRuntime>,
    pub(crate) peer: Option<SocketAddr>,
    /// The registered protocols this listener serves.
    pub(crate) protocols: Arc<[Arc<dyn ProtocolServer>]>,
    /// Whether a connection layer secured the stream (TLS).
    pub(crate) secure: bool,
    /// Facts from connection layers, for every request's extensions, and the
    /// layer's hot upgrade hook (boxed together: one pointer in every connection's
    /// future, none for a connection without layers).
    pub(crate) conn_extensions: Option<Box<ConnLayers>>,
    pub(crate) limits: Arc<ConnectionLimits>,
    pub(crate) stats: Arc<ConnStats>,
    pub(crate) drain: watch::Receiver<bool>,
    /// The server's hand-off of idle connections in a hot upgrade (none for an
    /// embedded listener): read only once the drain signal fired, so it costs a
    /// connection nothing before.
    pub(crate) handoff: Option<Arc<super::handoff::HandoffSlot>>,
    pub(crate) access_log: Option<Arc<AccessLog>>,
}

/// What connection layers left in a connection's extensions.
#[derive(Clone)]
pub(crate) struct ConnLayers {
    /// Facts for every request's extensions (TLS info, say).
    pub(crate) extensions: http::Extensions,
    /// The hand-over hook of the layer that wrapped the stream (TLS), kept out of
    /// `extensions` so that requests do not carry it.
    pub(crate) hand_over: Option<super::handoff_layer::LayerHandOver>,
}

impl ConnCtx {
    /// The hand-off of idle connections under way, if any.
    pub(crate) fn current_handoff(&self) -> Option<Arc<super::handoff::Handoff>> {
        self.handoff.as_ref()?.load_full()
    }

    /// The access log record of `req`, with the time it arrived, when there is a log.
    /// Boxed: the record is large, and a connection's future would otherwise carry
    /// its room even when there is no log.
    pub(crate) fn log_request(&self, req: &HttpRequest) -> Option<Box<LogStart>> {
        let log = self.access_log.as_ref()?;
        let mut record = log.request(req);
        record.listener = Some(self.listener.name.clone());
        record.peer = self.peer;
        Some(Box::new(LogStart {
            log: log.clone(),
            record,
            started: Instant::now(),
        }))
    }

    /// Logs a request the connection loop answered itself (malformed, timed out):
    /// its status, reason and body bytes, no method or URI.
    pub(crate) fn log_local(&self, status: StatusCode, reason: &'static str, bytes_sent: u64) {
        if let Some(log) = &self.access_log {
            let mut record = Record::new();
            record.listener = Some(self.listener.name.clone());
            record.peer = self.peer;
            record.status = status.as_u16();
            record.proxy_error = Some(http::HeaderValue::from_static(reason));
            record.bytes_sent = bytes_sent;
            log.log(&record);
        }
    }

    /// Counts a request the connection loop answered itself (malformed, timed out).
    pub(crate) fn routing_stats_local_error(&self, reason: &'static str, status: StatusCode) {
        let routing = self.listener.routing.load();
        routing.stats.start();
        routing.stats.local_errors.add(reason);
        routing.stats.finish(status.as_u16(), Duration::ZERO);
    }
}

/// A request's access log record from its arrival to the end of its response.
pub(crate) struct LogStart {
    log: Arc<AccessLog>,
    record: Record,
    started: Instant,
}

impl LogStart {
    /// Logs the line: the response head's facts, `bytes_sent` body bytes, the time
    /// since the request arrived.
    pub(crate) fn finish(mut self, resp: &HttpResponse, bytes_sent: u64) {
        self.record.response(resp, self.log.formatter());
        self.record.bytes_sent = bytes_sent;
        self.record.duration = self.started.elapsed();
        self.log.log(&self.record);
    }

    /// Takes the response head's facts now, for a line logged later ([`LogStart::end`]).
    pub(crate) fn response(&mut self, resp: &HttpResponse) {
        self.record.response(resp, self.log.formatter());
    }

    /// Logs the line with facts taken earlier and `bytes_sent` body bytes.
    pub(crate) fn end(mut self, bytes_sent: u64) {
        self.record.bytes_sent = bytes_sent;
        self.record.duration = self.started.elapsed();
        self.log.log(&self.record);
    }
}

/// Runs one accepted connection to its end; `prefix` holds bytes already read from it
/// (by the process that handed it over). Boxed, so that every connection's future
/// does not carry room for it.
pub(crate) async fn serve(stream: Stream, prefix: Option<Box<Prefix>>, ctx: ConnCtx) {
    let (prefix, adopted) =
        prefix.map_or_else(|| (BytesMut::new(), None), |p| (p.bytes, p.protocol));
    let (detected, stream, buf) = match (adopted, ctx.listener.protocol()) {
        // Handed in with its protocol: served by it, as it was.
        (Some(i), _) => (Detected::Protocol(i), stream, prefix),
        (None, ListenerProtocol::Http1) => (Detected::Http1, stream, prefix),
        (None, ListenerProtocol::Http2) => (Detected::Http2, stream, prefix),
        (None, ListenerProtocol::Named(_)) => (Detected::Protocol(0), stream, prefix),
        // The peer closed, failed or sent nothing telling in time, or the connection
        // was handed over: nothing more to do here.
        (None, ListenerProtocol::Auto) => match sniff(stream, prefix, &ctx).await {
            Some(found) => found,
            None => return,
        },
    };
    // HTTP/2 and protocol plug-ins are boxed: the task of every connection is as
    // large as its largest path, and HTTP/1.1's is the small one.
    match detected {
        Detected::Http1 => super::h1::serve(stream, buf, ctx).await,
        Detected::Http2 => Box::pin(super::h2::serve(stream, buf.freeze(), ctx)).await,
        Detected::Protocol(i) => {
            if let Some(p) = ctx.protocols.get(i).cloned() {
                Box::pin(serve_protocol(&*p, stream, buf.freeze(), ctx)).await
            }
        }
    }
}

/// Reads the first bytes of a connection (after those in `buf`) until they tell its
/// protocol, within the header timeout; hands back the stream with the bytes read.
/// During a hot upgrade, a plain socket still undecided at its hand-off moment goes
/// to the new process with the bytes read so far (`None` then).
async fn sniff(
    mut stream: Stream,
    mut buf: BytesMut,
    ctx: &ConnCtx,
) -> Option<(Detected, Stream, BytesMut)> {
    let cap = ctx.limits.max_header_bytes.as_usize();
    let can_hand_off = (!ctx.secure && !matches!(stream, Stream::Boxed(_)))
        || super::handoff::layer_hand_over(ctx).is_some();
    let mut drain = ctx.drain.clone();
    let handoff = async move {
        let _ = drain.wait_for(|d| *d).await;
        let Some(h) = ctx.current_handoff() else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(h.slot()).await;
        h
    };
    tokio::pin!(handoff);
    let found = tokio::time::timeout(ctx.limits.header_read_timeout, async {
        loop {
            if let Some(choice) = detect(&buf, &ctx.protocols, cap) {
                return Ok(choice);
            }
            tokio::select! {
                biased;
                r = stream.read_lent(&mut buf) => match r {
                    Ok(0) | Err(_) => return Err(None),
                    Ok(n) => ctx.stats.count_rx(n),
                },
                h = handoff.as_mut(), if can_hand_off => return Err(Some(h)),
            }
        }
    })
    .await;
    match found {
        Ok(Ok(detected)) => Some((detected, stream, buf)),
        Ok(Err(Some(handoff))) => {
            let layer = super::handoff::layer_hand_over(ctx);
            if let Err(Some(stream)) = handoff.send(&ctx.listener.name, stream, &buf, None, layer) {
                let (read, mut write) = stream.into_split();
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut write).await;
                super::h1::linger(Some(read));
            }
            None
        }
        Ok(Err(None)) | Err(_) => None,
    }
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Http1,
    Http2,
    Protocol(usize),
}

/// Tells the protocol from the first bytes, or `None` when more are needed. HTTP/1.1
/// is the fallback: what nothing else claims (and more than `cap` undecided bytes).
fn detect(buf: &[u8], protocols: &[Arc<dyn ProtocolServer>], cap: usize) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    let n = buf.len().min(H2_PREFACE.len());
    let h2_possible = buf[..n] == H2_PREFACE[..n];
    if h2_possible && n == H2_PREFACE.len() {
        return Some(Detected::Http2);
    }
    let mut undecided = h2_possible;
    for (i, p) in protocols.iter().enumerate() {
        match p.sniff(buf) {
            Sniff::Match => return Some(Detected::Protocol(i)),
            Sniff::NeedMore => undecided = true,
            Sniff::NoMatch => {}
        }
    }
    if !undecided || buf.len() >= cap {
        return Some(Detected::Http1);
    }
    None
}

/// Hands the connection to a registered protocol, with a request service that puts
/// the connection's facts in every request's extensions.
async fn serve_protocol(
    p: &dyn ProtocolServer,
    stream: Stream,
    prefix: bytes::Bytes,
    ctx: ConnCtx,
) {
    let info = ConnInfo::new(ctx.peer, ctx.secure);
    let extensions = ctx
        .conn_extensions
        .as_ref()
        .map(|c| c.extensions.clone())
        .unwrap_or_default();
    let (stream, handoff) = super::handoff_protocol::protocol_stream(&ctx, stream, p.name());
    let conn = Connection {
        stream,
        peer: ctx.peer,
        listener: ctx.listener.name.clone(),
        secure: ctx.secure,
        extensions: extensions.clone(),
    };
    let has_extensions = !extensions.is_empty();
    let service = BoxHttp::new(tower::ServiceExt::map_request(
        super::listen::CurrentStack(ctx.listener.clone()),
        move |mut req: crate::HttpRequest| {
            if has_extensions {
                req.extensions_mut().extend(extensions.clone());
            }
            req.extensions_mut().insert(info.clone());
            req
        },
    ));
    let serve_ctx = ServeContext {
        limits: ctx.limits.clone(),
        drain: Drain(ctx.drain.clone()),
        handoff,
    };
    p.serve(conn, prefix, service, serve_ctx).await;
}

/// A drain signal that also fires when a connection layer retires the connection.
/// The forwarding task ends with the connection (when every receiver is gone).
fn merge_retire(drain: &watch::Receiver<bool>, retire: &Retire) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*drain.borrow() || retire.is_retired());
    let mut server = drain.clone();
    let mut layer = retire.0.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = server.wait_for(|d| *d) => {}
            _ = layer.wait_for(|d| *d) => {}
            () = tx.closed() => return,
        }
        let _ = tx.send(true);
    });
    rx
}

/// Bytes already read from a connection handed in, and the protocol plug-in that
/// served it (its index in the listener's protocols), carried to [`ServeHttp`] in
/// the connection's extensions past its layers.
#[derive(Clone)]
pub(crate) struct Prefix {
    pub(crate) bytes: BytesMut,
    pub(crate) protocol: Option<usize>,
}

/// The terminal of a connection stack: serves HTTP on the connection.
#[derive(Clone)]
pub(crate) struct ServeHttp(pub(crate) ConnCtx);

impl tower::Service<Connection> for ServeHttp {
    type Response = ();
    type Error = crate::BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), crate::BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut conn: Connection) -> Self::Future {
        let prefix = conn.extensions.remove::<Prefix>().map(Box::new);
        let mut ctx = self.0.clone();
        ctx.peer = conn.peer;
        ctx.secure = conn.secure;
        if let Some(retire) = conn.extensions.get::<Retire>() {
            ctx.drain = merge_retire(&ctx.drain, retire);
        }
        let hand_over = conn
            .extensions
            .remove::<super::handoff_layer::LayerHandOver>();
        ctx.conn_extensions = (!conn.extensions.is_empty() || hand_over.is_some()).then(|| {
            Box::new(ConnLayers {
                extensions: conn.extensions,
                hand_over,
            })
        });
        Box::pin(async move {
            serve(conn.stream, prefix, ctx).await;
            Ok(())
        })
    }
}

/// Counts an open downstream connection until dropped.
pub(crate) struct OpenConn(Arc<ConnStats>);

impl OpenConn {
    pub(crate) fn new(stats: Arc<ConnStats>) -> Self {
        stats.open();
        Self(stats)
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod size_probe {
    /// The size of what an async fn returns, without calling it.
    fn returned_size<A, B, C, R>(_: fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn a_connection_between_requests_stays_small() {
        // Every open connection's task is this large, idle or not (the request's own
        // future is boxed while in flight): a regression guard for memory per
        // connection.
        let size = returned_size(super::serve);
        eprintln!("connection future: {size} bytes");
        assert!(size <= 3072, "the connection future grew to {size} bytes");
    }
}
