//! Network filters on real sockets: the TCP proxy passes bytes both ways, passes a
//! half-close on, closes cleanly, times out idle connections; connection limits per
//! listener and per source IP; connection resets and delays by share.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{start, try_start};
use proxy_test_support::{
    client, closed_port, free_addr, prometheus, upstream::spawn_raw, with_timeout, Upstream,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// An upstream that echoes until EOF, then writes `bye` and closes.
fn echo_bye() -> Upstream {
    spawn_raw(|mut s, _| async move {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = s.write_all(b"bye").await;
        let _ = s.shutdown().await;
    })
}

fn tcp_config(network_filters: &str, cluster: std::net::SocketAddr) -> String {
    format!(
        r#"runtime: {{ worker_threads: 1 }}
listeners:
  - name: l4
    address: 127.0.0.1:0
    network_filters: {network_filters}
    virtual_hosts: []
clusters:
  - name: backend
    endpoints: ["{cluster}"]
"#
    )
}

#[tokio::test]
async fn bytes_pass_both_ways_and_half_close_is_passed_on() {
    with_timeout(Duration::from_secs(30), async {
        let up = echo_bye();
        let proxy = start(&tcp_config(
            "[{typed: tcp_proxy, config: {cluster: backend}}]",
            up.addr,
        ));
        let mut c = TcpStream::connect(proxy.addr("l4")).await.unwrap();
        // A payload larger than the copy buffers, both ways.
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = c.split();
        let send = async {
            w.write_all(&payload).await.unwrap();
            // Half-close: the upstream sees EOF, answers "bye" and closes.
            w.shutdown().await.unwrap();
        };
        let recv = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), got) = tokio::join!(send, recv);
        assert_eq!(got.len(), payload.len() + 3);
        assert_eq!(&got[..payload.len()], &payload[..]);
        assert_eq!(&got[payload.len()..], b"bye");
    })
    .await;
}

