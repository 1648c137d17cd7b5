//! The api-gateway from an xDS bootstrap file: the config file's `xds` section points
//! at proxy-xds's Python control plane (`proxy-xds/tests/control_plane/ads_server.py`,
//! grpcio and xds-protos from `scripts/deps/proxy-xds.sh`; skipped loudly without
//! them), which pushes a cluster, its endpoint, and a listener with its route (RDS)
//! whose connection manager carries Envoy's JWT authentication (the gateway's key,
//! issuer and audience, inline JWKS) before the router. The gateway's static JWT
//! route reaches the pushed cluster for a signed token and refuses a request without
//! one; so does the pushed listener, with the filter it got over LDS; an endpoint
//! moved by the control plane is followed behind the JWT filter.

use std::{net::SocketAddr, path::Path, time::Duration};

use http::{Method, StatusCode};
use proxy_test_support::{
    client, eventually_async, free_addr,
    hot_upgrade::{send_signal, ProxyProcess},
    jwt::{now, TestKey},
    python::Python,
    temp::TempDir,
    with_timeout, Upstream,
};
use serde_json::json;
use tokio::process::Child;

const GATEWAY: &str = env!("CARGO_BIN_EXE_api-gateway");

/// proxy-xds's ADS server serving `snapshot` (read again on SIGHUP), and its port.
async fn control_plane(python: &Python, snapshot: &Path) -> (Child, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../proxy-xds/tests/control_plane/ads_server.py");
    python
        .start_listening(
            &script,
            [
                "--port".as_ref(),
                "0".as_ref(),
                "--snapshot".as_ref(),
                snapshot.as_os_str(),
            ],
        )
        .await
}

/// Version `version` of the resources: cluster `api` at `endpoint`, listener
/// `pushed` at `pushed` checking tokens of `key` (Envoy's `JwtAuthentication`) and
/// whose route sends everything to `api`.
fn snapshot(version: &str, endpoint: SocketAddr, pushed: SocketAddr, key: &TestKey) -> String {
    let jwt_authn = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "gateway": {
                "issuer": "https://issuer.test/",
                "audiences": ["api"],
                "forward": true,
                "local_jwks": { "inline_string": json!({ "keys": [key.jwk("k1")] }).to_string() },
                "claim_to_headers": [{ "header_name": "x-consumer-id", "claim_name": "sub" }],
            }},
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "gateway" } }],
        },
    });
    json!({
        "version": version,
        "clusters": [{ "name": "api" }],
        "endpoints": { "api": [endpoint.to_string()] },
        "listeners": [{
            "name": "pushed",
            "address": pushed.to_string(),
            "rds": "pushed-routes",
            "http_filters": [jwt_authn],
        }],
        "routes": { "pushed-routes": [{ "prefix": "/", "cluster": "api" }] },
    })
    .to_string()
}

