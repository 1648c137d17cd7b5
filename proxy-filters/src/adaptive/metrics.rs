//! Metrics of the adaptive limiters: one [`AdaptiveMetrics`] holds every limiter's
//! figures (by `name`) so that each metric family is rendered once, contiguously.
//! Every sample carries a `filter` label: the limiter's name.
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `proxy_filters_adaptive_concurrency_limit` | gauge | the admitted concurrency now |
//! | `proxy_filters_adaptive_concurrency_high_cost_limit` | gauge | in-flight below which high-cost interfaces are admitted |
//! | `proxy_filters_adaptive_concurrency_in_flight` | gauge | requests in flight at the last control step |
//! | `proxy_filters_adaptive_concurrency_requests_total{decision,reason}` | counter | `admitted`, or `rejected` by `limit` / `high_cost` |
//! | `proxy_filters_adaptive_concurrency_pressure` | gauge | measured / target of the most loaded signal |
//! | `proxy_filters_adaptive_concurrency_signal{signal}` | gauge | `cpu` (fraction), `latency_seconds` (the controlled percentile), `latency_target_seconds`, `throughput_floor` (concurrency) |
//! | `proxy_filters_adaptive_concurrency_controller{term}` | gauge | `error`, `p`, `i`, `d` of the PID step |
//! | `proxy_filters_adaptive_concurrency_steps_total` | counter | control steps run |
//! | `proxy_filters_adaptive_concurrency_interface_baseline_seconds{interface,high_cost}` | gauge | learned per-interface baseline |

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, PoisonError,
    },
};

use proxy_core::metrics::RenderMetrics;

use super::cost::InterfaceCost;

/// An `f64` stored in an `AtomicU64`.
#[derive(Debug, Default)]
pub(crate) struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub(crate) fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// The figures of one limiter.
#[derive(Debug, Default)]
pub struct LimiterStats {
    pub(crate) limit: AtomicU64,
    pub(crate) high_cost_limit: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) admitted: AtomicU64,
    pub(crate) rejected_limit: AtomicU64,
    pub(crate) rejected_high_cost: AtomicU64,
    pub(crate) steps: AtomicU64,
    pub(crate) pressure: AtomicF64,
    pub(crate) cpu: AtomicF64,
    pub(crate) floor: AtomicF64,
    pub(crate) latency: AtomicF64,
    pub(crate) latency_target: AtomicF64,
    pub(crate) error: AtomicF64,
    pub(crate) p: AtomicF64,
    pub(crate) i: AtomicF64,
    pub(crate) d: AtomicF64,
    pub(crate) interfaces: Mutex<Vec<InterfaceCost>>,
    /// What the control loop learned (NaN: nothing yet), for its successor on reload.
    pub(crate) learned_baseline: AtomicF64,
    pub(crate) learned_mean: AtomicF64,
    pub(crate) learned_best_rate: AtomicF64,
}

impl LimiterStats {
    /// Requests admitted so far.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Relaxed)
    }

    /// Requests rejected because in-flight reached the limit.
    pub fn rejected_limit(&self) -> u64 {
        self.rejected_limit.load(Relaxed)
    }

    /// High-cost requests rejected below the limit.
    pub fn rejected_high_cost(&self) -> u64 {
        self.rejected_high_cost.load(Relaxed)
    }

    /// The Little's-law floor of the last control step, if one applied.
    pub fn throughput_floor(&self) -> Option<f64> {
        Some(self.floor.get()).filter(|f| f.is_finite())
    }

    /// The learned baseline latency (the controlled percentile at low concurrency),
    /// seconds, once measured.
    pub fn baseline(&self) -> Option<f64> {
        Some(self.learned_baseline.get()).filter(|b| b.is_finite() && *b > 0.0)
    }

    /// The latency target of the last control step, seconds, once known.
    pub fn latency_target(&self) -> Option<f64> {
        Some(self.latency_target.get()).filter(|f| f.is_finite())
    }

    /// The limit at the last control step.
    pub fn limit(&self) -> u64 {
        self.limit.load(Relaxed)
    }

    /// Interfaces currently marked high-cost.
    pub fn high_cost_interfaces(&self) -> Vec<String> {
        self.interfaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|i| i.high_cost)
            .map(|i| i.key.to_string())
            .collect()
    }
}

/// Every adaptive limiter's figures, rendered as Prometheus text. Obtain it from the
/// build context under the key [`METRICS_KEY`] so counters survive reloads.
#[derive(Debug, Default)]
pub struct AdaptiveMetrics {
    limiters: Mutex<Vec<(Arc<str>, Arc<LimiterStats>)>>,
}

/// The key under which the adaptive limiters' metrics are kept.
pub const METRICS_KEY: &str = "filters/adaptive";

