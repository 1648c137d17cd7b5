//! The `outlier_detection` cluster extension: counters on the request path, ejection
//! on thresholds, and a background task per cluster for the interval evaluation,
//! readmission probes and healing reports.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use proxy_core::{
    cluster::{ClusterExtension, ClusterInfo, HealthFlags, Outcome},
    config::Percent,
    Endpoint,
};
use serde_json::json;
use tokio::sync::Notify;

use super::{
    config::{HealingConfig, OutlierConfig},
    counters::{Attempt, EndpointCounters, Thresholds},
    math::{
        ejection_time, enforced, failure_percentage_outliers, may_eject, success_rate_outliers,
        EjectionReason,
    },
    metrics::ClusterOutlierCounters,
};
use crate::{
    healing::{EjectionReport, HealingAction, HealingSink, WebhookSink},
    health::probe_endpoint,
    ConfigError,
};

/// Attempts to report one ejection to the healing sink.
const REPORT_ATTEMPTS: u32 = 3;

/// The endpoints watched now, with their counters.
#[derive(Debug, Default)]
struct State {
    endpoints: Arc<[Arc<Endpoint>]>,
    per: Vec<Arc<EndpointCounters>>,
    by_ptr: HashMap<usize, usize>,
}

#[derive(Debug)]
struct Shared {
    cfg: OutlierConfig,
    thresholds: Thresholds,
    cluster: Arc<str>,
    epoch: Instant,
    state: ArcSwap<State>,
    ejected: AtomicUsize,
    sink: Option<Arc<dyn HealingSink>>,
    counters: Arc<ClusterOutlierCounters>,
    started: AtomicBool,
    closed: AtomicBool,
    wake: Arc<Notify>,
}

/// Outlier detection for one cluster. Dropping it stops its background task.
#[derive(Debug)]
pub struct OutlierDetection {
    shared: Arc<Shared>,
}

impl Drop for OutlierDetection {
    fn drop(&mut self) {
        self.shared.closed.store(true, SeqCst);
        self.shared.wake.notify_one();
    }
}

impl OutlierDetection {
    /// Detection for cluster `cluster` with `cfg`; ejections go to `sink` when given,
    /// else to the config's webhook, if any.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn new(
        cfg: OutlierConfig,
        cluster: &str,
        counters: Arc<ClusterOutlierCounters>,
        sink: Option<Arc<dyn HealingSink>>,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let sink = match (sink, &cfg.healing) {
            (Some(s), _) => Some(s),
            (None, Some(HealingConfig::Webhook(w))) => Some(Arc::new(
                WebhookSink::new(w).map_err(|e| e.within("healing.webhook"))?,
            ) as Arc<dyn HealingSink>),
            (None, None) => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                thresholds: Thresholds {
                    consecutive_5xx: cfg.consecutive_5xx.map_or(0, |n| n.get()),
                    consecutive_gateway: cfg.consecutive_gateway_failure.map_or(0, |n| n.get()),
                },
                cfg,
                cluster: cluster.into(),
                epoch: Instant::now(),
                state: ArcSwap::from_pointee(State::default()),
                ejected: AtomicUsize::new(0),
                sink,
                counters,
                started: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake: Arc::new(Notify::new()),
            }),
        })
    }

    /// The counters of `endpoint`, when it is watched.
    pub fn endpoint_counters(&self, endpoint: &Arc<Endpoint>) -> Option<Arc<EndpointCounters>> {
        let st = self.shared.state.load();
        let i = *st.by_ptr.get(&(Arc::as_ptr(endpoint) as usize))?;
        st.per.get(i).cloned()
    }

    /// Endpoints ejected now.
    pub fn ejected_count(&self) -> usize {
        self.shared.ejected.load(Relaxed)
    }
}

impl ClusterExtension for OutlierDetection {
    fn activate(&self, cluster: &ClusterInfo) {
        self.shared.adopt(&cluster.endpoints);
        if self.shared.started.swap(true, SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.shared.started.store(false, SeqCst);
            tracing::warn!(cluster = %self.shared.cluster, "outlier detection activated outside a runtime; no interval task");
            return;
        };
        let weak = Arc::downgrade(&self.shared);
        let wake = self.shared.wake.clone();
        rt.spawn(run(weak, wake, self.shared.cfg.interval));
    }

