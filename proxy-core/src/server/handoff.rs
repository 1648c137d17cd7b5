//! Hot upgrade, live connections: a server handing its idle HTTP/1.1 connections out
//! at a request boundary (with the bytes read and not parsed yet), and its protocol
//! plug-ins' connections once they answered every call in flight
//! (`handoff_protocol.rs`); and a server adopting connections handed in.
//!
//! Plain TCP and Unix sockets go; a connection a layer wrapped (TLS) goes only when
//! the layer put a [`LayerHandOver`] in its extensions and that hook can take the
//! stream apart (an idle TLS 1.3 session: its keys travel as the [`LayerState`]);
//! otherwise it drains, and so does HTTP/2 (its HPACK tables and stream ids live in
//! this process) and every protocol plug-in without a name. An HTTP/1.1 connection
//! goes when its loop waits for a request head, never while a request is in flight;
//! once handed out, this process neither reads nor writes its socket again.

use std::{
    os::fd::OwnedFd,
    sync::{mpsc, Arc},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use bytes::BytesMut;
use tokio::{io::AsyncWriteExt, time::Instant};

use super::{
    conn::ConnCtx,
    handoff_layer::{LayerHandOver, LayerState},
    lock, Server, ServerError,
};
use crate::net::{ReadHalf, Stream, WriteHalf};

/// A connection handed out: the listener that accepted it, its socket (non-blocking,
/// no longer polled here) and the bytes read from it but not parsed yet.
pub(crate) type HandedOff = (String, OwnedFd, Vec<u8>);

/// A connection handed out during a hot upgrade ([`Server::hand_off_all_connections`]),
/// or to adopt ([`Server::adopt_handed_off`]).
#[derive(Debug)]
pub struct HandedOffConnection {
    /// The name of the listener that accepted it.
    pub listener: String,
    /// Its socket: non-blocking, no longer polled by the process handing it out.
    pub socket: OwnedFd,
    /// Bytes read from it and not parsed yet (part of a request head, part of a
    /// frame, or whole frames not read yet).
    pub unread: Vec<u8>,
    /// The protocol plug-in serving it ([`crate::protocol::ProtocolServer::name`]);
    /// `None` for a connection the listener's usual path serves (HTTP/1.1, or not
    /// sniffed yet).
    pub protocol: Option<String>,
    /// The state of the connection layer that wrapped the socket (a TLS session,
    /// [`LayerHandOver`]), for the same layer of the adopting listener; `None` for a
    /// plain socket. `unread` is then bytes the layer had produced (plaintext).
    pub layer_state: Option<LayerState>,
}

/// The hand-off of connections under way, shared by every listener of a server:
/// empty until [`Server::hand_off_connections`], emptied when the drain ends.
pub(crate) type HandoffSlot = ArcSwapOption<Handoff>;

/// Where handed-out connections go: the idle HTTP/1.1 ones only, or protocol
/// plug-ins' connections too.
enum Sink {
    Idle(mpsc::Sender<HandedOff>),
    All(mpsc::Sender<HandedOffConnection>),
}

/// Where idle connections go during a hand-off, and when.
pub(crate) struct Handoff {
    sink: Sink,
    start: Instant,
    window: Duration,
    max_unread: usize,
}

impl Handoff {
    /// When a connection found idle now may go: a moment drawn evenly over the
    /// window, so that the new process gets the connections spread over it rather
    /// than all at once. Until then the connection is served as usual.
    pub(crate) fn slot(&self) -> Instant {
        self.start + self.window.mul_f64(fastrand::f64())
    }

    /// The most unread bytes a connection may carry; one with more finishes its
    /// request here and is closed after it, as in a drain.
    pub(crate) fn max_unread(&self) -> usize {
        self.max_unread
    }

    /// Whether protocol plug-ins' connections go too (else they drain).
    pub(crate) fn takes_protocols(&self) -> bool {
        matches!(self.sink, Sink::All(_))
    }

    /// Hands `stream` out with `unread` (served by `protocol`, `None` for the
    /// listener's usual path); a layer's stream goes only with the layer's `layer`
    /// hook, and only to a receiver of every kind of connection.
    /// `Err(Some(stream))` gives it back (a layer's stream that cannot go, too many
    /// unread bytes, a protocol connection the receiver does not take, or no one
    /// receives any more), for the caller to close as in a drain or serve on;
    /// `Err(None)` when it was lost on the way (closed).
    pub(crate) fn send(
        &self,
        listener: &str,
        stream: Stream,
        unread: &[u8],
        protocol: Option<&str>,
        layer: Option<&LayerHandOver>,
    ) -> Result<(), Option<Stream>> {
        if unread.len() > self.max_unread || (protocol.is_some() && !self.takes_protocols()) {
            return Err(Some(stream));
        }
        let (stream, layer_state) = match (stream, layer) {
            (Stream::Boxed(io), Some(hook)) if self.takes_protocols() => match hook.call(io) {
                Ok((inner, state)) => (inner, Some(state)),
                Err(back) => return Err(back.map(Stream::Boxed)),
            },
            (stream, _) => (stream, None),
        };
        let layered = layer_state.is_some();
        let unix = matches!(stream, Stream::Unix(_));
        let fd = match stream.into_socket() {
            Ok(Ok(fd)) => fd,
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot take a connection out of the runtime");
                return Err(None);
            }
            Err(stream) => return Err(Some(stream)),
        };
        let sent = match &self.sink {
            // Only plain sockets reach here (a layer's stream goes to `All` only).
            Sink::Idle(sink) => sink
                .send((listener.to_owned(), fd, unread.to_vec()))
                .map_err(|mpsc::SendError((_, fd, _))| fd),
            Sink::All(sink) => sink
                .send(HandedOffConnection {
                    listener: listener.to_owned(),
                    socket: fd,
                    unread: unread.to_vec(),
                    protocol: protocol.map(str::to_owned),
                    layer_state,
                })
                .map_err(|mpsc::SendError(c)| c.socket),
        };
        // The receiver is gone (the new process failed): serve it on here, unless
        // its layer's state was taken out (then the socket alone means nothing).
        sent.map_err(|fd| {
            if layered {
                None
            } else {
                Stream::from_socket(fd, unix).ok()
            }
        })
    }
}

