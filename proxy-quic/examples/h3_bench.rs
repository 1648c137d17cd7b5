//! The processes of `bench/quic/h3-vs-h2.sh`: HTTP/3 against HTTP/2 over TLS
//! through the same request stack (proxy-core's router and proxy to one HTTP/1.1
//! upstream).
//!
//! - `h3_bench upstream ADDR`: an HTTP/1.1 upstream answering every request with
//!   200 and 1 KiB.
//! - `h3_bench proxy LISTEN UPSTREAM DIR`: on one thread, an `H3Listener` (UDP
//!   LISTEN) and an `HttpListener` with proxy-tls's `TerminationLayer` (TCP LISTEN,
//!   ALPN h2 and http/1.1) over the same stack to UPSTREAM; a self-signed
//!   certificate for `localhost` is written to DIR/cert.pem first.
//! - `h3_bench load ADDR CA SECONDS CONNS STREAMS`: an HTTP/3 load client (the h3
//!   crate's, on quinn): CONNS connections of STREAMS requests in flight each,
//!   `GET /` for SECONDS; prints `requests=N errors=E seconds=S`.
//!
//! Run it through the script:
//! `bench/quic/h3-vs-h2.sh` (or by hand: `cargo run --release -p proxy-quic
//! --example h3_bench -- upstream 127.0.0.1:18181`, and so on).

use std::{
    future::poll_fn,
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes};
use proxy_core::{
    cluster::Cluster,
    config::{RouteConfig, VirtualHostConfig},
    proxy::Proxy,
    router::RouteTable,
    snapshot::Routing,
    BoxError, BoxHttp, HttpListener,
};
use proxy_quic::h3::{server_config, H3Listener};
use proxy_tls::{
    config::{CertificateConfig, TerminationConfig},
    rotation::{MemorySecrets, Secret},
    TerminationLayer, TlsRuntime,
};
use tower::ServiceExt;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str, BoxError> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {i}; see the example's docs").into())
    };
    match arg(0)? {
        "upstream" => upstream(arg(1)?.parse()?),
        "proxy" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(proxy(
                arg(1)?.parse()?,
                arg(2)?.parse()?,
                Path::new(arg(3)?),
            )),
        "load" => {
            let (ok, errors, seconds) = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(load(
                    arg(1)?.parse()?,
                    Path::new(arg(2)?),
                    Duration::from_secs(arg(3)?.parse()?),
                    arg(4)?.parse()?,
                    arg(5)?.parse()?,
                ))?;
            println!("requests={ok} errors={errors} seconds={seconds:.3}");
            Ok(())
        }
        other => Err(format!("unknown mode {other}: upstream, proxy or load").into()),
    }
}

fn upstream(addr: SocketAddr) -> Result<(), BoxError> {
    let listener = std::net::TcpListener::bind(addr)?;
    println!("upstream listening on {}", listener.local_addr()?);
    std::io::Write::flush(&mut std::io::stdout())?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(serve_upstream(listener))
}

/// HTTP/1.1 on `listener`: 200 and 1 KiB to every request.
async fn serve_upstream(listener: std::net::TcpListener) -> Result<(), BoxError> {
    let body = Bytes::from(vec![b'x'; 1024]);
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req| {
                let body = body.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(body),
                    ))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// proxy-core's router and proxy: every request to `upstream`.
fn stack(upstream: SocketAddr) -> Result<BoxHttp, BoxError> {
    let cluster = Cluster::builder("app")
        .endpoint(upstream)
        .connect_timeout(Duration::from_secs(1))
        .build()?;
    let vhost = VirtualHostConfig::new("all", ["*"]).route(
        RouteConfig::new("app")
            .prefix("/")
            .named("app")
            .timeout(Duration::from_secs(5)),
    );
    let routes = RouteTable::build("", &[vhost], &|c| c == "app")?;
    let proxy = Proxy::from_routing(Routing::new(routes, [cluster]));
    Ok(BoxHttp::new(
        proxy.map_err(|never| -> BoxError { match never {} }),
    ))
}

async fn proxy(listen: SocketAddr, upstream: SocketAddr, dir: &Path) -> Result<(), BoxError> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    std::fs::write(dir.join("cert.pem"), &cert_pem)?;
    let stack = stack(upstream)?;

    let h3 = H3Listener::builder(
        "h3",
        server_config(cert_pem.as_bytes(), key_pem.as_bytes())?,
    )
    .max_concurrent_streams(1000)
    .bind(listen)?;

    let secrets = Arc::new(MemorySecrets::default());
    secrets.set("server", Secret::key_pair(cert_pem, key_pem));
    let mut tls = TerminationConfig::new(vec![CertificateConfig::secret("server")]);
    tls.alpn = vec!["h2".into(), "http/1.1".into()];
    let termination = TerminationLayer::new(&tls, &TlsRuntime::with_secrets(secrets))?;
    let h2 = HttpListener::builder("h2")
        .network_layer(termination)
        .bind(listen)?;
    println!("proxy listening on {listen} (UDP: HTTP/3, TCP: TLS h2)");
    std::io::Write::flush(&mut std::io::stdout())?;
    tokio::join!(
        h3.serve(stack.clone(), std::future::pending()),
        h2.serve(stack, std::future::pending()),
    );
    Ok(())
}

async fn load(
    addr: SocketAddr,
    ca: &Path,
    duration: Duration,
    conns: usize,
    streams: usize,
) -> Result<(u64, u64, f64), BoxError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));

    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(config.clone());
        let conn = endpoint.connect(addr, "localhost")?.await?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        tokio::spawn(async move {
            let _ = poll_fn(|cx| driver.poll_close(cx)).await;
            drop(endpoint);
        });
        for _ in 0..streams {
            let mut send = send.clone();
            let (ok, errors) = (ok.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    match get(&mut send, addr).await {
                        Ok(()) => ok.fetch_add(1, Relaxed),
                        Err(_) => errors.fetch_add(1, Relaxed),
                    };
                }
            }));
        }
    }
    for t in tasks {
        t.await?;
    }
    Ok((
        ok.load(Relaxed),
        errors.load(Relaxed),
        start.elapsed().as_secs_f64(),
    ))
}

async fn get(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    addr: SocketAddr,
) -> Result<(), BoxError> {
    let req = http::Request::get(format!("https://localhost:{}/", addr.port())).body(())?;
    let mut stream = send.send_request(req).await?;
    stream.finish().await?;
    let head = stream.recv_response().await?;
    if !head.status().is_success() {
        return Err(format!("status {}", head.status()).into());
    }
    while let Some(mut chunk) = stream.recv_data().await? {
        chunk.advance(chunk.remaining());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! One-request smoke test: the upstream, the proxy and a short HTTP/3 load.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bench_processes_serve_http3_requests() {
        let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap();
        tokio::spawn(serve_upstream(up));
        // A port free for TCP now; the proxy binds it for UDP and TCP.
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("h3-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let proxy_dir = dir.clone();
        tokio::spawn(async move { proxy(listen, up_addr, &proxy_dir).await.unwrap() });
        let cert = dir.join("cert.pem");
        for _ in 0..100 {
            if cert.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (ok, errors, _) = tokio::time::timeout(
            Duration::from_secs(20),
            load(listen, &cert, Duration::from_millis(300), 1, 2),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(ok > 0, "no request succeeded ({errors} errors)");
        assert_eq!(errors, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
