//! Version 4 on real sockets: QUIC's UDP sockets and their forwarding channels go
//! over with the listeners, are checked on receipt (a wrong kind is refused), and
//! the old process is told when to stop reading them, or that the upgrade was
//! abandoned.

use crate::common;

use std::{
    net::UdpSocket,
    os::fd::{AsFd, OwnedFd},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::*;
use proxy_upgrade::{
    wire::{self, DatagramRecord, DatagramRole, Message},
    DatagramSource, HandedOffDatagram, UpgradeError, UpgradeServer,
};
use rustix::net::{self as rnet, SocketFlags};

/// An old process's QUIC listener: one UDP socket, a forwarding channel per upgrade
/// (its own end kept), and what it was told.
#[derive(Clone)]
struct Quic {
    udp: Arc<UdpSocket>,
    kept_ends: Arc<std::sync::Mutex<Vec<OwnedFd>>>,
    handed_off: Arc<AtomicUsize>,
    kept: Arc<AtomicUsize>,
}

impl Quic {
    fn new() -> Self {
        Self {
            udp: Arc::new(UdpSocket::bind("127.0.0.1:0").expect("udp")),
            kept_ends: Arc::default(),
            handed_off: Arc::default(),
            kept: Arc::default(),
        }
    }
}

impl DatagramSource for Quic {
    fn datagram_sockets(&self) -> std::io::Result<Vec<HandedOffDatagram>> {
        let (ours, theirs) = rnet::socketpair(
            rnet::AddressFamily::UNIX,
            rnet::SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        self.kept_ends.lock().expect("lock").push(ours);
        Ok(vec![HandedOffDatagram {
            name: "h3".into(),
            worker: 0,
            socket: OwnedFd::from(self.udp.try_clone()?),
            forward: Some((theirs, 1)),
        }])
    }

    fn hand_off_datagrams(&self) {
        self.handed_off.fetch_add(1, Ordering::SeqCst);
    }

    fn keep_datagrams(&self) {
        self.kept.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn udp_sockets_and_their_channels_round_trip_and_the_old_process_stops_reading_at_ready() {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let quic = Quic::new();
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .datagrams(quic.clone())
        .spawn(old.clone())
        .expect("spawn");
    let mut upgrade = client(&path).connect().expect("upgrade");
    assert_eq!(upgrade.listeners().len(), 3, "the listeners come as before");
    let mut udp = upgrade.take_datagrams();
    assert_eq!(udp.len(), 1);
    let d = udp.pop().expect("one");
    let addr = quic.udp.local_addr().expect("addr");
    assert_eq!(
        (d.record.name.as_str(), d.record.worker, d.address()),
        ("h3", 0, addr)
    );
    assert!(cloexec(&d.socket));
    let forward = d.forward.expect("a forwarding channel");
    assert_eq!(forward.generation, 1);
    assert!(cloexec(&forward.socket));

    // The UDP socket received is the old one: a datagram to its address is read on it.
    let received = UdpSocket::from(d.socket);
    received
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client.send_to(b"quic", addr).expect("send");
    let mut buf = [0u8; 16];
    let (n, from) = received.recv_from(&mut buf).expect("recv");
    assert_eq!(
        (&buf[..n], from),
        (&b"quic"[..], client.local_addr().expect("a"))
    );
    // The channel reaches the old process's end.
    rnet::send(&forward.socket, b"fwd", rnet::SendFlags::NOSIGNAL).expect("forward");
    let ours = quic
        .kept_ends
        .lock()
        .expect("lock")
        .pop()
        .expect("kept end");
    let n = rnet::recv(&ours, &mut buf, rnet::RecvFlags::empty()).expect("channel");
    assert_eq!(&buf[..n.0], b"fwd");

    assert_eq!(
        quic.handed_off.load(Ordering::SeqCst),
        0,
        "not before ready"
    );
    upgrade.finish().expect("done");
    assert_eq!(quic.handed_off.load(Ordering::SeqCst), 1);
    assert_eq!(quic.kept.load(Ordering::SeqCst), 0);
    assert!(old.handed_off.load(Ordering::SeqCst));
    handle.stop();
}

#[test]
fn an_abandoned_upgrade_keeps_the_udp_sockets_and_untaken_ones_are_closed() {
    let dir = Dir::new();
    let (old, _) = fake(&dir);
    let quic = Quic::new();
    let path = dir.join("upgrade.sock");
    let _handle = UpgradeServer::bind(&path)
        .expect("bind")
        .datagrams(quic.clone())
        .spawn(old.clone())
        .expect("spawn");
    let first = client(&path).connect().expect("first");
    assert_eq!(first.datagrams().len(), 1);
    drop(first);
    let second = connect_when_free(&client(&path));
    assert_eq!(quic.kept.load(Ordering::SeqCst), 1, "told once abandoned");
    assert_eq!(quic.handed_off.load(Ordering::SeqCst), 0);
    // The first upgrade's channel: its new end went with the new process.
    let first_end = quic.kept_ends.lock().expect("lock").remove(0);
    let n = rnet::recv(&first_end, &mut [0u8; 4], rnet::RecvFlags::DONTWAIT).expect("eof");
    assert_eq!(n.0, 0, "the new process's end is closed");
    // Not taken: closed at ready.
    second.finish().expect("done");
    let second_end = quic.kept_ends.lock().expect("lock").pop().expect("end");
    let n = rnet::recv(&second_end, &mut [0u8; 4], rnet::RecvFlags::DONTWAIT).expect("eof");
    assert_eq!(n.0, 0, "a channel not taken is closed");
}

/// A fake old process that sends no listeners and then `datagrams` with `fds`.
fn client_given(records: Vec<DatagramRecord>, fds: Vec<OwnedFd>) -> UpgradeError {
    let dir = Dir::new();
    let (path, old) = raw_old_process(&dir, move |conn| {
        let none = Message::Listeners {
            records: Vec::new(),
            more: false,
        };
        raw_send(&conn, &wire::encode(&none).expect("encode"), &[]);
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        let m = Message::Datagrams {
            records,
            more: false,
        };
        raw_send(&conn, &wire::encode(&m).expect("encode"), &borrowed);
        let _ = raw_recv(&conn);
    });
    let e = client(&path).connect().expect_err("the client refuses");
    let _ = old.join();
    e
}

fn record(address: std::net::SocketAddr, role: DatagramRole) -> DatagramRecord {
    DatagramRecord {
        name: "h3".into(),
        address,
        worker: 0,
        role,
    }
}

#[test]
fn a_socket_of_the_wrong_kind_is_refused() {
    // A TCP listener announced as a UDP socket.
    let tcp = tcp_listener(0);
    let e = client_given(vec![record(local(&tcp), DatagramRole::Udp)], vec![tcp]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("SOCK_DGRAM")),
        "{e}"
    );
    // A UDP socket bound elsewhere than its record says.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let elsewhere = UdpSocket::bind("127.0.0.1:0")
        .expect("udp")
        .local_addr()
        .expect("a");
    let e = client_given(vec![record(elsewhere, DatagramRole::Udp)], vec![udp.into()]);
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("bound to")),
        "{e}"
    );
    // A UDP socket announced as a forwarding channel, and a channel with no UDP
    // socket before it.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = udp.local_addr().expect("a");
    let fake_channel = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let e = client_given(
        vec![
            record(addr, DatagramRole::Udp),
            record(addr, DatagramRole::Forward { generation: 0 }),
        ],
        vec![udp.into(), fake_channel.into()],
    );
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("SEQPACKET")),
        "{e}"
    );
    let (channel, _peer) = rnet::socketpair(
        rnet::AddressFamily::UNIX,
        rnet::SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("pair");
    let e = client_given(
        vec![record(addr, DatagramRole::Forward { generation: 0 })],
        vec![channel],
    );
    assert!(
        matches!(e, UpgradeError::BadSocket { ref why, .. } if why.contains("not after its UDP socket")),
        "{e}"
    );
    // Records and descriptors must agree.
    let e = client_given(vec![record(addr, DatagramRole::Udp)], Vec::new());
    assert!(matches!(e, UpgradeError::Malformed(_)), "{e}");
}
