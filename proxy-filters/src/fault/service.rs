//! The fault service and its response future.

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::Ordering,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderName, StatusCode};
use proxy_core::{HttpRequest, HttpResponse};
use tower::ServiceExt;
use tower_service::Service;

use super::Settings;

/// Delays or aborts a share of requests (see [`super`]).
#[derive(Debug, Clone)]
pub struct Fault<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Fault<S> {
    pub(super) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }
}

type Boxed<E> = Pin<Box<dyn Future<Output = Result<HttpResponse, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`Fault`].
    // pin-project-lite takes no docs on variant fields.
    #[allow(missing_docs)]
    #[project = Proj]
    pub enum ResponseFuture<F, E> {
        /// No fault: the inner service's future.
        Inner {
            #[pin]
            fut: F,
        },
        /// An abort without delay.
        Abort {
            resp: Option<HttpResponse>,
        },
        /// A delay (then the inner service or an abort).
        Delayed {
            fut: Boxed<E>,
        },
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<HttpResponse, E>>,
{
    type Output = Result<HttpResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Inner { fut } => fut.poll(cx),
            Proj::Abort { resp } => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            Proj::Delayed { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl<S> Service<HttpRequest> for Fault<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let settings = &*self.settings;
        settings.counters.requests.inc();
        let (delay, abort) = decide(settings, req.headers());
        let abort = abort.map(|status| abort_response(req.headers(), status));
        if abort.is_some() {
            settings.counters.aborts.inc();
        }
        match (delay, abort) {
            (None, None) => ResponseFuture::Inner {
                fut: self.inner.call(req),
            },
            (None, Some(resp)) => ResponseFuture::Abort { resp: Some(resp) },
            (Some(delay), abort) => {
                let Some(slot) = Active::take(&self.settings) else {
                    // Too many requests held already: no delay for this one.
                    return match abort {
                        Some(resp) => ResponseFuture::Abort { resp: Some(resp) },
                        None => ResponseFuture::Inner {
                            fut: self.inner.call(req),
                        },
                    };
                };
                settings.counters.delays.inc();
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::Delayed {
                    fut: Box::pin(async move {
                        tokio::time::sleep(delay).await;
                        drop(slot);
                        match abort {
                            Some(resp) => Ok(resp),
                            None => inner.oneshot(req).await,
                        }
                    }),
                }
            }
        }
    }
}

/// Which faults apply to a request with `headers`: the configured ones, adjusted by
/// fault headers when enabled, each drawn against its percentage.
pub(super) fn decide(
    settings: &Settings,
    headers: &HeaderMap,
) -> (Option<Duration>, Option<StatusCode>) {
    let mut delay = settings.delay;
    let mut abort = settings.abort;
    if let Some(h) = &settings.headers {
        if let Some(ms) = header_num::<u64>(headers, &h.delay) {
            let d = Duration::from_millis(ms).min(h.max_delay);
            delay = Some((d, delay.map_or(1_000_000, |(_, p)| p)));
        }
        if let (Some((_, p)), Some(hp)) = (delay.as_mut(), header_percent(headers, &h.delay_pct)) {
            *p = (*p).min(hp);
        }
        if let Some(code) = header_num::<u16>(headers, &h.abort) {
            if let Ok(status) = StatusCode::from_u16(code) {
                if (200..=599).contains(&code) {
                    abort = Some((status, abort.map_or(1_000_000, |(_, p)| p)));
                }
            }
        }
        if let (Some((_, p)), Some(hp)) = (abort.as_mut(), header_percent(headers, &h.abort_pct)) {
            *p = (*p).min(hp);
        }
    }
    let delay = delay.and_then(|(d, p)| settings.sampler.hit(p).then_some(d));
    let abort = abort.and_then(|(s, p)| settings.sampler.hit(p).then_some(s));
    (delay, abort)
}

fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &HeaderName) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_percent(headers: &HeaderMap, name: &HeaderName) -> Option<u32> {
    let v: f64 = header_num(headers, name)?;
    crate::config::Percent::try_from(v)
        .ok()
        .map(|p| p.per_million())
}

fn abort_response(req: &HeaderMap, status: StatusCode) -> HttpResponse {
    crate::local_reply::reply(req, status, "fault_abort", "")
}

/// One of the `max_active` delayed requests, given back on drop.
struct Active(Arc<Settings>);

impl Active {
    fn take(settings: &Arc<Settings>) -> Option<Self> {
        let prev = settings.active.fetch_add(1, Ordering::AcqRel);
        if prev >= settings.max_active {
            settings.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(settings.clone()))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
