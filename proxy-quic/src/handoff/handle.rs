//! [`Handoff`]: the old process's side of an HTTP/3 listener's hot upgrade.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::{channel, Generation, HandoffSocket, HandoffStats};

/// The hand-over of a running [`H3Listener`](crate::h3::H3Listener) to a new
/// process ([`H3Listener::handoff`](crate::h3::H3Listener::handoff)): cheap to
/// clone, usable from any thread.
///
/// 1. [`prepare`](Self::prepare) gives what goes to the new process: a duplicate of
///    the UDP socket, the new process's end of a forwarding channel, and this
///    process's [`Generation`]. The new process starts its listener on them
///    ([`H3ListenerBuilder::take_over`](crate::h3::H3ListenerBuilder::take_over)).
/// 2. Once it reads the socket, [`hand_off`](Self::hand_off): this process reads
///    only what the new one forwards (the datagrams of its own connections), sends
///    GOAWAY on every connection and drains; `serve` returns once they are done.
///    Or [`abandon`](Self::abandon) when the upgrade failed: nothing changes.
/// 3. Should the new process die after the hand-off (a roll-back), the listener
///    reads the UDP socket again for its own connections; it still drains. A
///    successor started anew in this process takes over from it the same way
///    ([`prepare`](Self::prepare), then [`hand_off`](Self::hand_off) again, then
///    the successor on the socket and channel given): it serves new connections
///    and forwards this listener the datagrams of its connections until they
///    drained. A listener that has ended by then closes the new channel at once.
///
/// ```
/// use proxy_quic::h3::{server_config, H3Listener};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
/// let pem = (cert.cert.pem(), cert.key_pair.serialize_pem());
/// let tls = || server_config(pem.0.as_bytes(), pem.1.as_bytes());
/// let old = H3Listener::builder("h3", tls()?).bind("127.0.0.1:0".parse()?)?;
/// let handoff = old.handoff();
/// let given = handoff.prepare()?;
/// // ... in the new process, with the descriptors received:
/// let new = H3Listener::builder("h3", tls()?)
///     .take_over(given.forward, given.generation)
///     .bind_socket(std::net::UdpSocket::from(given.socket))?;
/// assert_eq!(new.local_addr(), old.local_addr());
/// assert_eq!(new.handoff().generation(), handoff.generation().next());
/// handoff.hand_off()?; // old: reads the forwarded datagrams, drains
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Handoff {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    socket: Arc<HandoffSocket>,
    udp: OwnedFd,
    generation: Generation,
    /// This process's end of the channel prepared for the new process.
    pending: Mutex<Option<OwnedFd>>,
    handed_off: watch::Sender<bool>,
    /// The listener's runtime, where the channel is registered.
    runtime: tokio::runtime::Handle,
}

/// What goes to the new process (see [`Handoff::prepare`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct HandedOver {
    /// A duplicate of the UDP socket.
    pub socket: OwnedFd,
    /// The new process's end of the forwarding channel (a Unix `SOCK_SEQPACKET`
    /// socket, close-on-exec).
    pub forward: OwnedFd,
    /// The generation of this process's connection IDs.
    pub generation: Generation,
}

impl Handoff {
    /// Must be called within the listener's runtime.
    pub(crate) fn new(socket: Arc<HandoffSocket>, udp: OwnedFd, generation: Generation) -> Self {
        let (handed_off, _) = watch::channel(false);
        let runtime = tokio::runtime::Handle::current();
        Self {
            shared: Arc::new(Shared {
                socket,
                udp,
                generation,
                pending: Mutex::new(None),
                handed_off,
                runtime,
            }),
        }
    }

    /// The generation of the connection IDs this listener issues.
    pub fn generation(&self) -> Generation {
        self.shared.generation
    }

    /// The socket's counters (datagrams forwarded, received forwarded, dropped).
    pub fn stats(&self) -> HandoffStats {
        self.shared.socket.stats()
    }

    /// Whether [`hand_off`](Self::hand_off) was called.
    pub fn is_handed_off(&self) -> bool {
        *self.shared.handed_off.borrow()
    }

    /// A duplicate of the UDP socket and a new forwarding channel, for a new
    /// process (one upgrade at a time: a channel prepared before and not used is
    /// closed).
    ///
    /// # Errors
    /// When the socket cannot be duplicated or the channel made, or while this
    /// listener still forwards datagrams to the process before it (that process
    /// has not drained yet: upgrade again once it has exited).
    pub fn prepare(&self) -> io::Result<HandedOver> {
        if self.shared.socket.still_forwarding() {
            // One generation bit tells two processes apart: the next process would
            // take the draining one's connections for its own.
            return Err(io::Error::other(
                "the process before this one still drains its QUIC connections; \
                 upgrade again once it has exited",
            ));
        }
        let socket = self.shared.udp.try_clone()?;
        let (ours, theirs) = channel::pair()?;
        *lock(&self.shared.pending) = Some(ours);
        Ok(HandedOver {
            socket,
            forward: theirs,
            generation: self.shared.generation,
        })
    }

    /// The new process reads the UDP socket: from now on this listener reads the
    /// datagrams it forwards (those of this listener's connections) instead, sends
    /// GOAWAY on every connection, refuses new ones and drains. Should the new
    /// process close the channel (it died), the listener reads the socket again,
    /// for its own connections. Called again after that (with a channel
    /// [`prepare`](Self::prepare)d anew for a successor started after a
    /// roll-back), it reads the new channel; a listener that has ended closes it
    /// at once, so the successor forwards nothing. May be called from any thread.
    ///
    /// # Errors
    /// When nothing was prepared, or the channel cannot be registered with the
    /// runtime; the listener then drains reading the socket.
    pub fn hand_off(&self) -> io::Result<()> {
        let pending = lock(&self.shared.pending).take();
        self.shared.handed_off.send_replace(true);
        match pending {
            Some(channel) => {
                let _runtime = self.shared.runtime.enter();
                self.shared.socket.read_from_successor(channel)
            }
            None => Err(io::Error::other("no hand-over was prepared")),
        }
    }

    /// The upgrade failed: the channel prepared is closed; the listener goes on
    /// as it was.
    pub fn abandon(&self) {
        lock(&self.shared.pending).take();
    }

    /// Whether the listener has ended (drained and closed): it reads nothing more,
    /// and a channel given to it now is closed at once.
    pub fn has_ended(&self) -> bool {
        self.shared.socket.is_retired()
    }

    /// The listener ended (drained after the hand-off, or stopped): its end of a
    /// channel closes, so a successor stops forwarding to it.
    pub(crate) fn retire(&self) {
        self.shared.socket.retire();
    }

    /// Resolves once [`hand_off`](Self::hand_off) was called.
    pub(crate) fn handed_off(&self) -> watch::Receiver<bool> {
        self.shared.handed_off.subscribe()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
