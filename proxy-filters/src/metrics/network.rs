//! Counters of the network filters: tcp_proxy, connection_limit, connection_fault.

use super::{sample, Counter, CounterSet, Gauge, Sample};

/// TCP proxy counters.
#[derive(Debug, Default)]
pub struct TcpProxyCounters {
    /// Connections proxied.
    pub connections: Counter,
    /// Connections open now.
    pub active: Gauge,
    /// Upstream connects that failed (or found no endpoint).
    pub connect_failures: Counter,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: Counter,
    /// Connections ended by an I/O error.
    pub errors: Counter,
    /// Bytes from downstream to upstream.
    pub bytes_up: Counter,
    /// Bytes from upstream to downstream.
    pub bytes_down: Counter,
}

impl CounterSet for TcpProxyCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_tcp_proxy_connections_total",
            "Connections proxied at L4.",
            "counter",
            "",
            self.connections.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_proxy_active_connections",
            "L4 connections open.",
            "gauge",
            "",
            self.active.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_proxy_connect_failures_total",
            "Upstream connects that failed.",
            "counter",
            "",
            self.connect_failures.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_proxy_closed_total",
            "L4 connections closed abnormally.",
            "counter",
            "reason=\"idle_timeout\"",
            self.idle_timeouts.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_proxy_closed_total",
            "L4 connections closed abnormally.",
            "counter",
            "reason=\"error\"",
            self.errors.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_proxy_bytes_total",
            "Bytes copied at L4.",
            "counter",
            "direction=\"upstream\"",
            self.bytes_up.get()
        );
        sample!(
            out,
            "proxy_filters_tcp_proxy_bytes_total",
            "Bytes copied at L4.",
            "counter",
            "direction=\"downstream\"",
            self.bytes_down.get()
        );
    }
}

/// Connection limit counters.
#[derive(Debug, Default)]
pub struct ConnLimitCounters {
    /// Connections admitted.
    pub accepted: Counter,
    /// Connections refused: the listener limit.
    pub refused_total: Counter,
    /// Connections refused: the per-source-IP limit.
    pub refused_source: Counter,
    /// Connections open now.
    pub active: Gauge,
}

impl CounterSet for ConnLimitCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_connection_limit_accepted_total",
            "Connections admitted by the connection limit.",
            "counter",
            "",
            self.accepted.get()
        );
        sample!(
            out,
            "proxy_filters_connection_limit_refused_total",
            "Connections refused by the connection limit.",
            "counter",
            "reason=\"listener\"",
            self.refused_total.get()
        );
        sample!(
            out,
            "proxy_filters_connection_limit_refused_total",
            "Connections refused by the connection limit.",
            "counter",
            "reason=\"source_ip\"",
            self.refused_source.get()
        );
        sample!(
            out,
            "proxy_filters_connection_limit_active",
            "Connections open under the connection limit.",
            "gauge",
            "",
            self.active.get()
        );
    }
}

/// Connection fault counters.
#[derive(Debug, Default)]
pub struct ConnFaultCounters {
    /// Connections seen.
    pub connections: Counter,
    /// Connections delayed.
    pub delays: Counter,
    /// Connections reset.
    pub resets: Counter,
}

impl CounterSet for ConnFaultCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_connection_fault_connections_total",
            "Connections seen by the connection fault filter.",
            "counter",
            "",
            self.connections.get()
        );
        sample!(
            out,
            "proxy_filters_connection_fault_injected_total",
            "Connection faults injected.",
            "counter",
            "kind=\"delay\"",
            self.delays.get()
        );
        sample!(
            out,
            "proxy_filters_connection_fault_injected_total",
            "Connection faults injected.",
            "counter",
            "kind=\"reset\"",
            self.resets.get()
        );
    }
}