impl Server {
    /// Like [`Server::hand_off`] (stop accepting, drain), and hands idle HTTP/1.1
    /// connections over instead of closing them: each plain TCP or Unix connection
    /// waiting for a request head (its first or a next one, even with part of a head
    /// read) goes to `sink` as (listener name, socket, bytes read and not parsed),
    /// at a moment drawn evenly over `window` (at most half the drain timeout); a
    /// busy connection finishes its request first and goes at its next request
    /// boundary. Connections a layer wrapped (TLS), HTTP/2, protocol plug-ins and
    /// connections with more than `max_unread_bytes` unread drain as usual. `sink` is dropped when
    /// the drain ends: its receiver then has every connection handed out. A
    /// connection `sink` refuses (its receiver dropped) is served on and drained.
    pub fn hand_off_connections(
        &self,
        window: Duration,
        max_unread_bytes: usize,
        sink: mpsc::Sender<(String, OwnedFd, Vec<u8>)>,
    ) {
        self.start_hand_off(window, max_unread_bytes, Sink::Idle(sink));
    }

    /// Like [`Server::hand_off_connections`], and hands the connections of named
    /// protocol plug-ins ([`crate::protocol::ProtocolServer::name`], e.g. Bolt and
    /// Dubbo) over too: at its moment within `window`, such a connection stops
    /// reading, answers every call in flight and writes the answers, then goes to
    /// `sink` with the bytes it read and did not parse (a partial frame, or frames
    /// it had not started) and its protocol's name. An idle HTTP/1.1 connection a
    /// layer wrapped goes too when the layer's [`LayerHandOver`] gives its socket
    /// and state ([`HandedOffConnection::layer_state`]). One with more than
    /// `max_unread_bytes` unread drains as usual.
    pub fn hand_off_all_connections(
        &self,
        window: Duration,
        max_unread_bytes: usize,
        sink: mpsc::Sender<HandedOffConnection>,
    ) {
        self.start_hand_off(window, max_unread_bytes, Sink::All(sink));
    }

    fn start_hand_off(&self, window: Duration, max_unread: usize, sink: Sink) {
        let window = window.min(self.snapshot().config.runtime.drain_timeout / 2);
        self.inner.handoff.store(Some(Arc::new(Handoff {
            sink,
            start: Instant::now(),
            window,
            max_unread,
        })));
        self.hand_off();
    }

    /// Serves a connection accepted by another process and handed in (by
    /// [`Server::hand_off_connections`] there) on the running listener `listener`,
    /// exactly as if this process had accepted it and read `unread` from it first:
    /// the listener's connection filters, protocol detection, limits and stats (it
    /// counts as an accepted connection; `max_connections` does not refuse it, since
    /// it was accepted under the limit already). Callable from any thread.
    ///
    /// # Errors
    /// [`ServerError::Io`] when no running listener has that name, `socket` is not
    /// a connected stream socket, or `unread` is over the listener's
    /// `max_header_bytes`; the socket is closed.
    pub fn adopt_connection(
        &self,
        listener: &str,
        socket: OwnedFd,
        unread: &[u8],
    ) -> Result<(), ServerError> {
        self.adopt(listener, None, socket, unread, None)
    }

