//! The protocol-neutral view of an RPC call, for filters, routing and balancing.

use std::sync::Arc;

/// The service and method of an RPC request, set in the request extensions by the
/// protocol that decoded it (Bolt, Dubbo, gRPC). The path is `/{service}/{method}` too,
/// so routes match it; this is for filters and balancers that want the parts.
///
/// # Example
/// ```
/// use proxy_core::rpc::RpcInfo;
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RpcInfo::new("bolt", "com.example.Pay", "transfer"));
/// assert_eq!(&*req.extensions().get::<RpcInfo>().unwrap().method, "transfer");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcInfo {
    /// The protocol: `bolt`, `dubbo`, `grpc`.
    pub protocol: &'static str,
    /// The service (interface) name.
    pub service: Arc<str>,
    /// The method name.
    pub method: Arc<str>,
}

impl RpcInfo {
    /// RPC facts for `service` and `method` over `protocol`.
    pub fn new(protocol: &'static str, service: &str, method: &str) -> Self {
        Self {
            protocol,
            service: service.into(),
            method: method.into(),
        }
    }
}

/// When present in a request's extensions, the proxy sends the request to this
/// cluster instead of the matched route's (zone routing across data centres, traffic
/// redirection). An unknown name answers 503 `no_endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOverride(pub Arc<str>);
