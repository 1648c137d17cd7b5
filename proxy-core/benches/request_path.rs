//! The request path without the downstream socket: `Proxy` (route, prepare, balance,

//! pooled HTTP/1.1 upstream over loopback, response head parse) and collecting the
//! 1 KiB response body, as one criterion measurement per request.
//!
//! `cargo bench -p proxy-core --bench request_path`

// A benchmark: setup failures should stop it loudly; criterion's macros make the items.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use proxy_core::{config::Config, proxy::Proxy, snapshot::Snapshot, Body, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = vec![b'x'; 1024];
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let response: Arc<[u8]> = response.into();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = 0;
                loop {
                    let Ok(n) = s.read(&mut buf[have..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                    // One response per complete head (GETs without bodies).
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                        if s.write_all(&response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn request_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(upstream());
    let yaml = format!(
        r#"
listeners:
  - name: bench
    address: 127.0.0.1:1
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: up
clusters:
  - name: up
    endpoints: ["{addr}"]
"#
    );
    let snapshot = Snapshot::build(
        Config::from_yaml(&yaml).unwrap(),
        &Registry::default(),
        None,
    )
    .unwrap();
    let routing = snapshot.routing("bench").unwrap().clone();
    let mut proxy = Proxy::new(Arc::new(ArcSwap::new(routing)));
    let peer = "10.1.2.3:4567".parse().ok();

    c.bench_function("request_path/get_1k_pooled_h1", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut req = http::Request::get("/index.html")
                    .header("host", "example.com")
                    .header("user-agent", "bench")
                    .header("accept", "*/*")
                    .body(Body::empty())
                    .unwrap();
                req.extensions_mut()
                    .insert(proxy_core::proxy::ConnInfo::new(peer, false));
                let svc = proxy.ready().await.unwrap();
                let resp = svc.call(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), 1024);
            })
        })
    });
}

criterion_group!(benches, request_path);
criterion_main!(benches);
