//! Helpers of the HTTP/3 tests: a test certificate, an HTTP/3 client (the h3
//! crate's, over h3-quinn), a listener run in the background, and the request stack
//! of a proxy: proxy-core's router and proxy to one upstream.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::{future::poll_fn, net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use proxy_core::{
    cluster::Cluster,
    config::{RouteConfig, VirtualHostConfig},
    proxy::{BodyBuffer, Proxy},
    router::RouteTable,
    snapshot::Routing,
    BoxError, BoxHttp,
};
use proxy_quic::h3::{H3Listener, H3ListenerBuilder, H3Stats, H3StatsSnapshot};
use proxy_test_support::Upstream;
use tokio::{sync::oneshot, task::JoinHandle};
use tower::ServiceExt;

pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A self-signed certificate for `localhost`, as PEM, and a client config that
/// trusts it.
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: String,
    pub client: quinn::ClientConfig,
}

impl Tls {
    pub fn new() -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                cert.cert.der().to_vec(),
            ))
            .unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client.alpn_protocols = vec![b"h3".to_vec()];
        let client = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(client).unwrap(),
        ));
        Self {
            cert_pem: cert.cert.pem(),
            key_pem: cert.key_pair.serialize_pem(),
            client,
        }
    }

    /// The server's rustls config, made by the crate's helper.
    pub fn server(&self) -> rustls::ServerConfig {
        proxy_quic::h3::server_config(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}

/// A listener serving in the background until [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    stats: Arc<H3Stats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    pub fn start(builder: H3ListenerBuilder, stack: BoxHttp) -> Self {
        let listener: H3Listener = builder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let stats = listener.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listener.serve(stack, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stats,
            stop: Some(stop),
            task,
        }
    }

    /// The listener's counters now.
    pub fn stats(&self) -> H3StatsSnapshot {
        self.stats.snapshot()
    }

    /// The listener's counters, to read after it stopped.
    pub fn stats_handle(&self) -> Arc<H3Stats> {
        self.stats.clone()
    }

    /// Starts the drain; the returned handle resolves when `serve` has returned.
    pub fn stop(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
    }
}

/// An echo upstream named `e` and a listener (the default builder) whose stack is
/// [`proxy_stack`] to it.
pub fn proxy_to_echo(tls: &Tls) -> (Upstream, Running) {
    let up = Upstream::echo("e");
    let server = Running::start(
        H3Listener::builder("h3", tls.server()),
        proxy_stack(up.addr),
    );
    (up, server)
}

/// proxy-core's router and proxy: every request to `upstream` (HTTP/1.1), within
/// five seconds; `x-forwarded-for` and `x-forwarded-proto` set.
pub fn proxy_stack(upstream: SocketAddr) -> BoxHttp {
    proxy_stack_from(routing(upstream))
}

/// [`proxy_stack`] with `body_buffer` in place of a listener's default.
pub fn proxy_stack_with_body_buffer(upstream: SocketAddr, body_buffer: BodyBuffer) -> BoxHttp {
    let mut routing = routing(upstream);
    routing.body_buffer = body_buffer;
    proxy_stack_from(routing)
}

fn proxy_stack_from(routing: Routing) -> BoxHttp {
    let proxy = Proxy::from_routing(routing);
    BoxHttp::new(proxy.map_err(|never| -> BoxError { match never {} }))
}

/// Every request to `upstream` (HTTP/1.1), within five seconds.
fn routing(upstream: SocketAddr) -> Routing {
    let cluster = Cluster::builder("app")
        .endpoint(upstream)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let vhost = VirtualHostConfig::new("all", ["*"]).route(
        RouteConfig::new("app")
            .prefix("/")
            .named("app")
            .timeout(Duration::from_secs(5)),
    );
    let routes = RouteTable::build("", &[vhost], &|c| c == "app").unwrap();
    Routing::new(routes, [cluster])
}

