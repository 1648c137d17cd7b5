//! RBAC through a real proxy: allow-lists and deny-lists over source IPs, paths,
//! methods, hosts and headers; mTLS identities and RPC service/method from request
//! extensions (set here by stand-in layers, as TLS and the codecs do); shadow mode
//! lets everything through and counts; bad rules refused naming the field.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{sync::Arc, time::Duration};

use common::{config, listener, registry, start, try_start, upstream};
use proxy_core::{
    connection::{PeerIdentity, TlsInfo},
    rpc::RpcInfo,
    BoxConn, BoxHttp, Connection, Registry,
};
use proxy_test_support::{
    client::{self, get},
    closed_port, free_addr, prometheus, with_timeout, TestServer,
};
use tower::ServiceExt;

/// This crate's filters plus `fake_mtls` (a network filter that marks every
/// connection as mTLS from `spiffe://cluster.local/ns/shop/sa/web`) and `fake_rpc`
/// (puts `x-rpc-service` / `x-rpc-method` into an `RpcInfo`, as a codec would).
fn test_registry() -> Registry {
    let mut r = registry();
    r.register_network_filter("fake_mtls", |_, _| {
        Ok(Arc::new(|inner: BoxConn| {
            BoxConn::new(tower::service_fn(move |mut conn: Connection| {
                conn.extensions.insert(TlsInfo {
                    peer: Some(PeerIdentity {
                        subject: Some("CN=web".into()),
                        uri_sans: vec!["spiffe://cluster.local/ns/shop/sa/web".into()],
                        dns_sans: vec![],
                    }),
                    ..TlsInfo::default()
                });
                inner.clone().oneshot(conn)
            }))
        }))
    });
    r.register_filter("fake_rpc", |_, _| {
        Ok(Arc::new(|inner: BoxHttp| {
            BoxHttp::new(
                tower::ServiceBuilder::new()
                    .map_request(|mut req: proxy_core::HttpRequest| {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        if let (Some(s), Some(m)) = (h("x-rpc-service"), h("x-rpc-method")) {
                            req.extensions_mut().insert(RpcInfo::new("dubbo", &s, &m));
                        }
                        req
                    })
                    .service(inner),
            )
        }))
    });
    r
}

const ALLOW_LIST: &str = r#"{policies: [
  {name: local-readers, action: allow, principals: [{source_ip: 127.0.0.0/8}],
   permissions: [{and: [{method: [GET, HEAD]}, {path: {prefix: /public}}]}]},
  {name: api-host, action: allow, principals: [{any: true}], permissions: [{host: {exact: api.local}}]}
]}"#;

const DENY_LIST: &str = r#"{policies: [
  {name: no-bots, action: deny, principals: [{header: {name: user-agent, value: {regex: '.*[Bb]ot.*'}}}], permissions: [{any: true}]},
  {name: no-admin-from-outside, action: deny, principals: [{not: {source_ip: 10.0.0.0/8}}], permissions: [{path: {prefix: /admin}}]}
]}"#;

#[tokio::test]
async fn allow_and_deny_lists() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let proxy = start(&config(
            &[
                listener(
                    "allow",
                    &format!("[{{typed: rbac, config: {ALLOW_LIST}}}]"),
                    "b",
                ),
                listener(
                    "deny",
                    &format!("[{{typed: rbac, config: {DENY_LIST}}}]"),
                    "b",
                ),
            ],
            &[("b", up.addr)],
        ));
        let allow = proxy.addr("allow");
        assert_eq!(get(allow, "/public/x", &[]).await.status, 200);
        let denied = get(allow, "/private", &[]).await;
        assert_eq!(denied.status, 403);
        assert_eq!(denied.headers["x-proxy-error"], "rbac_denied");
        let post = http::Request::post("/public/x")
            .header("host", "test.local")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        assert_eq!(client::send(allow, post).await.unwrap().status, 403);
        // Host rule: any path, host compared without port and case.
        let api = http::Request::get("/private")
            .header("host", "API.local:8080")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        assert_eq!(client::send(allow, api).await.unwrap().status, 200);

        let deny = proxy.addr("deny");
        assert_eq!(
            get(deny, "/", &[("user-agent", "curl/8")]).await.status,
            200
        );
        assert_eq!(
            get(deny, "/", &[("user-agent", "Googlebot/2")])
                .await
                .status,
            403
        );
        assert_eq!(get(deny, "/admin", &[]).await.status, 403);
        // Spellings a server resolves to /admin do not slip past the rule.
        for sneaky in ["//admin", "/x/../admin", "/%61dmin/users", "/./admin"] {
            assert_eq!(get(deny, sneaky, &[]).await.status, 403, "{sneaky}");
        }
        // Denied requests never reached the upstream.
        assert_eq!(up.hits(), 3);
    })
    .await;
}

