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

/// The media type every gRPC `content-type` begins with (`application/grpc`,
/// `application/grpc+proto`, `application/grpc-web`...).
const GRPC_MEDIA_TYPE: &[u8] = b"application/grpc";

/// Whether `headers` carry a gRPC `content-type`: one that begins with
/// `application/grpc`, in any letter case (media types are case-insensitive, RFC 9110
/// section 8.3.1), so `+proto`, `+json` and `-web` count too.
///
/// # Example
/// ```
/// use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue};
/// use proxy_core::rpc::is_grpc;
/// let mut headers = HeaderMap::new();
/// assert!(!is_grpc(&headers));
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("Application/GRPC+proto"));
/// assert!(is_grpc(&headers));
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
/// assert!(!is_grpc(&headers));
/// ```
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|t| t.as_bytes().get(..GRPC_MEDIA_TYPE.len()))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(GRPC_MEDIA_TYPE))
}
