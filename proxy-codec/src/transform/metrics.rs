//! Counters of the `json_to_rpc` transformer: calls by target protocol and outcome,
//! rendered as `proxy_codec_json_to_rpc_total{protocol,outcome}`.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use super::config::TargetProtocol;

/// How a call through the transformer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The method's value came back (200).
    Ok,
    /// The body did not fit the signature (400).
    BadArguments,
    /// The body was over `max_body_bytes` (413).
    BodyTooLarge,
    /// Not a `POST` (405).
    MethodNotAllowed,
    /// The method threw (500).
    RpcException,
    /// The server answered a protocol error status (502).
    RpcError,
    /// The answer could not be read (502).
    BadRpcResponse,
    /// The proxy failed the call (no endpoint, timeout): the stack's own answer.
    ProxyError,
}

impl Outcome {
    const ALL: [Self; 8] = [
        Self::Ok,
        Self::BadArguments,
        Self::BodyTooLarge,
        Self::MethodNotAllowed,
        Self::RpcException,
        Self::RpcError,
        Self::BadRpcResponse,
        Self::ProxyError,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadArguments => "bad_rpc_arguments",
            Self::BodyTooLarge => "body_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RpcException => "rpc_exception",
            Self::RpcError => "rpc_error",
            Self::BadRpcResponse => "bad_rpc_response",
            Self::ProxyError => "proxy_error",
        }
    }
}

/// Calls by target protocol and [`Outcome`]; one object per registry, shared by
/// every `json_to_rpc` filter (`BuildContext::metrics`).
#[derive(Debug, Default)]
pub struct JsonToRpcMetrics {
    calls: [[AtomicU64; Outcome::ALL.len()]; 2],
}

fn row(p: TargetProtocol) -> usize {
    match p {
        TargetProtocol::Bolt => 0,
        TargetProtocol::Dubbo => 1,
    }
}

impl JsonToRpcMetrics {
    /// Counts one call.
    pub fn count(&self, protocol: TargetProtocol, outcome: Outcome) {
        self.calls[row(protocol)][outcome as usize].fetch_add(1, Relaxed);
    }

    /// Calls to `protocol` that ended with `outcome`.
    pub fn calls(&self, protocol: TargetProtocol, outcome: Outcome) -> u64 {
        self.calls[row(protocol)][outcome as usize].load(Relaxed)
    }

    /// Appends the Prometheus text of the counters to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str("# TYPE proxy_codec_json_to_rpc_total counter\n");
        for (protocol, name) in [
            (TargetProtocol::Bolt, "bolt"),
            (TargetProtocol::Dubbo, "dubbo"),
        ] {
            for outcome in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "proxy_codec_json_to_rpc_total{{protocol=\"{name}\",outcome=\"{}\"}} {}",
                    outcome.as_str(),
                    self.calls(protocol, outcome)
                );
            }
        }
    }
}

impl proxy_core::metrics::RenderMetrics for JsonToRpcMetrics {
    fn render(&self, out: &mut String) {
        JsonToRpcMetrics::render(self, out);
    }
}
