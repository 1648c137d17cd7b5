use std::os::fd::OwnedFd;

use proxy_core::{
    config::{Config, Section},
    Registry, Server,
};
use proxy_upgrade::{
    wire::{DatagramRecord, DatagramRole},
    DatagramSource, ForwardChannel, InheritedDatagram,
};

use super::{lock, QuicRun, QuicRunError};
use crate::{
    handoff::Generation,
    section::{upgrade::Handover, InheritedUdp, Prepared, QuicSection},
};

const CONFIG: &str = "listeners:\n  - name: web\n    address: 127.0.0.1:0\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes: [{match: {path: {prefix: /}}, cluster: app}]\nclusters: [{name: app, endpoints: []}]\n";

/// A config serving `web` over HTTP/3 on `address`, its certificate in a fresh
/// directory (removed by the caller).
fn config(tag: &str, address: &str) -> (Config, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("quic-run-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.join("server.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), cert.key_pair.serialize_pem()).expect("write");
    let mut config = Config::from_yaml(CONFIG).expect("config");
    config.base_dir = Some(dir.clone());
    config.quic = Some(Section::from_value(serde_json::json!({"h3": [{
        "serves": "web", "address": address,
        "certificate": {"cert": "server.pem", "key": "server.key"}}]})));
    (config, dir)
}

fn udp() -> std::net::UdpSocket {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("udp")
}

fn record(name: &str, socket: &std::net::UdpSocket) -> DatagramRecord {
    DatagramRecord {
        name: name.into(),
        address: socket.local_addr().expect("addr"),
        worker: 0,
        role: DatagramRole::Udp,
    }
}

#[test]
fn an_inherited_datagram_keeps_its_name_socket_and_generation() {
    let socket = udp();
    let (forward, _peer) = std::os::unix::net::UnixDatagram::pair().expect("pair");
    let inherited = InheritedUdp::from(InheritedDatagram {
        record: record("web-h3", &socket),
        socket: OwnedFd::from(socket),
        forward: Some(ForwardChannel {
            socket: OwnedFd::from(forward),
            generation: 1,
        }),
    });
    assert_eq!(inherited.name, "web-h3");
    assert_eq!(inherited.forward.map(|(_, g)| g), Generation::from_bit(1));
}

#[test]
fn a_forwarding_channel_of_an_unknown_generation_is_dropped() {
    let socket = udp();
    let (forward, _peer) = std::os::unix::net::UnixDatagram::pair().expect("pair");
    let inherited = InheritedUdp::from(InheritedDatagram {
        record: record("web-h3", &socket),
        socket: OwnedFd::from(socket),
        forward: Some(ForwardChannel {
            socket: OwnedFd::from(forward),
            generation: 7,
        }),
    });
    assert!(inherited.forward.is_none());
}

#[test]
fn started_listeners_are_handed_over_with_a_forwarding_channel() {
    let (config, dir) = config("handover", "127.0.0.1:0");
    let prepared = QuicSection::from_config(&config)
        .expect("section")
        .expect("some")
        .prepare(&config)
        .expect("prepared");
    let server = Server::new(config, Registry::default()).expect("server");
    let quic = QuicRun::new(Some(prepared));
    assert!(quic.local_addrs().is_empty());
    let handoffs = quic
        .start_on(&server, None)
        .expect("started")
        .expect("listeners");
    let addrs = quic.local_addrs();
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].0, "web-h3");
    assert_ne!(addrs[0].1.port(), 0, "bound");

    let handover = Handover(handoffs);
    let given = handover.datagram_sockets().expect("sockets");
    assert_eq!(given.len(), 1);
    assert_eq!(given[0].name, "web-h3");
    let bound = socket2::SockRef::from(&given[0].socket)
        .local_addr()
        .expect("addr")
        .as_socket();
    assert_eq!(bound, Some(addrs[0].1), "the listener's own socket");
    assert!(given[0].forward.is_some(), "a forwarding channel");
    // The upgrade was abandoned: the listener reads its socket on and stops on drop.
    handover.keep_datagrams();
    drop(quic);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_listener_that_cannot_bind_fails_the_start() {
    let taken = udp();
    let address = taken.local_addr().expect("addr").to_string();
    let (config, dir) = config("bind", &address);
    let prepared = QuicSection::from_config(&config)
        .expect("section")
        .expect("some")
        .prepare(&config)
        .expect("prepared");
    let server = Server::new(config, Registry::default()).expect("server");
    let quic = QuicRun::new(Some(prepared));
    let e = quic.start_on(&server, None).expect_err("port in use");
    assert!(matches!(e, QuicRunError::Start(_)), "{e:?}");
    assert!(quic.local_addrs().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

fn prepared(config: &Config) -> Prepared {
    QuicSection::from_config(config)
        .expect("section")
        .expect("some")
        .prepare(config)
        .expect("prepared")
}

/// Waits up to 10 s for `done`.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[test]
fn started_again_after_a_roll_back_the_listeners_take_the_sockets_over() {
    let (config, dir) = config("again", "127.0.0.1:0");
    let quic = QuicRun::new(Some(prepared(&config)));
    let first = Server::new(config.clone(), Registry::default()).expect("server");
    let before = quic.start_on(&first, None).expect("started").expect("some");
    let addrs = quic.local_addrs();

    // The hook runs again for the server taken back: the listeners start again on
    // the same socket, and those before hand over to them.
    let taken_back = Server::new(config.clone(), Registry::default()).expect("server");
    let again = quic
        .start_on(&taken_back, None)
        .expect("no error")
        .expect("started again");
    assert_eq!(quic.local_addrs(), addrs, "the same UDP socket");
    let ((_, old), (_, new)) = (&before[0], &again[0]);
    assert!(old.is_handed_off());
    assert_eq!(new.generation(), old.generation().next());
    // The listener before had no connection: it drains at once and ends, its
    // channel closes, and the new one may be handed over in the next upgrade.
    assert!(eventually(|| old.has_ended()));
    assert!(eventually(|| new.prepare().is_ok()), "still forwarding");
    new.abandon();
    assert_eq!(
        lock(&quic.listeners).draining.len(),
        1,
        "let go of at a start"
    );

    // A second roll-back: the listeners before (ended, reaped now) go again.
    let third = Server::new(config, Registry::default()).expect("server");
    let last = quic
        .start_on(&third, None)
        .expect("no error")
        .expect("started again");
    assert_eq!(quic.local_addrs(), addrs);
    assert!(new.is_handed_off());
    assert_eq!(last[0].1.generation(), old.generation());
    assert_eq!(
        lock(&quic.listeners).draining.len(),
        1,
        "the first listeners, ended, were let go of"
    );
    drop(quic);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_a_section_nothing_starts_again() {
    let (config, dir) = config("none", "127.0.0.1:0");
    let quic = QuicRun::new(None);
    let server = Server::new(config, Registry::default()).expect("server");
    assert!(quic.start_on(&server, None).expect("nothing").is_none());
    assert!(quic.start_on(&server, None).expect("nothing").is_none());
    assert!(quic.local_addrs().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
