//! `proxy-variant`: a plain reverse proxy on hyper 1.x, built in a few configurations
//! so that the sidecar's hand-written HTTP/1.1 path can be measured against what hyper
//! gives out of the box, with the shared benchmark harness (`shared/bench`).
//!
//! It listens on `$BENCH_LISTEN` and forwards every request to `$BENCH_UPSTREAM`, on one
//! thread. An experiment, not a product: no routing, no timeouts, no retries.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, Parts, PathAndQuery, Scheme};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// Response body: the upstream's, streamed through, or a short local error text.
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Command line (the addresses also come from the harness's environment).
#[derive(Parser, Debug)]
#[command(about = "Plain hyper reverse proxy for benchmarking design alternatives")]
struct Args {
    /// How upstream connections are held.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Which tokio runtime runs the proxy.
    #[arg(long, value_enum, default_value = "current")]
    runtime: Flavor,
    /// Address to accept downstream connections on.
    #[arg(long, env = "BENCH_LISTEN", default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// Address every request is forwarded to.
    #[arg(long, env = "BENCH_UPSTREAM", default_value = "127.0.0.1:18081")]
    upstream: SocketAddr,
}

/// Upstream connection handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// hyper http1 server + `hyper_util::client::legacy::Client` (shared keep-alive pool).
    HyperPooled,
    /// hyper http1 server; each downstream connection gets its own upstream connection
    /// (`hyper::client::conn::http1::handshake`), used for one request at a time.
    HyperDedicated,
}

/// Tokio runtime flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Flavor {
    /// `new_current_thread`: everything on the main thread.
    Current,
    /// `new_multi_thread` with `worker_threads(1)`: everything on the one worker.
    Multi,
}

/// Where requests go.
#[derive(Debug)]
struct Upstream {
    /// The socket address, for the dedicated mode's own connects.
    addr: SocketAddr,
    /// `ip:port`, for the absolute-form URIs the pooled client needs.
    authority: Authority,
    /// `ip:port` as a Host value, for requests that come without one.
    host: HeaderValue,
}

/// Shared state of the pooled mode.
struct Pooled {
    /// Where requests go.
    upstream: Arc<Upstream>,
    /// The keep-alive pool of upstream connections, shared by all downstream connections.
    client: Client<HttpConnector, Incoming>,
}

/// Per-downstream-connection state of the dedicated mode.
struct Dedicated {
    /// Where requests go.
    upstream: Arc<Upstream>,
    /// This downstream connection's upstream connection, opened by its first request
    /// (and again if the upstream closed it). Taken out while a request is being sent.
    sender: Mutex<Option<SendRequest<Incoming>>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = match args.runtime {
        Flavor::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Flavor::Multi => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build(),
    }
    .context("building the tokio runtime")?;
    // Spawned, so that with the multi-thread runtime the accept loop runs on the worker
    // like everything else, not on this thread (which only waits in `block_on`).
    rt.block_on(async move { tokio::spawn(serve(args)).await? })
}

/// Accepts downstream connections and serves each on its own task.
async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let upstream = Arc::new(Upstream {
        addr: args.upstream,
        authority: args
            .upstream
            .to_string()
            .parse::<Authority>()
            .context("upstream address as an authority")?,
        host: HeaderValue::try_from(args.upstream.to_string())
            .context("upstream address as a Host value")?,
    });
    let pooled = (args.mode == Mode::HyperPooled).then(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Arc::new(Pooled {
            upstream: upstream.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    });
    eprintln!(
        "proxy-variant: {:?} on {:?} runtime, {} -> {}",
        args.mode, args.runtime, args.listen, args.upstream
    );
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                eprintln!("proxy-variant: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let server = hyper::server::conn::http1::Builder::new();
        // Downstream connection errors (resets, early closes) are the client's business
        // and are not reported.
        match &pooled {
            Some(pooled) => {
                let pooled = pooled.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| forward_pooled(pooled.clone(), req));
                    let _ = server.serve_connection(io, svc).await;
                });
            }
            None => {
                let conn = Arc::new(Dedicated {
                    upstream: upstream.clone(),
                    sender: Mutex::new(None),
                });
                tokio::spawn(async move {
                    let svc = service_fn(move |req| forward_dedicated(conn.clone(), req));
                    let _ = server.serve_connection(io, svc).await;
                });
            }
        }
    }
}

/// Pooled mode: sends `req` through the shared client.
async fn forward_pooled(
    pooled: Arc<Pooled>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // The legacy client picks its pool by the absolute-form URI; it sends origin-form.
    prepare_request(&mut req, &pooled.upstream, true);
    Ok(match pooled.client.request(req).await {
        Ok(resp) => prepare_response(resp),
        Err(e) => bad_gateway(&e),
    })
}

/// Dedicated mode: sends `req` over this downstream connection's upstream connection.
async fn forward_dedicated(
    conn: Arc<Dedicated>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    prepare_request(&mut req, &conn.upstream, false);
    let idle = conn
        .sender
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let mut sender = match idle {
        Some(s) if !s.is_closed() => s,
        _ => match connect(&conn.upstream).await {
            Ok(s) => s,
            Err(e) => return Ok(bad_gateway(&*e)),
        },
    };
    // Ready at once unless the previous response body is still being read.
    if let Err(e) = sender.ready().await {
        return Ok(bad_gateway(&e));
    }
    let response = sender.send_request(req);
    // Back for the next request: hyper serves one request of a connection at a time.
    *conn.sender.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
    Ok(match response.await {
        Ok(resp) => prepare_response(resp),
        Err(e) => bad_gateway(&e),
    })
}

/// Opens an upstream HTTP/1.1 connection and spawns its driver.
async fn connect(upstream: &Upstream) -> anyhow::Result<SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream.addr)
        .await
        .with_context(|| format!("connecting to {}", upstream.addr))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("proxy-variant: upstream connection: {e}");
        }
    });
    Ok(sender)
}

/// Readies a downstream request for the upstream: hop-by-hop headers go, Host stays the
/// client's (the absolute-form authority if it sent one, the upstream's address if it
/// sent neither), and the URI becomes origin-form, or absolute-form towards the
/// upstream when `absolute`.
fn prepare_request(req: &mut Request<Incoming>, upstream: &Upstream, absolute: bool) {
    let uri = req.uri();
    let from_uri = uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if absolute || uri.scheme().is_some() {
        let mut parts = Parts::default();
        if absolute {
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(upstream.authority.clone());
        }
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    match from_uri {
        Some(h) => {
            headers.insert(header::HOST, h);
        }
        None => {
            if !headers.contains_key(header::HOST) {
                headers.insert(header::HOST, upstream.host.clone());
            }
        }
    }
}

/// Readies an upstream response for the client: hop-by-hop headers go.
fn prepare_response(mut resp: Response<Incoming>) -> Response<ProxyBody> {
    strip_hop_by_hop(resp.headers_mut());
    resp.map(Either::Left)
}

/// The local answer when the upstream cannot be reached or fails.
fn bad_gateway(e: &(dyn std::error::Error + 'static)) -> Response<ProxyBody> {
    eprintln!("proxy-variant: upstream: {e}");
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        b"bad gateway\n",
    ))));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers and those named in `Connection`. hyper frames the
/// bodies itself (content-length kept, chunked otherwise) on both sides.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the keys: usually none is there, or only `connection`.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-a"));
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-b", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-b"));
    }
}