#[tokio::test]
async fn many_connections_close_cleanly() {
    with_timeout(Duration::from_secs(30), async {
        let up = echo_bye();
        let proxy = start(&tcp_config(
            "[{typed: tcp_proxy, config: {cluster: backend}}]",
            up.addr,
        ));
        let addr = proxy.addr("l4");
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                tokio::spawn(async move {
                    let mut c = TcpStream::connect(addr).await.unwrap();
                    let msg = format!("hello {i}");
                    c.write_all(msg.as_bytes()).await.unwrap();
                    c.shutdown().await.unwrap();
                    let mut got = String::new();
                    c.read_to_string(&mut got).await.unwrap();
                    assert_eq!(got, format!("{msg}bye"));
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    with_timeout(Duration::from_secs(30), async {
        let up = echo_bye();
        let proxy = start(&tcp_config(
            "[{typed: tcp_proxy, config: {cluster: backend, idle_timeout: 300ms}}]",
            up.addr,
        ));
        let mut c = TcpStream::connect(proxy.addr("l4")).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        let t = Instant::now();
        let mut rest = Vec::new();
        // Closed by the proxy: EOF (or a reset) after about the idle timeout.
        let _ = c.read_to_end(&mut rest).await;
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    })
    .await;
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    with_timeout(Duration::from_secs(30), async {
        let proxy = start(&tcp_config(
            "[{typed: tcp_proxy, config: {cluster: backend}}]",
            closed_port(),
        ));
        let mut c = TcpStream::connect(proxy.addr("l4")).await.unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
    })
    .await;
}

#[tokio::test]
async fn connection_limits_per_listener_and_source() {
    with_timeout(Duration::from_secs(30), async {
        let up = echo_bye();
        let proxy = start(&tcp_config(
            "[{typed: connection_limit, config: {max_per_source_ip: 2}}, {typed: tcp_proxy, config: {cluster: backend}}]",
            up.addr,
        ));
        let addr = proxy.addr("l4");
        let open = |addr: std::net::SocketAddr| async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            match tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await {
                Ok(Ok(1)) => Some(c),
                _ => None,
            }
        };
        let a = open(addr).await.expect("first admitted");
        let b = open(addr).await.expect("second admitted");
        assert!(open(addr).await.is_none(), "third from the same IP admitted");
        drop(a);
        // The place is given back once the proxy sees the close.
        let mut again = None;
        for _ in 0..50 {
            again = open(addr).await;
            if again.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(again.is_some(), "a closed connection's place was not given back");
        drop(b);
    })
    .await;
}

#[tokio::test]
async fn connection_faults_reset_and_delay() {
    with_timeout(Duration::from_secs(30), async {
        let up = echo_bye();
        let proxy = start(&tcp_config(
            "[{typed: connection_fault, config: {reset: {reset_percent: 100}}}, {typed: tcp_proxy, config: {cluster: backend}}]",
            up.addr,
        ));
        // The reset may even beat the end of connect. Nothing written: a write could
        // take the reset error before the read does.
        let mut buf = Vec::new();
        let r = match TcpStream::connect(proxy.addr("l4")).await {
            Ok(mut c) => c.read_to_end(&mut buf).await,
            Err(e) => Err(e),
        };
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "expected a reset, got {r:?} {buf:?}"
        );

        let delayed = start(&tcp_config(
            "[{typed: connection_fault, config: {delay: {duration: 300ms}}}, {typed: tcp_proxy, config: {cluster: backend}}]",
            up.addr,
        ));
        let t = Instant::now();
        let mut c = TcpStream::connect(delayed.addr("l4")).await.unwrap();
        c.write_all(b"hi").await.unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(290), "{:?}", t.elapsed());
    })
    .await;
}

#[test]
fn bad_network_sections_are_refused() {
    let up = closed_port();
    for (filters, field) in [
        (
            "[{typed: tcp_proxy, config: {cluster: nowhere}}]",
            "listeners[0].network_filters[0].config.cluster: unknown cluster",
        ),
        (
            "[{typed: tcp_proxy, config: {cluster: backend, buffer_bytes: 1}}]",
            "listeners[0].network_filters[0].config.buffer_bytes: 1 is not from 512",
        ),
        (
            "[{typed: tcp_proxy, config: {cluster: backend, buffer_bytes: 2MiB}}]",
            "listeners[0].network_filters[0].config.buffer_bytes: 2097152 is not from 512",
        ),
        (
            "[{typed: connection_limit, config: {max_connections: 0}}]",
            "listeners[0].network_filters[0].config.max_connections",
        ),
        (
            "[{typed: connection_fault, config: {reset: {reset_percent: 120}}}]",
            "listeners[0].network_filters[0].config.reset.reset_percent",
        ),
    ] {
        let err = try_start(&tcp_config(filters, up))
            .err()
            .unwrap_or_else(|| panic!("{filters}"));
        assert!(err.contains(field), "{filters}: {err}");
    }
}

#[tokio::test]
async fn metrics_count_bytes_and_refusals() {
    with_timeout(Duration::from_secs(30), async {
        let up = echo_bye();
        let admin = free_addr();
        let yaml = format!(
            "admin: {{ address: \"{admin}\" }}\n{}",
            tcp_config(
                "[{typed: connection_limit, config: {max_connections: 1}}, {typed: tcp_proxy, config: {cluster: backend}}]",
                up.addr,
            )
        );
        let proxy = start(&yaml);
        let addr = proxy.addr("l4");
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"0123456789").await.unwrap();
        let mut b = [0u8; 10];
        c.read_exact(&mut b).await.unwrap();
        // A second connection while the first is open is refused.
        let mut refused = TcpStream::connect(&addr).await.unwrap();
        let mut rest = Vec::new();
        let _ = refused.read_to_end(&mut rest).await;
        c.shutdown().await.unwrap();
        let mut tail = Vec::new();
        c.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"bye");
        let text = client::get(admin, "/stats/prometheus", &[]).await.text();
        let v = |s: &str| prometheus::sample(&text, s);
        assert_eq!(v("proxy_filters_tcp_proxy_bytes_total{filter=\"l4\",direction=\"upstream\"}"), Some(10.0), "{text}");
        assert_eq!(v("proxy_filters_tcp_proxy_bytes_total{filter=\"l4\",direction=\"downstream\"}"), Some(13.0), "{text}");
        assert_eq!(v("proxy_filters_connection_limit_refused_total{filter=\"l4\",reason=\"listener\"}"), Some(1.0), "{text}");
        assert_eq!(v("proxy_filters_tcp_proxy_connections_total{filter=\"l4\"}"), Some(1.0), "{text}");
    })
    .await;
}
