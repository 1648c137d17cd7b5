//! Version 2, live connections: the old process forwards the connections its
//! server hands out (version 3: Bolt and Dubbo ones too, and its counters; version
//! 6: its histograms too), the new one receives them and adopts them into its
//! server.

use std::{
    os::fd::{AsFd, OwnedFd},
    sync::mpsc,
    time::{Duration, Instant},
};

use proxy_core::metrics::CarriedValue;
pub use proxy_core::HandedOffConnection;

use crate::{
    rollback::{self, Fallback},
    sock::Conn,
    wire::{metrics_messages, ConnectionRecord, Message, MAX_SERIES, MAX_SERIES_TOTAL_BYTES},
    UpgradeError,
};

/// The carried metrics of the old process: (series, value) as it reads them now.
pub(crate) type MetricsNow<'a> = &'a dyn Fn() -> Vec<(String, CarriedValue)>;

/// The old process's side: sends every connection `connections` yields until its
/// sender is gone (the server finished draining), then (version 3) the metrics
/// `metrics` reads then, and `end`. When the new process stops taking them (it
/// died: a send fails, or its end of the socket closes meanwhile), the old process
/// rolls back if it has a `fallback`: the listeners are taken back and this and
/// every later connection is adopted there; without one (or when taking back fails)
/// the rest are closed (write side shut first) and the server, whose sends then
/// fail, closes the others itself as in a drain. Returns what went over.
pub(crate) fn forward(
    conn: &Conn,
    connections: mpsc::Receiver<HandedOffConnection>,
    metrics: MetricsNow<'_>,
    fallback: Option<Fallback>,
) -> Forwarded {
    let mut sent = Forwarded::default();
    loop {
        let c = match connections.recv_timeout(WATCH) {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if fallback.is_some() && conn.peer_gone() {
                    tracing::error!(
                        handed = sent.connections,
                        "the new process died during the hand-off"
                    );
                    return roll_back(None, connections, metrics, fallback, sent);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let HandedOffConnection {
            listener,
            socket,
            unread,
            protocol,
            layer_state,
        } = c;
        if layer_state.is_some() && conn.version() < 5 {
            // A new process older than TLS hand-over: the session's keys are out of
            // the old one's TLS state already, so the connection cannot go on.
            tracing::warn!(%listener, "the new process takes no TLS sessions; connection closed");
            close(socket);
            continue;
        }
        let peer = socket2::SockRef::from(&socket)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket());
        let counts = (protocol.is_some(), !unread.is_empty());
        let record = ConnectionRecord {
            listener,
            peer,
            unread,
            protocol,
            layer_state,
        };
        // The socket is closed here once sent: the new process holds it then, and
        // this process never touched it since the server handed it out.
        let message = Message::Connection(record);
        if let Message::Connection(ConnectionRecord {
            layer_state: Some(_),
            listener,
            ..
        }) = &message
        {
            // A TLS session too large for one message: it cannot go, and its keys are
            // out of the TLS state already (an encoding error is not the new process
            // failing, so no roll back for it).
            if let Err(error) = crate::wire::encode_version(&message, conn.version()) {
                tracing::warn!(%listener, %error, "a TLS session too large to hand over; connection closed");
                close(socket);
                continue;
            }
        }
        match conn.send(&message, &[socket.as_fd()]) {
            Ok(()) => {
                sent.connections += 1;
                sent.protocol += u32::from(counts.0);
                sent.with_unread += u32::from(counts.1);
            }
            Err(error) => {
                tracing::error!(error = %proxy_core::DisplayChain(&error), handed = sent.connections, "the new process takes no more connections");
                let Message::Connection(record) = message else {
                    return roll_back(None, connections, metrics, fallback, sent);
                };
                let c = HandedOffConnection {
                    listener: record.listener,
                    socket,
                    unread: record.unread,
                    protocol: record.protocol,
                    layer_state: record.layer_state,
                };
                return roll_back(Some(c), connections, metrics, fallback, sent);
            }
        }
    }
    // Drained: the metrics are final.
    if let Err(error) = send_metrics(conn, &metrics()) {
        tracing::debug!(%error, "the new process did not take the final metrics");
    }
    let count = sent.connections;
    if let Err(error) = conn.send(&Message::End { count }, &[]) {
        tracing::debug!(%error, "the new process did not wait for the end");
    }
    sent
}

/// How often the forwarding loop, waiting for the next connection, looks whether the
/// new process is still there.
const WATCH: Duration = Duration::from_millis(50);

/// The new process is gone: takes the listeners back with `fallback` and adopts
/// `first` and every later connection there, or closes them without one.
fn roll_back(
    first: Option<HandedOffConnection>,
    connections: mpsc::Receiver<HandedOffConnection>,
    metrics: MetricsNow<'_>,
    fallback: Option<Fallback>,
    mut sent: Forwarded,
) -> Forwarded {
    let Some(server) = fallback.and_then(|f| f.take_back(metrics())) else {
        tracing::warn!("closing the connections not handed over; draining");
        for c in first.into_iter().chain(connections.try_iter()) {
            close(c.socket);
        }
        return sent;
    };
    tracing::warn!("rolled back: accepting again, keeping the connections not handed over");
    sent.rolled_back = true;
    // Until the old server drained: every connection it still hands out stays here.
    for c in first.into_iter().chain(connections.iter()) {
        sent.kept += u32::from(rollback::adopt(&server, c));
    }
    // What the old server counted until it drained.
    server.carry_metrics(metrics());
    sent
}

/// What [`forward`] handed over.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Forwarded {
    /// Connections.
    pub(crate) connections: u32,
    /// Of which served by a protocol plug-in (Bolt, Dubbo).
    pub(crate) protocol: u32,
    /// Of which carrying bytes read and not parsed (part of a head or a frame).
    pub(crate) with_unread: u32,
    /// Whether the new process died during the hand-off and the listeners were
    /// taken back.
    pub(crate) rolled_back: bool,
    /// Connections kept after a roll-back (adopted by the server taking back).
    pub(crate) kept: u32,
}