#[tokio::test]
async fn mtls_identity_and_rpc_permissions() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let rules = r#"{policies: [
          {name: web-reads-orders, action: allow,
           principals: [{identity: {exact: "spiffe://cluster.local/ns/shop/sa/web"}}],
           permissions: [{rpc: {service: {exact: com.shop.Orders}, method: {regex: "get[A-Z].*"}}}]}
        ]}"#;
        let filters = format!("[{{typed: fake_rpc}}, {{typed: rbac, config: {rules}}}]");
        let mut yaml = config(
            &[
                listener("mtls", &filters, "b"),
                listener("plain", &filters, "b"),
            ],
            &[("b", up.addr)],
        );
        // The first listener's connections carry the mTLS identity.
        yaml = yaml.replacen(
            "  - name: mtls\n    address: 127.0.0.1:0\n",
            "  - name: mtls\n    address: 127.0.0.1:0\n    network_filters: [{typed: fake_mtls}]\n",
            1,
        );
        let proxy = TestServer::try_start(&yaml, test_registry()).unwrap();
        let rpc = |m: &'static str| [("x-rpc-service", "com.shop.Orders"), ("x-rpc-method", m)];
        let mtls = proxy.addr("mtls");
        assert_eq!(get(mtls, "/", &rpc("getOrder")).await.status, 200);
        assert_eq!(get(mtls, "/", &rpc("deleteOrder")).await.status, 403);
        assert_eq!(get(mtls, "/", &[]).await.status, 403, "no RPC facts");
        let plain = proxy.addr("plain");
        assert_eq!(
            get(plain, "/", &rpc("getOrder")).await.status,
            403,
            "no identity"
        );
    })
    .await;
}

#[tokio::test]
async fn shadow_mode_counts_but_never_denies() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let admin = free_addr();
        let shadow = ALLOW_LIST.replacen("{policies:", "{name: audit, shadow: true, policies:", 1);
        let mut yaml = config(
            &[listener(
                "edge",
                &format!("[{{typed: rbac, config: {shadow}}}]"),
                "b",
            )],
            &[("b", up.addr)],
        );
        yaml = format!("admin: {{ address: \"{admin}\" }}\n{yaml}");
        let proxy = start(&yaml);
        let edge = proxy.addr("edge");
        assert_eq!(get(edge, "/public", &[]).await.status, 200);
        assert_eq!(get(edge, "/private", &[]).await.status, 200);
        assert_eq!(get(edge, "/private", &[]).await.status, 200);
        assert_eq!(up.hits(), 3);
        let text = client::get(admin, "/stats/prometheus", &[]).await.text();
        let series = |d: &str| {
            prometheus::sample(
                &text,
                &format!("proxy_filters_rbac_decisions_total{{filter=\"audit\",decision=\"{d}\"}}"),
            )
        };
        assert_eq!(series("shadow_denied"), Some(2.0), "{text}");
        assert_eq!(series("shadow_allowed"), Some(1.0), "{text}");
        assert_eq!(series("denied"), Some(0.0), "{text}");
    })
    .await;
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let up = closed_port();
    let p = "listeners[0].http_filters[0].config";
    let cases = [
        ("{policies: [{name: a, action: allow, principals: [{source_ip: 10.0.0.0/33}], permissions: [{any: true}]}]}", format!("{p}.policies[0].principals[0].source_ip: \"10.0.0.0/33\" is not a valid CIDR")),
        ("{policies: [{name: a, action: allow, principals: [{any: true}], permissions: [{path: {regex: '(('}}]}]}", format!("{p}.policies[0].permissions[0].path.regex")),
        ("{policies: [{name: a, action: allow, principals: [{any: true}], permissions: [{path: {regex: 'a)|(b'}}]}]}", format!("{p}.policies[0].permissions[0].path.regex")),
        ("{policies: [{name: a, action: allow, principals: [{header: {name: 'bad header'}}], permissions: [{any: true}]}]}", format!("{p}.policies[0].principals[0].header.name")),
        ("{policies: [{name: a, action: allow, principals: [{any: true}], permissions: [{method: ['G T']}]}]}", format!("{p}.policies[0].permissions[0].method[0]")),
        ("{policies: [{name: a, action: maybe, principals: [{any: true}], permissions: [{any: true}]}]}", format!("{p}.policies[0].action")),
        ("{policies: [{name: a, action: allow, principals: [], permissions: [{any: true}]}]}", format!("{p}.policies[0].principals: needs at least one")),
        ("{policies: [{name: a, action: allow, principals: [{any: true}], permissions: [{not: {and: [{any: true}, {rpc: {}}]}}]}]}", format!("{p}.policies[0].permissions[0].not.and[1].rpc: give a service")),
        ("{policies: [{name: a, action: allow, principals: [{any: true}], permissions: [{rpc_service: {exact: x}}]}]}", format!("{p}.policies[0].permissions[0]")),
        ("{policies: [], extra: 1}", format!("{p}.extra")),
    ];
    for (section, field) in cases {
        let filters = format!("[{{typed: rbac, config: {section}}}]");
        let err = try_start(&config(&[listener("main", &filters, "b")], &[("b", up)]))
            .err()
            .unwrap_or_else(|| panic!("{section} was accepted"));
        assert!(err.contains(&field), "{section}: {err}");
    }
}

