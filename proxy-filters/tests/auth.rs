//! Authentication through a real proxy: JWTs signed here (RS256, ES256, EdDSA keys
//! generated here) checked against a JWKS served by a server the test starts; claims
//! to headers with forged ones removed; every refusal with its reason and counted; a
//! key rotation fetched once under 50 concurrent requests; the last good key set kept
//! while the JWKS server is down; API keys. And no panic on any token bytes.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::{config, listener, try_start};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use proxy_filters::auth::{
    Consumer, Failure, JwksSource, JwtAlgorithm, JwtAuthConfig, KeySet, Verifier,
};
use proxy_test_support::{
    client::{get, Response},
    free_addr, prometheus,
    upstream::{response, Echoed},
    with_timeout, Upstream,
};
use serde_json::{json, Value};

// === keys ===

/// A signing key and its public JWK.
struct TestKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    /// A token for `claims` naming `kid`.
    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key() -> TestKey {
    use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    TestKey {
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        jwk: json!({"kty": "RSA", "use": "sig", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())}),
    }
}

fn ec_key() -> TestKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = key.public_key_raw();
    TestKey {
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(&key.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    }
}

fn ed_key() -> TestKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    TestKey {
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(&key.serialize_der()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64(key.public_key_raw())}),
    }
}

/// One RSA key per test binary: generating one takes a while in a debug build.
fn shared_rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(rsa_key)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

const ISSUER: &str = "https://idp.test/";

/// Good claims for `sub`, valid for five minutes.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": ["orders", "other"], "exp": now() + 300, "tenant": "acme", "level": 3})
}

// === the JWKS server ===

/// A JWKS server whose document the test changes; each answer after `delay`.
struct JwksServer {
    up: Upstream,
    doc: Arc<Mutex<Value>>,
}

impl JwksServer {
    fn start(keys: Vec<Value>, delay: Duration) -> Self {
        let doc = Arc::new(Mutex::new(json!({ "keys": keys })));
        let served = doc.clone();
        let up = Upstream::http_async(move |_seen| {
            let body = served.lock().unwrap().to_string();
            async move {
                tokio::time::sleep(delay).await;
                let mut r = response(200, body);
                r.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
        });
        Self { up, doc }
    }

    fn set(&self, keys: Vec<Value>) {
        *self.doc.lock().unwrap() = json!({ "keys": keys });
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.up.addr)
    }
}

// === the proxy ===

/// This crate's filters plus `show_consumer`, a later layer that writes the id of the
/// request's [`Consumer`] to `x-consumer-seen` (as a rate limit or RBAC would read it).
fn test_registry() -> proxy_core::Registry {
    let mut r = common::registry();
    r.register_filter("show_consumer", |_, _| {
        Ok(Arc::new(|inner: proxy_core::BoxHttp| {
            proxy_core::BoxHttp::new(
                tower::ServiceBuilder::new()
                    .map_request(|mut req: proxy_core::HttpRequest| {
                        let id = Consumer::of(&req).map(|c| c.id.to_string());
                        if let Some(id) = id {
                            req.headers_mut()
                                .insert("x-consumer-seen", id.parse().unwrap());
                        }
                        req
                    })
                    .service(inner),
            )
        }))
    });
    r
}

/// A proxy with an admin listener and listener `edge` behind `filter` (a flow map),
/// to an echo upstream.
struct Gateway {
    proxy: proxy_test_support::TestServer,
    backend: Upstream,
    edge: SocketAddr,
    admin: SocketAddr,
}

impl Gateway {
    fn start(filters: &str) -> Self {
        let backend = Upstream::echo("backend");
        let admin = free_addr();
        let yaml = config(
            &[listener("edge", &format!("[{filters}]"), "b")],
            &[("b", backend.addr)],
        );
        let yaml = format!("admin: {{ address: \"{admin}\" }}\n{yaml}");
        let proxy = proxy_test_support::TestServer::try_start(&yaml, test_registry())
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let edge = proxy.addr("edge");
        Self {
            proxy,
            backend,
            edge,
            admin,
        }
    }