impl AdaptiveMetrics {
    /// The figures of limiter `name`, the same ones for the same name (so a reloaded
    /// limiter keeps counting where the old one stopped).
    pub fn limiter(&self, name: &str) -> Arc<LimiterStats> {
        let mut all = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, s)) = all.iter().find(|(n, _)| &**n == name) {
            return s.clone();
        }
        let s = Arc::new(LimiterStats::default());
        all.push((name.into(), s.clone()));
        s
    }

    /// Appends the Prometheus text of every limiter.
    pub fn render_text(&self, out: &mut String) {
        let all = self
            .limiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if all.is_empty() {
            return;
        }
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let gauge_u =
            |out: &mut String, name: &str, help: &str, f: &dyn Fn(&LimiterStats) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (n, s) in &all {
                    let _ = writeln!(out, "{name}{{filter=\"{}\"}} {}", esc(n), f(s));
                }
            };
        gauge_u(
            out,
            "proxy_filters_adaptive_concurrency_limit",
            "Admitted concurrency.",
            &|s| s.limit.load(Relaxed),
        );
        gauge_u(
            out,
            "proxy_filters_adaptive_concurrency_high_cost_limit",
            "In-flight below which high-cost interfaces are admitted.",
            &|s| s.high_cost_limit.load(Relaxed),
        );
        gauge_u(
            out,
            "proxy_filters_adaptive_concurrency_in_flight",
            "Requests in flight at the last control step.",
            &|s| s.in_flight.load(Relaxed),
        );

        let name = "proxy_filters_adaptive_concurrency_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Admission decisions.\n# TYPE {name} counter"
        );
        for (n, s) in &all {
            let n = esc(n);
            for (decision, reason, v) in [
                ("admitted", "none", &s.admitted),
                ("rejected", "limit", &s.rejected_limit),
                ("rejected", "high_cost", &s.rejected_high_cost),
            ] {
                let _ = writeln!(
                    out,
                    "{name}{{filter=\"{n}\",decision=\"{decision}\",reason=\"{reason}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }

        let name = "proxy_filters_adaptive_concurrency_steps_total";
        let _ = writeln!(
            out,
            "# HELP {name} Control steps run.\n# TYPE {name} counter"
        );
        for (n, s) in &all {
            let _ = writeln!(
                out,
                "{name}{{filter=\"{}\"}} {}",
                esc(n),
                s.steps.load(Relaxed)
            );
        }

        let name = "proxy_filters_adaptive_concurrency_pressure";
        let _ = writeln!(
            out,
            "# HELP {name} Measured over target of the most loaded signal.\n# TYPE {name} gauge"
        );
        for (n, s) in &all {
            let _ = writeln!(out, "{name}{{filter=\"{}\"}} {}", esc(n), s.pressure.get());
        }

        let name = "proxy_filters_adaptive_concurrency_signal";
        let _ = writeln!(
            out,
            "# HELP {name} Measured signals and the latency target.\n# TYPE {name} gauge"
        );
        for (n, s) in &all {
            let n = esc(n);
            for (signal, v) in [
                ("cpu", &s.cpu),
                ("latency_seconds", &s.latency),
                ("latency_target_seconds", &s.latency_target),
                ("throughput_floor", &s.floor),
            ] {
                let v = v.get();
                if v.is_finite() {
                    let _ = writeln!(out, "{name}{{filter=\"{n}\",signal=\"{signal}\"}} {v}");
                }
            }
        }

        let name = "proxy_filters_adaptive_concurrency_controller";
        let _ = writeln!(
            out,
            "# HELP {name} Terms of the last PID step (log of the limit).\n# TYPE {name} gauge"
        );
        for (n, s) in &all {
            let n = esc(n);
            for (term, v) in [("error", &s.error), ("p", &s.p), ("i", &s.i), ("d", &s.d)] {
                let _ = writeln!(out, "{name}{{filter=\"{n}\",term=\"{term}\"}} {}", v.get());
            }
        }

        let name = "proxy_filters_adaptive_concurrency_interface_baseline_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Learned baseline latency per interface.\n# TYPE {name} gauge"
        );
        for (n, s) in &all {
            let n = esc(n);
            let ifaces = s.interfaces.lock().unwrap_or_else(PoisonError::into_inner);
            for i in ifaces.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{filter=\"{n}\",interface=\"{}\",high_cost=\"{}\"}} {}",
                    esc(&i.key),
                    i.high_cost,
                    i.baseline
                );
            }
        }
    }
}

impl RenderMetrics for AdaptiveMetrics {
    fn render(&self, out: &mut String) {
        self.render_text(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_family_once() {
        let m = AdaptiveMetrics::default();
        let a = m.limiter("a");
        assert!(Arc::ptr_eq(&a, &m.limiter("a")));
        let b = m.limiter("b\"x");
        a.limit.store(12, Relaxed);
        b.rejected_high_cost.fetch_add(3, Relaxed);
        a.latency.set(f64::NAN);
        let mut out = String::new();
        m.render_text(&mut out);
        assert_eq!(
            out.matches("# TYPE proxy_filters_adaptive_concurrency_limit gauge")
                .count(),
            1
        );
        assert!(out.contains("proxy_filters_adaptive_concurrency_limit{filter=\"a\"} 12"));
        assert!(out.contains(
            "proxy_filters_adaptive_concurrency_requests_total{filter=\"b\\\"x\",decision=\"rejected\",reason=\"high_cost\"} 3"
        ));
        assert!(!out.contains("NaN"));
    }
}
