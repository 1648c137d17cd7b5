//! The protocol on real sockets: an `UpgradeServer` over a fake old process's
//! listeners and an `UpgradeClient`, and raw peers that break the protocol on
//! purpose (garbage, truncation, another version, too many descriptors, sockets that
//! are not what their records say).

use std::{
    io::{IoSlice, IoSliceMut},
    mem::MaybeUninit,
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use proxy_core::config::ListenAddress;
use proxy_upgrade::{
    wire::{self, ErrorCode, ListenerRecord, Message},
    ListenerSource, UpgradeClient, UpgradeError, UpgradeServer,
};
use rustix::net::{
    self as rnet, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// A fresh directory under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pxup-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The old process: listening sockets by name, and whether it was told to hand off.
#[derive(Clone)]
struct Fake {
    sockets: Arc<Vec<(String, Vec<OwnedFd>)>>,
    handed_off: Arc<AtomicBool>,
}

impl ListenerSource for Fake {
    fn listener_sockets(&self) -> std::io::Result<Vec<(String, Vec<OwnedFd>)>> {
        let mut out = Vec::new();
        for (name, fds) in self.sockets.iter() {
            let dups: std::io::Result<Vec<_>> = fds.iter().map(OwnedFd::try_clone).collect();
            out.push((name.clone(), dups?));
        }
        Ok(out)
    }
    fn hand_off(&self) {
        self.handed_off.store(true, Ordering::SeqCst);
    }
}

/// A listening TCP socket on 127.0.0.1 with `SO_REUSEPORT`, on `port` (0: any).
fn tcp_listener(port: u16) -> OwnedFd {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_reuse_port(true).expect("reuse port");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    s.bind(&addr.into()).expect("bind");
    s.listen(16).expect("listen");
    s.into()
}

fn local(fd: &OwnedFd) -> SocketAddr {
    socket2::SockRef::from(fd)
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("tcp address")
}

/// An old process with listener `web` (two sockets of one `SO_REUSEPORT` group) and
/// `uds` (a Unix socket in `dir`).
fn fake(dir: &Dir) -> (Fake, SocketAddr) {
    let first = tcp_listener(0);
    let addr = local(&first);
    let second = tcp_listener(addr.port());
    let uds = std::os::unix::net::UnixListener::bind(dir.join("app.sock")).expect("uds");
    let fake = Fake {
        sockets: Arc::new(vec![
            ("web".into(), vec![first, second]),
            ("uds".into(), vec![uds.into()]),
        ]),
        handed_off: Arc::default(),
    };
    (fake, addr)
}

fn client(path: &Path) -> UpgradeClient {
    UpgradeClient::new(path).timeout(Duration::from_secs(3))
}

fn cloexec(fd: &OwnedFd) -> bool {
    rustix::io::fcntl_getfd(fd)
        .expect("F_GETFD")
        .contains(rustix::io::FdFlags::CLOEXEC)
}

#[test]
fn listeners_round_trip_and_the_old_process_is_told_to_hand_off() {
    let dir = Dir::new();
    let (old, addr) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let mut upgrade = client(&path).connect().expect("upgrade");
    let mut got: Vec<_> = upgrade
        .listeners()
        .iter()
        .map(|l| {
            (
                l.record.name.clone(),
                l.record.worker,
                l.record.address.clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        got,
        vec![
            ("uds".into(), 0, ListenAddress::Unix(dir.join("app.sock"))),
            ("web".into(), 0, ListenAddress::Tcp(addr)),
            ("web".into(), 1, ListenAddress::Tcp(addr)),
        ]
    );
    assert!(upgrade.listeners().iter().all(|l| cloexec(&l.socket)));
    let sockets = upgrade.take_sockets();
    let names: Vec<_> = sockets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["uds", "web", "web"]);

    // The received sockets are the old ones: a connection made now is accepted on them.
    let _client = TcpStream::connect(addr).expect("connect");
    let web: Vec<TcpListener> = sockets
        .into_iter()
        .filter(|(n, _)| n == "web")
        .map(|(_, fd)| TcpListener::from(fd))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    'accepted: loop {
        for l in &web {
            l.set_nonblocking(true).expect("nonblocking");
            if l.accept().is_ok() {
                break 'accepted;
            }
        }
        assert!(std::time::Instant::now() < deadline, "nothing accepted");
        std::thread::sleep(Duration::from_millis(10));
    }

    assert!(!old.handed_off.load(Ordering::SeqCst), "not before ready");
    upgrade.finish().expect("done");
    assert!(old.handed_off.load(Ordering::SeqCst));
    assert!(!path.exists(), "the path is left to the new process");
    // The service stops by itself after a hand-off.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !handle.handed_off() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
}

#[test]
fn a_second_upgrade_meanwhile_is_refused_as_busy_and_an_abandoned_one_changes_nothing() {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let _handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let first = client(&path).connect().expect("first upgrade");
    let second = client(&path).connect().expect_err("a second one meanwhile");
    assert!(second.is_busy(), "{second}");
    assert!(
        second
            .to_string()
            .contains("another upgrade is in progress"),
        "{second}"
    );

    // The first new process goes away without saying ready: nothing changes.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let third = loop {
        match client(&path).connect() {
            Ok(u) => break u,
            Err(e) if e.is_busy() && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(!old.handed_off.load(Ordering::SeqCst));
    assert_eq!(third.listeners().len(), 3);
}

#[test]
fn a_stopped_service_removes_its_socket_and_a_stale_file_is_replaced() {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let busy = UpgradeServer::bind(&path).expect_err("a live socket is not replaced");
    assert!(matches!(busy, UpgradeError::Bind { .. }), "{busy}");
    handle.stop();
    assert!(!path.exists());
    let e = client(&path).connect().expect_err("nobody there");
    assert!(matches!(e, UpgradeError::Connect { .. }), "{e}");
    // A file left by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let _again = UpgradeServer::bind(&path).expect("replaces a stale file");
}

// === raw peers ===

fn seqpacket() -> OwnedFd {
    rnet::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket")
}

fn raw_connect(path: &Path) -> OwnedFd {
    let fd = seqpacket();
    rnet::connect(&fd, &SocketAddrUnix::new(path).expect("addr")).expect("connect");
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(3)),
    )
    .expect("timeout");
    fd
}

fn raw_send(fd: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    rnet::sendmsg(
        fd,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .expect("send");
}

fn raw_recv(fd: &OwnedFd) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; wire::MAX_MESSAGE_BYTES];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(64))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rnet::recvmsg(
        fd,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .expect("recv");
    let fds: usize = control
        .drain()
        .map(|m| match m {
            RecvAncillaryMessage::ScmRights(r) => r.count(),
            _ => 0,
        })
        .sum();
    buf.truncate(got.bytes);
    (buf, fds)
}