#[tokio::test]
async fn same_rules_over_http2() {
    with_timeout(Duration::from_secs(30), async {
        let up = upstream("backend", Duration::ZERO);
        let proxy = start(&config(
            &[
                listener(
                    "allow",
                    &format!("[{{typed: rbac, config: {ALLOW_LIST}}}]"),
                    "b",
                ),
                listener(
                    "by-host",
                    &format!("[{{typed: rbac, config: {BY_HOST}}}]"),
                    "b",
                ),
            ],
            &[("b", up.addr)],
        ));
        let mut h2 = h2c_connect(proxy.addr("allow")).await;
        for (path, want) in [("/public/a", 200), ("/private", 403), ("/public/b", 200)] {
            let req = http::Request::get(format!("http://test.local{path}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = h2.send_request(req).await.unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            assert_eq!(resp.status().as_u16(), want, "{path}");
        }
        // A gRPC call denied: a trailers-only gRPC answer, PERMISSION_DENIED. Media
        // types are case-insensitive: an odd-cased gRPC content type is gRPC too.
        for content_type in ["application/grpc", "Application/GRPC+proto"] {
            let req = http::Request::post("http://test.local/pkg.Svc/Method")
                .header("content-type", content_type)
                .header("te", "trailers")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = h2.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{content_type}");
            assert_eq!(resp.headers()["grpc-status"], "7", "{content_type}");
            assert_eq!(resp.headers()["content-type"], "application/grpc");
        }
        assert_eq!(up.hits(), 2);
        // A header condition on `host` sees `:authority`, as it sees HTTP/1.1's Host.
        let mut h2 = h2c_connect(proxy.addr("by-host")).await;
        for (authority, want) in [("blocked.local", 403), ("open.local", 200)] {
            let req = http::Request::get(format!("http://{authority}/x"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = h2.send_request(req).await.unwrap();
            assert_eq!(resp.status().as_u16(), want, "{authority}");
        }
        assert_eq!(up.hits(), 3);
    })
    .await;
}

/// Denies requests whose `host` is `blocked.local`, by a header condition.
const BY_HOST: &str = r#"{policies: [
  {name: blocked, action: deny, principals: [{header: {name: host, value: {exact: blocked.local}}}], permissions: [{any: true}]}
], default_action: allow}"#;

/// An HTTP/2 (prior knowledge) connection to `addr`.
async fn h2c_connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    h2
}
