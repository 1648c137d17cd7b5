//! Key sets: JWKs checked and turned into verification keys ([`KeySet`]), and the
//! cache of a remote JWKS (single-flight refresh, minimum interval, maximum age, last
//! good set kept).

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
    DecodingKey,
};
use tokio::time::Instant;

use super::{
    config::{JwtAlgorithm, RemoteJwks},
    fetch::Fetcher,
};
use crate::metrics::AuthCounters;

/// One verification key.
pub(crate) struct Key {
    pub(crate) alg: JwtAlgorithm,
    pub(crate) key: DecodingKey,
}

/// The verification keys of a JWKS: RSA (2048 to 4096 bits) for RS256, P-256 for
/// ES256, Ed25519 for EdDSA. Keys for encryption, of other types or curves, or that
/// do not parse are not in it.
///
/// ```
/// use proxy_filters::auth::KeySet;
/// let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(r#"{"keys": [
///   {"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
/// ]}"#)?;
/// let keys = KeySet::from_jwks(&jwks).map_err(|(i, e)| format!("keys[{i}]: {e}"))?;
/// assert_eq!(keys.len(), 1);
/// assert!(keys.has_kid("k1"));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    all: Vec<Arc<Key>>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .field("len", &self.all.len())
            .finish()
    }
}

impl KeySet {
    /// Every key of `set`, or the index of the first one refused and why.
    ///
    /// # Errors
    /// A key that is not a usable signature key.
    pub fn from_jwks(set: &JwkSet) -> Result<Self, (usize, String)> {
        let mut out = Self::default();
        for (i, jwk) in set.keys.iter().enumerate() {
            let key = parse(jwk).map_err(|e| (i, e))?;
            out.push(jwk.common.key_id.clone(), key);
        }
        Ok(out)
    }

    /// The usable keys of `set`; the others are skipped (logged at debug).
    pub(crate) fn from_jwks_lenient(set: &JwkSet) -> Self {
        let mut out = Self::default();
        for (i, jwk) in set.keys.iter().enumerate() {
            match parse(jwk) {
                Ok(key) => out.push(jwk.common.key_id.clone(), key),
                Err(reason) => tracing::debug!(index = i, %reason, "jwks key skipped"),
            }
        }
        out
    }

