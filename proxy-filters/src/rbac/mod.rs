//! RBAC: ordered allow/deny policies over principals (source IP/CIDR, mTLS identity,
//! headers) and permissions (host, path, method, headers, RPC service/method).
//!
//! The first policy that matches decides; when none does, `default_action` does (by
//! default `deny` if any policy allows, else `allow`). A denied request is answered
//! 403 with `x-proxy-error: rbac_denied` (RPC codecs map it to their own status). In
//! `shadow` mode the filter decides and counts but lets everything through.
//!
//! Paths are matched as a server would resolve them ([`crate::matcher::normalize_path`]:
//! `/public/..//%61dmin` is `/admin`); hosts without port, case or a trailing dot.
//! String and header conditions are core's one matcher
//! ([`proxy_core::matcher::StringMatch`], [`proxy_core::matcher::HeaderMatch`]): a
//! `regex` matches the whole value, exactly as in routes.
//!
//! Facts come from request extensions: the peer from `proxy_core::proxy::ConnInfo`,
//! the mTLS identity from `proxy_core::connection::TlsInfo`, the RPC service and
//! method from `proxy_core::rpc::RpcInfo`.
//!
//! Metrics: `proxy_filters_rbac_decisions_total{decision}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: rbac
//!     config:
//!       policies:
//!         - name: orders-reads
//!           action: allow
//!           principals: [{ identity: { prefix: "spiffe://cluster.local/ns/shop/" } }]
//!           permissions: [{ rpc: { service: { exact: com.shop.Orders }, method: { prefix: get } } }]
//! ```

mod rules;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::StatusCode;
use proxy_core::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tower_service::Service;

pub use rules::{
    evaluate, Action, Facts, Identity, MethodName, Permission, Policy, Principal, RpcMatch,
};

use crate::{local_reply::LocalOr, metrics::RbacCounters, ConfigError};

/// The registered name.
pub const NAME: &str = "rbac";

/// The `rbac` filter's section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbacConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Policies in order; the first that matches decides.
    pub policies: Vec<Policy>,
    /// What applies when no policy matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
    /// Decide and count, never deny.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

#[derive(Debug)]
struct Engine {
    policies: Box<[Policy]>,
    default: Action,
    shadow: bool,
    counters: Arc<RbacCounters>,
}

impl Engine {
    fn check(&self, req: &HttpRequest) -> bool {
        let host = host_of(req);
        let (action, policy) = with_facts(req, host.as_deref(), |f| {
            evaluate(&self.policies, self.default, f)
        });
        match (action, self.shadow) {
            (Action::Allow, false) => {
                self.counters.allowed.inc();
                true
            }
            (Action::Deny, false) => {
                self.counters.denied.inc();
                tracing::debug!(policy = policy.unwrap_or("default"), "rbac denied");
                false
            }
            (Action::Allow, true) => {
                self.counters.shadow_allowed.inc();
                true
            }
            (Action::Deny, true) => {
                self.counters.shadow_denied.inc();
                tracing::debug!(policy = policy.unwrap_or("default"), "rbac shadow denied");
                true
            }
        }
    }
}

/// The host a request is for: the URI authority or the `host` header, without port.
fn host_of(req: &HttpRequest) -> Option<std::borrow::Cow<'_, str>> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    let host = match raw.rsplit_once(':') {
        // An IPv6 literal keeps its brackets' content; "h:80" loses the port.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => raw,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // "api.local." is "api.local".
    let host = host.strip_suffix('.').unwrap_or(host);
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    })
}

