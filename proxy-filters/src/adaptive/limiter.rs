//! The admission gate and the per-request service: atomics only.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{
            AtomicBool, AtomicU32, AtomicU64,
            Ordering::{Acquire, Relaxed},
        },
        Arc,
    },
    task::{ready, Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use proxy_core::rpc::RpcInfo;
use tower_service::Service;

use super::{
    cost::{path_prefix, CostTable, InterfaceKey},
    metrics::LimiterStats,
    signals::LatencyHistogram,
    validate::Validated,
};

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    /// In-flight reached the limit.
    Limit,
    /// A high-cost interface, in-flight at or above the high-cost limit.
    HighCost,
}

/// The concurrency gate: in-flight against the current limit.
#[derive(Debug)]
pub(crate) struct Gate {
    in_flight: AtomicU32,
    limit: AtomicU32,
    high_cost_limit: AtomicU32,
    peak: AtomicU32,
}

impl Gate {
    pub(crate) fn new(limit: u32, high_cost_limit: u32) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            limit: AtomicU32::new(limit.max(1)),
            high_cost_limit: AtomicU32::new(high_cost_limit.max(1)),
            peak: AtomicU32::new(0),
        }
    }

    /// Admits one request if in-flight is below its limit.
    #[inline]
    pub(crate) fn try_acquire(&self, high_cost: bool) -> Result<(), Reject> {
        let limit = self.limit.load(Relaxed);
        let bound = if high_cost {
            self.high_cost_limit.load(Relaxed).min(limit)
        } else {
            limit
        };
        let mut cur = self.in_flight.load(Relaxed);
        loop {
            if cur >= bound {
                return Err(if high_cost && cur < limit {
                    Reject::HighCost
                } else {
                    Reject::Limit
                });
            }
            match self
                .in_flight
                .compare_exchange_weak(cur, cur + 1, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if cur + 1 > self.peak.load(Relaxed) {
            self.peak.fetch_max(cur + 1, Relaxed);
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    /// The highest in-flight since the last call, reset to the current in-flight.
    pub(crate) fn take_peak(&self) -> u32 {
        self.peak.swap(self.in_flight(), Relaxed)
    }

    pub(crate) fn set_limits(&self, limit: u32, high_cost_limit: u32) {
        self.limit.store(limit.max(1), Relaxed);
        self.high_cost_limit.store(high_cost_limit.max(1), Relaxed);
    }
}

/// State shared by the layer, its services and the control loop.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) gate: Gate,
    pub(crate) latency: LatencyHistogram,
    pub(crate) costs: Option<CostTable>,
    pub(crate) path_segments: usize,
    pub(crate) stats: Arc<LimiterStats>,
    pub(crate) settings: Validated,
    pub(crate) loop_running: AtomicBool,
    /// Rejections by this limiter (its stats may be shared with a namesake).
    pub(crate) rejections: AtomicU64,
    /// The open baseline measurement (0: none). A request admitted while it is open
    /// was admitted below the probe concurrency; its latency also goes to
    /// `probe_latency` if the same measurement is still open when it completes.
    pub(crate) probe_epoch: AtomicU32,
    /// Latencies of requests admitted during the open baseline measurement.
    pub(crate) probe_latency: LatencyHistogram,
    /// Where the limit goes after the first baseline measurement of a new limiter.
    pub(crate) start_limit: u32,
    status: StatusCode,
    retry_after: HeaderValue,
}

static X_PROXY_ERROR: HeaderName = proxy_core::proxy::PROXY_ERROR_HEADER;
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

impl Shared {
    pub(crate) fn new(settings: Validated, stats: Arc<LimiterStats>) -> Self {
        let c = &settings.config;
        // A limiter rebuilt on reload (same name, same stats) starts where the old one
        // was; a new one at the headroom floor (or the maximum without headroom).
        let previous = (stats.steps.load(Relaxed) > 0)
            .then(|| u32::try_from(stats.limit.load(Relaxed)).unwrap_or(u32::MAX));
        let initial = previous
            .or_else(|| c.headroom.as_ref().map(|h| h.floor.get()))
            .unwrap_or(c.max_limit.get())
            .clamp(c.min_limit.get(), c.max_limit.get());
        let fraction = c
            .cost
            .as_ref()
            .map_or(1.0, |k| k.high_cost_limit_percent.fraction());
        let costs = c.cost.as_ref().map(|k| CostTable::new(k.max_interfaces));
        let path_segments = c.cost.as_ref().map_or(1, |k| k.path_segments.get());
        let retry_after = HeaderValue::from(c.reject.retry_after.as_secs().max(1));
        // Nothing learned yet (a new limiter, or one whose predecessor never measured):
        // the baseline is measured first, at the probe concurrency, before any load
        // beyond it is admitted.
        let cold_probe = c
            .latency
            .as_ref()
            .filter(|l| l.target.is_none())
            .filter(|_| {
                let b = stats.learned_baseline.get();
                !(b.is_finite() && b > 0.0)
            })
            .map(|l| {
                l.probe
                    .concurrency
                    .get()
                    .clamp(c.min_limit.get(), c.max_limit.get())
            });
        let gate_limit = cold_probe.unwrap_or(initial);
        stats.limit.store(u64::from(gate_limit), Relaxed);
        Self {
            probe_epoch: AtomicU32::new(u32::from(cold_probe.is_some())),
            probe_latency: LatencyHistogram::default(),
            start_limit: initial,
            gate: Gate::new(gate_limit, high_cost_limit(gate_limit, fraction)),
            latency: LatencyHistogram::default(),
            costs,
            path_segments,
            stats,
            status: settings.status,
            retry_after,
            settings,
            loop_running: AtomicBool::new(false),
            rejections: AtomicU64::new(0),
        }
    }

    /// The answer to a rejected request: the configured status with `retry-after` and
    /// `x-proxy-error: overloaded`; a gRPC request gets a trailers-only `RESOURCE_EXHAUSTED`.
    pub(crate) fn reject_response<RB: From<Bytes>>(&self, grpc: bool) -> Response<RB> {
        let mut resp = Response::new(RB::from(if grpc {
            Bytes::new()
        } else {
            Bytes::from_static(b"overloaded\n")
        }));
        if !grpc {
            *resp.status_mut() = self.status;
        }
        let h = resp.headers_mut();
        h.insert(header::RETRY_AFTER, self.retry_after.clone());
        h.insert(
            X_PROXY_ERROR.clone(),
            HeaderValue::from_static("overloaded"),
        );
        if grpc {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert(GRPC_STATUS.clone(), HeaderValue::from_static("8"));
            h.insert(GRPC_MESSAGE.clone(), HeaderValue::from_static("overloaded"));
        } else {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        resp
    }
}

/// The in-flight bound for high-cost interfaces under `limit`.
pub(crate) fn high_cost_limit(limit: u32, fraction: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = (f64::from(limit) * fraction).floor() as u32;
    v.clamp(1, limit.max(1))
}

/// The interface of a request: its RPC method if a codec named one, else a path prefix.
fn interface_key<B>(req: &Request<B>, segments: usize) -> InterfaceKey<'_> {
    match req.extensions().get::<RpcInfo>() {
        Some(rpc) => InterfaceKey::Rpc {
            service: &rpc.service,
            method: &rpc.method,
        },
        None => InterfaceKey::Path(path_prefix(req.uri().path(), segments)),
    }
}

/// The adaptive concurrency limiter service; see [`super::AdaptiveConcurrencyLayer`].
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> AdaptiveConcurrency<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S, B, RB> Service<Request<B>> for AdaptiveConcurrency<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: From<Bytes>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        if !shared.loop_running.load(Relaxed) {
            super::control::start(shared);
        }
        let slot = shared
            .costs
            .as_ref()
            .and_then(|t| t.slot(interface_key(&req, shared.path_segments)));
        let high_cost = match (slot, &shared.costs) {
            (Some(s), Some(t)) => t.is_high_cost(s),
            _ => false,
        };
        // Read before the gate (pairs with the control loop's release store after it
        // shrinks the limit): a request counted in a measurement saw its limit.
        let probe = shared.probe_epoch.load(Acquire);
        match shared.gate.try_acquire(high_cost) {
            Ok(()) => {
                shared.stats.admitted.fetch_add(1, Relaxed);
                let permit = Permit {
                    shared: shared.clone(),
                    start: Instant::now(),
                    slot,
                    probe,
                };
                ResponseFuture {
                    state: State::Admitted {
                        future: self.inner.call(req),
                        permit: Some(permit),
                    },
                }
            }
            Err(reason) => {
                shared.rejections.fetch_add(1, Relaxed);
                match reason {
                    Reject::Limit => &shared.stats.rejected_limit,
                    Reject::HighCost => &shared.stats.rejected_high_cost,
                }
                .fetch_add(1, Relaxed);
                tracing::debug!(?reason, "adaptive concurrency: request shed");
                ResponseFuture {
                    state: State::Rejected {
                        response: Some(
                            shared.reject_response(proxy_core::rpc::is_grpc(req.headers())),
                        ),
                    },
                }
            }
        }
    }
}

