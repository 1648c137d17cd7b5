//! # A proxy assembled in Rust alone
//!
//! No YAML and no registry: a listener with TLS termination (proxy-tls), a request
//! stack of tower layers — `tower_http`'s trace and response-header layers, a
//! proxy-filters header rewrite, the core's local replies — over the core's router
//! and proxy, to a cluster balanced by proxy-lb's least-request (P2C) balancer.
//! Copy it as the start of a proxy built in code.
//!
//! ```text
//! cargo run --release -p sidecar --example code_only     # listens on 127.0.0.1:8443
//! curl -k https://127.0.0.1:8443/hello                   # through the proxy
//! ```
//!
//! It starts two demo upstreams itself and serves a throwaway certificate for
//! `localhost`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use proxy_core::{
    cluster::Cluster,
    config::{RouteConfig, VirtualHostConfig},
    proxy::{LocalReplyLayer, Proxy},
    router::RouteTable,
    snapshot::Routing,
    Body, BoxError, BoxHttp, HttpListener,
};
use proxy_filters::header_rewrite::{
    HeaderEntry, HeaderOps, HeaderRewriteConfig, HeaderRewriteLayer,
};
use proxy_lb::least_request::{LeastRequest, LeastRequestConfig};
use proxy_tls::{
    config::{CertificateConfig, TerminationConfig},
    rotation::{MemorySecrets, Secret},
    TerminationLayer, TlsRuntime,
};
use tower::{ServiceBuilder, ServiceExt};

/// The request stack: everything from the decrypted request to the upstreams.
pub fn request_stack(upstreams: &[SocketAddr]) -> Result<BoxHttp, BoxError> {
    // A cluster with a proxy-lb balancer.
    let balancer = LeastRequest::new(&LeastRequestConfig::default())?;
    let cluster = upstreams
        .iter()
        .fold(Cluster::builder("app"), |b, addr| b.endpoint(*addr))
        .balancer(Arc::new(balancer))
        .connect_timeout(Duration::from_secs(1))
        .build()?;

    // Routes, typed: everything to `app`, within two seconds.
    let vhost = VirtualHostConfig::new("all", ["*"]).route(
        RouteConfig::new("app")
            .prefix("/")
            .named("app")
            .timeout(Duration::from_secs(2)),
    );
    let routes = RouteTable::build("", &[vhost], &|c| c == "app")?;
    let proxy = Proxy::from_routing(Routing::new(routes, [cluster]));

    // A proxy-filters filter from its typed config.
    let rewrite = HeaderRewriteLayer::new(&HeaderRewriteConfig {
        request: HeaderOps {
            set: vec![HeaderEntry {
                name: "x-assembled".parse()?,
                value: "in-code".into(),
            }],
            ..HeaderOps::default()
        },
        ..HeaderRewriteConfig::default()
    })?;

    let stack = ServiceBuilder::new()
        // tower-http's trace layer wraps the response body; the one body type again.
        .map_response(|resp: http::Response<_>| resp.map(Body::new))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            http::header::SERVER,
            http::HeaderValue::from_static("code-only-proxy"),
        ))
        .layer(LocalReplyLayer)
        .layer(rewrite)
        .service(proxy.map_err(|never| -> BoxError { match never {} }));
    Ok(BoxHttp::new(stack))
}

/// A listener on `address` terminating TLS with `cert_pem`/`key_pem`.
pub fn tls_listener(
    address: SocketAddr,
    cert_pem: String,
    key_pem: String,
) -> Result<HttpListener, BoxError> {
    let secrets = Arc::new(MemorySecrets::default());
    secrets.set("server", Secret::key_pair(cert_pem, key_pem));
    let runtime = TlsRuntime::with_secrets(secrets);
    let mut tls = TerminationConfig::new(vec![CertificateConfig::secret("server")]);
    tls.alpn = vec!["h2".into(), "http/1.1".into()];
    let termination = TerminationLayer::new(&tls, &runtime)?;
    Ok(HttpListener::builder("https")
        .network_layer(termination)
        .bind(address)?)
}

/// Two demo upstreams answering `upstream N` with the `x-assembled` header echoed.
pub async fn demo_upstreams() -> Result<Vec<SocketAddr>, BoxError> {
    let mut addrs = Vec::new();
    for id in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let seen = req
                            .headers()
                            .get("x-assembled")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned();
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(format!(
                                "upstream {id} x-assembled={seen}\n"
                            ))),
                        ))
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
                );
            }
        });
    }
    Ok(addrs)
}

#[allow(dead_code)] // the test includes this file for the functions above
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let upstreams = demo_upstreams().await?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let listener = tls_listener(
        "127.0.0.1:8443".parse()?,
        cert.cert.pem(),
        cert.key_pair.serialize_pem(),
    )?;
    tracing::info!(address = %listener.local_addr(), "try: curl -k https://127.0.0.1:8443/");
    listener
        .serve(request_stack(&upstreams)?, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