/// An HTTP/3 client connection: the h3 crate's client over h3-quinn.
pub struct Client {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    driver: JoinHandle<()>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, config: quinn::ClientConfig) -> Self {
        Self::connect_from(
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap(),
            addr,
            config,
        )
        .await
    }

    pub async fn connect_from(
        mut endpoint: quinn::Endpoint,
        addr: SocketAddr,
        config: quinn::ClientConfig,
    ) -> Self {
        endpoint.set_default_client_config(config);
        let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .unwrap();
        let driver = tokio::spawn(async move {
            let _ = poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Self {
            endpoint,
            conn,
            send,
            driver,
        }
    }

    /// Sends `req` with `chunks` as its body (each a DATA frame) and reads the whole
    /// answer.
    pub async fn request(
        &mut self,
        req: Request<()>,
        chunks: &[&'static str],
    ) -> Result<Answer, BoxError> {
        let mut stream = self.send.send_request(req).await?;
        // A server that answers before reading the whole request may stop it; its
        // answer is still read (RFC 9114 section 4.1).
        let mut stopped = false;
        for c in chunks {
            if let Err(e) = stream.send_data(Bytes::from_static(c.as_bytes())).await {
                stopped = stopped_without_error(e)?;
                break;
            }
        }
        if !stopped {
            finish(&mut stream).await?;
        }
        let head = stream.recv_response().await?;
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        let trailers = stream.recv_trailers().await?;
        Ok(Answer {
            head,
            body: body.freeze(),
            trailers,
        })
    }

    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Result<Answer, BoxError> {
        self.request(request("GET", addr, path), &[]).await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A request for `https://localhost:PORT{path}`.
pub fn request(method: &str, addr: SocketAddr, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()))
        .body(())
        .unwrap()
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub head: Response<()>,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.head.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers().get(name).and_then(|v| v.to_str().ok())
    }
}

/// `Ok(true)` when `e` is the server asking to stop sending (STOP_SENDING, with any
/// code), else the error. A server may answer before it has read the whole request
/// and then stop reading it; RFC 9114 section 4.1 says a client must not discard the
/// complete answer for that. (quinn stops a receive stream dropped before its end
/// with code 0, not H3_NO_ERROR.)
fn stopped_without_error(e: h3::error::StreamError) -> Result<bool, BoxError> {
    match e {
        h3::error::StreamError::RemoteTerminate { .. } => Ok(true),
        e => Err(e.into()),
    }
}

/// Ends the request body: `Ok` also when the server has asked to stop sending (it
/// answers without the rest, RFC 9114 section 4.1).
pub async fn finish(
    stream: &mut h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
) -> Result<(), BoxError> {
    match stream.finish().await {
        Ok(()) => Ok(()),
        Err(e) => stopped_without_error(e).map(|_| ()),
    }
}

/// The size of the answer to `/wait` of [`handoff_stack`]: large enough that it is
/// still crossing when a hand-off happens.
pub const LARGE: usize = 512 * 1024;

/// Answers `{who}:{path}`; `/wait` counts itself in `started`, waits for `release`
/// and then answers `LARGE` bytes.
pub fn handoff_stack(
    who: &'static str,
    started: Arc<std::sync::atomic::AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
) -> BoxHttp {
    BoxHttp::new(tower::service_fn(move |req: proxy_core::HttpRequest| {
        let (started, release) = (started.clone(), release.clone());
        async move {
            let path = req.uri().path().to_owned();
            if path == "/wait" {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                release.notified().await;
                let large = proxy_core::Body::from(vec![b'o'; LARGE]);
                return Ok::<_, BoxError>(proxy_core::HttpResponse::new(large));
            }
            let text = proxy_core::Body::from(format!("{who}:{path}"));
            Ok(proxy_core::HttpResponse::new(text))
        }
    }))
}

/// `GET path` on `client`: the answer's body as text, after checking it is a 200.
pub async fn text(client: &mut Client, addr: SocketAddr, path: &str) -> String {
    let answer = client.get(addr, path).await.unwrap();
    assert_eq!(answer.status(), 200);
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// `GET /wait` on `send`, in a task: the answer's status and body length.
pub fn wait_in_flight(
    mut send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    addr: SocketAddr,
) -> JoinHandle<Result<(u16, usize), BoxError>> {
    tokio::spawn(async move {
        let mut stream = send.send_request(request("GET", addr, "/wait")).await?;
        finish(&mut stream).await?;
        let head = stream.recv_response().await?;
        let mut body = 0;
        while let Some(chunk) = stream.recv_data().await? {
            body += chunk.remaining();
        }
        Ok((head.status().as_u16(), body))
    })
}
