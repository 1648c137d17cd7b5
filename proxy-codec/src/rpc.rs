//! Neutral facts about an RPC call.

use std::sync::Arc;

/// The protocol, service and method of an RPC request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcInfo {
    /// `bolt` or `dubbo`.
    pub protocol: &'static str,
    /// The service (SOFARPC unique name or Dubbo service path).
    pub service: Arc<str>,
    /// The method name.
    pub method: Arc<str>,
}
