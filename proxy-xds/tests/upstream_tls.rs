//! A cluster's `transport_socket` (`UpstreamTlsContext`) whose client certificate
//! and CAs are SDS secrets, as Istio's mTLS clusters name them: the client asks for
//! the secrets the cluster names (before its CDS ACK), the cluster waits for them
//! (503 meanwhile), then the proxy reaches a TLS upstream that requires a client
//! certificate with the material SDS sent; an unsupported TLS setting is NACKed,
//! the field named.

use crate::common;

use std::{sync::Arc, time::Duration};

use common::{any, cds, response, static_cluster, ControlPlane};
use envoy_types::pb::envoy::{
    config::core::v3::{
        config_source::ConfigSourceSpecifier, data_source::Specifier, transport_socket,
        AggregatedConfigSource, ConfigSource, DataSource, TransportSocket,
    },
    extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, secret::Type, CertificateValidationContext,
        CommonTlsContext, SdsSecretConfig, Secret, TlsCertificate, TlsParameters,
        UpstreamTlsContext,
    },
};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    client, eventually_async, pki::Pki, with_timeout, yaml, TestServer, Upstream,
};
use proxy_tls::rotation::MemorySecrets;
use proxy_xds::{
    resources::{CLUSTER_TYPE, SECRET_TYPE},
    BackoffConfig, TlsSecrets, XdsClient, XdsConfig,
};

const LIMIT: Duration = Duration::from_secs(20);

fn inline(pem: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineString(pem.into())),
        ..DataSource::default()
    })
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            resource_api_version: 2,
            ..ConfigSource::default()
        }),
    }
}

/// Istio's shape: client certificate `default`, CAs `ROOTCA`, both over SDS.
fn mtls(sni: &str, tls_params: Option<TlsParameters>) -> TransportSocket {
    let ctx = UpstreamTlsContext {
        sni: sni.into(),
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds("default")],
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                sds("ROOTCA"),
            )),
            tls_params,
            ..CommonTlsContext::default()
        }),
        ..UpstreamTlsContext::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    }
}

#[tokio::test]
async fn a_cluster_reaches_a_tls_upstream_with_the_material_sds_sent() {
    with_timeout(LIMIT, async {
        let pki = Pki::new("xds-upstream-tls");
        let up_cert = pki.server("up", &["up.test"]);
        let workload = pki.client("workload", "sidecar", &[]);
        let ca_pem = std::fs::read_to_string(&pki.ca_pem).expect("CA");

        // The upstream: a TLS listener that requires a client certificate from the CA.
        let echo = Upstream::named("a");
        let tls = format!(
            "network_filters: [{{typed: tls, config: {{certificates: [{{cert: {}, key: {}}}], client_auth: {{roots: {{files: [{}]}}}}}}}}]",
            up_cert.cert.display(),
            up_cert.key.display(),
            pki.ca_pem.display()
        );
        let mut upstream_registry = Registry::default();
        proxy_tls::register(&mut upstream_registry);
        let upstream = TestServer::start(
            &yaml::config(
                &[yaml::listener("tls", "echo", &[&tls])],
                &[yaml::cluster("echo", &[echo.addr], &[])],
            ),
            upstream_registry,
        );

        // The proxy under test: TLS origination from the SDS secrets.
        let mut cp = ControlPlane::start().await;
        let store = Arc::new(MemorySecrets::default());
        let mut xds = XdsConfig::new(cp.addr.to_string(), "mtls-node");
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

        let first = cp.request().await;
        assert_eq!(first.type_url, CLUSTER_TYPE, "no SDS before a cluster names secrets");
        let mut app = static_cluster("app", &[upstream.addr("tls")]);
        app.transport_socket = Some(mtls("up.test", None));
        cp.push(cds("1", &[app.clone()]));
        let sub = cp.request().await;
        assert_eq!(sub.type_url, SECRET_TYPE, "SDS subscription before the CDS ACK");
        assert_eq!(sub.resource_names, ["ROOTCA", "default"]);
        let ack = cp.request().await;
        assert_eq!((ack.type_url.as_str(), ack.version_info.as_str()), (CLUSTER_TYPE, "1"));
        assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
        // Warming: without its secrets the cluster is a placeholder.
        let main = proxy.addr("main");
        assert_eq!(client::get(main, "/", &[]).await.status, 503);
        let default = Secret {
            name: "default".into(),
            r#type: Some(Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&workload.cert_pem),
                private_key: inline(&workload.key_pem),
                ..TlsCertificate::default()
            })),
        };
        let root = Secret {
            name: "ROOTCA".into(),
            r#type: Some(Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline(&ca_pem),
                ..CertificateValidationContext::default()
            })),
        };
        cp.push_acked(response(SECRET_TYPE, "1", "sds-1", vec![any(&default), any(&root)]))
            .await;

        assert!(
            eventually_async(LIMIT, || async move {
                client::get(main, "/", &[]).await.text() == "a"
            })
            .await,
            "no answer through TLS origination"
        );

        app.transport_socket = Some(mtls("up.test", Some(TlsParameters::default())));
        let (_, detail) = cp.push_nacked(cds("2", &[app])).await;
        assert!(
            detail.starts_with(
                "cluster \"app\": transport_socket.typed_config.common_tls_context.tls_params: not supported"
            ),
            "{detail}"
        );
        assert_eq!(client::get(main, "/", &[]).await.text(), "a");
        task.abort();
    })
    .await;
}
