//! What the old process hands over: [`ListenerSource`], and its implementation for
//! [`proxy_core::Server`].

use std::{os::fd::OwnedFd, sync::mpsc, time::Duration};

use proxy_core::metrics::CarriedValue;

use crate::handover::HandedOffConnection;

/// What the old process hands over: its listening sockets, and the switch that makes
/// it stop accepting and drain. [`proxy_core::Server`] is one.
pub trait ListenerSource: Send + Sync + 'static {
    /// Duplicates of the listening sockets by listener name, in worker order.
    ///
    /// # Errors
    /// When they cannot be duplicated; the upgrade is refused.
    fn listener_sockets(&self) -> std::io::Result<Vec<(String, Vec<OwnedFd>)>>;

    /// The new process accepts on the sockets: stop accepting, drain, exit.
    fn hand_off(&self);

    /// Version 2: the new process accepts on the sockets and adopts connections:
    /// stop accepting, hand idle HTTP/1.1 connections, as (listener name, socket,
    /// bytes read and not parsed, at most `max_unread_bytes`), to `sink` over
    /// `window`, drain the rest, drop `sink` once drained, exit. The default hands
    /// none over: it drops `sink` and calls [`ListenerSource::hand_off`].
    fn hand_off_connections(
        &self,
        window: Duration,
        max_unread_bytes: usize,
        sink: mpsc::Sender<(String, OwnedFd, Vec<u8>)>,
    ) {
        let _ = (window, max_unread_bytes);
        drop(sink);
        self.hand_off();
    }

    /// Version 3: as [`ListenerSource::hand_off_connections`], and the connections
    /// of protocol plug-ins (Bolt, Dubbo) go too, once they answered every call in
    /// flight, each with its protocol. The default hands over what
    /// [`ListenerSource::hand_off_connections`] hands out.
    fn hand_off_all_connections(
        &self,
        window: Duration,
        max_unread_bytes: usize,
        sink: mpsc::Sender<HandedOffConnection>,
    ) {
        let (tx, rx) = mpsc::channel();
        self.hand_off_connections(window, max_unread_bytes, tx);
        relay(rx, sink);
    }

    /// Version 3: the counters (version 6: and histograms) to carry to the new
    /// process, as (series, value); the default carries none.
    fn metrics_to_carry(&self) -> Vec<(String, CarriedValue)> {
        Vec::new()
    }
}

impl ListenerSource for proxy_core::Server {
    fn listener_sockets(&self) -> std::io::Result<Vec<(String, Vec<OwnedFd>)>> {
        proxy_core::Server::listener_sockets(self)
    }

    fn hand_off(&self) {
        proxy_core::Server::hand_off(self);
    }

    fn hand_off_connections(
        &self,
        window: Duration,
        max_unread_bytes: usize,
        sink: mpsc::Sender<(String, OwnedFd, Vec<u8>)>,
    ) {
        proxy_core::Server::hand_off_connections(self, window, max_unread_bytes, sink);
    }

    fn hand_off_all_connections(
        &self,
        window: Duration,
        max_unread_bytes: usize,
        sink: mpsc::Sender<HandedOffConnection>,
    ) {
        proxy_core::Server::hand_off_all_connections(self, window, max_unread_bytes, sink);
    }

    fn metrics_to_carry(&self) -> Vec<(String, CarriedValue)> {
        proxy_core::Server::metrics_to_carry(self)
    }
}

/// Version 2: the idle connections handed out, as records without a protocol.
pub(crate) fn relay_idle(
    rx: mpsc::Receiver<(String, OwnedFd, Vec<u8>)>,
) -> mpsc::Receiver<HandedOffConnection> {
    let (tx, out) = mpsc::channel();
    relay(rx, tx);
    out
}

/// Passes the idle connections of `rx` on to `sink` as records without a protocol,
/// on a thread of its own, until either side is gone.
fn relay(rx: mpsc::Receiver<(String, OwnedFd, Vec<u8>)>, sink: mpsc::Sender<HandedOffConnection>) {
    let relay = move || {
        for (listener, socket, unread) in rx {
            let c = HandedOffConnection {
                listener,
                socket,
                unread,
                protocol: None,
                layer_state: None,
            };
            if sink.send(c).is_err() {
                break;
            }
        }
    };
    if let Err(error) = std::thread::Builder::new()
        .name("proxy-upgrade-relay".into())
        .spawn(relay)
    {
        tracing::warn!(%error, "cannot relay handed-off connections; they drain");
    }
}
