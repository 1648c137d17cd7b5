//! Counters of the authentication filters (`jwt_auth`, `api_key_auth`).

use super::{sample, Counter, CounterSet, Sample};
use crate::auth::Failure;

/// Authentication counters: `proxy_filters_auth_successes_total`,
/// `proxy_filters_auth_failures_total{reason}` and, for a remote JWKS,
/// `proxy_filters_auth_jwks_fetches_total{result}`.
#[derive(Debug, Default)]
pub struct AuthCounters {
    /// Requests authenticated.
    pub successes: Counter,
    /// Requests refused, by [`Failure::ALL`] index.
    failures: [Counter; Failure::ALL.len()],
    /// JWKS fetches that brought a usable key set.
    pub jwks_fetched: Counter,
    /// JWKS fetches that failed (the last good set, if any, stays).
    pub jwks_failed: Counter,
}

impl AuthCounters {
    /// Counts a refusal for `reason`.
    pub fn fail(&self, reason: Failure) {
        self.failures[reason.index()].inc();
    }

    /// Refusals for `reason` so far.
    pub fn failures(&self, reason: Failure) -> u64 {
        self.failures[reason.index()].get()
    }
}

/// The `reason="..."` label of each failure, in [`Failure::ALL`] order.
const REASON_LABELS: [&str; Failure::ALL.len()] = [
    "reason=\"missing\"",
    "reason=\"malformed\"",
    "reason=\"expired\"",
    "reason=\"not_yet_valid\"",
    "reason=\"bad_signature\"",
    "reason=\"unknown_key\"",
    "reason=\"alg_not_allowed\"",
    "reason=\"bad_issuer\"",
    "reason=\"bad_audience\"",
    "reason=\"jwks_unavailable\"",
    "reason=\"invalid_api_key\"",
];

impl CounterSet for AuthCounters {
    fn samples(&self, out: &mut Vec<Sample>) {
        sample!(
            out,
            "proxy_filters_auth_successes_total",
            "Requests authenticated.",
            "counter",
            "",
            self.successes.get()
        );
        for (labels, counter) in REASON_LABELS.iter().zip(&self.failures) {
            out.push(Sample {
                family: "proxy_filters_auth_failures_total",
                help: "Requests refused by authentication, by reason.",
                kind: "counter",
                labels,
                value: counter.get() as f64,
            });
        }
        sample!(
            out,
            "proxy_filters_auth_jwks_fetches_total",
            "JWKS fetches.",
            "counter",
            "result=\"ok\"",
            self.jwks_fetched.get()
        );
        sample!(
            out,
            "proxy_filters_auth_jwks_fetches_total",
            "JWKS fetches.",
            "counter",
            "result=\"failed\"",
            self.jwks_failed.get()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_reasons() {
        for (f, l) in Failure::ALL.iter().zip(REASON_LABELS) {
            assert_eq!(l, format!("reason=\"{}\"", f.as_str()));
        }
        let c = AuthCounters::default();
        c.fail(Failure::Expired);
        assert_eq!(c.failures(Failure::Expired), 1);
        let mut out = Vec::new();
        c.samples(&mut out);
        assert!(out
            .iter()
            .any(|s| s.labels == "reason=\"expired\"" && s.value == 1.0));
    }
}
