//! The `tls` transport offers the ALPN of its cluster's protocol by default and
//! refuses a list that leaves it out.

#![allow(clippy::unwrap_used)]

use proxy_core::Registry;
use proxy_test_support::{server, yaml};

fn config(protocol: &str, alpn: &str) -> String {
    yaml::config(
        &[yaml::listener("main", "up", &[])],
        &[yaml::cluster(
            "up",
            &["127.0.0.1:9"],
            &[
                &format!("protocol: {protocol}"),
                &format!(
                    "transport:\n      typed: tls\n      config: {{ server_name: up.test, roots: webpki{alpn} }}"
                ),
            ],
        )],
    )
}

fn build(yaml: &str) -> Result<(), String> {
    let mut registry = Registry::default();
    proxy_tls::register(&mut registry);
    server::load_error(yaml, registry).map_or(Ok(()), Err)
}

#[test]
fn clusters_without_alpn_get_their_protocols() {
    build(&config("http2", "")).unwrap();
    build(&config("http1", "")).unwrap();
}

#[test]
fn an_alpn_list_without_the_clusters_protocol_is_refused() {
    let err = build(&config("http2", ", alpn: [http/1.1]")).err().unwrap();
    assert!(err.contains("clusters[0].transport.config"), "{err}");
    assert!(err.contains("\"h2\""), "{err}");
    build(&config("http2", ", alpn: [h2, http/1.1]")).unwrap();
}
