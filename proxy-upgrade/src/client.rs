//! The new process's side: fetch the listening sockets, start on them, say so.

use std::{collections::HashSet, os::fd::OwnedFd, path::PathBuf, time::Duration};

use proxy_core::config::ListenAddress;

use crate::{
    datagram::{ForwardChannel, InheritedDatagram},
    handover::Handover,
    sock::{self, Conn},
    wire::{
        DatagramRecord, DatagramRole, ErrorCode, ListenerRecord, Message, MAX_SOCKETS, MIN_VERSION,
        VERSION,
    },
    UpgradeError,
};

/// Connects to the process being upgraded and receives its listening sockets.
///
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_upgrade::UpgradeClient;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut upgrade = UpgradeClient::new("/run/proxy/upgrade.sock").connect()?;
/// let config = Config::load(std::path::Path::new("proxy.yaml"))?;
/// let server = Server::new(config, Registry::default())?
///     .with_inherited_listeners(upgrade.take_sockets());
/// let handle = server.clone();
/// server.run_until(async move {
///     // The listeners accept from here on: the old process may stop.
///     let _ = tokio::task::spawn_blocking(move || upgrade.finish()).await;
///     handle.wait_for_signals().await;
/// })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct UpgradeClient {
    path: PathBuf,
    timeout: Duration,
    window: Duration,
}

impl UpgradeClient {
    /// A client of the upgrade socket at `path`, with a 10 s timeout and a 1 s
    /// hand-off window.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: Duration::from_secs(10),
            window: Duration::from_secs(1),
        }
    }

    /// Over how long the old process spreads the hand-over of its idle connections
    /// ([`Upgrade::finish_handing_over`]), so that they do not all arrive at once:
    /// each goes at a moment drawn evenly over the window (the old process caps it
    /// at half its drain timeout, and at 60 s).
    pub fn handoff_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long to wait for the connection and for each answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects, asks for the listening sockets and checks each: a listening stream
    /// socket bound to the address of its record. The sockets are close-on-exec.
    ///
    /// An old process that speaks an older version is asked again in it: with
    /// version 1 its listeners come over the same way and its connections drain;
    /// with version 2 its idle HTTP/1.1 connections come too, its Bolt and Dubbo
    /// connections drain, and its counters stay; with versions 3 to 5 its counters
    /// come and its histograms stay.
    ///
    /// # Errors
    /// No process at the path ([`UpgradeError::Connect`]), a refusal (another upgrade in
    /// progress, [`UpgradeError::is_busy`]), a timeout, a protocol violation, or a
    /// socket that is not what its record says. Every socket received is closed then.
    pub fn connect(&self) -> Result<Upgrade, UpgradeError> {
        match self.connect_version(VERSION) {
            Err(UpgradeError::Refused {
                code: ErrorCode::Version,
                reason,
            }) if older_version(&reason).is_some() => {
                let version = older_version(&reason).unwrap_or(MIN_VERSION);
                tracing::info!(%reason, version, "the old process speaks an older version; asking in it");
                // Its session frees itself right after answering.
                let deadline = std::time::Instant::now() + self.timeout;
                loop {
                    match self.connect_version(version) {
                        Err(e) if e.is_busy() && std::time::Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => return other,
                    }
                }
            }
            other => other,
        }
    }

    fn connect_version(&self, version: u16) -> Result<Upgrade, UpgradeError> {
        let fd =
            sock::connect(&self.path, self.timeout).map_err(|source| UpgradeError::Connect {
                path: self.path.clone(),
                source,
            })?;
        let mut conn = Conn::new(fd, self.timeout)?;
        conn.set_version(version);
        let hello = Message::Hello {
            pid: std::process::id(),
        };
        if let Err(e) = conn.send(&hello, &[]) {
            // A refusal sent before our hello was read may be waiting.
            return Err(match conn.recv() {
                Ok((Message::Error { code, reason }, _)) => UpgradeError::Refused { code, reason },
                _ => e,
            });
        }
        let mut listeners = Vec::new();
        loop {
            let (records, more, fds) = match conn.recv()? {
                (Message::Listeners { records, more }, fds) => (records, more, fds),
                (Message::Error { code, reason }, _) => {
                    return Err(UpgradeError::Refused { code, reason })
                }
                (other, _) => {
                    return Err(UpgradeError::Unexpected {
                        got: other.name(),
                        expected: "listeners",
                    })
                }
            };
            if records.len() != fds.len() {
                return Err(UpgradeError::Malformed(format!(
                    "{} listener records with {} descriptors",
                    records.len(),
                    fds.len()
                )));
            }
            if listeners.len() + fds.len() > MAX_SOCKETS {
                return Err(UpgradeError::TooManyDescriptors {
                    got: listeners.len() + fds.len(),
                    max: MAX_SOCKETS,
                });
            }
            for (record, socket) in records.into_iter().zip(fds) {
                listeners.push(InheritedListener { record, socket });
            }
            if !more {
                break;
            }
        }
        validate(&listeners)?;
        let datagrams = if conn.version() >= 4 {
            receive_datagrams(&conn, listeners.len())?
        } else {
            Vec::new()
        };
        tracing::info!(path = %self.path.display(), sockets = listeners.len(), udp = datagrams.len(), "received the listening sockets");
        Ok(Upgrade {
            conn,
            listeners,
            datagrams,
            taken: 0,
            window: self.window,
        })
    }
}

