//! HTTP filters over LDS from an independent (Python) control plane: a listener
//! whose connection manager carries Envoy's JWT authentication (inline JWKS),
//! local rate limit and RBAC, and this proxy's own `lua` filter in a TypedStruct,
//! before the router, over ADS (state of the world and delta). Requests through the
//! proxy get 401 without a token, 200 with one, 403 by RBAC, 429 past the bucket,
//! and the Lua header on the upstream's answers; a filter config the proxy refuses
//! (at translation, or by the filter's registry) is NACKed naming the field while
//! the running listener keeps serving. Routes override the listener's filters by
//! name (`typed_per_filter_config`): JWT off on a health route, RBAC replaced on
//! another.

use crate::control_plane;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use control_plane::{Outcome, PyControlPlane};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    client, eventually, eventually_async,
    jwt::{now, TestKey},
    ports::any_port,
    with_timeout, yaml, TestServer, Upstream,
};
use proxy_xds::{ApiType, BackoffConfig, XdsClient, XdsConfig};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
/// Requests the listener's bucket allows (it never refills within the test).
const BUCKET: usize = 4;

/// A proxy with a static listener `main` (to cluster `a`) that asks for clusters,
/// endpoints, listeners and routes over `api_type`, every filter of proxy-filters
/// registered; and the spawned client.
fn proxy(cp: &PyControlPlane, api_type: ApiType) -> (TestServer, tokio::task::JoinHandle<()>) {
    let base = Config::from_yaml(&yaml::config(&[yaml::listener("main", "a", &[])], &[]))
        .expect("base config");
    let mut xds = XdsConfig::new(cp.address(), "filters-node");
    xds.listeners = true;
    xds.api_type = api_type;
    xds.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let client = XdsClient::new(xds, base);
    let mut registry = Registry::default();
    proxy_lb::register(&mut registry);
    proxy_filters::register(&mut registry);
    let server = Server::new(client.initial_config(), registry).expect("initial config");
    let proxy = TestServer::run(server.clone()).expect("proxy starts");
    (proxy, tokio::spawn(client.run(server)))
}

/// Envoy's `JwtAuthentication`: provider `idp` (issuer, audience, inline JWKS)
/// required on every path.
fn jwt_authn(key: &TestKey) -> Value {
    let jwks = json!({ "keys": [key.jwk("k1")] }).to_string();
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "idp": {
                "issuer": "https://idp.test",
                "audiences": ["api"],
                "forward": true,
                "local_jwks": { "inline_string": jwks },
            }},
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" } }],
        },
    })
}

/// Envoy's `LocalRateLimit`: a bucket of [`BUCKET`] tokens, refilled hourly.
fn local_ratelimit() -> Value {
    let percent = json!({ "default_value": { "numerator": 100 }, "runtime_key": "rl" });
    json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "rl",
            "token_bucket": { "max_tokens": BUCKET, "tokens_per_fill": 1, "fill_interval": "3600s" },
            "filter_enabled": percent,
            "filter_enforced": percent,
        },
    })
}

/// Envoy's `RBAC`: deny requests carrying `x-blocked`; `principal` is the
/// principal of that policy (`{"any": true}`, or one this proxy refuses).
fn rbac(principal: Value) -> Value {
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": { "action": "DENY", "policies": { "blocked": {
                "permissions": [{ "header": { "name": "x-blocked", "present_match": true } }],
                "principals": [principal],
            }}},
        },
    })
}

/// This proxy's `lua` filter in a TypedStruct, with `value` as its section.
fn lua(value: Value) -> Value {
    json!({
        "name": "lua",
        "typed_config": {
            "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
            "type_url": "type.googleapis.com/proxy.filters.lua",
            "value": value,
        },
    })
}

fn lua_marks_answers() -> Value {
    lua(json!({ "script": { "source":
        "function on_request(req) end\nfunction on_response(resp) resp:set_header('x-lua', 'yes') end"
    }}))
}

