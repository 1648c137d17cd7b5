//! The api-gateway binary end to end: the README's curl line against the embedded
//! default; the shipped default config (fresh ports, its inline key set swapped for a
//! JWKS server the test starts, an echo upstream) accepting a valid JWT, refusing
//! expired, unsigned and wrongly signed ones with 401, limiting each consumer on its
//! own, and running its Lua script.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    claims, default_config, example_file, get_with_token, jwks_server, metric, validates, Gateway,
};
use http::Method;
use proxy_test_support::{
    client, free_addr,
    jwt::{now, unsigned, TestKey},
    tools, with_timeout, Upstream,
};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);
#[tokio::test]
async fn jwt_from_a_jwks_server_rate_limits_per_consumer_and_lua() {
    with_timeout(LIMIT, async {
        let (key, stranger) = (TestKey::ed25519(), TestKey::ed25519());
        let jwks = jwks_server(vec![key.jwk("k1")]);
        let upstream = Upstream::echo("app");
        let (listen, admin) = (free_addr(), free_addr());
        let gw = Gateway::start(
            Some(&default_config(listen, admin, &jwks, &upstream)),
            admin,
        )
        .await;

        // A valid token: claims become headers, the Lua script adds its headers.
        let r = get_with_token(listen, &key.sign(Some("k1"), &claims("alice")), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-gateway-script"), Some("lua"));
        let seen = upstream.requests().pop().unwrap();
        assert_eq!(seen.header("x-consumer-id"), Some("alice"));
        assert_eq!(seen.header("x-consumer-plan"), Some("gold"));
        assert_eq!(seen.header("x-gateway"), Some("api-gateway"));

        // Expired, unsigned and wrongly signed tokens: 401 with the reason.
        let mut expired = claims("alice");
        expired["exp"] = json!(now() - 120);
        let bad = [
            (key.sign(Some("k1"), &expired), "expired"),
            (unsigned("k1", &claims("alice")), "alg_not_allowed"),
            (stranger.sign(Some("k1"), &claims("alice")), "bad_signature"),
        ];
        for (token, reason) in &bad {
            let r = get_with_token(listen, token, &[]).await;
            assert_eq!(r.status, 401, "{reason}: {}", r.text());
            assert_eq!(r.header("x-proxy-error"), Some(*reason));
        }
        assert_eq!(
            upstream.hits(),
            1,
            "no refused request reached the upstream"
        );

        // A forged consumer header is replaced by the token's.
        let token = key.sign(Some("k1"), &claims("bob"));
        let r = get_with_token(listen, &token, &[("x-consumer-id", "alice")]).await;
        assert_eq!(r.status, 200);
        let seen = upstream.requests().pop().unwrap();
        assert_eq!(seen.header("x-consumer-id"), Some("bob"));

        // RBAC: DELETE is not allowed, even with a valid token.
        let r = client::request(
            listen,
            Method::DELETE,
            "/api/echo",
            &[("authorization", &format!("Bearer {token}"))],
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 403);
        // RBAC on the consumer: blocked-user is denied whatever it asks.
        let r = get_with_token(listen, &key.sign(Some("k1"), &claims("blocked-user")), &[]).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.header("x-proxy-error"), Some("rbac_denied"));

        // Per consumer: alice (5 a second) runs out, carol is not affected.
        let alice = key.sign(Some("k1"), &claims("alice"));
        let mut limited = 0;
        for _ in 0..10 {
            let r = get_with_token(listen, &alice, &[]).await;
            if r.status == 429 {
                assert_eq!(r.header("x-proxy-error"), Some("rate_limited"));
                limited += 1;
            }
        }
        assert!(limited >= 3, "alice was limited {limited} times of 10");
        let r = get_with_token(listen, &key.sign(Some("k1"), &claims("carol")), &[]).await;
        assert_eq!(r.status, 200, "carol has a bucket of her own");

        let m = gw.metrics().await;
        assert!(
            metric(&m, &["proxy_filters_auth_failures_total", "expired"]) >= 1.0,
            "{m}"
        );
        assert!(
            metric(&m, &["proxy_filters_auth_successes_total"]) >= 3.0,
            "{m}"
        );
        assert!(gw.logs().contains("\"route\":\"echo\""), "the access log");
    })
    .await;
}

#[tokio::test]
async fn readme_curl_line_against_the_embedded_default() {
    with_timeout(LIMIT, async {
        if !tools::installed("curl") {
            return;
        }
        let readme = example_file("README.md");
        let line = readme
            .lines()
            .find(|l| l.starts_with("curl "))
            .expect("a curl line in the README");
        let admin: std::net::SocketAddr = "127.0.0.1:18001".parse().unwrap();
        let _gw = Gateway::start(None, admin).await;
        let out = tokio::process::Command::new("sh")
            .args(["-c", line])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{line}: {out:?}");
        assert!(text.contains("x-consumer-id: demo-user"), "{text}");
        assert!(text.contains("x-gateway: api-gateway"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn validate_checks_the_shipped_configs() {
    with_timeout(LIMIT, async {
        for file in ["default.yaml", "configs/rpc.yaml"] {
            let (valid, out) = validates(file).await;
            assert!(valid, "{file}: {out:?}");
        }
    })
    .await;
}
