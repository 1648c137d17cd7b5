//! Hot upgrade of the api-gateway: a consumer's keep-alive connection, in the middle
//! of a stream of JWT-authenticated requests (jwt_auth, claims to headers, RBAC on
//! the consumer), keeps its one connection through an upgrade by `--upgrade` and
//! one by `SIGUSR2`, and no request fails; every request reached the upstream with
//! the consumer header the token gave.

use std::time::Duration;

use http::StatusCode;
use proxy_test_support::{
    free_addr,
    hot_upgrade::{ProxyProcess, RequestStream},
    jwt::{now, TestKey},
    temp::TempDir,
    with_timeout, Upstream,
};
use serde_json::json;

const GATEWAY: &str = env!("CARGO_BIN_EXE_api-gateway");

/// A gateway config: `/api/` checks a JWT signed by `key` (kid `k1`), puts `sub` in
/// `x-consumer-id`, lets consumers through RBAC, and reaches `upstream`.
fn config(
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    key: &TestKey,
    upstream: std::net::SocketAddr,
) -> String {
    let jwks = json!({ "keys": [key.jwk("k1")] });
    format!(
        r#"
admin: {{ address: "{admin}" }}
runtime: {{ worker_threads: 1, drain_timeout: 5s }}
listeners:
  - name: api
    address: "{listen}"
    virtual_hosts:
      - name: api
        domains: ["*"]
        routes:
          - name: echo
            match: {{ path: {{ prefix: /api/ }} }}
            cluster: app
            filters:
              - typed: jwt_auth
                config:
                  name: test-jwt
                  algorithms: [EdDSA]
                  issuers: [https://issuer.test/]
                  audiences: [api]
                  jwks: {{ inline: {jwks} }}
                  claims_to_headers: [{{ claim: sub, header: x-consumer-id }}]
              - typed: rbac
                config:
                  name: consumers
                  default_action: deny
                  policies:
                    - name: any-consumer
                      action: allow
                      principals: [{{ header: {{ name: x-consumer-id }} }}]
                      permissions: [{{ any: true }}]
clusters:
  - name: app
    endpoints: ["{upstream}"]
    connect_timeout: 1s
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_connection_survives_two_upgrades() {
    with_timeout(Duration::from_secs(90), async {
        let up = Upstream::echo("app");
        let key = TestKey::ed25519();
        let (listen, admin) = (free_addr(), free_addr());
        let dir = TempDir::new("api-gateway-upgrade");
        let file = dir.join("gateway.yaml");
        std::fs::write(&file, config(listen, admin, &key, up.addr)).expect("config");
        let socket = dir.join("upgrade.sock");
        let args = [
            "--config",
            file.to_str().expect("utf-8 path"),
            "--upgrade-socket",
            socket.to_str().expect("utf-8 path"),
        ];
        let mut first = ProxyProcess::start(GATEWAY, "first", dir.path(), &args);
        first.wait_ready(admin).await;

        let claims = json!({ "sub": "ann", "iss": "https://issuer.test/", "aud": "api", "exp": now() + 600 });
        let bearer = format!("Bearer {}", key.sign(Some("k1"), &claims));
        let stream = RequestStream::start(
            listen,
            "/api/echo",
            &[("authorization", &bearer)],
            StatusCode::OK,
            Duration::from_millis(5),
        );
        assert!(stream.wait_more(20, Duration::from_secs(10)).await, "{}", first.logs());

        let mut with_flag = args.to_vec();
        with_flag.push("--upgrade");
        let mut second = ProxyProcess::start(GATEWAY, "second", dir.path(), &with_flag);
        let status = first.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "first exit {status}\n{}", first.logs());
        assert!(second.running(), "{}", second.logs());
        assert!(second.logs().contains("took over"), "{}", second.logs());
        assert!(stream.wait_more(30, Duration::from_secs(10)).await, "{}", second.logs());

        second.signal("USR2");
        let third = second.started_on_usr2(0).await;
        let status = second.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "second exit {status}\n{}", second.logs());
        assert!(third.running(), "{}", second.logs());
        assert!(stream.wait_more(30, Duration::from_secs(10)).await, "{}", second.logs());

        let report = stream.stop().await;
        assert!(report.failures.is_empty(), "{:?}\n{}", report.failures, second.logs());
        assert_eq!(report.connects, 1, "the connection was reopened\n{}", second.logs());
        let seen = up.requests();
        assert_eq!(u64::try_from(seen.len()).ok(), Some(report.ok), "every answer came from the upstream once");
        assert!(seen.iter().all(|r| r.header("x-consumer-id") == Some("ann")));
    })
    .await;
}
