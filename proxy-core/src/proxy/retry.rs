//! Retries and deadlines: which outcomes may be retried, the earlier of the per-try
//! and overall deadlines, and [`RetryLayer`] for stacks assembled in code.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Instant;

use crate::{cluster::Cluster, config::RetryOn, HttpResponse, ProxyError};

pub(super) enum AttemptError {
    Proxy(ProxyError),
    PerTry,
    Deadline,
}

/// The earlier of the per-try and overall deadlines, and whether it is the per-try one.
pub(super) fn attempt_limit(
    per_try: Option<Instant>,
    overall: Option<Instant>,
) -> Option<(Instant, bool)> {
    match (per_try, overall) {
        (Some(a), Some(b)) => Some((a.min(b), a <= b)),
        (Some(a), None) => Some((a, true)),
        (None, Some(b)) => Some((b, false)),
        (None, None) => None,
    }
}

/// The retry conditions an attempt's outcome meets, if any.
pub(super) fn retry_condition(result: &Result<HttpResponse, AttemptError>) -> Option<[RetryOn; 2]> {
    match result {
        Ok(resp) => status_condition(resp.status()),
        Err(AttemptError::PerTry) => Some([RetryOn::PerTryTimeout, RetryOn::PerTryTimeout]),
        Err(AttemptError::Proxy(e)) => error_condition(e),
        Err(AttemptError::Deadline) => None,
    }
}

/// The conditions an upstream's answer meets: 5xx, and 502-504 as gateway errors.
fn status_condition(status: http::StatusCode) -> Option<[RetryOn; 2]> {
    if !status.is_server_error() {
        return None;
    }
    Some(if matches!(status.as_u16(), 502..=504) {
        [RetryOn::ServerError, RetryOn::GatewayError]
    } else {
        [RetryOn::ServerError, RetryOn::ServerError]
    })
}

/// The conditions a proxy error meets: a connect failure (or a full pool), a reset.
fn error_condition(e: &ProxyError) -> Option<[RetryOn; 2]> {
    match e {
        ProxyError::Connect { .. } | ProxyError::Overflow { .. } => {
            Some([RetryOn::ConnectFailure, RetryOn::ConnectFailure])
        }
        ProxyError::Upstream { .. } | ProxyError::UpstreamProtocol { .. } => {
            Some([RetryOn::Reset, RetryOn::Reset])
        }
        _ => None,
    }
}

pub(super) fn count_attempt(
    cluster: &Cluster,
    endpoint: &Arc<crate::cluster::Endpoint>,
    result: &Result<HttpResponse, AttemptError>,
    elapsed: Duration,
) {
    let result = match result {
        Ok(r) => Ok(r.status()),
        Err(AttemptError::Proxy(e)) => Err(e),
        Err(AttemptError::PerTry | AttemptError::Deadline) => Err(&ProxyError::Timeout),
    };
    cluster.record_attempt(endpoint, result, elapsed);
}

