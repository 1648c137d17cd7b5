//! Version 2, live connections: the old process forwards the idle connections its
//! server hands out, the new one receives them and adopts them into its server.

use std::{
    os::fd::{AsFd, OwnedFd},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{
    sock::Conn,
    wire::{ConnectionRecord, Message},
    UpgradeError,
};

/// A connection the old process's server hands out: (listener name, socket, bytes
/// read and not parsed). What [`proxy_core::Server::hand_off_connections`] sends.
pub type HandedOffConnection = (String, OwnedFd, Vec<u8>);

/// The old process's side: sends every connection `connections` yields until its
/// sender is gone (the server finished draining), then `end`. When the new process
/// stops taking them, the rest are closed (write side shut first) and the server,
/// whose sends then fail, closes the others itself as in a drain. Returns how many
/// went over.
pub(crate) fn forward(conn: &Conn, connections: mpsc::Receiver<HandedOffConnection>) -> u32 {
    let mut count = 0u32;
    for (listener, socket, unread) in connections.iter() {
        let peer = socket2::SockRef::from(&socket)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket());
        let record = ConnectionRecord {
            listener,
            peer,
            unread,
        };
        // The socket is closed here once sent: the new process holds it then, and
        // this process never touched it since the server handed it out.
        match conn.send(&Message::Connection(record), &[socket.as_fd()]) {
            Ok(()) => count += 1,
            Err(error) => {
                tracing::warn!(error = %proxy_core::DisplayChain(&error), handed = count, "the new process takes no more connections; closing the rest");
                close(socket);
                for (_, socket, _) in connections.try_iter() {
                    close(socket);
                }
                return count;
            }
        }
    }
    if let Err(error) = conn.send(&Message::End { count }, &[]) {
        tracing::debug!(%error, "the new process did not wait for the end");
    }
    count
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

/// The new process's side of the connections' hand-over, after `done`: the old
/// process sends its idle connections as they become idle, over the window, until
/// it has drained.
#[derive(Debug)]
pub struct Handover {
    conn: Option<Conn>,
    received: u32,
    deadline: Instant,
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
        }
    }

    /// How many connections came so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The next connection, blocking until the old process sends one; `None` once it
    /// said `end` (or exited: whatever it had not sent it closed).
    ///
    /// # Errors
    /// A message out of turn, a record without exactly one socket, a socket that is
    /// not a connected stream socket to the record's peer (it is closed), an `end`
    /// whose count disagrees; the hand-over stops then.
    pub fn next_connection(&mut self) -> Result<Option<HandedInConnection>, UpgradeError> {
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
                    Some(HandedInConnection { record, socket })
                })
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
                expected: "connection or end",
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
    /// name, as if it had accepted it and read its unread bytes
    /// ([`proxy_core::Server::adopt_connection`]); one the server refuses (no such
    /// listener) is closed and logged. Returns how many were adopted.
    ///
    /// # Errors
    /// As [`Handover::next_connection`]; those adopted before stay served.
    pub fn adopt_into(mut self, server: &proxy_core::Server) -> Result<u32, UpgradeError> {
        let mut adopted = 0;
        while let Some(c) = self.next_connection()? {
            let HandedInConnection { record, socket } = c;
            match server.adopt_connection(&record.listener, socket, &record.unread) {
                Ok(()) => adopted += 1,
                Err(error) => {
                    tracing::warn!(listener = %record.listener, peer = ?record.peer, error = %proxy_core::DisplayChain(&error), "closed a handed-in connection");
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
