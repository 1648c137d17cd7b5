//! The forwarder against bad and hostile input on real sockets (127.0.0.1), with
//! plain UDP sockets as the servers so every forwarded byte can be checked:
//! garbage is dropped and counted, a flood of Initials from one IP is held to its
//! share of flows, idle flows expire, and replies from strangers are not relayed;
//! a dual-stack listener serves IPv4 clients.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use proxy_quic::lb::{Forwarder, ForwarderBuilder, Routes, StatsSnapshot};
use proxy_quic::{CidFormat, ConfigId, Decoder, Nonce, ServerId};
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout, Instant};

fn format() -> CidFormat {
    CidFormat::new(ConfigId::new(1).expect("id"), 2, 6, None, true).expect("format")
}

/// A short-header packet to `server_id`, 40 octets.
fn short_to(server_id: ServerId) -> Vec<u8> {
    let cid = format()
        .encode(&server_id, &Nonce::new(&[7; 6]).expect("nonce"), 0)
        .expect("cid");
    let mut p = vec![0x40];
    p.extend_from_slice(cid.as_bytes());
    p.resize(40, 0x55);
    p
}

/// A version-1 Initial with a client-chosen DCID, padded to `len`.
fn initial(len: usize) -> Vec<u8> {
    let mut p = vec![0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0];
    p.resize(len, 0);
    p
}

struct Setup {
    lb: Forwarder,
    servers: Vec<(ServerId, UdpSocket)>,
}

async fn setup(builder: impl FnOnce(Routes) -> ForwarderBuilder) -> Setup {
    setup_at("127.0.0.1:0", builder).await
}

async fn setup_at(listen: &str, builder: impl FnOnce(Routes) -> ForwarderBuilder) -> Setup {
    let mut servers = Vec::new();
    for i in 1..=2u8 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind server");
        servers.push((ServerId::new(&[0x0a, i]).expect("id"), socket));
    }
    let mut decoder = Decoder::new();
    decoder.insert(format());
    let addrs = servers
        .iter()
        .map(|(id, s)| (*id, s.local_addr().expect("addr")));
    let routes = Routes::new(decoder, addrs).expect("routes");
    let lb = builder(routes)
        .bind(listen.parse().expect("addr"))
        .await
        .expect("forwarder");
    Setup { lb, servers }
}

/// Waits until `done` holds of the stats, or fails with them after 5 s.
async fn wait_for(lb: &Forwarder, done: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = lb.stats().snapshot();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stats never settled: {s:?}");
        sleep(Duration::from_millis(5)).await;
    }
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 4096];
    let (n, from) = timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("nothing received")
        .expect("recv");
    buf.truncate(n);
    (buf, from)
}

#[tokio::test]
async fn garbage_is_dropped_and_counted_and_good_packets_still_pass() {
    let Setup { lb, servers } = setup(ForwarderBuilder::new).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let to = lb.local_addr();
    let bad: [Vec<u8>; 6] = [
        vec![],                                           // empty
        vec![0x40; 5],                                    // short header with no room for a sample
        vec![0xc0, 0, 0, 0, 1, 30, 1, 2],                 // long header cut inside the DCID
        initial(1199),                                    // Initial below 1200 octets
        vec![0x80, 0, 0, 0, 0, 0, 0],                     // version negotiation from a client
        [&[0xe0, 0, 0, 0, 1, 21][..], &[9; 40]].concat(), // 21-octet DCID
    ];
    for p in &bad {
        client.send_to(p, to).await.expect("send");
    }
    let oversize = vec![0x40; proxy_quic::lb::MAX_DATAGRAM + 1];
    client.send_to(&oversize, to).await.expect("send");
    let s = wait_for(&lb, |s| s.received == 7).await;
    assert_eq!(s.dropped, [1, 2, 1, 1, 1], "{s:?}");
    assert_eq!(s.dropped_oversize, 1);

    // A good packet for server 2 reaches exactly server 2, byte for byte.
    let packet = short_to(servers[1].0);
    client.send_to(&packet, to).await.expect("send");
    let (got, flow) = recv(&servers[1].1).await;
    assert_eq!(got, packet);
    assert_eq!(
        wait_for(&lb, |s| s.routed_by_cid == 1).await.flows_active,
        1
    );

    // The server's answer goes back to the client from the forwarder's address.
    servers[1]
        .1
        .send_to(b"reply", flow)
        .await
        .expect("send reply");
    let (got, from) = recv(&client).await;
    assert_eq!((got.as_slice(), from), (&b"reply"[..], to));

    // A stranger writing to the flow's socket is not relayed.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    stranger.send_to(b"spoof", flow).await.expect("send");
    wait_for(&lb, |s| s.dropped_reply_unknown_source == 1).await;
    servers[1]
        .1
        .send_to(b"second", flow)
        .await
        .expect("send reply");
    assert_eq!(recv(&client).await.0, b"second");
}

#[tokio::test]
async fn a_flood_from_one_ip_gets_its_share_and_idle_flows_expire() {
    let Setup { lb, servers } = setup(|routes| {
        ForwarderBuilder::new(routes)
            .max_flows_per_ip(NonZeroU32::new(3))
            .idle_timeout(Duration::from_millis(100))
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        client
            .send_to(&initial(1200), lb.local_addr())
            .await
            .expect("send");
        clients.push(client);
    }
    let s = wait_for(&lb, |s| s.received == 8).await;
    assert_eq!((s.flows_opened, s.dropped_flow_limit), (3, 5), "{s:?}");
    assert_eq!(s.routed_by_hash, 3);
    let mut forwarded = 0;
    for (_, server) in &servers {
        let mut buf = [0u8; 1500];
        while let Ok(Ok((n, _))) =
            timeout(Duration::from_millis(50), server.recv_from(&mut buf)).await
        {
            assert_eq!(n, 1200);
            forwarded += 1;
        }
    }
    assert_eq!(forwarded, 3);

    // Idle flows go, and with them the IP's share: new flows are admitted again.
    let s = wait_for(&lb, |s| s.flows_expired == 3).await;
    assert_eq!(s.flows_active, 0);
    clients[7]
        .send_to(&initial(1200), lb.local_addr())
        .await
        .expect("send");
    assert_eq!(wait_for(&lb, |s| s.received == 9).await.flows_opened, 4);
}

#[tokio::test]
async fn a_dual_stack_listener_serves_ipv4_clients() {
    // Bound to [::]: IPv4 clients arrive as IPv4-mapped addresses; the answer must
    // still reach them, and they hash as the same 4-tuple.
    if std::net::UdpSocket::bind("[::]:0").is_err() {
        eprintln!("SKIPPED a_dual_stack_listener_serves_ipv4_clients: no IPv6 on this host");
        return;
    }
    let Setup { lb, servers } = setup_at("[::]:0", ForwarderBuilder::new).await;
    let to = SocketAddr::from(([127, 0, 0, 1], lb.local_addr().port()));
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let packet = short_to(servers[0].0);
    client.send_to(&packet, to).await.expect("send");
    let (got, flow) = recv(&servers[0].1).await;
    assert_eq!(got, packet);
    servers[0]
        .1
        .send_to(b"reply", flow)
        .await
        .expect("send reply");
    let (got, from) = recv(&client).await;
    assert_eq!((got.as_slice(), from), (&b"reply"[..], to));
    let s = lb.stats().snapshot();
    assert_eq!((s.routed_by_cid, s.dropped_send), (1, 0), "{s:?}");
}
