//! The old process's side: serve one upgrade at a time on a Unix socket.

use std::{
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use proxy_core::config::ListenAddress;

use crate::{
    datagram::DatagramSource,
    handover::{self, HandedOffConnection},
    rollback::{Fallback, TakeBack},
    sock::{self, Conn},
    source::{relay_idle, ListenerSource},
    wire::{
        DatagramRecord, DatagramRole, ErrorCode, ListenerRecord, Message, MAX_FDS_PER_MESSAGE,
        MAX_SOCKETS, MAX_UNREAD_BYTES, VERSION,
    },
    UpgradeError,
};

/// Serves upgrades on a Unix socket: hands the listening sockets of a
/// [`ListenerSource`] to the new process that asks, one upgrade at a time (a second
/// one meanwhile is refused as busy), and only to a process of the same user.
///
/// ```no_run
/// use proxy_core::{config::Config, Registry, Server};
/// use proxy_upgrade::UpgradeServer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::load(std::path::Path::new("proxy.yaml"))?;
/// let server = Server::new(config, Registry::default())?;
/// // Until a new process takes over; then `run` drains and returns.
/// let _upgrades = UpgradeServer::bind("/run/proxy/upgrade.sock")?.spawn(server.clone())?;
/// server.run()?;
/// # Ok(()) }
/// ```
pub struct UpgradeServer {
    fd: OwnedFd,
    path: PathBuf,
    owner: u32,
    hello_timeout: Duration,
    ready_timeout: Duration,
    take_back: Option<Arc<TakeBack>>,
    datagrams: Option<Arc<dyn DatagramSource>>,
}

impl std::fmt::Debug for UpgradeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeServer")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .field("hello_timeout", &self.hello_timeout)
            .field("ready_timeout", &self.ready_timeout)
            .field("rolls_back", &self.take_back.is_some())
            .field("datagrams", &self.datagrams.is_some())
            .finish_non_exhaustive()
    }
}