    /// Reloads with `filters` in place of the listener's filters.
    fn reload(&self, filters: &str) {
        let yaml = config(
            &[listener("edge", &format!("[{filters}]"), "b")],
            &[("b", self.backend.addr)],
        );
        let yaml = format!("admin: {{ address: \"{}\" }}\n{yaml}", self.admin);
        self.proxy.reload(&yaml).unwrap();
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        get(self.edge, path, headers).await
    }

    async fn bearer(&self, token: &str, extra: &[(&str, &str)]) -> Response {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        self.get("/", &headers).await
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = get(self.admin, "/stats/prometheus", &[]).await.text();
        prometheus::sample(&text, series).unwrap_or(0.0)
    }
}

fn jwt_filter(jwks: &str) -> String {
    format!(
        "{{typed: jwt_auth, config: {{name: gw, algorithms: [RS256, ES256, EdDSA], issuers: ['{ISSUER}'], \
         audiences: [orders], clock_skew: 5s, jwks: {jwks}, \
         claims_to_headers: [{{claim: sub, header: x-user}}, {{claim: tenant, header: x-tenant}}, {{claim: level, header: x-level}}]}}}}"
    )
}

fn remote(url: &str, extra: &str) -> String {
    format!("{{remote: {{url: '{url}'{extra}}}}}")
}

