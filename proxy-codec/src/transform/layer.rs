//! The tower layer: an HTTP POST with a JSON body in, the RPC request the upstream
//! path sends out, and the RPC answer back as JSON.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use proxy_core::{rpc::RpcInfo, Body, BoxError, ConfigError, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use tower_service::Service;

use super::{
    answer::{self, Answer},
    config::{JsonToRpcConfig, Signature, TargetProtocol, DEFAULT_MAX_BODY_BYTES},
    encode::{self, ArgumentError},
    metrics::{JsonToRpcMetrics, Outcome},
};
use crate::{
    bolt::{BoltRequestInfo, BoltResponseInfo},
    dubbo::{DubboRequestInfo, DubboResponseInfo},
};

/// The response header naming why the transformer answered itself.
pub const ERROR_HEADER: &str = "x-proxy-error";

/// Turns HTTP/JSON calls into Bolt or Dubbo generic invocations; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct JsonToRpcLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sig: Signature,
    max_body_bytes: usize,
    metrics: Arc<JsonToRpcMetrics>,
}

impl TryFrom<&JsonToRpcConfig> for JsonToRpcLayer {
    type Error = ConfigError;

    fn try_from(config: &JsonToRpcConfig) -> Result<Self, ConfigError> {
        let sig = Signature::from_config(config)?;
        let max = config
            .max_body_bytes
            .map_or(DEFAULT_MAX_BODY_BYTES, |b| b.get());
        if max == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be more than 0"));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                sig,
                max_body_bytes: usize::try_from(max).unwrap_or(usize::MAX),
                metrics: Arc::default(),
            }),
        })
    }
}

impl JsonToRpcLayer {
    /// Counts calls in `metrics` (shared with other layers) instead of its own.
    pub fn with_metrics(self, metrics: Arc<JsonToRpcMetrics>) -> Self {
        Self {
            shared: Arc::new(Shared {
                sig: self.shared.sig.clone(),
                max_body_bytes: self.shared.max_body_bytes,
                metrics,
            }),
        }
    }

    /// The counters calls are counted in.
    pub fn metrics(&self) -> &Arc<JsonToRpcMetrics> {
        &self.shared.metrics
    }

    fn count(&self, outcome: Outcome) {
        self.shared.metrics.count(self.shared.sig.protocol, outcome);
    }

    /// The checked signature calls are encoded against.
    pub fn signature(&self) -> &Signature {
        &self.shared.sig
    }

    /// The RPC request for a JSON `body`: path `/{service}/{method}` (Bolt: the
    /// unique name), the hessian2 payload as its body, [`RpcInfo`] in its
    /// extensions, and no headers (HTTP headers would otherwise travel to the server
    /// in Bolt's header map).
    ///
    /// # Errors
    /// The body does not fit the signature, naming the argument.
    pub fn rpc_request(&self, body: &[u8]) -> Result<HttpRequest, ArgumentError> {
        let sig = &self.shared.sig;
        let values = encode::arguments(sig, body)?;
        let payload = encode::encode_call(sig, &values)?;
        let mut req = Request::new(Body::from(Bytes::from(payload)));
        *req.method_mut() = Method::POST;
        // The signature's names are checked at load to be path-safe; the fallback is
        // unreachable and keeps the RpcInfo and payload right regardless.
        *req.uri_mut() = sig
            .path()
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        let protocol = match sig.protocol {
            TargetProtocol::Bolt => "bolt",
            TargetProtocol::Dubbo => "dubbo",
        };
        req.extensions_mut()
            .insert(RpcInfo::new(protocol, &sig.service, &sig.method));
        Ok(req)
    }