impl UpgradeServer {
    /// Listens for upgrades at `path` (mode 0600; a file left by a dead process is
    /// replaced). Waits 5 s for a new process's hello and 60 s for it to be ready.
    ///
    /// # Errors
    /// [`UpgradeError::Bind`] when the path cannot be bound or another live process
    /// serves upgrades there.
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self, UpgradeError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = path.into();
        let bind = |source| UpgradeError::Bind {
            path: path.clone(),
            source,
        };
        let fd = sock::listen(&path).map_err(bind)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(bind)?;
        let owner = std::fs::metadata(&path).map_err(bind)?.uid();
        sock::set_timeout(&fd, ACCEPT_POLL).map_err(bind)?;
        Ok(Self {
            fd,
            path,
            owner,
            hello_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(60),
            take_back: None,
            datagrams: None,
        })
    }

    /// Hands over the UDP sockets of `source` too (QUIC listeners, version 4), after
    /// the listening sockets: each with a channel on which the new process forwards
    /// the datagrams of this process's connections, which drain. A new process
    /// that speaks an older version gets none (it cannot bind them).
    pub fn datagrams(mut self, source: impl DatagramSource) -> Self {
        self.datagrams = Some(Arc::new(source));
        self
    }

    /// [`UpgradeServer::datagrams`] with a shared source, or none.
    pub(crate) fn datagram_source(mut self, source: Option<Arc<dyn DatagramSource>>) -> Self {
        self.datagrams = source;
        self
    }

    /// Rolls back when the new process dies after it said ready, within the hand-off
    /// window (its end of the upgrade socket closes, or it takes no more
    /// connections): this process keeps duplicates of the listening sockets it sent,
    /// and `take_back` starts a server accepting on them again, which adopts every
    /// connection this process still hands out (with its metrics carried in), so
    /// they are served on rather than closed. Without it, this process only drains.
    /// See [`TakeBack`].
    pub fn on_rollback(
        mut self,
        take_back: impl Fn(Vec<(String, OwnedFd)>) -> Option<proxy_core::Server> + Send + Sync + 'static,
    ) -> Self {
        self.take_back = Some(Arc::new(take_back));
        self
    }

    /// How long a new process may take to say hello after connecting.
    pub fn hello_timeout(mut self, timeout: Duration) -> Self {
        self.hello_timeout = timeout;
        self
    }

    /// How long a new process may take, once it has the sockets, to start accepting
    /// on them; past it the upgrade is abandoned and this process keeps serving.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves upgrades on a thread of its own until one succeeds or the handle is
    /// stopped or dropped.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn spawn<S: ListenerSource>(self, source: S) -> Result<UpgradeHandle, UpgradeError> {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("proxy-upgrade".into())
            .spawn(move || self.serve(Arc::new(source), &state))?;
        Ok(UpgradeHandle {
            shared,
            thread: Some(thread),
        })
    }

    fn serve(self, source: Arc<dyn ListenerSource>, shared: &Arc<Shared>) {
        tracing::info!(path = %self.path.display(), "serving upgrades");
        let sessions = &shared.session;
        while !shared.stop.load(Ordering::Acquire) {
            let fd = match sock::accept(&self.fd) {
                Ok(Some(fd)) => fd,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "accepting an upgrade connection failed");
                    std::thread::sleep(ACCEPT_POLL);
                    continue;
                }
            };
            if sock::peer_uid(&fd).ok() != Some(self.owner) {
                refuse(
                    fd,
                    ErrorCode::Denied,
                    "only the same user may upgrade this process",
                );
                continue;
            }
            if shared.busy.swap(true, Ordering::AcqRel) {
                refuse(fd, ErrorCode::Busy, "another upgrade is in progress");
                continue;
            }
            let (source, state, path) = (source.clone(), shared.clone(), self.path.clone());
            let timeouts = (self.hello_timeout, self.ready_timeout);
            let take_back = self.take_back.clone();
            let datagrams = self.datagrams.clone();
            let session = std::thread::Builder::new()
                .name("proxy-upgrade-session".into())
                .spawn(move || {
                    let outcome = session(
                        fd,
                        &*source,
                        timeouts,
                        &path,
                        take_back,
                        datagrams.as_deref(),
                        &state.handed_off,
                    );
                    match outcome {
                        Ok((pid, sockets, connections)) => {
                            tracing::info!(pid, sockets, "handed the listeners over; draining");
                            state.handed_off.store(true, Ordering::Release);
                            state.stop.store(true, Ordering::Release);
                            if let Some((conn, rx, fallback)) = connections {
                                let metrics = || source.metrics_to_carry();
                                let sent = handover::forward(&conn, rx, &metrics, fallback);
                                tracing::info!(pid, connections = sent.connections, protocol = sent.protocol, with_unread = sent.with_unread, rolled_back = sent.rolled_back, kept = sent.kept, "handed the idle connections over");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(error = %proxy_core::DisplayChain(&error), "upgrade abandoned; still serving");
                        }
                    }
                    state.busy.store(false, Ordering::Release);
                });
            match session {
                Ok(handle) => *lock(sessions) = Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "cannot start an upgrade session");
                    shared.busy.store(false, Ordering::Release);
                }
            }
        }
        // A session that handed off goes on forwarding connections until the server
        // drained: the handle joins it (`UpgradeHandle::stop`), not this thread.
        if !shared.handed_off.load(Ordering::Acquire) {
            if let Some(handle) = lock(sessions).take() {
                let _ = handle.join();
            }
        }
        if !shared.handed_off.load(Ordering::Acquire) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    busy: AtomicBool,
    handed_off: AtomicBool,
    session: Mutex<Option<JoinHandle<()>>>,
}

/// The connection to the new process, the connections to forward on it, and the
/// listening sockets kept for a roll-back.
type Forward = (Conn, mpsc::Receiver<HandedOffConnection>, Option<Fallback>);

