//! Authentication: JWT bearer tokens verified against a JWKS ([`JwtAuthLayer`],
//! `typed: jwt_auth`) and API keys checked against a hashed set ([`ApiKeyAuthLayer`],
//! `typed: api_key_auth`).
//!
//! A token is signed with RS256, ES256 or EdDSA (Ed25519), and only with the
//! algorithms the config lists: `alg: none`, HMAC and anything else are refused before
//! a key is looked at. Issuer, audiences, `exp` and `nbf` are checked with a clock
//! skew. Keys come from a JWKS fetched over HTTP(S) and cached ([`JwksSource::Remote`]:
//! refreshed single-flight when a token names an unknown `kid`, at most once per
//! `min_refresh_interval`, in the background after `max_age`; the last good set is kept
//! when a fetch fails) or from a key set in the config ([`JwksSource::Inline`]).
//!
//! A verified request carries a [`Consumer`] in its extensions (the `sub` claim, or
//! `consumer_claim`, as its id) for later layers, and the claims that
//! `claims_to_headers` names as headers; incoming headers of those names are removed
//! first, so a client cannot forge them.
//!
//! A refused request is answered 401 with `www-authenticate: Bearer
//! error="invalid_token", error_description="..."` and `x-proxy-error: <reason>`, the
//! reason one of [`Failure`]'s (`missing`, `malformed`, `expired`, `not_yet_valid`,
//! `bad_signature`, `unknown_key`, `alg_not_allowed`, `bad_issuer`, `bad_audience`,
//! `jwks_unavailable`; API keys: `missing`, `invalid_api_key`), and counted in
//! `proxy_filters_auth_failures_total{filter,reason}`; accepted ones in
//! `proxy_filters_auth_successes_total{filter}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: jwt_auth
//!     config:
//!       algorithms: [RS256, ES256, EdDSA]
//!       issuers: [https://idp.example.com/]
//!       audiences: [orders-api]
//!       clock_skew: 30s
//!       jwks: { remote: { url: https://idp.example.com/.well-known/jwks.json, max_age: 10m } }
//!       claims_to_headers: [{ claim: sub, header: x-consumer-id }]
//!   - typed: api_key_auth
//!     config:
//!       keys: [{ consumer: batch-job, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 }]
//! ```

mod api_key;
mod config;
mod fetch;
mod jwks;
mod layer;
mod verify;

use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use proxy_core::{HttpRequest, HttpResponse};

pub use api_key::{ApiKeyAuth, ApiKeyAuthLayer};
pub use config::{
    ApiKeyAuthConfig, ApiKeyEntry, ClaimHeader, JwksSource, JwtAlgorithm, JwtAuthConfig,
    RemoteJwks, TokenSource,
};
pub use jwks::{JwksCaches, KeySet};
pub use layer::{JwtAuth, JwtAuthLayer};
pub use verify::{Verified, Verifier};

/// The registered name of the JWT filter.
pub const JWT_NAME: &str = "jwt_auth";
/// The registered name of the API key filter.
pub const API_KEY_NAME: &str = "api_key_auth";

/// Who a request was authenticated as, in the request's extensions for later layers
/// (rate limits per consumer, RBAC, access logs).
///
/// ```
/// use proxy_filters::auth::Consumer;
/// let c = Consumer::new("alice");
/// assert_eq!(&*c.id, "alice");
/// assert!(c.claims.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Consumer {
    /// The consumer's id: a JWT's `sub` claim (or the configured claim), an API key's
    /// configured consumer.
    pub id: Arc<str>,
    /// A JWT's claims (empty for API keys).
    pub claims: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl Consumer {
    /// A consumer without claims.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            claims: Arc::default(),
        }
    }

    /// A consumer with the claims of its token.
    pub fn with_claims(
        id: impl Into<Arc<str>>,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Self {
            id: id.into(),
            claims: Arc::new(claims),
        }
    }

    /// The consumer a request was authenticated as, if any.
    pub fn of(req: &HttpRequest) -> Option<&Self> {
        req.extensions().get::<Self>()
    }

    /// Puts this consumer in `resp`'s extensions unless an inner layer already put
    /// one there: outer layers (a listener's filters) learn the consumer from the
    /// response.
    pub(crate) fn onto_response<B>(&self, resp: &mut http::Response<B>) {
        if resp.extensions().get::<Self>().is_none() {
            resp.extensions_mut().insert(self.clone());
        }
    }
}

