//! The connection stack and listeners on real sockets: network filters registered by
//! name refuse or mark connections, marks reach requests, Unix-socket listeners serve,
//! port 0 resolves to the bound port.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use proxy_core::{config::Config, BoxConn, BoxHttp, Connection, Registry, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

mod common;

use common::{address_of, start};

/// An upstream that answers every request with its request head as the body.
fn echo_upstream() -> std::net::SocketAddr {
    common::upstream(|mut s| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = buf.drain(..end + 4).collect();
                let mut resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", head.len())
                    .into_bytes();
                resp.extend_from_slice(&head);
                if s.write_all(&resp).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[derive(Clone, Debug)]
struct Tag(&'static str);

fn registry(accepted: Arc<AtomicUsize>) -> Registry {
    let mut r = Registry::default();
    // Refuses every second connection by not calling the inner service.
    r.register_network_filter("every_other", move |_, _| {
        let accepted = accepted.clone();
        Ok(Arc::new(move |inner: BoxConn| {
            let accepted = accepted.clone();
            BoxConn::new(tower::service_fn(move |conn: Connection| {
                let inner = inner.clone();
                let n = accepted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n % 2 == 1 {
                        return Ok(()); // dropped: closed without an answer
                    }
                    inner.oneshot(conn).await
                }
            }))
        }))
    });
    // Marks the connection secure and tags it, as a TLS layer would.
    r.register_network_filter("mark", |_, _| {
        Ok(Arc::new(|inner: BoxConn| {
            BoxConn::new(tower::service_fn(move |mut conn: Connection| {
                conn.secure = true;
                conn.extensions.insert(Tag("from-the-connection"));
                inner.clone().oneshot(conn)
            }))
        }))
    });
    // Copies the connection's tag into a request header.
    r.register_filter("tag_header", |_, _| {
        Ok(Arc::new(|inner: BoxHttp| {
            BoxHttp::new(
                tower::ServiceBuilder::new()
                    .map_request(|mut req: proxy_core::HttpRequest| {
                        let tag = req.extensions().get::<Tag>().map_or("none", |t| t.0);
                        req.headers_mut()
                            .insert("x-tag", http::HeaderValue::from_static(tag));
                        req
                    })
                    .service(inner),
            )
        }))
    });
    r
}

async fn get(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin)) -> std::io::Result<String> {
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn config(upstream: std::net::SocketAddr, listeners: &str) -> String {
    format!(
        r#"
listeners:
{listeners}
clusters:
  - name: echo
    endpoints: ["{upstream}"]
"#
    )
}

const ROUTES: &str = r#"    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: { path: { prefix: "/" } }
            cluster: echo"#;

#[tokio::test]
async fn network_filters_refuse_and_mark_connections() {
    let upstream = echo_upstream();
    let listeners = format!(
        "  - name: filtered\n    address: 127.0.0.1:0\n    network_filters: [{{ typed: every_other }}]\n{ROUTES}\n  - name: marked\n    address: 127.0.0.1:0\n    network_filters: [{{ typed: mark }}]\n    http_filters: [{{ typed: tag_header }}]\n{ROUTES}\n"
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let (server, handle) = start(&config(upstream, &listeners), registry(accepted.clone()));
    let filtered = address_of(&server, "filtered");
    let marked = address_of(&server, "marked");

    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c1 = tokio::net::TcpStream::connect(&filtered).await.unwrap();
        let first = get(&mut c1).await.unwrap();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        let mut c2 = tokio::net::TcpStream::connect(&filtered).await.unwrap();
        let second = get(&mut c2).await.unwrap_or_default();
        assert!(
            second.is_empty(),
            "the refused connection got an answer: {second}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        let mut c3 = tokio::net::TcpStream::connect(&marked).await.unwrap();
        let resp = get(&mut c3).await.unwrap().to_ascii_lowercase();
        assert!(resp.contains("x-tag: from-the-connection"), "{resp}");
        assert!(resp.contains("x-forwarded-proto: https"), "{resp}");
    })
    .await
    .unwrap();
    server.shutdown();
    handle.join().unwrap();
}

#[tokio::test]
async fn unix_socket_listener_serves_http() {
    let upstream = echo_upstream();
    let dir = std::env::temp_dir().join(format!("proxy-core-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("listener.sock");
    let listeners = format!(
        "  - name: uds\n    address: unix:{}\n{ROUTES}\n",
        path.display()
    );
    let (server, handle) = start(&config(upstream, &listeners), Registry::default());

    tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        let resp = get(&mut s).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("x-forwarded-proto: http"),
            "{resp}"
        );
    })
    .await
    .unwrap();
    server.shutdown();
    handle.join().unwrap();
    assert!(!path.exists(), "the socket file is removed at shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn port_zero_resolves_to_the_bound_port() {
    let upstream = echo_upstream();
    let listeners = format!("  - name: any\n    address: 127.0.0.1:0\n{ROUTES}\n");
    let (server, handle) = start(&config(upstream, &listeners), Registry::default());
    let addr: std::net::SocketAddr = address_of(&server, "any").parse().unwrap();
    assert_ne!(addr.port(), 0);
    std::net::TcpStream::connect(addr).unwrap();
    server.shutdown();
    handle.join().unwrap();
}

#[test]
fn unknown_network_filter_is_a_config_error() {
    let yaml = config("127.0.0.1:1".parse().unwrap(), &format!("  - name: l\n    address: 127.0.0.1:0\n    network_filters: [{{ typed: nope }}]\n{ROUTES}\n"));
    let err = Server::new(Config::from_yaml(&yaml).unwrap(), Registry::default()).unwrap_err();
    assert!(
        proxy_core::DisplayChain(&err)
            .to_string()
            .contains("listeners[0].network_filters[0].typed"),
        "{}",
        proxy_core::DisplayChain(&err)
    );
}
