//! The extension points capability crates plug into, on real sockets: route filters,
//! cluster overrides, cluster extensions told of outcomes, upstream transports,
//! protocol plug-ins detected on an `auto` listener, and capability metrics.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use proxy_core::{
    cluster::{ClusterExtension, ClusterInfo, Outcome},
    config::Config,
    metrics::RenderMetrics,
    protocol::{BoxFuture, ProtocolServer, ServeContext, Sniff},
    upstream::UpstreamTransport,
    Body, BoxError, BoxHttp, ClusterOverride, Connection, HttpRequest, Registry, Server, Stream,
};
use proxy_test_support::{
    client::raw,
    closed_port,
    upstream::{response, Upstream},
    TestServer,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tower::ServiceExt;

/// An upstream answering every request with `status` and `name` as the body.
fn named_upstream(name: &'static str, status: u16) -> Upstream {
    Upstream::http(move |_| response(status, name))
}

#[derive(Debug, Default)]
struct Seen {
    outcomes: Mutex<Vec<(SocketAddr, Outcome)>>,
    activations: AtomicUsize,
    endpoints: AtomicUsize,
}

#[derive(Debug)]
struct Recorder(Arc<Seen>);

impl ClusterExtension for Recorder {
    fn activate(&self, cluster: &ClusterInfo) {
        self.0.activations.fetch_add(1, Ordering::SeqCst);
        self.0
            .endpoints
            .store(cluster.endpoints.len(), Ordering::SeqCst);
    }
    fn on_outcome(
        &self,
        endpoint: &Arc<proxy_core::Endpoint>,
        outcome: &Outcome,
        _latency: Duration,
    ) {
        self.0
            .outcomes
            .lock()
            .unwrap()
            .push((endpoint.address, *outcome));
    }
}

#[derive(Debug, Default)]
struct Denials(AtomicUsize);

impl RenderMetrics for Denials {
    fn render(&self, out: &mut String) {
        out.push_str("# TYPE proxy_test_denials_total counter\n");
        out.push_str(&format!(
            "proxy_test_denials_total {}\n",
            self.0.load(Ordering::Relaxed)
        ));
    }
}

#[derive(Debug)]
struct CountingTransport(Arc<AtomicUsize>);

impl UpstreamTransport for CountingTransport {
    fn wrap(
        &self,
        tcp: tokio::net::TcpStream,
        _endpoint: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(Stream::Tcp(tcp)) })
    }
}

/// A toy line protocol: `#<path>\n` asks for `<path>`; the answer is
/// `<status> <body>\n`.
#[derive(Debug)]
struct Lines;

impl ProtocolServer for Lines {
    fn sniff(&self, prefix: &[u8]) -> Sniff {
        if prefix[0] == b'#' {
            Sniff::Match
        } else {
            Sniff::NoMatch
        }
    }

