//! The `jwt_auth` and `api_key_auth` sections.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// The `jwt_auth` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The signature algorithms accepted; at least one. A token with any other `alg`
    /// (`none`, `HS256`, ...) is refused with `alg_not_allowed`.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Accepted `iss` values; empty: the issuer is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (a token naming any one passes); empty: not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Tolerance on `exp` and `nbf`, at most one hour (default 60s).
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Whether a token must carry `exp` (default true; `false` accepts tokens that
    /// never expire).
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub require_exp: bool,
    /// Where the keys come from.
    pub jwks: JwksSource,
    /// Where the token is looked for, in order (default: `authorization: Bearer`).
    #[serde(default = "default_sources")]
    pub from: Vec<TokenSource>,
    /// Claims copied to request headers; incoming headers of these names are removed
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims_to_headers: Vec<ClaimHeader>,
    /// The claim that names the [`super::Consumer`] (default `sub`); a token without it
    /// is `malformed`.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
}

impl JwtAuthConfig {
    /// A config accepting `algorithms` with keys from `jwks` and every other field at
    /// its default.
    pub fn new(algorithms: Vec<JwtAlgorithm>, jwks: JwksSource) -> Self {
        Self {
            name: None,
            algorithms,
            issuers: Vec::new(),
            audiences: Vec::new(),
            clock_skew: default_skew(),
            require_exp: true,
            jwks,
            from: default_sources(),
            claims_to_headers: Vec::new(),
            consumer_claim: default_consumer_claim(),
        }
    }
}

fn default_skew() -> Duration {
    Duration::from_secs(60)
}

fn yes() -> bool {
    true
}

fn default_sources() -> Vec<TokenSource> {
    vec![TokenSource::Header {
        name: "authorization".into(),
        prefix: Some("Bearer ".into()),
    }]
}

fn default_consumer_claim() -> String {
    "sub".into()
}

/// A signature algorithm a token may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA keys of 2048 to 4096 bits).
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    pub(crate) fn from_name(alg: &str) -> Option<Self> {
        [Self::RS256, Self::ES256, Self::EdDSA]
            .into_iter()
            .find(|a| a.as_str() == alg)
    }
}

/// Where the keys come from: `{remote: {url: ...}}` or `{inline: {keys: [...]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JwksSource {
    /// A JWKS fetched over HTTP(S) and cached.
    Remote(RemoteJwks),
    /// A key set in the config (tests, air-gapped setups): a JWKS document.
    Inline(jsonwebtoken::jwk::JwkSet),
}

/// A JWKS fetched over HTTP(S).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwks {
    /// `http://` or `https://` URL of the JWKS document.
    pub url: String,
    /// PEM file of the CA certificates that may sign an `https` server's certificate
    /// (relative to the config file); absent: the webpki roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_path: Option<PathBuf>,
    /// Time allowed for one fetch, connect to last byte (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// No two fetches closer than this, whatever tokens arrive (default 30s).
    #[serde(default = "default_min_interval", with = "humantime_serde")]
    pub min_refresh_interval: Duration,
    /// A key set older than this is refreshed in the background (default 10m).
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

impl RemoteJwks {
    /// `url` with the default timings and roots.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_path: None,
            timeout: default_timeout(),
            min_refresh_interval: default_min_interval(),
            max_age: default_max_age(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_min_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_max_age() -> Duration {
    Duration::from_secs(600)
}

/// Where a token (or API key) is looked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenSource {
    /// A request header, after `prefix` (compared without case, e.g. `Bearer `).
    Header {
        /// The header's name.
        name: String,
        /// What precedes the token in the value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
    /// A query parameter of this name.
    Query(String),
}

/// A claim copied to a request header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimHeader {
    /// The claim's name (top level of the payload).
    pub claim: String,
    /// The header it is written to: strings as they are, other values as JSON.
    pub header: String,
}

/// The `api_key_auth` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuthConfig {
    /// Names this filter in metrics (default: the listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the key is looked for, in order (default: the `x-api-key` header).
    #[serde(default = "default_key_sources")]
    pub from: Vec<TokenSource>,
    /// The accepted keys, stored hashed; at least one.
    pub keys: Vec<ApiKeyEntry>,
}

fn default_key_sources() -> Vec<TokenSource> {
    vec![TokenSource::Header {
        name: "x-api-key".into(),
        prefix: None,
    }]
}

impl ApiKeyAuthConfig {
    /// Accepts `keys`, looked for in the `x-api-key` header.
    pub fn new(keys: Vec<ApiKeyEntry>) -> Self {
        Self {
            name: None,
            from: default_key_sources(),
            keys,
        }
    }
}

/// One accepted API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The consumer id the key authenticates as.
    pub consumer: String,
    /// The SHA-256 of the key, 64 hex digits (`printf %s KEY | sha256sum`).
    pub sha256: String,
}

impl ApiKeyEntry {
    /// The entry for `key` (hashed here; the key itself is not kept).
    pub fn for_key(consumer: impl Into<String>, key: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        Self {
            consumer: consumer.into(),
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_defaults_and_choices() {
        let c: JwtAuthConfig = proxy_core::config::from_yaml(
            "{algorithms: [RS256, EdDSA], jwks: {remote: {url: 'http://idp/jwks', max_age: 1m}},
              from: [{query: access_token}]}",
        )
        .unwrap();
        assert_eq!(c.clock_skew, Duration::from_secs(60));
        assert!(c.require_exp);
        assert_eq!(c.consumer_claim, "sub");
        assert_eq!(c.from, vec![TokenSource::Query("access_token".into())]);
        match &c.jwks {
            JwksSource::Remote(r) => {
                assert_eq!(r.max_age, Duration::from_secs(60));
                assert_eq!(r.min_refresh_interval, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
        let err = proxy_core::config::from_yaml::<JwtAuthConfig>(
            "{algorithms: [HS256], jwks: {inline: {keys: []}}}",
        )
        .unwrap_err();
        assert_eq!(err.path, "algorithms[0]");
    }

    #[test]
    fn api_key_entry_hashes() {
        let e = ApiKeyEntry::for_key("c", "test");
        assert_eq!(
            e.sha256,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
