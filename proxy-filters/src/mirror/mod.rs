//! Traffic mirroring: a sampled copy of requests (`sample_percent`, 0-100, default
//! 100) goes to a shadow cluster; its answer is ignored, and the real request never
//! waits for it or fails with it.
//!
//! Memory is bounded: a body already in memory is copied by reference; a streamed
//! body is teed as it passes to the real upstream, up to `max_body_bytes` — past
//! that the copy is dropped and the mirror skipped. At most `max_in_flight` copies
//! (teeing or sent) exist at once, so mirroring holds at most
//! `max_in_flight * max_body_bytes` bytes. The copy is sent when the client's body
//! has ended, on a spawned task, with a `timeout`.
//!
//! Metrics: `proxy_filters_mirror_{sent_total,results_total,skipped_total,in_flight}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: mirror
//!     config: { cluster: shadow, sample_percent: 10, max_body_bytes: 64KiB }
//! ```

mod tee;

use std::{
    future::Future,
    num::NonZeroUsize,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{uri::Authority, HeaderValue, Uri};
use proxy_core::{cluster::Cluster, config::ByteSize, BoxError, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tower_service::Service;

use crate::{
    config::{Percent, Sampler},
    metrics::MirrorCounters,
    ConfigError,
};

/// The registered name.
pub const NAME: &str = "mirror";

/// The `mirror` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The shadow cluster; it must exist in the config.
    pub cluster: String,
    /// Share of requests mirrored, 0-100 (default 100).
    #[serde(default)]
    pub sample_percent: Percent,
    /// The largest body copied (default 64KiB); larger requests are not mirrored.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// Copies in flight at most (default 64); more are skipped.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: NonZeroUsize,
    /// How long a copy may take (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Appended to the copy's host, e.g. `-shadow` (Envoy's habit); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_suffix: Option<String>,
    /// Seeds the sampler (tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl MirrorConfig {
    /// Mirrors every request to `cluster`, every other field at its default.
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            name: None,
            cluster: cluster.into(),
            sample_percent: Percent::HUNDRED,
            max_body_bytes: default_max_body(),
            max_in_flight: default_max_in_flight(),
            timeout: default_timeout(),
            host_suffix: None,
            seed: None,
        }
    }
}

fn default_max_body() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_max_in_flight() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Where copies go: a cluster ([`ClusterShadow`]), or anything else that takes a
/// request (tests, benches).
pub trait Shadow: Send + Sync + 'static {
    /// Sends one copy.
    fn send(
        &self,
        req: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;
}

/// A cluster as the shadow: copies go through its balancer and connections, as the
/// proxy's own requests do. What the registered `mirror` filter uses for `cluster`.
#[derive(Debug, Clone)]
pub struct ClusterShadow(pub Arc<Cluster>);

