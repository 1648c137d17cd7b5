//! The stream proxy's counters in the Prometheus text format, for the admin
//! `/stats/prometheus` page (`proxy_core::metrics::RenderMetrics`).

use std::fmt::Write as _;
use std::sync::Arc;

use proxy_core::metrics::{escape_label, RenderMetrics};

use super::StreamProxyStats;

/// One [`StreamProxy`](super::StreamProxy)'s counters under its `listener` label.
/// Obtained with [`StreamProxy::metrics`](super::StreamProxy::metrics); register
/// it with the admin server's metrics like any capability crate's.
///
/// Series: `proxy_quic_stream_handshakes_total{result="ok"|"failed"|"refused"}`
/// (refused: over `max_connections`), the gauge
/// `proxy_quic_stream_connections`, `proxy_quic_stream_streams_total`, the gauge
/// `proxy_quic_stream_streams`, `proxy_quic_stream_closed_total{reason=...}`
/// (`connect_failure`, `idle_timeout`, `upstream_error`, `client_error`: the
/// streams that ended badly) and `proxy_quic_stream_bytes_total{direction="up"|"down"}`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use proxy_core::metrics::RenderMetrics;
/// use proxy_quic::stream_proxy::{StreamProxyMetrics, StreamProxyStats};
///
/// let metrics = StreamProxyMetrics::new("streams", Arc::new(StreamProxyStats::default()));
/// let mut page = String::new();
/// metrics.render(&mut page);
/// assert!(page.contains(r#"proxy_quic_stream_bytes_total{listener="streams",direction="up"} 0"#));
/// ```
#[derive(Debug, Clone)]
pub struct StreamProxyMetrics {
    listener: String,
    stats: Arc<StreamProxyStats>,
}

impl StreamProxyMetrics {
    /// The counters of `stats` under the label `listener`.
    pub fn new(listener: impl Into<String>, stats: Arc<StreamProxyStats>) -> Self {
        Self {
            listener: escape_label(&listener.into()),
            stats,
        }
    }
}

impl RenderMetrics for StreamProxyMetrics {
    fn render(&self, out: &mut String) {
        let s = self.stats.snapshot();
        let l = &self.listener;
        let plain = |n: u64| vec![(String::new(), n)];
        let labelled = |key: &str, values: &[(&str, u64)]| -> Vec<(String, u64)> {
            values
                .iter()
                .map(|(v, n)| (format!("{key}=\"{v}\""), *n))
                .collect()
        };
        let families = [
            (
                "proxy_quic_stream_handshakes_total",
                "counter",
                labelled(
                    "result",
                    &[
                        ("ok", s.handshakes),
                        ("failed", s.handshake_failures),
                        ("refused", s.connections_refused),
                    ],
                ),
            ),
            (
                "proxy_quic_stream_connections",
                "gauge",
                plain(s.connections_active),
            ),
            (
                "proxy_quic_stream_streams_total",
                "counter",
                plain(s.streams),
            ),
            (
                "proxy_quic_stream_streams",
                "gauge",
                plain(s.streams_active),
            ),
            (
                "proxy_quic_stream_closed_total",
                "counter",
                labelled(
                    "reason",
                    &[
                        ("connect_failure", s.connect_failures),
                        ("idle_timeout", s.idle_timeouts),
                        ("upstream_error", s.upstream_errors),
                        ("client_error", s.client_errors),
                    ],
                ),
            ),
            (
                "proxy_quic_stream_bytes_total",
                "counter",
                labelled("direction", &[("up", s.bytes_up), ("down", s.bytes_down)]),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn renders_every_series_under_the_listener() {
        let stats = Arc::new(StreamProxyStats::default());
        stats.handshakes.fetch_add(2, Relaxed);
        stats.streams.fetch_add(3, Relaxed);
        stats.idle_timeouts.fetch_add(1, Relaxed);
        stats.bytes_down.fetch_add(42, Relaxed);
        let mut page = String::new();
        StreamProxyMetrics::new("s\"q", stats).render(&mut page);
        for want in [
            "# TYPE proxy_quic_stream_streams gauge",
            r#"proxy_quic_stream_handshakes_total{listener="s\"q",result="ok"} 2"#,
            r#"proxy_quic_stream_handshakes_total{listener="s\"q",result="failed"} 0"#,
            r#"proxy_quic_stream_streams_total{listener="s\"q"} 3"#,
            r#"proxy_quic_stream_closed_total{listener="s\"q",reason="idle_timeout"} 1"#,
            r#"proxy_quic_stream_bytes_total{listener="s\"q",direction="down"} 42"#,
        ] {
            assert!(page.lines().any(|l| l == want), "{want} not in\n{page}");
        }
    }
}