/// The bootstrap: the admin listener, the JWT-checked route to cluster `api` (which
/// only the control plane defines), and the `xds` section.
fn bootstrap(listen: SocketAddr, admin: SocketAddr, key: &TestKey, xds_port: u16) -> String {
    let jwks = json!({ "keys": [key.jwk("k1")] });
    format!(
        r#"
admin: {{ address: "{admin}" }}
runtime: {{ worker_threads: 1, drain_timeout: 2s }}
listeners:
  - name: api
    address: "{listen}"
    virtual_hosts:
      - name: api
        domains: ["*"]
        routes:
          - name: echo
            match: {{ path: {{ prefix: /api/ }} }}
            cluster: api
            filters:
              - typed: jwt_auth
                config:
                  name: test-jwt
                  algorithms: [EdDSA]
                  issuers: [https://issuer.test/]
                  audiences: [api]
                  jwks: {{ inline: {jwks} }}
                  claims_to_headers: [{{ claim: sub, header: x-consumer-id }}]
xds:
  servers: ["127.0.0.1:{xds_port}"]
  node: {{ id: api-gateway-test, cluster: gateway }}
  connect_timeout: 2s
  backoff: {{ initial: 100ms, max: 1s }}
  listeners: true
"#
    )
}

/// `GET path` on `addr` with `headers`: status and `x-upstream`.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    match client::request(addr, Method::GET, path, headers, bytes::Bytes::new()).await {
        Ok(r) => (
            r.status,
            r.header("x-upstream").unwrap_or_default().to_owned(),
        ),
        Err(_) => (StatusCode::BAD_GATEWAY, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_cluster_is_served_behind_the_jwt_route() {
    let Some(python) = Python::find(
        "grpc, envoy.service.discovery.v3.ads_pb2_grpc",
        "PROXY_XDS_VENV",
        "xds-venv",
    ) else {
        return;
    };
    with_timeout(Duration::from_secs(90), async {
        let (first, moved) = (Upstream::echo("first"), Upstream::echo("moved"));
        let (listen, admin, pushed) = (free_addr(), free_addr(), free_addr());
        let dir = TempDir::new("api-gateway-xds");
        let snapshot_file = dir.join("snapshot.json");
        let key = TestKey::ed25519();
        std::fs::write(&snapshot_file, snapshot("1", first.addr, pushed, &key)).expect("snapshot");
        let (cp, port) = control_plane(&python, &snapshot_file).await;
        let file = dir.join("gateway.yaml");
        std::fs::write(&file, bootstrap(listen, admin, &key, port)).expect("bootstrap");
        let mut gateway = ProxyProcess::start(
            GATEWAY,
            "gateway",
            dir.path(),
            &["--config", file.to_str().expect("utf-8 path")],
        );
        gateway.wait_ready(admin).await;

        let claims = json!({ "sub": "ann", "iss": "https://issuer.test/", "aud": "api", "exp": now() + 600 });
        let bearer = format!("Bearer {}", key.sign(Some("k1"), &claims));
        let auth = [("authorization", bearer.as_str())];
        // The cluster and its endpoint came from the control plane.
        let served = eventually_async(Duration::from_secs(20), || async {
            get(listen, "/api/echo", &auth).await == (StatusCode::OK, "first".into())
        })
        .await;
        assert!(served, "the pushed cluster was not served\n{}", gateway.logs());
        let seen = first.requests();
        assert_eq!(seen.last().and_then(|r| r.header("x-consumer-id")), Some("ann"));
        // No token, a forged one: refused before any upstream.
        let hits = first.hits();
        assert_eq!(get(listen, "/api/echo", &[]).await.0, StatusCode::UNAUTHORIZED);
        let forged = TestKey::ed25519().sign(Some("k1"), &claims);
        let forged = format!("Bearer {forged}");
        let (status, _) = get(listen, "/api/echo", &[("authorization", &forged)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(first.hits(), hits);
        // The listener and route the control plane pushed serve too, behind the JWT
        // filter that came with the listener over LDS.
        let listened = eventually_async(Duration::from_secs(20), || async {
            get(pushed, "/", &[]).await.0 == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(listened, "the pushed listener does not check tokens\n{}", gateway.logs());
        let hits = first.hits();
        let (status, _) = get(pushed, "/", &[("authorization", &forged)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(first.hits(), hits);
        assert_eq!(get(pushed, "/", &auth).await, (StatusCode::OK, "first".into()));
        let seen = first.requests();
        assert_eq!(seen.last().and_then(|r| r.header("x-consumer-id")), Some("ann"));
        let dump = client::get(admin, "/config_dump/xds", &[]).await.text();
        assert!(dump.contains("pushed-routes"), "{dump}");

        // Version 2 moves the endpoint: followed behind the JWT filter.
        std::fs::write(&snapshot_file, snapshot("2", moved.addr, pushed, &key)).expect("snapshot");
        send_signal(cp.id().expect("control plane pid"), "HUP");
        let followed = eventually_async(Duration::from_secs(20), || async {
            get(listen, "/api/echo", &auth).await == (StatusCode::OK, "moved".into())
        })
        .await;
        assert!(followed, "the moved endpoint was not followed\n{}", gateway.logs());
        assert_eq!(get(listen, "/api/echo", &[]).await.0, StatusCode::UNAUTHORIZED);
        let metrics = client::get(admin, "/stats/prometheus", &[]).await.text();
        assert!(metrics.contains("proxy_xds_connected 1"), "{metrics}");
        drop(cp);
    })
    .await;
}
