//! SDS over ADS, state of the world and delta, against the in-process control
//! plane: a TLS listener whose certificate is secret `web` (proxy-tls, fed through
//! `TlsSecrets`) serves the certificate the control plane sends on the next
//! handshake; a secret whose key does not match its certificate is NACKed, the
//! field named, and the running certificate stays.

use crate::common;
use crate::common::tls;

use std::{sync::Arc, time::Duration};

use common::{any, delta, delta_resource, response, ControlPlane};
use envoy_types::pb::envoy::{
    config::core::v3::{data_source::Specifier, DataSource},
    extensions::transport_sockets::tls::v3::{secret::Type, Secret, TlsCertificate},
};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    pki::{Issued, Pki},
    with_timeout, yaml, TestServer, Upstream,
};
use proxy_tls::rotation::{MemorySecrets, Secret as TlsSecret};
use proxy_xds::{
    resources::{CLUSTER_TYPE, SECRET_TYPE},
    ApiType, BackoffConfig, TlsSecrets, XdsClient, XdsConfig,
};
use tls::{der, served};

const LIMIT: Duration = Duration::from_secs(20);

/// A proxy with a TLS listener `tls` whose certificate is secret `web` (first set
/// to `initial`), asking the control plane `cp` for that secret over `api_type`.
fn proxy(
    cp: &ControlPlane,
    api_type: ApiType,
    initial: &Issued,
    up: &Upstream,
) -> (TestServer, tokio::task::JoinHandle<()>) {
    let store = Arc::new(MemorySecrets::default());
    store.set(
        "web",
        TlsSecret::key_pair(initial.cert_pem.clone(), initial.key_pem.clone()),
    );
    let tls = "network_filters: [{typed: tls, config: {certificates: [{secret: web}]}}]";
    let base = Config::from_yaml(&yaml::config(
        &[yaml::listener("tls", "echo", &[tls])],
        &[yaml::cluster("echo", &[up.addr], &[])],
    ))
    .expect("base config");
    let mut xds = XdsConfig::new(cp.addr.to_string(), "sds-node");
    xds.api_type = api_type;
    xds.secrets = vec!["web".into()];
    xds.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let client = XdsClient::new(xds, base).with_secrets(Arc::new(TlsSecrets::new(store.clone())));
    let mut registry = Registry::default();
    proxy_tls::register_with(&mut registry, proxy_tls::TlsRuntime::with_secrets(store));
    let server = Server::new(client.initial_config(), registry).expect("initial config");
    let proxy = TestServer::run(server.clone()).expect("proxy starts");
    (proxy, tokio::spawn(client.run(server)))
}

/// The SDS secret `web` with `cert`'s chain and `key`'s key, inline.
fn web_secret(cert: &Issued, key: &Issued) -> Secret {
    let inline = |pem: &str| {
        Some(DataSource {
            specifier: Some(Specifier::InlineString(pem.into())),
            ..DataSource::default()
        })
    };
    Secret {
        name: "web".into(),
        r#type: Some(Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&cert.cert_pem),
            private_key: inline(&key.key_pem),
            ..TlsCertificate::default()
        })),
    }
}

#[tokio::test]
async fn state_of_the_world_sds_rotates_the_certificate_and_nacks_a_mismatched_key() {
    with_timeout(LIMIT, async {
        let pki = Pki::new("xds-sds-sotw");
        let (first, second) = (
            pki.server("first", &["a.test"]),
            pki.server("second", &["a.test"]),
        );
        let up = Upstream::named("echo");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp, ApiType::Sotw, &first, &up);
        assert_eq!(served(proxy.addr("tls"), &pki).await, der(&first));

        let _ = cp.request_of(CLUSTER_TYPE).await;
        let sub = cp.request_of(SECRET_TYPE).await;
        assert_eq!(sub.resource_names, ["web"]);
        let push =
            |v: &str, s: &Secret| response(SECRET_TYPE, v, &format!("sds-{v}"), vec![any(s)]);
        cp.push_acked(push("1", &web_secret(&second, &second)))
            .await;
        assert_eq!(
            served(proxy.addr("tls"), &pki).await,
            der(&second),
            "rotated before the ACK"
        );

        let (nack, detail) = cp
            .push_nacked(push("2", &web_secret(&first, &second)))
            .await;
        assert_eq!(nack.version_info, "1");
        assert!(
            detail.starts_with(
                "secret \"web\": tls_certificate.private_key: private key does not match"
            ),
            "{detail}"
        );
        assert_eq!(
            served(proxy.addr("tls"), &pki).await,
            der(&second),
            "the NACKed secret changed nothing"
        );
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn delta_sds_rotates_the_certificate_and_nacks_a_mismatched_key() {
    with_timeout(LIMIT, async {
        let pki = Pki::new("xds-sds-delta");
        let (first, second) = (
            pki.server("first", &["a.test"]),
            pki.server("second", &["a.test"]),
        );
        let up = Upstream::named("echo");
        let mut cp = ControlPlane::start().await;
        let (proxy, task) = proxy(&cp, ApiType::Delta, &first, &up);

        let sub = cp.delta_request_of(SECRET_TYPE).await;
        assert_eq!(sub.resource_names_subscribe, ["web"]);
        let push = |v: &str, s: &Secret| {
            delta(
                SECRET_TYPE,
                v,
                &format!("sds-{v}"),
                vec![delta_resource("web", v, any(s))],
                &[],
            )
        };
        let ack = cp
            .push_delta_answered(push("1", &web_secret(&second, &second)))
            .await;
        assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
        assert_eq!(served(proxy.addr("tls"), &pki).await, der(&second));

        let nack = cp
            .push_delta_answered(push("2", &web_secret(&first, &second)))
            .await;
        let detail = nack.error_detail.expect("a NACK").message;
        assert!(
            detail.starts_with(
                "secret \"web\": tls_certificate.private_key: private key does not match"
            ),
            "{detail}"
        );
        assert_eq!(served(proxy.addr("tls"), &pki).await, der(&second));
        task.abort();
    })
    .await;
}