/// Cluster `a` (EDS) at `upstream`, and listener `web` at `web` with `filters`
/// before the router and its routes over RDS.
fn snapshot(web: SocketAddr, upstream: &Upstream, filters: Vec<Value>) -> Value {
    json!({
        "clusters": [{"name": "a"}],
        "endpoints": {"a": [upstream.addr.to_string()]},
        "listeners": [{"name": "web", "address": web.to_string(), "rds": "r", "http_filters": filters}],
        "routes": {"r": [{"prefix": "/", "cluster": "a"}]},
    })
}

fn nack(answers: &BTreeMap<String, Outcome>) -> &str {
    match answers.get("lds") {
        Some(Outcome::Nack(m)) => m,
        other => panic!("lds: expected a NACK, got {other:?} in {answers:?}"),
    }
}

async fn get(addr: SocketAddr, token: Option<&str>, extra: &[(&str, &str)]) -> client::Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    client::get(addr, "/", &headers).await
}

async fn filters_from_the_control_plane(api_type: ApiType) {
    let Some(mut cp) = PyControlPlane::start().await else {
        return;
    };
    let upstream = Upstream::named("a");
    let key = TestKey::ed25519();
    let token = key.sign(
        Some("k1"),
        &json!({ "iss": "https://idp.test", "aud": "api", "sub": "ann", "exp": now() + 600 }),
    );
    let (proxy, task) = proxy(&cp, api_type);
    cp.request("cds", "request").await;
    cp.request("lds", "request").await;

    let filters = vec![
        jwt_authn(&key),
        local_ratelimit(),
        rbac(json!({ "any": true })),
        lua_marks_answers(),
    ];
    let web_addr = any_port();
    let answers = cp
        .push(
            "1",
            snapshot(web_addr, &upstream, filters.clone()),
            &["cds", "eds", "lds", "rds"],
        )
        .await;
    for t in ["cds", "eds", "lds", "rds"] {
        assert_eq!(answers.get(t), Some(&Outcome::Ack), "{t}: {answers:?}");
    }
    // Without a token: 401 (before the rate limit: no token is spent).
    let serving = || {
        proxy
            .server()
            .listener_addresses()
            .iter()
            .any(|(n, _)| n == "web")
    };
    assert!(eventually(LIMIT, serving).await, "listener web serves");
    let web = proxy.addr("web");
    assert!(
        eventually_async(LIMIT, || async { get(web, None, &[]).await.status == 401 }).await,
        "the listener asks for a token"
    );
    let bad = key.sign(
        Some("k1"),
        &json!({ "iss": "https://other", "aud": "api", "sub": "x", "exp": now() + 600 }),
    );
    assert_eq!(get(web, Some(&bad), &[]).await.status, 401, "wrong issuer");

    // With a token: the upstream answers, through the Lua filter.
    let ok = get(web, Some(&token), &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "a");
    assert_eq!(ok.header("x-lua"), Some("yes"));
    // RBAC denies a request carrying x-blocked.
    assert_eq!(
        get(web, Some(&token), &[("x-blocked", "1")]).await.status,
        403
    );
    // The bucket: BUCKET requests in all, then 429.
    for _ in 2..BUCKET {
        assert_eq!(get(web, Some(&token), &[]).await.status, 200);
    }
    let limited = get(web, Some(&token), &[]).await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());

    // A principal this proxy cannot check: refused at translation, by its path.
    let mut refused = filters.clone();
    refused[2] = rbac(json!({ "remote_ip": { "address_prefix": "10.0.0.0", "prefix_len": 8 } }));
    let answers = cp
        .push("2", snapshot(web_addr, &upstream, refused), &["lds"])
        .await;
    let message = nack(&answers);
    assert!(
        message.contains("listener \"web\"")
            && message.contains(
                "http_filters[2].typed_config.rules.policies[\"blocked\"].principals[0].remote_ip"
            ),
        "{message}"
    );
    // A Lua section the filter refuses: NACKed by the registry, naming the xDS
    // field (a disabled filter first, left out: the indexes differ).
    let mut refused = filters.clone();
    refused[3] =
        lua(json!({ "script": { "source": "function on_request(req) end" }, "memory": 1 }));
    refused.insert(
        0,
        json!({ "name": "envoy.filters.http.cors", "disabled": true }),
    );
    let answers = cp
        .push("3", snapshot(web_addr, &upstream, refused), &["lds"])
        .await;
    let message = nack(&answers);
    assert!(
        message.starts_with(
            "listener \"web\": filter_chains[0].filters[0].typed_config.http_filters[4].typed_config.value.memory: unknown field"
        ),
        "{message}"
    );
    // The running listener kept its filters and serves on.
    assert_eq!(get(web, None, &[]).await.status, 401);
    assert_eq!(get(web, Some(&token), &[]).await.status, 429);
    assert_eq!(client::get(proxy.addr("main"), "/", &[]).await.text(), "a");
    task.abort();
    cp.quit().await;
}

