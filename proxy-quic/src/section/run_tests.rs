use std::os::fd::OwnedFd;

use proxy_core::{
    config::{Config, Section},
    Registry, Server,
};
use proxy_upgrade::{
    wire::{DatagramRecord, DatagramRole},
    DatagramSource, ForwardChannel, InheritedDatagram,
};

use super::{QuicRun, QuicRunError};
use crate::{
    handoff::Generation,
    section::{upgrade::Handover, InheritedUdp, QuicSection},
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
    let quic = QuicRun::new(None);
    assert!(quic.local_addrs().is_empty());
    let handoffs = quic.start_on(prepared, &server).expect("started");
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
    let quic = QuicRun::new(None);
    let e = quic.start_on(prepared, &server).expect_err("port in use");
    assert!(matches!(e, QuicRunError::Start(_)), "{e:?}");
    assert!(quic.local_addrs().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