/// One admitted request's place in the gate: released when dropped, its latency
/// recorded when the response arrives.
#[derive(Debug)]
struct Permit {
    shared: Arc<Shared>,
    start: Instant,
    slot: Option<usize>,
    /// The baseline measurement open at admission (0: none).
    probe: u32,
}

impl Permit {
    fn complete(&self) {
        let elapsed = self.start.elapsed();
        self.shared.latency.record(elapsed);
        if self.probe != 0 && self.probe == self.shared.probe_epoch.load(Relaxed) {
            self.shared.probe_latency.record(elapsed);
        }
        if let (Some(slot), Some(t)) = (self.slot, &self.shared.costs) {
            t.record(slot, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.gate.release();
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AdaptiveConcurrency`]: the inner future of an admitted
    /// request, or the ready rejection.
    #[derive(Debug)]
    pub struct ResponseFuture<F, RB> {
        #[pin]
        state: State<F, RB>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F, RB> {
        Admitted { #[pin] future: F, permit: Option<Permit> },
        Rejected { response: Option<Response<RB>> },
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted { future, permit } => {
                let out = ready!(future.poll(cx));
                if let Some(p) = permit.take() {
                    p.complete();
                }
                Poll::Ready(out)
            }
            StateProj::Rejected { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_admits_up_to_the_limit() {
        let g = Gate::new(3, 1);
        assert_eq!(g.try_acquire(true), Ok(()));
        assert_eq!(g.try_acquire(true), Err(Reject::HighCost));
        assert_eq!(g.try_acquire(false), Ok(()));
        assert_eq!(g.try_acquire(false), Ok(()));
        assert_eq!(g.try_acquire(false), Err(Reject::Limit));
        assert_eq!(g.try_acquire(true), Err(Reject::Limit));
        assert_eq!(g.take_peak(), 3);
        g.release();
        assert_eq!(g.in_flight(), 2);
        // The peak was reset to the in-flight of its last reading (3), then to 2.
        assert_eq!(g.take_peak(), 3);
        assert_eq!(g.take_peak(), 2);
        g.set_limits(0, 0);
        assert_eq!(g.limit(), 1);
    }

    #[test]
    fn interface_is_the_rpc_method_else_a_path_prefix() {
        let mut req = Request::builder().uri("/a/b/c?x=1").body(()).unwrap();
        assert_eq!(interface_key(&req, 2), InterfaceKey::Path("/a/b"));
        assert_eq!(interface_key(&req, 0), InterfaceKey::Path("/a/b/c"));
        req.extensions_mut()
            .insert(RpcInfo::new("dubbo", "com.shop.Orders", "get"));
        assert_eq!(
            interface_key(&req, 2),
            InterfaceKey::Rpc {
                service: "com.shop.Orders",
                method: "get"
            }
        );
    }

    #[test]
    fn high_cost_limit_is_within_the_limit() {
        assert_eq!(high_cost_limit(10, 0.7), 7);
        assert_eq!(high_cost_limit(1, 0.1), 1);
        assert_eq!(high_cost_limit(10, 1.0), 10);
    }
}