    /// The HTTP answer for an RPC response whose body has been read: the value as
    /// JSON (200), a remote exception (500), a protocol error status (502), or an
    /// unreadable answer (502). A response that did not come from an RPC upstream (no
    /// [`BoltResponseInfo`] or [`DubboResponseInfo`]) is `None`: pass it on as is.
    pub fn json_response(
        &self,
        parts: &http::response::Parts,
        body: &[u8],
    ) -> Option<HttpResponse> {
        let read = if let Some(info) = parts.extensions.get::<BoltResponseInfo>() {
            answer::bolt(info.status, body)
        } else if let Some(info) = parts.extensions.get::<DubboResponseInfo>() {
            answer::dubbo(info.status, body)
        } else {
            return None;
        };
        self.count(match &read {
            Ok(Answer::Value(_)) => Outcome::Ok,
            Ok(Answer::Exception { .. }) => Outcome::RpcException,
            Ok(Answer::Status { .. }) => Outcome::RpcError,
            Err(_) => Outcome::BadRpcResponse,
        });
        Some(match read {
            Ok(Answer::Value(v)) => json_reply(StatusCode::OK, None, &v),
            Ok(Answer::Exception { message, class }) => json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("rpc_exception"),
                &json!({ "error": message, "exception": class }),
            ),
            Ok(Answer::Status { status, message }) => json_reply(
                StatusCode::BAD_GATEWAY,
                Some("rpc_error"),
                &json!({ "error": message, "status": status }),
            ),
            Err(e) => json_reply(
                StatusCode::BAD_GATEWAY,
                Some("bad_rpc_response"),
                &json!({ "error": format!("unreadable rpc answer: {e}") }),
            ),
        })
    }
}

/// A JSON response; `reason` goes in [`ERROR_HEADER`].
fn json_reply(status: StatusCode, reason: Option<&'static str>, v: &Value) -> HttpResponse {
    let mut resp = Response::new(Body::from(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(r) = reason {
        resp.headers_mut()
            .insert(ERROR_HEADER, HeaderValue::from_static(r));
    }
    resp
}

/// The 400 for arguments that do not fit: `{"error", "argument", "expected"}`.
pub(crate) fn bad_arguments(e: &ArgumentError) -> HttpResponse {
    let mut body = json!({ "error": e.to_string() });
    if let Some(a) = e.argument() {
        body["argument"] = match a {
            encode::ArgumentRef::Index(i) => json!(i),
            encode::ArgumentRef::Name(n) => json!(n),
        };
    }
    if let Some(t) = e.expected() {
        body["expected"] = json!(t);
    }
    json_reply(StatusCode::BAD_REQUEST, Some("bad_rpc_arguments"), &body)
}

impl<S> tower_layer::Layer<S> for JsonToRpcLayer {
    type Service = JsonToRpc<S>;

    fn layer(&self, inner: S) -> JsonToRpc<S> {
        JsonToRpc {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`JsonToRpcLayer`] makes.
#[derive(Debug, Clone)]
pub struct JsonToRpc<S> {
    inner: S,
    layer: JsonToRpcLayer,
}

// === impl JsonToRpc ===

impl<S> Service<HttpRequest> for JsonToRpc<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<HttpResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            if req.method() != Method::POST {
                layer.count(Outcome::MethodNotAllowed);
                let mut resp = json_reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Some("method_not_allowed"),
                    &json!({ "error": "json to rpc calls are POST requests" }),
                );
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return Ok(resp);
            }
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, layer.shared.max_body_bytes)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    layer.count(Outcome::BodyTooLarge);
                    return Ok(json_reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Some("body_too_large"),
                        &json!({ "error": "request body over max_body_bytes" }),
                    ));
                }
                Err(e) => return Err(e),
            };
            let mut rpc = match layer.rpc_request(&body) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "json body does not fit the rpc signature");
                    layer.count(Outcome::BadArguments);
                    return Ok(bad_arguments(&e));
                }
            };
            // Route facts, identities and trace context set by earlier layers stay;
            // another call's protocol fields would be applied to this one: dropped.
            let info = rpc.extensions_mut().remove::<RpcInfo>();
            let ext = rpc.extensions_mut();
            *ext = parts.extensions;
            ext.remove::<BoltRequestInfo>();
            ext.remove::<DubboRequestInfo>();
            if let Some(info) = info {
                ext.insert(info);
            }
            let resp = match inner.call(rpc).await {
                Ok(resp) => resp,
                Err(e) => {
                    layer.count(Outcome::ProxyError);
                    return Err(e);
                }
            };
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(match layer.json_response(&parts, &body) {
                Some(json) => json,
                None => {
                    layer.count(Outcome::ProxyError);
                    Response::from_parts(parts, Body::from(body))
                }
            })
        })
    }
}
