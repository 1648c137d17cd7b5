//! A listener's TLS (`DownstreamTlsContext`) whose certificate is an SDS secret:
//! the client asks for the secret the listener names (before the LDS ACK), the
//! listener waits for it unbound (Envoy's warming), then serves TLS with the
//! certificate SDS sent; an unsupported TLS setting is NACKed, the field named.

use crate::common;
use crate::common::tls;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use common::{
    any, cds, http_listener, lds, prefix_route, response, route_config, router, static_cluster,
    ControlPlane,
};
use envoy_types::pb::{
    envoy::{
        config::core::v3::{data_source::Specifier, transport_socket, DataSource, TransportSocket},
        extensions::{
            filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier,
            transport_sockets::tls::v3::{
                secret::Type, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
                TlsCertificate,
            },
        },
    },
    google::protobuf::BoolValue,
};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    eventually, pki::Pki, ports::any_port, with_timeout, yaml, TestServer, Upstream,
};
use proxy_tls::rotation::MemorySecrets;
use proxy_xds::{
    resources::{CLUSTER_TYPE, LISTENER_TYPE, SECRET_TYPE},
    BackoffConfig, TlsSecrets, XdsClient, XdsConfig,
};
use tls::{der, served};

const LIMIT: Duration = Duration::from_secs(20);

fn bound(proxy: &TestServer, name: &str) -> Option<SocketAddr> {
    proxy
        .server()
        .listener_addresses()
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, a)| a.parse().ok())
}

/// Listener `web` (routes inline, to `app`) serving TLS with secret `web-cert`.
fn tls_listener(require_sni: bool) -> envoy_types::pb::envoy::config::listener::v3::Listener {
    let routes = RouteSpecifier::RouteConfig(route_config("r", vec![prefix_route("/", "app")]));
    let mut l = http_listener("web", any_port(), routes, vec![router()]);
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                name: "web-cert".into(),
                sds_config: None,
            }],
            ..CommonTlsContext::default()
        }),
        require_sni: require_sni.then_some(BoolValue { value: true }),
        ..DownstreamTlsContext::default()
    };
    l.filter_chains[0].transport_socket = Some(TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    });
    l
}

#[tokio::test]
async fn a_listener_serves_tls_with_the_certificate_sds_sent_once_it_came() {
    with_timeout(LIMIT, async {
        let pki = Pki::new("xds-downstream-tls");
        let cert = pki.server("web", &["a.test"]);
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start().await;

        let store = Arc::new(MemorySecrets::default());
        let mut xds = XdsConfig::new(cp.addr.to_string(), "tls-listener-node");
        xds.listeners = true;
        xds.backoff = BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        };
        let base = Config::from_yaml(&yaml::config(&[yaml::listener("main", "app", &[])], &[]))
            .expect("base config");
        let client =
            XdsClient::new(xds, base).with_secrets(Arc::new(TlsSecrets::new(store.clone())));
        let mut registry = Registry::default();
        proxy_lb::register(&mut registry);
        proxy_tls::register_with(&mut registry, proxy_tls::TlsRuntime::with_secrets(store));
        let server = Server::new(client.initial_config(), registry).expect("initial config");
        let proxy = TestServer::run(server.clone()).expect("proxy starts");
        let task = tokio::spawn(client.run(server));

        let _ = cp.request_of(CLUSTER_TYPE).await;
        let _ = cp.request_of(LISTENER_TYPE).await;
        cp.push_acked(cds("1", &[static_cluster("app", &[a.addr])]))
            .await;

        cp.push(lds("1", &[tls_listener(false)]));
        let sub = cp.request().await;
        assert_eq!(sub.type_url, SECRET_TYPE, "SDS subscription before the LDS ACK");
        assert_eq!(sub.resource_names, ["web-cert"]);
        let ack = cp.request().await;
        assert_eq!((ack.type_url.as_str(), ack.version_info.as_str()), (LISTENER_TYPE, "1"));
        assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(bound(&proxy, "web"), None, "the listener waits for its certificate");

        let secret = Secret {
            name: "web-cert".into(),
            r#type: Some(Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(DataSource {
                    specifier: Some(Specifier::InlineString(cert.cert_pem.clone())),
                    ..DataSource::default()
                }),
                private_key: Some(DataSource {
                    specifier: Some(Specifier::InlineString(cert.key_pem.clone())),
                    ..DataSource::default()
                }),
                ..TlsCertificate::default()
            })),
        };
        cp.push_acked(response(SECRET_TYPE, "1", "sds-1", vec![any(&secret)]))
            .await;
        assert!(eventually(LIMIT, || bound(&proxy, "web").is_some()).await);
        let web = bound(&proxy, "web").expect("bound");
        assert_eq!(served(web, &pki).await, der(&cert));

        let (_, detail) = cp.push_nacked(lds("2", &[tls_listener(true)])).await;
        assert!(
            detail.starts_with(
                "listener \"web\": filter_chains[0].transport_socket.typed_config.require_sni: not supported"
            ),
            "{detail}"
        );
        assert_eq!(served(web, &pki).await, der(&cert));
        task.abort();
    })
    .await;
}