    fn serve(
        &self,
        conn: Connection,
        prefix: Bytes,
        service: BoxHttp,
        _ctx: ServeContext,
    ) -> BoxFuture<()> {
        Box::pin(async move {
            let (r, mut w) = tokio::io::split(conn.stream);
            let mut lines = BufReader::new(tokio::io::AsyncReadExt::chain(&prefix[..], r)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let path = line.trim_start_matches('#').to_owned();
                let req = http::Request::builder()
                    .uri(path)
                    .header("host", "test")
                    .body(Body::empty())
                    .unwrap();
                let (status, body) = match service.clone().oneshot(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = http_body_util::BodyExt::collect(resp.into_body())
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        (status, String::from_utf8_lossy(&body).into_owned())
                    }
                    Err(_) => (500, String::new()),
                };
                let out = format!("{status} {}\n", body.trim_end());
                if w.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
    }
}

fn registry(
    seen: Arc<Seen>,
    wraps: Arc<AtomicUsize>,
    denials: Arc<Mutex<Option<Arc<Denials>>>>,
) -> Registry {
    let mut r = Registry::default();
    // Sends the request to the cluster named in its config, past the route's.
    r.register_filter("redirect", |cfg, ctx| {
        #[derive(serde::Deserialize)]
        struct Redirect {
            cluster: String,
        }
        let Redirect { cluster: to } = cfg.parse()?;
        if !ctx.clusters.contains_key(to.as_str()) {
            return Err(proxy_core::ConfigError::new(
                "cluster",
                format!("unknown cluster {to:?}"),
            ));
        }
        let to: Arc<str> = to.into();
        Ok(Arc::new(move |inner: BoxHttp| {
            let to = to.clone();
            BoxHttp::new(
                tower::ServiceBuilder::new()
                    .map_request(move |mut req: HttpRequest| {
                        req.extensions_mut().insert(ClusterOverride(to.clone()));
                        req
                    })
                    .service(inner),
            )
        }))
    });
    // Answers 403 itself, counting in a capability metric.
    r.register_filter("deny", move |_, ctx| {
        let counter = ctx.metrics::<Denials>("test/denials");
        *denials.lock().unwrap() = Some(counter.clone());
        Ok(Arc::new(move |_inner: BoxHttp| {
            let counter = counter.clone();
            BoxHttp::new(tower::service_fn(move |_req: HttpRequest| {
                counter.0.fetch_add(1, Ordering::Relaxed);
                async move {
                    let mut resp = http::Response::new(Body::from("denied"));
                    *resp.status_mut() = http::StatusCode::FORBIDDEN;
                    Ok::<_, BoxError>(resp)
                }
            }))
        }))
    });
    r.register_cluster_extension("record", move |_, _| Ok(Arc::new(Recorder(seen.clone()))));
    r.register_transport("counting", move |_, _| {
        Ok(Arc::new(CountingTransport(wraps.clone())))
    });
    r.register_protocol("lines", |_, _| Ok(Arc::new(Lines)));
    r
}

fn yaml(a: SocketAddr, b: SocketAddr, failing: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/other" }} }}
            cluster: a
            filters: [{{ typed: redirect, config: {{ cluster: b }} }}]
          - match: {{ path: {{ prefix: "/denied" }} }}
            cluster: a
            filters: [{{ typed: deny }}]
          - match: {{ path: {{ prefix: "/failing" }} }}
            cluster: failing
          - match: {{ path: {{ prefix: "/dead" }} }}
            cluster: dead
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: a
clusters:
  - name: a
    endpoints: [{{ address: "{a}", weight: 3, metadata: {{ zone: z1 }} }}]
    transport: {{ typed: counting }}
  - name: b
    endpoints: ["{b}"]
  - name: failing
    endpoints: ["{failing}"]
    extensions: [{{ typed: record }}]
  - name: dead
    endpoints: ["{dead}"]
    connect_timeout: 500ms
    extensions: [{{ typed: record }}]
"#
    )
}

#[tokio::test]
async fn seams_work_end_to_end() {
    let (up_a, up_b, up_failing) = (
        named_upstream("from-a", 200),
        named_upstream("from-b", 200),
        named_upstream("failing", 503),
    );
    let (a, b, failing, dead) = (up_a.addr, up_b.addr, up_failing.addr, closed_port());
    let seen = Arc::new(Seen::default());
    let wraps = Arc::new(AtomicUsize::new(0));
    let denials = Arc::new(Mutex::new(None));
    let mut proxy = TestServer::start(
        &yaml(a, b, failing, dead),
        registry(seen.clone(), wraps.clone(), denials.clone()),
    );
    let server = proxy.server().clone();
    let addr = proxy.addr("main");

    tokio::time::timeout(Duration::from_secs(20), async {
        // Plain route through the counting transport.
        let resp = raw::get(addr, "/x", &[]).await;
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("from-a"),
            "{resp}"
        );
        assert!(
            wraps.load(Ordering::SeqCst) >= 1,
            "the transport wrapped the connection"
        );

        // A route filter overriding the cluster.
        let resp = raw::get(addr, "/other", &[]).await;
        assert!(resp.ends_with("from-b"), "{resp}");

        // A route filter answering itself; the route's counters still balance.
        let resp = raw::get(addr, "/denied", &[]).await;
        assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
        let counter = denials.lock().unwrap().clone().unwrap();
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        let snapshot = server.snapshot();
        let routing = snapshot.routing("main").unwrap();
        for r in routing.routes.routes() {
            assert_eq!(r.stats.active(), 0, "route {} leaks", r.name);
        }

        // Outcomes reach the cluster extensions.
        let resp = raw::get(addr, "/failing", &[]).await;
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        let resp = raw::get(addr, "/dead", &[]).await;
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        let outcomes = seen.outcomes.lock().unwrap().clone();
        assert!(
            outcomes.contains(&(
                failing,
                Outcome::Response(http::StatusCode::SERVICE_UNAVAILABLE)
            )),
            "{outcomes:?}"
        );
        assert!(
            outcomes.contains(&(dead, Outcome::ConnectFailure)),
            "{outcomes:?}"
        );
        assert_eq!(
            seen.activations.load(Ordering::SeqCst),
            2,
            "both clusters activated"
        );

        // A registered protocol detected on the same `auto` port as HTTP.
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"#/x\n#/other\n").await.unwrap();
        let mut lines = BufReader::new(s).lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "200 from-a");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "200 from-b");
    })
    .await
    .unwrap();

    // Endpoint metadata and weight from the config.
    let snapshot = server.snapshot();
    let e = &snapshot.clusters["a"].endpoints[0];
    assert_eq!(e.label("zone"), Some("z1"));
    assert_eq!(e.weight.get(), 3);

    // A reload with the extension section unchanged keeps the instance and
    // activates it again.
    let before = seen.activations.load(Ordering::SeqCst);
    server
        .reload(Config::from_yaml(&yaml(a, b, failing, dead)).unwrap())
        .unwrap();
    assert_eq!(seen.activations.load(Ordering::SeqCst), before + 2);
    proxy.stop();
}

#[test]
fn unknown_names_are_refused_naming_the_field() {
    let seen = Arc::new(Seen::default());
    let reg = || registry(seen.clone(), Arc::default(), Arc::default());
    let base = yaml(closed_port(), closed_port(), closed_port(), closed_port());
    for (from, to, field) in [
        (
            "typed: record",
            "typed: nope",
            "clusters[2].extensions[0].typed",
        ),
        (
            "typed: counting",
            "typed: nope",
            "clusters[0].transport.typed",
        ),
        (
            "cluster: b }",
            "cluster: zz }",
            "listeners[0].virtual_hosts[0].routes[0].filters[0].config",
        ),
    ] {
        let bad = base.replacen(from, to, 1);
        let err = Server::new(Config::from_yaml(&bad).unwrap(), reg()).unwrap_err();
        let err = proxy_core::DisplayChain(&err).to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    let bad = base.replace(
        "address: 127.0.0.1:0\n",
        "address: 127.0.0.1:0\n    protocol: nope\n",
    );
    let err = Server::new(Config::from_yaml(&bad).unwrap(), reg()).unwrap_err();
    let err = proxy_core::DisplayChain(&err).to_string();
    assert!(err.contains("listeners[0].protocol"), "{err}");
}