    fn push(&mut self, kid: Option<String>, key: Key) {
        let key = Arc::new(key);
        if let Some(kid) = kid {
            self.by_kid.entry(kid).or_insert_with(|| key.clone());
        }
        self.all.push(key);
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether a key has the id `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The key with id `kid`.
    pub(crate) fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.by_kid.get(kid)
    }

    /// The keys for `alg` (a token without `kid` is tried against each).
    pub(crate) fn for_alg(&self, alg: JwtAlgorithm) -> impl Iterator<Item = &Arc<Key>> {
        self.all.iter().filter(move |k| k.alg == alg)
    }
}

fn b64_len(field: &str, value: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| format!("`{field}` is not base64url"))
}

/// A JWK as a verification key, with the one algorithm it serves.
fn parse(jwk: &Jwk) -> Result<Key, String> {
    if let Some(u) = &jwk.common.public_key_use {
        if *u != PublicKeyUse::Signature {
            return Err("not a signature key (`use`)".into());
        }
    }
    let (alg, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = b64_len("n", &p.n)?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if !(2048..=4096).contains(&bits) {
                return Err(format!("an RSA key of {bits} bits (2048 to 4096 accepted)"));
            }
            b64_len("e", &p.e)?;
            let key = DecodingKey::from_rsa_components(&p.n, &p.e)
                .map_err(|e| format!("not an RSA public key: {e}"))?;
            (JwtAlgorithm::RS256, key)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            if p.curve != EllipticCurve::P256 {
                return Err(format!("curve {:?} (P-256 accepted)", p.curve));
            }
            if b64_len("x", &p.x)?.len() != 32 || b64_len("y", &p.y)?.len() != 32 {
                return Err("P-256 coordinates are 32 bytes".into());
            }
            let key = DecodingKey::from_ec_components(&p.x, &p.y)
                .map_err(|e| format!("not a P-256 public key: {e}"))?;
            (JwtAlgorithm::ES256, key)
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(format!("curve {:?} (Ed25519 accepted)", p.curve));
            }
            if b64_len("x", &p.x)?.len() != 32 {
                return Err("an Ed25519 public key is 32 bytes".into());
            }
            let key = DecodingKey::from_ed_components(&p.x)
                .map_err(|e| format!("not an Ed25519 public key: {e}"))?;
            (JwtAlgorithm::EdDSA, key)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key (HMAC is not accepted)".into());
        }
    };
    if let Some(named) = jwk.common.key_algorithm {
        let matches = matches!(
            (named, alg),
            (KeyAlgorithm::RS256, JwtAlgorithm::RS256)
                | (KeyAlgorithm::ES256, JwtAlgorithm::ES256)
                | (KeyAlgorithm::EdDSA, JwtAlgorithm::EdDSA)
        );
        if !matches {
            return Err(format!(
                "`alg` {named:?} does not fit the key or is not accepted"
            ));
        }
    }
    // The key must load in the verifier: a point off the curve, a bad exponent.
    super::verify::check_key(&key, alg)?;
    Ok(Key { alg, key })
}

/// Where a filter's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum Jwks {
    Inline(Arc<KeySet>),
    Remote(Arc<RemoteCache>),
}

/// The cached key set of a remote JWKS.
pub(crate) struct RemoteCache {
    fetcher: Fetcher,
    min_interval: Duration,
    max_age: Duration,
    current: ArcSwapOption<Snapshot>,
    /// Fetches finished (good or failed): a waiter that sees it move skips its own.
    attempts: AtomicU64,
    last_attempt: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    background: AtomicBool,
    counters: Arc<AuthCounters>,
}

struct Snapshot {
    keys: Arc<KeySet>,
    fetched: Instant,
}

impl fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCache")
            .field("fetcher", &self.fetcher)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl RemoteCache {
    pub(crate) fn new(
        fetcher: Fetcher,
        min_interval: Duration,
        max_age: Duration,
        counters: Arc<AuthCounters>,
    ) -> Self {
        Self {
            fetcher,
            min_interval,
            max_age,
            current: ArcSwapOption::empty(),
            attempts: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            background: AtomicBool::new(false),
            counters,
        }
    }

    /// The key set to verify a token naming `kid` with: the cached one if it has
    /// `kid` (refreshed in the background when older than `max_age`), else the set
    /// after one refresh (shared by every request that asks meanwhile, and skipped
    /// within `min_refresh_interval` of the last fetch). `None` while no fetch has
    /// succeeded.
    pub(crate) async fn keys(self: &Arc<Self>, kid: Option<&str>) -> Option<Arc<KeySet>> {
        let seen = self.attempts.load(Ordering::Acquire);
        if let Some(snap) = self.current.load_full() {
            if snap.fetched.elapsed() >= self.max_age {
                self.refresh_in_background();
            }
            if kid.is_none_or(|k| snap.keys.has_kid(k)) {
                return Some(snap.keys.clone());
            }
        }
        self.refresh(seen).await;
        self.current.load_full().map(|s| s.keys.clone())
    }

    fn recently_tried(&self) -> bool {
        self.last_attempt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < self.min_interval)
    }

    /// Fetches unless another fetch finished since `seen` or one ran too recently.
    async fn refresh(&self, seen: u64) {
        let _one = self.fetching.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen || self.recently_tried() {
            return;
        }
        *self.last_attempt.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "jwks fetched");
                self.counters.jwks_fetched.inc();
                self.current.store(Some(Arc::new(Snapshot {
                    keys: Arc::new(keys),
                    fetched: Instant::now(),
                })));
            }
            Err(error) => {
                self.counters.jwks_failed.inc();
                tracing::warn!(
                    url = %self.fetcher.url(),
                    error = %crate::auth::fetch::DisplayChain(&*error),
                    kept = self.current.load().is_some(),
                    "jwks fetch failed"
                );
            }
        }
        self.attempts.fetch_add(1, Ordering::Release);
    }

    async fn fetch(&self) -> Result<KeySet, proxy_core::BoxError> {
        let body = self.fetcher.fetch().await?;
        let set: JwkSet = serde_json::from_slice(&lenient_keys(&body)?)?;
        let keys = KeySet::from_jwks_lenient(&set);
        if keys.is_empty() {
            return Err("the JWKS holds no usable key".into());
        }
        Ok(keys)
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.recently_tried() || self.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.background.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        let seen = self.attempts.load(Ordering::Acquire);
        handle.spawn(async move {
            me.refresh(seen).await;
            me.background.store(false, Ordering::Release);
        });
    }
}

/// The caches of remote key sets by filter, so that a reload whose `jwks.remote` is
/// unchanged keeps the fetched keys (and does not send every gateway of a fleet to the
/// JWKS server at once). [`crate::register`] keeps one in the build context. Holds
/// only weak references: a cache lives as long as a snapshot uses it.
#[derive(Debug, Default)]
pub struct JwksCaches {
    entries: Mutex<HashMap<String, (RemoteJwks, Weak<RemoteCache>)>>,
}

/// Renders nothing: the caches are state, kept in the build context.
impl proxy_core::metrics::RenderMetrics for JwksCaches {
    fn render(&self, _out: &mut String) {}
}

impl JwksCaches {
    /// The running cache of filter `key` if its `cfg` is unchanged, else `make()`'s.
    pub(crate) fn get_or_make(
        &self,
        key: &str,
        cfg: &RemoteJwks,
        make: impl FnOnce() -> Result<Arc<RemoteCache>, crate::ConfigError>,
    ) -> Result<Arc<RemoteCache>, crate::ConfigError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (_, weak)| weak.strong_count() > 0);
        if let Some((old, weak)) = entries.get(key) {
            if old == cfg {
                if let Some(cache) = weak.upgrade() {
                    return Ok(cache);
                }
            }
        }
        let cache = make()?;
        entries.insert(key.to_owned(), (cfg.clone(), Arc::downgrade(&cache)));
        Ok(cache)
    }
}

/// The JWKS document with the keys that do not deserialize as JWKs (unknown `kty`,
/// missing members) left out, so that one odd key does not hide the others.
fn lenient_keys(body: &[u8]) -> Result<Vec<u8>, proxy_core::BoxError> {
    let mut doc: serde_json::Value = serde_json::from_slice(body)?;
    let keys = doc
        .get_mut("keys")
        .and_then(|k| k.as_array_mut())
        .ok_or("the JWKS has no `keys` array")?;
    keys.retain(|k| serde_json::from_value::<Jwk>(k.clone()).is_ok());
    Ok(serde_json::to_vec(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_keys_it_cannot_use() {
        let set: JwkSet = serde_json::from_str(
            r#"{"keys": [
              {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
              {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
              {"kty": "oct", "k": "c2VjcmV0"},
              {"kty": "RSA", "n": "AQAB", "e": "AQAB"}
            ]}"#,
        )
        .unwrap();
        let err = KeySet::from_jwks(&JwkSet {
            keys: set.keys[1..2].to_vec(),
        })
        .unwrap_err();
        assert_eq!(err.0, 0);
        assert!(err.1.contains("32 bytes"), "{}", err.1);
        let keys = KeySet::from_jwks_lenient(&set);
        assert_eq!(keys.len(), 1);
        assert!(KeySet::from_jwks(&set).is_err());
    }

    #[test]
    fn lenient_document_drops_odd_keys() {
        let body = br#"{"keys": [{"kty": "XYZ"}, {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let doc = lenient_keys(body).unwrap();
        let set: JwkSet = serde_json::from_slice(&doc).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(lenient_keys(b"{}").is_err());
        assert!(lenient_keys(b"not json").is_err());
    }
}
