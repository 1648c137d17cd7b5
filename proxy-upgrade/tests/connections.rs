//! Versions 2 and 3 on real sockets: live connections handed over by a fake old
//! process (its `hand_off_all_connections` sends accepted TCP connections with unread
//! bytes and, for some, a protocol; its counters and histograms go too), received and checked by the
//! client; records that break the protocol are refused.

use crate::common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::{AsFd, OwnedFd},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use common::*;
use proxy_core::metrics::CarriedValue;
use proxy_upgrade::{
    handover::Received,
    wire::{self, ConnectionRecord, Message},
    HandedOffConnection, ListenerSource, UpgradeError, UpgradeServer,
};

/// An old process whose server hands out the connections it was given.
#[derive(Clone)]
struct Handing {
    listeners: Fake,
    connections: Arc<Mutex<Vec<HandedOffConnection>>>,
    window: Arc<Mutex<Option<Duration>>>,
}

impl ListenerSource for Handing {
    fn listener_sockets(&self) -> std::io::Result<Vec<(String, Vec<OwnedFd>)>> {
        self.listeners.listener_sockets()
    }
    fn hand_off(&self) {
        self.listeners.hand_off();
    }
    fn metrics_to_carry(&self) -> Vec<(String, CarriedValue)> {
        vec![
            (
                "proxy_listener_connections_total{listener=\"web\"}".into(),
                CarriedValue::Integer(41),
            ),
            (
                "proxy_listener_request_duration_seconds_sum{listener=\"web\"}".into(),
                CarriedValue::Float(2.5),
            ),
        ]
    }
    fn hand_off_all_connections(
        &self,
        window: Duration,
        _max_unread_bytes: usize,
        sink: mpsc::Sender<HandedOffConnection>,
    ) {
        *self.window.lock().expect("lock") = Some(window);
        self.hand_off();
        let connections = std::mem::take(&mut *self.connections.lock().expect("lock"));
        std::thread::spawn(move || {
            for c in connections {
                std::thread::sleep(Duration::from_millis(10));
                sink.send(c).expect("send");
            }
            // The sender goes: the server drained.
        });
    }
}

#[test]
fn idle_connections_go_over_with_their_unread_bytes_and_keep_working() {
    let dir = Dir::new();
    let (listeners, addr) = fake(&dir);
    let app = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut clients = Vec::new();
    let mut handed = Vec::new();
    for i in 0..3u8 {
        let client = TcpStream::connect(app.local_addr().expect("addr")).expect("connect");
        let (server_side, _) = app.accept().expect("accept");
        handed.push(HandedOffConnection {
            listener: "web".to_string(),
            socket: OwnedFd::from(server_side),
            unread: vec![b'a' + i; i as usize * 5],
            // The second is a Bolt connection with half a frame read.
            protocol: (i == 1).then(|| "bolt".to_string()),
            layer_state: None,
        });
        clients.push(client);
    }
    let old = Handing {
        listeners,
        connections: Arc::new(Mutex::new(handed)),
        window: Arc::default(),
    };
    let path = dir.join("upgrade.sock");
    let handle = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");
    let mut upgrade = client(&path)
        .handoff_window(Duration::from_millis(750))
        .connect()
        .expect("upgrade");
    assert_eq!(upgrade.version(), wire::VERSION);
    let _sockets = upgrade.take_sockets();
    let mut handover = upgrade.finish_handing_over().expect("finish");
    let mut got = Vec::new();
    let mut metrics = Vec::new();
    while let Some(r) = handover.receive().expect("connection") {
        match r {
            Received::Connection(c) => {
                assert!(cloexec(&c.socket));
                got.push(c);
            }
            Received::Metrics(m) => metrics.push(m),
            _ => panic!("unknown"),
        }
    }
    assert_eq!(handover.received(), 3);
    // Once as the hand-off starts, once drained; the histogram's sum a float.
    let expected = old.metrics_to_carry();
    assert_eq!(metrics, vec![expected.clone(), expected]);
    assert_eq!(
        *old.window.lock().expect("lock"),
        Some(Duration::from_millis(750))
    );
    for (i, (c, client)) in got.into_iter().zip(&mut clients).enumerate() {
        assert_eq!(c.record.listener, "web");
        assert_eq!(c.record.peer, Some(client.local_addr().expect("addr")));
        assert_eq!(c.record.unread, vec![b'a' + i as u8; i * 5]);
        assert_eq!(c.record.protocol.as_deref(), (i == 1).then_some("bolt"));
        // The same connection: what the client writes, the new side reads.
        let mut server_side = TcpStream::from(c.socket);
        server_side.set_nonblocking(false).expect("blocking");
        client.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        server_side.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"ping");
        server_side.write_all(b"pong").expect("write");
        client.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"pong");
    }
    handle.stop();
    let _ = addr;
}

