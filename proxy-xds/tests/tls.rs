//! TLS to the control plane with a client certificate (mTLS): the client verifies
//! the control plane's certificate for `server_name`, presents its own, speaks ADS
//! over it, and the clusters pushed carry traffic; a bootstrap whose TLS files do
//! not load is refused, naming the field.

use crate::common;

use std::{sync::Arc, time::Duration};

use common::{cds, cla, eds, eds_cluster, ControlPlane};
use proxy_core::{config::Config, Registry, Server};
use proxy_test_support::{
    client, eventually_async, pki::Pki, with_timeout, yaml, TestServer, Upstream,
};
use proxy_tls::config::{KeyPair, OriginationConfig, Roots};
use proxy_xds::{resources::CLUSTER_TYPE, BackoffConfig, XdsClient, XdsConfig};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
};

const LIMIT: Duration = Duration::from_secs(20);

/// A TLS server config for the control plane: `cp.test`'s certificate, client
/// certificates required and checked against the test CA, ALPN `h2`.
fn server_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let issued = pki.server("cp", &["cp.test"]);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&issued.cert)
        .expect("chain")
        .collect::<Result<_, _>>()
        .expect("chain parses");
    let key = PrivateKeyDer::from_pem_file(&issued.key).expect("key");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&pki.ca_pem).expect("CA") {
        roots.add(ca.expect("CA parses")).expect("CA added");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

#[tokio::test]
async fn ads_over_mutual_tls() {
    with_timeout(LIMIT, async {
        let pki = Pki::new("xds-tls");
        let a = Upstream::named("a");
        let mut cp = ControlPlane::start_tls(server_config(&pki)).await;

        let workload = pki.client("workload", "sidecar", &["spiffe://test/ns/default/sa/app"]);
        let mut tls = OriginationConfig::new(Roots::files([pki.ca_pem.clone()]));
        tls.server_name = Some("cp.test".into());
        tls.client_cert = Some(KeyPair::files(&workload.cert, &workload.key));
        let mut xds = XdsConfig::new(cp.addr.to_string(), "tls-node");
        xds.tls = Some(tls);
        xds.backoff = BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        };
        xds.validate().expect("the bootstrap validates");
        let base = Config::from_yaml(&yaml::config(&[yaml::listener("main", "app", &[])], &[]))
            .expect("base config");
        let client = XdsClient::new(xds, base);
        let mut registry = Registry::default();
        proxy_lb::register(&mut registry);
        let server = Server::new(client.initial_config(), registry).expect("initial config");
        let proxy = TestServer::run(server.clone()).expect("proxy starts");
        let task = tokio::spawn(client.run(server));

        let first = cp.request_of(CLUSTER_TYPE).await;
        assert_eq!(first.node.map(|n| n.id), Some("tls-node".to_owned()));
        cp.push_acked(cds("1", &[eds_cluster("app")])).await;
        cp.push_acked(eds("1", &[cla("app", &[a.addr])])).await;
        let addr = proxy.addr("main");
        assert!(
            eventually_async(LIMIT, || async move {
                client::get(addr, "/", &[]).await.text() == "a"
            })
            .await
        );
        task.abort();
    })
    .await;
}

#[test]
fn tls_files_that_do_not_load_are_named() {
    let mut tls = OriginationConfig::new(Roots::files(["/nonexistent/ca.pem"]));
    tls.server_name = Some("cp.test".into());
    let mut xds = XdsConfig::new("127.0.0.1:18000", "n1");
    xds.tls = Some(tls);
    let err = xds.validate().expect_err("refused");
    assert!(err.path.starts_with("tls.roots"), "{err}");
}