pin_project_lite::pin_project! {
    /// A future with an optional deadline; `None` when the deadline passed first. The
    /// timer is boxed and made only when there is a deadline, so a request without a
    /// timeout neither touches the timer wheel nor grows its future.
    pub(super) struct Deadline<F> {
        #[pin]
        inner: F,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F> Deadline<F> {
    pub(super) fn new(inner: F, at: Option<Instant>) -> Self {
        Self {
            inner,
            sleep: at.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match this.sleep {
            Some(sleep) => sleep.as_mut().poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    }
}

/// The retry conditions a response or error of a composed stack meets, if any: a
/// [`ProxyError`] in the error's source chain, tower's timeout (or
/// `ProxyError::Timeout`) as a per-try timeout, 5xx statuses.
fn stack_retry_condition(result: &Result<HttpResponse, crate::BoxError>) -> Option<[RetryOn; 2]> {
    const PER_TRY: Option<[RetryOn; 2]> = Some([RetryOn::PerTryTimeout, RetryOn::PerTryTimeout]);
    match result {
        Ok(resp) => status_condition(resp.status()),
        Err(e) => match ProxyError::find(&**e) {
            Some(ProxyError::Timeout) => PER_TRY,
            Some(p) => error_condition(p),
            None if e.is::<tower::timeout::error::Elapsed>() => PER_TRY,
            None => None,
        },
    }
}

/// Retries requests that failed in a retryable way, within a [`RetryBudget`](crate::cluster::RetryBudget): the
/// route's `retry` policy as a layer, for stacks assembled in code.
///
/// A request is retried when its outcome meets a condition of the policy (connect
/// failure, reset, 5xx, gateway error, per-try timeout — tower's `Elapsed` from a
/// `TimeoutLayer` inside this one counts as one), fewer than `attempts` retries were
/// made, its body can be replayed (empty or fully buffered) and the budget has a
/// retry left. Every first attempt deposits into the budget.
///
/// # Example
/// ```
/// use std::sync::{atomic::{AtomicU32, Ordering}, Arc};
/// use proxy_core::{
///     cluster::RetryBudget, config::{RetryBudgetConfig, RetryOn, RetryPolicyConfig},
///     proxy::RetryLayer, router::RetryPolicy, Body, BoxError, HttpRequest, HttpResponse,
/// };
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let calls = Arc::new(AtomicU32::new(0));
/// let seen = calls.clone();
/// // Fails with 503 twice, then answers.
/// let flaky = tower::service_fn(move |_req: HttpRequest| {
///     let n = seen.fetch_add(1, Ordering::Relaxed);
///     async move {
///         let mut resp = HttpResponse::new(Body::empty());
///         if n < 2 { *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE; }
///         Ok::<_, BoxError>(resp)
///     }
/// });
/// let policy = RetryPolicy::build("retry", &RetryPolicyConfig {
///     attempts: 3,
///     retry_on: vec![RetryOn::GatewayError],
///     per_try_timeout: None,
/// }).unwrap();
/// let budget = Arc::new(RetryBudget::new(&RetryBudgetConfig::default()));
/// let stack = ServiceBuilder::new().layer(RetryLayer::new(policy, budget)).service(flaky);
/// let resp = stack.oneshot(HttpRequest::new(Body::empty())).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// assert_eq!(calls.load(Ordering::Relaxed), 3);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: crate::router::RetryPolicy,
    budget: Arc<crate::cluster::RetryBudget>,
}

impl RetryLayer {
    /// Retries by `policy`, drawing on `budget` (share one budget per cluster).
    pub fn new(
        policy: crate::router::RetryPolicy,
        budget: Arc<crate::cluster::RetryBudget>,
    ) -> Self {
        Self { policy, budget }
    }
}

impl<S> tower_layer::Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy,
            budget: self.budget.clone(),
        }
    }
}

/// The service of [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: crate::router::RetryPolicy,
    budget: Arc<crate::cluster::RetryBudget>,
}

impl<S> tower_service::Service<crate::HttpRequest> for Retry<S>
where
    S: tower_service::Service<crate::HttpRequest, Response = HttpResponse, Error = crate::BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = crate::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, crate::BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), crate::BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: crate::HttpRequest) -> Self::Future {
        // The instance made ready serves the first attempt; clones serve retries.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy;
        let budget = self.budget.clone();
        budget.deposit();
        let (parts, body) = req.into_parts();
        let replay = if policy.attempts > 0 {
            body.try_clone().map(|b| (parts.clone(), b))
        } else {
            None
        };
        let first = inner.call(crate::HttpRequest::from_parts(parts, body));
        Box::pin(async move {
            let mut result = first.await;
            let mut retries = 0;
            while let Some((parts, body)) = replay.as_ref() {
                let retryable = stack_retry_condition(&result)
                    .is_some_and(|conds| conds.iter().any(|c| policy.retries_on(*c)));
                if !retryable || retries >= policy.attempts || !budget.withdraw() {
                    break;
                }
                retries += 1;
                let Some(body) = body.try_clone() else {
                    break;
                };
                let req = crate::HttpRequest::from_parts(parts.clone(), body);
                tower::ServiceExt::ready(&mut inner).await?;
                result = inner.call(req).await;
            }
            result
        })
    }
}
