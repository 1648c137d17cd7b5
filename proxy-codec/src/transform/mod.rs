//! HTTP/JSON to Bolt and Dubbo generic invocation: the API gateway's protocol
//! transformer.
//!
//! A [`JsonToRpcLayer`] is configured with the target protocol, the service
//! (interface, version, group), the method and the argument types
//! ([`JsonToRpcConfig`]). A `POST` whose body is a JSON array of arguments (or an
//! object of named arguments, when the config names them) is checked against those
//! types, encoded to hessian2 and sent on as the request the RPC upstream already
//! accepts: path `/{service}/{method}` (Bolt: `/{service}:{version}/{method}`), the
//! Bolt `SofaRequest` content or the Dubbo invocation body as its body, no headers.
//! Put the layer on a route whose cluster speaks `protocol: bolt` or `dubbo`: the
//! normal proxy path carries the call, `RpcUpstream` frames it (a request without
//! `BoltRequestInfo`/`DubboRequestInfo` becomes a fresh two-way hessian2 call; Bolt
//! names the service and method in its header map from the path), and pools,
//! balancers, timeouts and retries apply as to any RPC call.
//!
//! The answer comes back as `content-type: application/json`: the returned value
//! (200), a remote exception as `{"error": message, "exception": class}` (500,
//! `x-proxy-error: rpc_exception`), a protocol error status (no such service, busy)
//! as `{"error", "status"}` (502, `rpc_error`), an unreadable answer 502
//! `bad_rpc_response`. A body that does not fit gets 400 with
//! `{"error", "argument", "expected"}` and `x-proxy-error: bad_rpc_arguments`;
//! a wrong number of arguments names both counts. Failures of the proxy itself
//! (no endpoint, timeout) are the stack's usual errors, untouched. Calls are counted
//! by protocol and [`Outcome`] in [`JsonToRpcMetrics`]
//! (`proxy_codec_json_to_rpc_total{protocol,outcome}`).
//!
//! Types: `java.lang.String`, `int`/`java.lang.Integer`, `long`/`java.lang.Long`,
//! `double`/`java.lang.Double`, `boolean`/`java.lang.Boolean` (primitives refuse
//! null), `java.util.List` (a JSON array), `java.util.Map` (a JSON object),
//! `java.lang.Object` (any JSON), and a class with `fields` (a JSON object sent as
//! a hessian2 object of that class; unknown keys are refused, missing ones null).
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::BodyExt;
//! use proxy_codec::{
//!     bolt::{BoltResponseInfo, SOFA_RESPONSE},
//!     hessian2::Writer,
//!     transform::{ArgumentConfig, JsonToRpcConfig, JsonToRpcLayer, Outcome, TargetProtocol},
//! };
//! use proxy_core::{Body, HttpRequest, HttpResponse};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), proxy_core::BoxError> {
//! let layer = JsonToRpcLayer::try_from(&JsonToRpcConfig {
//!     protocol: TargetProtocol::Bolt,
//!     service: "com.example.EchoService".into(),
//!     version: Some("1.0".into()),
//!     group: None,
//!     method: "echo".into(),
//!     arguments: vec![ArgumentConfig::new("java.lang.String")],
//!     dialect: Default::default(),
//!     max_body_bytes: None,
//! })?;
//! // Stands in for the Bolt cluster: answers a SofaResponse whose value is "hi".
//! let upstream = service_fn(|req: HttpRequest| async move {
//!     assert_eq!(req.uri().path(), "/com.example.EchoService:1.0/echo");
//!     let mut w = Writer::new();
//!     w.class_def(SOFA_RESPONSE, &["isError", "errorMsg", "appResponse"]);
//!     w.object(0).bool(false).null().string("hi");
//!     let mut resp = HttpResponse::new(Body::from(Bytes::from(w.into_bytes())));
//!     resp.extensions_mut().insert(BoltResponseInfo {
//!         status: 0,
//!         codec: 1,
//!         class_name: Bytes::from_static(SOFA_RESPONSE.as_bytes()),
//!         extra_headers: Default::default(),
//!     });
//!     Ok::<_, proxy_core::BoxError>(resp)
//! });
//! let layer_metrics = layer.metrics().clone();
//! let svc = ServiceBuilder::new().layer(layer).service(upstream);
//!
//! let req = http::Request::post("/api/echo").body(Body::from(r#"["hi"]"#))?;
//! let resp = svc.clone().oneshot(req).await?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.into_body().collect().await?.to_bytes(), r#""hi""#);
//!
//! let req = http::Request::post("/api/echo").body(Body::from("[42]"))?;
//! let resp = svc.oneshot(req).await?;
//! assert_eq!(resp.status(), 400);
//! assert_eq!(resp.headers()["x-proxy-error"], "bad_rpc_arguments");
//! let body: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
//! assert_eq!(body["argument"], 0);
//! assert_eq!(body["expected"], "java.lang.String");
//! assert_eq!(layer_metrics.calls(TargetProtocol::Bolt, Outcome::BadArguments), 1);
//! # Ok(())
//! # }
//! ```

mod answer;
mod config;
mod decode;
mod encode;
mod error;
mod layer;
mod metrics;

pub use answer::{bolt as read_bolt_answer, dubbo as read_dubbo_answer, Answer};
pub use config::{
    ArgumentConfig, ClassType, Dialect, JavaType, JsonToRpcConfig, Signature, TargetProtocol,
    DEFAULT_MAX_BODY_BYTES,
};
pub use decode::{Decoded, Decoder};
pub use encode::{arguments, encode_call, ArgumentError, ArgumentRef, MAX_JSON_DEPTH};
pub use layer::{JsonToRpc, JsonToRpcLayer, ERROR_HEADER};
pub use metrics::{JsonToRpcMetrics, Outcome};

/// The filter's name in config: `typed: json_to_rpc`.
pub const NAME: &str = "json_to_rpc";
#[cfg(test)]
mod tests;
