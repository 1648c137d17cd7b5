//! Counters of the codec machinery, per protocol, rendered as Prometheus text.

use std::{
    fmt::Write,
    sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
};

/// The counters of one protocol (both sides).
#[derive(Debug, Default)]
pub struct Counters {
    /// Downstream connections served.
    pub downstream_connections: AtomicU64,
    /// Requests read from downstream connections.
    pub downstream_requests: AtomicU64,
    /// Requests in flight on downstream connections.
    pub downstream_in_flight: AtomicI64,
    /// Heartbeats answered locally (both sides).
    pub heartbeats: AtomicU64,
    /// Frames that could not be decoded; each ended its connection.
    pub malformed_frames: AtomicU64,
    /// Frames refused for a declared length over the maximum (both sides; those
    /// whose call failed alone are also counted by [`TooLarge`] kind).
    pub oversized_frames: AtomicU64,
    /// Requests answered with an error reply for a proxy-side failure.
    pub error_replies: AtomicU64,
    /// Calls refused because their connection is draining: answered with the
    /// protocol's "server closing" error (also counted in `error_replies`), or dropped
    /// if one-way.
    pub drain_refused: AtomicU64,
    /// Upstream connections opened.
    pub upstream_connects: AtomicU64,
    /// Upstream connection attempts that failed.
    pub upstream_connect_failures: AtomicU64,
    /// Requests sent to upstreams.
    pub upstream_requests: AtomicU64,
    /// Upstream requests failed because their connection closed.
    pub upstream_closed_in_flight: AtomicU64,
    /// Upstream requests that timed out.
    pub upstream_timeouts: AtomicU64,
    /// Upstream responses whose request id matched no request in flight (dropped).
    pub unknown_response_ids: AtomicU64,
    /// Frames of an unexpected kind (a response from a client, a request from an
    /// upstream), dropped.
    pub unexpected_frames: AtomicU64,
    /// Messages over a `max_frame_bytes`, by [`TooLarge`].
    too_large: [AtomicU64; TooLarge::ALL.len()],
}

impl Counters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Messages refused or failed for their size, of one kind.
    pub fn too_large(&self, kind: TooLarge) -> u64 {
        self.too_large[kind as usize].load(Relaxed)
    }

    pub(crate) fn count_too_large(&self, kind: TooLarge) {
        Self::inc(&self.too_large[kind as usize]);
    }
}

/// A message over a `max_frame_bytes`: which message, and whose limit. Each fails
/// only its own call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TooLarge {
    /// A request from a downstream client, over the listener's limit: answered with
    /// the protocol's error (`body_too_large`), its body skipped unread.
    Request,
    /// The answer the listener's request stack returned, over the listener's limit:
    /// the caller gets the protocol's error (`response_too_large`).
    Answer,
    /// A request body to send to an upstream, over the cluster's limit: not sent
    /// (`body_too_large`).
    UpstreamRequest,
    /// A response from an upstream, over the cluster's limit: skipped unread, its
    /// call failed (`response_too_large`); the connection carries on.
    UpstreamResponse,
}

impl TooLarge {
    /// Every kind, in counter order.
    pub const ALL: [TooLarge; 4] = [
        Self::Request,
        Self::Answer,
        Self::UpstreamRequest,
        Self::UpstreamResponse,
    ];

    /// The `x-proxy-error` reason the call fails with.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Request | Self::UpstreamRequest => "body_too_large",
            Self::Answer | Self::UpstreamResponse => "response_too_large",
        }
    }

    /// The `kind` label and log field: `request`, `answer`, `upstream_request`,
    /// `upstream_response`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Answer => "answer",
            Self::UpstreamRequest => "upstream_request",
            Self::UpstreamResponse => "upstream_response",
        }
    }
}

/// The codec counters: Bolt, Dubbo, and every other (plug-in) protocol together.
#[derive(Debug, Default)]
pub struct CodecMetrics {
    /// Bolt.
    pub bolt: Counters,
    /// Dubbo.
    pub dubbo: Counters,
    /// Plug-in protocols.
    pub other: Counters,
}