fn assert_refused(r: &Response, reason: &str) {
    assert_eq!(r.status, 401, "{reason}: {}", r.text());
    assert_eq!(r.header("x-proxy-error"), Some(reason));
    let challenge = r.header("www-authenticate").unwrap();
    if reason == "missing" {
        assert_eq!(challenge, "Bearer");
    } else {
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn valid_tokens_pass_with_claims_as_headers() {
    with_timeout(Duration::from_secs(120), async {
        let (rsa, ec, ed) = (shared_rsa(), ec_key(), ed_key());
        let jwks = JwksServer::start(
            vec![rsa.jwk("r1"), ec.jwk("e1"), ed.jwk("d1")],
            Duration::ZERO,
        );
        let gw = Gateway::start(&format!(
            "{}, {{typed: show_consumer}}",
            jwt_filter(&remote(&jwks.url(), ""))
        ));
        for (key, kid, sub) in [(rsa, "r1", "rita"), (&ec, "e1", "eve"), (&ed, "d1", "dan")] {
            let token = key.sign(Some(kid), &claims(sub));
            let r = gw
                .bearer(&token, &[("x-user", "admin"), ("x-tenant", "forged")])
                .await;
            assert_eq!(r.status, 200, "{kid}: {}", r.text());
            let seen = Echoed::parse(&r.body);
            assert_eq!(
                seen.header_all("x-user"),
                vec![sub],
                "forged header removed"
            );
            assert_eq!(seen.header_all("x-tenant"), vec!["acme"]);
            assert_eq!(seen.header("x-level"), Some("3"));
            assert_eq!(
                seen.header("x-consumer-seen"),
                Some(sub),
                "the consumer reached the next layer"
            );
        }
        // A token without `kid` is tried against the keys of its algorithm.
        let r = gw.bearer(&ed.sign(None, &claims("nokid")), &[]).await;
        assert_eq!(r.status, 200);
        // A token without the claim: the forged header is still gone.
        let mut c = claims("zed");
        c.as_object_mut().unwrap().remove("tenant");
        let r = gw
            .bearer(&ec.sign(Some("e1"), &c), &[("x-tenant", "forged")])
            .await;
        assert_eq!(Echoed::parse(&r.body).header("x-tenant"), None);
        assert_eq!(jwks.up.hits(), 1, "one fetch served every key");
        assert_eq!(
            gw.metric(r#"proxy_filters_auth_successes_total{filter="gw"}"#)
                .await,
            5.0
        );
    })
    .await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_reason() {
    with_timeout(Duration::from_secs(120), async {
        let (ec, ed, other) = (ec_key(), ed_key(), ed_key());
        let jwks = JwksServer::start(vec![ec.jwk("e1"), ed.jwk("d1")], Duration::ZERO);
        let gw = Gateway::start(&jwt_filter(&remote(&jwks.url(), "")));
        let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut c = claims("mallory");
            f(c.as_object_mut().unwrap());
            c
        };
        let good = ed.sign(Some("d1"), &claims("alice"));
        let parts: Vec<&str> = good.split('.').collect();
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT","kid":"d1"}"#),
            parts[1]
        );
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("alice"),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let cases: Vec<(String, &str)> = vec![
            (
                ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.insert("exp".into(), json!(now() - 60));
                    }),
                ),
                "expired",
            ),
            (
                ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.insert("nbf".into(), json!(now() + 600));
                    }),
                ),
                "not_yet_valid",
            ),
            (
                ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.remove("exp");
                    }),
                ),
                "malformed",
            ),
            (unsigned, "alg_not_allowed"),
            (hs256, "alg_not_allowed"),
            (other.sign(Some("d1"), &claims("alice")), "bad_signature"),
            (
                format!("{}.{}.{}", parts[0], parts[1], b64(&[7; 64])),
                "bad_signature",
            ),
            (
                ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.insert("iss".into(), json!("https://evil.test/"));
                    }),
                ),
                "bad_issuer",
            ),
            (
                ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.remove("iss");
                    }),
                ),
                "bad_issuer",
            ),
            (
                ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.insert("aud".into(), json!("billing"));
                    }),
                ),
                "bad_audience",
            ),
            (
                ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.remove("sub");
                    }),
                ),
                "malformed",
            ),
            // An ES256 token naming the Ed25519 key.
            (ec.sign(Some("d1"), &claims("alice")), "alg_not_allowed"),
            (other.sign(Some("nope"), &claims("alice")), "unknown_key"),
            ("abc".into(), "malformed"),
            ("a.b.c".into(), "malformed"),
            (format!("{}.!!.{}", parts[0], parts[2]), "malformed"),
        ];
        for (token, reason) in &cases {
            assert_refused(&gw.bearer(token, &[]).await, reason);
        }
        assert_refused(&gw.get("/", &[]).await, "missing");
        assert_refused(
            &gw.get("/", &[("authorization", "Basic YTpi")]).await,
            "malformed",
        );
        // Within the clock skew (5s) a just-expired token still passes.
        let r = gw
            .bearer(
                &ed.sign(
                    Some("d1"),
                    &with(&|c| {
                        c.insert("exp".into(), json!(now() - 2));
                    }),
                ),
                &[],
            )
            .await;
        assert_eq!(r.status, 200);
        for reason in [
            "expired",
            "not_yet_valid",
            "bad_signature",
            "bad_issuer",
            "bad_audience",
            "malformed",
            "alg_not_allowed",
            "unknown_key",
            "missing",
        ] {
            let want = cases.iter().filter(|(_, r)| *r == reason).count() as f64
                + f64::from(u8::from(reason == "missing" || reason == "malformed"));
            let series =
                format!(r#"proxy_filters_auth_failures_total{{filter="gw",reason="{reason}"}}"#);
            assert_eq!(gw.metric(&series).await, want, "{reason}");
        }
    })
    .await;
}