/// Why a request was refused; its [`Failure::as_str`] is the `x-proxy-error` value
/// and the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// No token (or key) in the request.
    Missing,
    /// Not a well-formed JWT (segments, base64, JSON, claim types, a missing
    /// consumer claim).
    Malformed,
    /// `exp` is past (beyond the clock skew).
    Expired,
    /// `nbf` is ahead (beyond the clock skew).
    NotYetValid,
    /// The signature does not verify with the named key.
    BadSignature,
    /// No key of the set (even after a refresh) has the token's `kid`.
    UnknownKey,
    /// The token's `alg` is not among the configured algorithms (`none` never is).
    AlgNotAllowed,
    /// `iss` is missing or not a configured issuer.
    BadIssuer,
    /// `aud` is missing or names no configured audience.
    BadAudience,
    /// No key set could be fetched yet.
    JwksUnavailable,
    /// An API key that is not in the configured set.
    InvalidApiKey,
}

impl Failure {
    /// Every reason, in label order.
    pub const ALL: [Failure; 11] = [
        Self::Missing,
        Self::Malformed,
        Self::Expired,
        Self::NotYetValid,
        Self::BadSignature,
        Self::UnknownKey,
        Self::AlgNotAllowed,
        Self::BadIssuer,
        Self::BadAudience,
        Self::JwksUnavailable,
        Self::InvalidApiKey,
    ];

    /// The reason's name: `missing`, `malformed`, `expired`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::BadIssuer => "bad_issuer",
            Self::BadAudience => "bad_audience",
            Self::JwksUnavailable => "jwks_unavailable",
            Self::InvalidApiKey => "invalid_api_key",
        }
    }

    /// The index of this reason in [`Failure::ALL`].
    pub(crate) fn index(self) -> usize {
        Self::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }

    fn description(self) -> &'static str {
        match self {
            Self::Missing => "no token",
            Self::Malformed => "the token is malformed",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::BadSignature => "the signature does not verify",
            Self::UnknownKey => "the token names an unknown key",
            Self::AlgNotAllowed => "the token's algorithm is not allowed",
            Self::BadIssuer => "the token's issuer is not accepted",
            Self::BadAudience => "the token's audience is not accepted",
            Self::JwksUnavailable => "no key set is available",
            Self::InvalidApiKey => "the API key is not valid",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 401 answer for `failure` (a trailers-only gRPC answer, `grpc-status: 16`, to
/// gRPC requests).
pub(crate) fn unauthorized(req: &HttpRequest, failure: Failure, bearer: bool) -> HttpResponse {
    let mut resp = crate::local_reply::reply(
        req.headers(),
        StatusCode::UNAUTHORIZED,
        failure.as_str(),
        "unauthorized\n",
    );
    let challenge = if !bearer {
        "ApiKey".to_owned()
    } else if failure == Failure::Missing {
        // RFC 6750 section 3.1: no error code when the request had no token.
        "Bearer".to_owned()
    } else {
        format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            failure.description()
        )
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_and_indexed() {
        for (i, f) in Failure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
        let names: std::collections::HashSet<_> = Failure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names.len(), Failure::ALL.len());
    }

    #[test]
    fn challenge_names_the_error() {
        let req = HttpRequest::new(proxy_core::Body::empty());
        let r = unauthorized(&req, Failure::Expired, true);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["x-proxy-error"], "expired");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
        );
        let r = unauthorized(&req, Failure::Missing, true);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
}