/// The older version a refusal says the old process speaks ("... speaks version
/// N", the last such), when this crate speaks it too.
fn older_version(reason: &str) -> Option<u16> {
    let (_, rest) = reason.rsplit_once("speaks version ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let version: u16 = digits.parse().ok()?;
    (MIN_VERSION..VERSION).contains(&version).then_some(version)
}

/// Checks every socket against its record, and that no (name, worker) comes twice.
fn validate(listeners: &[InheritedListener]) -> Result<(), UpgradeError> {
    let mut seen = HashSet::new();
    for (index, l) in listeners.iter().enumerate() {
        let bad = |why: String| UpgradeError::BadSocket {
            index,
            name: l.record.name.clone(),
            address: l.record.address.to_string(),
            why,
        };
        if !seen.insert((l.record.name.as_str(), l.record.worker)) {
            return Err(bad(format!("worker {} comes twice", l.record.worker)));
        }
        let socket = socket2::SockRef::from(&l.socket);
        match socket.r#type() {
            Ok(t) if t == socket2::Type::STREAM => {}
            Ok(t) => return Err(bad(format!("a socket of type {t:?}"))),
            Err(e) => return Err(bad(format!("not a socket ({e})"))),
        }
        if !socket.is_listener().unwrap_or(false) {
            return Err(bad("not listening".into()));
        }
        let local = socket.local_addr().map_err(|e| bad(e.to_string()))?;
        let matches = match &l.record.address {
            ListenAddress::Tcp(a) => local.as_socket() == Some(*a),
            ListenAddress::Unix(p) => local.as_pathname() == Some(p.as_path()),
        };
        if !matches {
            return Err(bad(format!(
                "it is bound to {:?}",
                local.as_socket().map_or_else(
                    || local
                        .as_pathname()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    |a| a.to_string()
                )
            )));
        }
    }
    Ok(())
}

/// Version 4: the `datagrams` messages after the listeners; each UDP socket checked
/// and paired with the forwarding channel that follows it.
fn receive_datagrams(
    conn: &Conn,
    listeners: usize,
) -> Result<Vec<InheritedDatagram>, UpgradeError> {
    let mut received: Vec<(DatagramRecord, OwnedFd)> = Vec::new();
    loop {
        let (records, more, fds) = match conn.recv()? {
            (Message::Datagrams { records, more }, fds) => (records, more, fds),
            (Message::Error { code, reason }, _) => {
                return Err(UpgradeError::Refused { code, reason })
            }
            (other, _) => {
                return Err(UpgradeError::Unexpected {
                    got: other.name(),
                    expected: "datagrams",
                })
            }
        };
        if records.len() != fds.len() {
            return Err(UpgradeError::Malformed(format!(
                "{} datagram records with {} descriptors",
                records.len(),
                fds.len()
            )));
        }
        if listeners + received.len() + fds.len() > MAX_SOCKETS {
            return Err(UpgradeError::TooManyDescriptors {
                got: listeners + received.len() + fds.len(),
                max: MAX_SOCKETS,
            });
        }
        received.extend(records.into_iter().zip(fds));
        if !more {
            break;
        }
    }
    pair_datagrams(received, listeners)
}

