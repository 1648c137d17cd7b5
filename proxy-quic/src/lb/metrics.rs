//! The forwarder's counters in the Prometheus text format, for the admin
//! `/stats/prometheus` page (`proxy_core::metrics::RenderMetrics`).

use std::fmt::Write as _;
use std::sync::Arc;

use proxy_core::metrics::{escape_label, RenderMetrics};

use super::stats::{ForwarderStats, StatsSnapshot};

/// One forwarder's counters under its `listener` label (its address). Obtained
/// with [`Forwarder::metrics`](super::Forwarder::metrics); register it with the
/// admin server's metrics like any capability crate's.
///
/// Series: `proxy_quic_lb_received_total`, `proxy_quic_lb_routed_total{by="cid"}`
/// and `{by="hash",reason=...}` (reasons `empty`, `reserved`, `unknown_config`,
/// `too_short`, `length_mismatch`, `unknown_server`, `unknown_version`),
/// `proxy_quic_lb_dropped_total{reason=...}` (the parser's reasons, `oversize`,
/// `flow_limit`, `send`, `reply_unknown_source`, and in encapsulated mode
/// `spoofed_encapsulation`, `bad_encapsulation`), `proxy_quic_lb_replies_total`,
/// `proxy_quic_lb_flows_opened_total`, `proxy_quic_lb_flows_expired_total` and the
/// gauge `proxy_quic_lb_flows`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_core::metrics::RenderMetrics;
/// use proxy_quic::lb::{ForwarderMetrics, ForwarderStats};
///
/// let metrics = ForwarderMetrics::new("0.0.0.0:443", Arc::new(ForwarderStats::default()));
/// let mut page = String::new();
/// metrics.render(&mut page);
/// assert!(page.contains(r#"proxy_quic_lb_routed_total{listener="0.0.0.0:443",by="cid"} 0"#));
/// ```
#[derive(Debug, Clone)]
pub struct ForwarderMetrics {
    listener: String,
    stats: Arc<ForwarderStats>,
}

impl ForwarderMetrics {
    /// The counters of `stats` under the label `listener`.
    pub fn new(listener: impl Into<String>, stats: Arc<ForwarderStats>) -> Self {
        Self {
            listener: escape_label(&listener.into()),
            stats,
        }
    }
}

impl RenderMetrics for ForwarderMetrics {
    fn render(&self, out: &mut String) {
        let s = self.stats.snapshot();
        let l = &self.listener;
        let mut routed = vec![("by=\"cid\"".to_string(), s.routed_by_cid)];
        routed.extend(
            hash_reasons(&s)
                .into_iter()
                .map(|(reason, n)| (format!("by=\"hash\",reason=\"{reason}\""), n)),
        );
        let dropped: Vec<(String, u64)> = drops(&s)
            .into_iter()
            .map(|(reason, n)| (format!("reason=\"{reason}\""), n))
            .collect();
        let plain = |n: u64| vec![(String::new(), n)];
        let families = [
            ("proxy_quic_lb_received_total", "counter", plain(s.received)),
            ("proxy_quic_lb_routed_total", "counter", routed),
            ("proxy_quic_lb_dropped_total", "counter", dropped),
            ("proxy_quic_lb_replies_total", "counter", plain(s.replies)),
            (
                "proxy_quic_lb_flows_opened_total",
                "counter",
                plain(s.flows_opened),
            ),
            (
                "proxy_quic_lb_flows_expired_total",
                "counter",
                plain(s.flows_expired),
            ),
            ("proxy_quic_lb_flows", "gauge", plain(s.flows_active)),
        ];
        for (name, kind, series) in families {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in series {
                let sep = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(out, "{name}{{listener=\"{l}\"{sep}{labels}}} {value}");
            }
        }
    }
}