/// Sends `samples` in as many `metrics` messages as they need (version 3; nothing
/// to an older peer; before version 6 the integers only: no histogram sums).
pub(crate) fn send_metrics(
    conn: &Conn,
    samples: &[(String, CarriedValue)],
) -> Result<(), UpgradeError> {
    if conn.version() < 3 {
        return Ok(());
    }
    for m in metrics_messages(samples, conn.version()) {
        conn.send(&m, &[])?;
    }
    Ok(())
}

/// Closes a connection that cannot go over, its write side first (a FIN, not only a
/// close).
fn close(socket: OwnedFd) {
    let _ = socket2::SockRef::from(&socket).shutdown(std::net::Shutdown::Write);
}

/// A live connection received from the old process: its record and its socket
/// (close-on-exec, checked to be a connected stream socket to the record's peer).
#[derive(Debug)]
pub struct HandedInConnection {
    /// Listener, peer and unread bytes.
    pub record: ConnectionRecord,
    /// The connected socket.
    pub socket: OwnedFd,
}

/// What the old process sends during the hand-over.
#[derive(Debug)]
#[non_exhaustive]
pub enum Received {
    /// A live connection.
    Connection(HandedInConnection),
    /// Its counters (version 3) and histograms (version 6), by series: once when it
    /// starts handing over, and again, grown, once it has drained. Carry the latest
    /// in ([`proxy_core::Server::carry_metrics`]).
    Metrics(Vec<(String, CarriedValue)>),
}

/// The new process's side of the connections' hand-over, after `done`: the old
/// process sends its connections as each one's moment comes, over the window, and
/// its metrics, until it has drained.
#[derive(Debug)]
pub struct Handover {
    conn: Option<Conn>,
    received: u32,
    deadline: Instant,
    /// Samples of `metrics` messages saying `more`, until the last one, and the
    /// bytes of their series.
    samples: Vec<(String, CarriedValue)>,
    sample_bytes: usize,
    /// The last complete set of samples, not taken yet.
    latest: Option<Vec<(String, CarriedValue)>>,
}

/// One message of the hand-over.
enum Msg {
    Connection(HandedInConnection),
    /// Samples, and whether more of the same set follow.
    Metrics(Vec<(String, CarriedValue)>, bool),
}

/// How long the new process waits, at most, for the old one to hand everything over
/// and say `end` (beyond its drain timeout, the old process exits anyway).
const HANDOVER_LIMIT: Duration = Duration::from_secs(600);

impl Handover {
    pub(crate) fn new(conn: Option<Conn>) -> Self {
        Self {
            conn,
            received: 0,
            deadline: Instant::now() + HANDOVER_LIMIT,
            samples: Vec::new(),
            sample_bytes: 0,
            latest: None,
        }
    }

    /// How many connections came so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The last complete set of metrics received and not taken yet.
    pub fn take_metrics(&mut self) -> Option<Vec<(String, CarriedValue)>> {
        self.latest.take()
    }

    /// The next connection, blocking until the old process sends one; `None` once it
    /// said `end` (or exited: whatever it had not sent it closed). Metrics that come
    /// meanwhile wait for [`Handover::take_metrics`].
    ///
    /// # Errors
    /// As [`Handover::receive`].
    pub fn next_connection(&mut self) -> Result<Option<HandedInConnection>, UpgradeError> {
        loop {
            match self.receive()? {
                Some(Received::Connection(c)) => return Ok(Some(c)),
                Some(Received::Metrics(m)) => self.latest = Some(m),
                None => return Ok(None),
            }
        }
    }

