//! A demo upstream for the example binaries: their embedded default configs route to
//! it, so that they answer on a fresh machine with nothing else running.
//!
//! ```
//! let addr = proxy_core::demo::start_upstream("demo")?;
//! assert!(addr.ip().is_loopback());
//! # Ok::<_, std::io::Error>(())
//! ```

use std::{convert::Infallible, fmt::Write as _, io, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;

/// Binds 127.0.0.1 on a free port and serves HTTP/1.1 on a thread of its own: every
/// request is answered 200 with `hello from NAME`, its method and URI, and its `x-*`
/// headers (what the proxy's filters added), one per line.
///
/// # Errors
///
/// The bind, or starting the thread, failed.
pub fn start_upstream(name: &'static str) -> io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("demo-upstream".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "demo upstream runtime failed"),
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer(
                            name, &req,
                        )))))
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        })?;
    Ok(addr)
}

fn answer<B>(name: &str, req: &Request<B>) -> String {
    let mut body = format!("hello from {name}\n{} {}\n", req.method(), req.uri());
    for (header, value) in req.headers() {
        if header.as_str().starts_with("x-") {
            let value = String::from_utf8_lossy(value.as_bytes());
            let _ = writeln!(body, "{header}: {value}");
        }
    }
    body
}
