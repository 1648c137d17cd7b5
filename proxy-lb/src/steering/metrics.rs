//! Steering metrics: matches per rule and target kind.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
};

/// Counters of every `traffic_steering` filter (`BuildContext::metrics` key
/// `lb/steering`), per rule name. The lock is taken when rules are built and when
/// metrics are rendered, never per request.
#[derive(Debug, Default)]
pub struct SteeringCounters {
    rules: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    unmatched: AtomicU64,
}

impl SteeringCounters {
    /// The match counter of the rule named `name`.
    pub fn rule(&self, name: &str) -> Arc<AtomicU64> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        rules.entry(name.to_owned()).or_default().clone()
    }

    /// Counts a request no rule matched.
    pub fn unmatched(&self) {
        self.unmatched.fetch_add(1, Relaxed);
    }

    /// Requests no rule matched so far.
    pub fn unmatched_count(&self) -> u64 {
        self.unmatched.load(Relaxed)
    }
}

impl proxy_core::metrics::RenderMetrics for SteeringCounters {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP proxy_lb_steering_matches_total Requests steered, by rule."
        );
        let _ = writeln!(out, "# TYPE proxy_lb_steering_matches_total counter");
        let rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for (name, n) in rules.iter() {
            let _ = writeln!(
                out,
                "proxy_lb_steering_matches_total{{rule=\"{}\"}} {}",
                escape(name),
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP proxy_lb_steering_unmatched_total Requests no steering rule matched."
        );
        let _ = writeln!(out, "# TYPE proxy_lb_steering_unmatched_total counter");
        let _ = writeln!(
            out,
            "proxy_lb_steering_unmatched_total {}",
            self.unmatched.load(Relaxed)
        );
    }
}

pub(crate) use proxy_core::metrics::escape_label as escape;