    /// The next connection or complete set of metrics, blocking until the old
    /// process sends one; `None` once it said `end` (or exited: whatever it had not
    /// sent it closed).
    ///
    /// # Errors
    /// A message out of turn, a record without exactly one socket, a socket that is
    /// not a connected stream socket to the record's peer (it is closed), an `end`
    /// whose count disagrees, a malformed `metrics` message (a float that is NaN,
    /// infinite or negative); the hand-over stops then.
    pub fn receive(&mut self) -> Result<Option<Received>, UpgradeError> {
        loop {
            match self.next_message() {
                Ok(Some(Msg::Metrics(samples, more))) => {
                    let mut dropped = 0usize;
                    for (series, value) in samples {
                        if self.samples.len() >= MAX_SERIES
                            || self.sample_bytes + series.len() > MAX_SERIES_TOTAL_BYTES
                        {
                            dropped += 1;
                            continue;
                        }
                        self.sample_bytes += series.len();
                        self.samples.push((series, value));
                    }
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            max = MAX_SERIES,
                            max_bytes = MAX_SERIES_TOTAL_BYTES,
                            "more metric series than carried; the rest are left out"
                        );
                    }
                    if !more {
                        self.sample_bytes = 0;
                        return Ok(Some(Received::Metrics(std::mem::take(&mut self.samples))));
                    }
                }
                Ok(Some(Msg::Connection(c))) => return Ok(Some(Received::Connection(c))),
                Ok(None) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// One message of the hand-over; `None` after `end`.
    fn next_message(&mut self) -> Result<Option<Msg>, UpgradeError> {
        let Some(conn) = self.conn.as_ref() else {
            return Ok(None);
        };
        let received = loop {
            match conn.recv() {
                Err(UpgradeError::Timeout(_)) if Instant::now() < self.deadline => {}
                other => break other,
            }
        };
        let result = match received {
            Ok((Message::Connection(record), mut fds)) if fds.len() == 1 => {
                let socket = fds.remove(0);
                check(&record, &socket).map(|()| {
                    self.received += 1;
                    Some(Msg::Connection(HandedInConnection { record, socket }))
                })
            }
            Ok((Message::Metrics { samples, more }, fds)) if fds.is_empty() => {
                Ok(Some(Msg::Metrics(samples, more)))
            }
            Ok((Message::Connection(_), fds)) => Err(UpgradeError::Malformed(format!(
                "a connection record with {} descriptors",
                fds.len()
            ))),
            Ok((Message::End { count }, _)) if count == self.received => Ok(None),
            Ok((Message::End { count }, _)) => Err(UpgradeError::Malformed(format!(
                "end says {count} connections, {} came",
                self.received
            ))),
            Ok((other, _)) => Err(UpgradeError::Unexpected {
                got: other.name(),
                expected: "connection, metrics or end",
            }),
            Err(UpgradeError::Closed) => Ok(None),
            Err(e) => Err(e),
        };
        if !matches!(result, Ok(Some(_))) {
            self.conn = None;
        }
        result
    }

    /// Receives every connection and serves each on `server`'s listener of the same
    /// name, as if it had accepted it and read its unread bytes, with its protocol
    /// (Bolt, Dubbo) when it has one ([`proxy_core::Server::adopt_handed_off`]); one
    /// the server refuses (no such listener or protocol) is closed and logged.
    /// Metrics that come are carried into `server`
    /// ([`proxy_core::Server::carry_metrics`]). Returns how many connections were
    /// adopted.
    ///
    /// # Errors
    /// As [`Handover::receive`]; those adopted before stay served.
    pub fn adopt_into(mut self, server: &proxy_core::Server) -> Result<u32, UpgradeError> {
        let mut adopted = 0;
        while let Some(received) = self.receive()? {
            let HandedInConnection { record, socket } = match received {
                Received::Connection(c) => c,
                Received::Metrics(samples) => {
                    tracing::info!(
                        series = samples.len(),
                        "carried the old process's metrics in"
                    );
                    server.carry_metrics(samples);
                    continue;
                }
            };
            let ConnectionRecord {
                listener,
                peer,
                unread,
                protocol,
                layer_state,
            } = record;
            let handed = HandedOffConnection {
                listener: listener.clone(),
                socket,
                unread,
                protocol,
                layer_state,
            };
            match server.adopt_handed_off(handed) {
                Ok(()) => adopted += 1,
                Err(error) => {
                    tracing::warn!(%listener, ?peer, error = %proxy_core::DisplayChain(&error), "closed a handed-in connection");
                }
            }
        }
        Ok(adopted)
    }
}

/// Checks a received socket against its record.
fn check(record: &ConnectionRecord, socket: &OwnedFd) -> Result<(), UpgradeError> {
    let bad = |why: String| {
        UpgradeError::Malformed(format!(
            "the socket of a connection of {} ({:?}): {why}",
            record.listener, record.peer
        ))
    };
    let s = socket2::SockRef::from(socket);
    match s.r#type() {
        Ok(t) if t == socket2::Type::STREAM => {}
        Ok(t) => return Err(bad(format!("a socket of type {t:?}"))),
        Err(e) => return Err(bad(format!("not a socket ({e})"))),
    }
    if s.is_listener().unwrap_or(true) {
        return Err(bad("a listening socket".into()));
    }
    let peer = s
        .peer_addr()
        .map_err(|e| bad(format!("not connected ({e})")))?;
    match (peer.as_socket(), record.peer) {
        (Some(actual), Some(p)) if actual == p => Ok(()),
        (None, None) if peer.domain() == socket2::Domain::UNIX => Ok(()),
        (actual, _) => Err(bad(format!("its peer is {actual:?}"))),
    }
}
