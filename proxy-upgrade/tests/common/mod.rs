//! What the socket tests share: temp dirs, a fake old process, listening sockets, and
//! raw `SOCK_SEQPACKET` peers that send whatever bytes and descriptors a test wants.

#![allow(dead_code, unreachable_pub)]

use std::{
    io::{IoSlice, IoSliceMut},
    mem::MaybeUninit,
    net::SocketAddr,
    os::fd::{BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use proxy_upgrade::{wire, ListenerSource, UpgradeClient};
use rustix::net::{
    self as rnet, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// A fresh directory under the system temp dir, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pxup-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
    pub fn join(&self, name: &str) -> PathBuf {
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
pub struct Fake {
    pub sockets: Arc<Vec<(String, Vec<OwnedFd>)>>,
    pub handed_off: Arc<AtomicBool>,
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
pub fn tcp_listener(port: u16) -> OwnedFd {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_reuse_port(true).expect("reuse port");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    s.bind(&addr.into()).expect("bind");
    s.listen(16).expect("listen");
    s.into()
}

pub fn local(fd: &OwnedFd) -> SocketAddr {
    socket2::SockRef::from(fd)
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("tcp address")
}

/// An old process with listener `web` (two sockets of one `SO_REUSEPORT` group) and
/// `uds` (a Unix socket in `dir`).
pub fn fake(dir: &Dir) -> (Fake, SocketAddr) {
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

pub fn client(path: &Path) -> UpgradeClient {
    UpgradeClient::new(path).timeout(Duration::from_secs(3))
}

pub fn cloexec(fd: &OwnedFd) -> bool {
    rustix::io::fcntl_getfd(fd)
        .expect("F_GETFD")
        .contains(rustix::io::FdFlags::CLOEXEC)
}

pub fn seqpacket() -> OwnedFd {
    rnet::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket")
}

pub fn raw_connect(path: &Path) -> OwnedFd {
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

pub fn raw_send(fd: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
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

pub fn raw_recv(fd: &OwnedFd) -> (Vec<u8>, usize) {
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

/// A fake old process at `dir/old.sock` speaking raw `SOCK_SEQPACKET` (so it can
/// send what a real one never would): on its own thread it accepts one connection,
/// reads the new process's hello, then runs `script` on the connection (closed when
/// `script` returns). Returns the path to connect to and the thread.
pub fn raw_old_process(
    dir: &Dir,
    script: impl FnOnce(OwnedFd) + Send + 'static,
) -> (PathBuf, std::thread::JoinHandle<()>) {
    let path = dir.join("old.sock");
    let listener = seqpacket();
    rnet::bind(&listener, &SocketAddrUnix::new(&path).expect("addr")).expect("bind");
    rnet::listen(&listener, 1).expect("listen");
    let old = std::thread::spawn(move || {
        let conn = rnet::accept_with(&listener, SocketFlags::CLOEXEC).expect("accept");
        let _hello = raw_recv(&conn);
        script(conn);
    });
    (path, old)
}

/// The address of `server`'s TCP listener `web`, once it listens (within 10 s).
pub fn web_address(server: &proxy_core::Server) -> SocketAddr {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((_, a)) = server
            .listener_addresses()
            .into_iter()
            .find(|(n, _)| n == "web")
        {
            return a.parse().expect("tcp address");
        }
        assert!(std::time::Instant::now() < deadline, "not started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connects, retrying for a while when the service is still busy with an upgrade that
/// just failed (it frees itself right after answering).
pub fn connect_when_free(client: &UpgradeClient) -> proxy_upgrade::Upgrade {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match client.connect() {
            Ok(u) => return u,
            Err(e) if e.is_busy() && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}