    /// [`Server::adopt_connection`] for a connection handed out by
    /// [`Server::hand_off_all_connections`]: one with a protocol is served by the
    /// listener's protocol plug-in of that name, as if it had been sniffed (or named
    /// by the listener), with the unread bytes first.
    ///
    /// # Errors
    /// As [`Server::adopt_connection`], and when the listener serves no protocol of
    /// that name; the socket is closed.
    pub fn adopt_handed_off(&self, conn: HandedOffConnection) -> Result<(), ServerError> {
        let HandedOffConnection {
            listener,
            socket,
            unread,
            protocol,
            layer_state,
        } = conn;
        self.adopt(&listener, protocol.as_deref(), socket, &unread, layer_state)
    }

    fn adopt(
        &self,
        listener: &str,
        protocol: Option<&str>,
        socket: OwnedFd,
        unread: &[u8],
        layer_state: Option<LayerState>,
    ) -> Result<(), ServerError> {
        let refuse = |why: String| ServerError::Io {
            what: format!("adopting a connection of listener {listener}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
        };
        let rt = lock(&self.inner.listeners)
            .get(listener)
            .cloned()
            .ok_or_else(|| refuse("no running listener has that name".into()))?;
        if layer_state.is_some() && rt.settings.load().conn_layers.is_empty() {
            return Err(refuse(
                "a layer's connection, and the listener has no connection layers".into(),
            ));
        }
        // A protocol's frames are capped by its own options, not by the head limit:
        // its first frame reads on from these bytes.
        let max = match protocol {
            Some(_) => MAX_PROTOCOL_UNREAD,
            None => rt.settings.load().limits.max_header_bytes.as_usize(),
        };
        if unread.len() > max {
            return Err(refuse(format!(
                "{} unread bytes, over max_header_bytes ({max})",
                unread.len()
            )));
        }
        let socket = socket2::Socket::from(socket);
        match socket.r#type() {
            Ok(t) if t == socket2::Type::STREAM => {}
            _ => return Err(refuse("not a stream socket".into())),
        }
        if socket.is_listener().unwrap_or(true) {
            return Err(refuse("a listening socket".into()));
        }
        let peer = socket
            .peer_addr()
            .map_err(|e| refuse(format!("not connected ({e})")))?;
        let (peer, unix) = match peer.as_socket() {
            Some(addr) => (Some(addr), false),
            None => (None, true),
        };
        let handle = {
            let workers = lock(&self.inner.workers);
            if workers.is_empty() {
                return Err(refuse("the server is not running".into()));
            }
            workers[fastrand::usize(..workers.len())].clone()
        };
        let prefix = BytesMut::from(unread);
        let (drain, access_log) = (self.inner.drain.subscribe(), &self.inner.access_log);
        let handoff = Some(self.inner.handoff.clone());
        let ctx = super::spawn::context(&rt, peer, &drain, access_log, &handoff);
        // Looked up in the protocols this connection's context serves with.
        let protocol = match protocol {
            None => None,
            Some(name) => Some(
                ctx.protocols
                    .iter()
                    .position(|p| p.name() == Some(name))
                    .ok_or_else(|| refuse(format!("the listener serves no protocol {name:?}")))?,
            ),
        };
        handle.spawn(async move {
            match Stream::from_socket(OwnedFd::from(socket), unix) {
                Ok(stream) => super::spawn::start(ctx, stream, prefix, protocol, layer_state),
                Err(error) => {
                    tracing::warn!(listener = %rt.name, %error, "cannot register an adopted connection");
                }
            }
        });
        Ok(())
    }
}

/// The most unread bytes a protocol connection handed in may bring.
const MAX_PROTOCOL_UNREAD: usize = 1 << 20;

// === the HTTP/1.1 loop's side ===

/// Whether the server hands its idle connections over (read only while draining).
pub(super) fn handing_off(ctx: &ConnCtx) -> bool {
    ctx.handoff.as_ref().is_some_and(|h| h.load().is_some())
}

/// Hands the connection over with the bytes read and not parsed; one that cannot go
/// is closed as in a drain.
pub(super) async fn hand_off(read: ReadHalf, write: WriteHalf, buf: BytesMut, ctx: &ConnCtx) {
    let Some(stream) = Stream::reunite(read, write) else {
        return;
    };
    let Some(handoff) = ctx.current_handoff() else {
        return close_stream(stream).await;
    };
    match handoff.send(&ctx.listener.name, stream, &buf, None, layer_hand_over(ctx)) {
        Ok(()) => tracing::debug!(peer = ?ctx.peer, unread = buf.len(), "connection handed over"),
        Err(Some(stream)) => close_stream(stream).await,
        Err(None) => {}
    }
}

/// The hand-over hook of the layer that wrapped the connection's stream, if any.
pub(super) fn layer_hand_over(ctx: &ConnCtx) -> Option<&LayerHandOver> {
    ctx.conn_extensions.as_ref()?.hand_over.as_ref()
}

async fn close_stream(stream: Stream) {
    let (read, mut write) = stream.into_split();
    let _ = write.shutdown().await;
    super::h1::linger(Some(read));
}
