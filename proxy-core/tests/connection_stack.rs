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
use proxy_test_support::{client::raw, temp::TempDir, TestServer, Upstream};
use tower::ServiceExt;

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
    let upstream = Upstream::head_echo();
    let listeners = format!(
        "  - name: filtered\n    address: 127.0.0.1:0\n    network_filters: [{{ typed: every_other }}]\n{ROUTES}\n  - name: marked\n    address: 127.0.0.1:0\n    network_filters: [{{ typed: mark }}]\n    http_filters: [{{ typed: tag_header }}]\n{ROUTES}\n"
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut proxy = TestServer::start(
        &config(upstream.addr, &listeners),
        registry(accepted.clone()),
    );
    let filtered = proxy.addr("filtered");
    let marked = proxy.addr("marked");

    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c1 = tokio::net::TcpStream::connect(&filtered).await.unwrap();
        let first = raw::get_on(&mut c1, "/x", &[]).await.unwrap();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        let mut c2 = tokio::net::TcpStream::connect(&filtered).await.unwrap();
        let second = raw::get_on(&mut c2, "/x", &[]).await.unwrap_or_default();
        assert!(
            second.is_empty(),
            "the refused connection got an answer: {second}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        let mut c3 = tokio::net::TcpStream::connect(&marked).await.unwrap();
        let resp = raw::get_on(&mut c3, "/x", &[])
            .await
            .unwrap()
            .to_ascii_lowercase();
        assert!(resp.contains("x-tag: from-the-connection"), "{resp}");
        assert!(resp.contains("x-forwarded-proto: https"), "{resp}");
    })
    .await
    .unwrap();
    proxy.stop();
}

#[tokio::test]
async fn unix_socket_listener_serves_http() {
    let upstream = Upstream::head_echo();
    let dir = TempDir::new("proxy-core-unix");
    let path = dir.join("listener.sock");
    let listeners = format!(
        "  - name: uds\n    address: unix:{}\n{ROUTES}\n",
        path.display()
    );
    let mut proxy = TestServer::start(&config(upstream.addr, &listeners), Registry::default());

    tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        let resp = raw::get_on(&mut s, "/x", &[]).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("x-forwarded-proto: http"),
            "{resp}"
        );
    })
    .await
    .unwrap();
    proxy.stop();
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

#[test]
fn port_zero_resolves_to_the_bound_port() {
    let upstream = Upstream::head_echo();
    let listeners = format!("  - name: any\n    address: 127.0.0.1:0\n{ROUTES}\n");
    let mut proxy = TestServer::start(&config(upstream.addr, &listeners), Registry::default());
    let addr = proxy.addr("any");
    assert_ne!(addr.port(), 0);
    std::net::TcpStream::connect(addr).unwrap();
    proxy.stop();
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