/// Sends `bytes` as a new process would, and returns the old process's answer.
fn answer_to(bytes: &[u8]) -> (Message, Arc<AtomicBool>, UpgradeClient, Dir) {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let fd = raw_connect(&path);
    raw_send(&fd, bytes, &[]);
    let (reply, fds) = raw_recv(&fd);
    assert_eq!(fds, 0, "no socket goes to a peer that broke the protocol");
    // Leak the service into the returned client's lifetime: it still serves.
    std::mem::forget(handle);
    (
        wire::decode(&reply).expect("a well-formed answer"),
        old.handed_off,
        client(&path),
        dir,
    )
}

fn assert_refused(m: &Message, want: ErrorCode, text: &str) {
    match m {
        Message::Error { code, reason } => {
            assert_eq!(*code, want, "{reason}");
            assert!(reason.contains(text), "{reason:?} lacks {text:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn garbage_gets_a_protocol_error_and_the_service_keeps_serving() {
    let (m, handed_off, next, _dir) = answer_to(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_refused(&m, ErrorCode::Protocol, "bad magic");
    assert!(!handed_off.load(Ordering::SeqCst));
    let upgrade = next.connect().expect("a proper upgrade afterwards");
    assert_eq!(upgrade.listeners().len(), 3);
}

#[test]
fn a_truncated_hello_gets_a_protocol_error() {
    let hello = wire::encode(&Message::Hello { pid: 1 }).expect("encode");
    let (m, ..) = answer_to(&hello[..hello.len() - 2]);
    assert_refused(&m, ErrorCode::Protocol, "truncated");
}

#[test]
fn another_version_is_refused_naming_ours() {
    let mut hello = wire::encode(&Message::Hello { pid: 1 }).expect("encode");
    hello[5] = 7;
    let (m, ..) = answer_to(&hello);
    assert_refused(&m, ErrorCode::Version, "this process speaks version 1");
}

#[test]
fn a_message_out_of_turn_gets_a_protocol_error() {
    let (m, ..) = answer_to(&wire::encode(&Message::Ready { claimed: 1 }).expect("encode"));
    assert_refused(&m, ErrorCode::Protocol, "unexpected ready");
}

/// A fake old process that answers the hello with `bytes` and `fds`; returns what the
/// client made of it.
fn client_given(bytes: Vec<u8>, fds: Vec<OwnedFd>) -> UpgradeError {
    let dir = Dir::new();
    let path = dir.join("old.sock");
    let listener = seqpacket();
    rnet::bind(&listener, &SocketAddrUnix::new(&path).expect("addr")).expect("bind");
    rnet::listen(&listener, 1).expect("listen");
    let old = std::thread::spawn(move || {
        let conn = rnet::accept_with(&listener, SocketFlags::CLOEXEC).expect("accept");
        let _hello = raw_recv(&conn);
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        raw_send(&conn, &bytes, &borrowed);
        // Keep the connection open until the client is done with it.
        let _ = raw_recv(&conn);
    });
    let e = client(&path).connect().expect_err("the client refuses");
    let _ = old.join();
    e
}

fn listeners_message(records: Vec<ListenerRecord>) -> Vec<u8> {
    let mut out = wire::encode(&Message::Listeners {
        records: Vec::new(),
        more: false,
    })
    .expect("encode");
    // Encode the records by hand so that more than the limit can be sent.
    out.truncate(wire::HEADER_BYTES);
    let mut payload = (records.len() as u16).to_be_bytes().to_vec();
    for r in &records {
        let one = wire::encode(&Message::Listeners {
            records: vec![r.clone()],
            more: false,
        })
        .expect("encode");
        payload.extend_from_slice(&one[wire::HEADER_BYTES + 2..]);
    }
    out[8..12].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn web(worker: u16, addr: SocketAddr) -> ListenerRecord {
    ListenerRecord {
        name: "web".into(),
        address: ListenAddress::Tcp(addr),
        worker,
    }
}

#[test]
fn too_many_descriptors_in_a_message_are_refused_and_closed() {
    let fds: Vec<OwnedFd> = (0..=wire::MAX_FDS_PER_MESSAGE)
        .map(|_| tcp_listener(0))
        .collect();
    let records = fds
        .iter()
        .enumerate()
        .map(|(i, fd)| web(i as u16, local(fd)))
        .collect();
    let e = client_given(listeners_message(records), fds);
    assert!(matches!(e, UpgradeError::TooManyDescriptors { .. }), "{e}");
}

#[test]
fn records_and_descriptors_must_agree() {
    let fd = tcp_listener(0);
    let records = vec![web(0, local(&fd)), web(1, local(&fd))];
    let e = client_given(listeners_message(records), vec![fd]);
    assert!(
        matches!(e, UpgradeError::Malformed(ref m) if m.contains("2 listener records with 1 descriptors")),
        "{e}"
    );
}

#[test]
fn a_socket_that_is_not_what_its_record_says_is_refused() {
    // Bound elsewhere than its record says.
    let fd = tcp_listener(0);
    let elsewhere = local(&tcp_listener(0));
    let e = client_given(listeners_message(vec![web(0, elsewhere)]), vec![fd]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("bound to")),
        "{e}"
    );
    // Not listening.
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("addr");
    let e = client_given(listeners_message(vec![web(0, addr)]), vec![s.into()]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("not listening")),
        "{e}"
    );
    // Twice the same worker.
    let a = tcp_listener(0);
    let b = tcp_listener(local(&a).port());
    let records = vec![web(0, local(&a)), web(0, local(&a))];
    let e = client_given(listeners_message(records), vec![a, b]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("twice")),
        "{e}"
    );
}

#[test]
fn garbage_from_the_old_process_is_an_error_not_a_panic() {
    for bytes in [
        b"\x00".to_vec(),
        vec![0xff; 100],
        b"PXUP\x00\x01\x02\x00\x00\x00\x00\x09abc".to_vec(),
    ] {
        let e = client_given(bytes, Vec::new());
        assert!(
            matches!(e, UpgradeError::Malformed(_) | UpgradeError::Truncated(_)),
            "{e}"
        );
    }
    let e = client_given(
        wire::encode(&Message::Error {
            code: ErrorCode::Internal,
            reason: "out of descriptors".into(),
        })
        .expect("encode"),
        Vec::new(),
    );
    assert!(
        matches!(e, UpgradeError::Refused { .. }) && e.to_string().contains("out of descriptors"),
        "{e}"
    );
}
