//! The demo backends of the default run: plain HTTP/1.1 servers on 127.0.0.1 that
//! say which zone and which backend answered, so that zone routing shows with curl.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;

/// Binds one backend per zone name (127.0.0.1, free ports) and serves them all on a
/// thread of their own; returns their addresses in the order of `zones`.
pub(crate) fn start(zones: &[&'static str]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut listeners = Vec::new();
    for &zone in zones {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        listeners.push((zone, listener));
    }
    let addrs = listeners
        .iter()
        .map(|(_, l)| l.local_addr())
        .collect::<Result<Vec<_>, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || {
            rt.block_on(async move {
                for (zone, listener) in listeners {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => drop(tokio::spawn(serve(zone, listener))),
                        Err(e) => tracing::error!(error = %e, "demo backend failed"),
                    }
                }
                std::future::pending::<()>().await
            })
        })?;
    Ok(addrs)
}

async fn serve(zone: &'static str, listener: tokio::net::TcpListener) {
    let Ok(me) = listener.local_addr() else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                let body = format!(
                    "zone {zone} backend {me}: {} {} (x-uid {}, via {})\n",
                    req.method(),
                    req.uri(),
                    header("x-uid"),
                    header("x-forwarded-for"),
                );
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response
                    .headers_mut()
                    .insert("x-demo-zone", http::HeaderValue::from_static(zone));
                Ok::<_, Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
