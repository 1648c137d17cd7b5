//! HTTP upstreams: HTTP/1.1 and h2c (prior knowledge) on one port, served by hyper.

use std::{convert::Infallible, future::Future, sync::Arc};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::{full, spawn_raw, RespBody, Seen, Stats, Upstream};

/// A response with `status` and a one-buffer `body`.
///
/// # Panics
/// When `status` is not a valid status code.
pub fn response(status: u16, body: impl Into<Bytes>) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).expect("a valid status code");
    resp
}

impl Upstream {
    /// Reads each request's body whole, records the request ([`Upstream::requests`])
    /// and answers with `handler`'s response (a body that fails to arrive whole is
    /// answered 400).
    ///
    /// ```
    /// use proxy_test_support::{client, upstream::response, Upstream};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let up = Upstream::http(|seen| response(200, format!("you asked for {}", seen.path())));
    /// let r = client::get(up.addr, "/x", &[]).await;
    /// assert_eq!(r.text(), "you asked for /x");
    /// assert_eq!(up.requests()[0].path(), "/x");
    /// # });
    /// ```
    pub fn http<F>(handler: F) -> Self
    where
        F: Fn(&Seen) -> Response<RespBody> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        Self::http_async(move |seen| {
            let resp = handler(&seen);
            async move { resp }
        })
    }

    /// [`Upstream::http`] with a handler that may await (a delay, a channel).
    pub fn http_async<F, Fut>(handler: F) -> Self
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<RespBody>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self::hyper(move |req, stats| {
            let handler = handler.clone();
            async move {
                let (parts, body) = req.into_parts();
                match body.collect().await {
                    Ok(body) => handler(stats.record(&parts, body.to_bytes())).await,
                    Err(e) => response(400, format!("upstream: body error: {e}")),
                }
            }
        })
    }

    /// Answers the requests with `responses` in turn, the last one again once they
    /// are used up; records the requests.
    ///
    /// # Panics
    /// When `responses` is empty.
    pub fn canned(responses: Vec<Response<Bytes>>) -> Self {
        assert!(!responses.is_empty(), "no canned responses");
        let responses: Vec<_> = responses.into_iter().map(Response::into_parts).collect();
        Self::http(move |seen| {
            let i = usize::try_from(seen.n).unwrap_or(usize::MAX);
            let (parts, body) = &responses[i.min(responses.len() - 1)];
            let mut resp = Response::new(full(body.clone()));
            *resp.status_mut() = parts.status;
            *resp.headers_mut() = parts.headers.clone();
            resp
        })
    }

    /// Answers every request with 200, the body `name` and header `x-upstream: name`.
    pub fn named(name: &str) -> Self {
        let name = name.to_owned();
        Self::http(move |_| {
            let mut resp = response(200, name.clone());
            if let Ok(v) = http::HeaderValue::from_str(&name) {
                resp.headers_mut().insert("x-upstream", v);
            }
            resp
        })
    }

    /// Answers every request with 200 and its request head ([`Seen::head`]) as the
    /// body, so a test can read what reached the upstream.
    pub fn head_echo() -> Self {
        Self::http(|seen| response(200, seen.head()))
    }

    /// Serves each request, unread, with `handler` (for streamed bodies); records
    /// nothing unless the handler does, with the [`Stats`] it is given.
    pub fn hyper<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>, Arc<Stats>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<RespBody>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        spawn_raw(move |stream, stats| serve(stream, handler.clone(), stats))
    }
}

/// Serves one connection, HTTP/1.1 or h2c, with upgrades.
async fn serve<F, Fut>(stream: TcpStream, handler: Arc<F>, stats: Arc<Stats>)
where
    F: Fn(Request<Incoming>, Arc<Stats>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let resp = handler(req, stats.clone());
        async move { Ok::<_, Infallible>(resp.await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await;
}