/// One upgrade, from hello to done. Returns the new process's pid, how many sockets
/// went over, and (version 2, when the new process adopts connections) what to
/// forward the idle connections on.
fn session(
    fd: OwnedFd,
    source: &dyn ListenerSource,
    (hello_timeout, ready_timeout): (Duration, Duration),
    path: &Path,
    take_back: Option<Arc<TakeBack>>,
    datagrams: Option<&dyn DatagramSource>,
    handed_off: &AtomicBool,
) -> Result<(u32, usize, Option<Forward>), UpgradeError> {
    let mut conn = Conn::new(fd, hello_timeout)?;
    let pid = match conn.recv_versioned() {
        Ok((version, Message::Hello { pid }, fds)) if fds.is_empty() => {
            // An older new process: answered in its version, its connections drain.
            conn.set_version(version);
            pid
        }
        Ok((_, other, _)) => {
            let e = UpgradeError::Unexpected {
                got: other.name(),
                expected: "hello without descriptors",
            };
            return Err(answer(&conn, ErrorCode::Protocol, e));
        }
        Err(e @ UpgradeError::VersionMismatch { .. }) => {
            return Err(answer(&conn, ErrorCode::Version, e));
        }
        Err(e @ (UpgradeError::Malformed(_) | UpgradeError::Truncated(_))) => {
            return Err(answer(&conn, ErrorCode::Protocol, e));
        }
        Err(e @ UpgradeError::TooManyDescriptors { .. }) => {
            return Err(answer(&conn, ErrorCode::Protocol, e));
        }
        Err(e) => return Err(e),
    };
    tracing::info!(pid, version = conn.version(), "upgrade requested");
    let sockets = match source.listener_sockets() {
        Ok(s) => s,
        Err(e) => return Err(answer(&conn, ErrorCode::Internal, e.into())),
    };
    let mut records = Vec::new();
    let mut fds = Vec::new();
    for (name, group) in sockets {
        for (worker, fd) in group.into_iter().enumerate() {
            let Some(address) = bound_address(&fd) else {
                tracing::warn!(listener = %name, worker, "not handing over a socket with no address");
                continue;
            };
            let worker = u16::try_from(worker).unwrap_or(u16::MAX);
            records.push(ListenerRecord {
                name: name.clone(),
                address,
                worker,
            });
            fds.push(fd);
        }
    }
    if records.len() > MAX_SOCKETS {
        let e = UpgradeError::TooManyDescriptors {
            got: records.len(),
            max: MAX_SOCKETS,
        };
        return Err(answer(&conn, ErrorCode::Internal, e));
    }
    let count = records.len();
    let mut chunks = records
        .chunks(MAX_FDS_PER_MESSAGE)
        .zip(fds.chunks(MAX_FDS_PER_MESSAGE))
        .peekable();
    if chunks.peek().is_none() {
        conn.send(
            &Message::Listeners {
                records: Vec::new(),
                more: false,
            },
            &[],
        )?;
    }
    while let Some((records, fds)) = chunks.next() {
        let more = chunks.peek().is_some();
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        conn.send(
            &Message::Listeners {
                records: records.to_vec(),
                more,
            },
            &borrowed,
        )?;
    }
    // Duplicates of what went, kept for a roll-back after ready; closed otherwise.
    let kept = take_back.and_then(|take_back| {
        let sockets: std::io::Result<Vec<_>> = records
            .iter()
            .zip(&fds)
            .map(|(r, fd)| Ok((r.name.clone(), fd.try_clone()?)))
            .collect();
        match sockets {
            Ok(sockets) => Some(Fallback { sockets, take_back }),
            Err(error) => {
                tracing::warn!(%error, "cannot keep the listening sockets; no roll-back");
                None
            }
        }
    });
    drop(fds);
    let datagrams = datagrams.filter(|_| conn.version() >= 4);
    let ready = send_datagrams(&conn, datagrams).and_then(|sent| {
        if sent > 0 {
            tracing::info!(sockets = sent, "handed the UDP sockets over");
        }
        conn.set_timeout(ready_timeout)?;
        match conn.recv()? {
            (Message::Ready { handoff_window, .. }, _) => Ok(handoff_window),
            (Message::Error { code, reason }, _) => Err(UpgradeError::Refused { code, reason }),
            (other, _) => {
                let e = UpgradeError::Unexpected {
                    got: other.name(),
                    expected: "ready",
                };
                Err(answer(&conn, ErrorCode::Protocol, e))
            }
        }
    });
    let window = match ready {
        Ok(window) => window,
        Err(e) => {
            if let Some(d) = datagrams {
                d.keep_datagrams();
            }
            return Err(e);
        }
    };
    if let Some(d) = datagrams {
        d.hand_off_datagrams();
    }
    // The path is the new process's from now on: it binds it for the next upgrade.
    let _ = std::fs::remove_file(path);
    // Said before the server is told to hand off: it may drain and stop at once, and
    // whoever waits for it must then find the hand-off recorded.
    handed_off.store(true, Ordering::Release);
    let forward = match window {
        // Version 3: Bolt and Dubbo connections go too.
        Some(window) if conn.version() >= 3 => {
            let (tx, rx) = mpsc::channel();
            source.hand_off_all_connections(window.min(MAX_WINDOW), MAX_UNREAD_BYTES, tx);
            Some(rx)
        }
        Some(window) => {
            let (tx, rx) = mpsc::channel::<(String, OwnedFd, Vec<u8>)>();
            source.hand_off_connections(window.min(MAX_WINDOW), MAX_UNREAD_BYTES, tx);
            Some(relay_idle(rx))
        }
        None => {
            source.hand_off();
            None
        }
    };
    if let Err(error) = conn.send(&Message::Done, &[]) {
        tracing::debug!(%error, "the new process did not wait for done");
        if kept.is_none() {
            // Nobody to forward to: dropping the receiver makes the server drain them.
            return Ok((pid, count, None));
        }
        // Else the forwarding finds it gone and rolls back.
    }
    // The metrics as the hand-off starts; again, final, once drained.
    if forward.is_some() {
        if let Err(error) = handover::send_metrics(&conn, &source.metrics_to_carry()) {
            tracing::debug!(%error, "the new process did not take the metrics");
        }
    }
    Ok((pid, count, forward.map(|rx| (conn, rx, kept))))
}

