//! Counters of the TLS layers, rendered as Prometheus text.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

/// The bounded set of handshake failure reasons (`HandshakeError::reason`).
pub(crate) const REASONS: [&str; 10] = [
    "timeout",
    "peer_closed",
    "malformed",
    "unsupported",
    "client_certificate",
    "server_certificate",
    "protocol",
    "offload",
    "early_data_refused",
    "io",
];

/// Handshake and rotation counters of the TLS termination and origination layers.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    handshakes_tls12: AtomicU64,
    handshakes_tls13: AtomicU64,
    resumed: AtomicU64,
    guomi: AtomicU64,
    early_data: AtomicU64,
    failures: [AtomicU64; REASONS.len()],
    upstream_handshakes: AtomicU64,
    upstream_failures: [AtomicU64; REASONS.len()],
    rotations_applied: AtomicU64,
    rotations_refused: AtomicU64,
    slot_waits: AtomicU64,
    waiting_for_slot: AtomicU64,
}

/// A connection counted as waiting for a handshake slot until this drops.
#[derive(Debug)]
pub(crate) struct WaitingForSlot<'a>(&'a AtomicU64);

impl Drop for WaitingForSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TlsMetrics {
    /// A completed downstream handshake.
    pub(crate) fn handshake(&self, tls13: bool, resumed: bool, guomi: bool, early_data: bool) {
        if tls13 {
            self.handshakes_tls13.fetch_add(1, Ordering::Relaxed);
        } else {
            self.handshakes_tls12.fetch_add(1, Ordering::Relaxed);
        }
        if resumed {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        if guomi {
            self.guomi.fetch_add(1, Ordering::Relaxed);
        }
        if early_data {
            self.early_data.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A failed handshake, by reason (`upstream`: on the origination side).
    pub(crate) fn failure(&self, reason: &str, upstream: bool) {
        let i = REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REASONS.len() - 1);
        let counters = if upstream {
            &self.upstream_failures
        } else {
            &self.failures
        };
        counters[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A completed upstream handshake.
    pub(crate) fn upstream_handshake(&self) {
        self.upstream_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// A rotation attempt: applied or refused.
    pub(crate) fn rotation(&self, applied: bool) {
        if applied {
            self.rotations_applied.fetch_add(1, Ordering::Relaxed);
        } else {
            self.rotations_refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection whose ClientHello found every handshake slot of its worker taken
    /// (`max_handshakes_in_progress`): counted, and gauged until the guard drops.
    pub(crate) fn waiting_for_slot(&self) -> WaitingForSlot<'_> {
        self.slot_waits.fetch_add(1, Ordering::Relaxed);
        self.waiting_for_slot.fetch_add(1, Ordering::Relaxed);
        WaitingForSlot(&self.waiting_for_slot)
    }

    /// Connections that have waited for a handshake slot (`max_handshakes_in_progress`).
    pub fn handshake_slot_waits(&self) -> u64 {
        self.slot_waits.load(Ordering::Relaxed)
    }

    /// Connections waiting for a handshake slot now.
    pub fn handshakes_waiting(&self) -> u64 {
        self.waiting_for_slot.load(Ordering::Relaxed)
    }

    /// Completed downstream handshakes (TLS 1.2 and 1.3).
    pub fn handshakes(&self) -> u64 {
        self.handshakes_tls12.load(Ordering::Relaxed)
            + self.handshakes_tls13.load(Ordering::Relaxed)
    }

    /// Failed downstream handshakes with `reason`.
    pub fn failures(&self, reason: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.failures[i].load(Ordering::Relaxed))
    }

    /// Refused rotations.
    pub fn rotations_refused(&self) -> u64 {
        self.rotations_refused.load(Ordering::Relaxed)
    }

    /// Applied rotations.
    pub fn rotations_applied(&self) -> u64 {
        self.rotations_applied.load(Ordering::Relaxed)
    }

    /// Writes the families in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP proxy_tls_handshakes_total Completed downstream TLS handshakes."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_handshakes_total counter");
        let _ = writeln!(
            out,
            "proxy_tls_handshakes_total{{version=\"tls12\"}} {}",
            g(&self.handshakes_tls12)
        );
        let _ = writeln!(
            out,
            "proxy_tls_handshakes_total{{version=\"tls13\"}} {}",
            g(&self.handshakes_tls13)
        );
        let _ = writeln!(out, "# HELP proxy_tls_resumed_handshakes_total Downstream handshakes that resumed a session.");
        let _ = writeln!(out, "# TYPE proxy_tls_resumed_handshakes_total counter");
        let _ = writeln!(
            out,
            "proxy_tls_resumed_handshakes_total {}",
            g(&self.resumed)
        );
        let _ = writeln!(
            out,
            "# HELP proxy_tls_guomi_handshakes_total Downstream handshakes with a Guomi suite."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_guomi_handshakes_total counter");
        let _ = writeln!(out, "proxy_tls_guomi_handshakes_total {}", g(&self.guomi));
        let _ = writeln!(
            out,
            "# HELP proxy_tls_early_data_accepted_total Connections whose 0-RTT data was served."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_early_data_accepted_total counter");
        let _ = writeln!(
            out,
            "proxy_tls_early_data_accepted_total {}",
            g(&self.early_data)
        );
        let _ = writeln!(
            out,
            "# HELP proxy_tls_handshake_failures_total Failed downstream TLS handshakes by reason."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_handshake_failures_total counter");
        for (i, r) in REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "proxy_tls_handshake_failures_total{{reason=\"{r}\"}} {}",
                g(&self.failures[i])
            );
        }
        let _ = writeln!(out, "# HELP proxy_tls_handshake_slot_waits_total Downstream connections whose ClientHello waited for a handshake slot (max_handshakes_in_progress).");
        let _ = writeln!(out, "# TYPE proxy_tls_handshake_slot_waits_total counter");
        let _ = writeln!(
            out,
            "proxy_tls_handshake_slot_waits_total {}",
            g(&self.slot_waits)
        );
        let _ = writeln!(out, "# HELP proxy_tls_handshakes_waiting Downstream connections waiting for a handshake slot now.");
        let _ = writeln!(out, "# TYPE proxy_tls_handshakes_waiting gauge");
        let _ = writeln!(
            out,
            "proxy_tls_handshakes_waiting {}",
            g(&self.waiting_for_slot)
        );
        let _ = writeln!(
            out,
            "# HELP proxy_tls_upstream_handshakes_total Completed upstream TLS handshakes."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_upstream_handshakes_total counter");
        let _ = writeln!(
            out,
            "proxy_tls_upstream_handshakes_total {}",
            g(&self.upstream_handshakes)
        );
        let _ = writeln!(out, "# HELP proxy_tls_upstream_handshake_failures_total Failed upstream TLS handshakes by reason.");
        let _ = writeln!(
            out,
            "# TYPE proxy_tls_upstream_handshake_failures_total counter"
        );
        for (i, r) in REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "proxy_tls_upstream_handshake_failures_total{{reason=\"{r}\"}} {}",
                g(&self.upstream_failures[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP proxy_tls_rotations_total Certificate material reloads by result."
        );
        let _ = writeln!(out, "# TYPE proxy_tls_rotations_total counter");
        let _ = writeln!(
            out,
            "proxy_tls_rotations_total{{result=\"applied\"}} {}",
            g(&self.rotations_applied)
        );
        let _ = writeln!(
            out,
            "proxy_tls_rotations_total{{result=\"refused\"}} {}",
            g(&self.rotations_refused)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_reason() {
        let m = TlsMetrics::default();
        m.failure("timeout", false);
        m.failure("timeout", false);
        m.failure("malformed", true);
        assert_eq!(m.failures("timeout"), 2);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("proxy_tls_handshake_failures_total{reason=\"timeout\"} 2"));
        assert!(out.contains("proxy_tls_upstream_handshake_failures_total{reason=\"malformed\"} 1"));
        let waiting = m.waiting_for_slot();
        assert_eq!((m.handshake_slot_waits(), m.handshakes_waiting()), (1, 1));
        drop(waiting);
        assert_eq!((m.handshake_slot_waits(), m.handshakes_waiting()), (1, 0));
        out.clear();
        m.render(&mut out);
        assert!(out.contains("proxy_tls_handshake_slot_waits_total 1\n"));
        assert!(out.contains("proxy_tls_handshakes_waiting 0\n"));
    }
}