fn with_facts<R>(req: &HttpRequest, host: Option<&str>, f: impl FnOnce(&Facts<'_>) -> R) -> R {
    let ext = req.extensions();
    let peer = ext
        .get::<proxy_core::proxy::ConnInfo>()
        .and_then(|c| c.peer)
        .map(|p| p.ip());
    let identity = ext
        .get::<proxy_core::connection::TlsInfo>()
        .and_then(|t| t.peer.as_ref())
        .map(|p| Identity {
            subject: p.subject.as_deref(),
            uri_sans: &p.uri_sans,
            dns_sans: &p.dns_sans,
        });
    let rpc = ext
        .get::<proxy_core::rpc::RpcInfo>()
        .map(|r| (&*r.service, &*r.method));
    let path = crate::matcher::normalize_path(req.uri().path());
    let facts = Facts {
        peer,
        identity,
        headers: req.headers(),
        authority: req.uri().authority().map(|a| a.as_str()),
        host,
        path: &path,
        method: req.method(),
        rpc,
    };
    f(&facts)
}

/// Applies [`Rbac`] to a service.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::rbac::{Action, MethodName, Permission, Policy, Principal, RbacConfig, RbacLayer};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cfg = RbacConfig {
///     policies: vec![Policy {
///         name: "read-only".into(),
///         action: Action::Allow,
///         principals: vec![Principal::Any(true)],
///         permissions: vec![Permission::Method(vec![MethodName(http::Method::GET)])],
///     }],
///     ..Default::default()
/// };
/// let svc = ServiceBuilder::new()
///     .layer(RbacLayer::try_from(&cfg)?)
///     .service(service_fn(|_req: HttpRequest| async {
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let post = http::Request::post("/").body(Body::empty())?;
/// assert_eq!(svc.clone().oneshot(post).await?.status(), 403, "no policy allows it");
/// let get = http::Request::get("/").body(Body::empty())?;
/// assert_eq!(svc.oneshot(get).await?.status(), 200);
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RbacLayer {
    engine: Arc<Engine>,
}

impl RbacLayer {
    /// Validates `cfg`, counting decisions in `counters`.
    ///
    /// # Errors
    /// A policy without principals or permissions, an empty `rpc` matcher, naming
    /// the field.
    pub fn new(cfg: &RbacConfig, counters: Arc<RbacCounters>) -> Result<Self, ConfigError> {
        for (i, p) in cfg.policies.iter().enumerate() {
            if p.principals.is_empty() {
                return Err(ConfigError::invalid(
                    format!("policies[{i}].principals"),
                    "needs at least one principal (use `any: true`)",
                ));
            }
            if p.permissions.is_empty() {
                return Err(ConfigError::invalid(
                    format!("policies[{i}].permissions"),
                    "needs at least one permission (use `any: true`)",
                ));
            }
            for (j, perm) in p.permissions.iter().enumerate() {
                rules::check_permission(perm, &format!("policies[{i}].permissions[{j}]"))?;
            }
        }
        let default = cfg.default_action.unwrap_or_else(|| {
            if cfg.policies.iter().any(|p| p.action == Action::Allow) {
                Action::Deny
            } else {
                Action::Allow
            }
        });
        Ok(Self {
            engine: Arc::new(Engine {
                policies: cfg.policies.clone().into_boxed_slice(),
                default,
                shadow: cfg.shadow,
                counters,
            }),
        })
    }
}

impl TryFrom<&RbacConfig> for RbacLayer {
    type Error = ConfigError;

    /// [`RbacLayer::new`] with counters of its own.
    fn try_from(cfg: &RbacConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for RbacLayer {
    type Service = Rbac<S>;

    fn layer(&self, inner: S) -> Rbac<S> {
        Rbac {
            inner,
            engine: self.engine.clone(),
        }
    }
}

/// Allows or denies each request by policy (see [`self`]).
#[derive(Debug, Clone)]
pub struct Rbac<S> {
    inner: S,
    engine: Arc<Engine>,
}

impl<S> Service<HttpRequest> for Rbac<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = LocalOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        if self.engine.check(&req) {
            LocalOr::inner(self.inner.call(req))
        } else {
            LocalOr::local(crate::local_reply::reply(
                req.headers(),
                StatusCode::FORBIDDEN,
                "rbac_denied",
                "access denied\n",
            ))
        }
    }
}