/// Version 4: sends the UDP sockets of `source` with their forwarding channels, in
/// `datagrams` messages (at least one, empty without a source); returns how many
/// UDP sockets went.
fn send_datagrams(conn: &Conn, source: Option<&dyn DatagramSource>) -> Result<usize, UpgradeError> {
    if conn.version() < 4 {
        return Ok(0);
    }
    let sockets = match source.map(DatagramSource::datagram_sockets).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return Err(answer(conn, ErrorCode::Internal, e.into())),
    };
    let mut records = Vec::new();
    let mut fds = Vec::new();
    let mut count = 0;
    for d in sockets {
        let socket = socket2::SockRef::from(&d.socket);
        let address = match (socket.r#type(), socket.local_addr().map(|a| a.as_socket())) {
            (Ok(t), Ok(Some(a))) if t == socket2::Type::DGRAM => a,
            _ => {
                tracing::warn!(listener = %d.name, worker = d.worker, "not handing over a datagram socket that is not a bound UDP socket");
                continue;
            }
        };
        let record = |role| DatagramRecord {
            name: d.name.clone(),
            address,
            worker: d.worker,
            role,
        };
        records.push(record(DatagramRole::Udp));
        fds.push(d.socket);
        count += 1;
        if let Some((channel, generation)) = d.forward {
            records.push(record(DatagramRole::Forward { generation }));
            fds.push(channel);
        }
    }
    if records.len() > MAX_SOCKETS {
        let e = UpgradeError::TooManyDescriptors {
            got: records.len(),
            max: MAX_SOCKETS,
        };
        return Err(answer(conn, ErrorCode::Internal, e));
    }
    // A forwarding channel travels in the message of its UDP socket.
    let mut start = 0;
    loop {
        let mut end = (start + MAX_FDS_PER_MESSAGE).min(records.len());
        if end < records.len() && records[end].role != DatagramRole::Udp {
            end -= 1;
        }
        let borrowed: Vec<_> = fds[start..end].iter().map(AsFd::as_fd).collect();
        let more = end < records.len();
        conn.send(
            &Message::Datagrams {
                records: records[start..end].to_vec(),
                more,
            },
            &borrowed,
        )?;
        if !more {
            return Ok(count);
        }
        start = end;
    }
}

/// The longest hand-off window a new process may ask for.
const MAX_WINDOW: Duration = Duration::from_secs(60);

/// Tells the peer why, then hands the error back.
fn answer(conn: &Conn, code: ErrorCode, error: UpgradeError) -> UpgradeError {
    let reason = if code == ErrorCode::Version {
        format!("{error}; this process speaks version {VERSION}")
    } else {
        error.to_string()
    };
    let _ = conn.send(&Message::Error { code, reason }, &[]);
    error
}

fn refuse(fd: OwnedFd, code: ErrorCode, reason: &str) {
    tracing::warn!(?code, reason, "upgrade refused");
    if let Ok(conn) = Conn::new(fd, Duration::from_secs(1)) {
        // Read the hello first: closing with it unread would reset the connection,
        // and the peer would see the reset instead of the reason.
        let _ = conn.recv();
        let _ = conn.send(
            &Message::Error {
                code,
                reason: reason.into(),
            },
            &[],
        );
    }
}

/// Where a listening socket is bound, read from the socket.
fn bound_address(fd: &OwnedFd) -> Option<ListenAddress> {
    let local = socket2::SockRef::from(fd).local_addr().ok()?;
    match local.as_socket() {
        Some(a) => Some(ListenAddress::Tcp(a)),
        None => Some(ListenAddress::Unix(local.as_pathname()?.to_path_buf())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running upgrade service of [`UpgradeServer::spawn`]. Dropping it stops the
/// service (and removes the socket file, unless the sockets were handed over).
#[derive(Debug)]
pub struct UpgradeHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl UpgradeHandle {
    /// Whether a new process took the listeners over.
    pub fn handed_off(&self) -> bool {
        self.shared.handed_off.load(Ordering::Acquire)
    }

    /// Stops serving upgrades and waits for the service's thread (an upgrade in
    /// progress completes or fails first) and, after a hand-off, for the last idle
    /// connections to go over: call it once the server returned (drained), never
    /// on a worker of the server, since the hand-over ends only when it drained.
    pub fn stop(mut self) {
        self.stop_and_join();
        if let Some(session) = lock(&self.shared.session).take() {
            let _ = session.join();
        }
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UpgradeHandle {
    /// Stops serving upgrades; a hand-over of connections under way goes on on its
    /// own thread (see [`UpgradeHandle::stop`] to wait for it).
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