    fn on_outcome(&self, endpoint: &Arc<Endpoint>, outcome: &Outcome, _latency: Duration) {
        let st = self.shared.state.load();
        // Small sets: a pointer scan beats hashing.
        let found = if st.endpoints.len() <= 16 {
            st.endpoints.iter().position(|e| Arc::ptr_eq(e, endpoint))
        } else {
            st.by_ptr.get(&(Arc::as_ptr(endpoint) as usize)).copied()
        };
        let Some(i) = found else {
            return;
        };
        let attempt = if outcome.is_error() {
            Attempt::Failure {
                gateway: outcome.is_gateway_failure(),
            }
        } else {
            Attempt::Success
        };
        if let Some(reason) = st.per[i].record(attempt, self.shared.thresholds) {
            self.shared.try_eject(&st, i, reason);
        }
    }

    fn status(&self) -> serde_json::Value {
        let st = self.shared.state.load();
        let now = self.shared.now_ms();
        let endpoints: Vec<serde_json::Value> = st
            .endpoints
            .iter()
            .zip(&st.per)
            .map(|(e, c)| {
                let ejected = c.ejected.load(Relaxed);
                let times = c.times_ejected.load(Relaxed);
                let remaining = ejected.then(|| {
                    let d = self.shared.ejection_time(times).as_millis() as u64;
                    d.saturating_sub(now.saturating_sub(c.ejected_at_ms.load(Relaxed)))
                });
                json!({
                    "address": e.address.to_string(),
                    "ejected": ejected,
                    "removed": c.removed.load(Relaxed),
                    "times_ejected": times,
                    "last_reason": c.last_reason().map(EjectionReason::as_str),
                    "ejection_remaining_ms": remaining,
                    "consecutive_5xx": c.consecutive_5xx(),
                    "consecutive_gateway_failure": c.consecutive_gateway(),
                })
            })
            .collect();
        json!({
            "type": "outlier_detection",
            "ejected": self.shared.ejected.load(Relaxed),
            "endpoints": endpoints,
        })
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ejection_time(&self, times: u32) -> Duration {
        ejection_time(
            self.cfg.base_ejection_time,
            self.cfg.max_ejection_time,
            times,
        )
    }

    /// Takes a new endpoint set, keeping the counters of endpoints it had. Endpoints
    /// that arrive ejected or removed (by an earlier instance) are adopted as such, so
    /// that they are probed and readmitted here.
    fn adopt(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        let old = self.state.load_full();
        let now = self.now_ms();
        let mut per = Vec::with_capacity(endpoints.len());
        let mut by_ptr = HashMap::with_capacity(endpoints.len());
        let mut ejected = 0;
        for (i, e) in endpoints.iter().enumerate() {
            let key = Arc::as_ptr(e) as usize;
            let c = old
                .by_ptr
                .get(&key)
                .and_then(|&j| old.per.get(j).cloned())
                .unwrap_or_default();
            let flags = e.health_flags();
            if flags.contains(HealthFlags::REMOVED) {
                c.removed.store(true, Relaxed);
            }
            if flags.contains(HealthFlags::EJECTED) && !c.ejected.swap(true, SeqCst) {
                c.ejected_at_ms.store(now, Relaxed);
                c.times_ejected.fetch_max(1, Relaxed);
            }
            if c.ejected.load(Relaxed) {
                ejected += 1;
            }
            by_ptr.insert(key, i);
            per.push(c);
        }
        self.ejected.store(ejected, SeqCst);
        self.state.store(Arc::new(State {
            endpoints: endpoints.clone(),
            per,
            by_ptr,
        }));
    }

    fn enforcement(&self, reason: EjectionReason) -> Percent {
        let cfg = &self.cfg;
        match reason {
            EjectionReason::Consecutive5xx => cfg.enforcing_consecutive_5xx_percent,
            EjectionReason::ConsecutiveGatewayFailure => {
                cfg.enforcing_consecutive_gateway_failure_percent
            }
            EjectionReason::SuccessRate => cfg
                .success_rate
                .as_ref()
                .map_or(Percent::ZERO, |s| s.enforcing_percent),
            EjectionReason::FailurePercentage => cfg
                .failure_percentage
                .as_ref()
                .map_or(Percent::ZERO, |f| f.enforcing_percent),
        }
    }

    /// Ejects endpoint `i` unless it is out already, enforcement says no, or the
    /// max-ejection or panic limits forbid it. Atomics only (a scan of the endpoint
    /// set, which happens only when a threshold is crossed).
    fn try_eject(&self, st: &State, i: usize, reason: EjectionReason) {
        let (Some(e), Some(c)) = (st.endpoints.get(i), st.per.get(i)) else {
            return;
        };
        if c.removed.load(Relaxed) || c.ejected.load(Relaxed) {
            return;
        }
        if !enforced(self.enforcement(reason), fastrand::u32(..)) {
            return;
        }
        if c.ejected
            .compare_exchange(false, true, SeqCst, Relaxed)
            .is_err()
        {
            return;
        }
        let total = st
            .endpoints
            .iter()
            .filter(|e| !e.health_flags().contains(HealthFlags::REMOVED))
            .count();
        let healthy = st.endpoints.iter().filter(|e| e.is_healthy()).count();
        let mut cur = self.ejected.load(SeqCst);
        loop {
            if !may_eject(
                total,
                cur,
                healthy,
                self.cfg.max_ejection_percent,
                self.cfg.panic_threshold_percent,
            ) {
                c.ejected.store(false, SeqCst);
                self.counters.refused();
                return;
            }
            match self.ejected.compare_exchange(cur, cur + 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let times = c.times_ejected.fetch_add(1, Relaxed).saturating_add(1);
        c.ejected_at_ms.store(self.now_ms(), Relaxed);
        c.reason.store(reason as u8, Relaxed);
        e.set_health_flag(HealthFlags::EJECTED);
        self.counters.ejected(reason);
        tracing::warn!(cluster = %self.cluster, endpoint = %e.address, reason = reason.as_str(), times, "endpoint ejected");
        if self.sink.is_some() {
            c.report_failures.store(0, Relaxed);
            c.pending_report.store(true, SeqCst);
            self.wake.notify_one();
        }
    }

    /// One interval: success rate and failure percentage, readmission probes, decay.
    fn tick(self: &Arc<Self>) {
        let st = self.state.load_full();
        let stats: Vec<_> = st
            .per
            .iter()
            .enumerate()
            .map(|(i, c)| c.take_interval(i))
            .filter(|s| {
                let c = &st.per[s.index];
                !c.ejected.load(Relaxed) && !c.removed.load(Relaxed)
            })
            .collect();
        if let Some(sr) = &self.cfg.success_rate {
            for i in success_rate_outliers(&stats, sr) {
                self.try_eject(&st, i, EjectionReason::SuccessRate);
            }
        }
        if let Some(fp) = &self.cfg.failure_percentage {
            for i in failure_percentage_outliers(&stats, fp) {
                self.try_eject(&st, i, EjectionReason::FailurePercentage);
            }
        }
        let now = self.now_ms();
        let base = u64::try_from(self.cfg.base_ejection_time.as_millis()).unwrap_or(u64::MAX);
        for (i, c) in st.per.iter().enumerate() {
            if c.removed.load(Relaxed) {
                continue;
            }
            if c.ejected.load(Relaxed) {
                let due = self.ejection_time(c.times_ejected.load(Relaxed));
                let since = now.saturating_sub(c.ejected_at_ms.load(Relaxed));
                if u128::from(since) >= due.as_millis() && !c.probing.swap(true, SeqCst) {
                    tokio::spawn(readmit(self.clone(), st.clone(), i));
                }
            } else if c.times_ejected.load(Relaxed) > 0
                && now.saturating_sub(c.last_change_ms.load(Relaxed)) >= base
            {
                // Healthy for a base ejection time: the multiplier decays by one.
                c.times_ejected.fetch_sub(1, Relaxed);
                c.last_change_ms.store(now, Relaxed);
            }
        }
    }

    /// Sends every pending ejection to the healing sink.
    fn report_pending(self: &Arc<Self>) {
        let Some(sink) = &self.sink else {
            return;
        };
        let st = self.state.load_full();
        for (i, (e, c)) in st.endpoints.iter().zip(&st.per).enumerate() {
            if !c.pending_report.swap(false, SeqCst) {
                continue;
            }
            let report = EjectionReport {
                cluster: self.cluster.to_string(),
                endpoint: e.address,
                reason: c.last_reason().map_or("unknown", EjectionReason::as_str),
                times_ejected: c.times_ejected.load(Relaxed),
            };
            let fut = sink.report(report);
            let (shared, st) = (self.clone(), st.clone());
            tokio::spawn(async move {
                match fut.await {
                    Ok(HealingAction::Keep) => shared.counters.reported(true),
                    Ok(HealingAction::Remove) => {
                        shared.counters.reported(true);
                        shared.remove(&st, i);
                    }
                    Err(err) => {
                        shared.counters.reported(false);
                        let failures = st.per.get(i).map_or(u32::MAX, |c| {
                            c.report_failures.fetch_add(1, Relaxed).saturating_add(1)
                        });
                        // Tried again at the next interval, a few times.
                        let retry = failures < REPORT_ATTEMPTS;
                        if let (true, Some(c)) = (retry, st.per.get(i)) {
                            c.pending_report.store(true, SeqCst);
                        }
                        tracing::warn!(cluster = %shared.cluster, error = %proxy_core::DisplayChain(&err), failures, retry, "healing report failed");
                    }
                }
            });
        }
    }

    /// Removes endpoint `i` for good, as the healing sink asked.
    fn remove(&self, st: &State, i: usize) {
        let (Some(e), Some(c)) = (st.endpoints.get(i), st.per.get(i)) else {
            return;
        };
        if c.removed.swap(true, SeqCst) {
            return;
        }
        e.set_health_flag(HealthFlags::REMOVED);
        if c.ejected.swap(false, SeqCst) {
            e.clear_health_flag(HealthFlags::EJECTED);
            self.ejected.fetch_sub(1, SeqCst);
            self.counters.left_ejection();
        }
        self.counters.removed();
        tracing::warn!(cluster = %self.cluster, endpoint = %e.address, "endpoint removed at the healing sink's request");
    }
}

/// Probes ejected endpoint `i`; readmits it when the probe passes.
async fn readmit(shared: Arc<Shared>, st: Arc<State>, i: usize) {
    let (Some(e), Some(c)) = (st.endpoints.get(i), st.per.get(i)) else {
        return;
    };
    let probe = &shared.cfg.readmission;
    let result = probe_endpoint(e, &probe.probe, probe.timeout).await;
    match result {
        Ok(()) if !c.removed.load(Relaxed) => {
            if c.ejected.swap(false, SeqCst) {
                c.reset_consecutive();
                c.last_change_ms.store(shared.now_ms(), Relaxed);
                e.clear_health_flag(HealthFlags::EJECTED);
                shared.ejected.fetch_sub(1, SeqCst);
                shared.counters.readmitted();
                tracing::info!(cluster = %shared.cluster, endpoint = %e.address, "ejected endpoint readmitted after a passed probe");
            }
        }
        Ok(()) => {}
        Err(err) => {
            shared.counters.probe_failed();
            tracing::debug!(cluster = %shared.cluster, endpoint = %e.address, error = %err, "readmission probe failed");
        }
    }
    c.probing.store(false, SeqCst);
}

/// The background task: interval ticks and healing reports, until the detection is
/// dropped.
async fn run(weak: Weak<Shared>, wake: Arc<Notify>, interval: Duration) {
    let later = |from: tokio::time::Instant| {
        from.checked_add(interval)
            .unwrap_or_else(|| from + Duration::from_secs(24 * 3600))
    };
    let mut next = later(tokio::time::Instant::now());
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = wake.notified() => {}
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if shared.closed.load(SeqCst) {
            return;
        }
        shared.report_pending();
        let now = tokio::time::Instant::now();
        if now >= next {
            shared.tick();
            next = later(now);
        }
    }
}
