//! What one access log line knows of a request.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::{HeaderValue, Method, Uri, Version};

use super::Formatter;
use crate::{connection::ConnInfo, proxy::MatchedRoute, rpc::RpcInfo};

/// One request's facts for an access log line: filled from the request when it
/// arrives ([`Record::request`]), from the response head when it starts
/// ([`Record::response`]), and with the bytes sent and the duration at the end.
///
/// A missing fact prints `-` in text and `null` in JSON.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Record {
    /// When the request arrived (`%START_TIME%`, `%START_TIME_UNIX%`).
    pub start: SystemTime,
    /// From the request's arrival to the end of its response (`%DURATION%`).
    pub duration: Duration,
    /// The listener's name (`%LISTENER%`).
    pub listener: Option<Arc<str>>,
    /// The client's address (`%PEER%`, `%PEER_IP%`).
    pub peer: Option<SocketAddr>,
    /// The request method; none when the connection loop answered a request it
    /// could not parse (`%METHOD%`).
    pub method: Option<Method>,
    /// The request target (`%URI%`, `%PATH%`).
    pub uri: Option<Uri>,
    /// The request's HTTP version (`%PROTOCOL%`).
    pub version: Version,
    /// The `Host` header, for `%AUTHORITY%` when the URI has no authority.
    pub host: Option<HeaderValue>,
    /// The response status (`%STATUS%`).
    pub status: u16,
    /// Response body bytes sent (`%BYTES_SENT%`).
    pub bytes_sent: u64,
    /// The matched route's name (`%ROUTE%`).
    pub route: Option<Arc<str>>,
    /// The matched route's cluster (`%UPSTREAM_CLUSTER%`).
    pub cluster: Option<Arc<str>>,
    /// Why the proxy answered itself, the `x-proxy-error` value (`%PROXY_ERROR%`).
    pub proxy_error: Option<HeaderValue>,
    /// The RPC service and method a codec decoded (`%RPC_SERVICE%`, `%RPC_METHOD%`).
    pub rpc: Option<RpcInfo>,
    /// Values of [`Formatter::request_headers`], in its order (`%REQ(name)%`).
    pub request_headers: Vec<Option<HeaderValue>>,
    /// Values of [`Formatter::response_headers`], in its order (`%RESP(name)%`).
    pub response_headers: Vec<Option<HeaderValue>>,
}

impl Default for Record {
    fn default() -> Self {
        Self::new()
    }
}

impl Record {
    /// A record of a request arriving now, knowing nothing else yet.
    pub fn new() -> Self {
        Self {
            start: SystemTime::now(),
            duration: Duration::ZERO,
            listener: None,
            peer: None,
            method: None,
            uri: None,
            version: Version::HTTP_11,
            host: None,
            status: 0,
            bytes_sent: 0,
            route: None,
            cluster: None,
            proxy_error: None,
            rpc: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        }
    }

    /// Takes the request's facts: method, URI, version, `Host`, the peer (from
    /// [`ConnInfo`]), the RPC call (from [`RpcInfo`]) and the headers `format` names.
    pub fn request<B>(&mut self, req: &http::Request<B>, format: &Formatter) {
        self.method = Some(req.method().clone());
        self.uri = Some(req.uri().clone());
        self.version = req.version();
        if req.uri().authority().is_none() {
            self.host = req.headers().get(http::header::HOST).cloned();
        }
        if let Some(c) = req.extensions().get::<ConnInfo>() {
            self.peer = c.peer;
        }
        self.rpc = req.extensions().get::<RpcInfo>().cloned();
        self.request_headers = format
            .request_headers()
            .iter()
            .map(|h| req.headers().get(h).cloned())
            .collect();
    }

    /// Takes the response head's facts: status, the matched route and its cluster
    /// (from [`MatchedRoute`]), `x-proxy-error` and the headers `format` names.
    pub fn response<B>(&mut self, resp: &http::Response<B>, format: &Formatter) {
        self.status = resp.status().as_u16();
        if let Some(MatchedRoute(route)) = resp.extensions().get::<MatchedRoute>() {
            self.route = Some(route.name.clone());
            self.cluster = Some(route.cluster.clone());
        }
        self.proxy_error = resp
            .headers()
            .get(crate::proxy::PROXY_ERROR_HEADER)
            .cloned();
        self.response_headers = format
            .response_headers()
            .iter()
            .map(|h| resp.headers().get(h).cloned())
            .collect();
    }

    /// The request's authority: the URI's, else the `Host` header's.
    pub fn authority(&self) -> Option<&str> {
        match self.uri.as_ref().and_then(Uri::authority) {
            Some(a) => Some(a.as_str()),
            None => self.host.as_ref().and_then(|h| h.to_str().ok()),
        }
    }
}