impl Shadow for ClusterShadow {
    fn send(
        &self,
        req: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>> {
        let cluster = self.0.clone();
        Box::pin(async move { cluster.send(req).await.map_err(BoxError::from) })
    }
}

pub(crate) struct Settings {
    shadow: Arc<dyn Shadow>,
    sampler: Sampler,
    per_million: u32,
    max_body: usize,
    max_in_flight: usize,
    in_flight: AtomicUsize,
    timeout: Duration,
    host_suffix: Option<String>,
    pub(crate) counters: Arc<MirrorCounters>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("per_million", &self.per_million)
            .field("max_body", &self.max_body)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// Applies [`Mirror`] to a service.
///
/// # Example
/// A shadow of its own that counts the copies (for a cluster, pass
/// `Arc::new(ClusterShadow(cluster))`):
/// ```
/// use std::{future::Future, pin::Pin, sync::{atomic::{AtomicUsize, Ordering}, Arc}};
/// use proxy_core::{Body, BoxError, HttpRequest, HttpResponse};
/// use proxy_filters::mirror::{MirrorConfig, MirrorLayer, Shadow};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// #[derive(Default)]
/// struct Count(AtomicUsize);
/// impl Shadow for Count {
///     fn send(&self, _req: HttpRequest)
///         -> Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>> {
///         self.0.fetch_add(1, Ordering::SeqCst);
///         Box::pin(async { Ok(http::Response::new(Body::empty())) })
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let shadow = Arc::new(Count::default());
/// let layer = MirrorLayer::new(&MirrorConfig::new("shadow"), shadow.clone(), Default::default())?;
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let resp = svc.oneshot(http::Request::new(Body::from("hello"))).await?;
/// assert_eq!(resp.status(), 200);
/// tokio::task::yield_now().await; // the copy is sent on a task of its own
/// assert_eq!(shadow.0.load(Ordering::SeqCst), 1);
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct MirrorLayer {
    settings: Arc<Settings>,
}

impl MirrorLayer {
    /// Builds the layer sending copies to `shadow` (the cluster `cfg.cluster`,
    /// resolved by the caller: a missing one is a config error there).
    ///
    /// # Errors
    /// A host suffix that cannot be part of a host name, naming the field.
    pub fn new(
        cfg: &MirrorConfig,
        shadow: Arc<dyn Shadow>,
        counters: Arc<MirrorCounters>,
    ) -> Result<Self, ConfigError> {
        if let Some(s) = &cfg.host_suffix {
            if s.parse::<Authority>().is_err() || s.contains(['/', '@', ':']) {
                return Err(ConfigError::invalid(
                    "host_suffix",
                    format!("{s:?} cannot be part of a host name"),
                ));
            }
        }
        Ok(Self {
            settings: Arc::new(Settings {
                shadow,
                sampler: Sampler::new(cfg.seed),
                per_million: cfg.sample_percent.per_million(),
                max_body: cfg.max_body_bytes.as_usize(),
                max_in_flight: cfg.max_in_flight.get(),
                in_flight: AtomicUsize::new(0),
                timeout: cfg.timeout,
                host_suffix: cfg.host_suffix.clone(),
                counters,
            }),
        })
    }
}

impl<S> tower_layer::Layer<S> for MirrorLayer {
    type Service = Mirror<S>;

    fn layer(&self, inner: S) -> Mirror<S> {
        Mirror {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// Sends sampled copies of requests to a shadow (see [`self`]).
#[derive(Debug, Clone)]
pub struct Mirror<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Service<HttpRequest> for Mirror<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> S::Future {
        let s = &self.settings;
        if !s.sampler.hit(s.per_million) {
            return self.inner.call(req);
        }
        let req = match Slot::take(s) {
            Some(slot) => tee::start(req, slot),
            None => {
                s.counters.skipped_in_flight.inc();
                req
            }
        };
        self.inner.call(req)
    }
}

/// One of the `max_in_flight` places for a copy, released on drop.
pub(crate) struct Slot {
    settings: Arc<Settings>,
}

impl Slot {
    fn take(settings: &Arc<Settings>) -> Option<Self> {
        let prev = settings.in_flight.fetch_add(1, Ordering::AcqRel);
        if prev >= settings.max_in_flight {
            settings.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        settings.counters.in_flight.inc();
        Some(Self {
            settings: settings.clone(),
        })
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends the copy on a task of the current runtime; the slot is held until the
    /// shadow answered (its body drained) or the timeout passed.
    pub(crate) fn send(self, mut req: HttpRequest) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Some(suffix) = &self.settings.host_suffix {
            add_host_suffix(&mut req, suffix);
        }
        let s = self.settings.clone();
        s.counters.sent.inc();
        rt.spawn(async move {
            let settings = &self.settings;
            let work = async {
                let resp = settings.shadow.send(req).await?;
                let mut body = resp.into_body();
                while let Some(f) = http_body_util::BodyExt::frame(&mut body).await {
                    f?;
                }
                Ok::<_, BoxError>(())
            };
            match tokio::time::timeout(settings.timeout, work).await {
                Ok(Ok(())) => settings.counters.answered.inc(),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "mirror copy failed");
                    settings.counters.failed.inc();
                }
                Err(_) => {
                    tracing::debug!("mirror copy timed out");
                    settings.counters.failed.inc();
                }
            }
            drop(self);
        });
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.settings.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.settings.counters.in_flight.dec();
    }
}

fn add_host_suffix(req: &mut HttpRequest, suffix: &str) {
    let authority = req.uri().authority().cloned().or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
    });
    let Some(a) = authority else { return };
    let new = match a.port_u16() {
        Some(p) => format!("{}{suffix}:{p}", a.host()),
        None => format!("{}{suffix}", a.host()),
    };
    if let Ok(v) = HeaderValue::from_str(&new) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    if req.uri().authority().is_some() {
        if let Ok(a) = new.parse::<Authority>() {
            let mut parts = req.uri().clone().into_parts();
            parts.authority = Some(a);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
}
