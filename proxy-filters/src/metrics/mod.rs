//! Counters of every filter, rendered as Prometheus text under `proxy_filters_*`.
//!
//! Each filter kind keeps one [`FilterMetrics`] (obtained from the build context, so
//! counters survive reloads) holding one counter set per configured filter `name`;
//! the filter's layer holds its `Arc` set and only touches atomics on the request
//! path. Rendering groups samples by family, so each family appears once.
//!
//! Family names follow the config names: `proxy_filters_<typed>_*`
//! (`proxy_filters_connection_limit_accepted_total`,
//! `proxy_filters_local_rate_limit_decisions_total`), with a `filter` label; the
//! adaptive limiter's are in [`crate::adaptive::metrics`].

mod auth;
mod http;
#[cfg(feature = "lua")]
mod lua;
mod network;

pub use auth::AuthCounters;
#[cfg(feature = "lua")]
pub use lua::LuaCounters;

pub use http::{
    AccessLogCounters, FaultCounters, LocalRateLimitCounters, MirrorCounters, RbacCounters,
};
pub use network::{ConnFaultCounters, ConnLimitCounters, TcpProxyCounters};

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, RwLock,
    },
};

/// One rendered value.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The metric family, e.g. `proxy_filters_rbac_decisions_total`.
    pub family: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Labels besides `filter`, already formatted (`decision="denied"`), or empty.
    pub labels: &'static str,
    /// The value.
    pub value: f64,
}

/// A filter's counters: atomics updated on the request path, read when rendering.
pub trait CounterSet: Default + Send + Sync + 'static {
    /// Appends this set's current values.
    fn samples(&self, out: &mut Vec<Sample>);
}

/// The counter sets of one filter kind, by filter name.
#[derive(Debug)]
pub struct FilterMetrics<C> {
    sets: RwLock<BTreeMap<String, Arc<C>>>,
}

impl<C> Default for FilterMetrics<C> {
    fn default() -> Self {
        Self {
            sets: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<C: CounterSet> FilterMetrics<C> {
    /// The counters of the filter called `name` (created on first use; the same `Arc`
    /// afterwards). Called at load, never per request.
    pub fn get(&self, name: &str) -> Arc<C> {
        if let Some(c) = self
            .sets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return c.clone();
        }
        self.sets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Writes every family in Prometheus text format.
    pub fn render_into(&self, out: &mut String) {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        let mut by_family: Vec<(Sample, Vec<(String, f64)>)> = Vec::new();
        let mut buf = Vec::new();
        for (name, set) in sets.iter() {
            buf.clear();
            set.samples(&mut buf);
            for s in &buf {
                let labels = if s.labels.is_empty() {
                    format!("filter=\"{}\"", escape(name))
                } else {
                    format!("filter=\"{}\",{}", escape(name), s.labels)
                };
                match by_family.iter_mut().find(|(f, _)| f.family == s.family) {
                    Some((_, v)) => v.push((labels, s.value)),
                    None => by_family.push((s.clone(), vec![(labels, s.value)])),
                }
            }
        }
        for (family, values) in by_family {
            let _ = writeln!(out, "# HELP {} {}", family.family, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.family, family.kind);
            for (labels, v) in values {
                let _ = writeln!(out, "{}{{{labels}}} {v}", family.family);
            }
        }
    }
}

impl<C: CounterSet> proxy_core::metrics::RenderMetrics for FilterMetrics<C> {
    fn render(&self, out: &mut String) {
        self.render_into(out);
    }
}

use proxy_core::metrics::escape_label as escape;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Removes one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Pushes one [`Sample`].
macro_rules! sample {
    ($out:ident, $family:literal, $help:literal, $kind:literal, $labels:literal, $v:expr) => {
        $out.push(Sample {
            family: $family,
            help: $help,
            kind: $kind,
            labels: $labels,
            value: $v as f64,
        })
    };
}

pub(crate) use sample;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_once() {
        let m = FilterMetrics::<RbacCounters>::default();
        m.get("a").denied.inc();
        m.get("b").allowed.add(2);
        assert!(Arc::ptr_eq(&m.get("a"), &m.get("a")));
        let mut out = String::new();
        m.render_into(&mut out);
        assert_eq!(
            out.matches("# TYPE proxy_filters_rbac_decisions_total")
                .count(),
            1
        );
        assert!(
            out.contains("proxy_filters_rbac_decisions_total{filter=\"a\",decision=\"denied\"} 1")
        );
        assert!(
            out.contains("proxy_filters_rbac_decisions_total{filter=\"b\",decision=\"allowed\"} 2")
        );
    }
}
