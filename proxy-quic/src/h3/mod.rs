//! HTTP/3 termination on quinn (the `h3` and `h3-quinn` crates) into the same
//! request stack as the TCP listeners: routes, filters, balancers and upstreams see
//! one [`proxy_core::HttpRequest`] whatever the protocol the client spoke.
//!
//! - [`H3Listener`]: a UDP endpoint built like `proxy_core::HttpListener`
//!   (`builder`, `bind`, `local_addr`, `serve(stack, shutdown)`), with limits
//!   (concurrent streams, idle timeout, request head size), an optional quinn
//!   `EndpointConfig` and a QUIC-LB [`CidGenerator`](crate::CidGenerator), and a
//!   graceful drain (GOAWAY, requests finish, bounded); its counters in
//!   [`H3Stats`].
//! - [`server_config`]: a rustls config for it from PEM, loaded by proxy-tls (this
//!   crate's one sideways dependency, so that TCP and QUIC listeners load
//!   certificates the same way).
//! - [`AltSvcLayer`]: the `alt-svc` header the TCP listeners add to advertise the
//!   HTTP/3 listener.
//!
//! 0-RTT is off. Request bodies are read as the stack reads them and response
//! bodies are sent as they come (with trailers both ways); a malformed request is
//! refused with H3_MESSAGE_ERROR (RFC 9114 section 4.1.2), a head over the limit
//! with 431; an error of the stack becomes a 5xx answer.
//!
//! # Example
//! An HTTP/3 front for an upstream cluster, assembled in code:
//! ```no_run
//! use std::sync::Arc;
//! use proxy_core::{
//!     cluster::Cluster, config::{RouteConfig, VirtualHostConfig}, proxy::Proxy,
//!     router::RouteTable, snapshot::Routing, BoxError, BoxHttp,
//! };
//! use proxy_quic::h3::{server_config, H3Listener};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let cluster = Cluster::builder("app").endpoint("127.0.0.1:8080".parse()?).build()?;
//! let vhost = VirtualHostConfig::new("all", ["*"]).route(RouteConfig::new("app").prefix("/"));
//! let routes = RouteTable::build("", &[vhost], &|c| c == "app")?;
//! let proxy = Proxy::from_routing(Routing::new(routes, [cluster]));
//! let stack = BoxHttp::new(proxy.map_err(|never| -> BoxError { match never {} }));
//!
//! let tls = server_config(&std::fs::read("cert.pem")?, &std::fs::read("key.pem")?)?;
//! let listener = H3Listener::builder("h3", tls).bind("0.0.0.0:443".parse()?)?;
//! listener.serve(stack, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod alt_svc;
mod body;
mod connection;
mod error;
mod listener;
mod request;
mod stats;
mod tls;

pub use alt_svc::{AltSvc, AltSvcLayer, ResponseFuture};
pub use body::RequestBodyError;
pub use error::H3Error;
pub use listener::{
    H3Listener, H3ListenerBuilder, DEFAULT_DRAIN_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_REQUEST_HEAD_BYTES,
};
pub use stats::{H3Stats, H3StatsSnapshot};
pub use tls::{server_config, ALPN_H3};
