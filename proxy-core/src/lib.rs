#![doc = include_str!("../README.md")]

pub mod access_log;
mod body;
mod bufs;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod demo;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod h2_body;
pub(crate) mod http1;
pub mod informational;
pub mod matcher;
pub mod metrics;
mod net;
pub mod protocol;
pub mod proxy;
pub mod registry;
pub mod router;
pub mod rpc;
mod server;
pub mod snapshot;
mod stall;
pub mod upstream;
pub mod worker;

pub use body::Body;
pub use cluster::{Balancer, Endpoint};
pub use connection::{BoxConn, ConnInfo, ConnLayerFn, Connection};
pub use error::{BoxError, ConfigError, ProxyError};
pub use net::{Io, Stream};
pub use registry::{BuildContext, Registry};
pub use rpc::ClusterOverride;
pub use server::ListenerNotRunning;
pub use server::{
    raise_open_files_limit, AdminPage, ConfigSource, DisplayChain, HandedOffConnection,
    HttpListener, HttpListenerBuilder, LayerHandOver, LayerHandOverResult, LayerState, MetricsHook,
    OpenFilesLimit, Server, ServerError,
};
pub use upstream::UpgradedUpstream;

/// The one request type every filter and route sees, whatever the protocol.
pub type HttpRequest = http::Request<Body>;
/// The one response type.
pub type HttpResponse = http::Response<Body>;
/// A boxed, cloneable request service: what filter stacks are built from.
pub type BoxHttp = tower::util::BoxCloneSyncService<HttpRequest, HttpResponse, BoxError>;