/// An [`EncapsulatedSocket`](super::EncapsulatedSocket)'s counters (a server
/// behind encapsulated forwarders) under its `listener` label. Obtained with
/// [`EncapsulatedSocket::metrics`](super::EncapsulatedSocket::metrics).
///
/// Series: `proxy_quic_lb_encap_received_total{kind="unwrapped"}` and
/// `{kind="direct"}`, `proxy_quic_lb_encap_dropped_total{reason="bad_header"}` and
/// `{reason="direct"}`, `proxy_quic_lb_encap_wrapped_total`,
/// `proxy_quic_lb_encap_clients_full_total`.
///
/// # Example
/// ```
/// use proxy_core::metrics::RenderMetrics;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let socket = proxy_quic::lb::BehindLb::new(["10.0.0.10:443".parse().unwrap()])
///     .wrap(std::net::UdpSocket::bind("127.0.0.1:0")?)?;
/// let mut page = String::new();
/// socket.metrics("h3").render(&mut page);
/// assert!(page.contains(r#"proxy_quic_lb_encap_wrapped_total{listener="h3"} 0"#));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EncapsulatedMetrics {
    listener: String,
    socket: Arc<super::EncapsulatedSocket>,
}

impl EncapsulatedMetrics {
    pub(super) fn new(listener: &str, socket: Arc<super::EncapsulatedSocket>) -> Self {
        Self {
            listener: escape_label(listener),
            socket,
        }
    }
}

impl RenderMetrics for EncapsulatedMetrics {
    fn render(&self, out: &mut String) {
        let s = self.socket.stats();
        let l = &self.listener;
        let families: [(&str, Vec<(&str, u64)>); 4] = [
            (
                "proxy_quic_lb_encap_received_total",
                vec![
                    ("kind=\"unwrapped\"", s.unwrapped),
                    ("kind=\"direct\"", s.direct),
                ],
            ),
            (
                "proxy_quic_lb_encap_dropped_total",
                vec![
                    ("reason=\"bad_header\"", s.dropped_bad_header),
                    ("reason=\"direct\"", s.dropped_direct),
                ],
            ),
            ("proxy_quic_lb_encap_wrapped_total", vec![("", s.wrapped)]),
            (
                "proxy_quic_lb_encap_clients_full_total",
                vec![("", s.clients_full)],
            ),
        ];
        for (name, series) in families {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, value) in series {
                let sep = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(out, "{name}{{listener=\"{l}\"{sep}{labels}}} {value}");
            }
        }
    }
}

/// The hash route reasons and their counts.
fn hash_reasons(s: &StatsSnapshot) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&'static str, u64)> = StatsSnapshot::UNROUTABLE_LABELS
        .iter()
        .copied()
        .zip(s.unroutable)
        .collect();
    v.push(("unknown_server", s.unknown_server));
    v.push(("unknown_version", s.unknown_version));
    v
}

/// The drop reasons and their counts.
fn drops(s: &StatsSnapshot) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&'static str, u64)> = StatsSnapshot::DROPPED_LABELS
        .iter()
        .copied()
        .zip(s.dropped)
        .collect();
    v.push(("oversize", s.dropped_oversize));
    v.push(("flow_limit", s.dropped_flow_limit));
    v.push(("send", s.dropped_send));
    v.push(("reply_unknown_source", s.dropped_reply_unknown_source));
    v.push(("spoofed_encapsulation", s.dropped_spoofed));
    v.push(("bad_encapsulation", s.dropped_bad_encapsulation));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::packet::ParseError;
    use crate::lb::table::RouteBy;
    use crate::Unroutable;

    #[test]
    fn renders_every_series_under_the_listener() {
        let stats = Arc::new(ForwarderStats::default());
        stats.received();
        stats.routed(RouteBy::Cid);
        stats.routed(RouteBy::Hash(Unroutable::TooShort));
        stats.parse_error(ParseError::SmallInitial);
        stats.flow_opened();
        let mut page = String::new();
        ForwarderMetrics::new("[::]:443", stats).render(&mut page);
        for want in [
            "# TYPE proxy_quic_lb_routed_total counter",
            r#"proxy_quic_lb_received_total{listener="[::]:443"} 1"#,
            r#"proxy_quic_lb_routed_total{listener="[::]:443",by="cid"} 1"#,
            r#"proxy_quic_lb_routed_total{listener="[::]:443",by="hash",reason="too_short"} 1"#,
            r#"proxy_quic_lb_dropped_total{listener="[::]:443",reason="small_initial"} 1"#,
            r#"proxy_quic_lb_dropped_total{listener="[::]:443",reason="flow_limit"} 0"#,
            "# TYPE proxy_quic_lb_flows gauge",
            r#"proxy_quic_lb_flows{listener="[::]:443"} 1"#,
        ] {
            assert!(page.lines().any(|l| l == want), "{want} not in\n{page}");
        }
        assert_eq!(page.matches("# TYPE").count(), 7);
    }
}