/// A fake old process that, after the listeners, ready and done, sends `then` (a
/// message and its descriptors) and closes; returns what the client's hand-over
/// made of it.
fn handover_given(then: Vec<(Vec<u8>, Vec<OwnedFd>)>) -> Result<usize, UpgradeError> {
    let dir = Dir::new();
    let (path, old) = raw_old_process(&dir, move |conn| {
        let empty = Message::Listeners {
            records: Vec::new(),
            more: false,
        };
        raw_send(&conn, &wire::encode(&empty).expect("encode"), &[]);
        let no_udp = Message::Datagrams {
            records: Vec::new(),
            more: false,
        };
        raw_send(&conn, &wire::encode(&no_udp).expect("encode"), &[]);
        let _ready = raw_recv(&conn);
        raw_send(&conn, &wire::encode(&Message::Done).expect("encode"), &[]);
        for (bytes, fds) in then {
            let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
            raw_send(&conn, &bytes, &borrowed);
        }
        // Closes: the client reads what was queued, then the end of the stream.
    });
    let mut handover = client(&path)
        .connect()
        .expect("connect")
        .finish_handing_over()
        .expect("finish");
    let mut n = 0;
    let result = loop {
        match handover.next_connection() {
            Ok(Some(_)) => n += 1,
            Ok(None) => break Ok(n),
            Err(e) => break Err(e),
        }
    };
    drop(handover);
    old.join().expect("old");
    result
}

fn record(peer: Option<std::net::SocketAddr>) -> Vec<u8> {
    wire::encode(&Message::Connection(ConnectionRecord {
        listener: "web".into(),
        peer,
        unread: b"GET".to_vec(),
        protocol: None,
        layer_state: None,
    }))
    .expect("encode")
}

fn end(count: u32) -> Vec<u8> {
    wire::encode(&Message::End { count }).expect("encode")
}

/// A connected pair: (the accepted side's socket, its peer address, the client).
fn accepted() -> (OwnedFd, std::net::SocketAddr, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, peer) = l.accept().expect("accept");
    (s.into(), peer, client)
}

#[test]
fn a_good_connection_and_end_count_pass() {
    let (fd, peer, _client) = accepted();
    let got = handover_given(vec![(record(Some(peer)), vec![fd]), (end(1), vec![])]);
    assert_eq!(got.expect("hand-over"), 1);
}

#[test]
fn a_record_without_its_socket_is_malformed() {
    let err = handover_given(vec![(record(None), vec![])]).expect_err("refused");
    assert!(matches!(err, UpgradeError::Malformed(_)), "{err}");
}

#[test]
fn a_socket_that_is_not_the_records_peer_is_refused() {
    let (fd, peer, _client) = accepted();
    let wrong = std::net::SocketAddr::new(peer.ip(), peer.port().wrapping_add(1));
    let err = handover_given(vec![(record(Some(wrong)), vec![fd])]).expect_err("refused");
    assert!(err.to_string().contains("its peer is"), "{err}");
    // A listening socket is no connection.
    let err = handover_given(vec![(record(None), vec![tcp_listener(0)])]).expect_err("refused");
    assert!(err.to_string().contains("listening"), "{err}");
}

#[test]
fn an_end_that_miscounts_is_malformed_and_an_early_close_keeps_what_came() {
    let err = handover_given(vec![(end(2), vec![])]).expect_err("refused");
    assert!(err.to_string().contains("end says 2"), "{err}");
    let (fd, peer, _client) = accepted();
    // The old process exits after one connection, without end.
    let got = handover_given(vec![(record(Some(peer)), vec![fd])]);
    assert_eq!(got.expect("hand-over"), 1);
}

#[test]
fn a_message_out_of_turn_stops_the_hand_over() {
    let hello = wire::encode(&Message::Hello { pid: 1 }).expect("encode");
    let err = handover_given(vec![(hello, vec![])]).expect_err("refused");
    assert!(
        matches!(err, UpgradeError::Unexpected { got: "hello", .. }),
        "{err}"
    );
}

#[test]
fn a_histogram_sum_that_is_not_a_finite_non_negative_number_stops_the_hand_over() {
    let sum = "proxy_route_request_duration_seconds_sum{route=\"r\"}";
    let good = wire::encode(&Message::Metrics {
        samples: vec![(sum.into(), CarriedValue::Float(0.75))],
        more: false,
    })
    .expect("encode");
    // A good sum passes.
    assert_eq!(
        handover_given(vec![(good.clone(), vec![]), (end(0), vec![])]).expect("hand-over"),
        0
    );
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        let mut bytes = good.clone();
        let at = bytes.len() - 8;
        bytes[at..].copy_from_slice(&bad.to_bits().to_be_bytes());
        let err = handover_given(vec![(bytes, vec![]), (end(0), vec![])]).expect_err("refused");
        assert!(
            matches!(&err, UpgradeError::Malformed(why) if why.contains(sum)),
            "{bad}: {err}"
        );
    }
}
