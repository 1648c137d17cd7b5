//! The load side of the overload test: the fixed-capacity backend, an HTTP/2 client
//! as a tower service, open- and closed-loop load generators and their figures.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::{Service, ServiceExt};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Req = Request<Empty<Bytes>>;
pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) const SLOTS: usize = 8;
pub(crate) const SERVICE_TIME: Duration = Duration::from_millis(50);

/// Starts the fixed-capacity backend; `/expensive` takes 4x the service time and
/// `/cheap` a quarter of it.
pub(crate) async fn backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slots = Arc::new(Semaphore::new(SLOTS));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let slots = slots.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let slots = slots.clone();
                    async move {
                        let time = match req.uri().path() {
                            p if p.starts_with("/expensive") => SERVICE_TIME * 4,
                            p if p.starts_with("/cheap") => SERVICE_TIME / 4,
                            _ => SERVICE_TIME,
                        };
                        let _slot = slots.acquire().await.unwrap();
                        tokio::time::sleep(time).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(100_000)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A client service over one HTTP/2 connection to the backend.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub(crate) send: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
}

impl Upstream {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self { send }
    }
}

impl Service<Req> for Upstream {
    type Response = Resp;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let mut send = self.send.clone();
        Box::pin(async move {
            send.ready().await?;
            let resp = send.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok(Response::from_parts(parts, Full::new(bytes)))
        })
    }
}

pub(crate) fn request(path: &str) -> Req {
    Request::builder()
        .uri(format!("http://backend{path}"))
        .body(Empty::new())
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// When the request started, since the start of the phase.
    pub(crate) offset: Duration,
    pub(crate) latency: Duration,
    pub(crate) status: StatusCode,
    pub(crate) overload: bool,
    pub(crate) expensive: bool,
}

impl Sample {
    pub(crate) fn completed_at(&self) -> Duration {
        self.offset + self.latency
    }
}

/// Offers `rate` requests per second, open loop, for `duration`; `path(i)` picks the
/// path of request `i`. Waits up to `drain` for the answers.
pub(crate) async fn offer<S>(
    svc: S,
    rate: f64,
    duration: Duration,
    drain: Duration,
    path: impl Fn(u64) -> &'static str,
) -> (Vec<Sample>, usize)
where
    S: Service<Req, Response = Resp> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    let mut tasks = Vec::new();
    loop {
        ticker.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while sent < due {
            let p = path(sent);
            let svc = svc.clone();
            let samples = samples.clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let resp = svc.oneshot(request(p)).await.unwrap();
                let s = Sample {
                    offset: t - start,
                    latency: t.elapsed(),
                    status: resp.status(),
                    overload: resp
                        .headers()
                        .get("x-proxy-error")
                        .is_some_and(|v| v == "overloaded"),
                    expensive: p.starts_with("/expensive"),
                };
                samples.lock().unwrap().push(s);
            }));
            sent += 1;
        }
    }
    let deadline = tokio::time::Instant::now() + drain;
    let mut pending = 0;
    for t in tasks {
        match tokio::time::timeout_at(deadline, t).await {
            Ok(r) => r.unwrap(),
            Err(_) => pending += 1,
        }
    }
    let out = samples.lock().unwrap().clone();
    (out, pending)
}

/// Closed loop with `workers` clients for `duration`: (completed per second, latencies).
pub(crate) async fn closed_loop(
    up: &Upstream,
    workers: usize,
    duration: Duration,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let up = up.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                let r = up.clone().oneshot(request("/")).await.unwrap();
                assert_eq!(r.status(), 200);
                if start.elapsed() <= duration {
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as f64 / duration.as_secs_f64(), all)
}

pub(crate) fn quantile(mut v: Vec<Duration>, q: f64) -> Duration {
    assert!(!v.is_empty());
    v.sort();
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) struct Baseline {
    pub(crate) capacity: f64,
    pub(crate) unloaded_p99: Duration,
}

pub(crate) async fn measure_backend(up: &Upstream) -> Baseline {
    // Warm the connection and the timer wheel.
    closed_loop(up, 2, Duration::from_millis(200)).await;
    let (_, lat) = closed_loop(up, SLOTS / 2, Duration::from_secs(1)).await;
    let unloaded_p99 = quantile(lat, 0.99);
    let (capacity, _) = closed_loop(up, SLOTS * 4, Duration::from_secs(1)).await;
    Baseline {
        capacity,
        unloaded_p99,
    }
}
