//! Counters of the Lua script filter (`lua`).

use super::{sample, Counter, CounterSet, Sample};
use crate::lua::Failure;

/// Lua filter counters: `proxy_filters_lua_calls_total`,
/// `proxy_filters_lua_local_replies_total` and
/// `proxy_filters_lua_errors_total{reason}` (`runtime`, `instructions`, `memory`).
#[derive(Debug, Default)]
pub struct LuaCounters {
    /// Requests that ran `on_request`.
    pub calls: Counter,
    /// Requests the script answered itself.
    pub local_replies: Counter,
    /// Failed calls, by [`Failure::ALL`] index.
    errors: [Counter; Failure::ALL.len()],
}

impl LuaCounters {
    /// Counts a failed call.
    pub fn fail(&self, reason: Failure) {
        self.errors[reason.index()].inc();
    }

    /// Failed calls for `reason` so far.
    pub fn errors(&self, reason: Failure) -> u64 {
        self.errors[reason.index()].get()
    }
}

/// The `reason="..."` label of each failure, in [`Failure::ALL`] order.
const REASON_LABELS: [&str; Failure::ALL.len()] = [
    "reason=\"runtime\"",
    "reason=\"instructions\"",
    "reason=\"memory\"",
];

impl CounterSet for LuaCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_lua_calls_total",
            "Requests that ran the script's on_request.",
            "counter",
            "",
            self.calls.get()
        );
        sample!(
            out,
            "proxy_filters_lua_local_replies_total",
            "Requests the script answered itself.",
            "counter",
            "",
            self.local_replies.get()
        );
        for (labels, counter) in REASON_LABELS.iter().zip(&self.errors) {
            out.push(Sample {
                family: "proxy_filters_lua_errors_total",
                help: "Script calls that failed (answered 500), by reason.",
                kind: "counter",
                labels,
                value: counter.get() as f64,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_reasons() {
        for (f, l) in Failure::ALL.iter().zip(REASON_LABELS) {
            assert_eq!(l, format!("reason=\"{}\"", f.as_str()));
            assert_eq!(Failure::ALL[f.index()], *f);
        }
        let c = LuaCounters::default();
        c.fail(Failure::Memory);
        assert_eq!(c.errors(Failure::Memory), 1);
        let mut out = Vec::new();
        c.samples(&mut out);
        assert!(out
            .iter()
            .any(|s| s.labels == "reason=\"memory\"" && s.value == 1.0));
    }
}