#[tokio::test]
async fn key_rotation_is_fetched_once_under_concurrency() {
    with_timeout(Duration::from_secs(120), async {
        let (old, new) = (ec_key(), ed_key());
        let jwks = JwksServer::start(vec![old.jwk("k1")], Duration::from_millis(200));
        let gw = Gateway::start(&jwt_filter(&remote(
            &jwks.url(),
            ", min_refresh_interval: 10ms",
        )));
        assert_eq!(
            gw.bearer(&old.sign(Some("k1"), &claims("a")), &[])
                .await
                .status,
            200
        );
        assert_eq!(jwks.up.hits(), 1);

        // The issuer rotates: tokens now name k2, which the cache has not seen.
        jwks.set(vec![old.jwk("k1"), new.jwk("k2")]);
        let token = new.sign(Some("k2"), &claims("b"));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let token = token.clone();
            let edge = gw.edge;
            tasks.push(tokio::spawn(async move {
                get(edge, "/", &[("authorization", &format!("Bearer {token}"))])
                    .await
                    .status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        assert_eq!(
            jwks.up.hits(),
            2,
            "one fetch for 50 requests naming the new key"
        );
        assert_eq!(
            gw.bearer(&old.sign(Some("k1"), &claims("a")), &[])
                .await
                .status,
            200
        );

        // A kid nobody has: one more fetch at most, then unknown_key.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = gw.bearer(&new.sign(Some("k9"), &claims("c")), &[]).await;
        assert_refused(&r, "unknown_key");
        assert_eq!(jwks.up.hits(), 3);
        assert_eq!(
            gw.metric(r#"proxy_filters_auth_jwks_fetches_total{filter="gw",result="ok"}"#)
                .await,
            3.0
        );
    })
    .await;
}

#[tokio::test]
async fn a_stale_set_is_refreshed_in_the_background() {
    with_timeout(Duration::from_secs(60), async {
        let (old, new) = (ed_key(), ed_key());
        // Each fetch takes 1s: a request that waited on one would show it.
        let jwks = JwksServer::start(vec![old.jwk("d1")], Duration::from_secs(1));
        let gw = Gateway::start(&jwt_filter(&remote(
            &jwks.url(),
            ", max_age: 100ms, min_refresh_interval: 10ms",
        )));
        let token = old.sign(Some("d1"), &claims("a"));
        assert_eq!(gw.bearer(&token, &[]).await.status, 200);
        assert_eq!(jwks.up.hits(), 1);
        // The issuer replaces the key without a new kid; the cached set grows stale.
        jwks.set(vec![new.jwk("d1")]);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = std::time::Instant::now();
        assert_eq!(
            gw.bearer(&token, &[]).await.status,
            200,
            "served from the stale set"
        );
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "did not wait on the refresh"
        );
        let refreshed = proxy_test_support::eventually_async(Duration::from_secs(5), || async {
            gw.bearer(&new.sign(Some("d1"), &claims("b")), &[])
                .await
                .status
                == 200
        })
        .await;
        assert!(refreshed, "the background refresh brought the new key");
        assert_refused(&gw.bearer(&token, &[]).await, "bad_signature");
    })
    .await;
}

#[tokio::test]
async fn a_reload_keeps_the_fetched_keys_while_jwks_is_unchanged() {
    with_timeout(Duration::from_secs(60), async {
        let key = ed_key();
        let jwks = JwksServer::start(vec![key.jwk("d1")], Duration::ZERO);
        let filter = jwt_filter(&remote(&jwks.url(), ""));
        let gw = Gateway::start(&filter);
        let token = key.sign(Some("d1"), &claims("a"));
        assert_eq!(gw.bearer(&token, &[]).await.status, 200);
        assert_eq!(jwks.up.hits(), 1);
        // Another section, the same `jwks.remote`: the cached keys serve on.
        gw.reload(&filter.replacen("clock_skew: 5s", "clock_skew: 6s", 1));
        assert_eq!(gw.bearer(&token, &[]).await.status, 200);
        assert_eq!(jwks.up.hits(), 1);
        // A changed `jwks.remote` starts a cache of its own.
        gw.reload(&jwt_filter(&remote(&jwks.url(), ", max_age: 5m")));
        assert_eq!(gw.bearer(&token, &[]).await.status, 200);
        assert_eq!(jwks.up.hits(), 2);
    })
    .await;
}

#[tokio::test]
async fn jwks_server_down_keeps_the_last_good_set() {
    with_timeout(Duration::from_secs(120), async {
        let key = ed_key();
        let mut jwks = JwksServer::start(vec![key.jwk("d1")], Duration::ZERO);
        let gw = Gateway::start(&jwt_filter(&remote(
            &jwks.url(),
            ", max_age: 100ms, min_refresh_interval: 50ms, timeout: 1s",
        )));
        let token = key.sign(Some("d1"), &claims("alice"));
        assert_eq!(gw.bearer(&token, &[]).await.status, 200);
        jwks.up.stop();
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Past max_age: a background refresh fails, the cached set keeps serving.
        for _ in 0..5 {
            assert_eq!(gw.bearer(&token, &[]).await.status, 200);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let failed = r#"proxy_filters_auth_jwks_fetches_total{filter="gw",result="failed"}"#;
        assert!(gw.metric(failed).await >= 1.0);
        // An unknown kid cannot be fetched either: unknown_key, still no outage.
        assert_refused(
            &gw.bearer(&key.sign(Some("d2"), &claims("x")), &[]).await,
            "unknown_key",
        );
        assert_eq!(gw.bearer(&token, &[]).await.status, 200);

        // A gateway that never got a key set answers jwks_unavailable.
        let cold = Gateway::start(&jwt_filter(&remote(&jwks.url(), ", timeout: 1s")));
        assert_refused(&cold.bearer(&token, &[]).await, "jwks_unavailable");
    })
    .await;
}

#[tokio::test]
async fn inline_jwks_and_query_tokens() {
    with_timeout(Duration::from_secs(60), async {
        let key = ec_key();
        let inline = format!("{{inline: {{keys: [{}]}}}}", key.jwk("e1"));
        let filter = jwt_filter(&inline).replacen(
            "clock_skew: 5s,",
            "clock_skew: 5s, from: [{query: access_token}],",
            1,
        );
        let gw = Gateway::start(&filter);
        let token = key.sign(Some("e1"), &claims("q"));
        let r = gw.get(&format!("/x?a=1&access_token={token}"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.body).header("x-user"), Some("q"));
        assert_refused(&gw.bearer(&token, &[]).await, "missing");
    })
    .await;
}

#[tokio::test]
async fn api_keys_pass_and_fail() {
    with_timeout(Duration::from_secs(60), async {
        let entry = proxy_filters::auth::ApiKeyEntry::for_key("batch", "s3cret-key");
        let gw = Gateway::start(&format!(
            "{{typed: api_key_auth, config: {{name: keys, from: [{{header: {{name: x-api-key}}}}, {{query: api_key}}], \
             keys: [{{consumer: {}, sha256: {}}}]}}}}, {{typed: show_consumer}}",
            entry.consumer, entry.sha256
        ));
        let r = gw.get("/", &[("x-api-key", "s3cret-key")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.body).header("x-consumer-seen"), Some("batch"));
        assert_eq!(gw.get("/?api_key=s3cret-key", &[]).await.status, 200);
        let r = gw.get("/", &[("x-api-key", "s3cret-kez")]).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.header("x-proxy-error"), Some("invalid_api_key"));
        let r = gw.get("/", &[]).await;
        assert_eq!(r.header("x-proxy-error"), Some("missing"));
        assert_eq!(gw.metric(r#"proxy_filters_auth_successes_total{filter="keys"}"#).await, 2.0);
        assert_eq!(
            gw.metric(r#"proxy_filters_auth_failures_total{filter="keys",reason="invalid_api_key"}"#).await,
            1.0
        );
    })
    .await;
}

#[test]
fn config_errors_name_the_field() {
    let start = |filter: &str| {
        let yaml = config(
            &[listener("edge", &format!("[{filter}]"), "b")],
            &[("b", free_addr())],
        );
        try_start(&yaml).err().unwrap_or_default()
    };
    let e = start(&jwt_filter(&remote("ftp://idp/jwks", "")));
    assert!(
        e.contains("listeners[0].http_filters[0].config.jwks.remote.url"),
        "{e}"
    );
    let e = start(&jwt_filter(
        "{inline: {keys: [{kty: OKP, crv: Ed25519, x: AAAA}]}}",
    ));
    assert!(e.contains("config.jwks.inline.keys[0]: "), "{e}");
    let e = start(&jwt_filter(&remote("http://idp/jwks", "")).replacen(
        "clock_skew: 5s",
        "clock_skew: 2h",
        1,
    ));
    assert!(e.contains("config.clock_skew: at most 1h"), "{e}");
    let e = start("{typed: api_key_auth, config: {keys: [{consumer: a, sha256: abc}]}}");
    assert!(e.contains("config.keys[0].sha256"), "{e}");
}

// === no panic on any token ===

fn fuzz_verifier() -> (Verifier, KeySet) {
    let key = ed_key();
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(json!({ "keys": [key.jwk("d1"), ec_key().jwk("e1")] })).unwrap();
    let mut cfg = JwtAuthConfig::new(
        vec![
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ],
        JwksSource::Inline(set.clone()),
    );
    cfg.audiences = vec!["orders".into()];
    (
        Verifier::new(&cfg).unwrap(),
        KeySet::from_jwks(&set).unwrap(),
    )
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,80}",
        any::<Vec<u8>>().prop_map(|b| b64(&b)),
        prop::sample::select(vec![
            r#"{"alg":"EdDSA","kid":"d1"}"#,
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"RS256","kid":"d1"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"EdDSA","kid":"d1","crit":["x"]}"#,
            r#"{"sub":"a","exp":1e400,"nbf":-1,"aud":[1,2],"iss":{}}"#,
            r#"{"sub":"a","exp":18446744073709551615,"nbf":18446744073709551615}"#,
        ])
        .prop_map(|s| b64(s.as_bytes())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_token_panics(header in segment(), payload in segment(), sig in segment(), raw in ".{0,200}") {
        static V: OnceLock<(Verifier, KeySet)> = OnceLock::new();
        let (verifier, keys) = V.get_or_init(fuzz_verifier);
        for token in [format!("{header}.{payload}.{sig}"), raw.clone(), format!("{header}.{payload}")] {
            let r = verifier.verify(&token, keys);
            // Nothing random is signed by our keys.
            prop_assert!(r.is_err(), "{token}");
            prop_assert_ne!(r.unwrap_err(), Failure::Missing);
        }
    }
}

/// A JWKS server over TLS with a certificate for `localhost` from `pki`.
fn https_jwks(
    pki: &proxy_test_support::pki::Pki,
    keys: Vec<Value>,
) -> (Upstream, Arc<AtomicUsize>) {
    let acceptor = pki.server("jwks", &["localhost"]).tls_acceptor();
    let body = json!({ "keys": keys }).to_string();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let up = proxy_test_support::upstream::spawn_raw(move |stream, _stats| {
        let (acceptor, body, counted) = (acceptor.clone(), body.clone(), counted.clone());
        async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |_req| {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(body)),
                    ))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
        }
    });
    (up, fetches)
}

#[tokio::test]
async fn https_jwks_with_the_configured_roots() {
    with_timeout(Duration::from_secs(60), async {
        let pki = proxy_test_support::pki::Pki::new("jwks");
        let key = ec_key();
        let (up, fetches) = https_jwks(&pki, vec![key.jwk("e1")]);
        let url = format!("https://localhost:{}/jwks", up.addr.port());
        let ca = format!(", ca_path: '{}'", pki.ca_pem.display());
        let gw = Gateway::start(&jwt_filter(&remote(&url, &ca)));
        let token = key.sign(Some("e1"), &claims("tls"));
        assert_eq!(gw.bearer(&token, &[]).await.status, 200);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // The public roots do not trust the test CA: no key set.
        let untrusted = Gateway::start(&jwt_filter(&remote(&url, "")));
        assert_refused(&untrusted.bearer(&token, &[]).await, "jwks_unavailable");
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "no request over an untrusted handshake"
        );
    })
    .await;
}