/// Checks each datagram socket against its record (a bound UDP socket; a Unix
/// `SOCK_SEQPACKET` channel after the UDP socket it forwards for) and pairs them.
/// `offset`: the sockets received before, for the index in errors.
fn pair_datagrams(
    received: Vec<(DatagramRecord, OwnedFd)>,
    offset: usize,
) -> Result<Vec<InheritedDatagram>, UpgradeError> {
    let mut out: Vec<InheritedDatagram> = Vec::new();
    let mut seen = HashSet::new();
    for (index, (record, socket)) in received.into_iter().enumerate() {
        let bad = |why: String| UpgradeError::BadSocket {
            index: offset + index,
            name: record.name.clone(),
            address: record.address.to_string(),
            why,
        };
        let sock = socket2::SockRef::from(&socket);
        let kind = match sock.r#type() {
            Ok(t) => t,
            Err(e) => return Err(bad(format!("not a socket ({e})"))),
        };
        match record.role {
            DatagramRole::Udp => {
                if kind != socket2::Type::DGRAM {
                    return Err(bad(format!(
                        "a socket of type {kind:?} where a UDP socket (SOCK_DGRAM) was announced"
                    )));
                }
                let local = sock.local_addr().map_err(|e| bad(e.to_string()))?;
                match local.as_socket() {
                    Some(a) if a == record.address => {}
                    Some(a) => return Err(bad(format!("it is bound to {a}"))),
                    None => return Err(bad("not an IP socket".into())),
                }
                if !seen.insert((record.name.clone(), record.worker)) {
                    return Err(bad(format!("worker {} comes twice", record.worker)));
                }
                out.push(InheritedDatagram {
                    record,
                    socket,
                    forward: None,
                });
            }
            DatagramRole::Forward { generation } => {
                let unix = sock
                    .local_addr()
                    .is_ok_and(|a| a.domain() == socket2::Domain::UNIX);
                if kind != socket2::Type::SEQPACKET || !unix {
                    return Err(bad(format!(
                        "a socket of type {kind:?} where a Unix SOCK_SEQPACKET channel was announced"
                    )));
                }
                match out.last_mut() {
                    Some(udp)
                        if udp.forward.is_none()
                            && (&udp.record.name, udp.record.worker, udp.record.address)
                                == (&record.name, record.worker, record.address) =>
                    {
                        udp.forward = Some(ForwardChannel { socket, generation });
                    }
                    _ => return Err(bad("a forwarding channel not after its UDP socket".into())),
                }
            }
        }
    }
    Ok(out)
}

/// A listening socket received, with its record.
#[derive(Debug)]
pub struct InheritedListener {
    /// The listener name, address and worker it had in the old process.
    pub record: ListenerRecord,
    /// The socket, close-on-exec.
    pub socket: OwnedFd,
}

/// An upgrade under way on the new process's side: the sockets received and the
/// connection to the old process, which keeps accepting until [`Upgrade::finish`].
/// Dropped without `finish`, the old process keeps serving and the sockets not taken
/// are closed.
#[derive(Debug)]
pub struct Upgrade {
    conn: Conn,
    listeners: Vec<InheritedListener>,
    datagrams: Vec<InheritedDatagram>,
    taken: usize,
    window: Duration,
}

impl Upgrade {
    /// The sockets received (those not taken yet).
    pub fn listeners(&self) -> &[InheritedListener] {
        &self.listeners
    }