type Field = fn(&Counters) -> i64;

const COUNTERS: [(&str, &str, Field); 14] = [
    (
        "downstream_connections_total",
        "Downstream connections served.",
        |c| load(&c.downstream_connections),
    ),
    (
        "downstream_requests_total",
        "Requests read from downstream connections.",
        |c| load(&c.downstream_requests),
    ),
    ("heartbeats_total", "Heartbeats answered locally.", |c| {
        load(&c.heartbeats)
    }),
    (
        "malformed_frames_total",
        "Undecodable frames; each closed its connection.",
        |c| load(&c.malformed_frames),
    ),
    (
        "oversized_frames_total",
        "Frames refused for their declared length.",
        |c| load(&c.oversized_frames),
    ),
    (
        "error_replies_total",
        "Requests answered with a protocol error reply.",
        |c| load(&c.error_replies),
    ),
    (
        "drain_refused_total",
        "Calls refused because their connection is draining.",
        |c| load(&c.drain_refused),
    ),
    (
        "upstream_connects_total",
        "Upstream connections opened.",
        |c| load(&c.upstream_connects),
    ),
    (
        "upstream_connect_failures_total",
        "Failed upstream connection attempts.",
        |c| load(&c.upstream_connect_failures),
    ),
    ("upstream_requests_total", "Requests sent upstream.", |c| {
        load(&c.upstream_requests)
    }),
    (
        "upstream_closed_in_flight_total",
        "Upstream requests failed by their connection closing.",
        |c| load(&c.upstream_closed_in_flight),
    ),
    (
        "upstream_timeouts_total",
        "Upstream requests timed out.",
        |c| load(&c.upstream_timeouts),
    ),
    (
        "unknown_response_ids_total",
        "Upstream responses with an unknown request id, dropped.",
        |c| load(&c.unknown_response_ids),
    ),
    (
        "unexpected_frames_total",
        "Frames of an unexpected kind, dropped.",
        |c| load(&c.unexpected_frames),
    ),
];

fn load(c: &AtomicU64) -> i64 {
    i64::try_from(c.load(Relaxed)).unwrap_or(i64::MAX)
}

impl CodecMetrics {
    /// The counters of the protocol named `name`.
    pub fn protocol(&self, name: &str) -> &Counters {
        match name {
            "bolt" => &self.bolt,
            "dubbo" => &self.dubbo,
            _ => &self.other,
        }
    }

    /// Appends the counters in Prometheus text format, one family per counter with a
    /// `protocol` label.
    pub fn render(&self, out: &mut String) {
        let protos = [
            ("bolt", &self.bolt),
            ("dubbo", &self.dubbo),
            ("other", &self.other),
        ];
        for (name, help, field) in COUNTERS {
            let _ = writeln!(out, "# HELP proxy_codec_{name} {help}");
            let _ = writeln!(out, "# TYPE proxy_codec_{name} counter");
            for (p, c) in protos {
                let _ = writeln!(out, "proxy_codec_{name}{{protocol=\"{p}\"}} {}", field(c));
            }
        }
        let name = "proxy_codec_too_large_total";
        let _ = writeln!(
            out,
            "# HELP {name} Messages over max_frame_bytes, each failing its own call."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (p, c) in protos {
            for kind in TooLarge::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{p}\",kind=\"{}\",reason=\"{}\"}} {}",
                    kind.as_str(),
                    kind.reason(),
                    c.too_large(kind)
                );
            }
        }
        let name = "proxy_codec_downstream_in_flight";
        let _ = writeln!(
            out,
            "# HELP {name} Requests in flight on downstream connections."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (p, c) in protos {
            let _ = writeln!(
                out,
                "{name}{{protocol=\"{p}\"}} {}",
                c.downstream_in_flight.load(Relaxed)
            );
        }
    }
}