/// Per-route overrides of the listener's filters: JWT turned off on `/health` by a
/// `FilterConfig { disabled: true }`, RBAC replaced on `/admin` by an `RBACPerRoute`
/// denying everything; `/` keeps the listener's filters.
async fn overrides_from_the_control_plane(api_type: ApiType) {
    let Some(mut cp) = PyControlPlane::start().await else {
        return;
    };
    let upstream = Upstream::named("a");
    let key = TestKey::ed25519();
    let token = key.sign(
        Some("k1"),
        &json!({ "iss": "https://idp.test", "aud": "api", "sub": "ann", "exp": now() + 600 }),
    );
    let (proxy, task) = proxy(&cp, api_type);
    cp.request("cds", "request").await;
    cp.request("lds", "request").await;

    let web_addr = any_port();
    let mut resources = snapshot(
        web_addr,
        &upstream,
        vec![jwt_authn(&key), rbac(json!({ "any": true }))],
    );
    let jwt_off = json!({ "typed_per_filter_config": { "envoy.filters.http.jwt_authn": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "disabled": true,
    }}});
    let deny_all = json!({ "typed_per_filter_config": { "envoy.filters.http.rbac": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        "rbac": { "rules": { "action": "DENY", "policies": { "all": {
            "permissions": [{ "any": true }],
            "principals": [{ "any": true }],
        }}}},
    }}});
    resources["routes"] = json!({ "r": [
        { "prefix": "/health", "cluster": "a", "fields": jwt_off },
        { "prefix": "/admin", "cluster": "a", "fields": deny_all },
        { "prefix": "/", "cluster": "a" },
    ]});
    let answers = cp.push("1", resources, &["cds", "eds", "lds", "rds"]).await;
    for t in ["cds", "eds", "lds", "rds"] {
        assert_eq!(answers.get(t), Some(&Outcome::Ack), "{t}: {answers:?}");
    }
    let serving = || {
        proxy
            .server()
            .listener_addresses()
            .iter()
            .any(|(n, _)| n == "web")
    };
    assert!(eventually(LIMIT, serving).await, "listener web serves");
    let web = proxy.addr("web");
    let at = |path: &'static str, token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        async move {
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("authorization", b.as_str()))
                .collect();
            client::get(web, path, &headers).await.status
        }
    };
    assert!(
        eventually_async(LIMIT, || async { at("/", None).await == 401 }).await,
        "the listener asks for a token"
    );
    assert_eq!(at("/", Some(&token)).await, 200);
    // JWT off on /health: no token needed; RBAC (the listener's) still runs there.
    assert_eq!(at("/health", None).await, 200);
    let blocked = client::get(web, "/health", &[("x-blocked", "1")]).await;
    assert_eq!(blocked.status, 403);
    // RBAC replaced on /admin: denied even with a token and no x-blocked; JWT still
    // runs first.
    assert_eq!(at("/admin", Some(&token)).await, 403);
    assert_eq!(at("/admin", None).await, 401);
    task.abort();
    cp.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_filter_overrides_over_ads_state_of_the_world() {
    with_timeout(LIMIT * 3, overrides_from_the_control_plane(ApiType::Sotw)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_filters_over_lds_state_of_the_world() {
    with_timeout(LIMIT * 3, filters_from_the_control_plane(ApiType::Sotw)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_filters_over_lds_delta() {
    with_timeout(LIMIT * 3, filters_from_the_control_plane(ApiType::Delta)).await;
}
