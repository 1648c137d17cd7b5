//! The `tls` transport offers the ALPN of its cluster's protocol by default and
//! refuses a list that leaves it out.

#![allow(clippy::unwrap_used)]

use proxy_core::{config::Config, DisplayChain, Registry, Server};

fn config(protocol: &str, alpn: &str) -> String {
    format!(
        r#"
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ path: {{ prefix: "/" }} }}
            cluster: up
clusters:
  - name: up
    protocol: {protocol}
    endpoints: ["127.0.0.1:9"]
    transport:
      typed: tls
      config: {{ server_name: up.test, roots: webpki{alpn} }}
"#
    )
}

fn build(yaml: &str) -> Result<Server, String> {
    let mut registry = Registry::default();
    proxy_tls::register(&mut registry);
    Server::new(Config::from_yaml(yaml).unwrap(), registry)
        .map_err(|e| DisplayChain(&e).to_string())
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