    /// Takes the sockets as `(listener name, socket)` in the old process's worker
    /// order: what [`proxy_core::Server::with_inherited_listeners`] takes.
    pub fn take_sockets(&mut self) -> Vec<(String, OwnedFd)> {
        let mut all = std::mem::take(&mut self.listeners);
        self.taken += all.len();
        all.sort_by(|a, b| {
            (&a.record.name, a.record.worker).cmp(&(&b.record.name, b.record.worker))
        });
        all.into_iter().map(|l| (l.record.name, l.socket)).collect()
    }

    /// The UDP sockets received (QUIC listeners, version 4; those not taken yet).
    pub fn datagrams(&self) -> &[InheritedDatagram] {
        &self.datagrams
    }

    /// Takes the UDP sockets with their forwarding channels, in (listener name,
    /// worker) order: start the QUIC listeners on them (`proxy_quic`'s
    /// `H3ListenerBuilder::take_over`) before [`Upgrade::finish`]; those not taken
    /// are closed then.
    pub fn take_datagrams(&mut self) -> Vec<InheritedDatagram> {
        let mut all = std::mem::take(&mut self.datagrams);
        self.taken += all.len();
        all.sort_by(|a, b| {
            (&a.record.name, a.record.worker).cmp(&(&b.record.name, b.record.worker))
        });
        all
    }

    /// The protocol version spoken with the old process (1: no connections come).
    pub fn version(&self) -> u16 {
        self.conn.version()
    }

    /// Tells the old process that this one accepts on the sockets (call it once the
    /// server runs), then waits until the old one has stopped accepting; it drains
    /// its connections (closing the idle ones) and exits on its own.
    ///
    /// # Errors
    /// When the old process does not confirm: it may still accept for a while, which
    /// costs nothing since both processes accept on the same sockets.
    pub fn finish(self) -> Result<(), UpgradeError> {
        self.ready(None).map(drop)
    }

    /// Like [`Upgrade::finish`], and asks the old process to hand its idle HTTP/1.1
    /// connections over rather than close them, spread over the hand-off window:
    /// receive them from the [`Handover`] returned (with the server running, e.g.
    /// [`Handover::adopt_into`]), until the old process has drained. With a version 1
    /// process, none come.
    ///
    /// # Errors
    /// As [`Upgrade::finish`].
    pub fn finish_handing_over(self) -> Result<Handover, UpgradeError> {
        let v2 = self.conn.version() >= 2;
        let window = Some(self.window).filter(|_| v2);
        let conn = self.ready(window)?;
        Ok(Handover::new(conn.filter(|_| v2)))
    }

    fn ready(mut self, handoff_window: Option<Duration>) -> Result<Option<Conn>, UpgradeError> {
        // Sockets not taken are not accepted on: closed before the old process stops.
        self.listeners.clear();
        self.datagrams.clear();
        let claimed = u32::try_from(self.taken).unwrap_or(u32::MAX);
        let ready = Message::Ready {
            claimed,
            handoff_window,
        };
        self.conn.send(&ready, &[])?;
        match self.conn.recv()? {
            (Message::Done, _) => Ok(handoff_window.map(|_| self.conn)),
            (Message::Error { code, reason }, _) => Err(UpgradeError::Refused { code, reason }),
            (other, _) => Err(UpgradeError::Unexpected {
                got: other.name(),
                expected: "done",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::older_version;

    #[test]
    fn a_refusal_names_the_version_to_ask_in() {
        // What a version 2 process answers a version 3 hello.
        let v2 = "protocol version mismatch: this process speaks version 2, the peer 3; \
                  this process speaks version 2";
        assert_eq!(older_version(v2), Some(2));
        assert_eq!(older_version("this process speaks version 1"), Some(1));
        assert_eq!(older_version("this process speaks version 3"), Some(3));
        assert_eq!(older_version("this process speaks version 4"), Some(4));
        assert_eq!(older_version("this process speaks version 5"), Some(5));
        // Not older, not spoken, or not said.
        assert_eq!(older_version("this process speaks version 6"), None);
        assert_eq!(older_version("this process speaks version 0"), None);
        assert_eq!(older_version("busy"), None);
    }
}
