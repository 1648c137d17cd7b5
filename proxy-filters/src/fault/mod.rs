//! Fault injection for requests: a fixed delay and an abort with a status, each for
//! a share of requests (`delay.delay_percent`, `abort.abort_percent`, 0-100, default
//! 100), optionally switched on per request by headers.
//!
//! With `headers` set, a request may ask for faults itself (for tests through the
//! mesh): `<prefix>-delay-request: <ms>`, `<prefix>-abort-request: <status>`, and
//! `<prefix>-delay-request-percentage` / `<prefix>-abort-request-percentage`. A header
//! percentage can only lower a configured one, and header delays are capped by
//! `headers.max_delay`. With `prefix: x-envoy-fault` Envoy's header names work.
//!
//! Aborts answer locally with the status and `x-proxy-error: fault_abort` (RPC codecs
//! map that to their own error status). Metrics:
//! `proxy_filters_fault_{requests_total,injected_total}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: fault
//!     config:
//!       delay: { duration: 100ms, delay_percent: 5 }
//!       abort: { status: 503, abort_percent: 1 }
//!       headers: { prefix: x-envoy-fault, max_delay: 5s }
//! ```

mod service;

use std::{sync::Arc, time::Duration};

use http::{HeaderName, StatusCode};
use serde::{Deserialize, Serialize};

pub use service::{Fault, ResponseFuture};

use crate::{
    config::{Percent, Sampler},
    metrics::FaultCounters,
    ConfigError,
};

/// The registered name.
pub const NAME: &str = "fault";

/// The `fault` filter's section: at least one of `delay`, `abort` and `headers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A fixed delay before the request goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayConfig>,
    /// An abort answered locally instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortConfig>,
    /// Lets requests ask for faults through headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderControl>,
    /// Seeds the sampler (repeatable decisions in tests); random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Delayed requests held at once at most; past it requests pass undelayed
    /// (no limit when absent). Bounds what fault headers can hold open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<std::num::NonZeroU32>,
}

/// A delay fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// How long to hold the request, e.g. `100ms`.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Share of requests delayed, 0-100 (default 100).
    #[serde(default)]
    pub delay_percent: Percent,
}

/// An abort fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortConfig {
    /// The status answered, 200 to 599.
    pub status: u16,
    /// Share of requests aborted, 0-100 (default 100).
    #[serde(default)]
    pub abort_percent: Percent,
}

/// Per-request fault headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderControl {
    /// The header name prefix (default `x-fault`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The longest delay a header may ask for (default 10s).
    #[serde(default = "default_max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for HeaderControl {
    fn default() -> Self {
        Self {
            prefix: default_prefix(),
            max_delay: default_max_delay(),
        }
    }
}

fn default_prefix() -> String {
    "x-fault".to_owned()
}

fn default_max_delay() -> Duration {
    Duration::from_secs(10)
}

/// Validated settings shared by all clones of the layer.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) delay: Option<(Duration, u32)>,
    pub(crate) abort: Option<(StatusCode, u32)>,
    pub(crate) headers: Option<Headers>,
    pub(crate) sampler: Sampler,
    pub(crate) counters: Arc<FaultCounters>,
    pub(crate) max_active: u32,
    pub(crate) active: std::sync::atomic::AtomicU32,
}

#[derive(Debug)]
pub(crate) struct Headers {
    pub(crate) delay: HeaderName,
    pub(crate) delay_pct: HeaderName,
    pub(crate) abort: HeaderName,
    pub(crate) abort_pct: HeaderName,
    pub(crate) max_delay: Duration,
}

/// Applies [`Fault`] to a service.
///
/// # Example
/// ```
/// use proxy_core::{config::Percent, Body, BoxError, HttpRequest};
/// use proxy_filters::fault::{AbortConfig, FaultConfig, FaultLayer};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cfg = FaultConfig {
///     abort: Some(AbortConfig { status: 503, abort_percent: Percent::HUNDRED }),
///     ..Default::default()
/// };
/// let svc = ServiceBuilder::new()
///     .layer(FaultLayer::try_from(&cfg)?)
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let resp = svc.oneshot(http::Request::new(Body::empty())).await?;
/// assert_eq!(resp.status(), 503);
/// assert_eq!(resp.headers()["x-proxy-error"], "fault_abort");
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FaultLayer {
    settings: Arc<Settings>,
}

impl FaultLayer {
    /// Validates `cfg`, counting in `counters`.
    ///
    /// # Errors
    /// A status outside 200..=599, a bad header prefix, or nothing to inject, naming
    /// the field.
    pub fn new(cfg: &FaultConfig, counters: Arc<FaultCounters>) -> Result<Self, ConfigError> {
        if cfg.delay.is_none() && cfg.abort.is_none() && cfg.headers.is_none() {
            return Err(ConfigError::invalid(
                "delay",
                "set at least one of delay, abort or headers",
            ));
        }
        let abort = match &cfg.abort {
            Some(a) => Some((
                status(a.status, "abort.status")?,
                a.abort_percent.per_million(),
            )),
            None => None,
        };
        let headers = match &cfg.headers {
            Some(h) => {
                let name = |suffix: &str| {
                    HeaderName::from_bytes(format!("{}{suffix}", h.prefix).as_bytes()).map_err(
                        |_| {
                            ConfigError::invalid(
                                "headers.prefix",
                                format!("{:?} does not make valid header names", h.prefix),
                            )
                        },
                    )
                };
                Some(Headers {
                    delay: name("-delay-request")?,
                    delay_pct: name("-delay-request-percentage")?,
                    abort: name("-abort-request")?,
                    abort_pct: name("-abort-request-percentage")?,
                    max_delay: h.max_delay,
                })
            }
            None => None,
        };
        Ok(Self {
            settings: Arc::new(Settings {
                delay: cfg
                    .delay
                    .as_ref()
                    .map(|d| (d.duration, d.delay_percent.per_million())),
                abort,
                headers,
                sampler: Sampler::new(cfg.seed),
                counters,
                max_active: cfg.max_active.map_or(u32::MAX, std::num::NonZeroU32::get),
                active: std::sync::atomic::AtomicU32::new(0),
            }),
        })
    }
}

fn status(code: u16, field: &str) -> Result<StatusCode, ConfigError> {
    match StatusCode::from_u16(code) {
        Ok(s) if (200..=599).contains(&code) => Ok(s),
        _ => Err(ConfigError::invalid(
            field,
            format!("{code} is not a status from 200 to 599"),
        )),
    }
}

impl TryFrom<&FaultConfig> for FaultLayer {
    type Error = ConfigError;

    /// [`FaultLayer::new`] with counters of its own.
    fn try_from(cfg: &FaultConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Fault<S> {
        Fault::new(inner, self.settings.clone())
    }
}
