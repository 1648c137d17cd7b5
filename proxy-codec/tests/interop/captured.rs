//! The scenarios on frames captured from the peers (tests/fixtures), written on a raw
//! socket: they need no peers installed.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use proxy_test_support::{closed_port, Upstream};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use super::{
    one_cluster,
    proxy::{cluster, config, listener, route, route_with_timeout, start},
    wire::{frame_id, read_frame, replay_upstream, with_id},
    Peers, ECHO,
};

/// Frames captured from the peers (tests/fixtures), replayed on a raw socket, so
/// this runs without them: the proxy answers a heartbeat itself; a one-way request
/// gets no answer; a request reaches the upstream and its captured answer comes back
/// under the caller's id with the payload unchanged; ten requests written at once
/// are all answered under their own ids; a service with no route gets the
/// protocol's error status under its id.
pub(crate) async fn captured_frames_through_proxy(peers: &Peers) {
    let p = peers.proto;
    let response = p.fixture("response");
    let upstream = replay_upstream(p, response.clone(), p.fixture("heartbeat_reply"));
    let proxy = start(&one_cluster(p, &[upstream.addr.to_string()]));
    let mut s = TcpStream::connect(proxy.addr(p.name())).await.unwrap();
    let mut buf = BytesMut::new();

    s.write_all(&with_id(p, &p.fixture("heartbeat"), 7))
        .await
        .unwrap();
    let pong = read_frame(p, &mut s, &mut buf).await;
    assert!(
        p.is_heartbeat_reply(&pong),
        "not a heartbeat answer: {pong:02x?}"
    );
    assert_eq!(
        p.status(&pong),
        p.ok(),
        "heartbeat answer status: {pong:02x?}"
    );
    assert_eq!(frame_id(p, &pong), 7);

    s.write_all(&with_id(p, &p.fixture("oneway_request"), 8))
        .await
        .unwrap();
    s.write_all(&with_id(p, &p.fixture("request"), 9))
        .await
        .unwrap();
    let answer = read_frame(p, &mut s, &mut buf).await;
    assert_eq!(
        frame_id(p, &answer),
        9,
        "the first answer is not the two-way request's"
    );
    assert!(p.is_call_response(&answer), "not a response: {answer:02x?}");
    assert_eq!(p.status(&answer), p.ok(), "status not OK: {answer:02x?}");
    assert_eq!(
        p.payload(&answer),
        p.payload(&response),
        "payload changed on the way"
    );

    let request = p.fixture("request");
    let batch: Vec<u8> = (100..110).flat_map(|id| with_id(p, &request, id)).collect();
    s.write_all(&batch).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(frame_id(p, &read_frame(p, &mut s, &mut buf).await));
    }
    ids.sort_unstable();
    assert_eq!(ids, (100..110).collect::<Vec<u64>>());

    s.write_all(&with_id(p, &p.fixture("request_unknown_service"), 11))
        .await
        .unwrap();
    let error = read_frame(p, &mut s, &mut buf).await;
    assert_eq!(frame_id(p, &error), 11);
    assert!(p.is_call_response(&error), "not a response: {error:02x?}");
    assert_eq!(p.status(&error), p.no_route(), "no route: {error:02x?}");
}

/// Proxy-side failures on the wire, in the protocol's own statuses, each under the
/// caller's id: an unreachable upstream, a route timeout; the connection carries on
/// after both.
pub(crate) async fn proxy_failures_answered_with_protocol_statuses(peers: &Peers) {
    let p = peers.proto;
    let routes =
        route(ECHO, "dead") + &route_with_timeout("com.example.NoSuchService", "silent", "300ms");
    let silent = Upstream::sink();
    let yaml = config(
        &[listener(p.name(), p.name(), &routes)],
        &[
            cluster("dead", p.name(), &[closed_port().to_string()]),
            cluster("silent", p.name(), &[silent.addr.to_string()]),
        ],
    );
    let proxy = start(&yaml);
    let mut s = TcpStream::connect(proxy.addr(p.name())).await.unwrap();
    let mut buf = BytesMut::new();
    for round in 0..2u64 {
        s.write_all(&with_id(p, &p.fixture("request"), 20 + round))
            .await
            .unwrap();
        let dead = read_frame(p, &mut s, &mut buf).await;
        assert_eq!(frame_id(p, &dead), 20 + round);
        assert_eq!(p.status(&dead), p.unreachable(), "unreachable: {dead:02x?}");

        let started = Instant::now();
        s.write_all(&with_id(
            p,
            &p.fixture("request_unknown_service"),
            30 + round,
        ))
        .await
        .unwrap();
        let late = read_frame(p, &mut s, &mut buf).await;
        assert_eq!(frame_id(p, &late), 30 + round);
        assert_eq!(p.status(&late), p.timed_out(), "route timeout: {late:02x?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
